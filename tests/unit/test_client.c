/* SPDX-License-Identifier: MIT */
/* Unit tests of uppercase(1)'s library (client/): the command line and
 * its positional rule, ports, timeouts, host names, words and lines. */

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "suites.h"
#include "uppercase.h"

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
#define ARGV_MAX 16

/* Parses a NULL-terminated argument list (argv[0] included). */
static int parse(struct client_options *o, char *err, const char *const args[]) {
        static char *argv[ARGV_MAX];
        int argc = 0;

        for (; args[argc]; argc++) {
                ck_assert_int_lt(argc, ARGV_MAX - 1);
                argv[argc] = (char *) args[argc];
        }
        argv[argc] = NULL;
        err[0] = '\0';
        return client_parse_argv(argc, argv, o, err, CLIENT_ERR_MAX);
}

#define PARSE_OK(o, ...) do {                                                   \
                char _err[CLIENT_ERR_MAX];                                      \
                const char *const _args[] = { "uppercase", __VA_ARGS__ };      \
                ck_assert_msg(parse(o, _err, _args) == 0, "%s", _err);          \
        } while (0)

/* ---- the command line --------------------------------------------------------- */

START_TEST(test_defaults) {
        struct client_options o;

        PARSE_OK(&o, NULL);
        ck_assert_int_eq(o.action, CLIENT_ACTION_RUN);
        ck_assert(!o.udp);
        ck_assert(!o.newline);
        ck_assert_int_eq(o.family, AF_UNSPEC);
        ck_assert_str_eq(o.host, "localhost");
        ck_assert_str_eq(o.port, "12000");
        ck_assert_ptr_null(o.text);
        ck_assert_int_eq(o.n_text, 0);
        ck_assert_uint_eq(o.timeout_usec, CLIENT_TCP_TIMEOUT_USEC);
}
END_TEST

START_TEST(test_udp_default_timeout) {
        struct client_options o;

        PARSE_OK(&o, "-u", NULL);
        ck_assert(o.udp);
        ck_assert_uint_eq(o.timeout_usec, 2 * USEC_PER_SEC);
        PARSE_OK(&o, "--udp", "-w", "250ms", NULL);
        ck_assert_uint_eq(o.timeout_usec, 250 * USEC_PER_MSEC);
        PARSE_OK(&o, "--timeout=1.5", NULL);
        ck_assert_uint_eq(o.timeout_usec, 1500 * USEC_PER_MSEC);
        PARSE_OK(&o, "-w3", NULL);
        ck_assert_uint_eq(o.timeout_usec, 3 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_host_only) {
        struct client_options o;

        PARSE_OK(&o, "example.org", NULL);
        ck_assert_str_eq(o.host, "example.org");
        ck_assert_str_eq(o.port, "12000");
        ck_assert_ptr_null(o.text);
}
END_TEST

START_TEST(test_host_port) {
        struct client_options o;

        PARSE_OK(&o, "127.0.0.1", "12001", NULL);
        ck_assert_str_eq(o.host, "127.0.0.1");
        ck_assert_str_eq(o.port, "12001");
        ck_assert_ptr_null(o.text);
        /* Leading zeros are still a number; the port is normalised. */
        PARSE_OK(&o, "h", "00080", NULL);
        ck_assert_str_eq(o.port, "80");
}
END_TEST

START_TEST(test_host_port_text) {
        struct client_options o;

        PARSE_OK(&o, "localhost", "12000", "ciao", "mondo", NULL);
        ck_assert_str_eq(o.port, "12000");
        ck_assert_int_eq(o.n_text, 2);
        ck_assert_str_eq(o.text[0], "ciao");
        ck_assert_str_eq(o.text[1], "mondo");
}
END_TEST

START_TEST(test_host_text_without_port) {
        struct client_options o;

        /* A second argument that is not all digits starts TEXT. */
        PARSE_OK(&o, "localhost", "ciao", NULL);
        ck_assert_str_eq(o.port, "12000");
        ck_assert_int_eq(o.n_text, 1);
        ck_assert_str_eq(o.text[0], "ciao");
        PARSE_OK(&o, "localhost", "12abc", "7", NULL);
        ck_assert_str_eq(o.port, "12000");
        ck_assert_int_eq(o.n_text, 2);
        ck_assert_str_eq(o.text[0], "12abc");
        /* Only the second argument may be PORT: a number later is TEXT. */
        PARSE_OK(&o, "localhost", "12000", "42", NULL);
        ck_assert_str_eq(o.port, "12000");
        ck_assert_str_eq(o.text[0], "42");
}
END_TEST

START_TEST(test_empty_text_is_text) {
        struct client_options o;

        PARSE_OK(&o, "localhost", "", NULL);
        ck_assert_int_eq(o.n_text, 1);
        ck_assert_str_eq(o.text[0], "");
}
END_TEST

START_TEST(test_options_stop_at_host) {
        struct client_options o;

        /* After HOST everything is TEXT, dashes included. */
        PARSE_OK(&o, "localhost", "-n", "-5", "--udp", NULL);
        ck_assert(!o.newline);
        ck_assert(!o.udp);
        ck_assert_int_eq(o.n_text, 3);
        ck_assert_str_eq(o.text[0], "-n");
        ck_assert_str_eq(o.text[2], "--udp");
        /* "--" ends the options, so HOST may start with a dash. */
        PARSE_OK(&o, "-u", "--", "-odd-host", "1", "x", NULL);
        ck_assert(o.udp);
        ck_assert_str_eq(o.host, "-odd-host");
        ck_assert_str_eq(o.port, "1");
        ck_assert_str_eq(o.text[0], "x");
}
END_TEST

START_TEST(test_flags) {
        struct client_options o;

        PARSE_OK(&o, "-n", "-4", "-u", NULL);
        ck_assert(o.newline);
        ck_assert(o.udp);
        ck_assert_int_eq(o.family, AF_INET);
        PARSE_OK(&o, "-6", "-6", NULL);
        ck_assert_int_eq(o.family, AF_INET6);
        PARSE_OK(&o, "-un6", NULL);
        ck_assert(o.udp && o.newline);
        ck_assert_int_eq(o.family, AF_INET6);
}
END_TEST

START_TEST(test_ipv6_host) {
        struct client_options o;

        PARSE_OK(&o, "::1", "12000", NULL);
        ck_assert_str_eq(o.host, "::1");
        PARSE_OK(&o, "[::1]", "x", NULL);
        ck_assert_str_eq(o.host, "::1");
        ck_assert_str_eq(o.text[0], "x");
        PARSE_OK(&o, "fe80::1%lo", NULL);
        ck_assert_str_eq(o.host, "fe80::1%lo");
}
END_TEST

/* HOST:PORT and [V6]:PORT in one argument, as uppercased's own ADDR:PORT
 * (and as a URL): the rest is TEXT, digits or not. */
START_TEST(test_host_colon_port) {
        struct client_options o;

        PARSE_OK(&o, "localhost:40001", "ciao", NULL);
        ck_assert_str_eq(o.host, "localhost");
        ck_assert_str_eq(o.port, "40001");
        ck_assert_int_eq(o.n_text, 1);
        ck_assert_str_eq(o.text[0], "ciao");
        PARSE_OK(&o, "127.0.0.1:12001", "42", NULL);
        ck_assert_str_eq(o.host, "127.0.0.1");
        ck_assert_str_eq(o.port, "12001");
        ck_assert_str_eq(o.text[0], "42");
        PARSE_OK(&o, "[::1]:12002", NULL);
        ck_assert_str_eq(o.host, "::1");
        ck_assert_str_eq(o.port, "12002");
        ck_assert_ptr_null(o.text);
        PARSE_OK(&o, "[fe80::1%lo]:7", NULL);
        ck_assert_str_eq(o.host, "fe80::1%lo");
        ck_assert_str_eq(o.port, "7");
        /* A bare IPv6 address keeps its colons. */
        PARSE_OK(&o, "::1", NULL);
        ck_assert_str_eq(o.host, "::1");
        ck_assert_str_eq(o.port, "12000");
        PARSE_OK(&o, "fe80::1:80", NULL);
        ck_assert_str_eq(o.host, "fe80::1:80");
}
END_TEST

START_TEST(test_help_version) {
        struct client_options o;

        PARSE_OK(&o, "-h", NULL);
        ck_assert_int_eq(o.action, CLIENT_ACTION_HELP);
        PARSE_OK(&o, "--help", NULL);
        ck_assert_int_eq(o.action, CLIENT_ACTION_HELP);
        PARSE_OK(&o, "-V", NULL);
        ck_assert_int_eq(o.action, CLIENT_ACTION_VERSION);
        PARSE_OK(&o, "--version", "12000", NULL);       /* not looked at */
        ck_assert_int_eq(o.action, CLIENT_ACTION_VERSION);
}
END_TEST

static const struct {
        const char *args[6];
        const char *message;            /* a part of the error message */
} usage_errors[] = {
        { { "-x" },                     "invalid option -- 'x'" },
        { { "--bogus" },                "unrecognized option '--bogus'" },
        { { "--udp=1" },                "--udp=1" },
        { { "-w" },                     "requires an argument" },
        { { "--timeout" },              "requires an argument" },
        { { "-w", "0" },                "invalid timeout '0'" },
        { { "-w", "0ms" },              "invalid timeout '0ms'" },
        { { "-w", "-1" },               "invalid timeout '-1'" },
        { { "-w", "soon" },             "invalid timeout 'soon'" },
        { { "-w", "2 s" },              "invalid timeout '2 s'" },
        { { "-w", "8d" },               "invalid timeout '8d'" },
        { { "-w", "169h" },             "too long" },
        { { "-4", "-6" },               "-4 and -6 cannot be combined" },
        { { "-6", "-4" },               "-4 and -6 cannot be combined" },
        { { "12000" },                  "looks like a port" },
        { { "localhost", "0" },         "invalid PORT '0'" },
        { { "localhost", "65536" },     "invalid PORT '65536'" },
        { { "localhost", "99999999999999999999" }, "invalid PORT" },
        { { "" },                       "invalid HOST ''" },
        { { "[]" },                     "invalid HOST '[]'" },
        { { "localhost:0" },            "invalid PORT '0' in 'localhost:0'" },
        { { "localhost:http" },         "invalid PORT 'http' in 'localhost:http'" },
        { { "localhost:" },             "invalid PORT '' in 'localhost:'" },
        { { ":12000" },                 "invalid HOST ':12000'" },
        { { "[::1]:" },                 "invalid PORT '' in '[::1]:'" },
        { { "[::1]x" },                 "invalid HOST '[::1]x'" },
};

START_TEST(test_usage_errors) {
        const char *args[8] = { "uppercase" };
        struct client_options o;
        char err[CLIENT_ERR_MAX];
        size_t n;

        for (n = 0; n < N_ELEMENTS(usage_errors[_i].args) && usage_errors[_i].args[n]; n++)
                args[n + 1] = usage_errors[_i].args[n];
        args[n + 1] = NULL;
        ck_assert_int_eq(parse(&o, err, args), -EINVAL);
        ck_assert_msg(strstr(err, usage_errors[_i].message), "%s: got '%s'",
                      usage_errors[_i].message, err);
        ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(test_host_too_long) {
        static char host[NI_MAXHOST + 10];
        const char *args[] = { "uppercase", host, NULL };
        struct client_options o;
        char err[CLIENT_ERR_MAX];

        memset(host, 'a', sizeof(host) - 1);
        ck_assert_int_eq(parse(&o, err, args), -EINVAL);
        ck_assert_str_eq(err, "HOST is too long");
}
END_TEST

START_TEST(test_parse_twice) {
        struct client_options o;

        /* getopt keeps state between calls; the parser resets it. */
        PARSE_OK(&o, "-u", "h", "1", "a", NULL);
        PARSE_OK(&o, "-n", "h", "2", "b", NULL);
        ck_assert(!o.udp);
        ck_assert(o.newline);
        ck_assert_str_eq(o.port, "2");
        ck_assert_str_eq(o.text[0], "b");
}
END_TEST

/* ---- ports and timeouts ------------------------------------------------------- */

START_TEST(test_parse_port) {
        uint16_t p = 0;

        ck_assert_int_eq(client_parse_port("1", &p), 0);
        ck_assert_uint_eq(p, 1);
        ck_assert_int_eq(client_parse_port("12000", &p), 0);
        ck_assert_uint_eq(p, 12000);
        ck_assert_int_eq(client_parse_port("65535", &p), 0);
        ck_assert_uint_eq(p, 65535);
        ck_assert_int_eq(client_parse_port("0", &p), -ERANGE);
        ck_assert_int_eq(client_parse_port("000", &p), -ERANGE);
        ck_assert_int_eq(client_parse_port("65536", &p), -ERANGE);
        ck_assert_int_eq(client_parse_port("184467440737095516160", &p), -ERANGE);
        ck_assert_int_eq(client_parse_port("", &p), -EINVAL);
        ck_assert_int_eq(client_parse_port("+1", &p), -EINVAL);
        ck_assert_int_eq(client_parse_port(" 1", &p), -EINVAL);
        ck_assert_int_eq(client_parse_port("http", &p), -EINVAL);
        ck_assert_int_eq(client_parse_port(NULL, &p), -EINVAL);
        ck_assert_uint_eq(p, 65535);    /* untouched by failures */
}
END_TEST

START_TEST(test_parse_timeout) {
        uint64_t t = 42;

        ck_assert_int_eq(client_parse_timeout("2", &t), 0);
        ck_assert_uint_eq(t, 2 * USEC_PER_SEC);
        ck_assert_int_eq(client_parse_timeout("0.5", &t), 0);
        ck_assert_uint_eq(t, 500 * USEC_PER_MSEC);
        ck_assert_int_eq(client_parse_timeout("1ms", &t), 0);
        ck_assert_uint_eq(t, USEC_PER_MSEC);
        ck_assert_int_eq(client_parse_timeout("5m", &t), 0);
        ck_assert_uint_eq(t, 300 * USEC_PER_SEC);
        ck_assert_int_eq(client_parse_timeout("0", &t), -EINVAL);
        ck_assert_int_eq(client_parse_timeout("0.0s", &t), -EINVAL);
        ck_assert_int_eq(client_parse_timeout("", &t), -EINVAL);
        ck_assert_int_eq(client_parse_timeout("1e3", &t), -EINVAL);
        ck_assert_int_eq(client_parse_timeout("604801", &t), -ERANGE);
        ck_assert_uint_eq(t, 300 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_all_digits) {
        ck_assert(client_all_digits("0"));
        ck_assert(client_all_digits("12000"));
        ck_assert(!client_all_digits(""));
        ck_assert(!client_all_digits(NULL));
        ck_assert(!client_all_digits("12 000"));
        ck_assert(!client_all_digits("-1"));
        ck_assert(!client_all_digits("1.5"));
        ck_assert(!client_all_digits("٣"));       /* Arabic-Indic three */
}
END_TEST

/* ---- hosts and endpoints ------------------------------------------------------ */

START_TEST(test_copy_host) {
        char buf[8];

        ck_assert_int_eq(client_copy_host("a.b", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "a.b");
        ck_assert_int_eq(client_copy_host("[::1]", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "::1");
        ck_assert_int_eq(client_copy_host("[::1", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "[::1");
        ck_assert_int_eq(client_copy_host("1234567", buf, sizeof(buf)), 0);
        ck_assert_int_eq(client_copy_host("12345678", buf, sizeof(buf)), -ENAMETOOLONG);
        ck_assert_int_eq(client_copy_host("[1234567]", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "1234567");
        ck_assert_int_eq(client_copy_host("", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(client_copy_host("[]", buf, sizeof(buf)), -EINVAL);
}
END_TEST

START_TEST(test_format_endpoint) {
        char buf[64];

        ck_assert_str_eq(client_format_endpoint("localhost", "12000", buf, sizeof(buf)), "localhost:12000");
        ck_assert_str_eq(client_format_endpoint("127.0.0.1", "1", buf, sizeof(buf)), "127.0.0.1:1");
        ck_assert_str_eq(client_format_endpoint("::1", "12000", buf, sizeof(buf)), "[::1]:12000");
        ck_assert_str_eq(client_format_endpoint("::1", "12000", buf, 6), "[::1]");
}
END_TEST

/* ---- words --------------------------------------------------------------------- */

static void check_join(char *const words[], int n, bool newline, const char *want) {
        size_t len = 12345;
        char *s = client_join_words(words, n, newline, &len);

        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert(memcmp(s, want, len) == 0);
        free(s);
}

START_TEST(test_join_words) {
        char *words[] = { "ciao", "", "mondo", "a b" };

        check_join(words, 0, false, "");
        check_join(words, 0, true, "\n");
        check_join(words, 1, false, "ciao");
        check_join(words, 1, true, "ciao\n");
        check_join(words, 2, false, "ciao ");
        check_join(words, 3, false, "ciao  mondo");
        check_join(words, 4, true, "ciao  mondo a b\n");
        check_join(words + 1, 1, false, "");
}
END_TEST

/* ---- lines --------------------------------------------------------------------- */

struct split_case {
        const char *buf;
        bool eof;
        size_t max;
        int ret;
        size_t len, used;
};

static const struct split_case split_cases[] = {
        { "",           false, 100,  0, 0, 0 },
        { "",           true,  100,  0, 0, 0 },
        { "abc",        false, 100,  0, 0, 0 },
        { "abc",        true,  100,  1, 3, 3 },
        { "abc\n",      false, 100,  1, 3, 4 },
        { "abc\ndef",   false, 100,  1, 3, 4 },
        { "\n",         false, 100,  1, 0, 1 },
        { "\n\n",       true,  100,  1, 0, 1 },
        { ".\r\n",      false, 100,  1, 2, 3 },
        { "abcd",       false, 4,    -EMSGSIZE, 0, 0 },
        { "abcd",       true,  4,    -EMSGSIZE, 0, 0 },
        { "abc\n",      false, 4,    1, 3, 4 },
        { "abcd\n",     false, 4,    -EMSGSIZE, 0, 0 },
        { "abc",        false, 4,    0, 0, 0 },
};

START_TEST(test_split_line) {
        const struct split_case *c = &split_cases[_i];
        size_t len = 999, used = 999;
        int r;

        r = client_split_line(c->buf, strlen(c->buf), c->eof, c->max, &len, &used);
        ck_assert_msg(r == c->ret, "case %d: %d", _i, r);
        if (r == 1) {
                ck_assert_uint_eq(len, c->len);
                ck_assert_uint_eq(used, c->used);
        }
}
END_TEST

START_TEST(test_split_line_binary) {
        const char buf[] = { 'a', '\0', '\xff', '\n', 'b' };
        size_t len, used;

        ck_assert_int_eq(client_split_line(buf, sizeof(buf), false, 64, &len, &used), 1);
        ck_assert_uint_eq(len, 3);
        ck_assert_uint_eq(used, 4);
}
END_TEST

START_TEST(test_quit_line) {
        ck_assert(client_is_quit_line(".", 1));
        ck_assert(client_is_quit_line(".\r", 2));
        ck_assert(!client_is_quit_line("", 0));
        ck_assert(!client_is_quit_line(". ", 2));
        ck_assert(!client_is_quit_line("..", 2));
        ck_assert(!client_is_quit_line(".a", 2));
        ck_assert(!client_is_quit_line(" .", 2));
        ck_assert(!client_is_quit_line("\r.", 2));
        ck_assert(!client_is_quit_line(".\r\r", 3));
}
END_TEST

START_TEST(test_begins_with_quit_line) {
        ck_assert(client_begins_with_quit_line(".", 1, true));
        ck_assert(client_begins_with_quit_line(".\n", 2, false));
        ck_assert(client_begins_with_quit_line(".\nx", 3, false));
        ck_assert(client_begins_with_quit_line(".\r\n", 3, false));
        ck_assert(client_begins_with_quit_line(".\r", 2, true));
        /* Not known yet: more may follow the dot. */
        ck_assert(!client_begins_with_quit_line(".", 1, false));
        ck_assert(!client_begins_with_quit_line(".\r", 2, false));
        ck_assert(!client_begins_with_quit_line("", 0, true));
        ck_assert(!client_begins_with_quit_line("..", 2, true));
        ck_assert(!client_begins_with_quit_line(".x", 2, true));
        ck_assert(!client_begins_with_quit_line(".\rx", 3, false));
        ck_assert(!client_begins_with_quit_line("x.\n", 3, false));
        ck_assert(!client_begins_with_quit_line("\n.\n", 3, false));
}
END_TEST

START_TEST(test_count_newlines) {
        ck_assert_uint_eq(client_count_newlines("", 0), 0);
        ck_assert_uint_eq(client_count_newlines("abc", 3), 0);
        ck_assert_uint_eq(client_count_newlines("\n", 1), 1);
        ck_assert_uint_eq(client_count_newlines("a\nb\n\n", 5), 3);
        ck_assert_uint_eq(client_count_newlines("a\nb\n\n", 4), 2);
}
END_TEST

/* A temporary file holding data, open for reading at its start. */
static int data_fd(const char *data, size_t len) {
        char path[] = "/tmp/test-client-XXXXXX";
        int fd = mkstemp(path);

        ck_assert_int_ge(fd, 0);
        unlink(path);
        ck_assert_int_eq(write(fd, data, len), (ssize_t) len);
        ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static void expect_line(struct line_reader *lr, const char *want) {
        const char *line;
        size_t len;

        ck_assert_int_eq(line_reader_next(lr, &line, &len), 1);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert(memcmp(line, want, len) == 0);
}

START_TEST(test_line_reader) {
        static struct line_reader lr;
        const char text[] = "ciao\n\nperché così\r\n.\nlast";
        const char *line;
        size_t len;
        int fd = data_fd(text, sizeof(text) - 1);

        line_reader_init(&lr, fd);
        expect_line(&lr, "ciao");
        expect_line(&lr, "");
        expect_line(&lr, "perché così\r");
        expect_line(&lr, ".");
        expect_line(&lr, "last");
        ck_assert_int_eq(line_reader_next(&lr, &line, &len), 0);
        ck_assert_int_eq(line_reader_next(&lr, &line, &len), 0);
        close(fd);
}
END_TEST

START_TEST(test_line_reader_many_fills) {
        static struct line_reader lr;
        static char text[3 * CLIENT_LINE_MAX];
        const char *line;
        size_t len, n = 0, lines = 0;
        int fd, r;

        /* Lines of 1000 bytes: they straddle the buffer's end, which the
         * reader must move to the front. */
        for (size_t i = 0; i < sizeof(text); i++)
                text[i] = i % 1001 == 1000 ? '\n' : (char) ('a' + i % 26);
        fd = data_fd(text, sizeof(text));
        line_reader_init(&lr, fd);
        while ((r = line_reader_next(&lr, &line, &len)) == 1) {
                ck_assert(memcmp(line, text + n, len) == 0);
                n += len + 1;
                lines++;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_uint_eq(lines, (sizeof(text) + 1000) / 1001);
        close(fd);
}
END_TEST

START_TEST(test_line_reader_too_long) {
        static struct line_reader lr;
        static char text[CLIENT_LINE_MAX + 10];
        const char *line;
        size_t len;
        int fd;

        memset(text, 'x', sizeof(text));
        text[5] = '\n';
        fd = data_fd(text, sizeof(text));
        line_reader_init(&lr, fd);
        expect_line(&lr, "xxxxx");
        ck_assert_int_eq(line_reader_next(&lr, &line, &len), -EMSGSIZE);
        close(fd);
}
END_TEST

START_TEST(test_line_reader_read_error) {
        static struct line_reader lr;
        const char *line;
        size_t len;

        line_reader_init(&lr, -1);
        ck_assert_int_eq(line_reader_next(&lr, &line, &len), -EBADF);
}
END_TEST

Suite *client_suite(void) {
        Suite *s = suite_create("client");
        TCase *tc = tcase_create("argv");

        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_udp_default_timeout);
        tcase_add_test(tc, test_host_only);
        tcase_add_test(tc, test_host_port);
        tcase_add_test(tc, test_host_port_text);
        tcase_add_test(tc, test_host_text_without_port);
        tcase_add_test(tc, test_empty_text_is_text);
        tcase_add_test(tc, test_options_stop_at_host);
        tcase_add_test(tc, test_flags);
        tcase_add_test(tc, test_ipv6_host);
        tcase_add_test(tc, test_host_colon_port);
        tcase_add_test(tc, test_help_version);
        tcase_add_loop_test(tc, test_usage_errors, 0, (int) N_ELEMENTS(usage_errors));
        tcase_add_test(tc, test_host_too_long);
        tcase_add_test(tc, test_parse_twice);
        suite_add_tcase(s, tc);

        tc = tcase_create("text");
        tcase_add_test(tc, test_parse_port);
        tcase_add_test(tc, test_parse_timeout);
        tcase_add_test(tc, test_all_digits);
        tcase_add_test(tc, test_copy_host);
        tcase_add_test(tc, test_format_endpoint);
        tcase_add_test(tc, test_join_words);
        tcase_add_loop_test(tc, test_split_line, 0, (int) N_ELEMENTS(split_cases));
        tcase_add_test(tc, test_split_line_binary);
        tcase_add_test(tc, test_quit_line);
        tcase_add_test(tc, test_begins_with_quit_line);
        tcase_add_test(tc, test_count_newlines);
        suite_add_tcase(s, tc);

        tc = tcase_create("lines");
        tcase_add_test(tc, test_line_reader);
        tcase_add_test(tc, test_line_reader_many_fills);
        tcase_add_test(tc, test_line_reader_too_long);
        tcase_add_test(tc, test_line_reader_read_error);
        suite_add_tcase(s, tc);
        return s;
}
