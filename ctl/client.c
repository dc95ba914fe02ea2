/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "control-proto.h"
#include "fd-wait.h"
#include "reply.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *) 0)->sun_path)

void ctl_socket_path(uid_t euid, const char *runtime_dir, char *buf, size_t len) {
        struct stat st;

        /* The per-user socket only if that daemon is there: otherwise the
         * system one, with its clearer errors. */
        if (control_socket_path(euid, runtime_dir, buf, len) && stat(buf, &st) < 0)
                snprintf(buf, len, "%s", CONTROL_DEFAULT_PATH);
}

/* A non-blocking connect() on an AF_UNIX socket whose listen backlog is
 * full fails with EAGAIN, not EINPROGRESS, and leaves nothing to poll()
 * for.  A blocking connect() waits for room in the backlog, for at most
 * SO_SNDTIMEO, and then fails with EAGAIN. */
static int connect_timeout(int fd, const struct sockaddr_un *sa, int timeout_msec) {
        struct timeval tv = { timeout_msec / 1000, timeout_msec % 1000 * 1000 };
        int r;

        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        do
                r = connect(fd, (const struct sockaddr *) sa, sizeof(*sa));
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        return fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ? -errno : 0;
}

static int send_all(int fd, const char *data, size_t len, int timeout_msec) {
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        return errno == EPIPE ? -ECONNRESET : -errno;
                if (n < 0) {
                        r = fd_wait(fd, POLLOUT, timeout_msec);
                        if (r < 0)
                                return r;
                        continue;
                }
                data += n;
                len -= n;
        }
        return 0;
}

static int recv_reply(int fd, struct textbuf *reply, int timeout_msec) {
        size_t scanned = 0;
        char buf[65536];

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), 0);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno != EAGAIN)
                        return -errno;
                if (n < 0) {
                        r = fd_wait(fd, POLLIN, timeout_msec);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == 0)
                        return -ECONNRESET;
                textbuf_append(reply, buf, n);
                if (reply->overflow)
                        return -EMSGSIZE;
                r = ctl_reply_complete(reply->data, reply->len, &scanned);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
}

static int ctl_exchange(int fd, const struct sockaddr_un *sa, const char *request, int timeout_msec,
                        struct textbuf *reply) {
        char line[CONTROL_LINE_MAX + 2];
        int n, r;

        n = snprintf(line, sizeof(line), "%s\n", request);
        if (n < 0 || (size_t) n >= sizeof(line))
                return -E2BIG;
        r = connect_timeout(fd, sa, timeout_msec);
        if (r < 0)
                return r;
        /* A daemon that refuses the client ("ERROR too many control
         * clients") closes at once: read its reason even if the send failed. */
        r = send_all(fd, line, n, timeout_msec);
        if (r < 0 && r != -ECONNRESET)
                return r;
        return recv_reply(fd, reply, timeout_msec);
}

int ctl_call(const char *path, const char *request, int timeout_msec, struct textbuf *reply) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = ctl_exchange(fd, &sa, request, timeout_msec, reply);
        close(fd);
        return r;
}
