/* SPDX-License-Identifier: MIT */
#include "session-watch.h"

#include <errno.h>
#include <stdlib.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "log.h"

#define LOGIN1_SERVICE "org.freedesktop.login1"
#define LOGIN1_PATH "/org/freedesktop/login1"
#define LOGIN1_MANAGER "org.freedesktop.login1.Manager"
#define LOGIN1_SESSION "org.freedesktop.login1.Session"
#define SESSION_LIST_MAX 4096U /* sessions read from ListSessions at most */

struct SessionWatch {
        sd_bus *bus; /* NULL: inactive */
        sd_bus_slot *match_new;
        sd_bus_slot *list_call;
        SessionUserCallback cb;
        void *userdata;
};

static void session_watch_drop_bus(SessionWatch *w) {
        w->match_new = sd_bus_slot_unref(w->match_new);
        w->list_call = sd_bus_slot_unref(w->list_call);
        if (w->bus) {
                (void)sd_bus_detach_event(w->bus);
                w->bus = sd_bus_flush_close_unref(w->bus);
        }
}

/* The reply to Get(Session, "Name"): a variant holding the user name. */
static int session_watch_on_name(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SessionWatch *w = userdata;
        const char *name = NULL;
        int r;

        if (sd_bus_message_is_method_error(m, NULL)) {
                log_debug(
                        "Failed to look up a new session's user, ignoring: %s",
                        sd_bus_message_get_error(m)->message);
                return 0;
        }
        r = sd_bus_message_read(m, "v", "s", &name);
        if (r < 0 || !name) {
                log_debug_errno(r, "Malformed session name from logind, ignoring: %m");
                return 0;
        }
        w->cb(name, w->userdata);
        return 0;
}

/* SessionNew(s id, o path): asks for the session's user name. */
static int session_watch_on_new(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SessionWatch *w = userdata;
        const char *id, *path;
        int r;

        r = sd_bus_message_read(m, "so", &id, &path);
        if (r < 0)
                return log_debug_errno(r, "Malformed SessionNew signal, ignoring: %m"), 0;
        r = sd_bus_call_method_async(
                w->bus, NULL, LOGIN1_SERVICE, path, "org.freedesktop.DBus.Properties", "Get",
                session_watch_on_name, w, "ss", LOGIN1_SESSION, "Name");
        if (r < 0)
                log_debug_errno(r, "Failed to ask logind about session %s, ignoring: %m", id);
        return 0;
}

/* ListSessions() -> a(susso): id, uid, user, seat, path. */
static int session_watch_on_list(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SessionWatch *w = userdata;
        const char *id, *user, *seat, *path;
        unsigned n = 0;
        uint32_t uid;
        int r;

        w->list_call = sd_bus_slot_unref(w->list_call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                log_info(
                        "Cannot list logind sessions (%s); only new sessions are seen",
                        sd_bus_message_get_error(m)->message);
                return 0;
        }
        r = sd_bus_message_enter_container(m, 'a', "(susso)");
        while (r >= 0 && n < SESSION_LIST_MAX) {
                r = sd_bus_message_read(m, "(susso)", &id, &uid, &user, &seat, &path);
                if (r <= 0)
                        break;
                w->cb(user, w->userdata);
                n++;
        }
        if (r < 0)
                log_debug_errno(r, "Malformed ListSessions reply, ignoring: %m");
        return 0;
}

int session_watch_new(
        sd_event *event,
        SessionUserCallback cb,
        void *userdata,
        SessionWatch **ret,
        const char **reterr_reason) {
        _cleanup_(session_watch_freep) SessionWatch *w = NULL;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->cb = cb;
        w->userdata = userdata;

        r = sd_bus_open_system(&w->bus);
        if (r < 0) {
                w->bus = NULL;
                *reterr_reason = "no system bus";
                *ret = TAKE_PTR(w);
                return 0;
        }
        r = sd_bus_attach_event(w->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_match_signal_async(
                        w->bus, &w->match_new, LOGIN1_SERVICE, LOGIN1_PATH, LOGIN1_MANAGER,
                        "SessionNew", session_watch_on_new, NULL, w);
        if (r >= 0)
                r = sd_bus_call_method_async(
                        w->bus, &w->list_call, LOGIN1_SERVICE, LOGIN1_PATH, LOGIN1_MANAGER,
                        "ListSessions", session_watch_on_list, w, "");
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                session_watch_drop_bus(w);
                *reterr_reason = "cannot subscribe to logind on the system bus";
        }
        *ret = TAKE_PTR(w);
        return 0;
}

SessionWatch *session_watch_free(SessionWatch *w) {
        if (!w)
                return NULL;
        session_watch_drop_bus(w);
        free(w);
        return NULL;
}

bool session_watch_is_active(const SessionWatch *w) {
        return w && w->bus;
}
