/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "errbuf.h"

int errbuf_vset(char *err, size_t errlen, int r, const char *fmt, va_list ap) {
        if (err && errlen > 0)
                vsnprintf(err, errlen, fmt, ap);
        return r;
}

int errbuf_set(char *err, size_t errlen, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        errbuf_vset(err, errlen, r, fmt, ap);
        va_end(ap);
        return r;
}
