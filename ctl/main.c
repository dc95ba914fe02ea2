/* SPDX-License-Identifier: MIT */
/* uppercasectl: query and control uppercased over its control socket. */
#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"

static int write_out(const struct textbuf *out) {
        if (out->len > 0 && fwrite(out->data, 1, out->len, stdout) != out->len)
                return -1;
        return fflush(stdout) == 0 ? 0 : -1;
}

/* -i: each round as it comes. */
static int emit(struct textbuf *out) {
        int r = write_out(out);

        textbuf_consume(out, out->len);
        return r;
}

int main(int argc, char *argv[]) {
        struct ctl_options o;
        struct textbuf out;
        char err[CTL_ERR_MAX] = "";
        int status;

        textbuf_init(&out, CTL_OUTPUT_MAX);
        if (ctl_parse_argv(argc, argv, &o, err, sizeof(err)) < 0)
                status = CTL_EXIT_USAGE;
        else if (o.action == CTL_ACTION_VERSION) {
                textbuf_printf(&out, "uppercasectl %s\n", VERSION);
                status = CTL_EXIT_OK;
        } else if (o.action == CTL_ACTION_HELP)
                status = ctl_usage(NULL, &out) < 0 ? CTL_EXIT_FAILED : CTL_EXIT_OK;
        else {
                o.emit = emit;
                status = ctl_run(&o, &out, err, sizeof(err));
        }

        if (status == CTL_EXIT_OK && write_out(&out) < 0) {
                snprintf(err, sizeof(err), "%s", "cannot write the output");
                status = CTL_EXIT_FAILED;
        }
        if (status != CTL_EXIT_OK)
                fprintf(stderr, "uppercasectl: %s\n%s", err,
                        status == CTL_EXIT_USAGE ? "Try 'uppercasectl --help'.\n" : "");
        textbuf_free(&out);
        return status;
}
