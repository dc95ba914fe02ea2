/* SPDX-License-Identifier: MIT */
#pragma once

/* The control socket (protocol: common/control-proto.h), served on the main
 * loop in every worker model.  Clients are non-blocking with bounded buffers
 * and an idle timeout, so a slow or silent one cannot stall anything. */

#include <stddef.h>
#include <sys/types.h>

#include "textbuf.h"

struct server;
struct control;

/* Serves s->listeners.control when systemd passed one, else binds
 * s->config.control_path (directory created, mode and group set, a stale
 * socket replaced, a live one left alone).  On failure returns -errno with
 * what failed in what. */
int control_start(struct server *s, struct control **ret, char *what, size_t len);
/* Closes every client, and removes the socket file if we created it. */
void control_free(struct control *c);

/* Runs one request line and appends the reply (data lines, then "OK" or
 * "ERROR reason") to out.  uid/pid identify the caller in the log. */
void control_dispatch(struct server *s, const char *line, size_t len,
                      uid_t uid, pid_t pid, struct textbuf *out);
