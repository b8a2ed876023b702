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

START_TEST(test_out_of_range) {
        /* Valid times int64 nanoseconds cannot hold: -ERANGE, saturated to the nearest bound. */
        char buf[ISO8601_MAX];
        int64_t t;

        ck_assert_int_eq(parse_iso8601("2300-01-01T00:00:00.0000000Z", &t), -ERANGE);
        ck_assert_int_eq(t, TIME_SEC_MAX * NSEC_PER_SEC);
        ck_assert_str_eq(format_iso8601(buf, t), "2262-04-11T23:47:15.0000000Z");
        ck_assert_int_eq(parse_iso8601("9999-12-31T23:59:59.9999999Z", &t), -ERANGE);
        ck_assert_int_eq(t, TIME_SEC_MAX * NSEC_PER_SEC);
        /* SMB's FILETIME 0 */
        ck_assert_int_eq(parse_iso8601("1601-01-01T00:00:00.0000000Z", &t), -ERANGE);
        ck_assert_int_eq(t, TIME_SEC_MIN * NSEC_PER_SEC);
        ck_assert_str_eq(format_iso8601(buf, t), "1677-09-21T00:12:44.0000000Z");
        ck_assert_int_eq(parse_rfc1123("Mon, 01 Jan 2300 00:00:00 GMT", &t), -ERANGE);
        ck_assert_int_eq(t, TIME_SEC_MAX * NSEC_PER_SEC);
        ck_assert_int_eq(parse_rfc1123("Sat, 01 Jan 1600 00:00:00 GMT", &t), -ERANGE);
        ck_assert_int_eq(t, TIME_SEC_MIN * NSEC_PER_SEC);

        ck_assert_int_eq(parse_iso8601("2262-04-11T23:47:15.9999999Z", &t), 0);
        ck_assert_int_eq(t, TIME_SEC_MAX * NSEC_PER_SEC + 999999900);
        ck_assert_int_eq(parse_iso8601("2262-04-11T23:47:16Z", &t), -ERANGE);
        ck_assert_int_eq(parse_iso8601("1677-09-21T00:12:44Z", &t), 0);
        ck_assert_int_eq(t, TIME_SEC_MIN * NSEC_PER_SEC);
        ck_assert_int_eq(parse_iso8601("1677-09-21T00:12:43.9999999Z", &t), -ERANGE);
}
END_TEST

START_TEST(test_calendar) {
        /* Days that do not exist are refused, not moved to the next month; second 60 is only a
         * leap second, at 23:59, and counts as the next second, as POSIX time does. */
        int64_t t = 42;

        ck_assert_int_eq(parse_iso8601("2023-02-29T00:00:00Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("1900-02-29T00:00:00Z", &t), -EINVAL);
        ck_assert_int_eq(parse_rfc1123("Wed, 29 Feb 2023 00:00:00 GMT", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-04-31T00:00:00Z", &t), -EINVAL);
        ck_assert_int_eq(parse_iso8601("2022-01-04T12:34:60Z", &t), -EINVAL);
        ck_assert_int_eq(parse_rfc1123("Tue, 04 Jan 2022 12:34:60 GMT", &t), -EINVAL);
        ck_assert_int_eq(t, 42);

        ck_assert_int_eq(parse_iso8601("2024-02-29T00:00:00Z", &t), 0);
        ck_assert_int_eq(t, INT64_C(1709164800) * NSEC_PER_SEC);
        ck_assert_int_eq(parse_iso8601("2000-02-29T00:00:00Z", &t), 0);
        ck_assert_int_eq(parse_iso8601("2016-12-31T23:59:60Z", &t), 0);
        ck_assert_int_eq(t, INT64_C(1483228800) * NSEC_PER_SEC);
        ck_assert_int_eq(parse_rfc1123("Sat, 31 Dec 2016 23:59:60 GMT", &t), 0);
        ck_assert_int_eq(t, INT64_C(1483228800) * NSEC_PER_SEC);
}
END_TEST

int main(void) {
        Suite *s = suite_create("time-util");
        TCase *tc = tcase_create("formats"), *limits = tcase_create("limits");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_rfc1123_roundtrip);
        tcase_add_test(tc, test_rfc1123_rejects);
        tcase_add_test(tc, test_iso8601);
        tcase_add_test(limits, test_out_of_range);
        tcase_add_test(limits, test_calendar);
        suite_add_tcase(s, tc);
        suite_add_tcase(s, limits);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
