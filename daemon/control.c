/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "conn.h"
#include "control.h"
#include "duration.h"
#include "errbuf.h"
#include "listen.h"
#include "log.h"
#include "oneshot.h"

#define CONTROL_IDLE_USEC (60 * USEC_PER_SEC)
/* Until a client completes its first request it gets less time. */
#define CONTROL_FIRST_REQUEST_USEC (10 * USEC_PER_SEC)
/* A reply is built at most this much ahead of what the client has read:
 * the connection list, the one reply that grows with the load, is written
 * a chunk at a time as the client reads it. */
#define CONTROL_CHUNK (64 * 1024)
#define CONTROL_REPLY_MAX (4 * CONTROL_CHUNK)
/* Supplementary groups of a peer looked at for the admin group
 * (NGROUPS_MAX is 65536, but nobody is in more than a few). */
#define CONTROL_GROUPS_MAX 1024

struct control_client {
        TAILQ_ENTRY(control_client) link;       /* least recently active first */
        struct control *control;
        int fd;
        struct control_peer peer;
        sd_event_source *io, *timer;
        char in[CONTROL_LINE_MAX + 2];
        size_t in_len;
        bool closing;                   /* close once the reply is sent */
        unsigned requests;
        struct control_cursor cursor;   /* a reply still being written */
        struct textbuf out;
};

struct control {
        const struct control_daemon *daemon;
        sd_event *event;
        int fd;
        bool owns_fd;                   /* we created the socket (else listen.h owns it) */
        bool bound;                     /* ...and its file */
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        sd_event_source *listen_src, *resume_src;
        TAILQ_HEAD(, control_client) clients;
        gid_t admin_gid;                /* (gid_t) -1: no admin group */
        unsigned n_clients, max_clients;
        uint64_t pause_warned, evict_warned;
};

static void control_client_free(struct control_client *cc) {
        struct control *c = cc->control;

        TAILQ_REMOVE(&c->clients, cc, link);
        c->n_clients--;
        sd_event_source_disable_unref(cc->io);
        sd_event_source_disable_unref(cc->timer);
        close(cc->fd);
        textbuf_free(&cc->out);
        free(cc);
}

/* --- the commands --- */

static void reply_duration(struct textbuf *out, const char *key, uint64_t usec) {
        char buf[DURATION_BUF];

        textbuf_printf(out, "%s %s\n", key, duration_format_sec(usec, buf, sizeof(buf)));
}

static void reply_common(const struct control_status *st, struct textbuf *out) {
        uint64_t up = now_usec_monotonic() - st->start_usec;

        textbuf_printf(out, "version %s\npid %d\nmodel %s\n", VERSION, (int) getpid(), st->model);
        reply_duration(out, "uptime_seconds", up);
        /* Since the epoch: what Prometheus's process_start_time_seconds is. */
        reply_duration(out, "start_time_seconds", now_usec_realtime() - up);
        /* A label on every Prometheus series: several instances' stats in
         * one place stay apart. */
        textbuf_printf(out, "instance %s\n", st->instance ? st->instance : "");
}

static const char *balancer_state(bool draining) {
        return draining ? "draining" : "ready";
}

static void cmd_status(const struct control_daemon *d, struct textbuf *out) {
        struct control_status st;
        char buf[128];

        d->status(d->userdata, &st);
        reply_common(&st, out);
        textbuf_printf(out, "control_protocol %d\n", CONTROL_PROTOCOL_VERSION);
        textbuf_printf(out, "threads %u\nstate %s\nconfig %s\nsocket_activated %s\nconnections %u\n",
                      st.threads, st.stopping ? "stopping" : "running",
                      st.config_file[0] ? st.config_file : "(built-in defaults)",
                      st.activated ? "yes" : "no", atomic_load(&d->shared->tcp_active));
        textbuf_printf(out, "balancer %s\n", balancer_state(st.draining));
        for (size_t i = 0; i < st.n_listen; i++)
                textbuf_printf(out, "listen %s%s\n", listen_describe(st.listen[i], buf, sizeof(buf)),
                               st.proxied[i] ? " (PROXY protocol)" : "");
        for (size_t i = 0; i < st.n_agent; i++)
                textbuf_printf(out, "agent %s\n", listen_describe(st.agent[i], buf, sizeof(buf)));
}

#define LOAD(x) ((uint64_t) atomic_load_explicit(&(x), memory_order_relaxed))

/* The limits in force (live: they follow a reload). */
static void reply_limits(const struct shared *sh, struct textbuf *out) {
        const struct source_limits *l = sh->limits;
        char net[ADDR_PREFIX_MAX];

        textbuf_printf(out, "limits.tcp_per_source %u\nlimits.udp_rate %u\nlimits.udp_burst %u\n"
                      "limits.udp_loop_guard %s\n",
                      atomic_load(&sh->live.tcp_per_source), atomic_load(&sh->live.udp_rate),
                      atomic_load(&sh->live.udp_burst), atomic_load(&sh->live.udp_loop_guard) ? "yes" : "no");
        /* Only this thread (the main loop, on reload) changes the list. */
        for (size_t i = 0; i < l->n_exempt; i++)
                textbuf_printf(out, "limits.exempt %s\n", addr_prefix_format(&l->exempt[i], net));
}

static bool status_proxied(const struct control_status *st) {
        for (size_t i = 0; i < st->n_listen; i++)
                if (st->proxied[i])
                        return true;
        return false;
}

/* Proxied listeners' counters and settings; only when there are some. */
static void reply_proxy(const struct shared *sh, struct textbuf *out) {
        const struct counters *k = &sh->c;
        const struct source_limits *l = sh->limits;
        char net[ADDR_PREFIX_MAX];

        textbuf_printf(out, "proxy.v1 %" PRIu64 "\nproxy.v2 %" PRIu64 "\nproxy.health_checks %" PRIu64 "\n",
                       LOAD(k->proxy_v1), LOAD(k->proxy_v2), LOAD(k->proxy_health_checks));
        textbuf_printf(out, "proxy.refused_untrusted %" PRIu64 "\nproxy.refused_malformed %" PRIu64 "\n"
                       "proxy.refused_timeout %" PRIu64 "\n",
                       LOAD(k->proxy_refused_untrusted), LOAD(k->proxy_refused_malformed),
                       LOAD(k->proxy_refused_timeout));
        reply_duration(out, "proxy.timeout", atomic_load(&sh->live.proxy_timeout_usec));
        /* Only this thread (the main loop, on reload) changes the list. */
        for (size_t i = 0; i < l->n_proxy_trusted; i++)
                textbuf_printf(out, "proxy.trusted %s\n", addr_prefix_format(&l->proxy_trusted[i], net));
}

static void cmd_stats(const struct control_daemon *d, struct textbuf *out) {
        const struct shared *sh = d->shared;
        const struct counters *k = &sh->c;
        struct control_status st;

        d->status(d->userdata, &st);
        reply_common(&st, out);
        textbuf_printf(out, "tcp.active %u\n", atomic_load(&sh->tcp_active));
        textbuf_printf(out, "tcp.accepted %" PRIu64 "\ntcp.rejected %" PRIu64 "\n"
                      "tcp.rejected_per_source %" PRIu64 "\n",
                      LOAD(k->tcp_accepted), LOAD(k->tcp_rejected), LOAD(k->tcp_rejected_per_source));
        textbuf_printf(out, "tcp.resumed %" PRIu64 "\n", LOAD(k->tcp_resumed));
        for (int r = 0; r < _CLOSE_MAX; r++)
                textbuf_printf(out, "tcp.closed_%s %" PRIu64 "\n", close_reason_to_string(r),
                              LOAD(k->tcp_closed[r]));
        textbuf_printf(out, "tcp.bytes_in %" PRIu64 "\ntcp.bytes_out %" PRIu64 "\n",
                      LOAD(k->tcp_bytes_in), LOAD(k->tcp_bytes_out));
        textbuf_printf(out,
                      "udp.datagrams %" PRIu64 "\nudp.bytes_in %" PRIu64 "\nudp.bytes_out %" PRIu64 "\n"
                      "udp.truncated %" PRIu64 "\nudp.send_errors %" PRIu64 "\n"
                      "udp.rate_limited %" PRIu64 "\nudp.loop_dropped %" PRIu64 "\n",
                      LOAD(k->udp_datagrams), LOAD(k->udp_bytes_in), LOAD(k->udp_bytes_out),
                      LOAD(k->udp_truncated), LOAD(k->udp_send_errors),
                      LOAD(k->udp_rate_limited), LOAD(k->udp_loop_dropped));
        textbuf_printf(out, "invalid_utf8 %" PRIu64 "\nworkers_died %" PRIu64 "\nlog.suppressed %" PRIu64 "\n",
                      LOAD(k->invalid_utf8), LOAD(k->workers_died), LOAD(k->log_suppressed));
        textbuf_printf(out, "draining %s\nagent.checks %" PRIu64 "\n", st.draining ? "yes" : "no",
                      LOAD(k->agent_checks));
        for (int t = 0; t < _TIMEOUT_MAX; t++) {
                char key[32];

                snprintf(key, sizeof(key), "timeouts.%s", timeout_to_string(t));
                reply_duration(out, key, shared_timeout(sh, t));
        }
        reply_limits(sh, out);
        if (status_proxied(&st))
                reply_proxy(sh, out);
}

static void reply_connection(const struct conn_slot *slot, uint64_t id, uint64_t now, struct textbuf *out) {
        uint64_t last = LOAD(slot->last_active_usec);
        char peer[ADDR_TEXT_MAX], age[DURATION_BUF], idle[DURATION_BUF], via[ADDR_TEXT_MAX + 8] = "";

        /* Behind a balancer: which one. */
        if (slot->via.sa.sa_family != AF_UNSPEC) {
                memcpy(via, " via=", 5);
                addr_format(&slot->via, via + 5);
        }
        duration_format_sec(now - slot->start_usec, age, sizeof(age));
        duration_format_sec(now > last ? now - last : 0, idle, sizeof(idle));
        /* age and idle: the names of control protocol 1, kept for scripts. */
        textbuf_printf(out, "connection id=%" PRIu64 " peer=%s protocol=tcp age_seconds=%s idle_seconds=%s "
                      "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " worker=%d%s age=%s idle=%s\n",
                      id, addr_format(&slot->peer, peer), age, idle,
                      LOAD(slot->bytes_in), LOAD(slot->bytes_out), atomic_load(&slot->pid), via, age, idle);
}

/* The connection list from cursor->next on, up to about CONTROL_CHUNK
 * bytes; "OK" and the cursor inactive at its end.  A live view: a
 * connection opened or closed meanwhile may be listed or not. */
static void cmd_connections(const struct control_daemon *d, struct control_cursor *cursor,
                            struct textbuf *out) {
        struct shared *sh = d->shared;
        uint64_t now = now_usec_monotonic();
        uint32_t n;

        pthread_mutex_lock(&sh->lock);
        n = sh->high_water;
        pthread_mutex_unlock(&sh->lock);

        for (; cursor->next < n && out->len < CONTROL_CHUNK; cursor->next++) {
                const struct conn_slot *slot = &sh->slots[cursor->next];
                uint64_t id = atomic_load_explicit(&slot->id, memory_order_acquire);

                if (id != 0)
                        reply_connection(slot, id, now, out);
        }
        cursor->active = cursor->next < n;
        if (!cursor->active)
                textbuf_printf(out, "OK\n");
}

/* One handler per command.  A handler appends its data lines to
 * x->out and returns 0 ("OK" follows), CONTROL_REPLY_DONE (it wrote the
 * whole reply), or -errno with the reason in x->err ("ERROR reason"). */
struct control_call {
        const struct control_daemon *d;
        const struct control_request *req;
        const struct control_peer *peer;
        struct textbuf *out;
        struct control_cursor *cursor;
        char err[CONFIG_ERR_MAX];
};

#define CONTROL_REPLY_DONE 1

static int handle_status(struct control_call *x) {
        cmd_status(x->d, x->out);
        return 0;
}

static int handle_stats(struct control_call *x) {
        cmd_stats(x->d, x->out);
        return 0;
}

static int handle_connections(struct control_call *x) {
        /* Written as the client reads it, "OK" included. */
        x->cursor->active = true;
        cmd_connections(x->d, x->cursor, x->out);
        return CONTROL_REPLY_DONE;
}

static int handle_timeout(struct control_call *x) {
        const struct control_request *req = x->req;

        if (req->set) {
                char buf[DURATION_BUF];

                x->d->set_timeout(x->d->userdata, req->timeout, req->value_usec);
                log_notice("Timeout %s set to %s s by uid %u (pid %d)", timeout_to_string(req->timeout),
                           duration_format_sec(req->value_usec, buf, sizeof(buf)), (unsigned) x->peer->uid,
                           (int) x->peer->pid);
        }
        for (int t = 0; t < _TIMEOUT_MAX; t++)
                if (req->timeout < 0 || req->timeout == t)
                        reply_duration(x->out, timeout_to_string(t), shared_timeout(x->d->shared, t));
        return 0;
}

static int handle_reload(struct control_call *x) {
        int r;

        log_info("Reload requested by uid %u (pid %d)", (unsigned) x->peer->uid, (int) x->peer->pid);
        r = x->d->reload(x->d->userdata, x->err, sizeof(x->err));
        return r < 0 ? r : 0;
}

/* drain, ready: logged once per change, with who asked; asking again
 * changes nothing and says so ("changed no"). */
static int handle_drain(struct control_call *x) {
        bool draining = x->req->command == CONTROL_DRAIN;
        bool changed = x->d->set_draining(x->d->userdata, draining);
        unsigned uid = (unsigned) x->peer->uid;
        int pid = (int) x->peer->pid;

        if (changed && draining)
                log_notice("Draining, asked by uid %u (pid %d): the agent-check now answers drain, "
                           "open connections go on", uid, pid);
        else if (changed)
                log_notice("Ready, asked by uid %u (pid %d): the agent-check now answers ready", uid, pid);
        textbuf_printf(x->out, "balancer %s\nchanged %s\n", balancer_state(draining), changed ? "yes" : "no");
        return 0;
}

/* kill ID: the connection's worker answers what it read, then closes it
 * (its close entry says "killed"); this entry says who asked. */
static int handle_kill(struct control_call *x) {
        uint64_t id = x->req->conn_id;
        union sockaddr_union peer;
        char host[ADDR_HOST_MAX];
        int r = x->d->kill(x->d->userdata, id, &peer);

        if (r == -ENOENT)
                return errbuf_set(x->err, sizeof(x->err), r, "no connection %" PRIu64 " (see 'connections')", id);
        if (r < 0)
                return errbuf_set(x->err, sizeof(x->err), r, "cannot kill connection %" PRIu64 ": %s", id,
                                  strerror(-r));
        log_notice("Connection %" PRIu64 " from %s port %u killed by uid %u (pid %d)", id,
                   addr_format_host(&peer, host), addr_port(&peer), (unsigned) x->peer->uid, (int) x->peer->pid);
        textbuf_printf(x->out, "killed %" PRIu64 "\n", id);
        return 0;
}

/* reset: the counters start again from 0; the gauges (active
 * connections, settings) are not counters. */
static int handle_reset(struct control_call *x) {
        shared_reset_counters(x->d->shared);
        log_notice("Counters reset by uid %u (pid %d)", (unsigned) x->peer->uid, (int) x->peer->pid);
        return 0;
}

/* "help timeout [NAME [VALUE]]  list, show or set ...", from the table
 * uppercasectl has too (control-proto.h); all, or the one asked for. */
static int handle_help(struct control_call *x) {
        for (int c = 0; c < _CONTROL_MAX; c++) {
                const struct control_command_info *i = &control_commands[c];
                char usage[64];

                if (x->req->topic >= 0 && x->req->topic != c)
                        continue;
                snprintf(usage, sizeof(usage), "%s%s%s", i->name, i->args[0] ? " " : "", i->args);
                textbuf_printf(x->out, "help %-26s ", usage);
                for (const char *h = i->help; *h; h++)
                        textbuf_append(x->out, *h == '\n' ? " " : h, 1);
                textbuf_append(x->out, "\n", 1);
        }
        return 0;
}

static int (*const handlers[_CONTROL_MAX])(struct control_call *x) = {
        [CONTROL_STATUS] = handle_status,
        [CONTROL_STATS] = handle_stats,
        [CONTROL_CONNECTIONS] = handle_connections,
        [CONTROL_TIMEOUT] = handle_timeout,
        [CONTROL_RELOAD] = handle_reload,
        [CONTROL_DRAIN] = handle_drain,
        [CONTROL_READY] = handle_drain,
        [CONTROL_KILL] = handle_kill,
        [CONTROL_RESET] = handle_reset,
        [CONTROL_HELP] = handle_help,
};

void control_continue(const struct control_daemon *d, struct control_cursor *cursor, struct textbuf *out) {
        cmd_connections(d, cursor, out);
}

void control_dispatch(const struct control_daemon *d, const char *line, size_t len,
                      const struct control_peer *peer, struct textbuf *out, struct control_cursor *cursor) {
        struct control_request req;
        struct control_call x = { .d = d, .req = &req, .peer = peer, .out = out, .cursor = cursor };
        int r;

        *cursor = (struct control_cursor) {};
        if (control_parse(line, len, &req, x.err, sizeof(x.err)) < 0) {
                textbuf_printf(out, "ERROR %s\n", x.err);
                return;
        }
        if (control_request_needs_admin(&req) && !peer->admin) {
                textbuf_printf(out, "ERROR permission denied: %s%s needs root%s%s\n",
                               control_command_name(req.command), req.command == CONTROL_TIMEOUT ? " VALUE" : "",
                               d->admin_group && d->admin_group[0] ? " or group " : "",
                               d->admin_group ? d->admin_group : "");
                return;
        }
        r = handlers[req.command](&x);
        if (r < 0)
                textbuf_printf(out, "ERROR %s\n", x.err);
        else if (r != CONTROL_REPLY_DONE)
                textbuf_printf(out, "OK\n");
}

/* --- the clients --- */

/* Clients are kept least recently active first: the order in which they
 * give their place up (control_pick_victim()). */
static void control_client_touch(struct control_client *cc) {
        struct control *c = cc->control;

        TAILQ_REMOVE(&c->clients, cc, link);
        TAILQ_INSERT_TAIL(&c->clients, cc, link);
}

static bool control_client_writing(const struct control_client *cc) {
        return cc->out.len > 0 || cc->cursor.active;
}

static void control_client_update(struct control_client *cc) {
        uint64_t now = now_usec_monotonic();

        /* While a reply is pending, stop reading: one request at a time. */
        sd_event_source_set_io_events(cc->io, control_client_writing(cc) ? EPOLLOUT : EPOLLIN);
        sd_event_source_set_time(cc->timer, now + (cc->requests ? CONTROL_IDLE_USEC : CONTROL_FIRST_REQUEST_USEC));
}

/* Runs the next complete request line read, if any: false when there is
 * none (yet). */
static bool control_client_next_request(struct control_client *cc) {
        char *nl = memchr(cc->in, '\n', cc->in_len);
        size_t len;

        if (!nl) {
                if (cc->in_len <= CONTROL_LINE_MAX + 1)
                        return false;
                textbuf_printf(&cc->out, "ERROR request too long (at most %d bytes)\n", CONTROL_LINE_MAX);
                cc->closing = true;
                return true;
        }
        len = (size_t) (nl - cc->in);
        control_dispatch(cc->control->daemon, cc->in, len, &cc->peer, &cc->out, &cc->cursor);
        cc->requests++;
        memmove(cc->in, nl + 1, cc->in_len - len - 1);
        cc->in_len -= len + 1;
        return true;
}

/* Sends the reply, building the rest of a long one as the client takes
 * it, then answers the next request already read.  Stops when the client
 * stops taking (EAGAIN): so a client that does not read costs a chunk of
 * memory, and one that sends many requests at once a socket buffer of
 * work per wake-up.  Returns false when the client is gone. */
static bool control_client_flush(struct control_client *cc) {
        for (;;) {
                if (cc->out.overflow) {
                        textbuf_free(&cc->out);
                        textbuf_printf(&cc->out, "ERROR reply too large\n");
                        cc->cursor.active = false;
                        cc->closing = true;
                }
                while (cc->out.len > 0) {
                        ssize_t n = send(cc->fd, cc->out.data, cc->out.len, MSG_DONTWAIT | MSG_NOSIGNAL);

                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && errno == EAGAIN)
                                return true;
                        if (n < 0) {
                                control_client_free(cc);
                                return false;
                        }
                        textbuf_consume(&cc->out, (size_t) n);
                        control_client_touch(cc);
                }
                if (cc->cursor.active)
                        control_continue(cc->control->daemon, &cc->cursor, &cc->out);
                else if (cc->closing) {
                        control_client_free(cc);
                        return false;
                } else if (!control_client_next_request(cc))
                        return true;
        }
}

static int control_client_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct control_client *cc = userdata;

        if (!control_client_writing(cc)) {
                ssize_t n = recv(fd, cc->in + cc->in_len, sizeof(cc->in) - cc->in_len, MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0) {
                        control_client_free(cc);
                        return 0;
                }
                cc->in_len += (size_t) n;
                control_client_touch(cc);
        }
        if (control_client_flush(cc))
                control_client_update(cc);
        return 0;
}

static int control_client_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        control_client_free(userdata);
        return 0;
}

int control_peer_groups(int fd, pid_t pid, gid_t *groups, size_t max) {
        socklen_t len = (socklen_t) (max * sizeof(gid_t));
        char path[64], line[256];
        size_t n = 0;
        FILE *f;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
                return (int) (len / sizeof(gid_t));
        if (errno != ENOPROTOOPT)
                return -errno;
        /* Before Linux 4.13: the process's, which may have changed since
         * it connected. */
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "Groups:", 7) == 0) {
                        char *p = line + 7, *end;

                        for (unsigned long g; n < max && (g = strtoul(p, &end, 10), end != p); p = end)
                                groups[n++] = (gid_t) g;
                        break;
                }
        fclose(f);
        return (int) n;
}

/* Root, the daemon's user, and the admin group's members may change
 * things.  A peer whose groups cannot be read is not admin. */
static bool control_client_admin(const struct control *c, int fd, const struct ucred *cred) {
        gid_t groups[CONTROL_GROUPS_MAX];
        int n = 0;

        if (c->admin_gid != (gid_t) -1)
                n = control_peer_groups(fd, cred->pid, groups, CONTROL_GROUPS_MAX);
        return control_peer_is_admin(cred->uid, cred->gid, groups, n > 0 ? (size_t) n : 0, geteuid(),
                                     c->admin_gid);
}

static void control_client_new(struct control *c, int fd) {
        struct control_client *cc = calloc(1, sizeof(*cc));
        struct ucred cred = { .uid = (uid_t) -1, .gid = (gid_t) -1, .pid = 0 };
        socklen_t len = sizeof(cred);

        if (!cc) {
                close(fd);
                return;
        }
        cc->control = c;
        cc->fd = fd;
        textbuf_init(&cc->out, CONTROL_REPLY_MAX);
        (void) getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        cc->peer = (struct control_peer) { .uid = cred.uid, .pid = cred.pid,
                                           .admin = control_client_admin(c, fd, &cred) };
        TAILQ_INSERT_TAIL(&c->clients, cc, link);
        c->n_clients++;
        if (sd_event_add_io(c->event, &cc->io, fd, EPOLLIN, control_client_on_io, cc) < 0 ||
            sd_event_add_time_relative(c->event, &cc->timer, CLOCK_MONOTONIC, CONTROL_FIRST_REQUEST_USEC, 0,
                                       control_client_on_timer, cc) < 0)
                control_client_free(cc);
}

size_t control_pick_victim(const uid_t *uids, size_t n) {
        size_t best = 0, best_count = 0;

        for (size_t i = 0; i < n; i++) {
                size_t count = 0;

                for (size_t j = 0; j < n; j++)
                        count += uids[j] == uids[i];
                /* Strictly more: among equals, the least recently active. */
                if (count > best_count) {
                        best = i;
                        best_count = count;
                }
        }
        return best;
}

/* Every place is taken: one client gives its place up to the new one. */
static void control_make_room(struct control *c) {
        struct control_client *all[CONTROL_CLIENTS_MAX], *victim, *cc;
        uid_t uids[CONTROL_CLIENTS_MAX];
        size_t n = 0;

        TAILQ_FOREACH(cc, &c->clients, link) {
                if (n == CONTROL_CLIENTS_MAX)
                        break;
                all[n] = cc;
                uids[n++] = cc->peer.uid;
        }
        victim = all[control_pick_victim(uids, n)];
        if (warning_due(&c->evict_warned, now_usec_monotonic()))
                log_notice("All %u control client places are taken: closing the least recently active "
                           "client of uid %u (pid %d) to make room", c->n_clients, (unsigned) victim->peer.uid,
                           (int) victim->peer.pid);
        if (!control_client_writing(victim)) {
                static const char bye[] = "ERROR closed to make room for another control client\n";

                (void) send(victim->fd, bye, sizeof(bye) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        control_client_free(victim);
}

static int control_on_resume(sd_event_source *es, uint64_t usec, void *userdata) {
        struct control *c = userdata;

        sd_event_source_set_enabled(c->listen_src, SD_EVENT_ON);
        return 0;
}

/* accept() lacks descriptors or memory: retrying at once would spin, so
 * the listener is off for a moment, as the TCP ones are. */
static void control_pause(struct control *c, int err) {
        uint64_t now = now_usec_monotonic();

        if (warning_due(&c->pause_warned, now))
                log_warning_errno(err, "Failed to accept a control connection, pausing: %m");
        sd_event_source_set_enabled(c->listen_src, SD_EVENT_OFF);
        /* Without the timer nothing would resume: accept again. */
        if (oneshot_arm(c->event, &c->resume_src, now + ACCEPT_PAUSE_USEC, control_on_resume, c) < 0)
                sd_event_source_set_enabled(c->listen_src, SD_EVENT_ON);
}

static int control_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct control *c = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0) {
                if (accept_error_pauses(errno))
                        control_pause(c, errno);
                return 0;
        }
        if (c->n_clients >= c->max_clients && c->n_clients > 0)
                control_make_room(c);
        control_client_new(c, cfd);
        return 0;
}

void control_set_max_clients(struct control *c, unsigned max) {
        if (c)
                c->max_clients = max < 1 ? 1 : max > CONTROL_CLIENTS_MAX ? CONTROL_CLIENTS_MAX : max;
}

/* --- the socket --- */

/* A socket file nobody answers on is left over from a crash: replace it.
 * One that answers belongs to a running daemon: leave it alone. */
static int control_remove_stale(const struct sockaddr_un *sa) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

        if (fd < 0)
                return -errno;
        r = connect(fd, (const struct sockaddr *) sa, sizeof(*sa));
        close(fd);
        if (r == 0)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED)
                return -EADDRINUSE;
        return unlink(sa->sun_path) < 0 ? -errno : 0;
}

static int control_set_owner(const char *path, const char *group) {
        struct group *gr;

        if (!group[0])
                return 0;
        gr = getgrnam(group);
        if (!gr)
                return -ENOENT;
        return chown(path, (uid_t) -1, gr->gr_gid) < 0 ? -errno : 0;
}

/* mkdir -p of the directory holding path. */
static int mkdir_parents(const char *path, mode_t mode) {
        char dir[sizeof(((struct sockaddr_un *) 0)->sun_path)];

        snprintf(dir, sizeof(dir), "%s", path);
        for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = '\0';
                if (mkdir(dir, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

static int control_bind(struct control *c, const struct control_socket *sock) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        mode_t old;
        int r;

        snprintf(c->path, sizeof(c->path), "%s", sock->path);
        memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
        r = mkdir_parents(c->path, 0755);
        if (r < 0)
                return r;

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        c->owns_fd = true;
        /* The mode is right from the start: no window with a wider one. */
        old = umask(0777 & ~sock->mode);
        r = bind(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
        if (r == -EADDRINUSE) {
                r = control_remove_stale(&sa);
                if (r == 0)
                        r = bind(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
        }
        umask(old);
        if (r < 0)
                return r;
        c->bound = true;
        if (listen(c->fd, 16) < 0)
                return -errno;
        r = control_set_owner(c->path, sock->group);
        if (r < 0)
                log_warning_errno(r, "Failed to give %s to group %s, ignoring: %s", c->path,
                                  sock->group, r == -ENOENT ? "no such group" : strerror(-r));
        return 0;
}

/* The admin group's id, (gid_t) -1 when there is none (not set, or no
 * such group: then only root and the daemon's user may change things). */
static gid_t control_admin_gid(const char *name) {
        struct group *gr;

        if (!name || !name[0])
                return (gid_t) -1;
        gr = getgrnam(name);
        if (!gr) {
                /* The default one is only missing where the package is not installed. */
                if (strcmp(name, CONTROL_ADMIN_GROUP) == 0)
                        log_debug("Group %s does not exist: only root and the daemon's user may change "
                                  "settings over the control socket", name);
                else
                        log_warning("Group %s (control.admin_group) does not exist: only root and the daemon's "
                                    "user may change settings over the control socket", name);
                return (gid_t) -1;
        }
        return gr->gr_gid;
}

/* The POSIX ACL of a file, as the kernel stores it
 * (linux/posix_acl_xattr.h): a version, then entries sorted by tag. */
struct acl_entry {
        uint16_t tag, perm;
        uint32_t id;
};

enum {
        ACL_XATTR_VERSION = 2,
        ACL_TAG_USER_OBJ = 0x01,
        ACL_TAG_GROUP_OBJ = 0x04,
        ACL_TAG_GROUP = 0x08,
        ACL_TAG_MASK = 0x10,
        ACL_TAG_OTHER = 0x20,
};

int control_grant_group(const char *path, gid_t gid) {
        struct stat st;
        struct {
                uint32_t version;
                struct acl_entry e[5];
        } acl;

        if (stat(path, &st) < 0)
                return -errno;
        /* Little-endian on the wire: Debian's architectures all are. */
        acl.version = ACL_XATTR_VERSION;
        acl.e[0] = (struct acl_entry) { ACL_TAG_USER_OBJ, (st.st_mode >> 6) & 7, (uint32_t) -1 };
        acl.e[1] = (struct acl_entry) { ACL_TAG_GROUP_OBJ, (st.st_mode >> 3) & 7, (uint32_t) -1 };
        acl.e[2] = (struct acl_entry) { ACL_TAG_GROUP, 6, gid };
        acl.e[3] = (struct acl_entry) { ACL_TAG_MASK, ((st.st_mode >> 3) & 7) | 6, (uint32_t) -1 };
        acl.e[4] = (struct acl_entry) { ACL_TAG_OTHER, st.st_mode & 7, (uint32_t) -1 };
        return setxattr(path, "system.posix_acl_access", &acl, sizeof(acl), 0) < 0 ? -errno : 0;
}

/* The admin group's members may not be in the socket's group: an ACL
 * lets them reach the socket too.  It needs the socket's owner: the
 * daemon's own, or socket activation's SocketUser=. */
static void control_grant_admin(const struct control *c, const char *group) {
        struct sockaddr_un sa;
        socklen_t len = sizeof(sa);
        int r;

        if (c->admin_gid == (gid_t) -1)
                return;
        if (getsockname(c->fd, (struct sockaddr *) &sa, &len) < 0 || len <= offsetof(struct sockaddr_un, sun_path) ||
            sa.sun_path[0] != '/')
                return;
        sa.sun_path[sizeof(sa.sun_path) - 1] = '\0';
        r = control_grant_group(sa.sun_path, c->admin_gid);
        if (r < 0)
                log_warning_errno(r, "Failed to let group %s reach %s, ignoring: %m (its members need the "
                                  "socket's group too)", group, sa.sun_path);
}

int control_start(sd_event *e, const struct control_daemon *d, const struct control_socket *sock,
                  struct control **ret, char *what, size_t len) {
        struct control *c;
        int r;

        *ret = NULL;
        if (sock->fd < 0 && sock->activated) {
                /* Socket activated: serve exactly what was passed. */
                log_notice("No control socket was passed; uppercasectl cannot reach this instance");
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->daemon = d;
        c->event = e;
        c->fd = sock->fd;
        c->max_clients = CONTROL_CLIENTS_MAX;
        c->admin_gid = control_admin_gid(d->admin_group);
        TAILQ_INIT(&c->clients);
        if (c->fd < 0) {
                r = control_bind(c, sock);
                if (r < 0) {
                        snprintf(what, len, "control socket %s", sock->path);
                        control_free(c);
                        return r;
                }
        }
        control_grant_admin(c, d->admin_group);
        r = sd_event_add_io(e, &c->listen_src, c->fd, EPOLLIN, control_on_accept, c);
        if (r < 0) {
                snprintf(what, len, "control socket");
                control_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int control_fd(const struct control *c) {
        return c ? c->fd : -1;
}

void control_free(struct control *c) {
        if (!c)
                return;
        while (!TAILQ_EMPTY(&c->clients))
                control_client_free(TAILQ_FIRST(&c->clients));
        sd_event_source_disable_unref(c->listen_src);
        sd_event_source_disable_unref(c->resume_src);
        if (c->owns_fd)
                close(c->fd);
        if (c->bound)
                unlink(c->path);
        free(c);
}
