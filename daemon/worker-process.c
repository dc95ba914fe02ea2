/* SPDX-License-Identifier: MIT */
/* The process model: the main loop accepts and serves UDP; each TCP
 * connection is served by a forked child (tcp_serve_blocking()).  Children
 * report through the shared memory; the parent reaps them, ends their
 * connections (children never log: they inherit the parent's journal
 * socket) and counts the ones that were killed.
 *
 * Children are reaped from one SIGCHLD source, all that have exited at each
 * dispatch, rather than with a child source (a pidfd in the epoll set) each:
 * sd-event dispatches one source per epoll_wait(), which made the per-child
 * sources cost about twice the CPU of a plain fork server per connection.
 * The children are found by pid in a hash table. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acceptor.h"
#include "tcp-blocking.h"
#include "worker.h"

#define CHILDREN_MIN 64

/* The children by pid: open addressing, linear probing, at most half
 * full; pid 0 marks a free entry. */
struct child {
        pid_t pid;
        struct conn_slot *slot;
};

struct children {
        struct child *table;
        size_t mask;                    /* size - 1, a power of two */
        unsigned n;
};

struct worker {
        struct shared *shared;
        struct acceptor acceptor;
        sd_event_source *udp_src[ACCEPTOR_MAX];
        size_t n_udp;
        struct udp_batch *udp;
        sd_event_source *sigchld;
        struct children children;
        bool stopping;
};

static size_t child_home(const struct children *t, pid_t pid) {
        /* Fibonacci hashing: consecutive pids spread out. */
        return (size_t) (((uint64_t) (uint32_t) pid * 0x9e3779b97f4a7c15ULL) >> 32) & t->mask;
}

static int children_resize(struct children *t, size_t size) {
        struct child *old = t->table;
        size_t old_size = old ? t->mask + 1 : 0;

        t->table = calloc(size, sizeof(*t->table));
        if (!t->table) {
                t->table = old;
                return -ENOMEM;
        }
        t->mask = size - 1;
        for (size_t i = 0; i < old_size; i++)
                if (old[i].pid != 0) {
                        size_t j = child_home(t, old[i].pid);

                        while (t->table[j].pid != 0)
                                j = (j + 1) & t->mask;
                        t->table[j] = old[i];
                }
        free(old);
        return 0;
}

/* Room for one more child, so that recording it after the fork cannot
 * fail. */
static int children_reserve(struct children *t) {
        if (t->table && 2 * (t->n + 1) <= t->mask + 1)
                return 0;
        return children_resize(t, t->table ? 2 * (t->mask + 1) : CHILDREN_MIN);
}

/* After children_reserve(). */
static void children_add(struct children *t, pid_t pid, struct conn_slot *slot) {
        size_t i;

        for (i = child_home(t, pid); t->table[i].pid != 0; i = (i + 1) & t->mask)
                ;
        t->table[i] = (struct child) { pid, slot };
        t->n++;
}

/* Removes pid's entry, shifting back the ones its removal would cut off
 * from their home; returns its slot, NULL when pid is not a child. */
static struct conn_slot *children_remove(struct children *t, pid_t pid) {
        struct conn_slot *slot;
        size_t i, j;

        if (!t->table)
                return NULL;
        for (i = child_home(t, pid); t->table[i].pid != pid; i = (i + 1) & t->mask)
                if (t->table[i].pid == 0)
                        return NULL;
        slot = t->table[i].slot;
        for (j = (i + 1) & t->mask; t->table[j].pid != 0; j = (j + 1) & t->mask) {
                size_t home = child_home(t, t->table[j].pid);

                /* j may move to i unless its home lies in (i, j]. */
                if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
                        t->table[i] = t->table[j];
                        i = j;
                }
        }
        t->table[i].pid = 0;
        t->n--;
        return slot;
}

/* The child pid is gone (code, status: from waitid()): its connection
 * ends. */
static void child_done(struct worker *w, pid_t pid, int code, int status) {
        struct conn_slot *slot = children_remove(&w->children, pid);
        enum close_reason reason;

        if (!slot)
                return;
        reason = atomic_load(&slot->close_reason);
        if (code == CLD_KILLED || code == CLD_DUMPED) {
                char host[ADDR_HOST_MAX];

                COUNTER_ADD(w->shared, workers_died, 1);
                log_warning("Worker process %d serving %s port %u killed by signal %d",
                            (int) pid, addr_format_host(&slot->peer, host), addr_port(&slot->peer), status);
                reason = w->stopping ? CLOSE_SHUTDOWN : CLOSE_ERROR;
        }
        conn_end(w->shared, slot, reason);
}

static int process_on_sigchld(sd_event_source *es, const struct signalfd_siginfo *ssi, void *userdata) {
        struct worker *w = userdata;

        /* Signals coalesce: reap every child that has exited. */
        for (;;) {
                siginfo_t si = { .si_pid = 0 };

                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                        break;
                child_done(w, si.si_pid, si.si_code, si.si_status);
        }
        return 0;
}

/* In the child: keep only the connection and stdio, and let the parent
 * coordinate the stop (a terminal's ^C reaches the whole process group). */
static void child_prepare(int fd) {
        sigset_t mask;

        if (fd > 3)
                close_range(3, fd - 1, 0);
        close_range(fd + 1, ~0U, 0);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGTERM, SIG_DFL);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
}

static int child_spawn(struct worker *w, int fd, struct conn_slot *slot, const struct resumed_conn *resume) {
        pid_t pid;
        int r;

        r = children_reserve(&w->children);
        if (r < 0)
                return r;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                child_prepare(fd);
                atomic_store(&slot->pid, getpid());
                /* Children do not hand over: see the server's set-up. */
                tcp_serve_blocking(w->shared, slot, fd, resume, NULL);
                _exit(EXIT_SUCCESS);
        }
        atomic_store(&slot->pid, pid);
        children_add(&w->children, pid, slot);
        return 0;
}

static unsigned process_workers(void *userdata) {
        struct worker *w = userdata;

        return w->children.n;
}

static void process_spawn_conn(struct worker *w, int fd, struct conn_slot *slot,
                               const struct resumed_conn *resume) {
        int r = child_spawn(w, fd, slot, resume);

        /* The child has its own copy of the connection. */
        close(fd);
        if (r < 0) {
                log_warning_errno(r, "Failed to fork a worker process, closing the connection: %m");
                conn_end(w->shared, slot, CLOSE_ERROR);
        }
}

static void process_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        process_spawn_conn(userdata, fd, slot, NULL);
}

static int process_on_udp(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct worker *w = userdata;
        int r = udp_serve(w->udp, fd);

        if (r < 0)
                log_debug("UDP receive failed, ignoring: %s", strerror(-r));
        return 0;
}

static int process_start(const struct worker_env *env, struct worker **ret) {
        struct worker *w = calloc(1, sizeof(*w));
        struct conn_admission adm = {
                .shared = env->shared,
                .workers = process_workers,
                .start = process_start_conn,
        };
        int r;

        if (!w)
                return -ENOMEM;
        *ret = w;
        w->shared = env->shared;
        adm.userdata = w;
        r = udp_batch_new(env->shared, &w->udp);
        if (r < 0)
                return r;
        r = sd_event_add_signal(env->event, &w->sigchld, SIGCHLD, process_on_sigchld, w);
        if (r < 0)
                return r;
        r = acceptor_start(&w->acceptor, env->event, env->tcp, env->n_tcp, env->proxy, env->n_proxy, &adm);
        if (r < 0)
                return r;
        if (env->n_udp > ACCEPTOR_MAX)
                return -E2BIG;
        for (; w->n_udp < env->n_udp; w->n_udp++) {
                r = sd_event_add_io(env->event, &w->udp_src[w->n_udp], env->udp[w->n_udp], EPOLLIN,
                                    process_on_udp, w);
                if (r < 0)
                        return r;
        }
        /* The child gets the state with its copy of our memory. */
        for (size_t i = 0; i < env->n_resumed; i++) {
                process_spawn_conn(w, env->resumed[i].fd, env->resumed[i].slot, &env->resumed[i]);
                env->resumed[i].fd = -1;
        }
        return 0;
}

static void process_kill(struct worker *w, struct conn_slot *slot) {
        tcp_kick(slot, false);
}

static void process_timeouts_changed(struct worker *w) {
        tcp_kick_all(w->shared, false);
}

static void process_stop(struct worker *w) {
        w->stopping = true;
        acceptor_stop(&w->acceptor);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_set_enabled(w->udp_src[i], SD_EVENT_OFF);
        atomic_store(&w->shared->stopping, true);
        tcp_kick_all(w->shared, false);
}

static bool process_drained(struct worker *w) {
        return w->children.n == 0;
}

/* The children still running, killed: their connections end for reason
 * shutdown. */
static void children_kill_all(struct worker *w) {
        struct children *t = &w->children;
        pid_t *pids = t->n ? calloc(t->n, sizeof(*pids)) : NULL;
        unsigned n = 0;

        for (size_t i = 0; pids && i <= t->mask; i++)
                if (t->table[i].pid != 0) {
                        atomic_store(&t->table[i].slot->close_reason, CLOSE_SHUTDOWN);
                        kill(t->table[i].pid, SIGKILL);
                        pids[n++] = t->table[i].pid;
                }
        for (unsigned i = 0; i < n; i++) {
                waitpid(pids[i], NULL, 0);
                child_done(w, pids[i], CLD_EXITED, 0);
        }
        free(pids);
}

/* Children are killed and reaped here: nothing outlives this. */
static bool process_finish(struct worker *w) {
        atomic_store(&w->shared->aborting, true);
        children_kill_all(w);
        acceptor_free(&w->acceptor);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_disable_unref(w->udp_src[i]);
        sd_event_source_disable_unref(w->sigchld);
        udp_batch_free(w->udp);
        free(w->children.table);
        free(w);
        return true;
}

static bool process_alive(struct worker *w, uint64_t now, uint64_t timeout) {
        /* Everything the parent does runs on the main loop checking this. */
        return true;
}

const struct worker_ops worker_process_ops = {
        .name = "process",
        .holds_connections = false,
        .start = process_start,
        .timeouts_changed = process_timeouts_changed,
        .kill = process_kill,
        .stop = process_stop,
        .drained = process_drained,
        .finish = process_finish,
        .alive = process_alive,
};
