/* SPDX-License-Identifier: MIT */
#pragma once

/* The control protocol, shared by uppercased and uppercasectl (and readable
 * enough for "socat - UNIX-CONNECT:/run/uppercased/control.sock").
 *
 * A client sends one request per line:  COMMAND [ARGS]\n  (at most
 * CONTROL_LINE_MAX bytes, words separated by blanks).  The daemon answers
 * with zero or more data lines and then exactly one final line, "OK" or
 * "ERROR <reason>".  A connection may carry any number of requests.
 *
 * Data lines:
 *   status, stats, timeout:  "<key> <value>", keys are dotted lowercase
 *                            names ("tcp.active 3", "timeouts.idle 300");
 *                            durations are in seconds, possibly fractional,
 *                            and their keys end in "_seconds" (but the
 *                            timeouts.* and proxy.timeout settings);
 *                            byte counts in "bytes_in"/"bytes_out".
 *   connections:             "connection id=7 peer=192.0.2.7:40512
 *                            protocol=tcp age_seconds=12.5
 *                            idle_seconds=0.25 bytes_in=10 bytes_out=10
 *                            worker=4242" (worker: the serving process or
 *                            thread id, 0 in the event model).
 *
 * The keys are stable (uppercasectl(8), "JSON SCHEMA"): a rename keeps the
 * old key, and a key removed or changed in meaning raises
 * CONTROL_PROTOCOL_VERSION.
 *
 * Requests (each command's tier in control_commands[]: reading ones for
 * the socket's group, changing ones for root, the daemon's own user and
 * the admin group; a refused one gets "ERROR permission denied: ..."):
 *   status | stats | connections | reload | reset
 *   help [COMMAND]             "help <usage> <description>" lines
 *   drain | ready              what the balancer agent answers (the
 *                              reply: "balancer draining|ready" and
 *                              "changed yes|no"); new connections are
 *                              still served: the balancer stops sending.
 *   timeout [NAME [VALUE]]     VALUE as duration_parse(): 30, 1.5, 250ms,
 *                              30s, 5m, 1h; 0 turns the timeout off.
 *   kill ID                    closes connection ID once it has sent the
 *                              replies to what it read (reply: "killed ID"). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Reported by "status"; raised on an incompatible change: 2 renamed the
 * connection list's age/idle to age_seconds/idle_seconds (the old keys
 * are still sent) and added kill, reset, help COMMAND and the tiers. */
#define CONTROL_PROTOCOL_VERSION 2
#define CONTROL_DEFAULT_PATH "/run/uppercased/control.sock"
#define CONTROL_DIR_NAME "uppercased"
#define CONTROL_SOCKET_NAME "control.sock"
#define CONTROL_GROUP "uppercased"
#define CONTROL_ADMIN_GROUP "uppercased-admin"
#define CONTROL_LINE_MAX 512

enum timeout_id {
        TIMEOUT_IDLE,
        TIMEOUT_WRITE,
        TIMEOUT_SHUTDOWN,
        _TIMEOUT_MAX,
};

const char *timeout_to_string(enum timeout_id t);
int timeout_from_string(const char *s);   /* enum value, or -EINVAL */

enum control_command {
        CONTROL_STATUS,
        CONTROL_STATS,
        CONTROL_CONNECTIONS,
        CONTROL_TIMEOUT,
        CONTROL_RELOAD,
        CONTROL_DRAIN,
        CONTROL_READY,
        CONTROL_KILL,
        CONTROL_RESET,
        CONTROL_HELP,
        _CONTROL_MAX,
};

/* Who may run a command. */
enum control_tier {
        CONTROL_TIER_READ,              /* anyone who can reach the socket */
        CONTROL_TIER_ADMIN,             /* root, the daemon's user, the admin group */
        CONTROL_TIER_ADMIN_TO_SET,      /* reading: READ; with a value: ADMIN */
};

/* The commands, one table for the daemon (the parser, "help", the tiers)
 * and for uppercasectl (its command line, its help). */
struct control_command_info {
        const char *name;
        const char *args;               /* the arguments' usage: "[NAME [VALUE]]", or "" */
        unsigned min_args, max_args;
        const char *help;               /* lines separated by "\n" */
        enum control_tier tier;
};

extern const struct control_command_info control_commands[_CONTROL_MAX];

struct control_request {
        enum control_command command;
        int timeout;                  /* CONTROL_TIMEOUT: TIMEOUT_*, or -1 for all */
        bool set;                     /* CONTROL_TIMEOUT: a value was given */
        uint64_t value_usec;
        uint64_t conn_id;             /* CONTROL_KILL */
        int topic;                    /* CONTROL_HELP: a command, or -1 for all */
};

/* Parses one request line of len bytes (no "\n"; a trailing "\r" is
 * allowed).  Returns 0, or -EINVAL with a one-line reason in err. */
int control_parse(const char *line, size_t len, struct control_request *req,
                  char *err, size_t errlen);

const char *control_command_name(enum control_command c);
/* The command named exactly name: its enum value, or -EINVAL. */
int control_command_from_string(const char *name);

/* Whether req changes something: then only an admin may run it. */
bool control_request_needs_admin(const struct control_request *req);

/* Whether a peer (uid, primary gid, supplementary groups) is an admin of
 * a daemon running as self: root, self, or a member of admin_gid
 * ((gid_t) -1: no admin group).  Pure. */
bool control_peer_is_admin(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, uid_t self,
                           gid_t admin_gid);

/* The control socket of a process with effective uid euid: for a user with
 * an absolute runtime directory, runtime_dir/uppercased/control.sock (when
 * it fits a socket address), else CONTROL_DEFAULT_PATH.  Returns true when
 * it chose the per-user path. */
bool control_socket_path(uid_t euid, const char *runtime_dir, char *buf, size_t len);
