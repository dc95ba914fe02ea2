/* SPDX-License-Identifier: MIT */
#pragma once

/* UDP: one datagram in, one datagram out to its sender, in batches
 * (recvmmsg/sendmmsg).  Each thread serving UDP owns one struct udp_batch.
 *
 * Before a datagram is answered, the limits (uppercased.conf(5), "limits")
 * apply: the loop guard drops datagrams from ports 0..1023 and from the
 * ports of our own UDP sockets, then the rate limit drops those over
 * limits.udp_rate from their source (source.h).  A dropped datagram is
 * counted, logged through the client log rate limit, and not answered.
 * Every UDP reader shares the one rate table, locked once per batch. */

#include <stddef.h>

struct shared;
struct udp_batch;

int udp_batch_new(struct shared *sh, struct udp_batch **ret);
void udp_batch_free(struct udp_batch *b);

/* Serves one batch of the datagrams waiting on the non-blocking socket fd.
 * Returns the number served (0: none waiting) or -errno from recvmmsg.
 * Send errors are counted in the stats, never returned. */
int udp_serve(struct udp_batch *b, int fd);

/* Records the local ports of the UDP sockets fds[0..n) for the loop guard.
 * Called once the sockets exist, before any is served.  Returns 0 or
 * -errno from getsockname(). */
int udp_set_own_ports(struct shared *sh, const int *fds, size_t n);
