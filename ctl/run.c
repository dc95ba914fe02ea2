/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int ctl_print(const struct ctl_options *o, const struct textbuf *reply, struct textbuf *out,
                     char *err, size_t errlen) {
        struct ctl_reply r;
        int e;

        e = ctl_reply_parse(reply->data, reply->len, &r);
        if (e < 0) {
                snprintf(err, errlen, "malformed reply from uppercased: %s", strerror(-e));
                return CTL_EXIT_FAILED;
        }
        if (r.error) {
                snprintf(err, errlen, "%s", r.error[0] ? r.error : "uppercased refused the request");
                ctl_reply_free(&r);
                return CTL_EXIT_FAILED;
        }
        e = o->command->print[o->format](&r, out);
        ctl_reply_free(&r);
        if (e < 0) {
                snprintf(err, errlen, "cannot format the reply of uppercased: %s", strerror(-e));
                return CTL_EXIT_FAILED;
        }
        return CTL_EXIT_OK;
}

int ctl_run(const struct ctl_options *o, struct textbuf *out, char *err, size_t errlen) {
        struct textbuf reply;
        char path[4096];
        int e;

        if (o->command->local)
                return o->command->print[CTL_HUMAN](NULL, out) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
        if (o->socket)
                snprintf(path, sizeof(path), "%s", o->socket);
        else
                ctl_socket_path(geteuid(), getenv("XDG_RUNTIME_DIR"), path, sizeof(path));

        textbuf_init(&reply, CTL_REPLY_MAX);
        e = ctl_call(path, o->request, CTL_TIMEOUT_SEC * 1000, &reply);
        e = e < 0 ? ctl_call_error(e, path, err, errlen) : ctl_print(o, &reply, out, err, errlen);
        textbuf_free(&reply);
        return e;
}
