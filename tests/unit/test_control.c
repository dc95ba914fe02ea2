/* SPDX-License-Identifier: MIT */
/* Unit tests of common/control-proto.c (the request parser shared by the
 * daemon and uppercasectl) and common/textbuf.c. */

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "control-proto.h"
#include "duration.h"
#include "suites.h"
#include "textbuf.h"

#define ERR_MAX 256

/* Parses a NUL-terminated line; err gets the message. */
static int parse(const char *line, struct control_request *req, char *err) {
        err[0] = '\0';
        return control_parse(line, strlen(line), req, err, ERR_MAX);
}

/* --- accepted requests --- */

static const struct {
        const char *line;
        enum control_command command;
} plain_commands[] = {
        { "status",        CONTROL_STATUS },
        { "stats",         CONTROL_STATS },
        { "connections",   CONTROL_CONNECTIONS },
        { "reload",        CONTROL_RELOAD },
        { "help",          CONTROL_HELP },
        { "timeout",       CONTROL_TIMEOUT },
        { "  stats  ",     CONTROL_STATS },
        { "\tstatus\t",    CONTROL_STATUS },
        { "stats\r",       CONTROL_STATS },
        { " reload \r",    CONTROL_RELOAD },
};

START_TEST(test_plain_commands) {
        for (size_t i = 0; i < sizeof(plain_commands) / sizeof(plain_commands[0]); i++) {
                struct control_request req = { .command = _CONTROL_MAX, .timeout = 99, .set = true };
                char err[ERR_MAX];
                int r = parse(plain_commands[i].line, &req, err);

                ck_assert_msg(r == 0, "\"%s\": %d (%s)", plain_commands[i].line, r, err);
                ck_assert_int_eq(req.command, plain_commands[i].command);
                ck_assert_int_eq(req.timeout, -1);
                ck_assert(!req.set);
                ck_assert_uint_eq(req.value_usec, 0);
        }
}
END_TEST

static const struct {
        const char *line;
        int timeout;
        bool set;
        uint64_t usec;
} timeout_forms[] = {
        { "timeout",                   -1,               false, 0 },
        { "timeout idle",              TIMEOUT_IDLE,     false, 0 },
        { "timeout write",             TIMEOUT_WRITE,    false, 0 },
        { "timeout shutdown",          TIMEOUT_SHUTDOWN, false, 0 },
        { "timeout idle 30",           TIMEOUT_IDLE,     true,  30 * USEC_PER_SEC },
        { "timeout idle 1.5",          TIMEOUT_IDLE,     true,  1500 * USEC_PER_MSEC },
        { "timeout write 250ms",       TIMEOUT_WRITE,    true,  250 * USEC_PER_MSEC },
        { "timeout shutdown 30s",      TIMEOUT_SHUTDOWN, true,  30 * USEC_PER_SEC },
        { "timeout idle 5m",           TIMEOUT_IDLE,     true,  300 * USEC_PER_SEC },
        { "timeout idle 1h",           TIMEOUT_IDLE,     true,  3600 * USEC_PER_SEC },
        { "timeout idle 0",            TIMEOUT_IDLE,     true,  0 },
        { "timeout write 168h",        TIMEOUT_WRITE,    true,  DURATION_MAX_USEC },
        { "timeout\tidle\t30",         TIMEOUT_IDLE,     true,  30 * USEC_PER_SEC },
        { "  timeout   idle   30  ",   TIMEOUT_IDLE,     true,  30 * USEC_PER_SEC },
        { "timeout idle 30\r",         TIMEOUT_IDLE,     true,  30 * USEC_PER_SEC },
};

START_TEST(test_timeout_forms) {
        for (size_t i = 0; i < sizeof(timeout_forms) / sizeof(timeout_forms[0]); i++) {
                struct control_request req;
                char err[ERR_MAX];
                int r = parse(timeout_forms[i].line, &req, err);

                ck_assert_msg(r == 0, "\"%s\": %d (%s)", timeout_forms[i].line, r, err);
                ck_assert_int_eq(req.command, CONTROL_TIMEOUT);
                ck_assert_msg(req.timeout == timeout_forms[i].timeout, "\"%s\": timeout %d",
                              timeout_forms[i].line, req.timeout);
                ck_assert_msg(req.set == timeout_forms[i].set, "\"%s\": set", timeout_forms[i].line);
                if (req.set)
                        ck_assert_msg(req.value_usec == timeout_forms[i].usec, "\"%s\": %llu usec",
                                      timeout_forms[i].line, (unsigned long long) req.value_usec);
        }
}
END_TEST

/* --- rejected requests: the message says why --- */

static const struct {
        const char *line;
        const char *message;            /* a substring of the error */
} rejected[] = {
        { "",                          "empty request" },
        { " ",                         "empty request" },
        { "   \t  ",                   "empty request" },
        { "\r",                        "empty request" },
        { "bogus",                     "unknown command 'bogus'" },
        { "STATUS",                    "unknown command 'STATUS'" },
        { "stat",                      "unknown command 'stat'" },
        { "statsx",                    "unknown command 'statsx'" },
        { "status now",                "wrong number of arguments for 'status'" },
        { "stats x",                   "wrong number of arguments for 'stats'" },
        { "connections all",           "wrong number of arguments for 'connections'" },
        { "reload now",                "wrong number of arguments for 'reload'" },
        { "help me",                   "unknown command 'me', try 'help'" },
        { "help stats now",            "wrong number of arguments for 'help'" },
        { "kill",                      "wrong number of arguments for 'kill'" },
        { "kill 1 2",                  "wrong number of arguments for 'kill'" },
        { "kill -1",                   "invalid connection id '-1'" },
        { "kill 99999999999999999999", "invalid connection id" },
        { "reset now",                 "wrong number of arguments for 'reset'" },
        { "timeout idle -5",           "invalid timeout value '-5': a duration cannot be negative" },
        { "timeout idle 1 2",          "too many arguments" },
        { "timeout idle 1 2 3 4",      "too many arguments" },
        { "timeout bogus",             "unknown timeout 'bogus'" },
        { "timeout IDLE",              "unknown timeout 'IDLE'" },
        { "timeout idl 5",             "unknown timeout 'idl'" },
        { "timeout read 5",            "unknown timeout 'read'" },
        { "timeout idle abc",          "invalid timeout value 'abc'" },
        { "timeout idle -1",           "invalid timeout value '-1'" },
        { "timeout idle 1x",           "invalid timeout value '1x'" },
        { "timeout idle 1e3",          "invalid timeout value '1e3'" },
        { "timeout idle 5d",           "invalid timeout value '5d'" },
        { "timeout idle .5",           "invalid timeout value '.5'" },
        { "timeout idle 169h",         "too large" },
        { "timeout idle 604801",       "too large" },
        { "timeout idle 99999999999999999999", "too large" },
        { "sta\rts",                   "control characters" },
        { "stats\r\r",                 "control characters" },
        { "stats\n",                   "control characters" },
        { "\x01stats",                 "control characters" },
        { "stats\x1b[A",               "control characters" },
        { "timeout idle \x7f",         "invalid timeout value" },
};

START_TEST(test_rejected) {
        for (size_t i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++) {
                struct control_request req;
                char err[ERR_MAX];
                int r = parse(rejected[i].line, &req, err);

                ck_assert_msg(r == -EINVAL, "\"%s\": %d, want -EINVAL", rejected[i].line, r);
                ck_assert_msg(strstr(err, rejected[i].message), "\"%s\": message \"%s\", want \"%s\"",
                              rejected[i].line, err, rejected[i].message);
                ck_assert_msg(!strchr(err, '\n'), "\"%s\": message is not one line", rejected[i].line);
        }
}
END_TEST

START_TEST(test_embedded_nul) {
        static const char line[] = "stats\0x";
        static const char tail[] = "timeout idle 30\0";
        struct control_request req;
        char err[ERR_MAX];

        /* The length passed includes the NUL: it must not end the line. */
        ck_assert_int_eq(control_parse(line, sizeof(line) - 1, &req, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "control characters"));
        ck_assert_int_eq(control_parse(tail, sizeof(tail) - 1, &req, err, sizeof(err)), -EINVAL);
        ck_assert_int_eq(control_parse("\0", 1, &req, err, sizeof(err)), -EINVAL);
        /* The same bytes without the NUL are fine. */
        ck_assert_int_eq(control_parse(line, 5, &req, err, sizeof(err)), 0);
        ck_assert_int_eq(req.command, CONTROL_STATS);
}
END_TEST

START_TEST(test_line_length) {
        char line[CONTROL_LINE_MAX + 2];
        struct control_request req;
        char err[ERR_MAX];

        /* "stats" padded with blanks to exactly CONTROL_LINE_MAX bytes. */
        memset(line, ' ', sizeof(line));
        memcpy(line, "stats", 5);
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX, &req, err, sizeof(err)), 0);
        ck_assert_int_eq(req.command, CONTROL_STATS);
        /* A trailing "\r" does not count. */
        line[CONTROL_LINE_MAX] = '\r';
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX + 1, &req, err, sizeof(err)), 0);
        /* One byte more is too long. */
        line[CONTROL_LINE_MAX] = ' ';
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX + 1, &req, err, sizeof(err)), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "request too long (at most 512 bytes)"));
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX + 2, &req, err, sizeof(err)), -EINVAL);
        /* A timeout set padded the same way. */
        memset(line, ' ', sizeof(line));
        memcpy(line, "timeout idle 42", 15);
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX, &req, err, sizeof(err)), 0);
        ck_assert_uint_eq(req.value_usec, 42 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_long_word) {
        char line[CONTROL_LINE_MAX + 1];
        struct control_request req;
        char err[64];

        /* An over-long unknown word: the message is cut, not overflowed. */
        memset(line, 'x', CONTROL_LINE_MAX);
        line[CONTROL_LINE_MAX] = '\0';
        ck_assert_int_eq(control_parse(line, CONTROL_LINE_MAX, &req, err, sizeof(err)), -EINVAL);
        ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
        ck_assert_ptr_nonnull(strstr(err, "unknown command"));
}
END_TEST

START_TEST(test_names) {
        ck_assert_str_eq(control_command_name(CONTROL_STATUS), "status");
        ck_assert_str_eq(control_command_name(CONTROL_CONNECTIONS), "connections");
        ck_assert_str_eq(control_command_name(CONTROL_HELP), "help");
        ck_assert_ptr_null(control_command_name(_CONTROL_MAX));
        ck_assert_ptr_null(control_command_name((enum control_command) -1));
        for (int t = 0; t < _TIMEOUT_MAX; t++)
                ck_assert_int_eq(timeout_from_string(timeout_to_string(t)), t);
        ck_assert_str_eq(timeout_to_string(TIMEOUT_SHUTDOWN), "shutdown");
        ck_assert_ptr_null(timeout_to_string(_TIMEOUT_MAX));
        ck_assert_int_eq(timeout_from_string("Idle"), -EINVAL);
        ck_assert_int_eq(timeout_from_string(""), -EINVAL);
        /* Every command parses by its own name (with its arguments' minimum). */
        for (int c = 0; c < _CONTROL_MAX; c++) {
                struct control_request req;
                char err[ERR_MAX];

                char line[64];

                snprintf(line, sizeof(line), "%s%s", control_command_name(c),
                         control_commands[c].min_args ? " 1" : "");
                ck_assert_int_eq(parse(line, &req, err), 0);
                ck_assert_int_eq(req.command, c);
        }
}
END_TEST

/* --- textbuf --- */

START_TEST(test_textbuf_append) {
        struct textbuf b;

        textbuf_init(&b, 1024);
        ck_assert_uint_eq(b.len, 0);
        textbuf_append(&b, "abc", 3);
        textbuf_append(&b, "", 0);
        textbuf_append(&b, "de", 2);
        ck_assert_uint_eq(b.len, 5);
        ck_assert_str_eq(b.data, "abcde");
        ck_assert(!b.overflow);
        /* Binary data, NUL included. */
        textbuf_append(&b, "x\0y", 3);
        ck_assert_uint_eq(b.len, 8);
        ck_assert_int_eq(memcmp(b.data, "abcdex\0y", 8), 0);
        textbuf_free(&b);
        ck_assert_ptr_null(b.data);
        ck_assert_uint_eq(b.len, 0);
        ck_assert_uint_eq(b.max, 1024);
}
END_TEST

START_TEST(test_textbuf_printf) {
        struct textbuf b;

        textbuf_init(&b, 1 << 20);
        textbuf_printf(&b, "%s %d", "tcp.active", 3);
        textbuf_printf(&b, "%c", '\n');
        ck_assert_str_eq(b.data, "tcp.active 3\n");
        ck_assert_uint_eq(b.len, 13);
        /* Growing past the first allocation keeps the content. */
        for (int i = 0; i < 1000; i++)
                textbuf_printf(&b, "%04d", i);
        ck_assert_uint_eq(b.len, 13 + 4000);
        ck_assert_int_eq(memcmp(b.data + 13, "00000001", 8), 0);
        ck_assert_str_eq(b.data + b.len - 4, "0999");
        ck_assert(!b.overflow);
        textbuf_free(&b);
}
END_TEST

START_TEST(test_textbuf_overflow) {
        struct textbuf b;

        /* max counts the terminating NUL: 8 bytes hold 7 characters. */
        textbuf_init(&b, 8);
        textbuf_append(&b, "1234567", 7);
        ck_assert(!b.overflow);
        ck_assert_str_eq(b.data, "1234567");
        textbuf_append(&b, "8", 1);
        ck_assert(b.overflow);
        ck_assert_uint_eq(b.len, 7);
        ck_assert_str_eq(b.data, "1234567");
        textbuf_free(&b);

        /* printf: all or nothing. */
        textbuf_init(&b, 8);
        textbuf_printf(&b, "%s", "abc");
        textbuf_printf(&b, "%s", "defghij");
        ck_assert(b.overflow);
        ck_assert_str_eq(b.data, "abc");
        /* Later appends that fit still work; the flag stays. */
        textbuf_printf(&b, "%s", "de");
        ck_assert_str_eq(b.data, "abcde");
        ck_assert(b.overflow);
        textbuf_free(&b);

        /* A single huge append, far over max. */
        textbuf_init(&b, 16);
        textbuf_printf(&b, "%1000d", 1);
        ck_assert(b.overflow);
        ck_assert_uint_eq(b.len, 0);
        textbuf_free(&b);
}
END_TEST

START_TEST(test_textbuf_consume) {
        struct textbuf b;

        textbuf_init(&b, 64);
        textbuf_append(&b, "hello world", 11);
        textbuf_consume(&b, 6);
        ck_assert_uint_eq(b.len, 5);
        ck_assert_int_eq(memcmp(b.data, "world", 5), 0);
        textbuf_consume(&b, 0);
        ck_assert_uint_eq(b.len, 5);
        textbuf_append(&b, "!", 1);
        ck_assert_str_eq(b.data, "world!");
        textbuf_consume(&b, 6);
        ck_assert_uint_eq(b.len, 0);
        textbuf_append(&b, "x", 1);
        textbuf_consume(&b, 100);
        ck_assert_uint_eq(b.len, 0);
        /* Consuming frees room under max again. */
        textbuf_append(&b, "0123456789012345678901234567890123456789012345678901234567890", 61);
        ck_assert(!b.overflow);
        textbuf_consume(&b, 60);
        textbuf_append(&b, "0123456789", 10);
        ck_assert(!b.overflow);
        ck_assert_uint_eq(b.len, 11);
        textbuf_free(&b);
}
END_TEST

Suite *control_suite(void) {
        Suite *s = suite_create("control");
        TCase *tc = tcase_create("parse");
        TCase *tb = tcase_create("textbuf");

        tcase_add_test(tc, test_plain_commands);
        tcase_add_test(tc, test_timeout_forms);
        tcase_add_test(tc, test_rejected);
        tcase_add_test(tc, test_embedded_nul);
        tcase_add_test(tc, test_line_length);
        tcase_add_test(tc, test_long_word);
        tcase_add_test(tc, test_names);
        suite_add_tcase(s, tc);
        tcase_add_test(tb, test_textbuf_append);
        tcase_add_test(tb, test_textbuf_printf);
        tcase_add_test(tb, test_textbuf_overflow);
        tcase_add_test(tb, test_textbuf_consume);
        suite_add_tcase(s, tb);
        return s;
}
