/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-names.h"

START_TEST(test_share_names) {
        ck_assert_int_eq(emu_share_name_validate("abc"), 0);
        ck_assert_int_eq(emu_share_name_validate("my-share-01"), 0);
        ck_assert_int_eq(emu_share_name_validate("ab"), -EINVAL);
        ck_assert_int_eq(emu_share_name_validate("Share"), -EINVAL);
        ck_assert_int_eq(emu_share_name_validate("a--b"), -EINVAL);
        ck_assert_int_eq(emu_share_name_validate("-ab"), -EINVAL);
        ck_assert_int_eq(emu_share_name_validate("ab-"), -EINVAL);
        ck_assert_int_eq(emu_share_name_validate("sh\xC3\xA9re"), -EINVAL);
        char long_name[65];
        memset(long_name, 'a', 64);
        long_name[64] = '\0';
        ck_assert_int_eq(emu_share_name_validate(long_name), -EINVAL);
        long_name[63] = '\0';
        ck_assert_int_eq(emu_share_name_validate(long_name), 0);
}
END_TEST

static int norm(const char *in, bool dot, char **out) {
        *out = NULL;
        return emu_name_normalize(in, dot, out);
}

START_TEST(test_normalize) {
        char *out;

        ck_assert_int_eq(norm("File.txt", false, &out), 0);
        ck_assert_str_eq(out, "File.txt");
        free(out);
        ck_assert_int_eq(norm("name...", false, &out), 0);
        ck_assert_str_eq(out, "name");
        free(out);
        ck_assert_int_eq(norm("name...", true, &out), 0);
        ck_assert_str_eq(out, "name...");
        free(out);
        ck_assert_int_eq(norm("...", false, &out), -EINVAL);
        ck_assert_int_eq(norm("..", true, &out), -EINVAL);
        ck_assert_int_eq(norm(".", true, &out), -EINVAL);
        ck_assert_int_eq(norm(".hidden", false, &out), 0);
        free(out);
        ck_assert_int_eq(norm("with space & (x)", false, &out), 0);
        free(out);
        ck_assert_int_eq(norm("\xE4\xB8\xAD\xE6\x96\x87", false, &out), 0);
        free(out);
        /* U+FFFF is accepted (listed as an Encoded name). */
        ck_assert_int_eq(norm("a\xEF\xBF\xBF", false, &out), 0);
        free(out);
}
END_TEST

START_TEST(test_forbidden) {
        static const char *const bad[] = {
                "a\"b", "a\\b", "a/b",   "a:b",  "a|b",  "a<b",      "a>b",
                "a*b",  "a?b",  "a\x01", "\x1f", "\xC3", "\xC0\xAF", "\xED\xA0\x80", /* surrogate */
                "CON",  "con",  "Nul",   "LPT1", "com9", "CLOCK$",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *out = NULL;
                ck_assert_msg(emu_name_normalize(bad[i], false, &out) == -EINVAL, "%zu", i);
                ck_assert_ptr_null(out);
        }
}
END_TEST

START_TEST(test_lengths) {
        char name[600];
        char *out = NULL;

        memset(name, 'a', 255);
        name[255] = '\0';
        ck_assert_int_eq(emu_name_normalize(name, false, &out), 0);
        free(out);
        name[255] = 'a';
        name[256] = '\0';
        ck_assert_int_eq(emu_name_normalize(name, false, &out), -ENAMETOOLONG);
        /* 128 characters outside the BMP: 256 UTF-16 units. */
        for (size_t i = 0; i < 128; i++)
                memcpy(name + 4 * i, "\xF0\x9F\x98\x80", 4);
        name[512] = '\0';
        ck_assert_int_eq(emu_utf16_length(name), 256);
        ck_assert_int_eq(emu_name_normalize(name, false, &out), -ENAMETOOLONG);

        char *path[251];
        for (size_t i = 0; i < 251; i++)
                path[i] = (char *)"d";
        ck_assert_int_eq(emu_path_validate(path, 250), 0);
        ck_assert_int_eq(emu_path_validate(path, 251), -ENAMETOOLONG);
        memset(name, 'x', 255);
        name[255] = '\0';
        for (size_t i = 0; i < 9; i++)
                path[i] = name;
        ck_assert_int_eq(emu_path_validate(path, 8), 0); /* 8*255+7 = 2047 */
        ck_assert_int_eq(emu_path_validate(path, 9), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_fold) {
        char *out;

        ck_assert_int_eq(emu_name_fold("ReadMe.TXT", &out), 0);
        ck_assert_str_eq(out, "readme.txt");
        free(out);
        /* é -> É, σ and ς -> Σ, ж -> Ж: Unicode simple uppercase via C.UTF-8. */
        ck_assert_int_eq(emu_name_fold("\xC3\xA9\xCF\x83\xCF\x82\xD0\xB6", &out), 0);
        ck_assert_str_eq(out, "\xC3\x89\xCE\xA3\xCE\xA3\xD0\x96");
        free(out);
        /* dotless ı -> I -> i; the KELVIN SIGN stays (its upper case is itself, not K) */
        ck_assert_int_eq(emu_name_fold("\xC4\xB1\xE2\x84\xAA", &out), 0);
        ck_assert_str_eq(out, "i\xE2\x84\xAA");
        free(out);
        ck_assert_int_eq(emu_name_fold("\xE4\xB8\xAD", &out), 0);
        ck_assert_str_eq(out, "\xE4\xB8\xAD");
        free(out);
        ck_assert_int_eq(emu_name_fold("\xC3", &out), -EINVAL);
}
END_TEST

START_TEST(test_percent_encode) {
        char *out;
        ck_assert_int_eq(emu_name_percent_encode("a b~\xEF\xBF\xBF", &out), 0);
        ck_assert_str_eq(out, "a%20b~%EF%BF%BF");
        free(out);
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-names");
        TCase *tc = tcase_create("names");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_share_names);
        tcase_add_test(tc, test_normalize);
        tcase_add_test(tc, test_forbidden);
        tcase_add_test(tc, test_lengths);
        tcase_add_test(tc, test_fold);
        tcase_add_test(tc, test_percent_encode);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
