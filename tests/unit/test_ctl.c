/* SPDX-License-Identifier: MIT */
/* Unit tests of uppercasectl's library (ctl/): the command table, the
 * command line, reply parsing, the output formats, and the client against
 * a scripted fake daemon. */

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "ctl.h"
#include "output.h"
#include "reply.h"
#include "suites.h"

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* A reply as the daemon sends it to stats (trimmed to what matters). */
static const char stats_reply[] =
        "version 0.1.0\n"
        "pid 4242\n"
        "model event\n"
        "uptime_seconds 11525.3\n"
        "start_time_seconds 1796184000.5\n"
        "tcp.active 3\n"
        "tcp.accepted 10\n"
        "tcp.rejected 3\n"
        "tcp.rejected_per_source 2\n"
        "tcp.closed_eof 5\n"
        "tcp.closed_idle 2\n"
        "tcp.bytes_in 1536\n"
        "tcp.bytes_out 100\n"
        "udp.datagrams 7\n"
        "udp.bytes_in 70\n"
        "udp.bytes_out 3145728\n"
        "udp.truncated 1\n"
        "udp.send_errors 0\n"
        "udp.rate_limited 12\n"
        "udp.loop_dropped 1\n"
        "invalid_utf8 4\n"
        "workers_died 0\n"
        "log.suppressed 0\n"
        "timeouts.idle 300\n"
        "timeouts.write 0.25\n"
        "timeouts.shutdown 0\n"
        "limits.tcp_per_source 64\n"
        "limits.udp_rate 100\n"
        "limits.udp_burst 200\n"
        "limits.udp_loop_guard yes\n"
        "OK\n";

static const char status_reply[] =
        "version 0.1.0\n"
        "pid 4242\n"
        "model thread\n"
        "uptime_seconds 65.5\n"
        "config /etc/uppercased/uppercased.conf\n"
        "socket_activated yes\n"
        "listen tcp [::]:12000\n"
        "listen udp [::]:12000\n"
        "OK\n";

static const char connections_reply[] =
        "connection id=7 peer=127.0.0.1:40512 protocol=tcp age=12.5 idle=0.25 bytes_in=10 bytes_out=2048 worker=4243\n"
        "connection id=12 peer=[2001:db8::7]:5 protocol=tcp age=3725 idle=61 bytes_in=0 bytes_out=0 worker=0\n"
        "OK\n";

static void reply_parse(const char *text, struct ctl_reply *r) {
        int e = ctl_reply_parse(text, strlen(text), r);

        ck_assert_msg(e == 0, "reply_parse: %s", strerror(-e));
}

/* Runs printer on the reply text; returns its output (static, freed on the
 * next call) or NULL, with the printer's result in *ret. */
static const char *render(ctl_printer printer, const char *text, int *ret) {
        static struct textbuf out;
        struct ctl_reply r;

        textbuf_free(&out);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        reply_parse(text, &r);
        *ret = printer(&r, &out);
        ctl_reply_free(&r);
        return out.data ? out.data : "";
}

static const char *render_ok(ctl_printer printer, const char *text) {
        int e;
        const char *s = render(printer, text, &e);

        ck_assert_msg(e == 0, "printer: %s", strerror(-e));
        return s;
}

/* --- the command table --- */

static const struct {
        const char *word;
        const char *command;            /* NULL: none */
        size_t matches;
} lookups[] = {
        { "status",      "status",      1 },
        { "stats",       "stats",       1 },
        { "statu",       "status",      1 },
        { "st",          NULL,          2 },
        { "sta",         NULL,          2 },
        { "stat",        NULL,          2 },
        { "s",           NULL,          2 },
        { "conn",        "connections", 1 },
        { "c",           "connections", 1 },
        { "connections", "connections", 1 },
        { "t",           "timeout",     1 },
        { "time",        "timeout",     1 },
        { "r",           NULL,          3 },
        { "re",          NULL,          3 },
        { "res",         "reset",       1 },
        { "k",           "kill",        1 },
        { "rel",         "reload",      1 },
        { "rea",         "ready",       1 },
        { "d",           "drain",       1 },
        { "h",           "help",        1 },
        { "x",           NULL,          0 },
        { "",            NULL,          0 },
        { "statsx",      NULL,          0 },
        { "STATS",       NULL,          0 },
        { "connectionsx", NULL,         0 },
};

START_TEST(test_command_lookup) {
        for (size_t i = 0; i < N_ELEMENTS(lookups); i++) {
                const struct ctl_command *found[8], *c = NULL;
                size_t n = ctl_command_match(lookups[i].word, found, 8);
                int e = ctl_command_find(lookups[i].word, &c);

                ck_assert_msg(n == lookups[i].matches, "\"%s\": %zu matches", lookups[i].word, n);
                if (lookups[i].command) {
                        ck_assert_int_eq(e, 0);
                        ck_assert_str_eq(c->info->name, lookups[i].command);
                } else
                        ck_assert_int_eq(e, n == 0 ? -ENOENT : -ENOTUNIQ);
        }
}
END_TEST

START_TEST(test_command_ambiguous_names) {
        const struct ctl_command *found[8];

        ck_assert_uint_eq(ctl_command_match("st", found, 8), 2);
        ck_assert_str_eq(found[0]->info->name, "status");
        ck_assert_str_eq(found[1]->info->name, "stats");
        /* The count is right even when max is smaller. */
        ck_assert_uint_eq(ctl_command_match("st", found, 1), 2);
}
END_TEST

START_TEST(test_command_table) {
        for (size_t i = 0; i < ctl_n_commands; i++) {
                const struct ctl_command *c = &ctl_commands[i], *found;
                struct control_request req;
                char err[256];

                const char *name = c->info->name;

                ck_assert_int_eq(ctl_command_find(name, &found), 0);
                ck_assert_ptr_eq(found, c);
                ck_assert_ptr_nonnull(c->print[CTL_HUMAN]);
                ck_assert_ptr_nonnull(c->print[CTL_JSON]);
                ck_assert_uint_le(c->info->min_args, c->info->max_args);
                ck_assert(c->info->help[0]);
                /* Every command sent to the daemon is one it knows. */
                if (!c->local) {
                        char line[64];

                        snprintf(line, sizeof(line), "%s%s", name, c->info->min_args ? " 1" : "");
                        ck_assert_msg(control_parse(line, strlen(line), &req, err, sizeof(err)) == 0,
                                      "%s: %s", name, err);
                }
        }
}
END_TEST

/* --- the command line --- */

/* ctl_parse_argv() on "uppercasectl" and the NULL-terminated args. */
static int parse_arg_list(struct ctl_options *o, char *err, const char *const *args) {
        char *argv[16] = { "uppercasectl" };
        int argc = 1;

        for (; *args && argc < 15; args++)
                argv[argc++] = (char *) *args;
        err[0] = '\0';
        return ctl_parse_argv(argc, argv, o, err, CTL_ERR_MAX);
}

static int parse_args(struct ctl_options *o, char *err, ...) {
        const char *args[16];
        size_t n = 0;
        va_list ap;

        va_start(ap, err);
        for (const char *a; (a = va_arg(ap, const char *)) && n < 15;)
                args[n++] = a;
        va_end(ap);
        args[n] = NULL;
        return parse_arg_list(o, err, args);
}

START_TEST(test_argv_requests) {
        struct ctl_options o;
        char err[CTL_ERR_MAX];

        ck_assert_int_eq(parse_args(&o, err, "stats", NULL), 0);
        ck_assert_str_eq(o.request, "stats");
        ck_assert_int_eq(o.format, CTL_HUMAN);
        ck_assert_ptr_null(o.socket);
        ck_assert_int_eq(parse_args(&o, err, "-j", "conn", NULL), 0);
        ck_assert_str_eq(o.request, "connections");
        ck_assert_int_eq(o.format, CTL_JSON);
        ck_assert_int_eq(parse_args(&o, err, "stats", "--json", NULL), 0);
        ck_assert_int_eq(o.format, CTL_JSON);
        ck_assert_int_eq(parse_args(&o, err, "--prometheus", "stats", NULL), 0);
        ck_assert_int_eq(o.format, CTL_PROMETHEUS);
        ck_assert_int_eq(parse_args(&o, err, "-s", "/tmp/x.sock", "t", "idle", "250ms", NULL), 0);
        ck_assert_str_eq(o.request, "timeout idle 250ms");
        ck_assert_str_eq(o.socket, "/tmp/x.sock");
        ck_assert_int_eq(parse_args(&o, err, "--socket=/s", "reload", NULL), 0);
        ck_assert_str_eq(o.socket, "/s");
        ck_assert_int_eq(parse_args(&o, err, "--help", NULL), 0);
        ck_assert_int_eq(o.action, CTL_ACTION_HELP);
        ck_assert_int_eq(parse_args(&o, err, "-V", NULL), 0);
        ck_assert_int_eq(o.action, CTL_ACTION_VERSION);
        ck_assert_int_eq(parse_args(&o, err, "help", NULL), 0);
        ck_assert(o.command->local);
        ck_assert_ptr_null(o.topic);
        ck_assert_int_eq(parse_args(&o, err, "help", "k", NULL), 0);
        ck_assert_ptr_eq(o.topic, &ctl_commands[CONTROL_KILL]);
        ck_assert_int_eq(parse_args(&o, err, "kill", "12", NULL), 0);
        ck_assert_str_eq(o.request, "kill 12");
        ck_assert_int_eq(parse_args(&o, err, "res", NULL), 0);
        ck_assert_str_eq(o.request, "reset");
        ck_assert_int_eq(parse_args(&o, err, "-i", "2", "-c", "3", "stats", NULL), 0);
        ck_assert_uint_eq(o.interval_usec, 2000000);
        ck_assert_uint_eq(o.count, 3);
        ck_assert_int_eq(parse_args(&o, err, "stats", "--interval=250ms", NULL), 0);
        ck_assert_uint_eq(o.interval_usec, 250000);
        ck_assert_uint_eq(o.count, 0);
        /* "-5" is an argument; the socket path stays as given. */
        ck_assert_int_eq(parse_args(&o, err, "-s", "/s", "timeout", "idle", "-5", NULL), -EINVAL);
        ck_assert_str_eq(o.socket, "/s");
}
END_TEST

/* help COMMAND: the usage, the description, who may run it. */
START_TEST(test_usage_command) {
        struct textbuf out;

        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_usage_command(&ctl_commands[CONTROL_KILL], &out), 0);
        ck_assert(strncmp(out.data, "Usage: uppercasectl [OPTIONS] kill ID\n\nclose connection ID", 58) == 0);
        ck_assert_ptr_nonnull(strstr(out.data, "needs root or group uppercased-admin"));
        textbuf_free(&out);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_usage_command(&ctl_commands[CONTROL_TIMEOUT], &out), 0);
        ck_assert_ptr_nonnull(strstr(out.data, "Usage: uppercasectl [OPTIONS] timeout [NAME [VALUE]]\n"));
        ck_assert_ptr_nonnull(strstr(out.data, "setting a VALUE needs root or group uppercased-admin"));
        textbuf_free(&out);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_usage_command(&ctl_commands[CONTROL_STATS], &out), 0);
        ck_assert_ptr_nonnull(strstr(out.data, "reads only: needs group uppercased"));
        ck_assert_ptr_nonnull(strstr(out.data, "-i SECONDS"));
        textbuf_free(&out);
}
END_TEST

/* -i: counters get their rate since the last round, by the daemon's
 * clock; gauges and settings do not; a counter reset counts from 0. */
START_TEST(test_human_stats_rates) {
        static const char before[] = "uptime_seconds 10\ntcp.active 5\ntcp.accepted 100\ntcp.bytes_in 1000\n"
                                     "tcp.closed_killed 4\ntimeouts.idle 300\nlimits.udp_rate 100\nOK\n";
        static const char after[] = "uptime_seconds 12\ntcp.active 9\ntcp.accepted 150\ntcp.bytes_in 3000\n"
                                    "tcp.closed_killed 1\ntimeouts.idle 300\nlimits.udp_rate 100\nOK\n";
        struct ctl_reply a, b;
        struct textbuf out;

        reply_parse(before, &a);
        reply_parse(after, &b);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_human_stats_rates(&b, &a, &out), 0);
        ck_assert_str_eq(out.data, "uppercased ?, pid ?, ? model, up 12s\n"
                                   "\n"
                                   "TCP\n"
                                   "  active connections      9\n"
                                   "  accepted              150                   25.0/s\n"
                                   "  received             3000 B  (2.9 KiB)    1000.0/s\n"
                                   "  closed (killed)         1                    0.5/s\n"
                                   "\n"
                                   "Timeouts\n"
                                   "  idle                  300 s\n"
                                   "\n"
                                   "Limits\n"
                                   "  UDP rate per source   100 /s\n");
        textbuf_free(&out);
        /* The first round: no rates. */
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_human_stats_rates(&b, NULL, &out), 0);
        ck_assert_ptr_null(strstr(out.data, ".0/s\n"));
        textbuf_free(&out);
        ck_assert(ctl_stat_is_counter("tcp.closed_eof"));
        ck_assert(ctl_stat_is_counter("proxy.refused_timeout"));
        ck_assert(!ctl_stat_is_counter("tcp.active"));
        ck_assert(!ctl_stat_is_counter("proxy.timeout"));
        ck_assert(!ctl_stat_is_counter("limits.udp_burst"));
        ctl_reply_free(&a);
        ctl_reply_free(&b);
}
END_TEST

START_TEST(test_human_kill_reset) {
        int e;

        ck_assert_str_eq(render_ok(ctl_human_kill, "killed 12\nOK\n"),
                         "connection 12 killed: it closes once the replies it owes are sent\n");
        render(ctl_human_kill, "OK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        ck_assert_str_eq(render_ok(ctl_json_fields, "killed 12\nOK\n"), "{\"killed\":12}\n");
        ck_assert_str_eq(render_ok(ctl_human_reset, "OK\n"), "counters reset\n");
        ck_assert_str_eq(render_ok(ctl_json_reset, "OK\n"), "{\"reset\":true}\n");
        /* Connections of protocol 1 (age, idle) still show. */
        ck_assert_ptr_nonnull(strstr(render_ok(ctl_human_connections,
                                               "connection id=3 peer=1.2.3.4:5 age=2.5 idle=1 bytes_in=1 "
                                               "bytes_out=1 worker=0\nOK\n"), "2.5s  1.0s"));
        ck_assert_ptr_nonnull(strstr(render_ok(ctl_human_connections,
                                               "connection id=3 peer=1.2.3.4:5 age_seconds=2.5 idle_seconds=1 "
                                               "bytes_in=1 bytes_out=1 worker=0 age=2.5 idle=1\nOK\n"),
                                     "2.5s  1.0s"));
}
END_TEST

static const struct {
        const char *args[6];
        const char *message;
} argv_errors[] = {
        { { NULL },                                   "missing command" },
        { { "st", NULL },                             "ambiguous command 'st': status, stats" },
        { { "bogus", NULL },                          "unknown command 'bogus'" },
        { { "stats", "x", NULL },                     "'stats' takes no arguments" },
        { { "timeout", "idle", "1", "2", NULL },      "'timeout' takes at most 2 arguments" },
        { { "timeout", "idle", "abc", NULL },         "invalid timeout value 'abc'" },
        { { "timeout", "bogus", NULL },               "unknown timeout 'bogus'" },
        { { "timeout", "idle", "169h", NULL },        "too large" },
        { { "timeout", "idle 5", NULL },              "invalid argument 'idle 5'" },
        { { "timeout", "", NULL },                    "invalid argument ''" },
        { { "timeout", "idle\x01", NULL },            "control characters" },
        { { "--prometheus", "status", NULL },         "'status' has no Prometheus output" },
        { { "-j", "--prometheus", "stats", NULL },    "cannot be combined" },
        { { "-x", "stats", NULL },                    "invalid option -- 'x'" },
        { { "--bogus", "stats", NULL },               "unrecognized option '--bogus'" },
        { { "stats", "-s", NULL },                    "option '-s' requires an argument" },
        { { "-s", "", "stats", NULL },                "empty socket path" },
        /* A negative value is the argument's error, not an unknown option. */
        { { "timeout", "idle", "-5", NULL },          "invalid timeout value '-5': a duration cannot be negative" },
        { { "timeout", "idle", "-5s", NULL },         "invalid timeout value '-5s': a duration cannot be negative" },
        { { "kill", "-3", NULL },                     "invalid connection id '-3'" },
        { { "kill", NULL },                           "'kill' needs at least 1 arguments" },
        { { "help", "bogus", NULL },                  "unknown command 'bogus'" },
        { { "help", "re", NULL },                     "ambiguous command 're'" },
        { { "-i", "0", "stats", NULL },               "invalid interval '0'" },
        { { "-i", "-1", "stats", NULL },              "invalid interval '-1'" },
        { { "-i", "x", "stats", NULL },               "invalid interval 'x'" },
        { { "-i", "1", "status", NULL },              "works with 'stats' only, not 'status'" },
        { { "-i", "1", "-j", "stats", NULL },         "redraws the human output only" },
        { { "-i", "1", "--prometheus", "stats", NULL }, "redraws the human output only" },
        { { "-c", "2", "stats", NULL },               "-c/--count goes with -i/--interval" },
        { { "-i", "1", "-c", "0", "stats", NULL },    "invalid count '0'" },
};

START_TEST(test_argv_errors) {
        for (size_t i = 0; i < N_ELEMENTS(argv_errors); i++) {
                struct ctl_options o;
                char err[CTL_ERR_MAX];
                int e = parse_arg_list(&o, err, argv_errors[i].args);

                ck_assert_msg(e == -EINVAL, "case %zu: %d", i, e);
                ck_assert_msg(strstr(err, argv_errors[i].message), "case %zu: \"%s\", want \"%s\"", i, err,
                              argv_errors[i].message);
        }
}
END_TEST

START_TEST(test_argv_long_request) {
        char arg[CONTROL_LINE_MAX + 1];
        struct ctl_options o;
        char err[CTL_ERR_MAX];

        memset(arg, '1', sizeof(arg) - 1);
        arg[sizeof(arg) - 1] = '\0';
        ck_assert_int_eq(parse_args(&o, err, "timeout", "idle", arg, NULL), -EINVAL);
        ck_assert_ptr_nonnull(strstr(err, "request too long"));
}
END_TEST

/* --- replies --- */

START_TEST(test_reply_complete) {
        static const char text[] = "a 1\nb 2\nOK\n";
        size_t scanned = 0;

        /* Fed a byte at a time, complete only with the last one. */
        for (size_t n = 1; n < sizeof(text) - 1; n++)
                ck_assert_int_eq(ctl_reply_complete(text, n, &scanned), 0);
        ck_assert_int_eq(ctl_reply_complete(text, sizeof(text) - 1, &scanned), 1);

        scanned = 0;
        ck_assert_int_eq(ctl_reply_complete("ERROR nope\n", 11, &scanned), 1);
        scanned = 0;
        ck_assert_int_eq(ctl_reply_complete("ERROR\n", 6, &scanned), 1);
        scanned = 0;
        ck_assert_int_eq(ctl_reply_complete("OK\r\n", 4, &scanned), 1);
        scanned = 0;
        ck_assert_int_eq(ctl_reply_complete("OKAY\nERRORS\nOK", 14, &scanned), 0);
        scanned = 0;
        ck_assert_int_eq(ctl_reply_complete("OK\nx", 4, &scanned), -EBADMSG);
}
END_TEST

START_TEST(test_reply_parse) {
        struct ctl_reply r;

        reply_parse("tcp.active 3\nconfig /a b/c.conf\nflag\nOK\n", &r);
        ck_assert_uint_eq(r.n_fields, 3);
        ck_assert_ptr_null(r.error);
        ck_assert_str_eq(r.fields[0].key, "tcp.active");
        ck_assert_str_eq(r.fields[0].value, "3");
        ck_assert_str_eq(r.fields[1].value, "/a b/c.conf");
        ck_assert_str_eq(r.fields[2].key, "flag");
        ck_assert_str_eq(r.fields[2].value, "");
        ck_assert_str_eq(ctl_fields_get(r.fields, r.n_fields, "config"), "/a b/c.conf");
        ck_assert_ptr_null(ctl_fields_get(r.fields, r.n_fields, "nope"));
        ctl_reply_free(&r);

        reply_parse("ERROR unknown timeout 'x' (idle, write, shutdown)\n", &r);
        ck_assert_uint_eq(r.n_fields, 0);
        ck_assert_str_eq(r.error, "unknown timeout 'x' (idle, write, shutdown)");
        ctl_reply_free(&r);

        reply_parse("a 1\r\nOK\r\n", &r);
        ck_assert_str_eq(r.fields[0].value, "1");
        ctl_reply_free(&r);

        reply_parse("ERROR\n", &r);
        ck_assert_str_eq(r.error, "");
        ctl_reply_free(&r);
}
END_TEST

START_TEST(test_reply_malformed) {
        static const struct {
                const char *text;
                size_t len;
        } bad[] = {
                { "", 0 },
                { "a 1\n", 4 },
                { "a 1\nOK", 6 },
                { "a\0 1\nOK\n", 8 },
                { "OK\nOK\n", 6 },
                { "a 1\nERROR x\nOK\n", 15 },
        };
        struct ctl_reply r;

        for (size_t i = 0; i < N_ELEMENTS(bad); i++)
                ck_assert_msg(ctl_reply_parse(bad[i].text, bad[i].len, &r) == -EBADMSG, "case %zu", i);
}
END_TEST

START_TEST(test_split_pairs) {
        char line[] = "id=7 peer=[::1]:5  flag empty=";
        struct ctl_field f[8];
        size_t n;

        ck_assert_int_eq(ctl_split_pairs(line, f, 8, &n), 0);
        ck_assert_uint_eq(n, 4);
        ck_assert_str_eq(f[0].key, "id");
        ck_assert_str_eq(f[0].value, "7");
        ck_assert_str_eq(f[1].value, "[::1]:5");
        ck_assert_str_eq(f[2].key, "flag");
        ck_assert_str_eq(f[2].value, "");
        ck_assert_str_eq(f[3].key, "empty");
        ck_assert_str_eq(f[3].value, "");

        char many[] = "a=1 b=2 c=3";
        ck_assert_int_eq(ctl_split_pairs(many, f, 2, &n), -E2BIG);
}
END_TEST

START_TEST(test_is_number) {
        static const char *const yes[] = { "0", "7", "300", "0.25", "-3", "11525.3", "18446744073709551615" };
        static const char *const no[] = { "", "-", ".5", "5.", "1e3", "007", "0x1", "1 ", " 1", "abc",
                                          "1.2.3", "--1", "+1", "inf", "NaN" };

        for (size_t i = 0; i < N_ELEMENTS(yes); i++)
                ck_assert_msg(ctl_is_number(yes[i]), "\"%s\"", yes[i]);
        for (size_t i = 0; i < N_ELEMENTS(no); i++)
                ck_assert_msg(!ctl_is_number(no[i]), "\"%s\"", no[i]);
}
END_TEST

/* --- JSON --- */

/* Feeds json to Python's parser: the output must be JSON to a real parser,
 * not just to our own idea of it.  Skipped (passes) without python3. */
static void assert_valid_json(const char *json) {
        static const char prog[] =
                "python3 -c 'import json,sys; json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))' 2>&1";
        FILE *p;
        int status;

        if (access("/usr/bin/python3", X_OK) != 0)
                return;
        p = popen(prog, "w");
        ck_assert_ptr_nonnull(p);
        fputs(json, p);
        status = pclose(p);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "python3 rejects: %s", json);
}

START_TEST(test_json_small) {
        ck_assert_str_eq(render_ok(ctl_json_fields, "tcp.active 3\nOK\n"), "{\"tcp\":{\"active\":3}}\n");
        ck_assert_str_eq(render_ok(ctl_json_fields, "OK\n"), "{}\n");
        ck_assert_str_eq(render_ok(ctl_json_fields,
                                   "a.b.c 1\na.b.d 2\na.e x\nf 0.25\nOK\n"),
                         "{\"a\":{\"b\":{\"c\":1,\"d\":2},\"e\":\"x\"},\"f\":0.25}\n");
        /* A repeated key becomes an array; listen is one even alone. */
        ck_assert_str_eq(render_ok(ctl_json_fields, "x 1\nx 2\nOK\n"), "{\"x\":[1,2]}\n");
        ck_assert_str_eq(render_ok(ctl_json_fields, "listen tcp 127.0.0.1:1\nOK\n"),
                         "{\"listen\":[\"tcp 127.0.0.1:1\"]}\n");
        /* Typed keys keep their type whatever the value. */
        ck_assert_str_eq(render_ok(ctl_json_fields, "version 1\nconfig 007\nsocket_activated no\nOK\n"),
                         "{\"version\":\"1\",\"config\":\"007\",\"socket_activated\":false}\n");
        ck_assert_str_eq(render_ok(ctl_json_fields, "socket_activated maybe\nOK\n"),
                         "{\"socket_activated\":\"maybe\"}\n");
        /* Timeouts, as "timeout" replies. */
        ck_assert_str_eq(render_ok(ctl_json_fields, "idle 300\nwrite 0.25\nshutdown 0\nOK\n"),
                         "{\"idle\":300,\"write\":0.25,\"shutdown\":0}\n");
        ck_assert_str_eq(render_ok(ctl_json_reload, "OK\n"), "{\"reloaded\":true}\n");
}
END_TEST

START_TEST(test_json_conflicts) {
        int e;

        render(ctl_json_fields, "a 1\na.b 2\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        render(ctl_json_fields, "a.b 2\na 1\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        render(ctl_json_fields, "a..b 2\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        render(ctl_json_fields, "a. 2\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
}
END_TEST

START_TEST(test_json_escaping) {
        struct textbuf b;

        textbuf_init(&b, 4096);
        json_append_string(&b, "a\"b\\c/d\n\r\t\b\f\x01\x1f\x7f");
        ck_assert_str_eq(b.data, "\"a\\\"b\\\\c/d\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\"");
        textbuf_free(&b);

        /* Valid UTF-8 is kept; invalid bytes become U+FFFD. */
        textbuf_init(&b, 4096);
        json_append_string(&b, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
        ck_assert_str_eq(b.data, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
        textbuf_free(&b);
        static const char *const invalid[] = {
                "\xff", "\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80",
        };
        for (size_t i = 0; i < N_ELEMENTS(invalid); i++) {
                textbuf_init(&b, 4096);
                json_append_string(&b, invalid[i]);
                ck_assert_msg(strncmp(b.data, "\"\\ufffd", 7) == 0 && !strchr(b.data, '\x80') &&
                              !strchr(b.data, '\xff'), "case %zu: %s", i, b.data);
                assert_valid_json(b.data);
                textbuf_free(&b);
        }

        ck_assert_str_eq(render_ok(ctl_json_fields, "config /etc/\"q\"\\x\tz\nOK\n"),
                         "{\"config\":\"/etc/\\\"q\\\"\\\\x\\tz\"}\n");
        assert_valid_json(render_ok(ctl_json_fields, "config /etc/\"q\"\\x\tz\xff\x01\nOK\n"));
}
END_TEST

START_TEST(test_json_stats) {
        const char *json = render_ok(ctl_json_fields, stats_reply);

        ck_assert_str_eq(json,
                         "{\"version\":\"0.1.0\",\"pid\":4242,\"model\":\"event\",\"uptime_seconds\":11525.3,"
                         "\"start_time_seconds\":1796184000.5,"
                         "\"tcp\":{\"active\":3,\"accepted\":10,\"rejected\":3,\"rejected_per_source\":2,"
                         "\"closed_eof\":5,\"closed_idle\":2,\"bytes_in\":1536,\"bytes_out\":100},"
                         "\"udp\":{\"datagrams\":7,\"bytes_in\":70,\"bytes_out\":3145728,\"truncated\":1,"
                         "\"send_errors\":0,\"rate_limited\":12,\"loop_dropped\":1},"
                         "\"invalid_utf8\":4,\"workers_died\":0,\"log\":{\"suppressed\":0},"
                         "\"timeouts\":{\"idle\":300,\"write\":0.25,\"shutdown\":0},"
                         "\"limits\":{\"tcp_per_source\":64,\"udp_rate\":100,\"udp_burst\":200,"
                         "\"udp_loop_guard\":true}}\n");
        assert_valid_json(json);
}
END_TEST

START_TEST(test_json_status) {
        const char *json = render_ok(ctl_json_fields, status_reply);

        ck_assert_str_eq(json,
                         "{\"version\":\"0.1.0\",\"pid\":4242,\"model\":\"thread\",\"uptime_seconds\":65.5,"
                         "\"config\":\"/etc/uppercased/uppercased.conf\",\"socket_activated\":true,"
                         "\"listen\":[\"tcp [::]:12000\",\"udp [::]:12000\"]}\n");
        assert_valid_json(json);
}
END_TEST

START_TEST(test_json_connections) {
        const char *json = render_ok(ctl_json_connections, connections_reply);
        int e;

        ck_assert_str_eq(json,
                         "{\"connections\":["
                         "{\"id\":7,\"peer\":\"127.0.0.1:40512\",\"address\":\"127.0.0.1\",\"port\":40512,"
                         "\"protocol\":\"tcp\",\"age\":12.5,\"idle\":0.25,\"bytes_in\":10,\"bytes_out\":2048,"
                         "\"worker\":4243},"
                         "{\"id\":12,\"peer\":\"[2001:db8::7]:5\",\"address\":\"2001:db8::7\",\"port\":5,"
                         "\"protocol\":\"tcp\",\"age\":3725,\"idle\":61,\"bytes_in\":0,\"bytes_out\":0,"
                         "\"worker\":0}]}\n");
        assert_valid_json(json);
        ck_assert_str_eq(render_ok(ctl_json_connections, "OK\n"), "{\"connections\":[]}\n");
        /* A peer without a port: no address/port, still valid. */
        ck_assert_str_eq(render_ok(ctl_json_connections, "connection id=1 peer=unknown\nOK\n"),
                         "{\"connections\":[{\"id\":1,\"peer\":\"unknown\"}]}\n");
        render(ctl_json_connections, "tcp.active 1\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
}
END_TEST

START_TEST(test_output_bounded) {
        struct textbuf out;
        struct ctl_reply r;

        reply_parse(stats_reply, &r);
        textbuf_init(&out, 64);
        ck_assert_int_eq(ctl_json_fields(&r, &out), -ENOBUFS);
        textbuf_free(&out);
        textbuf_init(&out, 64);
        ck_assert_int_eq(ctl_prometheus_stats(&r, &out), -ENOBUFS);
        textbuf_free(&out);
        ctl_reply_free(&r);
}
END_TEST

/* --- Prometheus --- */

static bool prom_name_char(char c, bool first) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
               (!first && c >= '0' && c <= '9');
}

/* Length of the metric name at s ([a-zA-Z_:][a-zA-Z0-9_:]*), 0 if none. */
static size_t prom_name_len(const char *s) {
        size_t n = 0;

        while (prom_name_char(s[n], n == 0))
                n++;
        return n;
}

/* {label="value",...}: returns the length, 0 if malformed. */
static size_t prom_labels_len(const char *s) {
        const char *p = s + 1;

        if (*s != '{')
                return 0;
        for (;;) {
                size_t n = prom_name_len(p);

                if (n == 0 || p[0] == ':' || p[n] != '=' || p[n + 1] != '"')
                        return 0;
                for (p += n + 2; *p != '"'; p++) {
                        if (*p == '\0' || *p == '\n')
                                return 0;
                        if (*p == '\\' && !strchr("\\\"n", *++p))
                                return 0;
                }
                p++;
                if (*p == '}')
                        return p + 1 - s;
                if (*p++ != ',')
                        return 0;
        }
}

/* Checks one sample line; stores its metric name in name. */
static void assert_prom_sample(const char *line, char *name, size_t len) {
        size_t n = prom_name_len(line), l = 0;
        char *end;

        ck_assert_msg(n > 0 && n < len, "bad name: %s", line);
        memcpy(name, line, n);
        name[n] = '\0';
        if (line[n] == '{') {
                l = prom_labels_len(line + n);
                ck_assert_msg(l > 0, "bad labels: %s", line);
        }
        ck_assert_msg(line[n + l] == ' ', "no value: %s", line);
        (void) strtod(line + n + l + 1, &end);
        ck_assert_msg(end != line + n + l + 1 && *end == '\0', "bad value: %s", line);
}

/* Every line is a HELP, a TYPE or a sample; a sample's family has had
 * its HELP and TYPE; counters end in _total. */
static void assert_prometheus_valid(char *text) {
        char help[128] = "", type[128] = "", kind[16] = "";
        size_t samples = 0;

        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[128];

                if (strncmp(line, "# HELP ", 7) == 0) {
                        ck_assert_uint_gt(prom_name_len(line + 7), 0);
                        snprintf(help, sizeof(help), "%.*s", (int) prom_name_len(line + 7), line + 7);
                        ck_assert_msg(line[7 + strlen(help)] == ' ' && line[8 + strlen(help)], "%s", line);
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        ck_assert_int_eq(sscanf(line + 7, "%127s %15s", type, kind), 2);
                        ck_assert_str_eq(type, help);
                        ck_assert_msg(strcmp(kind, "counter") == 0 || strcmp(kind, "gauge") == 0, "%s", line);
                        continue;
                }
                ck_assert_msg(line[0] != '#', "stray comment: %s", line);
                assert_prom_sample(line, name, sizeof(name));
                ck_assert_msg(strcmp(name, type) == 0, "sample without HELP/TYPE: %s", line);
                if (strcmp(kind, "counter") == 0)
                        ck_assert_msg(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0,
                                      "counter not ending in _total: %s", line);
                samples++;
        }
        ck_assert_uint_gt(samples, 0);
}

START_TEST(test_prometheus_stats) {
        char *text = strdup(render_ok(ctl_prometheus_stats, stats_reply));
        static const char *const expected[] = {
                "# TYPE uppercased_info gauge\nuppercased_info{version=\"0.1.0\",model=\"event\"} 1\n",
                "# TYPE uppercased_tcp_connections_active gauge\nuppercased_tcp_connections_active 3\n",
                "uppercased_tcp_connections_accepted_total 10\n",
                "# TYPE uppercased_tcp_connections_closed_total counter\n"
                "uppercased_tcp_connections_closed_total{reason=\"eof\"} 5\n"
                "uppercased_tcp_connections_closed_total{reason=\"idle\"} 2\n",
                "uppercased_tcp_received_bytes_total 1536\n",
                "uppercased_tcp_sent_bytes_total 100\n",
                "uppercased_udp_datagrams_total 7\n",
                "uppercased_udp_sent_bytes_total 3145728\n",
                "uppercased_udp_truncated_total 1\n",
                "uppercased_tcp_connections_rejected_total 3\n",
                "# TYPE uppercased_tcp_connections_rejected_per_source_total counter\n"
                "uppercased_tcp_connections_rejected_per_source_total 2\n",
                /* One metric, the reason in a label. */
                "# TYPE uppercased_udp_dropped_total counter\n"
                "uppercased_udp_dropped_total{reason=\"rate_limited\"} 12\n"
                "uppercased_udp_dropped_total{reason=\"loop_dropped\"} 1\n",
                "# TYPE uppercased_start_time_seconds gauge\nuppercased_start_time_seconds 1796184000.5\n",
                "# TYPE uppercased_limit_tcp_per_source gauge\nuppercased_limit_tcp_per_source 64\n",
                "# TYPE uppercased_limit_udp_rate gauge\nuppercased_limit_udp_rate 100\n",
                "# TYPE uppercased_limit_udp_burst gauge\nuppercased_limit_udp_burst 200\n",
                "# TYPE uppercased_limit_udp_loop_guard gauge\nuppercased_limit_udp_loop_guard 1\n",
                "uppercased_invalid_utf8_bytes_total 4\n",
                "uppercased_timeout_seconds{name=\"idle\"} 300\n"
                "uppercased_timeout_seconds{name=\"write\"} 0.25\n"
                "uppercased_timeout_seconds{name=\"shutdown\"} 0\n",
                "# TYPE uppercased_uptime_seconds gauge\nuppercased_uptime_seconds 11525.3\n",
        };

        ck_assert_ptr_nonnull(text);
        for (size_t i = 0; i < N_ELEMENTS(expected); i++)
                ck_assert_msg(strstr(text, expected[i]), "missing: %s", expected[i]);
        /* Every HELP once per family. */
        ck_assert_ptr_null(strstr(strstr(text, "# HELP uppercased_timeout_seconds") + 1,
                                  "# HELP uppercased_timeout_seconds"));
        ck_assert_ptr_null(strstr(strstr(text, "# HELP uppercased_udp_dropped_total") + 1,
                                  "# HELP uppercased_udp_dropped_total"));
        /* Units before _total (Prometheus's naming): no "_bytes_received". */
        ck_assert_ptr_null(strstr(text, "_bytes_received"));
        ck_assert_ptr_null(strstr(text, "_bytes_sent"));
        assert_prometheus_valid(text);
        free(text);
}
END_TEST

START_TEST(test_prometheus_escaping) {
        char *text = strdup(render_ok(ctl_prometheus_stats, "version 1\"\\x\nmodel a\nOK\n"));
        int e;

        ck_assert_str_eq(text,
                         "# HELP uppercased_info Version and worker model of the running uppercased.\n"
                         "# TYPE uppercased_info gauge\n"
                         "uppercased_info{version=\"1\\\"\\\\x\",model=\"a\"} 1\n");
        assert_prometheus_valid(text);
        free(text);
        /* A value that is no number is a malformed reply, not a bad line. */
        render(ctl_prometheus_stats, "tcp.active lots\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        /* A switch is 1 or 0; anything else is malformed too. */
        ck_assert_ptr_nonnull(strstr(render_ok(ctl_prometheus_stats, "limits.udp_loop_guard no\nOK\n"),
                                     "\nuppercased_limit_udp_loop_guard 0\n"));
        render(ctl_prometheus_stats, "limits.udp_loop_guard maybe\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
}
END_TEST

/* The daemon's instance name labels every sample, the info one first;
 * a label of the sample's own follows it.  So two daemons' outputs never
 * share a label set. */
START_TEST(test_prometheus_instance) {
        char *a = strdup(render_ok(ctl_prometheus_stats,
                                   "version 0.1.0\nmodel event\ninstance web-1\ntcp.active 3\n"
                                   "tcp.closed_eof 5\ndraining yes\nagent.checks 9\nOK\n"));
        char *b = strdup(render_ok(ctl_prometheus_stats, "version 0.1.0\nmodel event\ninstance web-2\n"
                                   "tcp.active 3\nOK\n"));

        ck_assert_ptr_nonnull(strstr(a, "\nuppercased_info{uppercased_instance=\"web-1\",version=\"0.1.0\","
                                        "model=\"event\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(a, "\nuppercased_tcp_connections_active{uppercased_instance=\"web-1\"} 3\n"));
        ck_assert_ptr_nonnull(strstr(a, "\nuppercased_tcp_connections_closed_total{uppercased_instance=\"web-1\","
                                        "reason=\"eof\"} 5\n"));
        ck_assert_ptr_nonnull(strstr(a, "# TYPE uppercased_draining gauge\n"
                                        "uppercased_draining{uppercased_instance=\"web-1\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(a, "# TYPE uppercased_agent_checks_total counter\n"
                                        "uppercased_agent_checks_total{uppercased_instance=\"web-1\"} 9\n"));
        ck_assert_ptr_nonnull(strstr(b, "\nuppercased_tcp_connections_active{uppercased_instance=\"web-2\"} 3\n"));
        /* No sample without the label. */
        ck_assert_ptr_null(strstr(a, "_active 3"));
        ck_assert_ptr_null(strstr(a, "{reason="));
        assert_prometheus_valid(a);
        assert_prometheus_valid(b);
        free(a);
        free(b);
}
END_TEST

/* --- for people --- */

static const struct {
        double seconds;
        const char *text;
} uptimes[] = {
        { 0,        "0s" },
        { 0.9,      "0s" },
        { 59.99,    "59s" },
        { 60,       "1m 0s" },
        { 61,       "1m 1s" },
        { 3599,     "59m 59s" },
        { 3600,     "1h 0m 0s" },
        { 11525.3,  "3h 12m 5s" },
        { 86399,    "23h 59m 59s" },
        { 90061,    "1d 1h 1m 1s" },
        { 864000,   "10d 0h 0m 0s" },
        { -5,       "0s" },
};

START_TEST(test_format_uptime) {
        char buf[CTL_FORMAT_BUF];

        for (size_t i = 0; i < N_ELEMENTS(uptimes); i++)
                ck_assert_str_eq(ctl_format_uptime(uptimes[i].seconds, buf, sizeof(buf)), uptimes[i].text);
}
END_TEST

static const struct {
        uint64_t bytes;
        const char *text;
} sizes[] = {
        { 0,                        "0 B" },
        { 1,                        "1 B" },
        { 1023,                     "1023 B" },
        { 1024,                     "1.0 KiB" },
        { 1536,                     "1.5 KiB" },
        { 1048575,                  "1024.0 KiB" },
        { 1048576,                  "1.0 MiB" },
        { 3145728,                  "3.0 MiB" },
        { 5ULL << 30,               "5.0 GiB" },
        { 1ULL << 40,               "1.0 TiB" },
        { UINT64_MAX,               "16.0 EiB" },
};

START_TEST(test_format_bytes) {
        char buf[CTL_FORMAT_BUF];

        for (size_t i = 0; i < N_ELEMENTS(sizes); i++)
                ck_assert_str_eq(ctl_format_bytes(sizes[i].bytes, buf, sizeof(buf)), sizes[i].text);
}
END_TEST

START_TEST(test_human_timeout) {
        ck_assert_str_eq(render_ok(ctl_human_timeout, "idle 300\nwrite 30\nshutdown 10\nOK\n"),
                         "idle      300 s\n"
                         "write      30 s\n"
                         "shutdown   10 s\n");
        ck_assert_str_eq(render_ok(ctl_human_timeout, "idle 0.25\nshutdown 0\nOK\n"),
                         "idle      0.25 s\n"
                         "shutdown   off\n");
        ck_assert_str_eq(render_ok(ctl_human_reload, "OK\n"), "configuration reloaded\n");
}
END_TEST

START_TEST(test_human_drain) {
        int e;

        ck_assert_str_eq(render_ok(ctl_human_drain, "balancer draining\nchanged yes\nOK\n"),
                         "Draining: the agent-check answers drain; the balancer sends no new connections, "
                         "open ones go on\n");
        ck_assert_str_eq(render_ok(ctl_human_drain, "balancer draining\nchanged no\nOK\n"),
                         "Already draining: the agent-check answers drain; the balancer sends no new connections, "
                         "open ones go on\n");
        ck_assert_str_eq(render_ok(ctl_human_drain, "balancer ready\nchanged yes\nOK\n"),
                         "Ready: the agent-check answers ready; the balancer sends new connections\n");
        ck_assert_str_eq(render_ok(ctl_human_drain, "balancer ready\nchanged no\nOK\n"),
                         "Already ready: the agent-check answers ready; the balancer sends new connections\n");
        ck_assert_str_eq(render_ok(ctl_json_fields, "balancer draining\nchanged no\nOK\n"),
                         "{\"balancer\":\"draining\",\"changed\":false}\n");
        render(ctl_human_drain, "OK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
        /* The instance name is a string in JSON even when it looks like a number. */
        ck_assert_str_eq(render_ok(ctl_json_fields, "instance 42\nagent tcp 127.0.0.1:1\nOK\n"),
                         "{\"instance\":\"42\",\"agent\":[\"tcp 127.0.0.1:1\"]}\n");
}
END_TEST

START_TEST(test_human_status) {
        ck_assert_str_eq(render_ok(ctl_human_status, status_reply),
                         "Version:           0.1.0\n"
                         "PID:               4242\n"
                         "Worker model:      thread\n"
                         "Uptime:            1m 5s\n"
                         "Configuration:     /etc/uppercased/uppercased.conf\n"
                         "Socket activated:  yes\n"
                         "Listening on:      tcp [::]:12000\n"
                         "                   udp [::]:12000\n");
        ck_assert_str_eq(render_ok(ctl_human_status, "pid 1\nnew_key x\nOK\n"),
                         "PID:      1\n"
                         "new_key:  x\n");
}
END_TEST

START_TEST(test_human_stats) {
        ck_assert_str_eq(render_ok(ctl_human_stats, stats_reply),
                         "uppercased 0.1.0, pid 4242, event model, up 3h 12m 5s\n"
                         "\n"
                         "TCP\n"
                         "  active connections            3\n"
                         "  accepted                     10\n"
                         "  rejected                      3\n"
                         "  rejected per source           2\n"
                         "  closed (eof)                  5\n"
                         "  closed (idle)                 2\n"
                         "  received                   1536 B  (1.5 KiB)\n"
                         "  sent                        100 B\n"
                         "\n"
                         "UDP\n"
                         "  datagrams                     7\n"
                         "  received                     70 B\n"
                         "  sent                    3145728 B  (3.0 MiB)\n"
                         "  truncated replies             1\n"
                         "  send errors                   0\n"
                         "  rate limited                 12\n"
                         "  dropped (loop guard)          1\n"
                         "\n"
                         "Other\n"
                         "  invalid UTF-8 bytes           4\n"
                         "  workers died                  0\n"
                         "  log entries suppressed        0\n"
                         "\n"
                         "Timeouts\n"
                         "  idle                        300 s\n"
                         "  write                      0.25 s\n"
                         "  shutdown                    off\n"
                         "\n"
                         "Limits\n"
                         "  TCP per source               64\n"
                         "  UDP rate per source         100 /s\n"
                         "  UDP burst per source        200\n"
                         "  UDP loop guard               on\n");
        /* Limits off. */
        ck_assert_str_eq(render_ok(ctl_human_stats, "limits.tcp_per_source 0\nlimits.udp_rate 0\n"
                                   "limits.udp_loop_guard no\nOK\n"),
                         "uppercased ?, pid ?, ? model, up ?\n"
                         "\n"
                         "Limits\n"
                         "  TCP per source       off\n"
                         "  UDP rate per source  off\n"
                         "  UDP loop guard       off\n");
}
END_TEST

START_TEST(test_human_connections) {
        int e;

        ck_assert_str_eq(render_ok(ctl_human_connections, "OK\n"), "ID  CLIENT  AGE  IDLE  IN  OUT  WORKER\n");
        ck_assert_str_eq(render_ok(ctl_human_connections, connections_reply),
                         "ID  CLIENT                AGE   IDLE    IN      OUT  WORKER\n"
                         " 7  127.0.0.1:40512     12.5s   0.2s  10 B  2.0 KiB    4243\n"
                         "12  [2001:db8::7]:5  1h 2m 5s  1m 1s   0 B      0 B       0\n");
        render(ctl_human_connections, "bogus 1\nOK\n", &e);
        ck_assert_int_eq(e, -EBADMSG);
}
END_TEST

/* --- errors, socket path, the client --- */

START_TEST(test_call_errors) {
        static const struct {
                int error, status;
                const char *message;
        } cases[] = {
                { -ENOENT,       CTL_EXIT_UNREACHABLE,
                  "cannot reach uppercased at /p: No such file or directory (is it running? "
                  "try: systemctl status uppercased.socket)" },
                { -ECONNREFUSED, CTL_EXIT_UNREACHABLE, "cannot reach uppercased at /p: Connection refused" },
                { -EACCES,       CTL_EXIT_UNREACHABLE,
                  "permission denied: /p: you need to be root or in group uppercased" },
                { -EPERM,        CTL_EXIT_UNREACHABLE, "permission denied: /p" },
                { -ETIMEDOUT,    CTL_EXIT_UNREACHABLE, "no reply from uppercased at /p within 5 s" },
                { -ECONNRESET,   CTL_EXIT_FAILED,      "closed the connection" },
                { -EMSGSIZE,     CTL_EXIT_FAILED,      "too large" },
                { -EBADMSG,      CTL_EXIT_FAILED,      "malformed reply" },
                { -ENAMETOOLONG, CTL_EXIT_USAGE,       "socket path too long" },
        };

        for (size_t i = 0; i < N_ELEMENTS(cases); i++) {
                char err[CTL_ERR_MAX];

                ck_assert_int_eq(ctl_call_error(cases[i].error, "/p", err, sizeof(err)), cases[i].status);
                ck_assert_msg(strstr(err, cases[i].message), "%s", err);
        }
}
END_TEST

START_TEST(test_socket_path) {
        char dir[] = "/tmp/ctl-test-XXXXXX", sub[64], sock[128], buf[PATH_MAX];
        FILE *f;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sub, sizeof(sub), "%s/uppercased", dir);
        snprintf(sock, sizeof(sock), "%s/control.sock", sub);

        ctl_socket_path(0, dir, buf, sizeof(buf));
        ck_assert_str_eq(buf, CONTROL_DEFAULT_PATH);
        ctl_socket_path(1000, NULL, buf, sizeof(buf));
        ck_assert_str_eq(buf, CONTROL_DEFAULT_PATH);
        ctl_socket_path(1000, dir, buf, sizeof(buf));
        ck_assert_str_eq(buf, CONTROL_DEFAULT_PATH);            /* none there */

        ck_assert_int_eq(mkdir(sub, 0700), 0);
        f = fopen(sock, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
        ctl_socket_path(1000, dir, buf, sizeof(buf));
        ck_assert_str_eq(buf, sock);
        ctl_socket_path(0, dir, buf, sizeof(buf));
        ck_assert_str_eq(buf, CONTROL_DEFAULT_PATH);            /* root: the system one */
        ctl_socket_path(1000, dir + 1, buf, sizeof(buf));
        ck_assert_str_eq(buf, CONTROL_DEFAULT_PATH);            /* relative */

        unlink(sock);
        rmdir(sub);
        rmdir(dir);
}
END_TEST

/* A fake daemon on a fresh socket: a child that accepts one client, reads
 * its request, then sends the chunks (NULL: stop there), lingers, exits. */
struct fake {
        char dir[32];
        char path[64];
        pid_t pid;
};

static void fake_serve(int lfd, const char *const *chunks, unsigned linger_ms) {
        char req[1024];
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0)
                _exit(1);
        if (chunks) {
                (void) !read(fd, req, sizeof(req));
                for (; *chunks; chunks++) {
                        (void) !write(fd, *chunks, strlen(*chunks));
                        usleep(20000);
                }
        }
        usleep(linger_ms * 1000);
        _exit(0);
}

static void fake_start(struct fake *f, const char *const *chunks, unsigned linger_ms) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int lfd;

        snprintf(f->dir, sizeof(f->dir), "/tmp/ctl-fake-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/s", f->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(lfd, 0);
        ck_assert_int_eq(bind(lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(lfd, 4), 0);
        f->pid = fork();
        ck_assert_int_ge(f->pid, 0);
        if (f->pid == 0)
                fake_serve(lfd, chunks, linger_ms);
        close(lfd);
}

static void fake_stop(struct fake *f) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        unlink(f->path);
        rmdir(f->dir);
}

static int call_fake(const char *const *chunks, unsigned linger_ms, int timeout_ms, struct textbuf *reply) {
        struct fake f;
        int e;

        fake_start(&f, chunks, linger_ms);
        textbuf_init(reply, CTL_REPLY_MAX);
        e = ctl_call(f.path, "stats", timeout_ms, reply);
        fake_stop(&f);
        return e;
}

START_TEST(test_call_fake_daemon) {
        static const char *const pieces[] = { "tcp.act", "ive 3\nO", "K\n", NULL };
        static const char *const refusal[] = { "ERROR closed to make room for another control client\n", NULL };
        static const char *const partial[] = { "tcp.active 3\n", NULL };
        static const char *const trailing[] = { "OK\nextra\n", NULL };
        struct textbuf reply;

        ck_assert_int_eq(call_fake(pieces, 0, 2000, &reply), 0);
        ck_assert_str_eq(reply.data, "tcp.active 3\nOK\n");
        textbuf_free(&reply);
        ck_assert_int_eq(call_fake(refusal, 0, 2000, &reply), 0);
        ck_assert_str_eq(reply.data, "ERROR closed to make room for another control client\n");
        textbuf_free(&reply);
        /* Closed before the final line. */
        ck_assert_int_eq(call_fake(partial, 0, 2000, &reply), -ECONNRESET);
        textbuf_free(&reply);
        /* Silent: the timeout, not a hang. */
        ck_assert_int_eq(call_fake(partial, 3000, 300, &reply), -ETIMEDOUT);
        textbuf_free(&reply);
        ck_assert_int_eq(call_fake(NULL, 3000, 300, &reply), -ETIMEDOUT);
        textbuf_free(&reply);
        ck_assert_int_eq(call_fake(trailing, 0, 2000, &reply), -EBADMSG);
        textbuf_free(&reply);
}
END_TEST

START_TEST(test_call_unreachable) {
        char dir[] = "/tmp/ctl-test-XXXXXX", path[64], longpath[200];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct textbuf reply;
        int fd;

        textbuf_init(&reply, CTL_REPLY_MAX);
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/s", dir);
        ck_assert_int_eq(ctl_call(path, "stats", 1000, &reply), -ENOENT);
        /* A socket file nobody listens on any more. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
        ck_assert_int_eq(ctl_call(path, "stats", 1000, &reply), -ECONNREFUSED);
        memset(longpath, 'x', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = '\0';
        ck_assert_int_eq(ctl_call(longpath, "stats", 1000, &reply), -ENAMETOOLONG);
        unlink(path);
        rmdir(dir);
        textbuf_free(&reply);
}
END_TEST

START_TEST(test_run_local_help) {
        struct ctl_options o;
        struct textbuf out;
        char err[CTL_ERR_MAX];

        ck_assert_int_eq(parse_args(&o, err, "-s", "/nonexistent", "h", NULL), 0);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_run(&o, &out, err, sizeof(err)), CTL_EXIT_OK);
        ck_assert_ptr_nonnull(strstr(out.data, "Usage: uppercasectl"));
        for (size_t i = 0; i < ctl_n_commands; i++)
                ck_assert_ptr_nonnull(strstr(out.data, ctl_commands[i].info->name));
        textbuf_free(&out);

        ck_assert_int_eq(parse_args(&o, err, "-s", "/nonexistent/s", "stats", NULL), 0);
        textbuf_init(&out, CTL_OUTPUT_MAX);
        ck_assert_int_eq(ctl_run(&o, &out, err, sizeof(err)), CTL_EXIT_UNREACHABLE);
        ck_assert_ptr_nonnull(strstr(err, "cannot reach uppercased at /nonexistent/s"));
        textbuf_free(&out);
}
END_TEST

Suite *ctl_suite(void) {
        Suite *s = suite_create("ctl");
        TCase *tc = tcase_create("commands");
        TCase *tr = tcase_create("replies");
        TCase *to = tcase_create("output");
        TCase *tk = tcase_create("client");

        tcase_add_test(tc, test_command_lookup);
        tcase_add_test(tc, test_command_ambiguous_names);
        tcase_add_test(tc, test_command_table);
        tcase_add_test(tc, test_argv_requests);
        tcase_add_test(tc, test_argv_errors);
        tcase_add_test(tc, test_argv_long_request);
        tcase_add_test(tc, test_usage_command);
        suite_add_tcase(s, tc);

        tcase_add_test(tr, test_reply_complete);
        tcase_add_test(tr, test_reply_parse);
        tcase_add_test(tr, test_reply_malformed);
        tcase_add_test(tr, test_split_pairs);
        tcase_add_test(tr, test_is_number);
        suite_add_tcase(s, tr);

        tcase_add_test(to, test_json_small);
        tcase_add_test(to, test_json_conflicts);
        tcase_add_test(to, test_json_escaping);
        tcase_add_test(to, test_json_stats);
        tcase_add_test(to, test_json_status);
        tcase_add_test(to, test_json_connections);
        tcase_add_test(to, test_output_bounded);
        tcase_add_test(to, test_prometheus_stats);
        tcase_add_test(to, test_prometheus_escaping);
        tcase_add_test(to, test_prometheus_instance);
        tcase_add_test(to, test_format_uptime);
        tcase_add_test(to, test_format_bytes);
        tcase_add_test(to, test_human_timeout);
        tcase_add_test(to, test_human_drain);
        tcase_add_test(to, test_human_status);
        tcase_add_test(to, test_human_stats);
        tcase_add_test(to, test_human_connections);
        tcase_add_test(to, test_human_stats_rates);
        tcase_add_test(to, test_human_kill_reset);
        suite_add_tcase(s, to);

        tcase_add_test(tk, test_call_errors);
        tcase_add_test(tk, test_socket_path);
        tcase_add_test(tk, test_call_fake_daemon);
        tcase_add_test(tk, test_call_unreachable);
        tcase_add_test(tk, test_run_local_help);
        tcase_set_timeout(tk, 30);
        suite_add_tcase(s, tk);
        return s;
}
