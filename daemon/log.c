/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* CODE_FILE/CODE_LINE would always name this file: leave them out. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "duration.h"
#include "log.h"

/* Longest daemon message; longer ones are cut. */
#define LOG_MSG_MAX 2048
#define MESSAGE_KEY "MESSAGE="

static atomic_int log_target = LOG_TARGET_STDERR;
static atomic_int log_max_priority = LOG_INFO;

/* Serialises stderr lines so that threads never interleave them. */
static pthread_mutex_t stderr_lock = PTHREAD_MUTEX_INITIALIZER;

/* Client entry state: the switch, the shared token bucket, what it refused
 * since the last summary, and where to count that for the control socket. */
static pthread_mutex_t client_lock = PTHREAD_MUTEX_INITIALIZER;
static bool client_enabled = true;
static struct ratelimit client_rl;
static uint64_t client_suppressed;
static struct shared *client_shared;

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ---- token bucket ---- */

/* A bucket that holds no token would refuse everything forever. */
static uint64_t bucket_size(unsigned burst) {
        return burst > 0 ? burst : 1;
}

void ratelimit_init(struct ratelimit *rl, unsigned rate, unsigned burst, uint64_t now_usec) {
        rl->rate = rate;
        rl->burst = bucket_size(burst);
        rl->tokens_x1e6 = rl->burst * USEC_PER_SEC;
        rl->last_usec = now_usec;
}

/* Tokens are kept in millionths, so rate tokens/s add exactly rate
 * millionths per microsecond. */
static void ratelimit_refill(struct ratelimit *rl, uint64_t now_usec) {
        uint64_t full = rl->burst * USEC_PER_SEC, elapsed;

        /* A caller with an older clock reading refills nothing. */
        if (now_usec <= rl->last_usec)
                return;
        elapsed = now_usec - rl->last_usec;
        rl->last_usec = now_usec;

        /* Compare before multiplying: a long pause must not overflow. */
        if (elapsed > (full - rl->tokens_x1e6) / rl->rate)
                rl->tokens_x1e6 = full;
        else
                rl->tokens_x1e6 += elapsed * rl->rate;
}

unsigned ratelimit_take_n(struct ratelimit *rl, unsigned n, uint64_t now_usec) {
        uint64_t have;

        if (rl->rate == 0)
                return n;
        ratelimit_refill(rl, now_usec);
        have = rl->tokens_x1e6 / USEC_PER_SEC;
        if (have < n)
                n = (unsigned) have;
        rl->tokens_x1e6 -= (uint64_t) n * USEC_PER_SEC;
        return n;
}

bool ratelimit_take(struct ratelimit *rl, uint64_t now_usec) {
        return ratelimit_take_n(rl, 1, now_usec) == 1;
}

/* ---- setup ---- */

enum log_target log_detect_target(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int end = 0;

        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &end) != 2 || e[end] != '\0')
                return LOG_TARGET_STDERR;
        if (fstat(STDERR_FILENO, &st) < 0)
                return LOG_TARGET_STDERR;
        if (st.st_dev != dev || st.st_ino != ino)
                return LOG_TARGET_STDERR;
        return LOG_TARGET_JOURNAL;
}

/* fork() while another thread holds a lock would leave it held forever in
 * the child: take both locks across fork().  The child also starts with no
 * pending summary, or it would repeat its parent's. */
static void atfork_prepare(void) {
        pthread_mutex_lock(&client_lock);
        pthread_mutex_lock(&stderr_lock);
}

static void atfork_parent(void) {
        pthread_mutex_unlock(&stderr_lock);
        pthread_mutex_unlock(&client_lock);
}

static void atfork_child(void) {
        client_suppressed = 0;
        atfork_parent();
}

static void atfork_register(void) {
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void log_setup(enum log_target target, int max_priority) {
        pthread_once(&atfork_once, atfork_register);
        atomic_store(&log_target, target);
        atomic_store(&log_max_priority, LOG_PRI(max_priority));
}

void log_set_client_limits(bool enabled, unsigned rate, unsigned burst) {
        pthread_mutex_lock(&client_lock);
        client_enabled = enabled;
        /* Reloading the same settings must not refill the bucket. */
        if (client_rl.rate != rate || client_rl.burst != bucket_size(burst))
                ratelimit_init(&client_rl, rate, burst, now_usec_monotonic());
        pthread_mutex_unlock(&client_lock);
}

void log_set_shared(struct shared *sh) {
        pthread_mutex_lock(&client_lock);
        client_shared = sh;
        pthread_mutex_unlock(&client_lock);
}

/* ---- output ---- */

static bool log_wanted(int priority) {
        return LOG_PRI(priority) <= atomic_load_explicit(&log_max_priority, memory_order_relaxed);
}

static struct iovec iov_string(const char *s) {
        return (struct iovec) { .iov_base = (char *) s, .iov_len = strlen(s) };
}

static const char *stderr_prefix(int priority) {
        if (priority <= LOG_ERR)
                return "error: ";
        if (priority == LOG_WARNING)
                return "warning: ";
        return "";
}

static void stderr_write(int priority, const char *text) {
        struct iovec iov[] = {
                iov_string(stderr_prefix(priority)),
                iov_string(text),
                iov_string("\n"),
        };

        /* One writev() per line; nothing sensible to do if it fails. */
        pthread_mutex_lock(&stderr_lock);
        while (writev(STDERR_FILENO, iov, 3) < 0 && errno == EINTR)
                ;
        pthread_mutex_unlock(&stderr_lock);
}

static int journal_send(const struct iovec *fields, size_t n) {
        struct iovec iov[LOG_FIELDS_MAX + 2];

        if (n + 1 > sizeof(iov) / sizeof(iov[0]))
                return -E2BIG;
        memcpy(iov, fields, n * sizeof(fields[0]));
        iov[n++] = iov_string("SYSLOG_IDENTIFIER=uppercased");
        return sd_journal_sendv(iov, (int) n);
}

/* fields[0] is "MESSAGE=text".  Should the journal refuse the entry, say it
 * on stderr, which journald reads as well.  (libsystemd itself reports
 * success when journald is not running at all.) */
static void log_emit(int priority, const struct iovec *fields, size_t n) {
        const char *text = (const char *) fields[0].iov_base + strlen(MESSAGE_KEY);

        if (atomic_load_explicit(&log_target, memory_order_relaxed) == LOG_TARGET_JOURNAL &&
            journal_send(fields, n) >= 0)
                return;
        stderr_write(priority, text);
}

/* ---- daemon messages ---- */

static void log_msgv(int priority, const char *message_id, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

/* message_id: NULL, or one of LOG_ID_*. */
static void log_msgv(int priority, const char *message_id, const char *fmt, va_list ap) {
        int saved_errno = errno;
        char msg[LOG_MSG_MAX] = MESSAGE_KEY, prio[16], id[LOG_FIELD_MAX];
        size_t off = strlen(MESSAGE_KEY);

        priority = LOG_PRI(priority);
        if (!log_wanted(priority))
                return;

        /* Restored for "%m": anything above may have changed errno. */
        errno = saved_errno;
        vsnprintf(msg + off, sizeof(msg) - off, fmt, ap);
        snprintf(prio, sizeof(prio), "PRIORITY=%d", priority);
        snprintf(id, sizeof(id), "MESSAGE_ID=%s", message_id ? message_id : "");

        struct iovec fields[] = { iov_string(msg), iov_string(prio), iov_string(id) };
        log_emit(priority, fields, message_id ? 3 : 2);
        errno = saved_errno;
}

void log_msg(int priority, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_msgv(priority, NULL, fmt, ap);
        va_end(ap);
}

void log_msg_id(int priority, const char *message_id, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_msgv(priority, message_id, fmt, ap);
        va_end(ap);
}

int log_errno(int priority, int err, const char *fmt, ...) {
        int saved_errno = errno;
        va_list ap;

        err = abs(err);
        errno = err;
        va_start(ap, fmt);
        log_msgv(priority, NULL, fmt, ap);
        va_end(ap);
        errno = saved_errno;
        return -err;
}

/* ---- client events ---- */

static void field_printf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void field_printf(char *buf, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, LOG_FIELD_MAX, fmt, ap);
        va_end(ap);
}

static const char *protocol_name(enum client_event_kind kind) {
        return kind == CLIENT_UDP || kind == CLIENT_UDP_DROPPED ? "udp" : "tcp";
}

static const char *reject_message_id(enum reject_reason why) {
        return why == REJECT_PER_SOURCE ? LOG_ID_REJECTED_PER_SOURCE : LOG_ID_REJECTED_CONNECTIONS;
}

static const char *reject_text(enum reject_reason why) {
        return why == REJECT_PER_SOURCE ? "per-source limit reached" : "connection limit reached";
}

static const char *drop_text(enum udp_drop why) {
        switch (why) {
        case UDP_DROP_PRIVILEGED_PORT:
                return "loop guard (privileged source port)";
        case UDP_DROP_OWN_PORT:
                return "loop guard (source is our own port)";
        default:
                return "rate limit";
        }
}

static const char *refusal_name(enum proxy_refusal why) {
        switch (why) {
        case PROXY_REFUSED_UNTRUSTED:
                return "untrusted";
        case PROXY_REFUSED_TIMEOUT:
                return "timeout";
        default:
                return "malformed";
        }
}

static void refusal_text(const struct client_event *ev, char *buf, size_t len) {
        char d[32];

        switch (ev->refusal) {
        case PROXY_REFUSED_UNTRUSTED:
                snprintf(buf, len, "PROXY header refused: peer not in proxy.trusted");
                break;
        case PROXY_REFUSED_TIMEOUT:
                snprintf(buf, len, "no PROXY header within %s s",
                         duration_format_sec(ev->proxy_timeout_usec, d, sizeof(d)));
                break;
        default:
                snprintf(buf, len, "no valid PROXY header");
                break;
        }
}

/* "192.0.2.7 port 40512", and " via 10.0.0.5 port 55000" behind a balancer. */
static void client_who(const struct client_event *ev, const char *host, unsigned port, char *buf, size_t len) {
        char via[ADDR_HOST_MAX];

        if (ev->via.sa.sa_family == AF_UNSPEC || !addr_format_host(&ev->via, via))
                snprintf(buf, len, "%s port %u", host, port);
        else
                snprintf(buf, len, "%s port %u via %s port %u", host, port, via, addr_port(&ev->via));
}

static void client_message(const struct client_event *ev, const char *host, unsigned port, char *buf) {
        /* Rounded to the millisecond, without going through floating point. */
        uint64_t msec = (ev->duration_usec + USEC_PER_MSEC / 2) / USEC_PER_MSEC;
        char who[2 * ADDR_HOST_MAX + 32], why[64];

        client_who(ev, host, port, who, sizeof(who));
        switch (ev->kind) {
        case CLIENT_TCP_OPEN:
                field_printf(buf, MESSAGE_KEY "tcp connection from %s", who);
                break;
        case CLIENT_TCP_REJECTED:
                field_printf(buf, MESSAGE_KEY "tcp connection from %s rejected: %s", who, reject_text(ev->reject));
                break;
        case CLIENT_PROXY_REFUSED:
                refusal_text(ev, why, sizeof(why));
                field_printf(buf, MESSAGE_KEY "tcp connection from %s closed unanswered: %s", who, why);
                break;
        case CLIENT_UDP_DROPPED:
                field_printf(buf, MESSAGE_KEY "udp datagram from %s dropped: %s", who, drop_text(ev->drop));
                break;
        case CLIENT_TCP_RESUMED:
                field_printf(buf, MESSAGE_KEY "tcp connection from %s resumed after a restart", who);
                break;
        case CLIENT_TCP_CLOSE:
                if (ev->reason == CLOSE_HANDOVER)
                        field_printf(buf, MESSAGE_KEY "tcp connection from %s handed over for a restart: "
                                     "%" PRIu64 " bytes in, %" PRIu64 " bytes out, %" PRIu64 ".%03u s",
                                     who, ev->bytes_in, ev->bytes_out, msec / 1000, (unsigned) (msec % 1000));
                else
                        field_printf(buf, MESSAGE_KEY "tcp connection from %s closed (%s): "
                                     "%" PRIu64 " bytes in, %" PRIu64 " bytes out, %" PRIu64 ".%03u s",
                                     who, close_reason_to_string(ev->reason),
                                     ev->bytes_in, ev->bytes_out, msec / 1000, (unsigned) (msec % 1000));
                break;
        case CLIENT_UDP:
        default:
                field_printf(buf, MESSAGE_KEY "udp datagram from %s: "
                             "%" PRIu64 " bytes in, %" PRIu64 " bytes out",
                             who, ev->bytes_in, ev->bytes_out);
                break;
        }
}

int log_client_fields(const struct client_event *ev, char fields[][LOG_FIELD_MAX]) {
        char host[ADDR_HOST_MAX];
        unsigned port = addr_port(&ev->peer);
        int n = 0;

        if (!addr_format_host(&ev->peer, host))
                snprintf(host, sizeof(host), "unknown");

        client_message(ev, host, port, fields[n++]);
        field_printf(fields[n++], "PRIORITY=%d", LOG_INFO);
        field_printf(fields[n++], "REMOTE_ADDR=%s", host);
        field_printf(fields[n++], "REMOTE_PORT=%u", port);
        field_printf(fields[n++], "PROTOCOL=%s", protocol_name(ev->kind));
        if (ev->via.sa.sa_family != AF_UNSPEC && addr_format_host(&ev->via, host)) {
                field_printf(fields[n++], "PROXY_ADDR=%s", host);
                field_printf(fields[n++], "PROXY_PORT=%u", addr_port(&ev->via));
        }
        if (ev->kind == CLIENT_PROXY_REFUSED) {
                field_printf(fields[n++], "PROXY_REFUSED=%s", refusal_name(ev->refusal));
                return n;
        }
        if (ev->kind == CLIENT_TCP_REJECTED) {
                field_printf(fields[n++], "MESSAGE_ID=%s", reject_message_id(ev->reject));
                return n;
        }
        if (ev->kind == CLIENT_UDP_DROPPED) {
                field_printf(fields[n++], "BYTES_IN=%" PRIu64, ev->bytes_in);
                return n;
        }
        if (ev->kind != CLIENT_UDP)
                field_printf(fields[n++], "CONNECTION_ID=%" PRIu64, ev->conn_id);
        if (ev->kind == CLIENT_TCP_OPEN || ev->kind == CLIENT_TCP_RESUMED)
                return n;
        field_printf(fields[n++], "BYTES_IN=%" PRIu64, ev->bytes_in);
        field_printf(fields[n++], "BYTES_OUT=%" PRIu64, ev->bytes_out);
        if (ev->kind == CLIENT_TCP_CLOSE) {
                field_printf(fields[n++], "DURATION_USEC=%" PRIu64, ev->duration_usec);
                field_printf(fields[n++], "CLOSE_REASON=%s", close_reason_to_string(ev->reason));
                field_printf(fields[n++], "MESSAGE_ID=%s", LOG_ID_CONN_CLOSED);
        }
        return n;
}

unsigned log_client_admit(unsigned n) {
        unsigned admitted = 0;

        /* Entries below the log level are not wanted, not suppressed. */
        if (n == 0 || !log_wanted(LOG_INFO))
                return 0;
        pthread_mutex_lock(&client_lock);
        if (!client_enabled)
                goto out;
        admitted = ratelimit_take_n(&client_rl, n, now_usec_monotonic());
        client_suppressed += n - admitted;
        if (client_shared && admitted < n)
                COUNTER_ADD(client_shared, log_suppressed, n - admitted);
out:
        pthread_mutex_unlock(&client_lock);
        return admitted;
}

void log_client_admitted(const struct client_event *ev) {
        char fields[LOG_FIELDS_MAX][LOG_FIELD_MAX];
        struct iovec iov[LOG_FIELDS_MAX];
        int saved_errno = errno, n;

        n = log_client_fields(ev, fields);
        for (int i = 0; i < n; i++)
                iov[i] = iov_string(fields[i]);
        log_emit(LOG_INFO, iov, (size_t) n);
        errno = saved_errno;
}

void log_client(const struct client_event *ev) {
        if (log_client_admit(1) == 1)
                log_client_admitted(ev);
}

void log_flush_suppressed(void) {
        char msg[LOG_FIELD_MAX], count[LOG_FIELD_MAX];
        int saved_errno = errno;
        uint64_t n;

        pthread_mutex_lock(&client_lock);
        n = client_suppressed;
        client_suppressed = 0;
        pthread_mutex_unlock(&client_lock);

        if (n == 0 || !log_wanted(LOG_NOTICE))
                return;

        field_printf(msg, MESSAGE_KEY "suppressed %" PRIu64 " client log entries", n);
        field_printf(count, "SUPPRESSED=%" PRIu64, n);
        struct iovec fields[] = {
                iov_string(msg),
                iov_string("PRIORITY=5"),
                iov_string(count),
        };
        log_emit(LOG_NOTICE, fields, 3);
        errno = saved_errno;
}
