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
 * after ".", grace for a first request on stop), and since every connection
 * in a queue has the same timeout, the head of each queue is the next to
 * expire.  The loop sleeps until the earliest head.
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

#define EVENTS_MAX 256
/* Reads from the run queue per loop iteration, each up to CONN_READ_MAX
 * (about 20 us): a descriptor that becomes ready waits for that many at most
 * besides what epoll reports before it, and the busy connections cost an
 * epoll_wait() every 16 reads, not every read. */
#define RUN_BUDGET 16
/* A loop wakes at least this often, to show the watchdog it is alive. */
#define HEARTBEAT_USEC USEC_PER_SEC

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
        QUEUE_RUN,              /* busy: more input waiting, served in turns */
        _QUEUE_MAX,
};

/* What an epoll event points at: the first member of each watched object. */
enum watch_kind {
        WATCH_CONN,
        WATCH_ACCEPT,
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
        struct conn *prev, *next;
        enum conn_queue queue;
        uint64_t since;                 /* entered its queue, CLOCK_MONOTONIC */
        uint32_t events;                /* what epoll watches for */
        struct conn_slot *slot;
        bool closed;                    /* freed after the current batch */
        bool eof;                       /* the peer closed its side */
        bool draining;                  /* graceful stop: finish and close */
        bool more;                      /* the last read filled the buffer */
        struct upcase up;
        uint8_t *pending;               /* unsent replies, only while the peer lags */
        size_t pending_len, pending_off;
};

struct conn_list {
        struct conn *head, *tail;
};

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
        struct watch accept[CONFIG_MAX_LISTEN];
        size_t n_accept;
        struct watch udp_watch[CONFIG_MAX_LISTEN];
        size_t n_udp;
        struct udp_batch *udp;
        struct handover *handover;      /* on stop, NULL: close connections */
        uint64_t handover_at;           /* stopping: what is still owed then travels; 0: none */
        struct conn_list queues[_QUEUE_MAX];
        struct conn *dead;              /* closed during this batch */
        unsigned nconns;
        bool stopping;
        uint64_t now;                   /* CLOCK_MONOTONIC, once per batch */
        uint64_t accept_paused_until;   /* 0: accepting */
        uint64_t accept_warned;         /* last "pausing accepts" warning */
        uint8_t in[CONN_READ_MAX];
        uint8_t out[UPCASE_OUT_MAX(CONN_READ_MAX)];
};

struct event_worker {
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

        if (!l->queues[q].head || t == 0)
                return UINT64_MAX;
        return l->queues[q].head->since + t;
}

/* How long epoll_wait() may sleep: until the earliest deadline, at most a
 * heartbeat; in milliseconds, rounded up so that it never wakes early.  Not
 * at all while busy connections wait for their turn. */
static int loop_sleep_msec(struct loop *l) {
        uint64_t at = l->now + HEARTBEAT_USEC;

        if (l->queues[QUEUE_RUN].head)
                return 0;
        if (l->accept_paused_until && l->accept_paused_until < at)
                at = l->accept_paused_until;
        if (l->handover_at && l->handover_at < at)
                at = l->handover_at;
        for (int q = 0; q < _QUEUE_MAX; q++) {
                uint64_t d = queue_deadline(l, q);
                if (d < at)
                        at = d;
        }
        if (at <= l->now)
                return 0;
        return (int) ((at - l->now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
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
}

static void conn_requeue(struct conn *c, enum conn_queue q, uint64_t now) {
        queue_unlink(c);
        queue_append(c, q, now);
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

        atomic_store(&c->slot->close_reason, reason);
        log_conn(c->slot, CLIENT_TCP_CLOSE, reason);
        conn_slot_release(l->shared, c->slot);
        queue_unlink(c);
        /* Closing the descriptor also takes it out of the epoll set. */
        close(c->watch.fd);
        free(c->pending);
        c->pending = NULL;
        /* Other events of this batch may still point at it. */
        c->closed = true;
        c->next = l->dead;
        l->dead = c;
        l->nconns--;
        loop_check_done(l);
}

/* Stopping for a restart: the connection goes to the file descriptor store
 * with its state instead of being closed.  Returns false (changing nothing)
 * when it cannot, and then the loop stops handing over. */
static bool conn_hand_over(struct conn *c) {
        struct loop *l = c->loop;
        struct handover_conn rec = { .up = c->up };
        int r;

        if (!l->handover || c->up.quit || c->eof)
                return false;
        handover_conn_from_slot(&rec, c->slot);
        if (c->pending) {
                rec.pending = c->pending + c->pending_off;
                rec.pending_len = c->pending_len - c->pending_off;
        }
        r = handover_store_conn(l->handover, c->watch.fd, &rec);
        if (r < 0) {
                log_warning_errno(r, "Failed to hand over connection %" PRIu64 ", closing the rest as on a stop: %m",
                                  rec.id);
                l->handover = NULL;
                return false;
        }
        conn_close(c, CLOSE_HANDOVER);
        return true;
}

static void loop_free_dead(struct loop *l) {
        while (l->dead) {
                struct conn *c = l->dead;

                l->dead = c->next;
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

/* Nothing is owed any more: close, or linger after ".". */
static void conn_finish(struct conn *c, uint64_t now) {
        if (c->up.quit && !c->eof) {
                /* Tell the peer we are done, then read and discard until its
                 * EOF so that our close does not reset the connection. */
                shutdown(c->watch.fd, SHUT_WR);
                conn_set_events(c, EPOLLIN);
                conn_requeue(c, QUEUE_LINGER, now);
                return;
        }
        conn_close(c, c->up.quit ? CLOSE_QUIT : c->eof ? CLOSE_EOF : CLOSE_SHUTDOWN);
}

/* After replies were produced or flushed: wait for the peer to read them,
 * finish, or wait for more input. */
static void conn_settle(struct conn *c, uint64_t now) {
        if (c->pending) {
                conn_set_events(c, EPOLLOUT);
                if (c->queue != QUEUE_WRITE)
                        conn_requeue(c, QUEUE_WRITE, now);
                return;
        }
        if (c->draining && !c->up.quit && !c->eof && conn_input_waiting(c->watch.fd)) {
                /* Stopping with more than a read of input owed: answer it
                 * first, a read per wake so as not to hold up the others. */
                conn_set_events(c, EPOLLIN);
                conn_requeue(c, QUEUE_GRACE, now);
                return;
        }
        /* Nothing owed any more: on a restart it goes on in the next
         * instance. */
        if (c->draining && conn_hand_over(c))
                return;
        if (c->up.quit || c->eof || c->draining) {
                conn_finish(c, now);
                return;
        }
        if (c->more) {
                /* Its next read waits for its turn in the run queue, at the
                 * tail: not reported by epoll meanwhile, it does not delay
                 * what epoll reports. */
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
                };
                ev.data.ptr = &c->watch;
        }
        if (!c || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                free(c);
                atomic_store(&slot->close_reason, CLOSE_ERROR);
                log_conn(slot, CLIENT_TCP_CLOSE, CLOSE_ERROR);
                conn_slot_release(l->shared, slot);
                close(fd);
                return NULL;
        }
        /* Replies go out as soon as input arrives, byte by byte if need be. */
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        upcase_init(&c->up, true);
        l->nconns++;
        queue_append(c, QUEUE_IDLE, l->now);
        return c;
}

static void conn_new(struct loop *l, int fd, const union sockaddr_union *peer) {
        enum reject_reason why;
        struct conn_slot *slot = conn_slot_take(l->shared, peer, &why);

        if (!slot) {
                close(fd);
                log_rejected(peer, why);
                return;
        }
        if (conn_attach(l, fd, slot))
                log_conn(slot, CLIENT_TCP_OPEN, CLOSE_ERROR);
}

/* A connection the previous instance handed over, with its state. */
static void conn_resume(struct loop *l, struct resumed_conn *rc) {
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

/* Retrying at once would spin: pause, loop_run_timers() resumes. */
static void loop_pause_accepting(struct loop *l, int err) {
        accept_pause_warn(&l->accept_warned, l->now, err);
        l->accept_paused_until = l->now + ACCEPT_PAUSE_USEC;
        loop_set_accepting(l, false);
}

static void loop_on_accept(struct loop *l, int fd) {
        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                union sockaddr_union peer;
                socklen_t len = sizeof(peer);
                int cfd;

                if (shared_conn_fds_full(l->shared)) {
                        loop_pause_accepting(l, ENOSPC);
                        return;
                }
                cfd = accept4(fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd >= 0) {
                        conn_new(l, cfd, &peer);
                        continue;
                }
                if (accept_error_pauses(errno))
                        loop_pause_accepting(l, errno);
                return;
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
                [QUEUE_GRACE] = CLOSE_SHUTDOWN,
        };

        while (queue_deadline(l, q) <= l->now) {
                struct conn *c = l->queues[q].head;

                /* No first request came: the next instance waits for it. */
                if (q != QUEUE_GRACE || !conn_hand_over(c))
                        conn_close(c, reasons[q]);
        }
}

/* HANDOVER_WAIT_USEC after the stop: what is still draining travels as it
 * is. */
static void loop_hand_over_rest(struct loop *l) {
        l->handover_at = 0;
        for (int q = 0; q < _QUEUE_MAX; q++)
                for (struct conn *c = l->queues[q].head, *next; c; c = next) {
                        next = c->next;
                        if (c->draining)
                                conn_hand_over(c);
                }
}

static void loop_run_timers(struct loop *l) {
        if (l->handover_at && l->handover_at <= l->now)
                loop_hand_over_rest(l);
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
                while (l->queues[q].head)
                        conn_close(l->queues[q].head, reason);
}

static void loop_stop(struct loop *l) {
        l->stopping = true;
        loop_set_accepting(l, false);
        for (size_t i = 0; i < l->n_udp; i++)
                (void) epoll_ctl(l->epfd, EPOLL_CTL_DEL, l->udp_watch[i].fd, NULL);

        /* Answer what the peers already sent, then close (or hand over).
         * Connections waiting on their peer finish when it has read its
         * replies. */
        if (l->handover)
                l->handover_at = l->now + HANDOVER_WAIT_USEC;
        /* Busy connections have input waiting too: drained alike. */
        while (l->queues[QUEUE_RUN].head)
                conn_requeue(l->queues[QUEUE_RUN].head, QUEUE_IDLE, l->now);
        while (l->queues[QUEUE_IDLE].head) {
                struct conn *c = l->queues[QUEUE_IDLE].head;

                c->draining = true;
                if (atomic_load_explicit(&c->slot->bytes_in, memory_order_relaxed) == 0)
                        conn_requeue(c, QUEUE_GRACE, l->now);
                else if (conn_read(c, l->now))
                        conn_settle(c, l->now);
        }
        for (struct conn *c = l->queues[QUEUE_WRITE].head; c; c = c->next)
                c->draining = true;
        loop_check_done(l);
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
                if (!l->stopping && !l->accept_paused_until)
                        loop_on_accept(l, w->fd);
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
        for (int i = 0; i < RUN_BUDGET && l->running && l->queues[QUEUE_RUN].head; i++)
                conn_on_io(l->queues[QUEUE_RUN].head);
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
        if (l->epfd >= 0)
                close(l->epfd);
        if (l->wake.fd >= 0)
                close(l->wake.fd);
        udp_batch_free(l->udp);
        free(l);
}

static int loop_add_watches(struct loop *l, const struct listeners *ls) {
        int r;

        for (size_t i = 0; i < ls->n_tcp; i++) {
                r = loop_watch(l, &l->accept[l->n_accept], WATCH_ACCEPT, ls->tcp[i]);
                if (r < 0)
                        return r;
                l->n_accept++;
        }
        for (size_t i = 0; i < ls->n_udp; i++) {
                r = loop_watch(l, &l->udp_watch[l->n_udp], WATCH_UDP, ls->udp[i]);
                if (r < 0)
                        return r;
                l->n_udp++;
        }
        return loop_watch(l, &l->wake, WATCH_WAKE, l->wake.fd);
}

static int loop_new(struct server *s, struct loop **ret) {
        struct loop *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->epfd = l->wake.fd = -1;
        l->shared = s->shared;
        l->running = true;
        l->now = now_usec_monotonic();
        atomic_store(&l->heartbeat, l->now);
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        l->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->epfd < 0 || l->wake.fd < 0) {
                r = -errno;
                goto fail;
        }
        l->handover = s->handover.enabled ? &s->handover : NULL;
        r = udp_batch_new(s->shared, &l->udp);
        if (r < 0)
                goto fail;
        r = loop_add_watches(l, &s->listeners);
        if (r < 0)
                goto fail;
        *ret = l;
        return 0;
fail:
        loop_free(l);
        return r;
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
        /* Before the loops run, so that no locking is needed. */
        for (size_t i = 0; i < s->n_resumed; i++)
                conn_resume(w->loops[i % n], &s->resumed[i]);
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

static bool event_finish(struct server *s) {
        struct event_worker *w = s->worker;
        uint64_t deadline = now_usec_monotonic() + FINISH_WAIT_USEC;

        if (!w)
                return true;
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
        s->worker = NULL;
        return true;
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
        .holds_connections = true,
        .start = event_start,
        .timeouts_changed = event_timeouts_changed,
        .stop = event_stop,
        .drained = event_drained,
        .finish = event_finish,
        .alive = event_alive,
};
