/* SPDX-License-Identifier: MIT */
/* The real poolagentd, started with a temporary configuration (every path under a temporary
 * directory) and a NOTIFY_SOCKET this test reads, driven with the real poolctl binary: status in
 * both formats, reload by SIGHUP and by command (a changed value, a broken file), read-only
 * access for an unprivileged peer, admin access through the admin group, and garbage, floods and
 * a client that never reads on the control socket. argv[1] is poolagentd, argv[2] poolctl. No
 * sleeps: every wait is on the real condition, bounded. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "macro.h"

#define WAIT_MS 20000

static const char *poolagentd_path;
static const char *poolctl_path;

static char *tmp;           /* temporary directory, mode 0755 so that nobody can reach the socket */
static char conf_path[512]; /* tmp/poolagent.conf */
static char dropin_dir[512];                /* tmp/conf.d */
static char socket_path[512];               /* tmp/run/control.sock */
static char log_path[512];                  /* the agent's stderr */
static AgentNotify notify = {.fd = -EBADF}; /* tmp/notify, the agent's NOTIFY_SOCKET */
static pid_t agent_pid;

/* ---- helpers -------------------------------------------------------------------------------- */

static void write_conf(const char *extra_agent, const char *extra) {
        char text[4096];

        (void)snprintf(
                text, sizeof(text),
                "[Agent]\nControlSocket=%s\nStateDirectory=%s/state\n"
                /* Never this machine's metadata service (a CI runner may be an Azure VM). */
                "MetadataEndpoint=http://127.0.0.1:9\n%s\n%s\n[Drain]\nScheduledEvents=no\n"
                /* Nor this machine's health port (tests run in parallel). */
                "[Health]\nListenAddress=127.0.0.1:0\n",
                socket_path, tmp, extra_agent ? extra_agent : "", extra ? extra : "");
        agent_harness_write_file(conf_path, text);
}

static void write_dropin(const char *name, const char *text) {
        char path[600];

        (void)snprintf(path, sizeof(path), "%s/%s", dropin_dir, name);
        agent_harness_write_file(path, text);
}

/* Reads notifications until one has the line want; bounded. Remembers STATUS=. */
static void wait_notify(const char *want) {
        agent_notify_wait(&notify, want);
}

static pid_t spawn_agent(const char *log) {
        return poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = conf_path,
                .config_dir = dropin_dir,
                .log = log,
                .notify_socket = notify.path,
        });
}

/* Runs poolctl (as nobody with the given group setup when setpriv_groups is not NULL) and returns
 * its exit status with stdout and stderr. */
static int
poolctl(const char *setpriv_regid,
        const char *setpriv_groups,
        const char *const *args,
        char **ret_out,
        char **ret_err) {
        char regid[64], groups[128];
        const char *setpriv[] = {"--reuid=65534", regid, groups, NULL};

        if (setpriv_regid) {
                (void)snprintf(regid, sizeof(regid), "--regid=%s", setpriv_regid);
                if (setpriv_groups)
                        (void)snprintf(groups, sizeof(groups), "--groups=%s", setpriv_groups);
                else
                        (void)snprintf(groups, sizeof(groups), "--clear-groups");
        }
        return poolctl_run(
                &(const AgentPoolctl){
                        .poolctl = poolctl_path,
                        .socket = socket_path,
                        .setpriv = setpriv_regid ? setpriv : NULL,
                        .capture_stderr = true,
                        .wait_ms = WAIT_MS,
                },
                args, ret_out, ret_err, NULL);
}

/* poolctl --json status as root, parsed. */
static json_object *status_json(void) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *result;

        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"--json", "status", NULL}, &out, NULL),
                0);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        ck_assert(json_object_get_boolean(json_object_object_get(o, "ok")));
        ck_assert(json_object_object_get_ex(o, "result", &result));
        json_object_get(result);
        json_object_put(o);
        return result;
}

static const char *jstr(json_object *o, const char *path1, const char *path2) {
        json_object *v = json_object_object_get(o, path1);
        if (path2)
                v = json_object_object_get(v, path2);
        return v ? json_object_get_string(v) : NULL;
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void setup(void) {
        char notify_path[600];

        tmp = agent_harness_mkdtemp("/tmp/test-agent-control-XXXXXX", 0755);
        (void)snprintf(conf_path, sizeof(conf_path), "%s/poolagent.conf", tmp);
        (void)snprintf(dropin_dir, sizeof(dropin_dir), "%s/conf.d", tmp);
        (void)snprintf(socket_path, sizeof(socket_path), "%s/run/control.sock", tmp);
        (void)snprintf(log_path, sizeof(log_path), "%s/agent.log", tmp);
        ck_assert_int_eq(mkdir(dropin_dir, 0755), 0);
        write_conf(NULL, NULL);

        (void)snprintf(notify_path, sizeof(notify_path), "%s/notify", tmp);
        agent_notify_open(&notify, notify_path, WAIT_MS);

        agent_pid = spawn_agent(log_path);
        wait_notify("READY=1");
}

static void teardown(void) {
        if (agent_pid > 0) {
                poolagentd_stop(&agent_pid, log_path, &notify);
                /* A clean stop removes the socket. */
                ck_assert_int_eq(access(socket_path, F_OK), -1);
        }
        agent_notify_close(&notify);
        agent_harness_rm_rf(&tmp);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_status_human_and_json) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *s;

        ck_assert_msg(strstr(notify.status, "Running"), "STATUS=%s", notify.status);

        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"status", NULL}, &out, &err), 0);
        ck_assert_msg(strstr(out, "poolagentd " PROJECT_VERSION ": running"), "%s", out);
        ck_assert_msg(strstr(out, conf_path), "%s", out);
        ck_assert_msg(strstr(out, "You: UID 0, admin"), "%s", out);
        ck_assert_msg(strstr(out, "Workspace: none configured"), "%s", out);
        ck_assert_str_eq(err, "");

        s = status_json();
        ck_assert_str_eq(jstr(s, "state", NULL), "running");
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(s, "pid")), agent_pid);
        ck_assert_str_eq(
                json_object_get_string(json_object_array_get_idx(
                        json_object_object_get(json_object_object_get(s, "config"), "files"), 0)),
                conf_path);
        ck_assert_str_eq(jstr(s, "control", "socket"), socket_path);
        ck_assert_str_eq(jstr(s, "config", "log_level"), "info");
        ck_assert(json_object_get_boolean(
                json_object_object_get(json_object_object_get(s, "peer"), "admin")));
        json_object_put(s);

        free(out);
        out = NULL;
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"version", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "poolagentd " PROJECT_VERSION), "%s", out);
}
END_TEST

START_TEST(test_usage_and_unreachable) {
        char *err = NULL;
        char missing[600];

        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"frobnicate", NULL}, NULL, &err), 2);
        ck_assert_ptr_nonnull(strstr(err, "unknown command"));
        free(err);
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"--bogus", "status", NULL}, NULL, NULL),
                2);
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){NULL}, NULL, NULL), 2);

        /* --socket given twice: the later one, a path where nobody listens, wins. */
        (void)snprintf(missing, sizeof(missing), "%s/nothing.sock", tmp);
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"--socket", missing, "status", NULL},
                        NULL, &err),
                3);
        ck_assert_msg(strstr(err, "cannot reach poolagentd"), "%s", err);
        free(err);
}
END_TEST

START_TEST(test_reload_sighup_changed_value) {
        json_object *s, *pending;

        write_conf("LogLevel=debug\n", NULL);
        write_dropin(
                "50-admins.conf",
                "[Agent]\nAdminGroup=nogroup\n[Workspace]\nStatTimeout=2s\nMountPoint=/srv/elsewhere\n");
        ck_assert_int_eq(kill(agent_pid, SIGHUP), 0);
        wait_notify("RELOADING=1");
        wait_notify("READY=1");

        s = status_json();
        ck_assert_str_eq(jstr(s, "config", "log_level"), "debug");
        ck_assert_str_eq(jstr(s, "control", "admin_group"), "nogroup");
        ck_assert(json_object_get_boolean(
                json_object_object_get(json_object_object_get(s, "last_reload"), "ok")));
        pending = json_object_object_get(json_object_object_get(s, "config"), "restart_pending");
        ck_assert_int_eq(json_object_array_length(pending), 1);
        ck_assert_str_eq(
                json_object_get_string(json_object_array_get_idx(pending, 0)),
                "Workspace.MountPoint");
        ck_assert_int_eq(
                json_object_array_length(
                        json_object_object_get(json_object_object_get(s, "config"), "files")),
                2);
        ck_assert_str_eq(jstr(s, "workspace", "mount_point"), "/srv/workspace"); /* still in use */
        json_object_put(s);
        ck_assert_msg(strstr(notify.status, "restart needed"), "STATUS=%s", notify.status);

        /* Back to the value in use: no restart needed any more. */
        write_dropin("50-admins.conf", "[Agent]\nAdminGroup=nogroup\n");
        ck_assert_int_eq(kill(agent_pid, SIGHUP), 0);
        wait_notify("RELOADING=1");
        wait_notify("READY=1");
        s = status_json();
        pending = json_object_object_get(json_object_object_get(s, "config"), "restart_pending");
        ck_assert_int_eq(json_object_array_length(pending), 0);
        json_object_put(s);
}
END_TEST

START_TEST(test_reload_broken_file_keeps_old) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *s;

        write_dropin("50-broken.conf", "[Agent]\nLogLevel=debug\n[Workspace]\nMountpoint=/x\n");
        ck_assert_int_eq(kill(agent_pid, SIGHUP), 0);
        wait_notify("RELOADING=1");
        wait_notify("READY=1");
        ck_assert_msg(strstr(notify.status, "last reload FAILED"), "STATUS=%s", notify.status);

        s = status_json();
        ck_assert_str_eq(jstr(s, "config", "log_level"), "info"); /* the old configuration */
        ck_assert(!json_object_get_boolean(
                json_object_object_get(json_object_object_get(s, "last_reload"), "ok")));
        ck_assert_msg(
                strstr(jstr(s, "last_reload", "error"),
                       "conf.d/50-broken.conf:4: unknown key 'Mountpoint' in [Workspace] (did you mean 'MountPoint'?)"),
                "%s", jstr(s, "last_reload", "error"));
        json_object_put(s);

        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"status", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "Reload: FAILED"), "%s", out);
        ck_assert_msg(strstr(out, "50-broken.conf:4"), "%s", out);

        /* The reload command reports the same error and exits 1. */
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"reload", NULL}, NULL, &err), 1);
        ck_assert_msg(strstr(err, "50-broken.conf:4: unknown key 'Mountpoint'"), "%s", err);

        /* Fixed: the reload command applies it and lists the change. */
        free(out);
        out = NULL;
        write_dropin("50-broken.conf", "[Agent]\nLogLevel=debug\n");
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"reload", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "1 setting changed"), "%s", out);
        ck_assert_msg(strstr(out, "Agent.LogLevel"), "%s", out);
        s = status_json();
        ck_assert_str_eq(jstr(s, "config", "log_level"), "debug");
        json_object_put(s);
}
END_TEST

START_TEST(test_unprivileged_peer) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *o;

        if (geteuid() != 0)
                return; /* setpriv needs root; the rest of the suite still runs */

        ck_assert_msg(
                poolctl("65534", NULL, (const char *const[]){"status", NULL}, &out, &err) == 0,
                "%s", err);
        free(err);
        err = NULL;
        ck_assert_msg(strstr(out, "You: UID 65534, read-only"), "%s", out);
        free(out);
        out = NULL;
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"--json", "status", NULL}, &out, NULL),
                0);
        o = json_tokener_parse(out);
        ck_assert_ptr_nonnull(o);
        ck_assert(!json_object_get_boolean(json_object_object_get(
                json_object_object_get(json_object_object_get(o, "result"), "peer"), "admin")));
        json_object_put(o);

        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"reload", NULL}, NULL, &err), 4);
        ck_assert_msg(strstr(err, "permission denied"), "%s", err);
        free(err);
        err = NULL;
        free(out);
        out = NULL;
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"--json", "reload", NULL}, &out, NULL),
                4);
        ck_assert_msg(strstr(out, "\"errno\":\"EPERM\""), "%s", out);

        /* AdminGroup= by primary group, and by supplementary group (SO_PEERGROUPS). */
        write_conf("AdminGroup=nogroup\n", NULL);
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"reload", NULL}, NULL, NULL), 0);
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"reload", NULL}, NULL, &err), 0);
        ck_assert_int_eq(
                poolctl("100", "65534", (const char *const[]){"reload", NULL}, NULL, NULL), 0);
        ck_assert_int_eq(
                poolctl("100", "100", (const char *const[]){"reload", NULL}, NULL, NULL), 4);
}
END_TEST

static void set_path(struct sockaddr_un *sa, const char *path) {
        ck_assert_uint_lt(strlen(path), sizeof(sa->sun_path));
        memcpy(sa->sun_path, path, strlen(path) + 1);
}

static int connect_raw(void) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        set_path(&sa, socket_path);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

/* Sends one message and returns the reply's "error" (or "ok" on success); bounded. */
static char *exchange(int fd, const void *msg, size_t len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[65536];
        json_object *o;
        char *ret;
        ssize_t n;

        ck_assert_int_eq(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
        ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
        n = recv(fd, buf, sizeof(buf) - 1, 0);
        ck_assert_int_gt(n, 0);
        buf[n] = '\0';
        o = json_tokener_parse(buf);
        ck_assert_msg(o != NULL, "reply not JSON: %s", buf);
        ret =
                strdup(json_object_get_boolean(json_object_object_get(o, "ok"))
                               ? "ok"
                               : json_object_get_string(json_object_object_get(o, "error")));
        json_object_put(o);
        return ret;
}

#define EXPECT_REPLY(fd, msg, len, want)                                                           \
        do {                                                                                       \
                char *_r = exchange(fd, msg, len);                                                 \
                ck_assert_msg(strstr(_r, want), "reply '%s', want '%s'", _r, want);                \
                free(_r);                                                                          \
        } while (0)

START_TEST(test_garbage_and_floods) {
        _cleanup_close_ int fd = connect_raw();
        static char big[64 * 1024 + 1], deep[4096]; /* big: CONTROL_REQUEST_MAX + 1 */
        int fds[40];
        unsigned refused = 0;
        int r;

        EXPECT_REPLY(fd, "not json", 8, "not a JSON object");
        EXPECT_REPLY(fd, "{\"command\":\"status\"", 19, "not a JSON object");
        EXPECT_REPLY(fd, "[1,2,3]", 7, "not a JSON object");
        EXPECT_REPLY(fd, "{\"command\":5}", 13, "no \"command\"");
        EXPECT_REPLY(fd, "{\"command\":\"nope\"}", 18, "unknown command");
        EXPECT_REPLY(fd, "{\"command\":\"status\"} trailing", 29, "not a JSON object");
        EXPECT_REPLY(fd, "\0\0\0\0", 4, "not a JSON object");
        memset(big, ' ', sizeof(big));
        EXPECT_REPLY(fd, big, sizeof(big), "request too large");
        memset(deep, '[', sizeof(deep));
        EXPECT_REPLY(fd, deep, sizeof(deep), "not a JSON object");
        EXPECT_REPLY(fd, "{\"command\":\"status\"}", 20, "ok");

        /* More connections than the cap: the extra ones are told so; the agent goes on. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = connect_raw();
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                struct pollfd p = {.fd = fds[i], .events = POLLIN};
                char buf[4096];
                ssize_t n;

                /* A refused connection may already be closed: its reply is still queued. */
                (void)send(fds[i], "{\"command\":\"version\"}", 21, MSG_NOSIGNAL);
                ck_assert_int_eq(poll(&p, 1, WAIT_MS), 1);
                n = recv(fds[i], buf, sizeof(buf) - 1, 0);
                ck_assert_int_gt(n, 0);
                buf[n] = '\0';
                if (strstr(buf, "too many connections"))
                        refused++;
                else
                        ck_assert_msg(strstr(buf, "\"ok\":true"), "%s", buf);
        }
        ck_assert_uint_ge(refused, 1);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                (void)close(fds[i]);

        /* A client that sends and never reads does not stall anyone else. */
        for (int i = 0; i < 100000; i++) {
                r = (int)send(fd, "{\"command\":\"status\"}", 20, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (r < 0)
                        break;
        }
        ck_assert_int_eq(r, -1);
        ck_assert_int_eq(errno, EAGAIN);
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"status", NULL}, NULL, NULL), 0);

        /* A stream socket cannot even connect (wrong type). */
        {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                _cleanup_close_ int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                set_path(&sa, socket_path);
                ck_assert_int_eq(connect(sfd, (struct sockaddr *)&sa, sizeof(sa)), -1);
        }
        ck_assert_int_eq(kill(agent_pid, 0), 0);
}
END_TEST

/* ---- jobs on a host without systemd -------------------------------------------------------- */

static json_object *poolctl_json(const char *regid, const char *const *args, int want_exit) {
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_object *o;
        int k = poolctl(regid, NULL, args, &out, &err);

        ck_assert_msg(
                k == want_exit, "poolctl %s: exit %d, want %d: %s", args[1], k, want_exit, err);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        return o;
}

static size_t n_jobs(json_object *reply) {
        json_object *jobs = json_object_object_get(json_object_object_get(reply, "result"), "jobs");

        ck_assert_ptr_nonnull(jobs);
        return json_object_array_length(jobs);
}

/* poolctl submit -- /bin/true fails (exit 1) with want in its messages. */
static void expect_submit_error(const char *want) {
        _cleanup_free_ char *err = NULL;

        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"submit", "--", "/bin/true", NULL}, NULL,
                        &err),
                1);
        ck_assert_msg(strstr(err, want), "%s", err);
}

/* PID 1 is not systemd here: submit is refused with EHOSTDOWN and says why; jobs, cancel, logs
 * and the rest of the agent work on; a request as large as a real environment gets through. */
START_TEST(test_jobs_without_systemd) {
        _cleanup_free_ char *out = NULL, *err = NULL, *big = NULL;
        _cleanup_close_ int fd = -EBADF;
        json_object *o, *s;
        size_t n;

        if (access("/run/systemd/system", F_OK) == 0)
                return; /* systemd runs here: the e2e test covers jobs */

        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"submit", "--", "/bin/true", NULL}, &out,
                        &err),
                1);
        ck_assert_msg(
                strstr(err, "cannot run jobs on this VM: systemd is not the init system"), "%s",
                err);
        o = poolctl_json(
                NULL, (const char *const[]){"--json", "submit", "--", "/bin/true", NULL}, 1);
        ck_assert_str_eq(jstr(o, "errno", NULL), "EHOSTDOWN");
        json_object_put(o);

        o = poolctl_json(NULL, (const char *const[]){"--json", "jobs", NULL}, 0);
        ck_assert_uint_eq(n_jobs(o), 0);
        ck_assert(!json_object_get_boolean(
                json_object_object_get(json_object_object_get(o, "result"), "available")));
        json_object_put(o);
        free(out);
        out = NULL;
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"jobs", NULL}, &out, NULL), 0);
        ck_assert_msg(strstr(out, "No jobs."), "%s", out);
        ck_assert_msg(
                strstr(out, "Jobs cannot run here: systemd is not the init system"), "%s", out);

        free(err);
        err = NULL;
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"cancel", "1", NULL}, NULL, &err), 1);
        ck_assert_msg(strstr(err, "there is no job 1"), "%s", err);
        free(err);
        err = NULL;
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"logs", "1", NULL}, NULL, &err), 1);
        ck_assert_msg(strstr(err, "there is no job 1"), "%s", err);
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"logs", "x", NULL}, NULL, NULL), 2);
        ck_assert_int_eq(poolctl(NULL, NULL, (const char *const[]){"submit", NULL}, NULL, NULL), 2);
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"--gpus", "1", "jobs", NULL}, NULL, NULL),
                2);

        /* The rest of the agent: status carries the jobs section. */
        s = status_json();
        ck_assert(!json_object_get_boolean(
                json_object_object_get(json_object_object_get(s, "jobs"), "available")));
        ck_assert_str_eq(jstr(s, "state", NULL), "running");
        json_object_put(s);

        /* Not admin-only: an unprivileged peer is told the same. */
        if (geteuid() == 0) {
                o = poolctl_json(
                        "65534", (const char *const[]){"--json", "submit", "--", "/bin/true", NULL},
                        1);
                ck_assert_str_eq(jstr(o, "errno", NULL), "EHOSTDOWN");
                json_object_put(o);
        }

        /* A variable of 4 KiB or more is left out with a warning; an environment over the
         * request cap is refused by poolctl with a message. */
        {
                char *value = malloc(20000), name[32];

                ck_assert_ptr_nonnull(value);
                memset(value, 'v', 19999);
                value[19999] = '\0';
                ck_assert_int_eq(setenv("POOLCTL_TEST_HUGE", value, 1), 0);
                expect_submit_error(
                        "not passing POOLCTL_TEST_HUGE to the job (longer than 4095 bytes)");
                expect_submit_error("cannot run jobs on this VM");
                (void)unsetenv("POOLCTL_TEST_HUGE");
                value[4000] = '\0';
                for (int i = 0; i < 20; i++) {
                        (void)snprintf(name, sizeof(name), "POOLCTL_TEST_%d", i);
                        ck_assert_int_eq(setenv(name, value, 1), 0);
                }
                expect_submit_error("the request is too large");
                for (int i = 0; i < 20; i++) {
                        (void)snprintf(name, sizeof(name), "POOLCTL_TEST_%d", i);
                        (void)unsetenv(name);
                }
                free(value);
        }

        /* A submit of about 60 KiB (a large environment) is read whole and answered. */
        fd = connect_raw();
        n = 60 * 1024;
        big = malloc(n + 1);
        ck_assert_ptr_nonnull(big);
        (void)snprintf(
                big, n + 1,
                "{\"command\":\"submit\",\"argv\":[\"/bin/true\"],\"cwd\":\"/\",\"env\":[\"X=");
        memset(big + strlen(big), 'x', n - strlen(big) - 3);
        memcpy(big + n - 3, "\"]}", 3);
        big[n] = '\0';
        EXPECT_REPLY(fd, big, n, "cannot run jobs on this VM");
}
END_TEST

/* The queue file of an earlier run: each user sees only its own jobs, root all of them; a queued
 * job is cancelled without systemd; an unreadable file is kept aside and the agent starts. */
START_TEST(test_jobs_file_and_peers) {
        char path[600], cmd[1400];
        _cleanup_free_ char *err = NULL;
        json_object *o;
        int status;

        if (geteuid() != 0)
                return; /* setpriv needs root */
        ck_assert_int_eq(kill(agent_pid, SIGTERM), 0);
        wait_notify("STOPPING=1");
        ck_assert_int_eq(waitpid(agent_pid, &status, 0), agent_pid);
        (void)snprintf(path, sizeof(path), "%s/state/jobs.json", tmp);
        agent_harness_write_file(
                path,
                "{\"version\":1,\"boot_id\":\"x\",\"next_id\":3,\"accepting\":true,\"jobs\":["
                "{\"id\":1,\"name\":\"root-job\",\"uid\":0,\"gid\":0,\"argv\":[\"sleep\",\"1\"],\"env\":[],"
                "\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"queued\",\"gpu_mask\":0,\"exit_status\":-1,"
                "\"submitted_usec\":1,\"started_usec\":0,\"ended_usec\":0},"
                "{\"id\":2,\"name\":\"nobody-job\",\"uid\":65534,\"gid\":65534,\"argv\":[\"true\"],\"env\":[],"
                "\"cwd\":\"/\",\"cpus\":1,\"gpus\":0,\"state\":\"finished\",\"gpu_mask\":0,\"exit_status\":0,"
                "\"submitted_usec\":2,\"started_usec\":3,\"ended_usec\":4}]}");
        agent_pid = spawn_agent(log_path);
        wait_notify("READY=1");

        o = poolctl_json(NULL, (const char *const[]){"--json", "jobs", NULL}, 0);
        ck_assert_uint_eq(n_jobs(o), 2);
        json_object_put(o);
        o = poolctl_json("65534", (const char *const[]){"--json", "jobs", NULL}, 0);
        ck_assert_uint_eq(n_jobs(o), 1);
        ck_assert_str_eq(
                json_object_get_string(json_object_object_get(
                        json_object_array_get_idx(
                                json_object_object_get(json_object_object_get(o, "result"), "jobs"),
                                0),
                        "name")),
                "nobody-job");
        json_object_put(o);
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"cancel", "1", NULL}, NULL, &err), 4);
        ck_assert_msg(strstr(err, "job 1 is not yours"), "%s", err);
        free(err);
        err = NULL;
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"logs", "1", NULL}, NULL, &err), 4);
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"logs", "2", NULL}, NULL, NULL), 0);
        free(err);
        err = NULL;
        ck_assert_int_eq(
                poolctl("65534", NULL, (const char *const[]){"cancel", "2", NULL}, NULL, &err), 1);
        ck_assert_msg(strstr(err, "job 2 has already ended"), "%s", err);
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"cancel", "1", NULL}, NULL, NULL), 0);
        (void)snprintf(
                cmd, sizeof(cmd),
                "grep -q '\"id\":1,\"name\":\"root-job\",[^}]*\"state\":\"cancelled\"' '%s'", path);
        ck_assert_msg(system(cmd) == 0, "job 1 not saved as cancelled");

        /* Garbage: kept aside, the agent starts with an empty queue. */
        ck_assert_int_eq(kill(agent_pid, SIGTERM), 0);
        wait_notify("STOPPING=1");
        ck_assert_int_eq(waitpid(agent_pid, &status, 0), agent_pid);
        agent_harness_write_file(path, "{\"version\":1,\"jobs\":[{]}");
        agent_pid = spawn_agent(log_path);
        wait_notify("READY=1");
        o = poolctl_json(NULL, (const char *const[]){"--json", "jobs", NULL}, 0);
        ck_assert_uint_eq(n_jobs(o), 0);
        json_object_put(o);
        (void)snprintf(cmd, sizeof(cmd), "ls '%s/state/' | grep -q '^jobs.json.bad-'", tmp);
        ck_assert_msg(system(cmd) == 0, "the unreadable queue file was not kept aside");
}
END_TEST

START_TEST(test_second_agent_refuses) {
        char log2[600];
        int status;
        pid_t pid;
        _cleanup_free_ char *text = NULL;
        FILE *f;

        (void)snprintf(log2, sizeof(log2), "%s/agent2.log", tmp);
        pid = spawn_agent(log2);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        text = calloc(1, 4096);
        f = fopen(log2, "re");
        ck_assert_ptr_nonnull(f);
        (void)fread(text, 1, 4095, f);
        (void)fclose(f);
        ck_assert_msg(strstr(text, "another poolagentd is running"), "%s", text);
        /* The first one still answers. */
        ck_assert_int_eq(
                poolctl(NULL, NULL, (const char *const[]){"version", NULL}, NULL, NULL), 0);
}
END_TEST

START_TEST(test_invalid_config_refuses_to_start) {
        char log2[600], conf2[600], cmd[1400];
        int status;
        pid_t pid;

        /* A separate configuration, so the running agent is not involved. */
        (void)snprintf(log2, sizeof(log2), "%s/agent3.log", tmp);
        (void)snprintf(conf2, sizeof(conf2), "%s/bad.conf", tmp);
        agent_harness_write_file(conf2, "[Agent]\nLogLevel=chatty\n");
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(log2, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                execl(poolagentd_path, poolagentd_path, "-c", conf2, "-d", "", (char *)NULL);
                _exit(127);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
        (void)snprintf(
                cmd, sizeof(cmd),
                "grep -q \"bad.conf:2: invalid value 'chatty' for key 'LogLevel' in \\[Agent\\]\" '%s'",
                log2);
        ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(int argc, char *argv[]) {
        Suite *s = suite_create("agent-control");
        TCase *tc = tcase_create("agent");
        SRunner *sr;
        int failed;

        if (argc != 3) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL\n", argv[0]);
                return EXIT_FAILURE;
        }
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        (void)signal(SIGPIPE, SIG_IGN);

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_status_human_and_json);
        tcase_add_test(tc, test_usage_and_unreachable);
        tcase_add_test(tc, test_reload_sighup_changed_value);
        tcase_add_test(tc, test_reload_broken_file_keeps_old);
        tcase_add_test(tc, test_unprivileged_peer);
        tcase_add_test(tc, test_garbage_and_floods);
        tcase_add_test(tc, test_jobs_without_systemd);
        tcase_add_test(tc, test_jobs_file_and_peers);
        tcase_add_test(tc, test_second_agent_refuses);
        tcase_add_test(tc, test_invalid_config_refuses_to_start);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
