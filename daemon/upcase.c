/* SPDX-License-Identifier: MIT */
/* The protocol core: Python's str.upper() on a UTF-8 byte stream.
 *
 * The input is cut into three kinds of runs:
 *
 *  - ASCII bytes, mapped with vector kernels (SSE2, or AVX2 where the CPU
 *    has it; plain C elsewhere), 32 to 128 bytes a step: lab traffic is
 *    mostly ASCII;
 *  - valid non-ASCII characters, decoded one at a time and looked up in a
 *    table that tools/gen-case-table.c builds at build time by asking
 *    libunistring's u8_toupper() about every Unicode scalar value (no
 *    language, so no Turkish/Lithuanian rules, like Python; no
 *    normalisation).  The library stays the authority; the table only
 *    saves calling it at run time, which costs more than the mapping;
 *  - invalid bytes, copied unchanged one at a time, as Python's
 *    "surrogateescape" error handler round-trips them.
 *
 * Upper-casing is context free once the language is NULL (the only
 * context-dependent rule in SpecialCasing.txt without a language is
 * Final_Sigma, which concerns lower-casing), so mapping a text character
 * by character gives the same bytes as mapping it in one go.  That is
 * what makes a per-character table right, and the output independent of
 * how the stream was split into feeds; the generator checks it against
 * the library and fails the build if it ever stops holding.
 *
 * No character's upper case is longer than 3 times its UTF-8 encoding
 * (the generator checks that too), which is what UPCASE_OUT_MAX()
 * promises. */

#include <string.h>

#if defined(__x86_64__) && defined(__SSE2__)
#define UPCASE_X86 1
#include <immintrin.h>
#endif

#include "upcase.h"
#include "upcase-internal.h"
#include "case-table.h"         /* generated: $(BUILD)/gen/case-table.h */

enum upcase_line_state {
        LINE_START,     /* the next byte begins a line */
        LINE_MID,       /* inside a line: "." is ordinary text */
        LINE_DOT,       /* "." held back at the start of a line */
        LINE_DOT_CR,    /* ".\r" held back at the start of a line */
};

/* Returned by utf8_sequence() besides a length. */
#define SEQ_INVALID     (-1)
#define SEQ_INCOMPLETE  0

/* Blocks this long are tested for ASCII with one OR-reduction by the
 * portable kernel. */
#define ASCII_BLOCK 32

/* Bit 7 of each byte of a 64-bit word. */
#define HIGH_BITS UINT64_C(0x8080808080808080)

/* A mapped character is copied as one CASE_POOL_PAD-byte load and store
 * when the output has room; the pool is padded for that. */
_Static_assert(CASE_MAX_OUT <= CASE_POOL_PAD, "case table: pool padding too short");
_Static_assert(CASE_MAX_OUT <= 7, "case table: entry length field too narrow");

/* Where the output of one call goes. */
struct sink {
        uint8_t *buf;
        size_t len;             /* bytes written so far */
        size_t size;            /* UPCASE_OUT_MAX() of the call's input */
        uint64_t invalid;       /* invalid bytes passed through */
};

/* The kernels in use: the best this CPU has, picked at start-up. */
#ifdef UPCASE_X86
static enum upcase_isa isa = UPCASE_ISA_SSE2;

static bool cpu_has_avx2(void) {
        /* Also true only if the kernel saves the YMM registers. */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
}

/* Before main(), so that the choice is made once and before any thread
 * reads it. */
__attribute__((constructor)) static void pick_isa(void) {
        if (cpu_has_avx2())
                isa = UPCASE_ISA_AVX2;
}
#else
static enum upcase_isa isa = UPCASE_ISA_PORTABLE;
#endif

enum upcase_isa upcase_get_isa(void) {
        return isa;
}

bool upcase_set_isa(enum upcase_isa want) {
        switch (want) {
        case UPCASE_ISA_PORTABLE:
                break;
#ifdef UPCASE_X86
        case UPCASE_ISA_SSE2:
                break;
        case UPCASE_ISA_AVX2:
                if (!cpu_has_avx2())
                        return false;
                break;
#endif
        default:
                return false;
        }
        isa = want;
        return true;
}

const char *upcase_isa_name(enum upcase_isa i) {
        static const char *const names[_UPCASE_ISA_MAX] = {
                [UPCASE_ISA_PORTABLE] = "portable",
                [UPCASE_ISA_SSE2] = "sse2",
                [UPCASE_ISA_AVX2] = "avx2",
        };

        return (unsigned) i < _UPCASE_ISA_MAX ? names[i] : "?";
}

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

/* The code point of a sequence utf8_sequence() found valid, len 2..4. */
static inline uint32_t utf8_decode(const uint8_t *s, int len) {
        switch (len) {
        case 2:
                return (uint32_t) (s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        case 3:
                return (uint32_t) (s[0] & 0x0F) << 12 |
                       (uint32_t) (s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        default:
                return (uint32_t) (s[0] & 0x07) << 18 |
                       (uint32_t) (s[1] & 0x3F) << 12 |
                       (uint32_t) (s[2] & 0x3F) << 6 | (s[3] & 0x3F);
        }
}

/* The case table's entry for code point cp: 0 when it maps to itself,
 * else where its upper case is in case_pool and how long it is. */
static inline uint16_t case_lookup(uint32_t cp) {
        return case_entry[case_block[cp >> 8]][cp & 0xFF];
}

/* Writes the upper case given by a non-zero table entry at out, and
 * returns the end of what it wrote.  end bounds the output buffer. */
static inline uint8_t *put_entry(uint16_t e, uint8_t *out, const uint8_t *end) {
        const uint8_t *p = case_pool + (e >> 3);
        size_t len = e & 7;

        /* There is always room for the result itself (UPCASE_OUT_MAX);
         * through upcase_feed() there are at least 13 bytes, so the
         * second branch is insurance. */
        if (end - out >= CASE_POOL_PAD)
                memcpy(out, p, CASE_POOL_PAD);  /* one 8-byte move */
        else
                memcpy(out, p, len);
        return out + len;
}

/* Writes the upper case of the len-byte character s (valid, len 2..4) at
 * out, and returns the end of what it wrote. */
static inline uint8_t *put_char(const uint8_t *s, int len, uint8_t *out,
                                const uint8_t *end) {
        uint16_t e = case_lookup(utf8_decode(s, len));

        if (e != 0)
                return put_entry(e, out, end);
        memcpy(out, s, (size_t) len);
        return out + len;
}

/* The decoders of the loops over runs of two- and three-byte characters.
 * Each returns the code point of the character s[0..n) starts with, or 0
 * if it does not start with one of its kind.  The bytes are tested
 * together, as one word. */

/* C2..DF, then a continuation byte. */
static inline uint32_t utf8_2byte(const uint8_t *s, size_t n) {
        if (n < 2)
                return 0;

        uint32_t w = (uint32_t) s[0] | (uint32_t) s[1] << 8;
        if ((w & 0xC0E0) != 0x80C0 || s[0] < 0xC2)
                return 0;
        return (w & 0x1F) << 6 | (w >> 8 & 0x3F);
}

/* E0..EF, two continuation bytes, neither overlong (below U+0800) nor a
 * surrogate. */
static inline uint32_t utf8_3byte(const uint8_t *s, size_t n) {
        if (n < 3)
                return 0;

        uint32_t w = (uint32_t) s[0] | (uint32_t) s[1] << 8 | (uint32_t) s[2] << 16;
        if ((w & 0xC0C0F0) != 0x8080E0)
                return 0;
        uint32_t cp = (w & 0x0F) << 12 | (w >> 2 & 0xFC0) | (w >> 16 & 0x3F);
        if (cp < 0x800 || (cp & 0xF800) == 0xD800)
                return 0;
        return cp;
}

/* put_char() for the two-byte character s, code point cp. */
static inline uint8_t *put_2byte(uint32_t cp, const uint8_t *s, uint8_t *out,
                                 const uint8_t *end) {
        uint16_t e = case_lookup(cp);

        /* Most of these map to two bytes, or to themselves (length field
         * 0).  Making that a branch, which the CPU predicts, keeps where
         * the next character goes from waiting for two table loads: the
         * loop runs at its throughput, not at the latency of a chain of
         * loads. */
        if (((e & 7) | 2) == 2) {
                memcpy(out, e ? case_pool + (e >> 3) : s, 2);
                return out + 2;
        }
        return put_entry(e, out, end);
}

/* put_char() for the three-byte character s, code point cp. */
static inline uint8_t *put_3byte(uint32_t cp, const uint8_t *s, uint8_t *out,
                                 const uint8_t *end) {
        uint8_t row = case_block[cp >> 8];

        /* Whole blocks of CJK, Hangul and symbols map to themselves:
         * one load tells. */
        if (row != 0) {
                uint16_t e = case_entry[row][cp & 0xFF];
                if (e != 0)
                        return put_entry(e, out, end);
        }
        memcpy(out, s, 3);
        return out + 3;
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

static inline uint64_t load64(const uint8_t *p) {
        uint64_t w;

        memcpy(&w, p, sizeof(w));
        return w;
}

static inline void store64(uint8_t *p, uint64_t w) {
        memcpy(p, &w, sizeof(w));
}

/* Upper-cases the eight ASCII bytes of w at once: adding 0x1f sets bit 7
 * of the bytes from 'a' up, adding 0x05 that of the bytes from '{' up,
 * and no byte below 0x80 carries into the next. */
static inline uint64_t swar_toupper(uint64_t w) {
        uint64_t from_a = w + UINT64_C(0x1F1F1F1F1F1F1F1F);
        uint64_t past_z = w + UINT64_C(0x0505050505050505);

        return w ^ ((from_a & ~past_z & HIGH_BITS) >> 2);
}

/* Index, in memory order, of the first byte whose bit 7 is set in hi,
 * a non-zero word loaded with load64(). */
static inline size_t first_high_byte(uint64_t hi) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return (size_t) __builtin_ctzll(hi) / 8;
#else
        return (size_t) __builtin_clzll(hi) / 8;
#endif
}

/* The ASCII kernels: each upper-cases the ASCII bytes at the start of
 * in[0..n) into out and returns how many there were.  Bytes of out past
 * that count, up to out[n - 1], may be scribbled on (they get the input
 * byte or garbage); the caller overwrites or ignores them.  Writing whole
 * vectors, and finding where the ASCII ends only when a vector has a
 * high bit, is what keeps the loops short. */

/* Eight bytes a step, for what is left after the vectors. */
static size_t ascii_small(const uint8_t *restrict in, size_t n,
                          uint8_t *restrict out) {
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t w = load64(in + i);
                uint64_t hi = w & HIGH_BITS;
                /* Without bit 7 the ASCII bytes still map right; the
                 * others are past the prefix. */
                store64(out + i, swar_toupper(w & ~HIGH_BITS));
                if (hi)
                        return i + first_high_byte(hi);
        }
        if (i < n && n >= 8) {
                /* The last 8 bytes, overlapping ones known to be ASCII,
                 * which map to the same again. */
                uint64_t w = load64(in + n - 8);
                uint64_t hi = w & HIGH_BITS;
                store64(out + n - 8, swar_toupper(w & ~HIGH_BITS));
                return hi ? n - 8 + first_high_byte(hi) : n;
        }
        for (; i < n && in[i] < 0x80; i++)
                out[i] = ascii_toupper(in[i]);
        return i;
}

/* Plain C: loops of a fixed trip count with no early exit are what gcc
 * -O2 vectorises, so whole blocks are mapped and OR-tested for a high
 * bit first; the block holding the first non-ASCII byte is redone. */
static size_t ascii_portable(const uint8_t *restrict in, size_t n,
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
        return i + ascii_small(in + i, n - i, out + i);
}

#ifdef UPCASE_X86
/* Adding 0x1f moves 'a'..'z' to -128..-103 (as signed bytes) and no other
 * byte there: 0x00..0x60 go to 0x1f..0x7f, '{'..0x7f to -102..-98, and
 * 0x80..0xff to -97..30.  So one signed compare finds the lower-case
 * letters, and non-ASCII bytes come out unchanged. */
static inline __m128i sse2_toupper(__m128i x) {
        __m128i t = _mm_add_epi8(x, _mm_set1_epi8(0x1F));
        __m128i lower = _mm_cmpgt_epi8(_mm_set1_epi8(-102), t);

        return _mm_xor_si128(x, _mm_and_si128(lower, _mm_set1_epi8(0x20)));
}

static inline __m128i sse2_load(const uint8_t *p) {
        return _mm_loadu_si128((const __m128i *) (const void *) p);
}

static inline void sse2_store(uint8_t *p, __m128i v) {
        _mm_storeu_si128((__m128i *) (void *) p, v);
}

/* A 64-bit mask of the bytes set in four 16-byte compare results. */
static inline uint64_t sse2_mask64(__m128i a, __m128i b, __m128i c,
                                   __m128i d) {
        return (uint64_t) (uint16_t) _mm_movemask_epi8(a) |
               (uint64_t) (uint16_t) _mm_movemask_epi8(b) << 16 |
               (uint64_t) (uint16_t) _mm_movemask_epi8(c) << 32 |
               (uint64_t) (uint16_t) _mm_movemask_epi8(d) << 48;
}

static size_t ascii_sse2(const uint8_t *restrict in, size_t n,
                         uint8_t *restrict out) {
        size_t i = 0;

        if (n < 16)
                return ascii_small(in, n, out);

        for (; i + 64 <= n; i += 64) {
                __m128i a = sse2_load(in + i), b = sse2_load(in + i + 16);
                __m128i c = sse2_load(in + i + 32), d = sse2_load(in + i + 48);
                sse2_store(out + i, sse2_toupper(a));
                sse2_store(out + i + 16, sse2_toupper(b));
                sse2_store(out + i + 32, sse2_toupper(c));
                sse2_store(out + i + 48, sse2_toupper(d));
                __m128i any = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
                if (_mm_movemask_epi8(any))
                        return i + (size_t) __builtin_ctzll(sse2_mask64(a, b, c, d));
        }
        for (; i + 16 <= n; i += 16) {
                __m128i a = sse2_load(in + i);
                sse2_store(out + i, sse2_toupper(a));
                unsigned m = (unsigned) _mm_movemask_epi8(a);
                if (m)
                        return i + (size_t) __builtin_ctz(m);
        }
        if (i < n) {
                /* The last 16 bytes, overlapping ASCII already done: its
                 * bits in the mask are clear. */
                __m128i a = sse2_load(in + n - 16);
                sse2_store(out + n - 16, sse2_toupper(a));
                unsigned m = (unsigned) _mm_movemask_epi8(a);
                return m ? n - 16 + (size_t) __builtin_ctz(m) : n;
        }
        return n;
}

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline __m256i avx2_toupper(__m256i x) {
        /* As sse2_toupper(). */
        __m256i t = _mm256_add_epi8(x, _mm256_set1_epi8(0x1F));
        __m256i lower = _mm256_cmpgt_epi8(_mm256_set1_epi8(-102), t);

        return _mm256_xor_si256(x, _mm256_and_si256(lower, _mm256_set1_epi8(0x20)));
}

AVX2 static inline __m256i avx2_load(const uint8_t *p) {
        return _mm256_loadu_si256((const __m256i *) (const void *) p);
}

AVX2 static inline void avx2_store(uint8_t *p, __m256i v) {
        _mm256_storeu_si256((__m256i *) (void *) p, v);
}

/* Offset of the first byte set in four 32-byte compare results, at least
 * one of which has one. */
AVX2 static inline size_t avx2_first4(__m256i a, __m256i b, __m256i c,
                                      __m256i d) {
        uint64_t lo = (uint64_t) (uint32_t) _mm256_movemask_epi8(a) |
                      (uint64_t) (uint32_t) _mm256_movemask_epi8(b) << 32;
        uint64_t hi = (uint64_t) (uint32_t) _mm256_movemask_epi8(c) |
                      (uint64_t) (uint32_t) _mm256_movemask_epi8(d) << 32;

        return lo ? (size_t) __builtin_ctzll(lo) : 64 + (size_t) __builtin_ctzll(hi);
}

/* n >= 32. */
AVX2 static size_t ascii_avx2(const uint8_t *restrict in, size_t n,
                              uint8_t *restrict out) {
        size_t i = 0;

        for (; i + 128 <= n; i += 128) {
                __m256i a = avx2_load(in + i), b = avx2_load(in + i + 32);
                __m256i c = avx2_load(in + i + 64), d = avx2_load(in + i + 96);
                avx2_store(out + i, avx2_toupper(a));
                avx2_store(out + i + 32, avx2_toupper(b));
                avx2_store(out + i + 64, avx2_toupper(c));
                avx2_store(out + i + 96, avx2_toupper(d));
                __m256i any = _mm256_or_si256(_mm256_or_si256(a, b),
                                              _mm256_or_si256(c, d));
                if (_mm256_movemask_epi8(any))
                        return i + avx2_first4(a, b, c, d);
        }
        for (; i + 32 <= n; i += 32) {
                __m256i a = avx2_load(in + i);
                avx2_store(out + i, avx2_toupper(a));
                unsigned m = (unsigned) _mm256_movemask_epi8(a);
                if (m)
                        return i + (size_t) __builtin_ctz(m);
        }
        if (i < n) {
                /* As in ascii_sse2(). */
                __m256i a = avx2_load(in + n - 32);
                avx2_store(out + n - 32, avx2_toupper(a));
                unsigned m = (unsigned) _mm256_movemask_epi8(a);
                return m ? n - 32 + (size_t) __builtin_ctz(m) : n;
        }
        return n;
}
#endif

static inline size_t ascii_upper_prefix(const uint8_t *restrict in, size_t n,
                                        uint8_t *restrict out) {
#ifdef UPCASE_X86
        if (isa == UPCASE_ISA_AVX2 && n >= 32)
                return ascii_avx2(in, n, out);
        if (isa != UPCASE_ISA_PORTABLE)
                return ascii_sse2(in, n, out);
#endif
        return ascii_portable(in, n, out);
}

/* The "." line finders: each returns the offset of the first "." in
 * in[1..n) that begins a line, i.e. follows a "\n", or n if there is
 * none.  Whether in[0] begins a line is for the caller to know.  Looking
 * for the pair, not for "\n" then the next byte, keeps a text of short
 * lines from costing a call per line. */

static size_t find_dot_line_small(const uint8_t *in, size_t n) {
        for (size_t i = 1; i < n; i++)
                if (in[i] == '.' && in[i - 1] == '\n')
                        return i;
        return n;
}

/* Plain C: libc's memchr() is vectorised on every architecture. */
static size_t find_dot_line_portable(const uint8_t *in, size_t n) {
        const uint8_t *p = in, *end = in + n;

        /* A "\n" in the last byte has no "." after it. */
        while (end - p >= 2 && (p = memchr(p, '\n', (size_t) (end - p - 1)))) {
                if (p[1] == '.')
                        return (size_t) (p + 1 - in);
                p++;
        }
        return n;
}

#ifdef UPCASE_X86
/* The bytes of s[0..16) that are "." after a "\n" (s[-1] is read). */
static inline __m128i sse2_dot_lines(const uint8_t *s) {
        __m128i nl = _mm_cmpeq_epi8(sse2_load(s - 1), _mm_set1_epi8('\n'));
        __m128i dot = _mm_cmpeq_epi8(sse2_load(s), _mm_set1_epi8('.'));

        return _mm_and_si128(nl, dot);
}

/* n > 16. */
static size_t find_dot_line_sse2(const uint8_t *in, size_t n) {
        size_t i = 1;

        for (; i + 64 <= n; i += 64) {
                __m128i a = sse2_dot_lines(in + i);
                __m128i b = sse2_dot_lines(in + i + 16);
                __m128i c = sse2_dot_lines(in + i + 32);
                __m128i d = sse2_dot_lines(in + i + 48);
                __m128i any = _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d));
                if (_mm_movemask_epi8(any))
                        return i + (size_t) __builtin_ctzll(sse2_mask64(a, b, c, d));
        }
        for (; i + 16 <= n; i += 16) {
                unsigned m = (unsigned) _mm_movemask_epi8(sse2_dot_lines(in + i));
                if (m)
                        return i + (size_t) __builtin_ctz(m);
        }
        if (i < n) {
                /* The last 16 bytes; those before i have no match. */
                unsigned m = (unsigned) _mm_movemask_epi8(sse2_dot_lines(in + n - 16));
                return m ? n - 16 + (size_t) __builtin_ctz(m) : n;
        }
        return n;
}

AVX2 static inline __m256i avx2_dot_lines(const uint8_t *s) {
        __m256i nl = _mm256_cmpeq_epi8(avx2_load(s - 1), _mm256_set1_epi8('\n'));
        __m256i dot = _mm256_cmpeq_epi8(avx2_load(s), _mm256_set1_epi8('.'));

        return _mm256_and_si256(nl, dot);
}

/* n > 32. */
AVX2 static size_t find_dot_line_avx2(const uint8_t *in, size_t n) {
        size_t i = 1;

        for (; i + 128 <= n; i += 128) {
                __m256i a = avx2_dot_lines(in + i);
                __m256i b = avx2_dot_lines(in + i + 32);
                __m256i c = avx2_dot_lines(in + i + 64);
                __m256i d = avx2_dot_lines(in + i + 96);
                __m256i any = _mm256_or_si256(_mm256_or_si256(a, b),
                                              _mm256_or_si256(c, d));
                if (_mm256_movemask_epi8(any))
                        return i + avx2_first4(a, b, c, d);
        }
        for (; i + 32 <= n; i += 32) {
                unsigned m = (unsigned) _mm256_movemask_epi8(avx2_dot_lines(in + i));
                if (m)
                        return i + (size_t) __builtin_ctz(m);
        }
        if (i < n) {
                unsigned m = (unsigned) _mm256_movemask_epi8(avx2_dot_lines(in + n - 32));
                return m ? n - 32 + (size_t) __builtin_ctz(m) : n;
        }
        return n;
}
#endif

static size_t find_dot_line(const uint8_t *in, size_t n) {
        if (n <= 16)
                return find_dot_line_small(in, n);
#ifdef UPCASE_X86
        if (isa == UPCASE_ISA_AVX2 && n > 32)
                return find_dot_line_avx2(in, n);
        if (isa != UPCASE_ISA_PORTABLE)
                return find_dot_line_sse2(in, n);
#endif
        return find_dot_line_portable(in, n);
}

/* Maps in[0..n) except for an incomplete sequence at its very end, which
 * is left to the caller.  Returns the number of bytes consumed. */
static size_t map_text(const uint8_t *in, size_t n, struct sink *o) {
        uint8_t *out = o->buf + o->len;
        const uint8_t *end = o->buf + o->size;
        uint64_t invalid = 0;
        size_t i = 0;

        while (i < n) {
                size_t run = ascii_upper_prefix(in + i, n - i, out);
                i += run;
                out += run;

                /* Characters one by one, until ASCII resumes for long
                 * enough to be worth a kernel call: words of Greek or
                 * Cyrillic have single spaces between them. */
                while (i < n) {
                        uint8_t c = in[i];

                        if (c < 0x80) {
                                if (n - i >= 8 && !(load64(in + i) & HIGH_BITS))
                                        break;
                                *out++ = ascii_toupper(c);
                                i++;
                                continue;
                        }

                        /* Two bytes, U+0080..U+07FF: Latin, Greek,
                         * Cyrillic... whole words of them, in a loop of
                         * its own. */
                        uint32_t cp = utf8_2byte(in + i, n - i);
                        if (cp) {
                                do {
                                        out = put_2byte(cp, in + i, out, end);
                                        i += 2;
                                } while ((cp = utf8_2byte(in + i, n - i)));
                                continue;
                        }

                        /* Three bytes: CJK, symbols, the rest of the
                         * BMP; likewise. */
                        cp = utf8_3byte(in + i, n - i);
                        if (cp) {
                                do {
                                        out = put_3byte(cp, in + i, out, end);
                                        i += 3;
                                } while ((cp = utf8_3byte(in + i, n - i)));
                                continue;
                        }

                        int len = utf8_sequence(in + i, n - i);
                        if (len > 0) {
                                out = put_char(in + i, len, out, end);
                                i += (size_t) len;
                        } else if (len == SEQ_INCOMPLETE)
                                goto done;
                        else {
                                *out++ = c;
                                invalid++;
                                i++;
                        }
                }
        }
done:
        o->len = (size_t) (out - o->buf);
        o->invalid += invalid;
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
        uint8_t *out = put_char(seq, len, o->buf + o->len, o->buf + o->size);
        o->len = (size_t) (out - o->buf);
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
 * text up to the next line that begins with "." (with dot_quit) or to the
 * end.  Returns the number of bytes consumed.
 *
 * With dot_quit, lines are not taken one at a time: the text before the
 * next candidate "." line, however many lines, is mapped in one go, so
 * short lines cost no more than long ones. */
static size_t feed_step(struct upcase *u, const uint8_t *in, size_t n,
                        struct sink *o) {
        size_t seg = n;

        if (u->dot_quit) {
                if (u->line != LINE_MID)
                        return step_line_start(u, in[0], o);
                seg = find_dot_line(in, n);
        }

        size_t used = map_text(in, seg, o);
        if (used < seg) {
                /* An unfinished sequence can only be at the very end of
                 * the input: a segment followed by a "." line ends in
                 * "\n" and has none. */
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

bool upcase_state_valid(const struct upcase *u) {
        if (u->line > LINE_DOT_CR || u->ntail > sizeof(u->tail))
                return false;
        /* Held bytes are always the start of a character still to come;
         * anything else would make complete_tail() consume backwards. */
        if (u->ntail > 0 && utf8_sequence(u->tail, u->ntail) != SEQ_INCOMPLETE)
                return false;
        return u->dot_quit || u->line == LINE_START;
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
