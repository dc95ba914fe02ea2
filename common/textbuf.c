/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textbuf.h"

void textbuf_init(struct textbuf *b, size_t max) {
        *b = (struct textbuf) { .max = max };
}

void textbuf_free(struct textbuf *b) {
        free(b->data);
        textbuf_init(b, b->max);
}

static bool textbuf_reserve(struct textbuf *b, size_t extra) {
        size_t need = b->len + extra + 1, cap;
        char *p;

        if (need <= b->cap)
                return true;
        if (need > b->max) {
                b->overflow = true;
                return false;
        }
        cap = b->cap ? b->cap : 256;
        while (cap < need)
                cap *= 2;
        if (cap > b->max)
                cap = b->max;
        p = realloc(b->data, cap);
        if (!p) {
                b->overflow = true;
                return false;
        }
        b->data = p;
        b->cap = cap;
        return true;
}

void textbuf_append(struct textbuf *b, const char *s, size_t len) {
        if (!textbuf_reserve(b, len))
                return;
        memcpy(b->data + b->len, s, len);
        b->len += len;
        b->data[b->len] = '\0';
}

void textbuf_printf(struct textbuf *b, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || !textbuf_reserve(b, n))
                return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, n + 1, fmt, ap);
        va_end(ap);
        b->len += n;
}

void textbuf_consume(struct textbuf *b, size_t n) {
        if (n >= b->len) {
                b->len = 0;
                if (b->data)
                        b->data[0] = '\0';
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = '\0';
}
