/* SPDX-License-Identifier: MIT */
/* The process model: the main loop accepts and serves UDP; each TCP
 * connection is served by a forked child (tcp_serve_blocking()), forked by
 * the fork helper (fork-helper.h), or by the daemon for the connections a
 * previous instance handed over and when the helper cannot run.  Children
 * report through the shared memory; the daemon ends their connections once
 * they are reaped (children never log: they inherit the parent's journal
 * socket) and counts the ones that were killed.
 *
 * Children are reaped from one SIGCHLD source, all that have exited at each
 * dispatch, rather than with a child source (a pidfd in the epoll set) each:
 * sd-event dispatches one source per epoll_wait(), which made the per-child
 * sources cost about twice the CPU of a plain fork server per connection.
 * The children are found by pid in a hash table (children.h). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acceptor.h"
#include "children.h"
#include "fork-helper.h"
#include "tcp-blocking.h"
#include "worker.h"

struct worker {
        struct shared *shared;
        struct acceptor acceptor;
        bool shut_listeners;            /* worker_env */
        sd_event_source *udp_src[ACCEPTOR_MAX];
        size_t n_udp;
        struct udp_batch *udp;
        sd_event_source *sigchld;
        struct children children;       /* our own: resumed connections, or no helper */
        struct fork_helper helper;
        bool helper_on;
        sd_event_source *helper_src;
        bool *at_helper;                /* by slot: the helper's connection */
        unsigned n_at_helper;
        /* The accept batch on its way to the helper; held when the
         * helper's socket is full. */
        int batch_fd[FORK_BATCH_MAX];
        uint32_t batch_slot[FORK_BATCH_MAX];
        size_t n_batch;
        bool held;
        bool stopping;
};

/* The worker pid of slot is gone (code, status: from waitid()): its
 * connection ends. */
static void worker_ended(struct worker *w, struct conn_slot *slot, pid_t pid, int code, int status) {
        enum close_reason reason = atomic_load(&slot->close_reason);

        if (code == CLD_KILLED || code == CLD_DUMPED) {
                char host[ADDR_HOST_MAX];

                COUNTER_ADD(w->shared, workers_died, 1);
                log_warning("Worker process %d serving %s port %u killed by signal %d",
                            (int) pid, addr_format_host(&slot->peer, host), addr_port(&slot->peer), status);
                reason = w->stopping ? CLOSE_SHUTDOWN : CLOSE_ERROR;
        }
        conn_end(w->shared, slot, reason);
}

/* Our own child pid is gone. */
static void child_done(struct worker *w, pid_t pid, int code, int status) {
        struct conn_slot *slot = children_remove(&w->children, pid);

        if (slot)
                worker_ended(w, slot, pid, code, status);
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

static unsigned process_workers(void *userdata) {
        struct worker *w = userdata;

        return w->children.n + w->n_at_helper;
}

static void process_spawn_conn(struct worker *w, int fd, struct conn_slot *slot,
                               const struct resumed_conn *resume) {
        int r = fork_worker(&w->children, w->shared, slot, fd, resume);

        /* The child has its own copy of the connection. */
        close(fd);
        if (r < 0) {
                log_warning_errno(r, "Failed to fork a worker process, closing the connection: %m");
                conn_end(w->shared, slot, CLOSE_ERROR);
        }
}

/* The helper's connections, killed and ended: on abort, or when the
 * helper is gone (and they with it). */
static void helper_conns_end(struct worker *w, enum close_reason reason) {
        for (uint32_t i = 0; w->n_at_helper > 0 && i < w->shared->nslots; i++) {
                struct conn_slot *slot = &w->shared->slots[i];
                pid_t pid;

                if (!w->at_helper[i])
                        continue;
                pid = atomic_load(&slot->pid);
                if (pid > 0)
                        kill(pid, SIGKILL);
                w->at_helper[i] = false;
                w->n_at_helper--;
                conn_end(w->shared, slot, reason);
        }
}

static void helper_stop(struct worker *w) {
        w->helper_src = sd_event_source_disable_unref(w->helper_src);
        fork_helper_close(&w->helper, now_usec_monotonic() + FINISH_WAIT_USEC);
        w->helper_on = false;
}

/* The batch that could not go to the helper is forked by the daemon, as
 * without a helper. */
static void helper_fork_batch_here(struct worker *w) {
        for (size_t k = 0; k < w->n_batch; k++)
                process_spawn_conn(w, w->batch_fd[k], &w->shared->slots[w->batch_slot[k]], NULL);
        w->n_batch = 0;
        if (w->held) {
                w->held = false;
                if (w->helper_src)
                        (void) sd_event_source_set_io_events(w->helper_src, EPOLLIN);
                acceptor_hold(&w->acceptor, false);
        }
}

/* The helper ended without being asked: the children it forked are not
 * ours to reap, and their connections end; new ones are forked here. */
static void helper_lost(struct worker *w) {
        log_error("The fork helper (PID %d) exited; its %u connections are closed, "
                  "workers are forked by the daemon from now on", (int) w->helper.pid, w->n_at_helper);
        helper_conns_end(w, CLOSE_ERROR);
        helper_stop(w);
        helper_fork_batch_here(w);
}

static void helper_report_done(struct worker *w, const struct fork_report *rep) {
        struct conn_slot *slot;

        if (rep->slot >= w->shared->nslots || !w->at_helper[rep->slot])
                return;
        w->at_helper[rep->slot] = false;
        w->n_at_helper--;
        slot = &w->shared->slots[rep->slot];
        if (rep->pid == 0) {
                log_warning_errno(rep->status, "Failed to fork a worker process, closing the connection: %m");
                conn_end(w->shared, slot, CLOSE_ERROR);
                return;
        }
        worker_ended(w, slot, rep->pid, rep->code, rep->status);
}

/* Sends the batch to the helper.  When its socket is full the batch is
 * held and accepting waits (the next connections stay in the listen
 * backlog) until there is room: the helper forks at its pace, nothing is
 * dropped. */
static void helper_flush_batch(struct worker *w) {
        int r;

        if (w->n_batch == 0)
                return;
        r = fork_helper_send(&w->helper, w->batch_fd, w->batch_slot, w->n_batch);
        if (r == -EAGAIN) {
                if (!w->held) {
                        w->held = true;
                        acceptor_hold(&w->acceptor, true);
                        (void) sd_event_source_set_io_events(w->helper_src, EPOLLIN | EPOLLOUT);
                }
                return;
        }
        if (r == -EPIPE) {
                /* Gone: the batch is forked here. */
                helper_lost(w);
                return;
        }
        if (r < 0) {
                log_warning_errno(r, "Failed to hand connections to the fork helper, forking them here: %m");
                helper_fork_batch_here(w);
                return;
        }
        if (w->held) {
                w->held = false;
                (void) sd_event_source_set_io_events(w->helper_src, EPOLLIN);
                acceptor_hold(&w->acceptor, false);
        }
        for (size_t k = 0; k < w->n_batch; k++) {
                /* The helper has its own copy of the connection. */
                close(w->batch_fd[k]);
                w->at_helper[w->batch_slot[k]] = true;
                w->n_at_helper++;
        }
        w->n_batch = 0;
}

static bool process_busy(void *userdata) {
        struct worker *w = userdata;

        return w->held;
}

static void process_batch_done(void *userdata) {
        helper_flush_batch(userdata);
}

static int process_on_helper(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct worker *w = userdata;
        struct fork_report rep[FORK_REPORTS_MAX];
        int r;

        while ((r = fork_helper_read(&w->helper, rep)) > 0)
                for (int i = 0; i < r; i++)
                        helper_report_done(w, &rep[i]);
        if (r < 0) {
                helper_lost(w);
                return 0;
        }
        if ((revents & EPOLLOUT) && w->held)
                helper_flush_batch(w);
        return 0;
}

/* Starts the fork helper; without it, the daemon forks the workers itself,
 * at twice the cost per connection. */
static void helper_start(struct worker *w, sd_event *event) {
        char path[PATH_MAX];
        int r;

        w->at_helper = calloc(w->shared->nslots, sizeof(*w->at_helper));
        if (!w->at_helper) {
                log_warning("Out of memory for the fork helper, forking workers from the daemon");
                return;
        }
        fork_helper_path(path);
        r = fork_helper_spawn(path, w->shared, &w->helper);
        if (r < 0) {
                log_warning_errno(r, "Failed to start the fork helper %s, forking workers from the daemon: %m", path);
                return;
        }
        r = sd_event_add_io(event, &w->helper_src, w->helper.sock, EPOLLIN, process_on_helper, w);
        if (r < 0) {
                log_warning_errno(r, "Failed to watch the fork helper, forking workers from the daemon: %m");
                fork_helper_close(&w->helper, now_usec_monotonic() + FINISH_WAIT_USEC);
                return;
        }
        w->helper_on = true;
        log_debug("Fork helper %s started, PID %d", path, (int) w->helper.pid);
}

static void process_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        struct worker *w = userdata;

        if (!w->helper_on) {
                process_spawn_conn(w, fd, slot, NULL);
                return;
        }
        w->batch_fd[w->n_batch] = fd;
        w->batch_slot[w->n_batch] = (uint32_t) (slot - w->shared->slots);
        /* An accept batch is ACCEPT_BUDGET at most: this is a safety net. */
        if (++w->n_batch == FORK_BATCH_MAX)
                helper_flush_batch(w);
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
                .busy = process_busy,
                .batch_done = process_batch_done,
        };
        int r;

        if (!w)
                return -ENOMEM;
        *ret = w;
        w->shared = env->shared;
        w->shut_listeners = env->shut_listeners;
        adm.userdata = w;
        r = udp_batch_new(env->shared, &w->udp);
        if (r < 0)
                return r;
        r = sd_event_add_signal(env->event, &w->sigchld, SIGCHLD, process_on_sigchld, w);
        if (r < 0)
                return r;
        helper_start(w, env->event);
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
        /* The child gets the state with its copy of our memory: these few
         * are forked here, not by the helper. */
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
        acceptor_stop(&w->acceptor, w->shut_listeners);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_set_enabled(w->udp_src[i], SD_EVENT_OFF);
        atomic_store(&w->shared->stopping, true);
        tcp_kick_all(w->shared, false);
}

static bool process_drained(struct worker *w) {
        return w->children.n == 0 && w->n_at_helper == 0 && w->n_batch == 0;
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

/* Children are killed and reaped here, the helper's by the helper, which
 * exits then: nothing outlives this. */
static bool process_finish(struct worker *w) {
        atomic_store(&w->shared->aborting, true);
        children_kill_all(w);
        for (size_t k = 0; k < w->n_batch; k++) {
                close(w->batch_fd[k]);
                conn_end(w->shared, &w->shared->slots[w->batch_slot[k]], CLOSE_SHUTDOWN);
        }
        w->n_batch = 0;
        if (w->helper_on) {
                helper_conns_end(w, CLOSE_SHUTDOWN);
                helper_stop(w);
        }
        acceptor_free(&w->acceptor);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_disable_unref(w->udp_src[i]);
        sd_event_source_disable_unref(w->sigchld);
        udp_batch_free(w->udp);
        children_free(&w->children);
        free(w->at_helper);
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
