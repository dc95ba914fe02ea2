/* SPDX-License-Identifier: MIT */
/* The event model: -t N loops, each a thread with its own epoll loop, all
 * accepting from the same listening sockets and reading the same UDP
 * sockets.  Connections are non-blocking; a connection whose peer does not
 * read stops being read (backpressure) and keeps at most one buffer of
 * replies.
 *
 * These loops use epoll directly rather than sd-event: sd-event dispatches
 * one event per iteration and polls the kernel again before each, which
 * costs one epoll_wait() per request and, with level-triggered sockets, a
 * re-poll of every ready connection each time.  bench/run measures it with
 * the same echo server on both (bench/echo-sdevent.c against echo-ref epoll,
 * 64 ping-pong connections): sd-event takes about 2.5 times the CPU per
 * request and reaches 0.4 times the requests per second.  The main loop
 * (signals, control socket, watchdog, child processes) stays on sd-event.
 *
 * Timeouts cost no timer per connection: each loop keeps its connections in
 * FIFO queues, one per kind of deadline (idle, blocked on write, lingering
 * after ".", draining on stop), and since every connection in a queue has
 * the same timeout, the head of each queue is the next to expire.  The loop
 * sleeps until the earliest head.
 *
 * Busy connections do not hold up the others.  epoll's ready list is a
 * FIFO, and with level-triggered descriptors a connection that always has
 * input waiting is put back at its tail each time it is reported: a request
 * on another connection, or a new connection on a listening socket, waited
 * behind every busy one, each served a whole read, transform and send (2,000
 * streaming peers: a round trip took 40 ms, 80 ms at p99, a new connection
 * twice that; bench/run --busy).  So a connection whose read filled the
 * buffer leaves epoll (it watches nothing but errors) for the loop's run
 * queue (one more of those queues, without a deadline: busy is not idle),
 * where the busy ones take turns, RUN_BUDGET reads per loop iteration;
 * everything epoll reports is served before.  A read that does not fill the
 * buffer puts the connection back in epoll. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"

#define EVENTS_MAX 256
/* Reads from the run queue per loop iteration, each up to CONN_READ_MAX
 * (about 20 us): a descriptor that becomes ready waits for that many at most
 * besides what epoll reports before it, and the busy connections cost an
 * epoll_wait() every 16 reads, not every read. */
#define RUN_BUDGET 16
/* A loop wakes at least this often, to show the watchdog it is alive. */
#define HEARTBEAT_USEC USEC_PER_SEC
#define WATCHES_MAX 16

enum wake_flag {
        WAKE_TIMEOUTS = 1 << 0,
        WAKE_STOP = 1 << 1,
        WAKE_ABORT = 1 << 2,
        WAKE_KILL = 1 << 3,             /* a connection was asked to close (conn_slot_killed()) */
};

enum conn_queue {
        QUEUE_IDLE,             /* waiting for input */
        QUEUE_WRITE,            /* replies pending, peer not reading */
        QUEUE_LINGER,           /* "." seen or killed, waiting for the peer's EOF */
        QUEUE_DRAIN,            /* stopping: a first request, or more input, to come */
        QUEUE_RUN,              /* busy: more input waiting, served in turns */
        _QUEUE_MAX,
};

/* What an epoll event points at: the first member of each watched object. */
enum watch_kind {
        WATCH_CONN,
        WATCH_ACCEPT,
        WATCH_ACCEPT_PROXIED,   /* a proxied listener */
        WATCH_PROXY_WAIT,       /* connections waiting for their PROXY header */
        WATCH_UDP,
        WATCH_WAKE,
};

struct watch {
        enum watch_kind kind;
        int fd;
};

struct loop;

struct conn {
        struct watch watch;
        struct loop *loop;
        TAILQ_ENTRY(conn) link;         /* in its queue, then in the dead list */
        enum conn_queue queue;
        uint64_t since;                 /* entered its queue, CLOCK_MONOTONIC */
        uint32_t events;                /* what epoll watches for */
        struct conn_slot *slot;
        bool closed;                    /* freed after the current batch */
        bool eof;                       /* the peer closed its side */
        bool draining;                  /* graceful stop: finish, or hand over */
        bool handover_failed;           /* the store refused it: drained as on a plain stop */
        bool more;                      /* the last read filled the buffer */
        bool killed;                    /* uppercasectl kill: close once the replies are sent */
        struct upcase up;
        uint8_t *pending;               /* unsent replies, only while the peer lags */
        size_t pending_len, pending_off;
};

TAILQ_HEAD(conn_list, conn);

struct loop {
        struct shared *shared;
        pthread_t thread;
        bool thread_started;
        int epfd;
        struct watch wake;
        atomic_uint wake_flags;
        atomic_uint_fast64_t heartbeat;
        atomic_bool done;
        bool running;
        struct conn_admission admission;
        struct watch accept[2 * WATCHES_MAX];   /* direct and proxied listeners */
        size_t n_accept;
        bool shut_listeners;                    /* worker_env */
        struct proxy_wait proxy;        /* epfd -1: no proxied listener */
        struct watch proxy_watch;
        struct watch udp_watch[WATCHES_MAX];
        size_t n_udp;
        struct udp_batch *udp;
        struct handover *handover;      /* on stop, NULL: close connections */
        uint64_t handover_warned;       /* last "failed to hand over" warning */
        struct conn_list queues[_QUEUE_MAX];
        struct conn_list dead;          /* closed during this batch */
        unsigned nconns;
        bool stopping;
        uint64_t stop_at;               /* when the stop came, CLOCK_MONOTONIC */
        bool wait_over;                 /* HANDOVER_WAIT_USEC since stop_at */
        uint64_t now;                   /* CLOCK_MONOTONIC, once per batch */
        uint64_t accept_paused_until;   /* 0: accepting */
        uint64_t accept_warned;         /* last "pausing accepts" warning */
        uint8_t in[CONN_READ_MAX];
        uint8_t out[UPCASE_OUT_MAX(CONN_READ_MAX)];
};

struct worker {
        unsigned n;
        struct loop *loops[];
};

static uint64_t queue_timeout(struct loop *l, enum conn_queue q) {
        switch (q) {
        case QUEUE_IDLE:
                return shared_timeout(l->shared, TIMEOUT_IDLE);
        case QUEUE_WRITE:
                return shared_timeout(l->shared, TIMEOUT_WRITE);
        case QUEUE_LINGER:
                return LINGER_USEC;
        case QUEUE_RUN:
                return 0;               /* busy, not idle */
        default:
                return FIRST_REQUEST_GRACE_USEC;
        }
}

/* Deadline of a queue's head; UINT64_MAX when empty or the timeout is off. */
static uint64_t queue_deadline(struct loop *l, enum conn_queue q) {
        uint64_t t = queue_timeout(l, q);

        if (TAILQ_EMPTY(&l->queues[q]) || t == 0)
                return UINT64_MAX;
        return TAILQ_FIRST(&l->queues[q])->since + t;
}

/* When the stop's wait for a hand-over ends (UINT64_MAX: none to come). */
static uint64_t loop_wait_deadline(const struct loop *l) {
        return l->stopping && l->handover && !l->wait_over ? l->stop_at + HANDOVER_WAIT_USEC : UINT64_MAX;
}

/* How long epoll_wait() may sleep: until the earliest deadline, at most a
 * heartbeat; in milliseconds, rounded up so that it never wakes early.  Not
 * at all while busy connections wait for their turn. */
static int loop_sleep_msec(struct loop *l) {
        uint64_t at = l->now + HEARTBEAT_USEC;

        if (!TAILQ_EMPTY(&l->queues[QUEUE_RUN]))
                return 0;
        if (l->accept_paused_until && l->accept_paused_until < at)
                at = l->accept_paused_until;
        if (l->proxy.epfd >= 0 && conn_proxied_deadline(&l->admission, &l->proxy) < at)
                at = conn_proxied_deadline(&l->admission, &l->proxy);
        if (loop_wait_deadline(l) < at)
                at = loop_wait_deadline(l);
        for (int q = 0; q < _QUEUE_MAX; q++) {
                uint64_t d = queue_deadline(l, q);
                if (d < at)
                        at = d;
        }
        if (at <= l->now)
                return 0;
        return (int) ((at - l->now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
}

static void conn_requeue(struct conn *c, enum conn_queue q, uint64_t now) {
        struct loop *l = c->loop;

        TAILQ_REMOVE(&l->queues[c->queue], c, link);
        c->queue = q;
        c->since = now;
        TAILQ_INSERT_TAIL(&l->queues[q], c, link);
}

static void conn_set_events(struct conn *c, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = &c->watch };

        if (c->events == events)
                return;
        c->events = events;
        (void) epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->watch.fd, &ev);
}

static void loop_check_done(struct loop *l) {
        if (l->stopping && l->nconns == 0 && !atomic_load(&l->done)) {
                atomic_store(&l->done, true);
                l->running = false;
        }
}

static void conn_close(struct conn *c, enum close_reason reason) {
        struct loop *l = c->loop;

        conn_end(l->shared, c->slot, reason);
        TAILQ_REMOVE(&l->queues[c->queue], c, link);
        /* Closing the descriptor also takes it out of the epoll set. */
        close(c->watch.fd);
        free(c->pending);
        c->pending = NULL;
        /* Other events of this batch may still point at it. */
        c->closed = true;
        TAILQ_INSERT_TAIL(&l->dead, c, link);
        l->nconns--;
        loop_check_done(l);
}

/* The connection goes to the file descriptor store with its state instead
 * of being closed.  Returns false (changing nothing but its
 * handover_failed) when the store refuses it. */
static bool conn_store(struct conn *c) {
        struct loop *l = c->loop;
        const uint8_t *pending = c->pending ? c->pending + c->pending_off : NULL;
        size_t pending_len = c->pending ? c->pending_len - c->pending_off : 0;
        int r = conn_hand_over(l->handover, c->slot, c->watch.fd, &c->up, pending, pending_len);

        if (r < 0) {
                if (warning_due(&l->handover_warned, l->now))
                        log_warning_errno(r, "Failed to hand over connection %" PRIu64 ", closing it as on a "
                                          "stop: %m", (uint64_t) atomic_load(&c->slot->id));
                c->handover_failed = true;
                return false;
        }
        conn_close(c, CLOSE_HANDOVER);
        return true;
}

static void loop_free_dead(struct loop *l) {
        struct conn *c;

        while ((c = TAILQ_FIRST(&l->dead))) {
                TAILQ_REMOVE(&l->dead, c, link);
                free(c);
        }
}

/* Sends buf; keeps what the peer cannot take yet.  Returns -errno on a
 * send error. */
static int conn_send(struct conn *c, const uint8_t *buf, size_t len, uint64_t now) {
        ssize_t n = 0;

        while (len > 0) {
                n = send(c->watch.fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
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

/* How a lingering connection ends. */
static enum close_reason conn_linger_reason(const struct conn *c) {
        return c->killed ? CLOSE_KILLED : CLOSE_QUIT;
}

/* Nothing is owed any more: close, or linger after "." or a kill. */
static void conn_finish(struct conn *c, uint64_t now) {
        if ((c->up.quit || c->killed) && !c->eof) {
                /* Tell the peer we are done, then read and discard until its
                 * EOF so that our close does not reset the connection. */
                shutdown(c->watch.fd, SHUT_WR);
                conn_set_events(c, EPOLLIN);
                conn_requeue(c, QUEUE_LINGER, now);
                return;
        }
        conn_close(c, c->killed ? CLOSE_KILLED : c->up.quit ? CLOSE_QUIT : c->eof ? CLOSE_EOF : CLOSE_SHUTDOWN);
}

/* Where a stopping connection is at (conn.h). */
static struct drain_view conn_drain_view(struct conn *c, uint64_t now) {
        struct loop *l = c->loop;

        return (struct drain_view) {
                .handover = l->handover && !c->handover_failed,
                .ended = c->up.quit || c->eof,
                .received = atomic_load_explicit(&c->slot->bytes_in, memory_order_relaxed) > 0,
                .input_waiting = conn_input_waiting(c->watch.fd),
                .replies_pending = c->pending != NULL,
                .grace_over = now >= l->stop_at + FIRST_REQUEST_GRACE_USEC,
                .wait_over = l->wait_over,
        };
}

/* Stopping: the connection's next step (drain_next()).  Input it waits
 * for is answered a read per wake, so as not to hold up the others. */
static void conn_drain(struct conn *c, uint64_t now) {
        for (;;) {
                struct drain_view v = conn_drain_view(c, now);

                switch (drain_next(&v)) {
                case DRAIN_FLUSH:
                        conn_set_events(c, EPOLLOUT);
                        if (c->queue != QUEUE_WRITE)
                                conn_requeue(c, QUEUE_WRITE, now);
                        return;
                case DRAIN_ANSWER:
                case DRAIN_WAIT_REQUEST:
                        conn_set_events(c, EPOLLIN);
                        conn_requeue(c, QUEUE_DRAIN, now);
                        return;
                case DRAIN_HAND_OVER:
                        if (conn_store(c))
                                return;
                        break;
                case DRAIN_CLOSE:
                        conn_finish(c, now);
                        return;
                }
        }
}

/* After replies were produced or flushed: wait for the peer to read them,
 * finish, or wait for more input (its turn in the run queue when its read
 * filled the buffer: not reported by epoll meanwhile, it does not delay
 * what epoll reports). */
static void conn_settle(struct conn *c, uint64_t now) {
        if (c->draining) {
                conn_drain(c, now);
                return;
        }
        if (c->pending) {
                conn_set_events(c, EPOLLOUT);
                if (c->queue != QUEUE_WRITE)
                        conn_requeue(c, QUEUE_WRITE, now);
                return;
        }
        if (c->up.quit || c->eof || c->killed) {
                conn_finish(c, now);
                return;
        }
        if (c->more) {
                conn_set_events(c, 0);
                conn_requeue(c, QUEUE_RUN, now);
                return;
        }
        conn_set_events(c, EPOLLIN);
        conn_requeue(c, QUEUE_IDLE, now);
}

/* Returns false when the connection was closed. */
static bool conn_read(struct conn *c, uint64_t now) {
        struct loop *l = c->loop;
        uint64_t invalid = 0;
        size_t out;
        ssize_t n;
        int r;

        n = recv(c->watch.fd, l->in, sizeof(l->in), MSG_DONTWAIT);
        /* A full read most likely left input waiting. */
        c->more = n == (ssize_t) sizeof(l->in);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return true;
        if (n < 0) {
                conn_close(c, c->queue == QUEUE_LINGER ? conn_linger_reason(c) : CLOSE_ERROR);
                return false;
        }
        if (c->queue == QUEUE_LINGER) {
                if (n == 0)
                        conn_close(c, conn_linger_reason(c));
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
        ssize_t n = send(c->watch.fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
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

static void conn_on_io(struct conn *c) {
        uint64_t now = c->loop->now;

        if (c->pending) {
                if (!conn_flush(c, now))
                        return;
        } else if (!conn_read(c, now))
                return;
        if (c->queue != QUEUE_LINGER)
                conn_settle(c, now);
}

/* Serves fd, whose slot is taken, from this loop.  On failure closes both. */
static struct conn *conn_attach(struct loop *l, int fd, struct conn_slot *slot) {
        struct epoll_event ev = { .events = EPOLLIN };
        struct conn *c = calloc(1, sizeof(*c));
        int one = 1;

        if (c) {
                *c = (struct conn) {
                        .watch = { WATCH_CONN, fd },
                        .loop = l,
                        .slot = slot,
                        .events = EPOLLIN,
                        .queue = QUEUE_IDLE,
                        .since = l->now,
                };
                ev.data.ptr = &c->watch;
        }
        if (!c || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                free(c);
                close(fd);
                conn_end(l->shared, slot, CLOSE_ERROR);
                return NULL;
        }
        /* Replies go out as soon as input arrives, byte by byte if need be. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        upcase_init(&c->up, true);
        l->nconns++;
        TAILQ_INSERT_TAIL(&l->queues[QUEUE_IDLE], c, link);
        return c;
}

/* conn_accept() admitted a connection. */
static void loop_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        conn_attach(userdata, fd, slot);
}

/* A connection the previous instance handed over, with its state. */
static void conn_resume_here(struct loop *l, struct resumed_conn *rc) {
        struct conn *c = conn_attach(l, rc->fd, rc->slot);

        rc->fd = -1;
        if (!c)
                return;
        c->up = rc->up;
        if (rc->pending_len == 0)
                return;
        c->pending = malloc(rc->pending_len);
        if (!c->pending) {
                conn_close(c, CLOSE_ERROR);
                return;
        }
        memcpy(c->pending, rc->pending, rc->pending_len);
        c->pending_len = rc->pending_len;
        conn_settle(c, l->now);
}

static int loop_watch(struct loop *l, struct watch *w, enum watch_kind kind, int fd) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };

        *w = (struct watch) { kind, fd };
        return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static void loop_set_accepting(struct loop *l, bool on) {
        for (size_t i = 0; i < l->n_accept; i++) {
                struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.ptr = &l->accept[i] };

                (void) epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->accept[i].fd, &ev);
        }
}

static void loop_on_accept(struct loop *l, const struct watch *w) {
        int err = w->kind == WATCH_ACCEPT_PROXIED ? conn_accept_proxied(&l->admission, &l->proxy, w->fd)
                                                  : conn_accept(&l->admission, w->fd);

        if (err) {
                /* Retrying at once would spin: loop_run_timers() resumes. */
                l->accept_paused_until = accept_pause(&l->accept_warned, l->now, err);
                loop_set_accepting(l, false);
        }
}

static void loop_on_udp(struct loop *l, int fd) {
        int r = udp_serve(l->udp, fd);

        if (r < 0)
                log_debug("UDP receive failed, ignoring: %s", strerror(-r));
}

static void queue_expire(struct loop *l, enum conn_queue q) {
        static const enum close_reason reasons[_QUEUE_MAX] = {
                [QUEUE_IDLE] = CLOSE_IDLE,
                [QUEUE_WRITE] = CLOSE_WRITE,
                [QUEUE_LINGER] = CLOSE_QUIT,
        };

        while (queue_deadline(l, q) <= l->now) {
                struct conn *c = TAILQ_FIRST(&l->queues[q]);

                /* Draining: the grace for a first request is over; it is
                 * decided again, and leaves the queue or waits anew. */
                if (q == QUEUE_DRAIN)
                        conn_drain(c, l->now);
                else
                        conn_close(c, q == QUEUE_LINGER ? conn_linger_reason(c) : reasons[q]);
        }
}

/* HANDOVER_WAIT_USEC after the stop: what is still owed travels with the
 * connections still draining.  Since the stop, those are in the write and
 * drain queues (lingering ones owe nothing). */
static void loop_hand_over_rest(struct loop *l) {
        struct conn *c, *next;
        size_t n = 0;

        l->wait_over = true;
        for (c = TAILQ_FIRST(&l->queues[QUEUE_WRITE]); c; c = next) {
                next = TAILQ_NEXT(c, link);
                if (c->draining)
                        conn_drain(c, l->now);
        }
        /* One that stays is put back at the tail: each is decided once. */
        TAILQ_FOREACH(c, &l->queues[QUEUE_DRAIN], link)
                n++;
        while (n-- > 0)
                conn_drain(TAILQ_FIRST(&l->queues[QUEUE_DRAIN]), l->now);
}

static void loop_run_timers(struct loop *l) {
        if (loop_wait_deadline(l) <= l->now)
                loop_hand_over_rest(l);
        if (l->proxy.epfd >= 0 && conn_proxied_deadline(&l->admission, &l->proxy) <= l->now)
                conn_proxied_run(&l->admission, &l->proxy, l->now);
        for (int q = 0; q < _QUEUE_MAX; q++)
                queue_expire(l, q);
        if (l->accept_paused_until && l->accept_paused_until <= l->now) {
                l->accept_paused_until = 0;
                if (!l->stopping)
                        loop_set_accepting(l, true);
        }
}

static void loop_close_all(struct loop *l, enum close_reason reason) {
        for (int q = 0; q < _QUEUE_MAX; q++)
                while (!TAILQ_EMPTY(&l->queues[q]))
                        conn_close(TAILQ_FIRST(&l->queues[q]), reason);
}

static void loop_stop(struct loop *l) {
        struct conn *c;

        /* Before anything stops: what the backlog holds is taken, and
         * drains below like the rest. */
        for (size_t i = 0; i < l->n_accept; i++)
                conn_accept_last(&l->admission, l->accept[i].kind == WATCH_ACCEPT_PROXIED ? &l->proxy : NULL,
                                 l->accept[i].fd, l->shut_listeners);
        l->stopping = true;
        l->stop_at = l->now;
        /* Out of the set, not just unwatched: a listener shut on stop
         * (conn_accept_last()) reports EPOLLHUP whatever it is watched for. */
        for (size_t i = 0; i < l->n_accept; i++)
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->accept[i].fd, NULL);
        /* Not clients yet: their balancer tries another instance. */
        proxy_wait_done(&l->proxy);
        for (size_t i = 0; i < l->n_udp; i++)
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->udp_watch[i].fd, NULL);

        /* Every connection drains (conn_drain()); those waiting on their
         * peer go on when it has read its replies. */
        TAILQ_FOREACH(c, &l->queues[QUEUE_WRITE], link)
                c->draining = true;
        while ((c = TAILQ_FIRST(&l->queues[QUEUE_RUN])) || (c = TAILQ_FIRST(&l->queues[QUEUE_IDLE]))) {
                c->draining = true;
                conn_drain(c, l->now);
        }
        loop_check_done(l);
}

/* The connections asked to close: those waiting for input or their turn
 * finish now (the input they read is answered), those whose peer lags
 * once it has read its replies (conn_settle()). */
static void loop_kill(struct loop *l) {
        static const enum conn_queue queues[] = { QUEUE_IDLE, QUEUE_RUN, QUEUE_WRITE, QUEUE_DRAIN };

        for (size_t i = 0; i < sizeof(queues) / sizeof(queues[0]); i++) {
                struct conn *c, *next;

                for (c = TAILQ_FIRST(&l->queues[queues[i]]); c; c = next) {
                        next = TAILQ_NEXT(c, link);
                        if (c->killed || !conn_slot_killed(c->slot))
                                continue;
                        c->killed = true;
                        c->draining = false;
                        if (!c->pending)
                                conn_finish(c, l->now);
                }
        }
}

static void loop_on_wake(struct loop *l) {
        uint64_t v;
        unsigned flags;

        /* Resets the eventfd; the flags say what happened. */
        if (read(l->wake.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                log_debug("Failed to read the wake-up event, ignoring: %s", strerror(errno));
        flags = atomic_exchange(&l->wake_flags, 0);
        if (flags & WAKE_ABORT) {
                l->stopping = true;
                loop_close_all(l, CLOSE_SHUTDOWN);
                atomic_store(&l->done, true);
                l->running = false;
                return;
        }
        if ((flags & WAKE_STOP) && !l->stopping)
                loop_stop(l);
        if (flags & WAKE_KILL)
                loop_kill(l);
        /* WAKE_TIMEOUTS needs nothing more: the next sleep is computed from
         * the live timeouts. */
}

static void loop_dispatch(struct loop *l, struct watch *w) {
        switch (w->kind) {
        case WATCH_CONN: {
                struct conn *c = (struct conn *) w;

                if (!c->closed)
                        conn_on_io(c);
                break;
        }
        case WATCH_ACCEPT:
        case WATCH_ACCEPT_PROXIED:
                if (!l->stopping && !l->accept_paused_until)
                        loop_on_accept(l, w);
                break;
        case WATCH_PROXY_WAIT:
                if (!l->stopping)
                        conn_proxied_run(&l->admission, &l->proxy, l->now);
                break;
        case WATCH_UDP:
                if (!l->stopping)
                        loop_on_udp(l, w->fd);
                break;
        case WATCH_WAKE:
                loop_on_wake(l);
                break;
        }
}

/* The busy connections' turns: a read each, RUN_BUDGET at most, those that
 * stay busy going back to the tail. */
static void loop_run_queue(struct loop *l) {
        for (int i = 0; i < RUN_BUDGET && l->running && !TAILQ_EMPTY(&l->queues[QUEUE_RUN]); i++)
                conn_on_io(TAILQ_FIRST(&l->queues[QUEUE_RUN]));
}

static void *loop_run(void *userdata) {
        struct loop *l = userdata;
        struct epoll_event events[EVENTS_MAX];

        while (l->running) {
                int n = epoll_wait(l->epfd, events, EVENTS_MAX, loop_sleep_msec(l));

                if (n < 0 && errno != EINTR) {
                        log_error_errno(errno, "Event loop failed: %m");
                        break;
                }
                l->now = now_usec_monotonic();
                atomic_store_explicit(&l->heartbeat, l->now, memory_order_relaxed);
                for (int i = 0; i < n && l->running; i++)
                        loop_dispatch(l, events[i].data.ptr);
                loop_run_queue(l);
                loop_run_timers(l);
                loop_free_dead(l);
        }
        return NULL;
}

static void loop_wake(struct loop *l, unsigned flag) {
        uint64_t one = 1;

        atomic_fetch_or(&l->wake_flags, flag);
        /* EAGAIN: the counter is pending already, the loop wakes anyway. */
        if (write(l->wake.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                log_warning_errno(errno, "Failed to wake an event loop, ignoring: %m");
}

static void loop_free(struct loop *l) {
        if (!l)
                return;
        loop_close_all(l, CLOSE_SHUTDOWN);
        loop_free_dead(l);
        proxy_wait_done(&l->proxy);
        if (l->epfd >= 0)
                close(l->epfd);
        if (l->wake.fd >= 0)
                close(l->wake.fd);
        udp_batch_free(l->udp);
        free(l);
}

static int loop_add_watches(struct loop *l, const struct worker_env *env) {
        int r;

        if (env->n_tcp > WATCHES_MAX || env->n_udp > WATCHES_MAX || env->n_proxy > WATCHES_MAX)
                return -E2BIG;
        for (size_t i = 0; i < env->n_tcp; i++) {
                r = loop_watch(l, &l->accept[l->n_accept], WATCH_ACCEPT, env->tcp[i]);
                if (r < 0)
                        return r;
                l->n_accept++;
        }
        for (size_t i = 0; i < env->n_proxy; i++) {
                r = loop_watch(l, &l->accept[l->n_accept], WATCH_ACCEPT_PROXIED, env->proxy[i]);
                if (r < 0)
                        return r;
                l->n_accept++;
        }
        if (env->n_proxy > 0) {
                r = proxy_wait_init(&l->proxy, &env->shared->proxy_waiting);
                if (r < 0)
                        return r;
                r = loop_watch(l, &l->proxy_watch, WATCH_PROXY_WAIT, proxy_wait_fd(&l->proxy));
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < env->n_udp; i++) {
                r = loop_watch(l, &l->udp_watch[l->n_udp], WATCH_UDP, env->udp[i]);
                if (r < 0)
                        return r;
                l->n_udp++;
        }
        return loop_watch(l, &l->wake, WATCH_WAKE, l->wake.fd);
}

static int loop_new(const struct worker_env *env, struct loop **ret) {
        struct loop *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->epfd = l->wake.fd = l->proxy.epfd = -1;
        l->shared = env->shared;
        l->running = true;
        l->now = now_usec_monotonic();
        for (int q = 0; q < _QUEUE_MAX; q++)
                TAILQ_INIT(&l->queues[q]);
        TAILQ_INIT(&l->dead);
        l->admission = (struct conn_admission) { .shared = env->shared, .start = loop_start_conn, .userdata = l };
        l->shut_listeners = env->shut_listeners;
        atomic_store(&l->heartbeat, l->now);
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->epfd < 0 || l->wake.fd < 0) {
                r = -errno;
                goto fail;
        }
        l->handover = env->handover;
        r = udp_batch_new(env->shared, &l->udp);
        if (r < 0)
                goto fail;
        r = loop_add_watches(l, env);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        loop_free(l);
        return r;
}

static int event_start(const struct worker_env *env, struct worker **ret) {
        unsigned n = env->threads;
        struct worker *w = calloc(1, sizeof(*w) + n * sizeof(w->loops[0]));
        int r;

        if (!w)
                return -ENOMEM;
        *ret = w;
        for (w->n = 0; w->n < n; w->n++) {
                r = loop_new(env, &w->loops[w->n]);
                if (r < 0)
                        return r;
        }
        /* Before the loops run, so that no locking is needed. */
        for (size_t i = 0; i < env->n_resumed; i++)
                conn_resume_here(w->loops[i % n], &env->resumed[i]);
        for (unsigned i = 0; i < n; i++) {
                r = -pthread_create(&w->loops[i]->thread, NULL, loop_run, w->loops[i]);
                if (r < 0)
                        return r;
                w->loops[i]->thread_started = true;
        }
        return 0;
}

static void event_wake_all(struct worker *w, unsigned flag) {
        for (unsigned i = 0; i < w->n; i++)
                loop_wake(w->loops[i], flag);
}

static void event_timeouts_changed(struct worker *w) {
        event_wake_all(w, WAKE_TIMEOUTS);
}

/* Whichever loop holds the connection finds it. */
static void event_kill(struct worker *w, struct conn_slot *slot) {
        event_wake_all(w, WAKE_KILL);
}

static void event_stop(struct worker *w) {
        event_wake_all(w, WAKE_STOP);
}

static bool event_drained(struct worker *w) {
        for (unsigned i = 0; i < w->n; i++)
                if (!atomic_load(&w->loops[i]->done))
                        return false;
        return true;
}

static bool event_finish(struct worker *w) {
        uint64_t deadline = now_usec_monotonic() + FINISH_WAIT_USEC;

        for (unsigned i = 0; i < w->n; i++)
                if (w->loops[i]->thread_started && !atomic_load(&w->loops[i]->done))
                        loop_wake(w->loops[i], WAKE_ABORT);
        for (unsigned i = 0; i < w->n; i++) {
                struct loop *l = w->loops[i];

                if (l->thread_started && !worker_join_until(l->thread, deadline)) {
                        log_warning("An event loop did not end within %u s of being told to",
                                    (unsigned) (FINISH_WAIT_USEC / USEC_PER_SEC));
                        return false;
                }
                l->thread_started = false;
        }
        for (unsigned i = 0; i < w->n; i++)
                loop_free(w->loops[i]);
        free(w);
        return true;
}

static bool event_alive(struct worker *w, uint64_t now, uint64_t timeout) {
        for (unsigned i = 0; i < w->n; i++) {
                struct loop *l = w->loops[i];

                if (!atomic_load(&l->done) && atomic_load(&l->heartbeat) + timeout < now)
                        return false;
        }
        return true;
}

const struct worker_ops worker_event_ops = {
        .name = "event",
        .holds_connections = true,
        .start = event_start,
        .timeouts_changed = event_timeouts_changed,
        .kill = event_kill,
        .stop = event_stop,
        .drained = event_drained,
        .finish = event_finish,
        .alive = event_alive,
};
