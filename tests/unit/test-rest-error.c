/* SPDX-License-Identifier: MIT */
/* The File REST error table (status + x-ms-error-code to errno) and what is retried. */
#include <errno.h>
#include <stdlib.h>

#include <check.h>

#include "rest-error.h"

START_TEST(test_table) {
        static const struct {
                long status;
                const char *code;
                int error;
        } cases[] = {
                {200, NULL, 0},
                {201, "Whatever", 0},
                {206, NULL, 0},
                {404, "ResourceNotFound", -ENOENT},
                {404, "ParentNotFound", -ENOENT},
                {404, "ShareNotFound", -ENOENT},
                {404, NULL, -ENOENT}, /* HEAD without the header */
                {404, "", -ENOENT},
                {409, "ResourceAlreadyExists", -EEXIST},
                {409, "resourcealreadyexists", -EEXIST},
                {409, "DirectoryNotEmpty", -ENOTEMPTY},
                {409, "ReadOnlyAttribute", -EACCES},
                {409, "SharingViolation", -EBUSY},
                {409, "LeaseAlreadyPresent", -EBUSY},
                {409, "SomethingNew", -EBUSY},
                {412, "LeaseIdMissing", -EBUSY},
                {412, "ConditionNotMet", -ESTALE},
                {403, "AuthenticationFailed", -EACCES},
                {401, "InvalidAuthenticationInfo", -EACCES},
                {400, "InvalidFileOrDirectoryPathName", -ENAMETOOLONG},
                {400, "Md5Mismatch", -EBADMSG},
                {400, "InvalidHeaderValue", -EINVAL},
                {413, "RequestBodyTooLarge", -EFBIG},
                {416, "InvalidRange", -ERANGE},
                {429, NULL, -EIO},
                {500, "OperationTimedOut", -ETIMEDOUT},
                {500, "InternalError", -EIO},
                {503, "ServerBusy", -EIO},
                {504, NULL, -ETIMEDOUT},
                {418, "Teapot", -EIO},
                {599, NULL, -EIO},
                {302, NULL, -EPROTO},
                {100, NULL, -EPROTO},
                {0, NULL, -EPROTO},
                {-1, NULL, -EPROTO},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                ck_assert_msg(
                        rest_error_to_errno(cases[i].status, cases[i].code) == cases[i].error,
                        "%ld %s: got %d want %d", cases[i].status,
                        cases[i].code ? cases[i].code : "(null)",
                        rest_error_to_errno(cases[i].status, cases[i].code), cases[i].error);
}
END_TEST

START_TEST(test_retriable) {
        static const long yes[] = {408, 429, 500, 502, 503, 504};
        static const long no[] = {200, 400, 401, 403, 404, 409, 412, 413, 416, 501, 505};
        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
                ck_assert_msg(rest_status_is_retriable(yes[i]), "%ld", yes[i]);
        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
                ck_assert_msg(!rest_status_is_retriable(no[i]), "%ld", no[i]);
        ck_assert(rest_transport_error_is_retriable(-ECONNRESET));
        ck_assert(rest_transport_error_is_retriable(-ECONNREFUSED));
        ck_assert(rest_transport_error_is_retriable(-ETIMEDOUT));
        ck_assert(rest_transport_error_is_retriable(-ECONNABORTED));
        ck_assert(!rest_transport_error_is_retriable(-ECANCELED));
        ck_assert(!rest_transport_error_is_retriable(-EBADMSG));
        ck_assert(!rest_transport_error_is_retriable(-E2BIG));
        ck_assert(!rest_transport_error_is_retriable(-EKEYREJECTED));
        ck_assert(!rest_transport_error_is_retriable(0));
}
END_TEST

int main(void) {
        Suite *s = suite_create("rest-error");
        TCase *tc = tcase_create("table");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_table);
        tcase_add_test(tc, test_retriable);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
