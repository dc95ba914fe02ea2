/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "handover.h"
#include "listen.h"

#define UDP_RECEIVE_BUFFER (4 * 1024 * 1024)

void listeners_init(struct listeners *l) {
        memset(l, 0, sizeof(*l));
        l->control = -1;
        l->connected = -1;
        l->state = -1;
}

static int fd_make_nonblocking_cloexec(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

static int listeners_add(int *fds, size_t *n, int fd) {
        if (*n >= CONFIG_MAX_LISTEN)
                return -E2BIG;
        fds[(*n)++] = fd;
        return 0;
}

/* Sorts one passed descriptor into TCP, UDP or control. */
static int listen_take_fd(struct listeners *l, int fd) {
        int r = fd_make_nonblocking_cloexec(fd);

        if (r < 0)
                return r;
        if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) > 0) {
                if (l->control >= 0)
                        return -EBADMSG;
                l->control = fd;
                return 0;
        }
        if (sd_is_socket_inet(fd, 0, SOCK_STREAM, 1, 0) > 0)
                return listeners_add(l->tcp, &l->n_tcp, fd);
        if (sd_is_socket_inet(fd, 0, SOCK_STREAM, 0, 0) > 0 && l->connected < 0) {
                l->connected = fd;
                return 0;
        }
        if (sd_is_socket_inet(fd, 0, SOCK_DGRAM, -1, 0) > 0)
                return listeners_add(l->udp, &l->n_udp, fd);
        return -EBADMSG;
}

/* A socket named "proxy" or "agent": told apart from the plain TCP
 * listeners by its name alone, so it must be a TCP listening socket. */
static int listen_take_named_tcp(int *fds, size_t *n, int fd) {
        int r = fd_make_nonblocking_cloexec(fd);

        if (r < 0)
                return r;
        if (sd_is_socket_inet(fd, 0, SOCK_STREAM, 1, 0) <= 0)
                return -EBADMSG;
        return listeners_add(fds, n, fd);
}

static int listen_take_resumed(struct listeners *l, int fd, uint64_t id) {
        struct passed_conn *n;
        int r = fd_make_nonblocking_cloexec(fd);

        if (r < 0)
                return r;
        if (sd_is_socket_inet(fd, 0, SOCK_STREAM, 0, 0) <= 0)
                return -EBADMSG;
        n = realloc(l->resumed, (l->n_resumed + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        l->resumed = n;
        l->resumed[l->n_resumed++] = (struct passed_conn) { fd, id };
        return 0;
}

/* Sorts one descriptor by its name (what the store holds) or its type. */
static int listen_take_named(struct listeners *l, int fd, const char *name) {
        uint64_t id = handover_conn_name_id(name);
        int r;

        if (id != 0)
                return listen_take_resumed(l, fd, id);
        if (strcmp(name, HANDOVER_STATE_NAME) == 0 && l->state < 0) {
                l->state = fd;
                return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -errno : 0;
        }
        if (strcmp(name, LISTEN_PROXY_NAME) == 0)
                r = listen_take_named_tcp(l->proxy, &l->n_proxy, fd);
        else if (strcmp(name, LISTEN_AGENT_NAME) == 0)
                r = listen_take_named_tcp(l->agent, &l->n_agent, fd);
        else
                r = listen_take_fd(l, fd);
        return r < 0 ? r : 1;
}

int listen_activated(struct listeners *l, char *what, size_t len) {
        char **names = NULL;
        int n, r = 0, sockets = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0)
                return n;

        for (int i = 0; i < n && r >= 0; i++) {
                const char *name = names && names[i] ? names[i] : "unknown";

                r = listen_take_named(l, SD_LISTEN_FDS_START + i, name);
                if (r < 0)
                        snprintf(what, len, "passed descriptor %d (%s)", SD_LISTEN_FDS_START + i, name);
                sockets += r > 0;
        }
        for (int i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
        if (r < 0)
                return r;
        /* Only handed-over connections: the daemon binds its own sockets. */
        l->activated = sockets > 0;
        return sockets;
}

/* Datagrams that arrive while the buffer is full are lost: give UDP room for
 * bursts (the .socket unit says ReceiveBuffer= for the same reason).  Past
 * net.core.rmem_max only root can go (SO_RCVBUFFORCE); otherwise the kernel
 * caps it, which is fine. */
static void socket_grow_receive_buffer(int fd) {
        int size = UDP_RECEIVE_BUFFER;

        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static int socket_bind(const struct addr *a, int type, int backlog) {
        int fd, one = 1, zero = 0;

        fd = socket(a->sa.sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
                goto fail;
        /* [::] serves IPv4 too (dual stack), whatever net.ipv6.bindv6only says. */
        if (a->sa.sa.sa_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
                goto fail;
        if (type == SOCK_DGRAM)
                socket_grow_receive_buffer(fd);
        if (bind(fd, &a->sa.sa, a->len) < 0)
                goto fail;
        if (type == SOCK_STREAM && listen(fd, backlog) < 0)
                goto fail;
        return fd;
fail:;
        int r = -errno;

        close(fd);
        return r;
}

static int bind_list(int *fds, size_t *n, const struct addr *addrs, size_t count,
                     int type, int backlog, const char *kind, char *what, size_t len) {
        for (size_t i = 0; i < count; i++) {
                int fd = socket_bind(&addrs[i], type, backlog);

                if (fd < 0) {
                        char text[ADDR_TEXT_MAX];

                        snprintf(what, len, "%s %s", kind, addr_format(&addrs[i].sa, text));
                        return fd;
                }
                fds[(*n)++] = fd;
        }
        return 0;
}

int listen_bind(struct listeners *l, const struct config *c, char *what, size_t len) {
        int r;

        r = bind_list(l->tcp, &l->n_tcp, c->tcp, c->n_tcp, SOCK_STREAM, c->backlog, "tcp", what, len);
        if (r >= 0)
                r = bind_list(l->proxy, &l->n_proxy, c->proxy_listen, c->n_proxy_listen, SOCK_STREAM,
                              c->backlog, "proxied tcp", what, len);
        if (r >= 0)
                r = bind_list(l->udp, &l->n_udp, c->udp, c->n_udp, SOCK_DGRAM, 0, "udp", what, len);
        if (r >= 0)
                r = bind_list(l->agent, &l->n_agent, c->agent, c->n_agent, SOCK_STREAM, c->backlog,
                              "agent", what, len);
        return r;
}

void listeners_close(struct listeners *l) {
        for (size_t i = 0; i < l->n_tcp; i++)
                close(l->tcp[i]);
        for (size_t i = 0; i < l->n_udp; i++)
                close(l->udp[i]);
        for (size_t i = 0; i < l->n_proxy; i++)
                close(l->proxy[i]);
        for (size_t i = 0; i < l->n_agent; i++)
                close(l->agent[i]);
        if (l->control >= 0)
                close(l->control);
        if (l->connected >= 0)
                close(l->connected);
        for (size_t i = 0; i < l->n_resumed; i++)
                if (l->resumed[i].fd >= 0)
                        close(l->resumed[i].fd);
        free(l->resumed);
        if (l->state >= 0)
                close(l->state);
        listeners_init(l);
}

char *listen_describe(int fd, char *buf, size_t len) {
        union sockaddr_union sa;
        socklen_t salen = sizeof(sa);
        char text[ADDR_TEXT_MAX];
        int type = 0;
        socklen_t tlen = sizeof(type);

        if (getsockname(fd, &sa.sa, &salen) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0) {
                snprintf(buf, len, "fd %d", fd);
                return buf;
        }
        if (sa.sa.sa_family == AF_UNIX)
                snprintf(buf, len, "unix %s", salen > offsetof(struct sockaddr_un, sun_path) ?
                         ((struct sockaddr_un *) &sa)->sun_path : "?");
        else
                snprintf(buf, len, "%s %s", type == SOCK_STREAM ? "tcp" : "udp",
                         addr_format(&sa, text));
        return buf;
}
