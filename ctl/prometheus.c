/* SPDX-License-Identifier: MIT */
/* stats in the Prometheus text exposition format, for node_exporter's
 * textfile collector: one "# HELP" and "# TYPE" per family, then samples. */
#include <errno.h>
#include <string.h>

#include "output.h"

struct metric {
        const char *key;        /* the reply key; with label: a prefix */
        const char *name;
        const char *type;
        const char *label;      /* the rest of the key becomes this label */
        const char *help;
};

/* Only what is listed is exported: a metric's name and type are a promise
 * to dashboards, so new daemon keys get an entry here deliberately. */
static const struct metric metrics[] = {
        { "uptime_seconds", "uppercased_uptime_seconds", "gauge", NULL,
          "Seconds since uppercased started." },
        { "tcp.active", "uppercased_tcp_connections_active", "gauge", NULL,
          "TCP connections open now." },
        { "tcp.resumed", "uppercased_tcp_connections_resumed_total", "counter", NULL,
          "TCP connections taken over from the previous instance at a restart." },
        { "tcp.accepted", "uppercased_tcp_connections_accepted_total", "counter", NULL,
          "TCP connections accepted." },
        { "tcp.rejected", "uppercased_tcp_connections_rejected_total", "counter", NULL,
          "TCP connections refused at max_connections or max_workers." },
        { "tcp.closed_", "uppercased_tcp_connections_closed_total", "counter", "reason",
          "TCP connections closed, by reason." },
        { "tcp.bytes_in", "uppercased_tcp_bytes_received_total", "counter", NULL,
          "Bytes received on TCP connections." },
        { "tcp.bytes_out", "uppercased_tcp_bytes_sent_total", "counter", NULL,
          "Bytes sent on TCP connections." },
        { "udp.datagrams", "uppercased_udp_datagrams_total", "counter", NULL,
          "UDP datagrams received." },
        { "udp.bytes_in", "uppercased_udp_bytes_received_total", "counter", NULL,
          "Bytes received in UDP datagrams." },
        { "udp.bytes_out", "uppercased_udp_bytes_sent_total", "counter", NULL,
          "Bytes sent in UDP replies." },
        { "udp.truncated", "uppercased_udp_truncated_total", "counter", NULL,
          "UDP replies cut to the largest datagram." },
        { "udp.send_errors", "uppercased_udp_send_errors_total", "counter", NULL,
          "UDP replies that could not be sent." },
        { "invalid_utf8", "uppercased_invalid_utf8_bytes_total", "counter", NULL,
          "Input bytes that were not valid UTF-8, passed through unchanged." },
        { "workers_died", "uppercased_workers_died_total", "counter", NULL,
          "Worker processes that were killed." },
        { "log.suppressed", "uppercased_log_suppressed_total", "counter", NULL,
          "Client log entries suppressed by the rate limit (counted and summarised)." },
        { "timeouts.", "uppercased_timeout_seconds", "gauge", "name",
          "Timeouts in force, in seconds; 0 is off." },
};

static void prom_append_label_value(struct textbuf *out, const char *v) {
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        textbuf_printf(out, "\\%c", *v);
                else if (*v == '\n')
                        textbuf_printf(out, "\\n");
                else
                        textbuf_append(out, v, 1);
        }
}

static void prom_family(struct textbuf *out, const char *name, const char *type, const char *help) {
        textbuf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_info(const struct ctl_reply *r, struct textbuf *out) {
        const char *version = ctl_fields_get(r->fields, r->n_fields, "version");
        const char *model = ctl_fields_get(r->fields, r->n_fields, "model");

        prom_family(out, "uppercased_info", "gauge", "Version and worker model of the running uppercased.");
        textbuf_printf(out, "uppercased_info{version=\"");
        prom_append_label_value(out, version ? version : "");
        textbuf_printf(out, "\",model=\"");
        prom_append_label_value(out, model ? model : "");
        textbuf_printf(out, "\"} 1\n");
}

/* The label value a field gives m, NULL when the field is not m's. */
static const char *metric_match(const struct metric *m, const char *key) {
        size_t len = strlen(m->key);

        if (!m->label)
                return strcmp(key, m->key) == 0 ? "" : NULL;
        return strncmp(key, m->key, len) == 0 && key[len] ? key + len : NULL;
}

static int prom_metric(const struct ctl_reply *r, const struct metric *m, struct textbuf *out) {
        bool any = false;

        for (size_t i = 0; i < r->n_fields; i++) {
                const char *label = metric_match(m, r->fields[i].key);

                if (!label)
                        continue;
                if (!ctl_is_number(r->fields[i].value))
                        return -EBADMSG;
                if (!any)
                        prom_family(out, m->name, m->type, m->help);
                any = true;
                textbuf_printf(out, "%s", m->name);
                if (m->label) {
                        textbuf_printf(out, "{%s=\"", m->label);
                        prom_append_label_value(out, label);
                        textbuf_printf(out, "\"}");
                }
                textbuf_printf(out, " %s\n", r->fields[i].value);
        }
        return 0;
}

int ctl_prometheus_stats(const struct ctl_reply *r, struct textbuf *out) {
        prom_info(r, out);
        for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
                int e = prom_metric(r, &metrics[i], out);

                if (e < 0)
                        return e;
        }
        return ctl_output_result(out);
}
