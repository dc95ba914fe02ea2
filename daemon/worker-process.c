/* SPDX-License-Identifier: MIT */
/* The process model: the main loop accepts and serves UDP; each TCP
 * connection is served by a forked child (tcp_serve_blocking()).  Children
 * report through the shared memory; the parent reaps them, logs the close
 * (children never log: they inherit the parent's journal socket) and counts
 * the ones that were killed.
 *
 * Children are reaped from one SIGCHLD source, all that have exited at each
 * dispatch, rather than with a child source (a pidfd in the epoll set) each:
 * sd-event dispatches one source per epoll_wait(), which made the per-child
 * sources cost about twice the CPU of a plain fork server per connection. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "server.h"
#include "tcp-blocking.h"
#include "udp.h"


struct child {
        struct process_worker *worker;
        struct child *prev, *next;
        struct conn_slot *slot;
        pid_t pid;
};

struct process_worker {
        struct server *server;
        sd_event_source *accept_src[CONFIG_MAX_LISTEN];
        size_t n_accept;
        sd_event_source *udp_src[CONFIG_MAX_LISTEN];
        size_t n_udp;
        struct udp_batch *udp;
        sd_event_source *sigchld;
        struct child *children;
        unsigned n_children;
};

static void child_free(struct child *c) {
        struct process_worker *w = c->worker;

        if (c->prev)
                c->prev->next = c->next;
        else
                w->children = c->next;
        if (c->next)
                c->next->prev = c->prev;
        w->n_children--;
        free(c);
}

/* The child is gone: account for its connection. */
static void child_done(struct child *c, int code, int status) {
        struct shared *sh = c->worker->server->shared;
        enum close_reason reason = atomic_load(&c->slot->close_reason);

        if (code == CLD_KILLED || code == CLD_DUMPED) {
                char host[ADDR_HOST_MAX];

                COUNTER_ADD(sh, workers_died, 1);
                log_warning("Worker process %d serving %s port %u killed by signal %d",
                            (int) c->pid, addr_format_host(&c->slot->peer, host),
                            addr_port(&c->slot->peer), status);
                reason = c->worker->server->stopping ? CLOSE_SHUTDOWN : CLOSE_ERROR;
                atomic_store(&c->slot->close_reason, reason);
        }
        log_conn(c->slot, CLIENT_TCP_CLOSE, reason);
        conn_slot_release(sh, c->slot);
        child_free(c);
}

static struct child *child_find(struct process_worker *w, pid_t pid) {
        for (struct child *c = w->children; c; c = c->next)
                if (c->pid == pid)
                        return c;
        return NULL;
}

static int process_on_sigchld(sd_event_source *es, const struct signalfd_siginfo *ssi, void *userdata) {
        struct process_worker *w = userdata;

        /* Signals coalesce: reap every child that has exited. */
        for (;;) {
                siginfo_t si = { .si_pid = 0 };
                struct child *c;

                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                        break;
                c = child_find(w, si.si_pid);
                if (c)
                        child_done(c, si.si_code, si.si_status);
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

static int child_spawn(struct process_worker *w, int fd, struct conn_slot *slot,
                       const struct resumed_conn *resume) {
        struct server *s = w->server;
        struct child *c = calloc(1, sizeof(*c));
        pid_t pid;

        if (!c)
                return -ENOMEM;
        pid = fork();
        if (pid < 0) {
                free(c);
                return -errno;
        }
        if (pid == 0) {
                /* The parent's record of this child is no use in the child. */
                free(c);
                child_prepare(fd);
                atomic_store(&slot->pid, getpid());
                /* Children do not hand over: see server_setup_handover(). */
                tcp_serve_blocking(s->shared, slot, fd, resume, NULL);
                _exit(EXIT_SUCCESS);
        }
        atomic_store(&slot->pid, pid);
        *c = (struct child) { .worker = w, .slot = slot, .pid = pid, .next = w->children };
        if (w->children)
                w->children->prev = c;
        w->children = c;
        w->n_children++;
        return 0;
}

static unsigned process_workers(void *userdata) {
        struct process_worker *w = userdata;

        return w->n_children;
}

static void process_spawn_conn(struct process_worker *w, int fd, struct conn_slot *slot,
                               const struct resumed_conn *resume) {
        int r = child_spawn(w, fd, slot, resume);

        /* The child has its own copy of the connection. */
        close(fd);
        if (r < 0) {
                log_warning_errno(r, "Failed to fork a worker process, closing the connection: %m");
                log_conn(slot, CLIENT_TCP_CLOSE, CLOSE_ERROR);
                conn_slot_release(w->server->shared, slot);
        }
}

static void process_start_conn(void *userdata, int fd, struct conn_slot *slot) {
        process_spawn_conn(userdata, fd, slot, NULL);
}

static int process_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct process_worker *w = userdata;
        struct tcp_acceptor a = {
                .shared = w->server->shared,
                .max_workers = w->server->config.max_workers,
                .workers = process_workers,
                .start = process_start_conn,
                .userdata = w,
        };

        int r = tcp_accept_all(&a, fd);

        if (r < 0)
                server_pause_accepting(w->server, r);
        return 0;
}

static int process_on_udp(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct process_worker *w = userdata;
        int r = udp_serve(w->udp, fd);

        if (r < 0)
                log_debug("UDP receive failed, ignoring: %s", strerror(-r));
        return 0;
}

static int process_start(struct server *s) {
        const struct listeners *ls = &s->listeners;
        struct process_worker *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        s->worker = w;
        w->server = s;
        r = udp_batch_new(s->shared, &w->udp);
        if (r < 0)
                return r;
        r = sd_event_add_signal(s->event, &w->sigchld, SIGCHLD, process_on_sigchld, w);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ls->n_tcp; i++) {
                r = sd_event_add_io(s->event, &w->accept_src[i], ls->tcp[i], EPOLLIN, process_on_accept, w);
                if (r < 0)
                        return r;
                w->n_accept++;
        }
        s->accept_src = w->accept_src;
        s->n_accept = w->n_accept;
        for (size_t i = 0; i < ls->n_udp; i++) {
                r = sd_event_add_io(s->event, &w->udp_src[i], ls->udp[i], EPOLLIN, process_on_udp, w);
                if (r < 0)
                        return r;
                w->n_udp++;
        }
        /* The child gets the state with its copy of our memory. */
        for (size_t i = 0; i < s->n_resumed; i++) {
                process_spawn_conn(w, s->resumed[i].fd, s->resumed[i].slot, &s->resumed[i]);
                s->resumed[i].fd = -1;
        }
        return 0;
}

static void process_timeouts_changed(struct server *s) {
        tcp_kick_all(s->shared, false);
}

static void process_stop(struct server *s) {
        struct process_worker *w = s->worker;

        for (size_t i = 0; i < w->n_accept; i++)
                sd_event_source_set_enabled(w->accept_src[i], SD_EVENT_OFF);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_set_enabled(w->udp_src[i], SD_EVENT_OFF);
        atomic_store(&s->shared->stopping, true);
        tcp_kick_all(s->shared, false);
}

static bool process_drained(struct server *s) {
        struct process_worker *w = s->worker;

        return w->n_children == 0;
}

/* Children are killed and reaped here: nothing outlives this. */
static bool process_finish(struct server *s) {
        struct process_worker *w = s->worker;

        if (!w)
                return true;
        atomic_store(&s->shared->aborting, true);
        while (w->children) {
                struct child *c = w->children;

                kill(c->pid, SIGKILL);
                waitpid(c->pid, NULL, 0);
                atomic_store(&c->slot->close_reason, CLOSE_SHUTDOWN);
                child_done(c, CLD_EXITED, 0);
        }
        for (size_t i = 0; i < w->n_accept; i++)
                sd_event_source_disable_unref(w->accept_src[i]);
        for (size_t i = 0; i < w->n_udp; i++)
                sd_event_source_disable_unref(w->udp_src[i]);
        sd_event_source_disable_unref(w->sigchld);
        udp_batch_free(w->udp);
        free(w);
        s->worker = NULL;
        return true;
}

static bool process_alive(struct server *s, uint64_t now, uint64_t timeout) {
        /* Everything the parent does runs on the main loop checking this. */
        return true;
}

const struct worker_ops worker_process_ops = {
        .name = "process",
        .holds_connections = false,
        .start = process_start,
        .timeouts_changed = process_timeouts_changed,
        .stop = process_stop,
        .drained = process_drained,
        .finish = process_finish,
        .alive = process_alive,
};
