/* SPDX-License-Identifier: MIT */
/* Per-source accounting (see source.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source.h"

#define NSEC_PER_SEC 1000000000ULL

/* ---- keys ---- */

static uint64_t load_be64(const uint8_t *p) {
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v = v << 8 | p[i];
        return v;
}

static struct source_key key_ipv4(uint32_t addr_host_order) {
        return (struct source_key) { 0, 0xffff00000000ULL | addr_host_order };
}

struct source_key source_key_of(const union sockaddr_union *sa) {
        const uint8_t *b;

        switch (sa->sa.sa_family) {
        case AF_INET:
                return key_ipv4(ntohl(sa->in.sin_addr.s_addr));
        case AF_INET6:
                b = sa->in6.sin6_addr.s6_addr;
                if (IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr))
                        return key_ipv4((uint32_t) b[12] << 24 | (uint32_t) b[13] << 16 |
                                        (uint32_t) b[14] << 8 | b[15]);
                return (struct source_key) { load_be64(b), 0 };
        default:
                return (struct source_key) { UINT64_MAX, UINT64_MAX };
        }
}

bool source_key_equal(const struct source_key *a, const struct source_key *b) {
        return a->hi == b->hi && a->lo == b->lo;
}

/* splitmix64's finaliser: every input bit affects every output bit. */
static uint64_t mix64(uint64_t x) {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return x;
}

uint64_t source_key_hash(const struct source_key *k, uint64_t seed) {
        return mix64(mix64(k->hi ^ seed) ^ k->lo);
}

/* ---- TCP: concurrent connections per source ----
 *
 * Linear probing, at most half full.  Removal shifts the entries after the
 * removed one back (no tombstones), so a lookup may stop at the first
 * empty place and the table never degrades however long the daemon runs. */

struct source_entry {
        struct source_key key;
        uint32_t count;                 /* 0: the place is empty */
};

struct source_table {
        uint64_t seed;
        uint32_t mask;                  /* capacity - 1 */
        uint32_t max_used;
        uint32_t used;
        struct source_entry e[];
};

int source_table_new(uint32_t max_sources, uint64_t seed, struct source_table **ret) {
        uint64_t cap = 2;
        struct source_table *t;

        while (cap < 2 * (uint64_t) max_sources)
                cap <<= 1;
        if (max_sources == 0 || cap > UINT32_MAX)
                return -EINVAL;
        /* calloc: a large table is fresh zero pages, touched as used. */
        t = calloc(1, sizeof(*t) + cap * sizeof(t->e[0]));
        if (!t)
                return -ENOMEM;
        t->seed = seed;
        t->mask = (uint32_t) (cap - 1);
        t->max_used = max_sources;
        *ret = t;
        return 0;
}

void source_table_free(struct source_table *t) {
        free(t);
}

static uint32_t home_of(const struct source_table *t, const struct source_key *k) {
        return (uint32_t) source_key_hash(k, t->seed) & t->mask;
}

/* The place holding k, or the empty place where it would go. */
static uint32_t probe(const struct source_table *t, const struct source_key *k) {
        uint32_t i = home_of(t, k);

        while (t->e[i].count != 0 && !source_key_equal(&t->e[i].key, k))
                i = (i + 1) & t->mask;
        return i;
}

unsigned source_count(const struct source_table *t, const struct source_key *k) {
        return t->e[probe(t, k)].count;
}

int source_add(struct source_table *t, const struct source_key *k) {
        struct source_entry *e = &t->e[probe(t, k)];

        if (e->count == 0) {
                if (t->used >= t->max_used)
                        return -ENOSPC;
                e->key = *k;
                t->used++;
        }
        return (int) ++e->count;
}

/* Empties place i, moving back each later entry of the run that a lookup
 * could no longer reach across the gap: the one at j may fill the gap at
 * i when its home is not in (i, j], i.e. is at least as far from j as i. */
static void remove_at(struct source_table *t, uint32_t i) {
        for (uint32_t j = (i + 1) & t->mask; t->e[j].count != 0; j = (j + 1) & t->mask) {
                uint32_t home = home_of(t, &t->e[j].key);

                if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
                        t->e[i] = t->e[j];
                        i = j;
                }
        }
        t->e[i].count = 0;
        t->used--;
}

void source_remove(struct source_table *t, const struct source_key *k) {
        uint32_t i = probe(t, k);

        if (t->e[i].count == 0)
                return;
        if (--t->e[i].count == 0)
                remove_at(t, i);
}

uint32_t source_table_used(const struct source_table *t) {
        return t->used;
}

int source_table_check(const struct source_table *t) {
        uint32_t used = 0;

        for (uint32_t i = 0; i <= t->mask; i++) {
                if (t->e[i].count == 0)
                        continue;
                used++;
                /* Every place from the key's home up to i must be taken. */
                for (uint32_t j = home_of(t, &t->e[i].key); j != i; j = (j + 1) & t->mask)
                        if (t->e[j].count == 0)
                                return -EBADMSG;
        }
        return used == t->used ? 0 : -EBADMSG;
}

/* ---- UDP: rate per source (GCRA) ---- */

uint64_t gcra_interval(unsigned rate) {
        return NSEC_PER_SEC / rate;
}

bool gcra_take(uint64_t *tat, uint64_t now_ns, uint64_t interval_ns, unsigned burst) {
        uint64_t next = (*tat > now_ns ? *tat : now_ns) + interval_ns;

        if (next - now_ns > (uint64_t) burst * interval_ns)
                return false;
        *tat = next;
        return true;
}

struct rate_entry {
        struct source_key key;
        uint64_t tat;                   /* 0: the place is empty */
};

struct rate_table {
        uint64_t seed;
        uint32_t set_mask;
        unsigned rate, burst;
        uint64_t interval_ns;
        bool dirty;                     /* an entry was written since the last clear */
        struct rate_entry e[];          /* (set_mask + 1) * RATE_TABLE_WAYS */
};

static size_t rate_table_entries(const struct rate_table *t) {
        return ((size_t) t->set_mask + 1) * RATE_TABLE_WAYS;
}

int rate_table_new(uint32_t nsets, uint64_t seed, struct rate_table **ret) {
        struct rate_table *t;

        if (nsets == 0 || (nsets & (nsets - 1)) != 0)
                return -EINVAL;
        t = calloc(1, sizeof(*t) + (size_t) nsets * RATE_TABLE_WAYS * sizeof(t->e[0]));
        if (!t)
                return -ENOMEM;
        t->seed = seed;
        t->set_mask = nsets - 1;
        *ret = t;
        return 0;
}

void rate_table_free(struct rate_table *t) {
        free(t);
}

void rate_table_configure(struct rate_table *t, unsigned rate, unsigned burst) {
        if (t->rate == rate && t->burst == burst)
                return;
        t->rate = rate;
        t->burst = burst;
        t->interval_ns = rate > 0 ? gcra_interval(rate) : 0;
        /* Only when needed: calloc's pages stay untouched until used. */
        if (t->dirty)
                memset(t->e, 0, rate_table_entries(t) * sizeof(t->e[0]));
        t->dirty = false;
}

/* The place of k in its set, or the one it takes over. */
static struct rate_entry *rate_entry_for(struct rate_table *t, const struct source_key *k) {
        size_t set = (size_t) (source_key_hash(k, t->seed) & t->set_mask);
        struct rate_entry *ways = &t->e[set * RATE_TABLE_WAYS], *victim = &ways[0];

        for (int w = 0; w < RATE_TABLE_WAYS; w++) {
                if (ways[w].tat != 0 && source_key_equal(&ways[w].key, k))
                        return &ways[w];
                if (ways[w].tat < victim->tat)
                        victim = &ways[w];
        }
        victim->key = *k;
        victim->tat = 0;
        t->dirty = true;
        return victim;
}

bool rate_table_take(struct rate_table *t, const struct source_key *k, uint64_t now_ns) {
        if (t->rate == 0)
                return true;
        return gcra_take(&rate_entry_for(t, k)->tat, now_ns, t->interval_ns, t->burst);
}

/* ---- UDP: the loop guard ---- */

enum udp_drop udp_guard_check(uint16_t src_port, const uint16_t *own, size_t n_own) {
        if (src_port < UDP_GUARD_PORT_MIN)
                return UDP_DROP_PRIVILEGED_PORT;
        for (size_t i = 0; i < n_own; i++)
                if (own[i] == src_port)
                        return UDP_DROP_OWN_PORT;
        return UDP_DROP_NONE;
}
