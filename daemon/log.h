/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging.  Under journald (JOURNAL_STREAM names our stderr) entries go to the
 * journal with structured fields via sd_journal_send(); otherwise readable
 * lines go to stderr.  Client entries (one per TCP open/close and per UDP
 * datagram) are rate limited inside the daemon; what is suppressed is
 * summarised by log_flush_suppressed(), never silently dropped.
 * Thread-safe. */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "addr.h"
#include "shared.h"
#include "source.h"

enum log_target {
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
};

/* Picks the journal when JOURNAL_STREAM matches stderr's device:inode. */
enum log_target log_detect_target(void);
void log_setup(enum log_target target, int max_priority);

/* Client log settings, live: enabled, entries per second (0 = unlimited),
 * and the bucket size (how many may come at once). */
void log_set_client_limits(bool enabled, unsigned rate, unsigned burst);

/* Suppressed entries are counted in sh->c.log_suppressed as well.  In the
 * process model only the parent logs client events. */
void log_set_shared(struct shared *sh);

/* Daemon messages; "%m" expands errno.  Return -abs(err) for
 * "return log_error_errno(r, "Failed to bind %s: %m", addr);" */
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_errno(int priority, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The entries an operator searches for carry a MESSAGE_ID, explained in
 * the journal catalog, catalog/uppercased.catalog (journalctl -x;
 * journalctl MESSAGE_ID=...), and in uppercased(8), LOGGING.  Each was
 * generated once with systemd-id128 new: never change one, nor give one
 * another meaning.  tests/integration/test_log_catalog.py keeps these and
 * the catalog one to one. */
#define LOG_ID_CONN_CLOSED          "ef8c5589bb774a548f30858f52849cd5"   /* client entry */
#define LOG_ID_REJECTED_PER_SOURCE  "781f68b644014a5088f4c7b3f7c89248"   /* client entry */
#define LOG_ID_REJECTED_CONNECTIONS "34b6fb1dec6847408e3e2c654b5281ad"   /* client entry */
#define LOG_ID_RELOADED             "eaccda75efef4aef883d83fb7aadb5db"
#define LOG_ID_RELOAD_REFUSED       "8d67d6a4755b44afa36ee9762a94a641"
#define LOG_ID_HANDED_OVER          "1cb2d2d768144dbfb1d226a16a75e1ac"
#define LOG_ID_RESUMED              "6ddb21ee687f44d8ad34d3b983fac7ff"
#define LOG_ID_STARTED              "8460605575fd412782cde9625e63d277"
#define LOG_ID_STOPPING             "5bc6731eb1fb4448b7e49cd3b4a80984"

/* log_msg() with a MESSAGE_ID (one of LOG_ID_*) in the journal; the same
 * line as log_msg() on stderr. */
void log_msg_id(int priority, const char *message_id, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning_errno(err, ...) log_errno(LOG_WARNING, (err), __VA_ARGS__)
#define log_error_errno(err, ...)   log_errno(LOG_ERR, (err), __VA_ARGS__)

/* A client event.  bytes/duration/reason only matter for close events. */
enum client_event_kind {
        CLIENT_TCP_OPEN,
        CLIENT_TCP_CLOSE,
        CLIENT_TCP_REJECTED,           /* over a limit: reject says which */
        CLIENT_UDP,
        CLIENT_UDP_DROPPED,            /* not answered: drop says why */
        CLIENT_TCP_RESUMED,            /* handed over by the previous instance */
        CLIENT_PROXY_REFUSED,          /* proxied listener, no header taken: refusal says why */
};

struct client_event {
        enum client_event_kind kind;
        union sockaddr_union peer;     /* the client (CLIENT_PROXY_REFUSED: the socket's peer) */
        union sockaddr_union via;      /* TCP behind a balancer: it; AF_UNSPEC when direct */
        uint64_t conn_id;              /* TCP only */
        uint64_t bytes_in;
        uint64_t bytes_out;
        uint64_t duration_usec;
        enum close_reason reason;
        enum reject_reason reject;     /* CLIENT_TCP_REJECTED */
        enum udp_drop drop;            /* CLIENT_UDP_DROPPED */
        enum proxy_refusal refusal;    /* CLIENT_PROXY_REFUSED */
        uint64_t proxy_timeout_usec;   /* CLIENT_PROXY_REFUSED, PROXY_REFUSED_TIMEOUT */
};

/* Logs a client event through the client log rate limit (log.clients:
 * off, nothing; over the rate, counted as suppressed). */
void log_client(const struct client_event *ev);

/* The same in two steps, for a batch: takes tokens for up to n entries at
 * once and returns how many may be logged (the others are counted as
 * suppressed); each of those is then logged with log_client_admitted(). */
unsigned log_client_admit(unsigned n);
void log_client_admitted(const struct client_event *ev);


/* Emits "suppressed N client log entries" when any were.  Called once a
 * second from the main loop and at exit. */
void log_flush_suppressed(void);

/* Pure formatting, for the journal and for tests.  Fills fields[] with
 * "KEY=value" strings (MESSAGE first; MESSAGE_ID last, on a close or a
 * refusal) and returns how many; each buffer is LOG_FIELD_MAX bytes. */
#define LOG_FIELDS_MAX 14
#define LOG_FIELD_MAX 256
int log_client_fields(const struct client_event *ev, char fields[][LOG_FIELD_MAX]);

/* Token bucket used for the client rate limit, exposed for tests. */
struct ratelimit {
        uint64_t rate;          /* tokens per second, 0 = unlimited */
        uint64_t burst;
        uint64_t tokens_x1e6;   /* tokens * 1e6, to refill per microsecond */
        uint64_t last_usec;
};
void ratelimit_init(struct ratelimit *rl, unsigned rate, unsigned burst, uint64_t now_usec);
bool ratelimit_take(struct ratelimit *rl, uint64_t now_usec);
/* Takes up to n tokens; returns how many it took. */
unsigned ratelimit_take_n(struct ratelimit *rl, unsigned n, uint64_t now_usec);
