/* SPDX-License-Identifier: MIT */
/* The drain's bounded children on a real sd-event loop: a child's result line reaches the
 * callback after it was reaped; a child that never ends is killed at its deadline and the
 * callback runs at once with timed_out (the loop never waits for it); an abandoned child gets no
 * callback; the flush child on a directory that is not azfilesfs reports 0 dirty bytes; the
 * flush output parser. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <systemd/sd-event.h>

#include "drain-child.h"
#include "macro.h"

typedef struct Result {
        int calls;
        int status;
        bool timed_out;
        char output[DRAIN_CHILD_OUTPUT_MAX];
} Result;

static void on_done(DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        Result *r = userdata;

        r->calls++;
        r->status = status;
        r->timed_out = timed_out;
        (void)snprintf(r->output, sizeof(r->output), "%s", output);
}

static void run_echo(const void *arg, int fd) {
        const char *text = arg;

        (void)!write(fd, text, strlen(text));
        _exit(3);
}

static void run_forever(const void *arg, int fd) {
        for (;;)
                (void)pause();
}

/* Runs the loop until r has a call, bounded by 20 s of wall time (the loop's own timeout). */
static void loop_until_called(sd_event *e, Result *r) {
        for (int i = 0; i < 2000 && r->calls == 0; i++)
                ck_assert_int_ge(sd_event_run(e, 10000), 0);
        ck_assert_int_eq(r->calls, 1);
}

static sd_event *event;
static DrainChild *children;

static void setup(void) {
        ck_assert_int_eq(sd_event_new(&event), 0);
        children = NULL;
}

static void teardown(void) {
        drain_child_free_all(&children);
        event = sd_event_unref(event);
}

START_TEST(test_output_and_status) {
        Result r = {};

        ck_assert_int_eq(
                drain_child_spawn(
                        event, &children, 10 * 1000000U, run_echo, "7 8 9\n", on_done, &r, NULL),
                0);
        loop_until_called(event, &r);
        ck_assert(!r.timed_out);
        ck_assert(WIFEXITED(r.status));
        ck_assert_int_eq(WEXITSTATUS(r.status), 3);
        ck_assert_str_eq(r.output, "7 8 9\n");
        ck_assert_ptr_null(children); /* reaped and unlisted */
}
END_TEST

START_TEST(test_deadline) {
        Result r = {};

        ck_assert_int_eq(
                drain_child_spawn(event, &children, 200000, run_forever, NULL, on_done, &r, NULL),
                0);
        loop_until_called(event, &r);
        ck_assert(r.timed_out);
        /* killed: it is reaped by the loop later, without a second callback */
        for (int i = 0; i < 2000 && children; i++)
                ck_assert_int_ge(sd_event_run(event, 10000), 0);
        ck_assert_ptr_null(children);
        ck_assert_int_eq(r.calls, 1);
}
END_TEST

START_TEST(test_abandon) {
        Result r = {};
        DrainChild *c = NULL;

        ck_assert_int_eq(
                drain_child_spawn(
                        event, &children, 10 * 1000000U, run_forever, NULL, on_done, &r, &c),
                0);
        ck_assert_ptr_nonnull(c);
        drain_child_abandon(c);
        for (int i = 0; i < 2000 && children; i++)
                ck_assert_int_ge(sd_event_run(event, 10000), 0);
        ck_assert_ptr_null(children);
        ck_assert_int_eq(r.calls, 0);
}
END_TEST

START_TEST(test_flush_not_azfilesfs) {
        char dir[] = "/tmp/test-drain-child-XXXXXX";
        DrainFlushArgs a = {.seconds = 1};
        int64_t before, after;
        Result r = {};
        bool fs;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        a.mount_point = dir;
        ck_assert_int_eq(
                drain_child_spawn(
                        event, &children, 10 * 1000000U, drain_flush_child_run, &a, on_done, &r,
                        NULL),
                0);
        loop_until_called(event, &r);
        ck_assert_int_eq(drain_flush_parse(r.output, &before, &after, &fs), 0);
        ck_assert(!fs);
        ck_assert_int_eq(after, 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_flush_parse) {
        int64_t before, after;
        bool fs;

        ck_assert_int_eq(drain_flush_parse("0 4096 0 1\n", &before, &after, &fs), 0);
        ck_assert_int_eq(before, 4096);
        ck_assert_int_eq(after, 0);
        ck_assert(fs);
        ck_assert_int_eq(drain_flush_parse("110 4096 512 1\n", &before, &after, &fs), -ETIMEDOUT);
        ck_assert_int_eq(after, 512);
        ck_assert_int_eq(drain_flush_parse("", &before, &after, &fs), -EIO);
        ck_assert_int_eq(drain_flush_parse("garbage", &before, &after, &fs), -EIO);
}
END_TEST

int main(void) {
        Suite *s = suite_create("drain-child");
        TCase *tc = tcase_create("child");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_output_and_status);
        tcase_add_test(tc, test_deadline);
        tcase_add_test(tc, test_abandon);
        tcase_add_test(tc, test_flush_not_azfilesfs);
        tcase_add_test(tc, test_flush_parse);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
