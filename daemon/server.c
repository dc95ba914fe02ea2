/* SPDX-License-Identifier: MIT */
/* The daemon's main process (server.h): one struct server, seen by this
 * file alone.  The worker model gets a struct worker_env (worker.h), the
 * control socket a struct control_daemon (control.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "agent.h"
#include "conn.h"
#include "control.h"
#include "duration.h"
#include "fdbudget.h"
#include "handover.h"
#include "listen.h"
#include "log.h"
#include "notify.h"
#include "oneshot.h"
#include "server.h"
#include "tcp-blocking.h"
#include "udp.h"
#include "worker.h"

/* Connection table size: the upper bound of max_connections. */
#define SERVER_SLOTS 65536
#define DRAIN_POLL_USEC (20 * USEC_PER_MSEC)
#define TICK_USEC USEC_PER_SEC

_Static_assert(2 * CONFIG_MAX_LISTEN + 1 <= CONTROL_LISTEN_MAX, "status lists every socket");
_Static_assert(CONFIG_MAX_LISTEN <= CONTROL_AGENT_MAX && CONFIG_MAX_LISTEN <= AGENT_LISTEN_MAX,
               "every agent-check socket is served and listed");

struct server {
        sd_event *event;
        struct config config;             /* in force */
        const struct overrides *overrides;
        char config_file[4096];           /* "" when running on built-in defaults */
        struct listeners listeners;
        struct shared *shared;
        const struct worker_ops *ops;
        struct worker *worker;            /* the model's own state */
        struct control *control;
        struct control_daemon control_iface;
        struct agent *agent;              /* the agent-check listeners, NULL when none */
        struct agent_daemon agent_iface;
        bool draining;                    /* uppercasectl drain: kept across reloads, not restarts */
        char host[CONFIG_INSTANCE_MAX];   /* the host name at start */
        char instance[CONFIG_INSTANCE_MAX]; /* the instance name in force */
        uint64_t start_usec;              /* CLOCK_MONOTONIC */
        bool stopping;
        uint64_t stop_deadline;           /* CLOCK_MONOTONIC */
        uint64_t watchdog_usec;
        char status[256];                 /* last STATUS= sent */
        struct handover handover;         /* on stop: connections for the next instance */
        struct handover_state taken_back; /* on start: what the previous one left */
        struct resumed_conn *resumed;
        size_t n_resumed;
        struct fd_budget fds;             /* the descriptor limit, shared out */
};

static const struct worker_ops *const worker_models[_MODEL_MAX] = {
        [MODEL_EVENT] = &worker_event_ops,
        [MODEL_THREAD] = &worker_thread_ops,
        [MODEL_PROCESS] = &worker_process_ops,
};

void overrides_init(struct overrides *o) {
        memset(o, 0, sizeof(*o));
        o->model = -1;
}

/* A list given on the command line replaces the configured one. */
static void override_addrs(struct addr *dst, size_t *n_dst, const struct addr *src, size_t n, bool given) {
        if (!given)
                return;
        memcpy(dst, src, n * sizeof(*src));
        *n_dst = n;
}

static void overrides_apply(const struct overrides *o, struct config *c) {
        if (o->model >= 0)
                c->model = o->model;
        if (o->threads > 0)
                c->threads = o->threads;
        override_addrs(c->tcp, &c->n_tcp, o->tcp, o->n_tcp, o->tcp_given);
        override_addrs(c->udp, &c->n_udp, o->udp, o->n_udp, o->udp_given);
        override_addrs(c->proxy_listen, &c->n_proxy_listen, o->proxy, o->n_proxy, o->proxy_given);
        override_addrs(c->agent, &c->n_agent, o->agent, o->n_agent, o->agent_given);
        if (o->control_path)
                snprintf(c->control_path, sizeof(c->control_path), "%s", o->control_path);
}

int server_load_config(const struct overrides *o, struct config *c,
                       char *path_used, size_t path_len, char *err, size_t errlen) {
        const char *path = o->config_path;
        int r;

        config_defaults(c);
        if (!path && access(CONFIG_DEFAULT_PATH, F_OK) == 0)
                path = CONFIG_DEFAULT_PATH;
        snprintf(path_used, path_len, "%s", path ? path : "");
        if (path) {
                r = config_load(path, c, err, errlen);
                if (r < 0)
                        return r;
        }
        overrides_apply(o, c);
        return config_validate(c, err, errlen);
}

/* Settings that apply at once, at start and on reload. */
static void server_apply_live(struct server *s, const struct config *c) {
        struct live_settings *live = &s->shared->live;

        for (int t = 0; t < _TIMEOUT_MAX; t++)
                atomic_store(&live->timeout_usec[t], c->timeout_usec[t]);
        atomic_store(&live->max_connections, c->max_connections);
        atomic_store(&live->max_workers, c->max_workers);
        atomic_store(&live->tcp_per_source, c->tcp_per_source);
        atomic_store(&live->udp_rate, c->udp_rate);
        atomic_store(&live->udp_burst, c->udp_burst);
        atomic_store(&live->udp_loop_guard, c->udp_loop_guard);
        shared_set_exempt(s->shared, c->exempt, c->n_exempt);
        shared_set_proxy_trusted(s->shared, c->proxy_trusted, c->n_proxy_trusted);
        atomic_store(&live->proxy_timeout_usec, c->proxy_timeout_usec);
        log_set_client_limits(c->log_clients, c->log_rate, c->log_burst);
}

static bool addrs_equal(const struct addr *a, size_t na, const struct addr *b, size_t nb) {
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!addr_equal(&a[i], &b[i]))
                        return false;
        return true;
}

/* Keeps the settings that need a restart as they are, saying so. */
static void server_keep_restart_settings(const struct config *old, struct config *new) {
        struct {
                const char *name;
                bool changed;
        } checks[] = {
                { "listen.tcp", !addrs_equal(old->tcp, old->n_tcp, new->tcp, new->n_tcp) },
                { "listen.udp", !addrs_equal(old->udp, old->n_udp, new->udp, new->n_udp) },
                { "listen.backlog", old->backlog != new->backlog },
                { "proxy.listen", !addrs_equal(old->proxy_listen, old->n_proxy_listen,
                                               new->proxy_listen, new->n_proxy_listen) },
                { "agent.listen", !addrs_equal(old->agent, old->n_agent, new->agent, new->n_agent) },
                { "control.path", strcmp(old->control_path, new->control_path) != 0 },
                { "control.mode", old->control_mode != new->control_mode },
                { "control.group", strcmp(old->control_group, new->control_group) != 0 },
                { "control.admin_group", strcmp(old->control_admin_group, new->control_admin_group) != 0 },
                { "workers.model", old->model != new->model },
                { "workers.threads", old->threads != new->threads },
        };

        for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
                if (checks[i].changed)
                        log_warning("%s changed; it takes effect at the next restart, ignoring", checks[i].name);

        memcpy(new->tcp, old->tcp, sizeof(old->tcp));
        new->n_tcp = old->n_tcp;
        memcpy(new->udp, old->udp, sizeof(old->udp));
        new->n_udp = old->n_udp;
        memcpy(new->proxy_listen, old->proxy_listen, sizeof(old->proxy_listen));
        new->n_proxy_listen = old->n_proxy_listen;
        memcpy(new->agent, old->agent, sizeof(old->agent));
        new->n_agent = old->n_agent;
        new->backlog = old->backlog;
        memcpy(new->control_path, old->control_path, sizeof(old->control_path));
        new->control_mode = old->control_mode;
        memcpy(new->control_group, old->control_group, sizeof(old->control_group));
        memcpy(new->control_admin_group, old->control_admin_group, sizeof(old->control_admin_group));
        new->model = old->model;
        new->threads = old->threads;
}

/* The instance name: instance.name, else the host name taken at start. */
static void server_set_instance(struct server *s) {
        char name[sizeof(s->instance)];

        config_instance_name(&s->config, s->host, name, sizeof(name));
        if (s->instance[0] && strcmp(name, s->instance) != 0)
                log_info("Instance name changed from %s to %s", s->instance, name);
        memcpy(s->instance, name, sizeof(name));
}

/* Before anything is opened; see fdbudget.h. */
static void server_raise_fd_limit(struct server *s) {
        int err;

        s->fds.limit = fd_limit_raise(&err);
        if (err < 0)
                log_warning_errno(err, "Failed to raise the descriptor limit to the hard limit, ignoring: %m");
}

static void server_check_fds(const struct server *s) {
        char why[512];

        if (fd_budget_fits(&s->fds, s->config.max_connections))
                return;
        fd_budget_explain(&s->fds, s->config.max_connections, false, why, sizeof(why));
        log_warning("%s", why);
}

/* Once set up: shares the descriptor limit out between the daemon's own,
 * the control clients and the connections. */
static void server_plan_fds(struct server *s) {
        unsigned held = s->ops->holds_connections ? atomic_load(&s->shared->tcp_active) : 0;
        int open = fd_count_open();
        unsigned own;

        if (open < 0) {
                own = fd_own_estimate(&s->config);
                log_warning_errno(open, "Failed to count the open descriptors, assuming %u: %m", own);
        } else
                own = (unsigned) open > held ? (unsigned) open - held : 0;
        fd_budget_plan(&s->fds, s->fds.limit, own, s->ops->holds_connections);
        atomic_store(&s->shared->live.conn_fd_cap, s->fds.conns);
        control_set_max_clients(s->control, s->fds.control);
        server_check_fds(s);
}

bool server_fds_fit(const struct config *c, char *why, size_t len) {
        struct fd_budget b;

        fd_budget_plan(&b, fd_limit_hard(), fd_own_estimate(c), worker_models[c->model]->holds_connections);
        if (fd_budget_fits(&b, c->max_connections))
                return true;
        fd_budget_explain(&b, c->max_connections, true, why, len);
        return false;
}

static int server_reload(struct server *s, char *err, size_t errlen) {
        struct config c;
        char path[sizeof(s->config_file)];
        int r;

        notify_sendf("RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec_monotonic());
        r = server_load_config(s->overrides, &c, path, sizeof(path), err, errlen);
        /* Proxied sockets from systemd need what the file may not ask for. */
        if (r >= 0 && s->listeners.n_proxy > 0)
                r = config_check_proxy(&c, err, errlen);
        if (r < 0) {
                log_msg_id(LOG_ERR, LOG_ID_RELOAD_REFUSED, "Reload failed, keeping the old configuration: %s", err);
                notify_send("READY=1");
                return r;
        }
        server_keep_restart_settings(&s->config, &c);
        s->config = c;
        server_set_instance(s);
        memcpy(s->config_file, path, sizeof(path));
        server_apply_live(s, &s->config);
        s->ops->timeouts_changed(s->worker);
        log_msg_id(LOG_INFO, LOG_ID_RELOADED, "Configuration reloaded from %s", path[0] ? path : "built-in defaults");
        server_check_fds(s);
        notify_send("READY=1");
        return 0;
}

/* ---- what the control socket sees of the daemon ---- */

static void control_on_status(void *userdata, struct control_status *st) {
        struct server *s = userdata;
        const struct listeners *ls = &s->listeners;

        *st = (struct control_status) {
                .model = s->ops->name,
                .threads = s->config.threads,
                .stopping = s->stopping,
                .config_file = s->config_file,
                .activated = ls->activated,
                .start_usec = s->start_usec,
                .draining = s->draining,
                .instance = s->instance,
        };
        for (size_t i = 0; i < ls->n_agent; i++)
                st->agent[st->n_agent++] = ls->agent[i];
        for (size_t i = 0; i < ls->n_tcp; i++)
                st->listen[st->n_listen++] = ls->tcp[i];
        for (size_t i = 0; i < ls->n_udp; i++)
                st->listen[st->n_listen++] = ls->udp[i];
        for (size_t i = 0; i < ls->n_proxy; i++) {
                st->proxied[st->n_listen] = true;
                st->listen[st->n_listen++] = ls->proxy[i];
        }
        if (control_fd(s->control) >= 0)
                st->listen[st->n_listen++] = control_fd(s->control);
}

static void control_on_set_timeout(void *userdata, enum timeout_id t, uint64_t usec) {
        struct server *s = userdata;

        atomic_store(&s->shared->live.timeout_usec[t], usec);
        s->config.timeout_usec[t] = usec;
        s->ops->timeouts_changed(s->worker);
}

static int control_on_kill(void *userdata, uint64_t id, union sockaddr_union *peer) {
        struct server *s = userdata;
        struct conn_slot *slot = conn_slot_kill(s->shared, id, peer);

        if (!slot)
                return -ENOENT;
        s->ops->kill(s->worker, slot);
        return 0;
}

static int control_on_reload(void *userdata, char *err, size_t errlen) {
        return server_reload(userdata, err, errlen);
}

static bool control_on_set_draining(void *userdata, bool draining) {
        struct server *s = userdata;
        bool changed = s->draining != draining;

        s->draining = draining;
        return changed;
}

/* A stopping daemon asks for no new connections either: they would wait
 * in the listen backlog for the next instance, or be refused. */
static bool agent_on_draining(void *userdata) {
        struct server *s = userdata;

        return s->draining || s->stopping;
}

static int server_start_agent(struct server *s) {
        int r;

        s->agent_iface = (struct agent_daemon) {
                .shared = s->shared,
                .draining = agent_on_draining,
                .userdata = s,
        };
        r = agent_start(s->event, s->listeners.agent, s->listeners.n_agent, &s->agent_iface, &s->agent);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the agent-check listeners: %m");
        return 0;
}

static int server_start_control(struct server *s) {
        struct control_socket sock = {
                .fd = s->listeners.control,
                .activated = s->listeners.activated,
                .path = s->config.control_path,
                .mode = s->config.control_mode,
                .group = s->config.control_group,
        };
        char what[sizeof(s->config.control_path) + 32];
        int r;

        s->control_iface = (struct control_daemon) {
                .shared = s->shared,
                .admin_group = s->config.control_admin_group,
                .status = control_on_status,
                .set_timeout = control_on_set_timeout,
                .reload = control_on_reload,
                .set_draining = control_on_set_draining,
                .kill = control_on_kill,
                .userdata = s,
        };
        /* The passed sockets are all there is: say so rather than ignore it. */
        if (s->listeners.activated && s->overrides->control_path)
                log_warning("--control ignored: socket activated, the control socket is the one passed");
        r = control_start(s->event, &s->control_iface, &sock, &s->control, what, sizeof(what));
        if (r < 0)
                return log_error_errno(r, "Failed to set up the %s: %s", what,
                                       r == -EADDRINUSE ? "in use by a running daemon" : strerror(-r));
        return 0;
}

/* ---- the main loop ---- */

static void server_update_status(struct server *s) {
        char status[sizeof(s->status)];
        unsigned active = atomic_load(&s->shared->tcp_active);

        snprintf(status, sizeof(status), "%s model%s, %u connection%s",
                 s->ops->name, s->stopping ? ", stopping" : "", active, active == 1 ? "" : "s");
        if (strcmp(status, s->status) == 0)
                return;
        memcpy(s->status, status, sizeof(status));
        notify_sendf("STATUS=%s", status);
}

static int server_on_drain_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        struct server *s = userdata;

        if (!s->ops->drained(s->worker) && usec < s->stop_deadline)
                return oneshot_rearm(es, usec + DRAIN_POLL_USEC);
        if (!s->ops->drained(s->worker))
                log_warning("Shutdown timeout reached, closing the remaining connections");
        return sd_event_exit(s->event, 0);
}

static void server_stop(struct server *s, const char *why) {
        uint64_t now = now_usec_monotonic();
        int r;

        if (s->stopping) {
                log_notice("%s again, stopping now", why);
                sd_event_exit(s->event, 0);
                return;
        }
        s->stopping = true;
        /* A shutdown timeout of 0 means no limit. */
        s->stop_deadline = shared_timeout(s->shared, TIMEOUT_SHUTDOWN) ?
                now + shared_timeout(s->shared, TIMEOUT_SHUTDOWN) : UINT64_MAX;
        notify_send("STOPPING=1");
        log_msg_id(LOG_INFO, LOG_ID_STOPPING, "%s, stopping: finishing %u connection(s)", why,
                   atomic_load(&s->shared->tcp_active));
        s->ops->stop(s->worker);
        server_update_status(s);
        r = sd_event_add_time(s->event, NULL, CLOCK_MONOTONIC, now, 0, server_on_drain_tick, s);
        if (r < 0) {
                log_error_errno(r, "Failed to arm the drain timer, stopping now: %m");
                sd_event_exit(s->event, 0);
        }
}

static int server_on_signal(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        struct server *s = userdata;
        char err[CONFIG_ERR_MAX];

        switch (si->ssi_signo) {
        case SIGHUP:
                (void) server_reload(s, err, sizeof(err));
                break;
        case SIGINT:
                server_stop(s, "Interrupted");
                break;
        default:
                server_stop(s, "Terminated");
                break;
        }
        return 0;
}

static int server_on_tick(sd_event_source *es, uint64_t usec, void *userdata) {
        struct server *s = userdata;

        log_flush_suppressed();
        server_update_status(s);
        return oneshot_rearm(es, usec + TICK_USEC);
}

static int server_on_watchdog(sd_event_source *es, uint64_t usec, void *userdata) {
        struct server *s = userdata;
        uint64_t period = s->watchdog_usec / 2;

        /* Only vouch for the daemon when every worker loop is alive too. */
        if (s->ops->alive(s->worker, usec, period + TICK_USEC))
                notify_send("WATCHDOG=1");
        else
                log_error("A worker loop has stalled; not pinging the watchdog");
        return oneshot_rearm(es, usec + period);
}

static int server_add_sources(struct server *s) {
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
        uint64_t now = now_usec_monotonic();
        int r;

        for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
                r = sd_event_add_signal(s->event, NULL, signals[i], server_on_signal, s);
                if (r < 0)
                        return r;
        }
        r = sd_event_add_time(s->event, NULL, CLOCK_MONOTONIC, now + TICK_USEC, 0, server_on_tick, s);
        if (r < 0)
                return r;
        if (sd_watchdog_enabled(false, &s->watchdog_usec) > 0)
                r = sd_event_add_time(s->event, NULL, CLOCK_MONOTONIC, now, 0, server_on_watchdog, s);
        return r;
}

static int server_open_listeners(struct server *s) {
        char what[256] = "";
        int r;

        r = listen_activated(&s->listeners, what, sizeof(what));
        if (r < 0)
                return log_error_errno(r, "Failed to use %s: %s", what,
                                       r == -EBADMSG ? "not a TCP, UDP or UNIX stream socket" : strerror(-r));
        if (r == 0) {
                r = listen_bind(&s->listeners, &s->config, what, sizeof(what));
                if (r < 0)
                        return log_error_errno(r, "Failed to bind %s: %m", what);
        }
        /* systemd may pass proxied sockets the configuration did not ask for. */
        if (s->listeners.n_proxy > 0 && config_check_proxy(&s->config, what, sizeof(what)) < 0) {
                log_error("Refusing to serve the sockets named \"" LISTEN_PROXY_NAME "\": %s", what);
                return -EINVAL;
        }
        return 0;
}

/* ---- the connections handed over across a restart ---- */

/* One connection the previous instance stored: admitted (conn_resume())
 * with its state, rec, or afresh when the state was lost. */
static bool server_resume_one(struct server *s, const struct passed_conn *p, const struct handover_conn *rec,
                              struct resumed_conn *rc) {
        rc->slot = conn_resume(s->shared, p->fd, p->id, rec);
        if (!rc->slot)
                return false;
        rc->fd = p->fd;
        if (rec) {
                rc->up = rec->up;
                rc->pending = rec->pending;
                rc->pending_len = rec->pending_len;
        } else
                upcase_init(&rc->up, true);
        return true;
}

/* Takes back the connections the previous instance stored and removes them
 * from the store, so that from now on their close reaches the peer. */
static void server_take_back(struct server *s) {
        struct listeners *l = &s->listeners;
        char name[64];
        int r;

        if (l->state >= 0) {
                r = handover_state_load(l->state, &s->taken_back);
                l->state = -1;
                if (r < 0)
                        log_warning_errno(r, "Failed to read the state of the connections handed over, "
                                          "resuming them without it: %m");
                (void) handover_forget(HANDOVER_STATE_NAME);
        }
        if (l->n_resumed == 0)
                return;
        s->resumed = calloc(l->n_resumed, sizeof(*s->resumed));
        for (size_t i = 0; i < l->n_resumed; i++) {
                struct passed_conn *p = &l->resumed[i];
                const struct handover_conn *rec = handover_state_find(&s->taken_back, p->id);

                snprintf(name, sizeof(name), HANDOVER_CONN_PREFIX "%" PRIu64, p->id);
                r = handover_forget(name);
                if (r < 0)
                        log_warning_errno(r, "Failed to remove %s from the file descriptor store, ignoring: %m", name);
                if (!s->resumed)
                        continue;       /* closed with the listeners */
                if (!server_resume_one(s, p, rec, &s->resumed[s->n_resumed])) {
                        log_warning("Failed to resume connection %s, closing it", name);
                        continue;
                }
                p->fd = -1;
                s->n_resumed++;
        }
        log_msg_id(LOG_INFO, LOG_ID_RESUMED, "Resumed %zu of %zu connection(s) handed over by the previous instance",
                   s->n_resumed, l->n_resumed);
}

/* After the model started: connections it did not take are closed. */
static void server_resumed_done(struct server *s) {
        for (size_t i = 0; i < s->n_resumed; i++) {
                struct resumed_conn *rc = &s->resumed[i];

                if (rc->fd < 0)
                        continue;
                close(rc->fd);
                conn_end(s->shared, rc->slot, CLOSE_ERROR);
        }
        free(s->resumed);
        s->resumed = NULL;
        s->n_resumed = 0;
        handover_state_free(&s->taken_back);
}

static void server_setup_handover(struct server *s) {
        if (!s->handover.enabled)
                return;
        if (!s->ops->holds_connections) {
                log_notice("The %s model closes connections on restart: they are not handed over", s->ops->name);
                s->handover.enabled = false;
        } else if (s->handover.max < s->config.max_connections)
                log_warning("The file descriptor store holds %u connection(s), fewer than max_connections (%u): "
                            "connections beyond it are closed on restart", s->handover.max,
                            s->config.max_connections);
}

static void server_store_handover(struct server *s) {
        int r;

        if (s->handover.stored == 0)
                return;
        r = handover_store_state(&s->handover);
        if (r < 0)
                log_error_errno(r, "Failed to store the state of %u connection(s) handed over; "
                                "the next instance resumes them without it: %m", s->handover.stored);
        else
                log_msg_id(LOG_INFO, LOG_ID_HANDED_OVER, "Handed over %u connection(s) to the next instance",
                           s->handover.stored);
}

/* ---- start and run ---- */

static void server_log_started(struct server *s) {
        char buf[512], one[128];
        size_t len = 0;

        for (size_t i = 0; i < s->listeners.n_tcp && len < sizeof(buf); i++)
                len += snprintf(buf + len, sizeof(buf) - len, ", %s",
                                listen_describe(s->listeners.tcp[i], one, sizeof(one)));
        for (size_t i = 0; i < s->listeners.n_udp && len < sizeof(buf); i++)
                len += snprintf(buf + len, sizeof(buf) - len, ", %s",
                                listen_describe(s->listeners.udp[i], one, sizeof(one)));
        for (size_t i = 0; i < s->listeners.n_proxy && len < sizeof(buf); i++)
                len += snprintf(buf + len, sizeof(buf) - len, ", %s (PROXY protocol)",
                                listen_describe(s->listeners.proxy[i], one, sizeof(one)));
        for (size_t i = 0; i < s->listeners.n_agent && len < sizeof(buf); i++)
                len += snprintf(buf + len, sizeof(buf) - len, ", agent-check %s",
                                listen_describe(s->listeners.agent[i], one, sizeof(one)));
        log_msg_id(LOG_INFO, LOG_ID_STARTED, "uppercased %s running: %s model%s%s", VERSION, s->ops->name,
                   s->listeners.activated ? ", socket activated" : "", len ? buf : "");
}

static int server_start_model(struct server *s) {
        struct worker_env env = {
                .tcp = s->listeners.tcp,
                .n_tcp = s->listeners.n_tcp,
                .udp = s->listeners.udp,
                .n_udp = s->listeners.n_udp,
                .proxy = s->listeners.proxy,
                .n_proxy = s->listeners.n_proxy,
                .shared = s->shared,
                .handover = s->handover.enabled ? &s->handover : NULL,
                .resumed = s->resumed,
                .n_resumed = s->n_resumed,
                .event = s->event,
                .threads = s->config.threads,
                .shut_listeners = !s->listeners.activated,
        };
        int r = s->ops->start(&env, &s->worker);

        server_resumed_done(s);
        if (r < 0)
                return log_error_errno(r, "Failed to start the %s model: %m", s->ops->name);
        return 0;
}

static int server_start(struct server *s) {
        int r;

        server_raise_fd_limit(s);
        r = shared_new(SERVER_SLOTS, &s->shared);
        if (r < 0)
                return log_error_errno(r, "Failed to map shared memory: %m");
        log_set_shared(s->shared);
        server_apply_live(s, &s->config);

        r = server_open_listeners(s);
        if (r < 0 || s->listeners.connected >= 0)
                return r;
        r = udp_set_own_ports(s->shared, s->listeners.udp, s->listeners.n_udp);
        if (r < 0)
                return log_error_errno(r, "Failed to get the port of a UDP socket: %m");
        r = sd_event_default(&s->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create the event loop: %m");
        r = server_add_sources(s);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        r = server_start_control(s);
        if (r >= 0)
                r = server_start_agent(s);
        if (r < 0)
                return r;

        s->ops = worker_models[s->config.model];
        server_setup_handover(s);
        /* Before the first client's entry: the model's workers serve at
         * once, the connection that activated us first. */
        server_log_started(s);
        server_take_back(s);
        r = server_start_model(s);
        if (r < 0)
                return r;
        server_plan_fds(s);
        return 0;
}

/* Accept=yes: systemd accepted the connection and started us for it alone
 * (the lab's process per connection, done by systemd).  Serve it and exit. */
static int server_serve_connection(struct server *s) {
        int fd = s->listeners.connected;
        union sockaddr_union peer;
        socklen_t len = sizeof(peer);
        struct conn_slot *slot;
        enum close_reason reason;
        sigset_t mask;

        if (getpeername(fd, &peer.sa, &len) < 0)
                return log_error_errno(errno, "Failed to get the address of the passed connection: %m");
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                return log_error_errno(errno, "Failed to make the passed connection non-blocking: %m");

        /* Nothing to drain for a single connection: a stop just ends it. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_UNBLOCK, &mask, NULL);

        notify_send("READY=1\nSTATUS=serving one connection");
        /* Ours from here on: closed when refused, or once served. */
        s->listeners.connected = -1;
        slot = conn_admit(s->shared, fd, &peer);
        if (!slot)
                return log_error_errno(EBUSY, "No room for the passed connection");
        reason = tcp_serve_blocking(s->shared, slot, fd, NULL, NULL);
        close(fd);
        conn_end(s->shared, slot, reason);
        return 0;
}

/* The model could not end all its workers (worker_ops.finish()): they may
 * still use the shared area, the log and the model's memory, so nothing is
 * torn down; ending the process ends them.  Every connection was closed or
 * handed over already. */
static _Noreturn void server_abandon(void) {
        log_info("Stopped, without waiting for the workers still busy");
        log_flush_suppressed();
        _exit(EXIT_SUCCESS);
}

static int server_loop(struct server *s) {
        bool finished;
        int r;

        server_update_status(s);
        notify_send("READY=1");
        r = sd_event_loop(s->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        finished = s->ops->finish(s->worker);
        s->worker = NULL;
        server_store_handover(s);
        if (!finished)
                server_abandon();
        log_info("Stopped");
        return r;
}

int server_run(const struct overrides *o, const struct config *c, const char *config_file) {
        struct server s = {
                .config = *c,
                .overrides = o,
                .start_usec = now_usec_monotonic(),
        };
        int r;

        snprintf(s.config_file, sizeof(s.config_file), "%s", config_file);
        if (gethostname(s.host, sizeof(s.host) - 1) < 0)
                s.host[0] = '\0';
        server_set_instance(&s);
        listeners_init(&s.listeners);
        handover_init(&s.handover);

        r = notify_open();
        if (r < 0)
                log_warning_errno(r, "Failed to open a socket to the service manager, using one per message: %m");
        r = server_start(&s);
        if (r >= 0 && s.listeners.connected >= 0)
                r = server_serve_connection(&s);
        else if (r >= 0)
                r = server_loop(&s);

        log_flush_suppressed();
        log_set_shared(NULL);
        control_free(s.control);
        agent_free(s.agent);
        listeners_close(&s.listeners);
        sd_event_unref(s.event);
        shared_free(s.shared);
        handover_done(&s.handover);
        notify_close();
        return r < 0 ? 1 : 0;
}

int server_block_signals(void) {
        /* SA_RESTART: a kick interrupts only the waits that look for it
         * (tcp-blocking.h), never a write to the journal. */
        struct sigaction kick = { .sa_handler = worker_on_kick, .sa_flags = SA_RESTART };
        struct sigaction ignore = { .sa_handler = SIG_IGN };
        sigset_t mask;

        if (sigaction(SIGUSR1, &kick, NULL) < 0 || sigaction(SIGPIPE, &ignore, NULL) < 0)
                return -errno;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGUSR1);
        return -pthread_sigmask(SIG_BLOCK, &mask, NULL);
}
