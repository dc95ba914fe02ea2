/* SPDX-License-Identifier: MIT */
#pragma once

/* Everything the control socket reads or changes lives here, in one
 * MAP_SHARED mapping created before any worker starts: the counters, the live
 * timeouts, and the table of active TCP connections.  Worker threads and
 * forked worker processes update it with relaxed atomics; the control side
 * reads it without locks.  Because it is shared memory, the process model's
 * parent sees its children's work. */

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"
#include "control-proto.h"

enum close_reason {
        CLOSE_EOF,
        CLOSE_QUIT,
        CLOSE_IDLE,
        CLOSE_WRITE,
        CLOSE_ERROR,
        CLOSE_SHUTDOWN,
        CLOSE_HANDOVER,         /* stored for the next instance (restart) */
        CLOSE_KILLED,           /* uppercasectl kill */
        _CLOSE_MAX,
};

struct counters {
        atomic_uint_fast64_t tcp_accepted;
        atomic_uint_fast64_t tcp_rejected;       /* over any limit, tcp_rejected_per_source included */
        atomic_uint_fast64_t tcp_rejected_per_source; /* over limits.tcp_per_source */
        atomic_uint_fast64_t tcp_resumed;        /* taken over from the previous instance */
        atomic_uint_fast64_t tcp_closed[_CLOSE_MAX];
        atomic_uint_fast64_t tcp_bytes_in;
        atomic_uint_fast64_t tcp_bytes_out;
        atomic_uint_fast64_t udp_datagrams;
        atomic_uint_fast64_t udp_bytes_in;
        atomic_uint_fast64_t udp_bytes_out;
        atomic_uint_fast64_t udp_truncated;
        atomic_uint_fast64_t udp_send_errors;
        atomic_uint_fast64_t udp_rate_limited;   /* received, not answered: over limits.udp_rate */
        atomic_uint_fast64_t udp_loop_dropped;   /* received, not answered: loop guard */
        atomic_uint_fast64_t invalid_utf8;       /* bytes passed through unmapped */
        atomic_uint_fast64_t workers_died;       /* process model: children killed */
        atomic_uint_fast64_t log_suppressed;     /* client log entries rate limited */
        /* Proxied listeners (proxy.h): headers read, and connections closed
         * unanswered for want of one. */
        atomic_uint_fast64_t proxy_v1;
        atomic_uint_fast64_t proxy_v2;
        atomic_uint_fast64_t proxy_health_checks;       /* v2 LOCAL, v1 UNKNOWN: served, not logged */
        atomic_uint_fast64_t proxy_refused_untrusted;   /* from a peer not in proxy.trusted */
        atomic_uint_fast64_t proxy_refused_malformed;   /* not a header, or ended before it did */
        atomic_uint_fast64_t proxy_refused_timeout;     /* not complete within proxy.timeout */
        atomic_uint_fast64_t agent_checks;       /* agent-check answers (agent.h) */
};

/* Why a connection on a proxied listener was closed unanswered. */
enum proxy_refusal {
        PROXY_REFUSED_UNTRUSTED,        /* its peer is not in proxy.trusted */
        PROXY_REFUSED_MALFORMED,        /* no valid header */
        PROXY_REFUSED_TIMEOUT,          /* no whole header within proxy.timeout */
};

/* Where a TCP connection comes from. */
struct conn_origin {
        /* The client: the socket's peer, or the client a PROXY header names. */
        union sockaddr_union peer;
        /* The balancer that sent the header; AF_UNSPEC when direct. */
        union sockaddr_union via;
        /* A balancer's own check (PROXY LOCAL or UNKNOWN): peer is the
         * balancer; not limited per source, not logged as a client. */
        bool health_check;
};

/* One active TCP connection.  Written by the worker serving it, read by the
 * control side.  id == 0 marks a free slot. */
struct conn_slot {
        atomic_uint_fast64_t id;
        union sockaddr_union peer;               /* the client (struct conn_origin) */
        union sockaddr_union via;                /* its balancer, AF_UNSPEC when direct */
        bool health_check;                       /* a balancer's check: no per-source count */
        uint64_t start_realtime_usec;            /* for display */
        uint64_t start_usec;                     /* CLOCK_MONOTONIC */
        atomic_uint_fast64_t last_active_usec;   /* CLOCK_MONOTONIC, last byte in or out */
        atomic_uint_fast64_t bytes_in;
        atomic_uint_fast64_t bytes_out;
        atomic_int close_reason;                 /* set by the worker when it ends */
        atomic_int pid;                          /* process model: the child */
        /* uppercasectl kill: the id of the connection to close, so that a
         * request for a connection that ended meanwhile never applies to
         * the next one in the slot (conn_slot_killed()). */
        atomic_uint_fast64_t kill_id;
        uint32_t index;                          /* own position in the table */
        uint32_t next_free;                      /* free list link, owner side only */
};

/* Why conn_slot_take() refused a connection. */
enum reject_reason {
        REJECT_CONNECTIONS,             /* max_connections, max_workers, the table */
        REJECT_PER_SOURCE,              /* limits.tcp_per_source */
};

struct source_table;
struct rate_table;

/* At least CONFIG_MAX_LISTEN (checked in udp.c). */
#define SHARED_UDP_PORTS_MAX 16
/* At least CONFIG_MAX_PREFIXES (checked in shared.c). */
#define SHARED_EXEMPT_MAX 64

/* The per-source tables (source.h).  Unlike the rest of struct shared they
 * are ordinary heap memory of the daemon's main process, only pointed to
 * from the shared area, because only threads of the main process use them:
 * conn_slot_take() and conn_slot_release() run there in every model (in the
 * process model the parent admits each connection and releases it when it
 * reaps the child), and only the main process serves UDP.  A forked child's
 * copy is never used. */
struct source_limits {
        struct source_table *tcp;                /* under shared.lock */
        pthread_mutex_t udp_lock;                /* taken once per UDP batch */
        struct rate_table *udp;                  /* under udp_lock */
        uint16_t udp_own_ports[SHARED_UDP_PORTS_MAX]; /* set at start, read-only after */
        size_t n_udp_own_ports;
        /* limits.exempt: sources counted but never limited.  Changed under
         * both locks (shared_set_exempt()), so each side reads it under
         * its own. */
        struct addr_prefix exempt[SHARED_EXEMPT_MAX];
        size_t n_exempt;
        /* proxy.trusted: the peers that may send a PROXY header.  Changed
         * and read under shared.lock. */
        struct addr_prefix proxy_trusted[SHARED_EXEMPT_MAX];
        size_t n_proxy_trusted;
};

/* The settings that apply at once, to new and open connections: the
 * configuration's (on start and reload) and uppercasectl's timeouts.
 * Written by the main thread, read everywhere. */
struct live_settings {
        atomic_uint_fast64_t timeout_usec[_TIMEOUT_MAX];   /* 0 = off */
        atomic_uint max_connections;
        atomic_uint max_workers;                 /* thread and process models */
        atomic_uint tcp_per_source;              /* 0 = no limit */
        atomic_uint udp_rate;                    /* 0 = no limit */
        atomic_uint udp_burst;
        atomic_bool udp_loop_guard;
        atomic_uint conn_fd_cap;                 /* connections the descriptor budget allows */
        atomic_uint_fast64_t proxy_timeout_usec; /* a PROXY header's time to arrive, 0 = none */
};

struct shared {
        struct counters c;
        struct live_settings live;
        atomic_bool stopping;                    /* graceful stop: flush and close */
        atomic_bool aborting;                    /* shutdown timeout hit: close now */
        struct source_limits *limits;            /* the main process's heap: see above */

        /* The connection table.  The free list is only touched under lock,
         * by the threads of the daemon's main process (in the process
         * model, only the parent). */
        atomic_uint tcp_active;
        atomic_uint proxy_waiting;               /* accepted, their PROXY header not read yet */
        atomic_uint_fast64_t next_conn_id;
        pthread_mutex_t lock;
        uint32_t free_head;
        uint32_t high_water;             /* slots below this were used once */
        uint32_t nslots;
        int memfd;                       /* the area's file in the daemon, for the fork helper */
        struct conn_slot slots[];
};

/* Maps the shared area with room for nslots connections.  Pages are only
 * touched as slots are used, so a large table costs nothing until then.
 * The area is a memfd (sh->memfd), so that a program the daemon starts
 * (the process model's fork helper) can map it too. */
int shared_new(uint32_t nslots, struct shared **ret);
void shared_free(struct shared *sh);

/* In another program: maps the area of the daemon's sh->memfd, passed as
 * fd.  Only the counters, the live settings, the stop flags and the slots
 * are for it (not limits, nor the table's lock or free list).  Undone by
 * shared_unmap(). */
int shared_map(int fd, struct shared **ret);
void shared_unmap(struct shared *sh);

/* Sets limits.exempt (n <= SHARED_EXEMPT_MAX), live. */
void shared_set_exempt(struct shared *sh, const struct addr_prefix *list, size_t n);
/* Sets proxy.trusted (n <= SHARED_EXEMPT_MAX), live; and whether peer is in it. */
void shared_set_proxy_trusted(struct shared *sh, const struct addr_prefix *list, size_t n);
bool shared_proxy_trusted(struct shared *sh, const union sockaddr_union *peer);

/* Takes a slot for a new connection from peer, or returns NULL when
 * max_connections (or the table) is full or peer's source (source.h) has
 * tcp_per_source connections already (unless it is exempt: it is
 * counted all the same); then tcp_rejected (and
 * tcp_rejected_per_source) is counted and, if why is not NULL, *why says
 * which.  The global limit is checked first. */
struct conn_slot *conn_slot_take(struct shared *sh, const union sockaddr_union *peer,
                                 enum reject_reason *why);
/* The same for a connection from origin: a balancer's health check is not
 * counted per source. */
struct conn_slot *conn_slot_take_from(struct shared *sh, const struct conn_origin *origin,
                                      enum reject_reason *why);
/* Takes a slot for a connection the previous instance handed over, keeping
 * its id, times and counters; counted as resumed, not accepted.  NULL (and
 * *why set, as for conn_slot_take()) when a limit is reached. */
struct conn_slot *conn_slot_resume(struct shared *sh, uint64_t id, const struct conn_origin *origin,
                                   uint64_t start_realtime_usec, uint64_t start_usec,
                                   uint64_t bytes_in, uint64_t bytes_out, enum reject_reason *why);
/* Releases a slot: counts its close reason, decrements tcp_active and the
 * count of its source. */
void conn_slot_release(struct shared *sh, struct conn_slot *slot);

/* Asks the worker of connection id to close it after its replies
 * (conn_slot_killed()); the caller wakes the worker.  Returns the slot,
 * and its peer in *peer, or NULL when no connection has that id. */
struct conn_slot *conn_slot_kill(struct shared *sh, uint64_t id, union sockaddr_union *peer);
/* Whether the connection of slot was asked to close. */
static inline bool conn_slot_killed(const struct conn_slot *slot) {
        uint64_t kill = atomic_load_explicit(&slot->kill_id, memory_order_relaxed);

        return kill != 0 && kill == atomic_load_explicit(&slot->id, memory_order_relaxed);
}

/* Zeroes the counters (struct counters), not the gauges (tcp_active,
 * proxy_waiting) nor the connections' own counts. */
void shared_reset_counters(struct shared *sh);


/* Whether the connections hold every descriptor the budget leaves them
 * (fdbudget.h): then accepting waits, as on EMFILE. */
static inline bool shared_conn_fds_full(const struct shared *sh) {
        return atomic_load_explicit(&sh->tcp_active, memory_order_relaxed) +
               atomic_load_explicit(&sh->proxy_waiting, memory_order_relaxed) >=
               atomic_load_explicit(&sh->live.conn_fd_cap, memory_order_relaxed);
}

static inline uint64_t shared_timeout(const struct shared *sh, enum timeout_id t) {
        return atomic_load_explicit(&sh->live.timeout_usec[t], memory_order_relaxed);
}

#define COUNTER_ADD(sh, field, n) \
        atomic_fetch_add_explicit(&(sh)->c.field, (n), memory_order_relaxed)

/* Records traffic on a connection (and the global TCP counters).  Inline:
 * the fork helper's children call it without linking the table. */
static inline void conn_slot_traffic(struct shared *sh, struct conn_slot *slot,
                                     uint64_t in, uint64_t out, uint64_t now_usec) {
        /* Only the worker serving this connection writes its slot. */
        if (in) {
                atomic_store_explicit(&slot->bytes_in,
                                      atomic_load_explicit(&slot->bytes_in, memory_order_relaxed) + in,
                                      memory_order_relaxed);
                COUNTER_ADD(sh, tcp_bytes_in, in);
        }
        if (out) {
                atomic_store_explicit(&slot->bytes_out,
                                      atomic_load_explicit(&slot->bytes_out, memory_order_relaxed) + out,
                                      memory_order_relaxed);
                COUNTER_ADD(sh, tcp_bytes_out, out);
        }
        atomic_store_explicit(&slot->last_active_usec, now_usec, memory_order_relaxed);
}

const char *close_reason_to_string(enum close_reason r);
