/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "user-links.h"

#define TARGET "/srv/ws/Users/alice/notebooks"

/* A fully set-up user: share folder ours, notebooks a directory, the link correct. */
static UserLinkObservation good(void) {
        return (UserLinkObservation){
                .uid = 1000,
                .share_dir = LINK_NODE_DIRECTORY,
                .share_dir_uid = 1000,
                .home_exists = true,
                .notebooks = LINK_NODE_DIRECTORY,
                .link = LINK_NODE_SYMLINK,
                .link_target = TARGET,
                .expected_target = TARGET,
        };
}

static bool nothing_to_do(const UserLinkPlan *p) {
        return !p->mkdir_share_dir && !p->mkdir_notebooks && !p->symlink;
}

START_TEST(test_already_correct) {
        UserLinkObservation o = good();
        UserLinkPlan p;

        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_OK);
        ck_assert(nothing_to_do(&p));
        ck_assert_ptr_nonnull(p.reason);
}
END_TEST

START_TEST(test_fresh_user) {
        UserLinkObservation o = good();
        UserLinkPlan p;

        o.share_dir = LINK_NODE_MISSING;
        o.notebooks = LINK_NODE_MISSING;
        o.link = LINK_NODE_MISSING;
        o.link_target = NULL;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CREATED);
        ck_assert(p.mkdir_share_dir && p.mkdir_notebooks && p.symlink);
}
END_TEST

START_TEST(test_only_link_missing) {
        UserLinkObservation o = good();
        UserLinkPlan p;

        o.link = LINK_NODE_MISSING;
        o.link_target = NULL;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CREATED);
        ck_assert(!p.mkdir_share_dir && !p.mkdir_notebooks && p.symlink);

        /* Only the share folder missing (deleted on the share): recreate it, keep the link. */
        o = good();
        o.share_dir = LINK_NODE_MISSING;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CREATED);
        ck_assert(p.mkdir_share_dir && !p.mkdir_notebooks && !p.symlink);
}
END_TEST

START_TEST(test_link_conflicts) {
        static const struct {
                LinkNode link;
                const char *target;
        } cases[] = {
                {LINK_NODE_SYMLINK, "/srv/ws/Users/bob/notebooks"},
                {LINK_NODE_SYMLINK, "/etc"},
                {LINK_NODE_SYMLINK, TARGET "/"},
                {LINK_NODE_SYMLINK, NULL},
                {LINK_NODE_DIRECTORY, NULL},
                {LINK_NODE_OTHER, NULL},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                UserLinkObservation o = good();
                UserLinkPlan p;

                o.link = cases[i].link;
                o.link_target = cases[i].target;
                user_link_plan(&o, &p);
                ck_assert_msg(p.state == USER_LINK_CONFLICT, "case %zu: state %d", i, p.state);
                ck_assert_msg(nothing_to_do(&p), "case %zu plans to touch something", i);
                ck_assert_ptr_nonnull(p.reason);
        }
}
END_TEST

START_TEST(test_notebooks_conflicts) {
        static const LinkNode blocked[] = {LINK_NODE_SYMLINK, LINK_NODE_OTHER};

        for (size_t i = 0; i < 2; i++) {
                UserLinkObservation o = good();
                UserLinkPlan p;

                o.notebooks = blocked[i];
                o.link = LINK_NODE_MISSING;
                user_link_plan(&o, &p);
                ck_assert_int_eq(p.state, USER_LINK_CONFLICT);
                ck_assert(nothing_to_do(&p));

                /* The share folder is still made: it is the user's on every VM. */
                o.share_dir = LINK_NODE_MISSING;
                user_link_plan(&o, &p);
                ck_assert_int_eq(p.state, USER_LINK_CONFLICT);
                ck_assert(p.mkdir_share_dir && !p.mkdir_notebooks && !p.symlink);
        }
}
END_TEST

START_TEST(test_share_conflicts) {
        UserLinkObservation o = good();
        UserLinkPlan p;

        /* Someone else's folder: no link to it, nothing made. */
        o.share_dir_uid = 1001;
        o.link = LINK_NODE_MISSING;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CONFLICT);
        ck_assert(nothing_to_do(&p));

        o = good();
        o.share_dir = LINK_NODE_SYMLINK;
        o.notebooks = LINK_NODE_MISSING;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CONFLICT);
        ck_assert(nothing_to_do(&p));

        o.share_dir = LINK_NODE_OTHER;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_CONFLICT);
        ck_assert(nothing_to_do(&p));
}
END_TEST

START_TEST(test_pending_home) {
        UserLinkObservation o = good();
        UserLinkPlan p;

        o.home_exists = false;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_PENDING);
        ck_assert(nothing_to_do(&p));

        o.share_dir = LINK_NODE_MISSING;
        user_link_plan(&o, &p);
        ck_assert_int_eq(p.state, USER_LINK_PENDING);
        ck_assert(p.mkdir_share_dir && !p.mkdir_notebooks && !p.symlink);
}
END_TEST

START_TEST(test_options) {
        UserLinkOptions o = {
                .mount_point = "/srv/ws",
                .notebooks_directory = "notebooks",
                .link_name = "remote",
                .directory_mode = 0700,
        };
        const char *reason;
        char *s = NULL;

        ck_assert(user_link_options_valid(&o, &reason));
        o.notebooks_directory = "work/notebooks";
        ck_assert(user_link_options_valid(&o, &reason));
        static const char *const bad_dirs[] = {"",   "/abs", "a//b", "a/../b",
                                               "..", ".",    "a/",   "a/./b"};
        for (size_t i = 0; i < sizeof(bad_dirs) / sizeof(bad_dirs[0]); i++) {
                o.notebooks_directory = bad_dirs[i];
                ck_assert_msg(!user_link_options_valid(&o, &reason), "accepted '%s'", bad_dirs[i]);
        }
        o.notebooks_directory = "notebooks";
        o.link_name = "a/b";
        ck_assert(!user_link_options_valid(&o, &reason));
        o.link_name = "..";
        ck_assert(!user_link_options_valid(&o, &reason));
        o.link_name = "remote";
        o.mount_point = "relative";
        ck_assert(!user_link_options_valid(&o, &reason));
        o.mount_point = "/srv/ws/";
        o.directory_mode = 010000;
        ck_assert(!user_link_options_valid(&o, &reason));
        o.directory_mode = 0700;

        ck_assert_int_eq(user_link_target(&o, "first.last", &s), 0);
        ck_assert_str_eq(s, "/srv/ws/Users/first.last/notebooks");
        free(s);
        o.mount_point = "/srv/ws";
        ck_assert_int_eq(user_link_target(&o, "a", &s), 0);
        ck_assert_str_eq(s, "/srv/ws/Users/a/notebooks");
        free(s);
}
END_TEST

START_TEST(test_home_parent) {
        char *s = NULL;

        ck_assert_int_eq(user_link_home_parent("/home/alice", &s), 0);
        ck_assert_str_eq(s, "/home");
        free(s);
        ck_assert_int_eq(user_link_home_parent("/home/alice//", &s), 0);
        ck_assert_str_eq(s, "/home");
        free(s);
        ck_assert_int_eq(user_link_home_parent("/alice", &s), 0);
        ck_assert_str_eq(s, "/");
        free(s);
        s = NULL;
        ck_assert_int_eq(user_link_home_parent("/", &s), -EINVAL);
        ck_assert_int_eq(user_link_home_parent("relative/x", &s), -EINVAL);
        ck_assert_int_eq(user_link_home_parent("/home/..", &s), -EINVAL);
        ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_state_strings) {
        for (int v = 0; v < _USER_LINK_STATE_MAX; v++)
                ck_assert_ptr_nonnull(user_link_state_to_string(v));
        ck_assert_ptr_null(user_link_state_to_string(_USER_LINK_STATE_MAX));
        ck_assert_ptr_null(user_link_state_to_string(_USER_LINK_STATE_INVALID));
}
END_TEST

int main(void) {
        Suite *s = suite_create("user-links-plan");
        TCase *tc_plan = tcase_create("plan");
        TCase *tc_helpers = tcase_create("helpers");
        SRunner *sr;
        int failed;

        tcase_add_test(tc_plan, test_already_correct);
        tcase_add_test(tc_plan, test_fresh_user);
        tcase_add_test(tc_plan, test_only_link_missing);
        tcase_add_test(tc_plan, test_link_conflicts);
        tcase_add_test(tc_plan, test_notebooks_conflicts);
        tcase_add_test(tc_plan, test_share_conflicts);
        tcase_add_test(tc_plan, test_pending_home);
        suite_add_tcase(s, tc_plan);

        tcase_add_test(tc_helpers, test_options);
        tcase_add_test(tc_helpers, test_home_parent);
        tcase_add_test(tc_helpers, test_state_strings);
        suite_add_tcase(s, tc_helpers);

        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
