/* SPDX-License-Identifier: MIT */
#include "drain-child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utmpx.h>

#include <systemd/sd-event.h>

#include "macro.h"

struct DrainChild {
        DrainChild **list; /* the owner's list; we unlink ourselves when reaped */
        pid_t pid;
        int out_fd;
        sd_event_source *exit_source; /* pidfd; owns it */
        sd_event_source *deadline;
        DrainChildFn cb; /* NULL once called (timed out: the child is only reaped later) */
        void *userdata;
        char out[DRAIN_CHILD_OUTPUT_MAX];
        size_t n_out;
        DrainChild *next;
};

static void drain_child_release(DrainChild *c) {
        for (DrainChild **i = c->list; *i; i = &(*i)->next)
                if (*i == c) {
                        *i = c->next;
                        break;
                }
        sd_event_source_disable_unref(c->exit_source);
        sd_event_source_disable_unref(c->deadline);
        (void)safe_close(c->out_fd);
        free(c);
}

static void drain_child_read(DrainChild *c) {
        while (c->out_fd >= 0 && c->n_out < sizeof(c->out) - 1) {
                ssize_t k = read(c->out_fd, c->out + c->n_out, sizeof(c->out) - 1 - c->n_out);
                if (k <= 0)
                        break;
                c->n_out += (size_t)k;
        }
        c->out[c->n_out] = '\0';
}

static int drain_child_on_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        DrainChild *c = userdata;
        DrainChildFn cb = c->cb;
        int status = 0;
        pid_t pid;

        pid = waitpid(c->pid, &status, WNOHANG);
        if (pid == 0)
                return 0; /* not yet (spurious) */
        drain_child_read(c);
        c->cb = NULL;
        if (cb)
                cb(c, status, false, c->out, c->userdata);
        drain_child_release(c);
        return 0;
}

static int drain_child_on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        DrainChild *c = userdata;
        DrainChildFn cb = c->cb;

        (void)kill(-c->pid, SIGKILL);
        (void)kill(c->pid, SIGKILL);
        c->cb = NULL;
        c->deadline = sd_event_source_disable_unref(c->deadline);
        drain_child_read(c);
        /* The callback may start the next step; this child stays listed until it is reaped. */
        if (cb)
                cb(c, 0, true, c->out, c->userdata);
        return 0;
}

int drain_child_spawn(
        sd_event *event,
        DrainChild **list,
        uint64_t timeout_usec,
        DrainChildRun run,
        const void *arg,
        DrainChildFn cb,
        void *userdata,
        DrainChild **ret) {
        _cleanup_close_ int pidfd = -EBADF;
        DrainChild *c;
        int p[2], r;
        pid_t parent = getpid(), pid;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
                free(c);
                return NEG_ERRNO();
        }
        pid = fork();
        if (pid < 0) {
                r = NEG_ERRNO();
                (void)safe_close(p[0]);
                (void)safe_close(p[1]);
                free(c);
                return r;
        }
        if (pid == 0) {
                sigset_t all;

                (void)close(p[0]);
                (void)sigfillset(&all);
                (void)sigprocmask(SIG_UNBLOCK, &all, NULL);
                (void)setpgid(0, 0);
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (getppid() != parent)
                        _exit(1);
                run(arg, p[1]);
                _exit(0);
        }
        (void)safe_close(p[1]);
        c->list = list;
        c->userdata = userdata;
        c->pid = pid;
        c->out_fd = p[0];
        c->cb = cb;
        c->next = *list;
        *list = c;

        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        r = pidfd < 0 ? NEG_ERRNO()
                      : sd_event_add_io(
                                event, &c->exit_source, pidfd, EPOLLIN, drain_child_on_exit, c);
        if (r >= 0) {
                (void)sd_event_source_set_io_fd_own(c->exit_source, true);
                TAKE_FD(pidfd);
                r = sd_event_add_time_relative(
                        event, &c->deadline, CLOCK_MONOTONIC, timeout_usec, 10000,
                        drain_child_on_deadline, c);
        }
        if (r < 0) {
                (void)kill(-pid, SIGKILL);
                (void)kill(pid, SIGKILL);
                (void)waitpid(pid, NULL, 0); /* just forked: not stuck in a filesystem yet */
                drain_child_release(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}

/* ---- child bodies (run after fork; only async-signal-safe-ish work, then _exit) ----------------
 */

static int64_t read_dirty(const char *path, int *reterr) {
        char buf[32];
        ssize_t n;
        char *end;
        long long v;

        n = getxattr(path, DRAIN_DIRTY_XATTR, buf, sizeof(buf) - 1);
        if (n < 0) {
                *reterr = errno;
                return -1;
        }
        buf[n] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno != 0 || end == buf || v < 0) {
                *reterr = EBADMSG;
                return -1;
        }
        *reterr = 0;
        return v;
}

/* Writes "ERRNO BEFORE AFTER AZFILESFS\n". */
void drain_flush_child_run(const void *arg, int fd) {
        const DrainFlushArgs *a = arg;
        char secs[32], out[128];
        int64_t before, after = -1;
        int err = 0, e2 = 0, n;

        before = read_dirty(a->mount_point, &err);
        if (before < 0 && (err == ENODATA || err == ENOTSUP || err == EOPNOTSUPP)) {
                n = snprintf(out, sizeof(out), "0 0 0 0\n");
                (void)!write(fd, out, (size_t)n);
                _exit(0);
        }
        (void)snprintf(secs, sizeof(secs), "%" PRIu64, a->seconds);
        if (setxattr(a->mount_point, DRAIN_FLUSH_XATTR, secs, strlen(secs), 0) < 0)
                err = errno;
        else
                err = 0;
        after = read_dirty(a->mount_point, &e2);
        if (err == 0 && e2 != 0)
                err = e2;
        n = snprintf(out, sizeof(out), "%d %" PRId64 " %" PRId64 " 1\n", err, before, after);
        (void)!write(fd, out, (size_t)n);
        _exit(0);
}

void drain_hook_child_run(const void *arg, int fd) {
        const DrainHookArgs *a = arg;
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);

        if (null >= 0)
                (void)dup2(null, STDIN_FILENO);
        (void)dup2(STDERR_FILENO, STDOUT_FILENO);
        for (size_t i = 0; i < ELEMENTSOF(a->env); i++)
                if (a->env[i][0])
                        (void)putenv((char *)a->env[i]);
        execl("/bin/sh", "sh", "-c", a->command, (char *)NULL);
        _exit(127);
}

static bool tty_line_ok(const char *line) {
        const char *digits;

        if (strncmp(line, "pts/", 4) == 0)
                digits = line + 4;
        else if (strncmp(line, "tty", 3) == 0)
                digits = line + 3;
        else
                return false;
        if (!*digits)
                return false;
        for (const char *p = digits; *p; p++)
                if (!(*p >= '0' && *p <= '9') && !(*p >= 'A' && *p <= 'Z') &&
                    !(*p >= 'a' && *p <= 'z'))
                        return false;
        return true;
}

/* Writes the message to the terminal of every logged-in user (utmp USER_PROCESS entries), each
 * opened O_NOCTTY|O_NONBLOCK without following links; a full terminal gets a short write. */
void drain_notify_child_run(const void *arg, int fd) {
        const char *message = arg;
        struct utmpx *u;
        unsigned n = 0, ok = 0;
        char out[64];

        setutxent();
        while ((u = getutxent()) && n < DRAIN_NOTIFY_TTYS_MAX) {
                char line[sizeof(u->ut_line) + 1], path[sizeof(line) + 8];
                struct stat st;
                int t;

                if (u->ut_type != USER_PROCESS)
                        continue;
                memcpy(line, u->ut_line, sizeof(u->ut_line));
                line[sizeof(u->ut_line)] = '\0';
                if (!tty_line_ok(line))
                        continue;
                n++;
                (void)snprintf(path, sizeof(path), "/dev/%s", line);
                t = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
                if (t < 0)
                        continue;
                if (fstat(t, &st) == 0 && S_ISCHR(st.st_mode) &&
                    write(t, message, strlen(message)) > 0)
                        ok++;
                (void)close(t);
        }
        endutxent();
        (void)snprintf(out, sizeof(out), "%u %u\n", ok, n);
        (void)!write(fd, out, strlen(out));
        _exit(0);
}

/* mount/.poolagent/drain-reports/NAME, written atomically and fsync'ed (on azfilesfs, fsync
 * returns once the data is on the share); never follows links inside the share. */
void drain_report_child_run(const void *arg, int fd) {
        const DrainReportArgs *a = arg;
        const char *parts[] = {".poolagent", "drain-reports"};
        char tmp[300];
        int dir, sub, f;
        size_t n, off = 0;

        dir = open(a->mount_point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (size_t i = 0; dir >= 0 && i < ELEMENTSOF(parts); i++) {
                if (mkdirat(dir, parts[i], 0755) < 0 && errno != EEXIST)
                        _exit(10);
                sub = openat(dir, parts[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                (void)close(dir);
                dir = sub;
        }
        if (dir < 0)
                _exit(11);
        (void)snprintf(tmp, sizeof(tmp), ".%s.tmp", a->name);
        f = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (f < 0)
                _exit(12);
        n = strlen(a->text);
        while (off < n) {
                ssize_t k = write(f, a->text + off, n - off);
                if (k < 0)
                        _exit(13);
                off += (size_t)k;
        }
        if (fsync(f) < 0 || close(f) < 0 || renameat(dir, tmp, dir, a->name) < 0 || fsync(dir) < 0)
                _exit(14);
        _exit(0);
}

static bool component_ok(const char *s) {
        return s && *s && *s != '.' && !strchr(s, '/') && strlen(s) < NAME_MAX;
}

static int open_dir_at(int at, const char *name, bool create) {
        int fd;

        if (create && mkdirat(at, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

static bool write_file_at(int dir, const char *name, const char *text) {
        char tmp[NAME_MAX + 8];
        size_t n = strlen(text), off = 0;
        int f;

        (void)snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
        f = openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (f < 0)
                return false;
        while (off < n) {
                ssize_t k = write(f, text + off, n - off);
                if (k < 0) {
                        (void)close(f);
                        (void)unlinkat(dir, tmp, 0);
                        return false;
                }
                off += (size_t)k;
        }
        if (fsync(f) < 0 || close(f) < 0 || renameat(dir, tmp, dir, name) < 0) {
                (void)unlinkat(dir, tmp, 0);
                return false;
        }
        return true;
}

/* The grandchild for the owner of jobs[first]: exits with how many of its files failed. */
_noreturn_ static void requeue_owner_run(const DrainRequeueArgs *a, size_t first) {
        const DrainRequeueJob *j = &a->jobs[first];
        unsigned total = 0, ok = 0;
        uid_t uid = j->uid, ru, eu, su;
        gid_t gid, rg, eg, sg;
        int mnt, users, home = -1, dir = -1;
        struct stat st;

        for (size_t i = first; i < a->n_jobs; i++)
                if (a->jobs[i].uid == uid)
                        total++;
        mnt = open(a->mount_point, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        users = mnt < 0 ? -1 : open_dir_at(mnt, "Users", false);
        if (users >= 0 && component_ok(j->user))
                home = open_dir_at(users, j->user, false);
        if (home < 0 || fstat(home, &st) < 0 || st.st_uid != uid || uid == 0)
                _exit(MIN(total, 255U));
        gid = st.st_gid;
        if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
            setresuid(uid, uid, uid) < 0 || getresuid(&ru, &eu, &su) < 0 ||
            getresgid(&rg, &eg, &sg) < 0 || ru != uid || eu != uid || su != uid || rg != gid ||
            eg != gid || sg != gid)
                _exit(MIN(total, 255U));
        /* From here on as the user. */
        {
                int sub = open_dir_at(home, ".poolagent", true);

                dir = sub < 0 ? -1 : open_dir_at(sub, "requeued-jobs", true);
        }
        for (size_t i = first; dir >= 0 && i < a->n_jobs; i++)
                if (a->jobs[i].uid == uid && component_ok(a->jobs[i].name) &&
                    write_file_at(dir, a->jobs[i].name, a->jobs[i].text))
                        ok++;
        if (ok > 0 && fsync(dir) < 0)
                ok = 0;
        _exit(MIN(total - ok, 255U));
}

/* One grandchild per owner, one after the other (the caller's deadline kills the group). */
void drain_requeue_child_run(const void *arg, int fd) {
        const DrainRequeueArgs *a = arg;
        unsigned written = 0, failed = 0;
        char out[64];

        for (size_t i = 0; i < a->n_jobs && i < DRAIN_REQUEUE_JOBS_MAX; i++) {
                unsigned mine = 0;
                bool seen = false;
                int status;
                pid_t pid;

                for (size_t k = 0; k < i; k++)
                        if (a->jobs[k].uid == a->jobs[i].uid)
                                seen = true;
                if (seen)
                        continue;
                for (size_t k = i; k < a->n_jobs; k++)
                        if (a->jobs[k].uid == a->jobs[i].uid)
                                mine++;
                pid = fork();
                if (pid == 0)
                        requeue_owner_run(a, i);
                if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) {
                        failed += mine;
                        continue;
                }
                failed += MIN((unsigned)WEXITSTATUS(status), mine);
                written += mine - MIN((unsigned)WEXITSTATUS(status), mine);
        }
        (void)snprintf(out, sizeof(out), "%u %u\n", written, failed);
        (void)!write(fd, out, strlen(out));
        _exit(0);
}

int drain_requeue_parse(const char *output, unsigned *ret_written, unsigned *ret_failed) {
        unsigned w, f;

        if (sscanf(output, "%u %u", &w, &f) != 2)
                return -EIO;
        *ret_written = w;
        *ret_failed = f;
        return 0;
}

void drain_child_abandon(DrainChild *c) {
        if (!c)
                return;
        c->cb = NULL;
        (void)kill(-c->pid, SIGKILL);
        (void)kill(c->pid, SIGKILL);
}

void drain_child_free_all(DrainChild **list) {
        while (*list) {
                DrainChild *c = *list;

                (void)kill(-c->pid, SIGKILL);
                (void)kill(c->pid, SIGKILL);
                (void)waitpid(
                        c->pid, NULL, WNOHANG); /* a child stuck in the kernel stays a zombie */
                drain_child_release(c);
        }
}

int drain_flush_parse(const char *output, int64_t *ret_before, int64_t *ret_after, bool *ret_fs) {
        long long before, after;
        int err, fs;

        if (sscanf(output, "%d %lld %lld %d", &err, &before, &after, &fs) != 4)
                return -EIO;
        *ret_before = before;
        *ret_after = after;
        *ret_fs = fs != 0;
        return err > 0 ? -err : 0;
}
