/* SPDX-License-Identifier: MIT */
/* Unit tests of a connection's life (daemon/conn.c): the accept loop and
 * admission, the close and its accounting, a resumed connection, and the
 * decision a stopping connection follows (drain_next()).  Real sockets on
 * loopback stand in for clients; a fake model takes what is admitted. */

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "handover.h"
#include "proxy-wait.h"
#include "log.h"
#include "suites.h"

/* ---- drain_next(): the stop's decision ---- */

struct drain_case {
        struct drain_view v;
        enum drain_step want;
        const char *what;
};

#define V(...) ((struct drain_view) { __VA_ARGS__ })

static const struct drain_case drain_cases[] = {
        /* A plain stop (no store). */
        { V(.received = true), DRAIN_CLOSE, "nothing owed: close" },
        { V(.received = true, .input_waiting = true), DRAIN_ANSWER, "input waiting: answer it" },
        { V(.received = true, .replies_pending = true, .input_waiting = true), DRAIN_FLUSH,
          "replies first, then the input" },
        { V(.received = false), DRAIN_WAIT_REQUEST, "nothing received: wait for a first request" },
        { V(.received = false, .grace_over = true), DRAIN_CLOSE, "the grace is over: close" },
        { V(.received = false, .input_waiting = true), DRAIN_ANSWER, "a first request arrived" },
        { V(.ended = true, .input_waiting = true, .received = true), DRAIN_CLOSE,
          "after \".\" or EOF the input is not answered" },
        { V(.ended = true, .replies_pending = true, .received = true), DRAIN_FLUSH,
          "ended: its replies are still delivered" },
        { V(.wait_over = true, .replies_pending = true, .received = true), DRAIN_FLUSH,
          "no store: the wait does not matter" },
        /* A restart (a store). */
        { V(.handover = true, .received = true), DRAIN_HAND_OVER, "nothing owed: goes on at once" },
        { V(.handover = true, .received = true, .input_waiting = true), DRAIN_ANSWER,
          "input first, within the wait" },
        { V(.handover = true, .received = true, .replies_pending = true), DRAIN_FLUSH,
          "replies first, within the wait" },
        { V(.handover = true, .received = true, .replies_pending = true, .wait_over = true), DRAIN_HAND_OVER,
          "past the wait, the replies travel" },
        { V(.handover = true, .received = true, .input_waiting = true, .wait_over = true), DRAIN_HAND_OVER,
          "past the wait, the input travels" },
        { V(.handover = true, .received = false), DRAIN_WAIT_REQUEST, "a first request may be in flight" },
        { V(.handover = true, .received = false, .grace_over = true), DRAIN_HAND_OVER,
          "no first request: the next instance waits for it" },
        { V(.handover = true, .ended = true, .received = true), DRAIN_CLOSE, "ended, nothing owed: close" },
        { V(.handover = true, .ended = true, .received = true, .wait_over = true), DRAIN_CLOSE,
          "ended, nothing owed: close, also past the wait" },
        { V(.handover = true, .ended = true, .replies_pending = true, .wait_over = true), DRAIN_HAND_OVER,
          "ended with replies owed: they travel" },
};

START_TEST(test_drain_next) {
        const struct drain_case *c = &drain_cases[_i];

        ck_assert_msg(drain_next(&c->v) == c->want, "%s: got %d, want %d", c->what, drain_next(&c->v), c->want);
}
END_TEST

/* ---- a loopback listener and its clients ---- */

static int listener(uint16_t *port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 64), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        *port = ntohs(sa.sin_port);
        return fd;
}

static int client(uint16_t port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_eq(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* Whether the server closed the client's connection (EOF or reset). */
static bool closed_by_server(int fd) {
        char c;
        struct timeval tv = { 2, 0 };

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return recv(fd, &c, 1, 0) <= 0;
}

/* A model that keeps what it is given. */
struct fake_model {
        int fds[64];
        struct conn_slot *slots[64];
        unsigned n;
        unsigned busy;                  /* its workers, for max_workers */
};

static void fake_start(void *userdata, int fd, struct conn_slot *slot) {
        struct fake_model *m = userdata;

        ck_assert_uint_lt(m->n, 64);
        m->fds[m->n] = fd;
        m->slots[m->n++] = slot;
}

static unsigned fake_workers(void *userdata) {
        return ((struct fake_model *) userdata)->busy;
}

static struct shared *shared_for_test(unsigned max_connections) {
        struct shared *sh;

        ck_assert_int_eq(shared_new(64, &sh), 0);
        atomic_store(&sh->live.max_connections, max_connections);
        atomic_store(&sh->live.max_workers, 1024);
        /* The client entries would go to the test's stderr. */
        log_set_client_limits(false, 0, 1);
        return sh;
}

/* Admitted connections go to the model with a slot, non-blocking; the
 * accept loop takes what is waiting and stops when nothing is. */
START_TEST(test_accept_admits) {
        struct shared *sh = shared_for_test(16);
        struct fake_model m = {};
        struct conn_admission a = { .shared = sh, .start = fake_start, .userdata = &m };
        uint16_t port;
        int lfd = listener(&port), c[3];

        for (int i = 0; i < 3; i++)
                c[i] = client(port);
        ck_assert_int_eq(conn_accept(&a, lfd), 0);
        ck_assert_uint_eq(m.n, 3);
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 3);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_accepted), 3);
        for (unsigned i = 0; i < m.n; i++) {
                ck_assert(fcntl(m.fds[i], F_GETFL) & O_NONBLOCK);
                ck_assert_uint_ne(atomic_load(&m.slots[i]->id), 0);
        }
        /* Nothing waiting: 0, and nothing more admitted. */
        ck_assert_int_eq(conn_accept(&a, lfd), 0);
        ck_assert_uint_eq(m.n, 3);

        /* The close: counted by its reason, slot released. */
        close(m.fds[0]);
        conn_end(sh, m.slots[0], CLOSE_QUIT);
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 2);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_QUIT]), 1);
        ck_assert_uint_eq(atomic_load(&m.slots[0]->id), 0);
        ck_assert(closed_by_server(c[0]));
        for (int i = 0; i < 3; i++)
                close(c[i]);
        for (unsigned i = 1; i < m.n; i++)
                close(m.fds[i]);
        close(lfd);
        shared_free(sh);
}
END_TEST

/* Over max_connections, or over max_workers: closed at once, counted,
 * never given to the model. */
START_TEST(test_accept_refuses) {
        struct shared *sh = shared_for_test(1);
        struct fake_model m = { .busy = 0 };
        struct conn_admission a = { .shared = sh, .workers = fake_workers, .start = fake_start, .userdata = &m };
        uint16_t port;
        int lfd = listener(&port), c1 = client(port), c2 = client(port), c3;

        ck_assert_int_eq(conn_accept(&a, lfd), 0);
        ck_assert_uint_eq(m.n, 1);
        ck_assert(closed_by_server(c2));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 1);

        /* Room for connections, not for workers. */
        atomic_store(&sh->live.max_connections, 16);
        atomic_store(&sh->live.max_workers, 2);
        m.busy = 2;
        c3 = client(port);
        ck_assert_int_eq(conn_accept(&a, lfd), 0);
        ck_assert_uint_eq(m.n, 1);
        ck_assert(closed_by_server(c3));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 2);
        ck_assert_uint_eq(atomic_load(&sh->tcp_active), 1);
        close(c1);
        close(c2);
        close(c3);
        close(m.fds[0]);
        close(lfd);
        shared_free(sh);
}
END_TEST

/* The descriptor budget full: accepting pauses (ENOSPC), the connection
 * waits in the backlog and is taken once there is room. */
START_TEST(test_accept_budget) {
        struct shared *sh = shared_for_test(16);
        struct fake_model m = {};
        struct conn_admission a = { .shared = sh, .start = fake_start, .userdata = &m };
        uint16_t port;
        int lfd = listener(&port), c = client(port);

        atomic_store(&sh->live.conn_fd_cap, 0);
        ck_assert_int_eq(conn_accept(&a, lfd), ENOSPC);
        ck_assert_uint_eq(m.n, 0);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 0);
        /* Room for one: taken, then full again. */
        atomic_store(&sh->live.conn_fd_cap, 1);
        ck_assert_int_eq(conn_accept(&a, lfd), ENOSPC);
        ck_assert_uint_eq(m.n, 1);
        close(c);
        close(m.fds[0]);
        close(lfd);
        shared_free(sh);
}
END_TEST

/* Out of descriptors in accept() itself: the errno to pause for. */
START_TEST(test_accept_emfile) {
        struct shared *sh = shared_for_test(16);
        struct fake_model m = {};
        struct conn_admission a = { .shared = sh, .start = fake_start, .userdata = &m };
        struct rlimit rl, saved;
        uint16_t port;
        int lfd = listener(&port), c = client(port), filler[64], n = 0, r;

        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
        rl = saved;
        rl.rlim_cur = (rlim_t) (lfd > c ? lfd : c) + 1;
        /* Every descriptor below the limit taken: the next fails. */
        for (int fd = 0; fd < (int) rl.rlim_cur && n < 64; fd++)
                if (fcntl(fd, F_GETFD) < 0)
                        ck_assert_int_ge(filler[n++] = dup(0), 0);
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
        r = conn_accept(&a, lfd);
        /* Descriptors back, so that what follows (LeakSanitizer reads
         * /proc at exit) has some. */
        ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
        while (n > 0)
                close(filler[--n]);
        ck_assert_int_eq(r, EMFILE);
        ck_assert_uint_eq(m.n, 0);
        ck_assert(accept_error_pauses(EMFILE) && !accept_error_pauses(EAGAIN));
        close(c);
        close(lfd);
        shared_free(sh);
}
END_TEST

/* A connection handed over is admitted under its id and counters,
 * counted as resumed; without its state, under its id afresh. */
START_TEST(test_resume) {
        struct shared *sh = shared_for_test(16);
        struct handover_conn rec = { .id = 77, .start_realtime_usec = 5, .start_usec = 6,
                                     .bytes_in = 10, .bytes_out = 12 };
        struct conn_slot *slot;
        int sv[2], lone;

        rec.peer.in = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(4242) };
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        slot = conn_resume(sh, sv[0], 77, &rec);
        ck_assert_ptr_nonnull(slot);
        ck_assert_uint_eq(atomic_load(&slot->id), 77);
        ck_assert_uint_eq(atomic_load(&slot->bytes_in), 10);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_resumed), 1);
        conn_end(sh, slot, CLOSE_HANDOVER);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_HANDOVER]), 1);
        /* No state: its address from the socket; none, not resumed. */
        lone = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_ptr_null(conn_resume(sh, lone, 78, NULL));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_resumed), 1);
        close(lone);
        close(sv[0]);
        close(sv[1]);
        shared_free(sh);
}
END_TEST

/* A proxied listener: the trusted peer's connection waits for its header,
 * is admitted as the client it names with the bytes after the header left
 * for the model, a health check as itself; an untrusted peer, a plain
 * client and a silent one are closed unanswered and counted. */
START_TEST(test_accept_proxied) {
        static const char v1[] = "PROXY TCP4 192.0.2.7 10.0.0.1 40512 12000\r\nciao\n";
        static const char local[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
        struct shared *sh = shared_for_test(16);
        struct fake_model m = {};
        struct conn_admission a = { .shared = sh, .start = fake_start, .userdata = &m };
        struct proxy_wait w;
        struct addr_prefix lo;
        uint16_t port;
        int lfd = listener(&port), c[4];
        char buf[16];
        uint64_t now;

        ck_assert_int_eq(proxy_wait_init(&w, &sh->proxy_waiting), 0);
        atomic_store(&sh->live.proxy_timeout_usec, 200 * USEC_PER_MSEC);
        /* Untrusted: closed at accept. */
        c[0] = client(port);
        ck_assert_int_eq(conn_accept_proxied(&a, &w, lfd), 0);
        ck_assert(closed_by_server(c[0]));
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_refused_untrusted), 1);

        ck_assert_int_eq(addr_prefix_parse("127.0.0.1", &lo), 0);
        shared_set_proxy_trusted(sh, &lo, 1);
        for (int i = 1; i < 4; i++)
                c[i] = client(port);
        ck_assert_int_eq(conn_accept_proxied(&a, &w, lfd), 0);
        ck_assert_uint_eq(atomic_load(&sh->proxy_waiting), 3);
        ck_assert_uint_eq(m.n, 0);
        ck_assert_int_eq(send(c[1], v1, strlen(v1), 0), (ssize_t) strlen(v1));
        ck_assert_int_eq(send(c[2], local, sizeof(local) - 1, 0), (ssize_t) sizeof(local) - 1);
        usleep(50 * 1000);
        now = now_usec_monotonic();
        conn_proxied_run(&a, &w, now);
        ck_assert_uint_eq(m.n, 2);
        ck_assert_uint_eq(atomic_load(&sh->proxy_waiting), 1);
        /* The client's bytes are still there for the model. */
        ck_assert_int_eq(recv(m.fds[0], buf, sizeof(buf), 0), 5);
        ck_assert(memcmp(buf, "ciao\n", 5) == 0);
        ck_assert_uint_eq(addr_port(&m.slots[0]->peer), 40512);
        ck_assert_int_eq(m.slots[0]->via.sa.sa_family, AF_INET);
        ck_assert(m.slots[1]->health_check);
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_v1), 1);
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_v2), 1);
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_health_checks), 1);

        /* The silent one: not before its time, then closed. */
        ck_assert_uint_le(conn_proxied_deadline(&a, &w), now + 200 * USEC_PER_MSEC);
        conn_proxied_run(&a, &w, conn_proxied_deadline(&a, &w) - 1);
        ck_assert_uint_eq(atomic_load(&sh->proxy_waiting), 1);
        conn_proxied_run(&a, &w, conn_proxied_deadline(&a, &w));
        ck_assert_uint_eq(atomic_load(&sh->proxy_waiting), 0);
        ck_assert(closed_by_server(c[3]));
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_refused_timeout), 1);
        ck_assert_uint_eq(conn_proxied_deadline(&a, &w), UINT64_MAX);

        /* A plain client: refused at its first byte. */
        close(c[0]);
        c[0] = client(port);
        ck_assert_int_eq(conn_accept_proxied(&a, &w, lfd), 0);
        ck_assert_int_eq(send(c[0], "CIAO\n", 5, 0), 5);
        usleep(50 * 1000);
        conn_proxied_run(&a, &w, now_usec_monotonic());
        ck_assert(closed_by_server(c[0]));
        ck_assert_uint_eq(atomic_load(&sh->c.proxy_refused_malformed), 1);
        ck_assert_uint_eq(m.n, 2);

        /* Those still waiting are closed with the set. */
        close(c[0]);
        c[0] = client(port);
        ck_assert_int_eq(conn_accept_proxied(&a, &w, lfd), 0);
        proxy_wait_done(&w);
        ck_assert_uint_eq(atomic_load(&sh->proxy_waiting), 0);
        ck_assert(closed_by_server(c[0]));
        proxy_wait_done(&w);

        for (unsigned i = 0; i < m.n; i++) {
                close(m.fds[i]);
                conn_end(sh, m.slots[i], CLOSE_EOF);
        }
        for (int i = 0; i < 4; i++)
                close(c[i]);
        close(lfd);
        shared_free(sh);
}
END_TEST

START_TEST(test_warning_due) {
        uint64_t last = 0;

        ck_assert(warning_due(&last, 1000));
        ck_assert(!warning_due(&last, 1000 + ACCEPT_WARN_USEC - 1));
        ck_assert(warning_due(&last, 1000 + ACCEPT_WARN_USEC));
        ck_assert_uint_eq(accept_pause(&last, 5000, EMFILE), 5000 + ACCEPT_PAUSE_USEC);
}
END_TEST

Suite *conn_suite(void) {
        Suite *s = suite_create("conn");
        TCase *tc = tcase_create("drain");

        tcase_add_loop_test(tc, test_drain_next, 0, (int) (sizeof(drain_cases) / sizeof(drain_cases[0])));
        suite_add_tcase(s, tc);
        tc = tcase_create("life");
        tcase_add_test(tc, test_accept_admits);
        tcase_add_test(tc, test_accept_refuses);
        tcase_add_test(tc, test_accept_budget);
        tcase_add_test(tc, test_accept_emfile);
        tcase_add_test(tc, test_resume);
        tcase_add_test(tc, test_warning_due);
        tcase_add_test(tc, test_accept_proxied);
        suite_add_tcase(s, tc);
        return s;
}
