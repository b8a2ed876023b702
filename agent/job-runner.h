/* SPDX-License-Identifier: MIT */
#pragma once

/* The node's job runner: drives the JobQueue (job-queue.h) on the agent's sd-event loop and runs
 * each job as a transient systemd service started over sd-bus (systemd supervises; we only ask).
 *
 *   unit      poolagent-job-<ID>.service in poolagent-jobs.slice, StartTransientUnit with
 *             mode "fail": User=/Group= the submitter (SO_PEERCRED), its environment (plus
 *             POOLAGENT_JOB_ID and, for GPU jobs, CUDA_VISIBLE_DEVICES with its disjoint GPUs),
 *             WorkingDirectory=, ExecStart=, stdout and stderr appended to the job's log file,
 *             RemainAfterExit=yes (the exit status stays readable until we collect it),
 *             TimeoutStopSec= the stop grace (SIGTERM, then SIGKILL from systemd).
 *   log       <StateDirectory>/job-logs/<ID>.log, created by the runner before the unit starts,
 *             owned by the job's user, mode 0600.
 *   state     <StateDirectory>/jobs.json through job_queue_save() before every StartTransientUnit
 *             and after every state change, so the queue survives agent restarts and reboots and
 *             a job never runs twice (see job-queue.h for the restart rule); a stop asked for
 *             (cancel, the drain) is written too, and asked again by a restarted agent.
 *
 * A job's end is learnt from systemd (PropertiesChanged of its unit, after Subscribe), read from
 * ExecMainCode/ExecMainStatus/Result, then the unit is stopped/reset so systemd collects it.
 * After an agent restart in the same boot, STARTING/RUNNING jobs are matched with their units:
 * a unit still there is watched again; a unit gone leaves the job FAILED ("unit vanished").
 *
 * Everything runs on the loop without blocking: every bus call is asynchronous. With no system
 * bus (or no systemd) the runner reports itself unavailable: submit fails with EHOSTDOWN and a
 * message, the rest of the agent works on. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct sd_bus sd_bus;
typedef struct json_object json_object;
typedef struct JobRunner JobRunner;

#define JOB_RUNNER_UNIT_PREFIX "poolagent-job-"
#define JOB_RUNNER_SLICE "poolagent-jobs.slice"
#define JOB_RUNNER_LOG_DIR "job-logs"
#define JOB_RUNNER_LOG_TAIL_MAX (48U * 1024U) /* bytes of a log that one "logs" reply carries */

typedef struct JobRunnerConfig {
        const char *state_directory; /* jobs.json and job-logs/ live here */
        unsigned slots;              /* jobs' CPU slots; 0: two per online CPU */
        unsigned gpus;               /* GPUs jobs may be given (CUDA_VISIBLE_DEVICES 0..gpus-1) */
        uint64_t stop_grace_usec;    /* TimeoutStopSec= of a job's unit */
} JobRunnerConfig;

/* Called on the loop whenever a job changed state (started, ended, cancelled, requeued): the
 * drain waits on it for the running jobs to end. */
typedef void (*JobRunnerChangeFn)(JobRunner *r, void *userdata);

/* bus may be NULL: the runner opens the system bus itself (sd_bus_open_system) and attaches it
 * to event; a given bus is referenced (tests, or one bus shared with other subsystems). */
int job_runner_new(sd_event *event, sd_bus *bus, const JobRunnerConfig *config, JobRunner **ret);
JobRunner *job_runner_free(JobRunner *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(JobRunner *, job_runner_free);

/* Loads jobs.json (boot id from /proc/sys/kernel/random/boot_id), subscribes to systemd, matches
 * active jobs with their units and starts what fits. A queue file that cannot be parsed is kept
 * aside as jobs.json.bad-<time> with an error naming it, and the runner starts empty. */
int job_runner_start(JobRunner *r);
bool job_runner_is_available(const JobRunner *r);
/* Why the runner cannot run jobs (static or owned by r), NULL while it can. */
const char *job_runner_unavailable_reason(const JobRunner *r);
/* The GPUs jobs may be given, once known (GPUs=auto follows the GPU check's count). Jobs holding
 * GPUs keep them; queued jobs that need more than there are wait. */
void job_runner_set_gpus(JobRunner *r, unsigned gpus);

void job_runner_set_change_hook(JobRunner *r, JobRunnerChangeFn fn, void *userdata);

/* ---- the control commands (poolctl submit/jobs/cancel/logs) ---------------------------------- */

/* Queues a job for uid/gid. argv: the command (NULL-terminated, at least one); env: its
 * environment (NULL-terminated); cwd: absolute. -EBUSY while draining, -EHOSTDOWN without
 * systemd, -E2BIG when full, -EINVAL for a bad spec (with *reterr_message, malloc'ed). */
int job_runner_submit(
        JobRunner *r,
        uid_t uid,
        gid_t gid,
        const char *name,
        char *const *argv,
        char *const *env,
        const char *cwd,
        unsigned cpus,
        unsigned gpus,
        uint64_t *ret_id,
        char **reterr_message);
/* Adds "jobs": [...] (every job uid may see: its own; all of them when uid is 0/admin) and the
 * queue's totals ("slots", "gpus", "accepting", "running", "queued"). */
int job_runner_list_json(JobRunner *r, uid_t uid, bool admin, json_object *o);
/* A queued job is cancelled at once; an active one is stopped through systemd (it ends as
 * CANCELLED when its unit stopped). -ENOENT: no such job; -EPERM: not the owner (nor admin);
 * -EALREADY: it already ended. */
int job_runner_cancel(JobRunner *r, uint64_t id, uid_t uid, bool admin);
/* The last JOB_RUNNER_LOG_TAIL_MAX bytes of the job's log (or from offset when offset >= 0)
 * as "log" (string), "offset" and "size". Same permission rules as cancel. */
int job_runner_logs_json(
        JobRunner *r, uint64_t id, uid_t uid, bool admin, int64_t offset, json_object *o);

/* ---- the drain (drain.c) -------------------------------------------------------------------- */

/* Stop starting jobs; every QUEUED job becomes REQUEUED. Returns how many were requeued. */
unsigned job_runner_stop_starting(JobRunner *r);
/* The drain was cancelled: accept and start jobs again (REQUEUED ones stay requeued). */
void job_runner_resume(JobRunner *r);
unsigned job_runner_n_active(const JobRunner *r);
/* Stops every active job through systemd (StopUnit: SIGTERM, stop grace, SIGKILL); each ends
 * as STOPPED. The change hook tells when they have. */
int job_runner_stop_all(JobRunner *r);
/* The jobs requeued since since_usec (CLOCK_REALTIME), each with everything needed to resubmit
 * it: {"id", "name", "uid", "user", "argv", "env", "cwd", "cpus", "gpus", "submitted"}. */
int job_runner_requeued_json(JobRunner *r, uint64_t since_usec, json_object **ret);

/* Jobs that ended since since_usec as FINISHED or FAILED, as STOPPED, and that were REQUEUED
 * since then (the drain report's "jobs": finished/stopped/requeued). */
void job_runner_counts_since(
        JobRunner *r,
        uint64_t since_usec,
        unsigned *ret_finished,
        unsigned *ret_stopped,
        unsigned *ret_requeued);

/* Adds "jobs" to the status object: totals and the active jobs. */
int job_runner_status_json(JobRunner *r, json_object *o);

/* ---- pure parts (unit tests) ---------------------------------------------------------------- */

typedef struct Job Job;

/* Whether a peer (uid, admin) may see, cancel and read the log of a job of job_uid. */
bool job_runner_may_access(uid_t job_uid, uid_t uid, bool admin);
/* The environment of a job's unit: the submitter's entries that systemd accepts (NAME=value,
 * NAME of [A-Za-z_][A-Za-z0-9_]*, value valid UTF-8), without those systemd sets for a service
 * (NOTIFY_SOCKET, INVOCATION_ID, ...) or the runner sets, then POOLAGENT_JOB_ID=<id> and, when
 * the VM has GPUs for jobs (n_gpus > 0), CUDA_VISIBLE_DEVICES= the job's GPUs ("0,2"; empty for a
 * job without GPUs, so that it does not use those given to others). */
int job_runner_job_env(const Job *j, unsigned n_gpus, char ***ret);
/* "0,2" for mask 0b101; "" for 0. */
void job_runner_format_gpus(uint64_t mask, char *buf, size_t size);

/* What a unit's properties (GetAll) say about a job in state STARTING or RUNNING. */
typedef enum JobUnitVerdict {
        JOB_UNIT_WAIT,    /* created, its start job not run yet */
        JOB_UNIT_RUNNING, /* its main process runs (or is being stopped) */
        JOB_UNIT_ENDED,   /* ended: *ret_exit_status is its status */
        JOB_UNIT_GONE,    /* no such unit (never started, or stopped and collected) */
        _JOB_UNIT_VERDICT_MAX,
        _JOB_UNIT_VERDICT_INVALID = -EINVAL,
} JobUnitVerdict;

typedef struct JobUnitStatus {
        char load_state[32];   /* LoadState: "loaded", "not-found", ... */
        char active_state[32]; /* ActiveState */
        char sub_state[32]; /* SubState: "exited" once a RemainAfterExit service's process ended */
        char result[32];    /* Result: "success", "exit-code", "signal", ... */
        int exec_main_code; /* ExecMainCode: CLD_EXITED, CLD_KILLED, CLD_DUMPED; 0 not yet */
        int exec_main_status; /* ExecMainStatus: exit status or signal */
} JobUnitStatus;

/* starting: the job is still STARTING (an inactive unit may not have started yet). Exit status:
 * the exit code, 128 + signal for a killed process, -1 unknown. */
JobUnitVerdict job_runner_unit_verdict(const JobUnitStatus *s, bool starting, int *ret_exit_status);
