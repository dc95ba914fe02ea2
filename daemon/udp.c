/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "duration.h"
#include "log.h"
#include "shared.h"
#include "source.h"
#include "udp.h"
#include "upcase.h"

_Static_assert(CONFIG_MAX_LISTEN <= SHARED_UDP_PORTS_MAX, "room for every UDP socket's port");

#define UDP_BATCH 32
_Static_assert(UDP_BATCH <= 256, "out_peer holds a batch index");
/* Largest datagram we read; anything longer is cut by the kernel (MSG_TRUNC). */
#define UDP_RECV_MAX 65536
/* Replies are transformed straight into this arena; when the next one might
 * not fit, the batch so far is sent first. */
#define UDP_ARENA (2 * UPCASE_OUT_MAX(UDP_RECV_MAX))

/* Replies of the same size to the same peer leave as one UDP GSO send
 * (UDP_SEGMENT): the kernel routes and builds them once and cuts them into
 * the same datagrams.  A segment is at most UDP_GSO_SEGMENT_MAX bytes: it
 * fits any path of IPv6's minimum MTU (1,280), so a route refuses a GSO send
 * for its size hardly ever (udp_send_each() then takes over).  A run is at
 * most the oldest kernels' segment count and an IP packet's payload. */
#define UDP_GSO_SEGMENT_MAX 1200
#define UDP_GSO_SEGMENTS_MAX 64
#define UDP_GSO_BYTES_MAX 65000
_Static_assert(UDP_BATCH <= UDP_GSO_SEGMENTS_MAX, "a batch's run fits one GSO send");

enum udp_gso { UDP_GSO_UNKNOWN, UDP_GSO_ON, UDP_GSO_OFF };

struct udp_batch {
        struct shared *shared;
        struct mmsghdr in_msgs[UDP_BATCH];
        struct iovec in_iov[UDP_BATCH];
        union sockaddr_union peers[UDP_BATCH];
        enum udp_drop drop[UDP_BATCH];
        struct mmsghdr out_msgs[UDP_BATCH];
        struct iovec out_iov[UDP_BATCH];        /* one per reply */
        uint8_t out_peer[UDP_BATCH];            /* reply -> index into peers */
        /* One UDP_SEGMENT control message per GSO send. */
        union {
                char buf[CMSG_SPACE(sizeof(uint16_t))];
                struct cmsghdr align;
        } out_ctl[UDP_BATCH];
        enum udp_gso gso;
        uint8_t *in;            /* UDP_BATCH * UDP_RECV_MAX */
        uint8_t *arena;         /* UDP_ARENA */
};

int udp_batch_new(struct shared *sh, struct udp_batch **ret) {
        struct udp_batch *b = calloc(1, sizeof(*b));

        if (!b)
                return -ENOMEM;
        /* Large but only touched as datagrams arrive: small datagrams use a
         * page or two of each buffer. */
        b->in = malloc((size_t) UDP_BATCH * UDP_RECV_MAX);
        b->arena = malloc(UDP_ARENA);
        if (!b->in || !b->arena) {
                udp_batch_free(b);
                return -ENOMEM;
        }
        b->shared = sh;
        for (int i = 0; i < UDP_BATCH; i++) {
                b->in_iov[i] = (struct iovec) { b->in + (size_t) i * UDP_RECV_MAX, UDP_RECV_MAX };
                b->in_msgs[i].msg_hdr = (struct msghdr) {
                        .msg_name = &b->peers[i],
                        .msg_iov = &b->in_iov[i],
                        .msg_iovlen = 1,
                };
        }
        *ret = b;
        return 0;
}

void udp_batch_free(struct udp_batch *b) {
        if (!b)
                return;
        free(b->in);
        free(b->arena);
        free(b);
}

/* Whether this kernel takes UDP_SEGMENT (Linux 4.18): an older one would
 * ignore the control message and send a run as one datagram. */
static enum udp_gso udp_gso_probe(int fd) {
        int size = 0;

        return setsockopt(fd, SOL_UDP, UDP_SEGMENT, &size, sizeof(size)) == 0 ? UDP_GSO_ON : UDP_GSO_OFF;
}

static bool udp_same_peer(const struct udp_batch *b, unsigned i, unsigned j) {
        const struct msghdr *a = &b->in_msgs[b->out_peer[i]].msg_hdr, *c = &b->in_msgs[b->out_peer[j]].msg_hdr;

        return a->msg_namelen == c->msg_namelen && memcmp(a->msg_name, c->msg_name, a->msg_namelen) == 0;
}

/* How many replies from out_iov[first] on can leave as one GSO send: same
 * peer, not empty (an empty segment would vanish), all of the first's size
 * but the last, which may be shorter. */
static unsigned udp_run_length(const struct udp_batch *b, unsigned first, unsigned n) {
        size_t seg = b->out_iov[first].iov_len, total = seg;
        unsigned k = first + 1;

        if (b->gso != UDP_GSO_ON || seg == 0 || seg > UDP_GSO_SEGMENT_MAX)
                return 1;
        while (k < n && b->out_iov[k - 1].iov_len == seg) {
                size_t len = b->out_iov[k].iov_len;

                if (len == 0 || len > seg || total + len > UDP_GSO_BYTES_MAX || !udp_same_peer(b, first, k))
                        break;
                total += len;
                k++;
        }
        return k - first;
}

/* Message m: the replies out_iov[first, first + count) to their peer, with
 * their segment size when there are several. */
static void udp_message_set(struct udp_batch *b, unsigned m, unsigned first, unsigned count) {
        const struct msghdr *in = &b->in_msgs[b->out_peer[first]].msg_hdr;
        struct msghdr *h = &b->out_msgs[m].msg_hdr;

        *h = (struct msghdr) {
                .msg_name = in->msg_name,
                .msg_namelen = in->msg_namelen,
                .msg_iov = &b->out_iov[first],
                .msg_iovlen = count,
        };
        if (count > 1) {
                struct cmsghdr *cm = &b->out_ctl[m].align;

                h->msg_control = b->out_ctl[m].buf;
                h->msg_controllen = sizeof(b->out_ctl[m].buf);
                cm->cmsg_level = SOL_UDP;
                cm->cmsg_type = UDP_SEGMENT;
                cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                *(uint16_t *) CMSG_DATA(cm) = (uint16_t) b->out_iov[first].iov_len;
        }
}

/* A GSO send was refused (a route whose MTU is below a segment, or a device
 * that cannot checksum it): its replies go one by one.  EIO means the
 * device, so GSO stays off for this reader. */
static uint64_t udp_send_each(struct udp_batch *b, int fd, struct msghdr *h, int err) {
        uint64_t bytes = 0;

        if (err == EIO)
                b->gso = UDP_GSO_OFF;
        for (size_t i = 0; i < h->msg_iovlen; i++) {
                struct msghdr one = {
                        .msg_name = h->msg_name,
                        .msg_namelen = h->msg_namelen,
                        .msg_iov = &h->msg_iov[i],
                        .msg_iovlen = 1,
                };
                ssize_t r;

                do
                        r = sendmsg(fd, &one, MSG_DONTWAIT | MSG_NOSIGNAL);
                while (r < 0 && errno == EINTR);
                if (r < 0)
                        COUNTER_ADD(b->shared, udp_send_errors, 1);
                else
                        bytes += (uint64_t) r;
        }
        return bytes;
}

/* Sends the replies out_iov[0..n), a run to the same peer as one message; a
 * failed datagram is counted and skipped. */
static void udp_send_batch(struct udp_batch *b, int fd, unsigned n) {
        unsigned nmsg = 0, done = 0;
        uint64_t bytes = 0;

        for (unsigned first = 0, count; first < n; first += count) {
                count = udp_run_length(b, first, n);
                udp_message_set(b, nmsg++, first, count);
        }
        while (done < nmsg) {
                int r = sendmmsg(fd, b->out_msgs + done, nmsg - done, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        struct msghdr *h = &b->out_msgs[done].msg_hdr;

                        if (h->msg_iovlen > 1)
                                bytes += udp_send_each(b, fd, h, errno);
                        else
                                COUNTER_ADD(b->shared, udp_send_errors, 1);
                        done++;
                        continue;
                }
                for (int i = 0; i < r; i++)
                        bytes += b->out_msgs[done + i].msg_len;
                done += r;
        }
        if (bytes)
                COUNTER_ADD(b->shared, udp_bytes_out, bytes);
}

/* After log_client_admit(). */
static void udp_log(const union sockaddr_union *peer, size_t in, size_t out) {
        struct client_event ev = {
                .kind = CLIENT_UDP,
                .peer = *peer,
                .bytes_in = in,
                .bytes_out = out,
        };

        log_client_admitted(&ev);
}

/* Counted, and logged through the client log rate limit like every
 * datagram (logged: it was admitted): a flood costs the journal no more
 * than the limit. */
static void udp_drop(struct shared *sh, const union sockaddr_union *peer, size_t in, enum udp_drop why,
                     bool logged) {
        struct client_event ev = {
                .kind = CLIENT_UDP_DROPPED,
                .peer = *peer,
                .bytes_in = in,
                .drop = why,
        };

        if (why == UDP_DROP_RATE)
                COUNTER_ADD(sh, udp_rate_limited, 1);
        else
                COUNTER_ADD(sh, udp_loop_dropped, 1);
        if (logged)
                log_client_admitted(&ev);
}

int udp_set_own_ports(struct shared *sh, const int *fds, size_t n) {
        struct source_limits *l = sh->limits;

        if (n > SHARED_UDP_PORTS_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n; i++) {
                union sockaddr_union sa;
                socklen_t len = sizeof(sa);

                if (getsockname(fds[i], &sa.sa, &len) < 0)
                        return -errno;
                l->udp_own_ports[i] = addr_port(&sa);
        }
        l->n_udp_own_ports = n;
        return 0;
}

/* The rate limit for peers[i] where drop[i] is still UDP_DROP_NONE and the
 * source is not exempt, under the rate table's lock, taken once for the
 * whole batch. */
static void udp_rate_limit(struct udp_batch *b, int n, unsigned rate, unsigned burst) {
        struct source_limits *l = b->shared->limits;
        uint64_t now_ns = now_usec_monotonic() * 1000;

        pthread_mutex_lock(&l->udp_lock);
        rate_table_configure(l->udp, rate, burst);
        for (int i = 0; i < n; i++) {
                struct source_key k = source_key_of(&b->peers[i]);

                if (b->drop[i] != UDP_DROP_NONE ||
                    addr_prefix_list_contains(l->exempt, l->n_exempt, &b->peers[i]))
                        continue;
                if (!rate_table_take(l->udp, &k, now_ns))
                        b->drop[i] = UDP_DROP_RATE;
        }
        pthread_mutex_unlock(&l->udp_lock);
}

/* Decides, for each datagram of the batch, whether it is answered. */
static void udp_filter(struct udp_batch *b, int n) {
        struct shared *sh = b->shared;
        const struct source_limits *l = sh->limits;
        bool guard = atomic_load_explicit(&sh->live.udp_loop_guard, memory_order_relaxed);
        unsigned rate = atomic_load_explicit(&sh->live.udp_rate, memory_order_relaxed);
        unsigned burst = atomic_load_explicit(&sh->live.udp_burst, memory_order_relaxed);

        for (int i = 0; i < n; i++)
                b->drop[i] = guard ? udp_guard_check(addr_port(&b->peers[i]), l->udp_own_ports,
                                                     l->n_udp_own_ports) : UDP_DROP_NONE;
        if (rate > 0)
                udp_rate_limit(b, n, rate, burst);
}

int udp_serve(struct udp_batch *b, int fd) {
        struct shared *sh = b->shared;
        unsigned nout = 0, logged;
        size_t off = 0;
        uint64_t invalid = 0, bytes_in = 0;
        int n;

        for (int i = 0; i < UDP_BATCH; i++)
                b->in_msgs[i].msg_hdr.msg_namelen = sizeof(b->peers[i]);
        n = recvmmsg(fd, b->in_msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (b->gso == UDP_GSO_UNKNOWN)
                b->gso = udp_gso_probe(fd);

        udp_filter(b, n);
        /* One entry per datagram, answered or not: the first ones of the
         * batch get the tokens there are. */
        logged = log_client_admit((unsigned) n);
        for (int i = 0; i < n; i++) {
                size_t len = b->in_msgs[i].msg_len, outlen;
                uint8_t *out;

                bytes_in += len;
                if (b->drop[i] != UDP_DROP_NONE) {
                        udp_drop(sh, &b->peers[i], len, b->drop[i], (unsigned) i < logged);
                        continue;
                }
                if (off + UPCASE_OUT_MAX(len) > UDP_ARENA) {
                        udp_send_batch(b, fd, nout);
                        nout = 0;
                        off = 0;
                }
                out = b->arena + off;
                outlen = upcase_buf(b->in_iov[i].iov_base, len, out, &invalid);
                if (outlen > UPCASE_UDP_MAX) {
                        outlen = upcase_cut(out, outlen, UPCASE_UDP_MAX);
                        COUNTER_ADD(sh, udp_truncated, 1);
                }
                b->out_iov[nout] = (struct iovec) { out, outlen };
                b->out_peer[nout] = (uint8_t) i;
                nout++;
                off += outlen;
                if ((unsigned) i < logged)
                        udp_log(&b->peers[i], len, outlen);
        }
        udp_send_batch(b, fd, nout);
        COUNTER_ADD(sh, udp_bytes_in, bytes_in);
        COUNTER_ADD(sh, udp_datagrams, n);
        if (invalid)
                COUNTER_ADD(sh, invalid_utf8, invalid);
        return n;
}
