/* SPDX-License-Identifier: MIT */
/* Numeric socket addresses: parsing listen addresses, formatting peers. */

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"

/* "1".."65535", decimal digits only: no sign, no blanks, no "0x". */
static int parse_port(const char *s, uint16_t *ret) {
        unsigned long v = 0;

        if (*s == '\0')
                return -EINVAL;
        for (; *s != '\0'; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*s - '0');
                if (v > 65535)
                        return -EINVAL;
        }
        if (v == 0)
                return -EINVAL;

        *ret = (uint16_t) v;
        return 0;
}

static void addr_set_ipv4(struct addr *a, const struct in_addr *ip, uint16_t port) {
        memset(a, 0, sizeof(*a));
        a->sa.in.sin_family = AF_INET;
        a->sa.in.sin_addr = *ip;
        a->sa.in.sin_port = htons(port);
        a->len = sizeof(struct sockaddr_in);
}

static void addr_set_ipv6(struct addr *a, const struct in6_addr *ip, uint16_t port) {
        memset(a, 0, sizeof(*a));
        a->sa.in6.sin6_family = AF_INET6;
        a->sa.in6.sin6_addr = *ip;
        a->sa.in6.sin6_port = htons(port);
        a->len = sizeof(struct sockaddr_in6);
}

/* Copies the host part [s, end) to a NUL-terminated buffer for inet_pton(). */
static int copy_host(const char *s, const char *end, char buf[static ADDR_HOST_MAX]) {
        size_t n = (size_t) (end - s);

        if (n == 0 || n >= ADDR_HOST_MAX)
                return -EINVAL;
        memcpy(buf, s, n);
        buf[n] = '\0';
        return 0;
}

/* "[V6ADDR]:PORT" */
static int parse_bracketed(const char *s, struct addr *ret) {
        char host[ADDR_HOST_MAX];
        struct in6_addr ip;
        const char *close;
        uint16_t port;

        close = strchr(s, ']');
        if (!close || close[1] != ':')
                return -EINVAL;
        if (copy_host(s + 1, close, host) < 0)
                return -EINVAL;
        if (inet_pton(AF_INET6, host, &ip) != 1)
                return -EINVAL;
        if (parse_port(close + 2, &port) < 0)
                return -EINVAL;

        addr_set_ipv6(ret, &ip, port);
        return 0;
}

/* "V4ADDR:PORT" or "*:PORT".  An unbracketed IPv6 address has more than one
 * colon and is rejected: "::1:80" would be ambiguous. */
static int parse_unbracketed(const char *s, struct addr *ret) {
        char host[ADDR_HOST_MAX];
        struct in_addr ip;
        const char *colon;
        uint16_t port;

        colon = strchr(s, ':');
        if (!colon || strchr(colon + 1, ':'))
                return -EINVAL;
        if (parse_port(colon + 1, &port) < 0)
                return -EINVAL;
        if (copy_host(s, colon, host) < 0)
                return -EINVAL;

        if (strcmp(host, "*") == 0) {
                addr_set_ipv6(ret, &in6addr_any, port);
                return 0;
        }
        if (inet_pton(AF_INET, host, &ip) != 1)
                return -EINVAL;

        addr_set_ipv4(ret, &ip, port);
        return 0;
}

int addr_parse(const char *s, struct addr *ret) {
        struct addr a;
        uint16_t port;
        int r;

        if (!s || *s == '\0')
                return -EINVAL;

        if (parse_port(s, &port) == 0) {
                addr_set_ipv6(&a, &in6addr_any, port);
                r = 0;
        } else if (s[0] == '[')
                r = parse_bracketed(s, &a);
        else
                r = parse_unbracketed(s, &a);
        if (r < 0)
                return r;

        *ret = a;
        return 0;
}

/* The IPv4 address inside an IPv4-mapped IPv6 address, or NULL. */
static const void *mapped_ipv4(const union sockaddr_union *sa) {
        if (sa->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&sa->in6.sin6_addr))
                return NULL;
        return &sa->in6.sin6_addr.s6_addr[12];
}

char *addr_format_host(const union sockaddr_union *sa, char buf[static ADDR_HOST_MAX]) {
        const void *v4 = mapped_ipv4(sa);
        const char *p = NULL;

        if (v4)
                p = inet_ntop(AF_INET, v4, buf, ADDR_HOST_MAX);
        else if (sa->sa.sa_family == AF_INET)
                p = inet_ntop(AF_INET, &sa->in.sin_addr, buf, ADDR_HOST_MAX);
        else if (sa->sa.sa_family == AF_INET6)
                p = inet_ntop(AF_INET6, &sa->in6.sin6_addr, buf, ADDR_HOST_MAX);

        /* Only reachable for a family that is neither IPv4 nor IPv6: callers
         * print the result unconditionally, so never hand back garbage. */
        if (!p)
                snprintf(buf, ADDR_HOST_MAX, "unknown");
        return buf;
}

uint16_t addr_port(const union sockaddr_union *sa) {
        switch (sa->sa.sa_family) {
        case AF_INET:
                return ntohs(sa->in.sin_port);
        case AF_INET6:
                return ntohs(sa->in6.sin6_port);
        default:
                return 0;
        }
}

char *addr_format(const union sockaddr_union *sa, char buf[static ADDR_TEXT_MAX]) {
        char host[ADDR_HOST_MAX];
        bool bracket = sa->sa.sa_family == AF_INET6 && !mapped_ipv4(sa);

        addr_format_host(sa, host);
        snprintf(buf, ADDR_TEXT_MAX, bracket ? "[%s]:%u" : "%s:%u", host, (unsigned) addr_port(sa));
        return buf;
}

bool addr_equal(const struct addr *a, const struct addr *b) {
        if (a->len != b->len || a->sa.sa.sa_family != b->sa.sa.sa_family)
                return false;

        switch (a->sa.sa.sa_family) {
        case AF_INET:
                return a->sa.in.sin_port == b->sa.in.sin_port &&
                       a->sa.in.sin_addr.s_addr == b->sa.in.sin_addr.s_addr;
        case AF_INET6:
                return a->sa.in6.sin6_port == b->sa.in6.sin6_port &&
                       a->sa.in6.sin6_scope_id == b->sa.in6.sin6_scope_id &&
                       IN6_ARE_ADDR_EQUAL(&a->sa.in6.sin6_addr, &b->sa.in6.sin6_addr);
        default:
                return memcmp(&a->sa, &b->sa, a->len) == 0;
        }
}

/* ---- prefixes ---- */

static void ipv4_mapped(const struct in_addr *ip, struct in6_addr *ret) {
        memset(ret, 0, sizeof(*ret));
        ret->s6_addr[10] = 0xff;
        ret->s6_addr[11] = 0xff;
        memcpy(&ret->s6_addr[12], ip, 4);
}

/* The address of sa in the IPv6 form prefixes are kept in; false for
 * another family. */
static bool addr_as_ipv6(const union sockaddr_union *sa, struct in6_addr *ret) {
        if (sa->sa.sa_family == AF_INET)
                ipv4_mapped(&sa->in.sin_addr, ret);
        else if (sa->sa.sa_family == AF_INET6)
                *ret = sa->in6.sin6_addr;
        else
                return false;
        return true;
}

/* Whether the first len bits of a and b are the same. */
static bool bits_equal(const struct in6_addr *a, const struct in6_addr *b, unsigned len) {
        unsigned whole = len / 8, rest = len % 8;
        uint8_t mask = (uint8_t) (0xff << (8 - rest));

        if (memcmp(a->s6_addr, b->s6_addr, whole) != 0)
                return false;
        return rest == 0 || ((a->s6_addr[whole] ^ b->s6_addr[whole]) & mask) == 0;
}

/* "0".."max", decimal digits only. */
static int parse_prefix_len(const char *s, unsigned max, unsigned *ret) {
        unsigned v = 0;

        if (*s == '\0' || strlen(s) > 3)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (*s - '0');
        }
        if (v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

int addr_prefix_parse(const char *s, struct addr_prefix *ret) {
        const char *slash = s ? strchr(s, '/') : NULL;
        char host[ADDR_HOST_MAX];
        struct addr_prefix p = {};
        struct in6_addr cut;
        struct in_addr ip4;
        unsigned len, max;
        int r;

        if (!s || copy_host(s, slash ? slash : s + strlen(s), host) < 0)
                return -EINVAL;
        if (inet_pton(AF_INET, host, &ip4) == 1) {
                ipv4_mapped(&ip4, &p.addr);
                p.ipv4 = true;
                max = 32;
        } else if (inet_pton(AF_INET6, host, &p.addr) == 1)
                max = 128;
        else
                return -EINVAL;
        len = max;
        if (slash && parse_prefix_len(slash + 1, max, &len) < 0)
                return -EINVAL;
        p.len = (uint8_t) (len + 128 - max);

        /* Bits past the length must be zero.  When they are not, *ret is
         * the network they were cut from, for the error message. */
        cut = p.addr;
        for (unsigned bit = p.len; bit < 128; bit++)
                cut.s6_addr[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
        r = memcmp(&cut, &p.addr, sizeof(cut)) == 0 ? 0 : -EADDRNOTAVAIL;
        p.addr = cut;
        *ret = p;
        return r;
}

char *addr_prefix_format(const struct addr_prefix *p, char buf[static ADDR_PREFIX_MAX]) {
        char host[ADDR_HOST_MAX];
        unsigned len = p->ipv4 ? p->len - 96u : p->len;

        if (p->ipv4)
                inet_ntop(AF_INET, &p->addr.s6_addr[12], host, sizeof(host));
        else
                inet_ntop(AF_INET6, &p->addr, host, sizeof(host));
        if (p->len == 128)
                snprintf(buf, ADDR_PREFIX_MAX, "%s", host);
        else
                snprintf(buf, ADDR_PREFIX_MAX, "%s/%u", host, len);
        return buf;
}

bool addr_prefix_equal(const struct addr_prefix *a, const struct addr_prefix *b) {
        return a->len == b->len && memcmp(&a->addr, &b->addr, sizeof(a->addr)) == 0;
}

bool addr_prefix_contains(const struct addr_prefix *p, const union sockaddr_union *sa) {
        struct in6_addr ip;

        return addr_as_ipv6(sa, &ip) && bits_equal(&ip, &p->addr, p->len);
}

bool addr_prefix_list_contains(const struct addr_prefix *list, size_t n, const union sockaddr_union *sa) {
        for (size_t i = 0; i < n; i++)
                if (addr_prefix_contains(&list[i], sa))
                        return true;
        return false;
}
