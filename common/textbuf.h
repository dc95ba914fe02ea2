/* SPDX-License-Identifier: MIT */
#pragma once

/* A growable byte buffer with a hard size limit.  (Not "strbuf": libconfig
 * exports strbuf_append(), and ours would interpose it.) */

#include <stdbool.h>
#include <stddef.h>

struct textbuf {
        char *data;
        size_t len, cap, max;
        bool overflow;          /* an append hit max and was dropped */
};

void textbuf_init(struct textbuf *b, size_t max);
void textbuf_free(struct textbuf *b);
/* Appends formatted text; on overflow or ENOMEM sets b->overflow. */
void textbuf_printf(struct textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void textbuf_append(struct textbuf *b, const char *s, size_t len);
/* Drops the first n bytes. */
void textbuf_consume(struct textbuf *b, size_t n);
