/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared.h"
#include "source.h"
#include "suites.h"

static union sockaddr_union peer_v4(const char *ip, uint16_t port) {
        union sockaddr_union sa = { .in = { .sin_family = AF_INET, .sin_port = htons(port) } };

        ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.in.sin_addr), 1);
        return sa;
}

static union sockaddr_union peer_v6(const char *ip, uint16_t port) {
        union sockaddr_union sa = { .in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) } };

        ck_assert_int_eq(inet_pton(AF_INET6, ip, &sa.in6.sin6_addr), 1);
        return sa;
}

static unsigned count_of(struct shared *sh, const union sockaddr_union *p) {
        struct source_key k = source_key_of(p);

        return source_count(sh->limits->tcp, &k);
}

static struct shared *shared_with(uint32_t nslots, unsigned max) {
        struct shared *sh = NULL;

        ck_assert_int_eq(shared_new(nslots, &sh), 0);
        atomic_store(&sh->live.max_connections, max);
        return sh;
}

START_TEST(test_slot_take_release) {
        struct shared *sh = shared_with(8, 8);
        union sockaddr_union p = peer_v4("192.0.2.7", 40512);
        struct conn_slot *a = conn_slot_take(sh, &p, NULL), *b = conn_slot_take(sh, &p, NULL);

        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_ne(a, b);
        ck_assert_uint_ne(atomic_load(&a->id), atomic_load(&b->id));
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 2);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_accepted), 2);
        ck_assert_int_eq(memcmp(&a->peer, &p, sizeof(p)), 0);

        atomic_store(&a->close_reason, CLOSE_QUIT);
        conn_slot_release(sh, a);
        ck_assert_uint_eq(atomic_load(&a->id), 0);
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 1);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_QUIT]), 1);

        /* A released slot is reused before the table grows. */
        ck_assert_ptr_eq(conn_slot_take(sh, &p, NULL), a);
        ck_assert_uint_eq(sh->high_water, 2);
        shared_free(sh);
}
END_TEST

START_TEST(test_max_connections) {
        struct shared *sh = shared_with(8, 2);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);
        struct conn_slot *a = conn_slot_take(sh, &p, NULL);

        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p, NULL));
        ck_assert_ptr_null(conn_slot_take(sh, &p, NULL));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 1);

        /* The limit is live. */
        atomic_store(&sh->live.max_connections, 3);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p, NULL));
        ck_assert_ptr_null(conn_slot_take(sh, &p, NULL));
        conn_slot_release(sh, a);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p, NULL));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 2);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_ERROR]), 1);
        shared_free(sh);
}
END_TEST

/* A connection from peer is refused with why, and counted so. */
static void assert_refused(struct shared *sh, const union sockaddr_union *peer, enum reject_reason why) {
        uint64_t total = atomic_load(&sh->c.tcp_rejected);
        uint64_t per_source = atomic_load(&sh->c.tcp_rejected_per_source);
        enum reject_reason got = (enum reject_reason) -1;

        ck_assert_ptr_null(conn_slot_take(sh, peer, &got));
        ck_assert_int_eq(got, why);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), total + 1);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected_per_source),
                          per_source + (why == REJECT_PER_SOURCE));
}

START_TEST(test_per_source_limit) {
        struct shared *sh = shared_with(16, 16);
        union sockaddr_union a1 = peer_v4("192.0.2.7", 1), a2 = peer_v4("192.0.2.7", 2);
        union sockaddr_union b = peer_v4("192.0.2.8", 1);
        union sockaddr_union mapped = peer_v6("::ffff:192.0.2.7", 3);
        struct conn_slot *first;

        atomic_store(&sh->live.tcp_per_source, 2);
        first = conn_slot_take(sh, &a1, NULL);
        ck_assert_ptr_nonnull(first);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &a2, NULL));
        ck_assert_uint_eq(count_of(sh, &a1), 2);
        /* The port does not matter, and a mapped address is its IPv4 one. */
        assert_refused(sh, &a1, REJECT_PER_SOURCE);
        assert_refused(sh, &mapped, REJECT_PER_SOURCE);
        /* Another address is not affected. */
        ck_assert_ptr_nonnull(conn_slot_take(sh, &b, NULL));
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 3);

        /* A release makes room for that source again. */
        conn_slot_release(sh, first);
        ck_assert_uint_eq(count_of(sh, &a1), 1);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &mapped, NULL));
        ck_assert_uint_eq(count_of(sh, &a1), 2);

        /* Live: raised, then off. */
        atomic_store(&sh->live.tcp_per_source, 3);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &a1, NULL));
        assert_refused(sh, &a1, REJECT_PER_SOURCE);
        atomic_store(&sh->live.tcp_per_source, 0);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &a1, NULL));
        ck_assert_uint_eq(count_of(sh, &a1), 4);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_accepted), 6);
        shared_free(sh);
}
END_TEST

/* IPv6 clients are counted per /64: one host cannot dodge the limit by
 * changing the low bits of its address. */
START_TEST(test_per_source_ipv6_prefix) {
        struct shared *sh = shared_with(16, 16);
        union sockaddr_union x1 = peer_v6("2001:db8:0:7::1", 1), x2 = peer_v6("2001:db8:0:7:ffff::2", 1);
        union sockaddr_union other = peer_v6("2001:db8:0:8::1", 1);

        atomic_store(&sh->live.tcp_per_source, 1);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &x1, NULL));
        assert_refused(sh, &x2, REJECT_PER_SOURCE);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &other, NULL));
        shared_free(sh);
}
END_TEST

static struct addr_prefix prefix_of(const char *text) {
        struct addr_prefix p;

        ck_assert_int_eq(addr_prefix_parse(text, &p), 0);
        return p;
}

/* limits.exempt: counted, never refused per source; max_connections still
 * applies; a change is live, and a release after it still balances. */
START_TEST(test_per_source_exempt) {
        struct shared *sh = shared_with(16, 6);
        struct addr_prefix exempt[] = { prefix_of("127.0.0.0/8"), prefix_of("::1") };
        union sockaddr_union lo = peer_v4("127.0.0.1", 1), lo_mapped = peer_v6("::ffff:127.0.0.2", 1);
        union sockaddr_union lo6 = peer_v6("::1", 1), other = peer_v4("192.0.2.7", 1);
        struct conn_slot *held[4];

        atomic_store(&sh->live.tcp_per_source, 1);
        shared_set_exempt(sh, exempt, 2);
        for (int i = 0; i < 3; i++)
                held[i] = conn_slot_take(sh, i == 1 ? &lo_mapped : &lo, NULL);
        for (int i = 0; i < 3; i++)
                ck_assert_ptr_nonnull(held[i]);
        ck_assert_uint_eq(count_of(sh, &lo), 2);        /* counted all the same */
        ck_assert_ptr_nonnull(conn_slot_take(sh, &lo6, NULL));
        ck_assert_ptr_nonnull(conn_slot_take(sh, &lo6, NULL));
        ck_assert_ptr_nonnull(conn_slot_take(sh, &other, NULL));
        assert_refused(sh, &other, REJECT_CONNECTIONS); /* the global limit holds */
        atomic_store(&sh->live.max_connections, 16);
        assert_refused(sh, &other, REJECT_PER_SOURCE);  /* the source is not exempt */

        /* No source exempt any more: loopback is over its limit now. */
        shared_set_exempt(sh, NULL, 0);
        assert_refused(sh, &lo, REJECT_PER_SOURCE);
        for (int i = 0; i < 3; i++)
                conn_slot_release(sh, held[i]);
        ck_assert_uint_eq(count_of(sh, &lo), 0);
        held[3] = conn_slot_take(sh, &lo, NULL);
        ck_assert_ptr_nonnull(held[3]);
        assert_refused(sh, &lo, REJECT_PER_SOURCE);
        shared_free(sh);
}
END_TEST

/* At both limits at once, the global one is the reason. */
START_TEST(test_per_source_global_first) {
        struct shared *sh = shared_with(16, 2);
        union sockaddr_union a = peer_v4("192.0.2.7", 1), b = peer_v4("192.0.2.8", 1);
        struct conn_slot *slot;

        atomic_store(&sh->live.tcp_per_source, 1);
        slot = conn_slot_take(sh, &a, NULL);
        ck_assert_ptr_nonnull(slot);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &b, NULL));
        assert_refused(sh, &a, REJECT_CONNECTIONS);
        conn_slot_release(sh, slot);
        ck_assert_uint_eq(count_of(sh, &a), 0);
        ck_assert_uint_eq(source_table_used(sh->limits->tcp), 1);
        shared_free(sh);
}
END_TEST

/* The table has room for a source per slot: a full connection table of
 * distinct sources never trips over it, and empties back to nothing. */
START_TEST(test_per_source_all_distinct) {
        enum { N = 64 };
        struct shared *sh = shared_with(N, N);
        struct conn_slot *slots[N];

        atomic_store(&sh->live.tcp_per_source, 1);
        for (int i = 0; i < N; i++) {
                char ip[32];
                union sockaddr_union p;

                snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 7, i);
                p = peer_v4(ip, 1);
                slots[i] = conn_slot_take(sh, &p, NULL);
                ck_assert_ptr_nonnull(slots[i]);
        }
        ck_assert_uint_eq(source_table_used(sh->limits->tcp), N);
        ck_assert_int_eq(source_table_check(sh->limits->tcp), 0);
        for (int i = 0; i < N; i++)
                conn_slot_release(sh, slots[(i * 37) % N]);
        ck_assert_uint_eq(source_table_used(sh->limits->tcp), 0);
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 0);
        shared_free(sh);
}
END_TEST

START_TEST(test_table_full) {
        struct shared *sh = shared_with(2, 100);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);

        ck_assert_ptr_nonnull(conn_slot_take(sh, &p, NULL));
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p, NULL));
        ck_assert_ptr_null(conn_slot_take(sh, &p, NULL));
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 2);
        shared_free(sh);
}
END_TEST

/* Behind a balancer: the named client is counted per source, the balancer
 * is kept with it; the balancer's own checks are not counted per source. */
START_TEST(test_origin_and_health_checks) {
        struct shared *sh = shared_with(8, 8);
        struct conn_origin client = { .peer = peer_v4("192.0.2.7", 1), .via = peer_v4("10.0.0.5", 2) };
        struct conn_origin check = { .peer = peer_v4("10.0.0.5", 3), .health_check = true };
        struct conn_slot *a, *b, *c;

        atomic_store(&sh->live.tcp_per_source, 1);
        a = conn_slot_take_from(sh, &client, NULL);
        ck_assert_ptr_nonnull(a);
        ck_assert_mem_eq(&a->via, &client.via, sizeof(struct sockaddr_in));
        ck_assert(!a->health_check);
        ck_assert_ptr_null(conn_slot_take_from(sh, &client, NULL));
        b = conn_slot_take_from(sh, &check, NULL);
        c = conn_slot_take_from(sh, &check, NULL);
        ck_assert_ptr_nonnull(b);
        ck_assert_ptr_nonnull(c);
        ck_assert(b->health_check);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected_per_source), 1);
        /* Released, a check leaves the count of its address alone. */
        conn_slot_release(sh, b);
        conn_slot_release(sh, c);
        ck_assert_ptr_null(conn_slot_take_from(sh, &client, NULL));
        conn_slot_release(sh, a);
        ck_assert_ptr_nonnull(conn_slot_take_from(sh, &client, NULL));
        shared_free(sh);
}
END_TEST

START_TEST(test_proxy_trusted) {
        struct shared *sh = shared_with(4, 4);
        union sockaddr_union lb = peer_v4("10.0.0.5", 1), other = peer_v4("10.0.1.5", 1);
        union sockaddr_union mapped = peer_v6("::ffff:10.0.0.9", 1);
        struct addr_prefix net;

        ck_assert(!shared_proxy_trusted(sh, &lb));
        ck_assert_int_eq(addr_prefix_parse("10.0.0.0/24", &net), 0);
        shared_set_proxy_trusted(sh, &net, 1);
        ck_assert(shared_proxy_trusted(sh, &lb));
        ck_assert(shared_proxy_trusted(sh, &mapped));
        ck_assert(!shared_proxy_trusted(sh, &other));
        shared_set_proxy_trusted(sh, NULL, 0);
        ck_assert(!shared_proxy_trusted(sh, &lb));
        shared_free(sh);
}
END_TEST

START_TEST(test_traffic) {
        struct shared *sh = shared_with(4, 4);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);
        struct conn_slot *a = conn_slot_take(sh, &p, NULL);

        conn_slot_traffic(sh, a, 10, 0, 1000);
        conn_slot_traffic(sh, a, 0, 7, 2000);
        conn_slot_traffic(sh, a, 5, 5, 3000);
        ck_assert_uint_eq(atomic_load(&a->bytes_in), 15);
        ck_assert_uint_eq(atomic_load(&a->bytes_out), 12);
        ck_assert_uint_eq(atomic_load(&a->last_active_usec), 3000);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_bytes_in), 15);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_bytes_out), 12);
        shared_free(sh);
}
END_TEST

/* The point of the shared mapping: a forked worker's counts reach the parent. */
START_TEST(test_shared_across_fork) {
        struct shared *sh = shared_with(4, 4);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);
        struct conn_slot *a = conn_slot_take(sh, &p, NULL);
        int status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                conn_slot_traffic(sh, a, 42, 43, 1);
                atomic_store(&sh->live.timeout_usec[TIMEOUT_IDLE], 5);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_uint_eq(atomic_load(&a->bytes_in), 42);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_bytes_out), 43);
        ck_assert_uint_eq(shared_timeout(sh, TIMEOUT_IDLE), 5);
        shared_free(sh);
}
END_TEST

START_TEST(test_names) {
        ck_assert_str_eq(close_reason_to_string(CLOSE_EOF), "eof");
        ck_assert_str_eq(close_reason_to_string(CLOSE_QUIT), "quit");
        ck_assert_str_eq(close_reason_to_string(CLOSE_IDLE), "idle");
        ck_assert_str_eq(close_reason_to_string(CLOSE_WRITE), "write");
        ck_assert_str_eq(close_reason_to_string(CLOSE_ERROR), "error");
        ck_assert_str_eq(close_reason_to_string(CLOSE_SHUTDOWN), "shutdown");
        ck_assert_str_eq(close_reason_to_string(99), "error");
        ck_assert_int_eq(timeout_from_string("idle"), TIMEOUT_IDLE);
        ck_assert_int_eq(timeout_from_string("write"), TIMEOUT_WRITE);
        ck_assert_int_eq(timeout_from_string("shutdown"), TIMEOUT_SHUTDOWN);
        ck_assert_int_eq(timeout_from_string("Idle"), -EINVAL);
        ck_assert_int_eq(timeout_from_string(""), -EINVAL);
        ck_assert_str_eq(timeout_to_string(TIMEOUT_WRITE), "write");
        ck_assert_ptr_null(timeout_to_string(_TIMEOUT_MAX));
}
END_TEST

Suite *shared_suite(void) {
        Suite *s = suite_create("shared");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_slot_take_release);
        tcase_add_test(tc, test_max_connections);
        tcase_add_test(tc, test_per_source_limit);
        tcase_add_test(tc, test_per_source_ipv6_prefix);
        tcase_add_test(tc, test_per_source_exempt);
        tcase_add_test(tc, test_per_source_global_first);
        tcase_add_test(tc, test_per_source_all_distinct);
        tcase_add_test(tc, test_table_full);
        tcase_add_test(tc, test_traffic);
        tcase_add_test(tc, test_origin_and_health_checks);
        tcase_add_test(tc, test_proxy_trusted);
        tcase_add_test(tc, test_shared_across_fork);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        return s;
}
