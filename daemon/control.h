/* SPDX-License-Identifier: MIT */
#pragma once

/* The control socket (protocol: common/control-proto.h), served on the main
 * loop in every worker model: the transport (clients, their buffers and
 * places, one request at a time) and the dispatch, one handler per command.
 * It knows the daemon only through struct control_daemon: what "status"
 * reports, the shared area the counters and connections are read from,
 * and the commands that change something. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "control-proto.h"
#include "shared.h"
#include "textbuf.h"

/* Control clients served at once, at most (fewer when the descriptor
 * limit is low: fdbudget.h). */
#define CONTROL_CLIENTS_MAX 64
/* Sockets "status" lists: TCP, UDP, proxied TCP and the control socket. */
#define CONTROL_LISTEN_MAX 49
/* Agent-check sockets "status" lists. */
#define CONTROL_AGENT_MAX 16

/* What "status" reports beyond the shared area. */
struct control_status {
        const char *model;
        unsigned threads;
        bool stopping;
        const char *config_file;          /* "": the built-in defaults */
        bool activated;                   /* socket activated */
        uint64_t start_usec;              /* CLOCK_MONOTONIC */
        int listen[CONTROL_LISTEN_MAX];   /* the sockets served */
        bool proxied[CONTROL_LISTEN_MAX]; /* ...a PROXY header first */
        size_t n_listen;
        int agent[CONTROL_AGENT_MAX];     /* the agent-check sockets */
        size_t n_agent;
        bool draining;                    /* uppercasectl drain: what the agent answers */
        const char *instance;             /* the instance name (the host name by default) */
};

/* The daemon, as the control socket sees it. */
struct control_daemon {
        struct shared *shared;            /* read: counters, connections, live settings */
        /* Its members may run the changing commands, as root and the
         * daemon's own user may; "" or NULL: none. */
        const char *admin_group;
        void (*status)(void *userdata, struct control_status *st);
        /* Sets one live timeout (0 = off), applied to open connections too. */
        void (*set_timeout)(void *userdata, enum timeout_id t, uint64_t usec);
        /* Re-reads the configuration: 0, or -errno with the reason in err. */
        int (*reload)(void *userdata, char *err, size_t errlen);
        /* Sets what the balancer agent answers (drain or ready); new
         * connections are served either way.  Returns whether it changed. */
        bool (*set_draining)(void *userdata, bool draining);
        /* Asks connection id's worker to close it after its replies
         * (uppercasectl kill): 0 and its client in *peer, or -ENOENT. */
        int (*kill)(void *userdata, uint64_t id, union sockaddr_union *peer);
        void *userdata;
};

/* Who sent a request (SO_PEERCRED), and whether it may change things:
 * root, the daemon's own user, or a member of the admin group
 * (control_peer_is_admin()). */
struct control_peer {
        uid_t uid;
        pid_t pid;
        bool admin;
};

/* Where the socket is: passed by systemd (fd), or bound at path with mode
 * and group (a stale socket replaced, a live one left alone). */
struct control_socket {
        int fd;                           /* passed, or -1 */
        bool activated;                   /* socket activated: binds nothing */
        const char *path;
        mode_t mode;
        const char *group;                /* "": the daemon's own */
};

struct control;

/* Serves the socket on e (*ret NULL when socket activated without one).
 * On failure returns -errno with what failed in what. */
int control_start(sd_event *e, const struct control_daemon *d, const struct control_socket *sock,
                  struct control **ret, char *what, size_t len);
/* The listening socket, -1 when none. */
int control_fd(const struct control *c);
/* Closes every client, and the socket with its file if it bound it. */
void control_free(struct control *c);

/* Serves at most max clients at once (fdbudget.h), 1..CONTROL_CLIENTS_MAX. */
void control_set_max_clients(struct control *c, unsigned max);

/* Where a reply too long to build at once (the connection list, which
 * grows with the load) goes on: it is built as the client reads it, so that
 * a client that does not read holds little memory. */
struct control_cursor {
        bool active;
        uint32_t next;                  /* the next connection slot */
};

/* Runs one request line and appends the reply (data lines, then "OK" or
 * "ERROR reason") to out, or its first part with *cursor active:
 * control_continue() appends the rest, a part at a time.  A changing
 * command from a peer that is not admin gets "ERROR permission denied:
 * ..."; uid/pid identify the caller in the log. */
void control_dispatch(const struct control_daemon *d, const char *line, size_t len,
                      const struct control_peer *peer, struct textbuf *out, struct control_cursor *cursor);

/* Lets group gid read and write path (a POSIX ACL entry; the owner's,
 * the owning group's and others' permissions stay).  0 or -errno. */
int control_grant_group(const char *path, gid_t gid);

/* The supplementary groups of the peer of the UNIX socket fd (pid: its
 * process, for kernels without SO_PEERGROUPS): up to max in groups.
 * Returns how many, or -errno. */
int control_peer_groups(int fd, pid_t pid, gid_t *groups, size_t max);
void control_continue(const struct control_daemon *d, struct control_cursor *cursor, struct textbuf *out);

/* When every place is taken, which client a new one replaces: the least
 * recently active of the user holding the most places (the first of
 * clients[0..n), ordered least recently active first, whose uid holds as
 * many as any other).  So one user filling the places cannot lock another
 * out, and cannot take the place of another's client while it holds more
 * than they do.  Pure, for the tests. */
size_t control_pick_victim(const uid_t *uids, size_t n);
