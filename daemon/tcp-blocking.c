/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tcp-blocking.h"

struct blocking_conn {
        struct shared *sh;
        struct conn_slot *slot;
        int fd;
        bool eof;
        uint64_t rcvtimeo;      /* the socket's SO_RCVTIMEO as we last set it; UINT64_MAX: none */
        const struct conn_store *handover;      /* on stop, NULL: close */
        uint64_t stop_at;       /* when this connection saw the stop; 0: not yet */
        enum close_reason reason;       /* once it ends */
        const uint8_t *unsent;  /* stopping: replies the peer has not taken */
        size_t unsent_len;
        struct upcase up;
        uint8_t in[CONN_READ_MAX];
        uint8_t out[UPCASE_OUT_MAX(CONN_READ_MAX)];
};

/* The kick (SIGUSR1, handled in the worker's own thread: it is unblocked
 * there while a connection is served).  The fast path waits in a blocking
 * recv() rather than in ppoll(): one system call less per request.  A kick
 * that lands inside recv() interrupts it; one that lands between the
 * worker's last look at the shared flags and the start of recv() would be
 * lost, so the handler also shortens the socket's receive timeout to the
 * minimum: that recv() returns within a tick and the worker looks again.
 * Waits in ppoll() (writing, draining, lingering) see a kick that came
 * before them through kick_seen (worker_wait()). */
static __thread int kick_fd = -1;
static __thread bool kick_armed;                        /* SIGUSR1 is unblocked here */
static __thread volatile sig_atomic_t kick_seen;
static __thread volatile sig_atomic_t kick_rcvtimeo;    /* the handler changed the receive timeout */

void worker_on_kick(int sig) {
        static const struct timeval tick = { 0, 1 };
        int saved = errno;

        kick_seen = 1;
        if (kick_fd >= 0) {
                (void) setsockopt(kick_fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof(tick));
                kick_rcvtimeo = 1;
        }
        errno = saved;
}

/* From here the thread waits for input in a blocking recv() on fd, and
 * takes kicks as they come. */
static void kick_arm(int fd) {
        int zero = 0;
        sigset_t usr1;

        (void) ioctl(fd, FIONBIO, &zero);
        kick_fd = fd;
        kick_seen = 0;
        kick_rcvtimeo = 0;
        kick_armed = true;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
}

/* A kick that still comes only runs the handler, which leaves fd alone;
 * SIGUSR1 stays unblocked (its handler restarts what it interrupts). */
static void kick_disarm(void) {
        kick_fd = -1;
        kick_armed = false;
}

/* How late the receive timeout may end a wait for input past the idle
 * timeout, rather than be set again at every request. */
#define RCVTIMEO_SLACK_USEC (10 * USEC_PER_MSEC)

/* Time left until since + timeout (UINT64_MAX when the timeout is off). */
static uint64_t time_left(uint64_t since, uint64_t timeout, uint64_t now) {
        if (timeout == 0)
                return UINT64_MAX;
        return since + timeout > now ? since + timeout - now : 0;
}

static bool conn_aborting(const struct blocking_conn *c) {
        return atomic_load(&c->sh->aborting);
}

/* The connection ends for reason: false, to stop what it was doing. */
static bool conn_ends(struct blocking_conn *c, enum close_reason reason) {
        c->reason = reason;
        return false;
}

/* Where a stopping connection is at (conn.h); the stop is seen now the
 * first time. */
static struct drain_view conn_view(struct blocking_conn *c, uint64_t now) {
        if (c->stop_at == 0)
                c->stop_at = now;
        return (struct drain_view) {
                .handover = c->handover != NULL,
                .ended = c->up.quit || c->eof,
                .received = atomic_load_explicit(&c->slot->bytes_in, memory_order_relaxed) > 0,
                .input_waiting = conn_input_waiting(c->fd),
                .replies_pending = c->unsent_len > 0,
                .grace_over = now >= c->stop_at + FIRST_REQUEST_GRACE_USEC,
                .wait_over = now >= c->stop_at + HANDOVER_WAIT_USEC,
        };
}

/* Puts the connection, with what it still owes (c->unsent), in the store.
 * When that fails it is drained as on a plain stop instead; returns
 * whether it was stored. */
static bool conn_store(struct blocking_conn *c) {
        static const struct timeval none = { 0, 0 };
        int one = 1;

        /* The next instance gets the socket as it was accepted: non-blocking,
         * without our receive timeout. */
        kick_fd = -1;
        (void) setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
        (void) ioctl(c->fd, FIONBIO, &one);
        if (c->handover->put(c->handover->h, c->slot, c->fd, &c->up, c->unsent, c->unsent_len) >= 0)
                return true;
        c->handover = NULL;
        return false;
}

/* A stopping connection waits for its peer to read the rest of its
 * replies, buf: whether it goes to the store with them now (stored). */
static bool conn_stored_while_writing(struct blocking_conn *c, const uint8_t *buf, size_t len, uint64_t now) {
        struct drain_view v;

        if (!c->handover || !atomic_load(&c->sh->stopping))
                return false;
        c->unsent = buf;
        c->unsent_len = len;
        v = conn_view(c, now);
        return drain_next(&v) == DRAIN_HAND_OVER && conn_store(c);
}

/* Stopping for a restart: how long until what is owed goes with the
 * connection (UINT64_MAX: not stopping, or no store). */
static uint64_t conn_hand_over_left(const struct blocking_conn *c, uint64_t now) {
        uint64_t at = c->stop_at + HANDOVER_WAIT_USEC;

        if (!c->handover || c->stop_at == 0)
                return UINT64_MAX;
        return at > now ? at - now : 0;
}

/* Writes all of buf, waiting at most the write timeout (re-read at every
 * wake, so a live change applies) for the peer to make room; progress
 * restarts it.  On stop, replies are still delivered, or, for a hand-over,
 * what the peer cannot take yet goes with the connection; on abort, not.
 * Returns false when the connection ends (c->reason). */
static bool conn_write_all(struct blocking_conn *c, const uint8_t *buf, size_t len) {
        uint64_t since = now_usec_monotonic();

        while (len > 0) {
                ssize_t n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                uint64_t now = now_usec_monotonic(), left, hand_over;
                int r;

                if (n > 0) {
                        conn_slot_traffic(c->sh, c->slot, 0, n, now);
                        buf += n;
                        len -= n;
                        since = now;
                        continue;
                }
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return conn_ends(c, CLOSE_ERROR);
                if (conn_aborting(c))
                        return conn_ends(c, CLOSE_SHUTDOWN);
                if (conn_stored_while_writing(c, buf, len, now))
                        return conn_ends(c, CLOSE_HANDOVER);
                left = time_left(since, shared_timeout(c->sh, TIMEOUT_WRITE), now);
                hand_over = conn_hand_over_left(c, now);
                r = worker_wait(c->fd, POLLOUT, left < hand_over ? left : hand_over);
                if (r == 0 && left <= hand_over)
                        return conn_ends(c, CLOSE_WRITE);
                if (r < 0 && r != -EINTR)
                        return conn_ends(c, CLOSE_ERROR);
        }
        c->unsent_len = 0;
        return true;
}

/* Reads once (flags: MSG_DONTWAIT, or 0 to wait within the receive
 * timeout) and answers.  Returns false when the connection ends. */
static bool conn_serve_input(struct blocking_conn *c, int flags) {
        uint64_t invalid = 0;
        ssize_t n = recv(c->fd, c->in, sizeof(c->in), flags);
        size_t out;

        if (n < 0 && flags == 0 && errno == EAGAIN)
                c->rcvtimeo = 0;        /* expired: set it again */
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? true : conn_ends(c, CLOSE_ERROR);
        c->eof = n == 0;
        out = upcase_feed(&c->up, c->in, n, c->eof, c->out, &invalid);
        if (invalid)
                COUNTER_ADD(c->sh, invalid_utf8, invalid);
        conn_slot_traffic(c->sh, c->slot, n, 0, now_usec_monotonic());
        if (!conn_write_all(c, c->out, out))
                return false;
        if (c->up.quit)
                return conn_ends(c, CLOSE_QUIT);
        return c->eof ? conn_ends(c, CLOSE_EOF) : true;
}

/* After "." or a kill: stop sending, then discard input until the peer's EOF, so that
 * closing with unread input does not reset the connection. */
static void conn_linger(struct blocking_conn *c) {
        uint64_t since = now_usec_monotonic();

        shutdown(c->fd, SHUT_WR);
        for (;;) {
                uint64_t left = time_left(since, LINGER_USEC, now_usec_monotonic());
                int r;

                if (left == 0 || conn_aborting(c))
                        return;
                r = worker_wait(c->fd, POLLIN, left);
                if (r == -EINTR)
                        continue;
                if (r <= 0 || recv(c->fd, c->in, sizeof(c->in), MSG_DONTWAIT) <= 0)
                        return;
        }
}

/* Stopping: drains as drain_next() says until the connection ends, closed
 * or handed over. */
static void conn_drain(struct blocking_conn *c) {
        for (;;) {
                uint64_t now = now_usec_monotonic();
                struct drain_view v = conn_view(c, now);
                int r;

                if (conn_aborting(c)) {
                        conn_ends(c, CLOSE_SHUTDOWN);
                        return;
                }
                switch (drain_next(&v)) {
                case DRAIN_WAIT_REQUEST:
                        r = worker_wait(c->fd, POLLIN, c->stop_at + FIRST_REQUEST_GRACE_USEC - now);
                        if (r < 0 && r != -EINTR) {
                                conn_ends(c, CLOSE_ERROR);
                                return;
                        }
                        break;
                case DRAIN_ANSWER:
                        if (!conn_serve_input(c, MSG_DONTWAIT))
                                return;
                        break;
                case DRAIN_FLUSH:
                        if (!conn_write_all(c, c->unsent, c->unsent_len))
                                return;
                        break;
                case DRAIN_HAND_OVER:
                        if (conn_store(c)) {
                                conn_ends(c, CLOSE_HANDOVER);
                                return;
                        }
                        break;
                case DRAIN_CLOSE:
                        conn_ends(c, c->up.quit ? CLOSE_QUIT : c->eof ? CLOSE_EOF : CLOSE_SHUTDOWN);
                        return;
                }
        }
}

/* The receive timeout the next blocking recv() needs: the idle time left
 * (none when the idle timeout is off).  Set only when the one the socket
 * has would end it too late, or a kick or an expiry (c->rcvtimeo == 0)
 * changed it: while requests keep coming, never. */
static int conn_arm_rcvtimeo(struct blocking_conn *c, uint64_t left) {
        bool late = left == UINT64_MAX ? c->rcvtimeo != UINT64_MAX : c->rcvtimeo > left + RCVTIMEO_SLACK_USEC;
        struct timeval tv = { 0, 0 };

        if (!kick_rcvtimeo && c->rcvtimeo != 0 && !late)
                return 0;
        kick_rcvtimeo = 0;
        if (left != UINT64_MAX) {
                /* Zero would mean no timeout. */
                left = left ? left : 1;
                tv.tv_sec = left / USEC_PER_SEC;
                tv.tv_usec = left % USEC_PER_SEC;
        }
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        c->rcvtimeo = left;
        return 0;
}

/* Serves until the connection ends; the stop drains it. */
static void conn_loop(struct blocking_conn *c) {
        for (;;) {
                uint64_t now = now_usec_monotonic();
                uint64_t last = atomic_load_explicit(&c->slot->last_active_usec, memory_order_relaxed);
                uint64_t left = time_left(last, shared_timeout(c->sh, TIMEOUT_IDLE), now);

                if (conn_aborting(c)) {
                        conn_ends(c, CLOSE_SHUTDOWN);
                        return;
                }
                /* Every reply to what was read is written by now. */
                if (conn_slot_killed(c->slot)) {
                        conn_ends(c, CLOSE_KILLED);
                        return;
                }
                if (atomic_load(&c->sh->stopping)) {
                        conn_drain(c);
                        return;
                }
                if (left == 0) {
                        conn_ends(c, CLOSE_IDLE);
                        return;
                }
                if (conn_arm_rcvtimeo(c, left) < 0) {
                        conn_ends(c, CLOSE_ERROR);
                        return;
                }
                /* A timeout (EAGAIN) is looked at again above: the receive
                 * timeout is reset then, as the idle time left may differ. */
                if (!conn_serve_input(c, 0))
                        return;
        }
}

/* A resumed connection first sends the replies its peer had not read.
 * Returns false when it ended meanwhile. */
static bool conn_resume_replies(struct blocking_conn *c, const struct resumed_conn *resume) {
        if (!resume)
                return true;
        c->up = resume->up;
        if (resume->pending_len == 0 || resume->pending_len > sizeof(c->out))
                return true;
        /* Our own copy: if the stop comes first, it is handed over again. */
        memcpy(c->out, resume->pending, resume->pending_len);
        if (!conn_write_all(c, c->out, resume->pending_len))
                return false;
        return c->up.quit ? conn_ends(c, CLOSE_QUIT) : true;
}

/* Serves the connection in c, whose buffers the caller provides. */
static enum close_reason conn_serve(struct blocking_conn *c, struct shared *sh, struct conn_slot *slot, int fd,
                                    const struct resumed_conn *resume, const struct conn_store *store) {
        int one = 1;

        /* Field by field: a compound literal would zero the buffers. */
        c->sh = sh;
        c->slot = slot;
        c->fd = fd;
        c->eof = false;
        c->rcvtimeo = 0;
        c->handover = store;
        c->stop_at = 0;
        c->reason = CLOSE_ERROR;
        c->unsent = NULL;
        c->unsent_len = 0;
        upcase_init(&c->up, true);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        kick_arm(fd);
        if (conn_resume_replies(c, resume))
                conn_loop(c);
        if (c->reason == CLOSE_QUIT || c->reason == CLOSE_KILLED)
                conn_linger(c);
        /* Before the caller closes fd, whose number may be reused. */
        kick_disarm();
        atomic_store(&slot->close_reason, c->reason);
        return c->reason;
}

enum close_reason tcp_serve_blocking(struct shared *sh, struct conn_slot *slot, int fd,
                                     const struct resumed_conn *resume, const struct conn_store *store) {
        struct blocking_conn *c = malloc(sizeof(*c));
        enum close_reason reason;

        if (!c) {
                atomic_store(&slot->close_reason, CLOSE_ERROR);
                return CLOSE_ERROR;
        }
        reason = conn_serve(c, sh, slot, fd, resume, store);
        free(c);
        return reason;
}

/* A forked worker's connection.  Static, in the zero pages that follow the
 * program's data, whose page table the child uses anyway: from the heap,
 * the child would fill one more page table, and take more faults, than it
 * otherwise needs, each connection again.  On a VM that shadows page tables
 * those are most of what a fork and an exit cost.  Untouched, and so free,
 * in every process that does not serve a connection this way. */
static struct blocking_conn forked_conn;

enum close_reason tcp_serve_blocking_forked(struct shared *sh, struct conn_slot *slot, int fd,
                                            const struct resumed_conn *resume) {
        return conn_serve(&forked_conn, sh, slot, fd, resume, NULL);
}

void tcp_kick(struct conn_slot *slot, bool threads) {
        int pid = atomic_load(&slot->pid);

        /* Not started yet: it sees the request before it first waits. */
        if (atomic_load(&slot->id) == 0 || pid <= 0)
                return;
        if (threads)
                (void) syscall(SYS_tgkill, getpid(), pid, SIGUSR1);
        else
                (void) kill(pid, SIGUSR1);
}

void tcp_kick_all(struct shared *sh, bool threads) {
        for (uint32_t i = 0; i < sh->high_water; i++)
                tcp_kick(&sh->slots[i], threads);
}

int worker_wait(int fd, short events, uint64_t timeout_usec) {
        /* The thread's mask without SIGUSR1, computed once per thread: the
         * mask never changes after the worker starts. */
        static __thread sigset_t wait_mask;
        static __thread bool wait_mask_set;
        struct pollfd p = { .fd = fd, .events = events };
        struct timespec ts, *tsp = NULL;
        sigset_t usr1;
        int r;

        if (timeout_usec != UINT64_MAX) {
                ts.tv_sec = timeout_usec / USEC_PER_SEC;
                ts.tv_nsec = (timeout_usec % USEC_PER_SEC) * 1000;
                tsp = &ts;
        }
        if (!wait_mask_set) {
                pthread_sigmask(SIG_SETMASK, NULL, &wait_mask);
                sigdelset(&wait_mask, SIGUSR1);
                wait_mask_set = true;
        }
        if (!kick_armed) {
                r = ppoll(&p, 1, tsp, &wait_mask);
                return r < 0 ? -errno : r == 0 ? 0 : p.revents;
        }
        /* SIGUSR1 is unblocked: block it while looking for a kick that came
         * since the caller's last look at the flags, so that one coming
         * now stays pending until ppoll() unblocks it. */
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        if (kick_seen) {
                r = -1;
                errno = EINTR;
        } else
                r = ppoll(&p, 1, tsp, &wait_mask);
        if (r < 0)
                r = -errno;
        else if (r > 0)
                r = p.revents;
        kick_seen = 0;
        pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
        return r;
}
