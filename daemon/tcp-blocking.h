/* SPDX-License-Identifier: MIT */
#pragma once

/* One TCP connection served with blocking waits, by a thread (thread model)
 * or a forked process (process model).  The wait is worker_wait(), which a
 * SIGUSR1 kick interrupts, so live timeout changes and the stop reach a
 * worker at once.  Does not log (a forked child must not); returns the close
 * reason, also stored in the slot. */

#include "handover.h"
#include "shared.h"

/* fd must be non-blocking (all waiting is done in worker_wait()).
 * Allocates the connection's buffers; -ENOMEM closes it as an error.
 * resume: the state of a connection the previous instance handed over, or
 * NULL.  handover: where the connection goes on stop, or NULL to close it;
 * then the result is CLOSE_HANDOVER and the caller still closes its fd. */
enum close_reason tcp_serve_blocking(struct shared *sh, struct conn_slot *slot, int fd,
                                     const struct resumed_conn *resume, struct handover *handover);

/* How the thread and process models take connections from a listening
 * socket: up to a budget per call, each admitted under max_connections and
 * max_workers (a connection over a limit is closed at once, counted and
 * logged), logged as opened, then handed to start(). */
struct tcp_acceptor {
        struct shared *shared;
        unsigned max_workers;
        unsigned (*workers)(void *userdata);   /* serving now */
        void (*start)(void *userdata, int fd, struct conn_slot *slot);
        void *userdata;
};

/* Returns 0, or -EMFILE, -ENFILE, -ENOBUFS or -ENOMEM when accept() lacks
 * resources, -ENOSPC when the connections hold every descriptor the
 * budget leaves them (fdbudget.h): then the caller should pause
 * (server_pause_accepting()). */
int tcp_accept_all(const struct tcp_acceptor *a, int listen_fd);

/* Sends SIGUSR1 to every active connection's worker (slot->pid holds a
 * process id or, in the thread model, a thread id). */
void tcp_kick_all(struct shared *sh, bool threads);
