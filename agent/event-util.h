/* SPDX-License-Identifier: MIT */
#pragma once

/* Small helpers over sd-event for the agent's periodic checks. */

#include <stdint.h>

#include <systemd/sd-event.h>

/* Arms *s (a one-shot CLOCK_MONOTONIC timer calling cb) to fire usec from now, creating it on
 * the first call; a periodic check calls it again from cb. A failure to re-arm is logged as a
 * warning naming what ("disk check"). Returns 0 or -errno. */
int event_arm_relative(
        sd_event *event,
        sd_event_source **s,
        uint64_t usec,
        sd_event_time_handler_t cb,
        void *userdata,
        const char *what);
