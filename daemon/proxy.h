/* SPDX-License-Identifier: MIT */
#pragma once

/* The PROXY protocol header (HAProxy's doc/proxy-protocol.txt), versions 1
 * and 2, that a load balancer puts before a client's bytes on a proxied
 * listener.  Pure: bytes in, a verdict and the addresses out.
 *
 * The daemon peeks at the socket, asks proxy_parse() whether a whole header
 * is there, and then reads exactly its length: the bytes after it are the
 * client's and stay in the socket for the worker to read. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "addr.h"

/* v1: "PROXY " ... "\r\n", 107 bytes at most (the spec's worst case). */
#define PROXY_V1_MAX 107
/* v2: the 16-byte fixed part, then its length field's bytes (addresses,
 * then TLVs): 16 + 65535 at most. */
#define PROXY_V2_FIXED 16
#define PROXY_V2_MAX (PROXY_V2_FIXED + 65535)
/* Enough to decide on any header. */
#define PROXY_HEADER_MAX PROXY_V2_MAX

enum proxy_kind {
        PROXY_CLIENT,   /* v1 TCP4/TCP6, v2 PROXY over TCP: src is the client */
        PROXY_LOCAL,    /* v2 LOCAL (a balancer's own health check), v1 UNKNOWN,
                         * v2 PROXY of another family or transport: no client
                         * named, the connection's own addresses apply */
};

struct proxy_header {
        uint8_t version;                /* 1 or 2 */
        enum proxy_kind kind;
        union sockaddr_union src;       /* PROXY_CLIENT: the client (AF_INET or AF_INET6) */
        union sockaddr_union dst;       /* PROXY_CLIENT: the address the client reached */
        size_t length;                  /* bytes of the header, TLVs included */
};

/* Reads the header at the start of buf[0..len).
 * Returns:
 *   > 0         a whole, valid header: its length (also in h->length);
 *               the bytes past it are the client's;
 *   0           valid so far but incomplete: more bytes may complete it
 *               (never when len is already past the most a header can be);
 *   -EBADMSG    not a PROXY header, or a malformed one (a bad signature,
 *               version, command, family, length, address, port, a v1 line
 *               longer than PROXY_V1_MAX, no CRLF): as soon as the bytes
 *               seen prove it, so a plain client is refused at its first
 *               bytes.
 * h is written only on success. */
ssize_t proxy_parse(const uint8_t *buf, size_t len, struct proxy_header *h);
