/* SPDX-License-Identifier: MIT */
#pragma once

/* uppercasectl: the command table, the command line, and running one
 * command.  Nothing here prints: main() does, once. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control-proto.h"
#include "output.h"
#include "textbuf.h"

/* Exit statuses, as documented in uppercasectl(8). */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILED = 1,            /* the daemon refused or failed */
        CTL_EXIT_USAGE = 2,
        CTL_EXIT_UNREACHABLE = 3,       /* not running, or permission denied */
};

#define CTL_ERR_MAX 512

/* A command of the protocol's table (control-proto.h), and how
 * uppercasectl prints its reply. */
struct ctl_command {
        const struct control_command_info *info;
        bool local;                     /* answered without the daemon */
        ctl_printer print[_CTL_FORMAT_MAX];     /* NULL: format not offered */
};

extern const struct ctl_command ctl_commands[];
extern const size_t ctl_n_commands;

/* The commands word names: the one it spells exactly, or else every one
 * it is a prefix of.  Returns how many, storing up to max of them. */
size_t ctl_command_match(const char *word, const struct ctl_command **found, size_t max);
/* 0 and the command; -ENOENT when word names none, -ENOTUNIQ when more. */
int ctl_command_find(const char *word, const struct ctl_command **ret);

/* The usage text, for --help and the help command. */
int ctl_usage(const struct ctl_reply *unused, struct textbuf *out);
/* One command's usage and description (help COMMAND). */
int ctl_usage_command(const struct ctl_command *c, struct textbuf *out);

/* -i: the shortest refresh interval. */
#define CTL_INTERVAL_MIN_USEC 100000

enum ctl_action {
        CTL_ACTION_RUN,
        CTL_ACTION_HELP,
        CTL_ACTION_VERSION,
};

struct ctl_options {
        enum ctl_action action;
        const char *socket;             /* -s, NULL for the default */
        enum ctl_format format;
        const struct ctl_command *command;
        char request[CONTROL_LINE_MAX + 1];     /* the line sent, without "\n" */
        const struct ctl_command *topic;        /* help COMMAND, NULL: all */
        uint64_t interval_usec;                 /* -i: redraw stats this often, 0: once */
        unsigned long count;                    /* -c: this many times, 0: until interrupted */
        /* -i: prints a round and empties out; NULL: out keeps everything. */
        int (*emit)(struct textbuf *out);
};

/* Parses the command line and checks the request as the daemon would
 * (control_parse()), so usage errors never need the daemon.  Returns 0,
 * or -EINVAL with a one-line message in err. */
int ctl_parse_argv(int argc, char *argv[], struct ctl_options *o, char *err, size_t errlen);

/* Runs the command: out gets what to print on stdout.  Returns a CTL_EXIT_*
 * status; unless 0, err holds the one-line message for stderr. */
int ctl_run(const struct ctl_options *o, struct textbuf *out, char *err, size_t errlen);

/* The message and exit status for a failed ctl_call() to path. */
int ctl_call_error(int error, const char *path, char *err, size_t errlen);
