/* SPDX-License-Identifier: MIT */
#pragma once

/* Connections that survive a restart, through systemd's file descriptor
 * store.
 *
 * On stop, each open TCP connection is answered as on any stop (the input
 * already received gets its replies) and then, instead of being closed, its
 * socket goes to the store (FDSTORE=1, FDNAME=conn-ID) and its state - the
 * bytes of a character or a "." held back, the replies the peer has not
 * read yet, the counters - is appended to one memfd stored last
 * (FDNAME=state).  systemd keeps the store across "systemctl restart" and
 * empties it, closing the sockets, on "systemctl stop": so a restart
 * resumes every connection and a stop closes them, after their replies, as
 * before.
 *
 * On start the daemon takes them back (LISTEN_FDNAMES) and removes them from
 * the store at once (FDSTOREREMOVE=1): from then on a connection is ours
 * alone, and its close is seen by the peer.  Nothing is stored while the
 * daemon runs, so the hand-over costs nothing until the stop.
 *
 * The store's size is in $FDSTORE (systemd 254 and later set it from
 * FileDescriptorStoreMax=; the unit sets it for older ones).  Without it,
 * or with NOTIFY_SOCKET unset, there is no store and stops close
 * connections. */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "textbuf.h"
#include "upcase.h"

/* One connection's state, as stored.  pending points into the decoded
 * buffer (or, when encoding, at the caller's replies). */
struct handover_conn {
        uint64_t id;
        union sockaddr_union peer;      /* the client (struct conn_origin) */
        union sockaddr_union via;       /* its balancer, AF_UNSPEC when direct */
        bool health_check;
        uint64_t start_realtime_usec;
        uint64_t start_usec;            /* CLOCK_MONOTONIC: the same across processes */
        uint64_t bytes_in;
        uint64_t bytes_out;
        struct upcase up;
        const uint8_t *pending;         /* replies not sent yet */
        size_t pending_len;
};

/* Largest pending reply a connection can have: one read's worth (a read
 * is CONN_READ_MAX, 16 KiB: conn.c checks they agree). */
#define HANDOVER_PENDING_MAX UPCASE_OUT_MAX(16 * 1024)
/* Name prefix of a stored connection, and the name of the state memfd. */
#define HANDOVER_CONN_PREFIX "conn-"
#define HANDOVER_STATE_NAME "state"

/* Pure encoding, for the daemon and its tests.  handover_encode() appends
 * one record (b->overflow tells whether it fitted). */
void handover_encode_header(struct textbuf *b);
void handover_encode(struct textbuf *b, const struct handover_conn *c);
/* The layout handover_encode() writes.  Version 1 (uppercased 1.0) had no
 * balancer (via, health_check): it is still read, so that an upgrade from
 * it keeps the connections' state. */
#define HANDOVER_VERSION 2
/* Checks the header at buf; returns its layout version (1 or 2), the offset
 * of the first record in *off; or -EBADMSG. */
int handover_decode_header(const uint8_t *buf, size_t len, size_t *off);
/* Decodes the record (of layout version) at *off and advances it.  Returns
 * 1, 0 at the end of buf, or -EBADMSG for a truncated or inconsistent
 * record. */
int handover_decode(const uint8_t *buf, size_t len, int version, size_t *off, struct handover_conn *c);

struct conn_slot;
/* Fills the slot's part of a record: id, peer, times, counters. */
void handover_conn_from_slot(struct handover_conn *c, const struct conn_slot *slot);

/* Parses "conn-ID"; returns the id, or 0 when name is not one. */
uint64_t handover_conn_name_id(const char *name);

/* The stopping side. */
struct handover {
        bool enabled;
        unsigned max;                   /* descriptors the store takes */
        unsigned stored;                /* connections handed over */
        pthread_mutex_t lock;
        struct textbuf state;
};

/* Enabled when $NOTIFY_SOCKET and $FDSTORE (> 1) are set. */
void handover_init(struct handover *h);
void handover_done(struct handover *h);

/* Puts a connection's socket in the store and records its state; thread
 * safe.  The caller still closes its own descriptor.  Returns -ENOSPC when
 * the store is full (one place is kept for the state), -ENOBUFS when the
 * state does not fit, or -errno from sending. */
int handover_store_conn(struct handover *h, int fd, const struct handover_conn *c);

/* Stores the state memfd and waits until systemd has taken everything
 * (sd_notify_barrier()).  Call once, after the last connection. */
int handover_store_state(struct handover *h);

/* The starting side: what the previous instance stored. */
struct handover_state {
        uint8_t *buf;
        size_t len;
        struct handover_conn *conns;
        size_t n;
};

/* Reads and decodes the state memfd (closing it).  On -EBADMSG the state
 * is unusable as a whole. */
int handover_state_load(int fd, struct handover_state *st);
/* The record of connection id, or NULL. */
const struct handover_conn *handover_state_find(const struct handover_state *st, uint64_t id);
void handover_state_free(struct handover_state *st);


/* Removes a name from the store (FDSTOREREMOVE=1). */
int handover_forget(const char *name);
