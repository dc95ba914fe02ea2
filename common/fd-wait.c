/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>

#include "fd-wait.h"

int fd_wait(int fd, short events, int timeout_msec) {
        struct pollfd p = { .fd = fd, .events = events };
        int n;

        do
                n = poll(&p, 1, timeout_msec);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        return n == 0 ? -ETIMEDOUT : 0;
}
