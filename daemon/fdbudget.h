/* SPDX-License-Identifier: MIT */
#pragma once

/* The daemon's descriptor budget.
 *
 * At start the soft RLIMIT_NOFILE is raised to the hard limit, as systemd
 * advises services that do not use select(): the soft limit of 1024 exists
 * for select()'s sake.  The limit is then shared out:
 *   - the daemon's own descriptors (listening sockets, agent-check ones
 *     included, event loops, the journal, ...), counted once it is set up;
 *   - FD_SPARE for descriptors it opens for a moment (an accept refused at
 *     once, the hand-over state and its barrier, a reload's file);
 *   - control clients: up to CONTROL_CLIENTS_MAX, a quarter of what is
 *     left when that is less;
 *   - connections, the rest.  In the event and thread models each holds a
 *     descriptor of the daemon; in the process model its child holds it.
 * A TCP accept waits (the listen backlog holds the connection) while the
 * connections have all the descriptors the budget gives them, so they
 * cannot take those the control socket and the daemon itself need: the
 * watchdog is fed and uppercasectl answered whatever the clients do. */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define FD_SPARE 16
/* Unlimited by descriptors: the process model. */
#define FD_CONNS_UNLIMITED ((unsigned) -1)

struct fd_budget {
        unsigned limit;                 /* the soft RLIMIT_NOFILE */
        unsigned own;                   /* the daemon's own descriptors */
        unsigned control;               /* control clients at most */
        unsigned conns;                 /* connections at most, or FD_CONNS_UNLIMITED */
};

/* Raises the soft RLIMIT_NOFILE to the hard one.  Returns the soft limit
 * in force afterwards (the old one if raising failed, with -errno in
 * *err, else 0 there). */
unsigned fd_limit_raise(int *err);
/* The hard RLIMIT_NOFILE: what the limit is once raised. */
unsigned fd_limit_hard(void);
/* Descriptors open now, or -errno. */
int fd_count_open(void);
/* What the daemon set up with config c holds, about: for -n, which sets
 * nothing up. */
unsigned fd_own_estimate(const struct config *c);

/* Shares limit out (pure): own descriptors, whether connections are held
 * by the daemon (not in the process model). */
void fd_budget_plan(struct fd_budget *b, unsigned limit, unsigned own, bool conns_hold_fds);
/* Whether max_connections fit in the budget. */
bool fd_budget_fits(const struct fd_budget *b, unsigned max_connections);
/* "The descriptor limit 1024 leaves 924 for connections, fewer than
 * max_connections 1024: ..." for a budget that does not fit. */
void fd_budget_explain(const struct fd_budget *b, unsigned max_connections, bool estimated,
                       char *buf, size_t len);
