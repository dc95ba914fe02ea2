/* SPDX-License-Identifier: MIT */
/* The thread model: the main loop accepts, each TCP connection gets a thread
 * with a small stack and blocking I/O (tcp_serve_blocking()), and each UDP
 * socket is served by its own thread(s).  The number of connection threads
 * is limited by workers.max_workers. */
#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "server.h"
#include "tcp-blocking.h"
#include "udp.h"

/* Buffers live on the heap, so connection threads need little stack. */
#define THREAD_STACK (64 * 1024)

struct udp_thread {
        struct shared *shared;
        pthread_t thread;
        atomic_int tid;
        int fd;
        struct udp_batch *batch;
};

struct thread_worker {
        struct server *server;
        pthread_attr_t attr;
        sd_event_source *accept_src[CONFIG_MAX_LISTEN];
        size_t n_accept;
        atomic_uint conn_threads;
        struct handover *handover;      /* on stop, NULL: close connections */
        size_t n_udp;
        struct udp_thread udp[];
};

struct thread_conn {
        struct thread_worker *worker;
        struct conn_slot *slot;
        int fd;
        bool resumed;
        struct resumed_conn resume;     /* pending points at pending[] */
        uint8_t pending[];
};

static void *conn_thread(void *userdata) {
        struct thread_conn *tc = userdata;
        struct thread_worker *w = tc->worker;
        struct shared *sh = w->server->shared;
        enum close_reason reason;

        atomic_store(&tc->slot->pid, gettid());
        reason = tcp_serve_blocking(sh, tc->slot, tc->fd, tc->resumed ? &tc->resume : NULL,
                                    w->handover);
        close(tc->fd);
        log_conn(tc->slot, CLIENT_TCP_CLOSE, reason);
        conn_slot_release(sh, tc->slot);
        free(tc);
        atomic_fetch_sub(&w->conn_threads, 1);
        return NULL;
}

static unsigned thread_workers(void *userdata) {
        struct thread_worker *w = userdata;

        return atomic_load(&w->conn_threads);
}

/* Starts a connection thread, for a new connection or (with resume) one
 * the previous instance handed over. */
static void thread_spawn_conn(struct thread_worker *w, int fd, struct conn_slot *slot,
                              const struct resumed_conn *resume) {
        size_t pending = resume ? resume->pending_len : 0;
        struct thread_conn *tc = malloc(sizeof(*tc) + pending);
        pthread_t thread;

        if (tc) {
                *tc = (struct thread_conn) { .worker = w, .slot = slot, .fd = fd, .resumed = resume };
                if (resume) {
                        /* The thread outlives the server's copy. */
                        tc->resume = *resume;
                        if (pending > 0)
                                memcpy(tc->pending, resume->pending, pending);
                        tc->resume.pending = tc->pending;
                }
                atomic_fetch_add(&w->conn_threads, 1);
                if (pthread_create(&thread, &w->attr, conn_thread, tc) == 0)
                        return;
                atomic_fetch_sub(&w->conn_threads, 1);
                free(tc);
        }
        log_warning("Failed to start a thread for a connection, closing it");
        close(fd);
        log_conn(slot, CLIENT_TCP_CLOSE, CLOSE_ERROR);
        conn_slot_release(w->server->shared, slot);
}

static void thread_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        thread_spawn_conn(userdata, fd, slot, NULL);
}

static int thread_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct thread_worker *w = userdata;
        struct tcp_acceptor a = {
                .shared = w->server->shared,
                .max_workers = w->server->config.max_workers,
                .workers = thread_workers,
                .start = thread_start_conn,
                .userdata = w,
        };

        int r = tcp_accept_all(&a, fd);

        if (r < 0)
                server_pause_accepting(w->server, r);
        return 0;
}

static void *udp_thread_run(void *userdata) {
        struct udp_thread *u = userdata;

        atomic_store(&u->tid, gettid());
        while (!atomic_load(&u->shared->stopping)) {
                int r = worker_wait(u->fd, POLLIN, UINT64_MAX);

                if (r == -EINTR)
                        continue;
                while (r > 0 && !atomic_load(&u->shared->stopping))
                        r = udp_serve(u->batch, u->fd);
                if (r < 0)
                        log_debug("UDP receive failed, ignoring: %s", strerror(-r));
        }
        return NULL;
}

static int udp_threads_start(struct thread_worker *w) {
        int r;

        for (size_t i = 0; i < w->n_udp; i++) {
                struct udp_thread *u = &w->udp[i];

                r = udp_batch_new(w->server->shared, &u->batch);
                if (r < 0)
                        return r;
                r = -pthread_create(&u->thread, NULL, udp_thread_run, u);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int thread_start(struct server *s) {
        const struct listeners *ls = &s->listeners;
        size_t n_udp = ls->n_udp * s->config.threads;
        struct thread_worker *w = calloc(1, sizeof(*w) + n_udp * sizeof(w->udp[0]));
        int r;

        if (!w)
                return -ENOMEM;
        s->worker = w;
        w->server = s;
        pthread_attr_init(&w->attr);
        pthread_attr_setstacksize(&w->attr, THREAD_STACK);
        pthread_attr_setdetachstate(&w->attr, PTHREAD_CREATE_DETACHED);
        for (size_t i = 0; i < n_udp; i++)
                w->udp[i] = (struct udp_thread) { .shared = s->shared, .fd = ls->udp[i % ls->n_udp] };
        w->n_udp = n_udp;

        for (size_t i = 0; i < ls->n_tcp; i++) {
                r = sd_event_add_io(s->event, &w->accept_src[i], ls->tcp[i], EPOLLIN, thread_on_accept, w);
                if (r < 0)
                        return r;
                w->n_accept++;
        }
        s->accept_src = w->accept_src;
        s->n_accept = w->n_accept;
        w->handover = s->handover.enabled ? &s->handover : NULL;
        for (size_t i = 0; i < s->n_resumed; i++) {
                thread_spawn_conn(w, s->resumed[i].fd, s->resumed[i].slot, &s->resumed[i]);
                s->resumed[i].fd = -1;
        }
        return udp_threads_start(w);
}

static void thread_kick_all(struct thread_worker *w) {
        pid_t self = getpid();

        tcp_kick_all(w->server->shared, true);
        for (size_t i = 0; i < w->n_udp; i++) {
                int tid = atomic_load(&w->udp[i].tid);

                if (tid > 0)
                        (void) syscall(SYS_tgkill, self, tid, SIGUSR1);
        }
}

static void thread_timeouts_changed(struct server *s) {
        tcp_kick_all(s->shared, true);
}

static void thread_stop(struct server *s) {
        struct thread_worker *w = s->worker;

        for (size_t i = 0; i < w->n_accept; i++)
                sd_event_source_set_enabled(w->accept_src[i], SD_EVENT_OFF);
        atomic_store(&s->shared->stopping, true);
        thread_kick_all(w);
}

static bool thread_drained(struct server *s) {
        struct thread_worker *w = s->worker;

        return atomic_load(&w->conn_threads) == 0;
}

/* Joins the UDP threads, waiting until deadline (CLOCK_MONOTONIC) at most;
 * false when one is still running then. */
static bool udp_threads_join(struct thread_worker *w, uint64_t deadline) {
        for (size_t i = 0; i < w->n_udp; i++) {
                if (!w->udp[i].batch)
                        continue;
                if (!worker_join_until(w->udp[i].thread, deadline))
                        return false;
                udp_batch_free(w->udp[i].batch);
                w->udp[i].batch = NULL;
        }
        return true;
}

static bool thread_finish(struct server *s) {
        struct thread_worker *w = s->worker;
        uint64_t deadline = now_usec_monotonic() + FINISH_WAIT_USEC;

        if (!w)
                return true;
        atomic_store(&s->shared->stopping, true);
        atomic_store(&s->shared->aborting, true);
        /* Kicked threads close at once; wait for them (bounded), as they
         * use the worker and the shared memory. */
        do {
                thread_kick_all(w);
                if (thread_drained(s))
                        break;
                usleep(10 * 1000);
        } while (now_usec_monotonic() < deadline);
        if (!thread_drained(s)) {
                log_warning("%u connection thread(s) did not end within %u s of being told to",
                            atomic_load(&w->conn_threads), (unsigned) (FINISH_WAIT_USEC / USEC_PER_SEC));
                return false;
        }
        if (!udp_threads_join(w, deadline)) {
                log_warning("A UDP thread did not end within %u s of being told to",
                            (unsigned) (FINISH_WAIT_USEC / USEC_PER_SEC));
                return false;
        }
        for (size_t i = 0; i < w->n_accept; i++)
                sd_event_source_disable_unref(w->accept_src[i]);
        pthread_attr_destroy(&w->attr);
        free(w);
        s->worker = NULL;
        return true;
}

static bool thread_alive(struct server *s, uint64_t now, uint64_t timeout) {
        /* Connection threads block by design; the main loop running this
         * check is what the watchdog vouches for. */
        return true;
}

const struct worker_ops worker_thread_ops = {
        .name = "thread",
        .holds_connections = true,
        .start = thread_start,
        .timeouts_changed = thread_timeouts_changed,
        .stop = thread_stop,
        .drained = thread_drained,
        .finish = thread_finish,
        .alive = thread_alive,
};
