/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-server.h"

typedef struct Parsed {
        char *path, *query;
        char **segments;
        unsigned n_segments;
        EmuQueryParam *params;
        size_t n_params;
} Parsed;

static int parse(const char *uri, Parsed *p) {
        memset(p, 0, sizeof(*p));
        return emu_parse_uri(
                uri, &p->path, &p->query, &p->segments, &p->n_segments, &p->params, &p->n_params);
}

static void parsed_free(Parsed *p) {
        for (unsigned i = 0; i < p->n_segments; i++)
                free(p->segments[i]);
        free(p->segments);
        emu_query_params_free(p->params, p->n_params);
        free(p->path);
        free(p->query);
}

START_TEST(test_segments_and_query) {
        Parsed p;
        ck_assert_int_eq(
                parse("/acct/share/dir%20one/f%C3%A9?restype=directory&comp=list&marker=1%218%21x",
                      &p),
                0);
        ck_assert_str_eq(p.path, "/acct/share/dir%20one/f%C3%A9");
        ck_assert_str_eq(p.query, "restype=directory&comp=list&marker=1%218%21x");
        ck_assert_uint_eq(p.n_segments, 4);
        ck_assert_str_eq(p.segments[2], "dir one");
        ck_assert_str_eq(p.segments[3], "f\xC3\xA9");
        ck_assert_uint_eq(p.n_params, 3);
        ck_assert_str_eq(p.params[2].name, "marker");
        ck_assert_str_eq(p.params[2].value, "1!8!x");
        parsed_free(&p);
}
END_TEST

START_TEST(test_encoded_slash_splits) {
        Parsed p;
        /* Recorded: the Python SDK sent dir1%2Fsubdir1 and the service treated it as a separator.
         */
        ck_assert_int_eq(parse("/acct/share/dir1%2Fsubdir1?restype=directory", &p), 0);
        ck_assert_uint_eq(p.n_segments, 4);
        ck_assert_str_eq(p.segments[3], "subdir1");
        parsed_free(&p);
}
END_TEST

START_TEST(test_trailing_slash_root) {
        Parsed p;
        ck_assert_int_eq(parse("/acct/share/?restype=directory&comp=list", &p), 0);
        ck_assert_uint_eq(p.n_segments, 2);
        parsed_free(&p);
}
END_TEST

START_TEST(test_rejects_traversal_and_garbage) {
        static const char *const bad[] = {
                "/acct/share/../etc/passwd",
                "/acct/share/%2e%2e/x",
                "/acct/share/%2E%2E",
                "/acct/share/.",
                "/acct/share/a%2f..%2fb",
                "/acct/share//x",
                "/acct/share/%00x",
                "/acct/share/%zz",
                "/acct/share/%4",
                "acct/share",
                "/acct/share/x?a=%",
                "/acct/share/x#frag",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                Parsed p;
                ck_assert_msg(parse(bad[i], &p) < 0, "accepted '%s'", bad[i]);
        }
}
END_TEST

START_TEST(test_caps) {
        Parsed p;
        size_t n = EMU_URI_MAX + 10;
        char *uri = malloc(n + 1);
        memset(uri, 'a', n);
        uri[0] = '/';
        uri[n] = '\0';
        ck_assert_int_eq(parse(uri, &p), -E2BIG);
        free(uri);

        /* More query parameters than the cap. */
        char q[4096] = "/acct/share?";
        size_t len = strlen(q);
        for (int i = 0; i < EMU_QUERY_PARAMS_MAX + 5; i++, len += 4)
                memcpy(q + len, "a=b&", 5);
        ck_assert_int_eq(parse(q, &p), -E2BIG);
}
END_TEST

START_TEST(test_ops) {
        ck_assert_int_eq(emu_op_classify_files("PUT", "share", NULL, 1), EMU_OP_CREATE_SHARE);
        ck_assert_int_eq(
                emu_op_classify_files("GET", "directory", "list", 1),
                EMU_OP_LIST_DIRECTORIES_AND_FILES);
        ck_assert_int_eq(emu_op_classify_files("PUT", "directory", NULL, 1), _EMU_OP_INVALID);
        ck_assert_int_eq(emu_op_classify_files("PUT", NULL, "range", 3), EMU_OP_PUT_RANGE);
        ck_assert_int_eq(emu_op_classify_files("HEAD", NULL, NULL, 2), EMU_OP_GET_FILE_PROPERTIES);
        ck_assert_int_eq(emu_op_classify_files("PUT", NULL, "rename", 2), EMU_OP_RENAME_FILE);
        ck_assert_int_eq(emu_op_classify_files("POST", NULL, NULL, 2), _EMU_OP_INVALID);
        ck_assert_int_eq(emu_op_from_string("putrange"), EMU_OP_PUT_RANGE);
        ck_assert_str_eq(emu_op_to_string(EMU_OP_GET_FILE), "GetFile");
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-uri");
        TCase *tc = tcase_create("parse");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_segments_and_query);
        tcase_add_test(tc, test_encoded_slash_splits);
        tcase_add_test(tc, test_trailing_slash_root);
        tcase_add_test(tc, test_rejects_traversal_and_garbage);
        tcase_add_test(tc, test_caps);
        tcase_add_test(tc, test_ops);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
