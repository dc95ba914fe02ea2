/* SPDX-License-Identifier: MIT */
#pragma once

/* The daemon's main process: the configuration and its reloads, the
 * sockets, signals, sd_notify, the watchdog, the stop, the descriptor
 * budget, the connections handed over across a restart; the worker model
 * (worker.h) and the control socket (control.h) it runs, each through its
 * own narrow interface.  Only main.c uses it. */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Command-line settings: applied over the file at start and at every reload. */
struct overrides {
        const char *config_path;          /* NULL: the default path, if it exists */
        int model;                        /* -1: from the file */
        unsigned threads;                 /* 0: from the file */
        struct addr tcp[CONFIG_MAX_LISTEN];
        size_t n_tcp;
        bool tcp_given;
        struct addr udp[CONFIG_MAX_LISTEN];
        size_t n_udp;
        bool udp_given;
        struct addr proxy[CONFIG_MAX_LISTEN];     /* --proxy-tcp: proxy.listen */
        size_t n_proxy;
        bool proxy_given;
        struct addr agent[CONFIG_MAX_LISTEN];
        size_t n_agent;
        bool agent_given;
        const char *control_path;
};

void overrides_init(struct overrides *o);

/* Defaults, then the config file (o->config_path, else the default path when
 * it exists), then the overrides, then validation.  On error, err holds the
 * one-line reason ("FILE:LINE: message" for file errors). */
int server_load_config(const struct overrides *o, struct config *c,
                       char *path_used, size_t path_len, char *err, size_t errlen);

/* Whether workers.max_connections fits in the descriptor limit the daemon
 * would run with (the hard RLIMIT_NOFILE: it raises the soft one to it),
 * for -n; if not, why says so with the numbers. */
bool server_fds_fit(const struct config *c, char *why, size_t len);

/* Blocks the signals the main loop handles, and SIGUSR1, with which the
 * blocking models' waits are kicked (tcp-blocking.h).  Called before any
 * thread exists. */
int server_block_signals(void);

/* Runs the daemon until stopped; returns the exit status. */
int server_run(const struct overrides *o, const struct config *c, const char *config_file);
