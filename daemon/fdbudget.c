/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>

#include "control.h"
#include "fdbudget.h"

/* Descriptors the daemon holds whatever its settings: stdio, the main
 * loop's epoll, signalfd and timers, the journal, the notify socket, the
 * control socket. */
#define FD_OWN_BASE 16

static unsigned clamp_rlim(rlim_t v) {
        return v == RLIM_INFINITY || v > (rlim_t) FD_CONNS_UNLIMITED - 1 ? FD_CONNS_UNLIMITED - 1 : (unsigned) v;
}

unsigned fd_limit_raise(int *err) {
        struct rlimit rl;

        *err = 0;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                *err = -errno;
                return 0;
        }
        if (rl.rlim_cur != rl.rlim_max) {
                rlim_t old = rl.rlim_cur;

                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                        *err = -errno;
                        rl.rlim_cur = old;
                }
        }
        return clamp_rlim(rl.rlim_cur);
}

unsigned fd_limit_hard(void) {
        struct rlimit rl;

        return getrlimit(RLIMIT_NOFILE, &rl) < 0 ? 0 : clamp_rlim(rl.rlim_max);
}

int fd_count_open(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        if (!d)
                return -errno;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        /* Less the one reading the directory. */
        return n - 1;
}

unsigned fd_own_estimate(const struct config *c) {
        /* An event loop has an epoll and an eventfd. */
        unsigned loops = c->model == MODEL_EVENT ? c->threads : 0;

        /* Proxied listeners, and a set of connections waiting for their
         * header per loop that accepts (proxy-wait.h). */
        unsigned proxied = c->n_proxy_listen ? (unsigned) c->n_proxy_listen + (loops ? loops : 1) : 0;

        return FD_OWN_BASE + (unsigned) (c->n_tcp + c->n_udp + c->n_agent) + 2 * loops + proxied;
}

void fd_budget_plan(struct fd_budget *b, unsigned limit, unsigned own, bool conns_hold_fds) {
        unsigned left = limit > own + FD_SPARE ? limit - own - FD_SPARE : 0;

        b->limit = limit;
        b->own = own;
        b->control = left / 4 < CONTROL_CLIENTS_MAX ? left / 4 : CONTROL_CLIENTS_MAX;
        /* One control client at least, if there is room for anything. */
        if (b->control == 0 && left > 0)
                b->control = 1;
        b->conns = conns_hold_fds ? left - b->control : FD_CONNS_UNLIMITED;
}

bool fd_budget_fits(const struct fd_budget *b, unsigned max_connections) {
        return b->conns == FD_CONNS_UNLIMITED || max_connections <= b->conns;
}

void fd_budget_explain(const struct fd_budget *b, unsigned max_connections, bool estimated,
                       char *buf, size_t len) {
        snprintf(buf, len, "The descriptor limit %u leaves %u for connections, fewer than max_connections %u "
                 "(%s%u of the daemon's own, %u spare, %u for control clients): more connections wait in the "
                 "listen backlog; raise LimitNOFILE= (the hard limit) or lower workers.max_connections",
                 b->limit, b->conns, max_connections, estimated ? "about " : "", b->own, FD_SPARE, b->control);
}
