/* SPDX-License-Identifier: MIT */
/* Durations: parsing "250ms"-style values, formatting seconds, clocks.
 *
 * Grammar accepted by duration_parse():
 *
 *      duration = digits [ "." digits ] [ unit ]
 *      unit     = "ms" | "s" | "m" | "h"          (none: seconds)
 *
 * Digits are parsed by hand rather than with strtod(): strtod() honours
 * the locale's decimal point, accepts white space, signs, exponents,
 * "inf", "nan" and hexadecimal floats, and rounds through binary floating
 * point.  Here "1.1" is exactly 1100000 us.
 *
 * Deliberately rejected: ".5" and "5." (a digit is required on both sides
 * of the point), signs, exponents ("1e3"), white space anywhere, and
 * values that are not a whole number of microseconds.  A fraction has at
 * most 6 digits, and must land on a microsecond in its unit: "1.5ms" is
 * 1500 us, but "1.2345ms" and "0.0000001" are refused rather than rounded,
 * so that what the administrator wrote is exactly what is in force. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "duration.h"

#define FRACTION_DIGITS_MAX 6

struct unit {
        const char *suffix;
        uint64_t usec;
};

static const struct unit units[] = {
        { "",   USEC_PER_SEC },
        { "ms", USEC_PER_MSEC },
        { "s",  USEC_PER_SEC },
        { "m",  60 * USEC_PER_SEC },
        { "h",  3600 * USEC_PER_SEC },
};

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Reads a run of digits at *p.  Saturates a little above DURATION_MAX_USEC
 * instead of overflowing, which is enough to report -ERANGE later.
 * Returns the number of digits read. */
static size_t parse_digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        for (; is_digit(*s); s++) {
                v = v * 10 + (uint64_t) (*s - '0');
                if (v > DURATION_MAX_USEC)
                        v = DURATION_MAX_USEC + 1;
        }
        *ret = v;
        size_t n = (size_t) (s - *p);
        *p = s;
        return n;
}

static const struct unit *find_unit(const char *suffix) {
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (strcmp(suffix, units[i].suffix) == 0)
                        return &units[i];
        return NULL;
}

static uint64_t pow10_u64(size_t e) {
        uint64_t v = 1;

        while (e-- > 0)
                v *= 10;
        return v;
}

int duration_parse(const char *s, uint64_t *ret_usec) {
        uint64_t whole, frac = 0;
        size_t nfrac = 0;

        if (!s || !ret_usec)
                return -EINVAL;

        if (parse_digits(&s, &whole) == 0)
                return -EINVAL;
        if (*s == '.') {
                s++;
                /* At most 6 digits, so frac < 10^6 fits comfortably. */
                const char *start = s;
                while (is_digit(*s))
                        s++;
                nfrac = (size_t) (s - start);
                if (nfrac == 0 || nfrac > FRACTION_DIGITS_MAX)
                        return -EINVAL;
                for (const char *d = start; d < s; d++)
                        frac = frac * 10 + (uint64_t) (*d - '0');
        }

        const struct unit *unit = find_unit(s);
        if (!unit)
                return -EINVAL;

        /* frac < 10^6 and unit <= 3.6e9: the product stays below 2^63. */
        uint64_t scale = pow10_u64(nfrac);
        uint64_t frac_scaled = frac * unit->usec;
        if (frac_scaled % scale != 0)
                return -EINVAL;         /* finer than a microsecond */
        uint64_t frac_usec = frac_scaled / scale;

        if (whole > DURATION_MAX_USEC / unit->usec)
                return -ERANGE;
        uint64_t usec = whole * unit->usec + frac_usec;
        if (usec > DURATION_MAX_USEC)
                return -ERANGE;

        *ret_usec = usec;
        return 0;
}

char *duration_format_sec(uint64_t usec, char *buf, size_t len) {
        uint64_t sec = usec / USEC_PER_SEC;
        unsigned frac = (unsigned) (usec % USEC_PER_SEC);

        if (len == 0)
                return buf;
        if (frac == 0) {
                snprintf(buf, len, "%llu", (unsigned long long) sec);
                return buf;
        }

        /* Six digits with the trailing zeros dropped: 250000 -> "25". */
        int digits = 6;
        while (frac % 10 == 0) {
                frac /= 10;
                digits--;
        }
        snprintf(buf, len, "%llu.%0*u", (unsigned long long) sec, digits, frac);
        return buf;
}

static uint64_t clock_usec(clockid_t clock) {
        struct timespec ts;

        /* Cannot fail for these clocks with a valid pointer. */
        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC +
               (uint64_t) ts.tv_nsec / 1000;
}

uint64_t now_usec_monotonic(void) {
        return clock_usec(CLOCK_MONOTONIC);
}

uint64_t now_usec_realtime(void) {
        return clock_usec(CLOCK_REALTIME);
}
