/* SPDX-License-Identifier: MIT */
#pragma once

/* A reply of the daemon, as uppercasectl receives and parses it (the wire
 * format is described in control-proto.h). */

#include <stdbool.h>
#include <stddef.h>

/* The largest reply read: far more than a full connection table (65536
 * lines of about 130 bytes), and bounded so a runaway peer cannot eat
 * the caller's memory. */
#define CTL_REPLY_MAX (32 * 1024 * 1024)

struct ctl_field {
        const char *key;
        const char *value;
};

struct ctl_reply {
        char *data;                     /* the lines, cut in place */
        struct ctl_field *fields;       /* one per data line: "key value" */
        size_t n_fields;
        const char *error;              /* the reason of "ERROR ...", NULL for OK */
};

/* Whether buf[0..len) holds a whole reply, i.e. ends with its final line.
 * *scanned is where the search resumes (start with 0), so feeding a reply
 * piece by piece costs linear time.  Returns 1 when complete, 0 when more
 * is needed, -EBADMSG when bytes follow the final line. */
int ctl_reply_complete(const char *buf, size_t len, size_t *scanned);

/* Parses a complete reply.  A data line "key value" becomes a field (the
 * value is empty when there is no blank).  Returns 0 or -EBADMSG (no final
 * line, a NUL byte), -ENOMEM. */
int ctl_reply_parse(const char *buf, size_t len, struct ctl_reply *ret);
void ctl_reply_free(struct ctl_reply *r);

/* The value of the first field named key, or NULL. */
const char *ctl_fields_get(const struct ctl_field *f, size_t n, const char *key);

/* Splits "k=v k=v ..." (a connection line) into fields, in place.  A word
 * without "=" gets an empty value.  Returns 0 or -E2BIG beyond max. */
int ctl_split_pairs(char *s, struct ctl_field *fields, size_t max, size_t *n);

/* Strict decimal number: -?digits(.digits)?  (what the daemon sends, and
 * valid JSON and Prometheus values as they are). */
bool ctl_is_number(const char *s);
