/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "time-util.h"

START_TEST(test_rfc1123_roundtrip) {
        char buf[RFC1123_MAX];
        int64_t t;

        /* From a recorded response: "Tue, 04 Jan 2022 22:50:57 GMT". */
        ck_assert_int_eq(parse_rfc1123("Tue, 04 Jan 2022 22:50:57 GMT", &t), 0);
        ck_assert_int_eq(t / NSEC_PER_SEC, 1641336657);
        ck_assert_str_eq(format_rfc1123(buf, t + 999999999), "Tue, 04 Jan 2022 22:50:57 GMT");
        ck_assert_str_eq(format_rfc1123(buf, 0), "Thu, 01 Jan 1970 00:00:00 GMT");
}
END_TEST

START_TEST(test_rfc1123_rejects) {
        int64_t t = 42;
        static const char *const bad[] = {
                "",
                "Tue, 4 Jan 2022 22:50:57 GMT",
                "Tue, 04 Jan 2022 22:50:57 UTC",
                "Xyz, 04 Jan 2022 22:50:57 GMT",
                "Tue, 04 Foo 2022 22:50:57 GMT",
                "Tue, 32 Jan 2022 22:50:57 GMT",
                "Tue, 04 Jan 2022 24:50:57 GMT",
                "Tue, 04 Jan 2022 22:50:57 GMT ",
                "Tue 04 Jan 2022 22:50:57 GMT"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_msg(parse_rfc1123(bad[i], &t) == -EINVAL, "accepted '%s'", bad[i]);
        ck_assert_int_eq(t, 42);
}
END_TEST

START_TEST(test_iso8601) {
        char buf[ISO8601_MAX];
        int64_t t;

        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57.9013837Z", &t), 0);
        ck_assert_int_eq(t, INT64_C(1641336657) * NSEC_PER_SEC + 901383700);
        ck_assert_str_eq(format_iso8601(buf, t), "2022-01-04T22:50:57.9013837Z");
        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57Z", &t), 0);
        ck_assert_str_eq(format_iso8601(buf, t), "2022-01-04T22:50:57.0000000Z");
        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57.5Z", &t), 0);
        ck_assert_int_eq(t % NSEC_PER_SEC, 500000000);
        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57.12345678Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57.Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-01-04 22:50:57Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-13-04T22:50:57Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-01-04T22:50:57", &t), -EINVAL);
}
END_TEST

int main(void) {
        Suite *s = suite_create("time-util");
        TCase *tc = tcase_create("formats");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_rfc1123_roundtrip);
        tcase_add_test(tc, test_rfc1123_rejects);
        tcase_add_test(tc, test_iso8601);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
