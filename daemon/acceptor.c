/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "acceptor.h"
#include "log.h"
#include "oneshot.h"

static void acceptor_set(struct acceptor *a, bool on) {
        for (size_t i = 0; i < a->n; i++)
                sd_event_source_set_enabled(a->src[i], on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int acceptor_on_resume(sd_event_source *es, uint64_t usec, void *userdata) {
        struct acceptor *a = userdata;

        if (!a->stopped && !a->held)
                acceptor_set(a, true);
        return 0;
}

/* Retrying at once would spin: the sources are off for a moment while the
 * listen backlog holds new connections. */
static void acceptor_pause(struct acceptor *a, int err) {
        uint64_t at = accept_pause(&a->warned, now_usec_monotonic(), err);
        int r;

        acceptor_set(a, false);
        r = oneshot_arm(a->event, &a->resume, at, acceptor_on_resume, a);
        if (r < 0) {
                /* Without the timer nothing would resume: accept again. */
                log_warning_errno(r, "Failed to arm the accept pause, ignoring: %m");
                acceptor_set(a, true);
        }
}

static int acceptor_on_proxy_timer(sd_event_source *es, uint64_t usec, void *userdata);

/* The timer follows the oldest waiting connection's deadline. */
static void acceptor_arm_proxy_timer(struct acceptor *a) {
        uint64_t at = conn_proxied_deadline(&a->admission, &a->proxy);
        int r;

        if (at == UINT64_MAX) {
                if (a->proxy_timer)
                        sd_event_source_set_enabled(a->proxy_timer, SD_EVENT_OFF);
                return;
        }
        r = oneshot_arm(a->event, &a->proxy_timer, at, acceptor_on_proxy_timer, a);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the PROXY header timeout, ignoring: %m");
}

static void acceptor_run_proxied(struct acceptor *a) {
        conn_proxied_run(&a->admission, &a->proxy, now_usec_monotonic());
        acceptor_arm_proxy_timer(a);
}

static int acceptor_on_proxy_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        acceptor_run_proxied(userdata);
        return 0;
}

static int acceptor_on_proxy_input(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        acceptor_run_proxied(userdata);
        return 0;
}

static bool acceptor_is_proxied(const struct acceptor *a, const sd_event_source *es) {
        for (size_t i = a->n_direct; i < a->n; i++)
                if (a->src[i] == es)
                        return true;
        return false;
}

static int acceptor_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct acceptor *a = userdata;
        bool proxied = acceptor_is_proxied(a, es);
        int err;

        err = proxied ? conn_accept_proxied(&a->admission, &a->proxy, fd) : conn_accept(&a->admission, fd);
        if (proxied)
                acceptor_arm_proxy_timer(a);
        if (err)
                acceptor_pause(a, err);
        return 0;
}

static int acceptor_watch_proxied(struct acceptor *a) {
        int r = proxy_wait_init(&a->proxy, &a->admission.shared->proxy_waiting);

        if (r < 0)
                return r;
        return sd_event_add_io(a->event, &a->proxy_src, proxy_wait_fd(&a->proxy), EPOLLIN,
                               acceptor_on_proxy_input, a);
}

int acceptor_start(struct acceptor *a, sd_event *e, const int *fds, size_t n,
                   const int *proxied, size_t n_proxied, const struct conn_admission *adm) {
        memset(a, 0, sizeof(*a));
        a->admission = *adm;
        a->event = e;
        a->proxy.epfd = -1;
        a->n_direct = n;
        if (n + n_proxied > ACCEPTOR_MAX)
                return -E2BIG;
        for (; a->n < n + n_proxied; a->n++) {
                int fd = a->n < n ? fds[a->n] : proxied[a->n - n];
                int r = sd_event_add_io(e, &a->src[a->n], fd, EPOLLIN, acceptor_on_accept, a);

                if (r < 0)
                        return r;
        }
        return n_proxied > 0 ? acceptor_watch_proxied(a) : 0;
}

void acceptor_hold(struct acceptor *a, bool hold) {
        a->held = hold;
        if (!a->stopped)
                acceptor_set(a, !hold);
}

void acceptor_stop(struct acceptor *a, bool shut) {
        for (size_t i = 0; i < a->n; i++)
                conn_accept_last(&a->admission, i >= a->n_direct ? &a->proxy : NULL,
                                 sd_event_source_get_io_fd(a->src[i]), shut);
        a->stopped = true;
        acceptor_set(a, false);
        /* Not clients yet: their balancer tries another instance. */
        a->proxy_src = sd_event_source_disable_unref(a->proxy_src);
        a->proxy_timer = sd_event_source_disable_unref(a->proxy_timer);
        proxy_wait_done(&a->proxy);
}

void acceptor_free(struct acceptor *a) {
        for (size_t i = 0; i < a->n; i++)
                sd_event_source_disable_unref(a->src[i]);
        sd_event_source_disable_unref(a->resume);
        sd_event_source_disable_unref(a->proxy_src);
        sd_event_source_disable_unref(a->proxy_timer);
        proxy_wait_done(&a->proxy);
        memset(a, 0, sizeof(*a));
}
