/* SPDX-License-Identifier: MIT */
#pragma once

/* HAProxy's agent-check (HAProxy's configuration manual, "agent-check"):
 * on every connection to an agent listener the daemon writes one line,
 * whether the balancer may send it new connections, and closes.  It runs
 * on the main loop in every worker model and waits for nothing before it
 * answers: the answer is a few bytes, which any socket buffer takes at
 * once.  Then it reads what the balancer still sends until its EOF (a
 * second at most, 64 checks at once), so that the close is no reset. */

#include <stdbool.h>
#include <stddef.h>

#include <systemd/sd-event.h>

#include "shared.h"

/* Sockets served at once, at most (CONFIG_MAX_LISTEN). */
#define AGENT_LISTEN_MAX 16

/* What the agent sees of the daemon. */
struct agent_daemon {
        struct shared *shared;                  /* counts the answers (agent_checks) */
        /* true when the balancer should send no new connections:
         * "uppercasectl drain", or the daemon is stopping. */
        bool (*draining)(void *userdata);
        void *userdata;
};

/* The line written: "up ready\n" or "drain\n".  "ready" ends a DRAIN (or
 * MAINT) state an earlier answer set, "up" a DOWN one set by another agent
 * (HAProxy still requires its health check to pass); "drain" leaves the
 * server up for its open sessions and sends it no new ones. */
const char *agent_answer(bool draining);

struct agent;

/* Serves fds[0..n) on e (*ret NULL when n is 0); -errno on failure. */
int agent_start(sd_event *e, const int *fds, size_t n, const struct agent_daemon *d, struct agent **ret);
void agent_free(struct agent *a);
