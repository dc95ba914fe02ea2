/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

const struct ctl_command ctl_commands[] = {
        { &control_commands[CONTROL_STATUS], false, { ctl_human_status, ctl_json_fields, NULL } },
        { &control_commands[CONTROL_STATS], false,
          { ctl_human_stats, ctl_json_fields, ctl_prometheus_stats } },
        { &control_commands[CONTROL_CONNECTIONS], false, { ctl_human_connections, ctl_json_connections, NULL } },
        { &control_commands[CONTROL_TIMEOUT], false, { ctl_human_timeout, ctl_json_fields, NULL } },
        { &control_commands[CONTROL_RELOAD], false, { ctl_human_reload, ctl_json_reload, NULL } },
        { &control_commands[CONTROL_DRAIN], false, { ctl_human_drain, ctl_json_fields, NULL } },
        { &control_commands[CONTROL_READY], false, { ctl_human_drain, ctl_json_fields, NULL } },
        { &control_commands[CONTROL_KILL], false, { ctl_human_kill, ctl_json_fields, NULL } },
        { &control_commands[CONTROL_RESET], false, { ctl_human_reset, ctl_json_reset, NULL } },
        { &control_commands[CONTROL_HELP], true, { ctl_usage, ctl_usage, NULL } },
};
_Static_assert(sizeof(ctl_commands) / sizeof(ctl_commands[0]) == _CONTROL_MAX, "every command of the protocol");
const size_t ctl_n_commands = sizeof(ctl_commands) / sizeof(ctl_commands[0]);

size_t ctl_command_match(const char *word, const struct ctl_command **found, size_t max) {
        size_t n = 0, len = strlen(word);

        for (size_t i = 0; i < ctl_n_commands; i++)
                if (strcmp(ctl_commands[i].info->name, word) == 0) {
                        if (max > 0)
                                found[0] = &ctl_commands[i];
                        return 1;
                }
        if (len == 0)
                return 0;
        for (size_t i = 0; i < ctl_n_commands; i++)
                if (strncmp(ctl_commands[i].info->name, word, len) == 0) {
                        if (n < max)
                                found[n] = &ctl_commands[i];
                        n++;
                }
        return n;
}

int ctl_command_find(const char *word, const struct ctl_command **ret) {
        const struct ctl_command *found[1];
        size_t n = ctl_command_match(word, found, 1);

        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return -ENOTUNIQ;
        *ret = found[0];
        return 0;
}

static void usage_command(const struct control_command_info *c, struct textbuf *out) {
        char head[64];
        const char *help = c->help;

        snprintf(head, sizeof(head), "%s%s%s", c->name, c->args[0] ? " " : "", c->args);
        /* Continuation lines of the help text line up under its start. */
        for (const char *nl; (nl = strchr(help, '\n')); help = nl + 1) {
                textbuf_printf(out, "  %-22s  %.*s\n", head, (int) (nl - help), help);
                head[0] = '\0';
        }
        textbuf_printf(out, "  %-22s  %s\n", head, help);
}

/* Who may run a command, in words. */
static const char *tier_text(enum control_tier t) {
        switch (t) {
        case CONTROL_TIER_ADMIN:
                return "changes the daemon: needs root or group " CONTROL_ADMIN_GROUP;
        case CONTROL_TIER_ADMIN_TO_SET:
                return "reading needs group " CONTROL_GROUP "; setting a VALUE needs root or group "
                       CONTROL_ADMIN_GROUP;
        default:
                return "reads only: needs group " CONTROL_GROUP;
        }
}

int ctl_usage_command(const struct ctl_command *c, struct textbuf *out) {
        const struct control_command_info *i = c->info;

        textbuf_printf(out, "Usage: uppercasectl [OPTIONS] %s%s%s\n\n", i->name, i->args[0] ? " " : "", i->args);
        textbuf_printf(out, "%s\n", i->help);
        if (c == &ctl_commands[CONTROL_STATS])
                textbuf_printf(out, "-i SECONDS redraws it every SECONDS with per-second rates\n"
                               "(-c N: N times), until interrupted\n");
        textbuf_printf(out, "\nAccess: %s (uppercasectl(8), ACCESS).\n", tier_text(i->tier));
        return ctl_output_result(out);
}

int ctl_usage(const struct ctl_reply *unused, struct textbuf *out) {
        textbuf_printf(out,
                       "Usage: uppercasectl [-s PATH] [-j|--json] [--prometheus] COMMAND [ARGS]\n"
                       "       uppercasectl [-s PATH] -i SECONDS [-c N] stats\n"
                       "\n"
                       "Query and control uppercased over its control socket.\n"
                       "\n"
                       "Commands (any unambiguous prefix will do):\n");
        for (size_t i = 0; i < ctl_n_commands; i++)
                usage_command(ctl_commands[i].info, out);
        textbuf_printf(out,
                       "\n"
                       "Options:\n"
                       "  -s, --socket PATH  the control socket; default: %s, or\n"
                       "                     for a non-root user $XDG_RUNTIME_DIR/%s/%s\n"
                       "                     when that exists\n"
                       "  -j, --json         print JSON\n"
                       "      --prometheus   print stats in the Prometheus text format\n"
                       "  -i, --interval SECONDS  redraw stats every SECONDS with per-second\n"
                       "                     rates, until interrupted\n"
                       "  -c, --count N      with -i: N times, then exit\n"
                       "  -h, --help         show this help\n"
                       "  -V, --version      show the version\n"
                       "\n"
                       "Reading commands need group %s; changing ones (timeout VALUE, reload,\n"
                       "kill, reset, drain, ready) root or group %s.\n"
                       "\n"
                       "Exit status: 0 done, 1 the daemon refused or failed, 2 usage error,\n"
                       "3 the daemon cannot be reached (not running, or permission denied).\n",
                       CONTROL_DEFAULT_PATH, CONTROL_DIR_NAME, CONTROL_SOCKET_NAME,
                       CONTROL_GROUP, CONTROL_ADMIN_GROUP);
        return ctl_output_result(out);
}
