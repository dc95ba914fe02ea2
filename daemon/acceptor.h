/* SPDX-License-Identifier: MIT */
#pragma once

/* Accepting on the main loop, for the models whose workers block (thread,
 * process): one sd-event source per listening socket, each wake-up a
 * conn_accept() batch, and the pause it asks for (out of descriptors or
 * memory), after which the sources come back on by themselves. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "conn.h"
#include "proxy-wait.h"

#define ACCEPTOR_MAX 32

struct acceptor {
        struct conn_admission admission;
        sd_event *event;
        sd_event_source *src[ACCEPTOR_MAX];
        size_t n;
        size_t n_direct;                /* src[0..n_direct): direct listeners, then proxied */
        struct proxy_wait proxy;        /* epfd -1: no proxied listener */
        sd_event_source *proxy_src;     /* input on proxy's connections */
        sd_event_source *proxy_timer;   /* the oldest one's timeout */
        sd_event_source *resume;
        uint64_t warned;                /* last "pausing accepts" warning */
        bool stopped;
        bool held;                      /* acceptor_hold() */
};

/* Starts accepting from fds[0..n) and from the proxied listeners
 * proxied[0..n_proxied) (n + n_proxied <= ACCEPTOR_MAX) on e. */
int acceptor_start(struct acceptor *a, sd_event *e, const int *fds, size_t n,
                   const int *proxied, size_t n_proxied, const struct conn_admission *adm);
/* The model is busy (conn_admission.busy): accepting waits until it says
 * it is not. */
void acceptor_hold(struct acceptor *a, bool hold);
/* No more accepting (the stop): a last accept, and with shut the
 * listeners shut (conn_accept_last()). */
void acceptor_stop(struct acceptor *a, bool shut);
void acceptor_free(struct acceptor *a);
