/* SPDX-License-Identifier: MIT */
/* The thread model: the main loop accepts, each TCP connection gets a thread
 * with a small stack and blocking I/O (tcp_serve_blocking()), and each UDP
 * socket is served by its own thread(s).  The number of connection threads
 * is limited by workers.max_workers. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "acceptor.h"
#include "tcp-blocking.h"
#include "worker.h"

/* Buffers live on the heap, so connection threads need little stack. */
#define THREAD_STACK (64 * 1024)

struct udp_thread {
        struct shared *shared;
        pthread_t thread;
        atomic_int tid;
        int fd;
        struct udp_batch *batch;
};

struct worker {
        struct shared *shared;
        pthread_attr_t attr;
        struct acceptor acceptor;
        bool shut_listeners;            /* worker_env */
        atomic_uint conn_threads;
        struct conn_store store;        /* on stop; NULL store.h: close connections */
        size_t n_udp;
        struct udp_thread udp[];
};

struct thread_conn {
        struct worker *worker;
        struct conn_slot *slot;
        int fd;
        bool resumed;
        struct resumed_conn resume;     /* pending points at pending[] */
        uint8_t pending[];
};

static void *conn_thread(void *userdata) {
        struct thread_conn *tc = userdata;
        struct worker *w = tc->worker;
        enum close_reason reason;

        atomic_store(&tc->slot->pid, gettid());
        reason = tcp_serve_blocking(w->shared, tc->slot, tc->fd, tc->resumed ? &tc->resume : NULL,
                                    w->store.h ? &w->store : NULL);
        close(tc->fd);
        conn_end(w->shared, tc->slot, reason);
        free(tc);
        atomic_fetch_sub(&w->conn_threads, 1);
        return NULL;
}

static unsigned thread_workers(void *userdata) {
        struct worker *w = userdata;

        return atomic_load(&w->conn_threads);
}

/* Starts a connection thread, for a new connection or (with resume) one
 * the previous instance handed over. */
static void thread_spawn_conn(struct worker *w, int fd, struct conn_slot *slot,
                              const struct resumed_conn *resume) {
        size_t pending = resume ? resume->pending_len : 0;
        struct thread_conn *tc = malloc(sizeof(*tc) + pending);
        pthread_t thread;

        if (tc) {
                *tc = (struct thread_conn) { .worker = w, .slot = slot, .fd = fd, .resumed = resume };
                if (resume) {
                        /* The thread outlives the core's copy. */
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
        conn_end(w->shared, slot, CLOSE_ERROR);
}

static void thread_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        thread_spawn_conn(userdata, fd, slot, NULL);
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

static int udp_threads_start(struct worker *w) {
        int r;

        for (size_t i = 0; i < w->n_udp; i++) {
                struct udp_thread *u = &w->udp[i];

                r = udp_batch_new(w->shared, &u->batch);
                if (r < 0)
                        return r;
                r = -pthread_create(&u->thread, NULL, udp_thread_run, u);
                if (r < 0) {
                        udp_batch_free(u->batch);
                        u->batch = NULL;
                        return r;
                }
        }
        return 0;
}

static int thread_start(const struct worker_env *env, struct worker **ret) {
        size_t n_udp = env->n_udp * env->threads;
        struct worker *w = calloc(1, sizeof(*w) + n_udp * sizeof(w->udp[0]));
        struct conn_admission adm = {
                .shared = env->shared,
                .workers = thread_workers,
                .start = thread_start_conn,
        };
        int r;

        if (!w)
                return -ENOMEM;
        *ret = w;
        w->shared = env->shared;
        w->shut_listeners = env->shut_listeners;
        w->store = (struct conn_store) { .h = env->handover, .put = conn_hand_over };
        pthread_attr_init(&w->attr);
        pthread_attr_setstacksize(&w->attr, THREAD_STACK);
        pthread_attr_setdetachstate(&w->attr, PTHREAD_CREATE_DETACHED);
        for (size_t i = 0; i < n_udp; i++)
                w->udp[i] = (struct udp_thread) { .shared = env->shared, .fd = env->udp[i % env->n_udp] };
        w->n_udp = n_udp;

        adm.userdata = w;
        r = acceptor_start(&w->acceptor, env->event, env->tcp, env->n_tcp, env->proxy, env->n_proxy, &adm);
        if (r < 0)
                return r;
        for (size_t i = 0; i < env->n_resumed; i++) {
                thread_spawn_conn(w, env->resumed[i].fd, env->resumed[i].slot, &env->resumed[i]);
                env->resumed[i].fd = -1;
        }
        return udp_threads_start(w);
}

static void thread_kick_all(struct worker *w) {
        pid_t self = getpid();

        tcp_kick_all(w->shared, true);
        for (size_t i = 0; i < w->n_udp; i++) {
                int tid = atomic_load(&w->udp[i].tid);

                if (tid > 0)
                        (void) syscall(SYS_tgkill, self, tid, SIGUSR1);
        }
}

static void thread_kill(struct worker *w, struct conn_slot *slot) {
        tcp_kick(slot, true);
}

static void thread_timeouts_changed(struct worker *w) {
        tcp_kick_all(w->shared, true);
}

static void thread_stop(struct worker *w) {
        acceptor_stop(&w->acceptor, w->shut_listeners);
        atomic_store(&w->shared->stopping, true);
        thread_kick_all(w);
}

static bool thread_drained(struct worker *w) {
        return atomic_load(&w->conn_threads) == 0;
}

/* Joins the UDP threads, waiting until deadline (CLOCK_MONOTONIC) at most;
 * false when one is still running then. */
static bool udp_threads_join(struct worker *w, uint64_t deadline) {
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

static bool thread_finish(struct worker *w) {
        uint64_t deadline = now_usec_monotonic() + FINISH_WAIT_USEC;

        atomic_store(&w->shared->stopping, true);
        atomic_store(&w->shared->aborting, true);
        /* Kicked threads close at once; wait for them (bounded), as they
         * use the worker and the shared memory. */
        do {
                thread_kick_all(w);
                if (thread_drained(w))
                        break;
                usleep(10 * 1000);
        } while (now_usec_monotonic() < deadline);
        if (!thread_drained(w)) {
                log_warning("%u connection thread(s) did not end within %u s of being told to",
                            atomic_load(&w->conn_threads), (unsigned) (FINISH_WAIT_USEC / USEC_PER_SEC));
                return false;
        }
        if (!udp_threads_join(w, deadline)) {
                log_warning("A UDP thread did not end within %u s of being told to",
                            (unsigned) (FINISH_WAIT_USEC / USEC_PER_SEC));
                return false;
        }
        acceptor_free(&w->acceptor);
        pthread_attr_destroy(&w->attr);
        free(w);
        return true;
}

static bool thread_alive(struct worker *w, uint64_t now, uint64_t timeout) {
        /* Connection threads block by design; the main loop running this
         * check is what the watchdog vouches for. */
        return true;
}

const struct worker_ops worker_thread_ops = {
        .name = "thread",
        .holds_connections = true,
        .start = thread_start,
        .timeouts_changed = thread_timeouts_changed,
        .kill = thread_kill,
        .stop = thread_stop,
        .drained = thread_drained,
        .finish = thread_finish,
        .alive = thread_alive,
};
