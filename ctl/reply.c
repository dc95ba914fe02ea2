/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

/* Data lines start with a lowercase key, so they can never be mistaken for
 * the final "OK" or "ERROR <reason>" line. */
static bool line_is_final(const char *s, size_t len) {
        if (len > 0 && s[len - 1] == '\r')
                len--;
        if (len == 2 && memcmp(s, "OK", 2) == 0)
                return true;
        return len >= 5 && memcmp(s, "ERROR", 5) == 0 && (len == 5 || s[5] == ' ');
}

int ctl_reply_complete(const char *buf, size_t len, size_t *scanned) {
        const char *nl;

        while (*scanned < len && (nl = memchr(buf + *scanned, '\n', len - *scanned))) {
                size_t start = *scanned, end = nl - buf;

                *scanned = end + 1;
                if (line_is_final(buf + start, end - start))
                        return *scanned == len ? 1 : -EBADMSG;
        }
        return 0;
}

static void strip_cr(char *line) {
        size_t len = strlen(line);

        if (len > 0 && line[len - 1] == '\r')
                line[len - 1] = '\0';
}

static struct ctl_field field_split(char *line) {
        char *blank = strchr(line, ' ');

        if (!blank)
                return (struct ctl_field) { line, "" };
        *blank = '\0';
        return (struct ctl_field) { line, blank + 1 };
}

static size_t count_lines(const char *buf, size_t len) {
        size_t n = 0;

        for (const char *p = buf; (p = memchr(p, '\n', len - (p - buf))); p++)
                n++;
        return n;
}

/* Cuts data (len bytes, NUL-terminated, ending in "\n") into fields; the
 * last line is the final one. */
static int reply_split(struct ctl_reply *r, size_t len) {
        char *line = r->data, *nl;

        while ((nl = memchr(line, '\n', len - (line - r->data)))) {
                *nl = '\0';
                if ((size_t) (nl - line) != strlen(line))
                        return -EBADMSG;
                strip_cr(line);
                if (nl + 1 == r->data + len) {
                        if (!line_is_final(line, strlen(line)))
                                return -EBADMSG;
                        r->error = line[0] == 'E' ? line + (line[5] ? 6 : 5) : NULL;
                        return 0;
                }
                if (line_is_final(line, strlen(line)))
                        return -EBADMSG;
                r->fields[r->n_fields++] = field_split(line);
                line = nl + 1;
        }
        return -EBADMSG;
}

int ctl_reply_parse(const char *buf, size_t len, struct ctl_reply *ret) {
        struct ctl_reply r = { 0 };
        size_t n = count_lines(buf, len);
        int e;

        if (n == 0 || buf[len - 1] != '\n')
                return -EBADMSG;
        r.data = malloc(len + 1);
        r.fields = calloc(n, sizeof(*r.fields));
        if (!r.data || !r.fields) {
                ctl_reply_free(&r);
                return -ENOMEM;
        }
        memcpy(r.data, buf, len);
        r.data[len] = '\0';
        e = reply_split(&r, len);
        if (e < 0) {
                ctl_reply_free(&r);
                return e;
        }
        *ret = r;
        return 0;
}

void ctl_reply_free(struct ctl_reply *r) {
        free(r->data);
        free(r->fields);
        *r = (struct ctl_reply) { 0 };
}

const char *ctl_fields_get(const struct ctl_field *f, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(f[i].key, key) == 0)
                        return f[i].value;
        return NULL;
}

int ctl_split_pairs(char *s, struct ctl_field *fields, size_t max, size_t *n) {
        char *save = NULL;

        *n = 0;
        for (char *w = strtok_r(s, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
                char *eq = strchr(w, '=');

                if (*n == max)
                        return -E2BIG;
                if (eq)
                        *eq = '\0';
                fields[(*n)++] = (struct ctl_field) { w, eq ? eq + 1 : "" };
        }
        return 0;
}

static const char *skip_digits(const char *s) {
        const char *p = s;

        while (*p >= '0' && *p <= '9')
                p++;
        return p == s ? NULL : p;
}

bool ctl_is_number(const char *s) {
        const char *p = s + (*s == '-');

        /* JSON forbids leading zeros: "007" stays a string. */
        if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
                return false;
        p = skip_digits(p);
        if (p && *p == '.')
                p = skip_digits(p + 1);
        return p && *p == '\0';
}
