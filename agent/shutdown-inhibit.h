/* SPDX-License-Identifier: MIT */
#pragma once

/* A logind "delay" inhibitor lock on "shutdown" (org.freedesktop.login1.Manager.Inhibit), taken
 * asynchronously on the system bus. When logind sends PrepareForShutdown(true) the callback runs;
 * the owner calls shutdown_inhibit_release() when it is done (or logind's InhibitDelayMaxSec
 * passes). PrepareForShutdown(false) (the shutdown was cancelled) takes the lock again. Without a
 * system bus or logind this is inactive: it never blocks and never fails the agent. */

#include <stdbool.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct ShutdownInhibit ShutdownInhibit;

typedef void (*ShutdownInhibitFn)(ShutdownInhibit *s, void *userdata);

/* Returns 0 also when there is no bus (then *reterr_reason says why and the object is inactive). */
int shutdown_inhibit_new(
        sd_event *event,
        const char *why,
        ShutdownInhibitFn on_prepare,
        void *userdata,
        ShutdownInhibit **ret,
        const char **reterr_reason);
ShutdownInhibit *shutdown_inhibit_free(ShutdownInhibit *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShutdownInhibit *, shutdown_inhibit_free);

/* Closes the lock's fd (logind then proceeds). NULL-safe. */
void shutdown_inhibit_release(ShutdownInhibit *s);
bool shutdown_inhibit_is_held(const ShutdownInhibit *s);
bool shutdown_inhibit_is_active(const ShutdownInhibit *s);
