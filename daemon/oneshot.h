/* SPDX-License-Identifier: MIT */
#pragma once

/* Oneshot timers on sd-event, armed again and again. */

#include <stdint.h>

#include <systemd/sd-event.h>

/* Sets a oneshot timer source to fire at usec (CLOCK_MONOTONIC), also
 * after it fired already. */
static inline int oneshot_rearm(sd_event_source *es, uint64_t usec) {
        int r = sd_event_source_set_time(es, usec);

        /* A oneshot timer that fired is off until enabled again. */
        return r < 0 ? r : sd_event_source_set_enabled(es, SD_EVENT_ONESHOT);
}

/* The same for *es, created on e the first time. */
static inline int oneshot_arm(sd_event *e, sd_event_source **es, uint64_t usec,
                              sd_event_time_handler_t handler, void *userdata) {
        if (*es)
                return oneshot_rearm(*es, usec);
        return sd_event_add_time(e, es, CLOCK_MONOTONIC, usec, 0, handler, userdata);
}
