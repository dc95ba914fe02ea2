/* SPDX-License-Identifier: MIT */
/* stats in the Prometheus text exposition format, for node_exporter's
 * textfile collector: one "# HELP" and "# TYPE" per family, then samples.
 * Every sample carries the daemon's instance name as the label
 * uppercased_instance, so that several daemons' files in one textfile
 * directory, or several hosts in one Prometheus, keep their series apart.
 * Not "instance": that is Prometheus's own target label, and a series
 * bringing its own is renamed exported_instance on scrape.
 *
 * Names, from the reply's keys (uppercasectl(8), METRICS): "uppercased_",
 * the key's section, what is counted, its unit in the plural ("bytes",
 * "seconds"), and "_total" on a counter: tcp.bytes_in is
 * uppercased_tcp_received_bytes_total.  Keys that share a prefix and
 * differ in one word (tcp.closed_eof, ...; udp.rate_limited and
 * udp.loop_dropped; proxy.v1/v2; proxy.refused_*; timeouts.*) are one
 * metric whose label holds the rest of the key. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "output.h"

#define PROM_INSTANCE_LABEL "uppercased_instance"

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
        { "start_time_seconds", "uppercased_start_time_seconds", "gauge", NULL,
          "When uppercased started, in seconds since the Unix epoch." },
        { "uptime_seconds", "uppercased_uptime_seconds", "gauge", NULL,
          "Seconds since uppercased started." },
        { "tcp.active", "uppercased_tcp_connections_active", "gauge", NULL,
          "TCP connections open now." },
        { "tcp.resumed", "uppercased_tcp_connections_resumed_total", "counter", NULL,
          "TCP connections taken over from the previous instance at a restart." },
        { "tcp.accepted", "uppercased_tcp_connections_accepted_total", "counter", NULL,
          "TCP connections accepted." },
        { "tcp.rejected", "uppercased_tcp_connections_rejected_total", "counter", NULL,
          "TCP connections refused at a limit (max_connections, max_workers, limits.tcp_per_source)." },
        { "tcp.rejected_per_source", "uppercased_tcp_connections_rejected_per_source_total", "counter", NULL,
          "TCP connections refused at limits.tcp_per_source (also in the rejected total)." },
        { "tcp.closed_", "uppercased_tcp_connections_closed_total", "counter", "reason",
          "TCP connections closed, by reason." },
        { "tcp.bytes_in", "uppercased_tcp_received_bytes_total", "counter", NULL,
          "Bytes received on TCP connections." },
        { "tcp.bytes_out", "uppercased_tcp_sent_bytes_total", "counter", NULL,
          "Bytes sent on TCP connections." },
        { "udp.datagrams", "uppercased_udp_datagrams_total", "counter", NULL,
          "UDP datagrams received." },
        { "udp.bytes_in", "uppercased_udp_received_bytes_total", "counter", NULL,
          "Bytes received in UDP datagrams." },
        { "udp.bytes_out", "uppercased_udp_sent_bytes_total", "counter", NULL,
          "Bytes sent in UDP replies." },
        { "udp.truncated", "uppercased_udp_truncated_total", "counter", NULL,
          "UDP replies cut to the largest datagram." },
        { "udp.send_errors", "uppercased_udp_send_errors_total", "counter", NULL,
          "UDP replies that could not be sent." },
        /* One family in two entries: "reason=VALUE" labels the key's sample. */
        { "udp.rate_limited", "uppercased_udp_dropped_total", "counter", "reason=rate_limited",
          "UDP datagrams received and not answered, by reason: rate_limited (over limits.udp_rate from "
          "their source), loop_dropped (the loop guard: source port below 1024 or our own)." },
        { "udp.loop_dropped", "uppercased_udp_dropped_total", "counter", "reason=loop_dropped", NULL },
        { "invalid_utf8", "uppercased_invalid_utf8_bytes_total", "counter", NULL,
          "Input bytes that were not valid UTF-8, passed through unchanged." },
        { "workers_died", "uppercased_workers_died_total", "counter", NULL,
          "Worker processes that were killed." },
        { "log.suppressed", "uppercased_log_suppressed_total", "counter", NULL,
          "Client log entries suppressed by the rate limit (counted and summarised)." },
        { "draining", "uppercased_draining", "gauge", NULL,
          "1 while drained (uppercasectl drain): the agent-check asks the balancer for no new connections." },
        { "agent.checks", "uppercased_agent_checks_total", "counter", NULL,
          "Agent-check connections answered." },
        { "timeouts.", "uppercased_timeout_seconds", "gauge", "name",
          "Timeouts in force, in seconds; 0 is off." },
        { "limits.tcp_per_source", "uppercased_limit_tcp_per_source", "gauge", NULL,
          "Most concurrent TCP connections per IPv4 address or IPv6 /64; 0 is no limit." },
        { "limits.udp_rate", "uppercased_limit_udp_rate", "gauge", NULL,
          "UDP datagrams answered per second per source; 0 is no limit." },
        { "limits.udp_burst", "uppercased_limit_udp_burst", "gauge", NULL,
          "UDP datagrams answered at once per source before the rate applies." },
        { "limits.udp_loop_guard", "uppercased_limit_udp_loop_guard", "gauge", NULL,
          "1 when UDP datagrams from ports below 1024 and from our own ports are dropped." },
        { "proxy.v", "uppercased_proxy_headers_total", "counter", "version",
          "PROXY protocol headers read on proxied listeners, by version." },
        { "proxy.health_checks", "uppercased_proxy_health_checks_total", "counter", NULL,
          "Balancer health checks (PROXY v2 LOCAL, v1 UNKNOWN) served." },
        { "proxy.refused_", "uppercased_proxy_refused_total", "counter", "reason",
          "Connections on proxied listeners closed unanswered: untrusted peer, malformed header, timeout." },
        { "proxy.timeout", "uppercased_proxy_timeout_seconds", "gauge", NULL,
          "Time a PROXY header has to arrive, in seconds." },
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

/* name="value" after sep, when there is a value. */
static void prom_label(struct textbuf *out, const char *sep, const char *name, const char *value) {
        textbuf_printf(out, "%s%s=\"", sep, name);
        prom_append_label_value(out, value);
        textbuf_printf(out, "\"");
}

/* {uppercased_instance="web1",name="value"}: the instance label when the
 * daemon sent its name, then the sample's own label, if any. */
static void prom_labels(const struct ctl_reply *r, struct textbuf *out, const char *name, const char *value) {
        const char *instance = ctl_fields_get(r->fields, r->n_fields, "instance");

        if (!instance && !name)
                return;
        textbuf_printf(out, "{");
        if (instance)
                prom_label(out, "", PROM_INSTANCE_LABEL, instance);
        if (name)
                prom_label(out, instance ? "," : "", name, value);
        textbuf_printf(out, "}");
}

static void prom_info(const struct ctl_reply *r, struct textbuf *out) {
        const char *instance = ctl_fields_get(r->fields, r->n_fields, "instance");
        const char *version = ctl_fields_get(r->fields, r->n_fields, "version");
        const char *model = ctl_fields_get(r->fields, r->n_fields, "model");

        prom_family(out, "uppercased_info", "gauge", "Version and worker model of the running uppercased.");
        textbuf_printf(out, "uppercased_info{");
        if (instance)
                prom_label(out, "", PROM_INSTANCE_LABEL, instance);
        prom_label(out, instance ? "," : "", "version", version ? version : "");
        prom_label(out, ",", "model", model ? model : "");
        textbuf_printf(out, "} 1\n");
}

/* A label of its own: "reason=loop_dropped". */
static const char *metric_fixed_label(const struct metric *m) {
        return m->label ? strchr(m->label, '=') : NULL;
}

/* The label value a field gives m, NULL when the field is not m's. */
static const char *metric_match(const struct metric *m, const char *key) {
        size_t len = strlen(m->key);

        if (metric_fixed_label(m))
                return strcmp(key, m->key) == 0 ? metric_fixed_label(m) + 1 : NULL;
        if (!m->label)
                return strcmp(key, m->key) == 0 ? "" : NULL;
        return strncmp(key, m->key, len) == 0 && key[len] ? key + len : NULL;
}

/* A sample's value: a number as it is, a switch ("yes"/"no") as 1/0; NULL
 * for anything else. */
static const char *metric_value(const char *value) {
        if (strcmp(value, "yes") == 0)
                return "1";
        if (strcmp(value, "no") == 0)
                return "0";
        return ctl_is_number(value) ? value : NULL;
}

/* The samples of m; *family: its family's HELP and TYPE are out (an entry
 * without help goes on the family of the one before). */
static int prom_metric(const struct ctl_reply *r, const struct metric *m, const struct metric *family,
                       bool *headed, struct textbuf *out) {
        char label_name[32];

        snprintf(label_name, sizeof(label_name), "%.*s", m->label ? (int) strcspn(m->label, "=") : 0,
                 m->label ? m->label : "");
        for (size_t i = 0; i < r->n_fields; i++) {
                const char *label = metric_match(m, r->fields[i].key);
                const char *value;

                if (!label)
                        continue;
                value = metric_value(r->fields[i].value);
                if (!value)
                        return -EBADMSG;
                if (!*headed)
                        prom_family(out, family->name, family->type, family->help);
                *headed = true;
                textbuf_printf(out, "%s", m->name);
                prom_labels(r, out, m->label ? label_name : NULL, label);
                textbuf_printf(out, " %s\n", value);
        }
        return 0;
}

int ctl_prometheus_stats(const struct ctl_reply *r, struct textbuf *out) {
        const struct metric *family = &metrics[0];
        bool headed = false;

        prom_info(r, out);
        for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
                int e;

                if (metrics[i].help) {
                        family = &metrics[i];
                        headed = false;
                }
                e = prom_metric(r, &metrics[i], family, &headed, out);

                if (e < 0)
                        return e;
        }
        return ctl_output_result(out);
}
