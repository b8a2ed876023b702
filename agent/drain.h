/* SPDX-License-Identifier: MIT */
#pragma once

/* The drain: everything the agent does before the VM goes away, on the agent's sd-event loop.
 *
 * Sources: scheduled events for this VM (ScheduledEventsPoller), "poolctl drain", and logind's
 * PrepareForShutdown (ShutdownInhibitor). The steps run in the order of DrainStep
 * (drain-state.h); which ones run depends on the policy (drain_policy_runs()):
 *
 *   source / event type   not-     exec-  block-  stop-  wait-jobs (1)    flush exec- report appr-
 *                         healthy  start  logins  jobs                          stop         ove
 *   Terminate, Reboot,    yes      yes    yes     yes    NotBefore minus  yes   yes   yes    yes
 *   Redeploy                                             FlushBudget=
 *   Preempt               yes      yes    yes     yes    no waiting       yes   yes   yes    yes
 *   Freeze                -        -      -       -      -                yes   -     -      yes
 *   manual (poolctl)      yes      yes    yes     yes    ManualJobWait=   yes   yes   yes    -
 *   shutdown (logind)     yes      -      -       yes    no waiting (2)   yes   -     -      -
 *
 * (1) Running jobs may end on their own until the deadline (drain_jobs_deadline(): computed from
 *     the persisted NotBefore or the drain's start, so it survives a restart); then every job
 *     still active is stopped through systemd (SIGTERM, the stop grace, SIGKILL) and the drain
 *     waits for them the stop grace plus DRAIN_JOB_STOP_MARGIN_USEC; a job that did not end by
 *     then is counted in the step's note and the drain goes on. stop-jobs hands every job that
 *     never started back to its owner: <mount>/Users/<user>/DRAIN_REQUEUED_DIR/<vm>-<id>.json,
 *     written as that user (drain_requeue_child_run(), drain-child.h).
 * (2) A shutdown stops running jobs at once, before the flush, so that what they write when
 *     stopped reaches the share: logind holds the shutdown at most InhibitDelayMaxSec= (3 min,
 *     systemd/poolagent-logind.conf), which must hold the stop grace, the margin and the flush
 *     (FlushTimeout=); waiting longer for jobs would only cut the flush short. A shutdown while
 *     another drain runs hurries it: its wait-jobs deadline becomes now, and the lock is released
 *     when it finished (or, once it is past wait-jobs, after one more flush).
 *
 * An event that is already Started when first seen (the platform did not wait) gets its policy
 * without the approval and gives jobs no time. Every step is logged with its duration; the start
 * and the end of a drain carry MESSAGE_IDs. Anything that could block (the flush, hooks, telling
 * users, the report and requeued jobs on the share) runs in a child process with a deadline; a
 * child that does not end is killed and the drain goes on. The state (current step, handled
 * EventIds, approvals) is written to the state file before each step, so an agent killed
 * mid-drain resumes at the step it was in (steps are idempotent) and never approves an event
 * twice. A drain from an earlier boot is not resumed. A finished drain keeps the VM drained (not
 * healthy, logins blocked, no jobs accepted) until the VM goes away, "poolctl drain --cancel", or
 * a reboot. */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct Drain Drain;
typedef struct ScheduledEvent ScheduledEvent;
typedef struct JobRunner JobRunner;

#define DRAIN_REPORT_DIR ".poolagent/drain-reports"
#define DRAIN_RETRY_USEC (1000U * 1000U)
#define DRAIN_APPROVE_ATTEMPTS 5U
#define DRAIN_NOTIFY_TIMEOUT_USEC (5U * 1000U * 1000U)
#define DRAIN_REPORT_TIMEOUT_USEC (10U * 1000U * 1000U)
#define DRAIN_REQUEUE_TIMEOUT_USEC (10U * 1000U * 1000U)        /* writing requeued jobs */
#define DRAIN_JOB_STOP_MARGIN_USEC (5U * 1000U * 1000U)         /* after the jobs' stop grace */
#define DRAIN_JOB_STOP_GRACE_DEFAULT_USEC (30U * 1000U * 1000U) /* when none is configured */

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
        bool shutdown_inhibitor;       /* take a logind delay lock on shutdown */
        uint64_t manual_job_wait_usec; /* poolctl drain: running jobs get this from its start */
        uint64_t job_stop_grace_usec;  /* the jobs' TimeoutStopSec=; 0: the default above */
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
/* The node's job queue (NULL: none; the job steps are skipped with "no job queue"). Not owned;
 * it must outlive the drain. Call it before drain_start(), after job_runner_start() (a drain
 * resumed after a restart asks the runner at once how many jobs run). The drain takes the
 * runner's change hook (job_runner_set_change_hook()): it waits on it for jobs to end. */
void drain_set_job_runner(Drain *d, JobRunner *r);
/* Loads the state file, resumes a drain of this boot that did not finish, starts polling. */
int drain_start(Drain *d);

/* Feeds one scheduled event for this VM (the poller does this; tests may too). */
void drain_on_scheduled_event(Drain *d, const ScheduledEvent *e);
/* poolctl drain: -EALREADY when a drain is running. */
int drain_start_manual(Drain *d);
/* poolctl drain --cancel: stops a running drain and lifts a finished one (not-healthy, nologin).
 * -ENOENT when there is none. */
int drain_cancel(Drain *d);
/* logind PrepareForShutdown(true): the shutdown policy; done is called when it finished. While
 * another drain runs and is not past wait-jobs, that drain is hurried instead (its jobs are
 * stopped now) and done is called when it finished; -EALREADY when a drain past wait-jobs runs
 * (the caller flushes once more). */
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
/* Pure: until when (CLOCK_REALTIME usec) wait-jobs lets running jobs run before it stops them,
 * from the drain's persisted facts (footnote 1 of the table); a deadline at or before the
 * drain's start (or now) means at once. */
uint64_t drain_jobs_deadline(
        int source,
        int event_type,
        bool started,
        uint64_t not_before_usec,
        uint64_t drain_started_usec,
        uint64_t flush_budget_usec,
        uint64_t manual_job_wait_usec);
/* Pure: how long wait-jobs waits for stopped jobs to end (stop grace, 0: the default, plus
 * DRAIN_JOB_STOP_MARGIN_USEC). */
uint64_t drain_job_stop_wait_usec(uint64_t job_stop_grace_usec);
