/* SPDX-License-Identifier: MIT */
/* The protocol core: Python's str.upper() on a UTF-8 byte stream.
 *
 * The input is cut into three kinds of runs:
 *
 *  - ASCII bytes, mapped here with a branch-free loop the compiler
 *    vectorises (the common case: lab traffic is mostly ASCII);
 *  - complete, valid non-ASCII characters, mapped by libunistring's
 *    u8_toupper() with no language (so no Turkish/Lithuanian rules, like
 *    Python) and no normalisation;
 *  - invalid bytes, copied unchanged one at a time, as Python's
 *    "surrogateescape" error handler round-trips them.
 *
 * Upper-casing is context free once the language is NULL (the only
 * context-dependent rule in SpecialCasing.txt without a language is
 * Final_Sigma, which concerns lower-casing), so mapping a text run by run
 * gives the same bytes as mapping it in one go.  That is what makes the
 * output independent of how the stream was split into feeds.
 *
 * u8_toupper() writes straight into the caller's output buffer: it only
 * allocates when the result does not fit, and UPCASE_OUT_MAX() leaves
 * room for the worst expansion (3x, U+0390 and U+03B0). */

#include <stdlib.h>
#include <string.h>
#include <unicase.h>

#include "upcase.h"

enum upcase_line_state {
        LINE_START,     /* the next byte begins a line */
        LINE_MID,       /* inside a line: "." is ordinary text */
        LINE_DOT,       /* "." held back at the start of a line */
        LINE_DOT_CR,    /* ".\r" held back at the start of a line */
};

/* Returned by utf8_sequence() besides a length. */
#define SEQ_INVALID     (-1)
#define SEQ_INCOMPLETE  0

/* Blocks this long are tested for ASCII with one OR-reduction. */
#define ASCII_BLOCK 32

/* Where the output of one call goes. */
struct sink {
        uint8_t *buf;
        size_t len;             /* bytes written so far */
        size_t size;            /* UPCASE_OUT_MAX() of the call's input */
        uint64_t invalid;       /* invalid bytes passed through */
};

void upcase_init(struct upcase *u, bool dot_quit) {
        memset(u, 0, sizeof(*u));
        u->line = LINE_START;
        u->dot_quit = dot_quit;
}

/* Looks at the sequence starting at s[0], per RFC 3629 (no overlongs, no
 * surrogates, nothing above U+10FFFF).  Returns its length (1..4) when it
 * is complete and valid, SEQ_INCOMPLETE when s[0..n) is a valid but
 * unfinished prefix, SEQ_INVALID when s[0] cannot start a valid sequence
 * here: then s[0] alone is invalid and decoding resumes at s[1]. */
static int utf8_sequence(const uint8_t *s, size_t n) {
        uint8_t c = s[0];
        uint8_t lo = 0x80, hi = 0xBF;   /* range of the second byte */
        int len;

        if (c < 0x80)
                return 1;
        if (c < 0xC2)                   /* continuation, or overlong C0/C1 */
                return SEQ_INVALID;
        if (c < 0xE0)
                len = 2;
        else if (c < 0xF0) {
                len = 3;
                if (c == 0xE0)
                        lo = 0xA0;      /* overlong */
                else if (c == 0xED)
                        hi = 0x9F;      /* surrogates */
        } else if (c < 0xF5) {
                len = 4;
                if (c == 0xF0)
                        lo = 0x90;      /* overlong */
                else if (c == 0xF4)
                        hi = 0x8F;      /* above U+10FFFF */
        } else
                return SEQ_INVALID;

        for (int i = 1; i < len; i++) {
                if ((size_t) i >= n)
                        return SEQ_INCOMPLETE;
                if (s[i] < lo || s[i] > hi)
                        return SEQ_INVALID;
                lo = 0x80;
                hi = 0xBF;
        }
        return len;
}

static void put_bytes(struct sink *o, const uint8_t *s, size_t n) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
}

static void put_invalid(struct sink *o, const uint8_t *s, size_t n) {
        put_bytes(o, s, n);
        o->invalid += n;
}

static inline uint8_t ascii_toupper(uint8_t c) {
        return (uint8_t) (c - 'a') < 26 ? (uint8_t) (c - ('a' - 'A')) : c;
}

/* Upper-cases the ASCII bytes at the start of in[0..n) into out and
 * returns how many there were.  Bytes of out past that count, up to
 * out[n - 1], may be scribbled on; the caller overwrites them.
 *
 * Loops of a fixed trip count with no early exit are what gcc -O2
 * vectorises, so whole blocks are mapped and OR-tested for a high bit
 * first; the block holding the first non-ASCII byte is redone bytewise. */
static size_t ascii_upper_prefix(const uint8_t *restrict in, size_t n,
                                 uint8_t *restrict out) {
        size_t i = 0;

        for (; i + ASCII_BLOCK <= n; i += ASCII_BLOCK) {
                uint8_t any = 0;
                for (size_t j = 0; j < ASCII_BLOCK; j++) {
                        any |= in[i + j];
                        out[i + j] = ascii_toupper(in[i + j]);
                }
                if (any & 0x80)
                        break;
        }
        for (; i < n && in[i] < 0x80; i++)
                out[i] = ascii_toupper(in[i]);
        return i;
}

/* Length of the run of complete, valid non-ASCII characters at s. */
static size_t unicode_run_len(const uint8_t *s, size_t n) {
        size_t i = 0;

        while (i < n) {
                int len = utf8_sequence(s + i, n - i);
                if (len < 2)
                        break;
                i += (size_t) len;
        }
        return i;
}

/* Maps n bytes of valid UTF-8. */
static void unicode_upper(const uint8_t *s, size_t n, struct sink *o) {
        uint8_t *dst = o->buf + o->len;
        size_t room = o->size - o->len;
        size_t len = room;
        uint8_t *r;

        r = u8_toupper(s, n, NULL, NULL, dst, &len);
        if (r == dst) {
                o->len += len;
                return;
        }
        /* Not reached while no character maps to more than 3 times its
         * length (tests/integration/test_unicode.py checks every code
         * point).  Stay correct and bounded anyway: use a result that
         * fits, else (or on ENOMEM) pass the text through unchanged. */
        if (r && len <= room)
                put_bytes(o, r, len);
        else
                put_bytes(o, s, n);
        free(r);
}

/* Maps in[0..n) except for an incomplete sequence at its very end, which
 * is left to the caller.  Returns the number of bytes consumed. */
static size_t map_text(const uint8_t *in, size_t n, struct sink *o) {
        size_t i = 0;

        while (i < n) {
                size_t run = ascii_upper_prefix(in + i, n - i,
                                                o->buf + o->len);
                if (run > 0) {
                        o->len += run;
                        i += run;
                        continue;
                }

                run = unicode_run_len(in + i, n - i);
                if (run > 0) {
                        unicode_upper(in + i, run, o);
                        i += run;
                        continue;
                }

                if (utf8_sequence(in + i, n - i) == SEQ_INCOMPLETE)
                        break;
                put_invalid(o, in + i, 1);
                i++;
        }
        return i;
}

static void flush_tail(struct upcase *u, struct sink *o) {
        put_invalid(o, u->tail, u->ntail);
        u->ntail = 0;
}

/* Completes the sequence held back by the previous feed with the first
 * bytes of this one.  Returns the number of input bytes consumed. */
static size_t complete_tail(struct upcase *u, const uint8_t *in, size_t n,
                            struct sink *o) {
        uint8_t seq[4];
        size_t held = u->ntail;
        size_t take = n < sizeof(seq) - held ? n : sizeof(seq) - held;

        memcpy(seq, u->tail, held);
        memcpy(seq + held, in, take);

        int len = utf8_sequence(seq, held + take);
        if (len == SEQ_INCOMPLETE) {
                /* All of this (short) input extends the prefix. */
                memcpy(u->tail, seq, held + take);
                u->ntail = (uint8_t) (held + take);
                return take;
        }
        if (len == SEQ_INVALID) {
                /* The held bytes are invalid; the byte that broke the
                 * sequence is looked at afresh by the caller. */
                flush_tail(u, o);
                return 0;
        }
        unicode_upper(seq, (size_t) len, o);
        u->ntail = 0;
        return (size_t) len - held;
}

/* Outputs the "." or ".\r" held back at the start of a line, which turned
 * out not to be a "." line. */
static void release_dot(struct upcase *u, struct sink *o) {
        static const uint8_t held[] = ".\r";

        put_bytes(o, held, u->line == LINE_DOT_CR ? 2 : 1);
        u->line = LINE_MID;
}

/* Runs the "." line state machine on the first byte of a line, or on the
 * byte after a held "." or ".\r".  Returns 1 when it consumed the byte, 0
 * when the byte is ordinary text. */
static size_t step_line_start(struct upcase *u, uint8_t c, struct sink *o) {
        switch (u->line) {
        case LINE_START:
                if (c == '.') {
                        u->line = LINE_DOT;
                        return 1;
                }
                u->line = LINE_MID;
                return 0;
        case LINE_DOT:
        case LINE_DOT_CR:
                if (c == '\r' && u->line == LINE_DOT) {
                        u->line = LINE_DOT_CR;
                        return 1;
                }
                if (c == '\n') {
                        u->quit = true;
                        return 1;
                }
                release_dot(u, o);
                return 0;
        default:
                u->line = LINE_MID;
                return 0;
        }
}

/* Consumes a prefix of in[0..n), n > 0: one byte of "." line handling, or
 * text up to and including the next "\n" (with dot_quit) or to the end.
 * Returns the number of bytes consumed. */
static size_t feed_step(struct upcase *u, const uint8_t *in, size_t n,
                        struct sink *o) {
        size_t seg = n;

        if (u->dot_quit) {
                if (u->line != LINE_MID)
                        return step_line_start(u, in[0], o);
                const uint8_t *nl = memchr(in, '\n', n);
                if (nl)
                        seg = (size_t) (nl - in) + 1;
        }

        size_t used = map_text(in, seg, o);
        if (used < seg) {
                /* An unfinished sequence can only be at the very end of
                 * the input: a segment ending in "\n" has none. */
                u->ntail = (uint8_t) (seg - used);
                memcpy(u->tail, in + used, u->ntail);
        } else if (u->dot_quit && in[seg - 1] == '\n')
                u->line = LINE_START;
        return seg;
}

/* The stream ends: what was held back is settled. */
static void finish(struct upcase *u, struct sink *o) {
        if (u->ntail > 0)
                flush_tail(u, o);
        if (!u->dot_quit)
                return;
        if (u->line == LINE_DOT)
                u->quit = true;         /* "." then EOF */
        else if (u->line == LINE_DOT_CR)
                release_dot(u, o);      /* ".\r" then EOF is not a "." line */
}

size_t upcase_feed(struct upcase *u, const uint8_t *in, size_t n, bool eof,
                   uint8_t *out, uint64_t *invalid) {
        struct sink o = { .buf = out, .size = UPCASE_OUT_MAX(n) };
        size_t used = 0;

        if (u->quit)
                return 0;

        if (u->ntail > 0 && n > 0)
                used = complete_tail(u, in, n, &o);
        while (used < n && !u->quit)
                used += feed_step(u, in + used, n - used, &o);
        if (eof && !u->quit)
                finish(u, &o);

        if (invalid)
                *invalid += o.invalid;
        return o.len;
}

size_t upcase_buf(const uint8_t *in, size_t n, uint8_t *out, uint64_t *invalid) {
        struct upcase u;

        upcase_init(&u, false);
        return upcase_feed(&u, in, n, true, out, invalid);
}

size_t upcase_cut(const uint8_t *s, size_t len, size_t max) {
        if (len <= max)
                return len;

        /* Only a sequence starting in the 3 bytes before max can straddle
         * it.  Walk back over continuation bytes to its first byte. */
        for (size_t back = 1; back <= 3 && back <= max; back++) {
                size_t i = max - back;
                if ((s[i] & 0xC0) == 0x80)
                        continue;
                int seq = utf8_sequence(s + i, len - i);
                if (seq > 0 && i + (size_t) seq > max)
                        return i;
                break;
        }
        return max;
}
