/* SPDX-License-Identifier: MIT */
/* drain_next() (conn.h), apart from the rest of a connection's life: the
 * fork helper's children drain with it and link nothing else of conn.c. */
#include "conn.h"

enum drain_step drain_next(const struct drain_view *v) {
        /* Past the wait, what is still owed travels with the connection:
         * replies (the next instance delivers them, then ends it if it had
         * ended), or the input still coming. */
        if (v->handover && v->wait_over && (v->replies_pending || !v->ended))
                return DRAIN_HAND_OVER;
        if (v->replies_pending)
                return DRAIN_FLUSH;
        if (v->input_waiting && !v->ended)
                return DRAIN_ANSWER;
        if (!v->received && !v->ended && !v->grace_over)
                return DRAIN_WAIT_REQUEST;
        /* Nothing owed: it goes on in the next instance, unless it ended. */
        return v->handover && !v->ended ? DRAIN_HAND_OVER : DRAIN_CLOSE;
}
