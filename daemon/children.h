/* SPDX-License-Identifier: MIT */
#pragma once

/* Child processes by pid, each with its connection's slot: the process
 * model's own children and the fork helper's.  Open addressing, linear
 * probing, at most half full; pid 0 marks a free entry.  The table is not
 * inherited by a fork (MADV_DONTFORK): children must not use it. */

#include <stddef.h>
#include <sys/types.h>

struct conn_slot;

struct child {
        pid_t pid;
        struct conn_slot *slot;
};

struct children {
        struct child *table;
        size_t mask;                    /* size - 1, a power of two */
        unsigned n;
};

/* Room for one more child, so that recording it after the fork cannot
 * fail; -ENOMEM. */
int children_reserve(struct children *t);
/* After children_reserve(). */
void children_add(struct children *t, pid_t pid, struct conn_slot *slot);
/* Removes pid's entry; returns its slot, NULL when pid is not a child. */
struct conn_slot *children_remove(struct children *t, pid_t pid);
void children_free(struct children *t);
