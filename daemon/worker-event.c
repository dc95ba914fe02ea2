/* SPDX-License-Identifier: MIT */
/* The event model: -t N loops, each a thread with its own sd-event loop,
 * all accepting from the same listening sockets and reading the same UDP
 * sockets.  Connections are non-blocking; a connection whose peer does not
 * read stops being read (backpressure) and keeps at most one buffer of
 * replies.
 *
 * Timeouts cost no timer per connection: each loop keeps its connections in
 * FIFO queues, one per kind of deadline (idle, blocked on write, lingering
 * after "."), and since every connection in a queue has the same timeout,
 * the head of each queue is the next to expire.  One timer per loop is armed
 * for the earliest head. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "server.h"
#include "udp.h"
#include "upcase.h"

#define IN_BUF 16384
#define ACCEPT_BUDGET 16
/* After ".", wait this long for the peer's EOF before closing, so that
 * closing with unread input does not reset the connection and destroy the
 * replies still in flight. */
#define LINGER_USEC (2 * USEC_PER_SEC)
/* Out of descriptors: stop accepting for this long. */
#define ACCEPT_PAUSE_USEC (100 * USEC_PER_MSEC)
#define HEARTBEAT_USEC USEC_PER_SEC
/* On stop, a connection that has sent nothing yet may have its first request
 * in flight: it gets this long to arrive. */
#define FIRST_REQUEST_GRACE_USEC USEC_PER_SEC

enum wake_flag {
        WAKE_TIMEOUTS = 1 << 0,
        WAKE_STOP = 1 << 1,
        WAKE_ABORT = 1 << 2,
};

enum conn_queue {
        QUEUE_IDLE,             /* waiting for input */
        QUEUE_WRITE,            /* replies pending, peer not reading */
        QUEUE_LINGER,           /* "." seen, waiting for the peer's EOF */
        QUEUE_GRACE,            /* stopping, waiting for a first request */
        _QUEUE_MAX,
};

struct loop;

struct conn {
        struct loop *loop;
        struct conn *prev, *next;
        enum conn_queue queue;
        uint64_t since;                 /* entered its queue, CLOCK_MONOTONIC */
        sd_event_source *io;
        struct conn_slot *slot;
        int fd;
        bool eof;                       /* the peer closed its side */
        bool draining;                  /* graceful stop: finish and close */
        struct upcase up;
        uint8_t *pending;               /* unsent replies, only while the peer lags */
        size_t pending_len, pending_off;
};

struct conn_list {
        struct conn *head, *tail;
};

struct loop {
        struct server *server;
        struct shared *shared;
        pthread_t thread;
        bool thread_started;
        sd_event *event;
        int wake_fd;
        atomic_uint wake_flags;
        atomic_uint_fast64_t heartbeat;
        atomic_bool done;
        sd_event_source *wake, *timer, *tick;
        sd_event_source *accept_src[CONFIG_MAX_LISTEN];
        size_t n_accept;
        sd_event_source *udp_src[CONFIG_MAX_LISTEN];
        size_t n_udp;
        struct udp_batch *udp;
        struct conn_list queues[_QUEUE_MAX];
        unsigned nconns;
        bool stopping;
        uint64_t timer_at;              /* UINT64_MAX: timer off */
        uint64_t accept_paused_until;   /* 0: accepting */
        uint8_t in[IN_BUF];
        uint8_t out[UPCASE_OUT_MAX(IN_BUF)];
};

struct event_worker {
        unsigned n;
        struct loop *loops[];
};

static uint64_t loop_now(struct loop *l) {
        uint64_t now;

        if (sd_event_now(l->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_usec_monotonic();
        return now;
}

static uint64_t queue_timeout(struct loop *l, enum conn_queue q) {
        switch (q) {
        case QUEUE_IDLE:
                return shared_timeout(l->shared, TIMEOUT_IDLE);
        case QUEUE_WRITE:
                return shared_timeout(l->shared, TIMEOUT_WRITE);
        case QUEUE_LINGER:
                return LINGER_USEC;
        default:
                return FIRST_REQUEST_GRACE_USEC;
        }
}

/* Deadline of a queue's head; UINT64_MAX when empty or the timeout is off. */
static uint64_t queue_deadline(struct loop *l, enum conn_queue q) {
        uint64_t t = queue_timeout(l, q);

        if (!l->queues[q].head || t == 0)
                return UINT64_MAX;
        return l->queues[q].head->since + t;
}

static void loop_arm_timer(struct loop *l, bool recompute) {
        uint64_t at = l->accept_paused_until ? l->accept_paused_until : UINT64_MAX;

        for (int q = 0; q < _QUEUE_MAX; q++) {
                uint64_t d = queue_deadline(l, q);
                if (d < at)
                        at = d;
        }
        /* Deadlines only move later as connections are touched, so a timer
         * that fires early just re-arms; only an earlier deadline needs it
         * set now, unless the timeouts themselves changed. */
        if (!recompute && at >= l->timer_at)
                return;
        l->timer_at = at;
        if (at == UINT64_MAX) {
                sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                return;
        }
        timer_rearm(l->timer, at);
}

static void queue_unlink(struct conn *c) {
        struct conn_list *list = &c->loop->queues[c->queue];

        if (c->prev)
                c->prev->next = c->next;
        else
                list->head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                list->tail = c->prev;
        c->prev = c->next = NULL;
}

static void queue_append(struct conn *c, enum conn_queue q, uint64_t now) {
        struct conn_list *list = &c->loop->queues[q];

        c->queue = q;
        c->since = now;
        c->prev = list->tail;
        c->next = NULL;
        if (list->tail)
                list->tail->next = c;
        else
                list->head = c;
        list->tail = c;
        loop_arm_timer(c->loop, false);
}

static void conn_requeue(struct conn *c, enum conn_queue q, uint64_t now) {
        queue_unlink(c);
        queue_append(c, q, now);
}

static void loop_check_done(struct loop *l) {
        if (l->stopping && l->nconns == 0 && !atomic_load(&l->done)) {
                atomic_store(&l->done, true);
                sd_event_exit(l->event, 0);
        }
}

static void conn_close(struct conn *c, enum close_reason reason) {
        struct loop *l = c->loop;

        atomic_store(&c->slot->close_reason, reason);
        log_conn(c->slot, CLIENT_TCP_CLOSE, reason);
        conn_slot_release(l->shared, c->slot);
        queue_unlink(c);
        sd_event_source_disable_unref(c->io);
        close(c->fd);
        free(c->pending);
        free(c);
        l->nconns--;
        loop_check_done(l);
}

/* Sends buf; keeps what the peer cannot take yet.  Returns -errno on a
 * send error. */
static int conn_send(struct conn *c, const uint8_t *buf, size_t len, uint64_t now) {
        ssize_t n = 0;

        while (len > 0) {
                n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        return -errno;
                if (n < 0)
                        break;
                conn_slot_traffic(c->loop->shared, c->slot, 0, n, now);
                buf += n;
                len -= n;
        }
        if (len == 0)
                return 0;
        c->pending = malloc(len);
        if (!c->pending)
                return -ENOMEM;
        memcpy(c->pending, buf, len);
        c->pending_len = len;
        c->pending_off = 0;
        return 0;
}

/* Nothing is owed any more: close, or linger after ".". */
static void conn_finish(struct conn *c, uint64_t now) {
        if (c->up.quit && !c->eof) {
                /* Tell the peer we are done, then read and discard until its
                 * EOF so that our close does not reset the connection. */
                shutdown(c->fd, SHUT_WR);
                sd_event_source_set_io_events(c->io, EPOLLIN);
                conn_requeue(c, QUEUE_LINGER, now);
                return;
        }
        conn_close(c, c->up.quit ? CLOSE_QUIT : c->eof ? CLOSE_EOF : CLOSE_SHUTDOWN);
}

/* After replies were produced or flushed: wait for the peer to read them,
 * finish, or wait for more input. */
static void conn_settle(struct conn *c, uint64_t now) {
        if (c->pending) {
                sd_event_source_set_io_events(c->io, EPOLLOUT);
                if (c->queue != QUEUE_WRITE)
                        conn_requeue(c, QUEUE_WRITE, now);
                return;
        }
        if (c->up.quit || c->eof || c->draining) {
                conn_finish(c, now);
                return;
        }
        sd_event_source_set_io_events(c->io, EPOLLIN);
        conn_requeue(c, QUEUE_IDLE, now);
}

/* Returns false when the connection was closed. */
static bool conn_read(struct conn *c, uint64_t now) {
        struct loop *l = c->loop;
        uint64_t invalid = 0;
        size_t out;
        ssize_t n;
        int r;

        n = recv(c->fd, l->in, sizeof(l->in), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        if (n < 0) {
                conn_close(c, c->queue == QUEUE_LINGER ? CLOSE_QUIT : CLOSE_ERROR);
                return false;
        }
        if (c->queue == QUEUE_LINGER) {
                if (n == 0)
                        conn_close(c, CLOSE_QUIT);
                return n > 0;
        }
        c->eof = n == 0;
        out = upcase_feed(&c->up, l->in, n, c->eof, l->out, &invalid);
        if (invalid)
                COUNTER_ADD(l->shared, invalid_utf8, invalid);
        conn_slot_traffic(l->shared, c->slot, n, 0, now);
        r = conn_send(c, l->out, out, now);
        if (r < 0) {
                conn_close(c, CLOSE_ERROR);
                return false;
        }
        return true;
}

static bool conn_flush(struct conn *c, uint64_t now) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        if (n < 0) {
                conn_close(c, CLOSE_ERROR);
                return false;
        }
        conn_slot_traffic(c->loop->shared, c->slot, 0, n, now);
        c->pending_off += n;
        if (c->pending_off == c->pending_len) {
                free(c->pending);
                c->pending = NULL;
        } else if (n > 0) {
                /* The write timeout is for a peer that reads nothing; one
                 * that reads slowly restarts it. */
                conn_requeue(c, QUEUE_WRITE, now);
        }
        return true;
}

static int conn_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct conn *c = userdata;
        uint64_t now = loop_now(c->loop);

        if (c->pending) {
                if (!conn_flush(c, now))
                        return 0;
        } else if (!conn_read(c, now))
                return 0;
        if (c->queue != QUEUE_LINGER)
                conn_settle(c, now);
        return 0;
}

static void conn_new(struct loop *l, int fd, const union sockaddr_union *peer) {
        uint64_t now = loop_now(l);
        struct conn_slot *slot;
        struct conn *c;
        int one = 1;

        slot = conn_slot_take(l->shared, peer);
        if (!slot) {
                close(fd);
                log_rejected(peer);
                return;
        }
        c = calloc(1, sizeof(*c));
        if (!c || sd_event_add_io(l->event, &c->io, fd, EPOLLIN, conn_on_io, c) < 0) {
                free(c);
                atomic_store(&slot->close_reason, CLOSE_ERROR);
                conn_slot_release(l->shared, slot);
                close(fd);
                return;
        }
        /* Replies go out as soon as input arrives, byte by byte if need be. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->loop = l;
        c->fd = fd;
        c->slot = slot;
        upcase_init(&c->up, true);
        l->nconns++;
        queue_append(c, QUEUE_IDLE, now);
        log_conn(slot, CLIENT_TCP_OPEN, CLOSE_ERROR);
}

static void loop_set_accepting(struct loop *l, bool on) {
        for (size_t i = 0; i < l->n_accept; i++)
                sd_event_source_set_enabled(l->accept_src[i], on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int loop_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct loop *l = userdata;

        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                union sockaddr_union peer;
                socklen_t len = sizeof(peer);
                int cfd = accept4(fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd >= 0) {
                        conn_new(l, cfd, &peer);
                        continue;
                }
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* Retrying at once would spin: pause, the timer resumes. */
                        log_warning_errno(errno, "Failed to accept a connection, pausing accepts: %m");
                        l->accept_paused_until = loop_now(l) + ACCEPT_PAUSE_USEC;
                        loop_set_accepting(l, false);
                        loop_arm_timer(l, false);
                }
                break;
        }
        return 0;
}

static int loop_on_udp(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct loop *l = userdata;
        int r = udp_serve(l->udp, fd);

        if (r < 0)
                log_debug("UDP receive failed, ignoring: %s", strerror(-r));
        return 0;
}

static void queue_expire(struct loop *l, enum conn_queue q, uint64_t now) {
        static const enum close_reason reasons[_QUEUE_MAX] = {
                [QUEUE_IDLE] = CLOSE_IDLE,
                [QUEUE_WRITE] = CLOSE_WRITE,
                [QUEUE_LINGER] = CLOSE_QUIT,
                [QUEUE_GRACE] = CLOSE_SHUTDOWN,
        };

        while (queue_deadline(l, q) <= now)
                conn_close(l->queues[q].head, reasons[q]);
}

static int loop_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        struct loop *l = userdata;
        uint64_t now = loop_now(l);

        for (int q = 0; q < _QUEUE_MAX; q++)
                queue_expire(l, q, now);
        if (l->accept_paused_until && l->accept_paused_until <= now) {
                l->accept_paused_until = 0;
                if (!l->stopping)
                        loop_set_accepting(l, true);
        }
        l->timer_at = UINT64_MAX;
        loop_arm_timer(l, true);
        return 0;
}

static int loop_on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        struct loop *l = userdata;

        atomic_store(&l->heartbeat, usec);
        return timer_rearm(es, usec + HEARTBEAT_USEC);
}

static void loop_close_all(struct loop *l, enum close_reason reason) {
        for (int q = 0; q < _QUEUE_MAX; q++)
                while (l->queues[q].head)
                        conn_close(l->queues[q].head, reason);
}

static void loop_stop(struct loop *l) {
        uint64_t now = loop_now(l);

        l->stopping = true;
        loop_set_accepting(l, false);
        for (size_t i = 0; i < l->n_udp; i++)
                sd_event_source_set_enabled(l->udp_src[i], SD_EVENT_OFF);

        /* Answer what the peers already sent, then close.  Connections
         * waiting on their peer finish when it has read its replies. */
        while (l->queues[QUEUE_IDLE].head) {
                struct conn *c = l->queues[QUEUE_IDLE].head;

                c->draining = true;
                if (atomic_load_explicit(&c->slot->bytes_in, memory_order_relaxed) == 0)
                        conn_requeue(c, QUEUE_GRACE, now);
                else if (conn_read(c, now))
                        conn_settle(c, now);
        }
        for (struct conn *c = l->queues[QUEUE_WRITE].head; c; c = c->next)
                c->draining = true;
        loop_check_done(l);
}

static int loop_on_wake(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct loop *l = userdata;
        uint64_t v;
        unsigned flags;

        /* Resets the eventfd; the flags say what happened. */
        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug("Failed to read the wake-up event, ignoring: %s", strerror(errno));
        flags = atomic_exchange(&l->wake_flags, 0);
        if (flags & WAKE_ABORT) {
                l->stopping = true;
                loop_close_all(l, CLOSE_SHUTDOWN);
                atomic_store(&l->done, true);
                return sd_event_exit(l->event, 0);
        }
        if ((flags & WAKE_STOP) && !l->stopping)
                loop_stop(l);
        if (flags & WAKE_TIMEOUTS)
                loop_arm_timer(l, true);
        return 0;
}

static void loop_wake(struct loop *l, unsigned flag) {
        uint64_t one = 1;

        atomic_fetch_or(&l->wake_flags, flag);
        /* EAGAIN: the counter is pending already, the loop wakes anyway. */
        if (write(l->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_warning_errno(errno, "Failed to wake an event loop, ignoring: %m");
}

static void loop_free(struct loop *l) {
        if (!l)
                return;
        loop_close_all(l, CLOSE_SHUTDOWN);
        for (size_t i = 0; i < l->n_accept; i++)
                sd_event_source_disable_unref(l->accept_src[i]);
        for (size_t i = 0; i < l->n_udp; i++)
                sd_event_source_disable_unref(l->udp_src[i]);
        sd_event_source_disable_unref(l->wake);
        sd_event_source_disable_unref(l->timer);
        sd_event_source_disable_unref(l->tick);
        sd_event_unref(l->event);
        if (l->wake_fd >= 0)
                close(l->wake_fd);
        udp_batch_free(l->udp);
        free(l);
}

static int loop_add_sources(struct loop *l, const struct listeners *ls) {
        uint64_t now = now_usec_monotonic();
        int r;

        for (size_t i = 0; i < ls->n_tcp; i++) {
                r = sd_event_add_io(l->event, &l->accept_src[l->n_accept], ls->tcp[i], EPOLLIN,
                                    loop_on_accept, l);
                if (r < 0)
                        return r;
                l->n_accept++;
        }
        for (size_t i = 0; i < ls->n_udp; i++) {
                r = sd_event_add_io(l->event, &l->udp_src[l->n_udp], ls->udp[i], EPOLLIN, loop_on_udp, l);
                if (r < 0)
                        return r;
                l->n_udp++;
        }
        r = sd_event_add_io(l->event, &l->wake, l->wake_fd, EPOLLIN, loop_on_wake, l);
        if (r < 0)
                return r;
        r = sd_event_add_time(l->event, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, loop_on_timer, l);
        if (r < 0)
                return r;
        sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        return sd_event_add_time(l->event, &l->tick, CLOCK_MONOTONIC, now, 0, loop_on_tick, l);
}

static int loop_new(struct server *s, struct loop **ret) {
        struct loop *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->server = s;
        l->shared = s->shared;
        l->timer_at = UINT64_MAX;
        atomic_store(&l->heartbeat, now_usec_monotonic());
        l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->wake_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = udp_batch_new(s->shared, &l->udp);
        if (r < 0)
                goto fail;
        r = sd_event_new(&l->event);
        if (r < 0)
                goto fail;
        r = loop_add_sources(l, &s->listeners);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        loop_free(l);
        return r;
}

static void *loop_run(void *userdata) {
        struct loop *l = userdata;
        int r = sd_event_loop(l->event);

        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        return NULL;
}

static int event_start(struct server *s) {
        unsigned n = s->config.threads;
        struct event_worker *w = calloc(1, sizeof(*w) + n * sizeof(w->loops[0]));
        int r;

        if (!w)
                return -ENOMEM;
        s->worker = w;
        for (w->n = 0; w->n < n; w->n++) {
                r = loop_new(s, &w->loops[w->n]);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < n; i++) {
                r = -pthread_create(&w->loops[i]->thread, NULL, loop_run, w->loops[i]);
                if (r < 0)
                        return r;
                w->loops[i]->thread_started = true;
        }
        return 0;
}

static void event_wake_all(struct server *s, unsigned flag) {
        struct event_worker *w = s->worker;

        for (unsigned i = 0; w && i < w->n; i++)
                loop_wake(w->loops[i], flag);
}

static void event_timeouts_changed(struct server *s) {
        event_wake_all(s, WAKE_TIMEOUTS);
}

static void event_stop(struct server *s) {
        event_wake_all(s, WAKE_STOP);
}

static bool event_drained(struct server *s) {
        struct event_worker *w = s->worker;

        for (unsigned i = 0; i < w->n; i++)
                if (!atomic_load(&w->loops[i]->done))
                        return false;
        return true;
}

static void event_finish(struct server *s) {
        struct event_worker *w = s->worker;

        if (!w)
                return;
        for (unsigned i = 0; i < w->n; i++) {
                struct loop *l = w->loops[i];

                if (l->thread_started) {
                        if (!atomic_load(&l->done))
                                loop_wake(l, WAKE_ABORT);
                        pthread_join(l->thread, NULL);
                }
                loop_free(l);
        }
        free(w);
        s->worker = NULL;
}

static bool event_alive(struct server *s, uint64_t now, uint64_t timeout) {
        struct event_worker *w = s->worker;

        for (unsigned i = 0; i < w->n; i++) {
                struct loop *l = w->loops[i];

                if (!atomic_load(&l->done) && atomic_load(&l->heartbeat) + timeout < now)
                        return false;
        }
        return true;
}

const struct worker_ops worker_event_ops = {
        .name = "event",
        .start = event_start,
        .timeouts_changed = event_timeouts_changed,
        .stop = event_stop,
        .drained = event_drained,
        .finish = event_finish,
        .alive = event_alive,
};
