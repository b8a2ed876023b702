/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "base64-util.h"

START_TEST(test_rfc4648_vectors) {
        /* RFC 4648 section 10. */
        static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
        static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                            "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
        for (size_t i = 0; i < 7; i++) {
                char *e = NULL;
                uint8_t *d = NULL;
                size_t n;
                ck_assert_int_eq(base64_encode(plain[i], strlen(plain[i]), &e), 0);
                ck_assert_str_eq(e, coded[i]);
                ck_assert_int_eq(base64_decode(coded[i], &d, &n), 0);
                ck_assert_uint_eq(n, strlen(plain[i]));
                ck_assert(memcmp(d, plain[i], n) == 0);
                free(e);
                free(d);
        }
}
END_TEST

START_TEST(test_rejects) {
        static const char *const bad[] = {"Zg=", "Zg", "Z===", "Zm9v\n", "Zm 9", "Zm9*", "=Zg="};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint8_t *d = NULL;
                size_t n;
                ck_assert_msg(base64_decode(bad[i], &d, &n) == -EINVAL, "accepted '%s'", bad[i]);
                ck_assert_ptr_null(d);
        }
}
END_TEST

int main(void) {
        Suite *s = suite_create("base64-util");
        TCase *tc = tcase_create("codec");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_rfc4648_vectors);
        tcase_add_test(tc, test_rejects);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
