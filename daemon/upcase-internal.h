/* SPDX-License-Identifier: MIT */
#pragma once

/* What daemon/upcase.c exposes to its unit tests and to bench/transform,
 * not to the daemon: the choice of vector kernels.  upcase.c picks the
 * best one this CPU has when the program starts; forcing a lesser one lets
 * the tests cover every kernel on one machine and the benchmark compare
 * them in one run. */

#include <stdbool.h>

enum upcase_isa {
        UPCASE_ISA_PORTABLE,    /* plain C, any architecture */
        UPCASE_ISA_SSE2,        /* x86-64 baseline */
        UPCASE_ISA_AVX2,        /* x86-64, chosen at run time */
        _UPCASE_ISA_MAX,
};

/* The kernels in use. */
enum upcase_isa upcase_get_isa(void);

/* Uses isa from now on, in every thread.  Returns false, changing nothing,
 * when this build or this CPU does not have it.  Not thread safe: call it
 * before any thread maps text. */
bool upcase_set_isa(enum upcase_isa isa);

/* Name of isa, for messages. */
const char *upcase_isa_name(enum upcase_isa isa);
