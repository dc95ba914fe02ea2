/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared.h"
#include "suites.h"

static union sockaddr_union peer_v4(const char *ip, uint16_t port) {
        union sockaddr_union sa = { .in = { .sin_family = AF_INET, .sin_port = htons(port) } };

        ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.in.sin_addr), 1);
        return sa;
}

static struct shared *shared_with(uint32_t nslots, unsigned max) {
        struct shared *sh = NULL;

        ck_assert_int_eq(shared_new(nslots, &sh), 0);
        atomic_store(&sh->max_connections, max);
        return sh;
}

START_TEST(test_slot_take_release) {
        struct shared *sh = shared_with(8, 8);
        union sockaddr_union p = peer_v4("192.0.2.7", 40512);
        struct conn_slot *a = conn_slot_take(sh, &p), *b = conn_slot_take(sh, &p);

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
        ck_assert_ptr_eq(conn_slot_take(sh, &p), a);
        ck_assert_uint_eq(sh->high_water, 2);
        shared_free(sh);
}
END_TEST

START_TEST(test_max_connections) {
        struct shared *sh = shared_with(8, 2);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);
        struct conn_slot *a = conn_slot_take(sh, &p);

        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p));
        ck_assert_ptr_null(conn_slot_take(sh, &p));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 1);

        /* The limit is live. */
        atomic_store(&sh->max_connections, 3);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p));
        ck_assert_ptr_null(conn_slot_take(sh, &p));
        conn_slot_release(sh, a);
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 2);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_ERROR]), 1);
        shared_free(sh);
}
END_TEST

START_TEST(test_table_full) {
        struct shared *sh = shared_with(2, 100);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);

        ck_assert_ptr_nonnull(conn_slot_take(sh, &p));
        ck_assert_ptr_nonnull(conn_slot_take(sh, &p));
        ck_assert_ptr_null(conn_slot_take(sh, &p));
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 2);
        shared_free(sh);
}
END_TEST

START_TEST(test_traffic) {
        struct shared *sh = shared_with(4, 4);
        union sockaddr_union p = peer_v4("127.0.0.1", 1);
        struct conn_slot *a = conn_slot_take(sh, &p);

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
        struct conn_slot *a = conn_slot_take(sh, &p);
        int status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                conn_slot_traffic(sh, a, 42, 43, 1);
                atomic_store(&sh->timeout_usec[TIMEOUT_IDLE], 5);
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
        tcase_add_test(tc, test_table_full);
        tcase_add_test(tc, test_traffic);
        tcase_add_test(tc, test_shared_across_fork);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        return s;
}
