/* SPDX-License-Identifier: MIT */
#pragma once

/* Messages to the service manager (the sd_notify(3) protocol: READY=1,
 * STATUS=, WATCHDOG=1, FDSTORE=1, ...) over one socket, opened at start and
 * kept.  sd_notify() opens a socket for every message: a daemon out of
 * descriptors could then not even ping the watchdog, and systemd would kill
 * it for that, dropping every connection.  The socket is not connected, so
 * it outlives a re-executed manager, like sd_notify()'s.
 *
 * $NOTIFY_SOCKET other than a path or an abstract name ("@...") is left to
 * sd_notify() itself.  Without $NOTIFY_SOCKET every message is a no-op.
 * Thread safe: one datagram per message. */

#include <stddef.h>

/* Opens the socket; 0 also when there is nothing to open (no manager, or
 * an address sd_notify() handles), -errno on failure: then messages go
 * through sd_notify(). */
int notify_open(void);
void notify_close(void);

/* Sends msg ("KEY=value\n..."), with fds[0..n) as SCM_RIGHTS.  Returns 1
 * when sent, 0 when there is no manager, or -errno. */
int notify_send_fds(const char *msg, const int *fds, size_t n);
int notify_send(const char *msg);
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
