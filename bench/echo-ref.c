// SPDX-License-Identifier: MIT
/*
 * echo-ref: minimal echo servers, the "physical limit" references for
 * uppercase-bench (run it with --echo against them).
 *
 *   echo-ref epoll|thread|fork|udp PORT [ADDR]
 *
 *   epoll   one thread, non-blocking sockets, level-triggered epoll:
 *           read up to 16 KiB, write it back (what a write leaves over is
 *           kept and reading that connection pauses until it is flushed)
 *   thread  a detached thread (64 KiB stack) per connection, blocking
 *           read/write
 *   fork    a process per connection, blocking read/write; the parent reaps
 *           its children (so their CPU time shows in its cutime/cstime)
 *   udp     recvmmsg/sendmmsg in batches of 32, blocking
 *
 * TCP sockets get TCP_NODELAY; the listen backlog is 128 (uppercased's
 * default).  ADDR defaults to 127.0.0.1.  Runs until killed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUF 16384
#define UDP_BATCH 32
#define BACKLOG 128

static void fail(const char *what) {
        fprintf(stderr, "echo-ref: %s: %s\n", what, strerror(errno));
        exit(1);
}

static int listen_on(const char *addr, const char *port, int type, int flags) {
        struct addrinfo hints = { 0 }, *res;
        int fd, one = 1, r;

        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
        hints.ai_socktype = type;
        r = getaddrinfo(addr, port, &hints, &res);
        if (r != 0) {
                fprintf(stderr, "echo-ref: %s port %s: %s\n", addr, port, gai_strerror(r));
                exit(2);
        }
        fd = socket(res->ai_family, type | flags | SOCK_CLOEXEC, 0);
        if (fd < 0)
                fail("socket");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
                fail("bind");
        freeaddrinfo(res);
        if (type == SOCK_STREAM && listen(fd, BACKLOG) < 0)
                fail("listen");
        return fd;
}

static void nodelay(int fd) {
        int one = 1;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Blocking echo of one connection, until EOF or an error. */
static void echo_blocking(int fd) {
        char buf[BUF];

        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf)), off = 0;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                while (off < n) {
                        ssize_t w = send(fd, buf + off, (size_t) (n - off), MSG_NOSIGNAL);

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0)
                                return;
                        off += w;
                }
        }
}

/* ------------------------------------------------------------------- epoll */

struct pending {
        char *buf;
        size_t off, len;
};

static struct pending *pend;
static size_t npend;

static void serve_epoll(int lfd) {
        static char buf[BUF];
        struct epoll_event evs[256], ev = { .events = EPOLLIN };
        int ep = epoll_create1(EPOLL_CLOEXEC);

        if (ep < 0)
                fail("epoll_create1");
        ev.data.fd = lfd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
                fail("epoll_ctl");
        for (;;) {
                int n = epoll_wait(ep, evs, 256, -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        fail("epoll_wait");
                for (int i = 0; i < n; i++) {
                        int fd = evs[i].data.fd;
                        struct pending *p;
                        ssize_t r, w;

                        if (fd == lfd) {
                                for (int k = 0; k < 64; k++) {
                                        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                                        if (c < 0)
                                                break;
                                        nodelay(c);
                                        if ((size_t) c >= npend) {
                                                size_t nn = (size_t) c * 2 + 64;
                                                struct pending *np = realloc(pend, nn * sizeof(*np));

                                                if (!np) {
                                                        close(c);
                                                        continue;
                                                }
                                                memset(np + npend, 0, (nn - npend) * sizeof(*np));
                                                pend = np;
                                                npend = nn;
                                        }
                                        ev.events = EPOLLIN;
                                        ev.data.fd = c;
                                        if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) < 0)
                                                close(c);
                                }
                                continue;
                        }
                        p = &pend[fd];
                        if (p->len) {
                                /* Writable again: flush, then read again. */
                                w = send(fd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
                                if (w < 0 && errno != EAGAIN && errno != EINTR)
                                        goto drop;
                                if (w > 0)
                                        p->off += (size_t) w;
                                if (p->off == p->len) {
                                        p->off = p->len = 0;
                                        ev.events = EPOLLIN;
                                        ev.data.fd = fd;
                                        (void) epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                                }
                                continue;
                        }
                        r = read(fd, buf, sizeof(buf));
                        if (r < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (r <= 0)
                                goto drop;
                        w = send(fd, buf, (size_t) r, MSG_NOSIGNAL);
                        if (w < 0 && errno != EAGAIN && errno != EINTR)
                                goto drop;
                        if (w < 0)
                                w = 0;
                        if (w < r) {
                                if (!p->buf && !(p->buf = malloc(BUF)))
                                        goto drop;
                                memcpy(p->buf, buf + w, (size_t) (r - w));
                                p->off = 0;
                                p->len = (size_t) (r - w);
                                ev.events = EPOLLOUT;
                                ev.data.fd = fd;
                                (void) epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                        }
                        continue;
drop:
                        free(p->buf);
                        memset(p, 0, sizeof(*p));
                        close(fd);
                }
        }
}

/* ------------------------------------------------------------------ thread */

static void *conn_thread(void *arg) {
        int fd = (int) (intptr_t) arg;

        echo_blocking(fd);
        close(fd);
        return NULL;
}

static void serve_thread(int lfd) {
        pthread_attr_t attr;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        for (;;) {
                pthread_t t;
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

                if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EMFILE || errno == ENFILE) {
                                usleep(10000);
                                continue;
                        }
                        fail("accept");
                }
                nodelay(c);
                if (pthread_create(&t, &attr, conn_thread, (void *) (intptr_t) c) != 0)
                        close(c);
        }
}

/* -------------------------------------------------------------------- fork */

static void reap(int sig) {
        int saved = errno;

        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        errno = saved;
}

static void serve_fork(int lfd) {
        struct sigaction sa = { .sa_handler = reap, .sa_flags = SA_RESTART | SA_NOCLDSTOP };
        pid_t parent = getpid();

        sigemptyset(&sa.sa_mask);
        sigaction(SIGCHLD, &sa, NULL);
        for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                pid_t pid;

                if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno == EMFILE || errno == ENFILE) {
                                usleep(10000);
                                continue;
                        }
                        fail("accept");
                }
                pid = fork();
                if (pid == 0) {
                        /* Dies with the parent. */
                        prctl(PR_SET_PDEATHSIG, SIGTERM);
                        if (getppid() != parent)
                                _exit(0);
                        close(lfd);
                        nodelay(c);
                        echo_blocking(c);
                        _exit(0);
                }
                close(c);
        }
}

/* --------------------------------------------------------------------- udp */

static void serve_udp(int fd) {
        static char bufs[UDP_BATCH][65536];
        struct mmsghdr msgs[UDP_BATCH];
        struct iovec iov[UDP_BATCH];
        struct sockaddr_storage peers[UDP_BATCH];
        int size = 4 << 20;

        (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        for (;;) {
                int n, off = 0;

                for (int i = 0; i < UDP_BATCH; i++) {
                        iov[i].iov_base = bufs[i];
                        iov[i].iov_len = sizeof(bufs[i]);
                        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
                        msgs[i].msg_hdr.msg_name = &peers[i];
                        msgs[i].msg_hdr.msg_namelen = sizeof(peers[i]);
                        msgs[i].msg_hdr.msg_iov = &iov[i];
                        msgs[i].msg_hdr.msg_iovlen = 1;
                }
                /* Block for the first datagram, take what else is queued. */
                n = recvmmsg(fd, msgs, UDP_BATCH, MSG_WAITFORONE, NULL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fail("recvmmsg");
                }
                for (int i = 0; i < n; i++)
                        iov[i].iov_len = msgs[i].msg_len;
                while (off < n) {
                        int s = sendmmsg(fd, msgs + off, (unsigned) (n - off), 0);

                        if (s < 0) {
                                if (errno == EINTR)
                                        continue;
                                off++;  /* skip the datagram that failed */
                                continue;
                        }
                        off += s;
                }
        }
}

int main(int argc, char **argv) {
        const char *addr = argc > 3 ? argv[3] : "127.0.0.1";

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "Usage: echo-ref epoll|thread|fork|udp PORT [ADDR]\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        if (strcmp(argv[1], "udp") == 0)
                serve_udp(listen_on(addr, argv[2], SOCK_DGRAM, 0));
        else if (strcmp(argv[1], "epoll") == 0)
                serve_epoll(listen_on(addr, argv[2], SOCK_STREAM, SOCK_NONBLOCK));
        else if (strcmp(argv[1], "thread") == 0)
                serve_thread(listen_on(addr, argv[2], SOCK_STREAM, 0));
        else if (strcmp(argv[1], "fork") == 0)
                serve_fork(listen_on(addr, argv[2], SOCK_STREAM, 0));
        else {
                fprintf(stderr, "echo-ref: unknown server %s\n", argv[1]);
                return 2;
        }
        return 0;
}
