/* SPDX-License-Identifier: MIT */
/* The health checks of the real poolagentd, read over its real HTTP endpoint and with the real
 * poolctl: disks are real tmpfs mounts of chosen sizes standing for /, /tmp and /mnt, filled past
 * each threshold and emptied again, and the verdicts must flip both ways only after the
 * configured number of consecutive checks (hysteresis, read from the streak the agent reports);
 * a workspace mount that never answers (hang-fs) turns unhealthy while /health keeps answering;
 * azfilesfs's figures (the stats xattr, served by hang-fs --stats) show up in /metrics; the
 * endpoint survives garbage, slow and many connections without its memory growing; promtool
 * accepts /metrics; required units are read from a fake systemd (tests/tools/fake-systemd1) on a
 * private dbus-daemon. Freeing space on a low disk: the scratch disk holding the cache of a real
 * azfilesfs (against azfiles-emu, $AZFILESFS and $AZFILES_EMU) gets its clean cache reclaimed,
 * never its dirty data; with TmpCleanupAge= the real systemd-tmpfiles removes /tmp's old files
 * only (not below another mount, not a link's target), and without it nothing at all.
 * argv: poolagentd poolctl hang-fs fake-systemd1.
 *
 * Runs in a private mount namespace (nothing is mounted on the machine) and needs root and
 * /dev/fuse (else 77). No sleeps: every wait is on the real condition with a deadline; no time is
 * asserted. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "fs-harness.h"
#include "macro.h"

#define WAIT_MS 30000
#define OUTPUT_MAX (512 * 1024)
#define UNHEALTHY_AFTER 2
#define HEALTHY_AFTER 3

static const char *poolagentd_path, *poolctl_path, *hang_fs_path, *fake_systemd1_path;
static const char *health_extra = ""; /* more of the [Health] section */
static pid_t bus_pid, fake_pid;

static char base[64]; /* every test's directory lies below it; main() removes it at the end */
static char *tmp;
static char conf_path[512], socket_path[512], log_path[512], ws[512], stats_path[512];
static char disk_root[512], disk_tmp[512], disk_scratch[512];
static pid_t agent_pid, fs_pid;
static EmuInstance *emu; /* the share and the azfilesfs mount of the reclaim test */
static FsMount *azfilesfs;
static AgentNotify notify = {.fd = -EBADF}; /* tmp/notify, the agent's NOTIFY_SOCKET */
static int http_port;

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t deadline_in_ms(int64_t ms) {
        return agent_harness_deadline(ms);
}

static int left_ms(int64_t deadline) {
        return (int)agent_harness_left_ms(deadline);
}

/* Writes size bytes of zeros to path (tmpfs: they take real pages): 0 or -errno (-EIO when a
 * write was short). */
static int try_fill(const char *dir, const char *name, size_t size) {
        static char block[1 << 16];
        char path[600];
        int fd, r = 0;

        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        for (size_t done = 0; r == 0 && done < size;) {
                size_t n = MIN(sizeof(block), size - done);
                ssize_t k = write(fd, block, n);
                r = k < 0 ? -errno : (size_t)k != n ? -EIO : 0;
                done += n;
        }
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

static void fill(const char *dir, const char *name, size_t size) {
        int r = try_fill(dir, name, size);
        ck_assert_msg(r == 0, "filling %s/%s: %s", dir, name, strerror(-r));
}

/* fill() with the agent stopped (SIGSTOP) until the file is whole, for a fill that starts a disk's
 * low-space steps: the first check after it sees all of it. Otherwise a check could land in the
 * middle: the walk would measure a file half written, or the cleanup would take the free space
 * before it while the fill still goes on, and report less than the test asserts. Only for a disk
 * whose verdict is "ok" (no walk or cleanup child running, the checks themselves are in-process).
 */
static void fill_whole(const char *dir, const char *name, size_t size) {
        int r;

        ck_assert_int_eq(kill(agent_pid, SIGSTOP), 0);
        r = try_fill(dir, name, size); /* no check may end the test with the agent stopped */
        ck_assert_int_eq(kill(agent_pid, SIGCONT), 0);
        ck_assert_msg(r == 0, "filling %s/%s: %s", dir, name, strerror(-r));
}

static void unfill(const char *dir, const char *name) {
        char path[600];

        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        ck_assert_int_eq(unlink(path), 0);
}

static void mount_tmpfs(const char *path, const char *options) {
        ck_assert_int_eq(mkdir(path, 0755), 0);
        ck_assert_msg(mount("tmpfs", path, "tmpfs", 0, options) == 0, "mount %s: %m", path);
}

/* Runs argv, returns its exit status and stdout (bounded wait). */
static int run(const char *const *argv, char **ret_out) {
        return agent_command_run(argv, false, WAIT_MS, ret_out, NULL, NULL);
}

static int poolctl(const char *verb, bool json, char **ret_out) {
        const char *argv[] = {poolctl_path,           "--socket",         socket_path,
                              json ? "--json" : verb, json ? verb : NULL, NULL};
        return run(argv, ret_out);
}

/* poolctl --json health: the result object; *ret_exit: poolctl's exit status. */
static json_object *health_result(int *ret_exit) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *r;
        int k = poolctl("health", true, &out);

        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "poolctl health: not JSON (exit %d): %s", k, out);
        r = json_object_get(json_object_object_get(o, "result"));
        json_object_put(o);
        ck_assert_ptr_nonnull(r);
        if (ret_exit)
                *ret_exit = k;
        return r;
}

static json_object *find_check(json_object *result, const char *name, const char *subject) {
        json_object *checks = json_object_object_get(result, "checks");

        for (size_t i = 0; checks && i < json_object_array_length(checks); i++) {
                json_object *c = json_object_array_get_idx(checks, i);
                if (streq(json_object_get_string(json_object_object_get(c, "name")), name) &&
                    streq(json_object_get_string(json_object_object_get(c, "subject")), subject))
                        return c;
        }
        return NULL;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        return v ? json_object_get_string(v) : "";
}

/* Polls until check (name, subject) reports verdict want; checks the hysteresis on the way: a
 * reported verdict that differs from what was reported before must come with a streak of at
 * least the configured count (the first result counts at once). Returns the last result. */
static json_object *wait_verdict(const char *name, const char *subject, const char *want) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        char prev[32] = "";

        for (;;) {
                json_object *r = health_result(NULL), *c = find_check(r, name, subject);
                const char *v = c ? jstr(c, "verdict") : "";

                if (c && prev[0] && !streq(prev, v)) {
                        bool worse = streq(v, "unhealthy") ||
                                     (streq(v, "warning") && streq(prev, "ok")) ||
                                     (streq(v, "unknown") && !streq(prev, "unhealthy"));
                        int64_t streak = json_object_get_int64(json_object_object_get(c, "streak"));
                        ck_assert_msg(
                                streq(prev, "unknown") ||
                                        streak >= (worse ? UNHEALTHY_AFTER : HEALTHY_AFTER),
                                "%s %s flipped %s -> %s after a streak of %lld", name, subject,
                                prev, v, (long long)streak);
                }
                if (c)
                        (void)snprintf(prev, sizeof(prev), "%s", v);
                if (c && streq(v, want))
                        return r;
                ck_assert_msg(
                        left_ms(deadline) > 0, "%s on %s is %s (%s), not %s", name, subject,
                        c ? v : "missing", c ? jstr(c, "message") : "", want);
                json_object_put(r);
        }
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

static int http_connect(void) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ck_assert_int_ge(fd, 0);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %m");
        return fd;
}

/* Sends request as it is and reads the reply until the server closes (bounded). Returns the
 * status code (0: closed without one); *ret_body (may be NULL) the body. */
static int http_raw(const char *request, size_t len, char **ret_body) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        _cleanup_free_ char *buf = calloc(1, OUTPUT_MAX + 1);
        size_t got = 0;
        int fd = http_connect(), status = 0;
        char *body;

        ck_assert_ptr_nonnull(buf);
        ck_assert_int_eq(send(fd, request, len, MSG_NOSIGNAL), (ssize_t)len);
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                ssize_t n;

                ck_assert_msg(poll(&p, 1, left_ms(deadline)) > 0, "no HTTP reply in time");
                n = recv(fd, buf + got, OUTPUT_MAX - got, 0);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        (void)close(fd);
        (void)sscanf(buf, "HTTP/1.%*d %d", &status);
        body = strstr(buf, "\r\n\r\n");
        if (ret_body)
                *ret_body = strdup(body ? body + 4 : "");
        return status;
}

static int http_get_method(const char *method) {
        char req[256];
        int n = snprintf(
                req, sizeof(req), "%s /health HTTP/1.0\r\nContent-Length: 0\r\n\r\n", method);

        return http_raw(req, (size_t)n, NULL);
}

static int http_get(const char *path, char **ret_body) {
        char req[256];
        int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);

        return http_raw(req, (size_t)n, ret_body);
}

/* ---- the agent ------------------------------------------------------------------------------ */

/* Starts the agent with the test's configuration; workspace (may be NULL) is more of the
 * [Workspace] section. */
static void agent_start(const char *workspace) {
        char text[4096];
        json_object *r;

        (void)snprintf(
                text, sizeof(text),
                "[Agent]\nControlSocket=%s\nStateDirectory=%s/state\n"
                /* No metadata service: never this machine's (a CI runner may be an Azure VM). */
                "MetadataEndpoint=\n"
                "[Workspace]\nMountPoint=%s\nCacheDirectory=%s/cache\n%s"
                "[Users]\nUIDRange=4000000000-4000000001\n"
                "[Health]\nListenAddress=127.0.0.1:0\nCheckInterval=100ms\n"
                "UnhealthyAfter=%d\nHealthyAfter=%d\nTopConsumers=5\n"
                "RootPath=%s\nRootMinFree=16M\nRootWarnFree=32M\n"
                "TmpPath=%s\nTmpMinFree=8M\nTmpWarnFree=12M\n"
                "ScratchPath=%s\nScratchMinFree=1M\nScratchWarnFree=2M\n"
                "MinFreeInodes=5%%\nWarnFreeInodes=10%%\n%s",
                socket_path, tmp, ws, tmp, workspace ? workspace : "", UNHEALTHY_AFTER,
                HEALTHY_AFTER, disk_root, disk_tmp, disk_scratch, health_extra);
        agent_harness_write_file(conf_path, text);

        agent_pid = poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = conf_path,
                .config_dir = "",
                .log = log_path,
                .notify_socket = notify.path,
                .small_asan_quarantine = true,
        });
        /* READY=1 on our notification socket (bounded). */
        agent_notify_wait(&notify, "READY=1");
        r = health_result(NULL);
        ck_assert_int_eq(sscanf(jstr(r, "http"), "127.0.0.1:%d", &http_port), 1);
        ck_assert_int_gt(http_port, 0);
        json_object_put(r);
}

static void agent_stop(void) {
        poolagentd_stop(&agent_pid, log_path, NULL);
}

static void fs_start(const char *mode, bool stats) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        char buf[64] = "";
        size_t len = 0;
        int out[2];

        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        fs_pid = fork();
        ck_assert_int_ge(fs_pid, 0);
        if (fs_pid == 0) {
                char mode_arg[64], stats_arg[600];

                (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                (void)snprintf(mode_arg, sizeof(mode_arg), "--mode=%s", mode);
                (void)snprintf(stats_arg, sizeof(stats_arg), "--stats=%s", stats_path);
                execl(hang_fs_path, hang_fs_path, mode_arg,
                      stats ? stats_arg : "--stats=/nonexistent", "-o",
                      "subtype=azfilesfs,fsname=hang-fs", ws, (char *)NULL);
                _exit(127);
        }
        (void)close(out[1]);
        while (!memmem(buf, len, "ready\n", 6)) {
                struct pollfd p = {.fd = out[0], .events = POLLIN};
                ssize_t n;

                ck_assert_msg(poll(&p, 1, left_ms(deadline)) > 0, "hang-fs not ready");
                n = read(out[0], buf + len, sizeof(buf) - 1 - len);
                ck_assert_msg(n > 0, "hang-fs exited");
                len += (size_t)n;
        }
        (void)close(out[0]);
}

static void fs_stop(void) {
        if (fs_pid > 0) {
                int pidfd = (int)syscall(SYS_pidfd_open, fs_pid, 0);
                struct pollfd p = {.fd = pidfd, .events = POLLIN};

                (void)kill(fs_pid, SIGTERM);
                if (pidfd < 0 || poll(&p, 1, WAIT_MS) <= 0)
                        (void)kill(fs_pid, SIGKILL);
                (void)safe_close(pidfd);
                (void)waitpid(fs_pid, NULL, 0);
                fs_pid = 0;
        }
        while (agent_harness_is_mounted(ws))
                if (umount2(ws, MNT_DETACH) < 0)
                        break;
}

static long vm_rss_kib(pid_t pid) {
        char path[64], line[256];
        long kib = -1;
        FILE *f;

        (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
                        break;
        (void)fclose(f);
        return kib;
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void setup(void) {
        char template[600];

        ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        (void)snprintf(template, sizeof(template), "%s/t-XXXXXX", base);
        tmp = agent_harness_mkdtemp(template, 0);
        (void)snprintf(conf_path, sizeof(conf_path), "%s/poolagent.conf", tmp);
        (void)snprintf(socket_path, sizeof(socket_path), "%s/control.sock", tmp);
        (void)snprintf(log_path, sizeof(log_path), "%s/agent.log", tmp);
        (void)snprintf(ws, sizeof(ws), "%s/workspace", tmp);
        (void)snprintf(stats_path, sizeof(stats_path), "%s/stats.json", tmp);
        (void)snprintf(disk_root, sizeof(disk_root), "%s/root", tmp);
        (void)snprintf(disk_tmp, sizeof(disk_tmp), "%s/tmp", tmp);
        (void)snprintf(disk_scratch, sizeof(disk_scratch), "%s/scratch", tmp);
        ck_assert_int_eq(mkdir(ws, 0755), 0);
        mount_tmpfs(disk_root, "size=64m");
        mount_tmpfs(disk_tmp, "size=32m");
        mount_tmpfs(disk_scratch, "size=16m,nr_inodes=400");
        (void)snprintf(template, sizeof(template), "%s/notify", tmp);
        agent_notify_open(&notify, template, WAIT_MS);
}

static void stop_child(pid_t *pid) {
        if (*pid > 0) {
                (void)kill(*pid, SIGTERM);
                (void)waitpid(*pid, NULL, 0);
                *pid = 0;
        }
}

static void teardown(void) {
        fs_stop();
        agent_stop();
        azfilesfs = fs_mount_free(azfilesfs);
        emu = emu_instance_free(emu);
        stop_child(&fake_pid);
        stop_child(&bus_pid);
        health_extra = "";
        agent_notify_close(&notify);
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
                ;
        (void)umount2(disk_root, MNT_DETACH);
        (void)umount2(disk_tmp, MNT_DETACH); /* and what is mounted below it */
        (void)umount2(disk_scratch, MNT_DETACH);
        agent_harness_rm_rf(&tmp);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void expect_health(int want_status, const char *want_state) {
        _cleanup_free_ char *body = NULL;
        char expected[128];

        (void)snprintf(
                expected, sizeof(expected), "{\"ApplicationHealthState\":\"%s\"}", want_state);
        ck_assert_int_eq(http_get("/health", &body), want_status);
        ck_assert_msg(strstr(body, expected), "%s", body);
        free(body);
        body = NULL;
        ck_assert_int_eq(http_get("/health/rich", &body), 200); /* rich states: always 200 */
        ck_assert_msg(strstr(body, expected), "%s", body);
}

START_TEST(test_disks_flip_both_ways) {
        _cleanup_free_ char *out = NULL, *metrics = NULL, *status = NULL;
        json_object *r, *c;
        int k;

        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "ok"));
        expect_health(200, "Healthy");
        ck_assert_int_eq(poolctl("health", false, &out), 0);
        ck_assert_msg(strstr(out, "disk_free_bytes"), "%s", out);

        /* / below its warning threshold (32M): a warning, still healthy; the walk names the
         * directory that holds the space. */
        {
                char dir[600];
                (void)snprintf(dir, sizeof(dir), "%s/bigdir", disk_root);
                ck_assert_int_eq(mkdir(dir, 0755), 0);
                fill_whole(dir, "fill1", 40u << 20); /* 24M left */
        }
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "warning"));
        expect_health(200, "Healthy");
        for (int64_t deadline = deadline_in_ms(WAIT_MS);;) {
                json_object *disks, *d = NULL, *top;
                r = health_result(NULL);
                disks = json_object_object_get(r, "disks");
                for (size_t i = 0; disks && i < json_object_array_length(disks); i++)
                        if (streq(jstr(json_object_array_get_idx(disks, i), "path"), disk_root))
                                d = json_object_array_get_idx(disks, i);
                ck_assert_ptr_nonnull(d);
                top = json_object_array_get_idx(json_object_object_get(d, "consumers"), 0);
                if (top) {
                        ck_assert_msg(
                                strstr(jstr(top, "path"), "/bigdir"), "%s", jstr(top, "path"));
                        ck_assert_int_ge(
                                json_object_get_int64(json_object_object_get(top, "bytes")),
                                40 << 20);
                        json_object_put(r);
                        break;
                }
                json_object_put(r);
                ck_assert_msg(
                        left_ms(deadline) > 0, "no largest-directory report for %s", disk_root);
        }

        /* Below 16M: unhealthy, /health 503, poolctl health exits 1, metrics say 2. */
        {
                char dir[600];
                (void)snprintf(dir, sizeof(dir), "%s/bigdir", disk_root);
                fill(dir, "fill2", 12u << 20); /* 12M left */
        }
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "unhealthy"));
        expect_health(503, "Unhealthy");
        r = health_result(&k);
        ck_assert_int_eq(k, 1);
        ck_assert(!json_object_get_boolean(json_object_object_get(r, "healthy")));
        c = find_check(r, "disk_free_bytes", disk_root);
        ck_assert_int_eq(
                json_object_get_int64(json_object_object_get(c, "threshold_unhealthy")), 16 << 20);
        json_object_put(r);
        free(out);
        out = NULL;
        ck_assert_int_eq(poolctl("health", false, &out), 1);
        ck_assert_int_eq(http_get("/metrics", &metrics), 200);
        {
                char want[700];
                (void)snprintf(
                        want, sizeof(want),
                        "poolagent_health_check_status{source=\"disk\",check=\"disk_free_bytes\",subject=\"%s\"} 2\n",
                        disk_root);
                ck_assert_msg(strstr(metrics, want), "%s", metrics);
        }
        ck_assert_int_eq(http_get("/status", &status), 200);
        ck_assert_msg(
                strstr(status, "\"verdict\":\"unhealthy\"") ||
                        strstr(status, "\"verdict\": \"unhealthy\""),
                "%s", status);

        /* Space back: healthy again, only after HealthyAfter= good checks (wait_verdict checks). */
        {
                char dir[600];
                (void)snprintf(dir, sizeof(dir), "%s/bigdir", disk_root);
                unfill(dir, "fill1");
                unfill(dir, "fill2");
        }
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "ok"));
        expect_health(200, "Healthy");

        /* /tmp the same way, straight to unhealthy and back. */
        fill(disk_tmp, "fill", 26u << 20); /* 6M left */
        json_object_put(wait_verdict("disk_free_bytes", disk_tmp, "unhealthy"));
        expect_health(503, "Unhealthy");
        unfill(disk_tmp, "fill");
        json_object_put(wait_verdict("disk_free_bytes", disk_tmp, "ok"));

        /* The scratch disk runs out of inodes (400): unhealthy below 5% free. */
        for (int i = 0; i < 390; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "f%d", i);
                fill(disk_scratch, name, 0);
        }
        json_object_put(wait_verdict("disk_free_inodes_ratio", disk_scratch, "unhealthy"));
        for (int i = 0; i < 390; i++) {
                char name[32];
                (void)snprintf(name, sizeof(name), "f%d", i);
                unfill(disk_scratch, name);
        }
        json_object_put(wait_verdict("disk_free_inodes_ratio", disk_scratch, "ok"));
        expect_health(200, "Healthy");
        free(out);
        out = NULL;
        ck_assert_int_eq(poolctl("health", true, &out), 0);
}
END_TEST

START_TEST(test_hung_workspace) {
        char cred[600], workspace[1024];
        int64_t deadline;

        /* First a mount that answers, with azfilesfs's figures. */
        agent_harness_write_file(
                stats_path, "{\"dirty_bytes\":12345,\"dirty_files\":2,\"cache_bytes\":99,"
                            "\"requests_total\":10,\"requests_failed\":1,\"last_error\":null}");
        (void)snprintf(cred, sizeof(cred), "%s/credentials", tmp);
        agent_harness_write_file(cred, "[storage]\naccount_key=unused\n");
        (void)snprintf(
                workspace, sizeof(workspace),
                "Source=http://127.0.0.1:1/account/share\nCredentials=%s\n"
                "StatTimeout=300ms\nCheckInterval=1s\n",
                cred);
        fs_start("ok", true);
        agent_start(workspace);

        json_object_put(wait_verdict("workspace_mount", ws, "ok"));
        {
                json_object *r = wait_verdict("workspace_dirty_bytes", ws, "ok"), *c;
                _cleanup_free_ char *metrics = NULL;
                char want[700];

                c = find_check(r, "workspace_dirty_bytes", ws);
                ck_assert_int_eq(json_object_get_int64(json_object_object_get(c, "value")), 12345);
                json_object_put(r);
                ck_assert_int_eq(http_get("/metrics", &metrics), 200);
                (void)snprintf(
                        want, sizeof(want),
                        "poolagent_workspace_dirty_bytes{subject=\"%s\"} 12345\n", ws);
                ck_assert_msg(strstr(metrics, want), "%s", metrics);
        }
        /* More failed requests: a warning. */
        agent_harness_write_file(
                stats_path,
                "{\"dirty_bytes\":0,\"dirty_files\":0,\"cache_bytes\":99,"
                "\"requests_total\":20,\"requests_failed\":5,\"last_error\":\"503 ServerBusy\"}");
        json_object_put(wait_verdict("workspace_failed_requests", ws, "warning"));
        expect_health(200, "Healthy");
        fs_stop();

        /* A mount without the figures: unknown, not a fault. */
        fs_start("ok", false);
        json_object_put(wait_verdict("workspace_dirty_bytes", ws, "unknown"));
        fs_stop();

        /* A mount that never answers: unhealthy within the bound; every /health answers on the
         * way (http_get() fails the test if one does not answer before its deadline). */
        fs_start("hang", false);
        for (deadline = deadline_in_ms(WAIT_MS);;) {
                _cleanup_free_ char *body = NULL;
                json_object *r;
                int status = http_get("/health", &body);

                ck_assert(status == 200 || status == 503);
                r = health_result(NULL);
                /* Unhealthy already while nothing was mounted: wait for the hung verdict. */
                if (streq(jstr(find_check(r, "workspace_mount", ws), "verdict"), "unhealthy") &&
                    streq(jstr(find_check(r, "workspace_mount", ws), "signal"), "hung")) {
                        ck_assert_msg(
                                strstr(jstr(find_check(r, "workspace_mount", ws), "message"),
                                       "hung"),
                                "%s", jstr(find_check(r, "workspace_mount", ws), "message"));
                        json_object_put(r);
                        break;
                }
                ck_assert_msg(
                        left_ms(deadline) > 0, "hung workspace not unhealthy: %s",
                        jstr(find_check(r, "workspace_mount", ws), "message"));
                json_object_put(r);
        }
        expect_health(503, "Unhealthy");
        fs_stop();
}
END_TEST

START_TEST(test_http_hostile) {
        static const char *const garbage[] = {
                "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS hello */
                "GET\r\n\r\n",
                "GET /health HTTP/9.9\r\n\r\n",
                "BREW /health HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /../../etc/passwd HTTP/1.0\r\n\r\n",
                "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                "\r\n\r\n\r\n",
        };
        _cleanup_free_ char *big = NULL, *body = NULL;
        struct rlimit rl;
        long rss_before, rss_after;
        int *fds;
        size_t n_fds = 0;

        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "ok"));
        ck_assert_int_eq(http_get_method("POST"), 405);
        ck_assert_int_eq(http_get("/nope", NULL), 404);
        ck_assert_int_eq(http_raw("HEAD /health HTTP/1.0\r\n\r\n", 25, &body), 200);
        ck_assert_str_eq(body, "");
        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                int s = http_raw(garbage[i], strlen(garbage[i]), NULL);
                ck_assert_msg(s == 0 || (s >= 400 && s < 600), "garbage %zu answered %d", i, s);
        }
        /* A header far beyond the per-connection memory. */
        big = malloc(200 * 1024);
        ck_assert_ptr_nonnull(big);
        memcpy(big, "GET /health HTTP/1.1\r\nX: ", 25);
        memset(big + 25, 'a', 200 * 1024 - 30);
        memcpy(big + 200 * 1024 - 5, "\r\n\r\n", 5);
        {
                int s;
                /* The server may close while we still send: a reset is fine too. */
                int fd = http_connect();
                (void)send(fd, big, 200 * 1024 - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)close(fd);
                s = http_get("/health", NULL);
                ck_assert_int_eq(s, 200);
        }

        /* Slowloris: half a request and then nothing; the agent closes it by itself (its
         * per-connection timeout), well within our bound. */
        {
                int fd = http_connect();
                struct pollfd p = {.fd = fd, .events = POLLIN};
                char c;

                ck_assert_int_eq(send(fd, "GET /health HTTP/1.1\r\nHo", 25, MSG_NOSIGNAL), 25);
                ck_assert_msg(poll(&p, 1, WAIT_MS) > 0, "a stalled request was never closed");
                ck_assert_int_le(recv(fd, &c, 1, 0), 0);
                (void)close(fd);
        }

        rss_before = vm_rss_kib(agent_pid);
        /* Many connections at once, some sending half a request and nothing more (slowloris):
         * the agent stays up, answers again once they are gone, and its memory stays bounded. */
        ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        fds = calloc(3000, sizeof(int));
        ck_assert_ptr_nonnull(fds);
        for (int round = 0; round < 3; round++) {
                for (; n_fds < 2000 && n_fds < rl.rlim_cur - 64; n_fds++) {
                        struct sockaddr_in sa = {
                                .sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
                        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

                        ck_assert_int_ge(fd, 0);
                        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                        (void)connect(fd, (struct sockaddr *)&sa, sizeof(sa));
                        if (n_fds % 2 == 0)
                                (void)send(fd, "GET /health HTTP/1.1\r\nHost:", 27, MSG_NOSIGNAL);
                        fds[n_fds] = fd;
                }
                for (size_t i = 0; i < n_fds; i++)
                        (void)close(fds[i]);
                n_fds = 0;
                /* Once they are closed the agent answers again (it may take the closes a moment
                 * to be seen: retry on a refused or dropped connection, bounded). */
                for (int64_t deadline = deadline_in_ms(WAIT_MS);;) {
                        int s = http_get("/health", NULL);
                        if (s == 200)
                                break;
                        ck_assert_msg(
                                left_ms(deadline) > 0, "no answer after the connection storm");
                }
        }
        free(fds);
        for (int i = 0; i < 2000; i++)
                ck_assert_int_eq(http_get(i % 2 ? "/metrics" : "/status", NULL), 200);
        rss_after = vm_rss_kib(agent_pid);
        ck_assert_msg(
                rss_after < rss_before + 32 * 1024, "VmRSS grew from %ld to %ld KiB", rss_before,
                rss_after);
        ck_assert_int_eq(waitpid(agent_pid, NULL, WNOHANG), 0);
}
END_TEST

/* Starts argv with stdout on a pipe and returns once its first line contains want (bounded);
 * *ret_line gets that line. */
static pid_t
start_and_wait_line(const char *const *argv, const char *want, char *ret_line, size_t size) {
        int64_t deadline = deadline_in_ms(WAIT_MS);
        char buf[1024] = "";
        size_t len = 0;
        int out[2];
        pid_t pid;

        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (dup2(out[1], STDOUT_FILENO) < 0)
                        _exit(127);
                execv(argv[0], (char *const *)argv);
                _exit(127);
        }
        (void)close(out[1]);
        while (!memchr(buf, '\n', len)) {
                struct pollfd p = {.fd = out[0], .events = POLLIN};
                ssize_t n;

                ck_assert_msg(poll(&p, 1, left_ms(deadline)) > 0, "%s: no output", argv[0]);
                n = read(out[0], buf + len, sizeof(buf) - 1 - len);
                ck_assert_msg(n > 0, "%s exited", argv[0]);
                len += (size_t)n;
        }
        (void)close(out[0]);
        buf[strcspn(buf, "\n")] = '\0';
        ck_assert_msg(strstr(buf, want), "%s said %s", argv[0], buf);
        if (ret_line)
                (void)snprintf(ret_line, size, "%s", buf);
        return pid;
}

START_TEST(test_required_units) {
        char path[1024], text[2048], address[600], units[512];

        if (access("/usr/bin/dbus-daemon", X_OK) < 0) {
                fprintf(stderr,
                        "dbus-daemon (Debian package dbus) is missing: skipping the unit check test; CI installs it\n");
                return;
        }
        /* A bus of our own standing for the system bus, and a fake systemd on it. */
        (void)snprintf(path, sizeof(path), "%s/bus.conf", tmp);
        (void)snprintf(
                text, sizeof(text),
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" "
                "\"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                "<busconfig><listen>unix:path=%s/bus</listen><auth>EXTERNAL</auth>"
                "<policy context=\"default\"><allow user=\"*\"/><allow send_destination=\"*\"/>"
                "<allow receive_sender=\"*\"/><allow own=\"*\"/>"
                "</policy></busconfig>\n",
                tmp);
        agent_harness_write_file(path, text);
        {
                char config[1100];
                const char *argv[] = {
                        "/usr/bin/dbus-daemon", config, "--nofork", "--print-address=1", NULL};

                (void)snprintf(config, sizeof(config), "--config-file=%s", path);
                bus_pid = start_and_wait_line(argv, "unix:", address, sizeof(address));
        }
        ck_assert_int_eq(setenv("DBUS_SYSTEM_BUS_ADDRESS", address, 1), 0);
        (void)snprintf(units, sizeof(units), "%s/units", tmp);
        ck_assert_int_eq(mkdir(units, 0755), 0);
        (void)snprintf(path, sizeof(path), "%s/ssh.service", units);
        agent_harness_write_file(path, "active\n");
        (void)snprintf(path, sizeof(path), "%s/jupyterhub.service", units);
        agent_harness_write_file(path, "failed\n");
        {
                const char *argv[] = {fake_systemd1_path, units, NULL};
                fake_pid = start_and_wait_line(argv, "ready", NULL, 0);
        }

        health_extra = "RequiredUnits=ssh.service jupyterhub.service\n";
        agent_start(NULL);
        json_object_put(wait_verdict("unit_active", "ssh.service", "ok"));
        json_object_put(wait_verdict("unit_active", "jupyterhub.service", "unhealthy"));
        expect_health(503, "Unhealthy");
        agent_harness_write_file(path, "active\n");
        json_object_put(wait_verdict("unit_active", "jupyterhub.service", "ok"));
        expect_health(200, "Healthy");

        /* systemd gone from the bus: unknown, not a fault. */
        stop_child(&fake_pid);
        json_object_put(wait_verdict("unit_active", "ssh.service", "unknown"));
        expect_health(200, "Healthy");
        ck_assert_int_eq(unsetenv("DBUS_SYSTEM_BUS_ADDRESS"), 0);
}
END_TEST

START_TEST(test_promtool) {
        _cleanup_free_ char *metrics = NULL, *out = NULL;
        char path[600];
        const char *argv[] = {"/usr/bin/promtool", "check", "metrics", NULL};

        if (access("/usr/bin/promtool", X_OK) < 0) {
                fprintf(stderr,
                        "promtool (Debian package prometheus) is missing: skipping the /metrics lint; CI installs it\n");
                return;
        }
        fs_start("ok", true);
        agent_harness_write_file(
                stats_path, "{\"dirty_bytes\":1,\"requests_total\":1,\"requests_failed\":0}");
        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_root, "ok"));
        ck_assert_int_eq(http_get("/metrics", &metrics), 200);
        (void)snprintf(path, sizeof(path), "%s/metrics.txt", tmp);
        agent_harness_write_file(path, metrics);
        {
                /* promtool reads the metrics on stdin */
                int in = open(path, O_RDONLY | O_CLOEXEC),
                    saved = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 100);
                int k;

                ck_assert_int_ge(in, 0);
                ck_assert_int_ge(dup2(in, STDIN_FILENO), 0);
                k = run(argv, &out);
                ck_assert_int_ge(dup2(saved, STDIN_FILENO), 0);
                (void)close(in);
                (void)close(saved);
                ck_assert_msg(
                        k == 0, "promtool check metrics failed (%d): %s\n%s", k, out, metrics);
        }
}
END_TEST

/* ---- freeing space -------------------------------------------------------------------------- */

static json_object *disk_of(json_object *r, const char *path) {
        json_object *disks = json_object_object_get(r, "disks");

        for (size_t i = 0; disks && i < json_object_array_length(disks); i++)
                if (streq(jstr(json_object_array_get_idx(disks, i), "path"), path))
                        return json_object_array_get_idx(disks, i);
        return NULL;
}

static int64_t jint(json_object *o, const char *key) {
        json_object *v = o ? json_object_object_get(o, key) : NULL;
        return v ? json_object_get_int64(v) : INT64_MIN;
}

/* Polls poolctl health until the object key of path's disk entry has done its step (started,
 * not running); returns that object's health result. */
static json_object *wait_step(const char *path, const char *key) {
        int64_t deadline = deadline_in_ms(WAIT_MS);

        for (;;) {
                json_object *r = health_result(NULL);
                json_object *c = json_object_object_get(disk_of(r, path), key);

                if (c && jint(c, "started_usec") > 0 &&
                    !json_object_get_boolean(json_object_object_get(c, "running")))
                        return r;
                json_object_put(r);
                ck_assert_msg(left_ms(deadline) > 0, "no %s of %s", key, path);
        }
}

static bool exists(const char *dir, const char *name) {
        char path[700];
        struct stat st;

        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        return lstat(path, &st) == 0;
}

static uint64_t avail_bytes(const char *path) {
        struct statvfs st;

        ck_assert_int_eq(statvfs(path, &st), 0);
        return (uint64_t)st.f_bavail * st.f_frsize;
}

static bool log_has(const char *needle) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        FILE *f = fopen(log_path, "re");
        bool found;

        ck_assert_ptr_nonnull(f);
        found = getdelim(&text, &size, '\0', f) > 0 && strstr(text, needle);
        (void)fclose(f);
        return found;
}

/* The scratch disk holds the workspace cache (CacheDirectory=): a user's file takes it below its
 * warning threshold, the agent asks azfilesfs to reclaim, the clean cache goes and the verdict
 * recovers with no walk needed; the dirty data stays dirty and then reaches the share intact, the
 * user's file is untouched, the clean file reads back from the share. */
START_TEST(test_reclaim_cache) {
        const uint64_t mib = UINT64_C(1) << 20;
        _cleanup_free_ char *clean = NULL, *dirty = NULL, *data = NULL, *want = NULL;
        json_object *r, *c;
        uint64_t v = 0, user;
        size_t size = 0;

        /* ScratchPath= is the cache directory, a 40M tmpfs (warning below 2M) */
        (void)umount2(disk_scratch, MNT_DETACH);
        (void)snprintf(disk_scratch, sizeof(disk_scratch), "%s/cache", tmp);
        mount_tmpfs(disk_scratch, "size=40m");
        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(fs_share_create(emu, "reclaim"), 0);
        ck_assert_int_eq(
                fs_mount_new(
                        emu, "reclaim", disk_scratch, "writeback=async,async_delay=3600",
                        &azfilesfs),
                0);
        (void)snprintf(ws, sizeof(ws), "%s", azfilesfs->mountpoint);
        clean = fs_mount_path(azfilesfs, "clean");
        dirty = fs_mount_path(azfilesfs, "dirty");
        ck_assert_int_eq(fs_write_pattern(clean, 1, 24 * mib, mib), 0);
        ck_assert_int_eq(fs_flush(azfilesfs, 60), 0);
        ck_assert_int_eq(fs_write_pattern(dirty, 2, 4 * mib, mib), 0);
        ck_assert_int_eq(fs_dirty_bytes(azfilesfs, &v), 0);
        ck_assert_uint_eq(v, 4 * mib);
        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_scratch, "ok"));

        /* 1.5M left */
        user = (avail_bytes(disk_scratch) - 3 * mib / 2) & ~(uint64_t)0xffff;
        fill(disk_scratch, "userdata", user);
        r = wait_step(disk_scratch, "reclaim");
        c = json_object_object_get(disk_of(r, disk_scratch), "reclaim");
        ck_assert_int_eq(jint(c, "error"), 0);
        ck_assert_int_ge(jint(c, "asked_bytes"), mib / 2);
        ck_assert_int_ge(jint(c, "freed_bytes"), 24 * mib);
        json_object_put(r);
        r = wait_verdict("disk_free_bytes", disk_scratch, "ok");
        /* enough was freed: no walk */
        ck_assert_int_eq(jint(disk_of(r, disk_scratch), "walked_usec"), 0);
        json_object_put(r);
        ck_assert(log_has("reclaimed"));
        {
                _cleanup_free_ char *out = NULL;
                (void)poolctl("health", false, &out);
                ck_assert_msg(strstr(out, "of clean workspace cache on"), "%s", out);
        }

        ck_assert(exists(disk_scratch, "userdata"));
        ck_assert_int_eq(fs_dirty_bytes(azfilesfs, &v), 0);
        ck_assert_uint_eq(v, 4 * mib);
        ck_assert_int_eq(fs_check_pattern(dirty, 2, 4 * mib), 0);
        ck_assert_int_eq(fs_flush(azfilesfs, 60), 0);
        ck_assert_int_eq(fs_share_read(emu, "reclaim", "dirty", &data, &size), 0);
        want = malloc(4 * mib);
        ck_assert_ptr_nonnull(want);
        fs_pattern_fill(2, 0, want, 4 * mib);
        ck_assert_uint_eq(size, 4 * mib);
        ck_assert(memcmp(data, want, size) == 0);
        ck_assert_int_eq(fs_check_pattern(clean, 1, 24 * mib), 0);
}
END_TEST

/* The workspace mount hangs while the disk with its cache is low: the reclaim is given up at its
 * deadline, /health answers all the while, and the walk still reports the largest directories. */
START_TEST(test_reclaim_hung_mount) {
        json_object *r = NULL;

        (void)umount2(disk_scratch, MNT_DETACH);
        (void)snprintf(disk_scratch, sizeof(disk_scratch), "%s/cache", tmp);
        mount_tmpfs(disk_scratch, "size=8m");
        fs_start("hang", false);
        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_scratch, "ok"));
        fill(disk_scratch, "userdata", (avail_bytes(disk_scratch) - (1u << 20)) & ~0xffffu);
        for (int64_t deadline = deadline_in_ms(WAIT_MS);;) {
                json_object *d, *c;
                int status = http_get("/health", NULL); /* answers at once all the while */

                ck_assert(status == 200 || status == 503);
                r = health_result(NULL);
                d = disk_of(r, disk_scratch);
                c = json_object_object_get(d, "reclaim");
                if (c && jint(c, "error") == -ETIMEDOUT && jint(d, "walked_usec") > 0)
                        break;
                json_object_put(r);
                ck_assert_msg(left_ms(deadline) > 0, "no timed-out reclaim and walk");
        }
        ck_assert_int_gt(
                json_object_array_length(
                        json_object_object_get(disk_of(r, disk_scratch), "consumers")),
                0);
        json_object_put(r);
        ck_assert(log_has("Failed to reclaim workspace cache"));
}
END_TEST

/* Both times of dir/name days back. */
static void age(const char *dir, const char *name, int days) {
        struct timespec t[2] = {{.tv_sec = time(NULL) - days * 86400}};
        char path[700];

        t[1] = t[0];
        (void)snprintf(path, sizeof(path), "%s/%s", dir, name);
        ck_assert_int_eq(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

/* /tmp: 16M 10 days old, 1M new, an old and a new file below, another file system mounted below
 * with an old file, an old link to an old file outside. 15M free of 32M. */
static void tmp_content(char outside[static 600]) {
        char dir[600], link[700], target[700];

        fill(disk_tmp, "old-big", 16u << 20);
        age(disk_tmp, "old-big", 10);
        fill(disk_tmp, "new-small", 1u << 20);
        (void)snprintf(dir, sizeof(dir), "%s/sub", disk_tmp);
        ck_assert_int_eq(mkdir(dir, 0755), 0);
        fill(dir, "old", 4096);
        age(dir, "old", 10);
        fill(dir, "new", 4096);
        (void)snprintf(dir, sizeof(dir), "%s/nested", disk_tmp);
        mount_tmpfs(dir, "size=1m");
        fill(dir, "old", 4096);
        age(dir, "old", 10);
        (void)snprintf(outside, 600, "%s/outside", tmp);
        ck_assert_int_eq(mkdir(outside, 0755), 0);
        fill(outside, "old", 4096);
        age(outside, "old", 10);
        (void)snprintf(link, sizeof(link), "%s/link", disk_tmp);
        (void)snprintf(target, sizeof(target), "%s/old", outside);
        ck_assert_int_eq(symlink(target, link), 0);
        age(disk_tmp, "link", 10);
}

START_TEST(test_tmp_cleanup) {
        char outside[600];
        json_object *r, *c;

        tmp_content(outside);
        health_extra = "TmpCleanupAge=amAM:1d\n";
        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_tmp, "ok"));

        /* 8M more: 7M free, unhealthy (below 8M) */
        fill_whole(disk_tmp, "new-big", 8u << 20);
        r = wait_step(disk_tmp, "tmp_cleanup");
        c = json_object_object_get(disk_of(r, disk_tmp), "tmp_cleanup");
        ck_assert_str_eq(jstr(c, "age"), "amAM:86400s");
        ck_assert_int_eq(jint(c, "status"), 0);
        ck_assert_int_ge(jint(c, "freed_bytes"), 16 << 20);
        json_object_put(r);
        json_object_put(wait_verdict("disk_free_bytes", disk_tmp, "ok"));
        ck_assert(log_has("systemd-tmpfiles"));
        {
                _cleanup_free_ char *out = NULL;
                (void)poolctl("health", false, &out);
                ck_assert_msg(strstr(out, "Removed files older than TmpCleanupAge="), "%s", out);
        }

        ck_assert(!exists(disk_tmp, "old-big"));
        ck_assert(!exists(disk_tmp, "sub/old"));
        ck_assert(!exists(disk_tmp, "link")); /* old, in /tmp: the link goes... */
        ck_assert(exists(outside, "old"));    /* ...never what it points at */
        ck_assert(exists(disk_tmp, "new-small"));
        ck_assert(exists(disk_tmp, "new-big"));
        ck_assert(exists(disk_tmp, "sub/new"));
        ck_assert(exists(disk_tmp, "nested/old")); /* another file system: not entered */
}
END_TEST

/* Without TmpCleanupAge= nothing is deleted: the walk (the last step) reports, the old files stay.
 */
START_TEST(test_tmp_cleanup_off) {
        char outside[600];
        json_object *r;

        tmp_content(outside);
        agent_start(NULL);
        json_object_put(wait_verdict("disk_free_bytes", disk_tmp, "ok"));
        fill(disk_tmp, "new-big", 8u << 20);
        for (int64_t deadline = deadline_in_ms(WAIT_MS);;) {
                r = health_result(NULL);
                if (jint(disk_of(r, disk_tmp), "walked_usec") > 0)
                        break;
                json_object_put(r);
                ck_assert_msg(left_ms(deadline) > 0, "no walk of %s", disk_tmp);
        }
        ck_assert_ptr_null(json_object_object_get(disk_of(r, disk_tmp), "tmp_cleanup"));
        json_object_put(r);
        ck_assert(exists(disk_tmp, "old-big"));
        ck_assert(exists(disk_tmp, "sub/old"));
        ck_assert(!log_has("systemd-tmpfiles"));
}
END_TEST

/* A failed check ends its test process at once, without the fixture's teardown: whatever it
 * mounted (in our namespace) and wrote is removed here. */
static void cleanup_base(void) {
        char line[4096], cmd[128];
        bool again = true;

        while (again) {
                FILE *f = fopen("/proc/self/mountinfo", "re");

                again = false;
                while (f && fgets(line, sizeof(line), f)) {
                        char mp[4096];

                        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 &&
                            strncmp(mp, base, strlen(base)) == 0 && umount2(mp, MNT_DETACH) == 0)
                                again = true;
                }
                if (f)
                        (void)fclose(f);
        }
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
        (void)system(cmd);
}

int main(int argc, char *argv[]) {
        Suite *s;
        TCase *tc;
        SRunner *sr;
        int failed, r;

        if (argc < 5) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL HANG-FS FAKE-SYSTEMD1\n", argv[0]);
                return EXIT_FAILURE;
        }
        fake_systemd1_path = argv[4];
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        hang_fs_path = argv[3];
        r = agent_harness_enter_fuse_namespace();
        if (r != 0)
                return r;

        (void)snprintf(base, sizeof(base), "/tmp/test-agent-health-XXXXXX");
        if (!mkdtemp(base)) {
                fprintf(stderr, "mkdtemp: %m\n");
                return EXIT_FAILURE;
        }
        s = suite_create("agent-health");
        tc = tcase_create("health");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 240);
        tcase_add_test(tc, test_disks_flip_both_ways);
        tcase_add_test(tc, test_hung_workspace);
        tcase_add_test(tc, test_http_hostile);
        tcase_add_test(tc, test_required_units);
        tcase_add_test(tc, test_promtool);
        tcase_add_test(tc, test_reclaim_cache);
        tcase_add_test(tc, test_reclaim_hung_mount);
        tcase_add_test(tc, test_tmp_cleanup);
        tcase_add_test(tc, test_tmp_cleanup_off);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        cleanup_base();
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
