/* SPDX-License-Identifier: MIT */
/* The default output: aligned, with units, for a person at a terminal. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "output.h"

#define LABEL_MAX 64
#define VALUE_MAX 64

/* --- units --- */

char *ctl_format_uptime(double seconds, char *buf, size_t len) {
        uint64_t s = seconds >= 0 && seconds < 1e18 ? (uint64_t) seconds : 0;
        uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

        s %= 60;
        if (d > 0)
                snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", d, h, m, s);
        else if (h > 0)
                snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", h, m, s);
        else if (m > 0)
                snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s", m, s);
        else
                snprintf(buf, len, "%" PRIu64 "s", s);
        return buf;
}

char *ctl_format_bytes(uint64_t bytes, char *buf, size_t len) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024) {
                snprintf(buf, len, "%" PRIu64 " B", bytes);
                return buf;
        }
        while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024;
                u++;
        }
        snprintf(buf, len, "%.1f %s", v, units[u]);
        return buf;
}

/* Connection ages: tenths of a second while short, then like the uptime. */
static char *format_age(const char *value, char *buf, size_t len) {
        double s;

        if (!ctl_is_number(value))
                snprintf(buf, len, "%s", value);
        else if ((s = strtod(value, NULL)) < 60)
                snprintf(buf, len, "%.1fs", s);
        else
                ctl_format_uptime(s, buf, len);
        return buf;
}

static char *format_size(const char *value, char *buf, size_t len) {
        if (ctl_is_number(value) && value[0] != '-')
                return ctl_format_bytes(strtoull(value, NULL, 10), buf, len);
        snprintf(buf, len, "%s", value);
        return buf;
}

/* --- status: "Key:  value" --- */

static const struct {
        const char *key, *label;
} status_labels[] = {
        { "version",          "Version" },
        { "pid",              "PID" },
        { "model",            "Worker model" },
        { "uptime_seconds",   "Uptime" },
        { "start_time_seconds", "Started" },
        { "control_protocol", "Control protocol" },
        { "threads",          "Threads" },
        { "state",            "State" },
        { "config",           "Configuration" },
        { "socket_activated", "Socket activated" },
        { "connections",      "Connections" },
        { "instance",         "Instance" },
        { "balancer",         "Balancer" },
        { "listen",           "Listening on" },
        { "agent",            "Agent-check on" },
};

static const char *status_label(const char *key) {
        for (size_t i = 0; i < sizeof(status_labels) / sizeof(status_labels[0]); i++)
                if (strcmp(status_labels[i].key, key) == 0)
                        return status_labels[i].label;
        return key;
}

/* Seconds since the epoch as local time: "2026-12-02 07:01:45 UTC". */
static const char *format_time(const char *value, char *buf, size_t len) {
        time_t t = (time_t) strtod(value, NULL);
        struct tm tm;

        if (!localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return value;
        return buf;
}

static const char *status_value(const struct ctl_field *f, char *buf, size_t len) {
        if (strcmp(f->key, "uptime_seconds") == 0 && ctl_is_number(f->value))
                return ctl_format_uptime(strtod(f->value, NULL), buf, len);
        if (strcmp(f->key, "start_time_seconds") == 0 && ctl_is_number(f->value))
                return format_time(f->value, buf, len);
        return f->value;
}

int ctl_human_status(const struct ctl_reply *r, struct textbuf *out) {
        int width = 0;

        for (size_t i = 0; i < r->n_fields; i++) {
                int w = (int) strlen(status_label(r->fields[i].key)) + 1;

                width = w > width ? w : width;
        }
        for (size_t i = 0; i < r->n_fields; i++) {
                const struct ctl_field *f = &r->fields[i];
                bool repeated = i > 0 && strcmp(f[-1].key, f->key) == 0;
                char buf[VALUE_MAX], label[LABEL_MAX + 1];

                snprintf(label, sizeof(label), "%s:", status_label(f->key));
                textbuf_printf(out, "%-*s  %s\n", width, repeated ? "" : label,
                               status_value(f, buf, sizeof(buf)));
        }
        return ctl_output_result(out);
}

/* --- stats: sections of aligned numbers --- */

enum unit {
        UNIT_NONE,
        UNIT_BYTES,
        UNIT_SECONDS,
        UNIT_LIMIT,             /* a count, 0 = "off" */
        UNIT_RATE,              /* per second, 0 = "off" */
        UNIT_SWITCH,            /* yes/no as "on"/"off" */
        UNIT_LIST,              /* a key repeated: one row, "a, b, c", left-aligned */
};

static const struct {
        const char *key, *label;
        enum unit unit;
} stat_labels[] = {
        { "tcp.active",      "active connections",     UNIT_NONE },
        { "tcp.resumed",     "resumed after restart",  UNIT_NONE },
        { "tcp.accepted",    "accepted",               UNIT_NONE },
        { "tcp.rejected",    "rejected",               UNIT_NONE },
        { "tcp.rejected_per_source", "rejected per source", UNIT_NONE },
        { "tcp.bytes_in",    "received",               UNIT_BYTES },
        { "tcp.bytes_out",   "sent",                   UNIT_BYTES },
        { "udp.datagrams",   "datagrams",              UNIT_NONE },
        { "udp.bytes_in",    "received",               UNIT_BYTES },
        { "udp.bytes_out",   "sent",                   UNIT_BYTES },
        { "udp.truncated",   "truncated replies",      UNIT_NONE },
        { "udp.send_errors", "send errors",            UNIT_NONE },
        { "udp.rate_limited", "rate limited",          UNIT_NONE },
        { "udp.loop_dropped", "dropped (loop guard)",  UNIT_NONE },
        { "invalid_utf8",    "invalid UTF-8 bytes",    UNIT_NONE },
        { "workers_died",    "workers died",           UNIT_NONE },
        { "log.suppressed",  "log entries suppressed", UNIT_NONE },
        { "agent.checks",    "agent checks answered",  UNIT_NONE },
        { "draining",        "draining",               UNIT_SWITCH },
        { "limits.tcp_per_source", "TCP per source",   UNIT_LIMIT },
        { "limits.udp_rate", "UDP rate per source",    UNIT_RATE },
        { "limits.udp_burst", "UDP burst per source",  UNIT_NONE },
        { "limits.udp_loop_guard", "UDP loop guard",   UNIT_SWITCH },
        { "limits.exempt",   "exempt sources",         UNIT_LIST },
        { "proxy.v1",        "v1 headers",             UNIT_NONE },
        { "proxy.v2",        "v2 headers",             UNIT_NONE },
        { "proxy.health_checks", "health checks",      UNIT_NONE },
        { "proxy.refused_untrusted", "refused (untrusted)", UNIT_NONE },
        { "proxy.refused_malformed", "refused (malformed)", UNIT_NONE },
        { "proxy.refused_timeout", "refused (timeout)", UNIT_NONE },
        { "proxy.timeout",   "header timeout",         UNIT_SECONDS },
        { "proxy.trusted",   "trusted balancers",      UNIT_LIST },
};

/* In this order; a key that matches no prefix belongs to "other". */
static const struct {
        const char *prefix, *title;
} sections[] = {
        { "tcp.",      "TCP" },
        { "udp.",      "UDP" },
        { NULL,        "Other" },
        { "timeouts.", "Timeouts" },
        { "limits.",   "Limits" },
        { "proxy.",    "PROXY protocol" },
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

/* Shown in the heading, not in a section. */
static const char *const stat_heading_keys[] = { "version", "pid", "model", "uptime_seconds", "start_time_seconds",
                                                 "instance" };

struct stat_row {
        char label[LABEL_MAX];
        char value[VALUE_MAX];
        char unit[VALUE_MAX];           /* " B (1.5 MiB)", " s", or "" */
        char rate[VALUE_MAX];           /* "  +2.5/s", or "" */
        bool list;                      /* the values of a repeated key, on one row */
};

/* Gauges and settings; every other number is a counter. */
static const char *const stat_not_counters[] = { "tcp.active", "draining", "proxy.timeout", "uptime_seconds",
                                                 "start_time_seconds", "pid" };

bool ctl_stat_is_counter(const char *key) {
        for (size_t i = 0; i < sizeof(stat_not_counters) / sizeof(stat_not_counters[0]); i++)
                if (strcmp(key, stat_not_counters[i]) == 0)
                        return false;
        return strncmp(key, "timeouts.", 9) != 0 && strncmp(key, "limits.", 7) != 0 &&
               strcmp(key, "proxy.trusted") != 0;
}

/* "  +2.5/s": the rate of a counter since prev, seconds apart; a counter
 * that went down was reset, and counts from 0. */
static void stat_rate(const struct ctl_field *f, const struct ctl_reply *prev, double seconds, char *buf,
                      size_t len) {
        const char *before = prev ? ctl_fields_get(prev->fields, prev->n_fields, f->key) : NULL;
        uint64_t now, then;

        buf[0] = '\0';
        if (!before || seconds <= 0 || !ctl_stat_is_counter(f->key) || !ctl_is_number(f->value) ||
            !ctl_is_number(before))
                return;
        now = strtoull(f->value, NULL, 10);
        then = strtoull(before, NULL, 10);
        snprintf(buf, len, "%.1f/s", (double) (now >= then ? now - then : now) / seconds);
}

static bool stat_in_heading(const char *key) {
        for (size_t i = 0; i < sizeof(stat_heading_keys) / sizeof(stat_heading_keys[0]); i++)
                if (strcmp(key, stat_heading_keys[i]) == 0)
                        return true;
        return false;
}

static size_t stat_section(const char *key) {
        size_t other = 0;

        for (size_t s = 0; s < N_SECTIONS; s++) {
                if (!sections[s].prefix)
                        other = s;
                else if (strncmp(key, sections[s].prefix, strlen(sections[s].prefix)) == 0)
                        return s;
        }
        return other;
}

static enum unit stat_label(const char *key, size_t section, char *label, size_t len) {
        const char *prefix = sections[section].prefix;

        for (size_t i = 0; i < sizeof(stat_labels) / sizeof(stat_labels[0]); i++)
                if (strcmp(stat_labels[i].key, key) == 0) {
                        snprintf(label, len, "%s", stat_labels[i].label);
                        return stat_labels[i].unit;
                }
        if (strncmp(key, "tcp.closed_", 11) == 0) {
                snprintf(label, len, "closed (%s)", key + 11);
                return UNIT_NONE;
        }
        snprintf(label, len, "%s", prefix ? key + strlen(prefix) : key);
        return prefix && strcmp(prefix, "timeouts.") == 0 ? UNIT_SECONDS : UNIT_NONE;
}

static enum unit stat_row_fill(const struct ctl_field *f, size_t section, struct stat_row *row) {
        enum unit unit = stat_label(f->key, section, row->label, sizeof(row->label));
        char human[CTL_FORMAT_BUF];

        snprintf(row->value, sizeof(row->value), "%s", f->value);
        row->unit[0] = '\0';
        if (unit == UNIT_SWITCH)
                snprintf(row->value, sizeof(row->value), "%s",
                         strcmp(f->value, "yes") == 0 ? "on" : strcmp(f->value, "no") == 0 ? "off" : f->value);
        else if ((unit == UNIT_LIMIT || unit == UNIT_RATE) && strcmp(f->value, "0") == 0)
                snprintf(row->value, sizeof(row->value), "off");
        else if (unit == UNIT_RATE)
                snprintf(row->unit, sizeof(row->unit), " /s");
        else if (unit == UNIT_SECONDS && strcmp(f->value, "0") == 0)
                snprintf(row->value, sizeof(row->value), "off");
        else if (unit == UNIT_SECONDS)
                snprintf(row->unit, sizeof(row->unit), " s");
        else if (unit == UNIT_BYTES && ctl_is_number(f->value) && strtoull(f->value, NULL, 10) >= 1024)
                snprintf(row->unit, sizeof(row->unit), " B  (%s)",
                         ctl_format_bytes(strtoull(f->value, NULL, 10), human, sizeof(human)));
        else if (unit == UNIT_BYTES)
                snprintf(row->unit, sizeof(row->unit), " B");
        return unit;
}

static void stats_heading(const struct ctl_reply *r, struct textbuf *out) {
        const char *version = ctl_fields_get(r->fields, r->n_fields, "version");
        const char *pid = ctl_fields_get(r->fields, r->n_fields, "pid");
        const char *model = ctl_fields_get(r->fields, r->n_fields, "model");
        const char *uptime = ctl_fields_get(r->fields, r->n_fields, "uptime_seconds");
        const char *instance = ctl_fields_get(r->fields, r->n_fields, "instance");
        char buf[CTL_FORMAT_BUF];

        textbuf_printf(out, "uppercased %s, pid %s, %s model, up %s", version ? version : "?",
                       pid ? pid : "?", model ? model : "?",
                       uptime ? ctl_format_uptime(strtod(uptime, NULL), buf, sizeof(buf)) : "?");
        if (instance)
                textbuf_printf(out, ", instance %s", instance);
        textbuf_printf(out, "\n");
}

/* The values of the run of fields with the key of fields[i], joined; returns
 * the index of the last. */
static size_t stats_list(const struct ctl_reply *r, size_t i, struct textbuf *out) {
        size_t j = i;

        textbuf_printf(out, "%s", r->fields[i].value);
        while (j + 1 < r->n_fields && strcmp(r->fields[j + 1].key, r->fields[i].key) == 0)
                textbuf_printf(out, ", %s", r->fields[++j].value);
        return j;
}

struct stat_widths {
        int label, value, unit;
};

static void stats_section(const struct ctl_reply *r, const struct stat_row *rows, const size_t *section,
                          size_t s, const struct stat_widths *w, struct textbuf *out) {
        int lw = w->label, vw = w->value;
        bool titled = false;

        for (size_t i = 0; i < r->n_fields; i++) {
                if (section[i] != s)
                        continue;
                if (!titled)
                        textbuf_printf(out, "\n%s\n", sections[s].title);
                titled = true;
                if (rows[i].list) {
                        textbuf_printf(out, "  %-*s  ", lw, rows[i].label);
                        i = stats_list(r, i, out);
                        textbuf_printf(out, "\n");
                        continue;
                }
                if (!rows[i].rate[0]) {
                        textbuf_printf(out, "  %-*s  %*s%s\n", lw, rows[i].label, vw, rows[i].value, rows[i].unit);
                        continue;
                }
                textbuf_printf(out, "  %-*s  %*s%-*s  %10s\n", lw, rows[i].label, vw, rows[i].value, w->unit,
                               rows[i].unit, rows[i].rate);
        }
}

/* The seconds between two stats replies, by the daemon's clock. */
static double stats_seconds(const struct ctl_reply *r, const struct ctl_reply *prev) {
        const char *now = ctl_fields_get(r->fields, r->n_fields, "uptime_seconds");
        const char *then = prev ? ctl_fields_get(prev->fields, prev->n_fields, "uptime_seconds") : NULL;

        if (!now || !then || !ctl_is_number(now) || !ctl_is_number(then))
                return 0;
        return strtod(now, NULL) - strtod(then, NULL);
}

int ctl_human_stats(const struct ctl_reply *r, struct textbuf *out) {
        return ctl_human_stats_rates(r, NULL, out);
}

int ctl_human_stats_rates(const struct ctl_reply *r, const struct ctl_reply *prev, struct textbuf *out) {
        struct stat_row *rows = calloc(r->n_fields + 1, sizeof(*rows));
        size_t *section = calloc(r->n_fields + 1, sizeof(*section));
        double seconds = stats_seconds(r, prev);
        struct stat_widths w = { 0, 0, 0 };

        if (!rows || !section) {
                free(rows);
                free(section);
                return -ENOMEM;
        }
        for (size_t i = 0; i < r->n_fields; i++) {
                /* N_SECTIONS: not shown in any section. */
                section[i] = stat_in_heading(r->fields[i].key) ? N_SECTIONS : stat_section(r->fields[i].key);
                if (section[i] == N_SECTIONS)
                        continue;
                rows[i].list = stat_row_fill(&r->fields[i], section[i], &rows[i]) == UNIT_LIST;
                stat_rate(&r->fields[i], prev, seconds, rows[i].rate, sizeof(rows[i].rate));
                w.label = (int) strlen(rows[i].label) > w.label ? (int) strlen(rows[i].label) : w.label;
                /* A list does not widen the column of numbers. */
                if (!rows[i].list)
                        w.value = (int) strlen(rows[i].value) > w.value ? (int) strlen(rows[i].value) : w.value;
                if (rows[i].rate[0])
                        w.unit = (int) strlen(rows[i].unit) > w.unit ? (int) strlen(rows[i].unit) : w.unit;
        }
        stats_heading(r, out);
        for (size_t s = 0; s < N_SECTIONS; s++)
                stats_section(r, rows, section, s, &w, out);
        free(rows);
        free(section);
        return ctl_output_result(out);
}

/* --- connections: a table --- */

enum {
        COL_ID,
        COL_CLIENT,
        COL_AGE,
        COL_IDLE,
        COL_IN,
        COL_OUT,
        COL_WORKER,
        _COL_MAX,
};

static const struct {
        const char *title;
        const char *key;
        const char *old_key;            /* its name in control protocol 1 */
        bool left;                      /* text left, numbers right */
        char *(*format)(const char *value, char *buf, size_t len);
} columns[_COL_MAX] = {
        [COL_ID]     = { "ID",     "id",           NULL,   false, NULL },
        [COL_CLIENT] = { "CLIENT", "peer",         NULL,   true,  NULL },
        [COL_AGE]    = { "AGE",    "age_seconds",  "age",  false, format_age },
        [COL_IDLE]   = { "IDLE",   "idle_seconds", "idle", false, format_age },
        [COL_IN]     = { "IN",     "bytes_in",     NULL,   false, format_size },
        [COL_OUT]    = { "OUT",    "bytes_out",    NULL,   false, format_size },
        [COL_WORKER] = { "WORKER", "worker",       NULL,   false, NULL },
};

#define CONNECTION_PAIRS_MAX 32
#define CONNECTION_LINE_MAX 1024

/* The cells of one "connection k=v ..." line. */
static int connection_cells(const struct ctl_field *f, char cells[_COL_MAX][VALUE_MAX]) {
        struct ctl_field pairs[CONNECTION_PAIRS_MAX];
        char line[CONNECTION_LINE_MAX];
        size_t n;

        if (strcmp(f->key, "connection") != 0 || strlen(f->value) >= sizeof(line))
                return -EBADMSG;
        snprintf(line, sizeof(line), "%s", f->value);
        if (ctl_split_pairs(line, pairs, CONNECTION_PAIRS_MAX, &n) < 0)
                return -EBADMSG;
        for (int c = 0; c < _COL_MAX; c++) {
                const char *v = ctl_fields_get(pairs, n, columns[c].key);

                if (!v && columns[c].old_key)
                        v = ctl_fields_get(pairs, n, columns[c].old_key);
                if (!v)
                        v = "-";
                if (columns[c].format)
                        columns[c].format(v, cells[c], VALUE_MAX);
                else
                        snprintf(cells[c], VALUE_MAX, "%s", v);
        }
        return 0;
}

static void table_row(struct textbuf *out, char cells[_COL_MAX][VALUE_MAX], const int width[_COL_MAX]) {
        for (int c = 0; c < _COL_MAX; c++) {
                bool last = c + 1 == _COL_MAX;

                /* No padding after a left-aligned last column: no trailing blanks. */
                textbuf_printf(out, "%*s%s", columns[c].left ? (last ? 0 : -width[c]) : width[c],
                               cells[c], last ? "\n" : "  ");
        }
}

int ctl_human_connections(const struct ctl_reply *r, struct textbuf *out) {
        char cells[_COL_MAX][VALUE_MAX];
        int width[_COL_MAX];

        for (int c = 0; c < _COL_MAX; c++) {
                width[c] = (int) strlen(columns[c].title);
                snprintf(cells[c], VALUE_MAX, "%s", columns[c].title);
        }
        for (size_t i = 0; i < r->n_fields; i++) {
                char row[_COL_MAX][VALUE_MAX];

                if (connection_cells(&r->fields[i], row) < 0)
                        return -EBADMSG;
                for (int c = 0; c < _COL_MAX; c++)
                        width[c] = (int) strlen(row[c]) > width[c] ? (int) strlen(row[c]) : width[c];
        }
        table_row(out, cells, width);
        for (size_t i = 0; i < r->n_fields; i++) {
                (void) connection_cells(&r->fields[i], cells);
                table_row(out, cells, width);
        }
        return ctl_output_result(out);
}

/* --- timeout: "idle      300 s" --- */

int ctl_human_timeout(const struct ctl_reply *r, struct textbuf *out) {
        int nw = 0, vw = 0;

        for (size_t i = 0; i < r->n_fields; i++) {
                const char *v = strcmp(r->fields[i].value, "0") == 0 ? "off" : r->fields[i].value;

                nw = (int) strlen(r->fields[i].key) > nw ? (int) strlen(r->fields[i].key) : nw;
                vw = (int) strlen(v) > vw ? (int) strlen(v) : vw;
        }
        for (size_t i = 0; i < r->n_fields; i++) {
                bool off = strcmp(r->fields[i].value, "0") == 0;

                textbuf_printf(out, "%-*s  %*s%s\n", nw, r->fields[i].key, vw,
                               off ? "off" : r->fields[i].value, off ? "" : " s");
        }
        return ctl_output_result(out);
}

/* drain, ready: what the agent-check answers now, and whether that is new. */
int ctl_human_drain(const struct ctl_reply *r, struct textbuf *out) {
        const char *state = ctl_fields_get(r->fields, r->n_fields, "balancer");
        const char *changed = ctl_fields_get(r->fields, r->n_fields, "changed");

        if (!state || !changed)
                return -EBADMSG;
        if (strcmp(state, "draining") == 0)
                textbuf_printf(out, "%s: the agent-check answers drain; the balancer sends no new "
                               "connections, open ones go on\n",
                               strcmp(changed, "yes") == 0 ? "Draining" : "Already draining");
        else
                textbuf_printf(out, "%s: the agent-check answers ready; the balancer sends new connections\n",
                               strcmp(changed, "yes") == 0 ? "Ready" : "Already ready");
        return ctl_output_result(out);
}

int ctl_human_reload(const struct ctl_reply *r, struct textbuf *out) {
        textbuf_printf(out, "configuration reloaded\n");
        return ctl_output_result(out);
}

int ctl_human_kill(const struct ctl_reply *r, struct textbuf *out) {
        const char *id = ctl_fields_get(r->fields, r->n_fields, "killed");

        if (!id)
                return -EBADMSG;
        textbuf_printf(out, "connection %s killed: it closes once the replies it owes are sent\n", id);
        return ctl_output_result(out);
}

int ctl_human_reset(const struct ctl_reply *r, struct textbuf *out) {
        textbuf_printf(out, "counters reset\n");
        return ctl_output_result(out);
}
