/* SPDX-License-Identifier: MIT */
#pragma once

/* The control socket (protocol: common/control-proto.h), served on the main
 * loop in every worker model.  Clients are non-blocking with bounded buffers
 * and an idle timeout, so a slow or silent one cannot stall anything. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "textbuf.h"

/* Control clients served at once, at most (fewer when the descriptor
 * limit is low: fdbudget.h). */
#define CONTROL_CLIENTS_MAX 64

struct server;
struct control;

/* Serves s->listeners.control when systemd passed one, else binds
 * s->config.control_path (directory created, mode and group set, a stale
 * socket replaced, a live one left alone).  On failure returns -errno with
 * what failed in what. */
int control_start(struct server *s, struct control **ret, char *what, size_t len);
/* Closes every client, and removes the socket file if we created it. */
void control_free(struct control *c);

/* Where a reply too long to build at once (the connection list, which
 * grows with the load) goes on: it is built as the client reads it, so that
 * a client that does not read holds little memory. */
struct control_cursor {
        bool active;
        uint32_t next;                  /* the next connection slot */
};

/* Runs one request line and appends the reply (data lines, then "OK" or
 * "ERROR reason") to out, or its first part with *cursor active:
 * control_continue() appends the rest, a part at a time.  uid/pid identify
 * the caller in the log. */
void control_dispatch(struct server *s, const char *line, size_t len, uid_t uid, pid_t pid,
                      struct textbuf *out, struct control_cursor *cursor);
void control_continue(struct server *s, struct control_cursor *cursor, struct textbuf *out);

/* Serves at most max clients at once (fdbudget.h), 1..CONTROL_CLIENTS_MAX. */
void control_set_max_clients(struct control *c, unsigned max);

/* When every place is taken, which client a new one replaces: the least
 * recently active of the user holding the most places (the first of
 * clients[0..n), ordered least recently active first, whose uid holds as
 * many as any other).  So one user filling the places cannot lock another
 * out, and cannot take the place of another's client while it holds more
 * than they do.  Pure, for the tests. */
size_t control_pick_victim(const uid_t *uids, size_t n);
