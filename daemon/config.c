/* SPDX-License-Identifier: MIT */
/* The configuration file: libconfig syntax, read into a struct config.
 *
 * Each known setting is one row of settings[] below, which names its group,
 * its key, how to parse it and where it goes in struct config.  The file is
 * walked in its own order, so the first error reported is the first one in
 * the file, and anything not in the table is an error: a misspelt key must
 * not be silently ignored. */

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "control-proto.h"
#include "duration.h"
#include "errbuf.h"

#define DEFAULT_PORT 12000
#define SUN_PATH_SIZE sizeof(((struct config *) NULL)->control_path)

static const char *const model_names[_MODEL_MAX] = {
        [MODEL_EVENT] = "event",
        [MODEL_THREAD] = "thread",
        [MODEL_PROCESS] = "process",
};

const char *model_to_string(enum worker_model m) {
        if ((unsigned) m >= _MODEL_MAX)
                return NULL;
        return model_names[m];
}

int model_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (int m = 0; m < _MODEL_MAX; m++)
                if (strcmp(s, model_names[m]) == 0)
                        return m;
        return -EINVAL;
}

void config_default_control_path(char *buf, size_t len) {
        control_socket_path(geteuid(), getenv("XDG_RUNTIME_DIR"), buf, len);
}

static void addr_any(struct addr *a) {
        memset(a, 0, sizeof(*a));
        a->sa.in6.sin6_family = AF_INET6;
        a->sa.in6.sin6_addr = in6addr_any;
        a->sa.in6.sin6_port = htons(DEFAULT_PORT);
        a->len = sizeof(struct sockaddr_in6);
}

void config_defaults(struct config *c) {
        *c = (struct config) {
                .n_tcp = 1,
                .n_udp = 1,
                .backlog = 128,
                .control_mode = 0660,
                .control_group = "uppercased",
                .control_admin_group = "uppercased-admin",
                .model = MODEL_EVENT,
                .threads = 1,
                .max_connections = 1024,
                .max_workers = 1024,
                .timeout_usec = {
                        [TIMEOUT_IDLE] = 300 * USEC_PER_SEC,
                        [TIMEOUT_WRITE] = 30 * USEC_PER_SEC,
                        [TIMEOUT_SHUTDOWN] = 10 * USEC_PER_SEC,
                },
                .log_clients = true,
                .log_rate = 100,
                .log_burst = 200,
                .tcp_per_source = 64,
                .udp_rate = 100,
                .udp_burst = 200,
                .udp_loop_guard = true,
                .proxy_timeout_usec = 3 * USEC_PER_SEC,
        };
        addr_any(&c->tcp[0]);
        addr_any(&c->udp[0]);
        /* Every client of the lab VM is local: loopback cannot be forged
         * from the network, so exempting it costs no protection. */
        (void) addr_prefix_parse("127.0.0.0/8", &c->exempt[0]);
        (void) addr_prefix_parse("::1", &c->exempt[1]);
        c->n_exempt = 2;
        config_default_control_path(c->control_path, sizeof(c->control_path));
}

/* ---- parsing ---------------------------------------------------------- */

struct parse_ctx {
        const char *path;               /* the file, for messages */
        struct config *c;               /* the copy being filled in */
        char *err;
        size_t errlen;
};

struct setting_def;
typedef int (*parse_fn)(struct parse_ctx *ctx, const struct setting_def *d,
                        const config_setting_t *s);

struct setting_def {
        const char *group;
        const char *name;
        parse_fn parse;
        size_t offset;                  /* of the value in struct config */
        size_t count_offset;            /* listen lists: of the count */
        long long min, max;             /* integers */
};

static void *field_of(struct config *c, size_t offset) {
        return (char *) c + offset;
}

static const void *const_field_of(const struct config *c, size_t offset) {
        return (const char *) c + offset;
}

/* "listen.tcp[1]" */
static void setting_path(const config_setting_t *s, char *buf, size_t len) {
        const config_setting_t *parent = config_setting_parent(s);
        const char *name = config_setting_name(s);
        size_t n;

        if (!parent || config_setting_is_root(parent)) {
                snprintf(buf, len, "%s", name ? name : "?");
                return;
        }
        setting_path(parent, buf, len);
        n = strlen(buf);
        if (name)
                snprintf(buf + n, len - n, ".%s", name);
        else
                snprintf(buf + n, len - n, "[%d]", config_setting_index(s));
}

/* Writes "FILE:LINE: listen.backlog: message" and returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
static int setting_error(struct parse_ctx *ctx, const config_setting_t *s, const char *fmt, ...) {
        const char *file = config_setting_source_file(s);
        char msg[CONFIG_ERR_MAX], name[128];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        setting_path(s, name, sizeof(name));

        /* Settings read from the stream itself carry no file name, only
         * those pulled in by @include do. */
        snprintf(ctx->err, ctx->errlen, "%s:%u: %s: %s",
                 file ? file : ctx->path, config_setting_source_line(s), name, msg);
        return -EINVAL;
}

static const char *type_name(const config_setting_t *s) {
        switch (config_setting_type(s)) {
        case CONFIG_TYPE_GROUP:
                return "a group";
        case CONFIG_TYPE_INT:
        case CONFIG_TYPE_INT64:
                return "an integer";
        case CONFIG_TYPE_FLOAT:
                return "a number with a fraction";
        case CONFIG_TYPE_STRING:
                return "a string";
        case CONFIG_TYPE_BOOL:
                return "a boolean";
        case CONFIG_TYPE_ARRAY:
        case CONFIG_TYPE_LIST:
                return "a list";
        default:
                return "nothing";
        }
}

static int type_error(struct parse_ctx *ctx, const config_setting_t *s, const char *expected) {
        return setting_error(ctx, s, "expected %s, got %s", expected, type_name(s));
}

/* The string value of s, or NULL after reporting that it is not one. */
static const char *get_string(struct parse_ctx *ctx, const config_setting_t *s, const char *expected) {
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
                type_error(ctx, s, expected);
                return NULL;
        }
        return config_setting_get_string(s);
}

static int get_integer(struct parse_ctx *ctx, const struct setting_def *d,
                       const config_setting_t *s, long long *ret) {
        long long v;

        if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
                return type_error(ctx, s, "an integer");

        v = config_setting_get_int64(s);
        if (v < d->min || v > d->max)
                return setting_error(ctx, s, "%lld is out of range (expected %lld..%lld)", v, d->min, d->max);
        *ret = v;
        return 0;
}

static int parse_int(struct parse_ctx *ctx, const struct setting_def *d,
                     const config_setting_t *s) {
        long long v = 0;
        int r;

        r = get_integer(ctx, d, s, &v);
        if (r < 0)
                return r;
        *(int *) field_of(ctx->c, d->offset) = (int) v;
        return 0;
}

static int parse_unsigned(struct parse_ctx *ctx, const struct setting_def *d,
                          const config_setting_t *s) {
        long long v = 0;
        int r;

        r = get_integer(ctx, d, s, &v);
        if (r < 0)
                return r;
        *(unsigned *) field_of(ctx->c, d->offset) = (unsigned) v;
        return 0;
}

static int parse_bool(struct parse_ctx *ctx, const struct setting_def *d,
                      const config_setting_t *s) {
        if (config_setting_type(s) != CONFIG_TYPE_BOOL)
                return type_error(ctx, s, "true or false");
        *(bool *) field_of(ctx->c, d->offset) = config_setting_get_bool(s);
        return 0;
}

/* A setting that is a list of strings, each parsed by elem() into its place
 * i of the list at d->offset; the count goes to d->count_offset. */
struct list_kind {
        const char *expected;           /* the list, for a type error */
        const char *element;            /* one element, for a type error */
        const char *plural;             /* "addresses" */
        int max;
        int (*elem)(struct parse_ctx *ctx, const config_setting_t *e, const char *text, void *list, int i);
};

static int parse_list(struct parse_ctx *ctx, const struct setting_def *d, const config_setting_t *s,
                      const struct list_kind *k) {
        void *list = field_of(ctx->c, d->offset);
        size_t *count = field_of(ctx->c, d->count_offset);
        int n;

        if (!config_setting_is_array(s) && !config_setting_is_list(s))
                return type_error(ctx, s, k->expected);
        n = config_setting_length(s);
        if (n > k->max)
                return setting_error(ctx, s, "%d %s, at most %d are allowed", n, k->plural, k->max);
        for (int i = 0; i < n; i++) {
                const config_setting_t *e = config_setting_get_elem(s, (unsigned) i);
                const char *text = get_string(ctx, e, k->element);
                int r;

                if (!text)
                        return -EINVAL;
                r = k->elem(ctx, e, text, list, i);
                if (r < 0)
                        return r;
        }
        *count = (size_t) n;
        return 0;
}

static int parse_listen_elem(struct parse_ctx *ctx, const config_setting_t *e, const char *text, void *list, int i) {
        struct addr *addrs = list;

        if (addr_parse(text, &addrs[i]) < 0)
                return setting_error(ctx, e, "invalid address \"%s\" (expected \"IPV4:PORT\", "
                                     "\"[IPV6]:PORT\", \"*:PORT\" or \"PORT\", numeric, port 1..65535)", text);
        for (int j = 0; j < i; j++)
                if (addr_equal(&addrs[i], &addrs[j]))
                        return setting_error(ctx, e, "\"%s\" is listed twice", text);
        return 0;
}

static int parse_listen(struct parse_ctx *ctx, const struct setting_def *d, const config_setting_t *s) {
        static const struct list_kind kind = {
                "a list of \"ADDR:PORT\" strings, e.g. [ \"[::]:12000\" ]", "a string \"ADDR:PORT\"",
                "addresses", CONFIG_MAX_LISTEN, parse_listen_elem,
        };

        return parse_list(ctx, d, s, &kind);
}

static int parse_prefix_elem(struct parse_ctx *ctx, const config_setting_t *e, const char *text, void *list, int i) {
        struct addr_prefix *prefixes = list;
        char net[ADDR_PREFIX_MAX];
        int r = addr_prefix_parse(text, &prefixes[i]);

        if (r == -EADDRNOTAVAIL)
                return setting_error(ctx, e, "\"%s\" has bits set past its length (the network is %s)",
                                     text, addr_prefix_format(&prefixes[i], net));
        if (r < 0)
                return setting_error(ctx, e, "invalid prefix \"%s\" (expected a numeric address, "
                                     "\"ADDR\" or \"ADDR/LEN\": \"192.0.2.0/24\", \"2001:db8::/32\", \"::1\")",
                                     text);
        for (int j = 0; j < i; j++)
                if (addr_prefix_equal(&prefixes[i], &prefixes[j]))
                        return setting_error(ctx, e, "\"%s\" is listed twice (as %s)", text,
                                             addr_prefix_format(&prefixes[j], net));
        return 0;
}

/* limits.exempt, proxy.trusted. */
static int parse_prefixes(struct parse_ctx *ctx, const struct setting_def *d, const config_setting_t *s) {
        static const struct list_kind kind = {
                "a list of \"ADDR\" or \"ADDR/LEN\" strings, e.g. [ \"127.0.0.0/8\" ]",
                "a string \"ADDR\" or \"ADDR/LEN\"", "prefixes", CONFIG_MAX_PREFIXES, parse_prefix_elem,
        };

        return parse_list(ctx, d, s, &kind);
}

static bool instance_char(char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '.' || ch == '-' || ch == '_' || ch == ':';
}

bool config_instance_valid(const char *s) {
        size_t len = strlen(s);

        if (len == 0 || len >= CONFIG_INSTANCE_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!instance_char(s[i]))
                        return false;
        return true;
}

void config_instance_name(const struct config *c, const char *host, char *buf, size_t len) {
        size_t i = 0;

        if (c->instance[0]) {
                snprintf(buf, len, "%s", c->instance);
                return;
        }
        for (; host && host[i] && i + 1 < len && i + 1 < CONFIG_INSTANCE_MAX; i++)
                buf[i] = instance_char(host[i]) ? host[i] : '_';
        buf[i] = '\0';
        if (i == 0)
                snprintf(buf, len, "localhost");
}

/* instance.name: "" for the host name. */
static int parse_instance(struct parse_ctx *ctx, const struct setting_def *d, const config_setting_t *s) {
        char *buf = field_of(ctx->c, d->offset);
        const char *name = get_string(ctx, s, "a string");

        if (!name)
                return -EINVAL;
        if (name[0] && !config_instance_valid(name))
                return setting_error(ctx, s, "invalid instance name \"%s\" (expected \"\" for the host name, "
                                     "or 1..%d letters, digits, '.', '-', '_' or ':')", name,
                                     CONFIG_INSTANCE_MAX - 1);
        memcpy(buf, name, strlen(name) + 1);
        return 0;
}

static int parse_control_path(struct parse_ctx *ctx, const struct setting_def *d,
                              const config_setting_t *s) {
        char *buf = field_of(ctx->c, d->offset);
        const char *path;

        path = get_string(ctx, s, "a string");
        if (!path)
                return -EINVAL;
        if (path[0] != '/')
                return setting_error(ctx, s, "\"%s\" is not an absolute path", path);
        if (strlen(path) >= SUN_PATH_SIZE)
                return setting_error(ctx, s, "path is %zu bytes long, a UNIX socket path can have at most %zu",
                                     strlen(path), SUN_PATH_SIZE - 1);
        memcpy(buf, path, strlen(path) + 1);
        return 0;
}

/* An octal string such as "0660".  A bare number is refused on purpose:
 * libconfig reads 0660 as decimal 660, which is not what anyone means. */
static int parse_mode(struct parse_ctx *ctx, const struct setting_def *d,
                      const config_setting_t *s) {
        const char *text;
        unsigned long v;
        char *end;

        text = get_string(ctx, s, "an octal string such as \"0660\"");
        if (!text)
                return -EINVAL;
        /* The first-digit check stops strtoul() from skipping blanks or
         * taking a sign. */
        errno = 0;
        v = strtoul(text, &end, 8);
        if (text[0] < '0' || text[0] > '7' || *end != '\0' || errno != 0 || v > 0777)
                return setting_error(ctx, s, "invalid mode \"%s\" (expected an octal mode 0000..0777, e.g. \"0660\")",
                                     text);
        *(mode_t *) field_of(ctx->c, d->offset) = (mode_t) v;
        return 0;
}

static int parse_group_name(struct parse_ctx *ctx, const struct setting_def *d,
                            const config_setting_t *s) {
        char *buf = field_of(ctx->c, d->offset);
        size_t size = sizeof(ctx->c->control_group);
        const char *name;

        name = get_string(ctx, s, "a group name or \"\"");
        if (!name)
                return -EINVAL;
        if (strlen(name) >= size)
                return setting_error(ctx, s, "group name is too long (at most %zu bytes)", size - 1);
        memcpy(buf, name, strlen(name) + 1);
        return 0;
}

static int parse_model(struct parse_ctx *ctx, const struct setting_def *d,
                       const config_setting_t *s) {
        const char *text;
        int m;

        text = get_string(ctx, s, "\"event\", \"thread\" or \"process\"");
        if (!text)
                return -EINVAL;
        m = model_from_string(text);
        if (m < 0)
                return setting_error(ctx, s, "unknown model \"%s\" (expected event, thread or process)",
                                     text);
        *(enum worker_model *) field_of(ctx->c, d->offset) = (enum worker_model) m;
        return 0;
}

/* Seconds from a libconfig number, rounded to the microsecond: a float
 * cannot be exact anyway.  Values that round to 0 are refused rather than
 * silently turning the timeout off. */
static int seconds_to_usec(double sec, uint64_t *ret) {
        double max = (double) DURATION_MAX_USEC / USEC_PER_SEC;
        uint64_t usec;

        if (!(sec >= 0))                /* also NaN */
                return -EINVAL;
        if (sec > max)
                return -ERANGE;
        usec = (uint64_t) (sec * USEC_PER_SEC + 0.5);
        if (usec == 0 && sec > 0)
                return -EINVAL;
        *ret = usec;
        return 0;
}

static int number_to_usec(const config_setting_t *s, uint64_t *ret) {
        if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
                return seconds_to_usec(config_setting_get_float(s), ret);
        return seconds_to_usec((double) config_setting_get_int64(s), ret);
}

/* "250ms", "30s", "5m" (via duration_parse()) or a number of seconds. */
static int parse_duration(struct parse_ctx *ctx, const struct setting_def *d,
                          const config_setting_t *s) {
        uint64_t *usec = field_of(ctx->c, d->offset);
        const char *text;
        int r;

        if (config_setting_is_number(s)) {
                r = number_to_usec(s, usec);
                if (r == -ERANGE)
                        return setting_error(ctx, s, "duration is too long (at most 1 week = 604800 seconds)");
                if (r < 0)
                        return setting_error(ctx, s, "invalid duration (expected 0 = off, or 0.000001..604800 seconds)");
                return 0;
        }

        text = get_string(ctx, s, "a duration such as \"30s\" or a number of seconds");
        if (!text)
                return -EINVAL;
        r = duration_parse(text, usec);
        if (r == -ERANGE)
                return setting_error(ctx, s, "duration \"%s\" is too long (at most 1 week)", text);
        if (r < 0)
                return setting_error(ctx, s, "invalid duration \"%s\" (expected e.g. \"250ms\", \"30s\", \"5m\", "
                                     "\"1h\" or seconds; 0 = off)", text);
        return 0;
}

#define FIELD(f) offsetof(struct config, f)

/* Keep in step with etc/uppercased.conf and uppercased.conf(5). */
static const struct setting_def settings[] = {
        { "listen",   "tcp",             parse_listen,       FIELD(tcp), FIELD(n_tcp), 0, 0 },
        { "listen",   "udp",             parse_listen,       FIELD(udp), FIELD(n_udp), 0, 0 },
        { "listen",   "backlog",         parse_int,          FIELD(backlog), 0, 1, 65535 },
        { "control",  "path",            parse_control_path, FIELD(control_path), 0, 0, 0 },
        { "control",  "mode",            parse_mode,         FIELD(control_mode), 0, 0, 0 },
        { "control",  "group",           parse_group_name,   FIELD(control_group), 0, 0, 0 },
        { "control",  "admin_group",     parse_group_name,   FIELD(control_admin_group), 0, 0, 0 },
        { "workers",  "model",           parse_model,        FIELD(model), 0, 0, 0 },
        { "workers",  "threads",         parse_unsigned,     FIELD(threads), 0, 1, 64 },
        { "workers",  "max_connections", parse_unsigned,     FIELD(max_connections), 0, 1, 65536 },
        { "workers",  "max_workers",     parse_unsigned,     FIELD(max_workers), 0, 1, 65536 },
        { "timeouts", "idle",            parse_duration,     FIELD(timeout_usec[TIMEOUT_IDLE]), 0, 0, 0 },
        { "timeouts", "write",           parse_duration,     FIELD(timeout_usec[TIMEOUT_WRITE]), 0, 0, 0 },
        { "timeouts", "shutdown",        parse_duration,     FIELD(timeout_usec[TIMEOUT_SHUTDOWN]), 0, 0, 0 },
        { "log",      "clients",         parse_bool,         FIELD(log_clients), 0, 0, 0 },
        { "log",      "rate",            parse_unsigned,     FIELD(log_rate), 0, 0, 1000000 },
        { "log",      "burst",           parse_unsigned,     FIELD(log_burst), 0, 1, 1000000 },
        { "limits",   "tcp_per_source",  parse_unsigned,     FIELD(tcp_per_source), 0, 0, 65536 },
        { "limits",   "udp_rate",        parse_unsigned,     FIELD(udp_rate), 0, 0, 1000000 },
        { "limits",   "udp_burst",       parse_unsigned,     FIELD(udp_burst), 0, 1, 1000000 },
        { "limits",   "udp_loop_guard",  parse_bool,         FIELD(udp_loop_guard), 0, 0, 0 },
        { "limits",   "exempt",          parse_prefixes,     FIELD(exempt), FIELD(n_exempt), 0, 0 },
        { "proxy",    "listen",          parse_listen,       FIELD(proxy_listen), FIELD(n_proxy_listen), 0, 0 },
        { "proxy",    "trusted",         parse_prefixes,     FIELD(proxy_trusted), FIELD(n_proxy_trusted), 0, 0 },
        { "proxy",    "timeout",         parse_duration,     FIELD(proxy_timeout_usec), 0, 0, 0 },
        { "agent",    "listen",          parse_listen,       FIELD(agent), FIELD(n_agent), 0, 0 },
        { "instance", "name",            parse_instance,     FIELD(instance), 0, 0, 0 },
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting_def *setting_find(const char *group, const char *name) {
        for (size_t i = 0; i < N_SETTINGS; i++)
                if (strcmp(settings[i].group, group) == 0 && strcmp(settings[i].name, name) == 0)
                        return &settings[i];
        return NULL;
}

static bool group_known(const char *group) {
        for (size_t i = 0; i < N_SETTINGS; i++)
                if (strcmp(settings[i].group, group) == 0)
                        return true;
        return false;
}

/* "listen, control, ..." (group == NULL) or "tcp, udp, backlog" (the keys
 * of group), for messages that say what would have been accepted. */
static const char *known_names(const char *group, char *buf, size_t len) {
        const char *prev = NULL;
        size_t n = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < N_SETTINGS && n < len; i++) {
                const char *name;

                if (group)
                        name = strcmp(settings[i].group, group) == 0 ? settings[i].name : NULL;
                else
                        name = prev && strcmp(prev, settings[i].group) == 0 ? NULL : settings[i].group;
                if (!name)
                        continue;
                n += (size_t) snprintf(buf + n, len - n, "%s%s", n > 0 ? ", " : "", name);
                prev = name;
        }
        return buf;
}

static int parse_group(struct parse_ctx *ctx, const config_setting_t *g) {
        const char *group = config_setting_name(g);
        char known[256];
        int n;

        if (!group_known(group))
                return setting_error(ctx, g, "unknown group (expected one of: %s)",
                                     known_names(NULL, known, sizeof(known)));
        if (!config_setting_is_group(g))
                return setting_error(ctx, g, "expected a group, %s: { ... };", group);

        n = config_setting_length(g);
        for (int i = 0; i < n; i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned) i);
                const struct setting_def *d = setting_find(group, config_setting_name(s));
                int r;

                if (!d)
                        return setting_error(ctx, s, "unknown setting (%s has: %s)",
                                             group, known_names(group, known, sizeof(known)));
                r = d->parse(ctx, d, s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_root(struct parse_ctx *ctx, const config_setting_t *root) {
        int n = config_setting_length(root);

        for (int i = 0; i < n; i++) {
                int r = parse_group(ctx, config_setting_get_elem(root, (unsigned) i));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* proxy.listen set: its other settings must make it usable, said at the
 * line of proxy.listen. */
static int check_proxy_at(struct parse_ctx *ctx, config_t *cfg) {
        char why[CONFIG_ERR_MAX];

        if (config_check_proxy(ctx->c, why, sizeof(why)) == 0)
                return 0;
        return setting_error(ctx, config_lookup(cfg, "proxy.listen"), "%s", why);
}

/* ---- loading ---------------------------------------------------------- */

/* Opens path for libconfig.  A directory is refused here because flex's
 * reader calls exit() when read() fails with EISDIR. */
static int open_config(const char *path, FILE **ret) {
        struct stat st;
        FILE *f;

        f = fopen(path, "re");
        if (!f)
                return -errno;
        if (fstat(fileno(f), &st) < 0) {
                int r = -errno;
                fclose(f);
                return r;
        }
        if (S_ISDIR(st.st_mode)) {
                fclose(f);
                return -EISDIR;
        }
        *ret = f;
        return 0;
}

static int read_config(config_t *cfg, FILE *f, const char *path, char *err, size_t errlen) {
        const char *file;

        if (config_read(cfg, f))
                return 0;

        /* Errors in the stream itself carry no file name, only errors in an
         * @include'd file do. */
        file = config_error_file(cfg);
        return errbuf_set(err, errlen, -EINVAL, "%s:%d: %s", file ? file : path,
                     config_error_line(cfg), config_error_text(cfg));
}

int config_load(const char *path, struct config *c, char *err, size_t errlen) {
        struct config tmp;
        struct parse_ctx ctx = {
                .path = path,
                .c = &tmp,
                .err = err,
                .errlen = errlen,
        };
        config_t cfg;
        FILE *f = NULL;
        int r;

        r = open_config(path, &f);
        if (r < 0) {
                errbuf_set(err, errlen, -EINVAL, "%s: %s", path, strerror(-r));
                return r;
        }

        config_defaults(&tmp);
        config_init(&cfg);
        r = read_config(&cfg, f, path, err, errlen);
        if (r == 0)
                r = parse_root(&ctx, config_root_setting(&cfg));
        if (r == 0 && tmp.n_proxy_listen > 0)
                r = check_proxy_at(&ctx, &cfg);
        config_destroy(&cfg);
        fclose(f);
        if (r < 0)
                return r;

        *c = tmp;
        return 0;
}

/* ---- validation ------------------------------------------------------- */

/* Ranges again, for values that came from the command line. */
static int validate_range(const struct config *c, const struct setting_def *d, char *err, size_t errlen) {
        long long v;

        if (d->parse == parse_int)
                v = *(const int *) const_field_of(c, d->offset);
        else if (d->parse == parse_unsigned)
                v = *(const unsigned *) const_field_of(c, d->offset);
        else
                return 0;

        if (v < d->min || v > d->max) {
                return errbuf_set(err, errlen, -EINVAL, "%s.%s is %lld, expected %lld..%lld",
                             d->group, d->name, v, d->min, d->max);
        }
        return 0;
}

static bool addr_listed(const struct addr *a, const struct addr *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (addr_equal(a, &list[i]))
                        return true;
        return false;
}

int config_check_proxy(const struct config *c, char *err, size_t errlen) {
        if (c->n_proxy_trusted == 0)
                return errbuf_set(err, errlen, -EINVAL, "proxied listeners but proxy.trusted is empty: "
                                  "list the balancers that may send a PROXY header");
        if (c->proxy_timeout_usec == 0)
                return errbuf_set(err, errlen, -EINVAL, "proxy.timeout is 0: a PROXY header needs a time "
                                  "limit, or a silent peer holds its connection for ever");
        return 0;
}

int config_validate(const struct config *c, char *err, size_t errlen) {
        size_t len = strnlen(c->control_path, sizeof(c->control_path));

        for (size_t i = 0; i < N_SETTINGS; i++) {
                int r = validate_range(c, &settings[i], err, errlen);
                if (r < 0)
                        return r;
        }

        if (c->n_tcp == 0 && c->n_udp == 0 && c->n_proxy_listen == 0) {
                return errbuf_set(err, errlen, -EINVAL, "nothing to listen on: listen.tcp, listen.udp and "
                                  "proxy.listen are all empty");
        }
        if (c->n_proxy_listen > 0) {
                int r = config_check_proxy(c, err, errlen);
                if (r < 0)
                        return r;
        }
        if (c->n_tcp > CONFIG_MAX_LISTEN || c->n_udp > CONFIG_MAX_LISTEN || c->n_proxy_listen > CONFIG_MAX_LISTEN) {
                return errbuf_set(err, errlen, -EINVAL, "too many listen addresses, at most %d per protocol",
                             CONFIG_MAX_LISTEN);
        }
        if (c->n_agent > CONFIG_MAX_LISTEN)
                return errbuf_set(err, errlen, -EINVAL, "too many agent addresses, at most %d", CONFIG_MAX_LISTEN);
        for (size_t i = 0; i < c->n_agent; i++) {
                const char *also = addr_listed(&c->agent[i], c->tcp, c->n_tcp) ? "a TCP" :
                                   addr_listed(&c->agent[i], c->proxy_listen, c->n_proxy_listen) ? "a proxied" : NULL;
                char text[ADDR_TEXT_MAX];

                if (also)
                        return errbuf_set(err, errlen, -EINVAL, "agent address %s is %s listen address too",
                                          addr_format(&c->agent[i].sa, text), also);
        }
        if (!model_to_string(c->model)) {
                return errbuf_set(err, errlen, -EINVAL, "invalid worker model %d", (int) c->model);
        }
        if (c->control_path[0] != '/') {
                return errbuf_set(err, errlen, -EINVAL, "control socket path \"%.*s\" is not absolute",
                             (int) len, c->control_path);
        }
        if (len >= sizeof(c->control_path)) {
                return errbuf_set(err, errlen, -EINVAL, "control socket path is too long (at most %zu bytes)",
                             sizeof(c->control_path) - 1);
        }
        return 0;
}
