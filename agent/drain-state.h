/* SPDX-License-Identifier: MIT */
#pragma once

/* The drain's persistent state: StateDirectory/drain-state.json.
 *
 *   {"version":1,"boot_id":"...",
 *    "drain":{"source":"event","event_id":"...","event_type":"Terminate","not_before_usec":N,
 *             "step":"flush","done":false,"started_usec":N,"steps":[{"step","start_usec",
 *             "end_usec","result"}...],"bytes_flushed":N} | null,
 *    "events":[{"id":"...","type":"Terminate","approval":"approving","usec":N}, ...]}
 *
 * "events" lists every EventId this agent took on (at most DRAIN_STATE_EVENTS_MAX, oldest
 * dropped first), with how far its approval got: "none" (handled, not approved: nothing to
 * approve or not for approval), "approving" (written before the POST is sent), "approved"
 * (written after the service answered 200). An id in this list is never taken on again, and an
 * approval is sent only for an id whose record was "none" a moment before; so across restarts
 * an event is approved at most once (an agent killed between "approving" and the answer does not
 * send again: the platform proceeds at NotBefore anyway, and the flush had already finished).
 *
 * The parser and formatter are pure; drain_state_save() writes atomically (temporary file,
 * fsync, rename, fsync of the directory). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "scheduled-events.h"

#define DRAIN_STATE_FILE "drain-state.json"
#define DRAIN_STATE_EVENTS_MAX 64U
#define DRAIN_STATE_FILE_MAX (64U * 1024U)
#define DRAIN_BOOT_ID_MAX 40U

typedef enum DrainSource {
        DRAIN_SOURCE_EVENT,    /* a scheduled event for this VM */
        DRAIN_SOURCE_MANUAL,   /* poolctl drain */
        DRAIN_SOURCE_SHUTDOWN, /* logind PrepareForShutdown */
        _DRAIN_SOURCE_MAX,
        _DRAIN_SOURCE_INVALID = -EINVAL,
} DrainSource;

/* In the order they run. */
typedef enum DrainStep {
        DRAIN_STEP_NOT_HEALTHY,  /* report not-healthy */
        DRAIN_STEP_EXEC_START,   /* [Drain] ExecStart= hook */
        DRAIN_STEP_BLOCK_LOGINS, /* nologin file, tell logged-in users */
        DRAIN_STEP_STOP_JOBS,    /* stop starting jobs */
        DRAIN_STEP_WAIT_JOBS,    /* let running jobs finish until the deadline, then stop them */
        DRAIN_STEP_FLUSH,        /* flush azfilesfs, confirm zero dirty bytes */
        DRAIN_STEP_EXEC_STOP,    /* [Drain] ExecStop= hook */
        DRAIN_STEP_REPORT,       /* drain report to the share */
        DRAIN_STEP_APPROVE,      /* StartRequests */
        _DRAIN_STEP_MAX,
        _DRAIN_STEP_INVALID = -EINVAL,
} DrainStep;

const char *drain_step_to_string(DrainStep s);
DrainStep drain_step_from_string(const char *s);
const char *drain_source_to_string(DrainSource s);
DrainSource drain_source_from_string(const char *s);

typedef enum DrainApproval {
        DRAIN_APPROVAL_NONE,
        DRAIN_APPROVAL_APPROVING,
        DRAIN_APPROVAL_APPROVED,
        _DRAIN_APPROVAL_MAX,
        _DRAIN_APPROVAL_INVALID = -EINVAL,
} DrainApproval;

const char *drain_approval_to_string(DrainApproval a);

typedef enum DrainStepResult {
        DRAIN_RESULT_PENDING, /* not run (yet) */
        DRAIN_RESULT_RUNNING,
        DRAIN_RESULT_DONE,
        DRAIN_RESULT_SKIPPED, /* not part of this drain's policy, or nothing to do */
        DRAIN_RESULT_FAILED,  /* ran and failed; the drain went on (see the log) */
        _DRAIN_RESULT_MAX,
        _DRAIN_RESULT_INVALID = -EINVAL,
} DrainStepResult;

const char *drain_step_result_to_string(DrainStepResult r);

typedef struct DrainStepRecord {
        DrainStepResult result;
        uint64_t start_usec, end_usec; /* CLOCK_REALTIME; 0: not yet */
        char note[128];                /* short human-readable outcome */
} DrainStepRecord;

typedef struct DrainEventRecord {
        char id[SCHEDULED_EVENT_ID_MAX];
        ScheduledEventType type;
        DrainApproval approval;
        uint64_t usec; /* when it was taken on, CLOCK_REALTIME */
} DrainEventRecord;

typedef struct DrainState {
        char boot_id[DRAIN_BOOT_ID_MAX];

        bool active; /* a drain was started in this boot (running or finished) */
        DrainSource source;
        char event_id[SCHEDULED_EVENT_ID_MAX]; /* "" for manual/shutdown */
        ScheduledEventType event_type;         /* _SCHEDULED_EVENT_TYPE_INVALID when none */
        uint64_t not_before_usec;              /* 0: none */
        bool event_started;                    /* already Started when seen: nothing to approve */
        DrainStep step;                        /* the current (or last) step */
        bool done;
        uint64_t started_usec, ended_usec;
        uint64_t bytes_flushed;
        int64_t dirty_bytes; /* after the last flush, -1 unknown */
        DrainStepRecord steps[_DRAIN_STEP_MAX];

        size_t n_events;
        DrainEventRecord events[DRAIN_STATE_EVENTS_MAX];
} DrainState;

void drain_state_init(DrainState *s);
DrainEventRecord *drain_state_find_event(DrainState *s, const char *id);
/* Adds (or returns the existing) record; drops the oldest when full. */
DrainEventRecord *
drain_state_add_event(DrainState *s, const char *id, ScheduledEventType type, uint64_t usec);

/* Pure. Unknown keys are ignored; wrong types, bad enums and oversized input are -EBADMSG with
 * *reterr_reason (static). */
int drain_state_parse(const char *json, size_t size, DrainState *ret, const char **reterr_reason);
/* Pure: the JSON object of the "drain" part (also the drain report's core) and the whole file. */
json_object *drain_state_drain_json(const DrainState *s);
int drain_state_format(const DrainState *s, char **ret);

/* dir/DRAIN_STATE_FILE; -ENOENT when there is none. */
int drain_state_load(const char *dir, DrainState *ret, const char **reterr_reason);
/* Atomic: dir/.drain-state.json.tmp, fsync, rename, fsync(dir). Creates dir (0755) if needed. */
int drain_state_save(const char *dir, const DrainState *s);

/* /proc/sys/kernel/random/boot_id into buf (DRAIN_BOOT_ID_MAX); "" if unreadable. */
void drain_read_boot_id(char buf[static DRAIN_BOOT_ID_MAX]);
