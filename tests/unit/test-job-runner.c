/* SPDX-License-Identifier: MIT */
/* The job runner's pure parts: who may see a job, the environment of a job's unit (what systemd
 * would refuse or what it sets itself is dropped; POOLAGENT_JOB_ID and CUDA_VISIBLE_DEVICES from
 * the job's GPUs), what a unit's properties say about a job; and the runner where systemd is not
 * the init system: unavailable with a reason, a queue file loaded, and the drain's side (stop
 * starting, the requeued jobs with what is needed to resubmit them, counts, resume). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "job-queue.h"
#include "job-runner.h"

static bool has(char **l, const char *s) {
        for (char **i = l; i && *i; i++)
                if (streq(*i, s))
                        return true;
        return false;
}

static size_t count(char **l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

START_TEST(test_may_access) {
        ck_assert(job_runner_may_access(1000, 1000, false));
        ck_assert(!job_runner_may_access(1000, 1001, false));
        ck_assert(job_runner_may_access(1000, 1001, true)); /* admin group */
        ck_assert(job_runner_may_access(1000, 0, false));   /* root */
        ck_assert(!job_runner_may_access(0, 1000, false));  /* root's job, a user */
}
END_TEST

START_TEST(test_format_gpus) {
        char buf[256];

        job_runner_format_gpus(0, buf, sizeof(buf));
        ck_assert_str_eq(buf, "");
        job_runner_format_gpus(UINT64_C(0x5), buf, sizeof(buf));
        ck_assert_str_eq(buf, "0,2");
        job_runner_format_gpus(UINT64_C(1) << 63, buf, sizeof(buf));
        ck_assert_str_eq(buf, "63");
        job_runner_format_gpus(UINT64_MAX, buf, 8); /* cut at a whole index */
        ck_assert_str_eq(buf, "0,1,2");
}
END_TEST

START_TEST(test_job_env) {
        char *env[] = {
                (char *)"HOME=/home/alice",
                (char *)"PATH=/usr/bin:/bin",
                (char *)"EMPTY=",
                (char *)"MULTI=a\nb",
                (char *)"CUDA_VISIBLE_DEVICES=0,1,2,3", /* the runner's, not the user's */
                (char *)"POOLAGENT_JOB_ID=99",
                (char *)"NOTIFY_SOCKET=/run/systemd/notify",
                (char *)"INVOCATION_ID=abc",
                (char *)"1BAD=x",
                (char *)"BAD-NAME=x",
                (char *)"NOEQUALS",
                (char *)"=novalue",
                (char *)"LATIN1=\xe9t\xe9",
                (char *)"UTF8=\xc3\xa9t\xc3\xa9",
                (char *)"OVERLONG=\xc0\xaf",
                NULL,
        };
        Job j = {.id = 42, .env = env, .gpus = 2, .gpu_mask = UINT64_C(0xa)};
        char **l = NULL;

        ck_assert_int_eq(job_runner_job_env(&j, 4, &l), 0);
        ck_assert(has(l, "HOME=/home/alice"));
        ck_assert(has(l, "PATH=/usr/bin:/bin"));
        ck_assert(has(l, "EMPTY="));
        ck_assert(has(l, "MULTI=a\nb"));
        ck_assert(has(l, "UTF8=\xc3\xa9t\xc3\xa9"));
        ck_assert(has(l, "POOLAGENT_JOB_ID=42"));
        ck_assert(has(l, "CUDA_VISIBLE_DEVICES=1,3"));
        ck_assert_uint_eq(count(l), 7);
        strv_free(l);

        /* No GPUs asked on a VM with GPUs: none visible. */
        j.gpus = 0;
        j.gpu_mask = 0;
        ck_assert_int_eq(job_runner_job_env(&j, 4, &l), 0);
        ck_assert(has(l, "CUDA_VISIBLE_DEVICES="));
        strv_free(l);

        /* A VM without GPUs for jobs: left alone (not set at all). */
        ck_assert_int_eq(job_runner_job_env(&j, 0, &l), 0);
        for (char **i = l; *i; i++)
                ck_assert(strncmp(*i, "CUDA_VISIBLE_DEVICES=", 21) != 0);
        ck_assert_uint_eq(count(l), 6);
        strv_free(l);

        j.env = NULL;
        ck_assert_int_eq(job_runner_job_env(&j, 0, &l), 0);
        ck_assert_uint_eq(count(l), 1);
        ck_assert_str_eq(l[0], "POOLAGENT_JOB_ID=42");
        strv_free(l);
}
END_TEST

static JobUnitStatus unit(const char *load, const char *active, const char *sub, int code, int st) {
        JobUnitStatus s = {.exec_main_code = code, .exec_main_status = st};

        (void)snprintf(s.load_state, sizeof(s.load_state), "%s", load);
        (void)snprintf(s.active_state, sizeof(s.active_state), "%s", active);
        (void)snprintf(s.sub_state, sizeof(s.sub_state), "%s", sub);
        return s;
}

START_TEST(test_unit_verdict) {
        JobUnitStatus s;
        int st = 12345;

        /* Created, its start job not run yet. */
        s = unit("loaded", "inactive", "dead", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_WAIT);
        s = unit("loaded", "activating", "start", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_RUNNING);
        s = unit("loaded", "active", "running", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_RUNNING);
        ck_assert_int_eq(st, 12345); /* untouched */
        s = unit("loaded", "deactivating", "stop-sigterm", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_RUNNING);

        /* RemainAfterExit=yes: exit 0 keeps it active (exited). */
        s = unit("loaded", "active", "exited", CLD_EXITED, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, 0);
        /* A job that ended before its start was seen. */
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_ENDED);
        s = unit("loaded", "failed", "failed", CLD_EXITED, 3);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, 3);
        s = unit("loaded", "failed", "failed", CLD_KILLED, 9);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, 137);
        s = unit("loaded", "failed", "failed", CLD_DUMPED, 11);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, 139);
        /* Failed before a process ran (bad User=, missing directory): status unknown. */
        s = unit("loaded", "failed", "failed", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, -1);
        /* Stopped (SIGTERM) and still loaded. */
        s = unit("loaded", "inactive", "dead", CLD_KILLED, 15);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, 143);
        /* A running job whose unit is inactive without a status: ended, status unknown. */
        s = unit("loaded", "inactive", "dead", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_ENDED);
        ck_assert_int_eq(st, -1);
        /* Collected, or never there. */
        s = unit("not-found", "inactive", "dead", 0, 0);
        ck_assert_int_eq(job_runner_unit_verdict(&s, false, &st), JOB_UNIT_GONE);
        ck_assert_int_eq(job_runner_unit_verdict(&s, true, &st), JOB_UNIT_GONE);
}
END_TEST

/* ---- the runner without systemd -------------------------------------------------------------- */

static char dir[] = "/var/tmp/test-job-runner-XXXXXX";

static void write_queue(const char *text) {
        char path[512];
        FILE *f;

        (void)snprintf(path, sizeof(path), "%s/%s", dir, JOB_QUEUE_FILE);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
}

static void remove_dir(void) {
        char cmd[600];

        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ck_assert_int_eq(system(cmd), 0);
}

static json_object *get(json_object *o, const char *key) {
        json_object *v = NULL;

        ck_assert_msg(json_object_object_get_ex(o, key, &v), "no \"%s\"", key);
        return v;
}

START_TEST(test_runner_without_systemd) {
        JobRunnerConfig c = {.state_directory = dir, .slots = 4, .gpus = 1};
        sd_event *e = NULL;
        JobRunner *r = NULL;
        json_object *o, *a, *j;
        char *msg = NULL, *const argv[] = {(char *)"true", NULL};
        uint64_t id = 0;
        unsigned f = 9, s = 9, q = 9;

        if (access("/run/systemd/system", F_OK) == 0)
                return; /* the e2e test covers the runner with systemd */
        ck_assert_ptr_nonnull(mkdtemp(dir));
        write_queue(
                "{\"version\":1,\"boot_id\":\"x\",\"next_id\":4,\"accepting\":true,\"jobs\":["
                "{\"id\":1,\"name\":\"a\",\"uid\":1000,\"gid\":1000,\"argv\":[\"sleep\",\"1\"],"
                "\"env\":[\"A=1\"],\"cwd\":\"/home/a\",\"cpus\":2,\"gpus\":1,\"state\":\"queued\","
                "\"gpu_mask\":0,\"exit_status\":-1,\"submitted_usec\":10,\"started_usec\":0,"
                "\"ended_usec\":0},"
                "{\"id\":2,\"name\":\"b\",\"uid\":1001,\"gid\":1001,\"argv\":[\"true\"],\"env\":[],"
                "\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"queued\",\"gpu_mask\":0,"
                "\"exit_status\":-1,\"submitted_usec\":11,\"started_usec\":0,\"ended_usec\":0},"
                "{\"id\":3,\"name\":\"c\",\"uid\":1000,\"gid\":1000,\"argv\":[\"true\"],\"env\":[],"
                "\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"finished\",\"gpu_mask\":0,"
                "\"exit_status\":0,\"submitted_usec\":1,\"started_usec\":2,\"ended_usec\":3}]}");
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(job_runner_new(e, NULL, &c, &r), 0);
        ck_assert_int_eq(job_runner_start(r), 0);
        ck_assert(!job_runner_is_available(r));
        ck_assert_ptr_nonnull(strstr(job_runner_unavailable_reason(r), "systemd"));

        ck_assert_int_eq(
                job_runner_submit(r, 1000, 1000, NULL, argv, NULL, "/", 1, 0, &id, &msg),
                -EHOSTDOWN);
        ck_assert_ptr_nonnull(strstr(msg, "cannot run jobs on this VM"));
        free(msg);

        /* Each user its own, admins all. */
        o = json_object_new_object();
        ck_assert_int_eq(job_runner_list_json(r, 1000, false, o), 0);
        ck_assert_uint_eq(json_object_array_length(get(o, "jobs")), 2);
        ck_assert_int_eq(json_object_get_int64(get(o, "queued")), 2);
        ck_assert(!json_object_get_boolean(get(o, "available")));
        json_object_put(o);
        o = json_object_new_object();
        ck_assert_int_eq(job_runner_list_json(r, 1002, true, o), 0);
        ck_assert_uint_eq(json_object_array_length(get(o, "jobs")), 3);
        json_object_put(o);
        ck_assert_int_eq(job_runner_cancel(r, 2, 1000, false), -EPERM);
        ck_assert_int_eq(job_runner_cancel(r, 3, 1000, false), -EALREADY);
        ck_assert_int_eq(job_runner_cancel(r, 7, 0, true), -ENOENT);

        /* The drain: queued jobs requeued with what resubmits them; counts; resume. */
        ck_assert_uint_eq(job_runner_n_active(r), 0);
        ck_assert_uint_eq(job_runner_stop_starting(r), 2);
        ck_assert_int_eq(job_runner_stop_all(r), 0);
        ck_assert_int_eq(job_runner_requeued_json(r, 0, &a), 0);
        ck_assert_uint_eq(json_object_array_length(a), 2);
        j = json_object_array_get_idx(a, 0);
        ck_assert_int_eq(json_object_get_int64(get(j, "id")), 1);
        ck_assert_int_eq(json_object_get_int64(get(j, "uid")), 1000);
        ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(get(j, "argv"), 1)), "1");
        ck_assert_str_eq(
                json_object_get_string(json_object_array_get_idx(get(j, "env"), 0)), "A=1");
        ck_assert_str_eq(json_object_get_string(get(j, "cwd")), "/home/a");
        ck_assert_int_eq(json_object_get_int64(get(j, "cpus")), 2);
        ck_assert_int_eq(json_object_get_int64(get(j, "gpus")), 1);
        ck_assert_int_eq(json_object_get_int64(get(j, "submitted")), 10);
        (void)get(j, "user");
        (void)get(j, "name");
        json_object_put(a);
        job_runner_counts_since(r, 5, &f, &s, &q);
        ck_assert_uint_eq(f, 0); /* job 3 ended at 3 */
        ck_assert_uint_eq(s, 0);
        ck_assert_uint_eq(q, 2);
        job_runner_counts_since(r, 0, &f, &s, &q);
        ck_assert_uint_eq(f, 1);
        job_runner_resume(r);
        o = json_object_new_object();
        ck_assert_int_eq(job_runner_status_json(r, o), 0);
        ck_assert(json_object_get_boolean(get(get(o, "jobs"), "accepting")));
        ck_assert_int_eq(json_object_get_int64(get(get(o, "jobs"), "queued")), 0);
        json_object_put(o);

        /* Saved at each change: a new runner reads the requeued jobs back. */
        r = job_runner_free(r);
        ck_assert_int_eq(job_runner_new(e, NULL, &c, &r), 0);
        ck_assert_int_eq(job_runner_start(r), 0);
        ck_assert_int_eq(job_runner_requeued_json(r, 0, &a), 0);
        ck_assert_uint_eq(json_object_array_length(a), 2);
        json_object_put(a);
        r = job_runner_free(r);
        sd_event_unref(e);
        remove_dir();
}
END_TEST

/* Many jobs with long directories: a "jobs" reply keeps the newest that fit, says how many not. */
START_TEST(test_runner_list_capped) {
        JobRunnerConfig c = {.state_directory = dir, .slots = 4};
        char *text, long_dir[3001];
        size_t size = 1024 * 1024, n = 0;
        sd_event *e = NULL;
        JobRunner *r = NULL;
        json_object *o, *jobs;

        if (access("/run/systemd/system", F_OK) == 0)
                return;
        ck_assert_ptr_nonnull(mkdtemp(dir));
        memset(long_dir, 'd', sizeof(long_dir) - 1);
        long_dir[0] = '/';
        long_dir[sizeof(long_dir) - 1] = '\0';
        text = malloc(size);
        ck_assert_ptr_nonnull(text);
        n += (size_t)snprintf(
                text + n, size - n,
                "{\"version\":1,\"boot_id\":\"x\",\"next_id\":151,\"accepting\":true,\"jobs\":[");
        for (int i = 1; i <= 150; i++)
                n += (size_t)snprintf(
                        text + n, size - n,
                        "%s{\"id\":%d,\"name\":\"j\",\"uid\":1000,\"gid\":1000,\"argv\":[\"true\"],"
                        "\"env\":[],\"cwd\":\"%s\",\"cpus\":1,\"gpus\":0,\"state\":\"finished\","
                        "\"gpu_mask\":0,\"exit_status\":0,\"submitted_usec\":%d,\"started_usec\":0,"
                        "\"ended_usec\":0}",
                        i > 1 ? "," : "", i, long_dir, i);
        n += (size_t)snprintf(text + n, size - n, "]}");
        ck_assert_uint_lt(n, size - 1);
        write_queue(text);
        free(text);

        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(job_runner_new(e, NULL, &c, &r), 0);
        ck_assert_int_eq(job_runner_start(r), 0);
        o = json_object_new_object();
        ck_assert_int_eq(job_runner_list_json(r, 1000, false, o), 0);
        jobs = get(o, "jobs");
        ck_assert_uint_gt(json_object_array_length(jobs), 10);
        ck_assert_uint_lt(json_object_array_length(jobs), 100);
        ck_assert_int_eq(
                (int64_t)json_object_array_length(jobs) + json_object_get_int64(get(o, "omitted")),
                150);
        /* The newest, oldest first. */
        ck_assert_int_eq(
                json_object_get_int64(get(
                        json_object_array_get_idx(jobs, json_object_array_length(jobs) - 1), "id")),
                150);
        ck_assert_uint_le(
                strlen(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN)), 48 * 1024);
        json_object_put(o);
        r = job_runner_free(r);
        sd_event_unref(e);
        remove_dir();
}
END_TEST

/* A queue file that cannot be read (here: a link, never followed) leaves the runner unavailable
 * and is never overwritten, not even by the drain's calls. */
START_TEST(test_runner_unreadable_file) {
        JobRunnerConfig c = {.state_directory = dir, .slots = 4};
        char path[512];
        sd_event *e = NULL;
        JobRunner *r = NULL;
        struct stat st;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        (void)snprintf(path, sizeof(path), "%s/%s", dir, JOB_QUEUE_FILE);
        ck_assert_int_eq(symlink("/etc/hostname", path), 0);
        ck_assert_int_eq(sd_event_new(&e), 0);
        ck_assert_int_eq(job_runner_new(e, NULL, &c, &r), 0);
        ck_assert_int_lt(job_runner_start(r), 0);
        ck_assert(!job_runner_is_available(r));
        ck_assert_ptr_nonnull(strstr(job_runner_unavailable_reason(r), "cannot read"));
        ck_assert_uint_eq(job_runner_stop_starting(r), 0);
        job_runner_resume(r);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISLNK(st.st_mode));
        r = job_runner_free(r);
        sd_event_unref(e);
        remove_dir();
}
END_TEST

int main(void) {
        Suite *s = suite_create("job-runner");
        TCase *tc_pure = tcase_create("pure");
        TCase *tc_runner = tcase_create("runner");
        SRunner *sr;
        int failed;

        tcase_add_test(tc_pure, test_may_access);
        tcase_add_test(tc_pure, test_format_gpus);
        tcase_add_test(tc_pure, test_job_env);
        tcase_add_test(tc_pure, test_unit_verdict);
        tcase_add_test(tc_runner, test_runner_without_systemd);
        tcase_add_test(tc_runner, test_runner_list_capped);
        tcase_add_test(tc_runner, test_runner_unreadable_file);
        suite_add_tcase(s, tc_pure);
        suite_add_tcase(s, tc_runner);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
