/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "addr.h"
#include "suites.h"

struct parse_case {
        const char *in;
        int family;
        const char *host;               /* as addr_format_host() writes it */
        uint16_t port;
};

static const struct parse_case valid[] = {
        { "127.0.0.1:12000",        AF_INET,  "127.0.0.1",       12000 },
        { "0.0.0.0:12000",          AF_INET,  "0.0.0.0",         12000 },
        { "192.0.2.7:1",            AF_INET,  "192.0.2.7",       1 },
        { "255.255.255.255:65535",  AF_INET,  "255.255.255.255", 65535 },
        { "[::1]:12000",            AF_INET6, "::1",             12000 },
        { "[::]:12000",             AF_INET6, "::",              12000 },
        { "[2001:db8::1]:80",       AF_INET6, "2001:db8::1",     80 },
        { "[::ffff:192.0.2.7]:80",  AF_INET6, "192.0.2.7",       80 },
        { "*:12000",                AF_INET6, "::",              12000 },
        { "12000",                  AF_INET6, "::",              12000 },
        { "1",                      AF_INET6, "::",              1 },
        { "65535",                  AF_INET6, "::",              65535 },
        { "012000",                 AF_INET6, "::",              12000 },
};

static const char *const invalid[] = {
        "",
        ":",
        "12000:",
        "0",
        "65536",
        "99999999999999999999",
        "-1",
        "+80",
        " 80",
        "80 ",
        "0x50",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:http",
        "127.0.0.1:80x",
        "127.0.0.1:80 ",
        "127.0.0.1:-80",
        "127.0.0.1 :80",
        ":80",
        "127.0.0:80",
        "127.0.0.256:80",
        "1.2.3.4.5:80",
        "localhost:80",
        "example.com:80",
        "::1:80",
        "::1",
        "2001:db8::1:80",
        "[::1]",
        "[::1]:",
        "[::1]80",
        "[::1]:0",
        "[::1]:65536",
        "[::1]:80]",
        "[::1]]:80",
        "[::1:80",
        "[]:80",
        "[1.2.3.4]:80",
        "[localhost]:80",
        "[::1%lo]:80",
        "[*]:80",
        "**:80",
        "*:",
        "*:0",
        "*",
        "[0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
};

START_TEST(test_parse_valid) {
        const struct parse_case *t = &valid[_i];
        char host[ADDR_HOST_MAX];
        struct addr a;

        ck_assert_msg(addr_parse(t->in, &a) == 0, "rejected \"%s\"", t->in);
        ck_assert_int_eq(a.sa.sa.sa_family, t->family);
        ck_assert_uint_eq(a.len, t->family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        ck_assert_str_eq(addr_format_host(&a.sa, host), t->host);
        ck_assert_uint_eq(addr_port(&a.sa), t->port);
}
END_TEST

START_TEST(test_parse_invalid) {
        struct addr a, before;

        memset(&a, 0x5a, sizeof(a));
        before = a;
        ck_assert_msg(addr_parse(invalid[_i], &a) == -EINVAL, "accepted \"%s\"", invalid[_i]);
        /* A failed parse leaves the result alone. */
        ck_assert(memcmp(&a, &before, sizeof(a)) == 0);
}
END_TEST

START_TEST(test_parse_null) {
        struct addr a;

        ck_assert_int_eq(addr_parse(NULL, &a), -EINVAL);
}
END_TEST

/* "*" and a bare port are the dual-stack wildcard, identical to [::]. */
START_TEST(test_wildcards_equal) {
        struct addr star, bare, any, v4any;

        ck_assert_int_eq(addr_parse("*:12000", &star), 0);
        ck_assert_int_eq(addr_parse("12000", &bare), 0);
        ck_assert_int_eq(addr_parse("[::]:12000", &any), 0);
        ck_assert_int_eq(addr_parse("0.0.0.0:12000", &v4any), 0);
        ck_assert(addr_equal(&star, &any));
        ck_assert(addr_equal(&bare, &any));
        ck_assert(IN6_IS_ADDR_UNSPECIFIED(&any.sa.in6.sin6_addr));
        ck_assert(!addr_equal(&any, &v4any));
}
END_TEST

START_TEST(test_equal) {
        struct addr a, b;

        ck_assert_int_eq(addr_parse("192.0.2.7:80", &a), 0);
        ck_assert_int_eq(addr_parse("192.0.2.7:80", &b), 0);
        ck_assert(addr_equal(&a, &b));
        ck_assert_int_eq(addr_parse("192.0.2.7:81", &b), 0);
        ck_assert(!addr_equal(&a, &b));
        ck_assert_int_eq(addr_parse("192.0.2.8:80", &b), 0);
        ck_assert(!addr_equal(&a, &b));
        /* Different sockets, even if they reach the same host. */
        ck_assert_int_eq(addr_parse("[::ffff:192.0.2.7]:80", &b), 0);
        ck_assert(!addr_equal(&a, &b));

        ck_assert_int_eq(addr_parse("[2001:db8::1]:80", &a), 0);
        ck_assert_int_eq(addr_parse("[2001:db8:0::1]:80", &b), 0);
        ck_assert(addr_equal(&a, &b));
        ck_assert_int_eq(addr_parse("[2001:db8::2]:80", &b), 0);
        ck_assert(!addr_equal(&a, &b));
}
END_TEST

static union sockaddr_union make_v4(const char *ip, uint16_t port) {
        union sockaddr_union sa;

        memset(&sa, 0, sizeof(sa));
        sa.in.sin_family = AF_INET;
        sa.in.sin_port = htons(port);
        ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.in.sin_addr), 1);
        return sa;
}

static union sockaddr_union make_v6(const char *ip, uint16_t port) {
        union sockaddr_union sa;

        memset(&sa, 0, sizeof(sa));
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons(port);
        ck_assert_int_eq(inet_pton(AF_INET6, ip, &sa.in6.sin6_addr), 1);
        return sa;
}

START_TEST(test_format) {
        char buf[ADDR_TEXT_MAX], host[ADDR_HOST_MAX];
        union sockaddr_union sa;

        sa = make_v4("1.2.3.4", 80);
        ck_assert_str_eq(addr_format(&sa, buf), "1.2.3.4:80");
        ck_assert_str_eq(addr_format_host(&sa, host), "1.2.3.4");

        sa = make_v6("::1", 80);
        ck_assert_str_eq(addr_format(&sa, buf), "[::1]:80");
        ck_assert_str_eq(addr_format_host(&sa, host), "::1");

        /* An IPv4 client of a dual-stack socket is shown as plain IPv4. */
        sa = make_v6("::ffff:192.0.2.7", 40512);
        ck_assert_str_eq(addr_format_host(&sa, host), "192.0.2.7");
        ck_assert_str_eq(addr_format(&sa, buf), "192.0.2.7:40512");
        ck_assert_uint_eq(addr_port(&sa), 40512);

        /* Not mapped: an IPv4-compatible or NAT64 address stays IPv6. */
        sa = make_v6("64:ff9b::c000:207", 1);
        ck_assert_str_eq(addr_format(&sa, buf), "[64:ff9b::c000:207]:1");
}
END_TEST

/* The longest texts fit the buffers the header sizes for them. */
START_TEST(test_format_longest) {
        const char *ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        char buf[ADDR_TEXT_MAX], host[ADDR_HOST_MAX];
        union sockaddr_union sa;

        sa = make_v6(ip, 65535);
        ck_assert_str_eq(addr_format_host(&sa, host), ip);
        ck_assert_str_eq(addr_format(&sa, buf), "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

        /* Written with an embedded IPv4 address by inet_ntop(). */
        sa = make_v6("::255.255.255.255", 65535);
        ck_assert_str_eq(addr_format(&sa, buf), "[::255.255.255.255]:65535");

        sa = make_v4("255.255.255.255", 65535);
        ck_assert_str_eq(addr_format(&sa, buf), "255.255.255.255:65535");
}
END_TEST

START_TEST(test_format_roundtrip) {
        const char *texts[] = { "1.2.3.4:80", "[::1]:80", "[2001:db8::1]:12000", "0.0.0.0:1", "[::]:65535" };
        char buf[ADDR_TEXT_MAX];
        struct addr a, b;

        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                ck_assert_int_eq(addr_parse(texts[i], &a), 0);
                ck_assert_str_eq(addr_format(&a.sa, buf), texts[i]);
                ck_assert_int_eq(addr_parse(buf, &b), 0);
                ck_assert(addr_equal(&a, &b));
        }
}
END_TEST

START_TEST(test_format_unknown_family) {
        char buf[ADDR_TEXT_MAX], host[ADDR_HOST_MAX];
        union sockaddr_union sa;

        memset(&sa, 0, sizeof(sa));
        sa.sa.sa_family = AF_UNIX;
        ck_assert_str_eq(addr_format_host(&sa, host), "unknown");
        ck_assert_uint_eq(addr_port(&sa), 0);
        ck_assert_str_eq(addr_format(&sa, buf), "unknown:0");
}
END_TEST

/* ---- prefixes ---- */

static union sockaddr_union peer_of(const char *host) {
        union sockaddr_union sa;

        memset(&sa, 0, sizeof(sa));
        if (inet_pton(AF_INET, host, &sa.in.sin_addr) == 1)
                sa.in.sin_family = AF_INET;
        else {
                ck_assert_int_eq(inet_pton(AF_INET6, host, &sa.in6.sin6_addr), 1);
                sa.in6.sin6_family = AF_INET6;
        }
        return sa;
}

static struct addr_prefix prefix_of(const char *text) {
        struct addr_prefix p;

        ck_assert_msg(addr_prefix_parse(text, &p) == 0, "%s does not parse", text);
        return p;
}

static const struct {
        const char *in, *formatted;
} prefix_valid[] = {
        { "127.0.0.0/8",          "127.0.0.0/8" },
        { "127.0.0.1",            "127.0.0.1" },
        { "127.0.0.1/32",         "127.0.0.1" },
        { "0.0.0.0/0",            "0.0.0.0/0" },
        { "192.0.2.128/25",       "192.0.2.128/25" },
        { "::1",                  "::1" },
        { "::1/128",              "::1" },
        { "::/0",                 "::/0" },
        { "2001:db8::/32",        "2001:db8::/32" },
        { "2001:DB8:0:0::/64",    "2001:db8::/64" },
        { "fe80::/10",            "fe80::/10" },
        { "::ffff:0.0.0.0/96",    "::ffff:0.0.0.0/96" },
};

START_TEST(test_prefix_parse_valid) {
        char buf[ADDR_PREFIX_MAX];
        struct addr_prefix p = prefix_of(prefix_valid[_i].in);

        ck_assert_str_eq(addr_prefix_format(&p, buf), prefix_valid[_i].formatted);
}
END_TEST

static const char *const prefix_invalid[] = {
        "", "/8", "127.0.0.0/", "127.0.0.0/33", "127.0.0.0/-1", "127.0.0.0/+8", "127.0.0.0/8/8",
        "127.0.0.0/ 8", "127.0.0.0/0x8", "127.0.0.0/0008", "::/129", "127.0.0", "127.0.0.256",
        "localhost", "[::1]", "::1:", "127.0.0.1:80", " 127.0.0.1", "127.0.0.1 ",
};

START_TEST(test_prefix_parse_invalid) {
        struct addr_prefix p;

        ck_assert_msg(addr_prefix_parse(prefix_invalid[_i], &p) == -EINVAL, "\"%s\" parsed", prefix_invalid[_i]);
}
END_TEST

/* Bits past the length are a typo for the network: refused, naming it. */
START_TEST(test_prefix_host_bits) {
        static const struct {
                const char *in, *network;
        } cases[] = {
                { "127.0.0.1/8",   "127.0.0.0/8" },
                { "192.0.2.1/31",  "192.0.2.0/31" },
                { "2001:db8::1/64", "2001:db8::/64" },
                { "::1/127",       "::/127" },
                { "1.2.3.4/0",     "0.0.0.0/0" },
        };
        char buf[ADDR_PREFIX_MAX];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct addr_prefix p;

                ck_assert_int_eq(addr_prefix_parse(cases[i].in, &p), -EADDRNOTAVAIL);
                ck_assert_str_eq(addr_prefix_format(&p, buf), cases[i].network);
        }
}
END_TEST

START_TEST(test_prefix_contains) {
        static const struct {
                const char *prefix, *host;
                bool in;
        } cases[] = {
                { "127.0.0.0/8",   "127.0.0.1",        true },
                { "127.0.0.0/8",   "127.255.255.255",  true },
                { "127.0.0.0/8",   "128.0.0.1",        false },
                { "127.0.0.0/8",   "126.255.255.255",  false },
                /* An IPv4 client of the dual-stack socket. */
                { "127.0.0.0/8",   "::ffff:127.0.0.1", true },
                { "127.0.0.0/8",   "::ffff:10.0.0.1",  false },
                { "127.0.0.0/8",   "::1",              false },
                { "127.0.0.0/8",   "::7f00:1",         false },  /* IPv4-compatible is not mapped */
                { "192.0.2.128/25", "192.0.2.128",     true },
                { "192.0.2.128/25", "192.0.2.127",     false },
                { "10.1.2.3",      "10.1.2.3",         true },
                { "10.1.2.3",      "10.1.2.4",         false },
                { "0.0.0.0/0",     "203.0.113.9",      true },
                { "0.0.0.0/0",     "2001:db8::1",      false },
                { "::1",           "::1",              true },
                { "::1",           "::2",              false },
                { "::1",           "127.0.0.1",        false },
                { "::/0",          "2001:db8::1",      true },
                { "::/0",          "192.0.2.1",        true },   /* every address, mapped included */
                { "2001:db8::/32", "2001:db8:ffff::1", true },
                { "2001:db8::/32", "2001:db9::1",      false },
                { "fe80::/10",     "febf::1",          true },
                { "fe80::/10",     "fec0::1",          false },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct addr_prefix p = prefix_of(cases[i].prefix);
                union sockaddr_union sa = peer_of(cases[i].host);

                ck_assert_msg(addr_prefix_contains(&p, &sa) == cases[i].in, "%s in %s: expected %d",
                              cases[i].host, cases[i].prefix, cases[i].in);
        }
}
END_TEST

START_TEST(test_prefix_list) {
        struct addr_prefix list[] = { prefix_of("127.0.0.0/8"), prefix_of("::1") };
        union sockaddr_union v6 = peer_of("::1"), v4 = peer_of("127.1.2.3");
        union sockaddr_union other = peer_of("192.0.2.1"), unix_sa;

        ck_assert(addr_prefix_list_contains(list, 2, &v6));
        ck_assert(addr_prefix_list_contains(list, 2, &v4));
        ck_assert(!addr_prefix_list_contains(list, 2, &other));
        ck_assert(!addr_prefix_list_contains(list, 0, &v4));
        memset(&unix_sa, 0, sizeof(unix_sa));
        unix_sa.sa.sa_family = AF_UNIX;
        ck_assert(!addr_prefix_list_contains(list, 2, &unix_sa));
}
END_TEST

START_TEST(test_prefix_equal) {
        struct addr_prefix a = prefix_of("127.0.0.0/8"), b = prefix_of("127.0.0.0/8");
        struct addr_prefix c = prefix_of("127.0.0.0/9"), d = prefix_of("::ffff:127.0.0.0/104");

        ck_assert(addr_prefix_equal(&a, &b));
        ck_assert(!addr_prefix_equal(&a, &c));
        /* The same network written two ways. */
        ck_assert(addr_prefix_equal(&a, &d));
}
END_TEST

Suite *addr_suite(void) {
        Suite *s = suite_create("addr");
        TCase *tc;

        tc = tcase_create("parse");
        tcase_add_loop_test(tc, test_parse_valid, 0, (int) (sizeof(valid) / sizeof(valid[0])));
        tcase_add_loop_test(tc, test_parse_invalid, 0, (int) (sizeof(invalid) / sizeof(invalid[0])));
        tcase_add_test(tc, test_parse_null);
        tcase_add_test(tc, test_wildcards_equal);
        tcase_add_test(tc, test_equal);
        suite_add_tcase(s, tc);

        tc = tcase_create("format");
        tcase_add_test(tc, test_format);
        tcase_add_test(tc, test_format_longest);
        tcase_add_test(tc, test_format_roundtrip);
        tcase_add_test(tc, test_format_unknown_family);
        suite_add_tcase(s, tc);

        tc = tcase_create("prefix");
        tcase_add_loop_test(tc, test_prefix_parse_valid, 0, (int) (sizeof(prefix_valid) / sizeof(prefix_valid[0])));
        tcase_add_loop_test(tc, test_prefix_parse_invalid, 0,
                            (int) (sizeof(prefix_invalid) / sizeof(prefix_invalid[0])));
        tcase_add_test(tc, test_prefix_host_bits);
        tcase_add_test(tc, test_prefix_contains);
        tcase_add_test(tc, test_prefix_list);
        tcase_add_test(tc, test_prefix_equal);
        suite_add_tcase(s, tc);

        return s;
}
