/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the hand-over state format (daemon/handover.h): the
 * memfd the previous instance left in systemd's store, read at start.  It
 * comes from ourselves, but a successor of another version, a truncated
 * write or a bug must cost the state, never the daemon.
 *
 * Every record the decoder accepts must be usable as is: its transform
 * state continues a stream without tripping upcase_feed(), its pending
 * replies lie inside the input, and encoding it again gives a record that
 * decodes to the same thing. */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handover.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check(x) do { if (!(x)) __builtin_trap(); } while (0)

static void check_same(const struct handover_conn *a, const struct handover_conn *b) {
        check(a->id == b->id && a->bytes_in == b->bytes_in && a->bytes_out == b->bytes_out);
        check(a->start_usec == b->start_usec && a->start_realtime_usec == b->start_realtime_usec);
        check(a->peer.sa.sa_family == b->peer.sa.sa_family && a->via.sa.sa_family == b->via.sa.sa_family);
        check(a->health_check == b->health_check);
        check(a->up.ntail == b->up.ntail && a->up.line == b->up.line);
        check(memcmp(a->up.tail, b->up.tail, a->up.ntail) == 0);
        check(a->up.dot_quit == b->up.dot_quit && a->up.quit == b->up.quit);
        check(a->pending_len == b->pending_len);
        check(a->pending_len == 0 || memcmp(a->pending, b->pending, a->pending_len) == 0);
}

static void check_record(const uint8_t *data, size_t size, const struct handover_conn *c) {
        static const uint8_t more[] = "\x80\x80\x80 .\r\nabc\n";
        uint8_t out[UPCASE_OUT_MAX(sizeof(more))];
        struct handover_conn again, copy = *c;
        struct textbuf b;
        size_t off;

        check(c->id != 0);
        check(c->pending_len <= HANDOVER_PENDING_MAX);
        check(c->pending_len == 0 || (c->pending >= data && c->pending + c->pending_len <= data + size));
        /* The state goes on as a stream would. */
        check(upcase_feed(&copy.up, more, sizeof(more) - 1, true, out, NULL) <= sizeof(out));

        textbuf_init(&b, 1 << 20);
        handover_encode_header(&b);
        handover_encode(&b, c);
        check(!b.overflow);
        check(handover_decode_header((const uint8_t *) b.data, b.len, &off) == HANDOVER_VERSION);
        check(handover_decode((const uint8_t *) b.data, b.len, HANDOVER_VERSION, &off, &again) == 1);
        check(off == b.len);
        check_same(c, &again);
        textbuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct handover_conn c;
        size_t off;
        int r, version = handover_decode_header(data, size, &off);

        if (version < 0)
                return 0;
        while ((r = handover_decode(data, size, version, &off, &c)) > 0) {
                check(off <= size);
                check_record(data, size, &c);
        }
        check(r == 0 || r == -EBADMSG);
        return 0;
}
