/* SPDX-License-Identifier: MIT */
#pragma once

/* The interface between the server core and a worker model.  Adding a model
 * means one new file with one of these. */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>

#include "duration.h"
#include "log.h"

/* Policy every model applies the same way. */
#define CONN_READ_MAX (16 * 1024)                       /* bytes per read */
#define ACCEPT_BUDGET 16                                /* accepts per wake-up */
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
/* After the shutdown timeout, finish() waits this long for the workers to
 * end, then gives up on them (see finish()). */
#define FINISH_WAIT_USEC USEC_PER_SEC

/* Whether the "pausing accepts" warning is due; updates *last_warned. */
static inline bool accept_warning_due(uint64_t *last_warned, uint64_t now) {
        if (*last_warned != 0 && now < *last_warned + ACCEPT_WARN_USEC)
                return false;
        *last_warned = now;
        return true;
}

/* Whether accept() failed for want of descriptors or memory: retrying at
 * once would spin, accepting pauses instead. */
static inline bool accept_error_pauses(int err) {
        return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

/* The warning when accepting pauses, at most every ACCEPT_WARN_USEC: err is
 * accept()'s errno, or ENOSPC when the connections hold every descriptor
 * the budget leaves them (fdbudget.h). */
static inline void accept_pause_warn(uint64_t *last_warned, uint64_t now, int err) {
        if (!accept_warning_due(last_warned, now))
                return;
        if (err == ENOSPC)
                log_warning("The connections hold all the descriptors the limit leaves them, pausing accepts");
        else
                log_warning_errno(err, "Failed to accept a connection, pausing accepts: %m");
}

/* Whether a connection has input that was not read yet.  On stop it is
 * owed replies too (the peer sent it before), and closing with it unread
 * would reset the connection, destroying the replies still in flight. */
static inline bool conn_input_waiting(int fd) {
        int n = 0;

        return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Joins thread, waiting until deadline (CLOCK_MONOTONIC) at most; false
 * when it is still running then. */
static inline bool worker_join_until(pthread_t thread, uint64_t deadline) {
        uint64_t now = now_usec_monotonic();
        uint64_t at = now_usec_realtime() + (deadline > now ? deadline - now : 0);
        struct timespec until = { (time_t) (at / USEC_PER_SEC), (long) (at % USEC_PER_SEC) * 1000 };

        return pthread_timedjoin_np(thread, NULL, &until) == 0;
}

struct server;

struct worker_ops {
        const char *name;
        /* The daemon itself holds a descriptor per connection (not the
         * process model's, whose children hold them): fdbudget.h. */
        bool holds_connections;
        /* Sets the model up on s->listeners and starts serving. */
        int (*start)(struct server *s);
        /* The live timeouts changed: apply them to existing connections. */
        void (*timeouts_changed)(struct server *s);
        /* Graceful stop: stop accepting and reading datagrams, deliver the
         * replies owed on each connection, then close it. */
        void (*stop)(struct server *s);
        /* True once stop() has finished with every connection. */
        bool (*drained)(struct server *s);
        /* Ends everything still open (the shutdown timeout expired, or
         * after drained()) and frees the model's resources.  A worker still
         * busy after FINISH_WAIT_USEC (a close entry waiting on a slow
         * journal, say) may still use them and the shared area: then it
         * frees nothing and returns false, and the daemon exits without
         * tearing anything down. */
        bool (*finish)(struct server *s);
        /* For the watchdog: true if every loop or thread of the model has
         * shown life within the last timeout_usec. */
        bool (*alive)(struct server *s, uint64_t now_usec, uint64_t timeout_usec);
};

extern const struct worker_ops worker_event_ops;
extern const struct worker_ops worker_thread_ops;
extern const struct worker_ops worker_process_ops;
