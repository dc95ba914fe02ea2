/* SPDX-License-Identifier: MIT */
#pragma once

/* Waiting for one descriptor, for the command-line tools (the daemon's
 * workers use worker_wait(), which a signal interrupts). */

/* poll() for events on fd, retried on EINTR, for at most timeout_msec (-1:
 * no limit).  Returns 0 when ready, -ETIMEDOUT, or -errno. */
int fd_wait(int fd, short events, int timeout_msec);
