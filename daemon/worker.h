/* SPDX-License-Identifier: MIT */
#pragma once

/* The contract between the daemon's core and a worker model: all a model
 * file includes of the core.  A model gets its environment (struct
 * worker_env: the sockets to serve, the shared area, the hand-over store,
 * the connections handed over by the previous instance) and the lifecycle
 * of a connection (conn.h); it moves the bytes.  Adding a model is one new
 * file with one struct worker_ops. */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "conn.h"
#include "duration.h"
#include "log.h"
#include "proxy-wait.h"
#include "udp.h"

/* After the shutdown timeout, finish() waits this long for the workers to
 * end, then gives up on them (see finish()). */
#define FINISH_WAIT_USEC USEC_PER_SEC

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

/* A connection the previous instance handed over (handover.h), admitted
 * (conn_resume()) and given to the model's start(). */
struct resumed_conn {
        int fd;                           /* -1 once a model took it */
        struct conn_slot *slot;
        struct upcase up;
        const uint8_t *pending;           /* replies owed; valid during start() only */
        size_t pending_len;
};

/* What a model serves, and with what. */
struct worker_env {
        const int *tcp;                   /* listening sockets, owned by the core */
        size_t n_tcp;
        const int *udp;                   /* UDP sockets, owned by the core */
        size_t n_udp;
        const int *proxy;                 /* proxied listening sockets: conn_accept_proxied() */
        size_t n_proxy;
        struct shared *shared;            /* counters, connection slots, live settings, stop flags */
        struct handover *handover;        /* where connections go on stop; NULL: they close */
        struct resumed_conn *resumed;     /* start() takes each, setting its fd to -1 */
        size_t n_resumed;
        sd_event *event;                  /* the main loop: signals, control; thread and process models accept here */
        unsigned threads;                 /* -t: event loops (event), UDP threads per socket (thread) */
        /* On stop, after a last accept (conn_accept_last()), shut the tcp
         * and proxy listeners: the daemon bound them.  Sockets systemd
         * passed are left alone: they queue for the next instance. */
        bool shut_listeners;
};

struct worker;                            /* a model's own state */

struct worker_ops {
        const char *name;
        /* The daemon itself holds a descriptor per connection (not the
         * process model's, whose children hold them): fdbudget.h. */
        bool holds_connections;
        /* Sets the model up on env and starts serving. */
        int (*start)(const struct worker_env *env, struct worker **ret);
        /* The live timeouts changed: apply them to existing connections. */
        void (*timeouts_changed)(struct worker *w);
        /* uppercasectl kill: the connection of slot was asked to close
         * (conn_slot_killed()); wake its worker, which answers the input
         * it read, closes its side, and ends it as CLOSE_KILLED after the
         * linger (as after "."). */
        void (*kill)(struct worker *w, struct conn_slot *slot);
        /* Graceful stop: stop accepting and reading datagrams, drain each
         * connection (drain_next()), then close it or hand it over. */
        void (*stop)(struct worker *w);
        /* True once stop() has finished with every connection. */
        bool (*drained)(struct worker *w);
        /* Ends everything still open (the shutdown timeout expired, or
         * after drained()) and frees the model.  A worker still busy after
         * FINISH_WAIT_USEC (a close entry waiting on a slow journal, say)
         * may still use it and the shared area: then it frees nothing and
         * returns false, and the daemon exits without tearing anything
         * down. */
        bool (*finish)(struct worker *w);
        /* For the watchdog: true if every loop or thread of the model has
         * shown life within the last timeout_usec. */
        bool (*alive)(struct worker *w, uint64_t now_usec, uint64_t timeout_usec);
};

extern const struct worker_ops worker_event_ops;
extern const struct worker_ops worker_thread_ops;
extern const struct worker_ops worker_process_ops;
