/* SPDX-License-Identifier: MIT */
#pragma once

/* The sockets the daemon serves: passed by systemd (socket activation) or
 * bound from the configuration. */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* A connection the previous instance handed over (see handover.h). */
struct passed_conn {
        int fd;                 /* -1 once taken */
        uint64_t id;
};

struct listeners {
        int tcp[CONFIG_MAX_LISTEN];
        size_t n_tcp;
        int udp[CONFIG_MAX_LISTEN];
        size_t n_udp;
        int proxy[CONFIG_MAX_LISTEN];   /* TCP, a PROXY header first (proxy.listen) */
        size_t n_proxy;
        int agent[CONFIG_MAX_LISTEN];   /* HAProxy agent-check listeners (agent.h) */
        size_t n_agent;
        int control;            /* UNIX stream socket, -1 when none */
        int connected;          /* inetd style (Accept=yes): one connection, -1 when none */
        bool activated;         /* passed by systemd: never bound or unlinked by us */
        struct passed_conn *resumed;    /* from the file descriptor store */
        size_t n_resumed;
        int state;              /* their state (a memfd), -1 when none */
};

/* FileDescriptorName= of the proxied listeners' .socket unit. */
#define LISTEN_PROXY_NAME "proxy"

void listeners_init(struct listeners *l);

/* Takes the sockets systemd passed (LISTEN_FDS): TCP listening sockets, UDP
 * sockets and a UNIX stream socket for control, told apart by their type
 * (FileDescriptorName= is not needed), except TCP listening sockets named
 * "proxy" (LISTEN_PROXY_NAME: proxied listeners) or "agent"
 * (LISTEN_AGENT_NAME: the agent-check, agent.h); or one connected TCP
 * socket (a unit with Accept=yes).  Connections in the file descriptor
 * store ("conn-ID") and their state ("state") are set aside in resumed and
 * state.  Returns the number of sockets to listen on taken, 0 when not
 * socket activated, or -errno; on -EBADMSG, *what names the offending
 * descriptor. */
int listen_activated(struct listeners *l, char *what, size_t len);

/* The name of a passed socket that is an agent-check listener. */
#define LISTEN_AGENT_NAME "agent"

/* Binds the configured TCP, proxied TCP, UDP and agent addresses (SO_REUSEADDR, dual stack for
 * [::], non-blocking, close-on-exec).  On failure returns -errno with the
 * address in *what. */
int listen_bind(struct listeners *l, const struct config *c, char *what, size_t len);


void listeners_close(struct listeners *l);

/* Local address of a socket as text, for the status line. */
char *listen_describe(int fd, char *buf, size_t len);
