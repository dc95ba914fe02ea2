/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "duration.h"
#include "fork-helper.h"
#include "tcp-blocking.h"

/* ---- the daemon's side ---- */

/* SO_SNDBUF of the daemon's end (the kernel doubles it): about ten
 * messages, each a batch of connections. */
#define FORK_QUEUE_BYTES 16384

void fork_helper_path(char *path) {
        ssize_t n = readlink("/proc/self/exe", path, PATH_MAX - 1);
        char *slash;

        if (n > 0) {
                path[n] = '\0';
                slash = strrchr(path, '/');
                if (slash && (size_t) (slash + 1 - path) + sizeof(FORK_HELPER_NAME) <= PATH_MAX) {
                        strcpy(slash + 1, FORK_HELPER_NAME);
                        if (access(path, X_OK) == 0)
                                return;
                }
        }
        strcpy(path, LIBEXECDIR "/uppercased/" FORK_HELPER_NAME);
}

int fork_helper_spawn(const char *path, struct shared *sh, struct fork_helper *ret) {
        char *argv[] = { (char *) FORK_HELPER_NAME, NULL };
        char *envp[] = { NULL };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        int sv[2], high[2] = { -1, -1 }, r;
        sigset_t none, defaults;
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        /* Out of the way of 3 and 4, so that neither dup2() clobbers the
         * other's source; both stay close-on-exec here. */
        high[0] = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
        high[1] = fcntl(sh->memfd, F_DUPFD_CLOEXEC, 10);
        if (high[0] < 0 || high[1] < 0) {
                r = -errno;
                goto out;
        }
        sigemptyset(&none);
        sigfillset(&defaults);
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, high[0], FORK_HELPER_SOCKET_FD);
        posix_spawn_file_actions_adddup2(&fa, high[1], FORK_HELPER_SHARED_FD);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = -posix_spawn(&pid, path, &fa, &attr, argv, envp);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        if (r < 0)
                goto out;
        /* A short queue to the helper, a few batches: connections it has
         * not forked yet wait in the listen backlog rather than in the
         * socket (the daemon holds its batch and stops accepting). */
        if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &(int) { FORK_QUEUE_BYTES }, sizeof(int)) < 0 ||
            fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
                r = -errno;
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                goto out;
        }
        *ret = (struct fork_helper) { .pid = pid, .sock = sv[0] };
        sv[0] = -1;
out:
        if (sv[0] >= 0)
                close(sv[0]);
        close(sv[1]);
        if (high[0] >= 0)
                close(high[0]);
        if (high[1] >= 0)
                close(high[1]);
        return r;
}

int fork_helper_send(const struct fork_helper *h, const int *fds, const uint32_t *slots, size_t n) {
        struct iovec iov = { (void *) slots, n * sizeof(*slots) };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(FORK_BATCH_MAX * sizeof(int))];
        } control = { 0 };
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = CMSG_SPACE(n * sizeof(int)),
        };
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

        if (n == 0 || n > FORK_BATCH_MAX)
                return -EINVAL;
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(n * sizeof(int));
        memcpy(CMSG_DATA(c), fds, n * sizeof(int));
        for (;;) {
                if (sendmsg(h->sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                        return 0;
                if (errno == EINTR)
                        continue;
                if (errno == ECONNREFUSED || errno == ECONNRESET || errno == ENOTCONN)
                        return -EPIPE;
                return -errno;
        }
}

int fork_helper_read(const struct fork_helper *h, struct fork_report *ret) {
        for (;;) {
                ssize_t n = recv(h->sock, ret, FORK_REPORTS_MAX * sizeof(*ret), MSG_DONTWAIT);

                if (n == 0)
                        return -EPIPE;
                if (n > 0 && n % sizeof(*ret) == 0)
                        return (int) (n / sizeof(*ret));
                if (n > 0)
                        continue;       /* not reports: ours send none other */
                if (errno == EAGAIN)
                        return 0;
                if (errno != EINTR)
                        return -EPIPE;
        }
}

void fork_helper_close(struct fork_helper *h, uint64_t deadline) {
        bool exited = false;

        if (h->sock >= 0)
                close(h->sock);
        h->sock = -1;
        if (h->pid <= 0)
                return;
        for (;;) {
                pid_t r = waitpid(h->pid, NULL, WNOHANG);

                if (r == h->pid || (r < 0 && errno != EINTR)) {
                        exited = true;
                        break;
                }
                if (now_usec_monotonic() >= deadline)
                        break;
                usleep(5 * USEC_PER_MSEC);
        }
        if (!exited) {
                kill(h->pid, SIGKILL);
                waitpid(h->pid, NULL, 0);
        }
        h->pid = 0;
}

/* ---- forking a worker: the helper, or the daemon without it ---- */

/* In the worker: keep only the connection fd and stdio, and leave the stop
 * to the daemon (a terminal's ^C reaches the whole process group). */
static void fork_child_prepare(int fd) {
        sigset_t mask;

        if (fd > 3)
                close_range(3, fd - 1, 0);
        close_range(fd + 1, ~0U, 0);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
}

int fork_worker(struct children *t, struct shared *sh, struct conn_slot *slot, int fd,
                const struct resumed_conn *resume) {
        pid_t pid;
        int r;

        r = children_reserve(t);
        if (r < 0)
                return r;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                fork_child_prepare(fd);
                atomic_store(&slot->pid, getpid());
                /* Children do not hand over: see the server's set-up. */
                tcp_serve_blocking_forked(sh, slot, fd, resume);
                _exit(EXIT_SUCCESS);
        }
        atomic_store(&slot->pid, pid);
        children_add(t, pid, slot);
        return pid;
}

/* ---- the helper's side ---- */

struct helper {
        int sock;
        struct shared *sh;
        struct children children;
        bool eof;                       /* the daemon closed the socket */
        struct fork_report *queue;      /* reports the socket had no room for */
        size_t queued, queue_size;
};

/* Sends the queued reports the socket takes; the others wait for room.
 * The helper never blocks on the daemon: a daemon blocked on the helper
 * would deadlock. */
static void helper_flush(struct helper *h) {
        size_t sent = 0;

        while (sent < h->queued) {
                size_t k = h->queued - sent < FORK_REPORTS_MAX ? h->queued - sent : FORK_REPORTS_MAX;
                ssize_t n = send(h->sock, &h->queue[sent], k * sizeof(*h->queue), MSG_DONTWAIT | MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                /* Sent, or the daemon is gone: then nobody wants them. */
                sent += k;
        }
        memmove(h->queue, h->queue + sent, (h->queued - sent) * sizeof(*h->queue));
        h->queued -= sent;
}

/* Queues a report; helper_flush() sends the queue. */
static void helper_report(struct helper *h, uint32_t slot, pid_t pid, int code, int status) {
        if (h->queued == h->queue_size) {
                size_t size = h->queue_size ? 2 * h->queue_size : 64;
                struct fork_report *q = realloc(h->queue, size * sizeof(*q));

                /* Without memory the report is lost and the daemon keeps
                 * the slot until it stops: better than not reaping. */
                if (!q)
                        return;
                h->queue = q;
                h->queue_size = size;
        }
        h->queue[h->queued++] = (struct fork_report) { slot, pid, code, status };
}

static void helper_reap(struct helper *h) {
        for (;;) {
                siginfo_t si = { .si_pid = 0 };
                struct conn_slot *slot;

                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                        return;
                slot = children_remove(&h->children, si.si_pid);
                if (slot)
                        helper_report(h, (uint32_t) (slot - h->sh->slots), si.si_pid, si.si_code, si.si_status);
        }
}

static void helper_fork(struct helper *h, int fd, uint32_t index) {
        int r = fork_worker(&h->children, h->sh, &h->sh->slots[index], fd, NULL);

        if (r < 0)
                helper_report(h, index, 0, 0, -r);
}

/* Takes one batch of connections; what does not fit the protocol is
 * dropped (the daemon sends nothing of the kind). */
static void helper_receive(struct helper *h) {
        uint32_t slots[FORK_BATCH_MAX];
        struct iovec iov = { slots, sizeof(slots) };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(FORK_BATCH_MAX * sizeof(int))];
        } control;
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        ssize_t n = recvmsg(h->sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        int fds[FORK_BATCH_MAX];
        size_t nfds = 0, nslots;
        struct cmsghdr *c;

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                h->eof = true;
                return;
        }
        if (n < 0)
                return;
        for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && nfds == 0) {
                        nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        if (nfds > FORK_BATCH_MAX)
                                nfds = FORK_BATCH_MAX;
                        memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
                }
        nslots = (size_t) n / sizeof(uint32_t);
        for (size_t i = 0; i < nfds; i++) {
                if (nfds == nslots && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && slots[i] < h->sh->nslots)
                        helper_fork(h, fds[i], slots[i]);
                close(fds[i]);
        }
}

int fork_helper_run(int sock, struct shared *sh) {
        struct helper h = { .sock = sock, .sh = sh };
        sigset_t chld;
        int sfd;

        /* A signalfd, not a handler: ppoll() delivers no signal when a
         * descriptor is ready, and under load the socket always is. */
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &chld, NULL) < 0)
                return -errno;
        sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
        if (sfd < 0)
                return -errno;
        /* Reads the clock once, so that the vDSO's data pages are mapped
         * here: fork() copies those mappings (not the vDSO's code), and
         * every child, which reads the clock, would fault them in again. */
        (void) now_usec_monotonic();
        while (!h.eof || h.children.n > 0) {
                struct pollfd p[2] = {
                        { .fd = h.eof ? -1 : h.sock, .events = POLLIN | (h.queued ? POLLOUT : 0) },
                        { .fd = sfd, .events = POLLIN },
                };
                struct signalfd_siginfo si;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        close(sfd);
                        return -errno;
                }
                if (p[1].revents & POLLIN) {
                        /* Signals coalesce: one read, then every child that exited. */
                        while (read(sfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
                                ;
                        helper_reap(&h);
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
                        helper_receive(&h);
                /* Fork failures of the batch and the children reaped, in
                 * one message. */
                if (h.queued && !h.eof)
                        helper_flush(&h);
        }
        close(sfd);
        children_free(&h.children);
        free(h.queue);
        return 0;
}
