/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "strv.h"

START_TEST(test_push_length_contains) {
        _cleanup_strv_free_ char **l = NULL;

        ck_assert_uint_eq(strv_length(l), 0);
        ck_assert(!strv_contains(l, "a"));
        ck_assert_int_eq(strv_push(&l, "a"), 0);
        ck_assert_int_eq(strv_push(&l, "b c"), 0);
        ck_assert_int_eq(strv_push(&l, ""), 0);
        ck_assert_uint_eq(strv_length(l), 3);
        ck_assert_str_eq(l[0], "a");
        ck_assert_str_eq(l[1], "b c");
        ck_assert_str_eq(l[2], "");
        ck_assert_ptr_null(l[3]);
        ck_assert(strv_contains(l, "b c"));
        ck_assert(strv_contains(l, ""));
        ck_assert(!strv_contains(l, "b"));
}
END_TEST

/* A strv of the given strings (a NULL-terminated list of literals). */
static char **make(const char *const *src) {
        char **l = NULL;

        ck_assert_int_eq(strv_copy((char *const *)src, SIZE_MAX, &l), 0);
        return l;
}

START_TEST(test_equal) {
        _cleanup_strv_free_ char **a = make((const char *[]){"x", "y", NULL}),
                                 **b = make((const char *[]){"x", "y", NULL}),
                                 **c = make((const char *[]){"x", NULL}),
                                 **d = make((const char *[]){"x", "z", NULL}),
                                 **empty = make((const char *[]){NULL});

        ck_assert(strv_equal(a, b));
        ck_assert(!strv_equal(a, c));
        ck_assert(!strv_equal(c, a));
        ck_assert(!strv_equal(a, d));
        ck_assert(strv_equal(NULL, empty));
        ck_assert(strv_equal(NULL, NULL));
        ck_assert(!strv_equal(NULL, c));
}
END_TEST

START_TEST(test_copy) {
        _cleanup_strv_free_ char **a = make((const char *[]){"one", "two", "three", NULL}),
                                 **c = NULL, **e = NULL;
        char **none = a;

        ck_assert_int_eq(strv_copy(a, 3, &c), 0);
        ck_assert(strv_equal(a, c));
        ck_assert_ptr_ne(c[0], a[0]); /* copies, not the same strings */
        ck_assert_int_eq(strv_copy(a, 2, &none), -E2BIG);
        ck_assert_ptr_eq(none, a); /* untouched on failure */
        ck_assert_int_eq(strv_copy(NULL, 0, &e), 0);
        ck_assert_ptr_nonnull(e);
        ck_assert_ptr_null(e[0]);
}
END_TEST

START_TEST(test_free_null) {
        ck_assert_ptr_null(strv_free(NULL));
}
END_TEST

static Suite *strv_suite(void) {
        Suite *s = suite_create("strv");
        TCase *tc = tcase_create("strv");

        tcase_add_test(tc, test_push_length_contains);
        tcase_add_test(tc, test_equal);
        tcase_add_test(tc, test_copy);
        tcase_add_test(tc, test_free_null);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(strv_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
