/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "duration.h"
#include "handover.h"
#include "log.h"
#include "proxy-wait.h"

_Static_assert(UPCASE_OUT_MAX(CONN_READ_MAX) <= HANDOVER_PENDING_MAX,
               "a connection's pending replies fit in its hand-over record");

/* The open, resumed or close entry of the connection in slot; the duration
 * is counted up to now. */
static void conn_log(const struct conn_slot *slot, enum client_event_kind kind, enum close_reason reason) {
        struct client_event ev = {
                .kind = kind,
                .peer = slot->peer,
                .via = slot->via,
                .conn_id = atomic_load_explicit(&slot->id, memory_order_relaxed),
                .bytes_in = atomic_load_explicit(&slot->bytes_in, memory_order_relaxed),
                .bytes_out = atomic_load_explicit(&slot->bytes_out, memory_order_relaxed),
                .duration_usec = now_usec_monotonic() - slot->start_usec,
                .reason = reason,
        };

        /* A balancer's health check is not a client. */
        if (!slot->health_check)
                log_client(&ev);
}

static void conn_log_refused(const struct conn_origin *o, enum reject_reason why) {
        struct client_event ev = { .kind = CLIENT_TCP_REJECTED, .peer = o->peer, .via = o->via, .reject = why };

        if (!o->health_check)
                log_client(&ev);
}

static struct conn_origin origin_direct(const union sockaddr_union *peer) {
        return (struct conn_origin) { .peer = *peer, .via.sa.sa_family = AF_UNSPEC };
}

struct conn_slot *conn_admit_from(struct shared *sh, int fd, const struct conn_origin *o) {
        enum reject_reason why;
        struct conn_slot *slot = conn_slot_take_from(sh, o, &why);

        if (!slot) {
                close(fd);
                conn_log_refused(o, why);
                return NULL;
        }
        conn_log(slot, CLIENT_TCP_OPEN, CLOSE_ERROR);
        return slot;
}

struct conn_slot *conn_admit(struct shared *sh, int fd, const union sockaddr_union *peer) {
        struct conn_origin o = origin_direct(peer);

        return conn_admit_from(sh, fd, &o);
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

/* Admits a connection from o under every limit and gives it to the model. */
static void conn_take(const struct conn_admission *a, int fd, const struct conn_origin *o) {
        struct conn_slot *slot;

        if (conn_workers_full(a)) {
                close(fd);
                conn_log_refused(o, REJECT_CONNECTIONS);
                return;
        }
        slot = conn_admit_from(a->shared, fd, o);
        if (slot)
                a->start(a->userdata, fd, slot);
}

/* ---- proxied listeners ---- */

static void conn_refuse_proxied(struct shared *sh, int fd, const union sockaddr_union *peer,
                                enum proxy_refusal why) {
        struct client_event ev = {
                .kind = CLIENT_PROXY_REFUSED,
                .peer = *peer,
                .refusal = why,
                .proxy_timeout_usec = atomic_load(&sh->live.proxy_timeout_usec),
        };

        close(fd);
        switch (why) {
        case PROXY_REFUSED_UNTRUSTED:
                COUNTER_ADD(sh, proxy_refused_untrusted, 1);
                break;
        case PROXY_REFUSED_TIMEOUT:
                COUNTER_ADD(sh, proxy_refused_timeout, 1);
                break;
        default:
                COUNTER_ADD(sh, proxy_refused_malformed, 1);
                break;
        }
        log_client(&ev);
}

/* Who a header says the connection is from.  With no client named (LOCAL,
 * UNKNOWN: the balancer's own check) the socket's addresses apply. */
static struct conn_origin origin_of_header(struct shared *sh, const struct proxy_outcome *o) {
        struct conn_origin origin = { .peer = o->peer, .via = o->peer };

        if (o->h.version == 1)
                COUNTER_ADD(sh, proxy_v1, 1);
        else
                COUNTER_ADD(sh, proxy_v2, 1);
        if (o->h.kind == PROXY_CLIENT) {
                origin.peer = o->h.src;
                return origin;
        }
        COUNTER_ADD(sh, proxy_health_checks, 1);
        origin.via.sa.sa_family = AF_UNSPEC;
        origin.health_check = true;
        return origin;
}

static void conn_proxied_done(void *userdata, const struct proxy_outcome *o) {
        const struct conn_admission *a = userdata;
        struct conn_origin origin;

        if (o->result == PROXY_WAIT_TIMEOUT) {
                conn_refuse_proxied(a->shared, o->fd, &o->peer, PROXY_REFUSED_TIMEOUT);
                return;
        }
        if (o->result != PROXY_WAIT_HEADER) {
                conn_refuse_proxied(a->shared, o->fd, &o->peer, PROXY_REFUSED_MALFORMED);
                return;
        }
        origin = origin_of_header(a->shared, o);
        conn_take(a, o->fd, &origin);
}

void conn_proxied_run(const struct conn_admission *a, struct proxy_wait *w, uint64_t now) {
        proxy_wait_run(w, now, atomic_load(&a->shared->live.proxy_timeout_usec), conn_proxied_done, (void *) a);
        if (a->batch_done)
                a->batch_done(a->userdata);
}

uint64_t conn_proxied_deadline(const struct conn_admission *a, const struct proxy_wait *w) {
        return proxy_wait_deadline(w, atomic_load(&a->shared->live.proxy_timeout_usec));
}

/* A connection on a proxied listener waits for its header in w, if its
 * peer may send one. */
static void conn_wait_header(const struct conn_admission *a, struct proxy_wait *w, int fd,
                             const union sockaddr_union *peer) {
        int r;

        if (!shared_proxy_trusted(a->shared, peer)) {
                conn_refuse_proxied(a->shared, fd, peer, PROXY_REFUSED_UNTRUSTED);
                return;
        }
        r = proxy_wait_add(w, fd, peer, now_usec_monotonic());
        if (r < 0) {
                log_warning_errno(r, "Failed to wait for a PROXY header: %m");
                close(fd);
        }
}

static int accept_some(const struct conn_admission *a, struct proxy_wait *w, int listen_fd) {
        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                union sockaddr_union peer;
                socklen_t len = sizeof(peer);
                struct conn_origin o;
                int fd;

                if (shared_conn_fds_full(a->shared))
                        return ENOSPC;
                if (a->busy && a->busy(a->userdata))
                        return 0;
                fd = accept4(listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                        return accept_error_pauses(errno) ? errno : 0;
                if (w) {
                        conn_wait_header(a, w, fd, &peer);
                        continue;
                }
                o = origin_direct(&peer);
                conn_take(a, fd, &o);
        }
        return 0;
}

static int accept_batch(const struct conn_admission *a, struct proxy_wait *w, int listen_fd) {
        int r = accept_some(a, w, listen_fd);

        if (a->batch_done)
                a->batch_done(a->userdata);
        return r;
}

void conn_accept_last(const struct conn_admission *a, struct proxy_wait *w, int listen_fd, bool shut) {
        struct pollfd p = { .fd = listen_fd, .events = POLLIN };

        /* Bounded: a backlog refilled as fast as it is taken ends too. */
        for (int i = 0; i < ACCEPT_LAST_BATCHES; i++)
                if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN) || accept_batch(a, w, listen_fd) != 0)
                        break;
        if (shut)
                (void) shutdown(listen_fd, SHUT_RD);
        if (w)
                conn_proxied_run(a, w, now_usec_monotonic());
}

int conn_accept(const struct conn_admission *a, int listen_fd) {
        return accept_batch(a, NULL, listen_fd);
}

int conn_accept_proxied(const struct conn_admission *a, struct proxy_wait *w, int listen_fd) {
        return accept_batch(a, w, listen_fd);
}

struct conn_slot *conn_resume(struct shared *sh, int fd, uint64_t id, const struct handover_conn *rec) {
        struct conn_origin o = { .via.sa.sa_family = AF_UNSPEC };
        socklen_t len = sizeof(o.peer);
        uint64_t now = now_usec_monotonic();
        enum reject_reason why;
        struct conn_slot *slot;

        if (rec)
                o = (struct conn_origin) { .peer = rec->peer, .via = rec->via, .health_check = rec->health_check };
        else if (getpeername(fd, &o.peer.sa, &len) < 0)
                return NULL;
        slot = rec ? conn_slot_resume(sh, id, &o, rec->start_realtime_usec, rec->start_usec,
                                      rec->bytes_in, rec->bytes_out, &why)
                   : conn_slot_resume(sh, id, &o, now_usec_realtime(), now, 0, 0, &why);
        if (!slot) {
                conn_log_refused(&o, why);
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
