/* SPDX-License-Identifier: MIT */
#include "fs-harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <expat.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "macro.h"
#include "time-util.h"
#include "url-util.h"

#define FS_TYPE "fuse.azfilesfs"
#define FUSERMOUNT_WAIT_MS 30000
#define COMPARE_CHUNK (1024u * 1024u)
#define SHARE_RANGE (16u * 1024u * 1024u)
#define NAMES_MAX 1000000u /* entries in one directory that a compare accepts */

/* ---- preflight, namespace -------------------------------------------------------------------- */

int fs_harness_preflight(void) {
        const char *bin = getenv("AZFILESFS"), *emu = getenv("AZFILES_EMU");

        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipping\n");
                return 77;
        }
        if (access("/dev/fuse", R_OK | W_OK) < 0) {
                fprintf(stderr, "no /dev/fuse, skipping\n");
                return 77;
        }
        if (isempty(bin) || access(bin, X_OK) < 0) {
                fprintf(stderr,
                        "AZFILESFS is %s: set it to the azfilesfs binary (build-*/fusefs/azfilesfs); "
                        "a test without its driver fails\n",
                        isempty(bin) ? "unset" : "not executable");
                return 1;
        }
        if (isempty(emu) || access(emu, X_OK) < 0) {
                fprintf(stderr, "AZFILES_EMU is unset or not executable\n");
                return 1;
        }
        return 0;
}

unsigned long fs_env_ulong(const char *name, unsigned long def) {
        const char *v = getenv(name);
        char *end;
        unsigned long r;

        if (isempty(v))
                return def;
        errno = 0;
        r = strtoul(v, &end, 10);
        return errno == 0 && *end == '\0' ? r : def;
}

int fs_harness_enter_namespace(void) {
        if (unshare(CLONE_NEWNS) < 0)
                return -errno;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        return 0;
}

/* ---- small helpers --------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        (void)remove(path);
        return 0;
}

void fs_rm_rf(const char *path) {
        if (path)
                (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int wait_pidfd(int pidfd, int timeout_ms) {
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        int64_t deadline = now_monotonic_ns() + (int64_t)timeout_ms * 1000000;

        for (;;) {
                int64_t left = (deadline - now_monotonic_ns()) / 1000000;
                int r;
                if (left <= 0)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int)left);
                if (r > 0)
                        return 0;
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

/* Runs argv, waits (bounded); returns the exit status or -errno. */
static int run_wait(const char *const *argv, int timeout_ms) {
        pid_t pid = fork();
        int pidfd, status, r;

        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0)
                        (void)dup2(null, STDOUT_FILENO);
                (void)execvp(argv[0], (char *const *)argv);
                _exit(127);
        }
        pidfd = (int)pidfd_open(pid, 0);
        if (pidfd >= 0) {
                r = wait_pidfd(pidfd, timeout_ms);
                (void)close(pidfd);
                if (r < 0) {
                        (void)kill(pid, SIGKILL);
                        (void)waitpid(pid, &status, 0);
                        return r;
                }
        }
        if (waitpid(pid, &status, 0) < 0)
                return -errno;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Undoes the \ooo escapes of /proc/self/mountinfo in place. */
static void unescape_octal(char *s) {
        char *o = s;
        for (char *p = s; *p; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' &&
                    p[3] >= '0' && p[3] <= '7') {
                        *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
                        p += 3;
                } else
                        *o++ = *p;
        }
        *o = '\0';
}

/* 1 when path is a mount point of type fstype (NULL: any), 0 when not, -errno. */
static int mountinfo_has(const char *path, const char *fstype) {
        _cleanup_free_ char *line = NULL;
        size_t alloc = 0;
        FILE *f = fopen("/proc/self/mountinfo", "re");
        int found = 0;

        if (!f)
                return -errno;
        while (getline(&line, &alloc, f) > 0) {
                char *save = NULL, *fields[5], *sep, *type;
                size_t n = 0;

                sep = strstr(line, " - ");
                if (!sep)
                        continue;
                *sep = '\0';
                type = strtok_r(sep + 3, " ", &save);
                for (char *t = strtok_r(line, " ", &save); t && n < 5;
                     t = strtok_r(NULL, " ", &save))
                        fields[n++] = t;
                if (n < 5 || !type)
                        continue;
                unescape_octal(fields[4]);
                if (streq(fields[4], path) && (!fstype || streq(type, fstype)))
                        found = 1;
        }
        (void)fclose(f);
        return found;
}

/* ---- mounts ---------------------------------------------------------------------------------- */

int fs_share_create(EmuInstance *e, const char *share) {
        _cleanup_free_ char *url = NULL;
        EmuHttpResult res;
        long status;
        int r;

        if (asprintf(&url, "/%s?restype=share", share) < 0)
                return -ENOMEM;
        r = emu_http(e, "PUT", url, NULL, "", 0, EMU_AUTH_MODE_SHARED_KEY, &res);
        if (r < 0)
                return r;
        status = res.curl_code == 0 ? res.status : 0;
        emu_http_result_clear(&res);
        return status == 201 ? 0 : -EIO;
}

static int write_file(const char *path, const char *text, mode_t mode) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        size_t len = strlen(text);

        if (fd < 0)
                return -errno;
        if (write(fd, text, len) != (ssize_t)len)
                return -EIO;
        return 0;
}

int fs_mount_new(
        EmuInstance *e,
        const char *share,
        const char *cache_dir,
        const char *options,
        FsMount **ret) {
        _cleanup_(fs_mount_freep) FsMount *m = NULL;
        _cleanup_free_ char *creds = NULL;
        char tmpl[] = "/tmp/fs-test.XXXXXX";
        int r;

        m = calloc(1, sizeof(FsMount));
        if (!m)
                return -ENOMEM;
        m->pid = -1;
        m->emu = e;
        if (!mkdtemp(tmpl))
                return -errno;
        m->dir = strdup(tmpl);
        m->share = strdup(share);
        m->options = options ? strdup(options) : NULL;
        if (!m->dir || !m->share || (options && !m->options))
                return -ENOMEM;
        if (asprintf(&m->mountpoint, "%s/mnt", tmpl) < 0 ||
            asprintf(&m->credentials, "%s/credentials", tmpl) < 0 ||
            asprintf(&m->log_path, "%s/azfilesfs.log", tmpl) < 0)
                return -ENOMEM;
        if (cache_dir)
                m->cache_dir = strdup(cache_dir);
        else if (asprintf(&m->cache_dir, "%s/cache", tmpl) < 0)
                m->cache_dir = NULL;
        if (!m->cache_dir)
                return -ENOMEM;
        if (mkdir(m->mountpoint, 0755) < 0 || (mkdir(m->cache_dir, 0700) < 0 && errno != EEXIST))
                return -errno;
        if (asprintf(&creds, "[storage]\naccount_key = %s\n", EMU_TEST_KEY) < 0)
                return -ENOMEM;
        r = write_file(m->credentials, creds, 0600);
        if (r < 0)
                return r;
        r = fs_mount_start(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

int fs_mount_start(FsMount *m) {
        _cleanup_free_ char *source = NULL, *opts = NULL;
        _cleanup_close_ int pidfd = -EBADF, mi = -EBADF;
        const char *bin = getenv("AZFILESFS");
        int64_t deadline;
        pid_t pid;

        if (!bin)
                return -ENOENT;
        if (m->pid > 0 || m->mounted)
                return -EBUSY;
        if (asprintf(&source, "%s/%s", m->emu->files_url, m->share) < 0 ||
            asprintf(
                    &opts, "credentials=%s,cache_dir=%s%s%s", m->credentials, m->cache_dir,
                    m->options ? "," : "", m->options ? m->options : "") < 0)
                return -ENOMEM;

        mi = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        if (mi < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                const char *argv[] = {bin, source, m->mountpoint, "-f", "-o", opts, NULL};
                int log = open(m->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
                int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                /* Never outlive the test (a failed check exits without teardown). */
                (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (log < 0 || null < 0 || dup2(null, STDIN_FILENO) < 0 ||
                    dup2(log, STDOUT_FILENO) < 0 || dup2(log, STDERR_FILENO) < 0)
                        _exit(127);
                (void)execv(bin, (char *const *)argv);
                _exit(127);
        }
        m->pid = pid;
        m->mounts++;
        pidfd = (int)pidfd_open(pid, 0);
        if (pidfd < 0)
                return -errno;

        /* The mount table is pollable: POLLPRI on every change; the pidfd says the daemon died. */
        deadline = now_monotonic_ns() + (int64_t)FS_MOUNT_WAIT_MS * 1000000;
        for (;;) {
                struct pollfd pfd[2] = {
                        {.fd = pidfd, .events = POLLIN},
                        {.fd = mi, .events = POLLPRI},
                };
                int64_t left;
                char buf[4096];
                int r = mountinfo_has(m->mountpoint, FS_TYPE);

                if (r < 0)
                        return r;
                if (r > 0) {
                        m->mounted = true;
                        return 0;
                }
                /* Consume the change notification: read to EOF and rewind. */
                while (read(mi, buf, sizeof(buf)) > 0)
                        ;
                (void)lseek(mi, 0, SEEK_SET);
                left = (deadline - now_monotonic_ns()) / 1000000;
                if (left <= 0)
                        break;
                r = poll(pfd, 2, (int)MIN(left, 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (pfd[0].revents & POLLIN) {
                        int status;
                        (void)waitpid(pid, &status, 0);
                        m->pid = -1;
                        return -ECHILD;
                }
        }
        (void)fs_mount_kill(m);
        return -ETIMEDOUT;
}

int fs_mount_kill(FsMount *m) {
        int status;

        if (m->pid > 0) {
                if (kill(m->pid, SIGKILL) < 0)
                        return -errno;
                (void)waitpid(m->pid, &status, 0);
                m->pid = -1;
        }
        /* The dead FUSE mount answers ENOTCONN until it is taken away. */
        if (mountinfo_has(m->mountpoint, NULL) > 0)
                (void)umount2(m->mountpoint, MNT_DETACH);
        m->mounted = false;
        return 0;
}

int fs_mount_stop(FsMount *m) {
        const char *const argv[] = {"fusermount3", "-u", m->mountpoint, NULL};
        _cleanup_close_ int pidfd = -EBADF;
        int r;

        if (m->pid <= 0) {
                if (m->mounted)
                        (void)umount2(m->mountpoint, MNT_DETACH);
                m->mounted = false;
                return -ESRCH;
        }
        pidfd = (int)pidfd_open(m->pid, 0);
        if (pidfd < 0)
                return -errno;
        r = run_wait(argv, FUSERMOUNT_WAIT_MS);
        if (r != 0)
                return r < 0 ? r : -EBUSY;
        m->mounted = false;
        return fs_mount_wait_exit(m, pidfd);
}

int fs_mount_wait_exit(FsMount *m, int pidfd) {
        int r, status;

        r = wait_pidfd(pidfd, FS_UNMOUNT_WAIT_MS);
        if (r < 0) {
                (void)fs_mount_kill(m);
                return r;
        }
        if (waitpid(m->pid, &status, 0) < 0)
                return -errno;
        r = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r != 0) {
                /* What the driver said last (a sanitizer's report goes there too): the test
                 * that checks the status shows only the number. */
                _cleanup_free_ char *tail = fs_mount_log_tail(m, 6000);
                fprintf(stderr,
                        "azfilesfs (pid %d) on %s ended with status %d; its log ends:\n%s\n",
                        (int)m->pid, m->mountpoint, r, tail ? tail : "(unreadable)");
        }
        m->pid = -1;
        return r;
}

FsMount *fs_mount_free(FsMount *m) {
        if (!m)
                return NULL;
        if (m->pid > 0 && fs_mount_stop(m) != 0)
                (void)fs_mount_kill(m);
        if (m->mounted || (m->mountpoint && mountinfo_has(m->mountpoint, NULL) > 0))
                (void)umount2(m->mountpoint, MNT_DETACH);
        if (m->dir && !getenv("FS_KEEP_TMP"))
                fs_rm_rf(m->dir);
        free(m->share);
        free(m->dir);
        free(m->mountpoint);
        free(m->cache_dir);
        free(m->credentials);
        free(m->log_path);
        free(m->options);
        free(m);
        return NULL;
}

char *fs_mount_log_tail(FsMount *m, size_t max) {
        _cleanup_close_ int fd = open(m->log_path, O_RDONLY | O_CLOEXEC);
        char *buf = calloc(1, max + 1);
        struct stat st;
        ssize_t n;

        if (!buf)
                return NULL;
        if (fd < 0 || fstat(fd, &st) < 0)
                return buf;
        n = pread(fd, buf, max, st.st_size > (off_t)max ? st.st_size - (off_t)max : 0);
        if (n > 0)
                buf[n] = '\0';
        return buf;
}

char *fs_mount_path(FsMount *m, const char *rel) {
        char *p;
        if (asprintf(&p, "%s%s%s", m->mountpoint, isempty(rel) ? "" : "/", rel ? rel : "") < 0)
                return NULL;
        return p;
}

/* ---- flush interface ------------------------------------------------------------------------ */

static int get_xattr_string(FsMount *m, const char *name, char **ret) {
        size_t alloc = 4096;
        for (;;) {
                _cleanup_free_ char *buf = malloc(alloc + 1);
                ssize_t n;
                if (!buf)
                        return -ENOMEM;
                n = getxattr(m->mountpoint, name, buf, alloc);
                if (n < 0 && errno == ERANGE && alloc < 1024 * 1024) {
                        alloc *= 4;
                        continue;
                }
                if (n < 0)
                        return -errno;
                buf[n] = '\0';
                *ret = TAKE_PTR(buf);
                return 0;
        }
}

int fs_dirty_bytes(FsMount *m, uint64_t *ret) {
        _cleanup_free_ char *s = NULL;
        char *end;
        unsigned long long v;
        int r = get_xattr_string(m, "user.azfilesfs.dirty_bytes", &s);

        if (r < 0)
                return r;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || (*end != '\0' && *end != '\n'))
                return -EBADMSG;
        *ret = v;
        return 0;
}

int fs_stats(FsMount *m, char **ret_json) {
        return get_xattr_string(m, "user.azfilesfs.stats", ret_json);
}

int fs_flush(FsMount *m, unsigned seconds) {
        char v[32];
        int n = snprintf(v, sizeof(v), "%u", seconds);
        if (setxattr(m->mountpoint, "user.azfilesfs.flush", v, (size_t)n, 0) < 0)
                return -errno;
        return 0;
}

int fs_mount_peak_rss_kib(FsMount *m, uint64_t *ret) {
        _cleanup_free_ char *line = NULL;
        char path[64];
        size_t alloc = 0;
        FILE *f;
        int r = -ENODATA;

        (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)m->pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (getline(&line, &alloc, f) > 0) {
                unsigned long long v;
                if (sscanf(line, "VmHWM: %llu kB", &v) == 1) {
                        *ret = v;
                        r = 0;
                }
        }
        (void)fclose(f);
        return r;
}

/* ---- tree compare ---------------------------------------------------------------------------- */

typedef struct Names {
        char **v;
        size_t n;
} Names;

static void names_done(Names *n) {
        for (size_t i = 0; i < n->n; i++)
                free(n->v[i]);
        free(n->v);
        n->v = NULL;
        n->n = 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int names_add(Names *n, const char *name) {
        char **nv;
        if (n->n >= NAMES_MAX)
                return -E2BIG;
        if ((n->n & (n->n - 1)) == 0) {
                nv = realloc(n->v, sizeof(char *) * MAX(n->n * 2, 16));
                if (!nv)
                        return -ENOMEM;
                n->v = nv;
        }
        n->v[n->n] = strdup(name);
        if (!n->v[n->n])
                return -ENOMEM;
        n->n++;
        return 0;
}

static int read_names(const char *path, Names *ret) {
        DIR *d = opendir(path);
        struct dirent *de;
        int r = 0;

        if (!d)
                return -errno;
        errno = 0;
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                r = names_add(ret, de->d_name);
                if (r < 0)
                        break;
                errno = 0;
        }
        if (r == 0 && errno != 0)
                r = -errno;
        (void)closedir(d);
        if (r < 0)
                names_done(ret);
        else if (ret->n > 0)
                qsort(ret->v, ret->n, sizeof(char *), cmp_str);
        return r;
}

_printf_(2, 3) static int differ(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        if (reterr_msg) {
                free(*reterr_msg);
                *reterr_msg = NULL;
                va_start(ap, fmt);
                if (vasprintf(reterr_msg, fmt, ap) < 0)
                        *reterr_msg = NULL;
                va_end(ap);
        }
        return -EBADMSG;
}

/* Compares names a and b (sorted); -EBADMSG naming the first one only one side has. */
static int names_compare(const Names *a, const Names *b, const char *where, char **reterr_msg) {
        size_t i = 0, j = 0;
        while (i < a->n || j < b->n) {
                int c = i >= a->n ? 1 : j >= b->n ? -1 : strcmp(a->v[i], b->v[j]);
                if (c < 0)
                        return differ(reterr_msg, "%s/%s: only in the first tree", where, a->v[i]);
                if (c > 0)
                        return differ(reterr_msg, "%s/%s: only in the second tree", where, b->v[j]);
                i++;
                j++;
        }
        return 0;
}

/* size: the expected size, for the buffers (small files are the common case). */
static int files_compare(const char *a, const char *b, uint64_t size, char **reterr_msg) {
        _cleanup_close_ int fa = open(a, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_close_ int fb = open(b, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t chunk = (size_t)MIN((uint64_t)COMPARE_CHUNK, size + 1);
        _cleanup_free_ char *ba = malloc(chunk), *bb = malloc(chunk);
        uint64_t off = 0;

        if (fa < 0 || fb < 0)
                return differ(reterr_msg, "%s: cannot open: %m", fa < 0 ? a : b);
        if (!ba || !bb)
                return -ENOMEM;
        for (;;) {
                ssize_t na = pread(fa, ba, chunk, (off_t)off);
                ssize_t nb = pread(fb, bb, chunk, (off_t)off);
                if (na < 0 || nb < 0)
                        return differ(
                                reterr_msg, "%s: read at %" PRIu64 ": %m", na < 0 ? a : b, off);
                if (na != nb || memcmp(ba, bb, (size_t)na) != 0) {
                        size_t k = 0;
                        while (k < (size_t)MIN(na, nb) && ba[k] == bb[k])
                                k++;
                        return differ(
                                reterr_msg,
                                "%s: content differs at byte %" PRIu64 " (read %zd vs %zd)", b,
                                off + k, na, nb);
                }
                if (na == 0)
                        return 0;
                off += (uint64_t)na;
        }
}

static int tree_compare_at(
        const char *a, const char *b, const char *rel, FsTreeFlags flags, char **reterr_msg) {
        Names na = {}, nb = {};
        int r;

        r = read_names(a, &na);
        if (r < 0)
                return differ(reterr_msg, "%s: cannot list: %s", a, strerror(-r));
        r = read_names(b, &nb);
        if (r < 0) {
                names_done(&na);
                return differ(reterr_msg, "%s: cannot list: %s", b, strerror(-r));
        }
        r = names_compare(&na, &nb, *rel ? rel : ".", reterr_msg);
        for (size_t i = 0; r == 0 && i < na.n; i++) {
                _cleanup_free_ char *pa = NULL, *pb = NULL, *prel = NULL;
                struct stat sa, sb;

                if (asprintf(&pa, "%s/%s", a, na.v[i]) < 0 ||
                    asprintf(&pb, "%s/%s", b, na.v[i]) < 0 ||
                    asprintf(&prel, "%s%s%s", rel, *rel ? "/" : "", na.v[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (lstat(pa, &sa) < 0 || lstat(pb, &sb) < 0) {
                        r = differ(reterr_msg, "%s: lstat: %m", prel);
                        break;
                }
                if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
                        r =
                                differ(reterr_msg, "%s: type %o vs %o", prel, sa.st_mode & S_IFMT,
                                       sb.st_mode & S_IFMT);
                else if (S_ISDIR(sa.st_mode))
                        r = tree_compare_at(pa, pb, prel, flags, reterr_msg);
                else if (!S_ISREG(sa.st_mode))
                        r = differ(reterr_msg, "%s: neither file nor directory", prel);
                else if (sa.st_size != sb.st_size)
                        r =
                                differ(reterr_msg, "%s: size %jd vs %jd", prel,
                                       (intmax_t)sa.st_size, (intmax_t)sb.st_size);
                else if (
                        (flags & FS_TREE_EXEC_BIT) &&
                        (sa.st_mode & S_IXUSR) != (sb.st_mode & S_IXUSR))
                        r =
                                differ(reterr_msg, "%s: mode %o vs %o (owner x bit)", prel,
                                       sa.st_mode & 07777, sb.st_mode & 07777);
                else if (!(flags & FS_TREE_NO_DATA))
                        r = files_compare(pa, pb, (uint64_t)sa.st_size, reterr_msg);
        }
        names_done(&na);
        names_done(&nb);
        return r;
}

int fs_tree_compare(const char *a, const char *b, FsTreeFlags flags, char **reterr_msg) {
        if (reterr_msg)
                *reterr_msg = NULL;
        return tree_compare_at(a, b, "", flags, reterr_msg);
}

/* ---- the share over REST --------------------------------------------------------------------- */

typedef struct ShareEntry {
        char *name;
        bool is_dir;
        uint64_t size;
} ShareEntry;

typedef struct ListParse {
        ShareEntry *v;
        size_t n, alloc;
        int depth_kind; /* 0 none, 1 File, 2 Directory */
        bool in_name, in_length, in_marker, encoded;
        char *text;
        size_t text_len;
        char *name;
        uint64_t size;
        char *marker;
        int error;
} ListParse;

static void XMLCALL list_start(void *ud, const XML_Char *el, const XML_Char **attrs) {
        ListParse *p = ud;
        if (streq(el, "File") || streq(el, "Directory")) {
                p->depth_kind = streq(el, "File") ? 1 : 2;
                p->size = 0;
                free(p->name);
                p->name = NULL;
                return;
        }
        p->in_name = p->depth_kind && streq(el, "Name");
        p->in_length = p->depth_kind == 1 && streq(el, "Content-Length");
        p->in_marker = streq(el, "NextMarker");
        p->encoded = false;
        if (p->in_name)
                for (size_t i = 0; attrs[i]; i += 2)
                        if (streq(attrs[i], "Encoded") && streq(attrs[i + 1], "true"))
                                p->encoded = true;
        free(p->text);
        p->text = NULL;
        p->text_len = 0;
}

static void XMLCALL list_text(void *ud, const XML_Char *s, int len) {
        ListParse *p = ud;
        char *nt;
        if (!p->in_name && !p->in_length && !p->in_marker)
                return;
        nt = realloc(p->text, p->text_len + (size_t)len + 1);
        if (!nt) {
                p->error = -ENOMEM;
                return;
        }
        memcpy(nt + p->text_len, s, (size_t)len);
        p->text = nt;
        p->text_len += (size_t)len;
        p->text[p->text_len] = '\0';
}

static void XMLCALL list_end(void *ud, const XML_Char *el) {
        ListParse *p = ud;
        const char *t = p->text ? p->text : "";

        if (p->in_name && streq(el, "Name")) {
                free(p->name);
                p->name = NULL;
                if (p->encoded) {
                        if (url_percent_decode(t, strlen(t), &p->name) < 0)
                                p->error = -EBADMSG;
                } else
                        p->name = strdup(t);
                p->in_name = false;
        } else if (p->in_length && streq(el, "Content-Length")) {
                p->size = strtoull(t, NULL, 10);
                p->in_length = false;
        } else if (p->in_marker && streq(el, "NextMarker")) {
                free(p->marker);
                p->marker = strdup(t);
                p->in_marker = false;
        } else if ((streq(el, "File") || streq(el, "Directory")) && p->depth_kind) {
                if (!p->name) {
                        p->error = -EBADMSG;
                } else if (p->n < NAMES_MAX) {
                        if (p->n == p->alloc) {
                                ShareEntry *nv =
                                        realloc(p->v, sizeof(ShareEntry) * MAX(p->alloc * 2, 64));
                                if (!nv) {
                                        p->error = -ENOMEM;
                                        return;
                                }
                                p->v = nv;
                                p->alloc = MAX(p->alloc * 2, 64);
                        }
                        p->v[p->n++] = (ShareEntry){
                                .name = TAKE_PTR(p->name),
                                .is_dir = p->depth_kind == 2,
                                .size = p->size,
                        };
                }
                p->depth_kind = 0;
        }
}

static void list_parse_done(ListParse *p) {
        for (size_t i = 0; i < p->n; i++)
                free(p->v[i].name);
        free(p->v);
        free(p->text);
        free(p->name);
        free(p->marker);
}

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const ShareEntry *)a)->name, ((const ShareEntry *)b)->name);
}

static int share_url(const char *share, const char *rel, const char *query, char **ret) {
        _cleanup_free_ char *enc = NULL;
        int r = url_percent_encode(rel, true, &enc);
        if (r < 0)
                return r;
        if (asprintf(
                    ret, "/%s%s%s%s%s", share, *rel ? "/" : "", enc, query ? "?" : "",
                    query ? query : "") < 0)
                return -ENOMEM;
        return 0;
}

static int share_list(EmuInstance *e, const char *share, const char *rel, ListParse *p) {
        for (;;) {
                _cleanup_free_ char *q = NULL, *url = NULL, *mk = NULL;
                EmuHttpResult res;
                XML_Parser x;
                int r;

                if (p->marker && *p->marker) {
                        r = url_percent_encode(p->marker, false, &mk);
                        if (r < 0)
                                return r;
                }
                if (asprintf(
                            &q, "restype=directory&comp=list&maxresults=5000%s%s",
                            mk ? "&marker=" : "", mk ? mk : "") < 0)
                        return -ENOMEM;
                r = share_url(share, rel, q, &url);
                if (r < 0)
                        return r;
                r = emu_http(e, "GET", url, NULL, NULL, 0, EMU_AUTH_MODE_SHARED_KEY, &res);
                if (r < 0)
                        return r;
                if (res.curl_code != 0 || res.status != 200) {
                        r = res.status == 404 ? -ENOENT : -EIO;
                        emu_http_result_clear(&res);
                        return r;
                }
                free(p->marker);
                p->marker = NULL;
                x = XML_ParserCreate("UTF-8");
                if (!x) {
                        emu_http_result_clear(&res);
                        return -ENOMEM;
                }
                XML_SetUserData(x, p);
                XML_SetElementHandler(x, list_start, list_end);
                XML_SetCharacterDataHandler(x, list_text);
                if (XML_Parse(x, res.body, (int)res.body_size, 1) != XML_STATUS_OK)
                        p->error = p->error ?: -EBADMSG;
                XML_ParserFree(x);
                emu_http_result_clear(&res);
                if (p->error < 0)
                        return p->error;
                if (isempty(p->marker))
                        break;
        }
        if (p->n > 0)
                qsort(p->v, p->n, sizeof(ShareEntry), cmp_entry);
        return 0;
}

/* GET of [off, off+len) into buf; -EIO unless exactly len bytes came. */
static int share_get_range(
        EmuInstance *e, const char *url, uint64_t off, size_t len, char **ret, size_t *ret_size) {
        char range[96];
        const char *const hdrs[] = {range, NULL};
        EmuHttpResult res;
        int r;

        (void)snprintf(
                range, sizeof(range), "x-ms-range: bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
        r = emu_http(e, "GET", url, hdrs, NULL, 0, EMU_AUTH_MODE_SHARED_KEY, &res);
        if (r < 0)
                return r;
        if (res.curl_code != 0 || (res.status != 206 && res.status != 200)) {
                r = res.status == 404 ? -ENOENT : -EIO;
                emu_http_result_clear(&res);
                return r;
        }
        *ret_size = res.body_size;
        *ret = TAKE_PTR(res.body);
        emu_http_result_clear(&res);
        return 0;
}

static int share_size(EmuInstance *e, const char *url, uint64_t *ret) {
        EmuHttpResult res;
        const char *v;
        int r = emu_http(e, "HEAD", url, NULL, NULL, 0, EMU_AUTH_MODE_SHARED_KEY, &res);
        if (r < 0)
                return r;
        if (res.curl_code != 0 || res.status != 200) {
                r = res.status == 404 ? -ENOENT : -EIO;
                emu_http_result_clear(&res);
                return r;
        }
        v = emu_http_header(&res, "Content-Length");
        r = v ? 0 : -EBADMSG;
        if (v)
                *ret = strtoull(v, NULL, 10);
        emu_http_result_clear(&res);
        return r;
}

/* The URL and the size of a file on the share. */
static int
share_file(EmuInstance *e, const char *share, const char *rel, char **ret_url, uint64_t *ret_size) {
        _cleanup_free_ char *url = NULL;
        int r = share_url(share, rel, NULL, &url);

        if (r < 0)
                return r;
        r = share_size(e, url, ret_size);
        if (r < 0)
                return r;
        *ret_url = TAKE_PTR(url);
        return 0;
}

int fs_share_read(
        EmuInstance *e, const char *share, const char *rel, char **ret, size_t *ret_size) {
        _cleanup_free_ char *url = NULL;
        uint64_t size;
        int r = share_file(e, share, rel, &url, &size);

        if (r < 0)
                return r;
        if (size == 0) {
                *ret = strdup("");
                *ret_size = 0;
                return *ret ? 0 : -ENOMEM;
        }
        return share_get_range(e, url, 0, size, ret, ret_size);
}

int fs_share_sha256(EmuInstance *e, const char *share, const char *rel, uint8_t ret[32]) {
        _cleanup_free_ char *url = NULL;
        EVP_MD_CTX *ctx;
        uint64_t size, off = 0;
        unsigned len = 32;
        int r = share_file(e, share, rel, &url, &size);

        if (r < 0)
                return r;
        ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        while (r == 0 && off < size) {
                _cleanup_free_ char *buf = NULL;
                size_t want = (size_t)MIN((uint64_t)SHARE_RANGE, size - off), got = 0;
                r = share_get_range(e, url, off, want, &buf, &got);
                if (r == 0 && got != want)
                        r = -EIO;
                if (r == 0)
                        (void)EVP_DigestUpdate(ctx, buf, got);
                off += want;
        }
        if (r == 0 && EVP_DigestFinal_ex(ctx, ret, &len) != 1)
                r = -EIO;
        EVP_MD_CTX_free(ctx);
        return r;
}

static int share_file_compare(
        EmuInstance *e,
        const char *url,
        const char *local,
        const char *rel,
        uint64_t size,
        char **reterr_msg) {
        _cleanup_close_ int fd = open(local, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_free_ char *lb = malloc((size_t)MIN((uint64_t)SHARE_RANGE, size + 1));
        uint64_t off = 0;

        if (fd < 0 || !lb)
                return fd < 0 ? -errno : -ENOMEM;
        while (off < size) {
                _cleanup_free_ char *sb = NULL;
                size_t want = (size_t)MIN((uint64_t)SHARE_RANGE, size - off), got = 0;
                ssize_t n;
                int r = share_get_range(e, url, off, want, &sb, &got);

                if (r < 0)
                        return differ(
                                reterr_msg, "%s: Get File at %" PRIu64 ": %s", rel, off,
                                strerror(-r));
                n = pread(fd, lb, want, (off_t)off);
                if (n < 0)
                        return -errno;
                if ((size_t)n != got || memcmp(lb, sb, got) != 0) {
                        size_t k = 0;
                        while (k < MIN((size_t)n, got) && lb[k] == sb[k])
                                k++;
                        return differ(
                                reterr_msg, "%s: on the share, content differs at byte %" PRIu64,
                                rel, off + k);
                }
                off += want;
        }
        return 0;
}

static int share_compare_at(
        EmuInstance *e, const char *share, const char *rel, const char *local, char **reterr_msg) {
        ListParse lp = {};
        Names ln = {};
        int r;

        r = share_list(e, share, rel, &lp);
        if (r < 0) {
                list_parse_done(&lp);
                return differ(reterr_msg, "share:/%s: List failed: %s", rel, strerror(-r));
        }
        r = read_names(local, &ln);
        if (r < 0) {
                list_parse_done(&lp);
                return differ(reterr_msg, "%s: cannot list: %s", local, strerror(-r));
        }
        for (size_t i = 0, j = 0; r == 0 && (i < ln.n || j < lp.n); i++, j++) {
                int c = i >= ln.n ? 1 : j >= lp.n ? -1 : strcmp(ln.v[i], lp.v[j].name);
                if (c < 0)
                        r =
                                differ(reterr_msg, "%s%s%s: in the reference, not on the share",
                                       rel, *rel ? "/" : "", ln.v[i]);
                else if (c > 0)
                        r =
                                differ(reterr_msg, "%s%s%s: on the share, not in the reference",
                                       rel, *rel ? "/" : "", lp.v[j].name);
        }
        for (size_t i = 0; r == 0 && i < ln.n; i++) {
                _cleanup_free_ char *lpath = NULL, *prel = NULL, *url = NULL;
                struct stat st;

                if (asprintf(&lpath, "%s/%s", local, ln.v[i]) < 0 ||
                    asprintf(&prel, "%s%s%s", rel, *rel ? "/" : "", ln.v[i]) < 0) {
                        r = -ENOMEM;
                        break;
                }
                if (lstat(lpath, &st) < 0) {
                        r = -errno;
                        break;
                }
                if (S_ISDIR(st.st_mode) != lp.v[i].is_dir)
                        r =
                                differ(reterr_msg, "%s: a %s in the reference, a %s on the share",
                                       prel, S_ISDIR(st.st_mode) ? "directory" : "file",
                                       lp.v[i].is_dir ? "directory" : "file");
                else if (S_ISDIR(st.st_mode))
                        r = share_compare_at(e, share, prel, lpath, reterr_msg);
                else if ((uint64_t)st.st_size != lp.v[i].size)
                        r =
                                differ(reterr_msg,
                                       "%s: size %jd in the reference, %" PRIu64 " on the share",
                                       prel, (intmax_t)st.st_size, lp.v[i].size);
                else if ((r = share_url(share, prel, NULL, &url)) == 0)
                        r = share_file_compare(e, url, lpath, prel, lp.v[i].size, reterr_msg);
        }
        names_done(&ln);
        list_parse_done(&lp);
        return r;
}

int fs_share_compare(
        EmuInstance *e, const char *share, const char *rel, const char *ref, char **reterr_msg) {
        if (reterr_msg)
                *reterr_msg = NULL;
        return share_compare_at(e, share, rel ? rel : "", ref, reterr_msg);
}

/* ---- emulator admin -------------------------------------------------------------------------- */

int fs_emu_counter(EmuInstance *e, const char *op, bool reset, uint64_t *ret) {
        EmuHttpResult res;
        json_object *o, *v = NULL;
        int r = emu_http(
                e, "GET", reset ? "imds:/__emu/counters?reset=1" : "imds:/__emu/counters", NULL,
                NULL, 0, EMU_AUTH_MODE_NONE, &res);

        if (r < 0)
                return r;
        if (res.curl_code != 0 || res.status != 200) {
                emu_http_result_clear(&res);
                return -EIO;
        }
        o = json_tokener_parse(res.body);
        emu_http_result_clear(&res);
        if (!o)
                return -EBADMSG;
        if (isempty(op))
                (void)json_object_object_get_ex(o, "requests", &v);
        else {
                json_object *c, *one;
                if (json_object_object_get_ex(o, "counters", &c) &&
                    json_object_object_get_ex(c, op, &one))
                        (void)json_object_object_get_ex(one, "requests", &v);
                else
                        *ret = 0; /* never seen */
        }
        if (v)
                *ret = (uint64_t)json_object_get_int64(v);
        r = v || !isempty(op) ? 0 : -EBADMSG;
        json_object_put(o);
        return r;
}

int fs_emu_set_faults(EmuInstance *e, const char *spec) {
        _cleanup_free_ char *body = NULL;
        json_object *o = json_object_new_object();
        EmuHttpResult res;
        int r;

        if (!o)
                return -ENOMEM;
        (void)json_object_object_add(o, "spec", json_object_new_string(spec));
        body = strdup(json_object_to_json_string(o));
        json_object_put(o);
        if (!body)
                return -ENOMEM;
        r = emu_http(
                e, "PUT", "imds:/__emu/faults", NULL, body, strlen(body), EMU_AUTH_MODE_NONE, &res);
        if (r < 0)
                return r;
        r = res.curl_code == 0 && res.status == 200 ? 0 : -EIO;
        emu_http_result_clear(&res);
        return r;
}

/* ---- data ------------------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t x) {
        x += UINT64_C(0x9e3779b97f4a7c15);
        x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
        return x ^ (x >> 31);
}

void fs_pattern_fill(uint64_t seed, uint64_t offset, void *buf, size_t len) {
        uint8_t *p = buf;
        uint64_t word = offset / 8;
        size_t skip = offset % 8, done = 0;

        while (done < len) {
                uint64_t v = splitmix64(seed * UINT64_C(0x100000001b3) ^ word);
                size_t take = MIN(8 - skip, len - done);
                memcpy(p + done, (uint8_t *)&v + skip, take);
                done += take;
                skip = 0;
                word++;
        }
}

int fs_write_pattern(const char *path, uint64_t seed, uint64_t size, size_t chunk) {
        _cleanup_free_ uint8_t *buf = malloc(chunk);
        uint64_t off = 0;
        int fd, r = 0;

        if (!buf)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        while (off < size) {
                size_t n = (size_t)MIN((uint64_t)chunk, size - off);
                ssize_t w;
                fs_pattern_fill(seed, off, buf, n);
                w = write(fd, buf, n);
                if (w < 0) {
                        r = -errno;
                        break;
                }
                if (w == 0) {
                        r = -EIO;
                        break;
                }
                off += (uint64_t)w;
        }
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

int fs_check_pattern(const char *path, uint64_t seed, uint64_t size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ uint8_t *got = malloc(COMPARE_CHUNK), *want = malloc(COMPARE_CHUNK);
        uint64_t off = 0;
        struct stat st;

        if (fd < 0)
                return -errno;
        if (!got || !want)
                return -ENOMEM;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size != size)
                return -EBADMSG;
        while (off < size) {
                size_t n = (size_t)MIN((uint64_t)COMPARE_CHUNK, size - off);
                ssize_t k = pread(fd, got, n, (off_t)off);
                if (k < 0)
                        return -errno;
                if ((size_t)k != n)
                        return -EBADMSG;
                fs_pattern_fill(seed, off, want, n);
                if (memcmp(got, want, n) != 0)
                        return -EBADMSG;
                off += n;
        }
        return 0;
}

int fs_file_sha256(const char *path, uint8_t ret[32]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *buf = malloc(COMPARE_CHUNK);
        EVP_MD_CTX *ctx;
        unsigned len = 32;
        int r = 0;

        if (fd < 0)
                return -errno;
        if (!buf)
                return -ENOMEM;
        ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return -ENOMEM;
        }
        for (;;) {
                ssize_t n = read(fd, buf, COMPARE_CHUNK);
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                (void)EVP_DigestUpdate(ctx, buf, (size_t)n);
        }
        if (r == 0 && EVP_DigestFinal_ex(ctx, ret, &len) != 1)
                r = -EIO;
        EVP_MD_CTX_free(ctx);
        return r;
}
