/* SPDX-License-Identifier: MIT */
/* The command line of uppercase(1).
 *
 *      uppercase [OPTION]... [HOST [PORT]] [TEXT...]
 *
 * Options come first: getopt stops at the first argument that is not an
 * option ("+" in the option string), so TEXT may hold words such as "-5"
 * without a "--".  Then, by position:
 *
 *      1st argument            HOST (never all digits: "12000" alone is
 *                              refused rather than read as the IPv4
 *                              address 0.0.46.224), or HOST:PORT (one
 *                              colon) or [IPV6]:PORT
 *      2nd, if all digits      PORT (1..65535), unless the 1st gave one
 *      the rest                TEXT, joined by single spaces
 *
 * So "uppercase localhost ciao" sends "ciao" to localhost:12000, and
 * "uppercase localhost 12001 ciao" and "uppercase localhost:12001 ciao"
 * to port 12001. */

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/socket.h>

#include "duration.h"
#include "uppercase.h"
#include "errbuf.h"

static const struct option long_options[] = {
        { "udp",     no_argument,       NULL, 'u' },
        { "timeout", required_argument, NULL, 'w' },
        { "help",    no_argument,       NULL, 'h' },
        { "version", no_argument,       NULL, 'V' },
        {}
};

void client_usage(FILE *f) {
        fputs(CLIENT_SYNOPSIS
              "\n"
              "Sends text to an uppercased server over TCP or UDP and prints the reply.\n"
              "\n"
              "  -u, --udp              use UDP (default: TCP)\n"
              "  -w, --timeout SECONDS  how long to wait for the server: 2, 0.5, 250ms, 5s\n"
              "                         (default: 2 s for UDP, 10 s for TCP)\n"
              "  -4, -6                 use IPv4 only / IPv6 only\n"
              "  -n                     send a newline after TEXT\n"
              "  -h, --help             show this help\n"
              "  -V, --version          show the version\n"
              "\n"
              "Options come before HOST.  The first argument is HOST (default localhost),\n"
              "the second is PORT when it is all digits (default 12000), the rest is TEXT.\n"
              "HOST:PORT and [IPV6]:PORT give both in the first argument.\n"
              "\n"
              "With TEXT: send it (the words joined by spaces), print the reply, exit.\n"
              "Without TEXT, on a terminal: a session, one line at a time; \".\" or\n"
              "Ctrl-D ends it.  Without TEXT, from a pipe or file: standard input goes\n"
              "through the server to standard output (UDP: one datagram per line).\n"
              "\n"
              "Exit status: 0 done, 1 network error or timeout, 2 usage error.\n"
              "See uppercase(1).\n", f);
}

static int set_family(struct client_options *o, int family, char *err, size_t errlen) {
        if (o->family != AF_UNSPEC && o->family != family)
                return errbuf_set(err, errlen, -EINVAL, "%s", "-4 and -6 cannot be combined");
        o->family = family;
        return 0;
}

static int set_timeout(struct client_options *o, const char *arg, char *err, size_t errlen) {
        int r = client_parse_timeout(arg, &o->timeout_usec);

        if (r == -ERANGE)
                return errbuf_set(err, errlen, -EINVAL, "timeout '%s' is too long (at most 1 week)", arg);
        if (r < 0)
                return errbuf_set(err, errlen, -EINVAL,
                                   "invalid timeout '%s' (seconds above 0: 2, 0.5, 250ms, 5s)", arg);
        return 0;
}

static int unknown_option(char *argv[], char *err, size_t errlen) {
        const char *arg = argv[optind - 1];
        bool is_long = strncmp(arg, "--", 2) == 0;

        /* For "--udp=1" getopt sets optopt to 'u': it is no short option. */
        if (is_long && optopt)
                return errbuf_set(err, errlen, -EINVAL, "option '%s' takes no argument", arg);
        if (is_long)
                return errbuf_set(err, errlen, -EINVAL, "unrecognized option '%s'", arg);
        return errbuf_set(err, errlen, -EINVAL, "invalid option -- '%c'", optopt);
}

static int parse_option(int c, char *argv[], struct client_options *o, char *err, size_t errlen) {
        switch (c) {
        case 'u':
                o->udp = true;
                return 0;
        case 'w':
                return set_timeout(o, optarg, err, errlen);
        case '4':
                return set_family(o, AF_INET, err, errlen);
        case '6':
                return set_family(o, AF_INET6, err, errlen);
        case 'n':
                o->newline = true;
                return 0;
        case 'h':
                o->action = CLIENT_ACTION_HELP;
                return 0;
        case 'V':
                o->action = CLIENT_ACTION_VERSION;
                return 0;
        case ':':
                return errbuf_set(err, errlen, -EINVAL, "option '%s' requires an argument", argv[optind - 1]);
        default:
                return unknown_option(argv, err, errlen);
        }
}

static int parse_options(int argc, char *argv[], struct client_options *o, char *err, size_t errlen) {
        int c, r;

        /* optind = 0 re-initialises getopt, for callers that parse twice
         * (the unit tests). */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+:uw:46nhV", long_options, NULL)) >= 0) {
                r = parse_option(c, argv, o, err, errlen);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int set_port(struct client_options *o, const char *arg, char *err, size_t errlen) {
        uint16_t port;

        if (client_parse_port(arg, &port) < 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid PORT '%s' (1..65535)", arg);
        snprintf(o->port, sizeof(o->port), "%u", (unsigned) port);
        return 0;
}

/* Where the PORT of "HOST:PORT" (exactly one colon) or "[V6]:PORT" starts
 * in arg, and the length of its HOST part, brackets kept; NULL when arg is
 * a host alone ("localhost", "::1", "[::1]"); -EINVAL in *r for text after
 * "[V6]" that is not ":PORT". */
static const char *host_port_split(const char *arg, size_t *ret_host_len, int *r) {
        const char *colon, *close;

        *r = 0;
        if (arg[0] == '[') {
                close = strchr(arg, ']');
                if (!close || close[1] == '\0')
                        return NULL;
                if (close[1] != ':') {
                        *r = -EINVAL;
                        return NULL;
                }
                *ret_host_len = (size_t) (close + 1 - arg);
                return close + 2;
        }
        colon = strchr(arg, ':');
        if (!colon || strchr(colon + 1, ':'))
                return NULL;
        *ret_host_len = (size_t) (colon - arg);
        return colon + 1;
}

static int set_one_host(struct client_options *o, const char *host, const char *arg, char *err, size_t errlen) {
        int r;

        if (client_all_digits(host))
                return errbuf_set(err, errlen, -EINVAL,
                                   "HOST '%s' looks like a port; give the host first: localhost %s",
                                   arg, arg);
        r = client_copy_host(host, o->host, sizeof(o->host));
        if (r == -ENAMETOOLONG)
                return errbuf_set(err, errlen, -EINVAL, "%s", "HOST is too long");
        if (r < 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid HOST '%s'", arg);
        return 0;
}

/* HOST, HOST:PORT or [V6]:PORT.  Sets *ret_port_given for the last two. */
static int set_host(struct client_options *o, const char *arg, bool *ret_port_given,
                    char *err, size_t errlen) {
        char host[NI_MAXHOST + 2];
        const char *port;
        size_t n = 0;
        int r;

        *ret_port_given = false;
        port = host_port_split(arg, &n, &r);
        if (r < 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid HOST '%s'", arg);
        if (!port)
                return set_one_host(o, arg, arg, err, errlen);
        if (n == 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid HOST '%s'", arg);
        if (n >= sizeof(host))
                return errbuf_set(err, errlen, -EINVAL, "%s", "HOST is too long");
        memcpy(host, arg, n);
        host[n] = '\0';
        if (client_parse_port(port, &(uint16_t) { 0 }) < 0)
                return errbuf_set(err, errlen, -EINVAL, "invalid PORT '%s' in '%s' (1..65535)", port, arg);
        r = set_one_host(o, host, arg, err, errlen);
        if (r < 0)
                return r;
        *ret_port_given = true;
        return set_port(o, port, err, errlen);
}

/* HOST, then PORT if all digits, then TEXT: see the top of this file. */
static int parse_positional(int n, char *args[], struct client_options *o, char *err, size_t errlen) {
        bool port_given = false;
        int i = 0, r;

        if (i < n) {
                r = set_host(o, args[i++], &port_given, err, errlen);
                if (r < 0)
                        return r;
        }
        if (i < n && !port_given && client_all_digits(args[i])) {
                r = set_port(o, args[i++], err, errlen);
                if (r < 0)
                        return r;
        }
        if (i < n) {
                o->text = args + i;
                o->n_text = n - i;
        }
        return 0;
}

int client_parse_argv(int argc, char *argv[], struct client_options *o, char *err, size_t errlen) {
        int r;

        *o = (struct client_options) {
                .action = CLIENT_ACTION_RUN,
                .family = AF_UNSPEC,
                .host = CLIENT_DEFAULT_HOST,
                .port = CLIENT_DEFAULT_PORT,
        };
        r = parse_options(argc, argv, o, err, errlen);
        if (r < 0 || o->action != CLIENT_ACTION_RUN)
                return r;
        r = parse_positional(argc - optind, argv + optind, o, err, errlen);
        if (r < 0)
                return r;
        if (o->timeout_usec == 0)
                o->timeout_usec = o->udp ? CLIENT_UDP_TIMEOUT_USEC : CLIENT_TCP_TIMEOUT_USEC;
        return 0;
}
