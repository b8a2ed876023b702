/* SPDX-License-Identifier: MIT */
#include "event-util.h"

#include "log.h"

int event_arm_relative(
        sd_event *event,
        sd_event_source **s,
        uint64_t usec,
        sd_event_time_handler_t cb,
        void *userdata,
        const char *what) {
        int r;

        if (!*s)
                r = sd_event_add_time_relative(event, s, CLOCK_MONOTONIC, usec, 0, cb, userdata);
        else {
                r = sd_event_source_set_time_relative(*s, usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_warning_errno(r, "Failed to schedule the next %s, ignoring: %m", what);
        return r;
}
