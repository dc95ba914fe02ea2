/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the control protocol parser (common/control-proto.h):
 * the whole input is one request line, any bytes, NULs included, of any
 * length (control.c hands it whatever a client sent before "\n").
 *
 * A request that parses must make sense to the daemon, which indexes
 * tables with the command and the timeout; a refusal must be a non-empty
 * single line, since the daemon sends it back as "ERROR <reason>\n" and a
 * "\n" in it would be read by the client as the end of the answer. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control-proto.h"
#include "duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

/* The error buffer is exactly errlen bytes on the heap, so that ASan sees
 * a message written past it. */
static void parse(const uint8_t *data, size_t size, size_t errlen) {
        struct control_request req;
        char *err = malloc(errlen);
        int r;

        check(err);
        memset(err, 0x55, errlen);
        memset(&req, 0xAA, sizeof(req));
        r = control_parse((const char *) data, size, &req, err, errlen);
        if (r == 0) {
                check(req.command >= 0 && req.command < _CONTROL_MAX);
                check(control_command_name(req.command));
                if (req.command == CONTROL_TIMEOUT) {
                        check(req.timeout >= -1 && req.timeout < _TIMEOUT_MAX);
                        if (req.set) {
                                check(req.timeout >= 0);
                                check(req.value_usec <= DURATION_MAX_USEC);
                        }
                } else
                        check(!req.set);
                check(req.command != CONTROL_KILL || req.conn_id > 0);
                check(req.topic >= -1 && req.topic < _CONTROL_MAX);
                check(req.command == CONTROL_HELP || req.topic == -1);
        } else {
                check(r < 0);
                /* Terminated within errlen, non-empty (when there was room
                 * for a character) and one line. */
                check(memchr(err, '\0', errlen));
                check(errlen == 1 || err[0] != '\0');
                check(!strchr(err, '\n'));
        }
        free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* The daemon's buffer size, then a short one that truncates. */
        parse(data, size, 512);     /* CONFIG_ERR_MAX, control.c's */
        parse(data, size, 1 + size % 24);
        return 0;
}
