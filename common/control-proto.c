/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "control-proto.h"
#include "duration.h"
#include "errbuf.h"

#define CONTROL_WORDS_MAX 3

const struct control_command_info control_commands[_CONTROL_MAX] = {
        [CONTROL_STATUS] = { "status", "", 0, 0,
                             "daemon summary: version, pid, model, uptime, listeners",
                             CONTROL_TIER_READ },
        [CONTROL_STATS] = { "stats", "", 0, 0,
                            "counters: connections, bytes, datagrams, timeouts",
                            CONTROL_TIER_READ },
        [CONTROL_CONNECTIONS] = { "connections", "", 0, 0,
                                  "active TCP connections: id, client, age, idle, bytes",
                                  CONTROL_TIER_READ },
        [CONTROL_TIMEOUT] = { "timeout", "[NAME [VALUE]]", 0, 2,
                              "list, show or set a timeout (idle, write, shutdown);\n"
                              "VALUE: seconds, or 250ms, 30s, 5m; 0 = off",
                              CONTROL_TIER_ADMIN_TO_SET },
        [CONTROL_RELOAD] = { "reload", "", 0, 0,
                             "re-read the configuration; fails when it is rejected",
                             CONTROL_TIER_ADMIN },
        [CONTROL_DRAIN] = { "drain", "", 0, 0,
                            "the agent-check answers drain: the balancer sends no\n"
                            "new connections, open sessions go on",
                            CONTROL_TIER_ADMIN },
        [CONTROL_READY] = { "ready", "", 0, 0, "the agent-check answers ready again",
                            CONTROL_TIER_ADMIN },
        [CONTROL_KILL] = { "kill", "ID", 1, 1,
                           "close connection ID (see connections) once it has\n"
                           "sent the replies to what it read",
                           CONTROL_TIER_ADMIN },
        [CONTROL_RESET] = { "reset", "", 0, 0,
                            "zero the counters (not the active connections)",
                            CONTROL_TIER_ADMIN },
        [CONTROL_HELP] = { "help", "[COMMAND]", 0, 1, "the commands, or one command's usage",
                           CONTROL_TIER_READ },
};

static const char *const timeout_names[_TIMEOUT_MAX] = {
        [TIMEOUT_IDLE] = "idle",
        [TIMEOUT_WRITE] = "write",
        [TIMEOUT_SHUTDOWN] = "shutdown",
};

const char *timeout_to_string(enum timeout_id t) {
        return t >= 0 && t < _TIMEOUT_MAX ? timeout_names[t] : NULL;
}

int timeout_from_string(const char *s) {
        for (int t = 0; t < _TIMEOUT_MAX; t++)
                if (strcmp(s, timeout_names[t]) == 0)
                        return t;
        return -EINVAL;
}

bool control_socket_path(uid_t euid, const char *runtime_dir, char *buf, size_t len) {
        size_t sun_path_max = sizeof(((struct sockaddr_un *) 0)->sun_path);
        int n;

        /* A relative $XDG_RUNTIME_DIR is as good as none. */
        if (euid != 0 && runtime_dir && runtime_dir[0] == '/') {
                n = snprintf(buf, len, "%s/%s/%s", runtime_dir, CONTROL_DIR_NAME, CONTROL_SOCKET_NAME);
                if (n >= 0 && (size_t) n < len && (size_t) n < sun_path_max)
                        return true;
        }
        snprintf(buf, len, "%s", CONTROL_DEFAULT_PATH);
        return false;
}

const char *control_command_name(enum control_command c) {
        return c >= 0 && c < _CONTROL_MAX ? control_commands[c].name : NULL;
}

int control_command_from_string(const char *name) {
        for (int c = 0; c < _CONTROL_MAX; c++)
                if (strcmp(name, control_commands[c].name) == 0)
                        return c;
        return -EINVAL;
}

bool control_request_needs_admin(const struct control_request *req) {
        switch (control_commands[req->command].tier) {
        case CONTROL_TIER_ADMIN:
                return true;
        case CONTROL_TIER_ADMIN_TO_SET:
                return req->set;
        default:
                return false;
        }
}

bool control_peer_is_admin(uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups, uid_t self,
                           gid_t admin_gid) {
        if (uid == 0 || uid == self)
                return true;
        if (admin_gid == (gid_t) -1)
                return false;
        if (gid == admin_gid)
                return true;
        for (size_t i = 0; i < n_groups; i++)
                if (groups[i] == admin_gid)
                        return true;
        return false;
}

/* Splits the line into blank-separated words, in place in buf. */
static int split_words(char *buf, char *words[], unsigned max, unsigned *n) {
        char *save = NULL;

        *n = 0;
        for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                if (*n == max)
                        return -E2BIG;
                words[(*n)++] = w;
        }
        return 0;
}

static bool printable(const char *s, size_t len) {
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x20 && s[i] != '\t')
                        return false;
        return true;
}

static int parse_timeout_args(char *words[], unsigned n, struct control_request *req,
                              char *err, size_t errlen) {
        int r;

        req->timeout = -1;
        if (n < 2)
                return 0;
        req->timeout = timeout_from_string(words[1]);
        if (req->timeout < 0)
                return errbuf_set(err, errlen, -EINVAL, "unknown timeout '%s' (idle, write, shutdown)", words[1]);
        if (n < 3)
                return 0;
        if (words[2][0] == '-')
                return errbuf_set(err, errlen, -EINVAL, "invalid timeout value '%s': a duration cannot be negative "
                                  "(seconds, or 250ms, 30s, 5m; 0 = off)", words[2]);
        r = duration_parse(words[2], &req->value_usec);
        if (r < 0)
                return r == -ERANGE ?
                        errbuf_set(err, errlen, -EINVAL, "timeout value '%s' is too large (at most a week)", words[2]) :
                        errbuf_set(err, errlen, -EINVAL, "invalid timeout value '%s' (seconds, or 250ms, 30s, 5m; 0 = off)",
                                      words[2]);
        req->set = true;
        return 0;
}

/* A connection id: decimal, 1 or more. */
static int parse_kill_args(char *words[], struct control_request *req, char *err, size_t errlen) {
        const char *p = words[1];
        uint64_t v = 0;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        break;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (*p || v == 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid connection id '%s' (a number, see 'connections')",
                                  words[1]);
        req->conn_id = v;
        return 0;
}

static int parse_help_args(char *words[], unsigned n, struct control_request *req, char *err, size_t errlen) {
        req->topic = -1;
        if (n < 2)
                return 0;
        req->topic = control_command_from_string(words[1]);
        if (req->topic < 0)
                return errbuf_set(err, errlen, -EINVAL, "unknown command '%s', try 'help'", words[1]);
        return 0;
}

int control_parse(const char *line, size_t len, struct control_request *req,
                  char *err, size_t errlen) {
        char buf[CONTROL_LINE_MAX + 1], *words[CONTROL_WORDS_MAX];
        unsigned n;
        int c;

        if (len > 0 && line[len - 1] == '\r')
                len--;
        if (len > CONTROL_LINE_MAX)
                return errbuf_set(err, errlen, -EINVAL, "request too long (at most %d bytes)", CONTROL_LINE_MAX);
        if (!printable(line, len))
                return errbuf_set(err, errlen, -EINVAL, "%s", "request contains control characters");
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (split_words(buf, words, CONTROL_WORDS_MAX, &n) < 0)
                return errbuf_set(err, errlen, -EINVAL, "%s", "too many arguments");
        if (n == 0)
                return errbuf_set(err, errlen, -EINVAL, "%s", "empty request, try 'help'");

        *req = (struct control_request) { .timeout = -1, .topic = -1 };
        c = control_command_from_string(words[0]);
        if (c < 0)
                return errbuf_set(err, errlen, -EINVAL, "unknown command '%s', try 'help'", words[0]);
        req->command = c;
        if (n - 1 < control_commands[c].min_args || n - 1 > control_commands[c].max_args)
                return errbuf_set(err, errlen, -EINVAL, "wrong number of arguments for '%s', try 'help'",
                                     words[0]);
        switch (c) {
        case CONTROL_TIMEOUT:
                return parse_timeout_args(words, n, req, err, errlen);
        case CONTROL_KILL:
                return parse_kill_args(words, req, err, errlen);
        case CONTROL_HELP:
                return parse_help_args(words, n, req, err, errlen);
        default:
                return 0;
        }
}
