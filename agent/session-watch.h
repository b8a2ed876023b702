/* SPDX-License-Identifier: MIT */
#pragma once

/* Who opens a session: logind's SessionNew signal on the system bus, and the sessions that exist
 * when the watch starts (ListSessions). For each, the callback gets the session's user name
 * (borrowed, valid during the call). Everything is asynchronous on the sd-event loop.
 *
 * Fails soft: without a system bus or without logind (containers, this project's CI) the watch
 * is simply inactive; session_watch_new() still succeeds and says so through
 * session_watch_is_active(). When the bus connection drops later, the watch goes quiet: it is
 * not re-established before the next start of the agent (the periodic pass still covers users
 * that NSS lists). Single-threaded (the loop's thread). */

#include <stdbool.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct SessionWatch SessionWatch;

typedef void (*SessionUserCallback)(const char *user, void *userdata);

/* Never fails for lack of a bus (then *ret is inactive and *reterr_reason, static, says why);
 * -ENOMEM otherwise. event is borrowed and must outlive the watch. */
int session_watch_new(
        sd_event *event,
        SessionUserCallback cb,
        void *userdata,
        SessionWatch **ret,
        const char **reterr_reason);
SessionWatch *session_watch_free(SessionWatch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(SessionWatch *, session_watch_free);

bool session_watch_is_active(const SessionWatch *w);
