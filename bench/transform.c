/* SPDX-License-Identifier: MIT */
/* transform: micro-benchmark of the protocol core (daemon/upcase.c).
 *
 *   transform [-r REPS] [-t SECONDS | -n RUNS] [-c CPU] [-f FILTER]
 *             [-i VARIANT] [-o OFFSET] [--wall] [--json]
 *
 * Maps buffers of typical traffic again and again and reports MB/s of
 * input per second of CPU time (1 MB = 10^6 bytes): pure ASCII in 64 KiB (stays in L2) and 16 KiB
 * (the daemon's read size) buffers, ASCII lines through upcase_feed() with
 * "." line detection (TCP), mixed Italian and Greek text, pure Greek,
 * CJK, and Italian sent as Latin-1 (every accented letter an invalid
 * byte).
 *
 * Side by side, in the same run, interleaved so that they share the
 * machine's mood: the code before the case table ("old": u8_toupper() per
 * run of non-ASCII characters, a line at a time with dot detection; a
 * copy of it is at the end of this file) and the current code with each
 * kernel set this CPU has (portable C, SSE2, AVX2).  The figure is the
 * median over REPS repetitions of at least SECONDS each; "new/old" is the
 * kernels the daemon would pick against the old code.  Every variant's
 * output is checked against the old code's before anything is timed.
 *
 * Exit status: 0, 1 when outputs differ, 2 on a usage error. */

#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicase.h>

#include "upcase.h"
#include "upcase-internal.h"

#define KIB 1024

static size_t old_upcase_buf(const uint8_t *in, size_t n, uint8_t *out,
                             uint64_t *invalid);
static void old_upcase_init(struct upcase *u, bool dot_quit);
static size_t old_upcase_feed(struct upcase *u, const uint8_t *in, size_t n,
                              bool eof, uint8_t *out, uint64_t *invalid);

static const char italian[] =
        "Nel mezzo del cammin di nostra vita mi ritrovai per una selva "
        "oscura, ché la diritta via era smarrita. Perché la città è così "
        "bella? Perché è lì da sempre: l'università, il caffè sotto i "
        "portici, la libertà di passeggiare senza fretta. Però non è più "
        "come una volta, dicono i vecchi seduti in piazza, e forse è vero: "
        "la velocità ha preso il posto della pazienza, e la qualità della "
        "vita si misura in minuti. Ciò nonostante, chi arriva qui resta "
        "colpito dall'umanità della gente e dalla semplicità dei gesti.\n";

static const char greek[] =
        "Η Ελλάδα είναι χώρα της νοτιοανατολικής Ευρώπης, στο νότιο άκρο "
        "της Βαλκανικής χερσονήσου. Η πρωτεύουσα και μεγαλύτερη πόλη της "
        "είναι η Αθήνα. Η ελληνική γλώσσα έχει την αρχαιότερη καταγεγραμμένη "
        "ιστορία από όλες τις ζωντανές ινδοευρωπαϊκές γλώσσες, και η "
        "λογοτεχνία της εκτείνεται σε σχεδόν τρεις χιλιετίες. Όσοι "
        "επισκέπτονται τα νησιά θυμούνται το φως, τη θάλασσα και τη "
        "φιλοξενία των ανθρώπων.\n";

static const char cjk[] =
        "日本語の文章は漢字と平仮名と片仮名で書かれる。大文字と小文字の区別は"
        "ないので、変換しても同じ文字が返る。中文也没有大小写之分，"
        "所以输出和输入完全相同。\n";

static const char ascii_prose[] =
        "the quick brown fox jumps over the lazy dog, and then it runs back "
        "home again; 42 times in a row, said Mr. Smith (who counted). ";

/* One case: an input and how it is fed. */
struct bcase {
        const char *name;
        size_t size;            /* input bytes */
        bool dot_quit;          /* upcase_feed() with dot_quit, else upcase_buf() */
        void (*fill)(uint8_t *buf, size_t size);
        uint8_t *in;
};

/* Repeats text[0..len) into buf[0..size), then cuts the last character
 * clean by padding with spaces. */
static void repeat(uint8_t *buf, size_t size, const char *text, size_t len) {
        for (size_t i = 0; i < size; i++)
                buf[i] = (uint8_t) text[i % len];
        size_t keep = upcase_cut(buf, size, size - 1);
        memset(buf + keep, ' ', size - keep - 1);
        buf[size - 1] = '\n';
}

static void fill_ascii(uint8_t *buf, size_t size) {
        repeat(buf, size, ascii_prose, strlen(ascii_prose));
}

/* Lines of 16 bytes, "\n" included, like a chat of short requests. */
static void fill_lines16(uint8_t *buf, size_t size) {
        for (size_t i = 0; i + 16 <= size; i += 16) {
                char line[17];
                snprintf(line, sizeof(line), "hello world %03zu\n", i / 16 % 1000);
                memcpy(buf + i, line, 16);
        }
}

/* Lines of about 1000 bytes. */
static void fill_long_lines(uint8_t *buf, size_t size) {
        fill_ascii(buf, size);
        for (size_t i = 999; i < size; i += 1000)
                buf[i] = '\n';
}

static void fill_mixed(uint8_t *buf, size_t size) {
        char text[sizeof(italian) + sizeof(greek)];

        snprintf(text, sizeof(text), "%s%s", italian, greek);
        repeat(buf, size, text, strlen(text));
}

static void fill_greek(uint8_t *buf, size_t size) {
        repeat(buf, size, greek, strlen(greek));
}

static void fill_cjk(uint8_t *buf, size_t size) {
        repeat(buf, size, cjk, strlen(cjk));
}

/* The Italian text as a Latin-1 client sends it: è is the byte 0xe8. */
static void fill_latin1(uint8_t *buf, size_t size) {
        char text[sizeof(italian)];
        size_t n = 0;

        for (const uint8_t *s = (const uint8_t *) italian; *s; s++) {
                if (*s == 0xC3) {
                        s++;
                        text[n++] = (char) (0xC0 | (*s & 0x3F));
                } else
                        text[n++] = (char) *s;
        }
        repeat(buf, size, text, n);
}

static struct bcase cases[] = {
        { "ascii 64 KiB",               64 * KIB, false, fill_ascii, NULL },
        { "ascii 16 KiB",               16 * KIB, false, fill_ascii, NULL },
        { "ascii 16-byte lines",        16 * KIB, false, fill_lines16, NULL },
        { "ascii 16-byte lines, dot",   16 * KIB, true, fill_lines16, NULL },
        { "ascii 1000-byte lines, dot", 16 * KIB, true, fill_long_lines, NULL },
        { "italian+greek 16 KiB",       16 * KIB, false, fill_mixed, NULL },
        { "italian+greek 16 KiB, dot",  16 * KIB, true, fill_mixed, NULL },
        { "greek 16 KiB",               16 * KIB, false, fill_greek, NULL },
        { "cjk 16 KiB",                 16 * KIB, false, fill_cjk, NULL },
        { "latin-1 (invalid) 16 KiB",   16 * KIB, false, fill_latin1, NULL },
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

/* The old code, then the current one with each kernel set. */
#define OLD (-1)
static int variants[1 + _UPCASE_ISA_MAX];
static size_t nvariants;

static const char *variant_name(int v) {
        return v == OLD ? "old" : upcase_isa_name((enum upcase_isa) v);
}

static uint8_t *out_buf;
static volatile size_t sink;

/* Inputs and output start on page boundaries (the output, with --offset,
 * that many bytes after one): how far apart the two are modulo 4 KiB
 * changes the ASCII figures by up to 1.7x on some CPUs (stores and later
 * loads whose addresses share their low 12 bits look dependent), so the
 * placement is fixed rather than left to malloc(). */
static void *page_alloc(size_t size) {
        void *p = aligned_alloc(4096, (size + 4095) / 4096 * 4096);

        if (!p) {
                perror("transform");
                exit(EXIT_FAILURE);
        }
        return p;
}

/* Maps the case's input once with variant v. */
static size_t run(const struct bcase *c, int v, uint64_t *invalid, bool *quit) {
        struct upcase u;
        size_t len;

        if (v != OLD)
                upcase_set_isa((enum upcase_isa) v);
        if (!c->dot_quit) {
                *quit = false;
                return v == OLD ? old_upcase_buf(c->in, c->size, out_buf, invalid)
                                : upcase_buf(c->in, c->size, out_buf, invalid);
        }
        if (v == OLD) {
                old_upcase_init(&u, true);
                len = old_upcase_feed(&u, c->in, c->size, false, out_buf, invalid);
        } else {
                upcase_init(&u, true);
                len = upcase_feed(&u, c->in, c->size, false, out_buf, invalid);
        }
        *quit = u.quit;
        return len;
}

/* The clock: by default the CPU time of this thread, so that time spent
 * preempted by other processes on a busy machine does not count (their
 * effect on the caches still does); --wall for the wall clock. */
static clockid_t clock_id = CLOCK_THREAD_CPUTIME_ID;

static double now(void) {
        struct timespec ts;

        clock_gettime(clock_id, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* MB/s of one repetition: as many runs as fit in min_time seconds, timed
 * in batches of about 1 MiB of input so the clock costs nothing; or
 * exactly fixed_runs runs (for profilers, which slow the clock down). */
__attribute__((noinline))      /* callgrind --toggle-collect=measure */
static double measure(const struct bcase *c, int v, double min_time,
                      size_t fixed_runs) {
        size_t batch = 1024 * KIB / c->size + 1, runs = 0;
        double start = now(), t;
        uint64_t invalid = 0;
        bool quit;

        if (fixed_runs > 0) {
                for (size_t i = 0; i < fixed_runs; i++)
                        sink += run(c, v, &invalid, &quit);
                t = now();
                return (double) c->size * (double) fixed_runs / (t - start) / 1e6;
        }
        do {
                for (size_t i = 0; i < batch; i++)
                        sink += run(c, v, &invalid, &quit);
                runs += batch;
                t = now();
        } while (t - start < min_time);
        return (double) c->size * (double) runs / (t - start) / 1e6;
}

/* Every variant must give the old code's output. */
static bool verify(const struct bcase *c) {
        uint8_t *want = page_alloc(UPCASE_OUT_MAX(c->size));
        uint64_t want_invalid = 0;
        bool quit, ok = true;

        size_t want_len = run(c, OLD, &want_invalid, &quit);
        memcpy(want, out_buf, want_len);
        if (quit || want_len < c->size) {
                fprintf(stderr, "transform: %s: the input is not what it should be\n",
                        c->name);
                ok = false;
        }
        for (int v = 0; v < _UPCASE_ISA_MAX; v++) {
                uint64_t invalid = 0;
                if (!upcase_set_isa((enum upcase_isa) v))
                        continue;
                size_t len = run(c, v, &invalid, &quit);
                if (len != want_len || memcmp(out_buf, want, len) != 0 ||
                    invalid != want_invalid || quit) {
                        fprintf(stderr, "transform: %s: %s differs from the old code\n",
                                c->name, variant_name(v));
                        ok = false;
                }
        }
        free(want);
        return ok;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

static double median(double *v, size_t n) {
        qsort(v, n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *f) {
        fprintf(f,
                "usage: transform [options]\n"
                "  -r, --reps N       repetitions, median reported (default 5)\n"
                "  -t, --time SEC     minimum time of one repetition (default 0.1)\n"
                "  -c, --cpu N        pin to CPU N\n"
                "  -f, --filter TEXT  only the case named TEXT, or those containing it\n"
                "  -n, --runs N       N runs per repetition instead of -t (profiling)\n"
                "  -i, --only NAME    measure only old, portable, sse2 or avx2\n"
                "  -o, --offset N     output buffer N bytes past a page boundary\n"
                "                     (default 0; inputs are page aligned)\n"
                "      --wall         time by the wall clock, not CPU time\n"
                "      --json         one JSON object on stdout\n"
                "  -h, --help         this text\n");
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "reps", required_argument, NULL, 'r' },
                { "time", required_argument, NULL, 't' },
                { "cpu", required_argument, NULL, 'c' },
                { "filter", required_argument, NULL, 'f' },
                { "offset", required_argument, NULL, 'o' },
                { "runs", required_argument, NULL, 'n' },
                { "only", required_argument, NULL, 'i' },
                { "json", no_argument, NULL, 'j' },
                { "wall", no_argument, NULL, 'w' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        const char *filter = "", *only = NULL;
        long fixed_runs = 0;
        double min_time = 0.1;
        long reps = 5, cpu = -1, out_offset = 0;
        bool json = false;
        int opt;

        while ((opt = getopt_long(argc, argv, "r:t:c:f:o:n:i:h", longopts, NULL)) != -1) {
                char *end;
                errno = 0;
                switch (opt) {
                case 'r':
                        reps = strtol(optarg, &end, 10);
                        if (errno || *end || reps < 1 || reps > 1000)
                                goto bad;
                        break;
                case 't':
                        min_time = strtod(optarg, &end);
                        if (errno || *end || !(min_time > 0 && min_time < 60))
                                goto bad;
                        break;
                case 'c':
                        cpu = strtol(optarg, &end, 10);
                        if (errno || *end || cpu < 0 || cpu >= CPU_SETSIZE)
                                goto bad;
                        break;
                case 'f':
                        filter = optarg;
                        break;
                case 'n':
                        fixed_runs = strtol(optarg, &end, 10);
                        if (errno || *end || fixed_runs < 1)
                                goto bad;
                        break;
                case 'i':
                        only = optarg;
                        break;
                case 'o':
                        out_offset = strtol(optarg, &end, 10);
                        if (errno || *end || out_offset < 0 || out_offset >= 4096)
                                goto bad;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'w':
                        clock_id = CLOCK_MONOTONIC;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        goto bad;
                }
        }
        if (optind != argc)
                goto bad;

        if (cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET((int) cpu, &set);
                if (sched_setaffinity(0, sizeof(set), &set) < 0) {
                        fprintf(stderr, "transform: CPU %ld: %s\n", cpu, strerror(errno));
                        return EXIT_FAILURE;
                }
        }

        /* The kernels the daemon would use go last: new/old compares them. */
        enum upcase_isa best = upcase_get_isa();
        for (int v = OLD; v < _UPCASE_ISA_MAX; v++)
                if ((v == OLD || upcase_set_isa((enum upcase_isa) v)) &&
                    (!only || strcmp(only, variant_name(v)) == 0))
                        variants[nvariants++] = v;
        upcase_set_isa(best);
        if (nvariants == 0) {
                fprintf(stderr, "transform: no kernels called \"%s\" here\n", only);
                return 2;
        }

        size_t max_size = 0;
        for (size_t i = 0; i < NCASES; i++)
                if (cases[i].size > max_size)
                        max_size = cases[i].size;
        uint8_t *out_page = page_alloc(UPCASE_OUT_MAX(max_size) + out_offset);
        out_buf = out_page + out_offset;

        /* A whole name picks that case alone, else any case containing
         * the text. */
        bool selected[NCASES], ok = true, exact = false;
        size_t nselected = 0;
        for (size_t i = 0; i < NCASES; i++)
                exact |= strcmp(cases[i].name, filter) == 0;
        for (size_t i = 0; i < NCASES; i++) {
                struct bcase *c = &cases[i];
                selected[i] = exact ? strcmp(c->name, filter) == 0
                                    : strstr(c->name, filter) != NULL;
                if (!selected[i])
                        continue;
                nselected++;
                c->in = page_alloc(c->size);
                c->fill(c->in, c->size);
                ok &= verify(c);
        }
        if (!ok)
                return EXIT_FAILURE;
        if (nselected == 0) {
                fprintf(stderr, "transform: no case matches \"%s\"\n", filter);
                return 2;
        }

        /* results[case][variant][rep]; one untimed round first warms
         * the caches and the CPU clock. */
        double (*results)[1 + _UPCASE_ISA_MAX][1000] = calloc(NCASES, sizeof(*results));
        if (!results) {
                perror("transform");
                return EXIT_FAILURE;
        }
        for (long r = -1; r < reps; r++)
                for (size_t i = 0; i < NCASES; i++)
                        for (size_t k = 0; selected[i] && k < nvariants; k++) {
                                double mbs = measure(&cases[i], variants[k],
                                                     r < 0 ? min_time / 4 : min_time,
                                                     (size_t) fixed_runs);
                                if (r >= 0)
                                        results[i][k][r] = mbs;
                        }
        upcase_set_isa(best);

        /* new/old needs both measured: variants[0] is then the old code. */
        double med[NCASES][1 + _UPCASE_ISA_MAX];
        size_t best_k = 0;
        for (size_t k = 0; k < nvariants; k++)
                if (variants[k] == (int) best && variants[0] == OLD)
                        best_k = k;
        for (size_t i = 0; i < NCASES; i++)
                for (size_t k = 0; selected[i] && k < nvariants; k++)
                        med[i][k] = median(results[i][k], (size_t) reps);

        if (json) {
                printf("{\"unit\": \"MB/s\", \"reps\": %ld, \"min_time\": %g, "
                       "\"out_offset\": %ld, \"clock\": \"%s\", \"isa\": \"%s\", "
                       "\"cases\": [", reps, min_time, out_offset,
                       clock_id == CLOCK_MONOTONIC ? "wall" : "cpu",
                       upcase_isa_name(best));
                const char *sep = "";
                for (size_t i = 0; i < NCASES; i++) {
                        if (!selected[i])
                                continue;
                        printf("%s\n  {\"name\": \"%s\", \"bytes\": %zu, \"dot_quit\": %s",
                               sep, cases[i].name, cases[i].size,
                               cases[i].dot_quit ? "true" : "false");
                        for (size_t k = 0; k < nvariants; k++)
                                printf(", \"%s\": %.1f", variant_name(variants[k]), med[i][k]);
                        if (best_k > 0)
                                printf(", \"new_over_old\": %.2f", med[i][best_k] / med[i][0]);
                        printf("}");
                        sep = ",";
                }
                printf("\n]}\n");
        } else {
                printf("MB/s of input (10^6 bytes per %s second), median of %ld "
                       "repetitions of ", clock_id == CLOCK_MONOTONIC ? "wall" : "CPU",
                       reps);
                if (fixed_runs > 0)
                        printf("%ld runs", fixed_runs);
                else
                        printf("%gs", min_time);
                printf("; the daemon uses %s\n\n", upcase_isa_name(best));
                printf("%-28s", "case");
                for (size_t k = 0; k < nvariants; k++)
                        printf(" %10s", variant_name(variants[k]));
                printf(best_k > 0 ? " %8s\n" : "\n", "new/old");
                for (size_t i = 0; i < NCASES; i++) {
                        if (!selected[i])
                                continue;
                        printf("%-28s", cases[i].name);
                        for (size_t k = 0; k < nvariants; k++)
                                printf(" %10.0f", med[i][k]);
                        if (best_k > 0)
                                printf(" %7.1fx", med[i][best_k] / med[i][0]);
                        printf("\n");
                }
        }

        for (size_t i = 0; i < NCASES; i++)
                free(cases[i].in);
        free(results);
        free(out_page);
        return EXIT_SUCCESS;

bad:
        usage(stderr);
        return 2;
}

/* The old code, as daemon/upcase.c was before the case table (commit
 * 732c724), renamed old_*: the baseline the new code is measured against.
 * Not maintained; do not fix it. */

enum old_upcase_line_state {
        OLD_LINE_START,     /* the next byte begins a line */
        OLD_LINE_MID,       /* inside a line: "." is ordinary text */
        OLD_LINE_DOT,       /* "." held back at the start of a line */
        OLD_LINE_DOT_CR,    /* ".\r" held back at the start of a line */
};

/* Returned by old_utf8_sequence() besides a length. */
#define OLD_SEQ_INVALID     (-1)
#define OLD_SEQ_INCOMPLETE  0

/* Blocks this long are tested for ASCII with one OR-reduction. */
#define OLD_ASCII_BLOCK 32

/* Where the output of one call goes. */
struct old_sink {
        uint8_t *buf;
        size_t len;             /* bytes written so far */
        size_t size;            /* UPCASE_OUT_MAX() of the call's input */
        uint64_t invalid;       /* invalid bytes passed through */
};

static void old_upcase_init(struct upcase *u, bool dot_quit) {
        memset(u, 0, sizeof(*u));
        u->line = OLD_LINE_START;
        u->dot_quit = dot_quit;
}

/* Looks at the sequence starting at s[0], per RFC 3629 (no overlongs, no
 * surrogates, nothing above U+10FFFF).  Returns its length (1..4) when it
 * is complete and valid, OLD_SEQ_INCOMPLETE when s[0..n) is a valid but
 * unfinished prefix, OLD_SEQ_INVALID when s[0] cannot start a valid sequence
 * here: then s[0] alone is invalid and decoding resumes at s[1]. */
static int old_utf8_sequence(const uint8_t *s, size_t n) {
        uint8_t c = s[0];
        uint8_t lo = 0x80, hi = 0xBF;   /* range of the second byte */
        int len;

        if (c < 0x80)
                return 1;
        if (c < 0xC2)                   /* continuation, or overlong C0/C1 */
                return OLD_SEQ_INVALID;
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
                return OLD_SEQ_INVALID;

        for (int i = 1; i < len; i++) {
                if ((size_t) i >= n)
                        return OLD_SEQ_INCOMPLETE;
                if (s[i] < lo || s[i] > hi)
                        return OLD_SEQ_INVALID;
                lo = 0x80;
                hi = 0xBF;
        }
        return len;
}

static void old_put_bytes(struct old_sink *o, const uint8_t *s, size_t n) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
}

static void old_put_invalid(struct old_sink *o, const uint8_t *s, size_t n) {
        old_put_bytes(o, s, n);
        o->invalid += n;
}

static inline uint8_t old_ascii_toupper(uint8_t c) {
        return (uint8_t) (c - 'a') < 26 ? (uint8_t) (c - ('a' - 'A')) : c;
}

/* Upper-cases the ASCII bytes at the start of in[0..n) into out and
 * returns how many there were.  Bytes of out past that count, up to
 * out[n - 1], may be scribbled on; the caller overwrites them.
 *
 * Loops of a fixed trip count with no early exit are what gcc -O2
 * vectorises, so whole blocks are mapped and OR-tested for a high bit
 * first; the block holding the first non-ASCII byte is redone bytewise. */
static size_t old_ascii_upper_prefix(const uint8_t *restrict in, size_t n,
                                 uint8_t *restrict out) {
        size_t i = 0;

        for (; i + OLD_ASCII_BLOCK <= n; i += OLD_ASCII_BLOCK) {
                uint8_t any = 0;
                for (size_t j = 0; j < OLD_ASCII_BLOCK; j++) {
                        any |= in[i + j];
                        out[i + j] = old_ascii_toupper(in[i + j]);
                }
                if (any & 0x80)
                        break;
        }
        for (; i < n && in[i] < 0x80; i++)
                out[i] = old_ascii_toupper(in[i]);
        return i;
}

/* Length of the run of complete, valid non-ASCII characters at s. */
static size_t old_unicode_run_len(const uint8_t *s, size_t n) {
        size_t i = 0;

        while (i < n) {
                int len = old_utf8_sequence(s + i, n - i);
                if (len < 2)
                        break;
                i += (size_t) len;
        }
        return i;
}

/* Maps n bytes of valid UTF-8. */
static void old_unicode_upper(const uint8_t *s, size_t n, struct old_sink *o) {
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
                old_put_bytes(o, r, len);
        else
                old_put_bytes(o, s, n);
        free(r);
}

/* Maps in[0..n) except for an incomplete sequence at its very end, which
 * is left to the caller.  Returns the number of bytes consumed. */
static size_t old_map_text(const uint8_t *in, size_t n, struct old_sink *o) {
        size_t i = 0;

        while (i < n) {
                size_t run = old_ascii_upper_prefix(in + i, n - i,
                                                o->buf + o->len);
                if (run > 0) {
                        o->len += run;
                        i += run;
                        continue;
                }

                run = old_unicode_run_len(in + i, n - i);
                if (run > 0) {
                        old_unicode_upper(in + i, run, o);
                        i += run;
                        continue;
                }

                if (old_utf8_sequence(in + i, n - i) == OLD_SEQ_INCOMPLETE)
                        break;
                old_put_invalid(o, in + i, 1);
                i++;
        }
        return i;
}

static void old_flush_tail(struct upcase *u, struct old_sink *o) {
        old_put_invalid(o, u->tail, u->ntail);
        u->ntail = 0;
}

/* Completes the sequence held back by the previous feed with the first
 * bytes of this one.  Returns the number of input bytes consumed. */
static size_t old_complete_tail(struct upcase *u, const uint8_t *in, size_t n,
                            struct old_sink *o) {
        uint8_t seq[4];
        size_t held = u->ntail;
        size_t take = n < sizeof(seq) - held ? n : sizeof(seq) - held;

        memcpy(seq, u->tail, held);
        memcpy(seq + held, in, take);

        int len = old_utf8_sequence(seq, held + take);
        if (len == OLD_SEQ_INCOMPLETE) {
                /* All of this (short) input extends the prefix. */
                memcpy(u->tail, seq, held + take);
                u->ntail = (uint8_t) (held + take);
                return take;
        }
        if (len == OLD_SEQ_INVALID) {
                /* The held bytes are invalid; the byte that broke the
                 * sequence is looked at afresh by the caller. */
                old_flush_tail(u, o);
                return 0;
        }
        old_unicode_upper(seq, (size_t) len, o);
        u->ntail = 0;
        return (size_t) len - held;
}

/* Outputs the "." or ".\r" held back at the start of a line, which turned
 * out not to be a "." line. */
static void old_release_dot(struct upcase *u, struct old_sink *o) {
        static const uint8_t held[] = ".\r";

        old_put_bytes(o, held, u->line == OLD_LINE_DOT_CR ? 2 : 1);
        u->line = OLD_LINE_MID;
}

/* Runs the "." line state machine on the first byte of a line, or on the
 * byte after a held "." or ".\r".  Returns 1 when it consumed the byte, 0
 * when the byte is ordinary text. */
static size_t old_step_line_start(struct upcase *u, uint8_t c, struct old_sink *o) {
        switch (u->line) {
        case OLD_LINE_START:
                if (c == '.') {
                        u->line = OLD_LINE_DOT;
                        return 1;
                }
                u->line = OLD_LINE_MID;
                return 0;
        case OLD_LINE_DOT:
        case OLD_LINE_DOT_CR:
                if (c == '\r' && u->line == OLD_LINE_DOT) {
                        u->line = OLD_LINE_DOT_CR;
                        return 1;
                }
                if (c == '\n') {
                        u->quit = true;
                        return 1;
                }
                old_release_dot(u, o);
                return 0;
        default:
                u->line = OLD_LINE_MID;
                return 0;
        }
}

/* Consumes a prefix of in[0..n), n > 0: one byte of "." line handling, or
 * text up to and including the next "\n" (with dot_quit) or to the end.
 * Returns the number of bytes consumed. */
static size_t old_feed_step(struct upcase *u, const uint8_t *in, size_t n,
                        struct old_sink *o) {
        size_t seg = n;

        if (u->dot_quit) {
                if (u->line != OLD_LINE_MID)
                        return old_step_line_start(u, in[0], o);
                const uint8_t *nl = memchr(in, '\n', n);
                if (nl)
                        seg = (size_t) (nl - in) + 1;
        }

        size_t used = old_map_text(in, seg, o);
        if (used < seg) {
                /* An unfinished sequence can only be at the very end of
                 * the input: a segment ending in "\n" has none. */
                u->ntail = (uint8_t) (seg - used);
                memcpy(u->tail, in + used, u->ntail);
        } else if (u->dot_quit && in[seg - 1] == '\n')
                u->line = OLD_LINE_START;
        return seg;
}

/* The stream ends: what was held back is settled. */
static void old_finish(struct upcase *u, struct old_sink *o) {
        if (u->ntail > 0)
                old_flush_tail(u, o);
        if (!u->dot_quit)
                return;
        if (u->line == OLD_LINE_DOT)
                u->quit = true;         /* "." then EOF */
        else if (u->line == OLD_LINE_DOT_CR)
                old_release_dot(u, o);      /* ".\r" then EOF is not a "." line */
}

static size_t old_upcase_feed(struct upcase *u, const uint8_t *in, size_t n,
                              bool eof, uint8_t *out, uint64_t *invalid) {
        struct old_sink o = { .buf = out, .size = UPCASE_OUT_MAX(n) };
        size_t used = 0;

        if (u->quit)
                return 0;

        if (u->ntail > 0 && n > 0)
                used = old_complete_tail(u, in, n, &o);
        while (used < n && !u->quit)
                used += old_feed_step(u, in + used, n - used, &o);
        if (eof && !u->quit)
                old_finish(u, &o);

        if (invalid)
                *invalid += o.invalid;
        return o.len;
}

static size_t old_upcase_buf(const uint8_t *in, size_t n, uint8_t *out,
                             uint64_t *invalid) {
        struct upcase u;

        old_upcase_init(&u, false);
        return old_upcase_feed(&u, in, n, true, out, invalid);
}
