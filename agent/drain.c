/* SPDX-License-Identifier: MIT */
#include "drain.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "drain-child.h"
#include "drain-state.h"
#include "http-client.h"
#include "job-runner.h"
#include "log.h"
#include "message-ids.h"
#include "scheduled-events.h"
#include "shutdown-inhibit.h"
#include "time-util.h"

typedef struct DrainFlushWaiter {
        DrainFlushFn cb;
        void *userdata;
        uint64_t timeout_usec;
        sd_event_source *defer;
        struct DrainFlushWaiter *next;
} DrainFlushWaiter;

struct Drain {
        sd_event *event;
        char *state_directory, *mount_point, *nologin_path, *exec_start, *exec_stop;
        char *metadata_endpoint, *vm_name;
        uint64_t hook_timeout_usec, flush_budget_usec, flush_timeout_usec, poll_interval_usec;
        bool notify_users, scheduled_events, shutdown_inhibitor;
        uint64_t manual_job_wait_usec, job_stop_grace_usec;
        ShutdownInhibit *inhibit;
        JobRunner *jobs;             /* not owned; NULL: no job queue */
        sd_event_source *jobs_defer; /* a job changed: look again (off the runner's callback) */
        bool jobs_stopping;          /* wait-jobs: the jobs were told to stop */
        bool hurry;                  /* a shutdown came during this drain: no more waiting */

        HttpClient *http;
        ScheduledEventsPoller *poller;
        DrainHealthFn health_fn;
        void *health_userdata;

        DrainState state;
        bool running;      /* the state machine is between steps or in one */
        bool draining;     /* reported not healthy */
        bool flush_failed; /* this drain's flush did not reach zero dirty bytes */
        DrainChild *children;
        DrainChild *step_child; /* the child the current step waits for */
        unsigned requeue_n;     /* stop-jobs: requeued jobs being written */
        sd_event_source *step_timer;
        uint64_t approve_request; /* in flight, 0: none */
        unsigned approve_attempts;
        unsigned flush_attempts;

        void (*shutdown_done)(void *userdata);
        void *shutdown_userdata;

        /* out-of-drain flushes (poolctl flush, stop): one child for all waiters */
        DrainChild *flush_child;
        DrainFlushWaiter *flush_waiters;
};

/* ---- state ----------------------------------------------------------------------------------- */

static uint64_t now_usec(void) {
        return (uint64_t)now_realtime_ns() / 1000U;
}

static void drain_save(Drain *d) {
        int r = drain_state_save(d->state_directory, &d->state);

        if (r < 0)
                log_error_errno(
                        r, "Failed to write %s/%s, a restart may repeat a step: %m",
                        d->state_directory, DRAIN_STATE_FILE);
}

static void drain_set_draining(Drain *d, bool draining) {
        if (d->draining == draining)
                return;
        d->draining = draining;
        if (d->health_fn)
                d->health_fn(draining, d->health_userdata);
}

bool drain_policy_runs(int source, int event_type, bool started, int step) {
        switch (source) {
        case DRAIN_SOURCE_SHUTDOWN:
                return step == DRAIN_STEP_NOT_HEALTHY || step == DRAIN_STEP_STOP_JOBS ||
                       step == DRAIN_STEP_WAIT_JOBS || step == DRAIN_STEP_FLUSH;
        case DRAIN_SOURCE_MANUAL:
                return step != DRAIN_STEP_APPROVE;
        case DRAIN_SOURCE_EVENT:
                if (step == DRAIN_STEP_APPROVE && started)
                        return false;
                if (event_type == SCHEDULED_EVENT_FREEZE)
                        return step == DRAIN_STEP_FLUSH || step == DRAIN_STEP_APPROVE;
                return true;
        default:
                return false;
        }
}

static uint64_t add_sat(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t drain_jobs_deadline(
        int source,
        int event_type,
        bool started,
        uint64_t not_before_usec,
        uint64_t drain_started_usec,
        uint64_t flush_budget_usec,
        uint64_t manual_job_wait_usec) {
        switch (source) {
        case DRAIN_SOURCE_EVENT:
                /* Preempt, an event the platform already started, or one without NotBefore:
                 * no waiting. */
                if (started || event_type == SCHEDULED_EVENT_PREEMPT || not_before_usec == 0)
                        return drain_started_usec;
                return not_before_usec > flush_budget_usec ? not_before_usec - flush_budget_usec
                                                           : 0;
        case DRAIN_SOURCE_MANUAL:
                return add_sat(drain_started_usec, manual_job_wait_usec);
        default: /* shutdown: at once (drain.h, footnote 2) */
                return drain_started_usec;
        }
}

uint64_t drain_job_stop_wait_usec(uint64_t job_stop_grace_usec) {
        return add_sat(
                job_stop_grace_usec > 0 ? job_stop_grace_usec : DRAIN_JOB_STOP_GRACE_DEFAULT_USEC,
                DRAIN_JOB_STOP_MARGIN_USEC);
}

static const char *drain_what(const Drain *d, char *buf, size_t size) {
        if (d->state.source == DRAIN_SOURCE_EVENT)
                (void)snprintf(
                        buf, size, "%s event %s",
                        scheduled_event_type_to_string(d->state.event_type), d->state.event_id);
        else
                (void)snprintf(buf, size, "%s drain", drain_source_to_string(d->state.source));
        return buf;
}

/* ---- the steps ------------------------------------------------------------------------------- */

static void drain_run(Drain *d);

static void drain_step_finish(Drain *d, DrainStepResult result, const char *format, ...)
        _printf_(3, 4);
static void drain_step_finish(Drain *d, DrainStepResult result, const char *format, ...) {
        DrainStepRecord *rec = &d->state.steps[d->state.step];
        char what[256];
        va_list ap;

        va_start(ap, format);
        (void)vsnprintf(rec->note, sizeof(rec->note), format, ap);
        va_end(ap);
        rec->result = result;
        rec->end_usec = now_usec();
        if (rec->start_usec == 0)
                rec->start_usec = rec->end_usec;
        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        log_full_errno(
                result == DRAIN_RESULT_FAILED ? LOG_WARNING : LOG_INFO, 0,
                "Drain (%s): step %s %s in %" PRIu64 " ms: %s", drain_what(d, what, sizeof(what)),
                drain_step_to_string(d->state.step), drain_step_result_to_string(result),
                (rec->end_usec - rec->start_usec) / 1000U, rec->note);
        d->state.step++;
        drain_run(d);
}

static int drain_on_step_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int drain_step_retry_in(Drain *d, uint64_t usec) {
        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        return sd_event_add_time_relative(
                d->event, &d->step_timer, CLOCK_MONOTONIC, usec, 10000, drain_on_step_timer, d);
}

/* (b) block logins */
static void drain_on_notify_done(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;

        d->step_child = NULL;
        unsigned ok = 0, n = 0;

        if (timed_out || sscanf(output, "%u %u", &ok, &n) != 2)
                drain_step_finish(
                        d, DRAIN_RESULT_DONE, "logins blocked (%s); telling users %s",
                        d->nologin_path, timed_out ? "timed out" : "failed");
        else
                drain_step_finish(
                        d, DRAIN_RESULT_DONE, "logins blocked (%s); told %u of %u terminals",
                        d->nologin_path, ok, n);
}

static void drain_block_logins(Drain *d) {
        _cleanup_free_ char *msg = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        char when[RFC1123_MAX] = "soon";
        int r;

        if (d->state.not_before_usec > 0)
                (void)format_rfc1123(when, (int64_t)d->state.not_before_usec * 1000);
        if (asprintf(
                    &msg,
                    "\r\n*** poolagent: this VM is being drained (%s) and goes away %s%s.\r\n"
                    "*** New logins are refused. Save your work; files in the workspace are "
                    "kept.\r\n",
                    d->state.source == DRAIN_SOURCE_EVENT
                            ? scheduled_event_type_to_string(d->state.event_type)
                            : drain_source_to_string(d->state.source),
                    d->state.not_before_usec > 0 ? "not before " : "", when) < 0 ||
            asprintf(&tmp, "%s.poolagent-tmp", d->nologin_path) < 0)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "out of memory");

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        r = fd < 0 ? NEG_ERRNO() : 0;
        if (r >= 0 && write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
                r = -EIO;
        if (r >= 0 && rename(tmp, d->nologin_path) < 0)
                r = NEG_ERRNO();
        if (r < 0) {
                (void)unlink(tmp);
                log_error_errno(r, "Failed to write %s: %m", d->nologin_path);
                return drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "cannot write %s: %s", d->nologin_path,
                        strerror(-r));
        }
        if (!d->notify_users)
                return drain_step_finish(
                        d, DRAIN_RESULT_DONE,
                        "logins blocked (%s); users not told (NotifyUsers=no)", d->nologin_path);
        r = drain_child_spawn(
                d->event, &d->children, DRAIN_NOTIFY_TIMEOUT_USEC, drain_notify_child_run, msg,
                drain_on_notify_done, d, &d->step_child);
        if (r < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_DONE, "logins blocked (%s); cannot tell users: %s",
                        d->nologin_path, strerror(-r));
}

/* hooks */
static void
drain_on_hook_done(DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;

        d->step_child = NULL;
        if (timed_out)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "hook killed after %" PRIu64 " s",
                        d->hook_timeout_usec / 1000000U);
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                drain_step_finish(d, DRAIN_RESULT_DONE, "hook succeeded");
        else if (WIFEXITED(status))
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "hook exited with status %d", WEXITSTATUS(status));
        else
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "hook killed by signal %d", WTERMSIG(status));
}

static void drain_run_hook(Drain *d, const char *command) {
        DrainHookArgs a = {.command = command};
        int r;

        if (!command)
                return drain_step_finish(d, DRAIN_RESULT_SKIPPED, "no hook configured");
        (void)snprintf(
                a.env[0], sizeof(a.env[0]), "POOLAGENT_DRAIN_SOURCE=%s",
                drain_source_to_string(d->state.source));
        (void)snprintf(a.env[1], sizeof(a.env[1]), "POOLAGENT_EVENT_ID=%s", d->state.event_id);
        (void)snprintf(
                a.env[2], sizeof(a.env[2]), "POOLAGENT_EVENT_TYPE=%s",
                d->state.event_type >= 0 ? scheduled_event_type_to_string(d->state.event_type)
                                         : "");
        (void)snprintf(
                a.env[3], sizeof(a.env[3]), "POOLAGENT_NOT_BEFORE=%" PRIu64,
                d->state.not_before_usec / 1000000U);
        r = drain_child_spawn(
                d->event, &d->children, d->hook_timeout_usec, drain_hook_child_run, &a,
                drain_on_hook_done, d, &d->step_child);
        if (r < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "cannot start the hook: %s", strerror(-r));
}

/* stop-jobs: no job starts any more; the queued ones go back to their owners */
static const char *drain_vm_name(Drain *d);

static void drain_on_requeue_done(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;
        unsigned written = 0, failed = 0;

        d->step_child = NULL;
        if (timed_out || drain_requeue_parse(output, &written, &failed) < 0)
                return drain_step_finish(
                        d, DRAIN_RESULT_FAILED,
                        "no job starts any more; %u requeued, writing them to the owners' "
                        "folders %s",
                        d->requeue_n, timed_out ? "timed out" : "failed");
        drain_step_finish(
                d, failed > 0 ? DRAIN_RESULT_FAILED : DRAIN_RESULT_DONE,
                "no job starts any more; %u requeued, %u written to Users/<user>/%s%s",
                written + failed, written, DRAIN_REQUEUED_DIR,
                failed > 0 ? " (some failed, see the log)" : "");
        if (failed > 0)
                log_warning(
                        "Drain: %u requeued job(s) could not be written to their owners' folders "
                        "on the share (%s/Users/<user> missing or not the owner's?)",
                        failed, d->mount_point);
}

/* The file handed to the owner: what the runner gives to resubmit the job, and where from. */
static char *drain_requeue_text(Drain *d, json_object *job) {
        json_object *o = json_object_new_object(), *from = json_object_new_object();
        char *text = NULL;
        int r = 0;

        if (!o || !from) {
                json_object_put(o);
                json_object_put(from);
                return NULL;
        }
        r |= json_object_object_add(o, "version", json_object_new_int(1));
        r |= json_object_object_add(o, "vm", json_object_new_string(drain_vm_name(d)));
        r |= json_object_object_add(
                from, "source", json_object_new_string(drain_source_to_string(d->state.source)));
        if (d->state.event_id[0]) {
                r |= json_object_object_add(
                        from, "event_id", json_object_new_string(d->state.event_id));
                r |= json_object_object_add(
                        from, "event_type",
                        json_object_new_string(
                                scheduled_event_type_to_string(d->state.event_type)));
        }
        r |= json_object_object_add(
                from, "started_usec", json_object_new_uint64(d->state.started_usec));
        r |= json_object_object_add(o, "drain", from);
        r |= json_object_object_add(o, "job", json_object_get(job));
        if (r >= 0)
                text = strdup(json_object_to_json_string_ext(
                        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return text;
}

/* A runner that cannot run jobs (no systemd) and has none active counts as no job queue. */
static bool drain_no_jobs(Drain *d) {
        if (!d->jobs)
                return true;
        if (job_runner_is_available(d->jobs) || job_runner_n_active(d->jobs) > 0)
                return false;
        log_info(
                "Drain: the job queue cannot run jobs (%s)",
                job_runner_unavailable_reason(d->jobs) ?: "unavailable");
        return true;
}

static void drain_stop_jobs(Drain *d) {
        json_object *list = NULL, *arr;
        DrainRequeueJob *jobs = NULL;
        char **texts = NULL, **names = NULL;
        size_t n = 0, m = 0;
        char vm[128];
        int r;

        if (!d->jobs)
                return drain_step_finish(d, DRAIN_RESULT_SKIPPED, "no job queue");
        (void)job_runner_stop_starting(d->jobs);
        /* Also those requeued by this drain before a restart: writing them again is harmless. */
        r = job_runner_requeued_json(d->jobs, d->state.started_usec, &list);
        if (r < 0)
                return drain_step_finish(
                        d, DRAIN_RESULT_FAILED,
                        "no job starts any more; cannot list requeued jobs: %s", strerror(-r));
        arr = json_object_is_type(list, json_type_array) ? list
              : json_object_object_get_ex(list, "jobs", &arr) &&
                              json_object_is_type(arr, json_type_array)
                      ? arr
                      : NULL;
        n = arr ? MIN(json_object_array_length(arr), (size_t)DRAIN_REQUEUE_JOBS_MAX) : 0;
        d->requeue_n = (unsigned)n;
        if (n == 0) {
                json_object_put(list);
                if (drain_no_jobs(d))
                        return drain_step_finish(d, DRAIN_RESULT_SKIPPED, "no job queue");
                return drain_step_finish(
                        d, DRAIN_RESULT_DONE, "no job starts any more; none was waiting");
        }
        (void)snprintf(vm, sizeof(vm), "%s", drain_vm_name(d));
        for (char *p = vm; *p; p++)
                if (*p == '/' || (p == vm && *p == '.'))
                        *p = '_';
        jobs = calloc(n, sizeof(*jobs));
        texts = calloc(n, sizeof(*texts));
        names = calloc(n, sizeof(*names));
        for (size_t i = 0; jobs && texts && names && i < n; i++) {
                json_object *j = json_object_array_get_idx(arr, i), *v;
                const char *user = NULL;
                int64_t uid = -1, id = -1;

                if (json_object_object_get_ex(j, "user", &v) &&
                    json_object_is_type(v, json_type_string))
                        user = json_object_get_string(v);
                if (json_object_object_get_ex(j, "uid", &v) &&
                    json_object_is_type(v, json_type_int))
                        uid = json_object_get_int64(v);
                if (json_object_object_get_ex(j, "id", &v) && json_object_is_type(v, json_type_int))
                        id = json_object_get_int64(v);
                if (!user || uid <= 0 || uid > (int64_t)UINT32_MAX - 1 || id < 0) {
                        log_warning("Drain: a requeued job without a usable owner or id, ignoring");
                        continue;
                }
                texts[m] = drain_requeue_text(d, j);
                if (!texts[m] || asprintf(&names[m], "%s-%" PRId64 ".json", vm, id) < 0) {
                        names[m] = NULL;
                        break;
                }
                jobs[m] = (DrainRequeueJob){
                        .uid = (uid_t)uid, .user = user, .name = names[m], .text = texts[m]};
                m++;
        }
        r = m > 0 ? drain_child_spawn(
                            d->event, &d->children, DRAIN_REQUEUE_TIMEOUT_USEC,
                            drain_requeue_child_run,
                            &(DrainRequeueArgs){
                                    .mount_point = d->mount_point, .jobs = jobs, .n_jobs = m},
                            drain_on_requeue_done, d, &d->step_child)
                  : -ENOMEM;
        for (size_t i = 0; texts && names && i < n; i++) {
                free(texts[i]);
                free(names[i]);
        }
        free(texts);
        free(names);
        free(jobs);
        json_object_put(list);
        if (r < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED,
                        "no job starts any more; %zu requeued, cannot write them to the owners' "
                        "folders: %s",
                        n, strerror(-r));
}

/* wait-jobs: until the deadline jobs may end on their own; then they are stopped */
static uint64_t drain_jobs_deadline_of(const Drain *d) {
        if (d->hurry)
                return 0;
        return drain_jobs_deadline(
                d->state.source, d->state.event_type, d->state.event_started,
                d->state.not_before_usec, d->state.started_usec, d->flush_budget_usec,
                d->manual_job_wait_usec);
}

static void drain_jobs_finish(Drain *d, unsigned left) {
        unsigned finished = 0, stopped = 0, requeued = 0;

        job_runner_counts_since(d->jobs, d->state.started_usec, &finished, &stopped, &requeued);
        d->jobs_stopping = false;
        if (left > 0) {
                log_warning(
                        "Drain: %u job(s) still active %" PRIu64
                        " s after they were told to stop, going on",
                        left, drain_job_stop_wait_usec(d->job_stop_grace_usec) / 1000000U);
                return drain_step_finish(
                        d, DRAIN_RESULT_FAILED,
                        "%u job(s) did not end %" PRIu64
                        " s after the stop; going on (%u finished, %u stopped)",
                        left, drain_job_stop_wait_usec(d->job_stop_grace_usec) / 1000000U, finished,
                        stopped);
        }
        drain_step_finish(
                d, DRAIN_RESULT_DONE, "no job runs: %u finished, %u stopped since the drain began",
                finished, stopped);
}

static void drain_jobs_check(Drain *d) {
        uint64_t deadline, now = now_usec();
        char when[RFC1123_MAX] = "?";
        unsigned n;
        int r;

        if (!d->running || d->state.step != DRAIN_STEP_WAIT_JOBS || !d->jobs)
                return;
        n = job_runner_n_active(d->jobs);
        if (n == 0)
                return drain_jobs_finish(d, 0);
        if (d->jobs_stopping)
                return; /* the last end or the stop timer decides */
        deadline = drain_jobs_deadline_of(d);
        if (now < deadline) {
                if (d->step_timer)
                        return;
                r = sd_event_add_time(
                        d->event, &d->step_timer, CLOCK_REALTIME, deadline, 10000,
                        drain_on_step_timer, d);
                if (r >= 0) {
                        (void)format_rfc1123(when, (int64_t)deadline * 1000);
                        log_info("Drain: %u job(s) running may end on their own until %s", n, when);
                        return;
                }
                log_warning_errno(r, "Failed to arm the jobs' deadline, stopping them now: %m");
        }
        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        r = job_runner_stop_all(d->jobs);
        if (r < 0) /* some may be stopping: wait for those all the same */
                log_error_errno(
                        r, "Failed to stop some of %u job(s), waiting for the others: %m", n);
        d->jobs_stopping = true;
        log_notice(
                "Drain: %s; stopping %u job(s) (SIGTERM, then SIGKILL after the stop grace)",
                d->hurry ? "the VM shuts down" : "the jobs' deadline passed", n);
        r = drain_step_retry_in(d, drain_job_stop_wait_usec(d->job_stop_grace_usec));
        if (r < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "%u job(s) told to stop; cannot wait: %s", n,
                        strerror(-r));
}

static void drain_jobs_on_timer(Drain *d) {
        if (!d->jobs_stopping)
                return drain_jobs_check(d); /* the deadline */
        drain_jobs_finish(d, job_runner_n_active(d->jobs));
}

static int drain_on_jobs_defer(sd_event_source *s, void *userdata) {
        Drain *d = userdata;

        d->jobs_defer = sd_event_source_disable_unref(d->jobs_defer);
        drain_jobs_check(d);
        return 0;
}

static void drain_on_jobs_changed(JobRunner *r, void *userdata) {
        Drain *d = userdata;
        int k;

        if (d->jobs_defer || !d->running || d->state.step != DRAIN_STEP_WAIT_JOBS)
                return;
        k = sd_event_add_defer(d->event, &d->jobs_defer, drain_on_jobs_defer, d);
        if (k < 0)
                log_warning_errno(k, "Failed to look at the jobs' change, ignoring: %m");
}

static void drain_wait_jobs(Drain *d) {
        if (drain_no_jobs(d))
                return drain_step_finish(d, DRAIN_RESULT_SKIPPED, "no job queue");
        d->jobs_stopping = false; /* after a restart: the deadline decides again */
        drain_jobs_check(d);
}

/* flush */

static uint64_t drain_flush_deadline(Drain *d) {
        uint64_t started = d->state.steps[DRAIN_STEP_FLUSH].start_usec;

        if (d->state.not_before_usec > 0)
                return d->state.not_before_usec;
        return started + d->flush_timeout_usec;
}

static void drain_flush_attempt(Drain *d);

static void
drain_on_flush_done(DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;

        d->step_child = NULL;
        int64_t before = -1, after = -1;
        bool fs = true;
        int r;

        r = timed_out ? -ETIMEDOUT : drain_flush_parse(output, &before, &after, &fs);
        if (r >= 0 && !fs) {
                d->state.dirty_bytes = 0;
                return drain_step_finish(
                        d, DRAIN_RESULT_DONE, "%s is not azfilesfs (no %s): 0 dirty bytes",
                        d->mount_point, DRAIN_DIRTY_XATTR);
        }
        if (before > 0 && after >= 0 && before > after)
                d->state.bytes_flushed += (uint64_t)(before - after);
        d->state.dirty_bytes = after;
        if (r >= 0 && after == 0)
                return drain_step_finish(
                        d, DRAIN_RESULT_DONE, "0 dirty bytes (%" PRId64 " flushed, attempt %u)",
                        before > 0 ? before : 0, d->flush_attempts);
        log_warning_errno(
                r < 0 ? r : -EBUSY, "Flush of %s (attempt %u) left %" PRId64 " dirty bytes: %m",
                d->mount_point, d->flush_attempts, after);
        if (now_usec() + DRAIN_RETRY_USEC + 1000000U < drain_flush_deadline(d) &&
            drain_step_retry_in(d, DRAIN_RETRY_USEC) >= 0)
                return;
        d->flush_failed = true;
        drain_step_finish(
                d, DRAIN_RESULT_FAILED, "dirty bytes remain (%" PRId64 ", %s) at the deadline",
                after, strerror(r < 0 ? -r : EBUSY));
}

static void drain_flush_attempt(Drain *d) {
        uint64_t now = now_usec(), deadline = drain_flush_deadline(d), left;
        DrainFlushArgs a = {.mount_point = d->mount_point};
        int r;

        left = deadline > now ? deadline - now : 0;
        left = MAX(left, (uint64_t)2000000U);
        a.seconds = MAX(left / 1000000U - 1U, (uint64_t)1U);
        d->flush_attempts++;
        r = drain_child_spawn(
                d->event, &d->children, left + 1000000U, drain_flush_child_run, &a,
                drain_on_flush_done, d, &d->step_child);
        if (r < 0) {
                d->flush_failed = true;
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "cannot start the flush: %s", strerror(-r));
        }
}

/* report */
static const char *drain_vm_name(Drain *d) {
        static char host[256];

        if (d->poller && scheduled_events_poller_vm_name(d->poller))
                return scheduled_events_poller_vm_name(d->poller);
        if (d->vm_name)
                return d->vm_name;
        if (gethostname(host, sizeof(host) - 1) < 0)
                return "unknown";
        return host;
}

static json_object *drain_report_json(Drain *d) {
        json_object *o = drain_state_drain_json(&d->state), *jobs;

        if (!o)
                return NULL;
        (void)json_object_object_add(o, "vm", json_object_new_string(drain_vm_name(d)));
        (void)json_object_object_add(o, "mount_point", json_object_new_string(d->mount_point));
        jobs = json_object_new_object();
        if (jobs) {
                unsigned finished = 0, stopped = 0, requeued = 0;

                if (d->jobs)
                        job_runner_counts_since(
                                d->jobs, d->state.started_usec, &finished, &stopped, &requeued);
                (void)json_object_object_add(
                        jobs, "queue", json_object_new_boolean(d->jobs != NULL));
                (void)json_object_object_add(jobs, "finished", json_object_new_int(finished));
                (void)json_object_object_add(jobs, "stopped", json_object_new_int(stopped));
                (void)json_object_object_add(jobs, "requeued", json_object_new_int(requeued));
                if (requeued > 0)
                        (void)json_object_object_add(
                                jobs, "requeued_to",
                                json_object_new_string("Users/<user>/" DRAIN_REQUEUED_DIR));
                (void)json_object_object_add(o, "jobs", jobs);
        }
        return o;
}

static void drain_on_report_done(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;

        d->step_child = NULL;
        if (timed_out)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "writing the report to the share timed out");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "writing the report to the share failed (%d)",
                        WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        else
                drain_step_finish(
                        d, DRAIN_RESULT_DONE, "written to %s/%s", d->mount_point, DRAIN_REPORT_DIR);
}

static void drain_write_report(Drain *d) {
        json_object *o;
        _cleanup_free_ char *text = NULL, *name = NULL;
        DrainReportArgs a;
        int r;

        o = drain_report_json(d);
        if (!o)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "out of memory");
        text = strdup(json_object_to_json_string_ext(
                o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        if (!text || (d->state.event_id[0]
                              ? asprintf(&name, "%s-%s.json", drain_vm_name(d), d->state.event_id)
                              : asprintf(
                                        &name, "%s-%s-%" PRIu64 ".json", drain_vm_name(d),
                                        drain_source_to_string(d->state.source),
                                        d->state.started_usec / 1000000U)) < 0)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "out of memory");
        if (strchr(name, '/'))
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "unusable report name");
        a = (DrainReportArgs){.mount_point = d->mount_point, .name = name, .text = text};
        r = drain_child_spawn(
                d->event, &d->children, DRAIN_REPORT_TIMEOUT_USEC, drain_report_child_run, &a,
                drain_on_report_done, d, &d->step_child);
        if (r < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "cannot start the writer: %s", strerror(-r));
}

/* approve */
static void drain_approve_send(Drain *d);

static void drain_on_approved(const HttpResult *res, void *userdata) {
        Drain *d = userdata;
        DrainEventRecord *e;

        d->approve_request = 0;
        if (res->error == -ECANCELED)
                return;
        e = drain_state_find_event(&d->state, d->state.event_id);
        if (res->error >= 0 && res->status >= 200 && res->status < 300) {
                if (e)
                        e->approval = DRAIN_APPROVAL_APPROVED;
                return drain_step_finish(
                        d, DRAIN_RESULT_DONE, "StartRequests for %s accepted (HTTP %ld)",
                        d->state.event_id, res->status);
        }
        /* Only retried when the service did not take it (no answer, 429, 5xx). */
        if ((res->error < 0 || res->status == 429 || res->status >= 500) &&
            d->approve_attempts < DRAIN_APPROVE_ATTEMPTS &&
            (d->state.not_before_usec == 0 || now_usec() < d->state.not_before_usec) &&
            drain_step_retry_in(d, DRAIN_RETRY_USEC) >= 0) {
                log_warning(
                        "Approving event %s failed (%s), retrying", d->state.event_id,
                        res->error < 0 ? strerror(-res->error) : "server error");
                return;
        }
        if (res->error < 0)
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "POST StartRequests failed: %s",
                        strerror(-res->error));
        else
                drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "POST StartRequests answered HTTP %ld",
                        res->status);
}

static void drain_approve_send(Drain *d) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL, *body = NULL;
        int r;

        d->approve_attempts++;
        if (asprintf(&url, "%s%s", d->metadata_endpoint, SCHEDULED_EVENTS_PATH) < 0)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "out of memory");
        r = scheduled_events_approval_body(d->state.event_id, &body);
        if (r >= 0)
                r = http_request_new("POST", url, &req);
        if (r >= 0)
                r = http_request_add_header(req, "Metadata", "true");
        if (r >= 0)
                r = http_request_add_header(req, "Content-Type", "application/json");
        if (r >= 0)
                r = http_request_set_body(req, body, strlen(body));
        if (r >= 0) {
                http_request_set_no_proxy(req, true);
                http_request_set_timeouts(req, SCHEDULED_EVENTS_REQUEST_TIMEOUT_MS, 2000, 0, 0);
                http_request_set_callback(req, drain_on_approved, d);
                r = http_client_submit(d->http, req, &d->approve_request);
        }
        if (r < 0)
                return drain_step_finish(
                        d, DRAIN_RESULT_FAILED, "cannot send StartRequests: %s", strerror(-r));
        TAKE_PTR(req);
}

static void drain_approve(Drain *d) {
        DrainEventRecord *e = drain_state_find_event(&d->state, d->state.event_id);

        if (d->flush_failed || d->state.dirty_bytes != 0)
                return drain_step_finish(
                        d, DRAIN_RESULT_SKIPPED,
                        "not approved: dirty bytes remain; the platform proceeds at NotBefore");
        if (!e)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "event record missing");
        if (e->approval != DRAIN_APPROVAL_NONE)
                return drain_step_finish(
                        d, DRAIN_RESULT_SKIPPED, "already %s before a restart; never sent twice",
                        drain_approval_to_string(e->approval));
        if (!d->http)
                return drain_step_finish(d, DRAIN_RESULT_FAILED, "no metadata service");
        /* Persisted before sending: an agent killed after this never sends it again. */
        e->approval = DRAIN_APPROVAL_APPROVING;
        drain_save(d);
        drain_approve_send(d);
}

static int drain_on_step_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Drain *d = userdata;

        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        if (d->state.step == DRAIN_STEP_FLUSH)
                drain_flush_attempt(d);
        else if (d->state.step == DRAIN_STEP_WAIT_JOBS)
                drain_jobs_on_timer(d);
        else if (d->state.step == DRAIN_STEP_APPROVE)
                drain_approve_send(d);
        return 0;
}

static void drain_finish(Drain *d) {
        _cleanup_free_ char *text = NULL;
        json_object *o;
        char what[256], field[64];
        DrainEventRecord *e;

        d->running = false;
        d->state.done = true;
        d->state.ended_usec = now_usec();
        d->state.step = _DRAIN_STEP_MAX - 1;
        e = d->state.event_id[0] ? drain_state_find_event(&d->state, d->state.event_id) : NULL;
        drain_save(d);
        o = drain_report_json(d);
        if (o) {
                if (e)
                        (void)json_object_object_add(
                                o, "approval",
                                json_object_new_string(drain_approval_to_string(e->approval)));
                text = strdup(json_object_to_json_string_ext(
                        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        }
        (void)snprintf(
                field, sizeof(field), "POOLAGENT_DRAIN_SOURCE=%s",
                drain_source_to_string(d->state.source));
        {
                _cleanup_free_ char *report_field = NULL, *event_field = NULL;

                if (asprintf(&report_field, "POOLAGENT_DRAIN_REPORT=%s", text ? text : "{}") < 0)
                        report_field = NULL;
                if (asprintf(&event_field, "POOLAGENT_EVENT_ID=%s", d->state.event_id) < 0)
                        event_field = NULL;
                (void)log_struct(
                        d->flush_failed ? LOG_WARNING : LOG_NOTICE, 0,
                        ((const char *[]){
                                POOLAGENT_MESSAGE_DRAIN_FINISHED, field,
                                event_field ? event_field : "POOLAGENT_EVENT_ID=",
                                report_field ? report_field : "POOLAGENT_DRAIN_REPORT={}", NULL}),
                        "Drain (%s) finished in %" PRIu64 " ms%s; report: %s",
                        drain_what(d, what, sizeof(what)),
                        (d->state.ended_usec - d->state.started_usec) / 1000U,
                        d->flush_failed ? " WITH DIRTY BYTES LEFT" : "", text ? text : "{}");
        }
        if (d->shutdown_done) {
                void (*done)(void *) = d->shutdown_done;

                d->shutdown_done = NULL;
                done(d->shutdown_userdata);
        }
}

static void drain_run(Drain *d) {
        DrainStepRecord *rec;
        DrainStep step;

        for (;;) {
                if (!d->running)
                        return;
                step = d->state.step;
                if (step >= _DRAIN_STEP_MAX)
                        return drain_finish(d);
                rec = &d->state.steps[step];
                if (!drain_policy_runs(
                            d->state.source, d->state.event_type, d->state.event_started, step)) {
                        rec->result = DRAIN_RESULT_SKIPPED;
                        (void)snprintf(rec->note, sizeof(rec->note), "not in this drain's policy");
                        d->state.step++;
                        continue;
                }
                break;
        }
        rec = &d->state.steps[step];
        rec->result = DRAIN_RESULT_RUNNING;
        rec->start_usec = now_usec();
        rec->end_usec = 0;
        rec->note[0] = '\0';
        drain_save(d);
        log_debug("Drain: step %s started", drain_step_to_string(step));

        switch (step) {
        case DRAIN_STEP_NOT_HEALTHY:
                drain_set_draining(d, true);
                return drain_step_finish(d, DRAIN_RESULT_DONE, "reported not healthy");
        case DRAIN_STEP_EXEC_START:
                return drain_run_hook(d, d->exec_start);
        case DRAIN_STEP_BLOCK_LOGINS:
                return drain_block_logins(d);
        case DRAIN_STEP_STOP_JOBS:
                return drain_stop_jobs(d);
        case DRAIN_STEP_WAIT_JOBS:
                return drain_wait_jobs(d);
        case DRAIN_STEP_FLUSH:
                d->flush_attempts = 0;
                d->flush_failed = false;
                return drain_flush_attempt(d);
        case DRAIN_STEP_EXEC_STOP:
                return drain_run_hook(d, d->exec_stop);
        case DRAIN_STEP_REPORT:
                return drain_write_report(d);
        case DRAIN_STEP_APPROVE:
                d->approve_attempts = 0;
                return drain_approve(d);
        default:
                return;
        }
}

static void drain_begin(Drain *d, DrainSource source, const ScheduledEvent *e) {
        char what[256];

        d->state.active = true;
        d->state.done = false;
        d->state.source = source;
        d->state.event_id[0] = '\0';
        d->state.event_type = _SCHEDULED_EVENT_TYPE_INVALID;
        d->state.not_before_usec = 0;
        d->state.event_started = false;
        if (e) {
                memcpy(d->state.event_id, e->id, sizeof(d->state.event_id));
                d->state.event_type = e->type;
                d->state.not_before_usec = e->not_before_usec;
                d->state.event_started = e->status == SCHEDULED_EVENT_STARTED;
        }
        d->state.step = 0;
        d->state.started_usec = now_usec();
        d->state.ended_usec = 0;
        d->state.bytes_flushed = 0;
        d->state.dirty_bytes = -1;
        memset(d->state.steps, 0, sizeof(d->state.steps));
        d->flush_failed = false;
        d->jobs_stopping = false;
        d->hurry = false;
        d->running = true;
        {
                char field[64];

                (void)snprintf(
                        field, sizeof(field), "POOLAGENT_DRAIN_SOURCE=%s",
                        drain_source_to_string(source));
                (void)log_struct(
                        LOG_NOTICE, 0,
                        ((const char *[]){POOLAGENT_MESSAGE_DRAIN_STARTED, field, NULL}),
                        "Drain (%s) started%s", drain_what(d, what, sizeof(what)),
                        d->state.event_started ? " (event already started: no approval)" : "");
        }
        drain_run(d);
}

/* ---- sources --------------------------------------------------------------------------------- */

void drain_on_scheduled_event(Drain *d, const ScheduledEvent *e) {
        DrainEventRecord *rec;

        if (drain_state_find_event(&d->state, e->id))
                return; /* handled once, also across restarts */
        if (d->running) {
                log_debug("Scheduled event %s waits for the running drain to finish", e->id);
                return; /* seen again at the next poll */
        }
        rec = drain_state_add_event(&d->state, e->id, e->type, now_usec());
        if (!rec)
                return (void)log_error("Scheduled event id %s unusable, ignoring", e->id);
        drain_begin(d, DRAIN_SOURCE_EVENT, e);
}

static void drain_on_poller_event(const ScheduledEvent *e, void *userdata) {
        drain_on_scheduled_event(userdata, e);
}

int drain_start_manual(Drain *d) {
        if (d->running)
                return -EALREADY;
        drain_begin(d, DRAIN_SOURCE_MANUAL, NULL);
        return 0;
}

static void drain_stop_children(Drain *d) {
        drain_child_abandon(d->step_child);
        d->step_child = NULL;
        d->step_timer = sd_event_source_disable_unref(d->step_timer);
        d->jobs_defer = sd_event_source_disable_unref(d->jobs_defer);
        d->jobs_stopping = false;
        if (d->approve_request) {
                (void)http_client_cancel(d->http, d->approve_request);
                d->approve_request = 0;
        }
}

int drain_cancel(Drain *d) {
        if (!d->state.active)
                return -ENOENT;
        drain_stop_children(d);
        d->running = false;
        d->state.active = false;
        if (unlink(d->nologin_path) < 0 && errno != ENOENT)
                log_warning_errno(
                        NEG_ERRNO(), "Failed to remove %s, ignoring: %m", d->nologin_path);
        drain_set_draining(d, false);
        drain_save(d);
        if (d->jobs)
                job_runner_resume(d->jobs);
        log_notice("Drain cancelled: healthy again, logins allowed, jobs start again");
        if (d->shutdown_done) {
                void (*done)(void *) = d->shutdown_done;

                d->shutdown_done = NULL;
                done(d->shutdown_userdata);
        }
        return 0;
}

int drain_start_shutdown(Drain *d, void (*done)(void *userdata), void *userdata) {
        char what[256];

        if (d->running) {
                /* Not past wait-jobs: no more waiting for jobs (they are stopped now, before its
                 * flush); the shutdown goes when this drain finished. */
                if (!d->jobs || d->shutdown_done || d->state.step > DRAIN_STEP_WAIT_JOBS ||
                    !drain_policy_runs(
                            d->state.source, d->state.event_type, d->state.event_started,
                            DRAIN_STEP_WAIT_JOBS))
                        return -EALREADY;
                d->hurry = true;
                d->shutdown_done = done;
                d->shutdown_userdata = userdata;
                log_notice(
                        "Shutdown during the drain (%s): running jobs are stopped now, the "
                        "shutdown waits for the drain",
                        drain_what(d, what, sizeof(what)));
                drain_jobs_check(d); /* in wait-jobs: stops them now */
                return 0;
        }
        d->shutdown_done = done;
        d->shutdown_userdata = userdata;
        drain_begin(d, DRAIN_SOURCE_SHUTDOWN, NULL);
        return 0;
}

/* ---- out-of-drain flushes -------------------------------------------------------------------- */

static void drain_on_plain_flush(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Drain *d = userdata;

        d->flush_child = NULL;
        int64_t before = -1, after = -1;
        bool fs = true;
        char note[160];
        int r;

        r = timed_out ? -ETIMEDOUT : drain_flush_parse(output, &before, &after, &fs);
        if (r >= 0 && !fs) {
                after = 0;
                (void)snprintf(
                        note, sizeof(note), "%s is not azfilesfs: 0 dirty bytes", d->mount_point);
        } else if (r >= 0 && after == 0)
                (void)snprintf(
                        note, sizeof(note), "0 dirty bytes (%" PRId64 " flushed)",
                        before > 0 ? before : 0);
        else {
                if (r >= 0)
                        r = -EBUSY;
                (void)snprintf(
                        note, sizeof(note), "%" PRId64 " dirty bytes remain: %s", after,
                        strerror(-r));
        }
        while (d->flush_waiters) {
                DrainFlushWaiter *w = d->flush_waiters;

                d->flush_waiters = w->next;
                w->cb(r, after, note, w->userdata);
                free(w);
        }
}

int drain_flush(Drain *d, uint64_t timeout_usec, DrainFlushFn cb, void *userdata) {
        DrainFlushWaiter *w;
        DrainFlushArgs a = {.mount_point = d->mount_point};
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->cb = cb;
        w->userdata = userdata;
        if (!d->flush_child) {
                a.seconds = MAX(timeout_usec / 1000000U, (uint64_t)1U);
                r = drain_child_spawn(
                        d->event, &d->children, timeout_usec + 1000000U, drain_flush_child_run, &a,
                        drain_on_plain_flush, d, &d->flush_child);
                if (r < 0) {
                        free(w);
                        return r;
                }
        }
        w->next = d->flush_waiters;
        d->flush_waiters = w;
        return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static int strdup_or_null(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int drain_new(sd_event *event, const DrainConfig *c, Drain **ret) {
        _cleanup_(drain_freep) Drain *d = NULL;
        int r = 0;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->event = sd_event_ref(event);
        drain_state_init(&d->state);
        r |= strdup_or_null(c->state_directory, &d->state_directory);
        r |= strdup_or_null(c->mount_point, &d->mount_point);
        r |= strdup_or_null(c->nologin_path, &d->nologin_path);
        r |= strdup_or_null(c->exec_start, &d->exec_start);
        r |= strdup_or_null(c->exec_stop, &d->exec_stop);
        r |= strdup_or_null(c->metadata_endpoint, &d->metadata_endpoint);
        r |= strdup_or_null(c->vm_name, &d->vm_name);
        if (r < 0)
                return -ENOMEM;
        d->hook_timeout_usec = c->hook_timeout_usec;
        d->flush_budget_usec = c->flush_budget_usec;
        d->flush_timeout_usec = c->flush_timeout_usec;
        d->poll_interval_usec = c->poll_interval_usec;
        d->notify_users = c->notify_users;
        d->shutdown_inhibitor = c->shutdown_inhibitor;
        d->manual_job_wait_usec = c->manual_job_wait_usec;
        d->job_stop_grace_usec = c->job_stop_grace_usec;
        d->scheduled_events = c->scheduled_events && d->metadata_endpoint;
        if (d->scheduled_events) {
                const ScheduledEventsPollerConfig pc = {
                        .endpoint = d->metadata_endpoint,
                        .vm_name = d->vm_name,
                        .interval_usec = d->poll_interval_usec,
                };

                r = http_client_new(event, &(HttpClientConfig){.max_in_flight = 4}, &d->http);
                if (r < 0)
                        return r;
                r = scheduled_events_poller_new(
                        event, d->http, &pc, drain_on_poller_event, d, &d->poller);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(d);
        return 0;
}

Drain *drain_free(Drain *d) {
        if (!d)
                return NULL;
        d->running = false;
        drain_stop_children(d);
        if (d->jobs)
                job_runner_set_change_hook(d->jobs, NULL, NULL);
        /* First: it completes what is in flight at once (-ECANCELED) while the poller and we are
         * still there to be called back. */
        d->http = http_client_free(d->http);
        scheduled_events_poller_free(d->poller);
        shutdown_inhibit_free(d->inhibit);
        while (d->flush_waiters) {
                DrainFlushWaiter *w = d->flush_waiters;

                d->flush_waiters = w->next;
                w->cb(-ECANCELED, -1, "the agent is stopping", w->userdata);
                free(w);
        }
        drain_child_free_all(&d->children);
        sd_event_unref(d->event);
        free(d->state_directory);
        free(d->mount_point);
        free(d->nologin_path);
        free(d->exec_start);
        free(d->exec_stop);
        free(d->metadata_endpoint);
        free(d->vm_name);
        free(d);
        return NULL;
}

void drain_set_job_runner(Drain *d, JobRunner *r) {
        if (d->jobs)
                job_runner_set_change_hook(d->jobs, NULL, NULL);
        d->jobs = r;
        if (r)
                job_runner_set_change_hook(r, drain_on_jobs_changed, d);
}

void drain_set_health_hook(Drain *d, DrainHealthFn fn, void *userdata) {
        d->health_fn = fn;
        d->health_userdata = userdata;
        if (fn && d->draining)
                fn(true, userdata);
}

static void
drain_on_shutdown_flushed(int r, int64_t dirty_bytes, const char *note, void *userdata) {
        Drain *d = userdata;

        log_full_errno(
                r < 0 ? LOG_WARNING : LOG_INFO, r, "Flush before shutdown: %s; letting it proceed",
                note);
        shutdown_inhibit_release(d->inhibit);
}

static void drain_on_shutdown_drained(void *userdata) {
        Drain *d = userdata;

        log_info("Shutdown drain finished; letting the shutdown proceed");
        shutdown_inhibit_release(d->inhibit);
}

static void drain_on_prepare_shutdown(ShutdownInhibit *s, void *userdata) {
        Drain *d = userdata;

        if (drain_start_shutdown(d, drain_on_shutdown_drained, d) >= 0)
                return;
        /* A drain past wait-jobs is running: flush once more (bounded) and let the shutdown go. */
        if (drain_flush(d, d->flush_timeout_usec, drain_on_shutdown_flushed, d) < 0)
                shutdown_inhibit_release(s);
}

int drain_start(Drain *d) {
        char boot_id[DRAIN_BOOT_ID_MAX];
        const char *reason = NULL;
        char what[256];
        int r;

        drain_read_boot_id(boot_id);
        r = drain_state_load(d->state_directory, &d->state, &reason);
        if (r == -ENOENT)
                drain_state_init(&d->state);
        else if (r < 0) {
                log_error_errno(
                        r, "Failed to read %s/%s (%s), starting with a fresh drain state: %m",
                        d->state_directory, DRAIN_STATE_FILE, reason ? reason : "unreadable");
                drain_state_init(&d->state);
        }
        if (d->state.active && !streq(d->state.boot_id, boot_id)) {
                log_info(
                        "The drain recorded in %s/%s was in an earlier boot; not resuming it",
                        d->state_directory, DRAIN_STATE_FILE);
                d->state.active = false;
        }
        memcpy(d->state.boot_id, boot_id, sizeof(boot_id));
        if (d->state.active &&
            drain_policy_runs(
                    d->state.source, d->state.event_type, d->state.event_started,
                    DRAIN_STEP_NOT_HEALTHY) &&
            d->state.steps[DRAIN_STEP_NOT_HEALTHY].result != DRAIN_RESULT_PENDING)
                drain_set_draining(d, true);
        /* A drain of this boot past stop-jobs (running or finished) keeps the queue closed. */
        if (d->jobs && d->state.active &&
            (d->state.steps[DRAIN_STEP_STOP_JOBS].result == DRAIN_RESULT_DONE ||
             d->state.steps[DRAIN_STEP_STOP_JOBS].result == DRAIN_RESULT_FAILED))
                (void)job_runner_stop_starting(d->jobs);
        if (d->state.active && !d->state.done) {
                if (d->state.source == DRAIN_SOURCE_SHUTDOWN) {
                        /* the shutdown it served is gone with the old process */
                        d->state.done = true;
                } else {
                        log_notice(
                                "Resuming the drain (%s) at step %s after a restart",
                                drain_what(d, what, sizeof(what)),
                                drain_step_to_string(d->state.step));
                        d->running = true;
                        drain_run(d);
                }
        }
        drain_save(d);
        if (d->shutdown_inhibitor) {
                const char *why = NULL;

                r = shutdown_inhibit_new(
                        d->event, "Flushing the workspace before the VM goes down",
                        drain_on_prepare_shutdown, d, &d->inhibit, &why);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the shutdown inhibitor: %m");
                if (why)
                        log_info(
                                "No shutdown delay lock (%s); a shutdown gets the final flush "
                                "in the agent's stop path only",
                                why);
        }
        if (d->poller) {
                r = scheduled_events_poller_start(d->poller);
                if (r < 0)
                        return log_error_errno(r, "Failed to start polling scheduled events: %m");
        }
        return 0;
}

bool drain_is_draining(const Drain *d) {
        return d->draining;
}

bool drain_is_running(const Drain *d) {
        return d->running;
}

int drain_status_json(Drain *d, json_object *o) {
        json_object *s = NULL, *cfg;
        int r = 0;

        if (d->state.active) {
                s = drain_state_drain_json(&d->state);
                if (!s)
                        return -ENOMEM;
        } else
                s = json_object_new_object();
        if (!s || json_object_object_add(o, "drain", s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        r |= json_object_object_add(
                s, "state",
                json_object_new_string(
                        d->running        ? "running"
                        : d->state.active ? "drained"
                                          : "idle"));
        r |= json_object_object_add(s, "draining", json_object_new_boolean(d->draining));
        if (d->running && d->jobs && d->state.step == DRAIN_STEP_WAIT_JOBS) {
                r |= json_object_object_add(
                        s, "jobs_deadline_usec", json_object_new_uint64(drain_jobs_deadline_of(d)));
                r |= json_object_object_add(
                        s, "jobs_active", json_object_new_int((int)job_runner_n_active(d->jobs)));
                r |= json_object_object_add(
                        s, "jobs_stopping", json_object_new_boolean(d->jobs_stopping));
        }
        r |= json_object_object_add(
                s, "handled_events", json_object_new_int64((int64_t)d->state.n_events));
        cfg = json_object_new_object();
        if (cfg && json_object_object_add(s, "config", cfg) >= 0) {
                r |= json_object_object_add(
                        cfg, "nologin", json_object_new_string(d->nologin_path));
                r |= json_object_object_add(
                        cfg, "flush_budget_ms",
                        json_object_new_uint64(d->flush_budget_usec / 1000U));
                r |= json_object_object_add(
                        cfg, "manual_job_wait_ms",
                        json_object_new_uint64(d->manual_job_wait_usec / 1000U));
                r |= json_object_object_add(
                        cfg, "job_stop_wait_ms",
                        json_object_new_uint64(
                                drain_job_stop_wait_usec(d->job_stop_grace_usec) / 1000U));
                r |= json_object_object_add(
                        cfg, "job_queue", json_object_new_boolean(d->jobs != NULL));
                r |= json_object_object_add(
                        cfg, "exec_start",
                        d->exec_start ? json_object_new_string(d->exec_start) : NULL);
                r |= json_object_object_add(
                        cfg, "exec_stop",
                        d->exec_stop ? json_object_new_string(d->exec_stop) : NULL);
        } else
                json_object_put(cfg);
        r |= json_object_object_add(
                s, "shutdown_inhibitor",
                json_object_new_string(
                        shutdown_inhibit_is_held(d->inhibit)     ? "held"
                        : shutdown_inhibit_is_active(d->inhibit) ? "not held"
                                                                 : "inactive"));
        if (d->poller)
                r |= scheduled_events_poller_status_json(d->poller, s);
        return r < 0 ? -ENOMEM : 0;
}

const char *drain_status_summary(const Drain *d) {
        static char buf[64];

        if (d->running)
                (void)snprintf(
                        buf, sizeof(buf), ", DRAINING (%s)", drain_step_to_string(d->state.step));
        else if (d->state.active && d->draining)
                (void)snprintf(buf, sizeof(buf), ", DRAINED");
        else
                buf[0] = '\0';
        return buf;
}
