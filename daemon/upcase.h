/* SPDX-License-Identifier: MIT */
#pragma once

/* The protocol core: Python's str.upper() applied to a UTF-8 byte stream.
 * Pure functions, no I/O, no allocation.
 *
 * - Valid UTF-8 is mapped with full Unicode case mapping (libunistring,
 *   no locale): "ß" -> "SS".
 * - Bytes that are not part of a valid UTF-8 sequence pass through unchanged
 *   (what Python does with errors="surrogateescape").
 * - A sequence split across two feeds is held back (at most 3 bytes) and
 *   mapped when it completes, so the output never depends on the splits.
 * - With dot_quit (TCP), a line that is exactly "." (ended by "\n", "\r\n" or
 *   EOF) ends the stream: nothing is output for it and all later input is
 *   ignored.  A "." is held back until the next byte tells whether it is
 *   such a line. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Output bytes needed for n input bytes: full case mapping at most triples
 * a character ("ΐ" U+0390, 2 bytes -> 6 bytes), plus held-back bytes. */
#define UPCASE_OUT_MAX(n) (3 * (size_t)(n) + 16)

/* Largest UDP payload (IPv4); replies are cut to this. */
#define UPCASE_UDP_MAX 65507

struct upcase {
        uint8_t tail[3];   /* incomplete UTF-8 sequence from the last feed */
        uint8_t ntail;
        uint8_t line;      /* enum upcase_line_state, upcase.c */
        bool dot_quit;     /* a "." line ends the stream (TCP) */
        bool quit;         /* the "." line was seen */
};

void upcase_init(struct upcase *u, bool dot_quit);

/* Maps in[0..n) and writes the result to out, which must hold
 * UPCASE_OUT_MAX(n) bytes.  eof: the stream ends after this input; held-back
 * bytes are flushed (an incomplete sequence as invalid bytes, a pending "."
 * line as the quit).  Adds the number of invalid bytes passed through to
 * *invalid.  Returns the number of bytes written.  Once u->quit is set,
 * all further input is ignored and 0 is returned. */
size_t upcase_feed(struct upcase *u, const uint8_t *in, size_t n, bool eof,
                   uint8_t *out, uint64_t *invalid);

/* Whether u is a state upcase_feed() can have left (for state read back
 * from outside, such as a connection handed over across a restart). */
bool upcase_state_valid(const struct upcase *u);

/* One complete buffer (a UDP datagram): no "." handling. */
size_t upcase_buf(const uint8_t *in, size_t n, uint8_t *out, uint64_t *invalid);

/* Largest length <= max at which s[0..len) can be cut without splitting a
 * UTF-8 character.  Returns len itself when len <= max. */
size_t upcase_cut(const uint8_t *s, size_t len, size_t max);
