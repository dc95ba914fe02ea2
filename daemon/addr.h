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

/* An address prefix: "192.0.2.0/24", "2001:db8::/32", or one address
 * ("127.0.0.1", "::1", a /32 or /128).  IPv4 is kept in its IPv4-mapped
 * IPv6 form (::ffff:a.b.c.d, 96 bits more), so that one comparison covers
 * an IPv4 client of an IPv4 socket and of the dual-stack [::] one. */
struct addr_prefix {
        struct in6_addr addr;           /* the bits past len are zero */
        uint8_t len;                    /* 0..128, in the IPv6 form */
        bool ipv4;                      /* written as IPv4 */
};

/* Longest text of addr_prefix_format(): an IPv6 address and "/128". */
#define ADDR_PREFIX_MAX (ADDR_HOST_MAX + 4)

/* Parses "ADDR" or "ADDR/LEN", numeric.  Returns 0, -EINVAL for text that
 * is not a prefix, or -EADDRNOTAVAIL when bits past LEN are set: a typo,
 * "127.0.0.1/8" for "127.0.0.0/8", is said rather than guessed (*ret is
 * then the network, for the message). */
int addr_prefix_parse(const char *s, struct addr_prefix *ret);
char *addr_prefix_format(const struct addr_prefix *p, char buf[static ADDR_PREFIX_MAX]);
bool addr_prefix_equal(const struct addr_prefix *a, const struct addr_prefix *b);
/* Whether sa (IPv4, IPv6 or IPv4-mapped IPv6) lies in p. */
bool addr_prefix_contains(const struct addr_prefix *p, const union sockaddr_union *sa);
/* Whether sa lies in any of list[0..n). */
bool addr_prefix_list_contains(const struct addr_prefix *list, size_t n, const union sockaddr_union *sa);
