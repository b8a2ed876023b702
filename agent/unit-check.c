/* SPDX-License-Identifier: MIT */
#include "unit-check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "event-util.h"
#include "log.h"

typedef struct UnitCheck UnitCheck;

typedef struct UnitState {
        UnitCheck *owner;
        char *name;
        sd_bus_slot *slot; /* the call in flight, NULL: answered */
        HealthCheck check;
} UnitState;

struct UnitCheck {
        sd_event *event; /* borrowed */
        Health *health;  /* borrowed */
        sd_bus *bus;     /* NULL: none (yet) */
        UnitState *units;
        size_t n_units;
        size_t n_pending; /* calls in flight this cycle */
        uint64_t interval_usec;
        sd_event_source *timer;
};

HealthVerdict unit_check_verdict(const char *s) {
        if (!s)
                return HEALTH_UNKNOWN;
        if (streq(s, "active"))
                return HEALTH_OK;
        if (streq(s, "activating") || streq(s, "reloading"))
                return HEALTH_WARNING;
        if (streq(s, "inactive") || streq(s, "failed") || streq(s, "deactivating"))
                return HEALTH_UNHEALTHY;
        return HEALTH_UNKNOWN;
}

static void unit_check_publish(UnitCheck *u) {
        HealthCheck checks[UNIT_CHECK_UNITS_MAX];
        int r;

        for (size_t i = 0; i < u->n_units; i++)
                checks[i] = u->units[i].check;
        r = health_set_checks(u->health, "units", checks, u->n_units);
        if (r < 0)
                log_warning_errno(r, "Failed to record the unit checks, ignoring: %m");
}

static void unit_state_set(UnitState *s, HealthVerdict v, const char *state, const char *message) {
        health_check_init(&s->check, "unit_active", s->name, v);
        if (state)
                (void)snprintf(s->check.signal, sizeof(s->check.signal), "%s", state);
        health_check_set_message(&s->check, "%s", message);
}

static int unit_check_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        UnitState *s = userdata;
        UnitCheck *u = s->owner;
        const sd_bus_error *e = sd_bus_message_get_error(m);
        const char *state = NULL;
        char message[HEALTH_MESSAGE_MAX];
        int r;

        s->slot = sd_bus_slot_unref(s->slot);
        if (e) {
                (void)snprintf(
                        message, sizeof(message), "cannot read its state: %s",
                        e->message ? e->message : e->name);
                unit_state_set(s, HEALTH_UNKNOWN, NULL, message);
        } else {
                r = sd_bus_message_read(m, "v", "s", &state);
                if (r < 0 || !state) {
                        unit_state_set(s, HEALTH_UNKNOWN, NULL, "unexpected reply from systemd");
                } else {
                        HealthVerdict v = unit_check_verdict(state);
                        (void)snprintf(
                                message, sizeof(message), "%s%s", state,
                                v == HEALTH_OK        ? ""
                                : v == HEALTH_WARNING ? " (changing state)"
                                                      : ", must be active");
                        unit_state_set(s, v, state, message);
                }
        }
        if (u->n_pending > 0 && --u->n_pending == 0)
                unit_check_publish(u);
        return 0;
}

static void unit_check_cancel(UnitCheck *u) {
        for (size_t i = 0; i < u->n_units; i++)
                u->units[i].slot = sd_bus_slot_unref(u->units[i].slot);
        u->n_pending = 0;
}

static int unit_check_connect(UnitCheck *u) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (u->bus && sd_bus_is_open(u->bus) > 0)
                return 0;
        u->bus = sd_bus_close_unref(u->bus);
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, u->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        u->bus = TAKE_PTR(bus);
        return 0;
}

static void unit_check_cycle(UnitCheck *u) {
        char message[HEALTH_MESSAGE_MAX];
        int r;

        if (u->n_units == 0 || u->n_pending > 0)
                return; /* nothing to check, or the last cycle is still waiting */
        r = unit_check_connect(u);
        if (r < 0) {
                (void)snprintf(
                        message, sizeof(message), "no system bus to ask systemd: %s", strerror(-r));
                for (size_t i = 0; i < u->n_units; i++)
                        unit_state_set(&u->units[i], HEALTH_UNKNOWN, NULL, message);
                unit_check_publish(u);
                return;
        }
        for (size_t i = 0; i < u->n_units; i++) {
                UnitState *s = &u->units[i];
                _cleanup_free_ char *path = NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

                r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", s->name, &path);
                if (r >= 0)
                        r = sd_bus_message_new_method_call(
                                u->bus, &m, "org.freedesktop.systemd1", path,
                                "org.freedesktop.DBus.Properties", "Get");
                if (r >= 0)
                        r = sd_bus_message_append(
                                m, "ss", "org.freedesktop.systemd1.Unit", "ActiveState");
                if (r >= 0)
                        r = sd_bus_call_async(
                                u->bus, &s->slot, m, unit_check_on_reply, s,
                                UNIT_CHECK_TIMEOUT_USEC);
                if (r < 0) {
                        (void)snprintf(
                                message, sizeof(message), "cannot ask systemd: %s", strerror(-r));
                        unit_state_set(s, HEALTH_UNKNOWN, NULL, message);
                        continue;
                }
                u->n_pending++;
        }
        if (u->n_pending == 0)
                unit_check_publish(u);
}

static int unit_check_arm(UnitCheck *u);

static int unit_check_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        UnitCheck *u = userdata;

        unit_check_cycle(u);
        (void)unit_check_arm(u);
        return 0;
}

static int unit_check_arm(UnitCheck *u) {
        return event_arm_relative(
                u->event, &u->timer, u->interval_usec, unit_check_on_timer, u, "unit check");
}

static void unit_check_clear(UnitCheck *u) {
        unit_check_cancel(u);
        for (size_t i = 0; i < u->n_units; i++)
                free(u->units[i].name);
        free(u->units);
        u->units = NULL;
        u->n_units = 0;
}

int unit_check_configure(UnitCheck *u, char **units, uint64_t interval_usec) {
        UnitState *next;
        size_t n = 0;

        while (units && units[n] && n < UNIT_CHECK_UNITS_MAX)
                n++;
        next = calloc(n + 1, sizeof(UnitState));
        if (!next)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                next[i].owner = u;
                next[i].name = strdup(units[i]);
                if (!next[i].name) {
                        for (size_t j = 0; j < i; j++)
                                free(next[j].name);
                        free(next);
                        return -ENOMEM;
                }
                unit_state_set(&next[i], HEALTH_UNKNOWN, NULL, "not checked yet");
        }
        unit_check_clear(u);
        u->units = next;
        u->n_units = n;
        u->interval_usec = interval_usec;
        if (n == 0) {
                u->bus = sd_bus_close_unref(u->bus);
                unit_check_publish(u); /* removes the source's checks */
        }
        (void)unit_check_arm(u);
        unit_check_cycle(u);
        return 0;
}

int unit_check_new(
        sd_event *event, Health *health, char **units, uint64_t interval_usec, UnitCheck **ret) {
        _cleanup_(unit_check_freep) UnitCheck *u = NULL;
        int r;

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        u->event = event;
        u->health = health;
        r = unit_check_configure(u, units, interval_usec);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(u);
        return 0;
}

UnitCheck *unit_check_free(UnitCheck *u) {
        if (!u)
                return NULL;
        unit_check_clear(u);
        sd_bus_close_unref(u->bus);
        sd_event_source_disable_unref(u->timer);
        free(u);
        return NULL;
}
