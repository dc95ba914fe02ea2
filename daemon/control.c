/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "duration.h"
#include "log.h"
#include "server.h"

#define CONTROL_CLIENTS_MAX 64
#define CONTROL_IDLE_USEC (60 * USEC_PER_SEC)
/* Until a client completes its first request it gets less time, so that
 * silent connections cannot hold all CONTROL_CLIENTS_MAX places for long. */
#define CONTROL_FIRST_REQUEST_USEC (10 * USEC_PER_SEC)
/* Enough for the connection list of a full table (65536 lines). */
#define CONTROL_REPLY_MAX (16 * 1024 * 1024)

struct control_client {
        struct control *control;
        struct control_client *prev, *next;
        int fd;
        uid_t uid;
        pid_t pid;
        sd_event_source *io, *timer;
        char in[CONTROL_LINE_MAX + 2];
        size_t in_len;
        bool closing;                   /* close once the reply is sent */
        unsigned requests;
        struct textbuf out;
};

struct control {
        struct server *server;
        int fd;
        bool bound;                     /* we created the socket file */
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        sd_event_source *listen_src;
        struct control_client *clients;
        unsigned n_clients;
};

static void control_client_free(struct control_client *cc) {
        struct control *c = cc->control;

        if (cc->prev)
                cc->prev->next = cc->next;
        else
                c->clients = cc->next;
        if (cc->next)
                cc->next->prev = cc->prev;
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

static void reply_common(struct server *s, struct textbuf *out) {
        textbuf_printf(out, "version %s\npid %d\nmodel %s\n", VERSION, (int) getpid(), s->ops->name);
        reply_duration(out, "uptime_seconds", now_usec_monotonic() - s->start_usec);
}

static void cmd_status(struct server *s, struct textbuf *out) {
        const struct listeners *ls = &s->listeners;
        char buf[128];

        reply_common(s, out);
        textbuf_printf(out, "control_protocol %d\n", CONTROL_PROTOCOL_VERSION);
        textbuf_printf(out, "threads %u\nstate %s\nconfig %s\nsocket_activated %s\nconnections %u\n",
                      s->config.threads, s->stopping ? "stopping" : "running",
                      s->config_file[0] ? s->config_file : "(built-in defaults)",
                      ls->activated ? "yes" : "no", atomic_load(&s->shared->tcp_active));
        for (size_t i = 0; i < ls->n_tcp; i++)
                textbuf_printf(out, "listen %s\n", listen_describe(ls->tcp[i], buf, sizeof(buf)));
        for (size_t i = 0; i < ls->n_udp; i++)
                textbuf_printf(out, "listen %s\n", listen_describe(ls->udp[i], buf, sizeof(buf)));
        if (ls->control >= 0)
                textbuf_printf(out, "listen %s\n", listen_describe(ls->control, buf, sizeof(buf)));
}

#define LOAD(x) ((uint64_t) atomic_load_explicit(&(x), memory_order_relaxed))

/* The limits in force (live: they follow a reload). */
static void reply_limits(const struct shared *sh, struct textbuf *out) {
        const struct source_limits *l = sh->limits;
        char net[ADDR_PREFIX_MAX];

        textbuf_printf(out, "limits.tcp_per_source %u\nlimits.udp_rate %u\nlimits.udp_burst %u\n"
                      "limits.udp_loop_guard %s\n",
                      atomic_load(&sh->tcp_per_source), atomic_load(&sh->udp_rate),
                      atomic_load(&sh->udp_burst), atomic_load(&sh->udp_loop_guard) ? "yes" : "no");
        /* Only this thread (the main loop, on reload) changes the list. */
        for (size_t i = 0; i < l->n_exempt; i++)
                textbuf_printf(out, "limits.exempt %s\n", addr_prefix_format(&l->exempt[i], net));
}

static void cmd_stats(struct server *s, struct textbuf *out) {
        const struct shared *sh = s->shared;
        const struct counters *k = &sh->c;

        reply_common(s, out);
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
        for (int t = 0; t < _TIMEOUT_MAX; t++) {
                char key[32];

                snprintf(key, sizeof(key), "timeouts.%s", timeout_to_string(t));
                reply_duration(out, key, shared_timeout(sh, t));
        }
        reply_limits(sh, out);
}

static void cmd_connections(struct server *s, struct textbuf *out) {
        struct shared *sh = s->shared;
        uint64_t now = now_usec_monotonic();
        uint32_t n;

        pthread_mutex_lock(&sh->lock);
        n = sh->high_water;
        pthread_mutex_unlock(&sh->lock);

        for (uint32_t i = 0; i < n; i++) {
                struct conn_slot *slot = &sh->slots[i];
                uint64_t id = atomic_load_explicit(&slot->id, memory_order_acquire);
                uint64_t last = LOAD(slot->last_active_usec);
                char peer[ADDR_TEXT_MAX], age[DURATION_BUF], idle[DURATION_BUF];

                if (id == 0)
                        continue;
                textbuf_printf(out, "connection id=%" PRIu64 " peer=%s protocol=tcp age=%s idle=%s "
                              "bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " worker=%d\n",
                              id, addr_format(&slot->peer, peer),
                              duration_format_sec(now - slot->start_usec, age, sizeof(age)),
                              duration_format_sec(now > last ? now - last : 0, idle, sizeof(idle)),
                              LOAD(slot->bytes_in), LOAD(slot->bytes_out), atomic_load(&slot->pid));
        }
}

static void cmd_timeout(struct server *s, const struct control_request *req,
                        uid_t uid, pid_t pid, struct textbuf *out) {
        if (req->set) {
                char buf[DURATION_BUF];

                server_set_timeout(s, req->timeout, req->value_usec);
                log_notice("Timeout %s set to %s s by uid %u (pid %d)", timeout_to_string(req->timeout),
                           duration_format_sec(req->value_usec, buf, sizeof(buf)), (unsigned) uid, (int) pid);
        }
        for (int t = 0; t < _TIMEOUT_MAX; t++)
                if (req->timeout < 0 || req->timeout == t)
                        reply_duration(out, timeout_to_string(t), shared_timeout(s->shared, t));
}

static bool cmd_reload(struct server *s, uid_t uid, pid_t pid, char *err, size_t errlen) {
        log_info("Reload requested by uid %u (pid %d)", (unsigned) uid, (int) pid);
        return server_reload(s, err, errlen) >= 0;
}

static void cmd_help(struct textbuf *out) {
        textbuf_printf(out,
                      "help status               daemon summary\n"
                      "help stats                counters\n"
                      "help connections          active TCP connections\n"
                      "help timeout [NAME [VALUE]] list, show or set idle, write, shutdown\n"
                      "help reload               re-read the configuration\n");
}

void control_dispatch(struct server *s, const char *line, size_t len,
                      uid_t uid, pid_t pid, struct textbuf *out) {
        struct control_request req;
        char err[CONFIG_ERR_MAX];

        if (control_parse(line, len, &req, err, sizeof(err)) < 0) {
                textbuf_printf(out, "ERROR %s\n", err);
                return;
        }
        switch (req.command) {
        case CONTROL_STATUS:
                cmd_status(s, out);
                break;
        case CONTROL_STATS:
                cmd_stats(s, out);
                break;
        case CONTROL_CONNECTIONS:
                cmd_connections(s, out);
                break;
        case CONTROL_TIMEOUT:
                cmd_timeout(s, &req, uid, pid, out);
                break;
        case CONTROL_RELOAD:
                if (!cmd_reload(s, uid, pid, err, sizeof(err))) {
                        textbuf_printf(out, "ERROR %s\n", err);
                        return;
                }
                break;
        default:
                cmd_help(out);
                break;
        }
        textbuf_printf(out, "OK\n");
}

/* --- the clients --- */

static void control_client_update(struct control_client *cc) {
        uint64_t now = now_usec_monotonic();

        /* While a reply is pending, stop reading: one request at a time. */
        sd_event_source_set_io_events(cc->io, cc->out.len > 0 ? EPOLLOUT : EPOLLIN);
        sd_event_source_set_time(cc->timer, now + (cc->requests ? CONTROL_IDLE_USEC : CONTROL_FIRST_REQUEST_USEC));
}

static void control_client_handle_lines(struct control_client *cc) {
        struct server *s = cc->control->server;
        char *nl;

        while (!cc->closing && (nl = memchr(cc->in, '\n', cc->in_len))) {
                size_t len = nl - cc->in;

                control_dispatch(s, cc->in, len, cc->uid, cc->pid, &cc->out);
                cc->requests++;
                if (cc->out.overflow) {
                        textbuf_free(&cc->out);
                        textbuf_printf(&cc->out, "ERROR reply too large\n");
                        cc->closing = true;
                }
                memmove(cc->in, nl + 1, cc->in_len - len - 1);
                cc->in_len -= len + 1;
        }
        if (cc->in_len > CONTROL_LINE_MAX + 1) {
                textbuf_printf(&cc->out, "ERROR request too long (at most %d bytes)\n", CONTROL_LINE_MAX);
                cc->closing = true;
        }
}

/* Returns false when the client is gone. */
static bool control_client_flush(struct control_client *cc) {
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
                textbuf_consume(&cc->out, n);
        }
        if (cc->closing) {
                control_client_free(cc);
                return false;
        }
        return true;
}

static int control_client_on_io(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct control_client *cc = userdata;

        if (cc->out.len == 0) {
                ssize_t n = recv(fd, cc->in + cc->in_len, sizeof(cc->in) - cc->in_len, MSG_DONTWAIT);

                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (n <= 0) {
                        control_client_free(cc);
                        return 0;
                }
                cc->in_len += n;
                control_client_handle_lines(cc);
        }
        if (control_client_flush(cc))
                control_client_update(cc);
        return 0;
}

static int control_client_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        control_client_free(userdata);
        return 0;
}

static void control_client_new(struct control *c, int fd) {
        struct control_client *cc = calloc(1, sizeof(*cc));
        struct ucred cred = { .uid = (uid_t) -1, .pid = 0 };
        socklen_t len = sizeof(cred);

        if (!cc) {
                close(fd);
                return;
        }
        cc->control = c;
        cc->fd = fd;
        textbuf_init(&cc->out, CONTROL_REPLY_MAX);
        (void) getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        cc->uid = cred.uid;
        cc->pid = cred.pid;
        cc->next = c->clients;
        if (c->clients)
                c->clients->prev = cc;
        c->clients = cc;
        c->n_clients++;
        if (sd_event_add_io(c->server->event, &cc->io, fd, EPOLLIN, control_client_on_io, cc) < 0 ||
            sd_event_add_time_relative(c->server->event, &cc->timer, CLOCK_MONOTONIC, CONTROL_FIRST_REQUEST_USEC, 0,
                                       control_client_on_timer, cc) < 0)
                control_client_free(cc);
}

static int control_on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        struct control *c = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (cfd < 0)
                return 0;
        if (c->n_clients >= CONTROL_CLIENTS_MAX) {
                static const char busy[] = "ERROR too many control clients, try again\n";

                (void) send(cfd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                close(cfd);
                return 0;
        }
        control_client_new(c, cfd);
        return 0;
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

static int control_bind(struct control *c, const struct config *cfg) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        mode_t old;
        int r;

        snprintf(c->path, sizeof(c->path), "%s", cfg->control_path);
        memcpy(sa.sun_path, c->path, sizeof(sa.sun_path));
        r = mkdir_parents(c->path, 0755);
        if (r < 0)
                return r;

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        /* The mode is right from the start: no window with a wider one. */
        old = umask(0777 & ~cfg->control_mode);
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
        r = control_set_owner(c->path, cfg->control_group);
        if (r < 0)
                log_warning_errno(r, "Failed to give %s to group %s, ignoring: %s", c->path,
                                  cfg->control_group, r == -ENOENT ? "no such group" : strerror(-r));
        return 0;
}

int control_start(struct server *s, struct control **ret, char *what, size_t len) {
        struct control *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = s->listeners.control;
        if (c->fd < 0 && s->listeners.activated) {
                /* Socket activated: serve exactly what was passed. */
                log_notice("No control socket was passed; uppercasectl cannot reach this instance");
                free(c);
                *ret = NULL;
                return 0;
        }
        if (c->fd < 0) {
                r = control_bind(c, &s->config);
                if (r < 0) {
                        snprintf(what, len, "control socket %s", s->config.control_path);
                        if (c->fd >= 0)
                                close(c->fd);
                        control_free(c);
                        return r;
                }
                s->listeners.control = c->fd;
        }
        r = sd_event_add_io(s->event, &c->listen_src, c->fd, EPOLLIN, control_on_accept, c);
        if (r < 0) {
                snprintf(what, len, "control socket");
                control_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void control_free(struct control *c) {
        if (!c)
                return;
        while (c->clients)
                control_client_free(c->clients);
        sd_event_source_disable_unref(c->listen_src);
        /* The descriptor itself belongs to s->listeners. */
        if (c->bound)
                unlink(c->path);
        free(c);
}
