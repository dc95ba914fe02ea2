/* SPDX-License-Identifier: MIT */
/* uppercased: the uppercase TCP/UDP service.  Parses the command line and
 * hands over to the server; everything else lives in libuppercased. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

#define EXIT_USAGE 2

#define SYNOPSIS \
        "Usage: uppercased [-c FILE] [-m event|thread|process] [-t THREADS]\n" \
        "                  [--tcp ADDR:PORT]... [--udp ADDR:PORT]... [--proxy-tcp ADDR:PORT]...\n" \
        "                  [--agent ADDR:PORT]... [--control PATH]\n" \
        "                  [-n|--check-config] [-d|--debug] [-V|--version] [-h|--help]\n"

static void usage(FILE *f) {
        fputs(SYNOPSIS
              "\n"
              "Serves the uppercase protocol on TCP and UDP (default port 12000).\n"
              "\n"
              "  -c, --config FILE     configuration file (default " CONFIG_DEFAULT_PATH ")\n"
              "  -m, --model MODEL     worker model: event, thread or process\n"
              "  -t, --threads N       event loops (event model) or UDP threads (thread model)\n"
              "      --tcp ADDR:PORT   serve TCP here instead of the configured addresses\n"
              "      --udp ADDR:PORT   serve UDP here instead of the configured addresses\n"
              "      --proxy-tcp ADDR:PORT\n"
              "                        serve TCP behind a load balancer here, every connection\n"
              "                        starting with a PROXY header (instead of proxy.listen)\n"
              "      --agent ADDR:PORT answer HAProxy's agent-check here (ready or drain)\n"
              "      --control PATH    control socket path\n"
              "  -n, --check-config    check the configuration and exit\n"
              "  -d, --debug           log debug messages\n"
              "  -V, --version         print the version and exit\n"
              "  -h, --help            print this help and exit\n"
              "\n"
              "See uppercased(8) and uppercased.conf(5).\n", f);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("uppercased: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n" SYNOPSIS "Try 'uppercased --help'.\n", stderr);
        return -EINVAL;
}

static int parse_addr_option(const char *arg, struct addr *list, size_t *n, bool *given) {
        if (!*given) {
                *n = 0;
                *given = true;
        }
        if (*n >= CONFIG_MAX_LISTEN)
                return usage_error("too many addresses, at most 16: %s", arg);
        if (addr_parse(arg, &list[*n]) < 0)
                return usage_error("invalid address '%s', expected ADDR:PORT, [ADDR6]:PORT or PORT", arg);
        (*n)++;
        return 0;
}

static int parse_threads(const char *arg, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < 1 || v > 64 || arg[0] == '-')
                return usage_error("invalid thread count '%s', expected 1..64", arg);
        *ret = v;
        return 0;
}

static int parse_control_path(const char *arg, const char **ret) {
        if (arg[0] != '/')
                return usage_error("control socket path '%s' is not absolute", arg);
        if (strlen(arg) >= sizeof(((struct config *) NULL)->control_path))
                return usage_error("control socket path '%s' is too long (at most %zu bytes)", arg,
                                   sizeof(((struct config *) NULL)->control_path) - 1);
        *ret = arg;
        return 0;
}

/* Returns 1 to run, 0 to exit successfully, -EINVAL on a usage error. */
static int parse_argv(int argc, char *argv[], struct overrides *o, bool *check, bool *debug) {
        enum { OPT_TCP = 0x100, OPT_UDP, OPT_PROXY_TCP, OPT_AGENT, OPT_CONTROL };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "model", required_argument, NULL, 'm' },
                { "threads", required_argument, NULL, 't' },
                { "tcp", required_argument, NULL, OPT_TCP },
                { "udp", required_argument, NULL, OPT_UDP },
                { "proxy-tcp", required_argument, NULL, OPT_PROXY_TCP },
                { "agent", required_argument, NULL, OPT_AGENT },
                { "control", required_argument, NULL, OPT_CONTROL },
                { "check-config", no_argument, NULL, 'n' },
                { "debug", no_argument, NULL, 'd' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c, r = 0;

        while (r >= 0 && (c = getopt_long(argc, argv, "c:m:t:ndVh", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        o->config_path = optarg;
                        break;
                case 'm':
                        o->model = model_from_string(optarg);
                        if (o->model < 0)
                                r = usage_error("invalid model '%s', expected event, thread or process", optarg);
                        break;
                case 't':
                        r = parse_threads(optarg, &o->threads);
                        break;
                case OPT_TCP:
                        r = parse_addr_option(optarg, o->tcp, &o->n_tcp, &o->tcp_given);
                        break;
                case OPT_UDP:
                        r = parse_addr_option(optarg, o->udp, &o->n_udp, &o->udp_given);
                        break;
                case OPT_PROXY_TCP:
                        r = parse_addr_option(optarg, o->proxy, &o->n_proxy, &o->proxy_given);
                        break;
                case OPT_AGENT:
                        r = parse_addr_option(optarg, o->agent, &o->n_agent, &o->agent_given);
                        break;
                case OPT_CONTROL:
                        r = parse_control_path(optarg, &o->control_path);
                        break;
                case 'n':
                        *check = true;
                        break;
                case 'd':
                        *debug = true;
                        break;
                case 'V':
                        printf("uppercased %s\n", VERSION);
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        fputs(SYNOPSIS "Try 'uppercased --help'.\n", stderr);
                        return -EINVAL;
                }
        }
        if (r >= 0 && optind < argc)
                r = usage_error("unexpected argument '%s'", argv[optind]);
        return r < 0 ? r : 1;
}

int main(int argc, char *argv[]) {
        struct overrides o;
        struct config c;
        char path[4096], err[CONFIG_ERR_MAX];
        bool check = false, debug = false;
        int r;

        overrides_init(&o);
        r = parse_argv(argc, argv, &o, &check, &debug);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        log_setup(log_detect_target(), debug ? LOG_DEBUG : LOG_INFO);
        r = server_load_config(&o, &c, path, sizeof(path), err, sizeof(err));
        if (check) {
                if (r < 0)
                        fprintf(stderr, "%s\n", err);
                else if (path[0])
                        printf("configuration OK: %s\n", path);
                else
                        printf("configuration OK: built-in defaults (no %s)\n", CONFIG_DEFAULT_PATH);
                /* Not an error: the daemon runs, with fewer connections. */
                fflush(stdout);
                if (r >= 0 && !server_fds_fit(&c, err, sizeof(err)))
                        fprintf(stderr, "warning: %s\n", err);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        if (r < 0) {
                log_error("%s", err);
                return EXIT_FAILURE;
        }
        r = server_block_signals();
        if (r < 0) {
                log_error_errno(r, "Failed to set up signals: %m");
                return EXIT_FAILURE;
        }
        return server_run(&o, &c, path);
}
