/* SPDX-License-Identifier: MIT */
#pragma once

/* Per-source accounting: what the limits of uppercased.conf(5)'s "limits"
 * group count, as pure data structures (no locks, no clock, no logging;
 * shared.c and udp.c lock and read the clock).
 *
 *   source_key     a client's source: its IPv4 address, or the /64 prefix
 *                  of its IPv6 address.  An IPv4-mapped IPv6 address (an
 *                  IPv4 client of the dual-stack [::] socket) is its IPv4
 *                  address.
 *   source_table   concurrent TCP connections per source: a fixed-capacity
 *                  open-addressing hash table that cannot fill.
 *   rate_table     the UDP rate limit per source: GCRA (a token bucket kept
 *                  as one time stamp) in a bounded set-associative table.
 *   udp_guard      the UDP loop guard's decision. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"

struct source_key {
        uint64_t hi, lo;
};

/* IPv4 a.b.c.d (plain or mapped) -> { 0, 0x0000ffff_aabbccdd }, the mapped
 * form; IPv6 -> { its first 64 bits, 0 }.  The two never meet: a mapped
 * address has non-zero low bits, a /64 key none.  Any other family gets
 * one key of its own, { ~0, ~0 }. */
struct source_key source_key_of(const union sockaddr_union *sa);
bool source_key_equal(const struct source_key *a, const struct source_key *b);
/* Seeded, so that which sources collide cannot be worked out from the
 * source code alone. */
uint64_t source_key_hash(const struct source_key *k, uint64_t seed);

/* ---- TCP: concurrent connections per source ---- */

struct source_table;

/* A table for up to max_sources distinct sources at once, at most half
 * full: with max_sources = the connection table's size it can never fill,
 * since every source counted holds at least one connection. */
int source_table_new(uint32_t max_sources, uint64_t seed, struct source_table **ret);
void source_table_free(struct source_table *t);

/* Connections counted for k now (0 when k is not in the table). */
unsigned source_count(const struct source_table *t, const struct source_key *k);
/* Counts one more connection for k; returns the new count, or -ENOSPC
 * when k is new and max_sources are in the table already. */
int source_add(struct source_table *t, const struct source_key *k);
/* Counts one connection less; a source whose count drops to 0 leaves the
 * table.  A key that is not in the table is ignored. */
void source_remove(struct source_table *t, const struct source_key *k);
/* Distinct sources in the table. */
uint32_t source_table_used(const struct source_table *t);
/* For tests: 0 when every entry is where a lookup finds it (no gap in
 * its probe sequence) and the counts add up, else -EBADMSG. */
int source_table_check(const struct source_table *t);

/* ---- UDP: rate per source (GCRA) ---- */

/* The bucket of one source is one time stamp, its "theoretical arrival
 * time" tat (ns): a datagram conforms when, after it, tat would be at most
 * burst intervals ahead of now; then tat advances by one interval
 * (1 s / rate).  So a burst of up to `burst` datagrams passes at once,
 * then one per interval.  tat == 0 is a new source: a full bucket.
 * Returns whether the datagram conforms; *tat changes only if it does. */
bool gcra_take(uint64_t *tat, uint64_t now_ns, uint64_t interval_ns, unsigned burst);
/* 1 s / rate in ns; rate > 0. */
uint64_t gcra_interval(unsigned rate);

#define RATE_TABLE_SETS 4096
#define RATE_TABLE_WAYS 4

struct rate_table;

/* nsets: a power of two (RATE_TABLE_SETS in the daemon), RATE_TABLE_WAYS
 * sources each. */
int rate_table_new(uint32_t nsets, uint64_t seed, struct rate_table **ret);
void rate_table_free(struct rate_table *t);

/* Sets the rate (datagrams per second, > 0) and burst (>= 1).  A change
 * starts every source afresh, with a full bucket. */
void rate_table_configure(struct rate_table *t, unsigned rate, unsigned burst);

/* One datagram from k at now_ns: whether it may be answered.  A source not
 * in the table takes the place, in its set, of the one with the earliest
 * tat: the bucket that has been full the longest (an empty place first),
 * so that sources being limited now are the last to be forgotten. */
bool rate_table_take(struct rate_table *t, const struct source_key *k, uint64_t now_ns);

/* ---- UDP: the loop guard ---- */

enum udp_drop {
        UDP_DROP_NONE,
        UDP_DROP_RATE,                 /* over limits.udp_rate */
        UDP_DROP_PRIVILEGED_PORT,      /* loop guard: source port 0..1023 */
        UDP_DROP_OWN_PORT,             /* loop guard: one of our own UDP ports */
};

/* Ports below this are never a client's: a real client sends from an
 * ephemeral port (Linux: 32768..60999, IANA: 49152..65535), and the
 * services that answer datagrams (echo 7, discard 9, daytime 13, chargen
 * 19, DNS 53, NTP 123, SNMP 161, ...) all live below it. */
#define UDP_GUARD_PORT_MIN 1024

/* The guard's verdict on a datagram from src_port: UDP_DROP_NONE,
 * UDP_DROP_PRIVILEGED_PORT or UDP_DROP_OWN_PORT (src_port is one of
 * own[0..n_own), the ports of the daemon's UDP sockets). */
enum udp_drop udp_guard_check(uint16_t src_port, const uint16_t *own, size_t n_own);
