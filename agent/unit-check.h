/* SPDX-License-Identifier: MIT */
#pragma once

/* Required systemd units as the health source "units": every interval, for each unit named in
 * [Health] RequiredUnits=, the property ActiveState of org.freedesktop.systemd1.Unit is read over
 * the system bus with an asynchronous call (bounded by UNIT_CHECK_TIMEOUT_USEC), never blocking
 * the loop. One check per unit, name "unit_active", subject the unit, signal its ActiveState:
 *   active                             ok
 *   activating, reloading              warning
 *   inactive, failed, deactivating     unhealthy (a unit that does not exist is inactive)
 *   no answer, no bus                  unknown, with the reason
 * A cycle still waiting for answers when the next one is due is not doubled. Without a system bus
 * (a container, early boot) every unit is unknown and the bus is tried again each interval.
 *
 * Single-threaded: the loop's thread. */

#include <stdint.h>

#include "health.h"
#include "macro.h"

#define UNIT_CHECK_TIMEOUT_USEC (5U * 1000000U)
#define UNIT_CHECK_UNITS_MAX 64U

typedef struct sd_event sd_event;
typedef struct UnitCheck UnitCheck;

/* The verdict for an ActiveState value (pure). */
HealthVerdict unit_check_verdict(const char *active_state);

/* units: NULL-terminated, copied (at most UNIT_CHECK_UNITS_MAX). event and health borrowed. */
int unit_check_new(
        sd_event *event, Health *health, char **units, uint64_t interval_usec, UnitCheck **ret);
UnitCheck *unit_check_free(UnitCheck *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(UnitCheck *, unit_check_free);
/* New units and interval (reload); checks at once. */
int unit_check_configure(UnitCheck *u, char **units, uint64_t interval_usec);
