/* SPDX-License-Identifier: MIT */
/* rest_name_check(): the names azfilesfs lets through are exactly those the File service takes
 * as they are. Each case is also put to the emulator's own rule (emu_name_normalize(), which
 * answers the requests the integration tests make): a name the driver lets through must come
 * back unchanged from it, and one the driver refuses must be refused or rewritten by it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-names.h"
#include "macro.h"
#include "rest-names.h"

static const struct {
        const char *name;
        int error;
} cases[] = {
        {"notes.ipynb", 0},
        {"x y z", 0},
        {" lead", 0},
        {"trail ", 0},
        {"résumé.md", 0},
        {"ÜNïCødé-名前", 0},
        {"emoji-😀.py", 0},
        {".hidden", 0},
        {"...x", 0},
        {"a%b#c&d+e=f;g@h[i]j{k}l~m'n", 0},
        {"CONSOLE", 0},
        {"com10", 0},
        {"LPT0", 0},
        {"", -EINVAL},
        {".", -EINVAL},
        {"..", -EINVAL},
        {"foo.", -EINVAL}, /* the share strips the dot: Create File "foo." replaces "foo" */
        {"foo..", -EINVAL},
        {"a:b", -EINVAL},
        {"a\\b", -EINVAL},
        {"a/b", -EINVAL},
        {"a|b", -EINVAL},
        {"a<b", -EINVAL},
        {"a>b", -EINVAL},
        {"a*b", -EINVAL},
        {"a?b", -EINVAL},
        {"a\"b", -EINVAL},
        {"tab\there", -EINVAL},
        {"new\nline", -EINVAL},
        {"\x1f", -EINVAL},
        {"CON", -EINVAL},
        {"con", -EINVAL},
        {"Nul", -EINVAL},
        {"COM1", -EINVAL},
        {"lpt9", -EINVAL},
        {"CLOCK$", -EINVAL},
        {"latin1-\xe9", -EINVAL},             /* ISO 8859-1 é: not UTF-8 */
        {"overlong-\xc0\xaf", -EINVAL},       /* '/' in two bytes */
        {"surrogate-\xed\xa0\x80", -EINVAL},  /* U+D800 */
        {"beyond-\xf4\x90\x80\x80", -EINVAL}, /* U+110000 */
        {"cut-\xe2\x82", -EINVAL},
};

START_TEST(test_cases) {
        for (size_t k = 0; k < ELEMENTSOF(cases); k++)
                ck_assert_msg(
                        rest_name_check(cases[k].name) == cases[k].error,
                        "case %zu (\"%s\"): %d, want %d", k, cases[k].name,
                        rest_name_check(cases[k].name), cases[k].error);
}
END_TEST

START_TEST(test_lengths) {
        char name[300];

        memset(name, 'a', sizeof(name));
        name[255] = '\0';
        ck_assert_int_eq(rest_name_check(name), 0);
        name[255] = 'a';
        name[256] = '\0';
        ck_assert_int_eq(rest_name_check(name), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_same_as_emulator) {
        for (size_t k = 0; k < ELEMENTSOF(cases); k++) {
                char *normal = NULL;
                int r = emu_name_normalize(cases[k].name, false, &normal);
                bool taken_as_is = r == 0 && streq(normal, cases[k].name);

                ck_assert_msg(
                        taken_as_is == (cases[k].error == 0),
                        "case %zu (\"%s\"): the emulator %s it, azfilesfs %s it", k, cases[k].name,
                        r < 0         ? "refuses"
                        : taken_as_is ? "takes"
                                      : "rewrites",
                        cases[k].error == 0 ? "lets through" : "refuses");
                free(normal);
        }
}
END_TEST

int main(void) {
        Suite *s = suite_create("rest-names");
        TCase *tc = tcase_create("names");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_cases);
        tcase_add_test(tc, test_lengths);
        tcase_add_test(tc, test_same_as_emulator);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
