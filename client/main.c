/* SPDX-License-Identifier: MIT */
/* uppercase: the lab's client for uppercased, over TCP or UDP. */
#include <stdio.h>

#include "uppercase.h"

int main(int argc, char *argv[]) {
        struct client_options o;
        char err[CLIENT_ERR_MAX] = "";
        int status;

        if (client_parse_argv(argc, argv, &o, err, sizeof(err)) < 0)
                status = CLIENT_EXIT_USAGE;
        else if (o.action == CLIENT_ACTION_HELP) {
                client_usage(stdout);
                status = CLIENT_EXIT_OK;
        } else if (o.action == CLIENT_ACTION_VERSION) {
                printf("uppercase %s\n", VERSION);
                status = CLIENT_EXIT_OK;
        } else
                status = client_run(&o, err, sizeof(err)) < 0 ? CLIENT_EXIT_NETWORK : CLIENT_EXIT_OK;

        if (status != CLIENT_EXIT_OK)
                fprintf(stderr, "uppercase: %s\n%s", err,
                        status == CLIENT_EXIT_USAGE ? CLIENT_SYNOPSIS "Try 'uppercase --help'.\n" : "");
        if (fflush(stdout) != 0 && status == CLIENT_EXIT_OK) {
                fputs("uppercase: cannot write the output\n", stderr);
                status = CLIENT_EXIT_NETWORK;
        }
        return status;
}
