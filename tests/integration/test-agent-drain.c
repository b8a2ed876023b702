/* SPDX-License-Identifier: MIT */
/* The real poolagentd draining against azfiles-emu's metadata service: a Terminate event is
 * approved after the drain steps (not-healthy and zero dirty bytes before the approval, approval
 * exactly once, also across many more polls); events for another VM are ignored; the metadata
 * service answering 503s, resets and truncated documents; an agent killed with SIGKILL while a
 * drain hook holds the exec-start step resumes at that step and approves exactly once, also
 * after another restart; poolctl drain / drain --cancel / flush. Every path is under a temporary
 * directory (nologin file, state, workspace). argv[1] poolagentd, argv[2] poolctl. No sleeps:
 * every wait is on the real condition, bounded. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "emu-harness.h"
#include "fs-harness.h"
#include "macro.h"
#include "time-util.h"

#define WAIT_MS 30000
#define OUTPUT_MAX (256 * 1024)
#define VM_NAME "emu-pool_0" /* the emulator's default compute.name */

static const char *poolagentd_path;
static const char *poolctl_path;
static const char *azfilesfs_path; /* argv[3], may be NULL: the Preempt test needs it */
static char path_env[1024];        /* PATH= with the driver's directory, for the agent */

static EmuInstance *emu;
static char *tmp;
static char conf_path[512], socket_path[512], log_path[512], nologin_path[512], mnt_path[512],
        state_dir[512], lock_path[512], runs_path[512], hook_path[512];
static pid_t agent_pid;

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t deadline_after_ms(int64_t ms) {
        return agent_harness_deadline(ms);
}

static bool before(int64_t deadline) {
        return now_monotonic_ns() < deadline;
}

/* A short pause between two looks at a condition that has no fd to wait on (bounded by the
 * caller's deadline); never used to order events. */
static void pause_ms(long ms) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
        (void)nanosleep(&ts, NULL);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        ck_assert_msg(fd >= 0, "open %s: %m", path);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        ck_assert_int_eq(close(fd), 0);
}

static char *read_file(const char *path) {
        FILE *f = fopen(path, "re");
        char *buf;
        size_t n;

        if (!f)
                return NULL;
        buf = calloc(1, OUTPUT_MAX + 1);
        ck_assert_ptr_nonnull(buf);
        n = fread(buf, 1, OUTPUT_MAX, f);
        buf[n] = '\0';
        (void)fclose(f);
        return buf;
}

static char workspace_extra[2048]; /* more [Workspace] keys */

static void write_conf(const char *drain_extra) {
        char text[8192];

        (void)snprintf(
                text, sizeof(text),
                "[Agent]\nControlSocket=%s\nStateDirectory=%s\nMetadataEndpoint=%s\n"
                "[Workspace]\nMountPoint=%s\n%s"
                "[Users]\nUIDRange=3999999000-3999999001\n[Health]\nListenAddress=127.0.0.1:0\n"
                "[Drain]\nNoLoginFile=%s\nNotifyUsers=no\nShutdownInhibitor=no\n%s\n",
                socket_path, state_dir, emu->imds_url, mnt_path, workspace_extra, nologin_path,
                drain_extra ? drain_extra : "");
        write_file(conf_path, text, 0644);
}

static pid_t spawn_agent(void) {
        return poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = conf_path,
                .config_dir = "/nonexistent",
                .log = log_path,
                .notify_socket = NULL,
                .env = (const char *const[]){path_env, NULL},
        });
}

/* Runs poolctl as root; returns its exit status with stdout (its stderr is dropped). */
static int poolctl(const char *const *args, char **ret_out) {
        return poolctl_run(
                &(const AgentPoolctl){
                        .poolctl = poolctl_path,
                        .socket = socket_path,
                        .capture_stderr = true,
                        .wait_ms = WAIT_MS,
                },
                args, ret_out, NULL, NULL);
}

/* poolctl --json status, or NULL while the agent does not answer yet. */
static json_object *status_json(void) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *result = NULL;

        if (poolctl((const char *const[]){"--json", "status", NULL}, &out) != 0)
                return NULL;
        o = json_tokener_parse(out);
        if (o && json_object_object_get_ex(o, "result", &result))
                json_object_get(result);
        json_object_put(o);
        return result;
}

static json_object *jget(json_object *o, const char *a, const char *b) {
        json_object *v = json_object_object_get(o, a);
        return b ? json_object_object_get(v, b) : v;
}

static json_object *drain_status(void) {
        json_object *s = status_json(), *d;

        if (!s)
                return NULL;
        d = json_object_get(jget(s, "drain", NULL));
        json_object_put(s);
        return d;
}

static const char *drain_state(json_object *d) {
        return json_object_get_string(jget(d, "state", NULL));
}

static json_object *step_of(json_object *d, const char *name) {
        json_object *steps = jget(d, "steps", NULL);

        for (size_t i = 0; i < json_object_array_length(steps); i++) {
                json_object *s = json_object_array_get_idx(steps, i);
                if (strcmp(json_object_get_string(jget(s, "step", NULL)), name) == 0)
                        return s;
        }
        ck_abort_msg("no step %s", name);
        return NULL;
}

static void start_agent(void) {
        int64_t deadline = deadline_after_ms(WAIT_MS);
        json_object *s;

        agent_pid = spawn_agent();
        while (!(s = status_json())) {
                ck_assert_msg(before(deadline), "poolagentd did not answer");
                pause_ms(20);
        }
        json_object_put(s);
}

static void kill9_agent(void) {
        int status;

        ck_assert_int_eq(kill(agent_pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(agent_pid, &status, 0), agent_pid);
        agent_pid = 0;
}

/* The emulator: inject an event, read approvals. */
static void inject(const char *body) {
        EmuHttpResult r = {};

        ck_assert_int_eq(
                emu_http(
                        emu, "POST", "imds:/__emu/scheduledevents",
                        (const char *const[]){"Content-Type: application/json", NULL}, body,
                        strlen(body), EMU_AUTH_MODE_NONE, &r),
                0);
        ck_assert_msg(r.status == 201, "inject: %ld %s", r.status, r.body);
        emu_http_result_clear(&r);
}

/* The approval record of id, or NULL; a new reference. */
static json_object *approval_of(const char *id) {
        EmuHttpResult r = {};
        json_object *o, *list, *found = NULL;

        ck_assert_int_eq(
                emu_http(
                        emu, "GET", "imds:/__emu/scheduledevents/approvals", NULL, NULL, 0,
                        EMU_AUTH_MODE_NONE, &r),
                0);
        ck_assert_int_eq(r.status, 200);
        o = json_tokener_parse(r.body);
        ck_assert_ptr_nonnull(o);
        list = jget(o, "Approvals", NULL);
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *a = json_object_array_get_idx(list, i);
                if (strcmp(json_object_get_string(jget(a, "EventId", NULL)), id) == 0)
                        found = json_object_get(a);
        }
        json_object_put(o);
        emu_http_result_clear(&r);
        return found;
}

static json_object *wait_approval(const char *id) {
        int64_t deadline = deadline_after_ms(WAIT_MS);
        json_object *a;

        while (!(a = approval_of(id))) {
                ck_assert_msg(before(deadline), "event %s not approved", id);
                pause_ms(20);
        }
        return a;
}

static json_object *wait_drain_state(const char *want) {
        int64_t deadline = deadline_after_ms(WAIT_MS);

        for (;;) {
                json_object *d = drain_status();

                if (d && drain_state(d) && strcmp(drain_state(d), want) == 0)
                        return d;
                json_object_put(d);
                ck_assert_msg(before(deadline), "drain never reached state %s", want);
                pause_ms(20);
        }
}

/* Waits until the agent polled the metadata service n more times. */
static void wait_polls(int n) {
        int64_t deadline = deadline_after_ms(WAIT_MS), start = -1;

        for (;;) {
                json_object *d = drain_status();
                int64_t polls = json_object_get_int64(jget(d, "scheduled_events", "polls"));

                json_object_put(d);
                if (start < 0)
                        start = polls;
                if (polls >= start + n)
                        return;
                ck_assert_msg(before(deadline), "agent stopped polling");
                pause_ms(20);
        }
}

static int count_lines(const char *path) {
        _cleanup_free_ char *t = read_file(path);
        int n = 0;

        for (char *p = t; p && *p; p++)
                n += *p == '\n';
        return n;
}

static void wait_lines(const char *path, int n) {
        int64_t deadline = deadline_after_ms(WAIT_MS);

        while (count_lines(path) < n) {
                ck_assert_msg(before(deadline), "%s never had %d lines", path, n);
                pause_ms(20);
        }
}

/* Checks the order the issue asks for against the emulator's record. */
static void assert_drained_before_approval(json_object *d, json_object *approval) {
        uint64_t approved_usec =
                (uint64_t)json_object_get_int64(jget(approval, "FirstApprovedMs", NULL)) * 1000U +
                999U;
        json_object *nh = step_of(d, "not-healthy"), *fl = step_of(d, "flush");

        ck_assert_int_eq(json_object_get_int64(jget(approval, "Count", NULL)), 1);
        ck_assert_str_eq(
                json_object_get_string(jget(approval, "StatusWhenApproved", NULL)), "Scheduled");
        ck_assert_str_eq(json_object_get_string(jget(nh, "result", NULL)), "done");
        ck_assert_str_eq(json_object_get_string(jget(fl, "result", NULL)), "done");
        ck_assert_str_eq(
                json_object_get_string(jget(step_of(d, "approve"), "result", NULL)), "done");
        ck_assert_int_eq(json_object_get_int64(jget(d, "dirty_bytes", NULL)), 0);
        ck_assert_uint_le(
                (uint64_t)json_object_get_int64(jget(nh, "end_usec", NULL)), approved_usec);
        ck_assert_uint_le(
                (uint64_t)json_object_get_int64(jget(fl, "end_usec", NULL)), approved_usec);
        ck_assert_uint_le(
                (uint64_t)json_object_get_int64(jget(nh, "end_usec", NULL)),
                (uint64_t)json_object_get_int64(jget(fl, "start_usec", NULL)));
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void setup_with(const char *const *emu_args) {
        tmp = agent_harness_mkdtemp("/tmp/test-agent-drain-XXXXXX", 0755);
        workspace_extra[0] = '\0';
        path_env[0] = '\0';
        (void)snprintf(conf_path, sizeof(conf_path), "%s/poolagent.conf", tmp);
        (void)snprintf(socket_path, sizeof(socket_path), "%s/run/control.sock", tmp);
        (void)snprintf(log_path, sizeof(log_path), "%s/agent.log", tmp);
        (void)snprintf(nologin_path, sizeof(nologin_path), "%s/nologin", tmp);
        (void)snprintf(mnt_path, sizeof(mnt_path), "%s/mnt", tmp);
        (void)snprintf(state_dir, sizeof(state_dir), "%s/state", tmp);
        (void)snprintf(lock_path, sizeof(lock_path), "%s/hook.lock", tmp);
        (void)snprintf(runs_path, sizeof(runs_path), "%s/hook.runs", tmp);
        (void)snprintf(hook_path, sizeof(hook_path), "%s/hook.sh", tmp);
        ck_assert_int_eq(mkdir(mnt_path, 0755), 0);
        ck_assert_int_eq(emu_instance_start(NULL, emu_args, &emu), 0);
}

static void setup(void) {
        setup_with(NULL);
}

static void setup_faults(void) {
        setup_with((const char *const[]){
                "--faults",
                "op=ImdsInstance:503,count=1;op=ImdsScheduledEvents:503,count=2;"
                "op=ImdsScheduledEvents:truncate,count=1;op=ImdsScheduledEvents:reset,count=1;"
                "op=ImdsApproveEvents:503,count=2",
                NULL});
}

static void teardown(void) {
        poolagentd_stop(&agent_pid, log_path, NULL);
        emu = emu_instance_free(emu);
        agent_harness_rm_rf(&tmp);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_terminate_approved_once) {
        _cleanup_free_ char *nologin = NULL, *report = NULL, *state = NULL;
        json_object *d, *a;
        char path[1024];

        write_conf(NULL);
        start_agent();
        inject("{\"type\":\"Terminate\",\"id\":\"11111111-aaaa-4bbb-8ccc-000000000001\","
               "\"not_before\":600}");
        a = wait_approval("11111111-aaaa-4bbb-8ccc-000000000001");
        d = wait_drain_state("drained");
        assert_drained_before_approval(d, a);
        ck_assert(json_object_get_boolean(jget(d, "draining", NULL)));
        ck_assert_str_eq(json_object_get_string(jget(d, "event_type", NULL)), "Terminate");
        ck_assert_str_eq(json_object_get_string(jget(d, "scheduled_events", "vm_name")), VM_NAME);
        ck_assert_str_eq(
                json_object_get_string(jget(step_of(d, "wait-jobs"), "note", NULL)),
                "no job queue");
        json_object_put(d);
        json_object_put(a);

        /* logins blocked, with a message */
        nologin = read_file(nologin_path);
        ck_assert_ptr_nonnull(nologin);
        ck_assert_ptr_nonnull(strstr(nologin, "Terminate"));
        /* the report on the share */
        (void)snprintf(
                path, sizeof(path),
                "%s/.poolagent/drain-reports/" VM_NAME "-11111111-aaaa-4bbb-8ccc-000000000001.json",
                mnt_path);
        report = read_file(path);
        ck_assert_msg(report != NULL, "no report at %s", path);
        ck_assert_ptr_nonnull(strstr(report, "\"bytes_flushed\""));
        /* the state file */
        (void)snprintf(path, sizeof(path), "%s/drain-state.json", state_dir);
        state = read_file(path);
        ck_assert_ptr_nonnull(state);
        ck_assert_ptr_nonnull(strstr(state, "\"approved\""));

        /* Many more polls see the (now Started) event: still approved once. */
        wait_polls(3);
        a = approval_of("11111111-aaaa-4bbb-8ccc-000000000001");
        ck_assert_int_eq(json_object_get_int64(jget(a, "Count", NULL)), 1);
        json_object_put(a);
}
END_TEST

START_TEST(test_other_vm_ignored) {
        json_object *d, *a;

        write_conf(NULL);
        start_agent();
        inject("{\"type\":\"Terminate\",\"id\":\"other-1\",\"resources\":[\"emu-pool_7\"],"
               "\"not_before\":600}");
        /* A Freeze for this VM, injected after it, is a marker: once it is approved the agent has
         * seen the document holding both. */
        inject("{\"type\":\"Freeze\",\"id\":\"mine-1\",\"not_before\":600}");
        a = wait_approval("mine-1");
        json_object_put(a);
        d = wait_drain_state("drained");
        ck_assert_str_eq(json_object_get_string(jget(d, "event_id", NULL)), "mine-1");
        /* Freeze policy: flush and approve, nothing else */
        ck_assert(!json_object_get_boolean(jget(d, "draining", NULL)));
        ck_assert_str_eq(
                json_object_get_string(jget(step_of(d, "block-logins"), "result", NULL)),
                "skipped");
        ck_assert_str_eq(json_object_get_string(jget(step_of(d, "flush"), "result", NULL)), "done");
        json_object_put(d);
        wait_polls(2);
        ck_assert_ptr_null(approval_of("other-1"));
        ck_assert_int_eq(access(nologin_path, F_OK), -1);
}
END_TEST

/* An event already Started when the agent first sees it (the platform did not wait) is drained
 * without an approval; VMName= names this VM instead of the instance metadata. */
START_TEST(test_started_event_and_vm_name) {
        json_object *d;

        write_conf("VMName=custom-vm-7");
        start_agent();
        inject("{\"type\":\"Reboot\",\"id\":\"started-1\",\"resources\":[\"CUSTOM-VM-7\"],"
               "\"not_before_epoch\":1000,\"started_seconds\":600}");
        d = wait_drain_state("drained");
        ck_assert_str_eq(json_object_get_string(jget(d, "event_id", NULL)), "started-1");
        ck_assert(json_object_get_boolean(jget(d, "event_started", NULL)));
        ck_assert_str_eq(
                json_object_get_string(jget(d, "scheduled_events", "vm_name")), "custom-vm-7");
        ck_assert_str_eq(json_object_get_string(jget(step_of(d, "flush"), "result", NULL)), "done");
        ck_assert_str_eq(
                json_object_get_string(jget(step_of(d, "approve"), "result", NULL)), "skipped");
        json_object_put(d);
        wait_polls(2);
        ck_assert_ptr_null(approval_of("started-1"));
}
END_TEST

START_TEST(test_metadata_faults) {
        json_object *d, *a;

        write_conf("PollInterval=200ms");
        start_agent();
        inject("{\"type\":\"Preempt\",\"id\":\"preempt-1\",\"not_before\":600}");
        a = wait_approval("preempt-1");
        d = wait_drain_state("drained");
        assert_drained_before_approval(d, a);
        ck_assert_int_gt(json_object_get_int64(jget(d, "scheduled_events", "errors")), 0);
        json_object_put(d);
        json_object_put(a);
        wait_polls(3);
        a = approval_of("preempt-1");
        ck_assert_int_eq(json_object_get_int64(jget(a, "Count", NULL)), 1);
        json_object_put(a);
}
END_TEST

START_TEST(test_restart_mid_drain) {
        char text[2048], extra[2200];
        json_object *d, *a;
        int lock;

        /* The hook waits for a shared lock that the test holds exclusively. Releasing it frees
         * every hook, the one the killed agent left behind and the new agent's, whether or not
         * it has reached its wait yet (a fifo freed only the readers that had opened it). */
        lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        ck_assert_int_ge(lock, 0);
        ck_assert_int_eq(flock(lock, LOCK_EX), 0);
        (void)snprintf(
                text, sizeof(text), "#!/bin/sh\necho run >> '%s'\nexec flock -s '%s' true\n",
                runs_path, lock_path);
        write_file(hook_path, text, 0755);
        (void)snprintf(extra, sizeof(extra), "ExecStart=/bin/sh %s\nHookTimeout=5min", hook_path);
        write_conf(extra);
        start_agent();
        inject("{\"type\":\"Terminate\",\"id\":\"restart-1\",\"not_before\":600}");

        /* The hook holds the exec-start step: kill the agent there. */
        wait_lines(runs_path, 1);
        d = drain_status();
        ck_assert_str_eq(json_object_get_string(jget(d, "step", NULL)), "exec-start");
        json_object_put(d);
        kill9_agent();
        ck_assert_ptr_null(approval_of("restart-1"));

        /* The new agent resumes at exec-start: the hook runs again. */
        start_agent();
        wait_lines(runs_path, 2);
        d = drain_status();
        ck_assert_str_eq(drain_state(d), "running");
        ck_assert_str_eq(json_object_get_string(jget(d, "step", NULL)), "exec-start");
        json_object_put(d);
        ck_assert_ptr_null(approval_of("restart-1"));

        /* Release the hook(s). */
        ck_assert_int_eq(close(lock), 0);

        a = wait_approval("restart-1");
        d = wait_drain_state("drained");
        assert_drained_before_approval(d, a);
        json_object_put(d);
        json_object_put(a);

        /* Once more: killed after the approval, the next agent never sends it again. */
        kill9_agent();
        start_agent();
        d = wait_drain_state("drained");
        json_object_put(d);
        wait_polls(3);
        a = approval_of("restart-1");
        ck_assert_int_eq(json_object_get_int64(jget(a, "Count", NULL)), 1);
        json_object_put(a);
        ck_assert_int_eq(count_lines(runs_path), 2);
}
END_TEST

START_TEST(test_manual_drain_cancel_flush) {
        _cleanup_free_ char *out = NULL;
        json_object *d;

        write_conf("ScheduledEvents=no");
        start_agent();
        ck_assert_int_eq(poolctl((const char *const[]){"flush", NULL}, &out), 0);
        ck_assert_msg(strstr(out, "0 dirty bytes"), "%s", out);
        free(out);
        out = NULL;

        ck_assert_int_eq(poolctl((const char *const[]){"drain", NULL}, &out), 0);
        d = wait_drain_state("drained");
        ck_assert_str_eq(json_object_get_string(jget(d, "source", NULL)), "manual");
        ck_assert_str_eq(
                json_object_get_string(jget(step_of(d, "approve"), "result", NULL)), "skipped");
        ck_assert(json_object_get_boolean(jget(d, "draining", NULL)));
        json_object_put(d);
        ck_assert_int_eq(access(nologin_path, F_OK), 0);

        free(out);
        out = NULL;
        ck_assert_int_eq(poolctl((const char *const[]){"drain", "--cancel", NULL}, &out), 0);
        d = wait_drain_state("idle");
        ck_assert(!json_object_get_boolean(jget(d, "draining", NULL)));
        json_object_put(d);
        ck_assert_int_eq(access(nologin_path, F_OK), -1);
}
END_TEST

static int64_t dirty_bytes(void) {
        char buf[32];
        ssize_t n = getxattr(mnt_path, "user.azfilesfs.dirty_bytes", buf, sizeof(buf) - 1);

        ck_assert_msg(n > 0, "getxattr dirty_bytes: %m");
        buf[n] = '\0';
        return strtoll(buf, NULL, 10);
}

/* Preempt with dirty data on the real azfilesfs (mounted by the agent from azfiles-emu, async
 * write-back with a long delay so that closed files stay dirty): the drain flushes them, the
 * approval comes after zero dirty bytes, and the bytes are on the share. */
START_TEST(test_preempt_dirty_azfilesfs) {
        _cleanup_free_ char *dir = NULL, *data = NULL;
        char cred_path[600], cred[512], *buf;
        size_t size = 0, n = 8U << 20;
        json_object *d, *a;
        int64_t deadline;
        int fd;

        if (!azfilesfs_path) {
                fprintf(stderr, "no azfilesfs given (argv[3]): Preempt on a real mount not run\n");
                return;
        }
        ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare: %m");
        ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0); /* the driver daemonizes */
        ck_assert_int_eq(fs_share_create(emu, "team"), 0);
        (void)snprintf(cred_path, sizeof(cred_path), "%s/storage.cred", tmp);
        (void)snprintf(cred, sizeof(cred), "[storage]\naccount_key = %s\n", EMU_TEST_KEY);
        write_file(cred_path, cred, 0600);
        (void)snprintf(
                workspace_extra, sizeof(workspace_extra),
                "Source=%s/team\nCredentials=%s\nCacheDirectory=%s/cache\nCheckInterval=1s\n"
                "MountOptions=writeback=async,async_delay=600\n",
                emu->files_url, cred_path, tmp);
        dir = strdup(azfilesfs_path);
        ck_assert_ptr_nonnull(dir);
        *strrchr(dir, '/') = '\0';
        (void)snprintf(path_env, sizeof(path_env), "PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin", dir);
        write_conf(NULL);
        start_agent();

        /* The agent mounts the share. */
        deadline = deadline_after_ms(WAIT_MS);
        for (;;) {
                json_object *s = status_json();
                const char *st =
                        json_object_get_string(jget(jget(s, "workspace", NULL), "state", NULL));
                bool ok = st && strcmp(st, "ok") == 0;

                json_object_put(s);
                if (ok)
                        break;
                ck_assert_msg(before(deadline), "the workspace never came up");
                pause_ms(50);
        }

        /* 8 MiB written and closed, not yet on the share. */
        buf = malloc(n);
        ck_assert_ptr_nonnull(buf);
        for (size_t i = 0; i < n; i++)
                buf[i] = (char)(i * 7 + i / 4096);
        (void)snprintf(cred_path, sizeof(cred_path), "%s/results.bin", mnt_path);
        fd = open(cred_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
        ck_assert_int_eq(close(fd), 0);
        ck_assert_int_ge(dirty_bytes(), (int64_t)n);

        inject("{\"type\":\"Preempt\",\"id\":\"preempt-dirty-1\"}");
        a = wait_approval("preempt-dirty-1");
        d = wait_drain_state("drained");
        assert_drained_before_approval(d, a);
        ck_assert_int_ge(json_object_get_int64(jget(d, "bytes_flushed", NULL)), (int64_t)n);
        json_object_put(d);
        json_object_put(a);
        ck_assert_int_eq(dirty_bytes(), 0);
        ck_assert_int_eq(fs_share_read(emu, "team", "results.bin", &data, &size), 0);
        ck_assert_uint_eq(size, n);
        ck_assert(memcmp(data, buf, n) == 0);
        free(buf);

        /* Stop the agent, unmount; the driver (ours: we are the subreaper) exits. */
        ck_assert_int_eq(kill(agent_pid, SIGTERM), 0);
        ck_assert_int_eq(waitpid(agent_pid, NULL, 0), agent_pid);
        agent_pid = 0;
        /* A workspace probe the agent killed on its way out may still be ending, inside a call
         * on the mount: ours now (the subreaper), reaped before the unmount it would make busy. */
        for (pid_t pid; (pid = agent_harness_child_named("poolagentd")) > 0;)
                ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        ck_assert_msg(umount2(mnt_path, 0) == 0, "umount %s: %m", mnt_path);
        for (pid_t pid; (pid = agent_harness_child_named("azfilesfs")) > 0;)
                ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("agent-drain");
        TCase *tc;

        tc = tcase_create("events");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_terminate_approved_once);
        tcase_add_test(tc, test_other_vm_ignored);
        tcase_add_test(tc, test_restart_mid_drain);
        tcase_add_test(tc, test_manual_drain_cancel_flush);
        tcase_add_test(tc, test_preempt_dirty_azfilesfs);
        tcase_add_test(tc, test_started_event_and_vm_name);
        suite_add_tcase(s, tc);

        tc = tcase_create("faults");
        tcase_add_checked_fixture(tc, setup_faults, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_metadata_faults);
        suite_add_tcase(s, tc);
        return s;
}

int main(int argc, char **argv) {
        SRunner *sr;
        int failed;

        if (argc < 3) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL\n", argv[0]);
                return EXIT_FAILURE;
        }
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        azfilesfs_path = argc > 3 ? argv[3] : NULL;
        sr = srunner_create(suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
