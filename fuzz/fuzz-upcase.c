/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the stream transform (daemon/upcase.h).
 *
 * Input layout:
 *   byte 0      flags: bit 0 dot_quit, bits 1-2 the kernels (ISA) used for
 *               the split feeds, bit 3 eof rides on the last chunk instead
 *               of an empty feed of its own
 *   byte 1      k = number of split bytes (0..7)
 *   bytes 2..   k split bytes, used in turn as chunk lengths: 0..127, or
 *               (b & 0x7f) * 16 with bit 7 set, so that both one-byte
 *               dribbles and chunks longer than the vector kernels' steps
 *               happen; 0 is an empty feed, which must be harmless
 *   the rest    the text
 *
 * The split output is checked against an independent reference computed
 * here, byte by byte, from RFC 3629 and libunistring's u8_toupper() per
 * character (which is what tools/gen-case-table.c tabulates): that catches
 * the table and the vector kernels going wrong, not only split dependence.
 * Besides: one call with everything must give the same bytes and invalid
 * count under every ISA this CPU has, each feed stays within
 * UPCASE_OUT_MAX() (the output buffers are allocated exactly that big, so
 * ASan sees a write past it), and upcase_cut() is exact for every max. */

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>

#include "upcase.h"
#include "upcase-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

/* Growable byte buffer for the outputs. */
struct bytes {
        uint8_t *p;
        size_t len, size;
};

static void bytes_put(struct bytes *b, const uint8_t *s, size_t n) {
        if (b->len + n > b->size) {
                b->size = (b->len + n) * 2 + 64;
                b->p = realloc(b->p, b->size);
                check(b->p);
        }
        if (n > 0)
                memcpy(b->p + b->len, s, n);
        b->len += n;
}

/* Length of the valid UTF-8 sequence at s[0..n) per RFC 3629 (no
 * overlongs, surrogates or code points above U+10FFFF), or 0 when s[0]
 * does not start one; an unfinished sequence at the end counts as not
 * valid, as at EOF.  Written from the RFC's table rather than shared with
 * upcase.c, so that a mistake there is not repeated here. */
static size_t ref_sequence(const uint8_t *s, size_t n) {
        static const struct {
                uint8_t first_lo, first_hi, second_lo, second_hi, len;
        } forms[] = {
                { 0xC2, 0xDF, 0x80, 0xBF, 2 },
                { 0xE0, 0xE0, 0xA0, 0xBF, 3 },
                { 0xE1, 0xEC, 0x80, 0xBF, 3 },
                { 0xED, 0xED, 0x80, 0x9F, 3 },
                { 0xEE, 0xEF, 0x80, 0xBF, 3 },
                { 0xF0, 0xF0, 0x90, 0xBF, 4 },
                { 0xF1, 0xF3, 0x80, 0xBF, 4 },
                { 0xF4, 0xF4, 0x80, 0x8F, 4 },
        };

        if (n == 0)
                return 0;
        if (s[0] < 0x80)
                return 1;
        for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
                size_t len = forms[f].len;

                if (s[0] < forms[f].first_lo || s[0] > forms[f].first_hi)
                        continue;
                if (n < len || s[1] < forms[f].second_lo || s[1] > forms[f].second_hi)
                        return 0;
                for (size_t i = 2; i < len; i++)
                        if (s[i] < 0x80 || s[i] > 0xBF)
                                return 0;
                return len;
        }
        return 0;
}

/* str.upper() with surrogateescape, the slow and obvious way. */
static void ref_upcase(const uint8_t *in, size_t n, struct bytes *out, uint64_t *invalid) {
        for (size_t i = 0; i < n;) {
                size_t len = ref_sequence(in + i, n - i);

                if (len == 0) {
                        bytes_put(out, in + i, 1);
                        (*invalid)++;
                        i++;
                } else if (len == 1) {
                        uint8_t c = (uint8_t) toupper(in[i]);

                        /* The "C" locale: only a..z change. */
                        check(c == in[i] || (in[i] >= 'a' && in[i] <= 'z'));
                        bytes_put(out, &c, 1);
                        i++;
                } else {
                        uint8_t buf[32];
                        size_t m = sizeof(buf);
                        uint8_t *r = u8_toupper(in + i, len, NULL, NULL, buf, &m);

                        check(r);
                        bytes_put(out, r, m);
                        if (r != buf)
                                free(r);
                        i += len;
                }
        }
}

/* With dot_quit the stream is the text before the first line that is
 * exactly "." (ended by "\n", "\r\n" or EOF; ".\r" at EOF is not one).
 * Returns that length. */
static size_t ref_dot_prefix(const uint8_t *in, size_t n) {
        for (size_t start = 0; start < n;) {
                const uint8_t *nl = memchr(in + start, '\n', n - start);
                size_t end = nl ? (size_t) (nl - in) : n;
                size_t len = end - start;

                if ((len == 1 && in[start] == '.') ||
                    (len == 2 && nl && in[start] == '.' && in[start + 1] == '\r'))
                        return start;
                if (!nl)
                        break;
                start = end + 1;
        }
        return n;
}

/* The ISAs this build and CPU have. */
static enum upcase_isa isas[_UPCASE_ISA_MAX];
static size_t n_isas;

static void init_isas(void) {
        enum upcase_isa best = upcase_get_isa();

        for (int i = 0; i < _UPCASE_ISA_MAX; i++)
                if (upcase_set_isa((enum upcase_isa) i))
                        isas[n_isas++] = (enum upcase_isa) i;
        check(upcase_set_isa(best));
        check(n_isas > 0);
}

/* One upcase_feed() call on an input and an output buffer of exactly the
 * sizes promised, so that ASan catches reads and writes past either. */
static size_t feed(struct upcase *u, const uint8_t *in, size_t n, bool eof,
                   struct bytes *out, uint64_t *invalid) {
        uint8_t *copy = malloc(n > 0 ? n : 1);
        uint8_t *buf = malloc(UPCASE_OUT_MAX(n));
        bool quit = u->quit;
        size_t r;

        check(copy && buf);
        if (n > 0)
                memcpy(copy, in, n);
        r = upcase_feed(u, copy, n, eof, buf, invalid);
        check(r <= UPCASE_OUT_MAX(n));
        /* Once quit, everything is ignored. */
        check(!quit || r == 0);
        bytes_put(out, buf, r);
        free(buf);
        free(copy);
        return r;
}

/* The whole text in one call. */
static void feed_whole(bool dot_quit, const uint8_t *text, size_t n,
                       struct bytes *out, uint64_t *invalid) {
        struct upcase u;

        upcase_init(&u, dot_quit);
        feed(&u, text, n, true, out, invalid);
}

/* upcase_cut() against the reference's sequence boundaries: the answer is
 * max unless max falls inside a valid sequence, else where that starts. */
static void check_cut(const uint8_t *s, size_t n) {
        uint8_t *inside = calloc(n + 1, 1);   /* inside[i]: a sequence spans i */

        check(inside);
        for (size_t i = 0; i < n;) {
                size_t len = ref_sequence(s + i, n - i);

                if (len == 0)
                        len = 1;
                for (size_t j = 1; j < len; j++)
                        inside[i + j] = 1;
                i += len;
        }
        for (size_t max = 0; max <= n + 1; max++) {
                size_t cut = upcase_cut(s, n, max), want;

                if (n <= max)
                        want = n;
                else {
                        want = max;
                        while (want > 0 && inside[want])
                                want--;
                }
                check(cut == want);
        }
        free(inside);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct bytes split = {}, whole = {}, ref = {};
        uint64_t split_invalid = 0, ref_invalid = 0;
        const uint8_t *pattern, *text;
        size_t k, n, ref_len;
        struct upcase u;
        bool dot_quit, eof_on_last;
        uint8_t flags;

        if (n_isas == 0)
                init_isas();
        if (size < 2)
                return 0;
        flags = data[0];
        k = data[1] % 8;
        if (size < 2 + k)
                return 0;
        pattern = data + 2;
        text = data + 2 + k;
        n = size - 2 - k;
        dot_quit = flags & 1;
        eof_on_last = flags & 8;

        /* The reference. */
        ref_len = dot_quit ? ref_dot_prefix(text, n) : n;
        ref_upcase(text, ref_len, &ref, &ref_invalid);

        /* The split feeds, on the ISA the input asks for. */
        check(upcase_set_isa(isas[(flags >> 1 & 3) % n_isas]));
        upcase_init(&u, dot_quit);
        for (size_t off = 0, i = 0;; i++) {
                size_t len = n - off;
                bool last;

                if (k > 0) {
                        uint8_t b = pattern[i % k];

                        len = b & 0x80 ? (size_t) (b & 0x7f) * 16 : b;
                        /* Empty feeds in the first round only, so that an
                         * all-zero pattern still gets through the text. */
                        if (len == 0 && i >= k)
                                len = 1;
                        if (len > n - off)
                                len = n - off;
                }
                last = off + len == n && (len > 0 || i + 1 >= k);
                feed(&u, text + off, len, eof_on_last && last, &split, &split_invalid);
                off += len;
                if (last)
                        break;
        }
        if (!eof_on_last)
                feed(&u, NULL, 0, true, &split, &split_invalid);
        if (u.quit) {
                /* Once the "." line was seen, nothing more comes out. */
                check(dot_quit);
                check(feed(&u, text, n, false, &split, NULL) == 0);
        }

        check(split.len == ref.len);
        check(split.len == 0 || memcmp(split.p, ref.p, ref.len) == 0);
        check(split_invalid == ref_invalid);

        /* The same text in one call, on every ISA. */
        for (size_t i = 0; i < n_isas; i++) {
                uint64_t whole_invalid = 0;

                check(upcase_set_isa(isas[i]));
                whole.len = 0;
                feed_whole(dot_quit, text, n, &whole, &whole_invalid);
                check(whole.len == split.len);
                check(whole.len == 0 || memcmp(whole.p, split.p, split.len) == 0);
                check(whole_invalid == split_invalid);

                /* And a datagram is the text without "." handling. */
                if (!dot_quit) {
                        uint8_t *buf = malloc(UPCASE_OUT_MAX(n));
                        uint64_t buf_invalid = 0;
                        size_t r;

                        check(buf);
                        r = upcase_buf(text, n, buf, &buf_invalid);
                        check(r == ref.len && (r == 0 || memcmp(buf, ref.p, r) == 0));
                        check(buf_invalid == ref_invalid);
                        free(buf);
                }
        }

        check_cut(text, n);

        free(split.p);
        free(whole.p);
        free(ref.p);
        return 0;
}
