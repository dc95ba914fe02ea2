/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "children.h"

#define CHILDREN_MIN 64

static size_t child_home(const struct children *t, pid_t pid) {
        /* Fibonacci hashing: consecutive pids spread out. */
        return (size_t) (((uint64_t) (uint32_t) pid * 0x9e3779b97f4a7c15ULL) >> 32) & t->mask;
}

/* The table has pages of its own that fork() leaves out: a child never
 * reads it, and a page its parent writes after every fork, were it shared
 * with the child, would be copied each time. */
static struct child *table_new(size_t size) {
        struct child *t = mmap(NULL, size * sizeof(*t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (t == MAP_FAILED)
                return NULL;
        if (madvise(t, size * sizeof(*t), MADV_DONTFORK) < 0) {
                munmap(t, size * sizeof(*t));
                return NULL;
        }
        return t;
}

static void table_free(struct child *t, size_t size) {
        if (t)
                munmap(t, size * sizeof(*t));
}

static int children_resize(struct children *t, size_t size) {
        struct child *old = t->table;
        size_t old_size = old ? t->mask + 1 : 0;

        t->table = table_new(size);
        if (!t->table) {
                t->table = old;
                return -ENOMEM;
        }
        t->mask = size - 1;
        for (size_t i = 0; i < old_size; i++)
                if (old[i].pid != 0) {
                        size_t j = child_home(t, old[i].pid);

                        while (t->table[j].pid != 0)
                                j = (j + 1) & t->mask;
                        t->table[j] = old[i];
                }
        table_free(old, old_size);
        return 0;
}

int children_reserve(struct children *t) {
        if (t->table && 2 * (t->n + 1) <= t->mask + 1)
                return 0;
        return children_resize(t, t->table ? 2 * (t->mask + 1) : CHILDREN_MIN);
}

void children_add(struct children *t, pid_t pid, struct conn_slot *slot) {
        size_t i;

        for (i = child_home(t, pid); t->table[i].pid != 0; i = (i + 1) & t->mask)
                ;
        t->table[i] = (struct child) { pid, slot };
        t->n++;
}

/* Removes pid's entry, shifting back the ones its removal would cut off
 * from their home; returns its slot, NULL when pid is not a child. */
struct conn_slot *children_remove(struct children *t, pid_t pid) {
        struct conn_slot *slot;
        size_t i, j;

        if (!t->table)
                return NULL;
        for (i = child_home(t, pid); t->table[i].pid != pid; i = (i + 1) & t->mask)
                if (t->table[i].pid == 0)
                        return NULL;
        slot = t->table[i].slot;
        for (j = (i + 1) & t->mask; t->table[j].pid != 0; j = (j + 1) & t->mask) {
                size_t home = child_home(t, t->table[j].pid);

                /* j may move to i unless its home lies in (i, j]. */
                if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
                        t->table[i] = t->table[j];
                        i = j;
                }
        }
        t->table[i].pid = 0;
        t->n--;
        return slot;
}

void children_free(struct children *t) {
        table_free(t->table, t->mask + 1);
        *t = (struct children) { 0 };
}
