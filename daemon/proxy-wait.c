/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy-wait.h"

/* Readiness events taken per epoll_wait(). */
#define EVENTS_MAX 64

struct proxy_waiting {
        int fd;
        union sockaddr_union peer;
        uint64_t since;                 /* CLOCK_MONOTONIC, accepted */
        struct proxy_waiting *prev, *next;
};

int proxy_wait_init(struct proxy_wait *w, atomic_uint *counter) {
        *w = (struct proxy_wait) { .epfd = -1, .counter = counter };
        w->buf = malloc(PROXY_HEADER_MAX);
        if (!w->buf)
                return -ENOMEM;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0) {
                int r = -errno;

                free(w->buf);
                w->buf = NULL;
                return r;
        }
        return 0;
}

static void waiting_unlink(struct proxy_wait *w, struct proxy_waiting *p) {
        if (p->prev)
                p->prev->next = p->next;
        else
                w->head = p->next;
        if (p->next)
                p->next->prev = p->prev;
        else
                w->tail = p->prev;
        w->n--;
        if (w->counter)
                atomic_fetch_sub_explicit(w->counter, 1, memory_order_relaxed);
}

void proxy_wait_done(struct proxy_wait *w) {
        /* Never set up (a zeroed struct too), or done already. */
        if (!w->buf)
                return;
        while (w->head) {
                struct proxy_waiting *p = w->head;

                waiting_unlink(w, p);
                close(p->fd);
                free(p);
        }
        if (w->epfd >= 0)
                close(w->epfd);
        w->epfd = -1;
        free(w->buf);
        w->buf = NULL;
}

int proxy_wait_add(struct proxy_wait *w, int fd, const union sockaddr_union *peer, uint64_t now) {
        struct proxy_waiting *p = malloc(sizeof(*p));
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

        if (!p)
                return -ENOMEM;
        *p = (struct proxy_waiting) { .fd = fd, .peer = *peer, .since = now, .prev = w->tail };
        ev.data.ptr = p;
        /* Bytes already there are reported at once. */
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                int r = -errno;

                free(p);
                return r;
        }
        if (w->tail)
                w->tail->next = p;
        else
                w->head = p;
        w->tail = p;
        w->n++;
        if (w->counter)
                atomic_fetch_add_explicit(w->counter, 1, memory_order_relaxed);
        return 0;
}

uint64_t proxy_wait_deadline(const struct proxy_wait *w, uint64_t timeout_usec) {
        if (!w->head || timeout_usec == 0)
                return UINT64_MAX;
        return w->head->since + timeout_usec;
}

/* Whether p (with events) is done waiting: its header all there and read,
 * or never to be, in o; false while it is coming. */
static bool waiting_read(struct proxy_wait *w, struct proxy_waiting *p, uint32_t events, struct proxy_outcome *o) {
        ssize_t n = recv(p->fd, w->buf, PROXY_HEADER_MAX, MSG_PEEK);
        ssize_t len;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return false;
        o->result = PROXY_WAIT_MALFORMED;
        /* Ended or failed before a header was whole. */
        if (n <= 0)
                return true;
        len = proxy_parse(w->buf, (size_t) n, &o->h);
        /* Incomplete: more may come, unless the peer is done sending. */
        if (len == 0)
                return events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
        /* Exactly the header: what follows is the client's. */
        if (len > 0 && recv(p->fd, w->buf, (size_t) len, 0) == len)
                o->result = PROXY_WAIT_HEADER;
        return true;
}

/* p is done waiting: its outcome goes to done(). */
static void waiting_end(struct proxy_wait *w, struct proxy_waiting *p, struct proxy_outcome *o,
                        void (*done)(void *userdata, const struct proxy_outcome *o), void *userdata) {
        (void) epoll_ctl(w->epfd, EPOLL_CTL_DEL, p->fd, NULL);
        waiting_unlink(w, p);
        o->fd = p->fd;
        o->peer = p->peer;
        free(p);
        done(userdata, o);
}

void proxy_wait_run(struct proxy_wait *w, uint64_t now, uint64_t timeout_usec,
                    void (*done)(void *userdata, const struct proxy_outcome *o), void *userdata) {
        struct epoll_event events[EVENTS_MAX];
        int n = epoll_wait(w->epfd, events, EVENTS_MAX, 0);

        for (int i = 0; i < n; i++) {
                struct proxy_waiting *p = events[i].data.ptr;
                struct proxy_outcome o = { 0 };

                if (waiting_read(w, p, events[i].events, &o))
                        waiting_end(w, p, &o, done, userdata);
        }
        while (w->head && proxy_wait_deadline(w, timeout_usec) <= now) {
                struct proxy_outcome o = { .result = PROXY_WAIT_TIMEOUT };

                waiting_end(w, w->head, &o, done, userdata);
        }
}
