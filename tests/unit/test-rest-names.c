/* SPDX-License-Identifier: MIT */
/* rest_name_check(): the names azfilesfs lets through are exactly those the File service takes
 * as they are. Each case is also put to the emulator's own rule (emu_name_normalize(), which
 * answers the requests the integration tests make): a name the driver lets through must come
 * back unchanged from it, and one the driver refuses must be refused or rewritten by it. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
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

/* Spellings of one name, and names that are not one (rest_name_casecmp()): one when their upper
 * cases are. */
static const struct {
        const char *a, *b;
        bool same;
} spellings[] = {
        {"Notebook.ipynb", "NOTEBOOK.IPYNB", true},
        {"Über.txt", "über.TXT", true},
        {"ÄÖÜ", "äöü", true},
        {"Σχέδια", "ΣΧΈΔΙΑ", true},
        {"Отчёт", "оТЧЁТ", true},
        {"\xc8\xba", "\xe2\xb1\xa5", true},             /* U+023A, U+2C65: 2 bytes and 3 */
        {"\xc9\x90", "\xe2\xb1\xaf", true},             /* U+0250, U+2C6F: 2 bytes and 3 */
        {"\xf0\x90\x90\x80", "\xf0\x90\x90\xa8", true}, /* DESERET U+10400, U+10428 */
        {"ΣΟΦΟΣ", "σοφος", true},                       /* final sigma: its upper case is Σ */
        {"\xc4\xb1", "I", true},                        /* dotless ı: its upper case is I */
        {"\xc4\xb1", "i", true},
        {"\xe2\x84\xaa", "k", false}, /* KELVIN SIGN: its upper case is itself */
        {"\xe2\x84\xaa", "\xe2\x84\xaa", true},
        {"\xc4\xb0", "i", false},     /* İ: upper case of none but itself */
        {"straße", "STRASSE", false}, /* simple folding: no letter becomes two */
        {"über", "uber", false},
        {"a", "b", false},
        {"ab", "a", false},
        {"0n", "\xe3\x81\xae", false}, /* U+306E: not hashed as the bytes "0n" */
        {"\xff", "\xc3\xbf", false},   /* a byte that is not UTF-8, U+00FF */
        {"\xff", "\xfe", false},
        {"\xff", "\xff", true},
};

START_TEST(test_fold) {
        ck_assert(rest_name_fold_unicode());
        for (size_t k = 0; k < ELEMENTSOF(spellings); k++) {
                const char *a = spellings[k].a, *b = spellings[k].b;
                int ab = rest_name_casecmp(a, b), ba = rest_name_casecmp(b, a);

                ck_assert_msg((ab == 0) == spellings[k].same, "case %zu: %d", k, ab);
                ck_assert_msg(ab == -ba, "case %zu: %d, reversed %d", k, ab, ba);
                ck_assert_msg(
                        (rest_name_hash(a) == rest_name_hash(b)) == spellings[k].same,
                        "case %zu: hashes", k);
        }
        /* ASCII hashes as FNV-1a of the lower-case bytes (as before Unicode folding) */
        ck_assert_uint_eq(rest_name_hash(""), UINT64_C(14695981039346656037));
        ck_assert_uint_eq(
                rest_name_hash("A"),
                (UINT64_C(14695981039346656037) ^ 'a') * UINT64_C(1099511628211));
        /* prefixes whose spellings differ in length */
        ck_assert_str_eq(
                rest_path_after_prefix(
                        "\xe2\xb1\xa5"
                        "b/c",
                        "\xc8\xba"
                        "B"),
                "/c");
        ck_assert_str_eq(rest_path_after_prefix("Users/Über/nb", "users/über"), "/nb");
        ck_assert_str_eq(rest_path_after_prefix("Users", "users"), "");
        ck_assert_ptr_null(rest_path_after_prefix("Use", "users"));
        ck_assert_ptr_null(rest_path_after_prefix("Users/Uber", "users/über"));
}
END_TEST

/* The emulator (which stands for the share in the integration tests) takes two names for one
 * exactly when azfilesfs does. */
START_TEST(test_fold_as_emulator) {
        for (size_t k = 0; k < ELEMENTSOF(spellings); k++) {
                char *fa = NULL, *fb = NULL;

                if (emu_name_fold(spellings[k].a, &fa) < 0 ||
                    emu_name_fold(spellings[k].b, &fb) < 0) {
                        free(fa);
                        continue; /* not a name the emulator takes */
                }
                ck_assert_msg(streq(fa, fb) == spellings[k].same, "case %zu: emulator", k);
                free(fa);
                free(fb);
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
        tcase_add_test(tc, test_fold);
        tcase_add_test(tc, test_fold_as_emulator);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
