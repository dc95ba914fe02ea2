/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "server.h"
#include "tcp-blocking.h"
#include "upcase.h"
#include "worker.h"


struct blocking_conn {
        struct shared *sh;
        struct conn_slot *slot;
        int fd;
        bool eof;
        bool full;              /* the last read filled the buffer: more is likely waiting */
        struct handover *handover;      /* on stop, NULL: close */
        uint64_t handover_at;   /* stopping: what is still owed then travels; 0: not yet */
        const uint8_t *unsent;  /* stopping for a hand-over: replies the peer has not taken */
        size_t unsent_len;
        struct upcase up;
        uint8_t in[CONN_READ_MAX];
        uint8_t out[UPCASE_OUT_MAX(CONN_READ_MAX)];
};

/* Time left until since + timeout (UINT64_MAX when the timeout is off). */
static uint64_t time_left(uint64_t since, uint64_t timeout, uint64_t now) {
        if (timeout == 0)
                return UINT64_MAX;
        return since + timeout > now ? since + timeout - now : 0;
}

/* Stopping for a restart: whether the wait for what is owed is over (the
 * first call starts it). */
static bool conn_handover_due(struct blocking_conn *c, uint64_t now) {
        if (!c->handover || !atomic_load(&c->sh->stopping))
                return false;
        if (c->handover_at == 0)
                c->handover_at = now + HANDOVER_WAIT_USEC;
        return now >= c->handover_at;
}

/* Writes all of buf, waiting at most the write timeout (re-read at every
 * wake, so a live change applies) for the peer to make room.  Progress
 * restarts the timeout.  On stop, replies are still delivered (or, for a
 * hand-over, what the peer cannot take yet is kept in c->unsent and
 * CLOSE_HANDOVER returned); on abort, not. */
static int conn_write_all(struct blocking_conn *c, const uint8_t *buf, size_t len) {
        uint64_t since = now_usec_monotonic();

        while (len > 0) {
                ssize_t n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                uint64_t now = now_usec_monotonic(), left;
                bool handover_first;
                int r;

                if (n > 0) {
                        conn_slot_traffic(c->sh, c->slot, 0, n, now);
                        buf += n;
                        len -= n;
                        since = now;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return CLOSE_ERROR;
                if (atomic_load(&c->sh->aborting))
                        return CLOSE_SHUTDOWN;
                if (conn_handover_due(c, now)) {
                        c->unsent = buf;
                        c->unsent_len = len;
                        return CLOSE_HANDOVER;
                }
                left = time_left(since, shared_timeout(c->sh, TIMEOUT_WRITE), now);
                handover_first = c->handover_at && c->handover_at - now < left;
                r = worker_wait(c->fd, POLLOUT, handover_first ? c->handover_at - now : left);
                if (r == 0 && !handover_first)
                        return CLOSE_WRITE;
                if (r < 0 && r != -EINTR)
                        return CLOSE_ERROR;
        }
        return -1;
}

/* Reads once and answers.  Returns -1 to go on, else the close reason. */
static int conn_serve_input(struct blocking_conn *c) {
        uint64_t invalid = 0;
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), MSG_DONTWAIT);
        size_t out;
        int r;

        c->full = n == (ssize_t) sizeof(c->in);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? -1 : CLOSE_ERROR;
        c->eof = n == 0;
        out = upcase_feed(&c->up, c->in, n, c->eof, c->out, &invalid);
        if (invalid)
                COUNTER_ADD(c->sh, invalid_utf8, invalid);
        conn_slot_traffic(c->sh, c->slot, n, 0, now_usec_monotonic());
        r = conn_write_all(c, c->out, out);
        if (r >= 0)
                return r;
        if (c->up.quit)
                return CLOSE_QUIT;
        return c->eof ? CLOSE_EOF : -1;
}

/* After ".": stop sending, then discard input until the peer's EOF, so that
 * closing with unread input does not reset the connection. */
static void conn_linger(struct blocking_conn *c) {
        uint64_t since = now_usec_monotonic();

        shutdown(c->fd, SHUT_WR);
        for (;;) {
                uint64_t left = time_left(since, LINGER_USEC, now_usec_monotonic());
                int r;

                if (left == 0 || atomic_load(&c->sh->aborting))
                        return;
                r = worker_wait(c->fd, POLLIN, left);
                if (r == -EINTR)
                        continue;
                if (r <= 0 || recv(c->fd, c->in, sizeof(c->in), MSG_DONTWAIT) <= 0)
                        return;
        }
}

/* Answers all the input waiting, however many reads it takes: closing with
 * input unread would reset the connection and destroy the replies in
 * flight.  (For a restart, until HANDOVER_WAIT_USEC: the rest goes with the
 * socket.)  Returns -1 when it is answered, else the close reason. */
static int conn_answer_waiting(struct blocking_conn *c) {
        int r;

        do
                r = conn_serve_input(c);
        while (r < 0 && conn_input_waiting(c->fd) && !atomic_load(&c->sh->aborting) &&
               !conn_handover_due(c, now_usec_monotonic()));
        return r;
}

/* Stopping: answer what the peer already sent (or, if it has sent nothing
 * yet, what arrives within the grace), then close, or hand over for a
 * restart. */
static enum close_reason conn_drain(struct blocking_conn *c) {
        uint64_t until = now_usec_monotonic() + FIRST_REQUEST_GRACE_USEC;
        enum close_reason done = c->handover ? CLOSE_HANDOVER : CLOSE_SHUTDOWN;
        int r;

        while (atomic_load_explicit(&c->slot->bytes_in, memory_order_relaxed) == 0) {
                uint64_t now = now_usec_monotonic();

                if (atomic_load(&c->sh->aborting))
                        return CLOSE_SHUTDOWN;
                if (now >= until)
                        return done;
                r = worker_wait(c->fd, POLLIN, until - now);
                if (r > 0)
                        break;
                if (r != -EINTR)
                        return done;
        }
        r = conn_answer_waiting(c);
        return r >= 0 ? (enum close_reason) r : done;
}

/* Puts the connection and its state in the file descriptor store.  When
 * that fails, it is closed as on a stop, after the replies owed. */
static enum close_reason conn_hand_over(struct blocking_conn *c) {
        struct handover_conn rec = { .up = c->up, .pending = c->unsent, .pending_len = c->unsent_len };
        int r;

        handover_conn_from_slot(&rec, c->slot);
        if (handover_store_conn(c->handover, c->fd, &rec) >= 0)
                return CLOSE_HANDOVER;
        c->handover = NULL;
        r = c->unsent_len ? conn_write_all(c, c->unsent, c->unsent_len) : -1;
        if (r < 0 && conn_input_waiting(c->fd))
                r = conn_answer_waiting(c);
        return r >= 0 ? (enum close_reason) r : CLOSE_SHUTDOWN;
}

static enum close_reason conn_loop(struct blocking_conn *c) {
        for (;;) {
                uint64_t now = now_usec_monotonic();
                uint64_t last = atomic_load_explicit(&c->slot->last_active_usec, memory_order_relaxed);
                uint64_t left = time_left(last, shared_timeout(c->sh, TIMEOUT_IDLE), now);
                int r;

                if (atomic_load(&c->sh->aborting))
                        return CLOSE_SHUTDOWN;
                if (atomic_load(&c->sh->stopping))
                        return conn_drain(c);
                if (left == 0)
                        return CLOSE_IDLE;
                /* After a short read the peer is usually waiting for our
                 * reply: wait first.  After a full one, read on. */
                if (!c->full) {
                        r = worker_wait(c->fd, POLLIN, left);
                        if (r == 0 || r == -EINTR)
                                continue;
                        if (r < 0)
                                return CLOSE_ERROR;
                }
                r = conn_serve_input(c);
                if (r >= 0)
                        return r;
        }
}

/* A resumed connection first sends the replies its peer had not read. */
static enum close_reason conn_start(struct blocking_conn *c, const struct resumed_conn *resume) {
        int r;

        if (!resume)
                return -1;
        c->up = resume->up;
        if (resume->pending_len == 0 || resume->pending_len > sizeof(c->out))
                return -1;
        /* Our own copy: if the stop comes first, it is handed over again. */
        memcpy(c->out, resume->pending, resume->pending_len);
        r = conn_write_all(c, c->out, resume->pending_len);
        if (r < 0 && c->up.quit)
                return CLOSE_QUIT;
        return r;
}

enum close_reason tcp_serve_blocking(struct shared *sh, struct conn_slot *slot, int fd,
                                     const struct resumed_conn *resume, struct handover *handover) {
        struct blocking_conn *c = malloc(sizeof(*c));
        enum close_reason reason = CLOSE_ERROR;
        int one = 1, r;

        if (c) {
                /* Field by field: a compound literal would zero the buffers. */
                c->sh = sh;
                c->slot = slot;
                c->fd = fd;
                c->eof = false;
                c->full = false;
                c->handover = handover;
                c->handover_at = 0;
                c->unsent = NULL;
                c->unsent_len = 0;
                upcase_init(&c->up, true);
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                r = conn_start(c, resume);
                reason = r >= 0 ? (enum close_reason) r : conn_loop(c);
                if (reason == CLOSE_HANDOVER)
                        reason = conn_hand_over(c);
                if (reason == CLOSE_QUIT)
                        conn_linger(c);
                free(c);
        }
        atomic_store(&slot->close_reason, reason);
        return reason;
}

static void tcp_admit(const struct tcp_acceptor *a, int fd, const union sockaddr_union *peer) {
        enum reject_reason why = REJECT_CONNECTIONS;
        struct conn_slot *slot = NULL;

        if (a->workers(a->userdata) < a->max_workers)
                slot = conn_slot_take(a->shared, peer, &why);
        else
                COUNTER_ADD(a->shared, tcp_rejected, 1);
        if (!slot) {
                close(fd);
                log_rejected(peer, why);
                return;
        }
        log_conn(slot, CLIENT_TCP_OPEN, CLOSE_ERROR);
        a->start(a->userdata, fd, slot);
}

int tcp_accept_all(const struct tcp_acceptor *a, int listen_fd) {
        for (int i = 0; i < ACCEPT_BUDGET; i++) {
                union sockaddr_union peer;
                socklen_t len = sizeof(peer);
                int fd;

                if (shared_conn_fds_full(a->shared))
                        return -ENOSPC;
                fd = accept4(listen_fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) {
                        tcp_admit(a, fd, &peer);
                        continue;
                }
                if (accept_error_pauses(errno))
                        return -errno;
                break;
        }
        return 0;
}

void tcp_kick_all(struct shared *sh, bool threads) {
        pid_t self = getpid();

        for (uint32_t i = 0; i < sh->high_water; i++) {
                struct conn_slot *slot = &sh->slots[i];
                int pid = atomic_load(&slot->pid);

                if (atomic_load(&slot->id) == 0 || pid <= 0)
                        continue;
                if (threads)
                        (void) syscall(SYS_tgkill, self, pid, SIGUSR1);
                else
                        (void) kill(pid, SIGUSR1);
        }
}
