/* SPDX-License-Identifier: MIT */
#pragma once

/* The node's job queue as data: jobs, their states, the scheduling decision and the persistent
 * form (StateDirectory/jobs.json, written atomically). Pure apart from job_queue_load/_save: the
 * part that starts jobs as transient systemd services (StartTransientUnit in
 * poolagent-jobs.slice over sd-bus) and watches them drives this module.
 *
 * States: QUEUED -> STARTING (written to the file before StartTransientUnit is sent) -> RUNNING
 * -> FINISHED/FAILED; CANCELLED from QUEUED or by "poolctl cancel"; STOPPED by a drain; REQUEUED:
 * never started when the VM was drained (handed to the owner for resubmission).
 *
 * Never twice by accident: a job that was STARTING or RUNNING when the agent stopped is never
 * started again by this module. On load in the same boot it keeps its state (its unit is asked
 * about and decides); on load after a reboot it becomes FAILED ("interrupted by a reboot"; or
 * CANCELLED/STOPPED when it was being stopped for that reason). Only
 * QUEUED jobs are ever picked.
 *
 * Scheduling (job_queue_pick): jobs are taken in submission order; a job is started when the
 * running (and starting) jobs leave enough slots (slots_total, by default two per core, a job
 * taking its --cpus, at least one) and, for a GPU job, enough GPUs not held by another job (each
 * GPU job gets its own disjoint set, for CUDA_VISIBLE_DEVICES). A job that does not fit yet does
 * not block smaller ones behind it (backfill), unless it has waited JOB_QUEUE_AGING_USEC: then
 * nothing behind it starts until it fits, so a big job is not starved. A queue that is not
 * accepting (draining) picks nothing. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define JOB_QUEUE_FILE "jobs.json"
#define JOB_QUEUE_FILE_MAX (4U * 1024U * 1024U)
#define JOB_QUEUE_JOBS_MAX 1024U   /* jobs kept (finished ones are dropped first) */
#define JOB_QUEUE_GPUS_MAX 64U     /* GPUs of one VM */
#define JOB_QUEUE_ARGV_MAX 256U    /* arguments of a command */
#define JOB_QUEUE_ENV_MAX 512U     /* environment entries */
#define JOB_QUEUE_STRING_MAX 4096U /* bytes of one argument, entry, name or path */
#define JOB_QUEUE_AGING_USEC (600U * 1000000ULL)

typedef struct json_object json_object;

typedef enum JobState {
        JOB_QUEUED,
        JOB_STARTING,
        JOB_RUNNING,
        JOB_FINISHED,
        JOB_FAILED,
        JOB_CANCELLED,
        JOB_STOPPED,
        JOB_REQUEUED,
        _JOB_STATE_MAX,
        _JOB_STATE_INVALID = -EINVAL,
} JobState;

/* Why an active job is being stopped; kept in the file, so that an agent restarted while a job
 * stops still records it as cancelled or stopped. */
typedef enum JobStop {
        JOB_STOP_NONE,
        JOB_STOP_CANCEL, /* poolctl cancel: it ends CANCELLED */
        JOB_STOP_DRAIN,  /* a drain: it ends STOPPED */
        _JOB_STOP_MAX,
        _JOB_STOP_INVALID = -EINVAL,
} JobStop;

const char *job_stop_to_string(JobStop s);
JobStop job_stop_from_string(const char *s);

const char *job_state_to_string(JobState s);
JobState job_state_from_string(const char *s);
bool job_state_is_active(JobState s); /* STARTING or RUNNING */

typedef struct Job {
        uint64_t id;
        char *name;
        uid_t uid;
        gid_t gid;
        char **argv; /* NULL-terminated, at least one */
        char **env;  /* NULL-terminated, may be empty */
        char *cwd;
        unsigned cpus; /* slots it takes, >= 1 */
        unsigned gpus; /* GPUs it needs */
        JobState state;
        uint64_t gpu_mask; /* the GPUs it holds while active */
        char *unit;        /* transient unit name once STARTING */
        JobStop stop;      /* STARTING/RUNNING: asked to stop, and why */
        int exit_status;   /* FINISHED/FAILED: the service's exit status, -1 unknown */
        uint64_t submitted_usec, started_usec, ended_usec; /* CLOCK_REALTIME */
} Job;

typedef struct JobQueue {
        Job **jobs; /* submission order */
        size_t n_jobs;
        uint64_t next_id;
        unsigned slots_total; /* >= 1 */
        unsigned n_gpus;      /* <= JOB_QUEUE_GPUS_MAX */
        bool accepting;       /* false while draining: submit refused, nothing picked */
        char boot_id[40];
} JobQueue;

int job_queue_new(unsigned slots_total, unsigned n_gpus, JobQueue **ret);
JobQueue *job_queue_free(JobQueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(JobQueue *, job_queue_free);

/* Adds a QUEUED job (argv/env/cwd/name copied). -EBUSY when not accepting, -E2BIG when full of
 * unfinished jobs, -EINVAL for a bad spec (empty argv, more GPUs than the VM has, oversized). */
int job_queue_submit(
        JobQueue *q,
        const char *name,
        uid_t uid,
        gid_t gid,
        char *const *argv,
        char *const *env,
        const char *cwd,
        unsigned cpus,
        unsigned gpus,
        uint64_t now_usec,
        uint64_t *ret_id);
Job *job_queue_get(JobQueue *q, uint64_t id);

/* The next job to start at now_usec, or NULL; with *ret_gpu_mask the GPUs it would get. */
Job *job_queue_pick(JobQueue *q, uint64_t now_usec, uint64_t *ret_gpu_mask);
/* QUEUED -> STARTING with its unit and GPUs (save the queue before starting the unit). */
int job_queue_mark_starting(
        JobQueue *q, Job *j, const char *unit, uint64_t gpu_mask, uint64_t now_usec);
int job_queue_mark_running(JobQueue *q, Job *j);
/* An active job ended: FINISHED for exit status 0, FAILED otherwise (or STOPPED when stopped by
 * a drain). Frees its slots and GPUs. */
int job_queue_mark_ended(JobQueue *q, Job *j, int exit_status, bool stopped, uint64_t now_usec);
/* QUEUED -> CANCELLED (0), or -EBUSY for an active job (stop its unit first), -EALREADY when it
 * already ended. */
int job_queue_cancel(JobQueue *q, Job *j, uint64_t now_usec);
/* Drain: stop accepting; every QUEUED job becomes REQUEUED. Returns how many. */
unsigned job_queue_drain(JobQueue *q, uint64_t now_usec);
unsigned job_queue_n_active(const JobQueue *q);

/* Pure: the file's JSON and back. Parsing applies the restart rule against boot_id (see top). */
int job_queue_format(const JobQueue *q, char **ret);
int job_queue_parse(
        const char *json,
        size_t size,
        const char *boot_id,
        JobQueue *q,
        const char **reterr_reason);
int job_queue_load(const char *dir, const char *boot_id, JobQueue *q, const char **reterr_reason);
int job_queue_save(const char *dir, const JobQueue *q);
