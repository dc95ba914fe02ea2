/* SPDX-License-Identifier: MIT */
#pragma once

/* Talking to the daemon: one request line, one reply. */

#include <stddef.h>
#include <sys/types.h>

#include "textbuf.h"

/* How long to wait for the connection, and then for each part of the
 * reply: a daemon that stays silent this long is not answering. */
#define CTL_TIMEOUT_SEC 5

/* The socket to use when -s is not given: for root the system one; for
 * others the one of a per-user daemon, $runtime_dir/uppercased/control.sock,
 * when it exists (the daemon's config_default_control_path() binds there),
 * and else the system one, reachable through group uppercased. */
void ctl_socket_path(uid_t euid, const char *runtime_dir, char *buf, size_t len);

/* Connects to path, sends request and a "\n", and reads the reply up to its
 * final line into reply (bounded by CTL_REPLY_MAX).  Returns 0, or -errno:
 * the connect() errors (-ENOENT, -ECONNREFUSED, -EACCES, ...), -ETIMEDOUT
 * when the daemon is silent for timeout_msec, -ECONNRESET when it closes
 * before the final line, -EMSGSIZE for an over-long reply, -EBADMSG for
 * bytes after the final line, -ENAMETOOLONG for a path too long for a
 * socket address. */
int ctl_call(const char *path, const char *request, int timeout_msec, struct textbuf *reply);
