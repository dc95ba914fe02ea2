/* SPDX-License-Identifier: MIT */
/* uppercased-forker: the process model's fork helper (daemon/fork-helper.h).
 * Started by uppercased only, with its socket on descriptor 3 and the
 * shared area on 4; links libc and the few daemon files a worker runs, so
 * that a fork from here copies little. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fork-helper.h"
#include "tcp-blocking.h"

/* The daemon's signal set-up, which exec() reset: the kick, and a stop
 * that is the daemon's to coordinate. */
static int signals_set_up(void) {
        struct sigaction kick = { .sa_handler = worker_on_kick, .sa_flags = SA_RESTART };
        sigset_t mask;

        if (sigaction(SIGUSR1, &kick, NULL) < 0)
                return -1;
        signal(SIGPIPE, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        return sigprocmask(SIG_BLOCK, &mask, NULL);
}

int main(int argc, char **argv) {
        struct stat st;
        struct shared *sh;
        int r;

        if (argc != 1 || fstat(FORK_HELPER_SOCKET_FD, &st) < 0 || !S_ISSOCK(st.st_mode)) {
                fprintf(stderr, "%s: started by uppercased only (process model)\n", FORK_HELPER_NAME);
                return 2;
        }
        r = shared_map(FORK_HELPER_SHARED_FD, &sh);
        if (r < 0) {
                fprintf(stderr, "%s: failed to map the shared area: %s\n", FORK_HELPER_NAME, strerror(-r));
                return 1;
        }
        close(FORK_HELPER_SHARED_FD);
        if (signals_set_up() < 0) {
                perror(FORK_HELPER_NAME ": failed to set up signals");
                return 1;
        }
        r = fork_helper_run(FORK_HELPER_SOCKET_FD, sh);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", FORK_HELPER_NAME, strerror(-r));
                return 1;
        }
        return 0;
}
