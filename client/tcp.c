/* SPDX-License-Identifier: MIT */
/* TCP sessions: the pump (a message or standard input through the server,
 * both directions at once) and the interactive, line-at-a-time session.
 *
 * The pump never blocks in one direction while the other is full: with a
 * large input, the server's replies fill our receive buffer, the server
 * stops reading while it cannot write, and a client that only sent would
 * wait for ever.  So one poll() watches the socket both ways and standard
 * input, and standard input is read only when the last chunk has gone. */

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "fd-wait.h"
#include "uppercase.h"

#define CHUNK 65536

struct pump {
        struct session *s;
        int sock;
        int in_fd;                      /* -1: the message is all there is */
        const char *out;                /* bytes still to send */
        size_t out_len;
        bool in_eof;                    /* no more input to read */
        bool shut;                      /* our half-close is done */
        bool sock_eof;
        bool owed;                      /* sent something since the last reply */
        bool dropped;                   /* the server stopped taking our input */
        uint64_t deadline;              /* 0: not waiting for the server */
        size_t sent, printed;
        char head[3];                   /* the first bytes sent */
        char last_printed;
        char in[CHUNK];
        char reply[CHUNK];
};

static int timeout_error(struct session *s) {
        return session_error(s, -ETIMEDOUT, "no reply from %s within %s s", s->endpoint, s->timeout_text);
}

/* Waits for the socket and the input (fds[0], fds[1]) for msec (-1: no
 * limit); 0, or the session's error (its timeout included). */
static int poll_two(struct session *s, struct pollfd fds[2], int msec) {
        int n;

        do
                n = poll(fds, 2, msec);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return session_error(s, -errno, "poll: %m");
        return n == 0 ? timeout_error(s) : 0;
}

static int print_reply(struct pump *p, const char *data, size_t len) {
        int r = net_write_all(STDOUT_FILENO, data, len);

        if (r < 0)
                return session_error(p->s, r, "cannot write to standard output: %s", strerror(-r));
        if (len > 0) {
                p->printed += len;
                p->last_printed = data[len - 1];
        }
        return 0;
}

static int pump_receive(struct pump *p) {
        ssize_t n = recv(p->sock, p->reply, sizeof(p->reply), 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        /* A server over its limits closes at once: by a reset, when our
         * bytes reached it first. */
        if (n < 0 && errno == ECONNRESET && p->printed == 0)
                return session_error(p->s, -ECONNRESET, "%s closed the connection without a reply",
                                     p->s->endpoint);
        if (n < 0)
                return session_error(p->s, -errno, "connection to %s lost: %m", p->s->endpoint);
        if (n == 0) {
                p->sock_eof = true;
                p->dropped = p->out_len > 0 || !p->in_eof;
                return 0;
        }
        p->owed = false;
        p->deadline = 0;                /* progress: the wait starts again */
        return print_reply(p, p->reply, (size_t) n);
}

/* The server closed its end before taking all our input: it read a "."
 * line and what follows is not for it, or it refused us.  Not an error
 * here: the replies it owes still arrive before its EOF, and
 * pump_check_answered() tells a refusal from a "." once they have. */
static void pump_drop_input(struct pump *p) {
        p->dropped = true;
        p->out_len = 0;
        p->in_eof = true;
        p->shut = true;
}

static int pump_send(struct pump *p) {
        ssize_t n = send(p->sock, p->out, p->out_len, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                pump_drop_input(p);
                return 0;
        }
        if (n < 0)
                return session_error(p->s, -errno, "cannot send to %s: %m", p->s->endpoint);
        for (size_t i = 0; p->sent + i < sizeof(p->head) && i < (size_t) n; i++)
                p->head[p->sent + i] = p->out[i];
        p->sent += (size_t) n;
        p->out += n;
        p->out_len -= (size_t) n;
        p->owed = true;
        p->deadline = 0;
        return 0;
}

static int pump_read_input(struct pump *p) {
        ssize_t n = read(p->in_fd, p->in, sizeof(p->in));

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n < 0)
                return session_error(p->s, -errno, "cannot read standard input: %m");
        if (n == 0)
                p->in_eof = true;
        p->out = p->in;
        p->out_len = (size_t) n;
        return 0;
}

static int pump_half_close(struct pump *p) {
        if (p->shut || !p->in_eof || p->out_len > 0)
                return 0;
        p->shut = true;
        /* ENOTCONN: the server has gone already; its EOF tells the rest. */
        if (shutdown(p->sock, SHUT_WR) < 0 && errno != ENOTCONN)
                return session_error(p->s, -errno, "cannot shut down the connection: %m");
        return 0;
}

/* Waiting for the server is bounded; waiting for our own input is not (a
 * slow producer in a pipe is no network error). */
static void pump_arm_deadline(struct pump *p) {
        bool waiting = p->owed || p->shut || p->out_len > 0;

        if (!waiting)
                p->deadline = 0;
        else if (p->deadline == 0)
                p->deadline = now_usec_monotonic() + p->s->o->timeout_usec;
}

static int pump_poll(struct pump *p, struct pollfd fds[2]) {
        fds[0] = (struct pollfd) { .fd = p->sock, .events = POLLIN };
        if (p->out_len > 0)
                fds[0].events |= POLLOUT;
        /* fd -1 is ignored by poll(). */
        fds[1] = (struct pollfd) { .fd = -1, .events = POLLIN };
        if (p->in_fd >= 0 && !p->in_eof && p->out_len == 0)
                fds[1].fd = p->in_fd;
        return poll_two(p->s, fds, p->deadline ? net_msec_until(p->deadline) : -1);
}

static int pump_step(struct pump *p) {
        struct pollfd fds[2];
        int r;

        pump_arm_deadline(p);
        r = pump_poll(p, fds);
        if (r < 0)
                return r;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                r = pump_receive(p);
                if (r < 0 || p->sock_eof)
                        return r;
        }
        if (fds[0].revents & POLLOUT) {
                r = pump_send(p);
                if (r < 0)
                        return r;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))
                return pump_read_input(p);
        return 0;
}

/* A server that closes without a word has refused us (over its limit of
 * connections or workers), unless what we sent starts by ending the
 * session. */
static int pump_check_answered(struct pump *p) {
        size_t head_len = p->sent < sizeof(p->head) ? p->sent : sizeof(p->head);
        bool whole = !p->dropped && p->sent == head_len;

        if (p->printed > 0 || (p->sent == 0 && !p->dropped) ||
            client_begins_with_quit_line(p->head, head_len, whole))
                return 0;
        return session_error(p->s, -ECONNRESET, "%s closed the connection without a reply",
                             p->s->endpoint);
}

int tcp_pump(struct session *s, int in_fd, const char *msg, size_t msg_len, bool print_newline) {
        static struct pump p;   /* 128 KiB of buffers: not on the stack */
        int r;

        p = (struct pump) {
                .s = s,
                .in_fd = in_fd,
                .out = msg,
                .out_len = msg_len,
                .in_eof = in_fd < 0,
        };
        p.sock = net_tcp_connect(s);
        if (p.sock < 0)
                return p.sock;
        do {
                r = pump_half_close(&p);
                if (r >= 0)
                        r = pump_step(&p);
        } while (r >= 0 && !p.sock_eof);
        close(p.sock);
        if (r >= 0)
                r = pump_check_answered(&p);
        if (r >= 0 && print_newline && (p.printed == 0 || p.last_printed != '\n'))
                r = print_reply(&p, "\n", 1);
        return r;
}

/* ---- the interactive session ------------------------------------------------ */

struct chat {
        struct session *s;
        int sock;
        struct line_reader in;
        size_t owed;                    /* reply lines still to come */
        bool quitting;                  /* "." sent or Ctrl-D: waiting for EOF */
        bool prompted;
        uint64_t deadline;
        char line[CLIENT_LINE_MAX + 1];
        char reply[CHUNK];
};

/* The prompt goes to stderr, so that "uppercase | tee log" logs replies
 * only. */
static void chat_prompt(struct chat *c) {
        if (c->prompted)
                return;
        (void) net_write_all(STDERR_FILENO, "> ", 2);
        c->prompted = true;
}

static int chat_send(struct chat *c, const char *data, size_t len) {
        while (len > 0) {
                ssize_t n = send(c->sock, data, len, MSG_NOSIGNAL);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        return session_error(c->s, -errno, "cannot send to %s: %m", c->s->endpoint);
                if (n < 0) {
                        r = fd_wait(c->sock, POLLOUT, c->s->timeout_msec);
                        if (r == -ETIMEDOUT)
                                return timeout_error(c->s);
                        if (r < 0)
                                return session_error(c->s, r, "poll: %s", strerror(-r));
                        continue;
                }
                data += n;
                len -= (size_t) n;
        }
        c->deadline = now_usec_monotonic() + c->s->o->timeout_usec;
        return 0;
}

/* One line typed: sent with its "\n".  A "." line is sent too, for the
 * server to close the connection. */
static int chat_send_line(struct chat *c, const char *line, size_t len) {
        memcpy(c->line, line, len);
        c->line[len] = '\n';
        if (client_is_quit_line(line, len))
                c->quitting = true;
        else
                c->owed++;
        c->prompted = false;
        return chat_send(c, c->line, len + 1);
}

static int chat_end_input(struct chat *c) {
        /* After Ctrl-D the shell's prompt would follow ours on one line. */
        (void) net_write_all(STDERR_FILENO, "\n", 1);
        c->quitting = true;
        c->deadline = now_usec_monotonic() + c->s->o->timeout_usec;
        if (shutdown(c->sock, SHUT_WR) < 0 && errno != ENOTCONN)
                return session_error(c->s, -errno, "cannot shut down the connection: %m");
        return 0;
}

/* With editing: the next line typed, unless the server speaks (or closes)
 * first, which chat_receive() then reads. */
static int chat_edit_line(struct chat *c) {
        const char *line;
        size_t len;
        int r;

        r = editor_read(c->s->editor, c->sock, &line, &len);
        if (r == -EAGAIN) {
                c->prompted = true;     /* a line was being typed */
                return 0;
        }
        if (r == -EMSGSIZE)
                return session_error(c->s, r, "line too long (at most %d bytes)", CLIENT_LINE_MAX - 1);
        if (r < 0)
                return session_error(c->s, r, "cannot read standard input: %s", strerror(-r));
        if (r == 0)
                return chat_end_input(c);
        return chat_send_line(c, line, len);
}

/* Sends the next complete line typed, if any, once the last is answered. */
static int chat_next_line(struct chat *c) {
        const char *line;
        size_t len;
        int r;

        if (c->owed > 0 || c->quitting)
                return 0;
        if (c->s->editor)
                return chat_edit_line(c);
        r = line_reader_take(&c->in, &line, &len);
        if (r == -EMSGSIZE)
                return session_error(c->s, r, "line too long (at most %d bytes)", CLIENT_LINE_MAX - 1);
        if (r > 0)
                return chat_send_line(c, line, len);
        if (c->in.eof)
                return chat_end_input(c);
        chat_prompt(c);
        return 0;
}

static int chat_receive(struct chat *c) {
        ssize_t n = recv(c->sock, c->reply, sizeof(c->reply), 0);
        size_t lines;
        int r;

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n < 0)
                return session_error(c->s, -errno, "connection to %s lost: %m", c->s->endpoint);
        if (n == 0 && c->quitting)
                return 1;
        if (n == 0) {
                if (c->prompted)
                        (void) net_write_all(STDERR_FILENO, "\n", 1);
                return session_error(c->s, -ECONNRESET, "%s closed the connection", c->s->endpoint);
        }
        r = net_write_all(STDOUT_FILENO, c->reply, (size_t) n);
        if (r < 0)
                return session_error(c->s, r, "cannot write to standard output: %s", strerror(-r));
        lines = client_count_newlines(c->reply, (size_t) n);
        c->owed -= lines < c->owed ? lines : c->owed;
        c->deadline = now_usec_monotonic() + c->s->o->timeout_usec;
        return 0;
}

static int chat_poll(struct chat *c, struct pollfd fds[2]) {
        bool waiting = c->owed > 0 || c->quitting;

        fds[0] = (struct pollfd) { .fd = c->sock, .events = POLLIN };
        /* With editing, the editor reads the terminal. */
        fds[1] = (struct pollfd) { .fd = waiting || c->s->editor ? -1 : c->in.fd, .events = POLLIN };
        return poll_two(c->s, fds, waiting ? net_msec_until(c->deadline) : -1);
}

/* Returns 1 when the server closed after "." or Ctrl-D, 0 to go on. */
static int chat_step(struct chat *c) {
        struct pollfd fds[2];
        int r;

        r = chat_next_line(c);
        if (r < 0)
                return r;
        r = chat_poll(c, fds);
        if (r < 0)
                return r;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                r = chat_receive(c);
                if (r != 0)
                        return r;
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                r = line_reader_fill(&c->in);
                if (r < 0)
                        return session_error(c->s, r, "cannot read standard input: %s", strerror(-r));
        }
        return 0;
}

int tcp_interactive(struct session *s) {
        static struct chat c;   /* 192 KiB of buffers: not on the stack */
        int r;

        c = (struct chat) { .s = s };
        line_reader_init(&c.in, STDIN_FILENO);
        c.sock = net_tcp_connect(s);
        if (c.sock < 0)
                return c.sock;
        do
                r = chat_step(&c);
        while (r == 0);
        close(c.sock);
        return r < 0 ? r : 0;
}
