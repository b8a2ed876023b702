/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "users.h"

static char *const deny_list[] = {(char *)"mallory", NULL};

static const UserPolicy policy = {
        .uid_min = 1000,
        .uid_max = 59999,
        .system_uid_max = USERS_SYSTEM_UID_MAX,
        .group = "datasci",
        .deny = deny_list,
};

static UserSet *set;

static void setup(void) {
        ck_assert_int_eq(user_set_new(&set), 0);
}

static void teardown(void) {
        set = user_set_free(set);
}

static int add(const char *name, uid_t uid, bool in_group, bool in_session) {
        struct passwd pw = {
                .pw_name = (char *)name,
                .pw_uid = uid,
                .pw_gid = uid,
                .pw_dir = (char *)"/home/x",
        };

        return user_set_consider(set, &policy, &pw, in_group, in_session);
}

static UserVerdict verdict(const char *name) {
        const UserEntry *e = user_set_find(set, name);

        ck_assert_msg(e, "no entry for %s", name);
        return e->verdict;
}

/* ---- eligibility ---- */

START_TEST(test_sources) {
        ck_assert_int_eq(add("alice", 1000, false, false), 1);  /* in range, lower bound */
        ck_assert_int_eq(add("bob", 59999, false, false), 1);   /* in range, upper bound */
        ck_assert_int_eq(add("carol", 60000, false, false), 0); /* out of range */
        ck_assert_int_eq(add("dave", 70000, true, false), 1);   /* group member */
        ck_assert_int_eq(add("erin", 80000, false, true), 1);   /* opened a session */
        ck_assert_int_eq(add("alice", 1000, false, true), 1);   /* merged */
        ck_assert_uint_eq(set->n, 4);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_uint_eq(set->n, 4);
        /* Sorted by name. */
        ck_assert_str_eq(set->entries[0].name, "alice");
        ck_assert_str_eq(set->entries[3].name, "erin");
        ck_assert_uint_eq(set->entries[0].sources, USER_SOURCE_RANGE | USER_SOURCE_SESSION);
        ck_assert_uint_eq(user_set_find(set, "dave")->sources, USER_SOURCE_GROUP);
        ck_assert_uint_eq(user_set_find(set, "erin")->sources, USER_SOURCE_SESSION);
        for (size_t i = 0; i < set->n; i++) {
                ck_assert_int_eq(set->entries[i].verdict, USER_VERDICT_ELIGIBLE);
                ck_assert_ptr_null(set->entries[i].detail);
        }
        ck_assert_ptr_null(user_set_find(set, "carol"));
}
END_TEST

START_TEST(test_system_and_root_never) {
        /* Even when a session or the group brings them in. */
        ck_assert_int_eq(add("root", 0, true, true), 1);
        ck_assert_int_eq(add("daemon", 1, true, false), 1);
        ck_assert_int_eq(add("sysuser", 999, false, true), 1);
        ck_assert_int_eq(add("nobody", 65534, true, true), 1);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_int_eq(verdict("root"), USER_VERDICT_SYSTEM);
        ck_assert_int_eq(verdict("daemon"), USER_VERDICT_SYSTEM);
        ck_assert_int_eq(verdict("sysuser"), USER_VERDICT_SYSTEM);
        ck_assert_int_eq(verdict("nobody"), USER_VERDICT_SYSTEM);
        ck_assert_ptr_nonnull(user_set_find(set, "root")->detail);
}
END_TEST

START_TEST(test_wide_range_still_excludes_system) {
        const UserPolicy wide = {.uid_min = 0, .uid_max = 100000, .system_uid_max = 499};
        struct passwd root = {.pw_name = (char *)"root", .pw_uid = 0, .pw_dir = (char *)"/root"};
        struct passwd u = {.pw_name = (char *)"u500", .pw_uid = 500, .pw_dir = (char *)"/home/u"};

        ck_assert_int_eq(user_set_consider(set, &wide, &root, false, false), 1);
        ck_assert_int_eq(user_set_consider(set, &wide, &u, false, false), 1);
        ck_assert_int_eq(user_set_finish(set, &wide), 0);
        ck_assert_int_eq(verdict("root"), USER_VERDICT_SYSTEM);
        ck_assert_int_eq(verdict("u500"), USER_VERDICT_ELIGIBLE);
        ck_assert(user_uid_is_system(&wide, (uid_t)-1));
}
END_TEST

START_TEST(test_deny_and_home) {
        struct passwd nohome = {.pw_name = (char *)"nohome", .pw_uid = 2000, .pw_dir = (char *)""};
        struct passwd relhome = {
                .pw_name = (char *)"rel", .pw_uid = 2001, .pw_dir = (char *)"home/rel"};

        ck_assert_int_eq(add("mallory", 1500, true, true), 1);
        ck_assert_int_eq(add("Mallory", 1501, false, false), 1); /* deny is exact */
        ck_assert_int_eq(user_set_consider(set, &policy, &nohome, false, false), 1);
        ck_assert_int_eq(user_set_consider(set, &policy, &relhome, false, false), 1);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_int_eq(verdict("mallory"), USER_VERDICT_DENIED);
        /* Mallory would collide with mallory, but mallory gets no folder, so no collision. */
        ck_assert_int_eq(verdict("Mallory"), USER_VERDICT_ELIGIBLE);
        ck_assert_int_eq(verdict("nohome"), USER_VERDICT_NO_HOME);
        ck_assert_int_eq(verdict("rel"), USER_VERDICT_NO_HOME);
}
END_TEST

START_TEST(test_seen) {
        UserSeen seen = {};

        ck_assert_int_eq(user_seen_add(&seen, "alice"), 1);
        ck_assert_int_eq(user_seen_add(&seen, "bob"), 1);
        ck_assert_int_eq(user_seen_add(&seen, "alice"), 0);
        ck_assert(user_seen_has(&seen, "bob"));
        ck_assert(!user_seen_has(&seen, "Bob"));
        ck_assert(!user_seen_has(NULL, "bob"));
        ck_assert_uint_eq(seen.n, 2);
        user_seen_done(&seen);
        ck_assert_uint_eq(seen.n, 0);
}
END_TEST

/* ---- name policy ---- */

START_TEST(test_names_accepted) {
        static const char *const good[] = {
                "alice",     "a.b",        "first.last",
                "x-y_z",     "_svc",       "a1234567890123456789012345678901", /* 32 */
                "con.smith", /* only the exact device names are reserved */
                "COM0",      "COM10",      "lpt",
                ".hidden",   "with space",
        };
        const char *reason = NULL;

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ck_assert_msg(
                        user_name_share_check(good[i], &reason) == 0, "refused '%s': %s", good[i],
                        reason);
}
END_TEST

START_TEST(test_names_refused) {
        static const char *const bad[] = {
                "",        ".",         "..",        "a\"b", "a\\b", "a/b",       "a:b",
                "a|b",     "a<b",       "a>b",       "a*b",  "a?b",  "tab\there", "nl\n",
                "del\x7f", "trailing.", "trailing ", "CON",  "con",  "nul",       "Prn",
                "aux",     "COM1",      "com9",      "LPT1", "lpt9", "clock$",    "caf\xc3\xa9",
        };
        char longname[USER_NAME_SHARE_MAX + 2];
        const char *reason;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                reason = NULL;
                ck_assert_msg(
                        user_name_share_check(bad[i], &reason) == -EINVAL, "accepted '%s'", bad[i]);
                ck_assert_ptr_nonnull(reason);
        }
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0'; /* 256 */
        ck_assert_int_eq(user_name_share_check(longname, &reason), -EINVAL);
        longname[USER_NAME_SHARE_MAX] = '\0'; /* 255 */
        ck_assert_int_eq(user_name_share_check(longname, &reason), 0);
}
END_TEST

START_TEST(test_bad_name_verdict) {
        ck_assert_int_eq(add("con", 3000, false, false), 1);
        ck_assert_int_eq(add("dot.", 3001, false, false), 1);
        ck_assert_int_eq(add("ok.name-1_x", 3002, false, false), 1);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_int_eq(verdict("con"), USER_VERDICT_BAD_NAME);
        ck_assert_ptr_nonnull(strstr(user_set_find(set, "con")->detail, "reserved"));
        ck_assert_int_eq(verdict("dot."), USER_VERDICT_BAD_NAME);
        ck_assert_int_eq(verdict("ok.name-1_x"), USER_VERDICT_ELIGIBLE);
}
END_TEST

/* ---- case collisions ---- */

START_TEST(test_case_collision_pair) {
        ck_assert_int_eq(add("Alice", 4000, false, false), 1);
        ck_assert_int_eq(add("alice", 4001, false, false), 1);
        ck_assert_int_eq(add("bob", 4002, false, false), 1);
        ck_assert_int_eq(add("zed", 4003, false, false), 1);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_int_eq(verdict("Alice"), USER_VERDICT_CASE_COLLISION);
        ck_assert_int_eq(verdict("alice"), USER_VERDICT_CASE_COLLISION);
        /* Each names the other. */
        ck_assert_ptr_nonnull(strstr(user_set_find(set, "Alice")->detail, "\"alice\""));
        ck_assert_ptr_nonnull(strstr(user_set_find(set, "alice")->detail, "\"Alice\""));
        ck_assert_int_eq(verdict("bob"), USER_VERDICT_ELIGIBLE);
        ck_assert_int_eq(verdict("zed"), USER_VERDICT_ELIGIBLE);
        ck_assert(user_names_collide("ALICE", "alice"));
        ck_assert(!user_names_collide("alice", "alice2"));
}
END_TEST

START_TEST(test_case_collision_three_and_ineligible) {
        ck_assert_int_eq(add("DATA.Sci", 5000, false, false), 1);
        ck_assert_int_eq(add("data.sci", 5001, false, false), 1);
        ck_assert_int_eq(add("Data.Sci", 5002, false, false), 1);
        ck_assert_int_eq(add("data.scj", 5003, false, false), 1);
        /* A denied or system account does not take part. */
        ck_assert_int_eq(add("Bob", 5004, false, false), 1);
        ck_assert_int_eq(add("bob", 5, true, false), 1);
        ck_assert_int_eq(user_set_finish(set, &policy), 0);
        ck_assert_int_eq(verdict("DATA.Sci"), USER_VERDICT_CASE_COLLISION);
        ck_assert_int_eq(verdict("data.sci"), USER_VERDICT_CASE_COLLISION);
        ck_assert_int_eq(verdict("Data.Sci"), USER_VERDICT_CASE_COLLISION);
        ck_assert_int_eq(verdict("data.scj"), USER_VERDICT_ELIGIBLE);
        ck_assert_int_eq(verdict("Bob"), USER_VERDICT_ELIGIBLE);
        ck_assert_int_eq(verdict("bob"), USER_VERDICT_SYSTEM);
        /* Sorted bytewise. */
        for (size_t i = 1; i < set->n; i++)
                ck_assert_int_lt(strcmp(set->entries[i - 1].name, set->entries[i].name), 0);
}
END_TEST

START_TEST(test_verdict_strings) {
        for (int v = 0; v < _USER_VERDICT_MAX; v++)
                ck_assert_ptr_nonnull(user_verdict_to_string(v));
        ck_assert_ptr_null(user_verdict_to_string(_USER_VERDICT_MAX));
        ck_assert_ptr_null(user_verdict_to_string(_USER_VERDICT_INVALID));
}
END_TEST

int main(void) {
        Suite *s = suite_create("users");
        TCase *tc_elig = tcase_create("eligibility");
        TCase *tc_names = tcase_create("names");
        TCase *tc_case = tcase_create("case-collisions");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc_elig, setup, teardown);
        tcase_add_test(tc_elig, test_sources);
        tcase_add_test(tc_elig, test_system_and_root_never);
        tcase_add_test(tc_elig, test_wide_range_still_excludes_system);
        tcase_add_test(tc_elig, test_deny_and_home);
        tcase_add_test(tc_elig, test_seen);
        suite_add_tcase(s, tc_elig);

        tcase_add_checked_fixture(tc_names, setup, teardown);
        tcase_add_test(tc_names, test_names_accepted);
        tcase_add_test(tc_names, test_names_refused);
        tcase_add_test(tc_names, test_bad_name_verdict);
        tcase_add_test(tc_names, test_verdict_strings);
        suite_add_tcase(s, tc_names);

        tcase_add_checked_fixture(tc_case, setup, teardown);
        tcase_add_test(tc_case, test_case_collision_pair);
        tcase_add_test(tc_case, test_case_collision_three_and_ineligible);
        suite_add_tcase(s, tc_case);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
