/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the configuration parser (daemon/config.h): the
 * input is a configuration file, handed to config_load() by name through
 * a memfd, as the daemon reads /etc/uppercased/uppercased.conf.
 *
 * config_load() must not crash or leak (LeakSanitizer runs after every
 * input); what it accepts must survive config_validate(), as the daemon
 * calls it next; and an error must name the file first ("FILE:LINE: ..."
 * or "FILE: ..."), since that is what the admin reads in the journal. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

static int memfd = -1;
static char path[64];

/* libconfig's "@include" opens any file named, relative to the working
 * directory: "/dev/zero" or a FIFO would hang or exhaust the fuzzer
 * without telling anything about uppercased, whose own code never sees
 * the included bytes as anything but more configuration. */
static bool has_include(const uint8_t *data, size_t size) {
        static const char word[] = "@include";
        const size_t len = sizeof(word) - 1;

        for (size_t i = 0; i + len <= size; i++)
                if (strncasecmp((const char *) data + i, word, len) == 0)
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char err[CONFIG_ERR_MAX], verr[CONFIG_ERR_MAX];
        struct config c;
        int r;

        if (memfd < 0) {
                memfd = memfd_create("fuzz-config", MFD_CLOEXEC);
                check(memfd >= 0);
                snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
        }
        if (has_include(data, size))
                return -1;      /* not added to the corpus */

        check(ftruncate(memfd, 0) == 0);
        check(pwrite(memfd, data, size, 0) == (ssize_t) size);

        memset(err, 0, sizeof(err));
        config_defaults(&c);
        r = config_load(path, &c, err, sizeof(err));
        if (r == 0) {
                memset(verr, 0, sizeof(verr));
                if (config_validate(&c, verr, sizeof(verr)) < 0)
                        check(verr[0] != '\0');
        } else {
                check(r < 0);
                check(err[0] != '\0');
                check(strncmp(err, path, strlen(path)) == 0);
                check(err[strlen(path)] == ':');
        }
        return 0;
}
