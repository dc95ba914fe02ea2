/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "shared.h"
#include "udp.h"
#include "upcase.h"

#define UDP_BATCH 32
/* Largest datagram we read; anything longer is cut by the kernel (MSG_TRUNC). */
#define UDP_RECV_MAX 65536
/* Replies are transformed straight into this arena; when the next one might
 * not fit, the batch so far is sent first. */
#define UDP_ARENA (2 * UPCASE_OUT_MAX(UDP_RECV_MAX))

struct udp_batch {
        struct shared *shared;
        struct mmsghdr in_msgs[UDP_BATCH];
        struct iovec in_iov[UDP_BATCH];
        union sockaddr_union peers[UDP_BATCH];
        struct mmsghdr out_msgs[UDP_BATCH];
        struct iovec out_iov[UDP_BATCH];
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

/* Sends out_msgs[0..n); a failed datagram is counted and skipped. */
static void udp_send_batch(struct udp_batch *b, int fd, unsigned n) {
        unsigned done = 0;

        while (done < n) {
                int r = sendmmsg(fd, b->out_msgs + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        COUNTER_ADD(b->shared, udp_send_errors, 1);
                        done++;
                        continue;
                }
                for (int i = 0; i < r; i++)
                        COUNTER_ADD(b->shared, udp_bytes_out, b->out_msgs[done + i].msg_hdr.msg_iov->iov_len);
                done += r;
        }
}

static void udp_log(const union sockaddr_union *peer, size_t in, size_t out) {
        struct client_event ev = {
                .kind = CLIENT_UDP,
                .peer = *peer,
                .bytes_in = in,
                .bytes_out = out,
        };

        log_client(&ev);
}

int udp_serve(struct udp_batch *b, int fd) {
        struct shared *sh = b->shared;
        unsigned nout = 0;
        size_t off = 0;
        uint64_t invalid = 0;
        int n;

        for (int i = 0; i < UDP_BATCH; i++)
                b->in_msgs[i].msg_hdr.msg_namelen = sizeof(b->peers[i]);
        n = recvmmsg(fd, b->in_msgs, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;

        for (int i = 0; i < n; i++) {
                size_t len = b->in_msgs[i].msg_len, outlen;
                uint8_t *out;

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
                b->out_msgs[nout].msg_hdr = (struct msghdr) {
                        .msg_name = &b->peers[i],
                        .msg_namelen = b->in_msgs[i].msg_hdr.msg_namelen,
                        .msg_iov = &b->out_iov[nout],
                        .msg_iovlen = 1,
                };
                nout++;
                off += outlen;
                COUNTER_ADD(sh, udp_bytes_in, len);
                udp_log(&b->peers[i], len, outlen);
        }
        udp_send_batch(b, fd, nout);
        COUNTER_ADD(sh, udp_datagrams, n);
        if (invalid)
                COUNTER_ADD(sh, invalid_utf8, invalid);
        return n;
}
