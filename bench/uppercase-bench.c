// SPDX-License-Identifier: MIT
/*
 * uppercase-bench: a load generator for the uppercase protocol (and, with
 * --echo, for echo servers).  One thread, one epoll loop, non-blocking
 * sockets; every reply is checked byte for byte against what the server
 * must send back.
 *
 *   uppercase-bench tcp|connect|udp|stream|idle|busy [options]
 *
 * Modes:
 *   tcp      -c connections, each with -p requests in flight (pipelined);
 *            a new request goes out as soon as a reply is complete.  The
 *            connections open first, at most MAX_OPENING at a time, each
 *            answered once; then they all start and the warm-up begins.
 *   connect  -c concurrent slots: connect, send one request, read its reply,
 *            close; again.  Latency is counted from connect().
 *   udp      -c datagrams in flight over --sockets connected UDP sockets,
 *            sent in batches as one UDP GSO message each (UDP_SEGMENT: the
 *            kernel cuts it into the same datagrams; --no-gso, or a kernel
 *            without it: sendmmsg), read with recvmmsg; a datagram
 *            unanswered after --timeout is counted lost and sent again.
 *            GSO keeps the generator from being the bottleneck: sent one
 *            by one, the datagrams cost it as much kernel time as a server
 *            spends answering them, and on 2 CPUs it was the limit.
 *   stream   -c connections (default 1) share a --bytes transfer (default
 *            256 MiB) sent while the replies are read; MB/s.  No warm-up:
 *            the whole transfer is measured, capped at -d seconds of sending.
 *   idle     open -c connections (one request each to prove it is served),
 *            hold them -d seconds, ask each one again, report how many are
 *            still open.  With --server-pid, the server's RSS before and
 *            while holding them.
 *   busy     -c background peers (2,000) stream lines and read the replies
 *            slowly (at most --peer-read bytes every --peer-interval ms,
 *            --window bytes in flight) while two probes measure what a
 *            newcomer gets: a line's round trip on a persistent connection
 *            every --probe-interval ms (the mode's latency), and a new
 *            connection's connect + first reply as often.
 *
 * A request is a line of lowercase ASCII text (-s bytes with its "\n"); the
 * expected reply is its ASCII uppercase, or the request itself with --echo.
 * MB/s counts reply bytes received (1 MB = 10^6 bytes).
 *
 * --server-pid PID: the server's CPU time (PID and its live descendants,
 * each by its CPU-time clock, plus cutime+cstime from /proc/PID/stat for
 * the children they reaped) is sampled at the start and at the end of the
 * measured window; reported as CPU seconds, CPU microseconds per request and
 * CPU utilisation.  So are the tree's minor page faults (minflt, and cminflt
 * for the reaped), per request: a count, unlike CPU time not moved by what
 * else the machine runs, and what a fork and an exit cost most of on a VM
 * that shadows page tables.
 *
 * Exit status: 0 when every reply was right and some were received, 1 when
 * a reply was wrong or none completed, 2 on a usage error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ options */

enum mode { M_TCP, M_CONNECT, M_UDP, M_STREAM, M_IDLE, M_BUSY };
static const char *const mode_names[] = { "tcp", "connect", "udp", "stream", "idle", "busy" };

static struct {
        enum mode mode;
        int conns;              /* -1: the mode's default */
        int pipeline;
        size_t size;
        double duration, warmup;
        bool echo, json, quiet;
        int family;
        const char *host;
        int port;
        uint64_t bytes;
        int sockets;
        bool no_gso;            /* udp: sendmmsg, not one GSO message per batch */
        double timeout_ms;      /* < 0: the mode's default */
        pid_t server_pid;
        uint64_t peer_read, window, peer_rcvbuf;        /* busy */
        double peer_interval_ms, probe_interval_ms;
} o = {
        .conns = -1, .pipeline = 1, .size = 16, .duration = 5.0, .warmup = 1.0,
        .family = AF_UNSPEC, .port = 12000, .bytes = 256ull << 20, .sockets = 4,
        .timeout_ms = -1, .peer_read = 32 << 10, .window = 256 << 10, .peer_interval_ms = 50,
        .probe_interval_ms = 10,
};

/* ------------------------------------------------------------------ helpers */

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("uppercase-bench: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        exit(1);
}

static void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);

        if (!p)
                die("out of memory");
        return p;
}

static void *xmalloc(size_t size) {
        void *p = malloc(size ? size : 1);

        if (!p)
                die("out of memory");
        return p;
}

/* -------------------------------------------------------- latency histogram */

/* Log-linear buckets of nanoseconds: exact below 1024 ns, then 512 buckets
 * per power of two (0.2% resolution). */
#define HSUB 512u
#define HBUCKETS (HSUB * 56u)

struct hist {
        uint64_t b[HBUCKETS];
        uint64_t n, max;
        long double sum;
};

/* The mode's latency; busy mode: the persistent probe's round trips. */
static struct hist lat;

static unsigned hist_index(uint64_t v) {
        unsigned msb, shift;

        if (v < 2 * HSUB)
                return (unsigned) v;
        msb = 63u - (unsigned) __builtin_clzll(v);
        shift = msb - 9u;
        return (shift + 1u) * HSUB + (unsigned) ((v >> shift) - HSUB);
}

static uint64_t hist_value(unsigned idx) {
        unsigned shift;

        if (idx < 2 * HSUB)
                return idx;
        shift = idx / HSUB - 1u;
        return ((uint64_t) (idx % HSUB + HSUB) << shift) + ((1ull << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v) {
        unsigned i = hist_index(v);

        if (i >= HBUCKETS)
                i = HBUCKETS - 1;
        h->b[i]++;
        h->n++;
        h->sum += v;
        if (v > h->max)
                h->max = v;
}

static void hist_reset(struct hist *h) {
        memset(h, 0, sizeof(*h));
}

/* The q-quantile in microseconds (0 without samples). */
static double hist_quantile_us(const struct hist *h, double q) {
        uint64_t target, seen = 0;

        if (h->n == 0)
                return 0;
        target = (uint64_t) (q * (double) h->n);
        if ((double) target < q * (double) h->n)
                target++;
        if (target < 1)
                target = 1;
        for (unsigned i = 0; i < HBUCKETS; i++) {
                seen += h->b[i];
                if (seen >= target)
                        return (double) hist_value(i) / 1000.0;
        }
        return (double) h->max / 1000.0;
}

static double hist_mean_us(const struct hist *h) {
        return h->n ? (double) (h->sum / h->n) / 1000.0 : 0.0;
}

/* ------------------------------------------------------------------- stats */

static struct {
        uint64_t requests;      /* completed in the measured window */
        uint64_t bytes_in;      /* reply bytes received in the window */
        uint64_t bytes_out;     /* request bytes sent in the window */
        uint64_t total;         /* completed over the whole run */
        uint64_t wrong, resets, closed, connect, timeouts, lost, late;
        double window;          /* seconds */
        /* tcp mode: seconds opening the connections; how many were served
         * (had a reply) when the window started */
        double ramp_s;
        long serving_start;
        /* idle mode */
        long opened, open_end;
        long rss_before_kib, rss_held_kib;
        int rss_valid;
} st;

/* Connections opening at a time (tcp and idle: from connect() to the first
 * reply): fewer than the server's listen backlog (128 by default), so that
 * 1,000 connections opened at once do not overflow its accept queue, where
 * the kernel drops a SYN or a handshake's last ACK and the client waits
 * for a retransmission, a second or more. */
#define MAX_OPENING 64

static bool measuring;          /* inside the measured window */
static bool issuing = true;     /* new requests may be sent */
static uint64_t t_begin, t_measure, t_end, t_win_start, t_win_end;
static bool window_started, window_ended;
static int ep = -1;
static const char *wrong_note;  /* first wrong reply, described */
static char wrong_buf[512];

static bool some_done(void) {
        return st.total > 0 || (o.mode == M_STREAM && st.bytes_in > 0);
}

static uint64_t errors_total(void) {
        return st.wrong + st.resets + st.closed + st.connect + st.timeouts + st.lost;
}

static void note_wrong(const char *what, const char *got, size_t got_len,
                       const char *want, size_t want_len) {
        char g[48], w[48];
        size_t i, gi = 0, wi = 0;

        st.wrong++;
        if (wrong_note)
                return;
        for (i = 0; i < got_len && gi < sizeof(g) - 5; i++)
                gi += (size_t) snprintf(g + gi, sizeof(g) - gi, isprint((unsigned char) got[i]) ? "%c" : "\\x%02x",
                                        (unsigned char) got[i]);
        for (i = 0; i < want_len && wi < sizeof(w) - 5; i++)
                wi += (size_t) snprintf(w + wi, sizeof(w) - wi, isprint((unsigned char) want[i]) ? "%c" : "\\x%02x",
                                        (unsigned char) want[i]);
        snprintf(wrong_buf, sizeof(wrong_buf), "%s: got \"%s\", expected \"%s\"", what, g, w);
        wrong_note = wrong_buf;
        if (!o.quiet)
                fprintf(stderr, "uppercase-bench: wrong reply (%s)\n", wrong_note);
}

/* ------------------------------------------------- server CPU time and RSS */

static long clk_tck;

/* CPU time (ns), RSS (KiB) and minor page faults of pid and of its live
 * descendants (faults: with those of the children it reaped).  A
 * process's own time is its CPU-time clock (clock_getcpuclockid: every
 * thread, live or exited, to the nanosecond), else utime+stime from
 * /proc/PID/stat; to it adds cutime+cstime, the time of the children it
 * reaped.  Ticks are per process, so a clock avoids losing up to a tick per
 * short-lived child.  Returns false when pid is gone. */
static bool proc_sample(pid_t pid, uint64_t *ns, uint64_t *rss_kib, uint64_t *faults, int depth) {
        char path[64], buf[1024], *p, *save = NULL;
        FILE *f;
        size_t n;
        int field = 3;
        unsigned long long v[4] = { 0 }, rss = 0, flt = 0;
        uint64_t tick_ns = 1000000000ull / (uint64_t) clk_tck;
        clockid_t cid;
        struct timespec ts;
        DIR *d;
        struct dirent *de;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');
        if (!p)
                return false;
        for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
                if (field == 10 || field == 11)
                        flt += strtoull(tok, NULL, 10);     /* minflt, cminflt */
                else if (field >= 14 && field <= 17)
                        v[field - 14] = strtoull(tok, NULL, 10);
                else if (field == 24) {
                        rss = strtoull(tok, NULL, 10);
                        break;
                }
        }
        if (clock_getcpuclockid(pid, &cid) == 0 && clock_gettime(cid, &ts) == 0)
                *ns += (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
        else
                *ns += (v[0] + v[1]) * tick_ns;
        *ns += (v[2] + v[3]) * tick_ns;
        *rss_kib += rss * (unsigned long long) sysconf(_SC_PAGESIZE) / 1024;
        *faults += flt;
        if (depth > 8)
                return true;
        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d)
                return true;
        while ((de = readdir(d))) {
                char cpath[96];
                FILE *cf;
                int child;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(cpath, sizeof(cpath), "/proc/%d/task/%.20s/children", (int) pid, de->d_name);
                cf = fopen(cpath, "re");
                if (!cf)
                        continue;
                while (fscanf(cf, "%d", &child) == 1)
                        (void) proc_sample(child, ns, rss_kib, faults, depth + 1);
                fclose(cf);
        }
        closedir(d);
        return true;
}

static uint64_t cpu_start, cpu_end, faults_start, faults_end;
static bool cpu_valid;
static double self_cpu_start, self_cpu_end;

static double self_cpu(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 + (double) ru.ru_stime.tv_sec +
               (double) ru.ru_stime.tv_usec / 1e6;
}

static void server_cpu_mark(bool start) {
        uint64_t ns = 0, rss = 0, faults = 0;

        if (start)
                self_cpu_start = self_cpu();
        else
                self_cpu_end = self_cpu();
        if (o.server_pid <= 0)
                return;
        if (!proc_sample(o.server_pid, &ns, &rss, &faults, 0)) {
                cpu_valid = false;
                return;
        }
        if (start) {
                cpu_start = ns;
                faults_start = faults;
                cpu_valid = true;
        } else {
                cpu_end = ns;
                faults_end = faults;
        }
}

static long server_rss_kib(void) {
        uint64_t ns = 0, rss = 0, faults = 0;

        if (o.server_pid <= 0 || !proc_sample(o.server_pid, &ns, &rss, &faults, 0))
                return -1;
        return (long) rss;
}

/* --------------------------------------------------------------- payloads */

/* Lowercase ASCII, no "." (a line "." ends an uppercase session). */
static const char BASE[] = "ciao mondo perche no il gatto e la volpe "
                           "the quick brown fox jumps over the lazy dog ";
#define BASE_LEN (sizeof(BASE) - 1)
#define NVARIANTS 97u

static size_t S;                /* request size */
static char *req_v, *rep_v;     /* NVARIANTS requests and expected replies */

static char up(char c) {
        return (c >= 'a' && c <= 'z') ? (char) (c - 'a' + 'A') : c;
}

static void expect_from(char *dst, const char *src, size_t n) {
        for (size_t i = 0; i < n; i++)
                dst[i] = o.echo ? src[i] : up(src[i]);
}

/* "ciao mondo 0042\n" for variant 42 at 16 bytes: BASE rotated, then the
 * variant's number, then "\n". */
static void make_request(unsigned v, char *out, size_t size) {
        size_t text = size - 1, digits = text >= 8 ? 4 : 0;

        for (size_t j = 0; j < text - digits; j++)
                out[j] = BASE[(j + v * 7u) % BASE_LEN];
        if (digits) {
                char num[8];

                snprintf(num, sizeof(num), "%04u", v % 10000u);
                memcpy(out + text - digits, num, digits);
        }
        out[text] = '\n';
}

static void make_variants(void) {
        req_v = xmalloc(NVARIANTS * S);
        rep_v = xmalloc(NVARIANTS * S);
        for (unsigned v = 0; v < NVARIANTS; v++) {
                make_request(v, req_v + (size_t) v * S, S);
                expect_from(rep_v + (size_t) v * S, req_v + (size_t) v * S, S);
        }
}

/* ----------------------------------------------------------------- address */

static struct sockaddr_storage srv;
static socklen_t srv_len;

static void resolve(void) {
        struct addrinfo hints = { 0 }, *res = NULL;
        char port[16];
        const char *host = o.host;
        int r;

        if (!host)
                host = o.family == AF_INET6 ? "::1" : "127.0.0.1";
        hints.ai_family = o.family;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", o.port);
        r = getaddrinfo(host, port, &hints, &res);
        if (r != 0 || !res)
                die("bad address %s port %d: %s", host, o.port, gai_strerror(r));
        memcpy(&srv, res->ai_addr, res->ai_addrlen);
        srv_len = res->ai_addrlen;
        o.host = host;
        freeaddrinfo(res);
}

static int new_socket(int type) {
        int fd = socket(srv.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

        if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE)
                        return -1;
                die("socket: %s", strerror(errno));
        }
        if (type == SOCK_STREAM) {
                int one = 1;

                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        return fd;
}

/* Starts a non-blocking connect: 1 connected, 0 in progress, -1 failed. */
static int start_connect(int fd) {
        if (connect(fd, (struct sockaddr *) &srv, srv_len) == 0)
                return 1;
        if (errno == EINPROGRESS || errno == EINTR)
                return 0;
        return -1;
}

static bool connect_finished_ok(int fd) {
        int err = 0;
        socklen_t len = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return false;
        return err == 0;
}

static void ep_ctl(int op, int fd, uint32_t events, void *ptr) {
        struct epoll_event ev = { .events = events, .data.ptr = ptr };

        if (epoll_ctl(ep, op, fd, &ev) < 0)
                die("epoll_ctl: %s", strerror(errno));
}

/* -------------------------------------------------------- measured window */

static double timeout_s(void) {
        if (o.timeout_ms >= 0)
                return o.timeout_ms / 1000.0;
        return o.mode == M_UDP ? 0.2 : 5.0;
}

/* tcp mode: connections before and after their first reply; while they
 * open, one that has its first reply waits for the others. */
static long tcp_opening, tcp_serving;
static bool tcp_ramping = true;

static void window_tick(uint64_t now) {
        if (!window_started && now >= t_measure) {
                window_started = true;
                st.serving_start = tcp_serving;
                measuring = true;
                t_win_start = now;
                st.requests = st.bytes_in = st.bytes_out = 0;
                hist_reset(&lat);
                server_cpu_mark(true);
        }
        if (window_started && !window_ended && now >= t_end) {
                window_ended = true;
                measuring = false;
                issuing = false;
                t_win_end = now;
                server_cpu_mark(false);
        }
}

static void complete(uint64_t now, uint64_t t0, size_t bytes) {
        st.total++;
        if (!measuring)
                return;
        st.requests++;
        st.bytes_in += bytes;
        hist_add(&lat, now - t0);
}

#define MAX_EVENTS 512
static struct epoll_event events[MAX_EVENTS];
static char rbuf[256 * 1024];

static int wait_events(uint64_t now, uint64_t until) {
        int ms = 10, n;

        if (until > now && (until - now) / 1000000 < 10)
                ms = (int) ((until - now) / 1000000) + 1;
        n = epoll_wait(ep, events, MAX_EVENTS, ms);
        if (n < 0) {
                if (errno == EINTR)
                        return 0;
                die("epoll_wait: %s", strerror(errno));
        }
        return n;
}

/* -c connections need as many descriptors, and a few more. */
static void raise_nofile(long want) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur != RLIM_INFINITY && (long) rl.rlim_cur < want) {
                rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || (long) rl.rlim_max >= want) ? (rlim_t) want : rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0 || (long) rl.rlim_cur < want)
                        fprintf(stderr, "uppercase-bench: RLIMIT_NOFILE is %ld, fewer than the %ld descriptors wanted\n",
                                (long) rl.rlim_cur, want);
        }
}

/* ========================================================== tcp (pipelined) */

struct tconn {
        int fd, id;
        int state;              /* 0 closed, 1 connecting, 2 open */
        bool fresh;             /* opening: connecting, or no reply yet (tcp_opening) */
        uint32_t events;
        uint64_t sent, done;
        size_t rx_off;
        uint64_t *t_sent;       /* ring of o.pipeline send times */
        char *tx;
        size_t tx_off, tx_len;
        uint64_t retry_at, progress_at;
};

static unsigned variant_of(int id, uint64_t seq) {
        return (unsigned) ((seq + (uint64_t) id * 13u) % NVARIANTS);
}

static void tconn_close(struct tconn *c, uint64_t now) {
        if (c->fd >= 0)
                close(c->fd);
        if (c->fresh)
                tcp_opening--;
        else if (c->state != 0)
                tcp_serving--;
        c->fresh = false;
        c->fd = -1;
        c->state = 0;
        c->sent = c->done = 0;
        c->rx_off = c->tx_off = c->tx_len = 0;
        c->retry_at = now + 20 * 1000000ull;
}

static void tconn_set_events(struct tconn *c, uint32_t want) {
        if (want != c->events) {
                ep_ctl(EPOLL_CTL_MOD, c->fd, want, c);
                c->events = want;
        }
}

static void tconn_fill(struct tconn *c, uint64_t now) {
        if (!issuing)
                return;
        if (c->tx_off == c->tx_len)
                c->tx_off = c->tx_len = 0;
        else if (c->tx_off > 0) {
                memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
                c->tx_len -= c->tx_off;
                c->tx_off = 0;
        }
        while (c->sent - c->done < (uint64_t) o.pipeline) {
                memcpy(c->tx + c->tx_len, req_v + (size_t) variant_of(c->id, c->sent) * S, S);
                c->tx_len += S;
                c->t_sent[c->sent % (uint64_t) o.pipeline] = now;
                c->sent++;
                if (measuring)
                        st.bytes_out += S;
        }
}

static void tconn_flush(struct tconn *c, uint64_t now) {
        while (c->tx_off < c->tx_len) {
                ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        st.resets++;
                        tconn_close(c, now);
                        return;
                }
                c->tx_off += (size_t) n;
        }
        tconn_set_events(c, EPOLLIN | (c->tx_off < c->tx_len ? EPOLLOUT : 0));
}

static void tconn_open(struct tconn *c, uint64_t now) {
        int r;

        c->fd = new_socket(SOCK_STREAM);
        if (c->fd < 0) {
                st.connect++;
                c->retry_at = now + 100 * 1000000ull;
                return;
        }
        r = start_connect(c->fd);
        if (r < 0) {
                st.connect++;
                tconn_close(c, now);
                return;
        }
        c->progress_at = now;
        c->events = EPOLLOUT;
        ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLOUT, c);
        c->state = 1;
        c->fresh = true;
        tcp_opening++;
}

static void tconn_read(struct tconn *c, uint64_t now) {
        bool completed = false;

        for (;;) {
                ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
                size_t p = 0;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        st.resets++;
                        tconn_close(c, now);
                        return;
                }
                if (n == 0) {
                        st.closed++;
                        tconn_close(c, now);
                        return;
                }
                while (p < (size_t) n) {
                        unsigned v;
                        size_t k;
                        const char *want;

                        if (c->done == c->sent) {
                                note_wrong("data with no request outstanding", rbuf + p, (size_t) n - p, "", 0);
                                tconn_close(c, now);
                                return;
                        }
                        v = variant_of(c->id, c->done);
                        want = rep_v + (size_t) v * S + c->rx_off;
                        k = S - c->rx_off;
                        if (k > (size_t) n - p)
                                k = (size_t) n - p;
                        if (memcmp(rbuf + p, want, k) != 0) {
                                note_wrong("tcp reply", rbuf + p, k, want, k);
                                tconn_close(c, now);
                                return;
                        }
                        p += k;
                        c->rx_off += k;
                        if (c->rx_off == S) {
                                c->rx_off = 0;
                                complete(now, c->t_sent[c->done % (uint64_t) o.pipeline], S);
                                c->done++;
                                completed = true;
                        }
                }
                c->progress_at = now;
                if ((size_t) n < sizeof(rbuf))
                        break;
        }
        if (completed && c->fresh) {
                c->fresh = false;
                tcp_opening--;
                tcp_serving++;
        }
        if (completed && !tcp_ramping) {
                tconn_fill(c, now);
                tconn_flush(c, now);
        }
}

static void run_tcp(void) {
        int n = o.conns, next = 0;
        struct tconn *cs = xcalloc((size_t) n, sizeof(*cs));
        uint64_t now = now_ns(), last_scan = 0, drain_until = 0;
        uint64_t tmo = (uint64_t) (timeout_s() * 1e9);
        /* The connections open while the server has nothing else to do (in
         * the thread and process models, its accepting thread or process
         * would otherwise compete for the CPU with every connection already
         * served); the warm-up starts when all of them have had a reply,
         * or after 10 s at most. */
        uint64_t ramp_until = now + 10000000000ull;

        raise_nofile((long) n + 64);
        t_measure = t_end = UINT64_MAX;

        for (int i = 0; i < n; i++) {
                cs[i].fd = -1;
                cs[i].id = i;
                cs[i].t_sent = xcalloc((size_t) o.pipeline, sizeof(uint64_t));
                cs[i].tx = xmalloc((size_t) o.pipeline * S);
        }
        for (;;) {
                int k;

                while (next < n && issuing && tcp_opening < MAX_OPENING)
                        tconn_open(&cs[next++], now);
                k = wait_events(now, window_started ? t_end : t_measure);

                now = now_ns();
                window_tick(now);
                for (int i = 0; i < k; i++) {
                        struct tconn *c = events[i].data.ptr;
                        uint32_t e = events[i].events;

                        if (c->state == 1) {
                                if (!connect_finished_ok(c->fd)) {
                                        st.connect++;
                                        tconn_close(c, now);
                                        continue;
                                }
                                c->state = 2;
                                tconn_fill(c, now);
                                tconn_flush(c, now);
                                continue;
                        }
                        if (c->state != 2)
                                continue;
                        if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                                tconn_read(c, now);
                        if (c->state == 2 && (e & EPOLLOUT))
                                tconn_flush(c, now);
                }
                if (tcp_ramping && (tcp_serving == n || (next == n && tcp_opening == 0) || now >= ramp_until)) {
                        tcp_ramping = false;
                        st.ramp_s = (double) (now - t_begin) / 1e9;
                        t_measure = now + (uint64_t) (o.warmup * 1e9);
                        t_end = t_measure + (uint64_t) (o.duration * 1e9);
                        for (int i = 0; i < n; i++)
                                if (cs[i].state == 2 && !cs[i].fresh) {
                                        tconn_fill(&cs[i], now);
                                        tconn_flush(&cs[i], now);
                                }
                }
                if (window_ended && !drain_until)
                        drain_until = now + 2000000000ull;
                if (now - last_scan >= 10000000ull || drain_until) {
                        bool pending = false;

                        last_scan = now;
                        for (int i = 0; i < n; i++) {
                                struct tconn *c = &cs[i];

                                if (c->state == 0 && i < next && issuing && now >= c->retry_at &&
                                    tcp_opening < MAX_OPENING)
                                        tconn_open(c, now);
                                else if (c->state != 0 && c->sent != c->done && now - c->progress_at > tmo) {
                                        st.timeouts += c->sent - c->done;
                                        tconn_close(c, now);
                                }
                                if (c->state != 0 && c->sent != c->done)
                                        pending = true;
                        }
                        if (drain_until && (!pending || now >= drain_until)) {
                                for (int i = 0; i < n; i++) {
                                        if (cs[i].state != 0 && cs[i].sent != cs[i].done)
                                                st.timeouts += cs[i].sent - cs[i].done;
                                        if (cs[i].fd >= 0)
                                                close(cs[i].fd);
                                }
                                break;
                        }
                }
        }
        for (int i = 0; i < n; i++) {
                free(cs[i].t_sent);
                free(cs[i].tx);
        }
        free(cs);
}

/* =================================================== connect per request */

struct cslot {
        int fd;
        int state;              /* 0 idle, 1 connecting, 2 request sent / reading */
        unsigned v;
        size_t tx_off, rx_off;
        uint64_t t0, retry_at;
};

static unsigned connect_counter;

static void cslot_close(struct cslot *s) {
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        s->state = 0;
}

static void cslot_fail(struct cslot *s, uint64_t now, uint64_t *counter) {
        (*counter)++;
        cslot_close(s);
        s->retry_at = now + 10 * 1000000ull;
}

static void cslot_io(struct cslot *s, uint64_t now);

static void cslot_start(struct cslot *s, uint64_t now) {
        int r;

        if (!issuing)
                return;
        s->fd = new_socket(SOCK_STREAM);
        if (s->fd < 0) {
                st.connect++;
                s->retry_at = now + 100 * 1000000ull;
                return;
        }
        s->t0 = now;
        s->v = connect_counter++ % NVARIANTS;
        s->tx_off = s->rx_off = 0;
        r = start_connect(s->fd);
        if (r < 0) {
                cslot_fail(s, now, &st.connect);
                return;
        }
        s->state = 1;
        /* Edge-triggered: one registration per connection, no MOD. */
        ep_ctl(EPOLL_CTL_ADD, s->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, s);
        if (r == 1)
                cslot_io(s, now);
}

static void cslot_io(struct cslot *s, uint64_t now) {
        if (s->state == 1) {
                if (!connect_finished_ok(s->fd)) {
                        cslot_fail(s, now, &st.connect);
                        return;
                }
                s->state = 2;
        }
        while (s->tx_off < S) {
                ssize_t n = send(s->fd, req_v + (size_t) s->v * S + s->tx_off, S - s->tx_off, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        cslot_fail(s, now, &st.resets);
                        return;
                }
                s->tx_off += (size_t) n;
                if (s->tx_off == S && measuring)
                        st.bytes_out += S;
        }
        for (;;) {
                ssize_t n = read(s->fd, rbuf, sizeof(rbuf));
                const char *want = rep_v + (size_t) s->v * S + s->rx_off;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        cslot_fail(s, now, &st.resets);
                        return;
                }
                if (n == 0) {
                        cslot_fail(s, now, &st.closed);
                        return;
                }
                if ((size_t) n > S - s->rx_off || memcmp(rbuf, want, (size_t) n) != 0) {
                        note_wrong("connect reply", rbuf, (size_t) n, want, S - s->rx_off);
                        cslot_close(s);
                        s->retry_at = now;
                        return;
                }
                s->rx_off += (size_t) n;
                if (s->rx_off == S) {
                        complete(now, s->t0, S);
                        cslot_close(s);
                        cslot_start(s, now);
                        return;
                }
        }
}

static void run_connect(void) {
        int n = o.conns;
        struct cslot *ss = xcalloc((size_t) n, sizeof(*ss));
        uint64_t now = now_ns(), last_scan = 0, drain_until = 0;
        uint64_t tmo = (uint64_t) (timeout_s() * 1e9);

        for (int i = 0; i < n; i++) {
                ss[i].fd = -1;
                cslot_start(&ss[i], now);
        }
        for (;;) {
                int k = wait_events(now, window_started ? t_end : t_measure);

                now = now_ns();
                window_tick(now);
                for (int i = 0; i < k; i++) {
                        struct cslot *s = events[i].data.ptr;

                        if (s->state != 0)
                                cslot_io(s, now);
                }
                if (window_ended && !drain_until)
                        drain_until = now + 2000000000ull;
                if (now - last_scan >= 10000000ull || drain_until) {
                        bool pending = false;

                        last_scan = now;
                        for (int i = 0; i < n; i++) {
                                struct cslot *s = &ss[i];

                                if (s->state == 0 && issuing && now >= s->retry_at)
                                        cslot_start(s, now);
                                else if (s->state != 0 && now - s->t0 > tmo)
                                        cslot_fail(s, now, &st.timeouts);
                                if (s->state != 0)
                                        pending = true;
                        }
                        if (drain_until && (!pending || now >= drain_until)) {
                                for (int i = 0; i < n; i++)
                                        if (ss[i].state != 0) {
                                                st.timeouts++;
                                                cslot_close(&ss[i]);
                                        }
                                break;
                        }
                }
        }
        free(ss);
}

/* ===================================================================== udp */

#define UDP_BATCH 64
#define UDP_ID_DIGITS 10

struct uslot {
        uint64_t gen;
        uint64_t t_sent;
        bool waiting, queued;
};

struct usock {
        int fd;
        uint32_t events;
        int *queue;
        int qlen;
        struct mmsghdr smsg[UDP_BATCH], rmsg[UDP_BATCH];
        struct iovec siov[UDP_BATCH], riov[UDP_BATCH];
        char *sbuf, *rbuf;
};

static struct uslot *uslots;
static struct usock *usocks;
static int n_usocks;
static size_t udp_rsize;
static bool udp_gso;            /* sends go as UDP GSO messages */

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

/* Requests per GSO message: a batch, within a UDP datagram's 65,507 bytes. */
static int udp_gso_batch(void) {
        size_t fit = 65000 / S;

        return fit < UDP_BATCH ? (int) (fit ? fit : 1) : UDP_BATCH;
}

/* Sends the batch's n requests (u->siov) as one GSO message of S-byte
 * segments: all or none.  Returns n, or -1 with errno. */
static int usock_send_gso(struct usock *u, int n) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(uint16_t))];
        } control = { 0 };
        struct msghdr h = {
                .msg_iov = u->siov,
                .msg_iovlen = (size_t) n,
                .msg_control = control.buf,
                .msg_controllen = sizeof(control.buf),
        };
        struct cmsghdr *c = CMSG_FIRSTHDR(&h);
        uint16_t seg = (uint16_t) S;

        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        return sendmsg(u->fd, &h, MSG_DONTWAIT) < 0 ? -1 : n;
}

static void make_udp_request(uint64_t id, char *out) {
        char num[UDP_ID_DIGITS + 1];
        size_t text = S - 1 - UDP_ID_DIGITS;
        unsigned v = (unsigned) (id % NVARIANTS);

        for (size_t j = 0; j < text; j++)
                out[j] = BASE[(j + v * 7u) % BASE_LEN];
        snprintf(num, sizeof(num), "%010" PRIu64, (uint64_t) (id % 10000000000ull));
        memcpy(out + text, num, UDP_ID_DIGITS);
        out[S - 1] = '\n';
}

static void usock_enqueue(int slot) {
        struct usock *u = &usocks[slot % n_usocks];

        if (uslots[slot].queued)
                return;
        uslots[slot].queued = true;
        u->queue[u->qlen++] = slot;
}

static void usock_set_events(struct usock *u) {
        uint32_t want = EPOLLIN | (u->qlen ? EPOLLOUT : 0);

        if (want != u->events) {
                ep_ctl(EPOLL_CTL_MOD, u->fd, want, u);
                u->events = want;
        }
}

static void usock_flush(struct usock *u, uint64_t now) {
        while (u->qlen > 0 && issuing) {
                int max = udp_gso ? udp_gso_batch() : UDP_BATCH;
                int batch = u->qlen < max ? u->qlen : max, sent;

                for (int i = 0; i < batch; i++) {
                        int slot = u->queue[i];
                        uint64_t id = uslots[slot].gen * (uint64_t) o.conns + (uint64_t) slot;

                        make_udp_request(id, u->sbuf + (size_t) i * S);
                        u->siov[i].iov_base = u->sbuf + (size_t) i * S;
                        u->siov[i].iov_len = S;
                        memset(&u->smsg[i].msg_hdr, 0, sizeof(u->smsg[i].msg_hdr));
                        u->smsg[i].msg_hdr.msg_iov = &u->siov[i];
                        u->smsg[i].msg_hdr.msg_iovlen = 1;
                }
                if (udp_gso && batch > 1)
                        sent = usock_send_gso(u, batch);
                else
                        sent = sendmmsg(u->fd, u->smsg, (unsigned) batch, MSG_DONTWAIT);
                if (sent < 0) {
                        if (errno == EINTR)
                                continue;
                        /* The route or the kernel refuses GSO: one by one from now on. */
                        if (udp_gso && batch > 1 && (errno == EINVAL || errno == EIO || errno == ENOPROTOOPT)) {
                                udp_gso = false;
                                continue;
                        }
                        if (errno == EAGAIN || errno == ENOBUFS)
                                break;
                        if (errno == ECONNREFUSED) {
                                /* An earlier datagram met a closed port: retry. */
                                st.resets++;
                                continue;
                        }
                        die("sendmmsg: %s", strerror(errno));
                }
                for (int i = 0; i < sent; i++) {
                        struct uslot *s = &uslots[u->queue[i]];

                        s->queued = false;
                        s->waiting = true;
                        s->t_sent = now;
                        if (measuring)
                                st.bytes_out += S;
                }
                memmove(u->queue, u->queue + sent, (size_t) (u->qlen - sent) * sizeof(int));
                u->qlen -= sent;
                if (sent < batch)
                        break;
        }
        if (!issuing) {
                for (int i = 0; i < u->qlen; i++)
                        uslots[u->queue[i]].queued = false;
                u->qlen = 0;
        }
        usock_set_events(u);
}

static void usock_read(struct usock *u, uint64_t now) {
        char want[65536];

        for (;;) {
                int n;

                for (int i = 0; i < UDP_BATCH; i++) {
                        u->riov[i].iov_base = u->rbuf + (size_t) i * udp_rsize;
                        u->riov[i].iov_len = udp_rsize;
                        memset(&u->rmsg[i].msg_hdr, 0, sizeof(u->rmsg[i].msg_hdr));
                        u->rmsg[i].msg_hdr.msg_iov = &u->riov[i];
                        u->rmsg[i].msg_hdr.msg_iovlen = 1;
                }
                n = recvmmsg(u->fd, u->rmsg, UDP_BATCH, MSG_DONTWAIT, NULL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == ECONNREFUSED) {
                                st.resets++;
                                continue;
                        }
                        break;
                }
                for (int i = 0; i < n; i++) {
                        const char *r = u->rbuf + (size_t) i * udp_rsize;
                        size_t len = u->rmsg[i].msg_len;
                        uint64_t id = 0;
                        bool digits = len == S;
                        int slot;
                        struct uslot *s;

                        for (size_t j = S - 1 - UDP_ID_DIGITS; digits && j < S - 1; j++) {
                                if (r[j] < '0' || r[j] > '9')
                                        digits = false;
                                else
                                        id = id * 10 + (uint64_t) (r[j] - '0');
                        }
                        if (!digits || (u->rmsg[i].msg_hdr.msg_flags & MSG_TRUNC)) {
                                note_wrong("udp reply of the wrong length or without its id", r,
                                           len < udp_rsize ? len : udp_rsize, "", 0);
                                continue;
                        }
                        slot = (int) (id % (uint64_t) o.conns);
                        s = &uslots[slot];
                        if (!s->waiting || s->gen != id / (uint64_t) o.conns) {
                                st.late++;
                                continue;
                        }
                        make_udp_request(id, want);
                        expect_from(want, want, S);
                        s->waiting = false;
                        s->gen++;
                        if (memcmp(r, want, S) != 0)
                                note_wrong("udp reply", r, S, want, S);
                        else
                                complete(now, s->t_sent, S);
                        if (issuing)
                                usock_enqueue(slot);
                }
                if (n < UDP_BATCH)
                        break;
        }
        usock_flush(u, now);
}

static void run_udp(void) {
        int n = o.conns;
        uint64_t now = now_ns(), last_scan = 0, drain_until = 0;
        uint64_t tmo = (uint64_t) (timeout_s() * 1e9);

        if (S < UDP_ID_DIGITS + 2 || S > 65507)
                die("udp needs -s between %d and 65507", UDP_ID_DIGITS + 2);
        udp_rsize = S + 64;
        n_usocks = o.sockets < n ? o.sockets : n;
        uslots = xcalloc((size_t) n, sizeof(*uslots));
        usocks = xcalloc((size_t) n_usocks, sizeof(*usocks));
        for (int i = 0; i < n_usocks; i++) {
                struct usock *u = &usocks[i];
                int buf = 4 << 20;

                u->fd = new_socket(SOCK_DGRAM);
                if (u->fd < 0)
                        die("socket: %s", strerror(errno));
                (void) setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
                (void) setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
                if (connect(u->fd, (struct sockaddr *) &srv, srv_len) < 0)
                        die("connect (udp): %s", strerror(errno));
                u->queue = xcalloc((size_t) n, sizeof(int));
                u->sbuf = xmalloc(UDP_BATCH * S);
                u->rbuf = xmalloc(UDP_BATCH * udp_rsize);
                u->events = EPOLLIN;
                ep_ctl(EPOLL_CTL_ADD, u->fd, EPOLLIN, u);
        }
        /* GSO where the kernel has it (Linux 4.18) and a message holds two requests. */
        udp_gso = !o.no_gso && udp_gso_batch() > 1 &&
                  setsockopt(usocks[0].fd, IPPROTO_UDP, UDP_SEGMENT, &(int) { 0 }, sizeof(int)) == 0;
        for (int i = 0; i < n; i++)
                usock_enqueue(i);
        for (int i = 0; i < n_usocks; i++)
                usock_flush(&usocks[i], now);
        for (;;) {
                int k = wait_events(now, window_started ? t_end : t_measure);

                now = now_ns();
                window_tick(now);
                for (int i = 0; i < k; i++) {
                        struct usock *u = events[i].data.ptr;

                        if (events[i].events & (EPOLLIN | EPOLLERR))
                                usock_read(u, now);
                        if (events[i].events & EPOLLOUT)
                                usock_flush(u, now);
                }
                if (window_ended && !drain_until)
                        drain_until = now + tmo + 200000000ull;
                if (now - last_scan >= 5000000ull || drain_until) {
                        bool pending = false;

                        last_scan = now;
                        for (int i = 0; i < n; i++) {
                                struct uslot *s = &uslots[i];

                                if (s->waiting && now - s->t_sent > tmo) {
                                        st.lost++;
                                        s->waiting = false;
                                        s->gen++;
                                        if (issuing)
                                                usock_enqueue(i);
                                }
                                if (s->waiting)
                                        pending = true;
                        }
                        for (int i = 0; i < n_usocks; i++)
                                if (usocks[i].qlen)
                                        usock_flush(&usocks[i], now);
                        if (drain_until && (!pending || now >= drain_until)) {
                                for (int i = 0; i < n; i++)
                                        if (uslots[i].waiting)
                                                st.lost++;
                                break;
                        }
                }
        }
        for (int i = 0; i < n_usocks; i++) {
                close(usocks[i].fd);
                free(usocks[i].queue);
                free(usocks[i].sbuf);
                free(usocks[i].rbuf);
        }
        free(usocks);
        free(uslots);
}

/* ================================================================== stream */

struct sconn {
        int fd;
        int state;              /* 0 done, 1 connecting, 2 streaming */
        uint32_t events;
        uint64_t sent, recvd, total;
};

static char *blk, *blk_up;
static size_t blk_len;

/* About 64 KiB of lowercase lines of 20..119 bytes; ends with "\n". */
static void make_block(void) {
        size_t cap = 70000, len = 0;
        unsigned line = 0;

        blk = xmalloc(cap);
        while (len < 65000) {
                size_t ll = 20 + (line * 37u) % 100u;

                for (size_t j = 0; j + 1 < ll; j++)
                        blk[len + j] = BASE[(j + line * 11u) % BASE_LEN];
                blk[len + ll - 1] = '\n';
                len += ll;
                line++;
        }
        blk_len = len;
        blk_up = xmalloc(blk_len);
        expect_from(blk_up, blk, blk_len);
}

static uint64_t t_last_byte;

static void sconn_fail(struct sconn *c, uint64_t *counter) {
        (*counter)++;
        close(c->fd);
        c->fd = -1;
        c->state = 0;
}

static void sconn_update(struct sconn *c) {
        uint32_t want = EPOLLIN | ((issuing && c->sent < c->total) ? EPOLLOUT : 0);

        if (want != c->events) {
                ep_ctl(EPOLL_CTL_MOD, c->fd, want, c);
                c->events = want;
        }
}

static void sconn_write(struct sconn *c) {
        while (issuing && c->sent < c->total) {
                size_t off = c->sent % blk_len, len = blk_len - off;
                ssize_t n;

                if (len > c->total - c->sent)
                        len = c->total - c->sent;
                n = send(c->fd, blk + off, len, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        sconn_fail(c, &st.resets);
                        return;
                }
                c->sent += (uint64_t) n;
                st.bytes_out += (uint64_t) n;
        }
        sconn_update(c);
}

static void sconn_read(struct sconn *c, uint64_t now) {
        for (;;) {
                ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
                size_t p = 0;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        sconn_fail(c, &st.resets);
                        return;
                }
                if (n == 0) {
                        sconn_fail(c, &st.closed);
                        return;
                }
                if (c->recvd + (uint64_t) n > c->sent) {
                        note_wrong("stream: more bytes than were sent", rbuf, (size_t) n, "", 0);
                        close(c->fd);
                        c->fd = -1;
                        c->state = 0;
                        return;
                }
                while (p < (size_t) n) {
                        size_t off = (size_t) ((c->recvd + p) % blk_len), k = blk_len - off;

                        if (k > (size_t) n - p)
                                k = (size_t) n - p;
                        if (memcmp(rbuf + p, blk_up + off, k) != 0) {
                                note_wrong("stream data", rbuf + p, k, blk_up + off, k);
                                close(c->fd);
                                c->fd = -1;
                                c->state = 0;
                                return;
                        }
                        p += k;
                }
                c->recvd += (uint64_t) n;
                st.bytes_in += (uint64_t) n;
                t_last_byte = now;
                if ((size_t) n < sizeof(rbuf))
                        break;
        }
        if ((!issuing || c->sent == c->total) && c->recvd == c->sent) {
                close(c->fd);
                c->fd = -1;
                c->state = 0;
        }
}

static void run_stream(void) {
        int n = o.conns;
        struct sconn *cs = xcalloc((size_t) n, sizeof(*cs));
        uint64_t now = now_ns(), drain_until = 0, tmo = (uint64_t) (timeout_s() * 1e9);
        uint64_t last_progress = now, last_in = 0;

        make_block();
        /* No warm-up: the window is the whole transfer. */
        t_measure = t_begin;
        t_end = t_begin + (uint64_t) (o.duration * 1e9);
        window_tick(now);
        for (int i = 0; i < n; i++) {
                struct sconn *c = &cs[i];
                int r;

                c->total = o.bytes / (uint64_t) n + (i == 0 ? o.bytes % (uint64_t) n : 0);
                c->fd = new_socket(SOCK_STREAM);
                if (c->fd < 0)
                        die("socket: %s", strerror(errno));
                r = start_connect(c->fd);
                if (r < 0) {
                        sconn_fail(c, &st.connect);
                        continue;
                }
                c->state = 1;
                c->events = EPOLLOUT;
                ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLOUT, c);
        }
        for (;;) {
                int k = wait_events(now, t_end), live = 0;

                now = now_ns();
                if (!window_ended && now >= t_end) {
                        issuing = false;
                        window_ended = true;
                }
                for (int i = 0; i < k; i++) {
                        struct sconn *c = events[i].data.ptr;

                        if (c->state == 1) {
                                if (!connect_finished_ok(c->fd)) {
                                        sconn_fail(c, &st.connect);
                                        continue;
                                }
                                c->state = 2;
                        }
                        if (c->state == 2 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                                sconn_read(c, now);
                        if (c->state == 2 && (events[i].events & EPOLLOUT))
                                sconn_write(c);
                }
                if (st.bytes_in != last_in) {
                        last_in = st.bytes_in;
                        last_progress = now;
                }
                for (int i = 0; i < n; i++) {
                        struct sconn *c = &cs[i];

                        if (c->state == 2 && !issuing) {
                                sconn_update(c);
                                if (c->recvd == c->sent) {
                                        close(c->fd);
                                        c->fd = -1;
                                        c->state = 0;
                                }
                        }
                        if (c->state != 0)
                                live++;
                }
                if (live == 0)
                        break;
                if (window_ended && !drain_until)
                        drain_until = now + 10000000000ull;
                if ((drain_until && now >= drain_until) || now - last_progress > tmo) {
                        for (int i = 0; i < n; i++)
                                if (cs[i].state != 0) {
                                        st.timeouts++;
                                        close(cs[i].fd);
                                        cs[i].state = 0;
                                }
                        break;
                }
        }
        t_win_start = t_begin;
        t_win_end = t_last_byte > t_begin ? t_last_byte : now;
        measuring = false;
        server_cpu_mark(false);
        free(cs);
        free(blk);
        free(blk_up);
}

/* ==================================================================== idle */

struct iconn {
        int fd;
        int state;              /* 0 not yet, 1 connecting, 2 pinging, 3 held, 4 dead */
        int attempts;
        unsigned v;
        size_t tx_off, rx_off;
        uint64_t t0, retry_at;
};

static long idle_in_progress;

static void iconn_dead(struct iconn *c, uint64_t *counter) {
        if (counter)
                (*counter)++;
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        if (c->state == 1 || c->state == 2)
                idle_in_progress--;
        c->state = 4;
}

static void iconn_ping(struct iconn *c, uint64_t now) {
        c->state = 2;
        c->t0 = now;
        c->tx_off = c->rx_off = 0;
        idle_in_progress++;
}

static void iconn_io(struct iconn *c, uint64_t now, uint32_t ev) {
        if (c->state == 1) {
                if (!connect_finished_ok(c->fd)) {
                        idle_in_progress--;
                        close(c->fd);
                        c->fd = -1;
                        if (++c->attempts >= 3) {
                                c->state = 4;
                                st.connect++;
                        } else {
                                c->state = 0;
                                c->retry_at = now + 50 * 1000000ull;
                        }
                        return;
                }
                c->state = 2;
                c->t0 = now;
        }
        if (c->state == 3) {
                /* A held connection should stay quiet. */
                if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                        ssize_t n = read(c->fd, rbuf, sizeof(rbuf));

                        if (n > 0)
                                note_wrong("idle: unsolicited data", rbuf, (size_t) n, "", 0);
                        if (n == 0 || (n < 0 && errno != EAGAIN))
                                iconn_dead(c, &st.closed);
                }
                return;
        }
        if (c->state != 2)
                return;
        while (c->tx_off < S) {
                ssize_t n = send(c->fd, req_v + (size_t) c->v * S + c->tx_off, S - c->tx_off, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        iconn_dead(c, &st.resets);
                        return;
                }
                c->tx_off += (size_t) n;
        }
        for (;;) {
                ssize_t n = read(c->fd, rbuf, sizeof(rbuf));
                const char *want = rep_v + (size_t) c->v * S + c->rx_off;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return;
                        iconn_dead(c, &st.resets);
                        return;
                }
                if (n == 0) {
                        iconn_dead(c, &st.closed);
                        return;
                }
                if ((size_t) n > S - c->rx_off || memcmp(rbuf, want, (size_t) n) != 0) {
                        note_wrong("idle ping reply", rbuf, (size_t) n, want, S - c->rx_off);
                        iconn_dead(c, NULL);
                        return;
                }
                c->rx_off += (size_t) n;
                if (c->rx_off == S) {
                        complete(now, c->t0, S);
                        idle_in_progress--;
                        c->state = 3;
                        return;
                }
        }
}

static void iconn_start(struct iconn *c, uint64_t now) {
        int r;

        c->fd = new_socket(SOCK_STREAM);
        if (c->fd < 0) {
                c->state = 4;
                st.connect++;
                return;
        }
        r = start_connect(c->fd);
        if (r < 0) {
                close(c->fd);
                c->fd = -1;
                if (++c->attempts >= 3) {
                        c->state = 4;
                        st.connect++;
                } else
                        c->retry_at = now + 50 * 1000000ull;
                return;
        }
        c->state = 1;
        c->t0 = now;
        c->tx_off = c->rx_off = 0;
        idle_in_progress++;
        ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, c);
        if (r == 1)
                iconn_io(c, now, EPOLLOUT);
}

/* Runs the loop until no connection is connecting or pinging, or until. */
static void idle_settle(struct iconn *cs, int n, int *next, uint64_t until) {
        const long max_inflight = MAX_OPENING;
        uint64_t now = now_ns(), last_scan = 0;

        for (;;) {
                int k;

                while (*next < n && idle_in_progress < max_inflight) {
                        if (cs[*next].state == 0)
                                iconn_start(&cs[*next], now);
                        (*next)++;
                }
                if (*next >= n && idle_in_progress == 0) {
                        bool retry = false;

                        for (int i = 0; i < n; i++)
                                if (cs[i].state == 0) {
                                        retry = true;
                                        break;
                                }
                        if (!retry)
                                return;
                }
                if (now >= until)
                        return;
                k = wait_events(now, until);
                now = now_ns();
                for (int i = 0; i < k; i++)
                        iconn_io(events[i].data.ptr, now, events[i].events);
                if (now - last_scan >= 10000000ull) {
                        last_scan = now;
                        for (int i = 0; i < n; i++)
                                if (cs[i].state == 0 && cs[i].attempts > 0 && now >= cs[i].retry_at &&
                                    idle_in_progress < max_inflight)
                                        iconn_start(&cs[i], now);
                }
        }
}

static void run_idle(void) {
        int n = o.conns, next = 0;
        struct iconn *cs = xcalloc((size_t) n, sizeof(*cs));
        uint64_t now, hold_end, rss_at;
        bool rss_done = false;

        raise_nofile((long) n + 64);
        for (int i = 0; i < n; i++) {
                cs[i].fd = -1;
                cs[i].v = (unsigned) i % NVARIANTS;
        }
        st.rss_before_kib = server_rss_kib();
        server_cpu_mark(true);
        measuring = true;
        t_win_start = now_ns();
        /* 1. open them all, each answering one request. */
        idle_settle(cs, n, &next, now_ns() + 60000000000ull);
        for (int i = 0; i < n; i++) {
                if (cs[i].state == 3)
                        st.opened++;
                else if (cs[i].state != 4) {
                        st.timeouts++;
                        iconn_dead(&cs[i], NULL);
                }
        }
        if (!o.quiet)
                fprintf(stderr, "uppercase-bench: holding %ld connections\n", st.opened);
        fflush(stderr);
        /* 2. hold them; the RSS is read halfway through. */
        now = now_ns();
        hold_end = now + (uint64_t) (o.duration * 1e9);
        rss_at = now + (uint64_t) (o.duration * 0.5e9);
        while (now < hold_end) {
                int k = wait_events(now, rss_done ? hold_end : rss_at);

                now = now_ns();
                for (int i = 0; i < k; i++)
                        iconn_io(events[i].data.ptr, now, events[i].events);
                if (!rss_done && now >= rss_at) {
                        st.rss_held_kib = server_rss_kib();
                        st.rss_valid = st.rss_before_kib >= 0 && st.rss_held_kib >= 0;
                        rss_done = true;
                }
        }
        if (!rss_done) {
                st.rss_held_kib = server_rss_kib();
                st.rss_valid = st.rss_before_kib >= 0 && st.rss_held_kib >= 0;
        }
        /* 3. ask each one again. */
        hist_reset(&lat);
        for (int i = 0; i < n; i++)
                if (cs[i].state == 3) {
                        iconn_ping(&cs[i], now_ns());
                        iconn_io(&cs[i], now_ns(), EPOLLOUT);
                }
        next = n;
        idle_settle(cs, n, &next, now_ns() + 10000000000ull);
        for (int i = 0; i < n; i++) {
                if (cs[i].state == 3)
                        st.open_end++;
                else if (cs[i].state == 2) {
                        st.timeouts++;
                        iconn_dead(&cs[i], NULL);
                }
        }
        t_win_end = now_ns();
        server_cpu_mark(false);
        measuring = false;
        for (int i = 0; i < n; i++)
                if (cs[i].fd >= 0)
                        close(cs[i].fd);
        free(cs);
}

/* ==================================================================== busy */

/* -c background peers stream lowercase lines and read the replies slowly:
 * each keeps --window bytes in flight (sent, reply not read yet) and reads
 * at most --peer-read bytes every --peer-interval ms.  By default 2,000 of
 * them ask for more than one server CPU can uppercase and move: every peer's
 * input is always waiting at the server.  Two probes show what a newcomer
 * gets meanwhile, each every --probe-interval ms: a line's round trip on a
 * persistent connection (the mode's latency), and a new connection
 * (connect, one line, its reply, close).
 *
 * The peers are driven by the clock alone, not by epoll (only the probes are
 * in the epoll set): peer i's turns are at i/N of the interval, and the loop
 * serves at most BUSY_PEER_BATCH of them between two looks at the probes, so
 * the generator's own delay in seeing a reply stays far below the latencies
 * measured.  How far its peers fall behind their schedule is reported. */

#define BUSY_PEER_BATCH 32

struct bpeer {
        int fd;                 /* -1: closed */
        uint64_t sent, recvd;
};

struct bprobe {
        int fd;                 /* -1: not connected */
        int state;              /* 0 waiting for its turn, 1 connecting, 2 request sent */
        bool persistent;
        unsigned v;
        size_t tx_off, rx_off;
        uint64_t t0, due;
};

static struct {
        long opened, open_end;
        uint64_t reads, full, empty;    /* peer turns in the window, by what recv() got */
        uint64_t lag_max, lag_sum;      /* ns the peers' turns came late */
        uint64_t probes_started;
        double ramp_s;                  /* connecting the peers */
        struct hist connect;            /* the new-connection probe, from connect() */
} bz;

/* Waits for fd to be ready for events (poll); false on a timeout. */
static bool busy_poll(int fd, short what) {
        struct pollfd pfd = { .fd = fd, .events = what };

        return poll(&pfd, 1, (int) (timeout_s() * 1000)) == 1;
}

/* Connects one socket while all is quiet, and has one line answered: one
 * connection at a time is never more than the server's backlog holds (an
 * overflow would cost a second-long SYN retry).  -1 on failure. */
static int busy_connect_one(unsigned v, int rcvbuf) {
        const char *req = req_v + (size_t) v * S, *want = rep_v + (size_t) v * S;
        int fd = new_socket(SOCK_STREAM), r;
        size_t got = 0;

        if (fd < 0)
                return -1;
        /* Before connect(): the window scale is chosen then. */
        if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
                die("SO_RCVBUF: %s", strerror(errno));
        r = start_connect(fd);
        if (r == 0)
                r = busy_poll(fd, POLLOUT) && connect_finished_ok(fd) ? 1 : -1;
        if (r < 0 || send(fd, req, S, MSG_NOSIGNAL) != (ssize_t) S)
                goto fail;
        while (got < S && busy_poll(fd, POLLIN)) {
                ssize_t n = recv(fd, rbuf + got, S - got, MSG_DONTWAIT);

                if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
                        goto fail;
                got += n > 0 ? (size_t) n : 0;
        }
        if (got == S && memcmp(rbuf, want, S) == 0)
                return fd;
        if (got == S)
                note_wrong("busy peer's first reply", rbuf, S, want, S);
fail:
        close(fd);
        return -1;
}

static void bpeer_dead(struct bpeer *p, uint64_t *counter) {
        (*counter)++;
        close(p->fd);
        p->fd = -1;
}

/* Checks n reply bytes in rbuf, the stream's bytes from p->recvd on. */
static bool bpeer_verify(struct bpeer *p, size_t n) {
        for (size_t at = 0; at < n;) {
                size_t off = (size_t) ((p->recvd + at) % blk_len), k = blk_len - off;

                if (k > n - at)
                        k = n - at;
                if (memcmp(rbuf + at, blk_up + off, k) != 0) {
                        note_wrong("busy peer stream", rbuf + at, k, blk_up + off, k);
                        return false;
                }
                at += k;
        }
        return true;
}

/* A peer's turn: one read of at most --peer-read bytes, then enough sent to
 * have --window bytes in flight again, twice --peer-read at most: the window
 * fills over a few turns, not all at the first one (2,000 peers' windows at
 * once would put the generator behind its schedule for seconds). */
static void bpeer_turn(struct bpeer *p) {
        ssize_t n = recv(p->fd, rbuf, (size_t) o.peer_read, MSG_DONTWAIT);
        uint64_t cap;

        if (n < 0 && errno != EAGAIN && errno != EINTR) {
                bpeer_dead(p, &st.resets);
                return;
        }
        if (n == 0) {
                bpeer_dead(p, &st.closed);
                return;
        }
        if (measuring) {
                bz.reads++;
                bz.full += n == (ssize_t) o.peer_read;
                bz.empty += n < 0;
        }
        if (n > 0) {
                if (!bpeer_verify(p, (size_t) n)) {
                        bpeer_dead(p, &st.closed);
                        return;
                }
                p->recvd += (uint64_t) n;
                if (measuring)
                        st.bytes_in += (uint64_t) n;
        }
        cap = p->sent + 2 * o.peer_read;
        while (p->sent - p->recvd < o.window && p->sent < cap) {
                size_t off = (size_t) (p->sent % blk_len), len = blk_len - off;

                if (len > o.window - (p->sent - p->recvd))
                        len = (size_t) (o.window - (p->sent - p->recvd));
                if (len > cap - p->sent)
                        len = (size_t) (cap - p->sent);
                n = send(p->fd, blk + off, len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        bpeer_dead(p, &st.resets);
                        return;
                }
                p->sent += (uint64_t) n;
                if (measuring)
                        st.bytes_out += (uint64_t) n;
        }
}

static void bprobe_close(struct bprobe *pr) {
        if (pr->fd >= 0)
                close(pr->fd);
        pr->fd = -1;
        pr->state = 0;
}

static void bprobe_fail(struct bprobe *pr, uint64_t now, uint64_t *counter) {
        (*counter)++;
        bprobe_close(pr);
        pr->due = now + 10 * 1000000ull;
}

static void bprobe_done(struct bprobe *pr, uint64_t now) {
        uint64_t every = (uint64_t) (o.probe_interval_ms * 1e6);

        if (pr->persistent)
                complete(now, pr->t0, S);
        else {
                st.total++;
                if (measuring) {
                        st.requests++;
                        hist_add(&bz.connect, now - pr->t0);
                }
                bprobe_close(pr);
        }
        pr->state = 0;
        pr->due = pr->t0 + every > now ? pr->t0 + every : now;
}

/* Sends the request once connected, then reads the reply (edge-triggered:
 * until EAGAIN). */
static void bprobe_io(struct bprobe *pr, uint64_t now) {
        if (pr->state == 1) {
                if (!connect_finished_ok(pr->fd)) {
                        bprobe_fail(pr, now, &st.connect);
                        return;
                }
                pr->state = 2;
        }
        if (pr->state != 2)
                return;
        while (pr->tx_off < S) {
                ssize_t n = send(pr->fd, req_v + (size_t) pr->v * S + pr->tx_off, S - pr->tx_off, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n < 0) {
                        bprobe_fail(pr, now, &st.resets);
                        return;
                }
                pr->tx_off += (size_t) n;
        }
        for (;;) {
                ssize_t n = read(pr->fd, rbuf, S - pr->rx_off);
                const char *want = rep_v + (size_t) pr->v * S + pr->rx_off;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0) {
                        bprobe_fail(pr, now, n == 0 ? &st.closed : &st.resets);
                        return;
                }
                if (memcmp(rbuf, want, (size_t) n) != 0) {
                        note_wrong("busy probe reply", rbuf, (size_t) n, want, S - pr->rx_off);
                        bprobe_fail(pr, now, &st.closed);
                        return;
                }
                pr->rx_off += (size_t) n;
                if (pr->rx_off == S) {
                        bprobe_done(pr, now);
                        return;
                }
        }
}

/* Its turn: a line on the open connection, or connect first. */
static void bprobe_start(struct bprobe *pr, uint64_t now) {
        int r;

        pr->t0 = now;
        pr->v = (unsigned) (bz.probes_started++ % NVARIANTS);
        pr->tx_off = pr->rx_off = 0;
        if (pr->fd >= 0) {
                pr->state = 2;
                bprobe_io(pr, now);
                return;
        }
        pr->fd = new_socket(SOCK_STREAM);
        if (pr->fd < 0) {
                bprobe_fail(pr, now, &st.connect);
                return;
        }
        r = start_connect(pr->fd);
        if (r < 0) {
                bprobe_fail(pr, now, &st.connect);
                return;
        }
        pr->state = 1;
        ep_ctl(EPOLL_CTL_ADD, pr->fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, pr);
        if (r == 1)
                bprobe_io(pr, now);
}

/* Starts the probes whose turn it is; gives up on stalled ones. */
static void bprobe_check(struct bprobe *probes, uint64_t now) {
        uint64_t tmo = (uint64_t) (timeout_s() * 1e9);

        for (int i = 0; i < 2; i++) {
                struct bprobe *pr = &probes[i];

                if (pr->state == 0 && issuing && now >= pr->due)
                        bprobe_start(pr, now);
                else if (pr->state != 0 && now - pr->t0 > tmo)
                        bprobe_fail(pr, now, &st.timeouts);
        }
}

/* Serves the peers whose turn has come, BUSY_PEER_BATCH at most. */
static void busy_turns(struct bpeer *ps, int n, int *next, uint64_t *round, uint64_t now) {
        uint64_t every = (uint64_t) (o.peer_interval_ms * 1e6);

        for (int k = 0; k < BUSY_PEER_BATCH; k++) {
                uint64_t due = *round + (uint64_t) *next * every / (uint64_t) n;

                if (due > now)
                        return;
                if (ps[*next].fd >= 0) {
                        bpeer_turn(&ps[*next]);
                        if (measuring) {
                                bz.lag_sum += now - due;
                                if (now - due > bz.lag_max)
                                        bz.lag_max = now - due;
                        }
                }
                if (++*next == n) {
                        *next = 0;
                        *round += every;
                }
        }
}

/* When the loop has something to do next: a peer's turn, a probe's turn,
 * the end of the window. */
static uint64_t busy_next_due(const struct bprobe *probes, int n, int next, uint64_t round) {
        uint64_t at = round + (uint64_t) next * (uint64_t) (o.peer_interval_ms * 1e6) / (uint64_t) n;

        for (int i = 0; i < 2; i++)
                if (probes[i].state == 0 && probes[i].due < at)
                        at = probes[i].due;
        if (!window_started && t_measure < at)
                at = t_measure;
        return t_end < at ? t_end : at;
}

/* Waits for the probes' events until at (to the microsecond), 10 ms at
 * most: epoll_wait()'s milliseconds would make the peers' turns late. */
static int busy_wait(uint64_t at, uint64_t now) {
        uint64_t ns = at > now ? at - now : 0;
        struct timespec ts;
        int k;

        if (ns > 10000000ull)
                ns = 10000000ull;
        ts = (struct timespec) { .tv_sec = 0, .tv_nsec = (long) ns };
        k = epoll_pwait2(ep, events, MAX_EVENTS, &ts, NULL);
        if (k < 0 && errno != EINTR)
                die("epoll_pwait2: %s", strerror(errno));
        return k < 0 ? 0 : k;
}

static void run_busy(void) {
        int n = o.conns, next = 0;
        struct bpeer *ps = xcalloc((size_t) n, sizeof(*ps));
        struct bprobe probes[2] = { { .fd = -1, .persistent = true }, { .fd = -1 } };
        uint64_t now = now_ns(), round;
        bool reset = false;

        if (o.peer_read > sizeof(rbuf))
                die("--peer-read at most %zu", sizeof(rbuf));
        raise_nofile((long) n + 64);
        make_block();
        /* 1. the peers and the persistent probe connect while all is quiet. */
        for (int i = 0; i < n; i++) {
                ps[i].fd = busy_connect_one((unsigned) i % NVARIANTS, (int) o.peer_rcvbuf);
                if (ps[i].fd < 0)
                        st.connect++;
                else
                        bz.opened++;
        }
        probes[0].fd = busy_connect_one(0, 0);
        if (probes[0].fd < 0)
                die("busy: the probe cannot connect");
        ep_ctl(EPOLL_CTL_ADD, probes[0].fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &probes[0]);
        now = now_ns();
        bz.ramp_s = (double) (now - t_begin) / 1e9;
        /* 2. they stream: warm-up, then the measured window. */
        round = now;
        t_measure = now + (uint64_t) (o.warmup * 1e9);
        t_end = t_measure + (uint64_t) (o.duration * 1e9);
        probes[0].due = probes[1].due = now;
        while (!window_ended) {
                int k = busy_wait(busy_next_due(probes, n, next, round), now);

                now = now_ns();
                window_tick(now);
                if (measuring && !reset) {
                        reset = true;
                        hist_reset(&bz.connect);
                }
                for (int i = 0; i < k; i++)
                        bprobe_io(events[i].data.ptr, now);
                bprobe_check(probes, now);
                busy_turns(ps, n, &next, &round, now_ns());
        }
        for (int i = 0; i < n; i++)
                if (ps[i].fd >= 0) {
                        bz.open_end++;
                        close(ps[i].fd);
                }
        for (int i = 0; i < 2; i++)
                bprobe_close(&probes[i]);
        free(ps);
        free(blk);
        free(blk_up);
}

/* ================================================================== report */

static void report_hist_json(const char *name, const struct hist *h) {
        printf("\"%s\":{\"samples\":%" PRIu64 ",\"mean\":%.2f,\"p50\":%.2f,\"p99\":%.2f,\"p999\":%.2f,"
               "\"max\":%.2f}", name, h->n, hist_mean_us(h), hist_quantile_us(h, 0.5), hist_quantile_us(h, 0.99),
               hist_quantile_us(h, 0.999), (double) h->max / 1000.0);
}

static void report_busy_json(double win) {
        printf("\"busy\":{\"peers\":%d,\"peers_open\":%ld,\"peers_open_end\":%ld,\"peer_read\":%" PRIu64
               ",\"peer_interval_ms\":%.3f,\"window\":%" PRIu64 ",\"probe_interval_ms\":%.3f,"
               "\"connect_s\":%.3f,\"peer_mb_per_s\":%.3f,\"peer_reads\":%" PRIu64
               ",\"peer_full_pct\":%.2f,\"peer_empty_pct\":%.2f,\"peer_lag_ms_mean\":%.3f,"
               "\"peer_lag_ms_max\":%.3f,",
               o.conns, bz.opened, bz.open_end, o.peer_read, o.peer_interval_ms, o.window, o.probe_interval_ms,
               bz.ramp_s, (double) st.bytes_in / win / 1e6, bz.reads,
               bz.reads ? 100.0 * (double) bz.full / (double) bz.reads : 0.0,
               bz.reads ? 100.0 * (double) bz.empty / (double) bz.reads : 0.0,
               bz.reads ? (double) bz.lag_sum / (double) bz.reads / 1e6 : 0.0, (double) bz.lag_max / 1e6);
        report_hist_json("roundtrip_us", &lat);
        putchar(',');
        report_hist_json("connect_us", &bz.connect);
        printf("},");
}

static void report_busy_text(double win) {
        printf("  peers             %ld of %d open (%ld at the end), connected in %.2f s; each reads %" PRIu64
               " B every %.1f ms, %" PRIu64 " B in flight\n",
               bz.opened, o.conns, bz.open_end, bz.ramp_s, o.peer_read, o.peer_interval_ms, o.window);
        printf("  peers read        %.1f MB/s; %.1f%% of their reads full, %.1f%% empty; turns late by %.2f ms on "
               "average, %.2f ms at most\n",
               (double) st.bytes_in / win / 1e6, bz.reads ? 100.0 * (double) bz.full / (double) bz.reads : 0.0,
               bz.reads ? 100.0 * (double) bz.empty / (double) bz.reads : 0.0,
               bz.reads ? (double) bz.lag_sum / (double) bz.reads / 1e6 : 0.0, (double) bz.lag_max / 1e6);
        printf("  round trip (us)   p50 %.1f  p99 %.1f  max %.1f  (%" PRIu64 " probes, one every %.0f ms)\n",
               hist_quantile_us(&lat, 0.5), hist_quantile_us(&lat, 0.99), (double) lat.max / 1000.0, lat.n,
               o.probe_interval_ms);
        printf("  new connection    p50 %.1f  p99 %.1f  max %.1f  (%" PRIu64 " probes, connect to reply)\n",
               hist_quantile_us(&bz.connect, 0.5), hist_quantile_us(&bz.connect, 0.99),
               (double) bz.connect.max / 1000.0, bz.connect.n);
}

static void report(void) {
        double win = (double) (t_win_end - t_win_start) / 1e9;
        double rps, mbps, cpu_s = -1, cpu_per_req = -1, cpu_util = -1, faults_per_req = -1;

        if (win <= 0)
                win = 1e-9;
        st.window = win;
        rps = (double) st.requests / win;
        mbps = (double) st.bytes_in / win / 1e6;
        if (cpu_valid && o.server_pid > 0) {
                cpu_s = (double) (int64_t) (cpu_end - cpu_start) / 1e9;
                cpu_util = cpu_s / win;
                if (o.mode == M_STREAM)
                        cpu_per_req = st.bytes_in ? cpu_s * 1e6 / ((double) st.bytes_in / 1048576.0) : -1;
                else
                        cpu_per_req = st.requests ? cpu_s * 1e6 / (double) st.requests : -1;
                if (st.requests)
                        faults_per_req = (double) (faults_end - faults_start) / (double) st.requests;
        }
        if (o.json) {
                printf("{\"mode\":\"%s\",\"host\":\"%s\",\"port\":%d,\"connections\":%d,\"pipeline\":%d,"
                       "\"size\":%zu,\"echo\":%s,\"duration_s\":%.6f,\"requests\":%" PRIu64
                       ",\"total_completed\":%" PRIu64 ",\"req_per_s\":%.1f,\"mb_per_s\":%.3f,"
                       "\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",",
                       mode_names[o.mode], o.host, o.port, o.conns, o.pipeline, S, o.echo ? "true" : "false",
                       win, st.requests, st.total, rps, mbps, st.bytes_in, st.bytes_out);
                printf("\"latency_us\":{\"samples\":%" PRIu64 ",\"mean\":%.2f,\"p50\":%.2f,\"p99\":%.2f,"
                       "\"p999\":%.2f,\"max\":%.2f},",
                       lat.n, hist_mean_us(&lat), hist_quantile_us(&lat, 0.5), hist_quantile_us(&lat, 0.99),
                       hist_quantile_us(&lat, 0.999), (double) lat.max / 1000.0);
                printf("\"errors\":{\"wrong\":%" PRIu64 ",\"resets\":%" PRIu64 ",\"closed\":%" PRIu64
                       ",\"connect\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"late\":%" PRIu64
                       "},\"errors_total\":%" PRIu64 ",",
                       st.wrong, st.resets, st.closed, st.connect, st.timeouts, st.lost, st.late, errors_total());
                printf("\"client_cpu_util\":%.3f,", (self_cpu_end - self_cpu_start) / win);
                if (o.server_pid > 0 && cpu_valid)
                        printf("\"server\":{\"pid\":%d,\"cpu_s\":%.3f,\"cpu_us_per_%s\":%.3f,\"cpu_util\":%.3f,"
                               "\"faults_per_req\":%.2f},",
                               (int) o.server_pid, cpu_s, o.mode == M_STREAM ? "mib" : "req", cpu_per_req, cpu_util,
                               faults_per_req);
                else
                        printf("\"server\":null,");
                if (o.mode == M_UDP)
                        printf("\"udp\":{\"gso\":%s},", udp_gso ? "true" : "false");
                if (o.mode == M_TCP)
                        printf("\"tcp\":{\"ramp_s\":%.3f,\"serving_at_start\":%ld},", st.ramp_s,
                               st.serving_start);
                if (o.mode == M_IDLE) {
                        printf("\"idle\":{\"wanted\":%d,\"opened\":%ld,\"open_end\":%ld,", o.conns, st.opened,
                               st.open_end);
                        if (st.rss_valid)
                                printf("\"rss_before_kib\":%ld,\"rss_held_kib\":%ld,\"rss_bytes_per_conn\":%.1f},",
                                       st.rss_before_kib, st.rss_held_kib,
                                       st.opened ? (double) (st.rss_held_kib - st.rss_before_kib) * 1024.0 /
                                                           (double) st.opened
                                                 : 0.0);
                        else
                                printf("\"rss_before_kib\":null,\"rss_held_kib\":null,\"rss_bytes_per_conn\":null},");
                }
                if (o.mode == M_BUSY)
                        report_busy_json(win);
                printf("\"wrong_example\":");
                if (wrong_note) {
                        putchar('"');
                        for (const char *p = wrong_note; *p; p++) {
                                if (*p == '"' || *p == '\\')
                                        printf("\\%c", *p);
                                else if ((unsigned char) *p < 0x20)
                                        printf("\\u%04x", (unsigned char) *p);
                                else
                                        putchar(*p);
                        }
                        putchar('"');
                } else
                        printf("null");
                printf(",\"ok\":%s}\n", (st.wrong == 0 && some_done()) ? "true" : "false");
                return;
        }
        printf("mode %s, %s port %d, %d %s", mode_names[o.mode], o.host, o.port, o.conns,
               o.mode == M_UDP ? "in flight" : "connections");
        if (o.mode == M_TCP)
                printf(", %d pipelined", o.pipeline);
        if (o.mode == M_UDP)
                printf(", %s", udp_gso ? "sent with GSO" : "sent one by one");
        printf(", %zu-byte requests%s, %.2f s measured\n", S, o.echo ? " (echo)" : "", win);
        if (o.mode == M_TCP)
                printf("  opened            in %.3f s, %ld of %d served when the window started\n", st.ramp_s,
                       st.serving_start, o.conns);
        if (o.mode == M_IDLE) {
                printf("  open              %ld of %d held, %ld still answering at the end\n", st.opened, o.conns,
                       st.open_end);
                if (st.rss_valid)
                        printf("  server RSS        %ld KiB before, %ld KiB held: %.0f bytes per connection\n",
                               st.rss_before_kib, st.rss_held_kib,
                               st.opened ? (double) (st.rss_held_kib - st.rss_before_kib) * 1024.0 /
                                                   (double) st.opened
                                         : 0.0);
        } else if (o.mode == M_STREAM)
                printf("  throughput        %.1f MB/s (%" PRIu64 " bytes back)\n", mbps, st.bytes_in);
        else if (o.mode == M_BUSY)
                report_busy_text(win);
        else
                printf("  throughput        %.0f req/s, %.2f MB/s\n", rps, mbps);
        if (o.mode != M_STREAM && o.mode != M_BUSY)
                printf("  latency (us)      p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", hist_quantile_us(&lat, 0.5),
                       hist_quantile_us(&lat, 0.99), hist_quantile_us(&lat, 0.999), (double) lat.max / 1000.0);
        if (cpu_per_req >= 0)
                printf("  server CPU        %.3f s, %.2f us per %s, %.0f%% of one CPU\n", cpu_s, cpu_per_req,
                       o.mode == M_STREAM ? "MiB" : "request", cpu_util * 100);
        if (faults_per_req >= 0 && o.mode != M_STREAM)
                printf("  server faults     %.2f minor page faults per request\n", faults_per_req);
        printf("  generator CPU     %.0f%% of one CPU\n", (self_cpu_end - self_cpu_start) / win * 100);
        printf("  errors            %" PRIu64 " (wrong %" PRIu64 ", resets %" PRIu64 ", closed %" PRIu64
               ", connect %" PRIu64 ", timeouts %" PRIu64 ", lost %" PRIu64 "; late %" PRIu64 ")\n",
               errors_total(), st.wrong, st.resets, st.closed, st.connect, st.timeouts, st.lost, st.late);
}

/* =================================================================== main */

static void usage(FILE *f) {
        fputs("Usage: uppercase-bench tcp|connect|udp|stream|idle|busy [options]\n"
              "\n"
              "  -c, --connections N  connections (tcp 64, connect 64, stream 1, idle 1000,\n"
              "                       busy 2000 background peers),\n"
              "                       datagrams in flight (udp 256)\n"
              "  -p, --pipeline P     tcp: requests in flight per connection (default 1)\n"
              "  -s, --size BYTES     request size, \"\\n\" included (default 16)\n"
              "  -d, --duration SEC   measured time (default 5); idle: time held\n"
              "  -w, --warmup SEC     unmeasured time first (default 1; not for stream/idle)\n"
              "  -b, --bytes N[KMG]   stream: bytes to send in all (default 256M)\n"
              "      --sockets K      udp: sockets (default 4)\n"
              "      --no-gso         udp: send datagram by datagram (sendmmsg), not as\n"
              "                       one UDP GSO message per batch\n"
              "      --timeout MS     udp: resend after (default 200); others: stall limit (5000)\n"
              "      --peer-read N[KMG]    busy: a peer reads at most this much per turn (32K)\n"
              "      --peer-interval MS    busy: a peer's turns are this far apart (50)\n"
              "      --window N[KMG]       busy: bytes a peer keeps in flight (256K)\n"
              "      --peer-rcvbuf N[KMG]  busy: the peers' SO_RCVBUF (default: the system's)\n"
              "      --probe-interval MS   busy: the probes' turns (10)\n"
              "      --echo           expect the request back unchanged (echo servers)\n"
              "      --server-pid PID report the server's CPU time and page faults (and RSS\n"
              "                       for idle)\n"
              "      --json           one JSON object on stdout\n"
              "  -4, -6               IPv4 (127.0.0.1) or IPv6 (::1)\n"
              "  -H, --host ADDR      numeric server address\n"
              "  -P, --port PORT      server port (default 12000)\n"
              "  -q, --quiet          no notes on stderr\n"
              "  -h, --help\n",
              f);
}

static double parse_double(const char *s, const char *what) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || *end || v < 0 || v > 1e9) {
                fprintf(stderr, "uppercase-bench: bad %s: %s\n", what, s);
                exit(2);
        }
        return v;
}

static long parse_long(const char *s, const char *what, long min, long max) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max) {
                fprintf(stderr, "uppercase-bench: bad %s: %s (%ld..%ld)\n", what, s, min, max);
                exit(2);
        }
        return v;
}

static uint64_t parse_size(const char *s) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s)
                goto bad;
        switch (*end) {
        case 'k': case 'K': v <<= 10; end++; break;
        case 'm': case 'M': v <<= 20; end++; break;
        case 'g': case 'G': v <<= 30; end++; break;
        default: break;
        }
        if (*end == 'i' || *end == 'B')
                end++;
        if (*end == 'B')
                end++;
        if (*end || v == 0)
                goto bad;
        return v;
bad:
        fprintf(stderr, "uppercase-bench: bad byte count: %s\n", s);
        exit(2);
}

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                { "connections", required_argument, NULL, 'c' },
                { "pipeline", required_argument, NULL, 'p' },
                { "size", required_argument, NULL, 's' },
                { "duration", required_argument, NULL, 'd' },
                { "warmup", required_argument, NULL, 'w' },
                { "bytes", required_argument, NULL, 'b' },
                { "sockets", required_argument, NULL, 6 },
                { "no-gso", no_argument, NULL, 12 },
                { "timeout", required_argument, NULL, 2 },
                { "echo", no_argument, NULL, 3 },
                { "server-pid", required_argument, NULL, 4 },
                { "json", no_argument, NULL, 5 },
                { "host", required_argument, NULL, 'H' },
                { "port", required_argument, NULL, 'P' },
                { "quiet", no_argument, NULL, 'q' },
                { "help", no_argument, NULL, 'h' },
                { "peer-read", required_argument, NULL, 7 },
                { "peer-interval", required_argument, NULL, 8 },
                { "window", required_argument, NULL, 9 },
                { "probe-interval", required_argument, NULL, 10 },
                { "peer-rcvbuf", required_argument, NULL, 11 },
                { NULL, 0, NULL, 0 },
        };
        const char *mode = NULL;
        int c;
        size_t size_given = 0;

        while ((c = getopt_long(argc, argv, "-c:p:s:d:w:b:H:P:46qh", longopts, NULL)) != -1) {
                switch (c) {
                case 1:
                        if (mode) {
                                fprintf(stderr, "uppercase-bench: one mode only: %s %s\n", mode, optarg);
                                return 2;
                        }
                        mode = optarg;
                        break;
                case 6:
                        o.sockets = (int) parse_long(optarg, "socket count", 1, 1024);
                        break;
                case 'c': o.conns = (int) parse_long(optarg, "connection count", 1, 1000000); break;
                case 'p': o.pipeline = (int) parse_long(optarg, "pipeline depth", 1, 1 << 20); break;
                case 's': size_given = (size_t) parse_long(optarg, "size", 2, 1 << 24); break;
                case 'd': o.duration = parse_double(optarg, "duration"); break;
                case 'w': o.warmup = parse_double(optarg, "warm-up"); break;
                case 'b': o.bytes = parse_size(optarg); break;
                case 2: o.timeout_ms = parse_double(optarg, "timeout"); break;
                case 3: o.echo = true; break;
                case 7: o.peer_read = parse_size(optarg); break;
                case 8: o.peer_interval_ms = parse_double(optarg, "peer interval"); break;
                case 9: o.window = parse_size(optarg); break;
                case 10: o.probe_interval_ms = parse_double(optarg, "probe interval"); break;
                case 11: o.peer_rcvbuf = parse_size(optarg); break;
                case 12: o.no_gso = true; break;
                case 4: o.server_pid = (pid_t) parse_long(optarg, "pid", 1, INT_MAX); break;
                case 5: o.json = true; break;
                case 'H': o.host = optarg; break;
                case 'P': o.port = (int) parse_long(optarg, "port", 1, 65535); break;
                case '4': o.family = AF_INET; break;
                case '6': o.family = AF_INET6; break;
                case 'q': o.quiet = true; break;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (!mode) {
                usage(stderr);
                return 2;
        }
        for (c = 0; c < (int) (sizeof(mode_names) / sizeof(mode_names[0])); c++)
                if (strcmp(mode, mode_names[c]) == 0)
                        break;
        if (c == (int) (sizeof(mode_names) / sizeof(mode_names[0]))) {
                fprintf(stderr, "uppercase-bench: unknown mode %s\n", mode);
                usage(stderr);
                return 2;
        }
        o.mode = (enum mode) c;
        if (o.conns < 0)
                o.conns = o.mode == M_UDP ? 256 : o.mode == M_STREAM ? 1 : o.mode == M_IDLE ? 1000 : o.mode == M_BUSY ? 2000 : 64;
        if (o.mode == M_UDP && !size_given)
                size_given = 16;
        if (size_given)
                o.size = size_given;
        S = o.size;
        if (o.mode != M_TCP)
                o.pipeline = 1;
        clk_tck = sysconf(_SC_CLK_TCK);
        signal(SIGPIPE, SIG_IGN);
        resolve();
        make_variants();
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                die("epoll_create1: %s", strerror(errno));
        t_begin = now_ns();
        t_measure = t_begin + (uint64_t) (o.warmup * 1e9);
        t_end = t_measure + (uint64_t) (o.duration * 1e9);
        switch (o.mode) {
        case M_TCP: run_tcp(); break;
        case M_CONNECT: run_connect(); break;
        case M_UDP: run_udp(); break;
        case M_STREAM: run_stream(); break;
        case M_IDLE: run_idle(); break;
        case M_BUSY: run_busy(); break;
        }
        if (!window_ended && o.mode != M_STREAM && o.mode != M_IDLE) {
                t_win_end = now_ns();
                server_cpu_mark(false);
        }
        report();
        fflush(stdout);
        if (st.wrong) {
                if (!o.quiet)
                        fprintf(stderr, "uppercase-bench: %" PRIu64 " wrong replies\n", st.wrong);
                return 1;
        }
        if (!some_done()) {
                if (!o.quiet)
                        fprintf(stderr, "uppercase-bench: no reply completed\n");
                return 1;
        }
        return 0;
}
