/* SPDX-License-Identifier: MIT */
#pragma once

/* Connections accepted on a proxied listener, waiting for their PROXY
 * header (proxy.h).  A loop that accepts on proxied listeners owns one set:
 * it watches proxy_wait_fd() for input and wakes by proxy_wait_deadline()
 * for the timeout, and then proxy_wait_run() tells it, one callback each,
 * which connections are done waiting and how.  What becomes of them
 * (admitted, refused, counted, logged) is conn.c's.
 *
 * Nothing is read but the header: the set peeks at the socket until a whole
 * header is there, then reads exactly it, so the client's bytes after it
 * stay in the socket for the worker.  Sockets are watched edge-triggered,
 * woken only by new bytes: a header that is incomplete costs nothing until
 * more comes. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "addr.h"
#include "proxy.h"

/* How a connection's wait ended. */
enum proxy_wait_result {
        PROXY_WAIT_HEADER,      /* a whole header, read: h is valid */
        PROXY_WAIT_MALFORMED,   /* not a header, or the peer ended or failed before one */
        PROXY_WAIT_TIMEOUT,     /* not complete within the timeout */
};

struct proxy_outcome {
        enum proxy_wait_result result;
        int fd;                         /* the caller's now: to admit or close */
        union sockaddr_union peer;      /* the socket's peer: the balancer */
        struct proxy_header h;
};

struct proxy_waiting;

struct proxy_wait {
        int epfd;                       /* the waiting sockets, edge-triggered; -1 when unused */
        struct proxy_waiting *head;     /* oldest first: in the order of their deadlines */
        struct proxy_waiting *tail;
        unsigned n;
        atomic_uint *counter;           /* every set's n together (shared.h); may be NULL */
        uint8_t *buf;                   /* PROXY_HEADER_MAX bytes to peek into */
};

/* Sets w up; counter (atomic, may be NULL) counts the waiting connections
 * of every set, for the descriptor budget.  Returns 0 or -errno. */
int proxy_wait_init(struct proxy_wait *w, atomic_uint *counter);
/* Closes the connections still waiting, and the set; nothing for a set
 * never set up (zeroed) or done already. */
void proxy_wait_done(struct proxy_wait *w);

static inline int proxy_wait_fd(const struct proxy_wait *w) {
        return w->epfd;
}

/* Adds a connection (non-blocking fd, from peer), accepted at now.  Returns
 * 0, or -errno (fd is then still the caller's). */
int proxy_wait_add(struct proxy_wait *w, int fd, const union sockaddr_union *peer, uint64_t now);

/* When the oldest waiting connection's time is up (CLOCK_MONOTONIC), with
 * timeout_usec (0 = none); UINT64_MAX when none waits. */
uint64_t proxy_wait_deadline(const struct proxy_wait *w, uint64_t timeout_usec);

/* Reads what arrived and expires what waited timeout_usec (0 = never) by
 * now: calls done() for each connection that is done waiting, which then
 * owns its fd. */
void proxy_wait_run(struct proxy_wait *w, uint64_t now, uint64_t timeout_usec,
                    void (*done)(void *userdata, const struct proxy_outcome *o), void *userdata);
