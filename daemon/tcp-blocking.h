/* SPDX-License-Identifier: MIT */
#pragma once

/* One TCP connection served with blocking waits, by a thread (thread model)
 * or a forked process (process model).  Input is waited for in a blocking
 * recv() with a receive timeout (the idle time left), other waits in
 * worker_wait(); a SIGUSR1 kick (worker_on_kick()) ends either, so live
 * timeout changes, kills and the stop reach a worker at once.  Does not log
 * (a forked child must not). */

#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

/* Where a connection goes on stop instead of closing (the thread model's
 * hand-over): put() is conn_hand_over(), on h.  A function given, not
 * called by name, so that the fork helper, whose children never hand over,
 * links without the store. */
struct conn_store {
        struct handover *h;
        int (*put)(struct handover *h, const struct conn_slot *slot, int fd, const struct upcase *up,
                   const uint8_t *pending, size_t pending_len);
};

/* Serves fd (non-blocking: all waiting is done in worker_wait()) until it
 * ends, and returns why, also stored in the slot.  Allocates the
 * connection's buffers; -ENOMEM closes it as an error.  resume: the state
 * of a connection the previous instance handed over, or NULL.  store:
 * where the connection goes on stop, or NULL to close it: then the result
 * is CLOSE_HANDOVER.  Either way the caller ends the connection
 * (conn_end()) and closes fd. */
enum close_reason tcp_serve_blocking(struct shared *sh, struct conn_slot *slot, int fd,
                                     const struct resumed_conn *resume, const struct conn_store *store);

/* The same in a forked worker, which serves this one connection and exits:
 * its buffers are static (cannot fail), and it never hands over. */
enum close_reason tcp_serve_blocking_forked(struct shared *sh, struct conn_slot *slot, int fd,
                                            const struct resumed_conn *resume);

/* Sends SIGUSR1 to every active connection's worker (slot->pid holds a
 * process id or, in the thread model, a thread id). */
void tcp_kick_all(struct shared *sh, bool threads);

/* Sends SIGUSR1 to the worker of slot (uppercasectl kill). */
void tcp_kick(struct conn_slot *slot, bool threads);

/* The SIGUSR1 handler (installed with SA_RESTART by the server): wakes the
 * blocking worker of the thread it runs in. */
void worker_on_kick(int sig);

/* Waits for events on fd for at most timeout_usec (UINT64_MAX: forever)
 * with SIGUSR1 unblocked, so that a kick interrupts it (the daemon blocks
 * SIGUSR1 in every thread but those serving a connection).  Returns
 * revents, 0 on timeout, -EINTR when kicked, now or since the connection's
 * worker last called it. */
int worker_wait(int fd, short events, uint64_t timeout_usec);
