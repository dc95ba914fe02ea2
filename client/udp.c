/* SPDX-License-Identifier: MIT */
/* UDP: one datagram out, one back, each within the timeout.
 *
 * The socket is connect()ed to the server: then the kernel delivers only
 * the server's datagrams, and an ICMP "port unreachable" comes back as
 * ECONNREFUSED from send() or recv() instead of being dropped, so a
 * missing server is told at once rather than after the timeout.  (An
 * unconnected socket, as in the seed's client, never sees it.) */

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "fd-wait.h"
#include "uppercase.h"

struct udp_peer {
        struct session *s;
        const struct addrinfo *ai;      /* the address in use */
        int fd;
        bool answered;                  /* it replied once: keep it */
        char reply[65536];
};

static int udp_peer_open(struct udp_peer *u, const struct addrinfo *ai) {
        int r = -EHOSTUNREACH;

        /* An address of a family the host cannot use (::1 with IPv6 off)
         * is skipped like one that refuses. */
        for (; ai; ai = ai->ai_next) {
                r = net_udp_open(u->s, ai);
                if (r >= 0) {
                        u->ai = ai;
                        u->fd = r;
                        return 0;
                }
        }
        return r;
}

static void udp_peer_close(struct udp_peer *u) {
        if (u->fd >= 0)
                close(u->fd);
        u->fd = -1;
}

static int udp_send(struct udp_peer *u, const char *msg, size_t len, uint64_t deadline) {
        for (;;) {
                int r;

                if (send(u->fd, msg, len, 0) >= 0)
                        return 0;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                r = fd_wait(u->fd, POLLOUT, net_msec_until(deadline));
                if (r < 0)
                        return r;
        }
}

static int udp_receive(struct udp_peer *u, size_t *ret_len, uint64_t deadline) {
        for (;;) {
                ssize_t n = recv(u->fd, u->reply, sizeof(u->reply), 0);
                int r;

                if (n >= 0) {
                        *ret_len = (size_t) n;
                        return 0;
                }
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                r = fd_wait(u->fd, POLLIN, net_msec_until(deadline));
                if (r < 0)
                        return r;
        }
}

static int udp_exchange_once(struct udp_peer *u, const char *msg, size_t len, size_t *ret_len) {
        uint64_t deadline = now_usec_monotonic() + u->s->o->timeout_usec;
        int r;

        r = udp_send(u, msg, len, deadline);
        if (r < 0)
                return r;
        return udp_receive(u, ret_len, deadline);
}

/* Refused by an address that never answered: the next one may listen
 * ("localhost" is ::1 and 127.0.0.1, the daemon maybe on one only). */
static bool udp_try_next(struct udp_peer *u) {
        if (u->answered || !u->ai->ai_next)
                return false;
        udp_peer_close(u);
        return udp_peer_open(u, u->ai->ai_next) >= 0;
}

static int udp_exchange(struct udp_peer *u, const char *msg, size_t len, size_t *ret_len) {
        struct session *s = u->s;
        int r;

        if (len > CLIENT_DATAGRAM_MAX)
                return session_error(s, -EMSGSIZE, "%zu bytes do not fit in a UDP datagram (at most %d)",
                                     len, CLIENT_DATAGRAM_MAX);
        do
                r = udp_exchange_once(u, msg, len, ret_len);
        while (r == -ECONNREFUSED && udp_try_next(u));
        if (r == -ECONNREFUSED)
                return session_error(s, r, "%s refused (nothing listening)", s->endpoint);
        if (r == -ETIMEDOUT)
                return session_error(s, r, "no reply from %s within %s s", s->endpoint, s->timeout_text);
        if (r < 0)
                return session_error(s, r, "cannot exchange datagrams with %s: %s",
                                     s->endpoint, strerror(-r));
        u->answered = true;
        return 0;
}

/* The reply, and a "\n" unless it ends with one (as the seed's print()). */
static int udp_print(struct udp_peer *u, size_t len) {
        int r = net_write_all(STDOUT_FILENO, u->reply, len);

        if (r >= 0 && (len == 0 || u->reply[len - 1] != '\n'))
                r = net_write_all(STDOUT_FILENO, "\n", 1);
        if (r < 0)
                return session_error(u->s, r, "cannot write to standard output: %s", strerror(-r));
        return 0;
}

static int udp_send_and_print(struct udp_peer *u, const char *msg, size_t len) {
        size_t reply_len;
        int r;

        r = udp_exchange(u, msg, len, &reply_len);
        if (r < 0)
                return r;
        return udp_print(u, reply_len);
}

int udp_oneshot(struct session *s, const char *msg, size_t len) {
        static struct udp_peer u;
        int r;

        u = (struct udp_peer) { .s = s, .fd = -1 };
        r = udp_peer_open(&u, s->addrs);
        if (r >= 0)
                r = udp_send_and_print(&u, msg, len);
        udp_peer_close(&u);
        return r;
}

/* Next line of standard input: 1, 0 at its end, or -errno. */
static int udp_next_line(struct session *s, struct line_reader *lr, bool interactive,
                         const char **line, size_t *len) {
        int r;

        if (s->editor)
                r = editor_read(s->editor, -1, line, len);
        else {
                if (interactive)
                        (void) net_write_all(STDERR_FILENO, "> ", 2);
                r = line_reader_next(lr, line, len);
        }
        if (r == -EMSGSIZE)
                return session_error(s, r, "a line of standard input is too long for a UDP datagram "
                                     "(at most %d bytes)", CLIENT_DATAGRAM_MAX);
        if (r < 0)
                return session_error(s, r, "cannot read standard input: %s", strerror(-r));
        if (r == 0 && interactive)
                (void) net_write_all(STDERR_FILENO, "\n", 1);
        return r;
}

int udp_lines(struct session *s, bool interactive) {
        static struct udp_peer u;
        static struct line_reader lr;
        const char *line;
        size_t len;
        int r;

        u = (struct udp_peer) { .s = s, .fd = -1 };
        line_reader_init(&lr, STDIN_FILENO);
        r = udp_peer_open(&u, s->addrs);
        while (r >= 0) {
                r = udp_next_line(s, &lr, interactive, &line, &len);
                if (r <= 0)
                        break;
                /* "." ends a session typed by hand; there is no connection
                 * to close, so it is not sent. */
                if (interactive && client_is_quit_line(line, len))
                        break;
                r = udp_send_and_print(&u, line, len);
        }
        udp_peer_close(&u);
        return r < 0 ? r : 0;
}
