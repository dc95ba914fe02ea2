/* SPDX-License-Identifier: MIT */
#pragma once

/* uppercase(1), the lab's client: the command line, the pure helpers
 * (lines, words, ports, durations) and the TCP and UDP sessions.
 *
 * Nothing here prints an error: functions return -errno and leave a
 * one-line message in the session's err buffer; main() prints it, once. */

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses, as documented in uppercase(1). */
enum {
        CLIENT_EXIT_OK = 0,
        CLIENT_EXIT_NETWORK = 1,        /* network error or timeout */
        CLIENT_EXIT_USAGE = 2,
};

#define CLIENT_ERR_MAX          512
#define CLIENT_DEFAULT_HOST     "localhost"
#define CLIENT_DEFAULT_PORT     "12000"
#define CLIENT_UDP_TIMEOUT_USEC (2 * 1000000ULL)
#define CLIENT_TCP_TIMEOUT_USEC (10 * 1000000ULL)
/* The largest UDP payload over IPv4, and what the daemon answers at most. */
#define CLIENT_DATAGRAM_MAX     65507
/* Longest line read from standard input in the line-by-line modes. */
#define CLIENT_LINE_MAX         65536

#define CLIENT_SYNOPSIS \
        "Usage: uppercase [-u|--udp] [-w|--timeout SECONDS] [-4|-6] [-n]\n" \
        "                 [-h|--help] [-V|--version] [HOST [PORT]] [TEXT...]\n"

/* ---- the command line (options.c) ---------------------------------------- */

enum client_action {
        CLIENT_ACTION_RUN,
        CLIENT_ACTION_HELP,
        CLIENT_ACTION_VERSION,
};

struct client_options {
        enum client_action action;
        bool udp;
        bool newline;                   /* -n: a "\n" after TEXT */
        int family;                     /* AF_UNSPEC, or AF_INET/AF_INET6 by -4/-6 */
        uint64_t timeout_usec;          /* -w, else the protocol's default */
        char host[NI_MAXHOST];          /* without [ ] around an IPv6 address */
        char port[6];
        char **text;                    /* TEXT words; NULL when none given */
        int n_text;
};

/* Parses the command line.  Options stop at the first non-option (or
 * "--"); then the first argument is HOST, the next is PORT when it is all
 * digits, and the rest is TEXT.  Returns 0, or -EINVAL with the message in
 * err.  Touches no network. */
int client_parse_argv(int argc, char *argv[], struct client_options *o, char *err, size_t errlen);
void client_usage(FILE *f);

/* ---- pure helpers (text.c) ----------------------------------------------- */

/* "1".."65535", digits only.  0 and the number, or -EINVAL / -ERANGE. */
int client_parse_port(const char *s, uint16_t *ret);
/* A duration for -w: "2", "0.5", "250ms", "2s"; more than zero.  Returns
 * 0, or -EINVAL / -ERANGE. */
int client_parse_timeout(const char *s, uint64_t *ret_usec);
bool client_all_digits(const char *s);
/* Copies host into buf, without the brackets of "[::1]".  -EINVAL when
 * empty, -ENAMETOOLONG when it does not fit. */
int client_copy_host(const char *host, char *buf, size_t len);
/* "HOST:PORT", or "[HOST]:PORT" when HOST holds a colon.  Returns buf. */
char *client_format_endpoint(const char *host, const char *port, char *buf, size_t len);

/* The words joined by single spaces, plus "\n" when newline.  Returns a
 * malloc()ed buffer (not NUL-terminated) and its length in *ret_len, or
 * NULL when out of memory. */
char *client_join_words(char *const words[], int n, bool newline, size_t *ret_len);

/* Looks for the first line in buf[0..len).  A line ends at "\n"; at the
 * end of the input (eof) the bytes left are a last line without one.
 * Returns 1 and the line's length without its "\n" in *ret_len and the
 * bytes it takes up in *ret_used; 0 when more input is needed (or none is
 * left at eof); -EMSGSIZE when max bytes hold no "\n". */
int client_split_line(const char *buf, size_t len, bool eof, size_t max,
                      size_t *ret_len, size_t *ret_used);
/* The line that ends a persistent session: exactly "." (or ".\r"), as the
 * daemon reads it. */
bool client_is_quit_line(const char *line, size_t len);
/* Whether an input starting with head[0..len) may begin with the line
 * that ends a session, so that the server owes no reply at all; whole:
 * the input is just those bytes.  Needs at most 3 bytes of head. */
bool client_begins_with_quit_line(const char *head, size_t len, bool whole);
/* How many "\n" in buf. */
size_t client_count_newlines(const char *buf, size_t len);

/* ---- reading lines from a file descriptor (lines.c) ----------------------- */

struct line_reader {
        int fd;
        bool eof;
        size_t len;                     /* bytes in buf */
        size_t used;                    /* bytes of buf taken by lines handed out */
        char buf[CLIENT_LINE_MAX];
};

void line_reader_init(struct line_reader *lr, int fd);
/* One read() into the buffer: bytes read, 0 at EOF, or -errno. */
int line_reader_fill(struct line_reader *lr);
/* Hands out the next complete line (without "\n"): 1, 0 when a fill() is
 * needed (or, at EOF, nothing is left), -EMSGSIZE for a line too long. */
int line_reader_take(struct line_reader *lr, const char **ret_line, size_t *ret_len);
/* The next line, reading as needed (blocking): 1, 0 at the end, -errno. */
int line_reader_next(struct line_reader *lr, const char **ret_line, size_t *ret_len);

/* ---- line editing on a terminal (edit.c) ---------------------------------- */

struct editor;

/* An editor for the lines typed on the terminal in_fd (libedit: prompt,
 * arrow keys, history); NULL when in_fd is no terminal, or editing cannot
 * be had: then lines are read plainly. */
struct editor *editor_new(int in_fd);
void editor_free(struct editor *e);
/* Prompts and reads one line: 1 with the line (without its "\n"; valid
 * until the next call), 0 at the end of input (Ctrl-D), -EAGAIN when
 * watch_fd (-1: none) became readable first (the line being typed is
 * dropped), -EMSGSIZE for a line too long, or -errno. */
int editor_read(struct editor *e, int watch_fd, const char **ret_line, size_t *ret_len);

/* ---- sessions (run.c, net.c, tcp.c, udp.c) -------------------------------- */

struct session {
        const struct client_options *o;
        char endpoint[NI_MAXHOST + 16]; /* "HOST:PORT" for messages */
        char timeout_text[32];          /* the timeout in seconds, "2" */
        int timeout_msec;
        struct addrinfo *addrs;
        struct editor *editor;          /* interactive, on a terminal: editing; else NULL */
        char *err;
        size_t errlen;
};

/* Runs what the options ask for.  0, or -errno with err set. */
int client_run(const struct client_options *o, char *err, size_t errlen);

/* Stores a message in s->err and returns r (a -errno), for "return
 * session_error(s, r, ...)". */
int session_error(struct session *s, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int net_resolve(struct session *s, int socktype);
/* A connected, non-blocking TCP socket to the first address that takes
 * the connection, or -errno. */
int net_tcp_connect(struct session *s);
/* A connected, non-blocking UDP socket to ai, or -errno.  Connected so
 * that an ICMP "port unreachable" is reported as ECONNREFUSED. */
int net_udp_open(struct session *s, const struct addrinfo *ai);
/* Writes everything to fd (stdout may be non-blocking): 0 or -errno. */
int net_write_all(int fd, const char *data, size_t len);
/* Milliseconds until deadline (usec, CLOCK_MONOTONIC), at least 0. */
int net_msec_until(uint64_t deadline_usec);

/* TCP: the message, or standard input, through the server to standard
 * output, both directions at once; then a half-close and every reply up
 * to the server's EOF.  With print_newline, a "\n" follows an answer that
 * does not end with one. */
int tcp_pump(struct session *s, int in_fd, const char *msg, size_t msg_len, bool print_newline);
int tcp_interactive(struct session *s);
int udp_oneshot(struct session *s, const char *msg, size_t len);
/* One datagram per line of standard input; interactive adds a prompt and
 * "." to end. */
int udp_lines(struct session *s, bool interactive);
