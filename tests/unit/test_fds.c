/* SPDX-License-Identifier: MIT */
/* Unit tests of the descriptor budget (daemon/fdbudget.c), the persistent
 * notify socket (daemon/notify.c) and the choice of the control client that
 * gives its place up (control_pick_victim()). */

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "control.h"
#include "fdbudget.h"
#include "notify.h"
#include "suites.h"

/* ---- the budget ---- */

START_TEST(test_plan_ample) {
        struct fd_budget b;

        /* systemd's default hard limit, raised to. */
        fd_budget_plan(&b, 524288, 20, true);
        ck_assert_uint_eq(b.control, CONTROL_CLIENTS_MAX);
        ck_assert_uint_eq(b.conns, 524288 - 20 - FD_SPARE - CONTROL_CLIENTS_MAX);
        ck_assert(fd_budget_fits(&b, 65536));
}
END_TEST

/* The soft limit of 1024, when the hard one is no higher: 1024
 * connections do not fit. */
START_TEST(test_plan_1024) {
        struct fd_budget b;
        char why[512];

        fd_budget_plan(&b, 1024, 20, true);
        ck_assert_uint_eq(b.control, 64);
        ck_assert_uint_eq(b.conns, 1024 - 20 - 16 - 64);
        ck_assert(fd_budget_fits(&b, 924));
        ck_assert(!fd_budget_fits(&b, 925));
        fd_budget_explain(&b, 1024, false, why, sizeof(why));
        ck_assert_str_eq(why, "The descriptor limit 1024 leaves 924 for connections, fewer than "
                         "max_connections 1024 (20 of the daemon's own, 16 spare, 64 for control clients): "
                         "more connections wait in the listen backlog; raise LimitNOFILE= (the hard limit) "
                         "or lower workers.max_connections");
        fd_budget_explain(&b, 1024, true, why, sizeof(why));
        ck_assert_ptr_nonnull(strstr(why, "(about 20 of the daemon's own"));
}
END_TEST

/* A low limit: the control clients get a quarter of what is left. */
START_TEST(test_plan_low) {
        struct fd_budget b;

        fd_budget_plan(&b, 64, 11, true);
        ck_assert_uint_eq(b.control, 9);                /* (64 - 11 - 16) / 4 */
        ck_assert_uint_eq(b.conns, 28);
        fd_budget_plan(&b, 28, 11, true);               /* room for one descriptor */
        ck_assert_uint_eq(b.control, 1);
        ck_assert_uint_eq(b.conns, 0);
        fd_budget_plan(&b, 20, 11, true);               /* for nothing */
        ck_assert_uint_eq(b.control, 0);
        ck_assert_uint_eq(b.conns, 0);
        ck_assert(!fd_budget_fits(&b, 1));
}
END_TEST

/* The process model's connections are its children's descriptors. */
START_TEST(test_plan_process) {
        struct fd_budget b;

        fd_budget_plan(&b, 64, 11, false);
        ck_assert_uint_eq(b.control, 9);
        ck_assert_uint_eq(b.conns, FD_CONNS_UNLIMITED);
        ck_assert(fd_budget_fits(&b, 65536));
}
END_TEST

START_TEST(test_own_estimate) {
        struct config c;

        config_defaults(&c);
        ck_assert_uint_eq(fd_own_estimate(&c), 16 + 2 + 2);
        c.threads = 4;
        ck_assert_uint_eq(fd_own_estimate(&c), 16 + 2 + 8);
        c.model = MODEL_THREAD;
        ck_assert_uint_eq(fd_own_estimate(&c), 16 + 2);
}
END_TEST

/* Raised to the hard limit; Check runs each test in a process of its own. */
START_TEST(test_limit_raise) {
        struct rlimit rl;
        int err;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_uint_gt(rl.rlim_max, 100);
        rl.rlim_cur = 100;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_uint_eq(fd_limit_hard(), rl.rlim_max);
        ck_assert_uint_eq(fd_limit_raise(&err), rl.rlim_max);
        ck_assert_int_eq(err, 0);
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_uint_eq(rl.rlim_cur, rl.rlim_max);
        /* Already raised: nothing to do. */
        ck_assert_uint_eq(fd_limit_raise(&err), rl.rlim_max);
}
END_TEST

START_TEST(test_count_open) {
        int before = fd_count_open(), p[2];

        ck_assert_int_gt(before, 2);
        ck_assert_int_eq(pipe(p), 0);
        ck_assert_int_eq(fd_count_open(), before + 2);
        close(p[0]);
        close(p[1]);
        ck_assert_int_eq(fd_count_open(), before);
}
END_TEST

/* ---- notify ---- */

static int manager_socket(char *path, size_t len) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        snprintf(path, len, "/tmp/upc-notify-fds-%d", (int) getpid());
        unlink(path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        setenv("NOTIFY_SOCKET", path, 1);
        return fd;
}

/* The message, and the descriptor that came with it (or -1). */
static void receive(int fd, char *buf, size_t len, int *passed) {
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { buf, len - 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = control, .msg_controllen = sizeof(control) };
        struct cmsghdr *cm;
        ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        *passed = -1;
        cm = CMSG_FIRSTHDR(&msg);
        if (cm && cm->cmsg_type == SCM_RIGHTS)
                memcpy(passed, CMSG_DATA(cm), sizeof(int));
}

/* Out of descriptors, sd_notify() cannot ping the watchdog any more (it
 * opens a socket per message); notify_send() still does, and still hands
 * descriptors over. */
START_TEST(test_notify_without_descriptors) {
        struct rlimit rl = { 0, 0 };
        char path[108], buf[128];
        int manager = manager_socket(path, sizeof(path)), sv[2], passed;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(notify_open(), 0);
        /* No descriptor can be opened any more. */
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = 0;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_int_lt(dup(0), 0);

        ck_assert_int_eq(sd_notify(false, "WATCHDOG=1"), -EMFILE);
        ck_assert_int_eq(notify_send("WATCHDOG=1"), 1);
        receive(manager, buf, sizeof(buf), &passed);
        ck_assert_str_eq(buf, "WATCHDOG=1");
        ck_assert_int_eq(passed, -1);
        ck_assert_int_eq(notify_sendf("STATUS=%s model, %u connections", "event", 3u), 1);
        receive(manager, buf, sizeof(buf), &passed);
        ck_assert_str_eq(buf, "STATUS=event model, 3 connections");

        /* A descriptor: the receiver needs a place for it. */
        rl.rlim_cur = rl.rlim_max;
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        ck_assert_int_eq(notify_send_fds("FDSTORE=1\nFDNAME=conn-7", &sv[0], 1), 1);
        receive(manager, buf, sizeof(buf), &passed);
        ck_assert_str_eq(buf, "FDSTORE=1\nFDNAME=conn-7");
        ck_assert_int_ge(passed, 0);
        ck_assert_int_eq(write(passed, "x", 1), 1);
        ck_assert_int_eq(read(sv[1], buf, 1), 1);

        notify_close();
        close(manager);
        unlink(path);
        unsetenv("NOTIFY_SOCKET");
}
END_TEST

/* An abstract address ("@name") works too; no manager is not an error. */
START_TEST(test_notify_addresses) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char name[64], buf[64];
        int manager = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), passed;
        socklen_t len;

        unsetenv("NOTIFY_SOCKET");
        ck_assert_int_eq(notify_open(), 0);
        ck_assert_int_eq(notify_send("READY=1"), 0);

        snprintf(name, sizeof(name), "@upc-notify-%d", (int) getpid());
        memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(name));
        ck_assert_int_eq(bind(manager, (struct sockaddr *) &sa, len), 0);
        setenv("NOTIFY_SOCKET", name, 1);
        ck_assert_int_eq(notify_open(), 0);
        ck_assert_int_eq(notify_send("READY=1"), 1);
        receive(manager, buf, sizeof(buf), &passed);
        ck_assert_str_eq(buf, "READY=1");
        notify_close();
        close(manager);
        unsetenv("NOTIFY_SOCKET");
}
END_TEST

/* ---- control places ---- */

START_TEST(test_pick_victim) {
        /* Least recently active first. */
        static const uid_t one[] = { 0 };
        static const uid_t greedy[] = { 0, 1000, 1000, 0, 1000 };
        static const uid_t tie[] = { 0, 1000, 1000, 0 };
        static const uid_t root_most[] = { 1000, 0, 0 };

        ck_assert_uint_eq(control_pick_victim(one, 1), 0);
        /* uid 1000 holds the most places: its least recently active goes,
         * though root's client at 0 is older. */
        ck_assert_uint_eq(control_pick_victim(greedy, 5), 1);
        /* Equal: the least recently active of either. */
        ck_assert_uint_eq(control_pick_victim(tie, 4), 0);
        ck_assert_uint_eq(control_pick_victim(root_most, 3), 1);
}
END_TEST

Suite *fds_suite(void) {
        Suite *s = suite_create("fds");
        TCase *tc = tcase_create("budget");

        tcase_add_test(tc, test_plan_ample);
        tcase_add_test(tc, test_plan_1024);
        tcase_add_test(tc, test_plan_low);
        tcase_add_test(tc, test_plan_process);
        tcase_add_test(tc, test_own_estimate);
        tcase_add_test(tc, test_limit_raise);
        tcase_add_test(tc, test_count_open);
        suite_add_tcase(s, tc);
        tc = tcase_create("notify");
        tcase_add_test(tc, test_notify_without_descriptors);
        tcase_add_test(tc, test_notify_addresses);
        suite_add_tcase(s, tc);
        tc = tcase_create("control");
        tcase_add_test(tc, test_pick_victim);
        suite_add_tcase(s, tc);
        return s;
}
