/* SPDX-License-Identifier: MIT */
/* upcase-filter [-s SEED]: stdin through the protocol core to stdout.
 *
 * For the differential test against Python's str.upper().  Without -s,
 * stdin is fed in 4096-byte pieces; with -s, in pieces of 1 to 7 bytes
 * whose sizes follow SEED, to show that the splits do not matter.  EOF
 * comes with the last piece.  No "." line handling: every byte of the
 * input is mapped. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upcase.h"

#define PIECE_MAX 4096

static uint32_t rng_next(uint32_t *state) {
        /* xorshift32; a zero state would stay zero. */
        uint32_t x = *state ? *state : 0x9e3779b9u;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *state = x;
}

/* Reads all of stdin into a malloc'ed buffer. */
static uint8_t *read_all(size_t *ret_len) {
        size_t len = 0, size = 1 << 16;
        uint8_t *buf = malloc(size);

        while (buf) {
                if (len == size) {
                        uint8_t *bigger = realloc(buf, size * 2);
                        if (!bigger)
                                break;
                        buf = bigger;
                        size *= 2;
                }
                ssize_t r = read(STDIN_FILENO, buf + len, size - len);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        break;
                if (r == 0) {
                        *ret_len = len;
                        return buf;
                }
                len += (size_t) r;
        }
        free(buf);
        return NULL;
}

static size_t piece_size(bool random_split, uint32_t *rng) {
        return random_split ? 1 + rng_next(rng) % 7 : PIECE_MAX;
}

/* The whole input is read first so that tiny pieces cost no system
 * calls: the point of -s is the splits, not the reads. */
static int filter(bool random_split, uint32_t seed) {
        static uint8_t out[UPCASE_OUT_MAX(PIECE_MAX)];
        struct upcase u;
        uint64_t invalid = 0;
        size_t len, pos = 0;
        bool eof = false;

        uint8_t *in = read_all(&len);
        if (!in) {
                fprintf(stderr, "upcase-filter: reading stdin: %s\n",
                        strerror(errno));
                return EXIT_FAILURE;
        }

        upcase_init(&u, false);
        while (!eof) {
                size_t n = piece_size(random_split, &seed);
                if (n >= len - pos) {
                        n = len - pos;
                        eof = true;
                }
                size_t w = upcase_feed(&u, in + pos, n, eof, out, &invalid);
                fwrite(out, 1, w, stdout);
                pos += n;
        }
        free(in);

        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "upcase-filter: writing stdout: %s\n",
                        strerror(errno));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}

static int usage(void) {
        fprintf(stderr, "usage: upcase-filter [-s SPLITSEED]\n");
        return 2;
}

int main(int argc, char **argv) {
        bool random_split = false;
        uint32_t seed = 0;
        int opt;

        while ((opt = getopt(argc, argv, "s:")) != -1) {
                char *end;
                switch (opt) {
                case 's':
                        errno = 0;
                        seed = (uint32_t) strtoul(optarg, &end, 0);
                        if (errno != 0 || end == optarg || *end != '\0')
                                return usage();
                        random_split = true;
                        break;
                default:
                        return usage();
                }
        }
        if (optind != argc)
                return usage();
        return filter(random_split, seed);
}
