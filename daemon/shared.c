/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "duration.h"
#include "shared.h"

#define SLOT_NONE UINT32_MAX

static const char *const close_reason_names[_CLOSE_MAX] = {
        [CLOSE_EOF] = "eof",
        [CLOSE_QUIT] = "quit",
        [CLOSE_IDLE] = "idle",
        [CLOSE_WRITE] = "write",
        [CLOSE_ERROR] = "error",
        [CLOSE_SHUTDOWN] = "shutdown",
        [CLOSE_HANDOVER] = "handover",
};

const char *close_reason_to_string(enum close_reason r) {
        return r >= 0 && r < _CLOSE_MAX ? close_reason_names[r] : "error";
}

static size_t shared_size(uint32_t nslots) {
        return sizeof(struct shared) + (size_t) nslots * sizeof(struct conn_slot);
}

int shared_new(uint32_t nslots, struct shared **ret) {
        pthread_mutexattr_t attr;
        struct shared *sh;

        /* MAP_SHARED so forked workers write into the same counters;
         * MAP_NORESERVE so unused slots cost neither RSS nor commit charge. */
        sh = mmap(NULL, shared_size(nslots), PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (sh == MAP_FAILED)
                return -errno;

        pthread_mutexattr_init(&attr);
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        pthread_mutex_init(&sh->lock, &attr);
        pthread_mutexattr_destroy(&attr);

        sh->nslots = nslots;
        sh->free_head = SLOT_NONE;
        /* Slots are handed out lowest index first and only linked into the
         * free list once released, so pages are touched as the table grows. */
        atomic_store(&sh->next_conn_id, 1);
        *ret = sh;
        return 0;
}

void shared_free(struct shared *sh) {
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

/* A free slot under max_connections, counted active; NULL (counted as
 * rejected) when there is none. */
static struct conn_slot *slot_claim(struct shared *sh, const union sockaddr_union *peer) {
        unsigned max = atomic_load_explicit(&sh->max_connections, memory_order_relaxed);
        struct conn_slot *slot = NULL;

        pthread_mutex_lock(&sh->lock);
        if (atomic_load_explicit(&sh->tcp_active, memory_order_relaxed) < max)
                slot = slot_pop(sh);
        if (slot)
                atomic_fetch_add_explicit(&sh->tcp_active, 1, memory_order_relaxed);
        pthread_mutex_unlock(&sh->lock);

        if (!slot)
                COUNTER_ADD(sh, tcp_rejected, 1);
        else
                slot->peer = *peer;
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
        /* Publishing the id last makes the slot visible to readers. */
        atomic_store_explicit(&slot->id, id, memory_order_release);
}

struct conn_slot *conn_slot_take(struct shared *sh, const union sockaddr_union *peer) {
        struct conn_slot *slot = slot_claim(sh, peer);

        if (!slot)
                return NULL;
        slot_publish(slot, atomic_fetch_add(&sh->next_conn_id, 1), now_usec_realtime(),
                     now_usec_monotonic(), 0, 0);
        COUNTER_ADD(sh, tcp_accepted, 1);
        return slot;
}

struct conn_slot *conn_slot_resume(struct shared *sh, uint64_t id, const union sockaddr_union *peer,
                                   uint64_t start_realtime_usec, uint64_t start_usec,
                                   uint64_t bytes_in, uint64_t bytes_out) {
        struct conn_slot *slot = slot_claim(sh, peer);
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

        if (reason < 0 || reason >= _CLOSE_MAX)
                reason = CLOSE_ERROR;
        COUNTER_ADD(sh, tcp_closed[reason], 1);
        atomic_store_explicit(&slot->id, 0, memory_order_release);

        pthread_mutex_lock(&sh->lock);
        slot->next_free = sh->free_head;
        sh->free_head = slot->index;
        atomic_fetch_sub_explicit(&sh->tcp_active, 1, memory_order_relaxed);
        pthread_mutex_unlock(&sh->lock);
}

void conn_slot_traffic(struct shared *sh, struct conn_slot *slot,
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
