/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the PROXY protocol header parser (daemon/proxy.h):
 * the input is the first bytes a proxied listener reads.
 *
 * Besides not reading past the bytes it is given (each prefix is parsed
 * from the end of one allocation, so that ASan sees any read past it):
 *   - the verdicts of the prefixes go 0 ... 0, then one length or
 *     -EBADMSG for good: a header, once whole, is not changed by what
 *     follows, and a refusal is not taken back;
 *   - 0 only while a header may still come, below PROXY_HEADER_MAX;
 *   - a length is at most the bytes given, and h->length;
 *   - h is written only with a length, and then says what the bytes say:
 *     a TCP4 line is written back the same, a TCP6 line ends in its ports,
 *     a v2 header's addresses are its own bytes. */

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

static bool untouched(const struct proxy_header *h) {
        struct proxy_header sentinel;

        memset(&sentinel, 0xa5, sizeof(sentinel));
        return memcmp(h, &sentinel, sizeof(sentinel)) == 0;
}

/* data[0..k), parsed from the end of the allocation end[-size..0). */
static ssize_t parse_prefix(uint8_t *end, const uint8_t *data, size_t k, struct proxy_header *h) {
        ssize_t r;

        memcpy(end - k, data, k);
        memset(h, 0xa5, sizeof(*h));
        r = proxy_parse(end - k, k, h);
        check(r == 0 || r == -EBADMSG || (r > 0 && (size_t) r <= k));
        check(r > 0 || untouched(h));
        check(r != 0 || k < PROXY_HEADER_MAX);
        return r;
}

static void check_v1(const uint8_t *line, size_t n, const struct proxy_header *h) {
        char text[PROXY_V1_MAX + 1], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
        int len;

        check(n <= PROXY_V1_MAX && n >= 15);
        check(memcmp(line, "PROXY ", 6) == 0 && memcmp(line + n - 2, "\r\n", 2) == 0);
        check(memchr(line, '\n', n - 1) == NULL && memchr(line, '\r', n - 2) == NULL);
        if (h->kind == PROXY_LOCAL) {
                check(memcmp(line + 6, "UNKNOWN", 7) == 0);
                return;
        }
        check(h->kind == PROXY_CLIENT);
        if (h->src.sa.sa_family == AF_INET) {
                check(inet_ntop(AF_INET, &h->src.in.sin_addr, src, sizeof(src)));
                check(inet_ntop(AF_INET, &h->dst.in.sin_addr, dst, sizeof(dst)));
                len = snprintf(text, sizeof(text), "PROXY TCP4 %s %s %u %u\r\n", src, dst,
                               ntohs(h->src.in.sin_port), ntohs(h->dst.in.sin_port));
                check((size_t) len == n && memcmp(text, line, n) == 0);
                return;
        }
        check(h->src.sa.sa_family == AF_INET6 && memcmp(line + 6, "TCP6 ", 5) == 0);
        len = snprintf(text, sizeof(text), " %u %u\r\n",
                       ntohs(h->src.in6.sin6_port), ntohs(h->dst.in6.sin6_port));
        check((size_t) len < n && memcmp(text, line + n - (size_t) len, (size_t) len) == 0);
}

static void check_v2(const uint8_t *hdr, size_t n, const struct proxy_header *h) {
        check(n == PROXY_V2_FIXED + ((size_t) hdr[14] << 8 | hdr[15]));
        check(hdr[12] == 0x20 || hdr[12] == 0x21);
        if (h->kind == PROXY_LOCAL)
                return;
        check(h->kind == PROXY_CLIENT && hdr[12] == 0x21);
        if (hdr[13] == 0x11) {
                check(h->src.sa.sa_family == AF_INET);
                check(memcmp(&h->src.in.sin_addr, hdr + 16, 4) == 0);
                check(memcmp(&h->dst.in.sin_addr, hdr + 20, 4) == 0);
                check(memcmp(&h->src.in.sin_port, hdr + 24, 2) == 0);
                check(memcmp(&h->dst.in.sin_port, hdr + 26, 2) == 0);
        } else {
                check(hdr[13] == 0x21 && h->src.sa.sa_family == AF_INET6);
                check(memcmp(&h->src.in6.sin6_addr, hdr + 16, 16) == 0);
                check(memcmp(&h->dst.in6.sin6_addr, hdr + 32, 16) == 0);
                check(memcmp(&h->src.in6.sin6_port, hdr + 48, 2) == 0);
                check(memcmp(&h->dst.in6.sin6_port, hdr + 50, 2) == 0);
        }
}

static void check_header(const uint8_t *data, const struct proxy_header *h, ssize_t r) {
        check(h->length == (size_t) r);
        if (h->kind == PROXY_CLIENT)
                check(h->src.sa.sa_family == h->dst.sa.sa_family);
        if (h->version == 1) {
                check_v1(data, (size_t) r, h);
        } else {
                check(h->version == 2);
                check_v2(data, (size_t) r, h);
        }
}

/* Field by field: the padding and a PROXY_LOCAL's addresses say nothing. */
static bool same_header(const struct proxy_header *a, const struct proxy_header *b) {
        if (a->version != b->version || a->kind != b->kind || a->length != b->length)
                return false;
        return a->kind != PROXY_CLIENT ||
               (memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
                memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *copy = malloc(size > 0 ? size : 1), *end = copy + size;
        /* Every prefix of a short input, a sample of a long one's. */
        size_t step = size <= 512 ? 1 : size / 97;
        struct proxy_header h, whole;
        ssize_t r, last = 0;

        check(copy);
        r = parse_prefix(end, data, size, &whole);
        if (r > 0)
                check_header(data, &whole, r);
        for (size_t k = 0; k <= size; k += step) {
                ssize_t rk = parse_prefix(end, data, k, &h);

                if (last > 0 || last == -EBADMSG)
                        check(rk == last);
                if (rk > 0)
                        check(rk == r && same_header(&h, &whole));
                if (rk == -EBADMSG)
                        check(r == -EBADMSG);
                last = rk;
        }
        free(copy);
        return 0;
}
