/* SPDX-License-Identifier: MIT */
#pragma once

/* The interface between the server core and a worker model.  Adding a model
 * means one new file with one of these. */

#include <stdbool.h>
#include <stdint.h>

struct server;

struct worker_ops {
        const char *name;
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
         * after drained()) and frees the model's resources. */
        void (*finish)(struct server *s);
        /* For the watchdog: true if every loop or thread of the model has
         * shown life within the last timeout_usec. */
        bool (*alive)(struct server *s, uint64_t now_usec, uint64_t timeout_usec);
};

extern const struct worker_ops worker_event_ops;
extern const struct worker_ops worker_thread_ops;
extern const struct worker_ops worker_process_ops;
