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

/* Answered checks whose peer may still send (agent-send): read until its
 * EOF, AGENT_LINGER_USEC at most, so that the close is no reset.  At most
 * AGENT_LINGER_MAX at once; past it a check is closed after a last read. */
#define AGENT_LINGER_MAX 64
#define AGENT_LINGER_USEC USEC_PER_SEC

struct agent_linger {
        struct agent *agent;
        int fd;
        sd_event_source *io, *timer;
        struct agent_linger *prev, *next;
};

struct agent {
        const struct agent_daemon *daemon;
        sd_event *event;
        sd_event_source *src[AGENT_LISTEN_MAX];
        size_t n;
        sd_event_source *resume;
        uint64_t pause_warned;
        struct agent_linger *lingering;
        unsigned n_lingering;
};

const char *agent_answer(bool draining) {
        return draining ? "drain\n" : "up ready\n";
}

static void linger_end(struct agent_linger *l) {
        struct agent *a = l->agent;

        if (l->prev)
                l->prev->next = l->next;
        else
                a->lingering = l->next;
        if (l->next)
                l->next->prev = l->prev;
        a->n_lingering--;
        sd_event_source_disable_unref(l->io);
        sd_event_source_disable_unref(l->timer);
        close(l->fd);
        free(l);
}

/* Reads what the peer sent; true when it is done sending (EOF, error). */
static bool agent_discard_input(int fd) {
        char discard[512];
        ssize_t n;

        do
                n = recv(fd, discard, sizeof(discard), MSG_DONTWAIT);
        while (n > 0);
        return n == 0 || (errno != EAGAIN && errno != EINTR);
}

static int linger_on_input(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        if (agent_discard_input(fd))
                linger_end(userdata);
        return 0;
}

static int linger_on_timeout(sd_event_source *es, uint64_t usec, void *userdata) {
        linger_end(userdata);
        return 0;
}

/* The answer is sent and our side shut: fd is closed once its peer is
 * done sending, or at once when it is already, or when too many linger. */
static void agent_linger(struct agent *a, int fd) {
        struct agent_linger *l;

        if (agent_discard_input(fd) || a->n_lingering >= AGENT_LINGER_MAX || !(l = calloc(1, sizeof(*l)))) {
                close(fd);
                return;
        }
        *l = (struct agent_linger) { .agent = a, .fd = fd, .next = a->lingering };
        if (sd_event_add_io(a->event, &l->io, fd, EPOLLIN, linger_on_input, l) < 0 ||
            sd_event_add_time_relative(a->event, &l->timer, CLOCK_MONOTONIC, AGENT_LINGER_USEC, 0,
                                       linger_on_timeout, l) < 0) {
                sd_event_source_disable_unref(l->io);
                free(l);
                close(fd);
                return;
        }
        if (a->lingering)
                a->lingering->prev = l;
        a->lingering = l;
        a->n_lingering++;
}

/* One check: the answer, then the close.  Input HAProxy sent (agent-send),
 * before or after the answer, is read: a close with input unread would be
 * a reset, which can destroy the answer on its way. */
static void agent_answer_one(struct agent *a, int fd) {
        const char *answer = agent_answer(a->daemon->draining(a->daemon->userdata));

        (void) agent_discard_input(fd);
        (void) send(fd, answer, strlen(answer), MSG_DONTWAIT | MSG_NOSIGNAL);
        (void) shutdown(fd, SHUT_WR);
        agent_linger(a, fd);
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
        while (a->lingering)
                linger_end(a->lingering);
        free(a);
}
