/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "handover.h"
#include "shared.h"
#include "suites.h"
#include "textbuf.h"

static struct handover_conn sample_v4(void) {
        static const uint8_t pending[] = "PENDING REPLY\n";
        struct handover_conn c = {
                .id = 42,
                .start_realtime_usec = 1700000000000000ULL,
                .start_usec = 123456789,
                .bytes_in = 1000,
                .bytes_out = 998,
                .pending = pending,
                .pending_len = sizeof(pending) - 1,
        };

        c.peer.in.sin_family = AF_INET;
        c.peer.in.sin_port = htons(40512);
        inet_pton(AF_INET, "192.0.2.7", &c.peer.in.sin_addr);
        /* Behind a balancer that sent a PROXY header. */
        c.via.in.sin_family = AF_INET;
        c.via.in.sin_port = htons(55000);
        inet_pton(AF_INET, "10.0.0.5", &c.via.in.sin_addr);
        upcase_init(&c.up, true);
        c.up.tail[0] = 0xc3;            /* the first byte of "é" */
        c.up.ntail = 1;
        return c;
}

static struct handover_conn sample_v6(void) {
        struct handover_conn c = { .id = 7, .bytes_in = 3 };

        c.peer.in6.sin6_family = AF_INET6;
        c.peer.in6.sin6_port = htons(1234);
        inet_pton(AF_INET6, "2001:db8::1", &c.peer.in6.sin6_addr);
        upcase_init(&c.up, true);
        c.up.line = 2;                  /* a "." held back at a line start */
        return c;
}

static void encode(struct textbuf *b, const struct handover_conn *cs, size_t n) {
        textbuf_init(b, 1 << 20);
        handover_encode_header(b);
        for (size_t i = 0; i < n; i++)
                handover_encode(b, &cs[i]);
        ck_assert(!b->overflow);
}

static void assert_same(const struct handover_conn *a, const struct handover_conn *b) {
        ck_assert_uint_eq(a->id, b->id);
        ck_assert_int_eq(a->peer.sa.sa_family, b->peer.sa.sa_family);
        ck_assert_mem_eq(&a->peer, &b->peer, a->peer.sa.sa_family == AF_INET ?
                         sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        ck_assert_int_eq(a->via.sa.sa_family, b->via.sa.sa_family);
        if (a->via.sa.sa_family != AF_UNSPEC)
                ck_assert_mem_eq(&a->via, &b->via, a->via.sa.sa_family == AF_INET ?
                                 sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        ck_assert_int_eq(a->health_check, b->health_check);
        ck_assert_uint_eq(a->start_realtime_usec, b->start_realtime_usec);
        ck_assert_uint_eq(a->start_usec, b->start_usec);
        ck_assert_uint_eq(a->bytes_in, b->bytes_in);
        ck_assert_uint_eq(a->bytes_out, b->bytes_out);
        ck_assert_uint_eq(a->up.ntail, b->up.ntail);
        ck_assert_mem_eq(a->up.tail, b->up.tail, a->up.ntail);
        ck_assert_uint_eq(a->up.line, b->up.line);
        ck_assert_int_eq(a->up.dot_quit, b->up.dot_quit);
        ck_assert_int_eq(a->up.quit, b->up.quit);
        ck_assert_uint_eq(a->pending_len, b->pending_len);
        if (a->pending_len)
                ck_assert_mem_eq(a->pending, b->pending, a->pending_len);
}

START_TEST(test_roundtrip) {
        struct handover_conn in[2] = { sample_v4(), sample_v6() }, out;
        struct textbuf b;
        size_t off;

        encode(&b, in, 2);
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), HANDOVER_VERSION);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &out), 1);
                assert_same(&in[i], &out);
        }
        ck_assert_ptr_null(out.pending);         /* none: NULL, not a pointer past the end */
        ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &out), 0);
        ck_assert_uint_eq(off, b.len);
        textbuf_free(&b);
}
END_TEST

/* A health check's flag travels too. */
START_TEST(test_roundtrip_health_check) {
        struct handover_conn in = sample_v6(), out;
        struct textbuf b;
        size_t off;

        in.health_check = true;
        encode(&b, &in, 1);
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), HANDOVER_VERSION);
        ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &out), 1);
        assert_same(&in, &out);
        textbuf_free(&b);
}
END_TEST

/* The state of the version before (no balancer: a layout-2 record of a
 * direct connection less its empty "via") is read, so an upgrade from it
 * keeps the connections' state. */
START_TEST(test_version1_still_read) {
        struct handover_conn in = sample_v6(), out;
        size_t via_at = 8 + 8 + 1 + sizeof(struct sockaddr_in6), off;
        struct textbuf b;

        encode(&b, &in, 1);
        ck_assert_uint_eq((uint8_t) b.data[via_at], 0);
        memmove(b.data + via_at, b.data + via_at + 1, b.len - via_at - 1);
        b.len--;
        b.data[7] = '1';
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), 1);
        ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, 1, &off, &out), 1);
        assert_same(&in, &out);
        ck_assert_uint_eq(off, b.len);
        /* A later layout is not guessed at. */
        b.data[7] = '3';
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), -EBADMSG);
        textbuf_free(&b);
}
END_TEST

START_TEST(test_truncated_everywhere) {
        struct handover_conn in = sample_v4(), out;
        struct textbuf b;
        size_t start, off;

        encode(&b, &in, 1);
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &start), HANDOVER_VERSION);
        /* Every cut inside the record is refused, never read past. */
        for (size_t len = start + 1; len < b.len; len++) {
                uint8_t *copy = malloc(len);

                memcpy(copy, b.data, len);
                off = start;
                ck_assert_int_eq(handover_decode(copy, len, HANDOVER_VERSION, &off, &out), -EBADMSG);
                ck_assert_uint_eq(off, start);
                free(copy);
        }
        for (size_t len = 0; len < start; len++)
                ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, len, &off), -EBADMSG);
        textbuf_free(&b);
}
END_TEST

/* Encodes c after apply() changed it and expects the decoder to refuse. */
static void assert_refused(void (*apply)(struct handover_conn *c)) {
        struct handover_conn c = sample_v4(), out;
        struct textbuf b;
        size_t off;

        apply(&c);
        encode(&b, &c, 1);
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), HANDOVER_VERSION);
        ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &out), -EBADMSG);
        textbuf_free(&b);
}

static void zero_id(struct handover_conn *c) { c->id = 0; }
static void bad_family(struct handover_conn *c) { c->peer.sa.sa_family = AF_UNIX; }
static void long_tail(struct handover_conn *c) { c->up.ntail = 4; }
static void complete_tail(struct handover_conn *c) { c->up.tail[0] = 'a'; }
static void invalid_tail(struct handover_conn *c) { c->up.tail[0] = 0xff; }
static void bad_line(struct handover_conn *c) { c->up.line = 9; }
static void line_without_dot_quit(struct handover_conn *c) { c->up.dot_quit = false; c->up.line = 2; }
static void huge_pending(struct handover_conn *c) {
        static uint8_t big[HANDOVER_PENDING_MAX + 1];

        c->pending = big;
        c->pending_len = sizeof(big);
}

START_TEST(test_inconsistent_records) {
        assert_refused(zero_id);
        assert_refused(bad_family);
        assert_refused(long_tail);
        assert_refused(complete_tail);
        assert_refused(invalid_tail);
        assert_refused(bad_line);
        assert_refused(line_without_dot_quit);
        assert_refused(huge_pending);
}
END_TEST

START_TEST(test_bad_header_and_flags) {
        struct handover_conn c = sample_v6(), out;
        struct textbuf b;
        size_t off;

        encode(&b, &c, 1);
        b.data[b.len - 5] = (char) 0x80;        /* unknown flag bits */
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), HANDOVER_VERSION);
        ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &out), -EBADMSG);
        b.data[7] = '0' + HANDOVER_VERSION + 1; /* a version this build does not know */
        ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), -EBADMSG);
        textbuf_free(&b);
}
END_TEST

/* The stream is the same whether or not it was handed over in the middle:
 * feed a prefix, carry the state through the encoding, feed the rest. */
START_TEST(test_transform_continues_across_handover) {
        static const char text[] = "perché\r\n.\rx\n.a\nstraße ΐ\n.\n";
        size_t n = sizeof(text) - 1;
        uint8_t whole[UPCASE_OUT_MAX(sizeof(text))];
        struct upcase u;
        size_t whole_len;

        upcase_init(&u, true);
        whole_len = upcase_feed(&u, (const uint8_t *) text, n, false, whole, NULL);
        for (size_t cut = 0; cut <= n; cut++) {
                uint8_t out[UPCASE_OUT_MAX(sizeof(text))];
                struct handover_conn c = sample_v4(), back;
                struct textbuf b;
                size_t len, off;

                upcase_init(&c.up, true);
                len = upcase_feed(&c.up, (const uint8_t *) text, cut, false, out, NULL);
                encode(&b, &c, 1);
                ck_assert_int_eq(handover_decode_header((uint8_t *) b.data, b.len, &off), HANDOVER_VERSION);
                ck_assert_int_eq(handover_decode((uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &back), 1);
                len += upcase_feed(&back.up, (const uint8_t *) text + cut, n - cut, false, out + len, NULL);
                ck_assert_uint_eq(len, whole_len);
                ck_assert_mem_eq(out, whole, len);
                ck_assert_int_eq(back.up.quit, u.quit);
                textbuf_free(&b);
        }
}
END_TEST

START_TEST(test_conn_names) {
        ck_assert_uint_eq(handover_conn_name_id("conn-1"), 1);
        ck_assert_uint_eq(handover_conn_name_id("conn-18446744073709551615"), UINT64_MAX);
        ck_assert_uint_eq(handover_conn_name_id("conn-18446744073709551616"), 0);
        ck_assert_uint_eq(handover_conn_name_id("conn-0"), 0);
        ck_assert_uint_eq(handover_conn_name_id("conn-01"), 0);
        ck_assert_uint_eq(handover_conn_name_id("conn-"), 0);
        ck_assert_uint_eq(handover_conn_name_id("conn-5x"), 0);
        ck_assert_uint_eq(handover_conn_name_id("conn--5"), 0);
        ck_assert_uint_eq(handover_conn_name_id("connection"), 0);
        ck_assert_uint_eq(handover_conn_name_id("state"), 0);
        ck_assert_uint_eq(handover_conn_name_id(""), 0);
}
END_TEST

static int memfd_of(const void *data, size_t len) {
        int fd = memfd_create("test", MFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, data, len), (ssize_t) len);
        return fd;
}

START_TEST(test_state_load_and_find) {
        struct handover_conn in[3] = { sample_v4(), sample_v6(), sample_v6() };
        struct handover_state st;
        struct textbuf b;

        in[2].id = 3;                   /* stored out of order: 42, 7, 3 */
        encode(&b, in, 3);
        ck_assert_int_eq(handover_state_load(memfd_of(b.data, b.len), &st), 0);
        ck_assert_uint_eq(st.n, 3);
        for (int i = 0; i < 3; i++) {
                const struct handover_conn *found = handover_state_find(&st, in[i].id);

                ck_assert_ptr_nonnull(found);
                assert_same(&in[i], found);
        }
        ck_assert_ptr_null(handover_state_find(&st, 8));
        handover_state_free(&st);

        ck_assert_int_eq(handover_state_load(memfd_of("garbage!", 8), &st), -EBADMSG);
        ck_assert_ptr_null(st.buf);
        ck_assert_int_eq(handover_state_load(memfd_of("", 0), &st), -EBADMSG);
        /* A good header, then a broken record: the whole state is refused. */
        b.len -= 3;
        ck_assert_int_eq(handover_state_load(memfd_of(b.data, b.len), &st), -EBADMSG);
        textbuf_free(&b);
        memset(&st, 0, sizeof(st));
        ck_assert_ptr_null(handover_state_find(&st, 1));
}
END_TEST

START_TEST(test_init_from_environment) {
        struct handover h;

        unsetenv("NOTIFY_SOCKET");
        setenv("FDSTORE", "1025", 1);
        handover_init(&h);
        ck_assert(!h.enabled);          /* no one to store with */
        handover_done(&h);

        setenv("NOTIFY_SOCKET", "/run/nothing", 1);
        handover_init(&h);
        ck_assert(h.enabled);
        ck_assert_uint_eq(h.max, 1024);
        handover_done(&h);

        static const char *const bad[] = { "1", "0", "", "abc", "12x", "-5", "99999999999" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                setenv("FDSTORE", bad[i], 1);
                handover_init(&h);
                ck_assert_msg(!h.enabled, "FDSTORE=%s", bad[i]);
                handover_done(&h);
        }
        unsetenv("FDSTORE");
        unsetenv("NOTIFY_SOCKET");
}
END_TEST

/* A stand-in for systemd's end of NOTIFY_SOCKET: keeps the messages and
 * the descriptors that come with them, and answers barriers. */
struct fake_manager {
        int fd;
        char path[108];
        char messages[8][128];
        int fds[8];
        int n;
        pthread_t thread;
};

static int receive_one(struct fake_manager *m) {
        char data[128] = "", control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { data, sizeof(data) - 1 };
        struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                              .msg_control = control, .msg_controllen = sizeof(control) };
        struct cmsghdr *cm;
        int fd = -1;

        if (recvmsg(m->fd, &msg, MSG_CMSG_CLOEXEC) < 0)
                return -1;
        cm = CMSG_FIRSTHDR(&msg);
        if (cm && cm->cmsg_type == SCM_RIGHTS)
                memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
        if (strncmp(data, "BARRIER=1", 9) == 0) {
                close(fd);
                return 1;
        }
        snprintf(m->messages[m->n], sizeof(m->messages[0]), "%s", data);
        m->fds[m->n++] = fd;
        return m->n < 8;
}

static void *manager_run(void *userdata) {
        struct fake_manager *m = userdata;

        while (receive_one(m) > 0)
                if (m->n > 0 && strstr(m->messages[m->n - 1], "FDNAME=state"))
                        break;
        /* The barrier after the state. */
        receive_one(m);
        return NULL;
}

static void manager_start(struct fake_manager *m) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        memset(m, 0, sizeof(*m));
        snprintf(m->path, sizeof(m->path), "/tmp/upc-notify-%d", (int) getpid());
        unlink(m->path);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->path);
        m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_eq(bind(m->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        setenv("NOTIFY_SOCKET", m->path, 1);
        pthread_create(&m->thread, NULL, manager_run, m);
}

START_TEST(test_store_conns_and_state) {
        struct handover_conn c1 = sample_v4(), c2 = sample_v6(), back;
        struct fake_manager m;
        struct handover h;
        struct handover_state st;
        int sv[2];

        manager_start(&m);
        setenv("FDSTORE", "3", 1);      /* two connections and the state */
        handover_init(&h);
        ck_assert(h.enabled);
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(handover_store_conn(&h, sv[0], &c1), 0);
        ck_assert_int_eq(handover_store_conn(&h, sv[0], &c2), 0);
        ck_assert_int_eq(handover_store_conn(&h, sv[0], &c1), -ENOSPC);
        ck_assert_uint_eq(h.stored, 2);
        ck_assert_int_ge(handover_store_state(&h), 0);
        pthread_join(m.thread, NULL);

        ck_assert_int_eq(m.n, 3);
        ck_assert_str_eq(m.messages[0], "FDSTORE=1\nFDNAME=conn-42");
        ck_assert_str_eq(m.messages[1], "FDSTORE=1\nFDNAME=conn-7");
        ck_assert_str_eq(m.messages[2], "FDSTORE=1\nFDNAME=state");
        ck_assert_int_ge(m.fds[0], 0);
        /* The descriptor that arrived is the connection itself. */
        ck_assert_int_eq(write(m.fds[0], "x", 1), 1);
        ck_assert_int_eq(read(sv[1], (char[1]) { 0 }, 1), 1);
        /* The state holds exactly the two stored records. */
        ck_assert_int_eq(handover_state_load(m.fds[2], &st), 0);
        ck_assert_uint_eq(st.n, 2);
        back = *handover_state_find(&st, 42);
        assert_same(&c1, &back);
        handover_state_free(&st);

        close(m.fds[0]);
        close(m.fds[1]);
        close(sv[0]);
        close(sv[1]);
        close(m.fd);
        unlink(m.path);
        handover_done(&h);
        unsetenv("FDSTORE");
        unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_slot_resume) {
        struct shared *sh;
        struct handover_conn rec = sample_v4();
        struct conn_origin origin = { .peer = rec.peer, .via = rec.via };
        union sockaddr_union peer = rec.peer;
        struct conn_slot *a, *b;

        ck_assert_int_eq(shared_new(4, &sh), 0);
        atomic_store(&sh->live.max_connections, 2);
        a = conn_slot_resume(sh, 500, &origin, 11, 22, 33, 44, NULL);
        ck_assert_ptr_nonnull(a);
        ck_assert_uint_eq(atomic_load(&a->id), 500);
        ck_assert_uint_eq(a->start_realtime_usec, 11);
        ck_assert_uint_eq(a->start_usec, 22);
        ck_assert_uint_eq(atomic_load(&a->bytes_in), 33);
        ck_assert_uint_eq(atomic_load(&a->bytes_out), 44);
        ck_assert_mem_eq(&a->via, &rec.via, sizeof(struct sockaddr_in));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_resumed), 1);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_accepted), 0);
        /* New connections are numbered after the resumed ones. */
        b = conn_slot_take(sh, &peer, NULL);
        ck_assert_uint_eq(atomic_load(&b->id), 501);
        ck_assert_ptr_null(conn_slot_resume(sh, 9, &origin, 0, 0, 0, 0, NULL));
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_rejected), 1);
        atomic_store(&a->close_reason, CLOSE_HANDOVER);
        conn_slot_release(sh, a);
        ck_assert_uint_eq(atomic_load(&sh->c.tcp_closed[CLOSE_HANDOVER]), 1);
        ck_assert_str_eq(close_reason_to_string(CLOSE_HANDOVER), "handover");
        shared_free(sh);
}
END_TEST

Suite *handover_suite(void) {
        Suite *s = suite_create("handover");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_roundtrip);
        tcase_add_test(tc, test_roundtrip_health_check);
        tcase_add_test(tc, test_version1_still_read);
        tcase_add_test(tc, test_truncated_everywhere);
        tcase_add_test(tc, test_inconsistent_records);
        tcase_add_test(tc, test_bad_header_and_flags);
        tcase_add_test(tc, test_transform_continues_across_handover);
        tcase_add_test(tc, test_conn_names);
        tcase_add_test(tc, test_state_load_and_find);
        tcase_add_test(tc, test_init_from_environment);
        tcase_add_test(tc, test_store_conns_and_state);
        tcase_add_test(tc, test_slot_resume);
        suite_add_tcase(s, tc);
        return s;
}
