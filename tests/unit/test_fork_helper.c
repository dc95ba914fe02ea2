/* SPDX-License-Identifier: MIT */
/* The process model's fork helper (daemon/fork-helper.h): its loop run in a
 * child of the test, fed connections (UNIX stream socket pairs standing in
 * for TCP) the way the daemon feeds it. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "fork-helper.h"
#include "suites.h"
#include "tcp-blocking.h"

#define WAIT_MS 5000

struct running {
        struct shared *sh;
        struct fork_helper h;
};

/* The helper's loop on a fresh shared area, in a child of ours. */
static struct running helper_run(uint32_t nslots) {
        struct running run = { 0 };
        int sv[2];
        pid_t pid;

        ck_assert_int_eq(shared_new(nslots, &run.sh), 0);
        atomic_store(&run.sh->live.max_connections, nslots);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(sv[0]);
                _exit(fork_helper_run(sv[1], run.sh) == 0 ? 0 : 1);
        }
        close(sv[1]);
        ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
        run.h = (struct fork_helper) { .pid = pid, .sock = sv[0] };
        return run;
}

static struct conn_slot *slot_for(struct shared *sh, uint16_t port) {
        union sockaddr_union peer = { .in = { .sin_family = AF_INET, .sin_port = htons(port) } };
        struct conn_slot *slot;

        peer.in.sin_addr.s_addr = htonl(0xc0000207);
        slot = conn_slot_take(sh, &peer, NULL);
        ck_assert_ptr_nonnull(slot);
        return slot;
}

static void wait_readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
}

static void expect_reply(int fd, const char *want) {
        char buf[64] = "";
        ssize_t n;

        wait_readable(fd);
        n = read(fd, buf, sizeof(buf) - 1);
        ck_assert_int_eq(n, (ssize_t) strlen(want));
        ck_assert_str_eq(buf, want);
}

static void expect_eof(int fd) {
        char c;

        wait_readable(fd);
        ck_assert_int_eq(read(fd, &c, 1), 0);
}

/* Reads reports until n have come. */
static void expect_reports(struct running *run, struct fork_report *got, int n) {
        int have = 0;

        while (have < n) {
                struct fork_report batch[FORK_REPORTS_MAX];
                int r;

                wait_readable(run->h.sock);
                r = fork_helper_read(&run->h, batch);
                ck_assert_int_ge(r, 0);
                ck_assert_int_le(have + r, n);
                memcpy(got + have, batch, (size_t) r * sizeof(*batch));
                have += r;
        }
}

static void helper_end(struct running *run) {
        int status;

        close(run->h.sock);
        ck_assert_int_eq(waitpid(run->h.pid, &status, 0), run->h.pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        shared_free(run->sh);
}

/* A batch of two: each gets a worker of its own that answers, counts in
 * the slot, and is reported once it ended, with its pid and how. */
START_TEST(test_helper_serves_batch) {
        struct running run = helper_run(8);
        struct conn_slot *a = slot_for(run.sh, 1000), *b = slot_for(run.sh, 1001);
        uint32_t slots[2] = { (uint32_t) (a - run.sh->slots), (uint32_t) (b - run.sh->slots) };
        struct fork_report rep[2];
        int ca[2], cb[2], fds[2];

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ca), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cb), 0);
        fds[0] = ca[1];
        fds[1] = cb[1];
        ck_assert_int_eq(fork_helper_send(&run.h, fds, slots, 2), 0);
        close(ca[1]);
        close(cb[1]);

        ck_assert_int_eq(write(ca[0], "ciao\n", 5), 5);
        expect_reply(ca[0], "CIAO\n");
        ck_assert_int_eq(write(cb[0], "due\n.\n", 6), 6);
        expect_reply(cb[0], "DUE\n");
        expect_eof(cb[0]);              /* "." ends it from the worker's side */
        close(cb[0]);
        close(ca[0]);                   /* and this one from ours */

        expect_reports(&run, rep, 2);
        if (rep[0].slot != slots[0]) {
                struct fork_report t = rep[0];

                rep[0] = rep[1];
                rep[1] = t;
        }
        for (int i = 0; i < 2; i++) {
                ck_assert_uint_eq(rep[i].slot, slots[i]);
                ck_assert_int_gt(rep[i].pid, 0);
                ck_assert_int_eq(rep[i].code, CLD_EXITED);
                ck_assert_int_eq(rep[i].status, 0);
                ck_assert_int_eq(atomic_load(&run.sh->slots[slots[i]].pid), rep[i].pid);
        }
        ck_assert_int_eq(atomic_load(&a->close_reason), CLOSE_EOF);
        ck_assert_int_eq(atomic_load(&b->close_reason), CLOSE_QUIT);
        ck_assert_uint_eq(atomic_load(&a->bytes_in), 5);
        ck_assert_uint_eq(atomic_load(&a->bytes_out), 5);
        helper_end(&run);
}
END_TEST

/* A worker killed is reported as killed, with the signal. */
START_TEST(test_helper_reports_killed) {
        struct running run = helper_run(4);
        struct conn_slot *a = slot_for(run.sh, 1000);
        uint32_t slot = (uint32_t) (a - run.sh->slots);
        struct fork_report rep;
        int c[2];

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        ck_assert_int_eq(fork_helper_send(&run.h, &c[1], &slot, 1), 0);
        close(c[1]);
        ck_assert_int_eq(write(c[0], "x\n", 2), 2);
        expect_reply(c[0], "X\n");
        ck_assert_int_gt(atomic_load(&a->pid), 0);
        ck_assert_int_eq(kill(atomic_load(&a->pid), SIGKILL), 0);
        expect_reports(&run, &rep, 1);
        ck_assert_uint_eq(rep.slot, slot);
        ck_assert_int_eq(rep.code, CLD_KILLED);
        ck_assert_int_eq(rep.status, SIGKILL);
        expect_eof(c[0]);
        close(c[0]);
        helper_end(&run);
}
END_TEST

/* What the protocol does not allow (a slot out of the table, fewer slots
 * than descriptors) is closed, not served, and the helper goes on. */
START_TEST(test_helper_drops_malformed) {
        struct running run = helper_run(4);
        struct conn_slot *a = slot_for(run.sh, 1000);
        uint32_t bad = 4, good = (uint32_t) (a - run.sh->slots);
        struct fork_report rep;
        int c[2], d[2];

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        ck_assert_int_eq(fork_helper_send(&run.h, &c[1], &bad, 1), 0);
        close(c[1]);
        expect_eof(c[0]);
        close(c[0]);

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, d), 0);
        {
                int fds[2] = { c[1], d[1] };
                struct iovec iov = { &good, sizeof(good) };
                char control[CMSG_SPACE(2 * sizeof(int))] = { 0 };
                struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                                      .msg_control = control, .msg_controllen = sizeof(control) };
                struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(fds));
                memcpy(CMSG_DATA(cm), fds, sizeof(fds));
                ck_assert_int_eq(sendmsg(run.h.sock, &msg, 0), (ssize_t) sizeof(good));
        }
        close(c[1]);
        close(d[1]);
        expect_eof(c[0]);
        expect_eof(d[0]);
        close(c[0]);
        close(d[0]);

        /* Still serving. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        ck_assert_int_eq(fork_helper_send(&run.h, &c[1], &good, 1), 0);
        close(c[1]);
        ck_assert_int_eq(write(c[0], "ok\n", 3), 3);
        expect_reply(c[0], "OK\n");
        close(c[0]);
        expect_reports(&run, &rep, 1);
        ck_assert_uint_eq(rep.slot, good);
        helper_end(&run);
}
END_TEST

/* A helper that does not read: sending says so (the daemon holds the
 * batch) rather than block; a helper gone: both ends say so. */
START_TEST(test_helper_socket_full_and_gone) {
        struct fork_helper h = { .pid = 0 };
        struct fork_report rep[FORK_REPORTS_MAX];
        uint32_t slot = 0;
        int sv[2], r = 0;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
        h.sock = sv[0];
        for (int i = 0; i < 100000 && r == 0; i++)
                r = fork_helper_send(&h, &sv[0], &slot, 1);
        ck_assert_int_eq(r, -EAGAIN);
        ck_assert_int_eq(fork_helper_read(&h, rep), 0);
        close(sv[1]);
        ck_assert_int_eq(fork_helper_send(&h, &sv[0], &slot, 1), -EPIPE);
        ck_assert_int_eq(fork_helper_read(&h, rep), -EPIPE);
        ck_assert_int_eq(fork_helper_send(&h, &sv[0], &slot, 0), -EINVAL);
        ck_assert_int_eq(fork_helper_send(&h, &sv[0], &slot, FORK_BATCH_MAX + 1), -EINVAL);
        close(sv[0]);
}
END_TEST

/* The area mapped again from its memfd, as the helper maps it: the same
 * memory. */
START_TEST(test_shared_map) {
        struct shared *sh = NULL, *again = NULL;

        ck_assert_int_eq(shared_new(16, &sh), 0);
        ck_assert_int_eq(shared_map(sh->memfd, &again), 0);
        ck_assert_ptr_ne(again, sh);
        ck_assert_uint_eq(again->nslots, 16);
        COUNTER_ADD(again, tcp_bytes_in, 42);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_bytes_in), 42);
        atomic_store(&again->slots[15].bytes_out, 7);
        ck_assert_uint_eq(atomic_load(&sh->slots[15].bytes_out), 7);
        shared_unmap(again);
        ck_assert_int_eq(shared_map(-1, &again), -EBADF);
        shared_free(sh);
}
END_TEST

/* The children table stays with the process that forks: a child has no
 * page of it (writing it after each fork would copy a shared page). */
START_TEST(test_children_table_not_inherited) {
        struct children t = { 0 };
        struct conn_slot slot;          /* only its address is stored */
        unsigned char vec;
        int status;
        pid_t pid;

        ck_assert_int_eq(children_reserve(&t), 0);
        children_add(&t, 4242, &slot);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                void *page = (void *) ((uintptr_t) t.table & ~(uintptr_t) (sysconf(_SC_PAGESIZE) - 1));

                /* ENOMEM: not mapped in this process. */
                _exit(mincore(page, 1, &vec) < 0 && errno == ENOMEM ? 0 : 1);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
        /* The parent's table is whole, and grows. */
        for (pid_t p = 1; p <= 100; p++) {
                ck_assert_int_eq(children_reserve(&t), 0);
                children_add(&t, 10000 + p, NULL);
        }
        ck_assert_uint_eq(t.n, 101);
        ck_assert_int_eq(children_reserve(&t), 0);
        ck_assert_ptr_eq(children_remove(&t, 4242), &slot);
        ck_assert_uint_eq(t.n, 100);
        children_free(&t);
}
END_TEST

#ifndef __SANITIZE_ADDRESS__    /* its allocator maps memory of its own */
/* The process's private writable memory, as RLIMIT_DATA counts it (KiB). */
static long vm_data_kib(void) {
        FILE *f = fopen("/proc/self/status", "re");
        char line[128];
        long kib = -1;

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmData: %ld kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}
#endif

/* A forked worker serves its connection from static buffers: with no
 * memory left to allocate (RLIMIT_DATA at what the process has), it still
 * answers, and ends on EOF. */
START_TEST(test_forked_worker_needs_no_allocation) {
        struct shared *sh = NULL;
        struct conn_slot *slot;
        int c[2], status;
        pid_t pid;

        ck_assert_int_eq(shared_new(4, &sh), 0);
        atomic_store(&sh->live.max_connections, 4);
        slot = slot_for(sh, 1000);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c), 0);
        ck_assert_int_eq(fcntl(c[1], F_SETFL, O_NONBLOCK), 0);
        ck_assert_int_eq(write(c[0], "ciao\n", 5), 5);
        ck_assert_int_eq(shutdown(c[0], SHUT_WR), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
#ifndef __SANITIZE_ADDRESS__    /* its allocator maps memory of its own */
                long kib;

                malloc_trim(0);
                kib = vm_data_kib();
                if (kib <= 0 || setrlimit(RLIMIT_DATA, &(struct rlimit) { kib * 1024, RLIM_INFINITY }) < 0 ||
                    malloc(256 * 1024) != NULL)
                        _exit(100);     /* the limit would not hold */
#endif
                close(c[0]);
                _exit(tcp_serve_blocking_forked(sh, slot, c[1], NULL));
        }
        close(c[1]);
        expect_reply(c[0], "CIAO\n");
        expect_eof(c[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), CLOSE_EOF);
        ck_assert_int_eq(atomic_load(&slot->close_reason), CLOSE_EOF);
        ck_assert_uint_eq(atomic_load(&slot->bytes_out), 5);
        close(c[0]);
        shared_free(sh);
}
END_TEST

Suite *fork_helper_suite(void) {
        Suite *s = suite_create("fork-helper");
        TCase *tc = tcase_create("helper");

        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, test_helper_serves_batch);
        tcase_add_test(tc, test_helper_reports_killed);
        tcase_add_test(tc, test_helper_drops_malformed);
        tcase_add_test(tc, test_helper_socket_full_and_gone);
        tcase_add_test(tc, test_shared_map);
        tcase_add_test(tc, test_children_table_not_inherited);
        tcase_add_test(tc, test_forked_worker_needs_no_allocation);
        suite_add_tcase(s, tc);
        return s;
}
