/* SPDX-License-Identifier: MIT */
#pragma once

/* The drain: everything the agent does before the VM goes away, on the agent's sd-event loop.
 *
 * Sources: scheduled events for this VM (ScheduledEventsPoller), "poolctl drain", and logind's
 * PrepareForShutdown (ShutdownInhibitor). The steps run in the order of DrainStep
 * (drain-state.h); which ones run depends on the policy (drain_policy_runs()):
 *
 *   source / event type      not-healthy exec-start block-logins stop/wait-jobs flush exec-stop
 * report approve Terminate, Preempt       yes         yes        yes          yes (Preempt:  yes
 * yes       yes    yes Reboot, Redeploy         yes         yes        yes           no waiting)
 * yes   yes       yes    yes Freeze                   -           -          -            - yes   -
 * -      yes manual (poolctl drain)   yes         yes        yes          yes            yes   yes
 * yes    - shutdown (logind)        yes         -          -            -              yes   - - -
 *
 * An event that is already Started when first seen (the platform did not wait) gets its policy
 * without the approval. Every step is logged with its duration; the start and the end of a drain
 * carry MESSAGE_IDs. Anything that could block (the flush, hooks, telling users, the report on
 * the share) runs in a child process with a deadline; a child that does not end is killed and
 * the drain goes on. The state (current step, handled EventIds, approvals) is written to the
 * state file before each step, so an agent killed mid-drain resumes at the step it was in (steps
 * are idempotent) and never approves an event twice. A drain from an earlier boot is not
 * resumed. A finished drain keeps the VM drained (not healthy, logins blocked) until the VM goes
 * away, "poolctl drain --cancel", or a reboot. */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct Drain Drain;
typedef struct ScheduledEvent ScheduledEvent;

#define DRAIN_REPORT_DIR ".poolagent/drain-reports"
#define DRAIN_RETRY_USEC (1000U * 1000U)
#define DRAIN_APPROVE_ATTEMPTS 5U
#define DRAIN_NOTIFY_TIMEOUT_USEC (5U * 1000U * 1000U)
#define DRAIN_REPORT_TIMEOUT_USEC (10U * 1000U * 1000U)

typedef struct DrainConfig {
        const char *state_directory;   /* drain-state.json lives here */
        const char *mount_point;       /* the workspace */
        const char *nologin_path;      /* usually /run/nologin */
        const char *exec_start;        /* /bin/sh -c command, NULL: none */
        const char *exec_stop;         /* the same */
        uint64_t hook_timeout_usec;    /* per hook */
        uint64_t flush_budget_usec;    /* reserved before NotBefore for the flush */
        uint64_t flush_timeout_usec;   /* bound of a flush without an event deadline */
        bool notify_users;             /* write a message to logged-in users' terminals */
        bool scheduled_events;         /* poll the metadata service */
        const char *metadata_endpoint; /* scheme://host[:port] */
        const char *vm_name;           /* NULL: from instance metadata */
        uint64_t poll_interval_usec;
        bool shutdown_inhibitor; /* take a logind delay lock on shutdown */
} DrainConfig;

/* Called when the VM starts or stops being drained (report not-healthy / healthy again). */
typedef void (*DrainHealthFn)(bool draining, void *userdata);
/* A flush requested with drain_flush(): r is 0 (dirty_bytes valid, 0 unless the flush timed out
 * with data left: then r is -ETIMEDOUT or -EIO and dirty_bytes what remained, -1 unknown). */
typedef void (*DrainFlushFn)(int r, int64_t dirty_bytes, const char *note, void *userdata);

int drain_new(sd_event *event, const DrainConfig *config, Drain **ret);
Drain *drain_free(Drain *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(Drain *, drain_free);

void drain_set_health_hook(Drain *d, DrainHealthFn fn, void *userdata);
/* Loads the state file, resumes a drain of this boot that did not finish, starts polling. */
int drain_start(Drain *d);

/* Feeds one scheduled event for this VM (the poller does this; tests may too). */
void drain_on_scheduled_event(Drain *d, const ScheduledEvent *e);
/* poolctl drain: -EALREADY when a drain is running. */
int drain_start_manual(Drain *d);
/* poolctl drain --cancel: stops a running drain and lifts a finished one (not-healthy, nologin).
 * -ENOENT when there is none. */
int drain_cancel(Drain *d);
/* logind PrepareForShutdown(true): the shutdown policy; done is called when it finished. */
int drain_start_shutdown(Drain *d, void (*done)(void *userdata), void *userdata);

/* One flush of the workspace, bounded by timeout_usec, outside of any drain (poolctl flush, the
 * final flush when the agent stops). cb runs later on the loop, never from inside this call. */
int drain_flush(Drain *d, uint64_t timeout_usec, DrainFlushFn cb, void *userdata);

bool drain_is_draining(const Drain *d);
bool drain_is_running(const Drain *d);
/* Adds "drain": {state, source, event, step, steps with durations, ...} and the poller's status. */
int drain_status_json(Drain *d, json_object *o);
/* " DRAINING (step)"/" drained" or "" for STATUS=; static storage. */
const char *drain_status_summary(const Drain *d);

/* Pure: whether step runs for this source/event type; started: the event was already Started. */
bool drain_policy_runs(int source, int event_type, bool started, int step);
