/* SPDX-License-Identifier: MIT */
/* Per-user links against real files, as root, inside a private mount namespace: every test runs
 * in its own forked process (check's fork mode) that unshares the mount namespace, makes / private
 * and mounts tmpfs over /tmp (scratch: homes, the share stand-in, victims), /root and /etc (a fake
 * passwd, group and nsswitch.conf). Nothing outside the namespace is touched: the fixture refuses
 * to run unless /etc and /root are the tmpfs mounts it made.
 *
 * The attack tests plant links that would make root write to /etc, /root, another user's home or
 * a root-owned victim directory, and check afterwards that those are byte-for-byte, inode-for-
 * inode unchanged (entries, owners, modes, mtimes, ctimes). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "agent-harness.h"
#include "user-links.h"
#include "users.h"

#define SHARE "/tmp/share"
#define HOMES "/tmp/home"
#define VICTIM "/tmp/victim"
#define SNAPSHOT_MAX 8192

typedef struct TestUser {
        const char *name;
        uid_t uid;
        bool make_home;
} TestUser;

static char *const no_deny[] = {NULL};

static const UserPolicy policy = {
        .uid_min = 2000,
        .uid_max = 2999,
        .system_uid_max = USERS_SYSTEM_UID_MAX,
        .group = "datasci",
        .deny = no_deny,
};

static const UserLinkOptions options = {
        .mount_point = SHARE,
        .notebooks_directory = "notebooks",
        .link_name = "remote",
        .directory_mode = 0700,
        .timeout_usec = 60U * 1000000U,
};

/* ---- helpers ----------------------------------------------------------------------------------
 */

/* The passwd/group files for users (every user has its own group, gid == uid; alice, if present,
 * is also in datasci). Written to the fake /etc only. */
static void write_users(const TestUser *users, size_t n) {
        char passwd[8192] =
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n";
        char group[8192] = "root:x:0:\nnogroup:x:65534:\n";
        char line[512];

        for (size_t i = 0; i < n; i++) {
                (void)snprintf(
                        line, sizeof(line), "%s:x:%u:%u::" HOMES "/%s:/bin/sh\n", users[i].name,
                        (unsigned)users[i].uid, (unsigned)users[i].uid, users[i].name);
                ck_assert_uint_lt(strlen(passwd) + strlen(line), sizeof(passwd));
                memcpy(passwd + strlen(passwd), line, strlen(line) + 1);
                (void)snprintf(
                        line, sizeof(line), "%s:x:%u:\n", users[i].name, (unsigned)users[i].uid);
                ck_assert_uint_lt(strlen(group) + strlen(line), sizeof(group));
                memcpy(group + strlen(group), line, strlen(line) + 1);
        }
        (void)snprintf(line, sizeof(line), "datasci:x:3000:alice,grace\n");
        memcpy(group + strlen(group), line, strlen(line) + 1);
        ck_assert(agent_harness_on_private_tmpfs("/etc"));
        agent_harness_write_file("/tmp/fake-etc/passwd", passwd);
        agent_harness_write_file("/tmp/fake-etc/group", group);
}

static void make_home(const char *name, uid_t uid, mode_t mode) {
        char path[256];

        (void)snprintf(path, sizeof(path), HOMES "/%s", name);
        ck_assert_msg(mkdir(path, mode) == 0, "mkdir %s: %m", path);
        ck_assert_int_eq(chown(path, uid, uid), 0);
        ck_assert_int_eq(chmod(path, mode), 0);
}

static void setup_users(const TestUser *users, size_t n) {
        write_users(users, n);
        for (size_t i = 0; i < n; i++)
                if (users[i].make_home)
                        make_home(users[i].name, users[i].uid, 0755);
}

/* A fingerprint of a directory and its direct entries: any creation, removal, chown, chmod or
 * write changes it. */
static void snapshot(const char *dir, char *buf, size_t size) {
        struct stat st;
        DIR *d;
        size_t len = 0;
        struct dirent *de;

        ck_assert_int_eq(lstat(dir, &st), 0);
        len += (size_t)snprintf(
                buf + len, size - len, ".:%lu:%u:%u:%o:%ld.%ld:%ld.%ld:%ld;",
                (unsigned long)st.st_ino, st.st_uid, st.st_gid, st.st_mode, st.st_mtim.tv_sec,
                st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, (long)st.st_size);
        d = opendir(dir);
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)) && len < size) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                ck_assert_int_eq(fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW), 0);
                len += (size_t)snprintf(
                        buf + len, size - len, "%s:%lu:%u:%u:%o:%ld.%ld:%ld.%ld:%ld;", de->d_name,
                        (unsigned long)st.st_ino, st.st_uid, st.st_gid, st.st_mode,
                        st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                        st.st_ctim.tv_nsec, (long)st.st_size);
        }
        ck_assert_uint_lt(len, size);
        closedir(d);
}

typedef struct Pass {
        UserSet *set;
        UserLinkReport *reports;
        size_t n;
} Pass;

static void pass_done(Pass *p) {
        p->reports = user_link_reports_free(p->reports, p->n);
        p->set = user_set_free(p->set);
        p->n = 0;
}

static void run_pass(Pass *p, const UserSeen *seen) {
        pass_done(p);
        ck_assert_int_eq(users_enumerate(&policy, seen, &p->set), 0);
        ck_assert_int_eq(user_links_apply_all(&options, p->set, &p->reports, &p->n), 0);
}

static const UserLinkReport *report(const Pass *p, const char *name) {
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->reports[i].user, name))
                        return &p->reports[i];
        ck_abort_msg("no report for %s", name);
        return NULL;
}

static void assert_state(const Pass *p, const char *name, UserLinkState state) {
        const UserLinkReport *r = report(p, name);

        ck_assert_msg(
                r->state == state, "%s: expected %s, got %s: %s", name,
                user_link_state_to_string(state), user_link_state_to_string(r->state), r->detail);
        ck_assert_ptr_nonnull(r->detail);
}

static void assert_link_ok(const char *name, uid_t uid) {
        char path[256], expected[256], target[256];
        struct stat st;
        ssize_t l;

        (void)snprintf(path, sizeof(path), HOMES "/%s/notebooks/remote", name);
        (void)snprintf(expected, sizeof(expected), SHARE "/Users/%s/notebooks", name);
        l = readlink(path, target, sizeof(target) - 1);
        ck_assert_msg(l > 0, "readlink %s: %m", path);
        target[l] = '\0';
        ck_assert_str_eq(target, expected);
        /* Everything made in the home and on the share belongs to the user. */
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert_uint_eq(st.st_uid, uid);
        (void)snprintf(path, sizeof(path), HOMES "/%s/notebooks", name);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_uint_eq(st.st_uid, uid);
        ck_assert_uint_eq(st.st_gid, uid);
        ck_assert_int_eq(stat(expected, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_uint_eq(st.st_uid, uid);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
        (void)snprintf(path, sizeof(path), SHARE "/Users/%s", name);
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert_uint_eq(st.st_uid, uid);
        ck_assert_uint_eq(st.st_mode & 07777, 0700);
}

/* Runs fn in a child as uid (to plant things the way the user would). */
static void as_user(uid_t uid, void (*fn)(void *), void *userdata) {
        int status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
                    setresuid(uid, uid, uid) < 0)
                        _exit(2);
                fn(userdata);
                _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "planting failed: %d", status);
}

typedef struct Plant {
        const char *kind; /* "symlink", "file", "dir" */
        const char *path;
        const char *target;
} Plant;

static void plant_fn(void *userdata) {
        const Plant *p = userdata;

        if (streq(p->kind, "symlink")) {
                if (symlink(p->target, p->path) < 0)
                        _exit(3);
        } else if (streq(p->kind, "dir")) {
                if (mkdir(p->path, 0755) < 0)
                        _exit(3);
        } else {
                int fd = open(p->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

                if (fd < 0 || write(fd, "mine\n", 5) != 5 || close(fd) < 0)
                        _exit(3);
        }
}

static void plant(uid_t uid, const char *kind, const char *path, const char *target) {
        Plant p = {.kind = kind, .path = path, .target = target};

        as_user(uid, plant_fn, &p);
}

static const TestUser base_users[] = {
        {"alice", 2001, true},
        {"bob", 2002, true},
};

/* ---- fixture ----------------------------------------------------------------------------------
 */

static void setup(void) {
        agent_harness_private_root(false);

        ck_assert_int_eq(mkdir(HOMES, 0755), 0);
        ck_assert_int_eq(mkdir(SHARE, 0755), 0);
        ck_assert_int_eq(mkdir(VICTIM, 0755), 0);
        agent_harness_write_file(VICTIM "/precious", "root's\n");
}

/* ---- tests ------------------------------------------------------------------------------------
 */

START_TEST(test_creates_and_is_idempotent) {
        Pass p = {};
        char before[SNAPSHOT_MAX], after[SNAPSHOT_MAX], sbefore[SNAPSHOT_MAX], safter[SNAPSHOT_MAX];

        setup_users(base_users, ELEMENTSOF(base_users));
        run_pass(&p, NULL);
        ck_assert_uint_eq(p.n, 2);
        assert_state(&p, "alice", USER_LINK_CREATED);
        assert_state(&p, "bob", USER_LINK_CREATED);
        assert_link_ok("alice", 2001);
        assert_link_ok("bob", 2002);
        ck_assert_str_eq(report(&p, "alice")->link, HOMES "/alice/notebooks/remote");
        ck_assert_str_eq(report(&p, "alice")->target, SHARE "/Users/alice/notebooks");

        snapshot(HOMES "/alice/notebooks", before, sizeof(before));
        snapshot(SHARE "/Users", sbefore, sizeof(sbefore));
        for (int i = 0; i < 3; i++) {
                run_pass(&p, NULL);
                assert_state(&p, "alice", USER_LINK_OK);
                assert_state(&p, "bob", USER_LINK_OK);
        }
        snapshot(HOMES "/alice/notebooks", after, sizeof(after));
        snapshot(SHARE "/Users", safter, sizeof(safter));
        ck_assert_str_eq(before, after);
        ck_assert_str_eq(sbefore, safter);
        pass_done(&p);
}
END_TEST

START_TEST(test_notebooks_symlink_to_etc_or_other_home) {
        char etc_before[SNAPSHOT_MAX], etc_after[SNAPSHOT_MAX];
        char bob_before[SNAPSHOT_MAX], bob_after[SNAPSHOT_MAX];
        Pass p = {};

        setup_users(base_users, ELEMENTSOF(base_users));
        /* alice points her notebooks directory at /etc. */
        plant(2001, "symlink", HOMES "/alice/notebooks", "/etc");
        snapshot("/etc", etc_before, sizeof(etc_before));
        run_pass(&p, NULL);
        assert_state(&p, "alice", USER_LINK_CONFLICT);
        assert_state(&p, "bob", USER_LINK_CREATED);
        ck_assert_int_eq(faccessat(AT_FDCWD, "/etc/remote", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        ck_assert_int_eq(access(HOMES "/alice/notebooks/remote", F_OK), -1);
        snapshot("/etc", etc_after, sizeof(etc_after));
        ck_assert_str_eq(etc_before, etc_after);

        /* Then at bob's (private) home. */
        ck_assert_int_eq(chmod(HOMES "/bob", 0700), 0);
        ck_assert_int_eq(unlink(HOMES "/alice/notebooks"), 0);
        plant(2001, "symlink", HOMES "/alice/notebooks", HOMES "/bob");
        snapshot(HOMES "/bob", bob_before, sizeof(bob_before));
        for (int i = 0; i < 2; i++) {
                run_pass(&p, NULL);
                assert_state(&p, "alice", USER_LINK_CONFLICT);
                assert_state(&p, "bob", USER_LINK_OK);
        }
        snapshot(HOMES "/bob", bob_after, sizeof(bob_after));
        ck_assert_str_eq(bob_before, bob_after);
        ck_assert_int_eq(faccessat(AT_FDCWD, HOMES "/bob/remote", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        snapshot("/etc", etc_after, sizeof(etc_after));
        ck_assert_str_eq(etc_before, etc_after);
        pass_done(&p);
}
END_TEST

START_TEST(test_remote_in_the_way) {
        static const char *const kinds[] = {"symlink", "file", "dir"};
        Pass p = {};

        setup_users(base_users, ELEMENTSOF(base_users));
        run_pass(&p, NULL); /* bob's folder exists */
        ck_assert_int_eq(unlink(HOMES "/alice/notebooks/remote"), 0);

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                char before[SNAPSHOT_MAX], after[SNAPSHOT_MAX], sbob[SNAPSHOT_MAX],
                        sbob2[SNAPSHOT_MAX];

                plant(2001, kinds[i], HOMES "/alice/notebooks/remote",
                      SHARE "/Users/bob/notebooks");
                snapshot(HOMES "/alice/notebooks", before, sizeof(before));
                snapshot(SHARE "/Users/bob/notebooks", sbob, sizeof(sbob));
                run_pass(&p, NULL);
                assert_state(&p, "alice", USER_LINK_CONFLICT);
                assert_state(&p, "bob", USER_LINK_OK);
                snapshot(HOMES "/alice/notebooks", after, sizeof(after));
                snapshot(SHARE "/Users/bob/notebooks", sbob2, sizeof(sbob2));
                ck_assert_msg(streq(before, after), "%s was touched", kinds[i]);
                ck_assert_str_eq(sbob, sbob2);
                if (streq(kinds[i], "dir"))
                        ck_assert_int_eq(rmdir(HOMES "/alice/notebooks/remote"), 0);
                else
                        ck_assert_int_eq(unlink(HOMES "/alice/notebooks/remote"), 0);
        }
        /* Once the obstacle is gone, the next pass makes the link. */
        run_pass(&p, NULL);
        assert_state(&p, "alice", USER_LINK_CREATED);
        assert_link_ok("alice", 2001);
        pass_done(&p);
}
END_TEST

START_TEST(test_hostile_homes) {
        static const TestUser users[] = {
                {"eve", 2005, false},     /* home is a symlink to /root */
                {"mallory", 2006, false}, /* home owned by bob */
                {"trudy", 2007, false},   /* world-writable home */
                {"bob", 2002, true},
        };
        char root_before[SNAPSHOT_MAX], root_after[SNAPSHOT_MAX];
        char bob_before[SNAPSHOT_MAX], bob_after[SNAPSHOT_MAX];
        Pass p = {};

        setup_users(users, ELEMENTSOF(users));
        ck_assert_int_eq(symlink("/root", HOMES "/eve"), 0);
        ck_assert_int_eq(lchown(HOMES "/eve", 2005, 2005), 0);
        make_home("mallory", 2002, 0755);
        make_home("trudy", 2007, 0777);
        snapshot("/root", root_before, sizeof(root_before));
        snapshot(HOMES "/mallory", bob_before, sizeof(bob_before));

        run_pass(&p, NULL);
        assert_state(&p, "eve", USER_LINK_REFUSED);
        ck_assert_ptr_nonnull(strstr(report(&p, "eve")->detail, "symbolic link"));
        assert_state(&p, "mallory", USER_LINK_REFUSED);
        assert_state(&p, "trudy", USER_LINK_REFUSED);
        assert_state(&p, "bob", USER_LINK_CREATED);
        snapshot("/root", root_after, sizeof(root_after));
        snapshot(HOMES "/mallory", bob_after, sizeof(bob_after));
        ck_assert_str_eq(root_before, root_after);
        ck_assert_str_eq(bob_before, bob_after);
        ck_assert_int_eq(access(HOMES "/trudy/notebooks", F_OK), -1);
        /* A refused home gets nothing on the share either. */
        ck_assert_int_eq(access(SHARE "/Users/eve", F_OK), -1);

        /* A home whose parent others can write is refused too (the home could be swapped). */
        ck_assert_int_eq(chmod(HOMES, 0777), 0);
        run_pass(&p, NULL);
        assert_state(&p, "bob", USER_LINK_REFUSED);
        pass_done(&p);
}
END_TEST

typedef struct Swapper {
        const char *home;
} Swapper;

/* As alice: swap ~/notebooks between a real directory and a symlink to the victim, forever. */
static void swapper_fn(void *userdata) {
        const Swapper *s = userdata;
        int hfd = open(s->home, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (hfd < 0 || symlinkat(VICTIM, hfd, "notebooks.swap") < 0)
                _exit(4);
        if (mkdirat(hfd, "notebooks", 0755) < 0 && errno != EEXIST)
                _exit(4);
        /* Tell the parent the first swap pair exists, then loop until killed. */
        if (write(STDOUT_FILENO, "r", 1) != 1)
                _exit(4);
        for (;;)
                (void)renameat2(hfd, "notebooks", hfd, "notebooks.swap", RENAME_EXCHANGE);
}

START_TEST(test_race_swap_directory_and_link) {
        char before[SNAPSHOT_MAX], after[SNAPSHOT_MAX];
        char etc_before[SNAPSHOT_MAX], etc_after[SNAPSHOT_MAX];
        Swapper sw = {.home = HOMES "/alice"};
        unsigned created = 0, conflicts = 0;
        int fds[2], status;
        Pass p = {};
        pid_t pid;
        char c;

        setup_users(base_users, ELEMENTSOF(base_users));
        snapshot(VICTIM, before, sizeof(before));
        snapshot("/etc", etc_before, sizeof(etc_before));

        ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (dup2(fds[1], STDOUT_FILENO) < 0 || setgroups(0, NULL) < 0 ||
                    setresgid(2001, 2001, 2001) < 0 || setresuid(2001, 2001, 2001) < 0)
                        _exit(2);
                swapper_fn(&sw);
        }
        ck_assert_int_eq(close(fds[1]), 0);
        ck_assert_int_eq(read(fds[0], &c, 1), 1);

        for (int i = 0; i < 200; i++) {
                const UserLinkReport *r;

                run_pass(&p, NULL);
                r = report(&p, "alice");
                ck_assert_msg(
                        r->state == USER_LINK_CREATED || r->state == USER_LINK_OK ||
                                r->state == USER_LINK_CONFLICT || r->state == USER_LINK_ERROR,
                        "unexpected %s: %s", user_link_state_to_string(r->state), r->detail);
                if (r->state == USER_LINK_CREATED)
                        created++;
                else if (r->state == USER_LINK_CONFLICT)
                        conflicts++;
                /* Checked on every pass, not only at the end. */
                ck_assert_int_eq(
                        faccessat(AT_FDCWD, VICTIM "/remote", F_OK, AT_SYMLINK_NOFOLLOW), -1);
        }
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_int_eq(close(fds[0]), 0);

        snapshot(VICTIM, after, sizeof(after));
        snapshot("/etc", etc_after, sizeof(etc_after));
        ck_assert_str_eq(before, after);
        ck_assert_str_eq(etc_before, etc_after);
        /* bob, not under attack, was fine all along. */
        assert_state(&p, "bob", USER_LINK_OK);
        (void)created;
        (void)conflicts;
        pass_done(&p);
}
END_TEST

START_TEST(test_odd_names) {
        static const TestUser users[] = {
                {"first.last", 2010, true},
                {"a-b_c", 2011, true},
                {"abcdefghijklmnopqrstuvwxyz012345", 2012, true}, /* 32 */
                {"Carol", 2013, true},
                {"carol", 2014, true},
                {"con", 2015, true},
                {"dot.", 2016, true},
                {"zoe", 2017, true},
        };
        char zoe_before[SNAPSHOT_MAX], zoe_after[SNAPSHOT_MAX];
        Pass p = {};

        setup_users(users, ELEMENTSOF(users));
        /* Another VM's user ZOE already has a folder: on the case-insensitive share it is zoe's. */
        ck_assert_int_eq(mkdir(SHARE "/Users", 0755), 0);
        ck_assert_int_eq(mkdir(SHARE "/Users/ZOE", 0700), 0);
        agent_harness_write_file(SHARE "/Users/ZOE/theirs", "ZOE's\n");
        snapshot(SHARE "/Users/ZOE", zoe_before, sizeof(zoe_before));
        run_pass(&p, NULL);
        assert_state(&p, "first.last", USER_LINK_CREATED);
        assert_link_ok("first.last", 2010);
        assert_state(&p, "a-b_c", USER_LINK_CREATED);
        assert_link_ok("a-b_c", 2011);
        assert_state(&p, "abcdefghijklmnopqrstuvwxyz012345", USER_LINK_CREATED);
        assert_link_ok("abcdefghijklmnopqrstuvwxyz012345", 2012);
        /* Names equal ignoring case: both reported, neither gets a folder or a link. */
        assert_state(&p, "Carol", USER_LINK_REFUSED);
        assert_state(&p, "carol", USER_LINK_REFUSED);
        ck_assert_ptr_nonnull(strstr(report(&p, "Carol")->detail, "\"carol\""));
        ck_assert_int_eq(access(SHARE "/Users/Carol", F_OK), -1);
        ck_assert_int_eq(access(SHARE "/Users/carol", F_OK), -1);
        ck_assert_int_eq(access(HOMES "/carol/notebooks", F_OK), -1);
        assert_state(&p, "con", USER_LINK_REFUSED);
        ck_assert_int_eq(access(SHARE "/Users/con", F_OK), -1);
        assert_state(&p, "dot.", USER_LINK_REFUSED);
        assert_state(&p, "zoe", USER_LINK_CONFLICT);
        ck_assert_ptr_nonnull(strstr(report(&p, "zoe")->detail, "Users/ZOE"));
        /* On this case-sensitive scratch "zoe" could be made; it must not be left behind. */
        ck_assert_int_eq(access(SHARE "/Users/zoe", F_OK), -1);
        ck_assert_int_eq(access(HOMES "/zoe/notebooks", F_OK), -1);
        snapshot(SHARE "/Users/ZOE", zoe_after, sizeof(zoe_after));
        ck_assert_str_eq(zoe_before, zoe_after);
        pass_done(&p);
}
END_TEST

START_TEST(test_later_user_and_pending_home) {
        static const TestUser later[] = {
                {"alice", 2001, true},
                {"bob", 2002, true},
                {"dave", 2004, false},
        };
        UserSeen seen = {};
        Pass p = {};
        char *parent = NULL;

        setup_users(base_users, ELEMENTSOF(base_users));
        run_pass(&p, NULL);
        ck_assert_uint_eq(p.n, 2);

        /* dave is added after the first pass; his home does not exist yet. */
        write_users(later, ELEMENTSOF(later));
        run_pass(&p, NULL);
        assert_state(&p, "alice", USER_LINK_OK);
        assert_state(&p, "dave", USER_LINK_PENDING);
        /* The share folder is made already, owned by dave. */
        ck_assert_int_eq(access(SHARE "/Users/dave/notebooks", F_OK), 0);
        ck_assert_int_eq(user_link_home_parent(HOMES "/dave", &parent), 0);
        ck_assert_str_eq(parent, HOMES);
        free(parent);

        make_home("dave", 2004, 0700);
        run_pass(&p, NULL);
        assert_state(&p, "dave", USER_LINK_CREATED);
        assert_link_ok("dave", 2004);
        run_pass(&p, NULL);
        assert_state(&p, "dave", USER_LINK_OK);

        /* grace (outside the UID range) is in the group; heidi only opened a session. */
        static const TestUser more[] = {
                {"alice", 2001, true},
                {"grace", 4000, true},
                {"heidi", 4001, true},
                {"ivan", 4002, true},
        };
        setup_users(more + 1, 3);
        write_users(more, ELEMENTSOF(more));
        ck_assert_int_eq(user_seen_add(&seen, "heidi"), 1);
        ck_assert_int_eq(user_seen_add(&seen, "root"), 1);
        run_pass(&p, &seen);
        assert_state(&p, "grace", USER_LINK_CREATED);
        assert_state(&p, "heidi", USER_LINK_CREATED);
        assert_state(&p, "root", USER_LINK_REFUSED);
        for (size_t i = 0; i < p.n; i++)
                ck_assert_str_ne(p.reports[i].user, "ivan");
        ck_assert_int_eq(access("/root/notebooks", F_OK), -1);
        user_seen_done(&seen);
        pass_done(&p);
}
END_TEST

/* ---- main -------------------------------------------------------------------------------------
 */

int main(void) {
        Suite *s = suite_create("user-links");
        TCase *tc_basic = tcase_create("basic");
        TCase *tc_attack = tcase_create("attacks");
        TCase *tc_users = tcase_create("users");
        SRunner *sr;
        int failed;

        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipping\n");
                return 77;
        }
        if (!agent_harness_can_unshare()) {
                fprintf(stderr, "cannot unshare the mount namespace, skipping\n");
                return 77;
        }

        tcase_add_checked_fixture(tc_basic, setup, NULL);
        tcase_add_test(tc_basic, test_creates_and_is_idempotent);
        suite_add_tcase(s, tc_basic);

        tcase_add_checked_fixture(tc_attack, setup, NULL);
        tcase_set_timeout(tc_attack, 240);
        tcase_add_test(tc_attack, test_notebooks_symlink_to_etc_or_other_home);
        tcase_add_test(tc_attack, test_remote_in_the_way);
        tcase_add_test(tc_attack, test_hostile_homes);
        tcase_add_test(tc_attack, test_race_swap_directory_and_link);
        suite_add_tcase(s, tc_attack);

        tcase_add_checked_fixture(tc_users, setup, NULL);
        tcase_add_test(tc_users, test_odd_names);
        tcase_add_test(tc_users, test_later_user_and_pending_home);
        suite_add_tcase(s, tc_users);

        sr = srunner_create(s);
        /* The fixture changes mounts: each test must be its own process. */
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
