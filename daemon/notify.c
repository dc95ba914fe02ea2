/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "notify.h"

/* Enough for STATUS= and the FDSTORE messages. */
#define NOTIFY_MSG_MAX 512
/* Descriptors per message: more than the daemon ever sends at once. */
#define NOTIFY_FDS_MAX 4

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;

/* A path or "@abstract" from $NOTIFY_SOCKET; false for anything else. */
static bool notify_address(const char *e, struct sockaddr_un *sa, socklen_t *len) {
        size_t n = e ? strlen(e) : 0;

        if (n < 2 || n >= sizeof(sa->sun_path) || (e[0] != '/' && e[0] != '@'))
                return false;
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        memcpy(sa->sun_path, e, n);
        if (sa->sun_path[0] == '@')
                sa->sun_path[0] = '\0';
        *len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
        return true;
}

int notify_open(void) {
        if (notify_fd >= 0 || !notify_address(getenv("NOTIFY_SOCKET"), &notify_addr, &notify_addr_len))
                return 0;
        notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        return notify_fd < 0 ? -errno : 0;
}

void notify_close(void) {
        if (notify_fd >= 0)
                close(notify_fd);
        notify_fd = -1;
}

static int notify_sendmsg(const char *msg, const int *fds, size_t n) {
        union {
                struct cmsghdr cm;
                char buf[CMSG_SPACE(sizeof(int) * NOTIFY_FDS_MAX)];
        } control;
        struct iovec iov = { (void *) msg, strlen(msg) };
        struct msghdr mh = {
                .msg_name = &notify_addr,
                .msg_namelen = notify_addr_len,
                .msg_iov = &iov,
                .msg_iovlen = 1,
        };

        if (n > NOTIFY_FDS_MAX)
                return -E2BIG;
        if (n > 0) {
                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
                control.cm.cmsg_level = SOL_SOCKET;
                control.cm.cmsg_type = SCM_RIGHTS;
                control.cm.cmsg_len = CMSG_LEN(sizeof(int) * n);
                memcpy(CMSG_DATA(&control.cm), fds, sizeof(int) * n);
        }
        /* The manager learns our pid from the credentials the kernel
         * attaches (it has SO_PASSCRED): nothing to add. */
        while (sendmsg(notify_fd, &mh, MSG_NOSIGNAL) < 0)
                if (errno != EINTR)
                        return -errno;
        return 1;
}

int notify_send_fds(const char *msg, const int *fds, size_t n) {
        if (notify_fd >= 0)
                return notify_sendmsg(msg, fds, n);
        return sd_pid_notify_with_fds(0, false, msg, fds, (unsigned) n);
}

int notify_send(const char *msg) {
        return notify_send_fds(msg, NULL, 0);
}

int notify_sendf(const char *fmt, ...) {
        char msg[NOTIFY_MSG_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return notify_send(msg);
}
