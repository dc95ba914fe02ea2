/* SPDX-License-Identifier: MIT */
/* Per-source accounting (daemon/source.c): keys, the TCP connection
 * table, the GCRA rate table, the UDP loop guard. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"
#include "suites.h"

#define SEC 1000000000ULL

static union sockaddr_union v4(const char *ip, uint16_t port) {
        union sockaddr_union sa = { .in = { .sin_family = AF_INET, .sin_port = htons(port) } };

        ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.in.sin_addr), 1);
        return sa;
}

static union sockaddr_union v6(const char *ip, uint16_t port) {
        union sockaddr_union sa = { .in6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) } };

        ck_assert_int_eq(inet_pton(AF_INET6, ip, &sa.in6.sin6_addr), 1);
        return sa;
}

static struct source_key key_v4(const char *ip) {
        union sockaddr_union sa = v4(ip, 1);

        return source_key_of(&sa);
}

static struct source_key key_v6(const char *ip) {
        union sockaddr_union sa = v6(ip, 1);

        return source_key_of(&sa);
}

/* The i-th of many distinct sources. */
static struct source_key key_n(uint32_t i) {
        return (struct source_key) { 0, 0xffff00000000ULL | i };
}

/* ---- keys ---- */

START_TEST(test_key_ipv4_and_mapped) {
        struct source_key a = key_v4("192.0.2.7"), mapped = key_v6("::ffff:192.0.2.7");
        struct source_key b = key_v4("192.0.2.8");
        union sockaddr_union other_port = v4("192.0.2.7", 40512);
        struct source_key p = source_key_of(&other_port);

        ck_assert_uint_eq(a.hi, 0);
        ck_assert_uint_eq(a.lo, 0xffffc0000207ULL);
        ck_assert(source_key_equal(&a, &mapped));
        ck_assert(source_key_equal(&a, &p));
        ck_assert(!source_key_equal(&a, &b));
        ck_assert_uint_eq(source_key_hash(&a, 42), source_key_hash(&mapped, 42));
}
END_TEST

START_TEST(test_key_ipv6_prefix) {
        struct source_key a = key_v6("2001:db8:1:2::1"), b = key_v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
        struct source_key c = key_v6("2001:db8:1:3::1"), zero = key_v6("::");
        struct source_key any4 = key_v4("0.0.0.0"), m = key_v6("::ffff:0.0.0.1");

        ck_assert_uint_eq(a.hi, 0x20010db800010002ULL);
        ck_assert_uint_eq(a.lo, 0);
        ck_assert(source_key_equal(&a, &b));
        ck_assert(!source_key_equal(&a, &c));
        /* ::/64 is not 0.0.0.0; ::ffff:0:0/96 is IPv4, not the ::/64 it
         * lies in. */
        ck_assert(!source_key_equal(&zero, &any4));
        ck_assert(!source_key_equal(&zero, &m));
}
END_TEST

START_TEST(test_key_other_family) {
        union sockaddr_union sa = { .sa = { .sa_family = AF_UNIX } };
        struct source_key k = source_key_of(&sa), z = key_v6("::");

        ck_assert_uint_eq(k.hi, UINT64_MAX);
        ck_assert_uint_eq(k.lo, UINT64_MAX);
        ck_assert(!source_key_equal(&k, &z));
}
END_TEST

START_TEST(test_key_hash_seeded) {
        struct source_key a = key_v4("192.0.2.7");
        int differ = 0;

        for (uint64_t seed = 1; seed < 17; seed++)
                differ += source_key_hash(&a, seed) != source_key_hash(&a, 0);
        ck_assert_int_eq(differ, 16);
}
END_TEST

/* ---- TCP table ---- */

static struct source_table *table(uint32_t max, uint64_t seed) {
        struct source_table *t = NULL;

        ck_assert_int_eq(source_table_new(max, seed, &t), 0);
        return t;
}

START_TEST(test_table_basic) {
        struct source_table *t = table(8, 1);
        struct source_key a = key_v4("192.0.2.7"), b = key_v6("2001:db8::1");
        struct source_key b2 = key_v6("2001:db8::2"), mapped = key_v6("::ffff:192.0.2.7");

        ck_assert_uint_eq(source_count(t, &a), 0);
        ck_assert_int_eq(source_add(t, &a), 1);
        ck_assert_int_eq(source_add(t, &mapped), 2);
        ck_assert_int_eq(source_add(t, &b), 1);
        ck_assert_int_eq(source_add(t, &b2), 2);        /* the same /64 */
        ck_assert_uint_eq(source_table_used(t), 2);
        ck_assert_uint_eq(source_count(t, &a), 2);
        source_remove(t, &a);
        ck_assert_uint_eq(source_count(t, &mapped), 1);
        source_remove(t, &mapped);
        ck_assert_uint_eq(source_count(t, &a), 0);
        ck_assert_uint_eq(source_table_used(t), 1);
        /* Not in the table: nothing happens. */
        source_remove(t, &a);
        ck_assert_uint_eq(source_table_used(t), 1);
        ck_assert_uint_eq(source_count(t, &b), 2);
        ck_assert_int_eq(source_table_check(t), 0);
        source_table_free(t);
}
END_TEST

START_TEST(test_table_full) {
        struct source_table *t = table(4, 1);

        struct source_key k4 = key_n(4), k0 = key_n(0);

        for (uint32_t i = 0; i < 4; i++) {
                struct source_key k = key_n(i);

                ck_assert_int_eq(source_add(t, &k), 1);
        }
        ck_assert_int_eq(source_add(t, &k4), -ENOSPC);
        /* A source already there still counts up. */
        ck_assert_int_eq(source_add(t, &k0), 2);
        source_remove(t, &k0);
        source_remove(t, &k0);
        ck_assert_int_eq(source_add(t, &k4), 1);
        ck_assert_int_eq(source_table_check(t), 0);
        source_table_free(t);
}
END_TEST

START_TEST(test_table_new_errors) {
        struct source_table *t = NULL;

        ck_assert_int_eq(source_table_new(0, 1, &t), -EINVAL);
        ck_assert_int_eq(source_table_new(UINT32_MAX, 1, &t), -EINVAL);
        ck_assert_ptr_null(t);
}
END_TEST

/* Random adds and removes against a plain array of counts, on tables small
 * enough that probe runs collide, wrap around the end and merge: after
 * every step each count matches and every entry is reachable. */
static void table_against_model(uint32_t max, uint32_t keys, unsigned steps, unsigned check_every,
                                uint64_t seed) {
        struct source_table *t = table(max, seed);
        unsigned *model = calloc(keys, sizeof(*model));
        uint32_t used = 0;

        ck_assert_ptr_nonnull(model);
        srandom((unsigned) seed);
        for (unsigned s = 0; s < steps; s++) {
                uint32_t i = (uint32_t) random() % keys;
                struct source_key k = key_n(i);

                if (random() % 2 == 0 && (model[i] > 0 || used < max)) {
                        used += model[i] == 0;
                        ck_assert_int_eq(source_add(t, &k), (int) ++model[i]);
                } else {
                        if (model[i] > 0)
                                used -= --model[i] == 0;
                        source_remove(t, &k);
                }
                if (s % check_every == 0)
                        ck_assert_int_eq(source_table_check(t), 0);
                ck_assert_uint_eq(source_table_used(t), used);
                ck_assert_uint_eq(source_count(t, &k), model[i]);
        }
        ck_assert_int_eq(source_table_check(t), 0);
        for (uint32_t i = 0; i < keys; i++) {
                struct source_key k = key_n(i);

                ck_assert_uint_eq(source_count(t, &k), model[i]);
        }
        free(model);
        source_table_free(t);
}

START_TEST(test_table_model_small) {
        /* 4 sources in 8 places, 12 candidates: constant collisions. */
        for (uint64_t seed = 1; seed <= 20; seed++)
                table_against_model(4, 12, 2000, 1, seed);
}
END_TEST

START_TEST(test_table_model_large) {
        table_against_model(1000, 3000, 100000, 1000, 7);
}
END_TEST

/* Filled to the brim with distinct sources, then emptied in another
 * order: backward-shift deletion leaves nothing behind. */
START_TEST(test_table_fill_and_empty) {
        enum { N = 4096 };
        struct source_table *t = table(N, 99);

        for (uint32_t i = 0; i < N; i++) {
                struct source_key k = key_n(i * 2654435761u);

                ck_assert_int_eq(source_add(t, &k), 1);
        }
        ck_assert_uint_eq(source_table_used(t), N);
        ck_assert_int_eq(source_table_check(t), 0);
        for (uint32_t i = 0; i < N; i++) {
                uint32_t j = (i * 1031) % N;
                struct source_key k = key_n(j * 2654435761u);

                ck_assert_uint_eq(source_count(t, &k), 1);
                source_remove(t, &k);
                ck_assert_uint_eq(source_count(t, &k), 0);
        }
        ck_assert_uint_eq(source_table_used(t), 0);
        ck_assert_int_eq(source_table_check(t), 0);
        source_table_free(t);
}
END_TEST

/* ---- GCRA ---- */

START_TEST(test_gcra_burst_then_rate) {
        uint64_t interval = gcra_interval(10), tat = 0, now = 1000 * SEC;

        ck_assert_uint_eq(interval, SEC / 10);
        /* A new source: the whole burst at once, then nothing. */
        for (int i = 0; i < 5; i++)
                ck_assert_msg(gcra_take(&tat, now, interval, 5), "datagram %d of the burst", i);
        ck_assert(!gcra_take(&tat, now, interval, 5));
        ck_assert_uint_eq(tat, now + 5 * interval);
        /* A refusal changes nothing. */
        ck_assert(!gcra_take(&tat, now + interval - 1, interval, 5));
        ck_assert_uint_eq(tat, now + 5 * interval);
        /* Then one per interval. */
        ck_assert(gcra_take(&tat, now + interval, interval, 5));
        ck_assert(!gcra_take(&tat, now + interval, interval, 5));
        ck_assert(!gcra_take(&tat, now + 2 * interval - 1, interval, 5));
        ck_assert(gcra_take(&tat, now + 2 * interval, interval, 5));
}
END_TEST

START_TEST(test_gcra_refill) {
        uint64_t interval = gcra_interval(100), tat = 0, now = 5 * SEC;
        int n;

        for (n = 0; gcra_take(&tat, now, interval, 20); n++)
                ;
        ck_assert_int_eq(n, 20);
        /* 50 ms later: 5 tokens back. */
        now += SEC / 20;
        for (n = 0; gcra_take(&tat, now, interval, 20); n++)
                ;
        ck_assert_int_eq(n, 5);
        /* A long pause refills the bucket, never beyond the burst. */
        now += 3600 * SEC;
        for (n = 0; gcra_take(&tat, now, interval, 20); n++)
                ;
        ck_assert_int_eq(n, 20);
}
END_TEST

/* Over a long run at a steady rate above the limit, what passes is the
 * burst plus the rate times the time. */
START_TEST(test_gcra_long_run) {
        uint64_t interval = gcra_interval(100), tat = 0, start = 77 * SEC;
        unsigned passed = 0;

        /* 1000 datagrams per second for 10 s. */
        for (uint64_t t = 0; t < 10 * SEC; t += SEC / 1000)
                passed += gcra_take(&tat, start + t, interval, 200);
        ck_assert_uint_ge(passed, 200 + 999);
        ck_assert_uint_le(passed, 200 + 1001);
}
END_TEST

START_TEST(test_gcra_burst_one) {
        uint64_t interval = gcra_interval(1), tat = 0, now = SEC;

        ck_assert(gcra_take(&tat, now, interval, 1));
        ck_assert(!gcra_take(&tat, now + SEC - 1, interval, 1));
        ck_assert(gcra_take(&tat, now + SEC, interval, 1));
        ck_assert_uint_eq(gcra_interval(1000000), 1000);
        ck_assert_uint_eq(gcra_interval(3), 333333333);
}
END_TEST

/* An older clock reading (another thread's) never gives more. */
START_TEST(test_gcra_clock_behind) {
        uint64_t interval = gcra_interval(10), tat = 0, now = 10 * SEC;

        ck_assert(gcra_take(&tat, now, interval, 2));
        ck_assert(gcra_take(&tat, now, interval, 2));
        ck_assert(!gcra_take(&tat, now - SEC / 2, interval, 2));
        ck_assert(!gcra_take(&tat, now, interval, 2));
}
END_TEST

/* ---- the rate table ---- */

static struct rate_table *rates(uint32_t nsets, unsigned rate, unsigned burst) {
        struct rate_table *t = NULL;

        ck_assert_int_eq(rate_table_new(nsets, 5, &t), 0);
        rate_table_configure(t, rate, burst);
        return t;
}

static unsigned take_all(struct rate_table *t, const struct source_key *k, uint64_t now, unsigned max) {
        unsigned n = 0;

        while (n < max && rate_table_take(t, k, now))
                n++;
        return n;
}

START_TEST(test_rates_per_source) {
        struct rate_table *t = rates(RATE_TABLE_SETS, 10, 3);
        struct source_key a = key_v4("192.0.2.7"), b = key_v4("192.0.2.8");
        struct source_key mapped = key_v6("::ffff:192.0.2.7");
        struct source_key x = key_v6("2001:db8::1"), x2 = key_v6("2001:db8::2");
        uint64_t now = SEC;

        ck_assert_uint_eq(take_all(t, &a, now, 100), 3);
        ck_assert(!rate_table_take(t, &mapped, now));   /* the same source */
        ck_assert_uint_eq(take_all(t, &b, now, 100), 3); /* another one */
        ck_assert_uint_eq(take_all(t, &x, now, 2), 2);
        ck_assert_uint_eq(take_all(t, &x2, now, 100), 1); /* the same /64 */
        now += SEC / 10;
        ck_assert_uint_eq(take_all(t, &a, now, 100), 1);
        now += SEC;
        ck_assert_uint_eq(take_all(t, &a, now, 100), 3);
        rate_table_free(t);
}
END_TEST

START_TEST(test_rates_reconfigure) {
        struct rate_table *t = rates(16, 10, 3);
        struct source_key a = key_v4("192.0.2.7");

        ck_assert_uint_eq(take_all(t, &a, SEC, 100), 3);
        /* The same settings keep the state... */
        rate_table_configure(t, 10, 3);
        ck_assert(!rate_table_take(t, &a, SEC));
        /* ...new ones start afresh, with the new burst. */
        rate_table_configure(t, 10, 5);
        ck_assert_uint_eq(take_all(t, &a, SEC, 100), 5);
        rate_table_configure(t, 1, 5);
        ck_assert_uint_eq(take_all(t, &a, SEC, 100), 5);
        ck_assert(!rate_table_take(t, &a, SEC + SEC / 2));
        ck_assert(rate_table_take(t, &a, 2 * SEC));
        /* Rate 0: no limit. */
        rate_table_configure(t, 0, 5);
        ck_assert_uint_eq(take_all(t, &a, 2 * SEC, 1000), 1000);
        rate_table_free(t);
}
END_TEST

/* One set of RATE_TABLE_WAYS places: a new source replaces the one whose
 * bucket has been full the longest, and the sources being limited stay. */
START_TEST(test_rates_eviction) {
        struct rate_table *t = rates(1, 1, 2);
        struct source_key limited = key_n(1000), k0 = key_n(0);
        uint64_t now = 100 * SEC;

        ck_assert_uint_eq(take_all(t, &limited, now, 100), 2);
        /* Three quiet sources fill the other places, then a flood of new
         * (spoofed) sources passes through them. */
        for (uint32_t i = 0; i < 3; i++) {
                struct source_key k = key_n(i);

                ck_assert(rate_table_take(t, &k, now));
        }
        for (uint32_t i = 3; i < 500; i++) {
                struct source_key k = key_n(i);

                ck_assert(rate_table_take(t, &k, now + i));  /* each new: a full bucket */
        }
        /* The limited source was never evicted: still limited. */
        ck_assert(!rate_table_take(t, &limited, now + SEC / 2));
        /* An evicted source starts again with a full bucket. */
        ck_assert_uint_eq(take_all(t, &k0, now + SEC / 2, 100), 2);
        rate_table_free(t);
}
END_TEST

START_TEST(test_rates_new_errors) {
        struct rate_table *t = NULL;

        ck_assert_int_eq(rate_table_new(0, 1, &t), -EINVAL);
        ck_assert_int_eq(rate_table_new(3, 1, &t), -EINVAL);
        ck_assert_ptr_null(t);
}
END_TEST

/* ---- the loop guard ---- */

START_TEST(test_guard) {
        static const uint16_t own[] = { 12000, 12001 };

        ck_assert_int_eq(udp_guard_check(0, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(7, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(19, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(53, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(123, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(1023, own, 2), UDP_DROP_PRIVILEGED_PORT);
        ck_assert_int_eq(udp_guard_check(1024, own, 2), UDP_DROP_NONE);
        ck_assert_int_eq(udp_guard_check(12000, own, 2), UDP_DROP_OWN_PORT);
        ck_assert_int_eq(udp_guard_check(12001, own, 2), UDP_DROP_OWN_PORT);
        ck_assert_int_eq(udp_guard_check(12001, own, 1), UDP_DROP_NONE);
        ck_assert_int_eq(udp_guard_check(12002, own, 2), UDP_DROP_NONE);
        ck_assert_int_eq(udp_guard_check(32768, own, 2), UDP_DROP_NONE);
        ck_assert_int_eq(udp_guard_check(65535, own, 2), UDP_DROP_NONE);
        ck_assert_int_eq(udp_guard_check(65535, NULL, 0), UDP_DROP_NONE);
}
END_TEST

Suite *source_suite(void) {
        Suite *s = suite_create("source");
        TCase *tc;

        tc = tcase_create("keys");
        tcase_add_test(tc, test_key_ipv4_and_mapped);
        tcase_add_test(tc, test_key_ipv6_prefix);
        tcase_add_test(tc, test_key_other_family);
        tcase_add_test(tc, test_key_hash_seeded);
        suite_add_tcase(s, tc);

        tc = tcase_create("tcp");
        tcase_add_test(tc, test_table_basic);
        tcase_add_test(tc, test_table_full);
        tcase_add_test(tc, test_table_new_errors);
        tcase_add_test(tc, test_table_model_small);
        tcase_add_test(tc, test_table_model_large);
        tcase_add_test(tc, test_table_fill_and_empty);
        suite_add_tcase(s, tc);

        tc = tcase_create("udp");
        tcase_add_test(tc, test_gcra_burst_then_rate);
        tcase_add_test(tc, test_gcra_refill);
        tcase_add_test(tc, test_gcra_long_run);
        tcase_add_test(tc, test_gcra_burst_one);
        tcase_add_test(tc, test_gcra_clock_behind);
        tcase_add_test(tc, test_rates_per_source);
        tcase_add_test(tc, test_rates_reconfigure);
        tcase_add_test(tc, test_rates_eviction);
        tcase_add_test(tc, test_rates_new_errors);
        tcase_add_test(tc, test_guard);
        suite_add_tcase(s, tc);
        return s;
}
