/* SPDX-License-Identifier: MIT */
#pragma once

/* UDP: one datagram in, one datagram out to its sender, in batches
 * (recvmmsg/sendmmsg).  Each thread serving UDP owns one struct udp_batch. */

#include <stddef.h>

struct shared;
struct udp_batch;

int udp_batch_new(struct shared *sh, struct udp_batch **ret);
void udp_batch_free(struct udp_batch *b);

/* Serves one batch of the datagrams waiting on the non-blocking socket fd.
 * Returns the number served (0: none waiting) or -errno from recvmmsg.
 * Send errors are counted in the stats, never returned. */
int udp_serve(struct udp_batch *b, int fd);
