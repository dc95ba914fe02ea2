/* SPDX-License-Identifier: MIT */
#pragma once

/* The configuration as a plain, validated struct.  config_load() parses a
 * libconfig file into a new struct; the caller swaps it in only when the
 * load succeeded (reload keeps the old one otherwise). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "control-proto.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/uppercased/uppercased.conf"
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_PREFIXES 64
#define CONFIG_ERR_MAX 512
/* An instance name, NUL included: a host name fits (HOST_NAME_MAX 64). */
#define CONFIG_INSTANCE_MAX 65

enum worker_model {
        MODEL_EVENT,
        MODEL_THREAD,
        MODEL_PROCESS,
        _MODEL_MAX,
};

struct config {
        /* listen { tcp = [...]; udp = [...]; backlog = N; } */
        struct addr tcp[CONFIG_MAX_LISTEN];
        size_t n_tcp;
        struct addr udp[CONFIG_MAX_LISTEN];
        size_t n_udp;
        int backlog;

        /* control { path = "..."; mode = "0660"; group = "uppercased"; } */
        char control_path[108];          /* sizeof(sun_path) */
        mode_t control_mode;
        char control_group[64];          /* "" = leave the group alone */
        char control_admin_group[64];    /* may change things; "" = root and the daemon's user only */

        /* workers { model = "event"; threads = 1; max_connections = 1024;
         *           max_workers = 1024; } */
        enum worker_model model;
        unsigned threads;                /* event loops (event), UDP threads (thread) */
        unsigned max_connections;
        unsigned max_workers;            /* threads or processes serving TCP */

        /* timeouts { idle = "300s"; write = "30s"; shutdown = "10s"; } */
        uint64_t timeout_usec[_TIMEOUT_MAX];

        /* log { clients = true; rate = 100; burst = 200; } */
        bool log_clients;
        unsigned log_rate;               /* client entries per second, 0 = no limit */
        unsigned log_burst;

        /* limits { tcp_per_source = 64; udp_rate = 100; udp_burst = 200;
         *          udp_loop_guard = true;
         *          exempt = [ "127.0.0.0/8", "::1" ]; } */
        unsigned tcp_per_source;         /* per IPv4 address or IPv6 /64, 0 = no limit */
        unsigned udp_rate;               /* datagrams answered per second per source, 0 = no limit */
        unsigned udp_burst;
        bool udp_loop_guard;             /* drop datagrams from ports 0..1023 and our own */
        struct addr_prefix exempt[CONFIG_MAX_PREFIXES]; /* counted, never limited per source */
        size_t n_exempt;
        /* proxy { listen = [...]; trusted = [...]; timeout = "3s"; }: TCP
         * listeners whose every connection starts with a PROXY header
         * (proxy.h), from a balancer in trusted. */
        struct addr proxy_listen[CONFIG_MAX_LISTEN];
        size_t n_proxy_listen;
        struct addr_prefix proxy_trusted[CONFIG_MAX_PREFIXES];
        size_t n_proxy_trusted;
        uint64_t proxy_timeout_usec;     /* for the whole header, > 0 */

        /* agent { listen = [ "ADDR:PORT", ... ]; }: HAProxy's agent-check */
        struct addr agent[CONFIG_MAX_LISTEN];
        size_t n_agent;

        /* instance { name = "web1"; }: "" = the host name (config_instance_name()) */
        char instance[CONFIG_INSTANCE_MAX];
};

/* Built-in defaults (SPEC §3): [::]:12000 for TCP and UDP, event model. */
void config_defaults(struct config *c);

/* Loads path over the defaults.  On error returns -EINVAL (or -errno for an
 * unreadable file) and writes "FILE:LINE: message" (or "FILE: message") to
 * err. */
int config_load(const char *path, struct config *c, char *err, size_t errlen);

/* With proxied listeners: whether proxy.trusted and proxy.timeout make
 * them usable (checked by config_load() and config_validate(), and on a
 * start with proxied sockets from systemd). */
int config_check_proxy(const struct config *c, char *err, size_t errlen);
/* Checks cross-field constraints (after command-line overrides too). */
int config_validate(const struct config *c, char *err, size_t errlen);

const char *model_to_string(enum worker_model m);
int model_from_string(const char *s);   /* enum value, or -EINVAL */

/* Whether s is a valid instance name: 1..64 bytes of letters, digits and
 * ".-_:" (so it is one word on the control socket and a plain label). */
bool config_instance_valid(const char *s);
/* The instance name in force: c->instance, or host (gethostname()) with
 * anything not valid in a name replaced by '_', or "localhost" when empty. */
void config_instance_name(const struct config *c, const char *host, char *buf, size_t len);

/* Default control socket path: /run/uppercased/control.sock for root, else
 * $XDG_RUNTIME_DIR/uppercased/control.sock (falls back to the root one). */
void config_default_control_path(char *buf, size_t len);
