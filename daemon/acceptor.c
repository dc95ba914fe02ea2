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

        if (!a->stopped)
                acceptor_set(a, true);
        return 0;
}

/* Retrying at once would spin: the sources are off for a moment while the
 * listen backlog holds new connections. */
static void acceptor_pause(struct acceptor *a, int err) {
        uint64_t at = accept_pause(&a->warned, now_usec_monotonic(), err);
        int r;

        acceptor_set(a, false);
        r = oneshot_arm(sd_event_source_get_event(a->src[0]), &a->resume, at, acceptor_on_resume, a);
        if (r < 0) {
                /* Without the timer nothing would resume: accept again. */
                log_warning_errno(r, "Failed to arm the accept pause, ignoring: %m");
                acceptor_set(a, true);
        }
}

static int acceptor_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct acceptor *a = userdata;
        int err = conn_accept(&a->admission, fd);

        if (err)
                acceptor_pause(a, err);
        return 0;
}

int acceptor_start(struct acceptor *a, sd_event *e, const int *fds, size_t n, const struct conn_admission *adm) {
        memset(a, 0, sizeof(*a));
        a->admission = *adm;
        if (n > ACCEPTOR_MAX)
                return -E2BIG;
        for (; a->n < n; a->n++) {
                int r = sd_event_add_io(e, &a->src[a->n], fds[a->n], EPOLLIN, acceptor_on_accept, a);

                if (r < 0)
                        return r;
        }
        return 0;
}

void acceptor_stop(struct acceptor *a) {
        a->stopped = true;
        acceptor_set(a, false);
}

void acceptor_free(struct acceptor *a) {
        for (size_t i = 0; i < a->n; i++)
                sd_event_source_disable_unref(a->src[i]);
        sd_event_source_disable_unref(a->resume);
        memset(a, 0, sizeof(*a));
}
