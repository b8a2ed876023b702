/* SPDX-License-Identifier: MIT */
/* The job queue as data: scheduling (slots, disjoint GPUs, backfill, aging, draining), states
 * (cancel, end, drain requeue), persistence (round trip, atomic save, the never-twice rule across
 * an agent restart and a reboot, corrupt files). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "job-queue.h"

#define T0 UINT64_C(1000000000)

static char *const argv_sleep[] = {(char *)"sleep", (char *)"10", NULL};
static char *const env_one[] = {(char *)"HOME=/home/alice", NULL};

static JobQueue *q;

static void setup(void) {
        ck_assert_int_eq(job_queue_new(4, 2, &q), 0); /* 2 cores: 4 slots; 2 GPUs */
        (void)snprintf(q->boot_id, sizeof(q->boot_id), "boot-a");
}

static void teardown(void) {
        q = job_queue_free(q);
}

static uint64_t submit(unsigned cpus, unsigned gpus, uint64_t at) {
        uint64_t id = 0;

        ck_assert_int_eq(
                job_queue_submit(
                        q, NULL, 1000, 1000, argv_sleep, env_one, "/home/alice", cpus, gpus, at,
                        &id),
                0);
        return id;
}

/* Picks and starts the next job; returns its id or 0. */
static uint64_t start_next(uint64_t now) {
        uint64_t mask = 0;
        char unit[64];
        Job *j = job_queue_pick(q, now, &mask);

        if (!j)
                return 0;
        (void)snprintf(unit, sizeof(unit), "poolagent-job-%llu.service", (unsigned long long)j->id);
        ck_assert_int_eq(job_queue_mark_starting(q, j, unit, mask, now), 0);
        ck_assert_int_eq(job_queue_mark_running(q, j), 0);
        return j->id;
}

START_TEST(test_slots) {
        uint64_t ids[6];

        for (int i = 0; i < 6; i++)
                ids[i] = submit(1, 0, T0 + i);
        for (int i = 0; i < 4; i++)
                ck_assert_uint_eq(start_next(T0 + 10), ids[i]); /* FIFO */
        ck_assert_uint_eq(start_next(T0 + 10), 0);              /* two per core: 4 */
        ck_assert_uint_eq(job_queue_n_active(q), 4);
        ck_assert_int_eq(job_queue_mark_ended(q, job_queue_get(q, ids[1]), 0, false, T0 + 20), 0);
        ck_assert_int_eq(job_queue_get(q, ids[1])->state, JOB_FINISHED);
        ck_assert_uint_eq(start_next(T0 + 21), ids[4]);
        ck_assert_int_eq(job_queue_mark_ended(q, job_queue_get(q, ids[0]), 3, false, T0 + 22), 0);
        ck_assert_int_eq(job_queue_get(q, ids[0])->state, JOB_FAILED);
        ck_assert_int_eq(job_queue_get(q, ids[0])->exit_status, 3);
}
END_TEST

START_TEST(test_gpus_disjoint) {
        uint64_t a = submit(1, 1, T0), b = submit(1, 1, T0 + 1), c = submit(1, 1, T0 + 2);
        uint64_t ma, mb;

        ck_assert_uint_eq(start_next(T0 + 5), a);
        ck_assert_uint_eq(start_next(T0 + 5), b);
        ma = job_queue_get(q, a)->gpu_mask;
        mb = job_queue_get(q, b)->gpu_mask;
        ck_assert_uint_ne(ma, 0);
        ck_assert_uint_ne(mb, 0);
        ck_assert_uint_eq(ma & mb, 0);            /* CUDA_VISIBLE_DEVICES never shared */
        ck_assert_uint_eq(start_next(T0 + 5), 0); /* c waits for a GPU */
        ck_assert_int_eq(job_queue_mark_ended(q, job_queue_get(q, a), 0, false, T0 + 6), 0);
        ck_assert_uint_eq(job_queue_get(q, a)->gpu_mask, 0);
        ck_assert_uint_eq(start_next(T0 + 7), c);
        ck_assert_uint_eq(job_queue_get(q, c)->gpu_mask, ma);
        /* more GPUs than the VM has: refused */
        ck_assert_int_eq(
                job_queue_submit(q, NULL, 1000, 1000, argv_sleep, NULL, "/", 1, 3, T0, NULL),
                -EINVAL);
}
END_TEST

START_TEST(test_backfill_and_aging) {
        uint64_t gpu1 = submit(1, 2, T0), gpu2, small;

        ck_assert_uint_eq(start_next(T0 + 1), gpu1); /* holds both GPUs */
        gpu2 = submit(1, 2, T0 + 2);
        small = submit(1, 0, T0 + 3);
        /* the GPU job does not fit: the small one behind it starts (backfill) */
        ck_assert_uint_eq(start_next(T0 + 4), small);
        /* once the GPU job has waited long, nothing passes it any more */
        submit(1, 0, T0 + 5);
        ck_assert_uint_eq(start_next(T0 + 2 + JOB_QUEUE_AGING_USEC), 0);
        ck_assert_int_eq(
                job_queue_mark_ended(
                        q, job_queue_get(q, gpu1), 0, false, T0 + 3 + JOB_QUEUE_AGING_USEC),
                0);
        ck_assert_uint_eq(start_next(T0 + 4 + JOB_QUEUE_AGING_USEC), gpu2);
}
END_TEST

START_TEST(test_cancel_and_drain) {
        uint64_t a = submit(1, 0, T0), b = submit(1, 0, T0 + 1), c = submit(1, 0, T0 + 2);

        ck_assert_uint_eq(start_next(T0 + 3), a);
        ck_assert_int_eq(job_queue_cancel(q, job_queue_get(q, a), T0 + 4), -EBUSY);
        ck_assert_int_eq(job_queue_cancel(q, job_queue_get(q, b), T0 + 4), 0);
        ck_assert_int_eq(job_queue_cancel(q, job_queue_get(q, b), T0 + 4), -EALREADY);
        ck_assert_uint_eq(job_queue_drain(q, T0 + 5), 1);
        ck_assert_int_eq(job_queue_get(q, c)->state, JOB_REQUEUED);
        ck_assert_ptr_null(job_queue_pick(q, T0 + 6, NULL));
        ck_assert_int_eq(
                job_queue_submit(q, NULL, 1, 1, argv_sleep, NULL, "/", 1, 0, T0 + 7, NULL), -EBUSY);
        ck_assert_int_eq(job_queue_mark_ended(q, job_queue_get(q, a), 143, true, T0 + 8), 0);
        ck_assert_int_eq(job_queue_get(q, a)->state, JOB_STOPPED);
}
END_TEST

START_TEST(test_bad_specs) {
        char *const empty[] = {NULL};

        ck_assert_int_eq(
                job_queue_submit(q, NULL, 1, 1, empty, NULL, "/", 1, 0, T0, NULL), -EINVAL);
        ck_assert_int_eq(
                job_queue_submit(q, NULL, 1, 1, argv_sleep, NULL, "relative", 1, 0, T0, NULL),
                -EINVAL);
        ck_assert_int_eq(
                job_queue_submit(q, NULL, 1, 1, argv_sleep, NULL, "/", 5, 0, T0, NULL), -EINVAL);
}
END_TEST

/* ---- persistence ----------------------------------------------------------------------------- */

static JobQueue *reload(const char *boot_id) {
        char *text = NULL;
        const char *reason = NULL;
        JobQueue *p = NULL;

        ck_assert_int_eq(job_queue_format(q, &text), 0);
        ck_assert_int_eq(job_queue_new(4, 2, &p), 0);
        ck_assert_int_eq(job_queue_parse(text, strlen(text), boot_id, p, &reason), 0);
        free(text);
        return p;
}

START_TEST(test_roundtrip_same_boot) {
        uint64_t a = submit(1, 1, T0), b = submit(2, 0, T0 + 1);
        JobQueue *p;
        Job *j;

        ck_assert_uint_eq(start_next(T0 + 2), a);
        job_queue_get(q, a)->stop = JOB_STOP_CANCEL; /* being cancelled */
        p = reload("boot-a");
        ck_assert_uint_eq(p->n_jobs, 2);
        j = job_queue_get(p, a);
        ck_assert_int_eq(j->state, JOB_RUNNING);    /* its unit decides; never started again */
        ck_assert_int_eq(j->stop, JOB_STOP_CANCEL); /* and it still ends as cancelled */
        ck_assert_int_eq(job_queue_get(p, b)->stop, JOB_STOP_NONE);
        ck_assert_str_eq(j->unit, "poolagent-job-1.service");
        ck_assert_uint_eq(j->gpu_mask, job_queue_get(q, a)->gpu_mask);
        ck_assert_str_eq(j->argv[0], "sleep");
        ck_assert_str_eq(j->env[0], "HOME=/home/alice");
        ck_assert_str_eq(j->cwd, "/home/alice");
        ck_assert_int_eq(job_queue_get(p, b)->state, JOB_QUEUED);
        ck_assert_uint_eq(job_queue_get(p, b)->cpus, 2);
        /* ids continue */
        ck_assert_uint_ge(p->next_id, b + 1);
        /* the running job still holds its GPU: b is picked, a is not */
        ck_assert_ptr_eq(job_queue_pick(p, T0 + 3, NULL), job_queue_get(p, b));
        job_queue_free(p);
}
END_TEST

START_TEST(test_reboot_never_twice) {
        uint64_t a = submit(1, 0, T0), b = submit(1, 0, T0 + 1), c = submit(1, 0, T0 + 1),
                 d = submit(1, 0, T0 + 1);
        JobQueue *p;

        ck_assert_uint_eq(start_next(T0 + 2), a);
        ck_assert_uint_eq(start_next(T0 + 2), b);
        ck_assert_uint_eq(start_next(T0 + 2), c);
        job_queue_get(q, b)->stop = JOB_STOP_DRAIN;
        job_queue_get(q, c)->stop = JOB_STOP_CANCEL;
        (void)job_queue_drain(q, T0 + 3);
        p = reload("boot-b");
        ck_assert_int_eq(job_queue_get(p, a)->state, JOB_FAILED);    /* interrupted, not rerun */
        ck_assert_int_eq(job_queue_get(p, b)->state, JOB_STOPPED);   /* the drain's stop */
        ck_assert_int_eq(job_queue_get(p, c)->state, JOB_CANCELLED); /* the user's cancel */
        ck_assert_int_eq(job_queue_get(p, c)->stop, JOB_STOP_NONE);
        ck_assert_int_eq(job_queue_get(p, d)->state, JOB_REQUEUED);
        ck_assert(p->accepting); /* the drain ended with the boot */
        ck_assert_ptr_null(job_queue_pick(p, T0 + 4, NULL));
        job_queue_free(p);
}
END_TEST

START_TEST(test_save_load_and_corrupt) {
        char dir[] = "/tmp/test-job-queue-XXXXXX", path[128];
        static const char *const bad[] = {
                "",
                "[]",
                "{\"version\":2,\"next_id\":1,\"jobs\":[]}",
                "{\"version\":1,\"next_id\":1,\"jobs\":{}}",
                "{\"version\":1,\"next_id\":1,\"jobs\":[{\"id\":1}]}",
                "{\"version\":1,\"next_id\":1,\"jobs\":[]} trailing",
                /* a valid job but for its "stop" */
                "{\"version\":1,\"next_id\":2,\"jobs\":[{\"id\":1,\"name\":\"a\",\"uid\":1,\"gid\":1,"
                "\"argv\":[\"x\"],\"env\":[],\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"running\","
                "\"gpu_mask\":0,\"submitted_usec\":1,\"started_usec\":1,\"ended_usec\":0,"
                "\"stop\":\"now\"}]}",
                "{\"version\":1,\"next_id\":2,\"jobs\":[{\"id\":1,\"name\":\"a\",\"uid\":1,\"gid\":1,"
                "\"argv\":[\"x\"],\"env\":[],\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"running\","
                "\"gpu_mask\":0,\"submitted_usec\":1,\"started_usec\":1,\"ended_usec\":0,"
                "\"stop\":1}]}",
        };
        const char *reason;
        JobQueue *p;

        submit(1, 0, T0);
        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_int_eq(job_queue_save(dir, q), 0);
        ck_assert_int_eq(job_queue_new(4, 2, &p), 0);
        ck_assert_int_eq(job_queue_load(dir, "boot-a", p, &reason), 0);
        ck_assert_uint_eq(p->n_jobs, 1);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(
                        job_queue_parse(bad[i], strlen(bad[i]), "boot-a", p, &reason) == -EBADMSG,
                        "accepted: %s", bad[i]);
        job_queue_free(p);
        (void)snprintf(path, sizeof(path), "%s/%s", dir, JOB_QUEUE_FILE);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

int main(void) {
        Suite *s = suite_create("job-queue");
        TCase *tc;
        SRunner *sr;
        int failed;

        tc = tcase_create("scheduling");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_slots);
        tcase_add_test(tc, test_gpus_disjoint);
        tcase_add_test(tc, test_backfill_and_aging);
        tcase_add_test(tc, test_cancel_and_drain);
        tcase_add_test(tc, test_bad_specs);
        suite_add_tcase(s, tc);

        tc = tcase_create("persistence");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_roundtrip_same_boot);
        tcase_add_test(tc, test_reboot_never_twice);
        tcase_add_test(tc, test_save_load_and_corrupt);
        suite_add_tcase(s, tc);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
