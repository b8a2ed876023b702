/* SPDX-License-Identifier: MIT */
/* Bearer tokens of the emulator without HTTP: issue, verify, and every refusal. The HTTP side
 * of emu_auth_check() is covered by tests/integration/test-emu-auth.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-auth.h"
#include "macro.h"
#include "time-util.h"

static uint8_t key[] = "0123456789abcdef0123456789abcdef";
static Emulator emu = {.account = (char *)"acct", .key = key, .key_size = 32};

START_TEST(test_round_trip) {
        int64_t now = now_realtime_ns();
        _cleanup_free_ char *tok = NULL;
        const char *detail = NULL;

        ck_assert_int_eq(
                emu_auth_issue_token(
                        &emu, NULL, EMU_AUTH_AUDIENCE, now / NSEC_PER_SEC + 3600, &tok),
                0);
        ck_assert_int_eq(
                strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
                strlen(tok));
        ck_assert_int_eq(emu_auth_token_verify(&emu, tok, now, &detail), 0);
        /* Expired an hour later (beyond the 5 minutes of skew). */
        ck_assert_int_eq(
                emu_auth_token_verify(
                        &emu, tok, now + 3601 * NSEC_PER_SEC + 301 * NSEC_PER_SEC, &detail),
                -EACCES);
        ck_assert_str_eq(detail, "Lifetime validation failed. The token is expired.");
        /* Another account key does not verify it. */
        Emulator other = emu;
        other.key = (uint8_t *)"another key";
        other.key_size = 11;
        ck_assert_int_eq(emu_auth_token_verify(&other, tok, now, &detail), -EACCES);
        ck_assert_str_eq(detail, "Signature validation failed. Signature is invalid.");
}
END_TEST

START_TEST(test_refusals) {
        int64_t now = now_realtime_ns();
        _cleanup_free_ char *mgmt = NULL, *tok = NULL;
        const char *detail = NULL;
        char *p;

        ck_assert_int_eq(
                emu_auth_issue_token(
                        &emu, "client", "https://management.azure.com/", now / NSEC_PER_SEC + 3600,
                        &mgmt),
                0);
        ck_assert_int_eq(emu_auth_token_verify(&emu, mgmt, now, &detail), -EACCES);
        ck_assert_str_eq(detail, "Audience validation failed. Audience did not match.");

        ck_assert_int_eq(
                emu_auth_issue_token(
                        &emu, "client", "https://storage.azure.com", now / NSEC_PER_SEC + 3600,
                        &tok),
                0);
        ck_assert_int_eq(emu_auth_token_verify(&emu, tok, now, NULL), 0);
        /* Flip one payload character. */
        p = strchr(tok, '.') + 5;
        *p = *p == 'A' ? 'B' : 'A';
        ck_assert_int_eq(emu_auth_token_verify(&emu, tok, now, &detail), -EACCES);

        static const char *const bad[] = {"", "abc", "a.b", "a.b.c.d", "!!.??.xx", "e30.e30.xx"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(
                        emu_auth_token_verify(&emu, bad[i], now, &detail) == -EACCES,
                        "accepted '%s'", bad[i]);
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-auth");
        TCase *tc = tcase_create("tokens");
        SRunner *sr;
        int failed;

        tcase_add_test(tc, test_round_trip);
        tcase_add_test(tc, test_refusals);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
