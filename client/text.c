/* SPDX-License-Identifier: MIT */
/* Pure helpers of uppercase(1): ports, timeouts, host names, words and
 * lines.  No I/O here, so the unit tests can reach every corner. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "uppercase.h"

bool client_all_digits(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int client_parse_port(const char *s, uint16_t *ret) {
        unsigned long v = 0;

        if (!client_all_digits(s))
                return -EINVAL;
        /* By hand: strtoul() takes signs and white space, which are no
         * part of a port. */
        for (; *s; s++) {
                v = v * 10 + (unsigned long) (*s - '0');
                if (v > 65535)
                        return -ERANGE;
        }
        if (v == 0)
                return -ERANGE;
        *ret = (uint16_t) v;
        return 0;
}

int client_parse_timeout(const char *s, uint64_t *ret_usec) {
        uint64_t usec;
        int r;

        r = duration_parse(s, &usec);
        if (r < 0)
                return r;
        /* 0 would mean "wait for ever": the client must never hang. */
        if (usec == 0)
                return -EINVAL;
        *ret_usec = usec;
        return 0;
}

int client_copy_host(const char *host, char *buf, size_t len) {
        size_t n = strlen(host);

        /* "[::1]" as in URLs and in uppercased's own ADDR:PORT syntax. */
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
                host++;
                n -= 2;
        }
        if (n == 0)
                return -EINVAL;
        if (n >= len)
                return -ENAMETOOLONG;
        memcpy(buf, host, n);
        buf[n] = '\0';
        return 0;
}

char *client_format_endpoint(const char *host, const char *port, char *buf, size_t len) {
        if (strchr(host, ':'))
                snprintf(buf, len, "[%s]:%s", host, port);
        else
                snprintf(buf, len, "%s:%s", host, port);
        return buf;
}

char *client_join_words(char *const words[], int n, bool newline, size_t *ret_len) {
        size_t len = newline ? 1 : 0, off = 0;
        char *buf;

        for (int i = 0; i < n; i++)
                len += strlen(words[i]) + (i > 0);
        /* +1: malloc(0) may return NULL, which would read as ENOMEM. */
        buf = malloc(len + 1);
        if (!buf)
                return NULL;
        for (int i = 0; i < n; i++) {
                size_t w = strlen(words[i]);

                if (i > 0)
                        buf[off++] = ' ';
                memcpy(buf + off, words[i], w);
                off += w;
        }
        if (newline)
                buf[off++] = '\n';
        *ret_len = off;
        return buf;
}

int client_split_line(const char *buf, size_t len, bool eof, size_t max,
                      size_t *ret_len, size_t *ret_used) {
        const char *nl = memchr(buf, '\n', len < max ? len : max);

        if (nl) {
                *ret_len = (size_t) (nl - buf);
                *ret_used = *ret_len + 1;
                return 1;
        }
        if (len >= max)
                return -EMSGSIZE;
        if (!eof || len == 0)
                return 0;
        *ret_len = *ret_used = len;
        return 1;
}

bool client_is_quit_line(const char *line, size_t len) {
        return (len == 1 && line[0] == '.') ||
               (len == 2 && line[0] == '.' && line[1] == '\r');
}

bool client_begins_with_quit_line(const char *head, size_t len, bool whole) {
        if (len == 0 || head[0] != '.')
                return false;
        if (len == 1)
                return whole;
        if (head[1] == '\n')
                return true;
        if (head[1] != '\r')
                return false;
        /* ".\r" at the end of the input: a quit line for a lenient reader. */
        return len == 2 ? whole : head[2] == '\n';
}

size_t client_count_newlines(const char *buf, size_t len) {
        size_t n = 0;

        for (const char *p = buf, *end = buf + len; (p = memchr(p, '\n', (size_t) (end - p))); p++)
                n++;
        return n;
}
