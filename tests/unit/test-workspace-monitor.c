/* SPDX-License-Identifier: MIT */
/* The workspace check: the mountinfo parser on sample lines (escapes, optional fields, malformed
 * lines), finding a mount point (the top mount wins), the state classification, and the monitor
 * itself on mounts every machine has (/proc, a plain directory): no root, no FUSE. The hung case
 * runs against a real FUSE mount in tests/integration/test-agent-workspace.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "time-util.h"
#include "workspace-monitor.h"

/* ---- mountinfo ------------------------------------------------------------------------------ */

START_TEST(test_parse_line) {
        char line[] = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root "
                      "rw,errors=continue";
        char plain[] = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw";
        char nofields[] = "41 26 0:38 / /tmp/x rw,nosuid - fuse.azfilesfs hang-fs rw,user_id=0";
        MountInfoEntry e;

        ck_assert_int_eq(mountinfo_parse_line(line, &e), 0);
        ck_assert_str_eq(e.root, "/mnt1");
        ck_assert_str_eq(e.mount_point, "/mnt2");
        ck_assert_str_eq(e.fstype, "ext3");
        ck_assert_str_eq(e.source, "/dev/root");

        ck_assert_int_eq(mountinfo_parse_line(plain, &e), 0);
        ck_assert_str_eq(e.mount_point, "/proc");
        ck_assert_str_eq(e.fstype, "proc");

        ck_assert_int_eq(mountinfo_parse_line(nofields, &e), 0);
        ck_assert_str_eq(e.mount_point, "/tmp/x");
        ck_assert_str_eq(e.fstype, "fuse.azfilesfs");
        ck_assert_str_eq(e.source, "hang-fs");
}
END_TEST

START_TEST(test_parse_escapes) {
        char line[] = "50 26 0:40 /a\\040b /srv/my\\040work\\011space\\134x rw shared:7 master:2 "
                      "- fuse.azfilesfs my\\040share rw";
        char kept[] = "51 26 0:41 / /srv/odd\\4x\\ rw - tmpfs tmpfs rw";
        char nul[] = "52 26 0:42 / /srv/a\\000b rw - tmpfs tmpfs rw";
        MountInfoEntry e;

        ck_assert_int_eq(mountinfo_parse_line(line, &e), 0);
        ck_assert_str_eq(e.root, "/a b");
        ck_assert_str_eq(e.mount_point, "/srv/my work\tspace\\x");
        ck_assert_str_eq(e.fstype, "fuse.azfilesfs");
        ck_assert_str_eq(e.source, "my share");

        /* A backslash without three octal digits is not an escape. */
        ck_assert_int_eq(mountinfo_parse_line(kept, &e), 0);
        ck_assert_str_eq(e.mount_point, "/srv/odd\\4x\\");

        ck_assert_int_eq(mountinfo_parse_line(nul, &e), -EINVAL);
}
END_TEST

START_TEST(test_parse_malformed) {
        static const char *const bad[] = {
                "",
                "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 ext3 /dev/root rw", /* no "-" */
                "36 35 98:0 /mnt1 /mnt2 rw -",                                  /* no type */
                "36 35 98:0 /mnt1 /mnt2 rw - ext3",                             /* no source */
                "36 35 98:0 /mnt1",                                             /* short */
                "x 35 98:0 / /mnt rw - ext3 /dev/root rw",                      /* bad id */
                "36 35 980 / /mnt rw - ext3 /dev/root rw",                      /* bad dev */
                "36 35 98:0 / mnt rw - ext3 /dev/root rw",                      /* relative */
                "36  35 98:0 / /mnt rw - ext3 /dev/root rw",                    /* empty field */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *copy = strdup(bad[i]);
                MountInfoEntry e;

                ck_assert_ptr_nonnull(copy);
                ck_assert_msg(mountinfo_parse_line(copy, &e) == -EINVAL, "accepted: %s", bad[i]);
                free(copy);
        }
}
END_TEST

START_TEST(test_find) {
        static const char text[] =
                "22 1 0:21 / /proc rw shared:5 - proc proc rw\n"
                "garbage line\n"
                "40 26 0:37 / /srv/work\\040space rw - tmpfs tmpfs rw\n"
                "41 40 0:38 / /srv/work\\040space rw - fuse.azfilesfs share rw,user_id=0\n"
                "42 26 0:39 / /srv/workspace2 rw - fuse.other x rw"; /* no final newline */
        char *fstype = NULL;

        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv/work space", &fstype), 1);
        ck_assert_str_eq(fstype, "fuse.azfilesfs"); /* the mount on top */
        free(fstype);
        fstype = NULL;

        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv/workspace2", &fstype), 1);
        ck_assert_str_eq(fstype, "fuse.other");
        free(fstype);
        fstype = NULL;

        /* Neither a prefix, nor the escaped form, nor a missing path matches. */
        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv/work", &fstype), 0);
        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv/work\\040space", &fstype), 0);
        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv", &fstype), 0);
        ck_assert_int_eq(mountinfo_find("", 0, "/proc", &fstype), 0);
        ck_assert_ptr_null(fstype);

        /* The size bounds the text: the last line is cut off. */
        ck_assert_int_eq(
                mountinfo_find(
                        text, strlen(text) - strlen("rw - fuse.other x rw"), "/srv/workspace2",
                        &fstype),
                0);
}
END_TEST

START_TEST(test_find_overlong_line) {
        size_t n = WORKSPACE_MOUNTINFO_LINE_MAX + 100;
        char *text = malloc(n + 64);
        char *fstype = NULL;
        int k;

        ck_assert_ptr_nonnull(text);
        k = snprintf(text, 64, "40 26 0:37 / /srv/long rw - tmpfs ");
        memset(text + k, 'x', n - (size_t)k);
        memcpy(text + n, " rw\n", 5);
        ck_assert_int_eq(mountinfo_find(text, strlen(text), "/srv/long", &fstype), 0);
        free(text);
}
END_TEST

/* ---- classification ------------------------------------------------------------------------- */

START_TEST(test_classify) {
        const char *t = WORKSPACE_FS_TYPE;

        ck_assert_int_eq(workspace_classify(false, NULL, t, false, 0), WORKSPACE_NOT_MOUNTED);
        ck_assert_int_eq(workspace_classify(false, NULL, t, true, 0), WORKSPACE_NOT_MOUNTED);
        ck_assert_int_eq(workspace_classify(true, "tmpfs", t, false, 0), WORKSPACE_WRONG_TYPE);
        ck_assert_int_eq(workspace_classify(true, "fuse", t, true, 0), WORKSPACE_WRONG_TYPE);
        ck_assert_int_eq(workspace_classify(true, NULL, t, false, 0), WORKSPACE_WRONG_TYPE);
        ck_assert_int_eq(workspace_classify(true, t, t, false, 0), WORKSPACE_OK);
        ck_assert_int_eq(workspace_classify(true, t, t, true, 0), WORKSPACE_HUNG);
        ck_assert_int_eq(workspace_classify(true, t, t, false, -ENOTCONN), WORKSPACE_ERROR);
        ck_assert_int_eq(workspace_classify(true, t, t, true, -EIO), WORKSPACE_HUNG);
}
END_TEST

START_TEST(test_state_strings) {
        for (int i = 0; i < _WORKSPACE_STATE_MAX; i++) {
                const char *s = workspace_state_to_string((WorkspaceState)i);
                ck_assert_ptr_nonnull(s);
                ck_assert_int_eq(workspace_state_from_string(s), i);
        }
        ck_assert_str_eq(workspace_state_to_string(WORKSPACE_NOT_MOUNTED), "not-mounted");
        ck_assert_ptr_null(workspace_state_to_string(_WORKSPACE_STATE_MAX));
        ck_assert_ptr_null(workspace_state_to_string(_WORKSPACE_STATE_INVALID));
        ck_assert_int_eq(workspace_state_from_string("bogus"), _WORKSPACE_STATE_INVALID);
        ck_assert_int_eq(workspace_state_from_string(NULL), _WORKSPACE_STATE_INVALID);
}
END_TEST

/* ---- the monitor on real mounts ------------------------------------------------------------- */

typedef struct Changes {
        WorkspaceState seen[8];
        unsigned n;
} Changes;

static void on_change(WorkspaceMonitor *w, WorkspaceState state, void *userdata) {
        Changes *c = userdata;

        if (c->n < ELEMENTSOF(c->seen))
                c->seen[c->n++] = state;
}

/* Runs the loop until the monitor leaves state from, bounded. */
static void run_until_not(sd_event *e, WorkspaceMonitor *w, WorkspaceState from) {
        int64_t deadline = now_monotonic_ns() + 10 * NSEC_PER_SEC;

        while (workspace_monitor_state(w) == from) {
                ck_assert_msg(
                        now_monotonic_ns() < deadline, "still %s after 10 s",
                        workspace_state_to_string(from));
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        }
}

static bool probe_running(WorkspaceMonitor *w) {
        json_object *o = json_object_new_object();
        bool running;

        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(workspace_monitor_status_json(w, o), 0);
        running = json_object_object_get(o, "probe_pid") != NULL;
        json_object_put(o);
        return running;
}

START_TEST(test_monitor_proc_ok) {
        sd_event *e = NULL;
        WorkspaceMonitor *w = NULL;
        Changes c = {};

        ck_assert_int_ge(sd_event_new(&e), 0);
        ck_assert_int_eq(
                workspace_monitor_new(
                        e, "/proc", "proc", 5 * 1000000ULL, 3600 * 1000000ULL, on_change, &c, &w),
                0);
        /* The probe runs in a child; the state is unknown until it reports. */
        ck_assert_int_eq(workspace_monitor_state(w), WORKSPACE_UNKNOWN);
        run_until_not(e, w, WORKSPACE_UNKNOWN);
        ck_assert_int_eq(workspace_monitor_state(w), WORKSPACE_OK);
        ck_assert_msg(
                strstr(workspace_monitor_detail(w), "answers"), "%s", workspace_monitor_detail(w));
        ck_assert_int_eq(c.n, 1);
        ck_assert_int_eq(c.seen[0], WORKSPACE_OK);

        /* Checked again on demand: a new probe runs and is reaped; same state, no new event. */
        ck_assert_int_eq(workspace_monitor_check_now(w), 0);
        ck_assert(probe_running(w));
        for (int64_t deadline = now_monotonic_ns() + 10 * NSEC_PER_SEC; probe_running(w);) {
                ck_assert_msg(now_monotonic_ns() < deadline, "probe still running after 10 s");
                ck_assert_int_ge(sd_event_run(e, 100000), 0);
        }
        ck_assert_int_eq(c.n, 1);
        ck_assert_int_eq(workspace_monitor_state(w), WORKSPACE_OK);
        workspace_monitor_free(w);
        sd_event_unref(e);
}
END_TEST

START_TEST(test_monitor_not_mounted_and_wrong_type) {
        char dir[] = "/tmp/test-workspace-monitor-XXXXXX";
        sd_event *e = NULL;
        WorkspaceMonitor *w = NULL;
        Changes c = {};

        ck_assert_ptr_nonnull(mkdtemp(dir));
        ck_assert_int_ge(sd_event_new(&e), 0);

        /* Decided from mountinfo alone, at once, without a probe. */
        ck_assert_int_eq(
                workspace_monitor_new(
                        e, dir, WORKSPACE_FS_TYPE, 1000000, 3600 * 1000000ULL, on_change, &c, &w),
                0);
        ck_assert_int_eq(workspace_monitor_state(w), WORKSPACE_NOT_MOUNTED);
        ck_assert_int_eq(c.n, 1);
        w = workspace_monitor_free(w);

        ck_assert_int_eq(
                workspace_monitor_new(
                        e, "/proc", WORKSPACE_FS_TYPE, 1000000, 3600 * 1000000ULL, on_change, &c,
                        &w),
                0);
        ck_assert_int_eq(workspace_monitor_state(w), WORKSPACE_WRONG_TYPE);
        ck_assert_msg(
                strstr(workspace_monitor_detail(w), "a proc mount"), "%s",
                workspace_monitor_detail(w));
        ck_assert_int_eq(c.n, 2);
        workspace_monitor_free(w);
        sd_event_unref(e);
        ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

int main(void) {
        Suite *s = suite_create("workspace-monitor");
        TCase *parse = tcase_create("mountinfo"), *classify = tcase_create("classify"),
              *monitor = tcase_create("monitor");
        SRunner *sr;
        int failed;

        tcase_add_test(parse, test_parse_line);
        tcase_add_test(parse, test_parse_escapes);
        tcase_add_test(parse, test_parse_malformed);
        tcase_add_test(parse, test_find);
        tcase_add_test(parse, test_find_overlong_line);
        tcase_add_test(classify, test_classify);
        tcase_add_test(classify, test_state_strings);
        tcase_add_test(monitor, test_monitor_proc_ok);
        tcase_add_test(monitor, test_monitor_not_mounted_and_wrong_type);
        tcase_set_timeout(monitor, 30);
        suite_add_tcase(s, parse);
        suite_add_tcase(s, classify);
        suite_add_tcase(s, monitor);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
