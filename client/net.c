/* SPDX-License-Identifier: MIT */
/* Name resolution, connecting, and the few blocking-with-a-deadline
 * helpers the sessions share. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "errbuf.h"
#include "fd-wait.h"
#include "uppercase.h"

int session_error(struct session *s, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        errbuf_vset(s->err, s->errlen, r, fmt, ap);
        va_end(ap);
        return r;
}

int net_msec_until(uint64_t deadline_usec) {
        uint64_t now = now_usec_monotonic();

        if (now >= deadline_usec)
                return 0;
        /* Rounded up, so that a wait does not end just before the deadline
         * and spin once more with a timeout of 0. */
        return (int) ((deadline_usec - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
}

int net_write_all(int fd, const char *data, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, data, len);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN) {
                        /* stdout inherited O_NONBLOCK: wait, however long
                         * the reader takes, as cat(1) would. */
                        r = fd_wait(fd, POLLOUT, -1);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n < 0)
                        return -errno;
                data += n;
                len -= (size_t) n;
        }
        return 0;
}

int net_resolve(struct session *s, int socktype) {
        /* No AI_ADDRCONFIG: it ignores loopback addresses, so on a lab
         * machine with no other IPv6 address it would hide ::1. */
        struct addrinfo hints = {
                .ai_family = s->o->family,
                .ai_socktype = socktype,
        };
        int r;

        r = getaddrinfo(s->o->host, s->o->port, &hints, &s->addrs);
        if (r == EAI_SYSTEM)
                return session_error(s, -errno, "cannot resolve %s: %m", s->o->host);
        if (r != 0)
                return session_error(s, -EHOSTUNREACH, "cannot resolve %s: %s",
                                     s->o->host, gai_strerror(r));
        return 0;
}

/* The outcome of a non-blocking connect(): 0, or -errno. */
static int finish_connect(int fd, int timeout_msec) {
        socklen_t len = sizeof(int);
        int r, error = 0;

        r = fd_wait(fd, POLLOUT, timeout_msec);
        if (r < 0)
                return r;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                return -errno;
        return -error;
}

static int connect_one(const struct addrinfo *ai, int timeout_msec) {
        int fd, r;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return -errno;
        r = connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ? -errno : 0;
        if (r == -EINPROGRESS || r == -EINTR)
                r = finish_connect(fd, timeout_msec);
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

int net_tcp_connect(struct session *s) {
        int r = -EHOSTUNREACH;

        /* Each address in getaddrinfo()'s order, each with the whole
         * timeout: "localhost" may be ::1 first with the daemon on
         * 127.0.0.1 only. */
        for (const struct addrinfo *ai = s->addrs; ai; ai = ai->ai_next) {
                r = connect_one(ai, s->timeout_msec);
                if (r >= 0)
                        return r;
        }
        return session_error(s, r, "cannot connect to %s: %s", s->endpoint, strerror(-r));
}

int net_udp_open(struct session *s, const struct addrinfo *ai) {
        int fd;

        fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
                return session_error(s, -errno, "cannot create a UDP socket: %m");
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
                int r = -errno;

                close(fd);
                return session_error(s, r, "cannot reach %s: %s", s->endpoint, strerror(-r));
        }
        return fd;
}
