/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "control-proto.h"
#include "duration.h"

#define CONTROL_WORDS_MAX 3

static const char *const command_names[_CONTROL_MAX] = {
        [CONTROL_STATUS] = "status",
        [CONTROL_STATS] = "stats",
        [CONTROL_CONNECTIONS] = "connections",
        [CONTROL_TIMEOUT] = "timeout",
        [CONTROL_RELOAD] = "reload",
        [CONTROL_HELP] = "help",
};

/* How many arguments each command takes, at least and at most. */
static const struct {
        unsigned min, max;
} command_args[_CONTROL_MAX] = {
        [CONTROL_TIMEOUT] = { 0, 2 },
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
        return c >= 0 && c < _CONTROL_MAX ? command_names[c] : NULL;
}

__attribute__((format(printf, 3, 4)))
static int control_error(char *err, size_t errlen, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        return -EINVAL;
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
                return control_error(err, errlen, "unknown timeout '%s' (idle, write, shutdown)", words[1]);
        if (n < 3)
                return 0;
        r = duration_parse(words[2], &req->value_usec);
        if (r < 0)
                return r == -ERANGE ?
                        control_error(err, errlen, "timeout value '%s' is too large (at most a week)", words[2]) :
                        control_error(err, errlen, "invalid timeout value '%s' (seconds, or 250ms, 30s, 5m; 0 = off)",
                                      words[2]);
        req->set = true;
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
                return control_error(err, errlen, "request too long (at most %d bytes)", CONTROL_LINE_MAX);
        if (!printable(line, len))
                return control_error(err, errlen, "%s", "request contains control characters");
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (split_words(buf, words, CONTROL_WORDS_MAX, &n) < 0)
                return control_error(err, errlen, "%s", "too many arguments");
        if (n == 0)
                return control_error(err, errlen, "%s", "empty request, try 'help'");

        *req = (struct control_request) { .timeout = -1 };
        for (c = 0; c < _CONTROL_MAX; c++)
                if (strcmp(words[0], command_names[c]) == 0)
                        break;
        if (c == _CONTROL_MAX)
                return control_error(err, errlen, "unknown command '%s', try 'help'", words[0]);
        req->command = c;
        if (n - 1 < command_args[c].min || n - 1 > command_args[c].max)
                return control_error(err, errlen, "wrong number of arguments for '%s', try 'help'",
                                     words[0]);
        if (c == CONTROL_TIMEOUT)
                return parse_timeout_args(words, n, req, err, errlen);
        return 0;
}
