/* SPDX-License-Identifier: MIT */
/* Picks the mode: TEXT given, a terminal, or a pipe; TCP or UDP. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "duration.h"
#include "uppercase.h"

static void session_init(struct session *s, const struct client_options *o, char *err, size_t errlen) {
        uint64_t msec = (o->timeout_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC;

        *s = (struct session) { .o = o, .err = err, .errlen = errlen };
        client_format_endpoint(o->host, o->port, s->endpoint, sizeof(s->endpoint));
        duration_format_sec(o->timeout_usec, s->timeout_text, sizeof(s->timeout_text));
        /* poll() takes an int: a week of milliseconds fits easily. */
        s->timeout_msec = (int) msec;
}

static int run_text(struct session *s) {
        const struct client_options *o = s->o;
        size_t len;
        char *msg;
        int r;

        msg = client_join_words(o->text, o->n_text, o->newline, &len);
        if (!msg)
                return session_error(s, -ENOMEM, "%s", "out of memory");
        if (o->udp)
                r = udp_oneshot(s, msg, len);
        else
                r = tcp_pump(s, -1, msg, len, true);
        free(msg);
        return r;
}

/* A terminal gets a session, with line editing when it can be had; a pipe
 * or a file goes through as it is, byte for byte. */
static int run_stdin(struct session *s) {
        bool interactive = isatty(STDIN_FILENO);
        int r;

        if (!interactive && !s->o->udp)
                return tcp_pump(s, STDIN_FILENO, NULL, 0, false);
        if (interactive)
                s->editor = editor_new(STDIN_FILENO);
        r = s->o->udp ? udp_lines(s, interactive) : tcp_interactive(s);
        editor_free(s->editor);
        s->editor = NULL;
        return r;
}

int client_run(const struct client_options *o, char *err, size_t errlen) {
        struct session s;
        int r;

        session_init(&s, o, err, errlen);
        r = net_resolve(&s, o->udp ? SOCK_DGRAM : SOCK_STREAM);
        if (r < 0)
                return r;
        r = o->text ? run_text(&s) : run_stdin(&s);
        freeaddrinfo(s.addrs);
        return r;
}
