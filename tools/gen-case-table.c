/* SPDX-License-Identifier: MIT */
/* gen-case-table OUTPUT: writes the upper-case table of daemon/upcase.c.
 *
 * The table is built at build time from the libunistring the daemon is
 * built against, so correctness still comes from the library: every
 * Unicode scalar value is passed through u8_toupper() on its own (no
 * language, no normalisation) and the ones whose result differs from the
 * input are recorded.
 *
 * Layout (all of it static const in a header only upcase.c includes):
 *
 *   case_block[cp >> 8]                  which 256-code-point block
 *   case_entry[block][cp & 0xff]         0: maps to itself, else
 *                                        (pool offset << 3) | length
 *   case_pool[]                          the upper-case UTF-8 bytes
 *
 * Block 0 is all zeroes and shared by every block without a mapping, so
 * the 4352 blocks of Unicode need a few dozen rows.  Identical results
 * share their pool bytes.  The pool is padded so that a reader may always
 * load CASE_POOL_PAD bytes at an entry's offset.
 *
 * The table is only right if upper-casing is context free, i.e. a string
 * maps to the concatenation of its characters' mappings.  With no
 * language that holds for the special casing rules of Unicode 14, but it
 * is a property of the library, so it is checked here on a large sample
 * of strings rich in cased, special-cased and combining characters; the
 * build fails if it ever stops holding, instead of producing a wrong
 * table. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unistr.h>
#include <unistring/version.h>

#define CP_LIMIT        0x110000
#define NBLOCKS         (CP_LIMIT >> 8)
#define MAX_ROWS        255             /* case_block[] is uint8_t */
#define MAX_POOL        8191            /* 13 bits of offset */
#define MAX_OUT         7               /* 3 bits of length */
#define POOL_PAD        8

/* What one code point maps to. */
struct mapping {
        uint8_t len;            /* 0: to itself */
        uint8_t bytes[MAX_OUT];
};

static struct mapping *map;

static uint8_t pool[MAX_POOL + POOL_PAD];
static size_t pool_len;

static uint16_t rows[MAX_ROWS][256];
static size_t nrows = 1;                /* row 0: the identity */
static uint8_t block_row[NBLOCKS];

static void die(const char *msg) {
        fprintf(stderr, "gen-case-table: %s\n", msg);
        exit(EXIT_FAILURE);
}

static int is_scalar(uint32_t cp) {
        return cp < CP_LIMIT && (cp < 0xd800 || cp > 0xdfff);
}

/* u8_toupper() of s[0..n) into out[0..size); returns the length. */
static size_t upper(const uint8_t *s, size_t n, uint8_t *out, size_t size) {
        size_t len = size;
        uint8_t *r = u8_toupper(s, n, NULL, NULL, out, &len);

        if (!r)
                die("u8_toupper failed");
        if (r != out) {
                /* Did not fit: callers size out for the worst case. */
                free(r);
                die("u8_toupper result longer than expected");
        }
        return len;
}

static void map_every_scalar(void) {
        map = calloc(CP_LIMIT, sizeof(*map));
        if (!map)
                die("out of memory");

        for (uint32_t cp = 0; cp < CP_LIMIT; cp++) {
                uint8_t in[4], out[64];
                if (!is_scalar(cp))
                        continue;
                int n = u8_uctomb(in, cp, sizeof(in));
                if (n <= 0)
                        die("u8_uctomb failed");
                size_t len = upper(in, (size_t) n, out, sizeof(out));
                if (len == (size_t) n && memcmp(in, out, len) == 0)
                        continue;
                /* upcase.h promises UPCASE_OUT_MAX(): at most 3x. */
                if (len > 3 * (size_t) n || len > MAX_OUT)
                        die("a mapping expands more than upcase.h allows");
                if (len == 0 || u8_check(out, len) != NULL)
                        die("a mapping is not valid UTF-8");
                map[cp].len = (uint8_t) len;
                memcpy(map[cp].bytes, out, len);
        }
}

/* Offset of s[0..n) in the pool, added if it is not there yet. */
static size_t pool_add(const uint8_t *s, size_t n) {
        for (size_t i = 0; i + n <= pool_len; i++)
                if (memcmp(pool + i, s, n) == 0)
                        return i;
        if (pool_len + n > MAX_POOL)
                die("pool overflow: widen the entries");
        memcpy(pool + pool_len, s, n);
        pool_len += n;
        return pool_len - n;
}

static void build_rows(void) {
        for (uint32_t b = 0; b < NBLOCKS; b++) {
                uint16_t row[256] = { 0 };
                int any = 0;

                for (uint32_t lo = 0; lo < 256; lo++) {
                        const struct mapping *m = &map[b << 8 | lo];
                        if (m->len == 0)
                                continue;
                        size_t off = pool_add(m->bytes, m->len);
                        row[lo] = (uint16_t) (off << 3 | m->len);
                        any = 1;
                }
                if (!any)
                        continue;       /* block_row[b] stays 0 */

                size_t r;
                for (r = 1; r < nrows; r++)
                        if (memcmp(rows[r], row, sizeof(row)) == 0)
                                break;
                if (r == nrows) {
                        if (nrows == MAX_ROWS)
                                die("too many blocks: widen case_block[]");
                        memcpy(rows[nrows++], row, sizeof(row));
                }
                block_row[b] = (uint8_t) r;
        }
}

/* The concatenation of the per-code-point mappings of cps[0..n). */
static size_t upper_by_table(const uint32_t *cps, size_t n, uint8_t *out) {
        size_t len = 0;

        for (size_t i = 0; i < n; i++) {
                const struct mapping *m = &map[cps[i]];
                if (m->len > 0) {
                        memcpy(out + len, m->bytes, m->len);
                        len += m->len;
                } else
                        len += (size_t) u8_uctomb(out + len, cps[i], 4);
        }
        return len;
}

static uint32_t rng_next(uint32_t *state) {
        /* xorshift32: the same sample on every build. */
        uint32_t x = *state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *state = x;
}

/* Fails the build when a string does not map like its code points. */
static void check_string(const uint32_t *cps, size_t n) {
        /* in zeroed: gcc -O1 -fsanitize=address (make check-asan builds
         * this tool with the CFLAGS of the programs) cannot see that
         * u8_uctomb() fills it, and says "may be used uninitialized". */
        uint8_t in[4 * 16] = { 0 }, want[MAX_OUT * 16], got[MAX_OUT * 16 + 64];
        size_t len = 0;

        for (size_t i = 0; i < n; i++)
                len += (size_t) u8_uctomb(in + len, cps[i], 4);
        size_t got_len = upper(in, len, got, sizeof(got));
        size_t want_len = upper_by_table(cps, n, want);
        if (got_len == want_len && memcmp(got, want, got_len) == 0)
                return;

        fprintf(stderr, "gen-case-table: context-dependent upper case:");
        for (size_t i = 0; i < n; i++)
                fprintf(stderr, " U+%04X", (unsigned) cps[i]);
        fprintf(stderr, "\n");
        die("libunistring's toupper is not context free; the table would be wrong");
}

/* Characters that take part in SpecialCasing.txt conditions (Final_Sigma,
 * After_Soft_Dotted, More_Above, Before_Dot, After_I) or are otherwise
 * interesting next to cased letters. */
static const uint32_t context_chars[] = {
        'I', 'i', 'J', 'j', ' ', '.', '\'', 0x00cc, 0x00cd, 0x0128, 0x012e,
        0x012f, 0x0130, 0x0131, 0x0300, 0x0301, 0x0303, 0x0307, 0x0308,
        0x0313, 0x0314, 0x0342, 0x0345, 0x0390, 0x0399, 0x03a3, 0x03b9,
        0x03c2, 0x03c3, 0x1e2d, 0x1ecb, 0x1f80, 0x1fb3, 0x1fb7, 0xfb03,
        0x00df, 0x0149, 0x01f0, 0x200d, 0x0f71, 0x1d165, 0x10428,
};

static void check_context_free(void) {
        uint32_t *cased = malloc(CP_LIMIT * sizeof(*cased));
        size_t ncased = 0;
        size_t nctx = sizeof(context_chars) / sizeof(context_chars[0]);
        uint32_t rng = 0x6d2b79f5u;

        if (!cased)
                die("out of memory");
        for (uint32_t cp = 0; cp < CP_LIMIT; cp++)
                if (map[cp].len > 0)
                        cased[ncased++] = cp;

        /* Every pair of context characters, both ways round. */
        for (size_t a = 0; a < nctx; a++)
                for (size_t b = 0; b < nctx; b++)
                        check_string((uint32_t[]) { context_chars[a],
                                                    context_chars[b] }, 2);

        /* Every mapped character between context characters. */
        for (size_t c = 0; c < ncased; c++)
                for (size_t a = 0; a < nctx; a++)
                        check_string((uint32_t[]) { context_chars[a],
                                cased[c], context_chars[(a + c) % nctx] }, 3);

        /* Random strings of mapped, context and arbitrary characters. */
        for (int round = 0; round < 1000000; round++) {
                uint32_t cps[16];
                size_t n = 1 + rng_next(&rng) % 16;
                for (size_t i = 0; i < n; i++) {
                        uint32_t r = rng_next(&rng), cp;
                        switch (r % 3) {
                        case 0:
                                cp = cased[(r >> 2) % ncased];
                                break;
                        case 1:
                                cp = context_chars[(r >> 2) % nctx];
                                break;
                        default:
                                do
                                        cp = rng_next(&rng) % CP_LIMIT;
                                while (!is_scalar(cp));
                        }
                        cps[i] = cp;
                }
                check_string(cps, n);
        }
        free(cased);
}

static void print_table(FILE *f) {
        size_t max_len = 0, nmapped = 0;

        for (uint32_t cp = 0; cp < CP_LIMIT; cp++) {
                if (map[cp].len > max_len)
                        max_len = map[cp].len;
                nmapped += map[cp].len > 0;
        }

        fprintf(f, "/* Generated by tools/gen-case-table.c from libunistring %d.%d.%d;\n"
                " * do not edit.  %zu code points do not map to themselves. */\n\n",
                _libunistring_version >> 16, _libunistring_version >> 8 & 0xff,
                _libunistring_version & 0xff, nmapped);
        fprintf(f, "#define CASE_ROWS %zu\n", nrows);
        fprintf(f, "#define CASE_POOL_LEN %zu\n", pool_len);
        fprintf(f, "#define CASE_POOL_PAD %d\n", POOL_PAD);
        fprintf(f, "#define CASE_MAX_OUT %zu\n\n", max_len);

        fprintf(f, "static const uint8_t case_block[%d] = {", NBLOCKS);
        for (size_t b = 0; b < NBLOCKS; b++)
                fprintf(f, "%s%u,", b % 16 ? " " : "\n        ", block_row[b]);
        fprintf(f, "\n};\n\n");

        fprintf(f, "static const uint16_t case_entry[%zu][256] = {\n", nrows);
        for (size_t r = 0; r < nrows; r++) {
                fprintf(f, "        {");
                for (size_t i = 0; i < 256; i++)
                        fprintf(f, "%s0x%04x,", i % 8 ? " " : "\n                ",
                                rows[r][i]);
                fprintf(f, "\n        },\n");
        }
        fprintf(f, "};\n\n");

        fprintf(f, "static const uint8_t case_pool[%zu] = {", pool_len + POOL_PAD);
        for (size_t i = 0; i < pool_len + POOL_PAD; i++)
                fprintf(f, "%s0x%02x,", i % 12 ? " " : "\n        ", pool[i]);
        fprintf(f, "\n};\n");
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: gen-case-table OUTPUT\n");
                return 2;
        }

        map_every_scalar();
        build_rows();
        check_context_free();

        /* Write a temporary file and rename it, so that an interrupted
         * build leaves no half table behind for make to trust. */
        size_t n = strlen(argv[1]) + sizeof(".tmp");
        char *tmp = malloc(n);
        if (!tmp)
                die("out of memory");
        snprintf(tmp, n, "%s.tmp", argv[1]);
        FILE *f = fopen(tmp, "w");
        if (!f) {
                fprintf(stderr, "gen-case-table: %s: %s\n", tmp, strerror(errno));
                return EXIT_FAILURE;
        }
        print_table(f);
        if (fclose(f) != 0 || rename(tmp, argv[1]) != 0) {
                fprintf(stderr, "gen-case-table: %s: %s\n", argv[1], strerror(errno));
                remove(tmp);
                return EXIT_FAILURE;
        }
        free(tmp);
        free(map);
        return EXIT_SUCCESS;
}
