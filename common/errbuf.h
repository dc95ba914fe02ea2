/* SPDX-License-Identifier: MIT */
#pragma once

/* One-line error messages into a caller's buffer, the way every layer
 * reports them: "return errbuf_set(err, errlen, -EINVAL, "bad %s", x);". */

#include <stdarg.h>
#include <stddef.h>

/* Writes the message to err (errlen bytes, cut if need be) and returns r. */
int errbuf_set(char *err, size_t errlen, int r, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int errbuf_vset(char *err, size_t errlen, int r, const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
