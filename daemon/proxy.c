/* SPDX-License-Identifier: MIT */
/* The PROXY protocol header parser (proxy.h), after HAProxy's
 * doc/proxy-protocol.txt.  Every step answers on the bytes seen so far:
 * 1 (done, the cursor past it), 0 (a valid start, more is needed) or
 * -EBADMSG, so that a plain client is refused at the first byte no header
 * could have. */

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "proxy.h"

static const uint8_t v2_signature[12] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* Compares buf[0..len) with want[0..n): 1 when all of want is there, 0 when
 * the bytes there begin it, -EBADMSG when one differs. */
static int match(const uint8_t *buf, size_t len, const void *want, size_t n) {
        size_t m = len < n ? len : n;

        if (memcmp(buf, want, m) != 0)
                return -EBADMSG;
        return m == n;
}

static void sockaddr_set(union sockaddr_union *u, int family, const void *addr, uint16_t port_be) {
        memset(u, 0, sizeof(*u));
        if (family == AF_INET) {
                u->in.sin_family = AF_INET;
                u->in.sin_port = port_be;
                memcpy(&u->in.sin_addr, addr, 4);
        } else {
                u->in6.sin6_family = AF_INET6;
                u->in6.sin6_port = port_be;
                memcpy(&u->in6.sin6_addr, addr, 16);
        }
}

/* v1: one line of text, read through a cursor. */
struct line {
        const uint8_t *p;
        size_t len, off;
};

enum field { FIELD_ADDR4, FIELD_ADDR6, FIELD_PORT };

/* The longest address text inet_pton() takes ("::ffff:" and an IPv4). */
#define FIELD_MAX (INET6_ADDRSTRLEN - 1)

static const char *const field_chars[] = {
        [FIELD_ADDR4] = "0123456789.",
        [FIELD_ADDR6] = "0123456789abcdefABCDEF:.",
        [FIELD_PORT] = "0123456789",
};

/* A port: "0".."65535" in decimal, no heading zero (the spec forbids them,
 * lest they be read as octal). */
static bool port_parse(const char *s, uint16_t *port_be) {
        size_t n = strlen(s);
        unsigned v = 0;

        if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
                return false;
        for (size_t i = 0; i < n; i++)
                v = v * 10 + (unsigned) (s[i] - '0');
        if (v > 65535)
                return false;
        *port_be = htons((uint16_t) v);
        return true;
}

/* glibc's inet_pton() refuses heading zeros in IPv4 too ("01.2.3.4"). */
static bool field_parse(enum field f, const char *s, void *out) {
        switch (f) {
        case FIELD_ADDR4:
                return inet_pton(AF_INET, s, out) == 1;
        case FIELD_ADDR6:
                return inet_pton(AF_INET6, s, out) == 1;
        default:
                return port_parse(s, out);
        }
}

/* Whether s, a field cut short, begins one that parses.  Any start of a
 * port is a port; any start of an address that inet_pton() takes is
 * completed by one of these endings ("1.2." + "0.0", "1:" + ":",
 * "1::2:" + "0", "1:2:3:4:5:6:7" + "::", "::ffff:1.2" + ".0.0"). */
static bool field_may_complete(enum field f, const char *s, size_t n) {
        static const char *const endings[] = {
                "", "0", ":", "::", ".0", ".0.0", ".0.0.0", "0.0", "0.0.0",
        };
        char text[FIELD_MAX + sizeof(".0.0.0")];
        uint8_t out[16];

        if (n == 0 || f == FIELD_PORT)
                return n == 0 || field_parse(f, s, out);
        for (size_t i = 0; i < sizeof(endings) / sizeof(endings[0]); i++) {
                memcpy(text, s, n);
                strcpy(text + n, endings[i]);
                if (field_parse(f, text, out))
                        return true;
        }
        return false;
}

/* A field ended by the byte end (a space, or the CR of the line's end). */
static int line_field(struct line *l, enum field f, char end, void *out) {
        char text[FIELD_MAX + 1];
        size_t n = 0;

        for (size_t i = l->off; i < l->len; i++, n++) {
                uint8_t c = l->p[i];

                if (c == end) {
                        text[n] = '\0';
                        if (n == 0 || !field_parse(f, text, out))
                                return -EBADMSG;
                        l->off = i + 1;
                        return 1;
                }
                if (n == FIELD_MAX || c == '\0' || !strchr(field_chars[f], c))
                        return -EBADMSG;
                text[n] = (char) c;
        }
        text[n] = '\0';
        return field_may_complete(f, text, n) ? 0 : -EBADMSG;
}

static int line_word(struct line *l, const char *word) {
        size_t n = strlen(word);
        int r = match(l->p + l->off, l->len - l->off, word, n);

        if (r > 0)
                l->off += n;
        return r;
}

/* "TCP4 ", "TCP6 " or "UNKNOWN": sets *family (AF_UNSPEC for UNKNOWN). */
static int line_protocol(struct line *l, int *family) {
        static const struct {
                const char *word;
                int family;
        } protocols[] = {
                { "TCP4 ", AF_INET }, { "TCP6 ", AF_INET6 }, { "UNKNOWN", AF_UNSPEC },
        };
        int ret = -EBADMSG;

        for (size_t i = 0; i < sizeof(protocols) / sizeof(protocols[0]); i++) {
                int r = line_word(l, protocols[i].word);

                if (r > 0) {
                        *family = protocols[i].family;
                        return 1;
                }
                if (r == 0)
                        ret = 0;
        }
        return ret;
}

/* After UNKNOWN: nothing, or a space and anything, up to the CRLF; a CR or
 * LF alone ends no line. */
static int line_unknown_rest(struct line *l) {
        for (size_t i = l->off; i < l->len; i++) {
                uint8_t c = l->p[i];

                if (i == l->off && c != ' ' && c != '\r')
                        return -EBADMSG;
                if (c == '\n')
                        return -EBADMSG;
                if (c == '\r') {
                        l->off = i;
                        return line_word(l, "\r\n");
                }
        }
        return 0;
}

/* "SRC DST SPORT DPORT\r\n" of a family. */
static int line_addresses(struct line *l, int family, struct proxy_header *h) {
        enum field f = family == AF_INET ? FIELD_ADDR4 : FIELD_ADDR6;
        uint8_t src[16], dst[16];
        uint16_t sport, dport;
        int r;

        if ((r = line_field(l, f, ' ', src)) <= 0 ||
            (r = line_field(l, f, ' ', dst)) <= 0 ||
            (r = line_field(l, FIELD_PORT, ' ', &sport)) <= 0 ||
            (r = line_field(l, FIELD_PORT, '\r', &dport)) <= 0 ||
            (r = line_word(l, "\n")) <= 0)
                return r;
        sockaddr_set(&h->src, family, src, sport);
        sockaddr_set(&h->dst, family, dst, dport);
        return 1;
}

/* A line that cannot end within PROXY_V1_MAX bytes (two long IPv6 texts)
 * is refused when that many are there, not when its fields show it. */
static ssize_t parse_v1(const uint8_t *buf, size_t len, struct proxy_header *h) {
        struct line l = { buf, len < PROXY_V1_MAX ? len : PROXY_V1_MAX, 0 };
        struct proxy_header p = { .version = 1, .kind = PROXY_CLIENT };
        int family = AF_UNSPEC, r;

        if ((r = line_word(&l, "PROXY ")) > 0 && (r = line_protocol(&l, &family)) > 0) {
                if (family == AF_UNSPEC) {
                        p.kind = PROXY_LOCAL;
                        r = line_unknown_rest(&l);
                } else
                        r = line_addresses(&l, family, &p);
        }
        /* No CRLF within the most a line can be. */
        if (r == 0 && len >= PROXY_V1_MAX)
                return -EBADMSG;
        if (r <= 0)
                return r;
        p.length = l.off;
        *h = p;
        return (ssize_t) p.length;
}

/* v2: the family (0..3: UNSPEC, INET, INET6, UNIX) and transport (0..2:
 * UNSPEC, STREAM, DGRAM) byte.  TCP over IPv4 or IPv6 names a client
 * (*addr_len: its address block); the others fall back to the
 * connection's own addresses, as the spec asks of a receiver that does
 * not support them. */
static int v2_family(uint8_t fam, size_t *addr_len) {
        if (fam >> 4 > 3 || (fam & 0xf) > 2)
                return -EBADMSG;
        /* Two addresses, then two ports. */
        *addr_len = fam == 0x11 ? 2 * 4 + 2 * 2 : fam == 0x21 ? 2 * 16 + 2 * 2 : 0;
        return fam == 0x11 ? AF_INET : fam == 0x21 ? AF_INET6 : AF_UNSPEC;
}

/* The TLVs in buf[off..end), as far as len shows them: each a type, a
 * 16-bit length and that many bytes, the last ending exactly at end (and
 * off, past the addresses, not beyond it).  A TLV across end means the
 * length or the addresses are not what the sender meant: the header is
 * refused rather than half trusted. */
static int v2_tlvs(const uint8_t *buf, size_t len, size_t off, size_t end) {
        while (off < end) {
                if (end - off < 3)
                        return -EBADMSG;
                if (len < off + 3)
                        return 0;
                off += 3 + ((size_t) buf[off + 1] << 8 | buf[off + 2]);
        }
        return off == end ? 1 : -EBADMSG;
}

/* The client of a TCP header: the addresses, then the ports, as sent. */
static void v2_client(const uint8_t *block, int family, struct proxy_header *p) {
        size_t a = family == AF_INET ? 4 : 16;
        uint16_t sport, dport;

        memcpy(&sport, block + 2 * a, 2);
        memcpy(&dport, block + 2 * a + 2, 2);
        sockaddr_set(&p->src, family, block, sport);
        sockaddr_set(&p->dst, family, block + a, dport);
        p->kind = PROXY_CLIENT;
}

static ssize_t parse_v2(const uint8_t *buf, size_t len, struct proxy_header *h) {
        struct proxy_header p = { .version = 2, .kind = PROXY_LOCAL };
        int family = AF_UNSPEC, r = match(buf, len, v2_signature, sizeof(v2_signature));
        size_t addr_len = 0, end;
        bool proxy;

        if (r <= 0)
                return r;
        if (len <= 12)
                return 0;
        if (buf[12] >> 4 != 2 || (buf[12] & 0xf) > 1)
                return -EBADMSG;
        /* LOCAL: the family is ignored, with the addresses. */
        proxy = buf[12] & 1;
        if (len <= 13)
                return 0;
        if (proxy && (family = v2_family(buf[13], &addr_len)) < 0)
                return -EBADMSG;
        if (len < PROXY_V2_FIXED)
                return 0;
        end = PROXY_V2_FIXED + ((size_t) buf[14] << 8 | buf[15]);
        if (family != AF_UNSPEC && (r = v2_tlvs(buf, len, PROXY_V2_FIXED + addr_len, end)) < 0)
                return r;
        if (len < end)
                return 0;

        if (family != AF_UNSPEC)
                v2_client(buf + PROXY_V2_FIXED, family, &p);
        p.length = end;
        *h = p;
        return (ssize_t) end;
}

ssize_t proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h) {
        if (len == 0)
                return 0;
        if (buf[0] == 'P')
                return parse_v1(buf, len, h);
        return parse_v2(buf, len, h);
}
