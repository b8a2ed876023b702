/* SPDX-License-Identifier: MIT */
/* The workspace check of the real poolagentd against real FUSE mounts of hang-fs
 * (tests/tools/hang-fs.c) at the configured MountPoint=, driven with the real poolctl: a mount
 * that answers is "ok"; a hung one (its getattr/statfs never answered) turns "hung" within a bound
 * while every poolctl status still answers promptly, with one probe process at most; when the
 * hung filesystem goes away the state recovers and no probe process is left; a mount of another
 * type is "wrong-type", one that fails is "error", none is "not-mounted". argv[1] is poolagentd,
 * argv[2] poolctl, argv[3] hang-fs.
 *
 * Runs in a private mount namespace (a mount never leaks to the machine) and unmounts what it
 * mounted anyway, lazily, even when a check failed. Needs root and /dev/fuse (else exit 77). No
 * sleeps: every wait is on the real condition, with a deadline; time limits are generous upper
 * bounds, never exact timings. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "macro.h"
#include "time-util.h"

#define WAIT_MS 20000
#define POOLCTL_PROMPT_MS                                                                          \
        5000                 /* every poolctl status must answer within this, hung mount or not    \
                              */
#define HUNG_WITHIN_MS 15000 /* StatTimeout=500ms, CheckInterval=1s: generous */

static const char *poolagentd_path;
static const char *poolctl_path;
static const char *hang_fs_path;

static char *tmp;
static char conf_path[512];
static char socket_path[512];
static char log_path[512];
static char mnt[512];                       /* the workspace mount point */
static AgentNotify notify = {.fd = -EBADF}; /* tmp/notify, the agent's NOTIFY_SOCKET */
static pid_t agent_pid;
static pid_t fs_pid;
static char agent_env_path[700]; /* "PATH=..." for the agent, "" to inherit */

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t left_ms(int64_t deadline) {
        return agent_harness_left_ms(deadline);
}

static int64_t deadline_in_ms(int64_t ms) {
        return agent_harness_deadline(ms);
}

/* Reads notifications until a line is want (exact_line) or the latest STATUS= contains want
 * (perhaps one that came with an earlier message); bounded. */
static void wait_status_contains(const char *want, bool exact_line) {
        if (exact_line)
                agent_notify_wait(&notify, want);
        else
                agent_notify_wait_status(&notify, want);
}

/* Starts hang-fs at mnt and waits for its "ready". */
static void fs_start(const char *mode, const char *options) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        char mode_arg[64], buf[64];
        size_t len = 0;
        int out[2];

        ck_assert_int_eq(fs_pid, 0);
        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        fs_pid = fork();
        ck_assert_int_ge(fs_pid, 0);
        if (fs_pid == 0) {
                (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                (void)snprintf(mode_arg, sizeof(mode_arg), "--mode=%s", mode);
                if (options)
                        execl(hang_fs_path, hang_fs_path, mode_arg, "-o", options, mnt,
                              (char *)NULL);
                else
                        execl(hang_fs_path, hang_fs_path, mode_arg, mnt, (char *)NULL);
                _exit(127);
        }
        (void)close(out[1]);
        while (!memmem(buf, len, "ready\n", 6)) {
                struct pollfd p = {.fd = out[0], .events = POLLIN};
                ssize_t n;

                ck_assert_msg(poll(&p, 1, (int)left_ms(deadline)) > 0, "hang-fs not ready");
                n = read(out[0], buf + len, sizeof(buf) - len);
                ck_assert_msg(n > 0, "hang-fs --mode=%s exited before it was ready", mode);
                len += (size_t)n;
                ck_assert_uint_lt(len, sizeof(buf));
        }
        (void)close(out[0]);
        ck_assert(agent_harness_is_mounted(mnt));
}

/* Stops hang-fs (it answers what it held and unmounts) and makes sure nothing stays mounted. */
static void fs_stop(void) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        int status;

        if (fs_pid > 0) {
                int pidfd = (int)syscall(SYS_pidfd_open, fs_pid, 0);
                struct pollfd p = {.fd = pidfd, .events = POLLIN};

                (void)kill(fs_pid, SIGTERM);
                /* Wait for its exit (the pidfd turns readable), bounded. */
                if (pidfd < 0 || poll(&p, 1, (int)left_ms(deadline)) <= 0)
                        (void)kill(fs_pid, SIGKILL); /* aborts the FUSE connection */
                (void)safe_close(pidfd);
                (void)waitpid(fs_pid, &status, 0);
                fs_pid = 0;
        }
        while (agent_harness_is_mounted(mnt))
                if (umount2(mnt, MNT_DETACH) < 0)
                        break;
}

/* Runs poolctl with args; returns its exit status and stdout; *ret_ms: how long it took. */
static int poolctl(const char *const *args, char **ret_out, int64_t *ret_ms) {
        return poolctl_run(
                &(const AgentPoolctl){
                        .poolctl = poolctl_path, .socket = socket_path, .wait_ms = WAIT_MS},
                args, ret_out, NULL, ret_ms);
}

/* poolctl --json status: the "workspace" object; asserts that it answered promptly. */
static json_object *workspace_status(void) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *ws;
        int64_t ms;

        ck_assert_int_eq(poolctl((const char *const[]){"--json", "status", NULL}, &out, &ms), 0);
        ck_assert_msg(ms < POOLCTL_PROMPT_MS, "poolctl status took %lld ms", (long long)ms);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        ws = json_object_object_get(json_object_object_get(o, "result"), "workspace");
        ck_assert_ptr_nonnull(ws);
        json_object_get(ws);
        json_object_put(o);
        return ws;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        return v ? json_object_get_string(v) : NULL;
}

/* Polls poolctl status until the workspace state is want (and detail contains detail_part, if
 * given); returns that workspace object. */
static json_object *wait_state(const char *want, const char *detail_part, int64_t within_ms) {
        int64_t deadline = deadline_in_ms(within_ms);

        for (;;) {
                json_object *ws = workspace_status();

                if (streq(jstr(ws, "state"), want) &&
                    (!detail_part || strstr(jstr(ws, "detail"), detail_part)))
                        return ws;
                ck_assert_msg(
                        left_ms(deadline) > 0, "workspace still %s (%s), not %s after %lld ms",
                        jstr(ws, "state"), jstr(ws, "detail"), want, (long long)within_ms);
                json_object_put(ws);
        }
}

/* Processes whose parent is pid (from /proc). */
static unsigned children_of(pid_t pid) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        unsigned n = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d))) {
                char path[300], buf[1024], *p;
                ssize_t k;
                int fd, ppid;

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                (void)snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                k = read(fd, buf, sizeof(buf) - 1);
                (void)close(fd);
                if (k <= 0)
                        continue;
                buf[k] = '\0';
                p = strrchr(buf, ')'); /* "PID (comm) S PPID ..." */
                if (p && sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == pid)
                        n++;
        }
        (void)closedir(d);
        return n;
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void setup(void) {
        char text[2048], path[600];

        /* A probe the agent left behind (stuck when it stopped) comes to us: teardown reaps it. */
        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        tmp = agent_harness_mkdtemp("/tmp/test-agent-workspace-XXXXXX", 0);
        (void)snprintf(conf_path, sizeof(conf_path), "%s/poolagent.conf", tmp);
        (void)snprintf(socket_path, sizeof(socket_path), "%s/run/control.sock", tmp);
        (void)snprintf(log_path, sizeof(log_path), "%s/agent.log", tmp);
        (void)snprintf(mnt, sizeof(mnt), "%s/workspace", tmp);
        ck_assert_int_eq(mkdir(mnt, 0755), 0);
        (void)snprintf(path, sizeof(path), "%s/credentials", tmp);
        agent_harness_write_file(path, "[storage]\naccount_key=unused\n");
        (void)snprintf(
                text, sizeof(text),
                "[Agent]\nControlSocket=%s\nStateDirectory=%s/state\n"
                /* Never this machine's metadata service (a CI runner may be an Azure VM). */
                "MetadataEndpoint=http://127.0.0.1:9\n[Drain]\nScheduledEvents=no\n"
                /* Nor this machine's health port (tests run in parallel). */
                "[Health]\nListenAddress=127.0.0.1:0\n"
                "[Workspace]\nSource=http://127.0.0.1:1/account/share\nCredentials=%s\n"
                "MountPoint=%s\nCacheDirectory=%s/cache\nStatTimeout=500ms\nCheckInterval=1s\n",
                socket_path, tmp, path, mnt, tmp);
        agent_harness_write_file(conf_path, text);

        (void)snprintf(path, sizeof(path), "%s/notify", tmp);
        agent_notify_open(&notify, path, WAIT_MS);
}

static void agent_start(void) {
        agent_pid = poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = conf_path,
                .config_dir = "",
                .log = log_path,
                .notify_socket = notify.path,
                .env = (const char *const[]){agent_env_path, NULL},
        });
        wait_status_contains("READY=1", true);
}

static void agent_stop(void) {
        poolagentd_stop(&agent_pid, log_path, NULL);
}

static void teardown(void) {
        /* The mount first: the agent's probe may be waiting on it. */
        fs_stop();
        agent_stop();
        agent_notify_close(&notify);
        ck_assert(!agent_harness_is_mounted(mnt));
        /* Nothing the agent started is left waiting: with the filesystem gone every probe ends
         * (bounded by the test timeout). */
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
                ;
        agent_harness_rm_rf(&tmp);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_ok_then_hung_then_recovered) {
        _cleanup_free_ char *out = NULL;
        json_object *ws;
        int64_t start;

        fs_start("ok", "subtype=azfilesfs,fsname=hang-fs");
        agent_start();

        ws = wait_state("ok", NULL, WAIT_MS);
        ck_assert_str_eq(jstr(ws, "path"), mnt);
        ck_assert_str_eq(jstr(ws, "expected_type"), "fuse.azfilesfs");
        ck_assert_ptr_nonnull(json_object_object_get(ws, "latency_ms"));
        ck_assert_int_gt(json_object_get_int64(json_object_object_get(ws, "last_check_usec")), 0);
        json_object_put(ws);
        ck_assert_int_eq(poolctl((const char *const[]){"status", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "Mount: ok: mounted (fuse.azfilesfs)"), "%s", out);
        wait_status_contains("workspace ok", false);

        /* The filesystem goes away cleanly. */
        fs_stop();
        json_object_put(wait_state("not-mounted", NULL, WAIT_MS));
        wait_status_contains("workspace NOT MOUNTED", false);

        /* A filesystem that never answers: hung within the bound, the agent answering all along. */
        start = now_monotonic_ns();
        fs_start("hang", "subtype=azfilesfs,fsname=hang-fs");
        ws = wait_state("hung", NULL, HUNG_WITHIN_MS);
        ck_assert_int_ge(json_object_get_int64(json_object_object_get(ws, "latency_ms")), 400);
        json_object_put(ws);
        ck_assert_int_lt((now_monotonic_ns() - start) / 1000000, HUNG_WITHIN_MS);
        wait_status_contains("workspace HUNG", false);

        /* Later checks see the killed probe still stuck and start no other: one child at most. */
        ws = wait_state("hung", "still waiting in the kernel", WAIT_MS);
        ck_assert_ptr_nonnull(json_object_object_get(ws, "probe_pid"));
        json_object_put(ws);
        for (int i = 0; i < 3; i++) {
                json_object_put(wait_state("hung", "still waiting in the kernel", WAIT_MS));
                ck_assert_uint_le(children_of(agent_pid), 1);
        }

        /* The hung filesystem goes away: the stuck probe ends and is reaped, the state recovers. */
        fs_stop();
        json_object_put(wait_state("not-mounted", NULL, WAIT_MS));
        for (int64_t deadline = deadline_in_ms(WAIT_MS); children_of(agent_pid) > 0;) {
                ck_assert_msg(left_ms(deadline) > 0, "the agent still has a child");
                json_object_put(workspace_status()); /* poll the real condition */
        }
        ws = workspace_status();
        ck_assert_ptr_null(json_object_object_get(ws, "probe_pid"));
        json_object_put(ws);

        /* And comes back. The next check's probe may be running at any moment, so what must hold
         * is that no probe stays: the agent's children drop back to none. */
        fs_start("ok", "subtype=azfilesfs,fsname=hang-fs");
        json_object_put(wait_state("ok", NULL, WAIT_MS));
        for (int64_t deadline = deadline_in_ms(WAIT_MS); children_of(agent_pid) > 0;) {
                ck_assert_msg(left_ms(deadline) > 0, "a probe of a healthy mount did not end");
                json_object_put(workspace_status()); /* poll the real condition */
        }
}
END_TEST

START_TEST(test_hung_at_start_and_stop_while_hung) {
        json_object *ws;

        fs_start("hang", "subtype=azfilesfs,fsname=hang-fs");
        agent_start();
        ws = wait_state("hung", NULL, HUNG_WITHIN_MS);
        json_object_put(ws);
        /* The agent stops promptly even with its probe stuck in the kernel (teardown checks the
         * exit status; the probe ends when hang-fs is gone). */
        agent_stop();
}
END_TEST

START_TEST(test_wrong_type_and_error) {
        fs_start("ok", NULL); /* type fuse.hang-fs */
        agent_start();
        json_object_put(wait_state("wrong-type", "a fuse.hang-fs mount", WAIT_MS));
        wait_status_contains("workspace WRONG MOUNT", false);
        fs_stop();
        json_object_put(wait_state("not-mounted", NULL, WAIT_MS));

        fs_start("eio", "subtype=azfilesfs,fsname=hang-fs");
        json_object_put(wait_state("error", "Input/output error", WAIT_MS));
        wait_status_contains("workspace check FAILED", false);
}
END_TEST

/* ---- the agent mounts the workspace itself (no systemd here) ----------------------------------
 */

/* Installs tmp/bin/azfilesfs, which the agent runs (no systemd here): a stand-in for
 * the driver that mounts hang-fs in the mode named in tmp/mode, in the background, and returns
 * once it is mounted (as a daemonizing FUSE driver does). It records its arguments and the PID
 * of the hang-fs it started. The agent gets that directory first in PATH, and RecoverAfter=2s. */
static void install_driver_stand_in(void) {
        char path[600], text[4096];

        (void)snprintf(path, sizeof(path), "%s/bin", tmp);
        ck_assert_int_eq(mkdir(path, 0755), 0);
        (void)snprintf(path, sizeof(path), "%s/bin/azfilesfs", tmp);
        (void)snprintf(
                text, sizeof(text),
                "#!/bin/sh\n"
                "# azfilesfs SOURCE MOUNTPOINT -o OPTIONS\n"
                "echo \"$*\" >>'%1$s/args'\n"
                "rm -f '%1$s/fs.fifo' && mkfifo '%1$s/fs.fifo' || exit 1\n"
                "'%2$s' --mode=\"$(cat '%1$s/mode')\" -o subtype=azfilesfs,fsname=hang-fs \"$2\" "
                ">'%1$s/fs.fifo' </dev/null 2>>'%1$s/fs.err' &\n"
                "echo $! >'%1$s/fs.pid'\n"
                "read -r line <'%1$s/fs.fifo'\n" /* hang-fs says "ready" once mounted, or exits */
                "[ \"$line\" = ready ]\n",
                tmp, hang_fs_path);
        agent_harness_write_file(path, text);
        ck_assert_int_eq(chmod(path, 0755), 0);
        (void)snprintf(
                agent_env_path, sizeof(agent_env_path), "PATH=%s/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                tmp);
        (void)snprintf(path, sizeof(path), "%s/mode", tmp);
        agent_harness_write_file(path, "ok\n");
        {
                FILE *f = fopen(conf_path, "ae");

                ck_assert_ptr_nonnull(f);
                ck_assert_int_gt(fprintf(f, "RecoverAfter=2s\n"), 0);
                ck_assert_int_eq(fclose(f), 0);
        }
}

static void set_stand_in_mode(const char *mode) {
        char path[600], text[32];

        (void)snprintf(path, sizeof(path), "%s/mode", tmp);
        (void)snprintf(text, sizeof(text), "%s\n", mode);
        agent_harness_write_file(path, text);
}

/* The PID of the hang-fs the stand-in started last. */
static pid_t stand_in_fs_pid(void) {
        char path[600];
        FILE *f;
        int pid = 0;

        (void)snprintf(path, sizeof(path), "%s/fs.pid", tmp);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fscanf(f, "%d", &pid), 1);
        (void)fclose(f);
        return (pid_t)pid;
}

static int64_t mount_recoveries(json_object *ws) {
        json_object *m = json_object_object_get(ws, "mount");

        ck_assert_ptr_nonnull(m);
        return json_object_get_int64(json_object_object_get(m, "recoveries"));
}

/* Waits for state "ok" with at least n recoveries; returns that workspace object. */
static json_object *wait_ok_after_recoveries(int64_t n) {
        int64_t deadline = deadline_in_ms(WAIT_MS);

        for (;;) {
                json_object *ws = workspace_status();

                if (streq(jstr(ws, "state"), "ok") && mount_recoveries(ws) >= n)
                        return ws;
                ck_assert_msg(
                        left_ms(deadline) > 0,
                        "workspace %s (%s) after %lld recoveries, want ok "
                        "after %lld",
                        jstr(ws, "state"), jstr(ws, "detail"), (long long)mount_recoveries(ws),
                        (long long)n);
                json_object_put(ws);
        }
}

START_TEST(test_agent_mounts_and_recovers) {
        json_object *ws, *m;
        pid_t first, second, third;
        char path[600], line[1024];
        const char *unit;
        FILE *f;

        install_driver_stand_in();
        ck_assert(!agent_harness_is_mounted(mnt));
        agent_start();

        /* Not mounted at start: the agent mounts it (runs azfilesfs: no systemd here), with the
         * credentials and cache directory of its configuration. */
        ws = wait_state("ok", NULL, WAIT_MS);
        m = json_object_object_get(ws, "mount");
        ck_assert_ptr_nonnull(m);
        ck_assert_str_eq(jstr(m, "mode"), "direct");
        unit = jstr(m, "unit");
        ck_assert_msg(
                strlen(unit) > 16 && streq(unit + strlen(unit) - 16, "-workspace.mount") &&
                        strstr(unit, "\\x2d"),
                "unit %s", unit); /* "tmp-test\x2dagent\x2dworkspace\x2dXXXXXX-workspace.mount" */
        ck_assert_int_eq(mount_recoveries(ws), 0);
        json_object_put(ws);
        (void)snprintf(path, sizeof(path), "%s/args", tmp);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
        (void)fclose(f);
        ck_assert_msg(strstr(line, "http://127.0.0.1:1/account/share"), "%s", line);
        ck_assert_msg(strstr(line, "credentials="), "%s", line);
        ck_assert_msg(strstr(line, "cache_dir="), "%s", line);
        first = stand_in_fs_pid();

        /* The FUSE daemon dies (kill -9): the mount is dead (ENOTCONN); the agent unmounts it and
         * mounts again at once. */
        ck_assert_int_eq(kill(first, SIGKILL), 0);
        json_object_put(wait_ok_after_recoveries(1));
        second = stand_in_fs_pid();
        ck_assert_int_ne(second, first);

        /* The next daemon hangs: hung within the bound; after RecoverAfter=2s the agent ends the
         * connection (which also frees its own stuck probe) and mounts again. */
        set_stand_in_mode("hang");
        ck_assert_int_eq(kill(second, SIGKILL), 0);
        json_object_put(wait_state("hung", NULL, HUNG_WITHIN_MS));
        set_stand_in_mode("ok");
        json_object_put(wait_ok_after_recoveries(3));
        third = stand_in_fs_pid();
        ck_assert_int_ne(third, second);
        for (int64_t deadline = deadline_in_ms(WAIT_MS); children_of(agent_pid) > 0;) {
                ck_assert_msg(left_ms(deadline) > 0, "the agent still has a child");
                json_object_put(workspace_status()); /* poll the real condition */
        }

        /* The agent leaves the mount in place when it stops; the stand-in's hang-fs (ours now:
         * we are the subreaper) unmounts on SIGTERM. */
        agent_stop();
        ck_assert_int_eq(kill(third, SIGTERM), 0);
        ck_assert_int_eq(waitpid(third, NULL, 0), third);
}
END_TEST

int main(int argc, char *argv[]) {
        Suite *s;
        TCase *tc;
        SRunner *sr;
        int failed, r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL HANG-FS\n", argv[0]);
                return EXIT_FAILURE;
        }
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        hang_fs_path = argv[3];
        r = agent_harness_enter_fuse_namespace();
        if (r != 0)
                return r;

        s = suite_create("agent-workspace");
        tc = tcase_create("workspace");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_ok_then_hung_then_recovered);
        tcase_add_test(tc, test_hung_at_start_and_stop_while_hung);
        tcase_add_test(tc, test_wrong_type_and_error);
        tcase_add_test(tc, test_agent_mounts_and_recovers);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
