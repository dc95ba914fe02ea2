/* SPDX-License-Identifier: MIT */
#pragma once

/* The output formats of uppercasectl: pure functions from a parsed reply to
 * text.  Each returns 0, or -EBADMSG when the reply is not what the command
 * returns, -ENOBUFS when the output outgrew its buffer. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reply.h"
#include "textbuf.h"

/* Output is bounded too: JSON of a full-size reply stays well below this. */
#define CTL_OUTPUT_MAX (4 * (size_t) CTL_REPLY_MAX)

enum ctl_format {
        CTL_HUMAN,
        CTL_JSON,
        CTL_PROMETHEUS,
        _CTL_FORMAT_MAX,
};

typedef int (*ctl_printer)(const struct ctl_reply *r, struct textbuf *out);

/* --- JSON (json.c) --- */

/* Appends s as a JSON string: quotes, backslashes and control characters
 * escaped, bytes that are not valid UTF-8 replaced by U+FFFD. */
void json_append_string(struct textbuf *out, const char *s);
/* "key value" lines as one object; dotted keys nest ("tcp.active 3" ->
 * {"tcp":{"active":3}}); a repeated key becomes an array. */
int ctl_json_fields(const struct ctl_reply *r, struct textbuf *out);
/* {"connections":[{"id":7,"peer":"...","address":"...","port":N,...}]} */
int ctl_json_connections(const struct ctl_reply *r, struct textbuf *out);
int ctl_json_reload(const struct ctl_reply *r, struct textbuf *out);
int ctl_json_reset(const struct ctl_reply *r, struct textbuf *out);

/* --- Prometheus text exposition format (prometheus.c) --- */

int ctl_prometheus_stats(const struct ctl_reply *r, struct textbuf *out);

/* --- for people (human.c) --- */

/* 11525.3 -> "3h 12m 5s"; whole seconds, leading zero units left out. */
char *ctl_format_uptime(double seconds, char *buf, size_t len);
/* 1536 -> "1.5 KiB"; below 1024 "512 B". */
char *ctl_format_bytes(uint64_t bytes, char *buf, size_t len);
#define CTL_FORMAT_BUF 64

int ctl_human_status(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_stats(const struct ctl_reply *r, struct textbuf *out);
/* stats with each counter's rate per second since prev (the previous
 * reply; NULL: none yet), timed by the daemon's uptime_seconds. */
int ctl_human_stats_rates(const struct ctl_reply *r, const struct ctl_reply *prev, struct textbuf *out);
/* Whether a stats key is a counter (it only grows, but on "reset"), not
 * a gauge or a setting. */
bool ctl_stat_is_counter(const char *key);
int ctl_human_connections(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_timeout(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_reload(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_drain(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_kill(const struct ctl_reply *r, struct textbuf *out);
int ctl_human_reset(const struct ctl_reply *r, struct textbuf *out);

/* The -ENOBUFS check every printer ends with. */
static inline int ctl_output_result(const struct textbuf *out) {
        return out->overflow ? -ENOBUFS : 0;
}
