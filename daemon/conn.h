/* SPDX-License-Identifier: MIT */
#pragma once

/* A TCP connection's life, written once for every worker model.  The
 * models move the bytes; at each step of a connection's life they call:
 *
 *   conn_accept()      takes connections from a listening socket: each is
 *                      admitted under the limits (max_connections, the
 *                      descriptor budget, limits.tcp_per_source, a model's
 *                      max_workers; one over them is closed at once,
 *                      counted and logged) with its slot and its "tcp
 *                      connection from" entry, and handed to the model;
 *   drain_next()       once the daemon stops: what the connection does
 *                      next (wait for its first request, answer what it
 *                      sent, let the peer read, hand it over, close);
 *   conn_hand_over()   puts it in the file descriptor store, with its state;
 *   conn_end()         its close: the reason, the entry, the counters, the
 *                      slot released.
 *
 * The server admits the connections the previous instance handed over with
 * conn_resume(), before a model starts. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "duration.h"
#include "shared.h"
#include "upcase.h"

/* Policy every model applies the same way. */
#define CONN_READ_MAX (16 * 1024)                       /* bytes per read */
#define ACCEPT_BUDGET 16                                /* accepts per wake-up */
#define ACCEPT_LAST_BATCHES 64                          /* conn_accept_last(): batches at most */
/* accept() out of descriptors or memory: retrying at once would spin. */
#define ACCEPT_PAUSE_USEC (100 * USEC_PER_MSEC)
/* ...and a shortage may last: warn once in this long. */
#define ACCEPT_WARN_USEC (10 * USEC_PER_SEC)
/* After ".", wait this long for the peer's EOF before closing, so that
 * closing with unread input does not reset the connection and destroy the
 * replies still in flight. */
#define LINGER_USEC (2 * USEC_PER_SEC)
/* On stop, a connection that has sent nothing yet may have its first
 * request in flight: it gets this long to arrive. */
#define FIRST_REQUEST_GRACE_USEC USEC_PER_SEC
/* A stop for a restart (handover.h) drains like any stop, for this long at
 * most: what is still owed then (replies the peer has not read, input still
 * coming) goes with the connection rather than holding up the restart. */
#define HANDOVER_WAIT_USEC USEC_PER_SEC

struct handover;
struct handover_conn;
struct proxy_wait;

/* How a model takes the connections conn_accept() admits. */
struct conn_admission {
        struct shared *shared;
        /* The thread and process models: workers() serving now, and
         * workers.max_workers at most (NULL: no such limit). */
        unsigned (*workers)(void *userdata);
        /* The model takes the connection over: fd, non-blocking, and its
         * slot, logged as opened. */
        void (*start)(void *userdata, int fd, struct conn_slot *slot);
        /* The model takes no more connections for now: they wait in the
         * listen backlog (NULL: never). */
        bool (*busy)(void *userdata);
        /* After each accept batch that started any (NULL: nothing to do). */
        void (*batch_done)(void *userdata);
        void *userdata;
};

/* The stop, on listen_fd: what completed its handshake before it is taken
 * and served (it drains like every connection: a shutdown would reset it,
 * after its client, or its balancer, sent a request), then, with shut (a
 * listener the daemon bound), shutdown(2) refuses the next ones at once.
 * w: the waiting set of a proxied listener (NULL: a direct one), run once
 * after, so that a connection whose header is in is admitted; the caller
 * then drops the others (proxy_wait_done()): no client yet, their balancer
 * tries another instance. */
void conn_accept_last(const struct conn_admission *a, struct proxy_wait *w, int listen_fd, bool shut);

/* Takes up to ACCEPT_BUDGET connections from the non-blocking listen_fd.
 * Returns 0, or the errno for which accepting must pause a moment
 * (accept_pause()): EMFILE, ENFILE, ENOBUFS or ENOMEM from accept(), or
 * ENOSPC when the connections hold every descriptor the budget leaves them
 * (fdbudget.h). */
int conn_accept(const struct conn_admission *a, int listen_fd);

/* conn_accept() for a proxied listener (proxy.listen): a connection from a
 * peer in proxy.trusted waits in w for its PROXY header (proxy-wait.h),
 * any other is closed unanswered, counted and logged. */
int conn_accept_proxied(const struct conn_admission *a, struct proxy_wait *w, int listen_fd);
/* The connections waiting in w whose header came, failed or timed out
 * (proxy.timeout) by now: admitted as from the client the header names
 * (a balancer's health check as itself, uncounted per source, unlogged)
 * and handed to the model, or closed unanswered, counted and logged. */
void conn_proxied_run(const struct conn_admission *a, struct proxy_wait *w, uint64_t now);
/* When conn_proxied_run() is due for the timeout; UINT64_MAX: not before
 * input comes. */
uint64_t conn_proxied_deadline(const struct conn_admission *a, const struct proxy_wait *w);

/* Whether accept() failed for want of descriptors or memory: retrying at
 * once would spin, accepting pauses instead. */
bool accept_error_pauses(int err);
/* Accepting pauses for err (conn_accept()'s result): warns, at most every
 * ACCEPT_WARN_USEC (*last_warned), and returns when to accept again. */
uint64_t accept_pause(uint64_t *last_warned, uint64_t now, int err);
/* Whether a warning about a lasting condition is due, at most every
 * ACCEPT_WARN_USEC; updates *last_warned. */
bool warning_due(uint64_t *last_warned, uint64_t now);

/* Admits one connection from peer (conn_accept()'s step, and systemd's
 * Accept=yes connection): its slot, logged as opened; or NULL when it is
 * over a limit, fd then closed, counted and logged. */
struct conn_slot *conn_admit(struct shared *sh, int fd, const union sockaddr_union *peer);
/* The same for a connection from origin (behind a balancer). */
struct conn_slot *conn_admit_from(struct shared *sh, int fd, const struct conn_origin *origin);

/* Admits a connection the previous instance handed over, with its record
 * (NULL when the state was lost: resumed afresh), logged as resumed; NULL
 * when over a limit (logged; the caller closes it). */
struct conn_slot *conn_resume(struct shared *sh, int fd, uint64_t id, const struct handover_conn *rec);

/* The connection of slot ended for reason: the reason is stored, the close
 * entry logged, the counters counted, the slot released.  Its descriptor is
 * closed by whoever holds it (the model, or the model's child). */
void conn_end(struct shared *sh, struct conn_slot *slot, enum close_reason reason);

/* Puts the connection (fd, up to date in slot) in the file descriptor store
 * h, with its transform state up and the replies its peer has not read.
 * Then the caller ends it (CLOSE_HANDOVER) and closes its descriptor.
 * Returns 0, or -errno when it was not stored (the store full, the state
 * too large, a send failed): nothing changed, it is drained as on a plain
 * stop instead. */
int conn_hand_over(struct handover *h, const struct conn_slot *slot, int fd, const struct upcase *up,
                   const uint8_t *pending, size_t pending_len);

/* ---- the stop ---- */

/* What a connection does next once the daemon stops (drain_next()). */
enum drain_step {
        DRAIN_WAIT_REQUEST,     /* nothing received yet: wait (the grace) for a first request */
        DRAIN_ANSWER,           /* input waiting: answer it, its replies are owed */
        DRAIN_FLUSH,            /* replies the peer has not read: let it read */
        DRAIN_HAND_OVER,        /* to the file descriptor store, as it is */
        DRAIN_CLOSE,            /* nothing owed: close (after "." linger first) */
};

/* What a stopping connection is at, as its model sees it. */
struct drain_view {
        bool handover;          /* a store takes it (enabled, and it did not fail for it) */
        bool ended;             /* "." seen, or the peer's EOF: it goes nowhere */
        bool received;          /* it has sent something */
        bool input_waiting;     /* more than it was answered for */
        bool replies_pending;   /* replies the peer has not read */
        bool grace_over;        /* FIRST_REQUEST_GRACE_USEC passed since the stop */
        bool wait_over;         /* HANDOVER_WAIT_USEC passed since the stop */
};

/* On every stop a connection is drained: the input the peer sent before
 * is answered and the replies delivered; one that has sent nothing yet gets
 * a grace for its first request.  For a restart (a store), HANDOVER_WAIT_USEC
 * after the stop what is still owed travels with it, and one that owes
 * nothing goes at once.  Pure. */
enum drain_step drain_next(const struct drain_view *v);
