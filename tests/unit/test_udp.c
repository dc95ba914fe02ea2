/* SPDX-License-Identifier: MIT */
/* UDP service (daemon/udp.h) on real loopback sockets: whatever way the
 * replies leave (one GSO send for a run to the same peer, or one by one), a
 * client gets one reply per datagram, in order, each its own datagram. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "shared.h"
#include "suites.h"
#include "udp.h"

#define WAIT_MS 2000       /* under check's 4 s: a missing reply fails, not times out */
#define MANY 32         /* one server batch */

struct bench {
        struct shared *sh;
        struct udp_batch *b;
        int server;
        struct sockaddr_in addr;
};

static int udp_socket_bound(struct sockaddr_in *addr) {
        socklen_t len = sizeof(*addr);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        *addr = (struct sockaddr_in) { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        ck_assert_int_eq(bind(fd, (struct sockaddr *) addr, sizeof(*addr)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) addr, &len), 0);
        return fd;
}

static struct bench bench_new(void) {
        struct bench t = { 0 };

        log_setup(LOG_TARGET_STDERR, LOG_ERR);  /* no client lines on the test's stderr */
        ck_assert_int_eq(shared_new(4, &t.sh), 0);
        ck_assert_int_eq(udp_batch_new(t.sh, &t.b), 0);
        t.server = udp_socket_bound(&t.addr);
        return t;
}

static void bench_free(struct bench *t) {
        udp_batch_free(t->b);
        close(t->server);
        shared_free(t->sh);
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
}

static int client_new(const struct bench *t) {
        struct sockaddr_in me;
        int fd = udp_socket_bound(&me);

        ck_assert_int_eq(connect(fd, (const struct sockaddr *) &t->addr, sizeof(t->addr)), 0);
        return fd;
}

static void client_send(int fd, const char *text) {
        ck_assert_int_eq(send(fd, text, strlen(text), 0), (ssize_t) strlen(text));
}

/* Serves until n datagrams were served: they are all queued already. */
static void serve(struct bench *t, int n) {
        int served = 0;

        while (served < n) {
                int r = udp_serve(t->b, t->server);

                ck_assert_int_gt(r, 0);
                served += r;
        }
        ck_assert_int_eq(served, n);
}

static void expect_reply(int fd, const char *want) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char buf[4096];
        ssize_t n;

        ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        ck_assert_int_eq(n, (ssize_t) strlen(want));
        ck_assert_mem_eq(buf, want, strlen(want));
}

static void expect_nothing_more(int fd) {
        char buf[16];

        ck_assert_int_eq(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), -1);
        ck_assert_int_eq(errno, EAGAIN);
}

/* A full batch of equal datagrams from one client: one run. */
START_TEST(test_udp_run_from_one_peer) {
        struct bench t = bench_new();
        int c = client_new(&t);
        char text[32], want[32];

        for (int i = 0; i < MANY; i++) {
                snprintf(text, sizeof(text), "ciao %03d\n", i);
                client_send(c, text);
        }
        serve(&t, MANY);
        for (int i = 0; i < MANY; i++) {
                snprintf(want, sizeof(want), "CIAO %03d\n", i);
                expect_reply(c, want);
        }
        expect_nothing_more(c);
        ck_assert_uint_eq(atomic_load(&t.sh->c.udp_datagrams), MANY);
        ck_assert_uint_eq(atomic_load(&t.sh->c.udp_bytes_out), MANY * 9);
        ck_assert_uint_eq(atomic_load(&t.sh->c.udp_send_errors), 0);
        close(c);
        bench_free(&t);
}
END_TEST

/* Sizes that end a run: a shorter one (the last of its run), a longer
 * one, an empty one (never a segment: it would vanish), replies longer
 * than their request ("ß" is "SS"), and one longer than a GSO segment. */
START_TEST(test_udp_mixed_sizes) {
        static const char *const texts[] = { "aaaa", "bbbb", "cc", "dddd", "dddd", "", "eeeeee", "ßß",
                                             "ffff", "gggg" };
        static const char *const wants[] = { "AAAA", "BBBB", "CC", "DDDD", "DDDD", "", "EEEEEE", "SSSS",
                                             "FFFF", "GGGG" };
        struct bench t = bench_new();
        int c = client_new(&t);
        char big[2001], bigup[2001];
        size_t n = sizeof(texts) / sizeof(texts[0]);

        memset(big, 'x', 2000);
        memset(bigup, 'X', 2000);
        big[2000] = bigup[2000] = '\0';
        for (size_t i = 0; i < n; i++)
                client_send(c, texts[i]);
        for (int i = 0; i < 3; i++)
                client_send(c, big);
        serve(&t, (int) n + 3);
        for (size_t i = 0; i < n; i++)
                expect_reply(c, wants[i]);
        for (int i = 0; i < 3; i++)
                expect_reply(c, bigup);
        expect_nothing_more(c);
        close(c);
        bench_free(&t);
}
END_TEST

/* Runs to different peers, interleaved: each gets its own, in order. */
START_TEST(test_udp_peers_interleaved) {
        struct bench t = bench_new();
        int a = client_new(&t), b = client_new(&t);

        client_send(a, "a1");
        client_send(a, "a2");
        client_send(b, "b1");
        client_send(b, "b2");
        client_send(b, "b3");
        client_send(a, "a3");
        serve(&t, 6);
        expect_reply(a, "A1");
        expect_reply(a, "A2");
        expect_reply(a, "A3");
        expect_reply(b, "B1");
        expect_reply(b, "B2");
        expect_reply(b, "B3");
        expect_nothing_more(a);
        expect_nothing_more(b);
        close(a);
        close(b);
        bench_free(&t);
}
END_TEST

/* A socket without UDP checksums cannot send GSO (EINVAL): the run's
 * replies go one by one, none lost, no send error counted. */
START_TEST(test_udp_run_refused_goes_one_by_one) {
        struct bench t = bench_new();
        int c = client_new(&t), one = 1;
        char text[16], want[16];

        ck_assert_int_eq(setsockopt(t.server, SOL_SOCKET, SO_NO_CHECK, &one, sizeof(one)), 0);
        for (int i = 0; i < 8; i++) {
                snprintf(text, sizeof(text), "x%d", i);
                client_send(c, text);
        }
        serve(&t, 8);
        for (int i = 0; i < 8; i++) {
                snprintf(want, sizeof(want), "X%d", i);
                expect_reply(c, want);
        }
        expect_nothing_more(c);
        ck_assert_uint_eq(atomic_load(&t.sh->c.udp_bytes_out), 16);
        ck_assert_uint_eq(atomic_load(&t.sh->c.udp_send_errors), 0);
        close(c);
        bench_free(&t);
}
END_TEST

Suite *udp_suite(void) {
        Suite *s = suite_create("udp");
        TCase *tc = tcase_create("serve");

        tcase_add_test(tc, test_udp_run_from_one_peer);
        tcase_add_test(tc, test_udp_mixed_sizes);
        tcase_add_test(tc, test_udp_peers_interleaved);
        tcase_add_test(tc, test_udp_run_refused_goes_one_by_one);
        suite_add_tcase(s, tc);
        return s;
}
