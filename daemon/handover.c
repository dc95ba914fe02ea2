/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "duration.h"
#include "handover.h"
#include "notify.h"
#include "shared.h"

/* Format: the header, then records of fixed-width little-endian fields and
 * the pending bytes.  The version changes with any change of layout; a
 * successor that does not know it resumes the connections without their
 * state rather than misreading it. */
static const char handover_magic[8] = { 'U', 'P', 'C', 'H', 'O', 'V', '0', '0' + HANDOVER_VERSION };
#define MAGIC_VERSION_AT 7
#define STATE_MAX (256 * 1024 * 1024)
#define BARRIER_USEC (5 * USEC_PER_SEC)

enum { FLAG_DOT_QUIT = 1 << 0, FLAG_QUIT = 1 << 1, FLAG_HEALTH_CHECK = 1 << 2 };
#define FLAGS_V1 (FLAG_DOT_QUIT | FLAG_QUIT)
#define FLAGS_V2 (FLAGS_V1 | FLAG_HEALTH_CHECK)

static void put(struct textbuf *b, uint64_t v, unsigned bytes) {
        char le[8];

        for (unsigned i = 0; i < bytes; i++)
                le[i] = (char) (v >> (8 * i));
        textbuf_append(b, le, bytes);
}

void handover_encode_header(struct textbuf *b) {
        textbuf_append(b, handover_magic, sizeof(handover_magic));
}

static size_t peer_len(const union sockaddr_union *sa) {
        return sa->sa.sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

/* An address: its length (0: none, AF_UNSPEC), then its bytes. */
static void put_addr(struct textbuf *b, const union sockaddr_union *sa) {
        size_t len = sa->sa.sa_family == AF_UNSPEC ? 0 : peer_len(sa);

        put(b, len, 1);
        textbuf_append(b, (const char *) sa, len);
}

void handover_encode(struct textbuf *b, const struct handover_conn *c) {
        put(b, c->id, 8);
        put_addr(b, &c->peer);
        put_addr(b, &c->via);
        put(b, c->start_realtime_usec, 8);
        put(b, c->start_usec, 8);
        put(b, c->bytes_in, 8);
        put(b, c->bytes_out, 8);
        put(b, c->up.ntail, 1);
        textbuf_append(b, (const char *) c->up.tail, sizeof(c->up.tail));
        put(b, c->up.line, 1);
        put(b, (c->up.dot_quit ? FLAG_DOT_QUIT : 0) | (c->up.quit ? FLAG_QUIT : 0) |
                       (c->health_check ? FLAG_HEALTH_CHECK : 0), 1);
        put(b, c->pending_len, 4);
        if (c->pending_len > 0)
                textbuf_append(b, (const char *) c->pending, c->pending_len);
}

int handover_decode_header(const uint8_t *buf, size_t len, size_t *off) {
        int version;

        if (len < sizeof(handover_magic) || memcmp(buf, handover_magic, MAGIC_VERSION_AT) != 0)
                return -EBADMSG;
        version = buf[MAGIC_VERSION_AT] - '0';
        if (version < 1 || version > HANDOVER_VERSION)
                return -EBADMSG;
        *off = sizeof(handover_magic);
        return version;
}

/* A cursor over the record being decoded; any read past the end marks it
 * truncated and reads zeros. */
struct reader {
        const uint8_t *buf;
        size_t len, off;
        bool truncated;
};

static const uint8_t *take(struct reader *r, size_t n) {
        const uint8_t *p = r->buf + r->off;

        if (r->truncated || n > r->len - r->off) {
                r->truncated = true;
                return NULL;
        }
        r->off += n;
        return p;
}

static uint64_t get(struct reader *r, unsigned bytes) {
        const uint8_t *p = take(r, bytes);
        uint64_t v = 0;

        for (unsigned i = 0; p && i < bytes; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

static bool peer_valid(const union sockaddr_union *sa, size_t len) {
        return (sa->sa.sa_family == AF_INET && len == sizeof(struct sockaddr_in)) ||
               (sa->sa.sa_family == AF_INET6 && len == sizeof(struct sockaddr_in6));
}

/* put_addr()'s address into *sa; false when it is not one (none is one
 * only where optional). */
static bool get_addr(struct reader *r, union sockaddr_union *sa, bool optional) {
        size_t len = get(r, 1);
        const uint8_t *p = take(r, len);

        if (len == 0) {
                sa->sa.sa_family = AF_UNSPEC;
                return optional && !r->truncated;
        }
        if (!p || len > sizeof(*sa))
                return false;
        memcpy(sa, p, len);
        return peer_valid(sa, len);
}

int handover_decode(const uint8_t *buf, size_t len, int version, size_t *off, struct handover_conn *c) {
        struct reader r = { buf, len, *off, false };
        const uint8_t *p;
        unsigned flags;

        if (*off >= len)
                return 0;
        memset(c, 0, sizeof(*c));
        c->id = get(&r, 8);
        if (!get_addr(&r, &c->peer, false))
                return -EBADMSG;
        c->via.sa.sa_family = AF_UNSPEC;
        if (version >= 2 && !get_addr(&r, &c->via, true))
                return -EBADMSG;
        c->start_realtime_usec = get(&r, 8);
        c->start_usec = get(&r, 8);
        c->bytes_in = get(&r, 8);
        c->bytes_out = get(&r, 8);
        c->up.ntail = get(&r, 1);
        p = take(&r, sizeof(c->up.tail));
        if (p)
                memcpy(c->up.tail, p, sizeof(c->up.tail));
        c->up.line = get(&r, 1);
        flags = get(&r, 1);
        c->up.dot_quit = flags & FLAG_DOT_QUIT;
        c->up.quit = flags & FLAG_QUIT;
        c->health_check = flags & FLAG_HEALTH_CHECK;
        c->pending_len = get(&r, 4);
        c->pending = take(&r, c->pending_len);
        if (r.truncated || c->id == 0 || flags > (version >= 2 ? FLAGS_V2 : FLAGS_V1) ||
            c->pending_len > HANDOVER_PENDING_MAX || !upcase_state_valid(&c->up))
                return -EBADMSG;
        if (c->pending_len == 0)
                c->pending = NULL;
        *off = r.off;
        return 1;
}

void handover_conn_from_slot(struct handover_conn *c, const struct conn_slot *slot) {
        c->id = atomic_load_explicit(&slot->id, memory_order_relaxed);
        c->peer = slot->peer;
        c->via = slot->via;
        c->health_check = slot->health_check;
        c->start_realtime_usec = slot->start_realtime_usec;
        c->start_usec = slot->start_usec;
        c->bytes_in = atomic_load_explicit(&slot->bytes_in, memory_order_relaxed);
        c->bytes_out = atomic_load_explicit(&slot->bytes_out, memory_order_relaxed);
}

uint64_t handover_conn_name_id(const char *name) {
        const char *digits = name + strlen(HANDOVER_CONN_PREFIX);
        char *end;
        unsigned long long id;

        if (strncmp(name, HANDOVER_CONN_PREFIX, strlen(HANDOVER_CONN_PREFIX)) != 0 ||
            *digits < '1' || *digits > '9')
                return 0;
        errno = 0;
        id = strtoull(digits, &end, 10);
        if (errno != 0 || *end != '\0')
                return 0;
        return id;
}

void handover_init(struct handover *h) {
        const char *size = getenv("FDSTORE");
        char *end;
        unsigned long n = 0;

        memset(h, 0, sizeof(*h));
        pthread_mutex_init(&h->lock, NULL);
        textbuf_init(&h->state, STATE_MAX);
        handover_encode_header(&h->state);
        if (size && getenv("NOTIFY_SOCKET")) {
                errno = 0;
                n = strtoul(size, &end, 10);
                if (errno != 0 || end == size || *end != '\0' || n > UINT32_MAX)
                        n = 0;
        }
        /* One place is for the state. */
        h->enabled = n > 1;
        h->max = h->enabled ? (unsigned) n - 1 : 0;
}

void handover_done(struct handover *h) {
        textbuf_free(&h->state);
        pthread_mutex_destroy(&h->lock);
}

static int notify_with_fd(const char *state, int fd) {
        int r = notify_send_fds(state, &fd, 1);

        /* 0: no NOTIFY_SOCKET after all. */
        return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}

int handover_store_conn(struct handover *h, int fd, const struct handover_conn *c) {
        char msg[64];
        size_t len;
        int r;

        pthread_mutex_lock(&h->lock);
        len = h->state.len;
        if (h->stored >= h->max)
                r = -ENOSPC;
        else {
                handover_encode(&h->state, c);
                r = h->state.overflow ? -ENOBUFS : 0;
        }
        if (r == 0) {
                snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=" HANDOVER_CONN_PREFIX "%" PRIu64, c->id);
                r = notify_with_fd(msg, fd);
        }
        if (r == 0)
                h->stored++;
        else {
                /* Not stored: its record must not be either. */
                h->state.len = len;
                h->state.overflow = false;
        }
        pthread_mutex_unlock(&h->lock);
        return r;
}

static int memfd_with(const void *data, size_t len) {
        int fd = memfd_create("uppercased-handover", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        const char *p = data;

        if (fd < 0)
                return -errno;
        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;

                        close(fd);
                        return r;
                }
                p += n;
                len -= n;
        }
        /* The successor reads it as it was written. */
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        return fd;
}

int handover_store_state(struct handover *h) {
        int fd, r;

        if (!h->enabled || h->stored == 0)
                return 0;
        fd = memfd_with(h->state.data, h->state.len);
        if (fd < 0)
                return fd;
        r = notify_with_fd("FDSTORE=1\nFDNAME=" HANDOVER_STATE_NAME, fd);
        close(fd);
        if (r < 0)
                return r;
        /* Messages are handled asynchronously; exiting before systemd read
         * them could lose them. */
        return sd_notify_barrier(false, BARRIER_USEC);
}

static int read_all(int fd, uint8_t **ret, size_t *len) {
        struct stat st;
        uint8_t *buf;
        size_t done = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size <= 0 || st.st_size > STATE_MAX)
                return -EBADMSG;
        buf = malloc(st.st_size);
        if (!buf)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t n = pread(fd, buf + done, st.st_size - done, done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        int r = n < 0 ? -errno : -EBADMSG;

                        free(buf);
                        return r;
                }
                done += n;
        }
        *ret = buf;
        *len = done;
        return 0;
}

static int conn_compare(const void *a, const void *b) {
        uint64_t x = ((const struct handover_conn *) a)->id, y = ((const struct handover_conn *) b)->id;

        return x < y ? -1 : x > y;
}

static int state_decode(struct handover_state *st) {
        size_t off, cap = 0;
        int version = handover_decode_header(st->buf, st->len, &off), r = version;

        while (r >= 0) {
                struct handover_conn c;

                r = handover_decode(st->buf, st->len, version, &off, &c);
                if (r <= 0)
                        break;
                if (st->n == cap) {
                        size_t ncap = cap ? 2 * cap : 64;
                        struct handover_conn *n = realloc(st->conns, ncap * sizeof(*n));

                        if (!n)
                                return -ENOMEM;
                        st->conns = n;
                        cap = ncap;
                }
                st->conns[st->n++] = c;
        }
        /* Sorted for handover_state_find(). */
        if (r >= 0 && st->n > 1)
                qsort(st->conns, st->n, sizeof(st->conns[0]), conn_compare);
        return r;
}

int handover_state_load(int fd, struct handover_state *st) {
        int r;

        memset(st, 0, sizeof(*st));
        r = read_all(fd, &st->buf, &st->len);
        close(fd);
        if (r >= 0)
                r = state_decode(st);
        if (r < 0)
                handover_state_free(st);
        return r;
}

const struct handover_conn *handover_state_find(const struct handover_state *st, uint64_t id) {
        struct handover_conn key = { .id = id };

        if (st->n == 0)
                return NULL;
        return bsearch(&key, st->conns, st->n, sizeof(st->conns[0]), conn_compare);
}

void handover_state_free(struct handover_state *st) {
        free(st->buf);
        free(st->conns);
        memset(st, 0, sizeof(*st));
}

int handover_forget(const char *name) {
        char msg[300];
        int r;

        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        r = notify_send(msg);
        return r < 0 ? r : r == 0 ? -ENOTCONN : 0;
}
