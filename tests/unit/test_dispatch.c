/* SPDX-License-Identifier: MIT */
/* Unit tests of the control socket's dispatch (daemon/control.c) against a
 * fake daemon: each command's reply, the commands that change something,
 * the errors, and the connection list written a part at a time. */

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
        int kills;
        uint64_t last_kill;
        struct control_peer peer;       /* who asks: root by default */
        char last_line[64];
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

/* Marks the slot as the daemon does; its worker would close it. */
static int fake_kill(void *userdata, uint64_t id, union sockaddr_union *peer) {
        struct fake_daemon *d = userdata;

        d->kills++;
        d->last_kill = id;
        return conn_slot_kill(d->shared, id, peer) ? 0 : -ENOENT;
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
                .kill = fake_kill,
                .admin_group = "uppercased-admin",
                .userdata = d,
        };
        d->peer = (struct control_peer) { .uid = 0, .pid = 1, .admin = true };
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
        control_dispatch(&d->iface, line, strlen(line), &d->peer, out, &cursor);
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
        ck_assert_ptr_nonnull(strstr(r, "\ncontrol_protocol 2\n"));
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
        control_dispatch(&d.iface, "connections", 11, &d.peer, &out, &cursor);
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

/* kill ID marks the connection for its worker (conn_slot_killed()), for
 * that connection only: not one that takes its slot later. */
START_TEST(test_kill) {
        struct fake_daemon d;
        union sockaddr_union peer = { .in = { .sin_family = AF_INET, .sin_port = htons(40512) } };
        struct conn_slot *a, *b;
        struct textbuf out;
        char want[64];
        uint64_t id;

        fake_init(&d);
        inet_pton(AF_INET, "192.0.2.7", &peer.in.sin_addr);
        a = conn_slot_take(d.shared, &peer, NULL);
        b = conn_slot_take(d.shared, &peer, NULL);
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        id = atomic_load(&a->id);
        snprintf(want, sizeof(want), "killed %" PRIu64 "\nOK\n", id);
        snprintf(d.last_line, sizeof(d.last_line), "kill %" PRIu64, id);
        ck_assert_str_eq(ask(&d, d.last_line, &out), want);
        textbuf_free(&out);
        ck_assert(conn_slot_killed(a));
        ck_assert(!conn_slot_killed(b));
        ck_assert_uint_eq(d.last_kill, id);
        /* The slot's next connection is not the one killed. */
        atomic_store(&a->close_reason, CLOSE_KILLED);
        conn_slot_release(d.shared, a);
        ck_assert_uint_eq(atomic_load(&d.shared->c.tcp_closed[CLOSE_KILLED]), 1);
        ck_assert_str_eq(close_reason_to_string(CLOSE_KILLED), "killed");
        a = conn_slot_take(d.shared, &peer, NULL);
        ck_assert(!conn_slot_killed(a));

        ck_assert_str_eq(ask(&d, "kill 999999", &out), "ERROR no connection 999999 (see 'connections')\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "kill x12", &out),
                         "ERROR invalid connection id 'x12' (a number, see 'connections')\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "kill 0", &out), "ERROR invalid connection id '0' (a number, see 'connections')\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "kill", &out), "ERROR wrong number of arguments for 'kill', try 'help'\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

/* reset zeroes the counters, not the gauges. */
START_TEST(test_reset) {
        struct fake_daemon d;
        union sockaddr_union peer = { .in = { .sin_family = AF_INET, .sin_port = htons(40512) } };
        struct textbuf out;
        char *r;

        fake_init(&d);
        ck_assert_ptr_nonnull(conn_slot_take(d.shared, &peer, NULL));
        COUNTER_ADD(d.shared, udp_datagrams, 5);
        COUNTER_ADD(d.shared, tcp_closed[CLOSE_EOF], 2);
        COUNTER_ADD(d.shared, agent_checks, 3);
        ck_assert_str_eq(ask(&d, "reset", &out), "OK\n");
        textbuf_free(&out);
        r = ask(&d, "stats", &out);
        ck_assert_ptr_nonnull(strstr(r, "\ntcp.active 1\ntcp.accepted 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\ntcp.closed_eof 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\ntcp.closed_killed 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\nudp.datagrams 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\nagent.checks 0\n"));
        ck_assert_ptr_nonnull(strstr(r, "\ntimeouts.idle 300\n"));
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

/* Changing commands need an admin; reading ones do not. */
START_TEST(test_tiers) {
        static const char *const changing[] = { "timeout idle 5", "reload", "kill 1", "reset", "drain", "ready" };
        static const char *const reading[] = { "status", "stats", "connections", "timeout", "timeout idle",
                                               "help", "help kill" };
        struct fake_daemon d;
        struct textbuf out;
        char want[128], *r;

        fake_init(&d);
        d.peer = (struct control_peer) { .uid = 65534, .pid = 42, .admin = false };
        for (size_t i = 0; i < sizeof(changing) / sizeof(changing[0]); i++) {
                char name[16];

                sscanf(changing[i], "%15s", name);
                snprintf(want, sizeof(want), "ERROR permission denied: %s%s needs root or group uppercased-admin\n",
                         name, strcmp(name, "timeout") == 0 ? " VALUE" : "");
                ck_assert_str_eq(ask(&d, changing[i], &out), want);
                textbuf_free(&out);
        }
        ck_assert_int_eq(d.timeouts_set + d.reloads + d.drain_calls + d.kills, 0);
        for (size_t i = 0; i < sizeof(reading) / sizeof(reading[0]); i++) {
                r = ask(&d, reading[i], &out);
                ck_assert_str_eq(r + strlen(r) - 3, "OK\n");
                textbuf_free(&out);
        }
        d.iface.admin_group = "";
        ck_assert_str_eq(ask(&d, "reset", &out), "ERROR permission denied: reset needs root\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

START_TEST(test_peer_is_admin) {
        gid_t groups[] = { 100, 990 };

        ck_assert(control_peer_is_admin(0, 0, NULL, 0, 990, (gid_t) -1));
        ck_assert(control_peer_is_admin(1000, 1000, NULL, 0, 1000, (gid_t) -1));
        ck_assert(!control_peer_is_admin(65534, 65534, NULL, 0, 0, (gid_t) -1));
        ck_assert(!control_peer_is_admin(65534, 65534, groups, 2, 0, (gid_t) -1));
        ck_assert(control_peer_is_admin(65534, 65534, groups, 2, 0, 990));
        ck_assert(control_peer_is_admin(65534, 990, NULL, 0, 0, 990));
        ck_assert(!control_peer_is_admin(65534, 65534, groups, 1, 0, 990));
}
END_TEST

/* The peer's supplementary groups, as SO_PEERGROUPS gives them: here our
 * own, over a socket pair. */
START_TEST(test_peer_groups) {
        gid_t mine[64], theirs[64];
        int fds[2], n, m;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
        n = getgroups(64, mine);
        ck_assert_int_ge(n, 0);
        m = control_peer_groups(fds[0], getpid(), theirs, 64);
        ck_assert_int_eq(m, n);
        for (int i = 0; i < n; i++) {
                bool found = false;

                for (int j = 0; j < m; j++)
                        found = found || theirs[j] == mine[i];
                ck_assert(found);
        }
        close(fds[0]);
        close(fds[1]);
}
END_TEST

/* help COMMAND: that command's line only. */
START_TEST(test_help_command) {
        struct fake_daemon d;
        struct textbuf out;
        char *r;

        fake_init(&d);
        r = ask(&d, "help kill", &out);
        ck_assert(strncmp(r, "help kill ID ", 13) == 0);
        ck_assert_ptr_nonnull(strstr(r, "close connection ID"));
        ck_assert_int_eq(strchr(r, '\n') - r + 1, (int) strlen(r) - 3);
        ck_assert_str_eq(r + strlen(r) - 3, "OK\n");
        textbuf_free(&out);
        ck_assert_str_eq(ask(&d, "help bogus", &out), "ERROR unknown command 'bogus', try 'help'\n");
        textbuf_free(&out);
        fake_free(&d);
}
END_TEST

/* Units in the keys: the start time, and the connection list's ages
 * (with the names of protocol 1 kept). */
START_TEST(test_units_in_keys) {
        struct fake_daemon d;
        union sockaddr_union peer = { .in = { .sin_family = AF_INET, .sin_port = htons(40512) } };
        struct textbuf out;
        char *r, *p;
        double start;

        fake_init(&d);
        r = ask(&d, "stats", &out);
        p = strstr(r, "\nstart_time_seconds ");
        ck_assert_ptr_nonnull(p);
        start = strtod(p + 20, NULL);
        ck_assert(start > now_usec_realtime() / 1e6 - 5 && start <= now_usec_realtime() / 1e6 + 1);
        textbuf_free(&out);
        ck_assert_ptr_nonnull(strstr(ask(&d, "status", &out), "\ncontrol_protocol 2\n"));
        textbuf_free(&out);
        ck_assert_ptr_nonnull(conn_slot_take(d.shared, &peer, NULL));
        r = ask(&d, "connections", &out);
        ck_assert_ptr_nonnull(strstr(r, " age_seconds="));
        ck_assert_ptr_nonnull(strstr(r, " idle_seconds="));
        ck_assert_ptr_nonnull(strstr(r, " age="));
        ck_assert_ptr_nonnull(strstr(r, " idle="));
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
        tcase_add_test(tc, test_kill);
        tcase_add_test(tc, test_reset);
        tcase_add_test(tc, test_tiers);
        tcase_add_test(tc, test_peer_is_admin);
        tcase_add_test(tc, test_peer_groups);
        tcase_add_test(tc, test_help_command);
        tcase_add_test(tc, test_units_in_keys);
        suite_add_tcase(s, tc);
        return s;
}
