/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "conn.h"
#include "log.h"
#include "oneshot.h"

struct agent {
        const struct agent_daemon *daemon;
        sd_event *event;
        sd_event_source *src[AGENT_LISTEN_MAX];
        size_t n;
        sd_event_source *resume;
        uint64_t pause_warned;
};

const char *agent_answer(bool draining) {
        return draining ? "drain\n" : "up ready\n";
}

/* One check: the answer, then the close.  Input HAProxy sent (agent-send)
 * is read first, so that the close is a FIN, not a reset that could
 * destroy the answer on its way. */
static void agent_answer_one(struct agent *a, int fd) {
        const char *answer = agent_answer(a->daemon->draining(a->daemon->userdata));
        char discard[512];

        (void) recv(fd, discard, sizeof(discard), MSG_DONTWAIT);
        (void) send(fd, answer, strlen(answer), MSG_DONTWAIT | MSG_NOSIGNAL);
        close(fd);
        COUNTER_ADD(a->daemon->shared, agent_checks, 1);
}

static void agent_set(struct agent *a, bool on) {
        for (size_t i = 0; i < a->n; i++)
                sd_event_source_set_enabled(a->src[i], on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int agent_on_resume(sd_event_source *es, uint64_t usec, void *userdata) {
        agent_set(userdata, true);
        return 0;
}

/* accept() lacks descriptors or memory: retrying at once would spin, so
 * the listeners are off for a moment, as the TCP and control ones are. */
static void agent_pause(struct agent *a, int err) {
        uint64_t now = now_usec_monotonic();

        if (warning_due(&a->pause_warned, now))
                log_warning_errno(err, "Failed to accept an agent-check connection, pausing: %m");
        agent_set(a, false);
        /* Without the timer nothing would resume: accept again. */
        if (oneshot_arm(a->event, &a->resume, now + ACCEPT_PAUSE_USEC, agent_on_resume, a) < 0)
                agent_set(a, true);
}

static int agent_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct agent *a = userdata;

        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd >= 0) {
                        agent_answer_one(a, cfd);
                        continue;
                }
                if (accept_error_pauses(errno))
                        agent_pause(a, errno);
                break;
        }
        return 0;
}

int agent_start(sd_event *e, const int *fds, size_t n, const struct agent_daemon *d, struct agent **ret) {
        struct agent *a;

        *ret = NULL;
        if (n == 0)
                return 0;
        if (n > AGENT_LISTEN_MAX)
                return -E2BIG;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->daemon = d;
        a->event = e;
        for (; a->n < n; a->n++) {
                int r = sd_event_add_io(e, &a->src[a->n], fds[a->n], EPOLLIN, agent_on_accept, a);

                if (r < 0) {
                        agent_free(a);
                        return r;
                }
        }
        *ret = a;
        return 0;
}

void agent_free(struct agent *a) {
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++)
                sd_event_source_disable_unref(a->src[i]);
        sd_event_source_disable_unref(a->resume);
        free(a);
}
