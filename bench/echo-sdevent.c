/* SPDX-License-Identifier: MIT */
/*
 * echo-sdevent PORT: the TCP echo of "echo-ref epoll", written on sd-event
 * instead of a plain epoll loop, one I/O source per connection.  Run beside
 * echo-ref epoll by bench/run, it measures what sd-event itself costs per
 * request: the reason uppercased's event-model loops use epoll directly
 * (see daemon/worker-event.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-event.h>

static char buf[16384];

static int on_conn(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0 && errno == EAGAIN)
                return 0;
        /* An echo never has more to send than it just read: a blocking
         * client that reads its replies takes it at once. */
        if (n <= 0 || write(fd, buf, n) != n) {
                sd_event_source_disable_unref(s);
                close(fd);
        }
        return 0;
}

static int on_accept(sd_event_source *s, int lfd, uint32_t revents, void *userdata) {
        int one = 1, fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
                return 0;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (sd_event_add_io(sd_event_source_get_event(s), NULL, fd, EPOLLIN, on_conn, NULL) < 0)
                close(fd);
        return 0;
}

int main(int argc, char **argv) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int one = 1, lfd;
        sd_event *e;

        if (argc != 2) {
                fprintf(stderr, "Usage: echo-sdevent PORT\n");
                return 2;
        }
        sa.sin_port = htons(atoi(argv[1]));
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0) {
                perror("echo-sdevent: listen");
                return 1;
        }
        if (sd_event_default(&e) < 0 || sd_event_add_io(e, NULL, lfd, EPOLLIN, on_accept, NULL) < 0) {
                fprintf(stderr, "echo-sdevent: cannot set up sd-event\n");
                return 1;
        }
        return sd_event_loop(e) < 0;
}
