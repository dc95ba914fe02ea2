/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "duration.h"
#include "suites.h"

/* Where etc/uppercased.conf is: $SRCDIR, else the build's SRCDIR, else the
 * current directory (the test runner runs from the top of the tree). */
#ifndef SRCDIR
#define SRCDIR "."
#endif

#define ROOT_CONTROL_PATH "/run/uppercased/control.sock"

static const char *srcdir(void) {
        const char *e = getenv("SRCDIR");

        return e && *e ? e : SRCDIR;
}

/* Writes text to a new file under /tmp; the caller unlinks path. */
static void write_temp(const char *text, char path[static PATH_MAX]) {
        size_t len = strlen(text);
        int fd;

        snprintf(path, PATH_MAX, "/tmp/uppercased-test-XXXXXX");
        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, len), (ssize_t) len);
        ck_assert_int_eq(close(fd), 0);
}

/* Loads text as a config file (over c) and removes the file again. */
static int load_text(const char *text, struct config *c, char *err, size_t errlen,
                     char path[static PATH_MAX]) {
        int r;

        write_temp(text, path);
        r = config_load(path, c, err, errlen);
        unlink(path);
        return r;
}

static void load_ok(const char *text, struct config *c) {
        char path[PATH_MAX], err[CONFIG_ERR_MAX] = "";
        int r;

        r = load_text(text, c, err, sizeof(err), path);
        ck_assert_msg(r == 0, "config_load failed (%d): %s\n--- config:\n%s", r, err, text);
}

/* The load fails with "FILE:LINE: " followed by text containing needle. */
static void assert_load_error(const char *text, int line, const char *needle) {
        char path[PATH_MAX], err[CONFIG_ERR_MAX] = "", prefix[PATH_MAX + 32];
        struct config c;
        int r;

        config_defaults(&c);
        r = load_text(text, &c, err, sizeof(err), path);
        ck_assert_msg(r == -EINVAL, "expected -EINVAL, got %d (%s)\n--- config:\n%s", r, err, text);

        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
        ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
                      "expected prefix \"%s\", got \"%s\"", prefix, err);
        ck_assert_msg(strstr(err + strlen(prefix), needle) != NULL,
                      "expected \"%s\" in \"%s\"", needle, err);
}

static void assert_addr(const struct addr *a, const char *text) {
        struct addr expected;

        ck_assert_int_eq(addr_parse(text, &expected), 0);
        ck_assert_msg(addr_equal(a, &expected), "address is not %s", text);
}

static void assert_config_eq(const struct config *a, const struct config *b) {
        ck_assert_uint_eq(a->n_tcp, b->n_tcp);
        for (size_t i = 0; i < a->n_tcp; i++)
                ck_assert(addr_equal(&a->tcp[i], &b->tcp[i]));
        ck_assert_uint_eq(a->n_udp, b->n_udp);
        for (size_t i = 0; i < a->n_udp; i++)
                ck_assert(addr_equal(&a->udp[i], &b->udp[i]));
        ck_assert_int_eq(a->backlog, b->backlog);
        ck_assert_str_eq(a->control_path, b->control_path);
        ck_assert_uint_eq(a->control_mode, b->control_mode);
        ck_assert_str_eq(a->control_group, b->control_group);
        ck_assert_int_eq(a->model, b->model);
        ck_assert_uint_eq(a->threads, b->threads);
        ck_assert_uint_eq(a->max_connections, b->max_connections);
        ck_assert_uint_eq(a->max_workers, b->max_workers);
        for (int t = 0; t < _TIMEOUT_MAX; t++)
                ck_assert_uint_eq(a->timeout_usec[t], b->timeout_usec[t]);
        ck_assert_int_eq(a->log_clients, b->log_clients);
        ck_assert_uint_eq(a->log_rate, b->log_rate);
        ck_assert_uint_eq(a->log_burst, b->log_burst);
        ck_assert_uint_eq(a->tcp_per_source, b->tcp_per_source);
        ck_assert_uint_eq(a->udp_rate, b->udp_rate);
        ck_assert_uint_eq(a->udp_burst, b->udp_burst);
        ck_assert_int_eq(a->udp_loop_guard, b->udp_loop_guard);
        ck_assert_uint_eq(a->n_exempt, b->n_exempt);
        for (size_t i = 0; i < a->n_exempt; i++)
                ck_assert(addr_prefix_equal(&a->exempt[i], &b->exempt[i]));
        ck_assert_uint_eq(a->n_proxy_listen, b->n_proxy_listen);
        for (size_t i = 0; i < a->n_proxy_listen; i++)
                ck_assert(addr_equal(&a->proxy_listen[i], &b->proxy_listen[i]));
        ck_assert_uint_eq(a->n_proxy_trusted, b->n_proxy_trusted);
        for (size_t i = 0; i < a->n_proxy_trusted; i++)
                ck_assert(addr_prefix_equal(&a->proxy_trusted[i], &b->proxy_trusted[i]));
        ck_assert_uint_eq(a->proxy_timeout_usec, b->proxy_timeout_usec);
        ck_assert_uint_eq(a->n_agent, b->n_agent);
        for (size_t i = 0; i < a->n_agent; i++)
                ck_assert(addr_equal(&a->agent[i], &b->agent[i]));
        ck_assert_str_eq(a->instance, b->instance);
}

static void assert_prefix(const struct addr_prefix *p, const char *text) {
        char buf[ADDR_PREFIX_MAX];

        ck_assert_str_eq(addr_prefix_format(p, buf), text);
}

/* ---- defaults and the shipped file ---------------------------------- */

START_TEST(test_defaults) {
        char path[sizeof(((struct config *) NULL)->control_path)];
        struct config c;

        config_defaults(&c);
        ck_assert_uint_eq(c.n_tcp, 1);
        assert_addr(&c.tcp[0], "[::]:12000");
        ck_assert_uint_eq(c.n_udp, 1);
        assert_addr(&c.udp[0], "[::]:12000");
        ck_assert_int_eq(c.backlog, 128);
        config_default_control_path(path, sizeof(path));
        ck_assert_str_eq(c.control_path, path);
        ck_assert_uint_eq(c.control_mode, 0660);
        ck_assert_str_eq(c.control_group, "uppercased");
        ck_assert_str_eq(c.control_admin_group, "uppercased-admin");
        ck_assert_int_eq(c.model, MODEL_EVENT);
        ck_assert_uint_eq(c.threads, 1);
        ck_assert_uint_eq(c.max_connections, 1024);
        ck_assert_uint_eq(c.max_workers, 1024);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_IDLE], 300 * USEC_PER_SEC);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_WRITE], 30 * USEC_PER_SEC);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_SHUTDOWN], 10 * USEC_PER_SEC);
        ck_assert(c.log_clients);
        ck_assert_uint_eq(c.log_rate, 100);
        ck_assert_uint_eq(c.log_burst, 200);
        ck_assert_uint_eq(c.tcp_per_source, 64);
        ck_assert_uint_eq(c.udp_rate, 100);
        ck_assert_uint_eq(c.udp_burst, 200);
        ck_assert(c.udp_loop_guard);
        ck_assert_uint_eq(c.n_exempt, 2);
        assert_prefix(&c.exempt[0], "127.0.0.0/8");
        assert_prefix(&c.exempt[1], "::1");
        ck_assert_uint_eq(c.n_proxy_listen, 0);
        ck_assert_uint_eq(c.n_proxy_trusted, 0);
        ck_assert_uint_eq(c.proxy_timeout_usec, 3 * USEC_PER_SEC);
        ck_assert_int_eq(config_validate(&c, NULL, 0), 0);
}
END_TEST

/* An empty file, or empty groups, change nothing. */
START_TEST(test_empty) {
        struct config c, defaults;

        config_defaults(&defaults);
        memset(&c, 0x5a, sizeof(c));
        load_ok("", &c);
        assert_config_eq(&c, &defaults);

        memset(&c, 0x5a, sizeof(c));
        load_ok("# nothing\nlisten: {};\ncontrol: {};\nworkers: {};\ntimeouts: {};\nlog: {};\nlimits: {};\n"
                "proxy: {};\n", &c);
        assert_config_eq(&c, &defaults);
}
END_TEST

START_TEST(test_shipped) {
        char path[PATH_MAX], err[CONFIG_ERR_MAX] = "";
        struct config c, expected;

        snprintf(path, sizeof(path), "%s/etc/uppercased.conf", srcdir());
        memset(&c, 0x5a, sizeof(c));
        ck_assert_msg(config_load(path, &c, err, sizeof(err)) == 0, "%s", err);

        /* The file names the root path; the built-in default may not be it. */
        config_defaults(&expected);
        snprintf(expected.control_path, sizeof(expected.control_path), "%s", ROOT_CONTROL_PATH);
        assert_config_eq(&c, &expected);
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
}
END_TEST

/* SPEC §6: every setting is present in the shipped file. */
START_TEST(test_shipped_complete) {
        static const char *const keys[] = {
                "listen.tcp", "listen.udp", "listen.backlog",
                "control.path", "control.mode", "control.group", "control.admin_group",
                "workers.model", "workers.threads", "workers.max_connections", "workers.max_workers",
                "timeouts.idle", "timeouts.write", "timeouts.shutdown",
                "log.clients", "log.rate", "log.burst",
                "limits.tcp_per_source", "limits.udp_rate", "limits.udp_burst", "limits.udp_loop_guard",
                "limits.exempt", "proxy.listen", "proxy.trusted", "proxy.timeout",
                "limits.exempt", "agent.listen", "instance.name",
        };
        char path[PATH_MAX];
        config_t cfg;

        snprintf(path, sizeof(path), "%s/etc/uppercased.conf", srcdir());
        config_init(&cfg);
        ck_assert(config_read_file(&cfg, path));
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                bool found = config_lookup(&cfg, keys[i]) != NULL;
                if (!found)
                        config_destroy(&cfg);
                ck_assert_msg(found, "%s missing from %s", keys[i], path);
        }
        config_destroy(&cfg);
}
END_TEST

/* ---- every setting --------------------------------------------------- */

START_TEST(test_all_settings) {
        struct config c;

        config_defaults(&c);
        load_ok("listen: {\n"
                "  tcp = [ \"127.0.0.1:8000\", \"[::1]:8001\", \"*:8002\", \"8003\" ];\n"
                "  udp = ( \"0.0.0.0:9000\" );\n"
                "  backlog = 4096;\n"
                "};\n"
                "control = {\n"
                "  path = \"/tmp/x/ctl.sock\";\n"
                "  mode = \"0600\";\n"
                "  group = \"\";\n"
                "};\n"
                "workers: {\n"
                "  model = \"process\";\n"
                "  threads = 4;\n"
                "  max_connections = 65536;\n"
                "  max_workers = 7;\n"
                "};\n"
                "timeouts: {\n"
                "  idle = \"5m\";\n"
                "  write = 2.5;\n"
                "  shutdown = 0;\n"
                "};\n"
                "log: {\n"
                "  clients = false;\n"
                "  rate = 0;\n"
                "  burst = 1;\n"
                "};\n"
                "limits: {\n"
                "  tcp_per_source = 65536;\n"
                "  udp_rate = 1000000;\n"
                "  udp_burst = 1;\n"
                "  udp_loop_guard = false;\n"
                "  exempt = [ \"192.0.2.0/24\", \"2001:db8::/32\", \"10.1.2.3\", \"::ffff:198.51.100.0/120\" ];\n"
                "};\n", &c);

        ck_assert_uint_eq(c.n_tcp, 4);
        assert_addr(&c.tcp[0], "127.0.0.1:8000");
        assert_addr(&c.tcp[1], "[::1]:8001");
        assert_addr(&c.tcp[2], "[::]:8002");
        assert_addr(&c.tcp[3], "[::]:8003");
        ck_assert_uint_eq(c.n_udp, 1);
        assert_addr(&c.udp[0], "0.0.0.0:9000");
        ck_assert_int_eq(c.backlog, 4096);
        ck_assert_str_eq(c.control_path, "/tmp/x/ctl.sock");
        ck_assert_uint_eq(c.control_mode, 0600);
        ck_assert_str_eq(c.control_group, "");
        ck_assert_int_eq(c.model, MODEL_PROCESS);
        ck_assert_uint_eq(c.threads, 4);
        ck_assert_uint_eq(c.max_connections, 65536);
        ck_assert_uint_eq(c.max_workers, 7);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_IDLE], 300 * USEC_PER_SEC);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_WRITE], 2500 * USEC_PER_MSEC);
        ck_assert_uint_eq(c.timeout_usec[TIMEOUT_SHUTDOWN], 0);
        ck_assert(!c.log_clients);
        ck_assert_uint_eq(c.log_rate, 0);
        ck_assert_uint_eq(c.log_burst, 1);
        ck_assert_uint_eq(c.tcp_per_source, 65536);
        ck_assert_uint_eq(c.udp_rate, 1000000);
        ck_assert_uint_eq(c.udp_burst, 1);
        ck_assert(!c.udp_loop_guard);
        ck_assert_uint_eq(c.n_exempt, 4);
        assert_prefix(&c.exempt[0], "192.0.2.0/24");
        assert_prefix(&c.exempt[1], "2001:db8::/32");
        assert_prefix(&c.exempt[2], "10.1.2.3");
        assert_prefix(&c.exempt[3], "::ffff:198.51.100.0/120");
}
END_TEST

/* agent.listen: HAProxy agent-check listeners, none by default; the
 * instance name: "" (the host name) by default. */
START_TEST(test_agent_and_instance) {
        char name[CONFIG_INSTANCE_MAX + 8];
        struct config c;

        config_defaults(&c);
        ck_assert_uint_eq(c.n_agent, 0);
        ck_assert_str_eq(c.instance, "");
        load_ok("agent: {\n  listen = [ \"127.0.0.1:12001\", \"[::1]:12001\" ];\n};\n"
                "instance: {\n  name = \"web-1.example:a_b\";\n};\n", &c);
        ck_assert_uint_eq(c.n_agent, 2);
        assert_addr(&c.agent[0], "127.0.0.1:12001");
        assert_addr(&c.agent[1], "[::1]:12001");
        ck_assert_str_eq(c.instance, "web-1.example:a_b");
        config_instance_name(&c, "host", name, sizeof(name));
        ck_assert_str_eq(name, "web-1.example:a_b");

        load_ok("agent: { listen = []; };\ninstance: { name = \"\"; };\n", &c);
        ck_assert_uint_eq(c.n_agent, 0);
        config_instance_name(&c, "lab-vm", name, sizeof(name));
        ck_assert_str_eq(name, "lab-vm");
        /* What no name may hold is replaced; no host name at all. */
        config_instance_name(&c, "a b\"c", name, sizeof(name));
        ck_assert_str_eq(name, "a_b_c");
        config_instance_name(&c, "", name, sizeof(name));
        ck_assert_str_eq(name, "localhost");

        memset(name, 'a', CONFIG_INSTANCE_MAX - 1);
        name[CONFIG_INSTANCE_MAX - 1] = '\0';
        ck_assert(config_instance_valid(name));
        strcat(name, "a");
        ck_assert(!config_instance_valid(name));
        ck_assert(!config_instance_valid(""));
        ck_assert(!config_instance_valid("a/b"));
}
END_TEST

/* An empty list exempts no source. */
START_TEST(test_exempt_empty) {
        struct config c;

        load_ok("limits: { exempt = []; };\n", &c);
        ck_assert_uint_eq(c.n_exempt, 0);
        ck_assert_uint_eq(c.tcp_per_source, 64);
}
END_TEST

/* 0 turns the two limits off; the guard can be turned off alone. */
/* A proxied listener, its balancers and its timeout; without one, an
 * empty trusted list is fine. */
START_TEST(test_proxy) {
        struct config c;

        config_defaults(&c);
        load_ok("proxy: {\n"
                "  listen = [ \"10.0.0.5:12001\", \"[::]:12002\" ];\n"
                "  trusted = [ \"10.0.0.0/24\", \"2001:db8::7\" ];\n"
                "  timeout = \"500ms\";\n"
                "};\n", &c);
        ck_assert_uint_eq(c.n_proxy_listen, 2);
        assert_addr(&c.proxy_listen[0], "10.0.0.5:12001");
        assert_addr(&c.proxy_listen[1], "[::]:12002");
        ck_assert_uint_eq(c.n_proxy_trusted, 2);
        assert_prefix(&c.proxy_trusted[0], "10.0.0.0/24");
        assert_prefix(&c.proxy_trusted[1], "2001:db8::7");
        ck_assert_uint_eq(c.proxy_timeout_usec, 500 * USEC_PER_MSEC);
        ck_assert_int_eq(config_validate(&c, NULL, 0), 0);

        /* Only proxied listeners is something to listen on. */
        c.n_tcp = c.n_udp = 0;
        ck_assert_int_eq(config_validate(&c, NULL, 0), 0);
        /* The command line's --proxy-tcp is checked by config_validate(). */
        c.n_proxy_trusted = 0;
        ck_assert_int_eq(config_validate(&c, NULL, 0), -EINVAL);

        config_defaults(&c);
        load_ok("proxy: { trusted = []; timeout = 0; };\n", &c);
        ck_assert_int_eq(config_validate(&c, NULL, 0), 0);
}
END_TEST

START_TEST(test_limits_off) {
        struct config c;

        load_ok("limits: { tcp_per_source = 0; udp_rate = 0; };\n", &c);
        ck_assert_uint_eq(c.tcp_per_source, 0);
        ck_assert_uint_eq(c.udp_rate, 0);
        ck_assert_uint_eq(c.udp_burst, 200);
        ck_assert(c.udp_loop_guard);
        load_ok("limits: { udp_loop_guard = false; };\n", &c);
        ck_assert_uint_eq(c.tcp_per_source, 64);
        ck_assert_uint_eq(c.udp_rate, 100);
        ck_assert(!c.udp_loop_guard);
}
END_TEST

/* Settings not in the file keep their defaults, whatever *c held before. */
START_TEST(test_partial) {
        struct config c, expected;

        config_defaults(&expected);
        expected.n_tcp = 0;
        expected.threads = 3;

        memset(&c, 0x5a, sizeof(c));
        load_ok("listen: { tcp = []; };\nworkers: { threads = 3; };\n", &c);
        assert_config_eq(&c, &expected);
}
END_TEST

START_TEST(test_models) {
        static const char *const names[] = { "event", "thread", "process" };
        char text[128];
        struct config c;

        for (int m = 0; m < _MODEL_MAX; m++) {
                snprintf(text, sizeof(text), "workers: { model = \"%s\"; };\n", names[m]);
                load_ok(text, &c);
                ck_assert_int_eq(c.model, m);
        }
}
END_TEST

START_TEST(test_modes) {
        static const struct {
                const char *text;
                mode_t mode;
        } cases[] = {
                { "0660", 0660 }, { "660", 0660 }, { "0777", 0777 }, { "0", 0 }, { "0000", 0 }, { "00600", 0600 },
        };
        char text[128];
        struct config c;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                snprintf(text, sizeof(text), "control: { mode = \"%s\"; };\n", cases[i].text);
                load_ok(text, &c);
                ck_assert_uint_eq(c.control_mode, cases[i].mode);
        }
}
END_TEST

static const struct {
        const char *value;
        uint64_t usec;
} durations[] = {
        { "\"250ms\"",  250 * USEC_PER_MSEC },
        { "\"30s\"",    30 * USEC_PER_SEC },
        { "\"5m\"",     300 * USEC_PER_SEC },
        { "\"1h\"",     3600 * USEC_PER_SEC },
        { "\"1.5\"",    1500 * USEC_PER_MSEC },
        { "\"45\"",     45 * USEC_PER_SEC },
        { "\"0\"",      0 },
        { "\"0s\"",     0 },
        { "\"168h\"",   DURATION_MAX_USEC },
        { "45",         45 * USEC_PER_SEC },
        { "0",          0 },
        { "0.0",        0 },
        { "2.5",        2500 * USEC_PER_MSEC },
        { "0.25",       250 * USEC_PER_MSEC },
        { "0.000001",   1 },
        { "1e1",        10 * USEC_PER_SEC },
        { "10L",        10 * USEC_PER_SEC },
        { "604800",     DURATION_MAX_USEC },
        { "0x10",       16 * USEC_PER_SEC },
};

START_TEST(test_durations) {
        static const char *const keys[] = { "idle", "write", "shutdown" };
        static const enum timeout_id ids[] = { TIMEOUT_IDLE, TIMEOUT_WRITE, TIMEOUT_SHUTDOWN };
        char text[128];
        struct config c;

        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
                snprintf(text, sizeof(text), "timeouts: {\n  %s = %s;\n};\n", keys[k], durations[_i].value);
                load_ok(text, &c);
                ck_assert_msg(c.timeout_usec[ids[k]] == durations[_i].usec, "%s = %s gave %llu",
                              keys[k], durations[_i].value, (unsigned long long) c.timeout_usec[ids[k]]);
        }
}
END_TEST

/* "listen: {\n  udp = [\n    \"1000\",\n ... ];\n};\n" with n ports. */
static void udp_list(size_t n, char *buf, size_t len) {
        size_t off = (size_t) snprintf(buf, len, "listen: {\n  udp = [\n");

        for (size_t i = 0; i < n; i++)
                off += (size_t) snprintf(buf + off, len - off, "    \"%zu\"%s\n", 1000 + i, i + 1 < n ? "," : "");
        snprintf(buf + off, len - off, "  ];\n};\n");
}

START_TEST(test_listen_limits) {
        char text[2048];
        struct config c;

        udp_list(CONFIG_MAX_LISTEN, text, sizeof(text));
        load_ok(text, &c);
        ck_assert_uint_eq(c.n_udp, CONFIG_MAX_LISTEN);
        assert_addr(&c.udp[0], "[::]:1000");
        assert_addr(&c.udp[CONFIG_MAX_LISTEN - 1], "[::]:1015");

        udp_list(CONFIG_MAX_LISTEN + 1, text, sizeof(text));
        assert_load_error(text, 2, "listen.udp: 17 addresses, at most 16 are allowed");

        /* Both lists empty loads: that is config_validate()'s to refuse. */
        load_ok("listen: { tcp = []; udp = (); };\n", &c);
        ck_assert_uint_eq(c.n_tcp, 0);
        ck_assert_uint_eq(c.n_udp, 0);
}
END_TEST

START_TEST(test_control_path_longest) {
        char text[256], path[108];
        struct config c;

        /* 107 bytes plus the NUL fill sun_path exactly. */
        memset(path, 'a', sizeof(path) - 1);
        path[0] = '/';
        path[sizeof(path) - 1] = '\0';
        snprintf(text, sizeof(text), "control: {\n  path = \"%s\";\n};\n", path);
        load_ok(text, &c);
        ck_assert_str_eq(c.control_path, path);

        snprintf(text, sizeof(text), "control: {\n  path = \"%sb\";\n};\n", path);
        assert_load_error(text, 2, "control.path: path is 108 bytes long, a UNIX socket path can have at most 107");
}
END_TEST

/* ---- errors ----------------------------------------------------------- */

static const struct {
        const char *text;
        int line;
        const char *message;            /* after "FILE:LINE: " */
} errors[] = {
        /* Syntax, reported by libconfig. */
        { "listen: {\n  backlog = ;\n};\n", 2, "syntax error" },
        { "listen: {\n  backlog = 1;\n", 3, "syntax error" },
        { "listen: {\n  backlog = 1;\n  backlog = 2;\n};\n", 3, "duplicate setting name" },
        { "listen: {\n  tcp = [ \"1\", 2 ];\n};\n", 2, "mismatched element type in array" },
        { "\n\n@include \"/nonexistent/uppercased.conf\"\n", 3, "cannot open include file" },

        /* Unknown names. */
        { "listen: {};\n\nlsiten: {};\n", 3,
          "lsiten: unknown group (expected one of: listen, control, workers, timeouts, log, limits, proxy, "
          "agent, instance)" },
        { "backlog = 5;\n", 1, "backlog: unknown group" },
        { "listen: {\n  tcp = [];\n  bakclog = 5;\n};\n", 3,
          "listen.bakclog: unknown setting (listen has: tcp, udp, backlog)" },
        { "log: {\n  clients = true;\n\n  rates = 5;\n};\n", 4, "log.rates: unknown setting (log has: clients, rate, burst)" },
        { "timeouts: { read = \"5s\"; };\n", 1, "timeouts.read: unknown setting (timeouts has: idle, write, shutdown)" },
        { "\nlisten = 5;\n", 2, "listen: expected a group, listen: { ... };" },
        { "listen = [ \"1\" ];\n", 1, "listen: expected a group" },

        /* agent, instance */
        { "agent: {\n  listen = [ \"127.0.0.1:12001\",\n    \"localhost:12001\" ];\n};\n", 3,
          "agent.listen[1]: invalid address \"localhost:12001\"" },
        { "agent: {\n  listen = \"12001\";\n};\n", 2, "agent.listen: expected a list of \"ADDR:PORT\" strings" },
        { "agent: {\n  listen = [ \"12001\", \"[::]:12001\" ];\n};\n", 2,
          "agent.listen[1]: \"[::]:12001\" is listed twice" },
        { "agent: {\n  port = 12001;\n};\n", 2, "agent.port: unknown setting (agent has: listen)" },
        { "instance: {\n  name = \"web 1\";\n};\n", 2,
          "instance.name: invalid instance name \"web 1\" (expected \"\" for the host name, or 1..64 letters" },
        { "instance: {\n\n  name = \"a\\\"b\";\n};\n", 3, "instance.name: invalid instance name" },
        { "instance: {\n  name = 1;\n};\n", 2, "instance.name: expected a string, got an integer" },
        { "instance = \"web1\";\n", 1, "instance: expected a group, instance: { ... };" },

        /* listen */
        { "listen: {\n  tcp = [];\n  backlog = 0;\n};\n", 3, "listen.backlog: 0 is out of range (expected 1..65535)" },
        { "listen: {\n  backlog = 65536;\n};\n", 2, "listen.backlog: 65536 is out of range (expected 1..65535)" },
        { "listen: {\n  backlog = -1;\n};\n", 2, "listen.backlog: -1 is out of range" },
        { "listen: {\n  backlog = 10000000000L;\n};\n", 2, "listen.backlog: 10000000000 is out of range" },
        { "listen: {\n  backlog = \"128\";\n};\n", 2, "listen.backlog: expected an integer, got a string" },
        { "listen: {\n  backlog = 1.5;\n};\n", 2, "listen.backlog: expected an integer, got a number with a fraction" },
        { "listen: {\n  backlog = true;\n};\n", 2, "listen.backlog: expected an integer, got a boolean" },
        { "listen: {\n  backlog = [ 1 ];\n};\n", 2, "listen.backlog: expected an integer, got a list" },
        { "listen: {\n  backlog = { };\n};\n", 2, "listen.backlog: expected an integer, got a group" },
        { "listen: {\n  tcp = \"[::]:12000\";\n};\n", 2,
          "listen.tcp: expected a list of \"ADDR:PORT\" strings, e.g. [ \"[::]:12000\" ], got a string" },
        { "listen: {\n  tcp = [ 12000 ];\n};\n", 2, "listen.tcp[0]: expected a string \"ADDR:PORT\", got an integer" },
        { "listen: {\n  udp = ( \"1\", 2 );\n};\n", 2, "listen.udp[1]: expected a string" },
        { "listen: {\n  tcp = [ \"[::]:0\" ];\n};\n", 2, "listen.tcp[0]: invalid address \"[::]:0\" (expected" },
        { "listen: {\n  tcp = [ \"1.2.3.4:80\",\n          \"localhost:80\" ];\n};\n", 3,
          "listen.tcp[1]: invalid address \"localhost:80\"" },
        { "listen: {\n  udp = [ \"::1:80\" ];\n};\n", 2, "listen.udp[0]: invalid address \"::1:80\"" },
        { "listen: {\n  udp = [ \"\" ];\n};\n", 2, "listen.udp[0]: invalid address \"\"" },
        { "listen: {\n  tcp = [ \"12000\",\n    \"[::]:12000\" ];\n};\n", 3,
          "listen.tcp[1]: \"[::]:12000\" is listed twice" },

        /* control */
        { "control: {\n  path = \"run/x.sock\";\n};\n", 2, "control.path: \"run/x.sock\" is not an absolute path" },
        { "control: {\n  path = \"\";\n};\n", 2, "control.path: \"\" is not an absolute path" },
        { "control: {\n  path = 5;\n};\n", 2, "control.path: expected a string, got an integer" },
        { "control: {\n  mode = 0660;\n};\n", 2,
          "control.mode: expected an octal string such as \"0660\", got an integer" },
        { "control: {\n  mode = \"0680\";\n};\n", 2,
          "control.mode: invalid mode \"0680\" (expected an octal mode 0000..0777, e.g. \"0660\")" },
        { "control: {\n  mode = \"01777\";\n};\n", 2, "control.mode: invalid mode \"01777\"" },
        { "control: {\n  mode = \"\";\n};\n", 2, "control.mode: invalid mode \"\"" },
        { "control: {\n  mode = \" 660\";\n};\n", 2, "control.mode: invalid mode \" 660\"" },
        { "control: {\n  mode = \"-660\";\n};\n", 2, "control.mode: invalid mode \"-660\"" },
        { "control: {\n  mode = \"rw-rw----\";\n};\n", 2, "control.mode: invalid mode" },
        { "control: {\n  group = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n};\n", 2,
          "control.group: group name is too long (at most 63 bytes)" },
        { "control: {\n  group = 0;\n};\n", 2, "control.group: expected a group name or \"\", got an integer" },

        /* workers */
        { "workers: {\n  model = \"fork\";\n};\n", 2,
          "workers.model: unknown model \"fork\" (expected event, thread or process)" },
        { "workers: {\n  model = \"Event\";\n};\n", 2, "workers.model: unknown model \"Event\"" },
        { "workers: {\n  model = 1;\n};\n", 2,
          "workers.model: expected \"event\", \"thread\" or \"process\", got an integer" },
        { "workers: {\n  threads = 0;\n};\n", 2, "workers.threads: 0 is out of range (expected 1..64)" },
        { "workers: {\n  threads = 65;\n};\n", 2, "workers.threads: 65 is out of range (expected 1..64)" },
        { "workers: {\n  max_connections = 0;\n};\n", 2, "workers.max_connections: 0 is out of range (expected 1..65536)" },
        { "workers: {\n  max_connections = 65537;\n};\n", 2, "workers.max_connections: 65537 is out of range" },
        { "workers: {\n  max_workers = 0;\n};\n", 2, "workers.max_workers: 0 is out of range (expected 1..65536)" },
        { "workers: {\n  max_workers = \"10\";\n};\n", 2, "workers.max_workers: expected an integer, got a string" },

        /* timeouts */
        { "timeouts: {\n  idle = \"5x\";\n};\n", 2,
          "timeouts.idle: invalid duration \"5x\" (expected e.g. \"250ms\", \"30s\", \"5m\", \"1h\" or seconds; 0 = off)" },
        { "timeouts: {\n  idle = \"\";\n};\n", 2, "timeouts.idle: invalid duration \"\"" },
        { "timeouts: {\n  write = \"-1s\";\n};\n", 2, "timeouts.write: invalid duration \"-1s\"" },
        { "timeouts: {\n  write = \" 30s\";\n};\n", 2, "timeouts.write: invalid duration \" 30s\"" },
        { "timeouts: {\n  shutdown = \"169h\";\n};\n", 2,
          "timeouts.shutdown: duration \"169h\" is too long (at most 1 week)" },
        { "timeouts: {\n  idle = -1;\n};\n", 2,
          "timeouts.idle: invalid duration (expected 0 = off, or 0.000001..604800 seconds)" },
        { "timeouts: {\n  idle = -0.5;\n};\n", 2, "timeouts.idle: invalid duration" },
        { "timeouts: {\n  idle = 0.0000001;\n};\n", 2, "timeouts.idle: invalid duration" },
        { "timeouts: {\n  idle = 604801;\n};\n", 2, "timeouts.idle: duration is too long (at most 1 week = 604800 seconds)" },
        { "timeouts: {\n  idle = 1e400;\n};\n", 2, "timeouts.idle: duration is too long" },
        { "timeouts: {\n  idle = 99999999999999L;\n};\n", 2, "timeouts.idle: duration is too long" },
        { "timeouts: {\n  idle = true;\n};\n", 2,
          "timeouts.idle: expected a duration such as \"30s\" or a number of seconds, got a boolean" },
        { "timeouts: {\n  idle = [ \"5s\" ];\n};\n", 2, "timeouts.idle: expected a duration" },

        /* log */
        { "log: {\n  clients = 1;\n};\n", 2, "log.clients: expected true or false, got an integer" },
        { "log: {\n  clients = \"yes\";\n};\n", 2, "log.clients: expected true or false, got a string" },
        { "log: {\n  rate = -1;\n};\n", 2, "log.rate: -1 is out of range (expected 0..1000000)" },
        { "log: {\n  rate = 1000001;\n};\n", 2, "log.rate: 1000001 is out of range" },
        { "log: {\n  burst = 0;\n};\n", 2, "log.burst: 0 is out of range (expected 1..1000000)" },

        /* limits */
        { "limits: {\n  tcp_per_source = 65537;\n};\n", 2,
          "limits.tcp_per_source: 65537 is out of range (expected 0..65536)" },
        { "limits: {\n  tcp_per_source = -1;\n};\n", 2, "limits.tcp_per_source: -1 is out of range" },
        { "limits: {\n  tcp_per_source = \"64\";\n};\n", 2,
          "limits.tcp_per_source: expected an integer, got a string" },
        { "limits: {\n  udp_rate = 1000001;\n};\n", 2, "limits.udp_rate: 1000001 is out of range (expected 0..1000000)" },
        { "limits: {\n  udp_rate = 1.5;\n};\n", 2,
          "limits.udp_rate: expected an integer, got a number with a fraction" },
        { "limits: {\n  udp_rate = 0;\n\n  udp_burst = 0;\n};\n", 4,
          "limits.udp_burst: 0 is out of range (expected 1..1000000)" },
        { "limits: {\n  udp_loop_guard = 1;\n};\n", 2, "limits.udp_loop_guard: expected true or false, got an integer" },
        { "limits: {\n  udp_rates = 5;\n};\n", 2,
          "limits.udp_rates: unknown setting (limits has: tcp_per_source, udp_rate, udp_burst, udp_loop_guard, exempt)" },
        { "limits = 64;\n", 1, "limits: expected a group" },
        { "limits: {\n  exempt = \"127.0.0.1\";\n};\n", 2,
          "limits.exempt: expected a list of \"ADDR\" or \"ADDR/LEN\" strings" },
        { "limits: {\n  exempt = [ 127 ];\n};\n", 2,
          "limits.exempt[0]: expected a string \"ADDR\" or \"ADDR/LEN\", got an integer" },
        { "limits: {\n  exempt = [ \"::1\",\n    \"localhost\" ];\n};\n", 3,
          "limits.exempt[1]: invalid prefix \"localhost\"" },
        { "limits: {\n  exempt = [ \"127.0.0.0/33\" ];\n};\n", 2, "invalid prefix \"127.0.0.0/33\"" },
        { "limits: {\n  exempt = [ \"127.0.0.1/8\" ];\n};\n", 2,
          "limits.exempt[0]: \"127.0.0.1/8\" has bits set past its length (the network is 127.0.0.0/8)" },
        { "limits: {\n  exempt = [ \"127.0.0.0/8\", \"127.0.0.0/8\" ];\n};\n", 2,
          "limits.exempt[1]: \"127.0.0.0/8\" is listed twice (as 127.0.0.0/8)" },

        /* proxy: a proxied listener needs balancers to trust, and a timeout */
        { "proxy: {\n  trusted = [ \"10.0.0.0/8\" ];\n  listen = [ \"12001\" ];\n  timeout = 0;\n};\n", 3,
          "proxy.listen: proxy.timeout is 0: a PROXY header needs a time limit" },
        { "\nproxy: {\n  listen = [ \"12001\" ];\n};\n", 3,
          "proxy.listen: proxied listeners but proxy.trusted is empty: list the balancers that may send a PROXY header" },
        { "proxy: {\n  listen = [ \"12001\" ];\n  trusted = [ \"10.0.0.1/8\" ];\n};\n", 3,
          "proxy.trusted[0]: \"10.0.0.1/8\" has bits set past its length (the network is 10.0.0.0/8)" },
        { "proxy: {\n  listen = [ \"localhost:1\" ];\n};\n", 2, "proxy.listen[0]: invalid address \"localhost:1\"" },
        { "proxy: {\n  timeout = \"3 s\";\n};\n", 2, "proxy.timeout: invalid duration \"3 s\"" },
        { "proxy: {\n  trust = [ ];\n};\n", 2, "proxy.trust: unknown setting (proxy has: listen, trusted, timeout)" },

        /* Only the first error is reported. */
        { "listen: {\n  backlog = 0;\n  tcp = [ \"x\" ];\n};\nfoo: {};\n", 2, "listen.backlog:" },
        { "workers: {\n  threads = 2;\n};\nlog: {\n  rate = -1;\n  burst = 0;\n};\n", 5, "log.rate:" },
};

START_TEST(test_errors) {
        assert_load_error(errors[_i].text, errors[_i].line, errors[_i].message);
}
END_TEST

START_TEST(test_missing_file) {
        char path[PATH_MAX], err[CONFIG_ERR_MAX], expected[PATH_MAX + 64];
        struct config c, before;

        write_temp("", path);
        unlink(path);
        config_defaults(&c);
        c.backlog = 7;
        before = c;
        ck_assert_int_eq(config_load(path, &c, err, sizeof(err)), -ENOENT);
        snprintf(expected, sizeof(expected), "%s: No such file or directory", path);
        ck_assert_str_eq(err, expected);
        ck_assert(memcmp(&c, &before, sizeof(c)) == 0);
}
END_TEST

/* A directory would make libconfig's scanner exit() the whole daemon. */
START_TEST(test_directory) {
        char err[CONFIG_ERR_MAX];
        struct config c;

        ck_assert_int_eq(config_load("/tmp", &c, err, sizeof(err)), -EISDIR);
        ck_assert_str_eq(err, "/tmp: Is a directory");
}
END_TEST

START_TEST(test_unreadable) {
        char path[PATH_MAX], err[CONFIG_ERR_MAX], expected[PATH_MAX + 64];
        struct config c;
        int r;

        if (geteuid() == 0)
                return;         /* root reads it anyway */
        write_temp("log: { rate = 5; };\n", path);
        ck_assert_int_eq(chmod(path, 0), 0);
        r = config_load(path, &c, err, sizeof(err));
        unlink(path);
        ck_assert_int_eq(r, -EACCES);
        snprintf(expected, sizeof(expected), "%s: Permission denied", path);
        ck_assert_str_eq(err, expected);
}
END_TEST

/* A failed load leaves *c exactly as it was, even when settings before
 * the error were valid. */
START_TEST(test_unchanged_on_error) {
        static const char *const bad[] = {
                "listen: {\n  backlog = 5;\n  tcp = [ \"bad\" ];\n};\n",
                "workers: { threads = 2; };\nlog: { rate = 5; burst = ; };\n",
                "workers: { threads = 2; };\nnope: {};\n",
        };
        char path[PATH_MAX], err[CONFIG_ERR_MAX];
        struct config c, before;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&c, 0x5a, sizeof(c));
                before = c;
                ck_assert_int_eq(load_text(bad[i], &c, err, sizeof(err), path), -EINVAL);
                ck_assert_msg(memcmp(&c, &before, sizeof(c)) == 0, "changed by: %s", bad[i]);
        }
}
END_TEST

/* A short or absent error buffer truncates, never overflows. */
START_TEST(test_error_buffer) {
        char path[PATH_MAX], err[8];
        struct config c;

        ck_assert_int_eq(load_text("listen: { backlog = 0; };\n", &c, err, sizeof(err), path), -EINVAL);
        ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
        ck_assert_int_eq(load_text("listen: { backlog = 0; };\n", &c, NULL, 0, path), -EINVAL);
        ck_assert_int_eq(load_text("listen: {\n", &c, NULL, 0, path), -EINVAL);
        ck_assert_int_eq(config_load("/nonexistent/uppercased.conf", &c, NULL, 0), -ENOENT);
}
END_TEST

/* ---- validation, models, control path --------------------------------- */

START_TEST(test_validate) {
        char err[CONFIG_ERR_MAX];
        struct config c;

        config_defaults(&c);
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);

        c.n_tcp = 0;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
        c.n_udp = 0;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "nothing to listen on: listen.tcp, listen.udp and proxy.listen are all empty");

        config_defaults(&c);
        c.n_udp = 0;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);

        config_defaults(&c);
        c.udp_burst = 0;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "limits.udp_burst is 0, expected 1..1000000");
        c.udp_burst = 1;
        c.tcp_per_source = 65537;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "limits.tcp_per_source is 65537, expected 0..65536");

        config_defaults(&c);
        c.threads = 65;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "workers.threads is 65, expected 1..64");
        c.threads = 0;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);

        config_defaults(&c);
        c.backlog = -1;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "listen.backlog is -1, expected 1..65535");

        config_defaults(&c);
        c.model = _MODEL_MAX;
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "invalid worker model 3");

        config_defaults(&c);
        snprintf(c.control_path, sizeof(c.control_path), "ctl.sock");
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "control socket path \"ctl.sock\" is not absolute");
        c.control_path[0] = '\0';
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);

        /* Not NUL-terminated: fills all of sun_path. */
        memset(c.control_path, 'a', sizeof(c.control_path));
        c.control_path[0] = '/';
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "control socket path is too long (at most 107 bytes)");

        /* An agent-check port cannot be a service port too. */
        config_defaults(&c);
        c.n_agent = 1;
        ck_assert_int_eq(addr_parse("12000", &c.agent[0]), 0);
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), -EINVAL);
        ck_assert_str_eq(err, "agent address [::]:12000 is a TCP listen address too");
        ck_assert_int_eq(addr_parse("12001", &c.agent[0]), 0);
        ck_assert_int_eq(config_validate(&c, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_model_strings) {
        ck_assert_str_eq(model_to_string(MODEL_EVENT), "event");
        ck_assert_str_eq(model_to_string(MODEL_THREAD), "thread");
        ck_assert_str_eq(model_to_string(MODEL_PROCESS), "process");
        ck_assert_ptr_null(model_to_string(_MODEL_MAX));
        ck_assert_ptr_null(model_to_string((enum worker_model) -1));

        for (int m = 0; m < _MODEL_MAX; m++)
                ck_assert_int_eq(model_from_string(model_to_string(m)), m);
        ck_assert_int_eq(model_from_string("EVENT"), -EINVAL);
        ck_assert_int_eq(model_from_string("event "), -EINVAL);
        ck_assert_int_eq(model_from_string(""), -EINVAL);
        ck_assert_int_eq(model_from_string(NULL), -EINVAL);
}
END_TEST

/* Runs f with $XDG_RUNTIME_DIR set to value (NULL: unset), then restores it. */
static void with_xdg(const char *value, void (*f)(const char *value)) {
        const char *old = getenv("XDG_RUNTIME_DIR");
        char *saved = old ? strdup(old) : NULL;

        if (value)
                ck_assert_int_eq(setenv("XDG_RUNTIME_DIR", value, 1), 0);
        else
                ck_assert_int_eq(unsetenv("XDG_RUNTIME_DIR"), 0);
        f(value);
        if (saved)
                setenv("XDG_RUNTIME_DIR", saved, 1);
        else
                unsetenv("XDG_RUNTIME_DIR");
        free(saved);
}

static void expect_xdg_path(const char *value) {
        char buf[108];

        config_default_control_path(buf, sizeof(buf));
        if (geteuid() == 0)
                ck_assert_str_eq(buf, ROOT_CONTROL_PATH);
        else
                ck_assert_str_eq(buf, "/run/user/1000/uppercased/control.sock");
}

static void expect_root_path(const char *value) {
        char buf[108];

        config_default_control_path(buf, sizeof(buf));
        ck_assert_str_eq(buf, ROOT_CONTROL_PATH);
}

START_TEST(test_default_control_path) {
        char longdir[200];

        memset(longdir, 'd', sizeof(longdir) - 1);
        longdir[0] = '/';
        longdir[sizeof(longdir) - 1] = '\0';

        with_xdg("/run/user/1000", expect_xdg_path);
        with_xdg(NULL, expect_root_path);
        with_xdg("", expect_root_path);
        with_xdg("run/user/1000", expect_root_path);
        /* Would not fit in sun_path. */
        with_xdg(longdir, expect_root_path);
}
END_TEST

Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc;

        tc = tcase_create("load");
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_empty);
        tcase_add_test(tc, test_shipped);
        tcase_add_test(tc, test_shipped_complete);
        tcase_add_test(tc, test_all_settings);
        tcase_add_test(tc, test_limits_off);
        tcase_add_test(tc, test_exempt_empty);
        tcase_add_test(tc, test_proxy);
        tcase_add_test(tc, test_partial);
        tcase_add_test(tc, test_models);
        tcase_add_test(tc, test_modes);
        tcase_add_loop_test(tc, test_durations, 0, (int) (sizeof(durations) / sizeof(durations[0])));
        tcase_add_test(tc, test_listen_limits);
        tcase_add_test(tc, test_control_path_longest);
        suite_add_tcase(s, tc);

        tc = tcase_create("errors");
        tcase_add_loop_test(tc, test_errors, 0, (int) (sizeof(errors) / sizeof(errors[0])));
        tcase_add_test(tc, test_missing_file);
        tcase_add_test(tc, test_directory);
        tcase_add_test(tc, test_unreadable);
        tcase_add_test(tc, test_unchanged_on_error);
        tcase_add_test(tc, test_error_buffer);
        suite_add_tcase(s, tc);

        tc = tcase_create("misc");
        tcase_add_test(tc, test_validate);
        tcase_add_test(tc, test_agent_and_instance);
        tcase_add_test(tc, test_model_strings);
        tcase_add_test(tc, test_default_control_path);
        suite_add_tcase(s, tc);

        return s;
}
