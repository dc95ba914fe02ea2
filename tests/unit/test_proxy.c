/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy.h"
#include "suites.h"

/* What a client might send right after the header: more header-like bytes,
 * so that a parser reading past the header's end would be caught. */
static const char client_bytes[] = "\r\nPROXY UNKNOWN\r\nGET / HTTP/1.0\n\0\xff";

struct expect {
        uint8_t version;
        enum proxy_kind kind;
        int family;                     /* PROXY_CLIENT only */
        const char *src, *dst;
        uint16_t sport, dport;
};

static void assert_untouched(const struct proxy_header *h) {
        struct proxy_header sentinel;

        memset(&sentinel, 0xa5, sizeof(sentinel));
        ck_assert_mem_eq(h, &sentinel, sizeof(sentinel));
}

static ssize_t parse_fresh(const uint8_t *buf, size_t len, struct proxy_header *h) {
        memset(h, 0xa5, sizeof(*h));
        return proxy_parse(buf, len, h);
}

static void assert_addr(const union sockaddr_union *u, int family, const char *text, uint16_t port) {
        union sockaddr_union want;

        memset(&want, 0, sizeof(want));
        want.sa.sa_family = (sa_family_t) family;
        if (family == AF_INET) {
                want.in.sin_port = htons(port);
                ck_assert_int_eq(inet_pton(AF_INET, text, &want.in.sin_addr), 1);
        } else {
                want.in6.sin6_port = htons(port);
                ck_assert_int_eq(inet_pton(AF_INET6, text, &want.in6.sin6_addr), 1);
        }
        ck_assert_mem_eq(u, &want, sizeof(want));
}

/* hdr[0..n) is a whole header: every strict prefix is incomplete, the
 * whole is n however many client bytes follow, and the fields are e's. */
static void assert_valid(const uint8_t *hdr, size_t n, const struct expect *e) {
        uint8_t buf[PROXY_V2_FIXED + 1024];
        struct proxy_header h;

        ck_assert_uint_le(n + sizeof(client_bytes), sizeof(buf));
        memcpy(buf, hdr, n);
        memcpy(buf + n, client_bytes, sizeof(client_bytes));
        for (size_t k = 0; k < n; k++) {
                ck_assert_msg(parse_fresh(buf, k, &h) == 0, "prefix of %zu bytes of %zu", k, n);
                assert_untouched(&h);
        }
        for (size_t k = n; k <= n + sizeof(client_bytes); k++)
                ck_assert_int_eq(parse_fresh(buf, k, &h), (ssize_t) n);
        ck_assert_uint_eq(h.length, n);
        ck_assert_uint_eq(h.version, e->version);
        ck_assert_int_eq(h.kind, e->kind);
        if (e->kind == PROXY_CLIENT) {
                assert_addr(&h.src, e->family, e->src, e->sport);
                assert_addr(&h.dst, e->family, e->dst, e->dport);
        }
}

/* buf[0..n) is refused from its first at bytes on, and incomplete before. */
static void assert_bad_at(const uint8_t *buf, size_t n, size_t at) {
        struct proxy_header h;

        ck_assert_uint_le(at, n);
        for (size_t k = 0; k <= n; k++) {
                ck_assert_msg(parse_fresh(buf, k, &h) == (k < at ? 0 : -EBADMSG),
                              "%zu bytes of %zu, bad at %zu", k, n, at);
                assert_untouched(&h);
        }
}

/* v1 */

struct v1_case {
        const char *line;
        struct expect e;
};

#define V1_CLIENT(f, s, d, sp, dp) { 1, PROXY_CLIENT, f, s, d, sp, dp }
#define V1_LOCAL { 1, PROXY_LOCAL, 0, NULL, NULL, 0, 0 }
#define FFFF6 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"

static const struct v1_case v1_valid[] = {
        { "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
          V1_CLIENT(AF_INET, "192.168.0.1", "192.168.0.11", 56324, 443) },
        { "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
          V1_CLIENT(AF_INET, "255.255.255.255", "255.255.255.255", 65535, 65535) },
        { "PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
          V1_CLIENT(AF_INET, "0.0.0.0", "10.0.0.1", 0, 0) },
        { "PROXY TCP6 2001:db8::1 2001:db8::2 40512 12000\r\n",
          V1_CLIENT(AF_INET6, "2001:db8::1", "2001:db8::2", 40512, 12000) },
        /* The spec's longest TCP6 line, 104 bytes, in both cases. */
        { "PROXY TCP6 " FFFF6 " FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n",
          V1_CLIENT(AF_INET6, FFFF6, FFFF6, 65535, 65535) },
        { "PROXY TCP6 ::ffff:192.0.2.7 :: 1 9\r\n",
          V1_CLIENT(AF_INET6, "::ffff:192.0.2.7", "::", 1, 9) },
        { "PROXY TCP6 1:2:3:4:5:6:7:: ::2:3:4:5:6:7:8 10 20\r\n",
          V1_CLIENT(AF_INET6, "1:2:3:4:5:6:7:0", "0:2:3:4:5:6:7:8", 10, 20) },
        { "PROXY TCP6 1:2:3:4:5:6:1.2.3.4 0001:02:003::a:B 3 4\r\n",
          V1_CLIENT(AF_INET6, "1:2:3:4:5:6:102:304", "1:2:3::a:b", 3, 4) },
        { "PROXY UNKNOWN\r\n", V1_LOCAL },
        { "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", V1_LOCAL },
        { "PROXY UNKNOWN \x01\xff garbage \r\n", V1_LOCAL },
        /* The spec's worst case, exactly PROXY_V1_MAX bytes. */
        { "PROXY UNKNOWN " FFFF6 " " FFFF6 " 65535 65535\r\n", V1_LOCAL },
};

START_TEST(test_v1_valid) {
        const struct v1_case *c = &v1_valid[_i];

        assert_valid((const uint8_t *) c->line, strlen(c->line), &c->e);
}
END_TEST

START_TEST(test_v1_longest) {
        const char *line = v1_valid[sizeof(v1_valid) / sizeof(v1_valid[0]) - 1].line;

        ck_assert_uint_eq(strlen(line), PROXY_V1_MAX);
}
END_TEST

struct bad_case {
        const char *in;
        size_t n;
        size_t at;                      /* refused from this many bytes on */
};

#define BAD(s, at) { s, sizeof(s) - 1, at }

static const struct bad_case v1_bad[] = {
        BAD("CIAO\n", 1),
        BAD("GET / HTTP/1.1\r\n", 1),
        BAD("\n", 1),
        BAD("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 1),
        BAD("PROXy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 5),
        BAD("PROXY\r\n", 6),
        BAD("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", 7),
        BAD("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", 7),
        BAD("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", 10),
        BAD("PROXY TCP4\r\n", 11),
        BAD("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 12),
        BAD("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", 8),
        BAD("PROXY UNKNOWNX\r\n", 14),
        BAD("PROXY UNKNOWN\n", 14),
        BAD("PROXY UNKNOWN\r\r\n", 15),
        BAD("PROXY UNKNOWN foo\n", 18),
        BAD("PROXY UNKNOWN foo\rbar\r\n", 19),
        /* Addresses. */
        BAD("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", 20),
        BAD("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", 13),
        BAD("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", 19),
        BAD("PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", 19),
        BAD("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", 14),
        BAD("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", 17),
        BAD("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", 20),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8\r\n", 27),
        BAD("PROXY TCP4 ::1 ::1 1 2\r\n", 12),
        BAD("PROXY TCP4 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1 2\r\n", 12),
        BAD("PROXY TCP4 a.b.c.d 5.6.7.8 1 2\r\n", 12),
        BAD("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", 13),
        BAD("PROXY TCP6 12345:: ::1 1 2\r\n", 16),
        BAD("PROXY TCP6 1::2::3 ::1 1 2\r\n", 17),
        BAD("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", 27),
        BAD("PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n", 25),
        BAD("PROXY TCP6 ::1:2.3 ::1 1 2\r\n", 19),
        BAD("PROXY TCP6 ::g ::1 1 2\r\n", 14),
        BAD("PROXY TCP6 [::1] ::1 1 2\r\n", 12),
        /* Longer than any address: not copied past the field's buffer. */
        BAD("PROXY TCP6 1111111111111111111111111111111111111111111111111111111111 ::1 1 2\r\n", 16),
        /* Ports. */
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", 32),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n", 34),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", 29),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", 29),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", 28),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", 28),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", 29),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", 30),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", 30),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", 29),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", 31),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", 31),
        /* The line's end. */
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", 32),
        BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", 32),
        BAD("PROXY TCP4 1.2.3.4\0005.6.7.8 1 2\r\n", 19),
};

START_TEST(test_v1_bad) {
        const struct bad_case *c = &v1_bad[_i];

        assert_bad_at((const uint8_t *) c->in, c->n, c->at);
}
END_TEST

/* No CRLF within PROXY_V1_MAX bytes: refused once that many are there,
 * whatever they are. */
START_TEST(test_v1_too_long) {
        char line[PROXY_V1_MAX + 8];

        memset(line, 'x', sizeof(line));
        memcpy(line, "PROXY UNKNOWN ", 14);
        assert_bad_at((const uint8_t *) line, sizeof(line), PROXY_V1_MAX);
        /* One byte longer than the worst case: the CR is the 107th. */
        memcpy(line + PROXY_V1_MAX - 1, "\r\n", 2);
        assert_bad_at((const uint8_t *) line, PROXY_V1_MAX + 1, PROXY_V1_MAX);
        /* TCP6 with the longest texts inet_pton() takes: 115 bytes. */
        snprintf(line, sizeof(line), "PROXY TCP6 %s %s 1 2\r\n",
                 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
                 "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
        assert_bad_at((const uint8_t *) line, strlen(line), PROXY_V1_MAX);
}
END_TEST

/* A start of any address inet_pton() takes is taken as one: random
 * addresses, written by inet_ntop() (with "::" and dotted forms) and in
 * full, every prefix of the line incomplete, the whole right. */
START_TEST(test_v1_address_prefixes) {
        uint32_t seed = 12345;

        for (int i = 0; i < 400; i++) {
                uint8_t a[16];
                char text[INET6_ADDRSTRLEN], full[64], line[PROXY_V1_MAX + 1];
                struct expect e = V1_CLIENT(AF_INET6, text, full, 1, 2);
                int len;

                for (int j = 0; j < 8; j++) {
                        seed = seed * 1103515245 + 12345;
                        /* Runs of zero groups, for "::". */
                        a[2 * j] = (seed >> 28) % 3 == 0 ? 0 : (uint8_t) (seed >> 8);
                        a[2 * j + 1] = (seed >> 28) % 3 == 0 ? 0 : (uint8_t) (seed >> 16);
                }
                if (i % 4 == 0)
                        memcpy(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12);
                ck_assert_ptr_nonnull(inet_ntop(AF_INET6, a, text, sizeof(text)));
                snprintf(full, sizeof(full), "%x:%x:%x:%x:%x:%x:%d.%d.%d.%d",
                         a[0] << 8 | a[1], a[2] << 8 | a[3], a[4] << 8 | a[5], a[6] << 8 | a[7],
                         a[8] << 8 | a[9], a[10] << 8 | a[11], a[12], a[13], a[14], a[15]);
                len = snprintf(line, sizeof(line), "PROXY TCP6 %s %s 1 2\r\n", text, full);
                ck_assert_int_lt(len, (int) sizeof(line));
                assert_valid((const uint8_t *) line, (size_t) len, &e);

                e.family = AF_INET;
                ck_assert_ptr_nonnull(inet_ntop(AF_INET, a + 12, text, sizeof(text)));
                ck_assert_ptr_nonnull(inet_ntop(AF_INET, a, full, sizeof(full)));
                len = snprintf(line, sizeof(line), "PROXY TCP4 %s %s 1 2\r\n", text, full);
                assert_valid((const uint8_t *) line, (size_t) len, &e);
        }
}
END_TEST

/* v2 */

static const uint8_t signature[12] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 'Q', 'U', 'I', 'T', 0x0a,
};

/* Builds a v2 header: the signature, ver_cmd, fam, the length and body. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t n) {
        memcpy(out, signature, 12);
        out[12] = ver_cmd;
        out[13] = fam;
        out[14] = (uint8_t) (n >> 8);
        out[15] = (uint8_t) n;
        if (n > 0)
                memcpy(out + 16, body, n);
        return 16 + n;
}

/* 192.0.2.1:40512 -> 198.51.100.2:443 */
static const uint8_t body4[12] = { 192, 0, 2, 1, 198, 51, 100, 2, 0x9e, 0x40, 0x01, 0xbb };
/* 2001:db8::1:40512 -> 2001:db8::2:65535 */
static const uint8_t body6[36] = {
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        0x9e, 0x40, 0xff, 0xff,
};
/* NOOP "abc", an empty ALPN, a custom one of 300 bytes. */
static uint8_t tlvs[3 + 3 + 3 + 3 + 300] = {
        0x04, 0, 3, 'a', 'b', 'c', 0x01, 0, 0, 0xe0, 0x01, 0x2c,
};

static const struct expect v2_client4 = { 2, PROXY_CLIENT, AF_INET, "192.0.2.1", "198.51.100.2", 40512, 443 };
static const struct expect v2_client6 = { 2, PROXY_CLIENT, AF_INET6, "2001:db8::1", "2001:db8::2", 40512, 65535 };
static const struct expect v2_local = { 2, PROXY_LOCAL, 0, NULL, NULL, 0, 0 };

START_TEST(test_v2_tcp) {
        uint8_t hdr[PROXY_V2_FIXED + 512], body[400];

        assert_valid(hdr, v2(hdr, 0x21, 0x11, body4, sizeof(body4)), &v2_client4);
        assert_valid(hdr, v2(hdr, 0x21, 0x21, body6, sizeof(body6)), &v2_client6);

        memcpy(body, body4, sizeof(body4));
        memcpy(body + sizeof(body4), tlvs, sizeof(tlvs));
        assert_valid(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + sizeof(tlvs)), &v2_client4);
        memcpy(body, body6, sizeof(body6));
        memcpy(body + sizeof(body6), tlvs, sizeof(tlvs));
        assert_valid(hdr, v2(hdr, 0x21, 0x21, body, sizeof(body6) + sizeof(tlvs)), &v2_client6);
        /* One TLV, empty. */
        memcpy(body + sizeof(body6), tlvs + 6, 3);
        assert_valid(hdr, v2(hdr, 0x21, 0x21, body, sizeof(body6) + 3), &v2_client6);
}
END_TEST

/* LOCAL, and PROXY of the families the daemon does not take a client
 * from (any family 0..3 with any transport 0..2 but TCP over IPv4 and
 * IPv6): the connection's own addresses apply.  LOCAL's family byte is not
 * looked at: the spec has the receiver discard it with the addresses. */
START_TEST(test_v2_local) {
        static const uint8_t families[] = {
                0x00, 0x12, 0x22, 0x31, 0x32, 0x01, 0x02, 0x10, 0x20, 0x30,
        };
        uint8_t hdr[PROXY_V2_FIXED + 512], body[216 + 12];

        memset(body, 0x5a, sizeof(body));
        assert_valid(hdr, v2(hdr, 0x20, 0x00, NULL, 0), &v2_local);
        assert_valid(hdr, v2(hdr, 0x20, 0x11, body4, sizeof(body4)), &v2_local);
        assert_valid(hdr, v2(hdr, 0x20, 0x21, body, 3), &v2_local);
        assert_valid(hdr, v2(hdr, 0x20, 0xff, body, 5), &v2_local);
        assert_valid(hdr, v2(hdr, 0x21, 0x00, NULL, 0), &v2_local);
        for (size_t i = 0; i < sizeof(families); i++) {
                /* Their address blocks and TLVs, whatever they hold. */
                assert_valid(hdr, v2(hdr, 0x21, families[i], body, sizeof(body)), &v2_local);
                assert_valid(hdr, v2(hdr, 0x21, families[i], body, 1), &v2_local);
        }
}
END_TEST

START_TEST(test_v2_longest) {
        static uint8_t hdr[PROXY_V2_MAX + 1], body[PROXY_V2_MAX];
        struct proxy_header h;

        memset(body, 0, sizeof(body));
        ck_assert_uint_eq(v2(hdr, 0x20, 0x00, body, 65535), PROXY_HEADER_MAX);
        ck_assert_int_eq(parse_fresh(hdr, PROXY_HEADER_MAX - 1, &h), 0);
        ck_assert_int_eq(parse_fresh(hdr, PROXY_HEADER_MAX + 1, &h), PROXY_HEADER_MAX);
        ck_assert_uint_eq(h.length, PROXY_HEADER_MAX);
}
END_TEST

START_TEST(test_v2_bad_signature) {
        uint8_t hdr[PROXY_V2_FIXED + 64];
        size_t n = v2(hdr, 0x21, 0x11, body4, sizeof(body4));

        for (size_t i = 0; i < 12; i++) {
                hdr[i] ^= 0x01;
                assert_bad_at(hdr, n, i + 1);
                hdr[i] ^= 0x01;
        }
        /* "\r\n" alone may still be a signature's start. */
        assert_bad_at((const uint8_t *) "\r\n\r\n\0\r\nQUIT\r", 12, 12);
        assert_bad_at((const uint8_t *) "\r\nQUIT\n", 7, 3);
}
END_TEST

START_TEST(test_v2_bad_version_command) {
        static const uint8_t bad[] = { 0x00, 0x01, 0x10, 0x11, 0x30, 0x31, 0xf1, 0x22, 0x23, 0x2f, 0x12 };
        uint8_t hdr[PROXY_V2_FIXED + 64];

        for (size_t i = 0; i < sizeof(bad); i++)
                assert_bad_at(hdr, v2(hdr, bad[i], 0x11, body4, sizeof(body4)), 13);
}
END_TEST

START_TEST(test_v2_bad_family) {
        static const uint8_t bad[] = { 0x03, 0x13, 0x23, 0x33, 0x0f, 0x40, 0x41, 0x4f, 0xe1, 0xff };
        uint8_t hdr[PROXY_V2_FIXED + 64];

        for (size_t i = 0; i < sizeof(bad); i++)
                assert_bad_at(hdr, v2(hdr, 0x21, bad[i], body4, sizeof(body4)), 14);
}
END_TEST

/* The length field says too little for the addresses: refused as soon as
 * it is read. */
START_TEST(test_v2_short_addresses) {
        uint8_t hdr[PROXY_V2_FIXED + 64];

        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body4, 11), 16);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body4, 0), 16);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x21, body6, 35), 16);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x21, body6, 12), 16);
}
END_TEST

/* TLVs must fill the length exactly: one across its end, or a stub too
 * short for a TLV's own 3 bytes, is refused as soon as it shows. */
START_TEST(test_v2_tlv_overrun) {
        uint8_t hdr[PROXY_V2_FIXED + 512], body[400];
        size_t base = PROXY_V2_FIXED + sizeof(body4);

        memcpy(body, body4, sizeof(body4));
        memcpy(body + sizeof(body4), tlvs, sizeof(tlvs));
        /* The length ends inside the first TLV's value, its header, ... */
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 5), base + 3);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 2), 16);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 1), 16);
        /* ... or inside the second's header (seen once the first's
         * length is), or the third's value. */
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 7), base + 3);
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 14), base + 12);
        /* A TLV's length of 65535. */
        body[sizeof(body4) + 1] = 0xff;
        body[sizeof(body4) + 2] = 0xff;
        assert_bad_at(hdr, v2(hdr, 0x21, 0x11, body, sizeof(body4) + 6), base + 3);
        /* The same bytes in a v2 of UDP are not looked at. */
        assert_valid(hdr, v2(hdr, 0x21, 0x12, body, sizeof(body4) + 6), &v2_local);
}
END_TEST

Suite *proxy_suite(void) {
        Suite *s = suite_create("proxy");
        TCase *tc;

        tc = tcase_create("v1");
        tcase_add_loop_test(tc, test_v1_valid, 0, (int) (sizeof(v1_valid) / sizeof(v1_valid[0])));
        tcase_add_test(tc, test_v1_longest);
        tcase_add_loop_test(tc, test_v1_bad, 0, (int) (sizeof(v1_bad) / sizeof(v1_bad[0])));
        tcase_add_test(tc, test_v1_too_long);
        tcase_add_test(tc, test_v1_address_prefixes);
        suite_add_tcase(s, tc);

        tc = tcase_create("v2");
        tcase_add_test(tc, test_v2_tcp);
        tcase_add_test(tc, test_v2_local);
        tcase_add_test(tc, test_v2_longest);
        tcase_add_test(tc, test_v2_bad_signature);
        tcase_add_test(tc, test_v2_bad_version_command);
        tcase_add_test(tc, test_v2_bad_family);
        tcase_add_test(tc, test_v2_short_addresses);
        tcase_add_test(tc, test_v2_tlv_overrun);
        suite_add_tcase(s, tc);
        return s;
}
