/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "duration.h"
#include "handover.h"
#include "log.h"

_Static_assert(UPCASE_OUT_MAX(CONN_READ_MAX) <= HANDOVER_PENDING_MAX,
               "a connection's pending replies fit in its hand-over record");

/* The open, resumed or close entry of the connection in slot; the duration
 * is counted up to now. */
static void conn_log(const struct conn_slot *slot, enum client_event_kind kind, enum close_reason reason) {
        struct client_event ev = {
                .kind = kind,
                .peer = slot->peer,
                .conn_id = atomic_load_explicit(&slot->id, memory_order_relaxed),
                .bytes_in = atomic_load_explicit(&slot->bytes_in, memory_order_relaxed),
                .bytes_out = atomic_load_explicit(&slot->bytes_out, memory_order_relaxed),
                .duration_usec = now_usec_monotonic() - slot->start_usec,
                .reason = reason,
        };

        log_client(&ev);
}

static void conn_log_refused(const union sockaddr_union *peer, enum reject_reason why) {
        struct client_event ev = { .kind = CLIENT_TCP_REJECTED, .peer = *peer, .reject = why };

        log_client(&ev);
}

struct conn_slot *conn_admit(struct shared *sh, int fd, const union sockaddr_union *peer) {
        enum reject_reason why;
        struct conn_slot *slot = conn_slot_take(sh, peer, &why);

        if (!slot) {
                close(fd);
                conn_log_refused(peer, why);
                return NULL;
        }
        conn_log(slot, CLIENT_TCP_OPEN, CLOSE_ERROR);
        return slot;
}

bool accept_error_pauses(int err) {
        return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

bool warning_due(uint64_t *last_warned, uint64_t now) {
        if (*last_warned != 0 && now < *last_warned + ACCEPT_WARN_USEC)
                return false;
        *last_warned = now;
        return true;
}

uint64_t accept_pause(uint64_t *last_warned, uint64_t now, int err) {
        if (warning_due(last_warned, now)) {
                if (err == ENOSPC)
                        log_warning("The connections hold all the descriptors the limit leaves them, "
                                    "pausing accepts");
                else
                        log_warning_errno(err, "Failed to accept a connection, pausing accepts: %m");
        }
        return now + ACCEPT_PAUSE_USEC;
}

/* A model that serves each connection with a worker of its own has
 * max_workers of them at most: one more connection is refused, counted
 * like any other. */
static bool conn_workers_full(const struct conn_admission *a) {
        if (!a->workers || a->workers(a->userdata) < atomic_load(&a->shared->live.max_workers))
                return false;
        COUNTER_ADD(a->shared, tcp_rejected, 1);
        return true;
}

int conn_accept(const struct conn_admission *a, int listen_fd) {
        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                union sockaddr_union peer;
                socklen_t len = sizeof(peer);
                struct conn_slot *slot;
                int fd;

                if (shared_conn_fds_full(a->shared))
                        return ENOSPC;
                fd = accept4(listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return accept_error_pauses(errno) ? errno : 0;
                if (conn_workers_full(a)) {
                        close(fd);
                        conn_log_refused(&peer, REJECT_CONNECTIONS);
                        continue;
                }
                slot = conn_admit(a->shared, fd, &peer);
                if (slot)
                        a->start(a->userdata, fd, slot);
        }
        return 0;
}

struct conn_slot *conn_resume(struct shared *sh, int fd, uint64_t id, const struct handover_conn *rec) {
        union sockaddr_union peer;
        socklen_t len = sizeof(peer);
        uint64_t now = now_usec_monotonic();
        enum reject_reason why;
        struct conn_slot *slot;

        if (rec)
                peer = rec->peer;
        else if (getpeername(fd, &peer.sa, &len) < 0)
                return NULL;
        slot = rec ? conn_slot_resume(sh, id, &peer, rec->start_realtime_usec, rec->start_usec,
                                      rec->bytes_in, rec->bytes_out, &why)
                   : conn_slot_resume(sh, id, &peer, now_usec_realtime(), now, 0, 0, &why);
        if (!slot) {
                conn_log_refused(&peer, why);
                return NULL;
        }
        conn_log(slot, CLIENT_TCP_RESUMED, CLOSE_ERROR);
        return slot;
}

void conn_end(struct shared *sh, struct conn_slot *slot, enum close_reason reason) {
        atomic_store(&slot->close_reason, reason);
        conn_log(slot, CLIENT_TCP_CLOSE, reason);
        conn_slot_release(sh, slot);
}

int conn_hand_over(struct handover *h, const struct conn_slot *slot, int fd, const struct upcase *up,
                   const uint8_t *pending, size_t pending_len) {
        struct handover_conn rec = { .up = *up, .pending = pending, .pending_len = pending_len };

        handover_conn_from_slot(&rec, slot);
        return handover_store_conn(h, fd, &rec);
}

enum drain_step drain_next(const struct drain_view *v) {
        /* Past the wait, what is still owed travels with the connection:
         * replies (the next instance delivers them, then ends it if it had
         * ended), or the input still coming. */
        if (v->handover && v->wait_over && (v->replies_pending || !v->ended))
                return DRAIN_HAND_OVER;
        if (v->replies_pending)
                return DRAIN_FLUSH;
        if (v->input_waiting && !v->ended)
                return DRAIN_ANSWER;
        if (!v->received && !v->ended && !v->grace_over)
                return DRAIN_WAIT_REQUEST;
        /* Nothing owed: it goes on in the next instance, unless it ended. */
        return v->handover && !v->ended ? DRAIN_HAND_OVER : DRAIN_CLOSE;
}
