/* SPDX-License-Identifier: MIT */
/* Unit tests of the control socket's dispatch (daemon/control.c) against a
 * fake daemon: each command's reply, the commands that change something,
 * the errors, and the connection list written a part at a time. */

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "duration.h"
#include "log.h"
#include "suites.h"

struct fake_daemon {
        struct control_daemon iface;
        struct shared *shared;
        int timeouts_set;
        enum timeout_id last_timeout;
        uint64_t last_usec;
        int reload_result;
        int reloads;
        bool draining;
        int drain_calls;
};

static void fake_status(void *userdata, struct control_status *st) {
        *st = (struct control_status) {
                .model = "fake",
                .threads = 3,
                .stopping = false,
                .config_file = "/etc/fake.conf",
                .activated = true,
                .start_usec = now_usec_monotonic(),
                .draining = ((struct fake_daemon *) userdata)->draining,
                .instance = "lab-vm",
        };
}

static bool fake_set_draining(void *userdata, bool draining) {
        struct fake_daemon *d = userdata;
        bool changed = d->draining != draining;

        d->drain_calls++;
        d->draining = draining;
        return changed;
}

static void fake_set_timeout(void *userdata, enum timeout_id t, uint64_t usec) {
        struct fake_daemon *d = userdata;

        d->timeouts_set++;
        d->last_timeout = t;
        d->last_usec = usec;
        atomic_store(&d->shared->live.timeout_usec[t], usec);
}

static int fake_reload(void *userdata, char *err, size_t errlen) {
        struct fake_daemon *d = userdata;

        d->reloads++;
        if (d->reload_result < 0)
                snprintf(err, errlen, "/etc/fake.conf:3: listen.backlog: -1 is out of range");
        return d->reload_result;
}

static void fake_init(struct fake_daemon *d) {
        memset(d, 0, sizeof(*d));
        ck_assert_int_eq(shared_new(4096, &d->shared), 0);
        atomic_store(&d->shared->live.max_connections, 4096);
        atomic_store(&d->shared->live.timeout_usec[TIMEOUT_IDLE], 300 * USEC_PER_SEC);
        d->iface = (struct control_daemon) {
                .shared = d->shared,
                .status = fake_status,
                .set_timeout = fake_set_timeout,
                .reload = fake_reload,
                .set_draining = fake_set_draining,
                .userdata = d,
        };
        /* "Timeout set" and "Reload requested" notices. */
        log_setup(LOG_TARGET_STDERR, LOG_ERR);
}

static void fake_free(struct fake_daemon *d) {
        shared_free(d->shared);
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
}

/* The whole reply to line, cursor included. */
static char *ask(struct fake_daemon *d, const char *line, struct textbuf *out) {
        struct control_cursor cursor;

        textbuf_init(out, 64 * 1024 * 1024);
        control_dispatch(&d->iface, line, strlen(line), 0, 1, out, &cursor);
        while (cursor.active)
                control_continue(&d->iface, &cursor, out);
        ck_assert(!out->overflow);
        return out->data ? out->data : "";
}

START_TEST(test_status) {
        struct fake_daemon d;
        struct textbuf out;
        char *r;

        fake_init(&d);
        r = ask(&d, "status", &out);
        ck_assert_ptr_nonnull(strstr(r, "\nmodel fake\n"));
        ck_assert_ptr_nonnull(strstr(r, "\nthreads 3\nstate running\nconfig /etc/fake.conf\n"
                                        "socket_activated yes\nconnections 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\ncontrol_protocol 1\n"));
        ck_assert(strncmp(r, "version ", 8) == 0);
        ck_assert_str_eq(r + strlen(r) - 3, "OK\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

START_TEST(test_stats) {
        struct fake_daemon d;
        struct textbuf out;
        char *r;

        fake_init(&d);
        COUNTER_ADD(d.shared, tcp_accepted, 7);
        COUNTER_ADD(d.shared, udp_datagrams, 2);
        r = ask(&d, "stats", &out);
        ck_assert_ptr_nonnull(strstr(r, "\ntcp.accepted 7\n"));
        ck_assert_ptr_nonnull(strstr(r, "\nudp.datagrams 2\n"));
        ck_assert_ptr_nonnull(strstr(r, "\ntimeouts.idle 300\n"));
        ck_assert_str_eq(r + strlen(r) - 3, "OK\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

/* Setting a timeout goes through the daemon; the reply shows it. */
START_TEST(test_timeout) {
        struct fake_daemon d;
        struct textbuf out;

        fake_init(&d);
        ck_assert_str_eq(ask(&d, "timeout idle", &out), "idle 300\nOK\n");
        textbuf_free(&out);
        ck_assert_int_eq(d.timeouts_set, 0);
        ck_assert_str_eq(ask(&d, "timeout idle 250ms", &out), "idle 0.25\nOK\n");
        textbuf_free(&out);
        ck_assert_int_eq(d.timeouts_set, 1);
        ck_assert_int_eq(d.last_timeout, TIMEOUT_IDLE);
        ck_assert_uint_eq(d.last_usec, 250 * USEC_PER_MSEC);
        ck_assert_ptr_nonnull(strstr(ask(&d, "timeout", &out), "idle 0.25\nwrite "));
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

/* drain and ready go through the daemon; asking twice says it changed
 * nothing; status and stats show the state, and the instance name. */
START_TEST(test_drain) {
        struct fake_daemon d;
        struct textbuf out;

        fake_init(&d);
        ck_assert_ptr_nonnull(strstr(ask(&d, "status", &out), "\nbalancer ready\n"));
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "drain", &out), "balancer draining\nchanged yes\nOK\n");
        textbuf_free(&out);
        ck_assert(d.draining);
        ck_assert_str_eq(ask(&d, "drain", &out), "balancer draining\nchanged no\nOK\n");
        textbuf_free(&out);
        ck_assert(d.draining);
        ck_assert_ptr_nonnull(strstr(ask(&d, "status", &out), "\ninstance lab-vm\n"));
        ck_assert_ptr_nonnull(strstr(out.data, "\nbalancer draining\n"));
        textbuf_free(&out);
        COUNTER_ADD(d.shared, agent_checks, 4);
        ck_assert_ptr_nonnull(strstr(ask(&d, "stats", &out), "\ninstance lab-vm\n"));
        ck_assert_ptr_nonnull(strstr(out.data, "\ndraining yes\nagent.checks 4\n"));
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "ready", &out), "balancer ready\nchanged yes\nOK\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "ready", &out), "balancer ready\nchanged no\nOK\n");
        textbuf_free(&out);
        ck_assert(!d.draining);
        ck_assert_int_eq(d.drain_calls, 4);
        ck_assert_str_eq(ask(&d, "drain now", &out), "ERROR wrong number of arguments for 'drain', try 'help'\n");
        textbuf_free(&out);
        ck_assert_int_eq(d.drain_calls, 4);
        fake_free(&d);
}
END_TEST

START_TEST(test_reload) {
        struct fake_daemon d;
        struct textbuf out;

        fake_init(&d);
        ck_assert_str_eq(ask(&d, "reload", &out), "OK\n");
        textbuf_free(&out);
        d.reload_result = -EINVAL;
        ck_assert_str_eq(ask(&d, "reload", &out), "ERROR /etc/fake.conf:3: listen.backlog: -1 is out of range\n");
        textbuf_free(&out);
        ck_assert_int_eq(d.reloads, 2);
        fake_free(&d);
}
END_TEST

/* help lists every command of the table uppercasectl has too. */
START_TEST(test_help_and_errors) {
        struct fake_daemon d;
        struct textbuf out;
        char *r;

        fake_init(&d);
        r = ask(&d, "help", &out);
        for (int c = 0; c < _CONTROL_MAX; c++) {
                char line[64];

                snprintf(line, sizeof(line), "help %s", control_commands[c].name);
                ck_assert_msg(strstr(r, line), "%s missing in:\n%s", line, r);
        }
        ck_assert_ptr_nonnull(strstr(r, "help timeout [NAME [VALUE]] "));
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "bogus", &out), "ERROR unknown command 'bogus', try 'help'\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "stats now", &out), "ERROR wrong number of arguments for 'stats', try 'help'\n");
        textbuf_free(&out);
        ck_assert_int_eq(d.timeouts_set + d.reloads, 0);
        fake_free(&d);
}
END_TEST

/* 3,000 connections, more than a part: each listed once, then OK; a part
 * is never much more than CONTROL_CHUNK. */
START_TEST(test_connections_in_parts) {
        struct fake_daemon d;
        struct control_cursor cursor;
        union sockaddr_union peer = { .in = { .sin_family = AF_INET, .sin_port = htons(40000) } };
        struct textbuf out;
        unsigned parts = 0, lines = 0;
        char *p;

        fake_init(&d);
        inet_pton(AF_INET, "192.0.2.7", &peer.in.sin_addr);
        for (int i = 0; i < 3000; i++)
                ck_assert_ptr_nonnull(conn_slot_take(d.shared, &peer, NULL));
        textbuf_init(&out, 64 * 1024 * 1024);
        control_dispatch(&d.iface, "connections", 11, 0, 1, &out, &cursor);
        for (;;) {
                parts++;
                ck_assert_uint_lt(out.len, 128 * 1024);
                for (p = out.data; (p = strstr(p, "connection id=")); p++)
                        lines++;
                if (!cursor.active)
                        break;
                textbuf_free(&out);
                control_continue(&d.iface, &cursor, &out);
        }
        ck_assert_uint_eq(lines, 3000);
        ck_assert_uint_gt(parts, 2);
        ck_assert_str_eq(out.data + out.len - 3, "OK\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

Suite *dispatch_suite(void) {
        Suite *s = suite_create("dispatch");
        TCase *tc = tcase_create("commands");

        tcase_add_test(tc, test_status);
        tcase_add_test(tc, test_stats);
        tcase_add_test(tc, test_timeout);
        tcase_add_test(tc, test_reload);
        tcase_add_test(tc, test_drain);
        tcase_add_test(tc, test_help_and_errors);
        tcase_add_test(tc, test_connections_in_parts);
        suite_add_tcase(s, tc);
        return s;
}
