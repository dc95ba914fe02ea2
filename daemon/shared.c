/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "duration.h"
#include "shared.h"
#include "source.h"

#define SLOT_NONE UINT32_MAX

_Static_assert(CONFIG_MAX_PREFIXES <= SHARED_EXEMPT_MAX, "room for every exempt prefix");

static const char *const close_reason_names[_CLOSE_MAX] = {
        [CLOSE_EOF] = "eof",
        [CLOSE_QUIT] = "quit",
        [CLOSE_IDLE] = "idle",
        [CLOSE_WRITE] = "write",
        [CLOSE_ERROR] = "error",
        [CLOSE_SHUTDOWN] = "shutdown",
        [CLOSE_HANDOVER] = "handover",
        [CLOSE_KILLED] = "killed",
};

const char *close_reason_to_string(enum close_reason r) {
        return r >= 0 && r < _CLOSE_MAX ? close_reason_names[r] : "error";
}

static size_t shared_size(uint32_t nslots) {
        return sizeof(struct shared) + (size_t) nslots * sizeof(struct conn_slot);
}

/* The hash seed of the per-source tables.  Without the entropy pool (very
 * early boot) a weaker seed is better than not starting. */
static uint64_t random_seed(void) {
        uint64_t seed;

        if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == sizeof(seed))
                return seed;
        return now_usec_realtime() ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) &seed;
}

static void limits_free(struct source_limits *l) {
        if (!l)
                return;
        source_table_free(l->tcp);
        rate_table_free(l->udp);
        pthread_mutex_destroy(&l->udp_lock);
        free(l);
}

/* The TCP table has room for a source per slot: it cannot fill. */
static int limits_new(uint32_t nslots, struct source_limits **ret) {
        struct source_limits *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        pthread_mutex_init(&l->udp_lock, NULL);
        r = source_table_new(nslots, random_seed(), &l->tcp);
        if (r >= 0)
                r = rate_table_new(RATE_TABLE_SETS, random_seed(), &l->udp);
        if (r < 0) {
                limits_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

int shared_new(uint32_t nslots, struct shared **ret) {
        pthread_mutexattr_t attr;
        struct source_limits *limits;
        struct shared *sh;
        int r, fd;

        r = limits_new(nslots, &limits);
        if (r < 0)
                return r;

        /* Shared so forked workers write into the same counters; a sparse
         * memfd so unused slots cost neither RSS nor commit charge. */
        fd = memfd_create("uppercased-shared", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t) shared_size(nslots)) < 0)
                sh = MAP_FAILED;
        else
                sh = mmap(NULL, shared_size(nslots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (sh == MAP_FAILED) {
                r = -errno;
                if (fd >= 0)
                        close(fd);
                limits_free(limits);
                return r;
        }
        sh->memfd = fd;

        pthread_mutexattr_init(&attr);
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        pthread_mutex_init(&sh->lock, &attr);
        pthread_mutexattr_destroy(&attr);

        sh->nslots = nslots;
        sh->limits = limits;
        sh->free_head = SLOT_NONE;
        /* Slots are handed out lowest index first and only linked into the
         * free list once released, so pages are touched as the table grows. */
        atomic_store(&sh->next_conn_id, 1);
        atomic_store(&sh->live.conn_fd_cap, UINT32_MAX);     /* until the daemon plans its budget */
        *ret = sh;
        return 0;
}

void shared_free(struct shared *sh) {
        if (!sh)
                return;
        limits_free(sh->limits);
        close(sh->memfd);
        munmap(sh, shared_size(sh->nslots));
}

int shared_map(int fd, struct shared **ret) {
        struct stat st;
        struct shared *sh;

        if (fstat(fd, &st) < 0)
                return -errno;
        if ((size_t) st.st_size < sizeof(*sh))
                return -EINVAL;
        sh = mmap(NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (sh == MAP_FAILED)
                return -errno;
        if ((size_t) st.st_size != shared_size(sh->nslots)) {
                munmap(sh, (size_t) st.st_size);
                return -EINVAL;
        }
        *ret = sh;
        return 0;
}

void shared_unmap(struct shared *sh) {
        if (sh)
                munmap(sh, shared_size(sh->nslots));
}

static struct conn_slot *slot_pop(struct shared *sh) {
        struct conn_slot *slot;

        if (sh->free_head != SLOT_NONE) {
                slot = &sh->slots[sh->free_head];
                sh->free_head = slot->next_free;
                return slot;
        }
        if (sh->high_water >= sh->nslots)
                return NULL;
        slot = &sh->slots[sh->high_water];
        slot->index = sh->high_water++;
        return slot;
}

static void slot_push(struct shared *sh, struct conn_slot *slot) {
        slot->next_free = sh->free_head;
        sh->free_head = slot->index;
}

void shared_set_exempt(struct shared *sh, const struct addr_prefix *list, size_t n) {
        struct source_limits *l = sh->limits;

        if (n > SHARED_EXEMPT_MAX)
                n = SHARED_EXEMPT_MAX;
        pthread_mutex_lock(&sh->lock);
        pthread_mutex_lock(&l->udp_lock);
        if (n > 0)
                memcpy(l->exempt, list, n * sizeof(list[0]));
        l->n_exempt = n;
        pthread_mutex_unlock(&l->udp_lock);
        pthread_mutex_unlock(&sh->lock);
}

void shared_set_proxy_trusted(struct shared *sh, const struct addr_prefix *list, size_t n) {
        struct source_limits *l = sh->limits;

        if (n > SHARED_EXEMPT_MAX)
                n = SHARED_EXEMPT_MAX;
        pthread_mutex_lock(&sh->lock);
        if (n > 0)
                memcpy(l->proxy_trusted, list, n * sizeof(list[0]));
        l->n_proxy_trusted = n;
        pthread_mutex_unlock(&sh->lock);
}

bool shared_proxy_trusted(struct shared *sh, const union sockaddr_union *peer) {
        const struct source_limits *l = sh->limits;
        bool trusted;

        pthread_mutex_lock(&sh->lock);
        trusted = addr_prefix_list_contains(l->proxy_trusted, l->n_proxy_trusted, peer);
        pthread_mutex_unlock(&sh->lock);
        return trusted;
}

/* Under sh->lock: whether a connection from peer (source k) is over
 * tcp_per_source.  An exempt source is counted, never refused. */
static bool over_per_source(struct shared *sh, const union sockaddr_union *peer, const struct source_key *k) {
        unsigned per_source = atomic_load_explicit(&sh->live.tcp_per_source, memory_order_relaxed);
        const struct source_limits *l = sh->limits;

        return per_source > 0 && source_count(l->tcp, k) >= per_source &&
               !addr_prefix_list_contains(l->exempt, l->n_exempt, peer);
}

/* Under sh->lock: a slot for a connection from peer (source k), or NULL
 * with the reason in *why. */
static struct conn_slot *slot_admit(struct shared *sh, const struct conn_origin *o,
                                    const struct source_key *k, enum reject_reason *why) {
        unsigned max = atomic_load_explicit(&sh->live.max_connections, memory_order_relaxed);
        struct conn_slot *slot;

        *why = REJECT_CONNECTIONS;
        if (atomic_load_explicit(&sh->tcp_active, memory_order_relaxed) >= max)
                return NULL;
        if (!o->health_check && over_per_source(sh, &o->peer, k)) {
                *why = REJECT_PER_SOURCE;
                return NULL;
        }
        slot = slot_pop(sh);
        if (!slot)
                return NULL;
        /* Cannot fail, the table has room for a source per slot; should it
         * all the same, the connection is refused rather than not counted. */
        if (!o->health_check && source_add(sh->limits->tcp, k) < 0) {
                slot_push(sh, slot);
                return NULL;
        }
        atomic_fetch_add_explicit(&sh->tcp_active, 1, memory_order_relaxed);
        return slot;
}

/* A slot under every limit, counted active; NULL (counted as rejected, the
 * reason in *why if not NULL) when there is none. */
static struct conn_slot *slot_claim(struct shared *sh, const struct conn_origin *o,
                                    enum reject_reason *why) {
        struct source_key key = source_key_of(&o->peer);
        enum reject_reason reason;
        struct conn_slot *slot;

        pthread_mutex_lock(&sh->lock);
        slot = slot_admit(sh, o, &key, &reason);
        pthread_mutex_unlock(&sh->lock);

        if (!slot) {
                COUNTER_ADD(sh, tcp_rejected, 1);
                if (reason == REJECT_PER_SOURCE)
                        COUNTER_ADD(sh, tcp_rejected_per_source, 1);
                if (why)
                        *why = reason;
                return NULL;
        }
        slot->peer = o->peer;
        slot->via = o->via;
        slot->health_check = o->health_check;
        return slot;
}

static void slot_publish(struct conn_slot *slot, uint64_t id, uint64_t start_realtime_usec,
                         uint64_t start_usec, uint64_t bytes_in, uint64_t bytes_out) {
        slot->start_usec = start_usec;
        slot->start_realtime_usec = start_realtime_usec;
        atomic_store_explicit(&slot->last_active_usec, now_usec_monotonic(), memory_order_relaxed);
        atomic_store_explicit(&slot->bytes_in, bytes_in, memory_order_relaxed);
        atomic_store_explicit(&slot->bytes_out, bytes_out, memory_order_relaxed);
        atomic_store_explicit(&slot->close_reason, CLOSE_ERROR, memory_order_relaxed);
        atomic_store_explicit(&slot->pid, 0, memory_order_relaxed);
        atomic_store_explicit(&slot->kill_id, 0, memory_order_relaxed);
        /* Publishing the id last makes the slot visible to readers. */
        atomic_store_explicit(&slot->id, id, memory_order_release);
}

struct conn_slot *conn_slot_take(struct shared *sh, const union sockaddr_union *peer,
                                 enum reject_reason *why) {
        struct conn_origin o = { .peer = *peer, .via.sa.sa_family = AF_UNSPEC };

        return conn_slot_take_from(sh, &o, why);
}

struct conn_slot *conn_slot_take_from(struct shared *sh, const struct conn_origin *origin,
                                      enum reject_reason *why) {
        struct conn_slot *slot = slot_claim(sh, origin, why);

        if (!slot)
                return NULL;
        slot_publish(slot, atomic_fetch_add(&sh->next_conn_id, 1), now_usec_realtime(),
                     now_usec_monotonic(), 0, 0);
        COUNTER_ADD(sh, tcp_accepted, 1);
        return slot;
}

struct conn_slot *conn_slot_resume(struct shared *sh, uint64_t id, const struct conn_origin *origin,
                                   uint64_t start_realtime_usec, uint64_t start_usec,
                                   uint64_t bytes_in, uint64_t bytes_out, enum reject_reason *why) {
        struct conn_slot *slot = slot_claim(sh, origin, why);
        uint_fast64_t next = atomic_load(&sh->next_conn_id);

        if (!slot)
                return NULL;
        /* New connections get ids after every resumed one. */
        while (next <= id && !atomic_compare_exchange_weak(&sh->next_conn_id, &next, id + 1))
                ;
        slot_publish(slot, id, start_realtime_usec, start_usec, bytes_in, bytes_out);
        COUNTER_ADD(sh, tcp_resumed, 1);
        return slot;
}

void conn_slot_release(struct shared *sh, struct conn_slot *slot) {
        int reason = atomic_load_explicit(&slot->close_reason, memory_order_relaxed);
        struct source_key key = source_key_of(&slot->peer);

        if (reason < 0 || reason >= _CLOSE_MAX)
                reason = CLOSE_ERROR;
        COUNTER_ADD(sh, tcp_closed[reason], 1);
        atomic_store_explicit(&slot->id, 0, memory_order_release);

        pthread_mutex_lock(&sh->lock);
        if (!slot->health_check)
                source_remove(sh->limits->tcp, &key);
        slot_push(sh, slot);
        atomic_fetch_sub_explicit(&sh->tcp_active, 1, memory_order_relaxed);
        pthread_mutex_unlock(&sh->lock);
}

struct conn_slot *conn_slot_kill(struct shared *sh, uint64_t id, union sockaddr_union *peer) {
        uint32_t n;

        pthread_mutex_lock(&sh->lock);
        n = sh->high_water;
        pthread_mutex_unlock(&sh->lock);
        for (uint32_t i = 0; i < n; i++) {
                struct conn_slot *slot = &sh->slots[i];

                if (atomic_load_explicit(&slot->id, memory_order_acquire) != id)
                        continue;
                *peer = slot->peer;
                atomic_store(&slot->kill_id, id);
                return slot;
        }
        return NULL;
}

/* Every member of struct counters is one of these. */
_Static_assert(sizeof(struct counters) % sizeof(atomic_uint_fast64_t) == 0, "counters are all 64-bit");

void shared_reset_counters(struct shared *sh) {
        atomic_uint_fast64_t *c = (atomic_uint_fast64_t *) &sh->c;

        for (size_t i = 0; i < sizeof(sh->c) / sizeof(*c); i++)
                atomic_store_explicit(&c[i], 0, memory_order_relaxed);
}
