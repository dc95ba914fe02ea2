/* SPDX-License-Identifier: MIT */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

union sockaddr_union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_storage storage;
};

struct addr {
        union sockaddr_union sa;
        socklen_t len;
};

/* Longest text of addr_format_host(): an IPv6 address. */
#define ADDR_HOST_MAX 46
/* Longest text of addr_format(): "[" host "]:" port. */
#define ADDR_TEXT_MAX (ADDR_HOST_MAX + 8)

/* Parses a listen address: "ADDR:PORT", "[V6ADDR]:PORT", "*:PORT" or "PORT"
 * ("*" and a bare port mean the dual-stack wildcard [::]).  Numeric only, no
 * name resolution.  Port 1..65535.  Returns 0 or -EINVAL. */
int addr_parse(const char *s, struct addr *ret);

/* The host part for humans and the journal: an IPv4-mapped IPv6 address is
 * written as plain IPv4 ("::ffff:192.0.2.7" -> "192.0.2.7"). */
char *addr_format_host(const union sockaddr_union *sa, char buf[static ADDR_HOST_MAX]);
uint16_t addr_port(const union sockaddr_union *sa);

/* "192.0.2.7:40512" or "[2001:db8::1]:40512" (mapped addresses as IPv4). */
char *addr_format(const union sockaddr_union *sa, char buf[static ADDR_TEXT_MAX]);

bool addr_equal(const struct addr *a, const struct addr *b);
