/* SPDX-License-Identifier: MIT */
/* The pure parts of freeing space on a low disk: how much to ask the cache for, the tmpfiles.d
 * line of the /tmp cleanup (and what it refuses to write), the reclaim child's output, and the
 * TmpCleanupAge= parser. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "conf.h"
#include "disk-reclaim.h"
#include "macro.h"

#define MIB (UINT64_C(1) << 20)

START_TEST(test_target) {
        /* 16M free, warning below 24M: the 8M missing plus a quarter of 24M */
        ck_assert_uint_eq(disk_reclaim_target(16 * MIB, 24 * MIB), 8 * MIB + 6 * MIB);
        /* already above (raced): the margin only */
        ck_assert_uint_eq(disk_reclaim_target(30 * MIB, 24 * MIB), 6 * MIB);
        /* never 0 (0 would ask for nothing) */
        ck_assert_uint_eq(disk_reclaim_target(10, 0), 1);
        ck_assert_uint_eq(disk_reclaim_target(0, 3), 3);
}
END_TEST

START_TEST(test_tmpfiles_line) {
        char buf[DISK_TMPFILES_LINE_MAX];

        ck_assert_int_eq(disk_tmpfiles_line("/tmp", "864000s", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "e /tmp - - - 864000s\n");
        ck_assert_int_eq(disk_tmpfiles_line("/var/tmp/x", "amAM:60s", buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "e /var/tmp/x - - - amAM:60s\n");
        /* what would change the line's meaning */
        ck_assert_int_eq(disk_tmpfiles_line("tmp", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/my tmp", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp\n/x", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp/%h", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp/\"x\"", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp/a\\b", "60s", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp", "1 d", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp", "", buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp", NULL, buf, sizeof(buf)), -EINVAL);
        ck_assert_int_eq(disk_tmpfiles_line("/tmp", "60s", buf, 8), -ENOBUFS);
}
END_TEST

START_TEST(test_reclaim_parse) {
        int64_t freed, cache;
        int error;

        ck_assert_int_eq(disk_reclaim_parse("0 25165824 4198400\n", &error, &freed, &cache), 0);
        ck_assert_int_eq(error, 0);
        ck_assert_int_eq(freed, 25165824);
        ck_assert_int_eq(cache, 4198400);
        ck_assert_int_eq(disk_reclaim_parse("-95 -1 -1\n", &error, &freed, &cache), 0);
        ck_assert_int_eq(error, -EOPNOTSUPP);
        ck_assert_int_eq(freed, -1);
        ck_assert_int_eq(disk_reclaim_parse("", &error, &freed, &cache), -EBADMSG);
        ck_assert_int_eq(disk_reclaim_parse(NULL, &error, &freed, &cache), -EBADMSG);
        ck_assert_int_eq(disk_reclaim_parse("0 1 2", &error, &freed, &cache), -EBADMSG);
        ck_assert_int_eq(disk_reclaim_parse("5 1 2\n", &error, &freed, &cache), -EBADMSG);
        ck_assert_int_eq(disk_reclaim_parse("0 -7 2\n", &error, &freed, &cache), -EBADMSG);
        ck_assert_int_eq(disk_reclaim_parse("0 1 2\nx", &error, &freed, &cache), 0);
}
END_TEST

START_TEST(test_parse_cleanup_age) {
        const char *why = NULL;
        char *v = NULL;

        ck_assert_int_eq(conf_parse_cleanup_age("10d", &v, NULL, &why), 0);
        ck_assert_str_eq(v, "864000s");
        ck_assert_int_eq(conf_parse_cleanup_age("amAM:1h 30min", &v, NULL, &why), 0);
        ck_assert_str_eq(v, "amAM:5400s");
        ck_assert_int_eq(conf_parse_cleanup_age("", &v, NULL, &why), 0);
        ck_assert_ptr_null(v);
        ck_assert_int_eq(conf_parse_cleanup_age("30s", &v, NULL, &why), -ERANGE);
        ck_assert_int_eq(conf_parse_cleanup_age("x:10d", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_cleanup_age(":10d", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_cleanup_age("am:", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_cleanup_age("~10d", &v, NULL, &why), -EINVAL);
        ck_assert_int_eq(conf_parse_cleanup_age("10 days", &v, NULL, &why), -EINVAL);
        ck_assert_ptr_nonnull(why);
        ck_assert_ptr_null(v);
}
END_TEST

int main(void) {
        const TTest *const tests[] = {
                test_target,
                test_tmpfiles_line,
                test_reclaim_parse,
                test_parse_cleanup_age,
        };
        Suite *s = suite_create("disk-reclaim");
        TCase *tc = tcase_create("pure");
        SRunner *sr = srunner_create(s);
        int failed;

        for (size_t i = 0; i < ELEMENTSOF(tests); i++)
                tcase_add_test(tc, tests[i]);
        suite_add_tcase(s, tc);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? 0 : 1;
}
