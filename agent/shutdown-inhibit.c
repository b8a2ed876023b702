/* SPDX-License-Identifier: MIT */
#include "shutdown-inhibit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "log.h"

#define LOGIN1_SERVICE "org.freedesktop.login1"
#define LOGIN1_PATH "/org/freedesktop/login1"
#define LOGIN1_MANAGER "org.freedesktop.login1.Manager"

struct ShutdownInhibit {
        sd_bus *bus; /* NULL: inactive */
        sd_bus_slot *match;
        sd_bus_slot *call;
        char *why;
        int fd; /* the lock, -EBADF when not held */
        ShutdownInhibitFn on_prepare;
        void *userdata;
};

static int shutdown_inhibit_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ShutdownInhibit *s = userdata;
        int fd, r;

        s->call = sd_bus_slot_unref(s->call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                log_warning(
                        "logind refused a shutdown delay lock (%s); a shutdown gets only the "
                        "final flush in the agent's stop path",
                        sd_bus_message_get_error(m)->message);
                return 0;
        }
        r = sd_bus_message_read(m, "h", &fd);
        if (r < 0)
                return log_warning_errno(r, "Malformed Inhibit reply from logind, ignoring: %m"), 0;
        (void)safe_close(s->fd);
        s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (s->fd < 0)
                return log_warning_errno(NEG_ERRNO(), "Failed to keep the inhibitor fd: %m"), 0;
        log_debug("Holding a logind delay lock on shutdown");
        return 0;
}

static int shutdown_inhibit_take(ShutdownInhibit *s) {
        if (!s->bus || s->fd >= 0 || s->call)
                return 0;
        return sd_bus_call_method_async(
                s->bus, &s->call, LOGIN1_SERVICE, LOGIN1_PATH, LOGIN1_MANAGER, "Inhibit",
                shutdown_inhibit_on_reply, s, "ssss", "shutdown", "poolagent", s->why, "delay");
}

static int shutdown_inhibit_on_prepare(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ShutdownInhibit *s = userdata;
        int start, r;

        r = sd_bus_message_read(m, "b", &start);
        if (r < 0)
                return log_debug_errno(r, "Malformed PrepareForShutdown, ignoring: %m"), 0;
        if (!start) {
                log_info("Shutdown cancelled; taking the shutdown delay lock again");
                (void)shutdown_inhibit_take(s);
                return 0;
        }
        log_notice("logind announced a shutdown");
        if (s->on_prepare)
                s->on_prepare(s, s->userdata);
        else
                shutdown_inhibit_release(s);
        return 0;
}

int shutdown_inhibit_new(
        sd_event *event,
        const char *why,
        ShutdownInhibitFn on_prepare,
        void *userdata,
        ShutdownInhibit **ret,
        const char **reterr_reason) {
        _cleanup_(shutdown_inhibit_freep) ShutdownInhibit *s = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = -EBADF;
        s->on_prepare = on_prepare;
        s->userdata = userdata;
        s->why = strdup(why);
        if (!s->why)
                return -ENOMEM;
        *reterr_reason = NULL;
        r = sd_bus_open_system(&s->bus);
        if (r < 0) {
                s->bus = NULL;
                *reterr_reason = "no system bus";
                *ret = TAKE_PTR(s);
                return 0;
        }
        r = sd_bus_attach_event(s->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_match_signal_async(
                        s->bus, &s->match, LOGIN1_SERVICE, LOGIN1_PATH, LOGIN1_MANAGER,
                        "PrepareForShutdown", shutdown_inhibit_on_prepare, NULL, s);
        if (r >= 0)
                r = shutdown_inhibit_take(s);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                s->match = sd_bus_slot_unref(s->match);
                s->call = sd_bus_slot_unref(s->call);
                (void)sd_bus_detach_event(s->bus);
                s->bus = sd_bus_flush_close_unref(s->bus);
                *reterr_reason = "cannot talk to logind on the system bus";
        }
        *ret = TAKE_PTR(s);
        return 0;
}

void shutdown_inhibit_release(ShutdownInhibit *s) {
        if (!s || s->fd < 0)
                return;
        s->fd = safe_close(s->fd);
        log_debug("Released the logind shutdown delay lock");
}

ShutdownInhibit *shutdown_inhibit_free(ShutdownInhibit *s) {
        if (!s)
                return NULL;
        s->match = sd_bus_slot_unref(s->match);
        s->call = sd_bus_slot_unref(s->call);
        if (s->bus) {
                (void)sd_bus_detach_event(s->bus);
                s->bus = sd_bus_flush_close_unref(s->bus);
        }
        (void)safe_close(s->fd);
        free(s->why);
        free(s);
        return NULL;
}

bool shutdown_inhibit_is_held(const ShutdownInhibit *s) {
        return s && s->fd >= 0;
}

bool shutdown_inhibit_is_active(const ShutdownInhibit *s) {
        return s && s->bus;
}
