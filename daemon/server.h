/* SPDX-License-Identifier: MIT */
#pragma once

/* The daemon's main loop: signals, reload, sd_notify, watchdog, the drain on
 * stop, and the worker model behind struct worker_ops. */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "control.h"
#include "fdbudget.h"
#include "handover.h"
#include "listen.h"
#include "shared.h"
#include "worker.h"

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
        const char *control_path;
};

struct server {
        sd_event *event;
        struct config config;             /* in force */
        const struct overrides *overrides;
        char config_file[4096];           /* "" when running on built-in defaults */
        struct listeners listeners;
        struct shared *shared;
        const struct worker_ops *ops;
        void *worker;                     /* the model's own state */
        sd_event_source **accept_src;     /* the model's accept sources on this loop */
        size_t n_accept;
        sd_event_source *accept_resume;
        uint64_t accept_warned;           /* last "pausing accepts" warning */
        struct control *control;
        uint64_t start_usec;              /* CLOCK_MONOTONIC */
        bool stopping;
        uint64_t stop_deadline;           /* CLOCK_MONOTONIC */
        uint64_t watchdog_usec;
        char status[256];                 /* last STATUS= sent */
        struct handover handover;         /* on stop: connections for the next instance */
        struct handover_state taken_back; /* on start: what the previous one left */
        struct resumed_conn *resumed;
        size_t n_resumed;
        struct fd_budget fds;             /* the descriptor limit, shared out */
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

/* Runs the daemon until stopped; returns the exit status. */
int server_run(const struct overrides *o, const struct config *c, const char *config_file);

/* Re-reads the configuration; on error keeps the old one and returns -errno
 * with the reason in err. */
int server_reload(struct server *s, char *err, size_t errlen);

/* Sets one live timeout (0 = off) and applies it to existing connections. */
void server_set_timeout(struct server *s, enum timeout_id t, uint64_t usec);

/* Blocks the signals the main loop handles, and SIGUSR1, used to wake
 * blocking workers (see worker_wait()).  Called before any thread exists. */
int server_block_signals(void);

/* accept() failed for want of descriptors or memory (err: -errno), or the
 * connections hold every descriptor the budget leaves them (-ENOSPC):
 * retrying at once would spin, so the model's accept sources are off for a
 * moment while the listen backlog holds new connections. */
void server_pause_accepting(struct server *s, int err);

/* Sets a oneshot timer source to fire at usec (CLOCK_MONOTONIC), also
 * after it fired already. */
int timer_rearm(sd_event_source *es, uint64_t usec);
/* The same for *es, created on e the first time. */
int timer_arm(sd_event *e, sd_event_source **es, uint64_t usec, sd_event_time_handler_t handler,
              void *userdata);

/* For blocking workers (thread and process models): waits for events on fd
 * for at most timeout_usec (UINT64_MAX: forever) with SIGUSR1 unblocked, so
 * that a kick from server side interrupts it.  Returns revents, 0 on
 * timeout, -EINTR when kicked. */
int worker_wait(int fd, short events, uint64_t timeout_usec);
