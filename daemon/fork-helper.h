/* SPDX-License-Identifier: MIT */
#pragma once

/* The process model's fork helper: uppercased-forker, a small program
 * without libsystemd that the daemon starts with the shared area and that
 * forks the connections' workers.  A fork copies the forking process's
 * mappings and the exit tears them down again: from the daemon, with
 * libsystemd and the compression and crypto libraries it pulls in, that
 * cost a connection twice what a fork echo server pays; from the helper it
 * costs what the echo's does.
 *
 * The daemon accepts and admits a connection (logged, counted, limited, a
 * slot taken) and sends it, with its slot's index, over a SOCK_SEQPACKET
 * socket; the helper forks a child that serves it (tcp_serve_blocking()),
 * reaps the child and reports its end; on the report the daemon ends the
 * connection (conn_end()).  Kicks and the stop reach the children as
 * before: through the shared area and SIGUSR1 to the pid in the slot.
 *
 * Everything here is libc only: the helper links it. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared.h"

#define FORK_HELPER_NAME "uppercased-forker"
/* The descriptors the helper starts with. */
#define FORK_HELPER_SOCKET_FD 3
#define FORK_HELPER_SHARED_FD 4

/* Connections go in batches (the daemon's accept batch), reports too (the
 * children reaped at once): on one CPU every message is a switch between
 * the two processes, which costs more than the message.
 *
 * Daemon to helper: n slot indexes (uint32_t) with the n connections'
 * descriptors (SCM_RIGHTS), in the same order. */
#define FORK_BATCH_MAX 16
/* Helper to daemon: up to FORK_REPORTS_MAX struct fork_report. */
#define FORK_REPORTS_MAX 64

/* Helper to daemon: the worker of slot ended (code and status as from
 * waitid(): CLD_EXITED, CLD_KILLED...), or, with pid 0, could not be
 * forked (status: the errno). */
struct fork_report {
        uint32_t slot;
        int32_t pid;
        int32_t code;
        int32_t status;
};

/* The daemon's side. */
struct fork_helper {
        pid_t pid;
        int sock;                       /* non-blocking */
};

/* Where the helper is: next to the running program (a build tree), else
 * in LIBEXECDIR/uppercased/.  path has PATH_MAX bytes. */
void fork_helper_path(char *path);

/* Starts the helper at path on the shared area sh.  -errno. */
int fork_helper_spawn(const char *path, struct shared *sh, struct fork_helper *ret);

/* Hands the connections fds[0..n) of slots[0..n) (n <= FORK_BATCH_MAX) to
 * the helper; the fds stay the caller's to close.  -EAGAIN when its
 * socket is full (a helper that does not keep up, or is stopped), -EPIPE
 * when it is gone, another -errno when the batch cannot go now
 * (ETOOMANYREFS: too many descriptors in flight, ENOBUFS...). */
int fork_helper_send(const struct fork_helper *h, const int *fds, const uint32_t *slots, size_t n);

/* The next reports, FORK_REPORTS_MAX at most: how many, 0 when there are
 * none now, -EPIPE once the helper is gone (its socket closed). */
int fork_helper_read(const struct fork_helper *h, struct fork_report *ret);

/* Closes the helper's socket (it reaps its children and exits) and waits
 * until deadline (CLOCK_MONOTONIC, µs) at most for it to exit, then kills
 * it. */
void fork_helper_close(struct fork_helper *h, uint64_t deadline);

/* Forks the worker of the connection fd of slot (resume: the state of a
 * connection handed over, or NULL), recorded in t; the daemon's own
 * children and the helper's alike.  Returns its pid, or -errno. */
struct children;
struct resumed_conn;
int fork_worker(struct children *t, struct shared *sh, struct conn_slot *slot, int fd,
                const struct resumed_conn *resume);

/* The helper's side: serves the requests of sock on the area sh until the
 * daemon closes the socket and every child is reaped.  Returns 0, or
 * -errno on a failure to go on. */
int fork_helper_run(int sock, struct shared *sh);
