/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for the tests: a stop in which worker threads are slow
 * to end.
 *
 * In any thread but the main one, closing a TCP socket first waits
 * SLOW_CLOSE_MSEC (default 2000): a connection's worker takes that long to
 * finish with it, as when its last log entry waits on a slow journal or
 * terminal.  And exit() takes SLOW_EXIT_MSEC (default 0) longer: the time
 * a slow exit handler would take, during which threads still running see
 * whatever the process freed before it called exit(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long env_msec(const char *name, long fallback) {
        const char *v = getenv(name);

        return v ? atol(v) : fallback;
}

static void pause_msec(long msec) {
        struct timespec ts = { msec / 1000, (msec % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0)
                ;
}

static bool is_tcp_socket(int fd) {
        int type = 0, domain = 0;
        socklen_t len = sizeof(int);

        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
                return false;
        len = sizeof(int);
        return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
               (domain == AF_INET || domain == AF_INET6);
}

int close(int fd) {
        int (*real)(int) = (int (*)(int)) dlsym(RTLD_NEXT, "close");

        if (gettid() != getpid() && is_tcp_socket(fd))
                pause_msec(env_msec("SLOW_CLOSE_MSEC", 2000));
        return real(fd);
}

/* Run by exit(), also when main() returns. */
__attribute__((destructor)) static void slow_exit(void) {
        pause_msec(env_msec("SLOW_EXIT_MSEC", 0));
}
