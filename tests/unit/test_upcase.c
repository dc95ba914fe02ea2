/* SPDX-License-Identifier: MIT */
/* Unit tests of the protocol core (daemon/upcase.c).
 *
 * Every expectation is checked for many splits of the input into feeds:
 * whole, every cut into two, every cut into three (short inputs), byte by
 * byte, and with EOF in a feed of its own.  Each feed writes into a heap
 * buffer of exactly UPCASE_OUT_MAX(n) bytes so that ASan catches a write
 * past the bound the header promises. */

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unistr.h>

#include "suites.h"
#include "upcase.h"
#include "upcase-internal.h"

/* Runs the statement after it once with each set of vector kernels this
 * build and CPU have, then goes back to the one the daemon would use. */
#define FOR_EACH_ISA(isa_)                                                   \
        for (enum upcase_isa isa_ = 0, _saved = upcase_get_isa();           \
             isa_ <= _UPCASE_ISA_MAX; isa_++)                                \
                if (isa_ == _UPCASE_ISA_MAX)                                 \
                        upcase_set_isa(_saved);                              \
                else if (upcase_set_isa(isa_))

/* Output of feeding one input in pieces. */
struct fed {
        uint8_t *out;
        size_t len;
        uint64_t invalid;
        bool quit;
};

static void fed_free(struct fed *f) {
        free(f->out);
        f->out = NULL;
}

/* Feeds one piece through a buffer of exactly the promised size. */
static void feed_piece(struct upcase *u, const uint8_t *in, size_t n, bool eof,
                       struct fed *f) {
        uint8_t *buf = malloc(UPCASE_OUT_MAX(n));
        ck_assert_ptr_nonnull(buf);

        size_t len = upcase_feed(u, in, n, eof, buf, &f->invalid);
        ck_assert_uint_le(len, UPCASE_OUT_MAX(n));
        memcpy(f->out + f->len, buf, len);
        f->len += len;
        free(buf);
}

/* Feeds in[0..n) cut at the ascending offsets cuts[0..ncuts); EOF comes
 * with the last piece, or in an empty feed of its own. */
static struct fed feed_cut(const uint8_t *in, size_t n, const size_t *cuts,
                           size_t ncuts, bool dot_quit, bool eof_apart) {
        struct fed f = { .out = malloc(UPCASE_OUT_MAX(n) + 16) };
        struct upcase u;
        size_t start = 0;

        ck_assert_ptr_nonnull(f.out);
        upcase_init(&u, dot_quit);
        for (size_t i = 0; i <= ncuts; i++) {
                size_t end = i < ncuts ? cuts[i] : n;
                bool last = i == ncuts;
                feed_piece(&u, in + start, end - start, last && !eof_apart, &f);
                start = end;
        }
        if (eof_apart)
                feed_piece(&u, in + n, 0, true, &f);
        f.quit = u.quit;
        return f;
}

static void hex(const uint8_t *s, size_t n, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n && o + 4 < size; i++)
                o += (size_t) snprintf(buf + o, size - o, "%02x ", s[i]);
}

struct want {
        const char *in;
        size_t n;
        const char *out;
        size_t len;
        uint64_t invalid;
        bool dot_quit;
        bool quit;
};

static void expect_fed(const struct want *w, struct fed *f, const char *how) {
        char got[512], exp[512], inp[512];
        bool same = f->len == w->len && memcmp(f->out, w->out, w->len) == 0;

        hex((const uint8_t *) w->in, w->n, inp, sizeof(inp));
        hex(f->out, f->len, got, sizeof(got));
        hex((const uint8_t *) w->out, w->len, exp, sizeof(exp));
        const char *isa = upcase_isa_name(upcase_get_isa());

        ck_assert_msg(same, "input [%s] fed %s (%s): got [%s], want [%s]",
                      inp, how, isa, got, exp);
        ck_assert_msg(f->invalid == w->invalid,
                      "input [%s] fed %s (%s): %llu invalid bytes, want %llu",
                      inp, how, isa, (unsigned long long) f->invalid,
                      (unsigned long long) w->invalid);
        ck_assert_msg(f->quit == w->quit,
                      "input [%s] fed %s (%s): quit %d, want %d",
                      inp, how, isa, f->quit, w->quit);
        fed_free(f);
}

static void expect_cut(const struct want *w, const size_t *cuts, size_t ncuts,
                       bool eof_apart) {
        char how[128];
        struct fed f = feed_cut((const uint8_t *) w->in, w->n, cuts, ncuts,
                                w->dot_quit, eof_apart);
        int o = snprintf(how, sizeof(how), "cut at {");

        for (size_t i = 0; i < ncuts && o < 100; i++)
                o += snprintf(how + o, sizeof(how) - (size_t) o, " %zu", cuts[i]);
        snprintf(how + o, sizeof(how) - (size_t) o, " }%s",
                 eof_apart ? ", EOF apart" : "");
        expect_fed(w, &f, how);
}

static void expect_bytewise(const struct want *w) {
        size_t *cuts = calloc(w->n + 1, sizeof(size_t));

        ck_assert_ptr_nonnull(cuts);
        for (size_t i = 0; i + 1 < w->n; i++)
                cuts[i] = i + 1;
        expect_cut(w, cuts, w->n > 0 ? w->n - 1 : 0, false);
        expect_cut(w, cuts, w->n > 0 ? w->n - 1 : 0, true);
        free(cuts);
}

static void expect_all_splits_isa(const struct want *w) {
        expect_cut(w, NULL, 0, false);
        expect_cut(w, NULL, 0, true);
        for (size_t i = 0; i <= w->n; i++)
                expect_cut(w, (size_t[]) { i }, 1, i % 2);
        if (w->n <= 24)
                for (size_t i = 0; i <= w->n; i++)
                        for (size_t j = i; j <= w->n; j++)
                                expect_cut(w, (size_t[]) { i, j }, 2, false);
        expect_bytewise(w);

        if (!w->dot_quit) {
                uint8_t *buf = malloc(UPCASE_OUT_MAX(w->n));
                uint64_t invalid = 0;
                ck_assert_ptr_nonnull(buf);
                size_t len = upcase_buf((const uint8_t *) w->in, w->n, buf,
                                        &invalid);
                struct fed f = { .out = buf, .len = len, .invalid = invalid };
                expect_fed(w, &f, "to upcase_buf");
        }
}

/* Checks w for every way of feeding it this file tries, with every set
 * of kernels. */
static void expect_all_splits(const struct want *w) {
        FOR_EACH_ISA(isa)
                expect_all_splits_isa(w);
}

/* String literals, embedded NULs allowed. */
#define EXPECT(in_, out_, invalid_)                                          \
        expect_all_splits(&(struct want) {                                   \
                .in = (in_), .n = sizeof(in_) - 1,                           \
                .out = (out_), .len = sizeof(out_) - 1,                      \
                .invalid = (invalid_) })
#define EXPECT_DOT_INVALID(in_, out_, quit_, invalid_)                      \
        expect_all_splits(&(struct want) {                                   \
                .in = (in_), .n = sizeof(in_) - 1,                           \
                .out = (out_), .len = sizeof(out_) - 1,                      \
                .invalid = (invalid_), .dot_quit = true, .quit = (quit_) })
#define EXPECT_DOT(in_, out_, quit_) EXPECT_DOT_INVALID(in_, out_, quit_, 0)

START_TEST(test_ascii) {
        EXPECT("", "", 0);
        EXPECT("ciao", "CIAO", 0);
        EXPECT("Hello, World! 123 {az} [AZ] `~@", "HELLO, WORLD! 123 {AZ} [AZ] `~@", 0);
        EXPECT("a\0b\x7f\n\r\t", "A\0B\x7f\n\r\t", 0);
}
END_TEST

START_TEST(test_ascii_all_bytes) {
        uint8_t in[128], out[UPCASE_OUT_MAX(128)];
        uint64_t invalid = 0;

        for (int c = 0; c < 128; c++)
                in[c] = (uint8_t) c;
        ck_assert_uint_eq(upcase_buf(in, 128, out, &invalid), 128);
        for (int c = 0; c < 128; c++)
                ck_assert_uint_eq(out[c], c >= 'a' && c <= 'z' ? c - 32 : c);
        ck_assert_uint_eq(invalid, 0);
}
END_TEST

/* Long ASCII runs go through the block loop: put a non-ASCII character
 * and an invalid byte at every offset of a few blocks. */
START_TEST(test_ascii_blocks) {
        enum { N = 200 };
        uint8_t in[N + 3], want[N + 3], out[UPCASE_OUT_MAX(N + 3)];

        for (size_t pos = 0; pos <= N; pos++) {
                for (size_t i = 0; i < N; i++) {
                        in[i] = (uint8_t) ('a' + i % 26);
                        want[i] = (uint8_t) ('A' + i % 26);
                }
                uint64_t invalid = 0;
                memcpy(in + pos, "\xc3\xa9", 2);        /* é -> É */
                memcpy(want + pos, "\xc3\x89", 2);
                in[pos + 2] = want[pos + 2] = 0xff;
                for (size_t i = pos + 3; i < N + 3; i++) {
                        in[i] = (uint8_t) ('a' + (i - 3) % 26);
                        want[i] = (uint8_t) ('A' + (i - 3) % 26);
                }
                size_t len = upcase_buf(in, N + 3, out, &invalid);
                ck_assert_uint_eq(len, N + 3);
                ck_assert_mem_eq(out, want, N + 3);
                ck_assert_uint_eq(invalid, 1);
        }
}
END_TEST

START_TEST(test_full_case_mapping) {
        EXPECT("ß", "SS", 0);
        EXPECT("straße", "STRASSE", 0);
        EXPECT("ﬁ", "FI", 0);
        EXPECT("ﬃ", "FFI", 0);
        EXPECT("ΐ", "\u0399\u0308\u0301", 0);
        EXPECT("ᾷ", "\u0391\u0342\u0399", 0);
        EXPECT("ŉ", "\u02bcN", 0);
        EXPECT("ǅ", "Ǆ", 0);
        EXPECT("ı i", "I I", 0);        /* no Turkish rules */
        EXPECT("ͅ", "Ι", 0);           /* U+0345 -> U+0399 */
}
END_TEST

START_TEST(test_text) {
        EXPECT("perché così", "PERCHÉ COSÌ", 0);
        EXPECT("καλημέρα κόσμε", "ΚΑΛΗΜΈΡΑ ΚΌΣΜΕ", 0);
        EXPECT("όσος", "ΌΣΟΣ", 0);
        EXPECT("привет, мир", "ПРИВЕТ, МИР", 0);
        EXPECT("città\nÀ è ù\r\n", "CITTÀ\nÀ È Ù\r\n", 0);
        EXPECT("日本語 한국어 ✓", "日本語 한국어 ✓", 0);
}
END_TEST

/* Every split point of 2-, 3- and 4-byte characters, with neighbours. */
START_TEST(test_multibyte_splits) {
        EXPECT("é", "É", 0);                                    /* 2 bytes */
        EXPECT("xéy", "XÉY", 0);
        EXPECT("€", "€", 0);                                    /* 3 bytes */
        EXPECT("ⓐ", "Ⓐ", 0);
        EXPECT("aⓐb", "AⒶB", 0);
        EXPECT("\xf0\x90\x90\xa8", "\xf0\x90\x90\x80", 0);      /* U+10428 */
        EXPECT("a\xf0\x90\x90\xa8" "b", "A\xf0\x90\x90\x80" "B", 0);
        EXPECT("\xf0\x9e\xa4\xa2", "\xf0\x9e\xa4\x80", 0);      /* U+1E922 */
        EXPECT("😀", "😀", 0);
        EXPECT("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", 0);      /* U+10FFFF */
        EXPECT("\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
               "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf", 0);
        EXPECT("\xc2\x80\xdf\xbf", "\xc2\x80\xdf\xbf", 0);
        EXPECT("\xf0\x90\x80\x80", "\xf0\x90\x80\x80", 0);      /* U+10000 */
}
END_TEST

START_TEST(test_invalid) {
        EXPECT("\x80", "\x80", 1);                              /* lone continuation */
        EXPECT("a\x80" "b", "A\x80" "B", 1);
        EXPECT("\xbf\xbf", "\xbf\xbf", 2);
        EXPECT("\xc0\x80", "\xc0\x80", 2);                      /* overlong NUL */
        EXPECT("\xc1\xbf", "\xc1\xbf", 2);
        EXPECT("\xe0\x80\x80", "\xe0\x80\x80", 3);              /* overlong */
        EXPECT("\xe0\x9f\xbf", "\xe0\x9f\xbf", 3);
        EXPECT("\xf0\x8f\xbf\xbf", "\xf0\x8f\xbf\xbf", 4);
        EXPECT("\xed\xa0\x80", "\xed\xa0\x80", 3);              /* surrogate */
        EXPECT("\xed\xbf\xbf", "\xed\xbf\xbf", 3);
        EXPECT("\xf4\x90\x80\x80", "\xf4\x90\x80\x80", 4);      /* > U+10FFFF */
        EXPECT("\xf5", "\xf5", 1);
        EXPECT("\xf5\x80\x80\x80", "\xf5\x80\x80\x80", 4);
        EXPECT("\xfe\xff", "\xfe\xff", 2);
        EXPECT("\xf8\x88\x80\x80\x80", "\xf8\x88\x80\x80\x80", 5);
}
END_TEST

START_TEST(test_truncated) {
        /* At EOF. */
        EXPECT("\xc3", "\xc3", 1);
        EXPECT("a\xc3", "A\xc3", 1);
        EXPECT("\xe2\x82", "\xe2\x82", 2);
        EXPECT("\xf0\x9f\x98", "\xf0\x9f\x98", 3);
        /* Followed by ASCII, by a valid character, by another start. */
        EXPECT("\xc3" "a", "\xc3" "A", 1);
        EXPECT("\xe2\x82" "a", "\xe2\x82" "A", 2);
        EXPECT("\xf0\x9f\x98" "a", "\xf0\x9f\x98" "A", 3);
        EXPECT("\xc3\xc3\xa9", "\xc3\xc3\x89", 1);
        EXPECT("\xe2\x82\xc3\xa9", "\xe2\x82\xc3\x89", 2);
        EXPECT("\xf0\x9f\x98\xf0\x9f\x98\x80", "\xf0\x9f\x98\xf0\x9f\x98\x80", 3);
        EXPECT("\xe2\x82\n", "\xe2\x82\n", 2);
        /* Valid text around invalid bytes is still mapped. */
        EXPECT("é\xffé\x80ß", "É\xffÉ\x80SS", 2);
}
END_TEST

START_TEST(test_invalid_counter_accumulates) {
        uint8_t out[UPCASE_OUT_MAX(8)];
        uint64_t invalid = 40;
        struct upcase u;

        upcase_init(&u, false);
        upcase_feed(&u, (const uint8_t *) "a\xff\xc3", 3, false, out, &invalid);
        ck_assert_uint_eq(invalid, 41);         /* "\xc3" is held back */
        upcase_feed(&u, (const uint8_t *) "b", 1, true, out, &invalid);
        ck_assert_uint_eq(invalid, 42);
        ck_assert_uint_eq(upcase_buf((const uint8_t *) "\x80\x80", 2, out, &invalid), 2);
        ck_assert_uint_eq(invalid, 44);
        ck_assert_uint_eq(upcase_buf((const uint8_t *) "ok", 2, out, &invalid), 2);
        ck_assert_uint_eq(invalid, 44);
}
END_TEST

START_TEST(test_held_tail) {
        uint8_t out[UPCASE_OUT_MAX(4)];
        uint64_t invalid = 0;
        struct upcase u;

        /* The held bytes are output when the character completes. */
        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\xe1\xbe", 2, false, out, &invalid), 0);
        ck_assert_uint_eq(u.ntail, 2);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\xb7", 1, false, out, &invalid), 6);
        ck_assert_mem_eq(out, "\u0391\u0342\u0399", 6);
        ck_assert_uint_eq(u.ntail, 0);
        ck_assert_uint_eq(invalid, 0);

        /* An empty feed keeps the tail; EOF flushes it as invalid. */
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\xf0", 1, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, NULL, 0, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\x9f", 1, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, NULL, 0, true, out, &invalid), 2);
        ck_assert_mem_eq(out, "\xf0\x9f", 2);
        ck_assert_uint_eq(invalid, 2);
}
END_TEST

START_TEST(test_dot_line) {
        EXPECT_DOT(".\n", "", true);
        EXPECT_DOT(".\r\n", "", true);
        EXPECT_DOT(".", "", true);
        EXPECT_DOT("abc\n.\n", "ABC\n", true);
        EXPECT_DOT("abc\r\n.\r\n", "ABC\r\n", true);
        EXPECT_DOT("\n.\n", "\n", true);
        EXPECT_DOT("x\n.\nmore", "X\n", true);
        EXPECT_DOT("x\n.\r\nmore\n.\n", "X\n", true);
        EXPECT_DOT("x\n.", "X\n", true);
        EXPECT_DOT("é\n.\n\xff", "É\n", true);
        EXPECT_DOT_INVALID("\xc3\n.\n", "\xc3\n", true, 1);
}
END_TEST

START_TEST(test_dot_ordinary) {
        EXPECT_DOT(".\r", ".\r", false);
        EXPECT_DOT(". \n", ". \n", false);
        EXPECT_DOT(".a", ".A", false);
        EXPECT_DOT(".a\n", ".A\n", false);
        EXPECT_DOT("a.\n", "A.\n", false);
        EXPECT_DOT("..\n", "..\n", false);
        EXPECT_DOT(" .\n", " .\n", false);
        EXPECT_DOT(".\r.\n", ".\r.\n", false);
        EXPECT_DOT(".\r\r\n", ".\r\r\n", false);
        EXPECT_DOT(".\ra", ".\rA", false);
        EXPECT_DOT(".é\n", ".É\n", false);
        EXPECT_DOT_INVALID(".\xff\n", ".\xff\n", false, 1);
        EXPECT_DOT("x.\ny.\n", "X.\nY.\n", false);
        EXPECT_DOT("\n\n..\n.x\n", "\n\n..\n.X\n", false);
        EXPECT_DOT("ciao", "CIAO", false);
}
END_TEST

/* Invalid bytes right before the "." line are counted; nothing after. */
START_TEST(test_dot_invalid_count) {
        EXPECT_DOT_INVALID("\xff\n.\n\xff\xff", "\xff\n", true, 1);
}
END_TEST

START_TEST(test_dot_split_feeds) {
        uint8_t out[UPCASE_OUT_MAX(8)];
        uint64_t invalid = 0;
        struct upcase u;

        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".", 1, false, out, &invalid), 0);
        ck_assert(!u.quit);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\n", 1, false, out, &invalid), 0);
        ck_assert(u.quit);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "abc", 3, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "x", 1, true, out, &invalid), 0);

        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".\r", 2, false, out, &invalid), 0);
        ck_assert(!u.quit);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "\n", 1, false, out, &invalid), 0);
        ck_assert(u.quit);

        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".", 1, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "x", 1, false, out, &invalid), 2);
        ck_assert_mem_eq(out, ".X", 2);
        ck_assert(!u.quit);

        /* Replies for the bytes before the "." line come in the same call. */
        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) "ab\n.\ncd", 7, false, out, &invalid), 3);
        ck_assert_mem_eq(out, "AB\n", 3);
        ck_assert(u.quit);
        ck_assert_uint_eq(invalid, 0);
}
END_TEST

START_TEST(test_no_dot_handling) {
        EXPECT(".\n", ".\n", 0);
        EXPECT(".", ".", 0);
        EXPECT("a\n.\r\nb", "A\n.\r\nB", 0);

        uint8_t out[UPCASE_OUT_MAX(8)];
        uint64_t invalid = 0;
        struct upcase u;
        upcase_init(&u, false);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".\n", 2, false, out, &invalid), 2);
        ck_assert(!u.quit);
}
END_TEST

/* The worst expansion, 3x, fills exactly the promised room. */
START_TEST(test_out_max) {
        enum { N = 3000 };
        uint8_t *in = malloc(2 * N), *out = malloc(UPCASE_OUT_MAX(2 * N));
        uint64_t invalid = 0;

        ck_assert_ptr_nonnull(in);
        ck_assert_ptr_nonnull(out);
        for (size_t i = 0; i < N; i++)
                memcpy(in + 2 * i, "ΐ", 2);
        ck_assert_uint_eq(upcase_buf(in, 2 * N, out, &invalid), 6 * N);
        for (size_t i = 0; i < N; i++)
                ck_assert_mem_eq(out + 6 * i, "\u0399\u0308\u0301", 6);

        /* The same after a held tail and after a held ".\r". */
        struct upcase u;
        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, in, 1, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, in + 1, 2 * N - 1, false, out, &invalid), 6 * N);
        ck_assert_uint_le(6 * N, UPCASE_OUT_MAX(2 * N - 1));
        ck_assert_uint_eq(invalid, 0);

        upcase_init(&u, true);
        ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".\r", 2, false, out, &invalid), 0);
        ck_assert_uint_eq(upcase_feed(&u, in, 2 * N, true, out, &invalid), 2 + 6 * N);
        ck_assert_mem_eq(out, ".\r\u0399\u0308\u0301", 8);
        free(in);
        free(out);
}
END_TEST

START_TEST(test_cut) {
        const uint8_t *s = (const uint8_t *) "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
        /*                                    0 1   2   3   4   5   6   7   8   9   10 */

        ck_assert_uint_eq(upcase_cut(s, 11, 11), 11);
        ck_assert_uint_eq(upcase_cut(s, 11, 100), 11);
        ck_assert_uint_eq(upcase_cut(s, 11, 0), 0);
        ck_assert_uint_eq(upcase_cut(s, 11, 1), 1);
        ck_assert_uint_eq(upcase_cut(s, 11, 2), 1);
        ck_assert_uint_eq(upcase_cut(s, 11, 3), 3);
        ck_assert_uint_eq(upcase_cut(s, 11, 4), 3);
        ck_assert_uint_eq(upcase_cut(s, 11, 5), 3);
        ck_assert_uint_eq(upcase_cut(s, 11, 6), 6);
        ck_assert_uint_eq(upcase_cut(s, 11, 7), 6);
        ck_assert_uint_eq(upcase_cut(s, 11, 8), 6);
        ck_assert_uint_eq(upcase_cut(s, 11, 9), 6);
        ck_assert_uint_eq(upcase_cut(s, 11, 10), 10);
        ck_assert_uint_eq(upcase_cut(s, 0, 0), 0);
}
END_TEST

START_TEST(test_cut_invalid) {
        /* Invalid bytes are single characters: cut anywhere. */
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xe2\x82" "a", 3, 1), 1);
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xe2\x82" "a", 3, 2), 2);
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\x80\x80\x80\x80\x80", 5, 3), 3);
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xed\xa0\x80", 3, 1), 1);
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xf4\x90\x80\x80", 4, 2), 2);
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xff\xc3\xa9", 3, 2), 1);
        /* A valid character straddling max whose lead byte is at max-3. */
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "ab\xf0\x9f\x98\x80", 6, 5), 2);
        /* Three continuation bytes before max: nothing straddles. */
        ck_assert_uint_eq(upcase_cut((const uint8_t *) "\xf0\x9f\x98\x80\xc3\xa9", 6, 4), 4);
}
END_TEST

/* Pseudo-random inputs built from interesting fragments: random splits
 * must give the output of a single feed. */
static const char *const fragments[] = {
        "a", "Z", "\n", "\r\n", ".", ".\n", ".\r", "\r", " ", "ß", "ΐ", "ﬁ",
        "é", "€", "😀", "\xf0\x90\x90\xa8", "\x80", "\xff", "\xc3", "\xe2\x82",
        "\xf0\x9f\x98", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80",
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghij",
};

static uint32_t rng_next(uint32_t *state) {
        /* xorshift32: deterministic across runs and platforms. */
        uint32_t x = *state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *state = x;
}

START_TEST(test_random_splits) {
        uint32_t rng = 0x2545f491u;
        uint8_t in[600];

        for (int round = 0; round < 400; round++) {
                size_t n = 0;
                while (n < sizeof(in) - 64) {
                        const char *f = fragments[rng_next(&rng) %
                                (sizeof(fragments) / sizeof(fragments[0]))];
                        memcpy(in + n, f, strlen(f));
                        n += strlen(f);
                        if (rng_next(&rng) % 20 == 0)
                                break;
                }
                bool dot_quit = round % 2;
                struct fed whole = feed_cut(in, n, NULL, 0, dot_quit, false);

                size_t cuts[64], ncuts = 0;
                for (size_t at = 0; ncuts < 64; ncuts++) {
                        at += rng_next(&rng) % 9;
                        if (at > n)
                                break;
                        cuts[ncuts] = at;
                }
                struct fed split = feed_cut(in, n, cuts, ncuts, dot_quit,
                                            round % 3 == 0);
                struct want w = { .in = (const char *) in, .n = n,
                                  .out = (const char *) whole.out,
                                  .len = whole.len, .invalid = whole.invalid,
                                  .dot_quit = dot_quit, .quit = whole.quit };
                expect_fed(&w, &split, "at random cuts");
                fed_free(&whole);
        }
}
END_TEST

/* The kernels can be chosen, and the build has the ones it should. */
START_TEST(test_isa) {
        enum upcase_isa saved = upcase_get_isa();

        ck_assert_int_lt(saved, _UPCASE_ISA_MAX);
        ck_assert(upcase_set_isa(UPCASE_ISA_PORTABLE));
        ck_assert_int_eq(upcase_get_isa(), UPCASE_ISA_PORTABLE);
#if defined(__x86_64__) && defined(__SSE2__)     /* as in upcase.c */
        ck_assert(upcase_set_isa(UPCASE_ISA_SSE2));
        ck_assert_int_ne(saved, UPCASE_ISA_PORTABLE);
#else
        ck_assert(!upcase_set_isa(UPCASE_ISA_SSE2));
#endif
        ck_assert(!upcase_set_isa(_UPCASE_ISA_MAX));
        ck_assert_str_eq(upcase_isa_name(UPCASE_ISA_AVX2), "avx2");
        ck_assert_str_eq(upcase_isa_name(_UPCASE_ISA_MAX), "?");
        ck_assert(upcase_set_isa(saved));
}
END_TEST

/* Characters at the edges of what the case table and the decoder
 * distinguish: encoding lengths, 256-code-point blocks with and without
 * mappings, mappings into another block or another length, the longest
 * expansions and the shrinking ones. */
START_TEST(test_table_edges) {
        /* First and last of each encoding length, around surrogates. */
        EXPECT("\xc2\x80\xdf\xbf", "\xc2\x80\xdf\xbf", 0);             /* U+0080 U+07FF */
        EXPECT("\xe0\xa0\x80\xef\xbf\xbf", "\xe0\xa0\x80\xef\xbf\xbf", 0); /* U+0800 U+FFFF */
        EXPECT("\xed\x9f\xbf\xee\x80\x80", "\xed\x9f\xbf\xee\x80\x80", 0); /* U+D7FF U+E000 */
        EXPECT("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf",
               "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 0);                  /* U+10000 U+10FFFF */

        /* Latin-1 and the block after it: ÿ maps to U+0178, one block
         * up; µ to Greek Μ; × and ÷ are not letters. */
        EXPECT("àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþ",
               "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞ", 0);
        EXPECT("×÷ÿµ", "×÷ŸΜ", 0);
        EXPECT("\xc4\x80\xc4\x81\xc7\xbf\xc8\x80\xc8\x81",
               "\xc4\x80\xc4\x80\xc7\xbe\xc8\x80\xc8\x80", 0);         /* U+0100 U+0101 U+01FF U+0200 U+0201 */
        EXPECT("ɐɑɒ", "ⱯⱭⱰ", 0);                                        /* 2 bytes -> 3 bytes */
        EXPECT("ⱥⱦ", "ȺȾ", 0);                                           /* 3 bytes -> 2 bytes */
        EXPECT("ıſ", "IS", 0);                                           /* 2 bytes -> 1 byte */
        EXPECT("ﬀﬆ", "FFST", 0);                                         /* 3 bytes -> 2 */
        EXPECT("ﬓﬗ", "ՄՆՄԽ", 0);                                         /* 3 bytes -> 4 */
        EXPECT("\u1f80\u1faf", "\u1f08\u0399\u1f6f\u0399", 0);       /* 3 bytes -> 5 */
        EXPECT("ʼn", "ʼN", 0);

        /* Every 6-byte result (14, the largest), 2 -> 6 and 3 -> 6 bytes. */
        EXPECT("\u0390\u03b0\u1f52\u1f54\u1f56\u1fb7\u1fc7\u1fd2\u1fd3\u1fd7\u1fe2\u1fe3",
               "\u0399\u0308\u0301\u03a5\u0308\u0301\u03a5\u0313\u0300\u03a5\u0313\u0301"
               "\u03a5\u0313\u0342\u0391\u0342\u0399\u0397\u0342\u0399\u0399\u0308\u0300"
               "\u0399\u0308\u0301\u0399\u0308\u0342\u03a5\u0308\u0300\u03a5\u0308\u0301", 0);
        EXPECT("\u1fe7\u1ff7", "\u03a5\u0308\u0342\u03a9\u0342\u0399", 0);

        /* Cyrillic, Armenian, Georgian Mtavruli, Cherokee, fullwidth. */
        EXPECT("яёѐџѣ", "ЯЁЀЏѢ", 0);
        EXPECT("աֆև", "ԱՖԵՒ", 0);
        EXPECT("ა", "Ა", 0);
        EXPECT("ꭰꮿ", "ᎠᏯ", 0);
        EXPECT("ａｚ", "ＡＺ", 0);
        EXPECT("ⓐⓩ", "ⒶⓏ", 0);

        /* Four-byte letters: Deseret, Osage, Vithkuqi, Old Hungarian,
         * Warang Citi, Medefaidrin, Adlam; and unmapped neighbours. */
        EXPECT("\xf0\x90\x90\xa8\xf0\x90\x91\x8f", "\xf0\x90\x90\x80\xf0\x90\x90\xa7", 0);
        EXPECT("\xf0\x90\x93\x98\xf0\x90\x93\xbb", "\xf0\x90\x92\xb0\xf0\x90\x93\x93", 0);
        EXPECT("\xf0\x90\x96\x97", "\xf0\x90\x95\xb0", 0);
        EXPECT("\xf0\x90\xb3\x80\xf0\x90\xb3\xb2", "\xf0\x90\xb2\x80\xf0\x90\xb2\xb2", 0);
        EXPECT("\xf0\x91\xa3\x80\xf0\x91\xa3\x9f", "\xf0\x91\xa2\xa0\xf0\x91\xa2\xbf", 0);
        EXPECT("\xf0\x96\xb9\xa0\xf0\x96\xb9\xbf", "\xf0\x96\xb9\x80\xf0\x96\xb9\x9f", 0);
        EXPECT("\xf0\x9e\xa4\xa2\xf0\x9e\xa5\x83", "\xf0\x9e\xa4\x80\xf0\x9e\xa4\xa1", 0);
        EXPECT("\xf0\x9e\xa5\x84\xf0\x9d\x90\x9a", "\xf0\x9e\xa5\x84\xf0\x9d\x90\x9a", 0);

        /* Mapped characters back to back, cut anywhere, then ASCII. */
        EXPECT("\ufb03\u00df\u0390\U0001e922z", "FFISS\u0399\u0308\u0301\U0001e900Z", 0);
}
END_TEST

/* A buffer of every scalar value, each followed by "\n" (as in the
 * integration test), and its length. */
static uint8_t *every_scalar(size_t *len) {
        uint8_t *buf = malloc(0x110000 * 5);
        size_t n = 0;

        ck_assert_ptr_nonnull(buf);
        for (uint32_t cp = 0; cp < 0x110000; cp++) {
                if (cp >= 0xd800 && cp <= 0xdfff)
                        continue;
                /* No ck_assert() in loops this long: each one writes
                 * to Check's pipe. */
                int k = u8_uctomb(buf + n, cp, 4);
                if (k <= 0)
                        ck_abort_msg("u8_uctomb(U+%04X) failed", (unsigned) cp);
                n += (size_t) k;
                buf[n++] = '\n';
        }
        *len = n;
        return buf;
}

/* The table says what libunistring says, for every scalar value, with
 * every set of kernels, mapped in one go and a piece at a time. */
START_TEST(test_every_scalar_libunistring) {
        size_t n, want_len;
        uint8_t *in = every_scalar(&n);
        uint8_t *want = u8_toupper(in, n, NULL, NULL, NULL, &want_len);
        uint8_t *out = malloc(UPCASE_OUT_MAX(n));

        ck_assert_ptr_nonnull(want);
        ck_assert_ptr_nonnull(out);
        FOR_EACH_ISA(isa) {
                uint64_t invalid = 0;
                size_t len = upcase_buf(in, n, out, &invalid);
                ck_assert_msg(len == want_len && memcmp(out, want, len) == 0,
                              "%s: every scalar value differs from u8_toupper()",
                              upcase_isa_name(isa));
                ck_assert_uint_eq(invalid, 0);

                /* Pieces of 1 to 13 bytes: tails held back and completed. */
                struct upcase u;
                size_t pos = 0, got = 0;
                upcase_init(&u, false);
                for (size_t piece = 1; pos < n; piece = piece % 13 + 1) {
                        size_t k = piece < n - pos ? piece : n - pos;
                        got += upcase_feed(&u, in + pos, k, pos + k == n,
                                           out + got, &invalid);
                        pos += k;
                }
                ck_assert_msg(got == want_len && memcmp(out, want, got) == 0,
                              "%s: every scalar value in pieces differs",
                              upcase_isa_name(isa));
        }
        free(in);
        free(want);
        free(out);
}
END_TEST

/* Strings dense in mapped, special-cased and combining characters map
 * as libunistring maps them whole: the table's assumption that upper-
 * casing is context free, checked on the library the tests run with. */
START_TEST(test_context_free) {
        static const char *const pieces[] = {
                "i", "I", "j", "ı", "İ", "\xcc\x87", "\xcc\x88", "\xcc\x81",
                "\xcd\x82", "\xcd\x85", "σ", "ς", "Σ", "ß", "ΐ", "ᾷ", "ﬃ",
                "ŉ", "ǰ", "ǅ", "á", "ὒ", " ", ".", "\n", "a", "\xf0\x9e\xa4\xa2",
        };
        uint32_t rng = 0x1234567u;
        uint8_t in[256], out[UPCASE_OUT_MAX(256)];

        for (int round = 0; round < 3000; round++) {
                size_t n = 0;
                while (n < sizeof(in) - 8 && rng_next(&rng) % 40) {
                        const char *p = pieces[rng_next(&rng) %
                                (sizeof(pieces) / sizeof(pieces[0]))];
                        memcpy(in + n, p, strlen(p));
                        n += strlen(p);
                }
                size_t want_len;
                uint8_t *want = u8_toupper(in, n, NULL, NULL, NULL, &want_len);
                ck_assert_ptr_nonnull(want);
                FOR_EACH_ISA(isa) {
                        uint64_t invalid = 0;
                        size_t len = upcase_buf(in, n, out, &invalid);
                        if (len != want_len || memcmp(out, want, len) != 0)
                                ck_abort_msg("%s: round %d differs from u8_toupper()",
                                             upcase_isa_name(isa), round);
                }
                free(want);
        }
}
END_TEST

/* ASCII at in[0..n) that passes every byte value below 0x80, and so the
 * edges of 'a'..'z', through every lane of the vectors. */
static void fill_ascii(uint8_t *in, uint8_t *want, size_t n, size_t seed) {
        for (size_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t) ((i * 37 + seed * 11) % 128);
                in[i] = c;
                want[i] = c >= 'a' && c <= 'z' ? (uint8_t) (c - 32) : c;
        }
}

/* The ASCII kernels at every alignment of the input (the output's moves
 * with it) and every length up to 130, with nothing else or with one
 * non-ASCII thing at each position.  Input and output end exactly where
 * the call may read and write, so ASan catches a kernel going past.  An
 * invalid byte goes through all of that; the other kinds through fewer
 * alignments, to keep the test quick under ASan. */
START_TEST(test_kernels_every_length) {
        static const struct {
                const char *in, *out;
                size_t n, len;
                uint64_t invalid;
        } specials[] = {
                { "", "", 0, 0, 0 },                    /* ASCII only */
                { "\xff", "\xff", 1, 1, 1 },
                { "\x80", "\x80", 1, 1, 1 },
                { "é", "É", 2, 2, 0 },
                { "\u0390", "\u0399\u0308\u0301", 2, 6, 0 },
                { "€", "€", 3, 3, 0 },
                { "\xf0\x9e\xa4\xa2", "\xf0\x9e\xa4\x80", 4, 4, 0 },
                { "\xe2\x82", "\xe2\x82", 2, 2, 2 },   /* incomplete */
        };
        enum { MAX = 130, ALIGN = 32 };
        uint8_t want[3 * MAX + 16];

        FOR_EACH_ISA(isa)
        for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++)
        for (size_t align = 0; align < ALIGN; align += k == 1 ? 1 : 5)
        for (size_t n = specials[k].n; n <= MAX; n++) {
                size_t sn = specials[k].n, slen = specials[k].len;
                size_t out_align = (align * 7) % ALIGN;
                uint8_t *inbuf = malloc(align + n);
                uint8_t *outbuf = malloc(out_align + UPCASE_OUT_MAX(n));
                ck_assert_ptr_nonnull(inbuf);
                ck_assert_ptr_nonnull(outbuf);
                uint8_t *in = inbuf + align, *out = outbuf + out_align;

                for (size_t pos = 0; pos + sn <= n; pos++) {
                        fill_ascii(in, want, pos, n + pos);
                        memcpy(in + pos, specials[k].in, sn);
                        memcpy(want + pos, specials[k].out, slen);
                        fill_ascii(in + pos + sn, want + pos + slen,
                                   n - pos - sn, n + pos + 1);

                        uint64_t invalid = 0;
                        size_t len = upcase_buf(in, n, out, &invalid);
                        if (len != n - sn + slen || memcmp(out, want, len) != 0 ||
                            invalid != specials[k].invalid)
                                ck_abort_msg("%s: align %zu, length %zu, "
                                             "special %zu at %zu",
                                             upcase_isa_name(isa), align, n, k, pos);
                        if (sn == 0)
                                break;  /* nothing to move */
                }
                free(inbuf);
                free(outbuf);
        }
}
END_TEST

/* The "." line finders at every alignment (up to 32), length up to 130
 * and position of the line; and dots that do not begin a line, which
 * must not stop the stream. */
START_TEST(test_dot_line_every_position) {
        enum { MAX = 130 };
        uint8_t want[MAX + 1];

        FOR_EACH_ISA(isa)
        for (size_t align = 0; align < 32; align++)
        for (size_t n = 1; n <= MAX; n++) {
                uint8_t *inbuf = malloc(align + n);
                uint8_t *out = malloc(UPCASE_OUT_MAX(n));
                ck_assert_ptr_nonnull(inbuf);
                ck_assert_ptr_nonnull(out);
                uint8_t *in = inbuf + align;

                for (size_t pos = 0; pos < n; pos++) {
                        /* Lines of 7 bytes, no "." anywhere... */
                        for (size_t i = 0; i < n; i++) {
                                in[i] = i % 7 == 6 ? '\n' : (uint8_t) ('a' + (i + pos) % 26);
                                want[i] = in[i] == '\n' ? '\n' : (uint8_t) (in[i] - 32);
                        }
                        /* ...but for a "." line at pos, ended by "\n" or
                         * EOF. */
                        if (pos > 0)
                                in[pos - 1] = want[pos - 1] = '\n';
                        in[pos] = '.';
                        if (pos + 1 < n)
                                in[pos + 1] = '\n';

                        struct upcase u;
                        uint64_t invalid = 0;
                        upcase_init(&u, true);
                        size_t len = upcase_feed(&u, in, n, true, out, &invalid);
                        if (!u.quit || len != pos || memcmp(out, want, len) != 0)
                                ck_abort_msg("%s: align %zu, length %zu, "
                                             "\".\" line at %zu",
                                             upcase_isa_name(isa), align, n, pos);

                        /* Not a "." line: ".x"... */
                        if (pos + 1 < n) {
                                in[pos + 1] = 'x';
                                want[pos] = '.';
                                want[pos + 1] = 'X';
                                upcase_init(&u, true);
                                len = upcase_feed(&u, in, n, false, out, &invalid);
                                if (u.quit || len != n || memcmp(out, want, n) != 0)
                                        ck_abort_msg("%s: align %zu, length %zu, "
                                                     "\".x\" at %zu",
                                                     upcase_isa_name(isa), align, n, pos);
                        }
                        /* ...or a "." in mid-line. */
                        if (pos > 0) {
                                in[pos - 1] = want[pos - 1] = ' ';
                                in[pos] = want[pos] = '.';
                                if (pos + 1 < n)
                                        in[pos + 1] = want[pos + 1] = '\n';
                                upcase_init(&u, true);
                                len = upcase_feed(&u, in, n, true, out, &invalid);
                                if (u.quit || len != n || memcmp(out, want, n) != 0)
                                        ck_abort_msg("%s: align %zu, length %zu, "
                                                     "\" .\" at %zu",
                                                     upcase_isa_name(isa), align, n, pos);
                        }
                        if (invalid != 0)
                                ck_abort_msg("invalid bytes in ASCII");
                }
                free(inbuf);
                free(out);
        }
}
END_TEST

/* Many "." lines candidates and short lines in one feed: each line is
 * mapped, the first real "." line stops the stream. */
START_TEST(test_dot_line_many_lines) {
        enum { LINES = 3000 };
        uint8_t *in = malloc(LINES * 4 + 3), *out = malloc(UPCASE_OUT_MAX(LINES * 4 + 3));
        uint8_t *want = malloc(LINES * 4);

        ck_assert_ptr_nonnull(in);
        ck_assert_ptr_nonnull(out);
        ck_assert_ptr_nonnull(want);
        for (size_t i = 0; i < LINES; i++) {
                memcpy(in + 4 * i, i % 3 ? "ab\n" "." : ".x\n" "c", 4);
                memcpy(want + 4 * i, i % 3 ? "AB\n" "." : ".X\n" "C", 4);
        }
        /* The "." that begins each line is followed by another letter,
         * so only the very last one, followed by "\n", quits. */
        for (size_t i = 0; i + 1 < LINES; i++)
                if (in[4 * i + 3] == '.') {
                        in[4 * i + 4] = '.';
                        want[4 * i + 4] = '.';
                }
        memcpy(in + 4 * LINES, "..\n", 3);
        FOR_EACH_ISA(isa) {
                struct upcase u;
                uint64_t invalid = 0;
                upcase_init(&u, true);
                size_t len = upcase_feed(&u, in, LINES * 4 + 3, false, out, &invalid);
                ck_assert(!u.quit);
                ck_assert_uint_eq(len, LINES * 4 + 3);
                ck_assert_mem_eq(out, want, LINES * 4);
                ck_assert_mem_eq(out + LINES * 4, "..\n", 3);
                ck_assert_uint_eq(upcase_feed(&u, (const uint8_t *) ".\n", 2, false,
                                              out, &invalid), 0);
                ck_assert(u.quit);
        }
        free(in);
        free(out);
        free(want);
}
END_TEST

Suite *upcase_suite(void) {
        Suite *s = suite_create("upcase");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_ascii);
        tcase_add_test(tc, test_ascii_all_bytes);
        tcase_add_test(tc, test_ascii_blocks);
        tcase_add_test(tc, test_full_case_mapping);
        tcase_add_test(tc, test_text);
        tcase_add_test(tc, test_multibyte_splits);
        tcase_add_test(tc, test_invalid);
        tcase_add_test(tc, test_truncated);
        tcase_add_test(tc, test_invalid_counter_accumulates);
        tcase_add_test(tc, test_held_tail);
        tcase_add_test(tc, test_dot_line);
        tcase_add_test(tc, test_dot_ordinary);
        tcase_add_test(tc, test_dot_invalid_count);
        tcase_add_test(tc, test_dot_split_feeds);
        tcase_add_test(tc, test_no_dot_handling);
        tcase_add_test(tc, test_out_max);
        tcase_add_test(tc, test_cut);
        tcase_add_test(tc, test_cut_invalid);
        tcase_add_test(tc, test_random_splits);
        suite_add_tcase(s, tc);

        /* The case table and the vector kernels, against libunistring
         * and at every alignment: more work than the rest, hence more
         * time (an ASan build is several times slower). */
        TCase *tk = tcase_create("table and kernels");
        tcase_set_timeout(tk, 120);
        tcase_add_test(tk, test_isa);
        tcase_add_test(tk, test_table_edges);
        tcase_add_test(tk, test_every_scalar_libunistring);
        tcase_add_test(tk, test_context_free);
        tcase_add_test(tk, test_kernels_every_length);
        tcase_add_test(tk, test_dot_line_every_position);
        tcase_add_test(tk, test_dot_line_many_lines);
        suite_add_tcase(s, tk);
        return s;
}
