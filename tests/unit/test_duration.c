/* SPDX-License-Identifier: MIT */
/* Unit tests of common/duration.c. */

#include <check.h>
#include <errno.h>
#include <string.h>

#include "duration.h"
#include "suites.h"

static const struct {
        const char *s;
        uint64_t usec;
} accepted[] = {
        { "0",          0 },
        { "00",         0 },
        { "0s",         0 },
        { "0ms",        0 },
        { "0.0",        0 },
        { "1",          USEC_PER_SEC },
        { "30",         30 * USEC_PER_SEC },
        { "030",        30 * USEC_PER_SEC },
        { "300",        300 * USEC_PER_SEC },
        { "1.5",        1500000 },
        { "0.25",       250000 },
        { "0.000001",   1 },
        { "1.100000",   1100000 },
        { "250ms",      250000 },
        { "1ms",        1000 },
        { "1.5ms",      1500 },
        { "0.001ms",    1 },
        { "30s",        30 * USEC_PER_SEC },
        { "2.5s",       2500000 },
        { "5m",         300 * USEC_PER_SEC },
        { "1.5m",       90 * USEC_PER_SEC },
        { "0.000001m",  60 },
        { "1h",         3600 * USEC_PER_SEC },
        { "0.5h",       1800 * USEC_PER_SEC },
        { "168h",       DURATION_MAX_USEC },
        { "10080m",     DURATION_MAX_USEC },
        { "604800",     DURATION_MAX_USEC },
        { "604800.000000", DURATION_MAX_USEC },
        { "604800000ms", DURATION_MAX_USEC },
};

static const char *const invalid[] = {
        "", " 1", "1 ", " ", "\t1", "1\n", "-1", "+1", "-0", "1x", "ms", "s",
        "1e3", "1E3", "1e-3", "0x10", "NaN", "nan", "inf", "Infinity",
        ".5", "5.", ".", "1..5", "1.5.0", "1,5", "1.5 s", "1 s", "1S",
        "1MS", "1sec", "1min", "1us", "1d", "1ms5", "5mm", "1.0000001",
        "0.0000001", "1.2345ms", "0.0001ms", "1_000",
};

static const char *const too_large[] = {
        "604801", "604800.000001", "604800001ms", "10081m", "169h",
        "18446744073709551615", "18446744073709551616",
        "99999999999999999999999999999999", "99999999999999999999.5h",
        "1000000000ms",
};

START_TEST(test_parse_accepted) {
        for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
                uint64_t usec = 12345;
                int r = duration_parse(accepted[i].s, &usec);
                ck_assert_msg(r == 0, "\"%s\": %s", accepted[i].s, strerror(-r));
                ck_assert_msg(usec == accepted[i].usec, "\"%s\": %llu, want %llu",
                              accepted[i].s, (unsigned long long) usec,
                              (unsigned long long) accepted[i].usec);
        }
}
END_TEST

START_TEST(test_parse_invalid) {
        for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
                uint64_t usec = 12345;
                int r = duration_parse(invalid[i], &usec);
                ck_assert_msg(r == -EINVAL, "\"%s\": %d, want -EINVAL",
                              invalid[i], r);
                ck_assert_msg(usec == 12345, "\"%s\": result changed", invalid[i]);
        }
}
END_TEST

START_TEST(test_parse_too_large) {
        for (size_t i = 0; i < sizeof(too_large) / sizeof(too_large[0]); i++) {
                uint64_t usec = 12345;
                int r = duration_parse(too_large[i], &usec);
                ck_assert_msg(r == -ERANGE, "\"%s\": %d, want -ERANGE",
                              too_large[i], r);
                ck_assert_msg(usec == 12345, "\"%s\": result changed", too_large[i]);
        }
}
END_TEST

START_TEST(test_parse_null) {
        uint64_t usec;

        ck_assert_int_eq(duration_parse(NULL, &usec), -EINVAL);
        ck_assert_int_eq(duration_parse("1", NULL), -EINVAL);
}
END_TEST

static const struct {
        uint64_t usec;
        const char *s;
} formatted[] = {
        { 0,                    "0" },
        { 1,                    "0.000001" },
        { 10,                   "0.00001" },
        { 250000,               "0.25" },
        { 1500000,              "1.5" },
        { 1100000,              "1.1" },
        { 1000001,              "1.000001" },
        { 123456789,            "123.456789" },
        { 300000000,            "300" },
        { DURATION_MAX_USEC,    "604800" },
        { UINT64_MAX,           "18446744073709.551615" },
};

START_TEST(test_format) {
        char buf[DURATION_BUF];

        for (size_t i = 0; i < sizeof(formatted) / sizeof(formatted[0]); i++) {
                char *r = duration_format_sec(formatted[i].usec, buf, sizeof(buf));
                ck_assert_ptr_eq(r, buf);
                ck_assert_str_eq(buf, formatted[i].s);
        }
}
END_TEST

START_TEST(test_format_short_buffer) {
        char buf[8];

        memset(buf, 'x', sizeof(buf));
        duration_format_sec(123456789, buf, 5);
        ck_assert_str_eq(buf, "123.");
        duration_format_sec(300000000, buf, 1);
        ck_assert_str_eq(buf, "");
        buf[0] = 'x';
        duration_format_sec(1, buf, 0);         /* must not write */
        ck_assert_int_eq(buf[0], 'x');
}
END_TEST

/* What is formatted parses back to the same value. */
START_TEST(test_format_parse_roundtrip) {
        static const uint64_t values[] = {
                0, 1, 999999, 1000000, 1234567, 30000000, 604799999999,
                DURATION_MAX_USEC,
        };
        char buf[DURATION_BUF];

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                uint64_t usec;
                duration_format_sec(values[i], buf, sizeof(buf));
                ck_assert_int_eq(duration_parse(buf, &usec), 0);
                ck_assert_uint_eq(usec, values[i]);
        }
}
END_TEST

START_TEST(test_clocks) {
        uint64_t a = now_usec_monotonic();
        uint64_t b = now_usec_monotonic();
        uint64_t rt = now_usec_realtime();

        ck_assert_uint_gt(a, 0);
        ck_assert_uint_ge(b, a);
        /* After 2020-01-01 and before 2100-01-01. */
        ck_assert_uint_gt(rt, 1577836800ULL * USEC_PER_SEC);
        ck_assert_uint_lt(rt, 4102444800ULL * USEC_PER_SEC);
}
END_TEST

Suite *duration_suite(void) {
        Suite *s = suite_create("duration");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_parse_accepted);
        tcase_add_test(tc, test_parse_invalid);
        tcase_add_test(tc, test_parse_too_large);
        tcase_add_test(tc, test_parse_null);
        tcase_add_test(tc, test_format);
        tcase_add_test(tc, test_format_short_buffer);
        tcase_add_test(tc, test_format_parse_roundtrip);
        tcase_add_test(tc, test_clocks);
        suite_add_tcase(s, tc);
        return s;
}
