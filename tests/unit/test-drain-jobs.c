/* SPDX-License-Identifier: MIT */
/* The drain's job steps on a real sd-event loop, against a stand-in for the job runner: this file
 * defines the job_runner_* functions the drain uses (job-runner.h, "the drain" part), so the
 * linker takes them instead of job-runner.c, and no systemd is needed. It checks what the drain
 * does with them: the deadline table (pure), the policy for the shutdown source, a job that ends
 * before the deadline (the step ends right after it, never before; nothing is stopped), a job
 * that outlives the deadline (stopped at the deadline, not before), jobs that never end (the
 * drain goes on after the stop wait), queued jobs written to their owner's folder as the owner,
 * the deadline kept across a restart mid-wait, cancel resuming the queue, a shutdown stopping
 * jobs at once and flushing after they ended, the report's counts, and no runner at all. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "drain-child.h"
#include "drain-state.h"
#include "drain.h"
#include "job-runner.h"
#include "macro.h"
#include "scheduled-events.h"

#define SEC 1000000ULL
#define MSEC 1000ULL
#define OWNER_UID 65534U
#define OWNER_NAME "nobody"

static uint64_t now_us(void) {
        struct timespec ts;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec / 1000U;
}

/* ---- the stand-in runner --------------------------------------------------------------------- */

struct JobRunner {
        sd_event *event;
        JobRunnerChangeFn fn;
        void *userdata;
        bool accepting;
        unsigned active, queued;
        unsigned finished, stopped, requeued;
        uint64_t requeued_usec;
        int stop_starting_calls, stop_all_calls, resume_calls;
        uint64_t stop_all_usec;       /* the first stop_all, 0: never */
        uint64_t end_after_stop_usec; /* a stopped job ends this long after stop_all */
        bool never_end;               /* stopped jobs do not end */
        bool unavailable;             /* no systemd */
        uint64_t last_end_usec;       /* when the last job ended */
        sd_event_source *end_timer;   /* a running job ends on its own */
        sd_event_source *stop_timer;  /* the stopped jobs end */
};

static JobRunner runner;

static void runner_changed(JobRunner *r) {
        if (r->fn)
                r->fn(r, r->userdata);
}

static int runner_on_end(sd_event_source *s, uint64_t usec, void *userdata) {
        JobRunner *r = userdata;

        if (r->active > 0) {
                r->active--;
                r->finished++;
                r->last_end_usec = now_us();
                runner_changed(r);
        }
        return 0;
}

static int runner_on_stopped(sd_event_source *s, uint64_t usec, void *userdata) {
        JobRunner *r = userdata;

        r->stopped += r->active;
        r->active = 0;
        r->last_end_usec = now_us();
        runner_changed(r);
        return 0;
}

unsigned job_runner_stop_starting(JobRunner *r) {
        unsigned n = r->queued;

        r->stop_starting_calls++;
        r->accepting = false;
        if (n > 0) {
                r->requeued += n;
                r->queued = 0;
                r->requeued_usec = now_us();
        }
        return n;
}

bool job_runner_is_available(const JobRunner *r) {
        return !r->unavailable;
}

const char *job_runner_unavailable_reason(const JobRunner *r) {
        return r->unavailable ? "no system bus" : NULL;
}

void job_runner_resume(JobRunner *r) {
        r->resume_calls++;
        r->accepting = true;
}

unsigned job_runner_n_active(const JobRunner *r) {
        return r->active;
}

int job_runner_stop_all(JobRunner *r) {
        r->stop_all_calls++;
        if (r->stop_all_usec == 0)
                r->stop_all_usec = now_us();
        if (r->never_end || r->stop_timer)
                return 0;
        return sd_event_add_time_relative(
                r->event, &r->stop_timer, CLOCK_MONOTONIC, r->end_after_stop_usec, 1000,
                runner_on_stopped, r);
}

int job_runner_requeued_json(JobRunner *r, uint64_t since_usec, json_object **ret) {
        json_object *a = json_object_new_array();

        for (unsigned i = 0; r->requeued_usec >= since_usec && i < r->requeued; i++) {
                json_object *j = json_object_new_object(), *argv = json_object_new_array();

                (void)json_object_array_add(argv, json_object_new_string("/bin/echo"));
                (void)json_object_array_add(argv, json_object_new_string("hello"));
                (void)json_object_object_add(j, "id", json_object_new_int64(100 + i));
                (void)json_object_object_add(j, "name", json_object_new_string("train"));
                (void)json_object_object_add(j, "uid", json_object_new_int64(OWNER_UID));
                (void)json_object_object_add(j, "user", json_object_new_string(OWNER_NAME));
                (void)json_object_object_add(j, "argv", argv);
                (void)json_object_object_add(j, "env", json_object_new_array());
                (void)json_object_object_add(j, "cwd", json_object_new_string("/"));
                (void)json_object_object_add(j, "cpus", json_object_new_int(1));
                (void)json_object_object_add(j, "gpus", json_object_new_int(0));
                (void)json_object_array_add(a, j);
        }
        *ret = a;
        return 0;
}

void job_runner_counts_since(
        JobRunner *r,
        uint64_t since_usec,
        unsigned *ret_finished,
        unsigned *ret_stopped,
        unsigned *ret_requeued) {
        *ret_finished = r->finished;
        *ret_stopped = r->stopped;
        *ret_requeued = r->requeued;
}

void job_runner_set_change_hook(JobRunner *r, JobRunnerChangeFn fn, void *userdata) {
        r->fn = fn;
        r->userdata = userdata;
}

/* ---- fixture --------------------------------------------------------------------------------- */

static sd_event *event;
static char base[] = "/var/tmp/test-drain-jobs-XXXXXX";
static char state_dir[128], mnt[128], nologin[128];
static Drain *drain;
static uint64_t job_stop_grace_usec = 200 * MSEC;
static uint64_t manual_job_wait_usec = 5 * SEC;
static uint64_t flush_budget_usec = SEC;
static bool with_runner = true;

static void new_drain(void) {
        const DrainConfig c = {
                .state_directory = state_dir,
                .mount_point = mnt,
                .nologin_path = nologin,
                .hook_timeout_usec = SEC,
                .flush_budget_usec = flush_budget_usec,
                .flush_timeout_usec = 5 * SEC,
                .notify_users = false,
                .scheduled_events = false,
                .vm_name = "testvm",
                .poll_interval_usec = SEC,
                .shutdown_inhibitor = false,
                .manual_job_wait_usec = manual_job_wait_usec,
                .job_stop_grace_usec = job_stop_grace_usec,
        };

        ck_assert_int_eq(drain_new(event, &c, &drain), 0);
        if (with_runner)
                drain_set_job_runner(drain, &runner);
        ck_assert_int_eq(drain_start(drain), 0);
}

static void setup(void) {
        ck_assert_int_eq(sd_event_new(&event), 0);
        memcpy(base, "/var/tmp/test-drain-jobs-XXXXXX", sizeof(base));
        ck_assert_ptr_nonnull(mkdtemp(base));
        (void)snprintf(state_dir, sizeof(state_dir), "%s/state", base);
        (void)snprintf(mnt, sizeof(mnt), "%s/mnt", base);
        (void)snprintf(nologin, sizeof(nologin), "%s/nologin", base);
        ck_assert_int_eq(mkdir(mnt, 0755), 0);
        memset(&runner, 0, sizeof(runner));
        runner.event = event;
        runner.accepting = true;
        runner.end_after_stop_usec = 100 * MSEC;
        job_stop_grace_usec = 200 * MSEC;
        manual_job_wait_usec = 5 * SEC;
        flush_budget_usec = SEC;
        with_runner = true;
        drain = NULL;
}

static void teardown(void) {
        char cmd[256];

        drain = drain_free(drain);
        runner.end_timer = sd_event_source_disable_unref(runner.end_timer);
        runner.stop_timer = sd_event_source_disable_unref(runner.stop_timer);
        event = sd_event_unref(event);
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
        ck_assert_int_eq(system(cmd), 0);
}

/* Runs the loop until the drain stopped running, bounded by limit_usec of wall time. */
static void run_until_done(uint64_t limit_usec) {
        uint64_t end = now_us() + limit_usec;

        while (drain_is_running(drain) && now_us() < end)
                ck_assert_int_ge(sd_event_run(event, 10 * MSEC), 0);
        ck_assert_msg(!drain_is_running(drain), "the drain did not finish in time");
}

static void run_for(uint64_t usec) {
        uint64_t end = now_us() + usec;

        while (now_us() < end)
                ck_assert_int_ge(sd_event_run(event, 10 * MSEC), 0);
}

static void load_state(DrainState *s) {
        const char *reason = NULL;

        ck_assert_int_eq(drain_state_load(state_dir, s, &reason), 0);
}

static void job_ends_in(uint64_t usec) {
        ck_assert_int_eq(
                sd_event_add_time_relative(
                        event, &runner.end_timer, CLOCK_MONOTONIC, usec, 1000, runner_on_end,
                        &runner),
                0);
}

static void feed_event(const char *id, ScheduledEventType type, uint64_t not_before_usec) {
        ScheduledEvent e = {
                .type = type,
                .status = SCHEDULED_EVENT_SCHEDULED,
                .not_before_usec = not_before_usec,
                .duration_s = -1,
                .for_this_vm = true,
        };

        (void)snprintf(e.id, sizeof(e.id), "%s", id);
        drain_on_scheduled_event(drain, &e);
}

static json_object *read_json(const char *path) {
        json_object *o = json_object_from_file(path);

        ck_assert_msg(o != NULL, "cannot read %s", path);
        return o;
}

static int64_t jint(json_object *o, const char *a, const char *b) {
        json_object *v = NULL;

        ck_assert(json_object_object_get_ex(o, a, &v));
        if (b)
                ck_assert(json_object_object_get_ex(v, b, &v));
        return json_object_get_int64(v);
}

/* The report of a manual or shutdown drain: the only file in drain-reports. */
static json_object *read_report(void) {
        char dir[256], path[1024], cmd[300];
        FILE *f;

        (void)snprintf(dir, sizeof(dir), "%s/%s", mnt, DRAIN_REPORT_DIR);
        (void)snprintf(cmd, sizeof(cmd), "ls '%s'", dir);
        f = popen(cmd, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(cmd, sizeof(cmd), f));
        (void)pclose(f);
        cmd[strcspn(cmd, "\n")] = '\0';
        (void)snprintf(path, sizeof(path), "%s/%s", dir, cmd);
        return read_json(path);
}

/* ---- pure ------------------------------------------------------------------------------------ */

START_TEST(test_deadline_table) {
        const uint64_t start = 1000 * SEC, nb = 1300 * SEC, budget = 10 * SEC;

        /* Terminate, Reboot, Redeploy: NotBefore minus the flush budget */
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, nb, start, budget, 0),
                nb - budget);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_REBOOT, false, nb, start, budget, 0),
                nb - budget);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_REDEPLOY, false, nb, start, budget, 0),
                nb - budget);
        /* a NotBefore closer than the budget: at once (before the drain began) */
        ck_assert_uint_le(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, start + SEC, start,
                        budget, 0),
                start);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, 5 * SEC, start,
                        budget, 0),
                0);
        /* Preempt, an event already Started, no NotBefore: no waiting */
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_PREEMPT, false, nb, start, budget, 0),
                start);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, true, nb, start, budget, 0),
                start);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, 0, start, budget, 0),
                start);
        /* manual: ManualJobWait= from the drain's start (saturating) */
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_MANUAL, -EINVAL, false, 0, start, budget, 60 * SEC),
                start + 60 * SEC);
        ck_assert_uint_eq(
                drain_jobs_deadline(DRAIN_SOURCE_MANUAL, -EINVAL, false, 0, start, budget, 0),
                start);
        ck_assert_uint_eq(
                drain_jobs_deadline(
                        DRAIN_SOURCE_MANUAL, -EINVAL, false, 0, start, budget, UINT64_MAX),
                UINT64_MAX);
        /* shutdown: at once */
        ck_assert_uint_eq(
                drain_jobs_deadline(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, 0, start, budget, 0),
                start);
        /* the stop wait: the grace (or the default) plus the margin */
        ck_assert_uint_eq(drain_job_stop_wait_usec(SEC), SEC + DRAIN_JOB_STOP_MARGIN_USEC);
        ck_assert_uint_eq(
                drain_job_stop_wait_usec(0),
                DRAIN_JOB_STOP_GRACE_DEFAULT_USEC + DRAIN_JOB_STOP_MARGIN_USEC);
        ck_assert_uint_eq(drain_job_stop_wait_usec(UINT64_MAX), UINT64_MAX);
}
END_TEST

START_TEST(test_policy_table) {
        const int job_steps[] = {DRAIN_STEP_STOP_JOBS, DRAIN_STEP_WAIT_JOBS};

        for (size_t i = 0; i < ELEMENTSOF(job_steps); i++) {
                int s = job_steps[i];

                ck_assert(drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, s));
                ck_assert(drain_policy_runs(DRAIN_SOURCE_MANUAL, -EINVAL, false, s));
                ck_assert(
                        drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, s));
                ck_assert(drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_PREEMPT, false, s));
                ck_assert(!drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_FREEZE, false, s));
        }
        /* the shutdown: jobs stopped before the flush; no hooks, no report, no approval */
        ck_assert(drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_NOT_HEALTHY));
        ck_assert(drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_FLUSH));
        ck_assert(!drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_EXEC_START));
        ck_assert(
                !drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_BLOCK_LOGINS));
        ck_assert(!drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_REPORT));
        ck_assert(!drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -EINVAL, false, DRAIN_STEP_APPROVE));
        ck_assert(DRAIN_STEP_STOP_JOBS < DRAIN_STEP_WAIT_JOBS);
        ck_assert(DRAIN_STEP_WAIT_JOBS < DRAIN_STEP_FLUSH);
}
END_TEST

/* ---- on the loop ----------------------------------------------------------------------------- */

START_TEST(test_manual_job_ends_in_time) {
        DrainState s;
        json_object *report;
        uint64_t started;

        new_drain();
        runner.active = 1;
        job_ends_in(300 * MSEC);
        started = now_us();
        ck_assert_int_eq(drain_start_manual(drain), 0);
        ck_assert(!runner.accepting);
        run_until_done(10 * SEC);
        load_state(&s);
        ck_assert_int_eq(s.steps[DRAIN_STEP_STOP_JOBS].result, DRAIN_RESULT_DONE);
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_DONE);
        /* after the job ended, never before; right after (the change hook, no polling) */
        ck_assert_uint_ge(s.steps[DRAIN_STEP_WAIT_JOBS].end_usec, runner.last_end_usec);
        ck_assert_uint_lt(
                s.steps[DRAIN_STEP_WAIT_JOBS].end_usec, runner.last_end_usec + 500 * MSEC);
        ck_assert_uint_ge(runner.last_end_usec, started + 250 * MSEC);
        ck_assert_uint_ge(s.steps[DRAIN_STEP_FLUSH].start_usec, runner.last_end_usec);
        ck_assert_int_eq(runner.stop_all_calls, 0);
        ck_assert_ptr_nonnull(strstr(s.steps[DRAIN_STEP_WAIT_JOBS].note, "1 finished, 0 stopped"));
        report = read_report();
        ck_assert_int_eq(jint(report, "jobs", "finished"), 1);
        ck_assert_int_eq(jint(report, "jobs", "stopped"), 0);
        ck_assert_int_eq(jint(report, "jobs", "requeued"), 0);
        json_object_put(report);
}
END_TEST

/* The flush budget in the next two tests is 10 s, though the flush takes milliseconds: what the
 * drain does after the deadline (the stop, a flush child, the report, state saved with fsync on a
 * disk other tests write to) must end before NotBefore, and a budget of 1 s left too little room
 * for a stalled fsync. The deadline itself stays 1.5 s and 2.5 s away. */
START_TEST(test_event_deadline_stops_and_requeues) {
        const uint64_t budget = 10 * SEC;
        uint64_t nb, deadline;
        char path[512];
        json_object *f;
        struct stat st;
        DrainState s;
        bool root = geteuid() == 0;

        flush_budget_usec = budget;
        new_drain();
        if (root) {
                char users[256], home[300];

                (void)snprintf(users, sizeof(users), "%s/Users", mnt);
                (void)snprintf(home, sizeof(home), "%s/" OWNER_NAME, users);
                ck_assert_int_eq(mkdir(users, 0755), 0);
                ck_assert_int_eq(mkdir(home, 0700), 0);
                ck_assert_int_eq(chown(home, OWNER_UID, OWNER_UID), 0);
        }
        runner.active = 1; /* never ends on its own */
        runner.queued = 2;
        nb = now_us() + budget + 1500 * MSEC;
        deadline = nb - budget;
        feed_event("ev-1", SCHEDULED_EVENT_TERMINATE, nb);
        ck_assert(drain_is_running(drain));
        run_until_done(15 * SEC);
        load_state(&s);
        /* stopped at the deadline, not before, and the drain finished before NotBefore */
        ck_assert_int_eq(runner.stop_all_calls, 1);
        ck_assert_uint_ge(runner.stop_all_usec, deadline);
        ck_assert_uint_lt(runner.stop_all_usec, deadline + 500 * MSEC);
        ck_assert_uint_lt(s.ended_usec, nb);
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_DONE);
        ck_assert_ptr_nonnull(strstr(s.steps[DRAIN_STEP_WAIT_JOBS].note, "0 finished, 1 stopped"));
        ck_assert_uint_ge(s.steps[DRAIN_STEP_FLUSH].start_usec, runner.last_end_usec);
        ck_assert_int_eq(runner.requeued, 2);
        if (!root) {
                ck_assert_int_eq(s.steps[DRAIN_STEP_STOP_JOBS].result, DRAIN_RESULT_FAILED);
                return;
        }
        ck_assert_msg(
                s.steps[DRAIN_STEP_STOP_JOBS].result == DRAIN_RESULT_DONE, "stop-jobs: %s",
                s.steps[DRAIN_STEP_STOP_JOBS].note);
        ck_assert_ptr_nonnull(strstr(s.steps[DRAIN_STEP_STOP_JOBS].note, "2 requeued, 2 written"));
        for (int id = 100; id <= 101; id++) {
                (void)snprintf(
                        path, sizeof(path), "%s/Users/" OWNER_NAME "/%s/testvm-%d.json", mnt,
                        DRAIN_REQUEUED_DIR, id);
                ck_assert_int_eq(lstat(path, &st), 0);
                ck_assert(S_ISREG(st.st_mode));
                ck_assert_uint_eq(st.st_uid, OWNER_UID); /* written as the owner */
                ck_assert_uint_eq(st.st_mode & 07777, 0600);
                f = read_json(path);
                ck_assert_int_eq(jint(f, "job", "id"), id);
                ck_assert_int_eq(jint(f, "job", "uid"), OWNER_UID);
                json_object_put(f);
        }
        (void)snprintf(path, sizeof(path), "%s/Users/" OWNER_NAME "/.poolagent", mnt);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert_uint_eq(st.st_uid, OWNER_UID);
}
END_TEST

START_TEST(test_requeue_refuses_foreign_folder) {
        char users[256], home[300];
        DrainState s;

        if (geteuid() != 0)
                return;
        (void)snprintf(users, sizeof(users), "%s/Users", mnt);
        (void)snprintf(home, sizeof(home), "%s/" OWNER_NAME, users);
        ck_assert_int_eq(mkdir(users, 0755), 0);
        ck_assert_int_eq(mkdir(home, 0755), 0); /* root's, not the owner's */
        manual_job_wait_usec = 0;
        new_drain();
        runner.queued = 1;
        ck_assert_int_eq(drain_start_manual(drain), 0);
        run_until_done(10 * SEC);
        load_state(&s);
        ck_assert_int_eq(s.steps[DRAIN_STEP_STOP_JOBS].result, DRAIN_RESULT_FAILED);
        ck_assert_ptr_nonnull(strstr(s.steps[DRAIN_STEP_STOP_JOBS].note, "0 written"));
        (void)snprintf(home, sizeof(home), "%s/" OWNER_NAME "/.poolagent", users);
        ck_assert_int_eq(access(home, F_OK), -1);
}
END_TEST

START_TEST(test_jobs_that_never_end) {
        DrainState s;
        uint64_t t0;

        job_stop_grace_usec = 100 * MSEC;
        manual_job_wait_usec = 0;
        new_drain();
        runner.active = 2;
        runner.never_end = true;
        t0 = now_us();
        ck_assert_int_eq(drain_start_manual(drain), 0);
        run_until_done(20 * SEC);
        load_state(&s);
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_FAILED);
        ck_assert_ptr_nonnull(strstr(s.steps[DRAIN_STEP_WAIT_JOBS].note, "2 job(s) did not end"));
        /* it waited the stop grace plus the margin, then went on to the flush */
        ck_assert_uint_ge(
                s.steps[DRAIN_STEP_WAIT_JOBS].end_usec, t0 + drain_job_stop_wait_usec(100 * MSEC));
        ck_assert_int_eq(s.steps[DRAIN_STEP_FLUSH].result, DRAIN_RESULT_DONE);
}
END_TEST

START_TEST(test_restart_keeps_deadline) {
        const uint64_t budget = 10 * SEC;
        uint64_t nb, deadline;
        DrainState s;

        flush_budget_usec = budget;
        new_drain();
        runner.active = 1;
        nb = now_us() + budget + 2500 * MSEC;
        deadline = nb - budget;
        feed_event("ev-restart", SCHEDULED_EVENT_TERMINATE, nb);
        run_for(1000 * MSEC);
        load_state(&s);
        ck_assert_int_eq(s.step, DRAIN_STEP_WAIT_JOBS);
        ck_assert_int_eq(runner.stop_all_calls, 0);
        /* killed mid-wait (the state file is what survives), started again */
        drain = drain_free(drain);
        ck_assert_ptr_null(runner.fn);
        runner.accepting = true; /* a restarted runner would accept again */
        new_drain();
        ck_assert(drain_is_running(drain));
        ck_assert(!runner.accepting); /* the resumed drain closed the queue again */
        ck_assert_int_ge(runner.stop_starting_calls, 2);
        run_until_done(15 * SEC);
        /* stopped at the deadline from the persisted NotBefore, not a full wait after the
         * restart */
        ck_assert_uint_ge(runner.stop_all_usec, deadline);
        ck_assert_uint_lt(runner.stop_all_usec, deadline + 500 * MSEC);
        load_state(&s);
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_DONE);
}
END_TEST

START_TEST(test_cancel_resumes_queue) {
        new_drain();
        runner.active = 1;
        ck_assert_int_eq(drain_start_manual(drain), 0);
        run_for(300 * MSEC);
        ck_assert(drain_is_running(drain));
        ck_assert(!runner.accepting);
        ck_assert_int_eq(drain_cancel(drain), 0);
        ck_assert_int_eq(runner.resume_calls, 1);
        ck_assert(runner.accepting);
        ck_assert(!drain_is_running(drain));
        run_for(200 * MSEC);
        ck_assert_int_eq(runner.stop_all_calls, 0);
        /* a change after the cancel is ignored */
        runner.active = 0;
        runner_changed(&runner);
        run_for(50 * MSEC);
        ck_assert(!drain_is_running(drain));
}
END_TEST

static bool shutdown_done_called;
static void on_shutdown_done(void *userdata) {
        shutdown_done_called = true;
}

START_TEST(test_shutdown_stops_at_once) {
        DrainState s;
        uint64_t t0;

        manual_job_wait_usec = 3600 * SEC;
        new_drain();
        runner.active = 1;
        runner.queued = 1;
        shutdown_done_called = false;
        t0 = now_us();
        ck_assert_int_eq(drain_start_shutdown(drain, on_shutdown_done, NULL), 0);
        run_until_done(10 * SEC);
        ck_assert(shutdown_done_called);
        load_state(&s);
        ck_assert_int_eq(runner.stop_all_calls, 1);
        ck_assert_uint_lt(runner.stop_all_usec, t0 + 2 * SEC); /* not ManualJobWait= */
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_DONE);
        ck_assert_uint_ge(s.steps[DRAIN_STEP_FLUSH].start_usec, runner.last_end_usec);
        ck_assert_int_eq(s.steps[DRAIN_STEP_FLUSH].result, DRAIN_RESULT_DONE);
        ck_assert_int_eq(s.steps[DRAIN_STEP_REPORT].result, DRAIN_RESULT_SKIPPED);
        ck_assert_int_eq(runner.requeued, 1);
}
END_TEST

START_TEST(test_shutdown_hurries_running_drain) {
        DrainState s;
        uint64_t t0;

        manual_job_wait_usec = 3600 * SEC;
        new_drain();
        runner.active = 1;
        shutdown_done_called = false;
        ck_assert_int_eq(drain_start_manual(drain), 0);
        run_for(300 * MSEC);
        load_state(&s);
        ck_assert_int_eq(s.step, DRAIN_STEP_WAIT_JOBS);
        ck_assert_int_eq(runner.stop_all_calls, 0);
        /* logind's PrepareForShutdown during the manual drain's hour for jobs */
        t0 = now_us();
        ck_assert_int_eq(drain_start_shutdown(drain, on_shutdown_done, NULL), 0);
        ck_assert_int_eq(runner.stop_all_calls, 1);
        ck_assert_uint_lt(runner.stop_all_usec, t0 + 100 * MSEC);
        ck_assert(!shutdown_done_called); /* the lock is held until the drain finished */
        run_until_done(10 * SEC);
        ck_assert(shutdown_done_called);
        load_state(&s);
        ck_assert_int_eq(s.source, DRAIN_SOURCE_MANUAL);
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_DONE);
        ck_assert_uint_ge(s.steps[DRAIN_STEP_FLUSH].start_usec, runner.last_end_usec);
        /* after it finished, a shutdown gets a drain of its own */
        ck_assert_int_eq(drain_start_shutdown(drain, on_shutdown_done, NULL), 0);
        run_until_done(10 * SEC);
}
END_TEST

START_TEST(test_shutdown_past_wait_jobs) {
        new_drain();
        ck_assert_int_eq(drain_start_manual(drain), 0);
        /* no job: the drain runs through to the flush; catch it there */
        for (int i = 0; i < 1000 && drain_is_running(drain); i++) {
                DrainState s;

                load_state(&s);
                if (s.step > DRAIN_STEP_WAIT_JOBS)
                        break;
                ck_assert_int_ge(sd_event_run(event, 1 * MSEC), 0);
        }
        /* the flush child needs another turn of the loop to end: still running */
        ck_assert(drain_is_running(drain));
        ck_assert_int_eq(drain_start_shutdown(drain, on_shutdown_done, NULL), -EALREADY);
        run_until_done(10 * SEC);
}
END_TEST

START_TEST(test_no_runner) {
        DrainState s;
        json_object *report;

        /* _i: 0 no runner at all, 1 a runner that cannot run jobs (no systemd) */
        with_runner = _i == 1;
        runner.unavailable = true;
        new_drain();
        ck_assert_int_eq(drain_start_manual(drain), 0);
        run_until_done(10 * SEC);
        load_state(&s);
        ck_assert_int_eq(s.steps[DRAIN_STEP_STOP_JOBS].result, DRAIN_RESULT_SKIPPED);
        ck_assert_str_eq(s.steps[DRAIN_STEP_STOP_JOBS].note, "no job queue");
        ck_assert_int_eq(s.steps[DRAIN_STEP_WAIT_JOBS].result, DRAIN_RESULT_SKIPPED);
        ck_assert_str_eq(s.steps[DRAIN_STEP_WAIT_JOBS].note, "no job queue");
        report = read_report();
        {
                json_object *jobs, *q;

                ck_assert(json_object_object_get_ex(report, "jobs", &jobs));
                ck_assert(json_object_object_get_ex(jobs, "queue", &q));
                ck_assert(json_object_get_boolean(q) == (_i == 1));
        }
        json_object_put(report);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("drain-jobs");
        TCase *tc;

        tc = tcase_create("pure");
        tcase_add_test(tc, test_deadline_table);
        tcase_add_test(tc, test_policy_table);
        suite_add_tcase(s, tc);

        tc = tcase_create("loop");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_manual_job_ends_in_time);
        tcase_add_test(tc, test_event_deadline_stops_and_requeues);
        tcase_add_test(tc, test_requeue_refuses_foreign_folder);
        tcase_add_test(tc, test_jobs_that_never_end);
        tcase_add_test(tc, test_restart_keeps_deadline);
        tcase_add_test(tc, test_cancel_resumes_queue);
        tcase_add_test(tc, test_shutdown_stops_at_once);
        tcase_add_test(tc, test_shutdown_hurries_running_drain);
        tcase_add_test(tc, test_shutdown_past_wait_jobs);
        tcase_add_loop_test(tc, test_no_runner, 0, 2);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
