/* SPDX-License-Identifier: MIT */
/* Scheduled events: document parsing (good documents, garbage, wrong types, caps), the events
 * for this VM, DocumentIncarnation bookkeeping, the approval body, the drain policy table, and
 * the drain state file (round trip, dedupe, cap, atomic save, corrupt files). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "drain-state.h"
#include "drain.h"
#include "scheduled-events.h"

#define VM "pool_3"

static const char doc_two[] =
        "{\"DocumentIncarnation\": 7, \"Events\": ["
        "{\"EventId\":\"A1B2C3D4-0000-4000-8000-000000000001\",\"EventStatus\":\"Scheduled\","
        "\"EventType\":\"Terminate\",\"ResourceType\":\"VirtualMachine\",\"Resources\":[\"pool_1\","
        "\"POOL_3\"],\"NotBefore\":\"Mon, 19 Sep 2016 18:29:47 GMT\",\"Description\":\"x\","
        "\"EventSource\":\"Platform\",\"DurationInSeconds\":-1},"
        "{\"EventId\":\"e2\",\"EventStatus\":\"Started\",\"EventType\":\"Reboot\","
        "\"ResourceType\":\"VirtualMachine\",\"Resources\":[\"pool_1\"],\"NotBefore\":\"\"}]}";

static ScheduledEventsDocument doc;

static int parse(const char *text, const char **reason) {
        *reason = NULL;
        return scheduled_events_parse(text, strlen(text), VM, &doc, reason);
}

START_TEST(test_parse_good) {
        const char *reason;

        ck_assert_int_eq(parse(doc_two, &reason), 0);
        ck_assert_int_eq(doc.incarnation, 7);
        ck_assert_uint_eq(doc.n_events, 2);
        ck_assert_str_eq(doc.events[0].id, "A1B2C3D4-0000-4000-8000-000000000001");
        ck_assert_int_eq(doc.events[0].type, SCHEDULED_EVENT_TERMINATE);
        ck_assert_int_eq(doc.events[0].status, SCHEDULED_EVENT_SCHEDULED);
        ck_assert(doc.events[0].for_this_vm); /* case-insensitive */
        ck_assert_uint_eq(doc.events[0].not_before_usec, UINT64_C(1474309787) * 1000000U);
        ck_assert_int_eq(doc.events[0].duration_s, -1);
        ck_assert_int_eq(doc.events[1].type, SCHEDULED_EVENT_REBOOT);
        ck_assert_int_eq(doc.events[1].status, SCHEDULED_EVENT_STARTED);
        ck_assert(!doc.events[1].for_this_vm); /* another VM */
        ck_assert_uint_eq(doc.events[1].not_before_usec, 0);

        ck_assert_int_eq(parse("{\"DocumentIncarnation\":0,\"Events\":[]}", &reason), 0);
        ck_assert_uint_eq(doc.n_events, 0);
        /* whitespace around the document is fine */
        ck_assert_int_eq(parse(" \n{\"DocumentIncarnation\":1,\"Events\":[]}\n ", &reason), 0);
}
END_TEST

START_TEST(test_parse_no_vm_name) {
        const char *reason;

        ck_assert_int_eq(scheduled_events_parse(doc_two, strlen(doc_two), NULL, &doc, &reason), 0);
        ck_assert(!doc.events[0].for_this_vm);
        ck_assert_int_eq(scheduled_events_parse(doc_two, strlen(doc_two), "", &doc, &reason), 0);
        ck_assert(!doc.events[0].for_this_vm);
        ck_assert_int_eq(
                scheduled_events_parse(doc_two, strlen(doc_two), "pool_", &doc, &reason), 0);
        ck_assert(!doc.events[0].for_this_vm); /* whole names only */
}
END_TEST

START_TEST(test_parse_garbage) {
        static const char *const bad[] = {
                "",
                "garbage",
                "[]",
                "null",
                "{}",
                "{\"DocumentIncarnation\":\"7\",\"Events\":[]}",
                "{\"DocumentIncarnation\":-1,\"Events\":[]}",
                "{\"DocumentIncarnation\":1.5,\"Events\":[]}",
                "{\"DocumentIncarnation\":1,\"Events\":{}}",
                "{\"DocumentIncarnation\":1}",
                "{\"DocumentIncarnation\":1,\"Events\":[]} trailing",
                "{\"DocumentIncarnation\":1,\"Events\":[]}{}",
                "{\"DocumentIncarnation\":1,\"Events\":[",
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        };
        const char *reason;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_msg(parse(bad[i], &reason) == -EBADMSG, "accepted: %s", bad[i]);
                ck_assert_ptr_nonnull(reason);
        }
        /* a NUL inside */
        ck_assert_int_eq(
                scheduled_events_parse(
                        "{\"DocumentIncarnation\":1,\0\"Events\":[]}", 38, VM, &doc, &reason),
                -EBADMSG);
}
END_TEST

START_TEST(test_parse_oversized) {
        size_t n = SCHEDULED_EVENTS_DOCUMENT_MAX + 100;
        char *big = malloc(n + 1);
        const char *reason;

        ck_assert_ptr_nonnull(big);
        memset(big, ' ', n);
        memcpy(big, "{\"DocumentIncarnation\":1,\"Events\":[]}", 37);
        big[n] = '\0';
        ck_assert_int_eq(scheduled_events_parse(big, n, VM, &doc, &reason), -EBADMSG);
        ck_assert_str_eq(reason, "document too large");
        free(big);
}
END_TEST

START_TEST(test_parse_bad_events_skipped) {
        const char *reason;
        const char *text =
                "{\"DocumentIncarnation\":3,\"Events\":["
                "5, \"x\", null,"
                "{\"EventId\":17,\"EventStatus\":\"Scheduled\",\"EventType\":\"Terminate\"},"
                "{\"EventId\":\"a\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Explode\"},"
                "{\"EventId\":\"b\",\"EventStatus\":\"Weird\",\"EventType\":\"Freeze\"},"
                "{\"EventId\":\"c\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Freeze\","
                "\"NotBefore\":\"tomorrow\"},"
                "{\"EventId\":\"d\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Freeze\","
                "\"NotBefore\":42},"
                "{\"EventId\":\"../../e\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Freeze\"},"
                "{\"EventId\":\"f\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Preempt\","
                "\"Resources\":\"pool_3\"},"
                "{\"EventId\":\"g\",\"EventStatus\":\"Scheduled\",\"EventType\":\"Preempt\","
                "\"Resources\":[1,null,{},\"pool_3\"],\"DurationInSeconds\":\"x\"}]}";

        ck_assert_int_eq(parse(text, &reason), 0);
        ck_assert_uint_eq(doc.n_skipped, 9);
        ck_assert_uint_eq(doc.n_events, 2);
        ck_assert_str_eq(doc.events[0].id, "f");
        ck_assert(!doc.events[0].for_this_vm); /* Resources not an array */
        ck_assert_str_eq(doc.events[1].id, "g");
        ck_assert(doc.events[1].for_this_vm);
        ck_assert_int_eq(doc.events[1].duration_s, -1);
}
END_TEST

START_TEST(test_parse_event_cap) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        const char *reason;

        ck_assert_ptr_nonnull(f);
        fputs("{\"DocumentIncarnation\":1,\"Events\":[", f);
        for (unsigned i = 0; i < SCHEDULED_EVENTS_MAX + 10; i++)
                fprintf(f,
                        "%s{\"EventId\":\"id%u\",\"EventStatus\":\"Scheduled\","
                        "\"EventType\":\"Freeze\",\"Resources\":[\"" VM "\"]}",
                        i ? "," : "", i);
        fputs("]}", f);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(scheduled_events_parse(text, size, VM, &doc, &reason), 0);
        ck_assert_uint_eq(doc.n_events, SCHEDULED_EVENTS_MAX);
        ck_assert_uint_eq(doc.n_skipped, 10);
        free(text);
}
END_TEST

START_TEST(test_incarnation) {
        ScheduledEventsIncarnation s = {};

        ck_assert(scheduled_events_incarnation_accept(&s, 5));
        ck_assert(scheduled_events_incarnation_accept(&s, 5)); /* duplicate: seen again */
        ck_assert(scheduled_events_incarnation_accept(&s, 6));
        ck_assert(!scheduled_events_incarnation_accept(&s, 4)); /* reordered: dropped */
        ck_assert(scheduled_events_incarnation_accept(&s, 6));
        ck_assert_int_eq(s.last, 6);
        /* a service reset: lower ones repeatedly */
        for (unsigned i = 1; i < SCHEDULED_EVENTS_STALE_RESET; i++)
                ck_assert(!scheduled_events_incarnation_accept(&s, 1));
        ck_assert(scheduled_events_incarnation_accept(&s, 1));
        ck_assert_int_eq(s.last, 1);
}
END_TEST

START_TEST(test_approval_body) {
        char *body = NULL;

        ck_assert_int_eq(scheduled_events_approval_body("abc-1", &body), 0);
        ck_assert_str_eq(body, "{\"StartRequests\":[{\"EventId\":\"abc-1\"}]}");
        free(body);
}
END_TEST

START_TEST(test_policy) {
        /* Freeze: flush and approve only */
        for (int s = 0; s < _DRAIN_STEP_MAX; s++)
                ck_assert_int_eq(
                        drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_FREEZE, false, s),
                        s == DRAIN_STEP_FLUSH || s == DRAIN_STEP_APPROVE);
        /* Terminate: everything; already started: no approval */
        for (int s = 0; s < _DRAIN_STEP_MAX; s++) {
                ck_assert(
                        drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_TERMINATE, false, s));
                ck_assert_int_eq(
                        drain_policy_runs(DRAIN_SOURCE_EVENT, SCHEDULED_EVENT_PREEMPT, true, s),
                        s != DRAIN_STEP_APPROVE);
        }
        ck_assert(!drain_policy_runs(DRAIN_SOURCE_MANUAL, -1, false, DRAIN_STEP_APPROVE));
        ck_assert(drain_policy_runs(DRAIN_SOURCE_MANUAL, -1, false, DRAIN_STEP_FLUSH));
        ck_assert(drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -1, false, DRAIN_STEP_FLUSH));
        ck_assert(!drain_policy_runs(DRAIN_SOURCE_SHUTDOWN, -1, false, DRAIN_STEP_BLOCK_LOGINS));
}
END_TEST

/* ---- state file ------------------------------------------------------------------------------ */

static DrainState *state_a, *state_b;

static void state_setup(void) {
        state_a = calloc(1, sizeof(DrainState));
        state_b = calloc(1, sizeof(DrainState));
        ck_assert_ptr_nonnull(state_a);
        ck_assert_ptr_nonnull(state_b);
        drain_state_init(state_a);
        drain_state_init(state_b);
}

static void state_teardown(void) {
        free(state_a);
        free(state_b);
}

START_TEST(test_state_roundtrip) {
        const char *reason = NULL;
        char *text = NULL;
        DrainEventRecord *e;

        (void)snprintf(state_a->boot_id, sizeof(state_a->boot_id), "boot-1");
        state_a->active = true;
        state_a->source = DRAIN_SOURCE_EVENT;
        (void)snprintf(state_a->event_id, sizeof(state_a->event_id), "ev-1");
        state_a->event_type = SCHEDULED_EVENT_PREEMPT;
        state_a->not_before_usec = 1234567;
        state_a->event_started = true;
        state_a->step = DRAIN_STEP_FLUSH;
        state_a->started_usec = 99;
        state_a->bytes_flushed = 1U << 20;
        state_a->dirty_bytes = 0;
        state_a->steps[DRAIN_STEP_NOT_HEALTHY] =
                (DrainStepRecord){.result = DRAIN_RESULT_DONE, .start_usec = 1, .end_usec = 2};
        (void)snprintf(
                state_a->steps[DRAIN_STEP_NOT_HEALTHY].note, 128, "reported \"not\" healthy");
        e = drain_state_add_event(state_a, "ev-1", SCHEDULED_EVENT_PREEMPT, 5);
        ck_assert_ptr_nonnull(e);
        e->approval = DRAIN_APPROVAL_APPROVING;
        ck_assert_ptr_eq(drain_state_add_event(state_a, "ev-1", SCHEDULED_EVENT_PREEMPT, 6), e);
        ck_assert_uint_eq(state_a->n_events, 1);

        ck_assert_int_eq(drain_state_format(state_a, &text), 0);
        ck_assert_int_eq(drain_state_parse(text, strlen(text), state_b, &reason), 0);
        free(text);
        ck_assert_str_eq(state_b->boot_id, "boot-1");
        ck_assert(state_b->active);
        ck_assert_str_eq(state_b->event_id, "ev-1");
        ck_assert_int_eq(state_b->event_type, SCHEDULED_EVENT_PREEMPT);
        ck_assert_uint_eq(state_b->not_before_usec, 1234567);
        ck_assert(state_b->event_started);
        ck_assert_int_eq(state_b->step, DRAIN_STEP_FLUSH);
        ck_assert(!state_b->done);
        ck_assert_uint_eq(state_b->bytes_flushed, 1U << 20);
        ck_assert_int_eq(state_b->dirty_bytes, 0);
        ck_assert_int_eq(state_b->steps[DRAIN_STEP_NOT_HEALTHY].result, DRAIN_RESULT_DONE);
        ck_assert_str_eq(state_b->steps[DRAIN_STEP_NOT_HEALTHY].note, "reported \"not\" healthy");
        ck_assert_uint_eq(state_b->n_events, 1);
        ck_assert_int_eq(state_b->events[0].approval, DRAIN_APPROVAL_APPROVING);
        ck_assert_int_eq(state_b->events[0].usec, 5);

        /* no drain */
        drain_state_init(state_a);
        ck_assert_int_eq(drain_state_format(state_a, &text), 0);
        ck_assert_int_eq(drain_state_parse(text, strlen(text), state_b, &reason), 0);
        free(text);
        ck_assert(!state_b->active);
}
END_TEST

START_TEST(test_state_cap) {
        char id[32];

        for (unsigned i = 0; i < DRAIN_STATE_EVENTS_MAX + 5; i++) {
                (void)snprintf(id, sizeof(id), "id-%u", i);
                ck_assert_ptr_nonnull(
                        drain_state_add_event(state_a, id, SCHEDULED_EVENT_FREEZE, i));
        }
        ck_assert_uint_eq(state_a->n_events, DRAIN_STATE_EVENTS_MAX);
        ck_assert_ptr_null(drain_state_find_event(state_a, "id-4"));
        ck_assert_ptr_nonnull(drain_state_find_event(state_a, "id-5"));
        (void)snprintf(id, sizeof(id), "id-%u", DRAIN_STATE_EVENTS_MAX + 4);
        ck_assert_ptr_nonnull(drain_state_find_event(state_a, id));
}
END_TEST

START_TEST(test_state_bad) {
        static const char *const bad[] = {
                "",
                "[]",
                "{}",
                "{\"version\":2}",
                "{\"version\":1,\"boot_id\":5}",
                "{\"version\":1,\"events\":{}}",
                "{\"version\":1,\"events\":[{\"id\":\"x\",\"type\":\"Boom\",\"approval\":\"none\"}]}",
                "{\"version\":1,\"events\":[{\"id\":\"x\",\"type\":\"Freeze\",\"approval\":\"maybe\"}]}",
                "{\"version\":1,\"events\":[{\"id\":\"\",\"type\":\"Freeze\",\"approval\":\"none\"}]}",
                "{\"version\":1,\"drain\":{\"source\":\"moon\",\"step\":\"flush\"}}",
                "{\"version\":1,\"drain\":{\"source\":\"manual\",\"step\":\"dance\"}}",
                "{\"version\":1,\"drain\":{\"source\":\"manual\",\"step\":\"flush\",\"done\":1}}",
                "{\"version\":1,\"drain\":{\"source\":\"manual\",\"step\":\"flush\",\"started_usec\":-4}}",
                "{\"version\":1} x",
        };
        const char *reason;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(
                        drain_state_parse(bad[i], strlen(bad[i]), state_b, &reason) == -EBADMSG,
                        "accepted: %s", bad[i]);
        ck_assert_int_eq(
                drain_state_parse("{\"version\":1,\"unknown\":[1,2]}", 29, state_b, &reason), 0);
}
END_TEST

START_TEST(test_state_save_load) {
        char dir[] = "/tmp/test-drain-state-XXXXXX", path[256], sub[160];
        const char *reason;
        struct stat st;
        int fd;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        (void)snprintf(sub, sizeof(sub), "%s/state", dir);
        ck_assert_int_eq(drain_state_load(sub, state_b, &reason), -ENOENT);

        ck_assert_ptr_nonnull(drain_state_add_event(state_a, "e-1", SCHEDULED_EVENT_REBOOT, 1));
        state_a->events[0].approval = DRAIN_APPROVAL_APPROVED;
        ck_assert_int_eq(drain_state_save(sub, state_a), 0); /* creates the directory */
        ck_assert_int_eq(drain_state_save(sub, state_a), 0); /* replaces */
        ck_assert_int_eq(drain_state_load(sub, state_b, &reason), 0);
        ck_assert_uint_eq(state_b->n_events, 1);
        ck_assert_int_eq(state_b->events[0].approval, DRAIN_APPROVAL_APPROVED);
        /* no temporary file left behind */
        (void)snprintf(path, sizeof(path), "%s/.%s.tmp", sub, DRAIN_STATE_FILE);
        ck_assert_int_eq(stat(path, &st), -1);

        /* a corrupt file is an error, not a crash */
        (void)snprintf(path, sizeof(path), "%s/%s", sub, DRAIN_STATE_FILE);
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, "{\"version\":1,\"ev", 16), 16);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_eq(drain_state_load(sub, state_b, &reason), -EBADMSG);

        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(rmdir(sub), 0);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("scheduled-events");
        TCase *tc;

        tc = tcase_create("parse");
        tcase_add_test(tc, test_parse_good);
        tcase_add_test(tc, test_parse_no_vm_name);
        tcase_add_test(tc, test_parse_garbage);
        tcase_add_test(tc, test_parse_oversized);
        tcase_add_test(tc, test_parse_bad_events_skipped);
        tcase_add_test(tc, test_parse_event_cap);
        suite_add_tcase(s, tc);

        tc = tcase_create("incarnation");
        tcase_add_test(tc, test_incarnation);
        suite_add_tcase(s, tc);

        tc = tcase_create("approval");
        tcase_add_test(tc, test_approval_body);
        suite_add_tcase(s, tc);

        tc = tcase_create("policy");
        tcase_add_test(tc, test_policy);
        suite_add_tcase(s, tc);

        tc = tcase_create("state");
        tcase_add_checked_fixture(tc, state_setup, state_teardown);
        tcase_add_test(tc, test_state_roundtrip);
        tcase_add_test(tc, test_state_cap);
        tcase_add_test(tc, test_state_bad);
        tcase_add_test(tc, test_state_save_load);
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
