/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "ctl.h"

int ctl_call_error(int error, const char *path, char *err, size_t errlen) {
        switch (error) {
        case -EACCES:
        case -EPERM:
                snprintf(err, errlen, "permission denied: %s: you need to be root or in group %s",
                         path, CONTROL_GROUP);
                return CTL_EXIT_UNREACHABLE;
        case -ETIMEDOUT:
                snprintf(err, errlen, "no reply from uppercased at %s within %d s", path, CTL_TIMEOUT_SEC);
                return CTL_EXIT_UNREACHABLE;
        case -ENAMETOOLONG:
                snprintf(err, errlen, "socket path too long: %s", path);
                return CTL_EXIT_USAGE;
        case -ECONNRESET:
                snprintf(err, errlen, "uppercased at %s closed the connection before replying", path);
                return CTL_EXIT_FAILED;
        case -EMSGSIZE:
                snprintf(err, errlen, "reply from uppercased at %s too large (over %d MiB)", path,
                         CTL_REPLY_MAX >> 20);
                return CTL_EXIT_FAILED;
        case -EBADMSG:
                snprintf(err, errlen, "malformed reply from uppercased at %s", path);
                return CTL_EXIT_FAILED;
        default:
                snprintf(err, errlen, "cannot reach uppercased at %s: %s "
                         "(is it running? try: systemctl status uppercased.socket)", path, strerror(-error));
                return CTL_EXIT_UNREACHABLE;
        }
}

/* The reply, parsed: CTL_EXIT_OK, or the status and message of a
 * malformed or refused one. */
static int ctl_reply_take(const struct textbuf *reply, struct ctl_reply *r, char *err, size_t errlen) {
        int e = ctl_reply_parse(reply->data, reply->len, r);

        if (e < 0) {
                snprintf(err, errlen, "malformed reply from uppercased: %s", strerror(-e));
                return CTL_EXIT_FAILED;
        }
        if (r->error) {
                snprintf(err, errlen, "%s", r->error[0] ? r->error : "uppercased refused the request");
                ctl_reply_free(r);
                return CTL_EXIT_FAILED;
        }
        return CTL_EXIT_OK;
}

static int ctl_print(const struct ctl_options *o, const struct textbuf *reply, struct textbuf *out,
                     char *err, size_t errlen) {
        struct ctl_reply r;
        int e;

        e = ctl_reply_take(reply, &r, err, errlen);
        if (e != CTL_EXIT_OK)
                return e;
        e = o->command->print[o->format](&r, out);
        ctl_reply_free(&r);
        if (e < 0) {
                snprintf(err, errlen, "cannot format the reply of uppercased: %s", strerror(-e));
                return CTL_EXIT_FAILED;
        }
        return CTL_EXIT_OK;
}

static void sleep_usec(uint64_t usec) {
        struct timespec ts = { (time_t) (usec / 1000000), (long) (usec % 1000000) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* One round of -i: the stats with the rates since *prev, which becomes
 * this round's reply. */
static int ctl_watch_round(const struct ctl_options *o, const char *path, struct ctl_reply *prev, bool *have_prev,
                           struct textbuf *out, char *err, size_t errlen) {
        struct textbuf reply;
        struct ctl_reply r;
        int e;

        textbuf_init(&reply, CTL_REPLY_MAX);
        e = ctl_call(path, o->request, CTL_TIMEOUT_SEC * 1000, &reply);
        e = e < 0 ? ctl_call_error(e, path, err, errlen) : ctl_reply_take(&reply, &r, err, errlen);
        textbuf_free(&reply);
        if (e != CTL_EXIT_OK)
                return e;
        /* On a terminal each round replaces the last. */
        if (isatty(STDOUT_FILENO))
                textbuf_printf(out, "\033[H\033[2J");
        if (ctl_human_stats_rates(&r, *have_prev ? prev : NULL, out) < 0) {
                ctl_reply_free(&r);
                snprintf(err, errlen, "%s", "cannot format the reply of uppercased");
                return CTL_EXIT_FAILED;
        }
        textbuf_printf(out, "\n");
        if (*have_prev)
                ctl_reply_free(prev);
        *prev = r;
        *have_prev = true;
        return CTL_EXIT_OK;
}

/* -i: stats every interval, count times (0: until interrupted), each
 * round emitted as it comes. */
static int ctl_watch(const struct ctl_options *o, const char *path, struct textbuf *out, char *err, size_t errlen) {
        struct ctl_reply prev;
        bool have_prev = false;
        int e = CTL_EXIT_OK;

        for (unsigned long i = 0; o->count == 0 || i < o->count; i++) {
                if (i > 0)
                        sleep_usec(o->interval_usec);
                e = ctl_watch_round(o, path, &prev, &have_prev, out, err, errlen);
                if (e != CTL_EXIT_OK)
                        break;
                if (o->emit && o->emit(out) < 0) {
                        snprintf(err, errlen, "%s", "cannot write the output");
                        e = CTL_EXIT_FAILED;
                        break;
                }
        }
        if (have_prev)
                ctl_reply_free(&prev);
        return e;
}

int ctl_run(const struct ctl_options *o, struct textbuf *out, char *err, size_t errlen) {
        struct textbuf reply;
        char path[4096];
        int e;

        if (o->command->local && o->topic)
                return ctl_usage_command(o->topic, out) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
        if (o->command->local)
                return ctl_usage(NULL, out) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
        if (o->socket)
                snprintf(path, sizeof(path), "%s", o->socket);
        else
                ctl_socket_path(geteuid(), getenv("XDG_RUNTIME_DIR"), path, sizeof(path));
        if (o->interval_usec)
                return ctl_watch(o, path, out, err, errlen);

        textbuf_init(&reply, CTL_REPLY_MAX);
        e = ctl_call(path, o->request, CTL_TIMEOUT_SEC * 1000, &reply);
        e = e < 0 ? ctl_call_error(e, path, err, errlen) : ctl_print(o, &reply, out, err, errlen);
        textbuf_free(&reply);
        return e;
}
