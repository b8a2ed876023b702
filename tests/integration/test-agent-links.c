/* SPDX-License-Identifier: MIT */
/* The real poolagentd making per-user links, driven with the real poolctl, inside a private mount
 * namespace (as test-user-links.c: tmpfs over /tmp and /root, a fake /etc with passwd, group and
 * nsswitch.conf; the fixture refuses to go on unless /etc and /root are its own mounts). The agent
 * gets MountPoint=/tmp/share, homes under /tmp/home, UIDRange=2000-2999 and ResyncInterval=1h, so
 * that no periodic pass happens during a test: every link comes from the start pass, a requested
 * pass or the inotify watch. argv[1] is poolagentd, argv[2] poolctl. No sleeps: every wait is on
 * the real condition (notifications, inotify, process exit), bounded by
 * WAIT_MS or check's timeout. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "emu-harness.h"
#include "fs-harness.h"
#include "macro.h"
#include "time-util.h"

#define WAIT_MS 30000
#define SHARE "/tmp/share"
#define HOMES "/tmp/home"
#define SOCKET "/tmp/run/control.sock"
#define CONF "/tmp/poolagent.conf"
#define LOG "/tmp/agent.log"
#define PASSWD "/tmp/fake-etc/passwd"

typedef struct TestUser {
        const char *name;
        uid_t uid;
        bool make_home;
} TestUser;

static const char *poolagentd_path;
static const char *poolctl_path;
static const char *azfilesfs_path;          /* argv[3]: the real driver, for the share test */
static AgentNotify notify = {.fd = -EBADF}; /* /tmp/notify, the agent's NOTIFY_SOCKET */
static pid_t agent_pid;

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t left_ms(int64_t deadline) {
        return agent_harness_left_ms(deadline);
}

/* The passwd text for users (own group each, gid == uid). */
static void passwd_text(const TestUser *users, size_t n, char *passwd, size_t size) {
        (void)snprintf(
                passwd, size,
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n");
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(passwd);
                (void)snprintf(
                        passwd + l, size - l, "%s:x:%u:%u::" HOMES "/%s:/bin/sh\n", users[i].name,
                        (unsigned)users[i].uid, (unsigned)users[i].uid, users[i].name);
        }
}

static void make_home(const char *name, uid_t uid) {
        char path[256];

        (void)snprintf(path, sizeof(path), HOMES "/%s", name);
        ck_assert_msg(mkdir(path, 0700) == 0, "mkdir %s: %m", path);
        ck_assert_int_eq(chown(path, uid, uid), 0);
        ck_assert_int_eq(chmod(path, 0755), 0);
}

/* Writes the fake passwd and group for users (only in the fake /etc) and makes their homes. */
static void set_users(const TestUser *users, size_t n, bool make_homes) {
        char passwd[8192], group[8192] = "root:x:0:\nnogroup:x:65534:\n";

        ck_assert(agent_harness_on_private_tmpfs("/etc"));
        passwd_text(users, n, passwd, sizeof(passwd));
        for (size_t i = 0; i < n; i++) {
                size_t l = strlen(group);
                (void)snprintf(
                        group + l, sizeof(group) - l, "%s:x:%u:\n", users[i].name,
                        (unsigned)users[i].uid);
        }
        agent_harness_write_file(PASSWD, passwd);
        agent_harness_write_file("/tmp/fake-etc/group", group);
        for (size_t i = 0; make_homes && i < n; i++) {
                char path[256];
                (void)snprintf(path, sizeof(path), HOMES "/%s", users[i].name);
                if (users[i].make_home && access(path, F_OK) < 0)
                        make_home(users[i].name, users[i].uid);
        }
}

/* Waits (inotify, bounded) until path exists, watching the deepest existing ancestor. */
static void wait_for_path(const char *path) {
        int64_t deadline = now_monotonic_ns() + (int64_t)WAIT_MS * 1000000;
        _cleanup_close_ int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

        ck_assert_int_ge(fd, 0);
        for (;;) {
                char dir[512], buf[4096];
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char *slash;
                int k;

                /* Watch every existing ancestor (idempotent), then look. */
                (void)snprintf(dir, sizeof(dir), "%s", path);
                while ((slash = strrchr(dir, '/')) && slash != dir) {
                        *slash = '\0';
                        if (access(dir, F_OK) == 0)
                                (void)inotify_add_watch(
                                        fd, dir, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
                }
                if (faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                        return;
                k = poll(&p, 1, (int)left_ms(deadline));
                ck_assert_msg(k > 0, "%s did not appear within %d ms", path, WAIT_MS);
                while (read(fd, buf, sizeof(buf)) > 0)
                        ;
        }
}

static void assert_link(const char *name) {
        char path[256], target[256], expected[256];
        ssize_t l;

        (void)snprintf(path, sizeof(path), HOMES "/%s/notebooks/remote", name);
        (void)snprintf(expected, sizeof(expected), SHARE "/Users/%s/notebooks", name);
        l = readlink(path, target, sizeof(target) - 1);
        ck_assert_msg(l > 0, "readlink %s: %m", path);
        target[l] = '\0';
        ck_assert_str_eq(target, expected);
}

static void wait_notify(const char *want) {
        agent_notify_wait(&notify, want);
}

/* Runs poolctl (as uid when uid != 0, through setpriv); returns its exit status with stdout and
 * stderr. */
static int poolctl(uid_t uid, const char *const *args, char **ret_out, char **ret_err) {
        char reuid[64], regid[64];
        const char *setpriv[] = {reuid, regid, "--clear-groups", NULL};

        (void)snprintf(reuid, sizeof(reuid), "--reuid=%u", (unsigned)uid);
        (void)snprintf(regid, sizeof(regid), "--regid=%u", (unsigned)uid);
        return poolctl_run(
                &(const AgentPoolctl){
                        .poolctl = poolctl_path,
                        .socket = SOCKET,
                        .setpriv = uid != 0 ? setpriv : NULL,
                        .capture_stderr = true,
                        .wait_ms = WAIT_MS,
                },
                args, ret_out, ret_err, NULL);
}

/* poolctl --json ARGS as uid, expected to succeed; returns "result". */
static json_object *poolctl_json(uid_t uid, const char *verb, bool sync) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *o, *result;
        int r;

        r =
                poolctl(uid,
                        sync ? (const char *const[]){"--json", verb, "--sync", NULL}
                             : (const char *const[]){"--json", verb, NULL},
                        &out, &err);
        ck_assert_msg(r == 0, "poolctl --json %s: exit %d: %s%s", verb, r, out, err);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        ck_assert(json_object_object_get_ex(o, "result", &result));
        json_object_get(result);
        json_object_put(o);
        return result;
}

static json_object *find_user(json_object *links, const char *name) {
        json_object *users = json_object_object_get(links, "users");

        for (size_t i = 0; i < json_object_array_length(users); i++) {
                json_object *u = json_object_array_get_idx(users, i);
                if (streq(json_object_get_string(json_object_object_get(u, "user")), name))
                        return u;
        }
        return NULL;
}

static const char *user_state(json_object *links, const char *name) {
        json_object *u = find_user(links, name);

        ck_assert_msg(u != NULL, "no entry for %s", name);
        return json_object_get_string(json_object_object_get(u, "state"));
}

/* Starts the agent with MountPoint=SHARE plus workspace (more [Workspace] keys, may be NULL), and
 * path_env ("PATH=...", may be NULL) in its environment. */
static void start_agent_with(const char *workspace, const char *path_env) {
        char conf[4096];
        pid_t pid;

        (void)snprintf(
                conf, sizeof(conf),
                "[Agent]\nControlSocket=" SOCKET "\nStateDirectory=/tmp/state\n"
                /* Never this machine's metadata service (a CI runner may be an Azure VM). */
                "MetadataEndpoint=http://127.0.0.1:9\n[Drain]\nScheduledEvents=no\n"
                /* Nor this machine's health port (tests run in parallel). */
                "[Health]\nListenAddress=127.0.0.1:0\n"
                "[Workspace]\nMountPoint=" SHARE "\n%s"
                "[Users]\nUIDRange=2000-2999\nResyncInterval=1h\n",
                workspace ? workspace : "");
        agent_harness_write_file(CONF, conf);
        agent_notify_open(&notify, "/tmp/notify", WAIT_MS);

        pid = poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = CONF,
                .config_dir = "",
                .log = LOG,
                .notify_socket = "/tmp/notify",
                .env = (const char *const[]){path_env, NULL},
        });
        agent_pid = pid;
        wait_notify("READY=1");
}

static void start_agent(void) {
        start_agent_with(NULL, NULL);
}

/* ---- fixture -------------------------------------------------------------------------------- */

/* The tmpfs over /tmp hides a build directory under /tmp (CI may clone there) from absolute
 * paths; the working directory, the build directory, stays reachable. So an absolute path in
 * the environment variable name that lies below it is made relative to it. */
static void env_relative_to_cwd(const char *name) {
        char cwd[PATH_MAX];
        const char *v = getenv(name);
        size_t n;

        if (!v || v[0] != '/')
                return;
        ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
        n = strlen(cwd);
        if (strncmp(v, cwd, n) == 0 && v[n] == '/')
                ck_assert_int_eq(setenv(name, v + n + 1, 1), 0);
}

static void setup(void) {
        env_relative_to_cwd("AZFILES_EMU");
        agent_harness_private_root(true);

        ck_assert_int_eq(mkdir(HOMES, 0755), 0);
        ck_assert_int_eq(mkdir(SHARE, 0755), 0);
        agent_pid = 0;
}

static void teardown(void) {
        poolagentd_stop(&agent_pid, LOG, NULL);
        /* A driver the agent started (test_real_share) never outlives a test, failed or not. */
        for (pid_t pid; (pid = agent_harness_child_named("azfilesfs")) > 0;) {
                (void)umount2(SHARE, MNT_DETACH);
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0);
        }
        agent_notify_close(&notify);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_start_later_user_and_own_entry) {
        static const TestUser users[] = {{"alice", 2001, true}, {"bob", 2002, true}};
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *links;

        set_users(users, 1, true);
        start_agent();

        /* The start pass makes alice's link. */
        wait_for_path(HOMES "/alice/notebooks/remote");
        assert_link("alice");

        /* bob is added later: a requested pass makes his link before poolctl returns. */
        set_users(users, 2, true);
        ck_assert_int_eq(poolctl(0, (const char *const[]){"links", "--sync", NULL}, &out, &err), 0);
        ck_assert_msg(
                strstr(out, "USER") && strstr(out, "bob") && strstr(out, "created"), "%s", out);
        ck_assert_msg(strstr(out, "(request), complete"), "%s", out);
        assert_link("bob");
        links = poolctl_json(0, "links", false);
        ck_assert_str_eq(user_state(links, "alice"), "ok");
        ck_assert_str_eq(user_state(links, "bob"), "created");
        ck_assert(json_object_get_boolean(json_object_object_get(links, "all_users")));
        json_object_put(links);

        /* bob sees only his own entry, and may not start a pass. */
        links = poolctl_json(2002, "links", false);
        ck_assert_uint_eq(json_object_array_length(json_object_object_get(links, "users")), 1);
        ck_assert_str_eq(user_state(links, "bob"), "created");
        ck_assert(!json_object_get_boolean(json_object_object_get(links, "all_users")));
        ck_assert_ptr_null(json_object_object_get(links, "counts"));
        json_object_put(links);
        free(out);
        free(err);
        out = err = NULL;
        ck_assert_int_eq(poolctl(2002, (const char *const[]){"links", NULL}, &out, &err), 0);
        ck_assert_msg(strstr(out, "bob") && !strstr(out, "alice"), "%s", out);
        free(out);
        free(err);
        out = err = NULL;
        ck_assert_int_eq(
                poolctl(2002, (const char *const[]){"links", "--sync", NULL}, &out, &err), 4);
        ck_assert_msg(strstr(err, "permission denied"), "%s", err);

        /* Status carries the links summary; there is no system bus here. */
        free(out);
        out = NULL;
        ck_assert_int_eq(poolctl(0, (const char *const[]){"status", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "Links: 2 users: 2 ok"), "%s", out);
        ck_assert_msg(strstr(out, "sessions: no system bus"), "%s", out);
}
END_TEST

START_TEST(test_pending_home_appears) {
        static const TestUser users[] = {{"alice", 2001, true}, {"dave", 2004, false}};
        json_object *links, *status;

        set_users(users, 2, true);
        start_agent();
        links = poolctl_json(0, "links", true);
        ck_assert_str_eq(user_state(links, "alice"), "ok"); /* made by the start pass */
        ck_assert_str_eq(user_state(links, "dave"), "pending");
        json_object_put(links);
        status = poolctl_json(0, "status", false);
        ck_assert_str_eq(
                json_object_get_string(json_object_array_get_idx(
                        json_object_object_get(
                                json_object_object_get(
                                        json_object_object_get(status, "users"), "links"),
                                "watched_directories"),
                        0)),
                HOMES);
        json_object_put(status);

        /* The home appears (as useradd makes it: root's first, then chowned); the watch on
         * /tmp/home starts a pass (ResyncInterval=1h does not). */
        make_home("dave", 2004);
        wait_for_path(HOMES "/dave/notebooks/remote");
        assert_link("dave");
}
END_TEST

/* ---- the real share -----------------------------------------------------------------------------
 */

/* Runs fn(arg) in a child with the user's identity; returns its exit status. */
static int as_user(uid_t uid, int (*fn)(const void *arg), const void *arg) {
        int status;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 ||
                    setresuid(uid, uid, uid) < 0)
                        _exit(126);
                _exit(fn(arg));
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int write_notebook(const void *arg) {
        const char *text = arg;
        int fd =
                open(HOMES "/alice/notebooks/remote/analysis.ipynb",
                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t len = strlen(text);

        if (fd < 0 || write(fd, text, len) != (ssize_t)len)
                return 1;
        return close(fd) == 0 ? 0 : 2; /* close() returns once the bytes are on the share */
}

static int read_other_user(const void *arg) {
        /* bob may not read alice's folder (users_mode=0700 under Users/). */
        return open(SHARE "/Users/alice/notebooks/analysis.ipynb", O_RDONLY | O_CLOEXEC) < 0 &&
                               errno == EACCES
                       ? 0
                       : 1;
}

/* The README's promise end to end, without systemd: the agent mounts the team share with the real
 * azfilesfs (it runs the driver itself when systemd is not init) from azfiles-emu, makes alice's
 * folder and link, alice saves a notebook through her link as herself, and its bytes are on the
 * share when close() returns. */
START_TEST(test_real_share) {
        static const TestUser users[] = {{"alice", 2001, true}, {"bob", 2002, true}};
        static const char notebook[] = "{\"cells\": [], \"nbformat\": 4}\n";
        _cleanup_(emu_instance_freep) EmuInstance *emu = NULL;
        _cleanup_free_ char *data = NULL, *dir = NULL;
        char workspace[2048], path_env[1024], cred[512];
        struct stat st;
        size_t size = 0;
        int fd;

        ck_assert_msg(azfilesfs_path != NULL, "no azfilesfs given (argv[3])");
        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); /* the driver daemonizes */
        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(fs_share_create(emu, "team"), 0);
        (void)snprintf(cred, sizeof(cred), "[storage]\naccount_key = %s\n", EMU_TEST_KEY);
        fd = open("/tmp/storage.cred", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, cred, strlen(cred)), (ssize_t)strlen(cred));
        ck_assert_int_eq(close(fd), 0);
        (void)snprintf(
                workspace, sizeof(workspace),
                "Source=%s/team\nCredentials=/tmp/storage.cred\nCacheDirectory=/tmp/cache\n"
                "CheckInterval=1s\n",
                emu->files_url);
        dir = strdup(azfilesfs_path);
        ck_assert_ptr_nonnull(dir);
        *strrchr(dir, '/') = '\0';
        (void)snprintf(path_env, sizeof(path_env), "PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin", dir);

        set_users(users, 2, true);
        start_agent_with(workspace, path_env);

        /* The workspace comes up (mounted by the agent), then the links. */
        wait_for_path(HOMES "/alice/notebooks/remote");
        assert_link("alice");
        ck_assert_int_eq(stat(SHARE "/Users/alice/notebooks", &st), 0);
        ck_assert_uint_eq(st.st_uid, 2001);
        ck_assert_int_eq(as_user(2001, write_notebook, notebook), 0);
        ck_assert_int_eq(
                fs_share_read(emu, "team", "Users/alice/notebooks/analysis.ipynb", &data, &size),
                0);
        ck_assert_uint_eq(size, strlen(notebook));
        ck_assert(memcmp(data, notebook, size) == 0);
        ck_assert_int_eq(as_user(2002, read_other_user, NULL), 0);

        /* The agent leaves the mount when it stops; unmounting ends the driver. */
        ck_assert_int_eq(kill(agent_pid, SIGTERM), 0);
        ck_assert_int_eq(waitpid(agent_pid, NULL, 0), agent_pid);
        agent_pid = 0;
        /* A workspace probe the agent killed on its way out may still be ending, inside a call
         * on the mount: ours now (the subreaper), reaped before the unmount it would make busy. */
        for (pid_t pid; (pid = agent_harness_child_named("poolagentd")) > 0;)
                ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        ck_assert_msg(umount2(SHARE, 0) == 0, "umount %s: %m", SHARE);
        /* The driver (ours now: we are the subreaper) exits once unmounted, having flushed. */
        for (pid_t pid; (pid = agent_harness_child_named("azfilesfs")) > 0;)
                ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char *argv[]) {
        Suite *s = suite_create("agent-links");
        TCase *tc = tcase_create("links");
        SRunner *sr;
        int failed;

        if (argc < 3 || argc > 4) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL [AZFILESFS]\n", argv[0]);
                return EXIT_FAILURE;
        }
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        azfilesfs_path = argc > 3 ? argv[3] : NULL;
        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipping\n");
                return 77;
        }
        if (!agent_harness_can_unshare()) {
                fprintf(stderr, "cannot unshare the mount namespace, skipping\n");
                return 77;
        }

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_start_later_user_and_own_entry);
        tcase_add_test(tc, test_pending_home_appears);
        if (azfilesfs_path)
                tcase_add_test(tc, test_real_share);
        suite_add_tcase(s, tc);

        sr = srunner_create(s);
        /* The fixture changes mounts: each test must be its own process. */
        srunner_set_fork_status(sr, CK_FORK);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
