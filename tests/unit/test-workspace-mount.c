/* SPDX-License-Identifier: MIT */
/* The pure parts of the workspace mounter: mount unit names escaped as systemd-escape --path
 * does, and the options azfilesfs gets; plus the device of a mount from mountinfo (for aborting a
 * FUSE connection). Mounting and recovering run against real FUSE mounts in
 * tests/integration/test-agent-workspace.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "macro.h"
#include "workspace-monitor.h"
#include "workspace-mount.h"

static void check_unit(const char *path, const char *want) {
        _cleanup_free_ char *unit = NULL;

        ck_assert_int_eq(mount_unit_name_from_path(path, &unit), 0);
        ck_assert_str_eq(unit, want);
}

START_TEST(test_unit_names) {
        char *unit = NULL;

        /* Expected values are what systemd-escape --path --suffix=mount prints. */
        check_unit("/srv/workspace", "srv-workspace.mount");
        check_unit("/", "-.mount");
        check_unit("//srv//workspace/", "srv-workspace.mount");
        check_unit("/mnt/team-share", "mnt-team\\x2dshare.mount");
        check_unit("/mnt/.hidden/a.b", "mnt-.hidden-a.b.mount");
        check_unit("/.hidden/x", "\\x2ehidden-x.mount");
        check_unit("/srv/my work", "srv-my\\x20work.mount");
        check_unit("/srv/caf\xc3\xa9", "srv-caf\\xc3\\xa9.mount");
        check_unit("/a:b_c", "a:b_c.mount");

        ck_assert_int_eq(mount_unit_name_from_path("srv/workspace", &unit), -EINVAL);
        ck_assert_int_eq(mount_unit_name_from_path("/srv/../etc", &unit), -EINVAL);
        ck_assert_int_eq(mount_unit_name_from_path("/srv/./x", &unit), -EINVAL);
        ck_assert_int_eq(mount_unit_name_from_path(NULL, &unit), -EINVAL);
        ck_assert_ptr_null(unit);
}
END_TEST

START_TEST(test_options) {
        WorkspaceMountConfig c = {
                .source = "https://acct.file.core.windows.net/team",
                .mount_point = "/srv/workspace",
                .credentials = "/etc/poolagent/storage.cred",
                .cache_directory = "/mnt/poolagent/cache",
        };
        _cleanup_free_ char *a = NULL, *b = NULL, *d = NULL;
        char *e = NULL;

        ck_assert_int_eq(workspace_mount_options(&c, &a), 0);
        ck_assert_str_eq(
                a, "credentials=/etc/poolagent/storage.cred,cache_dir=/mnt/poolagent/cache");
        c.mount_options = "writeback=async,max_dirty=256M";
        ck_assert_int_eq(workspace_mount_options(&c, &b), 0);
        ck_assert_str_eq(
                b, "credentials=/etc/poolagent/storage.cred,cache_dir=/mnt/poolagent/cache,"
                   "writeback=async,max_dirty=256M");
        c.credentials = NULL; /* managed identity configured elsewhere */
        c.mount_options = "";
        ck_assert_int_eq(workspace_mount_options(&c, &d), 0);
        ck_assert_str_eq(d, "cache_dir=/mnt/poolagent/cache");
        /* A comma in a path would be split into another option: refused. */
        c.cache_directory = "/mnt/a,allow_other";
        ck_assert_int_eq(workspace_mount_options(&c, &e), -EINVAL);
        ck_assert_ptr_null(e);
}
END_TEST

START_TEST(test_mountinfo_dev) {
        static const char text[] =
                "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n"
                "41 26 0:38 / /srv/workspace rw,nosuid - fuse.azfilesfs https://a rw,user_id=0\n"
                "42 41 0:52 / /srv/workspace rw,nosuid - fuse.azfilesfs https://a rw,user_id=0\n";
        _cleanup_free_ char *fstype = NULL, *dev = NULL;
        char *none_type = NULL, *none_dev = NULL;

        /* The mount on top wins. */
        ck_assert_int_eq(
                mountinfo_find_dev(text, sizeof(text) - 1, "/srv/workspace", &fstype, &dev), 1);
        ck_assert_str_eq(fstype, "fuse.azfilesfs");
        ck_assert_str_eq(dev, "0:52");
        ck_assert_int_eq(
                mountinfo_find_dev(text, sizeof(text) - 1, "/srv", &none_type, &none_dev), 0);
        ck_assert_ptr_null(none_type);
        ck_assert_ptr_null(none_dev);
}
END_TEST

int main(void) {
        Suite *s = suite_create("workspace-mount");
        TCase *tc = tcase_create("pure");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_unit_names);
        tcase_add_test(tc, test_options);
        tcase_add_test(tc, test_mountinfo_dev);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
