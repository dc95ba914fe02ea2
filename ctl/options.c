/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "duration.h"
#include "errbuf.h"

enum {
        ARG_PROMETHEUS = 0x100,
};

static const struct option long_options[] = {
        { "socket",     required_argument, NULL, 's' },
        { "json",       no_argument,       NULL, 'j' },
        { "prometheus", no_argument,       NULL, ARG_PROMETHEUS },
        { "interval",   required_argument, NULL, 'i' },
        { "count",      required_argument, NULL, 'c' },
        { "help",       no_argument,       NULL, 'h' },
        { "version",    no_argument,       NULL, 'V' },
        {}
};

static int set_format(struct ctl_options *o, enum ctl_format f, char *err, size_t errlen) {
        if (o->format != CTL_HUMAN && o->format != f)
                return errbuf_set(err, errlen, -EINVAL, "%s", "--json and --prometheus cannot be combined");
        o->format = f;
        return 0;
}

static int unknown_option(char *argv[], char *err, size_t errlen) {
        if (optopt)
                return errbuf_set(err, errlen, -EINVAL, "invalid option -- '%c'", optopt);
        return errbuf_set(err, errlen, -EINVAL, "unrecognized option '%s'", argv[optind - 1]);
}

static int parse_interval(const char *s, struct ctl_options *o, char *err, size_t errlen) {
        if (s[0] == '-' || duration_parse(s, &o->interval_usec) < 0 || o->interval_usec < CTL_INTERVAL_MIN_USEC)
                return errbuf_set(err, errlen, -EINVAL, "invalid interval '%s' (seconds, at least 0.1, "
                                  "or 250ms, 2s, 1m)", s);
        return 0;
}

static int parse_count(const char *s, struct ctl_options *o, char *err, size_t errlen) {
        char *end;

        errno = 0;
        o->count = strtoul(s, &end, 10);
        if (s[0] < '1' || s[0] > '9' || *end || errno != 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid count '%s' (a number, 1 or more)", s);
        return 0;
}

static int parse_option(int c, char *argv[], struct ctl_options *o, char *err, size_t errlen) {
        switch (c) {
        case 'i':
                return parse_interval(optarg, o, err, errlen);
        case 'c':
                return parse_count(optarg, o, err, errlen);
        default:
                return unknown_option(argv, err, errlen);
        }
}

static int parse_options(int argc, char *argv[], struct ctl_options *o, char *err, size_t errlen) {
        int c, r;

        /* optind = 0 re-initialises getopt, for callers that parse twice. */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":s:jhVi:c:", long_options, NULL)) >= 0) {
                switch (c) {
                case 's':
                        if (!optarg[0])
                                return errbuf_set(err, errlen, -EINVAL, "%s", "empty socket path");
                        o->socket = optarg;
                        break;
                case 'j':
                        r = set_format(o, CTL_JSON, err, errlen);
                        if (r < 0)
                                return r;
                        break;
                case ARG_PROMETHEUS:
                        r = set_format(o, CTL_PROMETHEUS, err, errlen);
                        if (r < 0)
                                return r;
                        break;
                case 'h':
                        o->action = CTL_ACTION_HELP;
                        break;
                case 'V':
                        o->action = CTL_ACTION_VERSION;
                        break;
                case ':':
                        return errbuf_set(err, errlen, -EINVAL, "option '%s' requires an argument", argv[optind - 1]);
                default:
                        r = parse_option(c, argv, o, err, errlen);
                        if (r < 0)
                                return r;
                        break;
                }
        }
        return 0;
}

static int find_command(const char *word, const struct ctl_command **ret, char *err, size_t errlen) {
        const struct ctl_command *found[16];
        size_t n = ctl_command_match(word, found, 16);
        char names[256] = "";

        if (n == 1) {
                *ret = found[0];
                return 0;
        }
        if (n == 0)
                return errbuf_set(err, errlen, -EINVAL, "unknown command '%s'", word);
        for (size_t i = 0; i < n && i < 16; i++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                         i > 0 ? ", " : "", found[i]->info->name);
        return errbuf_set(err, errlen, -EINVAL, "ambiguous command '%s': %s", word, names);
}

static int check_arg_count(const struct ctl_command *c, int n, char *err, size_t errlen) {
        if (n >= 0 && (unsigned) n >= c->info->min_args && (unsigned) n <= c->info->max_args)
                return 0;
        if (c->info->max_args == 0)
                return errbuf_set(err, errlen, -EINVAL, "'%s' takes no arguments", c->info->name);
        if ((unsigned) n > c->info->max_args)
                return errbuf_set(err, errlen, -EINVAL, "'%s' takes at most %u arguments", c->info->name, c->info->max_args);
        return errbuf_set(err, errlen, -EINVAL, "'%s' needs at least %u arguments", c->info->name, c->info->min_args);
}

/* Joins the command's full name and args into the request line.  An
 * argument with a blank in it would silently turn into two words. */
static int build_request(struct ctl_options *o, char *args[], int n, char *err, size_t errlen) {
        char line[CONTROL_LINE_MAX + 2];
        size_t len = strlen(o->command->info->name);

        memcpy(line, o->command->info->name, len + 1);
        for (int i = 0; i < n; i++) {
                if (args[i][0] == '\0' || strpbrk(args[i], " \t"))
                        return errbuf_set(err, errlen, -EINVAL, "invalid argument '%s'", args[i]);
                if (len + 1 + strlen(args[i]) > CONTROL_LINE_MAX)
                        return errbuf_set(err, errlen, -EINVAL, "request too long (at most %d bytes)",
                                           CONTROL_LINE_MAX);
                line[len++] = ' ';
                memcpy(line + len, args[i], strlen(args[i]) + 1);
                len += strlen(args[i]);
        }
        memcpy(o->request, line, len + 1);
        return 0;
}

static int check_request(const struct ctl_options *o, char *err, size_t errlen) {
        struct control_request req;

        if (o->command->local)
                return 0;
        return control_parse(o->request, strlen(o->request), &req, err, errlen) < 0 ? -EINVAL : 0;
}

/* A negative number ("timeout idle -5") is an argument, not options: getopt
 * would take it for "-5".  Such arguments are hidden from it as pointers
 * one past their "-" (getopt permutes pointers, never strings), and put
 * back afterwards, so that the request check says what is wrong. */
static bool takes_argument(const char *opt) {
        static const char *const with_arg[] = { "-s", "-i", "-c", "--socket", "--interval", "--count" };

        for (size_t i = 0; i < sizeof(with_arg) / sizeof(with_arg[0]); i++)
                if (strcmp(opt, with_arg[i]) == 0)
                        return true;
        return false;
}

static void hide_negative(int argc, char *argv[], bool *hidden) {
        for (int i = 1; i < argc; i++) {
                /* An option's own argument is the option's to judge. */
                hidden[i] = argv[i][0] == '-' && argv[i][1] >= '0' && argv[i][1] <= '9' &&
                            !takes_argument(argv[i - 1]);
                if (strcmp(argv[i], "--") == 0)
                        break;
                if (hidden[i])
                        argv[i]++;
        }
}

static void unhide_negative(int argc, char *argv[], char *const orig[], const bool *hidden,
                            struct ctl_options *o) {
        for (int i = 1; i < argc; i++)
                for (int j = 1; j < argc; j++)
                        if (hidden[j] && argv[i] == orig[j] + 1) {
                                argv[i] = orig[j];
                                break;
                        }
        for (int j = 1; j < argc; j++)
                if (hidden[j] && o->socket == orig[j] + 1)
                        o->socket = orig[j];
}

static int parse_options_keep_negative(int argc, char *argv[], struct ctl_options *o, char *err,
                                       size_t errlen) {
        char **orig = calloc((size_t) argc + 1, sizeof(*orig));
        bool *hidden = calloc((size_t) argc + 1, sizeof(*hidden));
        int r = -ENOMEM;

        if (orig && hidden) {
                memcpy(orig, argv, (size_t) argc * sizeof(*orig));
                hide_negative(argc, argv, hidden);
                r = parse_options(argc, argv, o, err, errlen);
                unhide_negative(argc, argv, orig, hidden, o);
        } else
                errbuf_set(err, errlen, r, "%s", "out of memory");
        free(orig);
        free(hidden);
        return r;
}

/* -i and -c: stats only, for people. */
static int check_refresh(const struct ctl_options *o, char *err, size_t errlen) {
        if (o->count && !o->interval_usec)
                return errbuf_set(err, errlen, -EINVAL, "%s", "-c/--count goes with -i/--interval");
        if (!o->interval_usec)
                return 0;
        if (o->command != &ctl_commands[CONTROL_STATS])
                return errbuf_set(err, errlen, -EINVAL, "-i/--interval works with 'stats' only, not '%s'",
                                  o->command->info->name);
        if (o->format != CTL_HUMAN)
                return errbuf_set(err, errlen, -EINVAL, "%s", "-i/--interval redraws the human output only: "
                                  "for --json or --prometheus, run 'stats' at each interval");
        return 0;
}

/* help COMMAND: any unambiguous prefix, as on the command line. */
static int parse_help_topic(struct ctl_options *o, char *args[], int n, char *err, size_t errlen) {
        if (o->command != &ctl_commands[CONTROL_HELP] || n == 0)
                return 0;
        return find_command(args[0], &o->topic, err, errlen);
}

int ctl_parse_argv(int argc, char *argv[], struct ctl_options *o, char *err, size_t errlen) {
        int r;

        *o = (struct ctl_options) { .action = CTL_ACTION_RUN, .format = CTL_HUMAN };
        r = parse_options_keep_negative(argc, argv, o, err, errlen);
        if (r < 0 || o->action != CTL_ACTION_RUN)
                return r;
        if (optind >= argc)
                return errbuf_set(err, errlen, -EINVAL, "%s", "missing command");
        r = find_command(argv[optind], &o->command, err, errlen);
        if (r < 0)
                return r;
        if (!o->command->print[o->format])
                return errbuf_set(err, errlen, -EINVAL, "'%s' has no %s output", o->command->info->name,
                                   o->format == CTL_JSON ? "JSON" : "Prometheus");
        r = check_arg_count(o->command, argc - optind - 1, err, errlen);
        if (r < 0)
                return r;
        r = check_refresh(o, err, errlen);
        if (r < 0)
                return r;
        r = parse_help_topic(o, argv + optind + 1, argc - optind - 1, err, errlen);
        if (r < 0)
                return r;
        r = build_request(o, argv + optind + 1, argc - optind - 1, err, errlen);
        if (r < 0)
                return r;
        return check_request(o, err, errlen);
}
