/* SPDX-License-Identifier: MIT */
/* SAS tokens: exact string-to-sign layouts, generate/parse/verify round trips, tampering,
 * start/expiry, permissions, protocol, IP ranges and malformed tokens. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "macro.h"
#include "sas.h"
#include "time-util.h"

static const uint8_t key[] = "0123456789abcdef0123456789abcdef";
#define KEY_SIZE (sizeof(key) - 1)
#define T0 (INT64_C(1783332000) * NSEC_PER_SEC) /* 2026-07-06T10:00:00Z */

START_TEST(test_time) {
        char buf[SAS_TIME_MAX];
        int64_t t;

        ck_assert_str_eq(sas_format_time(buf, T0), "2026-07-06T10:00:00Z");
        ck_assert_int_eq(sas_parse_time("2026-07-06T10:00:00Z", &t), 0);
        ck_assert_int_eq(t, T0);
        ck_assert_int_eq(sas_parse_time("2026-07-06T10:00Z", &t), 0);
        ck_assert_int_eq(t, T0);
        ck_assert_int_eq(sas_parse_time("2026-07-06", &t), 0);
        ck_assert_int_eq(t, T0 - 10 * 3600 * NSEC_PER_SEC);
        ck_assert_int_eq(sas_parse_time("2026-07-06T10:00:00.5Z", &t), 0);
        ck_assert_int_eq(t, T0 + NSEC_PER_SEC / 2);
        static const char *const bad[] = {
                "",
                "2026-07-06T10:00:00",
                "2026-07-06T10:00:00+01:00",
                "2026-13-01",
                "2026-02-30",
                "2026-07-06T25:00Z",
                "2026-07-06T10:00:00.Z",
                "x2026-07-06",
                "2026-07-06T10:00:00Zjunk"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(sas_parse_time(bad[i], &t) == -EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(test_layouts) {
        SasToken s = {
                .kind = SAS_SERVICE,
                .version = (char *)"2025-05-05",
                .permissions = (char *)"rcw",
                .start = (char *)"2026-07-06T09:00:00Z",
                .expiry = (char *)"2026-07-06T11:00:00Z",
                .ip = (char *)"127.0.0.1",
                .protocol = (char *)"https,http",
                .content_type = (char *)"text/csv"};
        SasToken a = {
                .kind = SAS_ACCOUNT,
                .version = (char *)"2025-05-05",
                .permissions = (char *)"rwdlc",
                .services = (char *)"f",
                .resource_types = (char *)"sco",
                .expiry = (char *)"2026-07-06T11:00:00Z"};
        _cleanup_free_ char *s1 = NULL, *a1 = NULL, *a2 = NULL;

        ck_assert_int_eq(sas_string_to_sign(&s, "acct", "share/dir/f.csv", &s1), 0);
        ck_assert_str_eq(
                s1, "rcw\n2026-07-06T09:00:00Z\n2026-07-06T11:00:00Z\n/file/acct/share/dir/f.csv\n"
                    "\n127.0.0.1\nhttps,http\n2025-05-05\n\n\n\n\ntext/csv");
        ck_assert_int_eq(sas_string_to_sign(&a, "acct", NULL, &a1), 0);
        ck_assert_str_eq(a1, "acct\nrwdlc\nf\nsco\n\n2026-07-06T11:00:00Z\n\n\n2025-05-05\n\n");
        a.version = (char *)"2019-12-12"; /* before the encryption-scope line */
        ck_assert_int_eq(sas_string_to_sign(&a, "acct", NULL, &a2), 0);
        ck_assert_str_eq(a2, "acct\nrwdlc\nf\nsco\n\n2026-07-06T11:00:00Z\n\n\n2019-12-12\n");
        a.version = (char *)"2013-08-15";
        ck_assert_int_eq(sas_string_to_sign(&a, "acct", NULL, &a2), -EOPNOTSUPP);
}
END_TEST

static char *make(SasKind kind, const char *perms, const char *resource) {
        SasToken t = {
                .kind = kind,
                .version = (char *)"2025-05-05",
                .permissions = (char *)perms,
                .start = (char *)"2026-07-06T09:00:00Z",
                .expiry = (char *)"2026-07-06T11:00:00Z"};
        char *q = NULL;

        if (kind == SAS_SERVICE)
                t.resource = (char *)(strchr(resource, '/') ? "f" : "s");
        else {
                t.services = (char *)"bf";
                t.resource_types = (char *)"sco";
        }
        ck_assert_int_eq(sas_generate(&t, "acct", resource, key, KEY_SIZE, &q), 0);
        return q;
}

START_TEST(test_round_trip) {
        _cleanup_free_ char *q1 = make(SAS_SERVICE, "rl", "share");
        _cleanup_free_ char *q2 = make(SAS_SERVICE, "rcwd", "share/dir one/f");
        _cleanup_free_ char *q3 = make(SAS_ACCOUNT, "rwdlc", NULL);
        _cleanup_free_ char *with_other = NULL;
        SasToken t;

        ck_assert_ptr_nonnull(strstr(q1, "st=2026-07-06T09%3A00%3A00Z"));
        ck_assert_int_eq(sas_parse_query(q1, &t), 0);
        ck_assert_int_eq(t.kind, SAS_SERVICE);
        ck_assert_str_eq(t.resource, "s");
        ck_assert_int_eq(sas_verify_signature(&t, "acct", "share", key, KEY_SIZE, NULL), 0);
        ck_assert(sas_has_permission(&t, "l"));
        ck_assert(!sas_has_permission(&t, "cw"));
        ck_assert_int_eq(sas_check_time(&t, T0), 0);
        sas_token_clear(&t);

        ck_assert_int_eq(sas_parse_query(q2, &t), 0);
        ck_assert_str_eq(t.resource, "f");
        ck_assert_int_eq(
                sas_verify_signature(&t, "acct", "share/dir one/f", key, KEY_SIZE, NULL), 0);
        /* The same token does not sign another file. */
        ck_assert_int_eq(
                sas_verify_signature(&t, "acct", "share/dir one/g", key, KEY_SIZE, NULL), -EACCES);
        sas_token_clear(&t);

        /* Other query parameters around the token are ignored. */
        ck_assert_int_ge(asprintf(&with_other, "restype=directory&%s&comp=list", q3), 0);
        ck_assert_int_eq(sas_parse_query(with_other, &t), 0);
        ck_assert_int_eq(t.kind, SAS_ACCOUNT);
        ck_assert_int_eq(sas_verify_signature(&t, "acct", NULL, key, KEY_SIZE, NULL), 0);
        ck_assert_int_eq(sas_verify_signature(&t, "other", NULL, key, KEY_SIZE, NULL), -EACCES);
        sas_token_clear(&t);
}
END_TEST

START_TEST(test_tampering) {
        _cleanup_free_ char *q = make(SAS_SERVICE, "r", "share/f");
        char *p;
        SasToken t;
        char *sts = NULL;

        /* Widen the permissions: sp=r -> sp=w. */
        p = strstr(q, "sp=r");
        ck_assert_ptr_nonnull(p);
        p[3] = 'w';
        ck_assert_int_eq(sas_parse_query(q, &t), 0);
        ck_assert_int_eq(sas_verify_signature(&t, "acct", "share/f", key, KEY_SIZE, &sts), -EACCES);
        ck_assert_ptr_nonnull(sts);
        ck_assert_str_eq(
                strchr(sts, '\n') - 1, "w\n2026-07-06T09:00:00Z\n2026-07-06T11:00:00Z\n"
                                       "/file/acct/share/f\n\n\n\n2025-05-05\n\n\n\n\n");
        free(sts);
        sas_token_clear(&t);

        /* A different key. */
        p[3] = 'r';
        ck_assert_int_eq(sas_parse_query(q, &t), 0);
        ck_assert_int_eq(
                sas_verify_signature(&t, "acct", "share/f", (const uint8_t *)"k", 1, NULL),
                -EACCES);
        sas_token_clear(&t);
}
END_TEST

START_TEST(test_time_window) {
        _cleanup_free_ char *q = make(SAS_SERVICE, "r", "share");
        SasToken t;

        ck_assert_int_eq(sas_parse_query(q, &t), 0);
        ck_assert_int_eq(sas_check_time(&t, T0 - 2 * 3600 * NSEC_PER_SEC), -EKEYREJECTED);
        ck_assert_int_eq(sas_check_time(&t, T0 - 3600 * NSEC_PER_SEC), 0);
        ck_assert_int_eq(sas_check_time(&t, T0 + 3600 * NSEC_PER_SEC), 0);
        ck_assert_int_eq(sas_check_time(&t, T0 + 3601 * NSEC_PER_SEC), -EKEYEXPIRED);
        sas_token_clear(&t);
}
END_TEST

START_TEST(test_protocol_and_ip) {
        SasToken t = {};

        ck_assert(sas_allows_http(&t));
        ck_assert_int_eq(sas_check_ip(&t, NULL), 0);
        t.protocol = (char *)"https";
        ck_assert(!sas_allows_http(&t));
        t.protocol = (char *)"https,http";
        ck_assert(sas_allows_http(&t));
        t.ip = (char *)"10.0.0.5-10.0.1.5";
        ck_assert_int_eq(sas_check_ip(&t, "10.0.0.5"), 0);
        ck_assert_int_eq(sas_check_ip(&t, "10.0.0.255"), 0);
        ck_assert_int_eq(sas_check_ip(&t, "10.0.1.5"), 0);
        ck_assert_int_eq(sas_check_ip(&t, "10.0.1.6"), -EACCES);
        ck_assert_int_eq(sas_check_ip(&t, "::1"), -EACCES);
        ck_assert_int_eq(sas_check_ip(&t, NULL), -EACCES);
        t.ip = (char *)"127.0.0.1";
        ck_assert_int_eq(sas_check_ip(&t, "127.0.0.1"), 0);
        ck_assert_int_eq(sas_check_ip(&t, "127.0.0.2"), -EACCES);
}
END_TEST

START_TEST(test_malformed) {
        static const struct {
                const char *query;
                int error;
        } cases[] = {
                {"restype=share", -ENOENT},
                {"sv=2025-05-05&sr=s&sp=r&se=2026-07-06&sig=", -EINVAL},
                {"sr=s&sp=r&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=x&sp=r&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&sp=r&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&se=tomorrow&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&se=2026-07-06&st=2026-07-06T10:00&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&se=2026-07-06&spr=http&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&se=2026-07-06&sip=1.2.3&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&sp=w&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&sr=s&sp=r&se=2026-07-06&sig=a%zz", -EINVAL},
                {"sv=2025-05-05&ss=f&sp=r&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2025-05-05&ss=f&srt=o&sr=s&sp=r&se=2026-07-06&sig=abc", -EINVAL},
                {"sv=2013-08-15&sr=s&sp=r&se=2026-07-06&sig=abc", -EOPNOTSUPP},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                SasToken t;
                int r = sas_parse_query(cases[i].query, &t);
                ck_assert_msg(
                        r == cases[i].error, "'%s': got %d want %d", cases[i].query, r,
                        cases[i].error);
                ck_assert_ptr_null(t.signature);
        }
}
END_TEST

START_TEST(test_caps) {
        size_t n = SAS_QUERY_MAX + 10;
        _cleanup_free_ char *q = malloc(n + 1);
        SasToken t;

        memset(q, 'a', n);
        q[n] = '\0';
        ck_assert_int_eq(sas_parse_query(q, &t), -E2BIG);
}
END_TEST

int main(void) {
        Suite *s = suite_create("sas");
        TCase *tc = tcase_create("sas");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_time);
        tcase_add_test(tc, test_layouts);
        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_tampering);
        tcase_add_test(tc, test_time_window);
        tcase_add_test(tc, test_protocol_and_ip);
        tcase_add_test(tc, test_malformed);
        tcase_add_test(tc, test_caps);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
