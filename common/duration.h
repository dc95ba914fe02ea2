/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Durations are kept in microseconds everywhere. */
#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC  1000000ULL
/* Upper bound for any configurable duration: one week.  Keeps arithmetic
 * on deadlines far away from overflow. */
#define DURATION_MAX_USEC (7ULL * 24 * 3600 * USEC_PER_SEC)

/* Parses "30", "1.5", "250ms", "30s", "5m", "1h" (bare numbers are seconds;
 * surrounding white space is not accepted).  Returns 0 and stores the value,
 * or -EINVAL for bad syntax and -ERANGE above DURATION_MAX_USEC. */
int duration_parse(const char *s, uint64_t *ret_usec);

/* Formats as seconds with up to 6 decimals, trailing zeros dropped:
 * 300000000 -> "300", 250000 -> "0.25".  Returns buf. */
char *duration_format_sec(uint64_t usec, char *buf, size_t len);
#define DURATION_BUF 32

/* Current time of CLOCK_MONOTONIC / CLOCK_REALTIME in microseconds. */
uint64_t now_usec_monotonic(void);
uint64_t now_usec_realtime(void);
