/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "suites.h"

static union sockaddr_union peer(int family, const char *host, uint16_t port) {
        union sockaddr_union sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa.sa_family = (sa_family_t) family;
        if (family == AF_INET) {
                ck_assert_int_eq(inet_pton(AF_INET, host, &sa.in.sin_addr), 1);
                sa.in.sin_port = htons(port);
        } else {
                ck_assert_int_eq(inet_pton(AF_INET6, host, &sa.in6.sin6_addr), 1);
                sa.in6.sin6_port = htons(port);
        }
        return sa;
}

static struct client_event event(enum client_event_kind kind, int family, const char *host) {
        return (struct client_event) {
                .kind = kind,
                .peer = peer(family, host, 40512),
                .conn_id = 7,
                .bytes_in = kind == CLIENT_UDP ? 4 : 12,
                .bytes_out = kind == CLIENT_UDP ? 4 : 12,
                .duration_usec = 4321,
                .reason = CLOSE_QUIT,
        };
}

static void assert_fields(const struct client_event *ev, const char *const *want, int nwant) {
        char fields[LOG_FIELDS_MAX][LOG_FIELD_MAX];
        int n = log_client_fields(ev, fields);

        ck_assert_int_eq(n, nwant);
        for (int i = 0; i < n; i++)
                ck_assert_str_eq(fields[i], want[i]);
}

#define ASSERT_FIELDS(ev, ...) do {                                             \
                const char *const _want[] = { __VA_ARGS__ };                    \
                assert_fields(ev, _want, (int) (sizeof(_want) / sizeof(_want[0]))); \
        } while (0)

/* ---- stderr capture: fd 2 goes to an unlinked temporary file ---- */

struct capture {
        int fd;
        int saved_stderr;
};

static void capture_start(struct capture *c) {
        char path[] = "/tmp/test_log.XXXXXX";

        c->fd = mkstemp(path);
        ck_assert_int_ge(c->fd, 0);
        unlink(path);
        c->saved_stderr = dup(STDERR_FILENO);
        ck_assert_int_ge(c->saved_stderr, 0);
        ck_assert_int_eq(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

/* Returns what was written, NUL-terminated; free() it. */
static char *capture_end(struct capture *c) {
        off_t size = lseek(c->fd, 0, SEEK_END);
        char *buf;

        ck_assert_int_eq(dup2(c->saved_stderr, STDERR_FILENO), STDERR_FILENO);
        close(c->saved_stderr);
        ck_assert_int_ge(size, 0);
        buf = malloc((size_t) size + 1);
        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(pread(c->fd, buf, (size_t) size, 0), size);
        buf[size] = '\0';
        close(c->fd);
        return buf;
}

static unsigned count_lines(const char *s, const char *line) {
        size_t len = strlen(line);
        unsigned n = 0;

        for (const char *p = s; *p; p = strchr(p, '\n') + 1) {
                ck_assert_ptr_nonnull(strchr(p, '\n'));
                if (strncmp(p, line, len) == 0 && p[len] == '\n')
                        n++;
        }
        return n;
}

/* Puts the logger in a known state; a pending summary is discarded. */
static void log_reset(void) {
        struct capture c;

        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        log_set_shared(NULL);
        log_set_client_limits(true, 0, 0);
        capture_start(&c);
        log_flush_suppressed();
        free(capture_end(&c));
}

static void log_udp_events(unsigned n) {
        struct client_event ev = event(CLIENT_UDP, AF_INET, "192.0.2.7");

        for (unsigned i = 0; i < n; i++)
                log_client(&ev);
}

#define UDP_LINE "udp datagram from 192.0.2.7 port 40512: 4 bytes in, 4 bytes out"

/* ---- log_client_fields ---- */

START_TEST(test_fields_tcp_open_ipv4) {
        struct client_event ev = event(CLIENT_TCP_OPEN, AF_INET, "192.0.2.7");

        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7");
}
END_TEST

/* Behind a balancer: the client its PROXY header named, and the balancer. */
START_TEST(test_fields_tcp_close_via) {
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET, "192.0.2.7");

        ev.via = peer(AF_INET6, "2001:db8::5", 55000);
        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 via 2001:db8::5 port 55000 closed (quit): "
                      "12 bytes in, 12 bytes out, 0.004 s",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "PROXY_ADDR=2001:db8::5",
                      "PROXY_PORT=55000",
                      "CONNECTION_ID=7",
                      "BYTES_IN=12",
                      "BYTES_OUT=12",
                      "DURATION_USEC=4321",
                      "CLOSE_REASON=quit",
                      "MESSAGE_ID=" LOG_ID_CONN_CLOSED);
}
END_TEST

START_TEST(test_fields_tcp_open_via) {
        struct client_event ev = event(CLIENT_TCP_OPEN, AF_INET, "192.0.2.7");

        ev.via = peer(AF_INET, "10.0.0.5", 55000);
        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 via 10.0.0.5 port 55000",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "PROXY_ADDR=10.0.0.5",
                      "PROXY_PORT=55000",
                      "CONNECTION_ID=7");
}
END_TEST

/* A connection on a proxied listener closed for want of a header: the
 * socket's peer, and why. */
START_TEST(test_fields_proxy_refused) {
        static const struct {
                enum proxy_refusal why;
                const char *text, *name;
        } cases[] = {
                { PROXY_REFUSED_UNTRUSTED, "PROXY header refused: peer not in proxy.trusted", "untrusted" },
                { PROXY_REFUSED_MALFORMED, "no valid PROXY header", "malformed" },
                { PROXY_REFUSED_TIMEOUT, "no PROXY header within 2.5 s", "timeout" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct client_event ev = event(CLIENT_PROXY_REFUSED, AF_INET, "10.0.0.9");
                char message[LOG_FIELD_MAX], refused[LOG_FIELD_MAX];

                ev.refusal = cases[i].why;
                ev.proxy_timeout_usec = 2500 * USEC_PER_MSEC;
                snprintf(message, sizeof(message), "MESSAGE=tcp connection from 10.0.0.9 port 40512 "
                         "closed unanswered: %s", cases[i].text);
                snprintf(refused, sizeof(refused), "PROXY_REFUSED=%s", cases[i].name);
                ASSERT_FIELDS(&ev, message, "PRIORITY=6", "REMOTE_ADDR=10.0.0.9", "REMOTE_PORT=40512",
                              "PROTOCOL=tcp", refused);
        }
}
END_TEST

START_TEST(test_fields_tcp_rejected) {
        struct client_event ev = event(CLIENT_TCP_REJECTED, AF_INET6, "::ffff:192.0.2.7");

        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 rejected: connection limit reached",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "MESSAGE_ID=" LOG_ID_REJECTED_CONNECTIONS);
}
END_TEST

START_TEST(test_fields_tcp_rejected_per_source) {
        struct client_event ev = event(CLIENT_TCP_REJECTED, AF_INET, "192.0.2.7");

        ev.reject = REJECT_PER_SOURCE;
        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 rejected: per-source limit reached",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "MESSAGE_ID=" LOG_ID_REJECTED_PER_SOURCE);
}
END_TEST

START_TEST(test_fields_udp_dropped) {
        static const struct {
                enum udp_drop why;
                const char *message;
        } cases[] = {
                { UDP_DROP_RATE, "MESSAGE=udp datagram from 192.0.2.7 port 40512 dropped: rate limit" },
                { UDP_DROP_PRIVILEGED_PORT,
                  "MESSAGE=udp datagram from 192.0.2.7 port 40512 dropped: loop guard (privileged source port)" },
                { UDP_DROP_OWN_PORT,
                  "MESSAGE=udp datagram from 192.0.2.7 port 40512 dropped: loop guard (source is our own port)" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct client_event ev = event(CLIENT_UDP_DROPPED, AF_INET6, "::ffff:192.0.2.7");

                ev.drop = cases[i].why;
                ASSERT_FIELDS(&ev,
                              cases[i].message,
                              "PRIORITY=6",
                              "REMOTE_ADDR=192.0.2.7",
                              "REMOTE_PORT=40512",
                              "PROTOCOL=udp",
                              "BYTES_IN=12");
        }
}
END_TEST

/* Rejections and drops go through the client rate limit like every
 * client entry: a flood cannot flood the log. */
START_TEST(test_drops_rate_limited) {
        struct client_event drop = event(CLIENT_UDP_DROPPED, AF_INET, "192.0.2.7");
        struct client_event refused = {
                .kind = CLIENT_TCP_REJECTED, .peer = peer(AF_INET, "192.0.2.8", 5), .reject = REJECT_PER_SOURCE,
        };
        struct capture c;
        char *out;

        log_reset();
        log_set_client_limits(true, 1, 2);
        capture_start(&c);
        for (int i = 0; i < 50; i++) {
                log_client(&drop);
                log_client(&refused);
        }
        log_flush_suppressed();
        out = capture_end(&c);
        ck_assert_str_eq(out,
                         "udp datagram from 192.0.2.7 port 40512 dropped: rate limit\n"
                         "tcp connection from 192.0.2.8 port 5 rejected: per-source limit reached\n"
                         "suppressed 98 client log entries\n");
        free(out);
        log_reset();
}
END_TEST

/* A batch takes its tokens at once: the first entries get them, the rest
 * are counted as suppressed, as if they had come one by one. */
START_TEST(test_client_admit_batch) {
        struct client_event ev = event(CLIENT_UDP, AF_INET, "192.0.2.7");
        struct capture c;
        unsigned n;
        char *out;

        log_reset();
        log_set_client_limits(true, 1, 3);
        capture_start(&c);
        n = log_client_admit(5);
        ck_assert_uint_eq(n, 3);
        for (unsigned i = 0; i < n; i++)
                log_client_admitted(&ev);
        ck_assert_uint_eq(log_client_admit(4), 0);
        log_client(&ev);
        log_flush_suppressed();
        out = capture_end(&c);
        ck_assert_str_eq(out,
                         "udp datagram from 192.0.2.7 port 40512: 4 bytes in, 4 bytes out\n"
                         "udp datagram from 192.0.2.7 port 40512: 4 bytes in, 4 bytes out\n"
                         "udp datagram from 192.0.2.7 port 40512: 4 bytes in, 4 bytes out\n"
                         "suppressed 7 client log entries\n");
        free(out);
        /* Off: nothing is logged, nothing suppressed. */
        log_set_client_limits(false, 1, 3);
        ck_assert_uint_eq(log_client_admit(5), 0);
        capture_start(&c);
        log_flush_suppressed();
        out = capture_end(&c);
        ck_assert_str_eq(out, "");
        free(out);
        log_reset();
}
END_TEST

START_TEST(test_fields_tcp_close_ipv6) {
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET6, "2001:db8::1");

        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 2001:db8::1 port 40512 closed (quit): "
                      "12 bytes in, 12 bytes out, 0.004 s",
                      "PRIORITY=6",
                      "REMOTE_ADDR=2001:db8::1",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7",
                      "BYTES_IN=12",
                      "BYTES_OUT=12",
                      "DURATION_USEC=4321",
                      "CLOSE_REASON=quit",
                      "MESSAGE_ID=" LOG_ID_CONN_CLOSED);
}
END_TEST

START_TEST(test_fields_tcp_close_mapped) {
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET6, "::ffff:192.0.2.7");

        ev.reason = CLOSE_IDLE;
        ev.duration_usec = 300000000;
        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 closed (idle): "
                      "12 bytes in, 12 bytes out, 300.000 s",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7",
                      "BYTES_IN=12",
                      "BYTES_OUT=12",
                      "DURATION_USEC=300000000",
                      "CLOSE_REASON=idle",
                      "MESSAGE_ID=" LOG_ID_CONN_CLOSED);
}
END_TEST

/* A connection handed over at a restart closes here too: the same
 * MESSAGE_ID, CLOSE_REASON=handover. */
START_TEST(test_fields_tcp_close_handover) {
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET, "192.0.2.7");

        ev.reason = CLOSE_HANDOVER;
        ASSERT_FIELDS(&ev,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512 handed over for a restart: "
                      "12 bytes in, 12 bytes out, 0.004 s",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7",
                      "BYTES_IN=12",
                      "BYTES_OUT=12",
                      "DURATION_USEC=4321",
                      "CLOSE_REASON=handover",
                      "MESSAGE_ID=" LOG_ID_CONN_CLOSED);
}
END_TEST

START_TEST(test_fields_tcp_open_ipv6_and_mapped) {
        struct client_event v6 = event(CLIENT_TCP_OPEN, AF_INET6, "2001:db8::1");
        struct client_event mapped = event(CLIENT_TCP_OPEN, AF_INET6, "::ffff:192.0.2.7");

        ASSERT_FIELDS(&v6,
                      "MESSAGE=tcp connection from 2001:db8::1 port 40512",
                      "PRIORITY=6",
                      "REMOTE_ADDR=2001:db8::1",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7");
        ASSERT_FIELDS(&mapped,
                      "MESSAGE=tcp connection from 192.0.2.7 port 40512",
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=tcp",
                      "CONNECTION_ID=7");
}
END_TEST

START_TEST(test_fields_udp) {
        struct client_event v4 = event(CLIENT_UDP, AF_INET, "192.0.2.7");
        struct client_event v6 = event(CLIENT_UDP, AF_INET6, "2001:db8::1");
        struct client_event mapped = event(CLIENT_UDP, AF_INET6, "::ffff:192.0.2.7");

        ASSERT_FIELDS(&v4,
                      "MESSAGE=" UDP_LINE,
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=udp",
                      "BYTES_IN=4",
                      "BYTES_OUT=4");
        ASSERT_FIELDS(&v6,
                      "MESSAGE=udp datagram from 2001:db8::1 port 40512: 4 bytes in, 4 bytes out",
                      "PRIORITY=6",
                      "REMOTE_ADDR=2001:db8::1",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=udp",
                      "BYTES_IN=4",
                      "BYTES_OUT=4");
        ASSERT_FIELDS(&mapped,
                      "MESSAGE=" UDP_LINE,
                      "PRIORITY=6",
                      "REMOTE_ADDR=192.0.2.7",
                      "REMOTE_PORT=40512",
                      "PROTOCOL=udp",
                      "BYTES_IN=4",
                      "BYTES_OUT=4");
}
END_TEST

START_TEST(test_fields_duration_rounding) {
        static const struct {
                uint64_t usec;
                const char *tail;
        } cases[] = {
                { 0,        " 0.000 s" },
                { 499,      " 0.000 s" },
                { 500,      " 0.001 s" },
                { 1999,     " 0.002 s" },
                { 61234567, " 61.235 s" },
                { 999999,   " 1.000 s" },
        };
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET, "192.0.2.7");
        char fields[LOG_FIELDS_MAX][LOG_FIELD_MAX];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                size_t len = strlen(cases[i].tail);

                ev.duration_usec = cases[i].usec;
                ck_assert_int_eq(log_client_fields(&ev, fields), 11);
                ck_assert_uint_ge(strlen(fields[0]), len);
                ck_assert_str_eq(fields[0] + strlen(fields[0]) - len, cases[i].tail);
        }
}
END_TEST

START_TEST(test_fields_long_values_fit) {
        struct client_event ev = event(CLIENT_TCP_CLOSE, AF_INET6,
                                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        char fields[LOG_FIELDS_MAX][LOG_FIELD_MAX];

        ev.bytes_in = ev.bytes_out = ev.conn_id = UINT64_MAX;
        ev.duration_usec = UINT64_MAX;
        ev.reason = CLOSE_SHUTDOWN;
        ck_assert_int_eq(log_client_fields(&ev, fields), 11);
        /* MESSAGE may be cut, but every buffer stays a terminated string. */
        for (int i = 0; i < 11; i++)
                ck_assert_uint_lt(strlen(fields[i]), LOG_FIELD_MAX);
        ck_assert_str_eq(fields[5], "CONNECTION_ID=18446744073709551615");
        ck_assert_str_eq(fields[9], "CLOSE_REASON=shutdown");
        ck_assert_str_eq(fields[10], "MESSAGE_ID=" LOG_ID_CONN_CLOSED);
}
END_TEST

/* ---- token bucket ---- */

START_TEST(test_ratelimit_burst) {
        struct ratelimit rl;

        ratelimit_init(&rl, 10, 3, 1000);
        for (int i = 0; i < 3; i++)
                ck_assert(ratelimit_take(&rl, 1000));
        ck_assert(!ratelimit_take(&rl, 1000));
        ck_assert(!ratelimit_take(&rl, 1000));
}
END_TEST

START_TEST(test_ratelimit_refill) {
        struct ratelimit rl;

        ratelimit_init(&rl, 10, 3, 1000);
        for (int i = 0; i < 3; i++)
                ck_assert(ratelimit_take(&rl, 1000));

        /* 10/s is one token per 100 ms; half a token is not enough. */
        ck_assert(!ratelimit_take(&rl, 1000 + 50000));
        ck_assert(ratelimit_take(&rl, 1000 + 100000));
        ck_assert(!ratelimit_take(&rl, 1000 + 100000));
        ck_assert(!ratelimit_take(&rl, 1000 + 199999));
        ck_assert(ratelimit_take(&rl, 1000 + 200000));

        /* A long pause refills to the burst, not beyond. */
        for (int i = 0; i < 3; i++)
                ck_assert(ratelimit_take(&rl, 3600 * 1000000ULL));
        ck_assert(!ratelimit_take(&rl, 3600 * 1000000ULL));

        /* Even an absurd one does not overflow. */
        for (int i = 0; i < 3; i++)
                ck_assert(ratelimit_take(&rl, UINT64_MAX));
        ck_assert(!ratelimit_take(&rl, UINT64_MAX));
}
END_TEST

START_TEST(test_ratelimit_take_n) {
        struct ratelimit rl;

        ratelimit_init(&rl, 10, 5, 1000);
        ck_assert_uint_eq(ratelimit_take_n(&rl, 3, 1000), 3);
        ck_assert_uint_eq(ratelimit_take_n(&rl, 3, 1000), 2);
        ck_assert_uint_eq(ratelimit_take_n(&rl, 3, 1000), 0);
        /* 0.25 s: 2.5 tokens, two whole ones. */
        ck_assert_uint_eq(ratelimit_take_n(&rl, 32, 1000 + 250000), 2);
        ck_assert(!ratelimit_take(&rl, 1000 + 250000));
        ck_assert(ratelimit_take(&rl, 1000 + 300000));
        ratelimit_init(&rl, 0, 0, 0);
        ck_assert_uint_eq(ratelimit_take_n(&rl, 32, 0), 32);
}
END_TEST

START_TEST(test_ratelimit_clock_behind) {
        struct ratelimit rl;

        ratelimit_init(&rl, 1000, 1, 5000000);
        ck_assert(ratelimit_take(&rl, 5000000));
        /* An older reading (a thread that sampled the clock earlier) adds nothing. */
        ck_assert(!ratelimit_take(&rl, 1000));
        ck_assert(ratelimit_take(&rl, 5001000));
}
END_TEST

START_TEST(test_ratelimit_unlimited) {
        struct ratelimit rl;

        ratelimit_init(&rl, 0, 0, 0);
        for (int i = 0; i < 100000; i++)
                ck_assert(ratelimit_take(&rl, 0));
}
END_TEST

START_TEST(test_ratelimit_zero_burst) {
        struct ratelimit rl;

        /* A bucket of zero would never admit anything: it holds one. */
        ratelimit_init(&rl, 5, 0, 0);
        ck_assert(ratelimit_take(&rl, 0));
        ck_assert(!ratelimit_take(&rl, 0));
        ck_assert(ratelimit_take(&rl, 200000));
}
END_TEST

/* ---- stderr output ---- */

START_TEST(test_stderr_client_lines) {
        struct client_event open = event(CLIENT_TCP_OPEN, AF_INET, "192.0.2.7");
        struct client_event close_ = event(CLIENT_TCP_CLOSE, AF_INET6, "::ffff:192.0.2.7");
        struct client_event udp = event(CLIENT_UDP, AF_INET6, "2001:db8::1");
        struct capture c;
        char *out;

        log_reset();
        capture_start(&c);
        log_client(&open);
        log_client(&close_);
        log_client(&udp);
        out = capture_end(&c);
        ck_assert_str_eq(out,
                         "tcp connection from 192.0.2.7 port 40512\n"
                         "tcp connection from 192.0.2.7 port 40512 closed (quit): "
                         "12 bytes in, 12 bytes out, 0.004 s\n"
                         "udp datagram from 2001:db8::1 port 40512: 4 bytes in, 4 bytes out\n");
        free(out);
}
END_TEST

/* The daemon's own entries with a MESSAGE_ID: on stderr the same line
 * as without one. */
START_TEST(test_stderr_message_with_id) {
        struct capture c;
        char *out;

        log_reset();
        capture_start(&c);
        log_msg_id(LOG_INFO, LOG_ID_RELOADED, "Configuration reloaded from %s", "x.conf");
        log_msg_id(LOG_ERR, LOG_ID_RELOAD_REFUSED, "Reload failed, keeping the old configuration: %s", "x");
        log_msg_id(LOG_DEBUG, LOG_ID_STARTED, "not at LOG_INFO");
        out = capture_end(&c);
        ck_assert_str_eq(out,
                         "Configuration reloaded from x.conf\n"
                         "error: Reload failed, keeping the old configuration: x\n");
        free(out);
}
END_TEST

/* Every MESSAGE_ID: 128 bits in lower-case hex, as journalctl and the
 * catalog write them, and no two alike (the catalog test checks that
 * each has an entry). */
START_TEST(test_message_ids) {
        static const char *const ids[] = {
                LOG_ID_CONN_CLOSED, LOG_ID_REJECTED_PER_SOURCE, LOG_ID_REJECTED_CONNECTIONS,
                LOG_ID_RELOADED, LOG_ID_RELOAD_REFUSED, LOG_ID_HANDED_OVER, LOG_ID_RESUMED,
                LOG_ID_STARTED, LOG_ID_STOPPING,
        };
        size_t n = sizeof(ids) / sizeof(ids[0]);

        for (size_t i = 0; i < n; i++) {
                ck_assert_uint_eq(strlen(ids[i]), 32);
                ck_assert_uint_eq(strspn(ids[i], "0123456789abcdef"), 32);
                for (size_t j = 0; j < i; j++)
                        ck_assert_str_ne(ids[i], ids[j]);
        }
}
END_TEST

START_TEST(test_stderr_messages) {
        struct capture c;
        char *out;
        int r;

        log_reset();
        capture_start(&c);
        errno = ENOENT;
        log_error("Failed to open %s: %m", "x.conf");
        ck_assert_int_eq(errno, ENOENT);
        log_warning("careful");
        log_notice("notice");
        log_info("ready");
        log_debug("not at LOG_INFO");
        errno = 0;
        r = log_warning_errno(-EACCES, "bind: %m");
        ck_assert_int_eq(r, -EACCES);
        ck_assert_int_eq(errno, 0);
        r = log_error_errno(EADDRINUSE, "listen: %m");
        ck_assert_int_eq(r, -EADDRINUSE);
        log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
        log_debug("debug %d", 42);
        log_setup(LOG_TARGET_STDERR, LOG_WARNING);
        log_info("not at LOG_WARNING");
        log_warning("still %s", "here");
        out = capture_end(&c);
        ck_assert_str_eq(out,
                         "error: Failed to open x.conf: No such file or directory\n"
                         "warning: careful\n"
                         "notice\n"
                         "ready\n"
                         "warning: bind: Permission denied\n"
                         "error: listen: Address already in use\n"
                         "debug 42\n"
                         "warning: still here\n");
        free(out);
}
END_TEST

START_TEST(test_stderr_long_message_cut) {
        size_t len = 10000;
        char *big = malloc(len + 1);
        struct capture c;
        char *out;

        ck_assert_ptr_nonnull(big);
        memset(big, 'a', len);
        big[len] = '\0';
        log_reset();
        capture_start(&c);
        log_info("%s", big);
        log_info("next");
        out = capture_end(&c);
        ck_assert_uint_gt(strlen(out), 1000);
        ck_assert_uint_lt(strlen(out), len);
        ck_assert_uint_eq(count_lines(out, "next"), 1);
        free(out);
        free(big);
}
END_TEST

START_TEST(test_client_below_level) {
        struct shared *sh = calloc(1, sizeof(struct shared));
        struct capture c;
        char *out;

        ck_assert_ptr_nonnull(sh);
        log_reset();
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        log_set_shared(sh);
        log_set_client_limits(true, 1, 1);
        capture_start(&c);
        log_udp_events(5);
        log_flush_suppressed();
        out = capture_end(&c);
        /* Filtered by level: neither logged nor counted as suppressed. */
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(sh->c.log_suppressed, 0);
        log_set_shared(NULL);
        free(out);
        free(sh);
}
END_TEST

/* ---- rate limit and summary ---- */

/* The bucket runs on the real clock here (rate 1/s, burst 2): the test takes
 * far less than a second, yet the assertions only rely on "most of the 20
 * entries are refused", so a slow machine cannot make it fail. */
START_TEST(test_suppressed_summary) {
        struct shared *sh = calloc(1, sizeof(struct shared));
        struct capture c;
        char *out, want[64];
        unsigned logged, suppressed;

        ck_assert_ptr_nonnull(sh);
        log_reset();
        log_set_shared(sh);
        log_set_client_limits(true, 1, 2);
        capture_start(&c);
        log_udp_events(20);
        for (int i = 0; i < 5; i++)
                log_info("daemon message");
        log_flush_suppressed();
        out = capture_end(&c);

        logged = count_lines(out, UDP_LINE);
        suppressed = 20 - logged;
        ck_assert_uint_ge(logged, 2);
        ck_assert_uint_ge(suppressed, 10);
        ck_assert_uint_eq(sh->c.log_suppressed, suppressed);
        /* Daemon messages are never rate limited. */
        ck_assert_uint_eq(count_lines(out, "daemon message"), 5);
        snprintf(want, sizeof(want), "suppressed %u client log entries\n", suppressed);
        ck_assert_uint_ge(strlen(out), strlen(want));
        ck_assert_str_eq(out + strlen(out) - strlen(want), want);
        free(out);

        /* The summary resets the count; the shared counter keeps the total. */
        capture_start(&c);
        log_flush_suppressed();
        out = capture_end(&c);
        ck_assert_str_eq(out, "");
        ck_assert_uint_eq(sh->c.log_suppressed, suppressed);
        log_set_shared(NULL);
        free(out);
        free(sh);
}
END_TEST

START_TEST(test_same_limits_do_not_refill) {
        struct capture c;
        char *out;

        log_reset();
        log_set_client_limits(true, 1, 2);
        capture_start(&c);
        log_udp_events(2);
        /* A reload with unchanged settings keeps the emptied bucket. */
        log_set_client_limits(true, 1, 2);
        log_udp_events(10);
        out = capture_end(&c);
        ck_assert_uint_le(count_lines(out, UDP_LINE), 3);
        free(out);
}
END_TEST

START_TEST(test_client_disabled) {
        struct shared *sh = calloc(1, sizeof(struct shared));
        struct client_event open = event(CLIENT_TCP_OPEN, AF_INET, "192.0.2.7");
        struct capture c;
        char *out;

        ck_assert_ptr_nonnull(sh);
        log_reset();
        log_set_shared(sh);
        log_set_client_limits(false, 1, 1);
        capture_start(&c);
        log_udp_events(5);
        log_client(&open);
        log_flush_suppressed();
        log_info("daemon messages still go out");
        out = capture_end(&c);
        ck_assert_str_eq(out, "daemon messages still go out\n");
        ck_assert_uint_eq(sh->c.log_suppressed, 0);
        log_set_shared(NULL);
        free(out);
        free(sh);
}
END_TEST

START_TEST(test_fork_child_has_no_pending_summary) {
        struct capture c;
        char *out;
        pid_t pid;
        int status;

        log_reset();
        log_set_client_limits(true, 1, 1);
        capture_start(&c);
        log_udp_events(3);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                log_flush_suppressed();
                log_info("child");
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        log_flush_suppressed();
        out = capture_end(&c);
        ck_assert_uint_eq(count_lines(out, "child"), 1);
        ck_assert_uint_eq(count_lines(out, "suppressed 2 client log entries"), 1);
        free(out);
}
END_TEST

/* ---- threads ---- */

#define THREADS 4
#define EVENTS_PER_THREAD 250

static void *log_thread(void *arg) {
        log_udp_events(EVENTS_PER_THREAD);
        return NULL;
}

static unsigned run_threads(void) {
        pthread_t t[THREADS];

        for (int i = 0; i < THREADS; i++)
                ck_assert_int_eq(pthread_create(&t[i], NULL, log_thread, NULL), 0);
        for (int i = 0; i < THREADS; i++)
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        return THREADS * EVENTS_PER_THREAD;
}

START_TEST(test_threads_lines_intact) {
        struct capture c;
        unsigned total;
        char *out;

        log_reset();
        capture_start(&c);
        total = run_threads();
        out = capture_end(&c);
        /* count_lines() also fails on a line that is not terminated. */
        ck_assert_uint_eq(count_lines(out, UDP_LINE), total);
        ck_assert_uint_eq(strlen(out), total * strlen(UDP_LINE "\n"));
        free(out);
}
END_TEST

START_TEST(test_threads_rate_limited) {
        struct shared *sh = calloc(1, sizeof(struct shared));
        struct capture c;
        unsigned total, logged;
        char *out;

        ck_assert_ptr_nonnull(sh);
        log_reset();
        log_set_shared(sh);
        log_set_client_limits(true, 1, 10);
        capture_start(&c);
        total = run_threads();
        out = capture_end(&c);
        logged = count_lines(out, UDP_LINE);
        ck_assert_uint_ge(logged, 10);
        ck_assert_uint_eq(logged + sh->c.log_suppressed, total);
        ck_assert_uint_eq(strlen(out), logged * strlen(UDP_LINE "\n"));
        log_set_shared(NULL);
        free(out);
        free(sh);
}
END_TEST

/* ---- target detection ---- */

START_TEST(test_detect_target) {
        struct capture c;
        struct stat st;
        char env[64];
        enum log_target with_match, with_other_inode, with_garbage, with_trailing, without;

        capture_start(&c);
        ck_assert_int_eq(fstat(STDERR_FILENO, &st), 0);
        snprintf(env, sizeof(env), "%llu:%llu",
                 (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", env, 1);
        with_match = log_detect_target();
        snprintf(env, sizeof(env), "%llu:%llu",
                 (unsigned long long) st.st_dev, (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", env, 1);
        with_other_inode = log_detect_target();
        setenv("JOURNAL_STREAM", "journal", 1);
        with_garbage = log_detect_target();
        snprintf(env, sizeof(env), "%llu:%llux",
                 (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", env, 1);
        with_trailing = log_detect_target();
        unsetenv("JOURNAL_STREAM");
        without = log_detect_target();
        free(capture_end(&c));

        ck_assert_int_eq(with_match, LOG_TARGET_JOURNAL);
        ck_assert_int_eq(with_other_inode, LOG_TARGET_STDERR);
        ck_assert_int_eq(with_garbage, LOG_TARGET_STDERR);
        ck_assert_int_eq(with_trailing, LOG_TARGET_STDERR);
        ck_assert_int_eq(without, LOG_TARGET_STDERR);
}
END_TEST

Suite *log_suite(void) {
        Suite *s = suite_create("log");
        TCase *fields = tcase_create("fields");
        TCase *ratelimit = tcase_create("ratelimit");
        TCase *output = tcase_create("output");

        tcase_add_test(fields, test_fields_tcp_open_ipv4);
        tcase_add_test(fields, test_fields_tcp_rejected);
        tcase_add_test(fields, test_fields_tcp_close_via);
        tcase_add_test(fields, test_fields_tcp_open_via);
        tcase_add_test(fields, test_fields_proxy_refused);
        tcase_add_test(fields, test_fields_tcp_rejected_per_source);
        tcase_add_test(fields, test_fields_udp_dropped);
        tcase_add_test(fields, test_fields_tcp_close_ipv6);
        tcase_add_test(fields, test_fields_tcp_close_mapped);
        tcase_add_test(fields, test_fields_tcp_close_handover);
        tcase_add_test(fields, test_fields_tcp_open_ipv6_and_mapped);
        tcase_add_test(fields, test_fields_udp);
        tcase_add_test(fields, test_fields_duration_rounding);
        tcase_add_test(fields, test_fields_long_values_fit);
        suite_add_tcase(s, fields);

        tcase_add_test(ratelimit, test_ratelimit_burst);
        tcase_add_test(ratelimit, test_ratelimit_refill);
        tcase_add_test(ratelimit, test_ratelimit_clock_behind);
        tcase_add_test(ratelimit, test_ratelimit_take_n);
        tcase_add_test(ratelimit, test_ratelimit_unlimited);
        tcase_add_test(ratelimit, test_ratelimit_zero_burst);
        suite_add_tcase(s, ratelimit);

        tcase_add_test(output, test_stderr_client_lines);
        tcase_add_test(output, test_stderr_messages);
        tcase_add_test(output, test_stderr_long_message_cut);
        tcase_add_test(output, test_client_below_level);
        tcase_add_test(output, test_suppressed_summary);
        tcase_add_test(output, test_same_limits_do_not_refill);
        tcase_add_test(output, test_client_disabled);
        tcase_add_test(output, test_drops_rate_limited);
        tcase_add_test(output, test_client_admit_batch);
        tcase_add_test(output, test_fork_child_has_no_pending_summary);
        tcase_add_test(output, test_threads_lines_intact);
        tcase_add_test(output, test_threads_rate_limited);
        tcase_add_test(output, test_detect_target);
        tcase_add_test(output, test_stderr_message_with_id);
        tcase_add_test(output, test_message_ids);
        suite_add_tcase(s, output);
        return s;
}
