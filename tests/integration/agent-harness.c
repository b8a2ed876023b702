/* SPDX-License-Identifier: MIT */
#include "agent-harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "macro.h"
#include "time-util.h"

#define ARGV_MAX 64

int64_t agent_harness_deadline(int64_t ms) {
        return now_monotonic_ns() + ms * 1000000;
}

int64_t agent_harness_left_ms(int64_t deadline) {
        int64_t l = (deadline - now_monotonic_ns()) / 1000000;
        return l < 0 ? 0 : l;
}

char *agent_harness_mkdtemp(const char *template_path, mode_t mode) {
        char *dir = strdup(template_path);

        ck_assert_ptr_nonnull(dir);
        ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %m", template_path);
        if (mode != 0)
                ck_assert_int_eq(chmod(dir, mode), 0);
        return dir;
}

void agent_harness_rm_rf(char **dir) {
        char cmd[600];

        if (!*dir)
                return;
        (void)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", *dir);
        ck_assert_int_eq(system(cmd), 0);
        free(*dir);
        *dir = NULL;
}

void agent_harness_write_file(const char *path, const char *text) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t n = strlen(text);

        ck_assert_msg(fd >= 0, "open %s: %m", path);
        ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
        ck_assert_int_eq(close(fd), 0);
}

/* ---- the agent's notifications -------------------------------------------------------------- */

void agent_notify_open(AgentNotify *n, const char *path, int64_t wait_ms) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};

        *n = (AgentNotify){.fd = -EBADF, .wait_ms = wait_ms};
        ck_assert_uint_lt(strlen(path), sizeof(n->path));
        (void)snprintf(n->path, sizeof(n->path), "%s", path);
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(n->fd, 0);
        (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        ck_assert_msg(bind(n->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind %s: %m", path);
}

void agent_notify_close(AgentNotify *n) {
        n->fd = safe_close(n->fd);
}

/* Reads notifications until a line is want (exact_line) or the last STATUS= contains want. */
static void notify_wait(AgentNotify *n, const char *want, bool exact_line) {
        int64_t deadline = agent_harness_deadline(n->wait_ms);

        if (!exact_line && strstr(n->status, want))
                return;
        for (;;) {
                struct pollfd p = {.fd = n->fd, .events = POLLIN};
                char buf[4096];
                bool found = false;
                ssize_t k;

                ck_assert_msg(
                        poll(&p, 1, (int)agent_harness_left_ms(deadline)) > 0,
                        "no '%s' from poolagentd within %lld ms (last STATUS=%s)", want,
                        (long long)n->wait_ms, n->status);
                k = recv(n->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
                if (k < 0 && errno == EAGAIN)
                        continue;
                ck_assert_int_gt(k, 0);
                buf[k] = '\0';
                for (char *line = buf, *end; line && *line; line = end ? end + 1 : NULL) {
                        end = strchr(line, '\n');
                        if (end)
                                *end = '\0';
                        if (strncmp(line, "STATUS=", 7) == 0)
                                (void)snprintf(n->status, sizeof(n->status), "%s", line + 7);
                        if (exact_line ? streq(line, want)
                                       : strncmp(line, "STATUS=", 7) == 0 && strstr(line, want))
                                found = true;
                }
                if (found)
                        return;
        }
}

void agent_notify_wait(AgentNotify *n, const char *line) {
        notify_wait(n, line, true);
}

void agent_notify_wait_status(AgentNotify *n, const char *part) {
        notify_wait(n, part, false);
}

/* ---- the agent ------------------------------------------------------------------------------ */

pid_t poolagentd_spawn(const AgentSpawn *s) {
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

                /* Never outlive a test that failed before its teardown. */
                (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (fd < 0 || dup2(fd, STDERR_FILENO) < 0)
                        _exit(127);
                if (s->notify_socket ? setenv("NOTIFY_SOCKET", s->notify_socket, 1) < 0
                                     : unsetenv("NOTIFY_SOCKET") < 0)
                        _exit(127);
                for (size_t i = 0; s->env && s->env[i]; i++)
                        if (s->env[i][0] && putenv((char *)s->env[i]) != 0)
                                _exit(127);
                /* Under AddressSanitizer freed memory is held in a quarantine (256 MiB by
                 * default) and counts in VmRSS: keep it small so that a memory bound measures the
                 * agent, not the sanitizer. */
                if (s->small_asan_quarantine && getenv("ASAN_OPTIONS")) {
                        static char asan[1024];
                        (void)snprintf(
                                asan, sizeof(asan), "ASAN_OPTIONS=%s:quarantine_size_mb=1",
                                getenv("ASAN_OPTIONS"));
                        (void)putenv(asan);
                }
                execl(s->poolagentd, s->poolagentd, "--config", s->config, "--config-dir",
                      s->config_dir, (char *)NULL);
                _exit(127);
        }
        return pid;
}

void poolagentd_stop(pid_t *pid, const char *log, AgentNotify *stopping) {
        int status;

        if (*pid <= 0)
                return;
        ck_assert_int_eq(kill(*pid, SIGTERM), 0);
        if (stopping)
                agent_notify_wait(stopping, "STOPPING=1");
        ck_assert_int_eq(waitpid(*pid, &status, 0), *pid);
        *pid = 0;
        if (log && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
                char cmd[600];

                (void)snprintf(cmd, sizeof(cmd), "cat '%s' >&2", log);
                (void)system(cmd);
        }
        ck_assert_msg(
                WIFEXITED(status) && WEXITSTATUS(status) == 0, "poolagentd exited with status 0x%x",
                status);
}

/* ---- commands ------------------------------------------------------------------------------- */

int agent_command_run(
        const char *const *argv,
        bool capture_stderr,
        int64_t wait_ms,
        char **ret_out,
        char **ret_err,
        int64_t *ret_ms) {
        int64_t start = now_monotonic_ns(), deadline = agent_harness_deadline(wait_ms);
        int fds[2] = {-EBADF, -EBADF}, out[2], err[2] = {-EBADF, -EBADF};
        char *bufs[2];
        size_t lens[2] = {0, 0};
        int open_fds, status;
        pid_t pid;

        ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
        if (capture_stderr)
                ck_assert_int_eq(pipe2(err, O_CLOEXEC), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                if (dup2(out[1], STDOUT_FILENO) < 0 ||
                    (capture_stderr && dup2(err[1], STDERR_FILENO) < 0))
                        _exit(127);
                execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        (void)close(out[1]);
        fds[0] = out[0];
        if (capture_stderr) {
                (void)close(err[1]);
                fds[1] = err[0];
        }
        open_fds = capture_stderr ? 2 : 1;
        bufs[0] = calloc(1, AGENT_HARNESS_OUTPUT_MAX + 1);
        bufs[1] = calloc(1, AGENT_HARNESS_OUTPUT_MAX + 1);
        ck_assert(bufs[0] && bufs[1]);
        while (open_fds > 0) {
                struct pollfd p[2] = {
                        {.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};

                ck_assert_msg(
                        poll(p, 2, (int)agent_harness_left_ms(deadline)) > 0,
                        "%s did not finish within %lld ms", argv[0], (long long)wait_ms);
                for (int i = 0; i < 2; i++) {
                        ssize_t n;

                        if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        n = read(fds[i], bufs[i] + lens[i], AGENT_HARNESS_OUTPUT_MAX - lens[i]);
                        if (n <= 0) {
                                fds[i] = safe_close(fds[i]);
                                open_fds--;
                        } else
                                lens[i] += (size_t)n;
                }
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status), "%s ended with status 0x%x", argv[0], status);
        if (ret_ms)
                *ret_ms = (now_monotonic_ns() - start) / 1000000;
        if (ret_out)
                *ret_out = bufs[0];
        else
                free(bufs[0]);
        if (ret_err)
                *ret_err = bufs[1];
        else
                free(bufs[1]);
        return WEXITSTATUS(status);
}

int poolctl_run(
        const AgentPoolctl *c,
        const char *const *args,
        char **ret_out,
        char **ret_err,
        int64_t *ret_ms) {
        const char *argv[ARGV_MAX];
        size_t n = 0;

        if (c->setpriv) {
                argv[n++] = "setpriv";
                for (size_t i = 0; c->setpriv[i]; i++) {
                        ck_assert_uint_lt(n, ARGV_MAX - 4);
                        argv[n++] = c->setpriv[i];
                }
        }
        argv[n++] = c->poolctl;
        argv[n++] = "--socket";
        argv[n++] = c->socket;
        for (size_t i = 0; args[i]; i++) {
                ck_assert_uint_lt(n, ARGV_MAX - 1);
                argv[n++] = args[i];
        }
        argv[n] = NULL;
        return agent_command_run(argv, c->capture_stderr, c->wait_ms, ret_out, ret_err, ret_ms);
}

/* ---- mounts --------------------------------------------------------------------------------- */

int agent_harness_enter_fuse_namespace(void) {
        if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) < 0) {
                fprintf(stderr, "needs root and /dev/fuse, skipping\n");
                return 77;
        }
        /* Mounts made here never reach the machine, whatever happens. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                fprintf(stderr, "cannot make a private mount namespace (%m), skipping\n");
                return 77;
        }
        return 0;
}

bool agent_harness_can_unshare(void) {
        int status;
        pid_t pid = fork();

        if (pid < 0)
                return false;
        if (pid == 0)
                _exit(unshare(CLONE_NEWNS) == 0 &&
                                      mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0
                              ? 0
                              : 1);
        return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool agent_harness_is_mounted(const char *path) {
        char line[4096], needle[600];
        FILE *f = fopen("/proc/self/mountinfo", "re");
        bool found = false;

        ck_assert_ptr_nonnull(f);
        (void)snprintf(needle, sizeof(needle), " %s ", path); /* no spaces in our paths */
        while (fgets(line, sizeof(line), f))
                if (strstr(line, needle))
                        found = true;
        (void)fclose(f);
        return found;
}

/* ---- a private /tmp, /root and /etc --------------------------------------------------------- */

bool agent_harness_on_private_tmpfs(const char *path) {
        struct statfs sfs;
        char marker[256];

        (void)snprintf(marker, sizeof(marker), "%s/marker", path);
        return statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC &&
               (streq(path, "/tmp") || access(marker, F_OK) == 0);
}

static void mount_tmpfs(const char *where, const char *opts) {
        ck_assert_msg(
                mount("poolagent-test", where, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0,
                "mount tmpfs on %s: %m", where);
}

static void copy_file(const char *from, const char *to) {
        char buf[65536];
        int in = open(from, O_RDONLY | O_CLOEXEC), out;
        ssize_t n;

        if (in < 0)
                return; /* nothing to copy */
        out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ck_assert_int_ge(out, 0);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                ck_assert_int_eq(write(out, buf, (size_t)n), n);
        ck_assert_int_eq(n, 0);
        (void)close(in);
        ck_assert_int_eq(close(out), 0);
}

void agent_harness_private_root(bool copy_ld_cache) {
        ck_assert_msg(unshare(CLONE_NEWNS) == 0, "unshare: %m");
        ck_assert_int_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
        mount_tmpfs("/tmp", "mode=0755");
        mount_tmpfs("/root", "mode=0700");
        ck_assert_int_eq(mkdir("/tmp/fake-etc", 0755), 0);
        agent_harness_write_file(
                "/tmp/fake-etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\n");
        agent_harness_write_file("/tmp/fake-etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        agent_harness_write_file("/tmp/fake-etc/group", "root:x:0:\n");
        agent_harness_write_file("/tmp/fake-etc/marker", "fake etc\n");
        if (copy_ld_cache) /* the programs a test runs */
                copy_file("/etc/ld.so.cache", "/tmp/fake-etc/ld.so.cache");
        ck_assert_int_eq(mount("/tmp/fake-etc", "/etc", NULL, MS_BIND, NULL), 0);
        agent_harness_write_file("/root/marker", "fake root\n");
        /* From here on, /etc and /root are ours: refuse to go on otherwise. */
        ck_assert(agent_harness_on_private_tmpfs("/tmp"));
        ck_assert(agent_harness_on_private_tmpfs("/root"));
        ck_assert(agent_harness_on_private_tmpfs("/etc"));
        ck_assert_int_eq(access("/etc/marker", F_OK), 0);
        ck_assert_int_eq(access("/root/marker", F_OK), 0);
}

/* ---- processes ------------------------------------------------------------------------------ */

pid_t agent_harness_child_named(const char *comm) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        int found = 0;

        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d))) {
                char path[300], buf[1024], *p, *q;
                int ppid;
                FILE *f;

                if (de->d_name[0] < '0' || de->d_name[0] > '9')
                        continue;
                (void)snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                p = fgets(buf, sizeof(buf), f);
                (void)fclose(f);
                /* "PID (comm) S PPID ..." */
                if (!p || !(p = strchr(buf, '(')) || !(q = strrchr(buf, ')')))
                        continue;
                *q = '\0';
                if (sscanf(q + 1, " %*c %d", &ppid) == 1 && ppid == getpid() &&
                    streq(p + 1, comm) && sscanf(de->d_name, "%d", &found) == 1)
                        break;
                found = 0;
        }
        (void)closedir(d);
        return found;
}
