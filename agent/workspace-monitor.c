/* SPDX-License-Identifier: MIT */
#include "workspace-monitor.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "event-util.h"
#include "log.h"
#include "message-ids.h"
#include "time-util.h"

static const char *const workspace_state_table[_WORKSPACE_STATE_MAX] = {
        [WORKSPACE_UNKNOWN] = "unknown",
        [WORKSPACE_OK] = "ok",
        [WORKSPACE_NOT_MOUNTED] = "not-mounted",
        [WORKSPACE_WRONG_TYPE] = "wrong-type",
        [WORKSPACE_HUNG] = "hung",
        [WORKSPACE_ERROR] = "error",
};

const char *workspace_state_to_string(WorkspaceState s) {
        if (s < 0 || s >= _WORKSPACE_STATE_MAX)
                return NULL;
        return workspace_state_table[s];
}

WorkspaceState workspace_state_from_string(const char *s) {
        for (int i = 0; s && i < _WORKSPACE_STATE_MAX; i++)
                if (streq(s, workspace_state_table[i]))
                        return (WorkspaceState)i;
        return _WORKSPACE_STATE_INVALID;
}

/* ---- mountinfo ------------------------------------------------------------------------------ */

static bool is_octal(char c) {
        return c >= '0' && c <= '7';
}

/* Decodes the kernel's \NNN escapes (it escapes space, tab, newline and backslash) in place. A
 * backslash not followed by three octal digits is kept as it is; \000 is refused. */
static int unescape_octal(char *s) {
        char *w = s;

        for (const char *p = s; *p;) {
                if (p[0] == '\\' && is_octal(p[1]) && is_octal(p[2]) && is_octal(p[3])) {
                        unsigned v = (unsigned)(p[1] - '0') * 64 + (unsigned)(p[2] - '0') * 8 +
                                     (unsigned)(p[3] - '0');
                        if (v == 0 || v > 255)
                                return -EINVAL;
                        *w++ = (char)v;
                        p += 4;
                } else
                        *w++ = *p++;
        }
        *w = '\0';
        return 0;
}

static bool is_decimal(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue" */
int mountinfo_parse_line(char *line, MountInfoEntry *ret) {
        char *field[6], *fstype, *source, *tok, *state = line;
        size_t n = 0;

        for (; n < ELEMENTSOF(field); n++) {
                field[n] = strsep(&state, " ");
                if (!field[n] || !*field[n])
                        return -EINVAL;
        }
        /* Optional fields ("shared:1", "master:2", ...) up to the lone "-". */
        for (;;) {
                tok = strsep(&state, " ");
                if (!tok || !*tok)
                        return -EINVAL;
                if (streq(tok, "-"))
                        break;
        }
        fstype = strsep(&state, " ");
        source = strsep(&state, " ");
        if (!fstype || !*fstype || !source)
                return -EINVAL;
        if (!is_decimal(field[0]) || !is_decimal(field[1]) || !strchr(field[2], ':') ||
            field[3][0] != '/' || field[4][0] != '/')
                return -EINVAL;
        if (unescape_octal(field[3]) < 0 || unescape_octal(field[4]) < 0 ||
            unescape_octal(fstype) < 0 || unescape_octal(source) < 0)
                return -EINVAL;
        *ret = (MountInfoEntry){
                .dev = field[2],
                .root = field[3],
                .mount_point = field[4],
                .fstype = fstype,
                .source = source,
        };
        return 0;
}

int mountinfo_find(const char *text, size_t size, const char *path, char **ret_fstype) {
        return mountinfo_find_dev(text, size, path, ret_fstype, NULL);
}

int mountinfo_find_dev(
        const char *text, size_t size, const char *path, char **ret_fstype, char **ret_dev) {
        _cleanup_free_ char *line = NULL, *found = NULL, *found_dev = NULL;
        const char *p = text, *end = text + size;
        bool mounted = false;

        line = malloc(WORKSPACE_MOUNTINFO_LINE_MAX + 1);
        if (!line)
                return -ENOMEM;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
                MountInfoEntry e;

                if (len <= WORKSPACE_MOUNTINFO_LINE_MAX && !memchr(p, '\0', len)) {
                        memcpy(line, p, len);
                        line[len] = '\0';
                        if (mountinfo_parse_line(line, &e) >= 0 && streq(e.mount_point, path)) {
                                free(found);
                                free(found_dev);
                                found = strdup(e.fstype);
                                found_dev = strdup(e.dev);
                                if (!found || !found_dev)
                                        return -ENOMEM;
                                mounted = true;
                        }
                }
                p += len + 1;
        }
        if (!mounted)
                return 0;
        *ret_fstype = TAKE_PTR(found);
        if (ret_dev)
                *ret_dev = TAKE_PTR(found_dev);
        return 1;
}

int mountinfo_read(char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;

        fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return NEG_ERRNO();
        for (;;) {
                ssize_t n;

                if (allocated - size < 4096) {
                        size_t want = allocated ? allocated * 2 : 16384;
                        char *b;

                        if (allocated >= WORKSPACE_MOUNTINFO_MAX)
                                return -E2BIG;
                        want = MIN(want, (size_t)WORKSPACE_MOUNTINFO_MAX);
                        b = realloc(buf, want);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        allocated = want;
                }
                n = read(fd, buf + size, allocated - size);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return NEG_ERRNO();
                if (n == 0)
                        break;
                size += (size_t)n;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

WorkspaceState workspace_classify(
        bool mounted, const char *fstype, const char *expected, bool timed_out, int probe) {
        if (!mounted)
                return WORKSPACE_NOT_MOUNTED;
        if (!fstype || !expected || !streq(fstype, expected))
                return WORKSPACE_WRONG_TYPE;
        if (timed_out)
                return WORKSPACE_HUNG;
        return probe < 0 ? WORKSPACE_ERROR : WORKSPACE_OK;
}

/* ---- the monitor ---------------------------------------------------------------------------- */

/* What the probe process writes to its pipe: 0 or a positive errno for each call, and the stats
 * xattr. Less than PIPE_BUF, so one atomic write. */
typedef struct ProbeResult {
        int statfs_errno;
        int stat_errno;
        int xattr_errno;
        unsigned stats_len;
        char stats[WORKSPACE_STATS_MAX];
} ProbeResult;

struct WorkspaceMonitor {
        sd_event *event; /* borrowed */
        char *path;
        char *expected_type;
        uint64_t timeout_usec;
        uint64_t interval_usec;
        WorkspaceChangeCallback cb;
        void *userdata;
        WorkspaceResultCallback result_cb;
        void *result_userdata;
        int stats_error; /* 0: stats valid */
        WorkspaceStats stats;

        sd_event_source *interval_source; /* the next periodic check */

        /* The probe process: at most one at a time (see the header). */
        pid_t probe_pid;                 /* 0: none */
        int probe_fd;                    /* read end of its result pipe */
        sd_event_source *probe_exit;     /* pidfd becomes readable when it exits; owns the pidfd */
        sd_event_source *probe_deadline; /* its timeout */
        int64_t probe_started_ns;        /* monotonic */
        bool probe_killed;               /* timed out and sent SIGKILL */

        WorkspaceState state;
        int error; /* the errno (positive) behind WORKSPACE_ERROR, 0 otherwise */
        char detail[WORKSPACE_DETAIL_MAX];
        uint64_t last_check_usec; /* realtime, 0: never */
        int64_t latency_ms;       /* of the last probe, -1: none */
};

static uint64_t realtime_usec(void) {
        return (uint64_t)now_realtime_ns() / 1000;
}

static const char *const workspace_message_ids[_WORKSPACE_STATE_MAX] = {
        [WORKSPACE_OK] = POOLAGENT_MESSAGE_WORKSPACE_OK,
        [WORKSPACE_NOT_MOUNTED] = POOLAGENT_MESSAGE_WORKSPACE_NOT_MOUNTED,
        [WORKSPACE_WRONG_TYPE] = POOLAGENT_MESSAGE_WORKSPACE_WRONG_TYPE,
        [WORKSPACE_HUNG] = POOLAGENT_MESSAGE_WORKSPACE_HUNG,
        [WORKSPACE_ERROR] = POOLAGENT_MESSAGE_WORKSPACE_ERROR,
};

/* Records a result; a change of state logs one event and calls back. error is the errno of an
 * ERROR state (0 otherwise), for ERRNO=. */
static void workspace_monitor_set(WorkspaceMonitor *w, WorkspaceState state, int error) {
        char f_path[PATH_MAX + 32], f_state[64], f_prev[64];
        WorkspaceState prev = w->state;
        int level;

        w->last_check_usec = realtime_usec();
        w->error = state == WORKSPACE_ERROR ? error : 0;
        if (state != WORKSPACE_OK)
                w->stats_error = -ESTALE;
        if (w->result_cb)
                w->result_cb(w, state, w->result_userdata);
        if (state == prev)
                return;
        w->state = state;

        level = state == WORKSPACE_OK            ? LOG_INFO
                : state == WORKSPACE_NOT_MOUNTED ? LOG_WARNING
                                                 : LOG_ERR;
        (void)snprintf(f_path, sizeof(f_path), "POOLAGENT_WORKSPACE=%s", w->path);
        (void)snprintf(
                f_state, sizeof(f_state), "POOLAGENT_WORKSPACE_STATE=%s",
                workspace_state_to_string(state));
        (void)snprintf(
                f_prev, sizeof(f_prev), "POOLAGENT_WORKSPACE_PREVIOUS_STATE=%s",
                workspace_state_to_string(prev));
        (void)log_struct(
                level, error,
                ((const char *[]){workspace_message_ids[state], f_path, f_state, f_prev, NULL}),
                "Workspace %s: %s (was %s)", w->path, w->detail, workspace_state_to_string(prev));
        if (w->cb)
                w->cb(w, state, w->userdata);
}

static void workspace_monitor_probe_release(WorkspaceMonitor *w) {
        w->probe_exit = sd_event_source_disable_unref(w->probe_exit);
        w->probe_deadline = sd_event_source_disable_unref(w->probe_deadline);
        w->probe_fd = safe_close(w->probe_fd);
        w->probe_pid = 0;
        w->probe_killed = false;
}

static int64_t workspace_monitor_probe_elapsed_ms(const WorkspaceMonitor *w) {
        return (now_monotonic_ns() - w->probe_started_ns) / 1000000;
}

static void workspace_monitor_report_hung(WorkspaceMonitor *w, bool still_stuck) {
        (void)snprintf(
                w->detail, sizeof(w->detail),
                "statfs() has not returned for %" PRId64 " ms (limit %" PRIu64
                " ms); probe process %d killed%s",
                workspace_monitor_probe_elapsed_ms(w), w->timeout_usec / 1000, (int)w->probe_pid,
                still_stuck ? ", still waiting in the kernel" : "");
        w->latency_ms = workspace_monitor_probe_elapsed_ms(w);
        workspace_monitor_set(w, WORKSPACE_HUNG, 0);
}

static int workspace_monitor_on_probe_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        WorkspaceMonitor *w = userdata;

        w->probe_deadline = sd_event_source_disable_unref(w->probe_deadline);
        if (w->probe_pid <= 0)
                return 0;
        /* The pid is ours and not reaped yet, so it cannot have been reused. */
        (void)kill(w->probe_pid, SIGKILL);
        w->probe_killed = true;
        log_debug(
                "Workspace probe %d did not answer within %" PRIu64 " ms, killed it",
                (int)w->probe_pid, w->timeout_usec / 1000);
        workspace_monitor_report_hung(w, false);
        return 0;
}

static int
workspace_monitor_on_probe_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WorkspaceMonitor *w = userdata;
        ProbeResult res;
        bool killed = w->probe_killed, got;
        int64_t elapsed = workspace_monitor_probe_elapsed_ms(w);
        ssize_t n;
        int status, err;
        pid_t pid;

        pid = waitpid(w->probe_pid, &status, WNOHANG);
        if (pid == 0)
                return 0; /* not yet (spurious wake-up) */
        n = read(w->probe_fd, &res, sizeof(res));
        got = n == (ssize_t)sizeof(res);
        workspace_monitor_probe_release(w);

        if (killed) {
                /* The state stays hung until the next check finds out how the mount is now
                 * (checking at once would probe a hung but killable mount back to back). */
                log_debug("Killed workspace probe ended after %" PRId64 " ms", elapsed);
                return 0;
        }
        w->latency_ms = elapsed;
        if (!got) {
                (void)snprintf(
                        w->detail, sizeof(w->detail), "the probe process ended without a result");
                workspace_monitor_set(w, WORKSPACE_ERROR, EIO);
                return 0;
        }
        err = res.statfs_errno ? res.statfs_errno : res.stat_errno;
        if (err != 0) {
                (void)snprintf(
                        w->detail, sizeof(w->detail), "%s() failed: %s",
                        res.statfs_errno ? "statfs" : "stat", strerror(err));
                workspace_monitor_set(
                        w,
                        workspace_classify(true, w->expected_type, w->expected_type, false, -err),
                        err);
                return 0;
        }
        (void)snprintf(
                w->detail, sizeof(w->detail), "mounted (%s), answers in %" PRId64 " ms",
                w->expected_type, elapsed);
        if (res.xattr_errno != 0)
                w->stats_error = -res.xattr_errno;
        else
                w->stats_error = workspace_stats_parse(
                        res.stats, MIN((size_t)res.stats_len, sizeof(res.stats)), &w->stats);
        workspace_monitor_set(w, WORKSPACE_OK, 0);
        return 0;
}

/* In the probe process: only async-signal-safe calls. Never returns. */
_noreturn_ static void workspace_probe_run(const char *path, int fd, pid_t parent) {
        ProbeResult res = {};
        struct statfs sfs;
        struct stat st;

        /* Never outlive the agent (a probe stuck in the kernel ends when released). */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(1);
        if (statfs(path, &sfs) < 0)
                res.statfs_errno = errno;
        else if (stat(path, &st) < 0)
                res.stat_errno = errno;
        else {
                ssize_t n = getxattr(path, WORKSPACE_STATS_XATTR, res.stats, sizeof(res.stats));
                if (n < 0)
                        res.xattr_errno = errno;
                else
                        res.stats_len = (unsigned)n;
        }
        (void)!write(fd, &res, sizeof(res));
        _exit(0);
}

static int workspace_monitor_probe_start(WorkspaceMonitor *w) {
        _cleanup_close_ int pidfd = -EBADF;
        int p[2], r;
        pid_t parent = getpid(), pid;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return NEG_ERRNO();
        pid = fork();
        if (pid < 0) {
                r = NEG_ERRNO();
                (void)safe_close(p[0]);
                (void)safe_close(p[1]);
                return r;
        }
        if (pid == 0) {
                (void)close(p[0]);
                workspace_probe_run(w->path, p[1], parent);
        }
        (void)safe_close(p[1]);
        w->probe_pid = pid;
        w->probe_fd = p[0];
        w->probe_started_ns = now_monotonic_ns();
        w->probe_killed = false;

        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                r = NEG_ERRNO();
        else
                r = sd_event_add_io(
                        w->event, &w->probe_exit, pidfd, EPOLLIN, workspace_monitor_on_probe_exit,
                        w);
        if (r >= 0) {
                (void)sd_event_source_set_io_fd_own(w->probe_exit, true);
                TAKE_FD(pidfd);
                r = sd_event_add_time_relative(
                        w->event, &w->probe_deadline, CLOCK_MONOTONIC, w->timeout_usec, 0,
                        workspace_monitor_on_probe_timeout, w);
        }
        if (r < 0) {
                /* Cannot watch it: kill it now; a later check reaps it (see check). */
                (void)kill(pid, SIGKILL);
                w->probe_exit = sd_event_source_disable_unref(w->probe_exit);
                w->probe_deadline = sd_event_source_disable_unref(w->probe_deadline);
                w->probe_killed = true;
                return r;
        }
        return 0;
}

int workspace_monitor_check_now(WorkspaceMonitor *w) {
        _cleanup_free_ char *text = NULL, *fstype = NULL;
        WorkspaceState state;
        size_t size = 0;
        int r;

        /* A killed probe that is not watched (its pidfd could not be set up) is reaped here. */
        if (w->probe_pid > 0 && !w->probe_exit && waitpid(w->probe_pid, NULL, WNOHANG) != 0)
                workspace_monitor_probe_release(w);

        r = mountinfo_read(&text, &size);
        if (r >= 0)
                r = mountinfo_find(text, size, w->path, &fstype);
        if (r < 0) {
                (void)snprintf(
                        w->detail, sizeof(w->detail), "cannot read /proc/self/mountinfo: %s",
                        strerror(-r));
                workspace_monitor_set(w, WORKSPACE_ERROR, -r);
                return r;
        }
        state = workspace_classify(r > 0, fstype, w->expected_type, false, 0);
        if (state == WORKSPACE_NOT_MOUNTED || state == WORKSPACE_WRONG_TYPE) {
                if (state == WORKSPACE_NOT_MOUNTED)
                        (void)snprintf(w->detail, sizeof(w->detail), "nothing is mounted there");
                else
                        (void)snprintf(
                                w->detail, sizeof(w->detail), "a %s mount, expected %s", fstype,
                                w->expected_type);
                w->latency_ms = -1;
                workspace_monitor_set(w, state, 0);
                return 0;
        }
        if (w->probe_pid > 0) {
                /* Still waiting for a probe. Only one at a time: a killed one still stuck in the
                 * kernel keeps the state at hung until it ends. */
                if (w->probe_killed)
                        workspace_monitor_report_hung(w, true);
                return 0;
        }
        r = workspace_monitor_probe_start(w);
        if (r < 0) {
                (void)snprintf(
                        w->detail, sizeof(w->detail), "cannot start the probe process: %s",
                        strerror(-r));
                workspace_monitor_set(w, WORKSPACE_ERROR, -r);
                return r;
        }
        return 0;
}

static int workspace_monitor_arm(WorkspaceMonitor *w);

static int workspace_monitor_on_interval(sd_event_source *s, uint64_t usec, void *userdata) {
        WorkspaceMonitor *w = userdata;

        (void)workspace_monitor_check_now(w);
        (void)workspace_monitor_arm(w);
        return 0;
}

static int workspace_monitor_arm(WorkspaceMonitor *w) {
        return event_arm_relative(
                w->event, &w->interval_source, w->interval_usec, workspace_monitor_on_interval, w,
                "workspace check");
}

void workspace_monitor_set_timing(
        WorkspaceMonitor *w, uint64_t timeout_usec, uint64_t interval_usec) {
        bool changed = w->interval_usec != interval_usec;

        w->timeout_usec = timeout_usec;
        w->interval_usec = interval_usec;
        if (changed)
                (void)workspace_monitor_arm(w);
}

int workspace_monitor_new(
        sd_event *event,
        const char *path,
        const char *expected_type,
        uint64_t timeout_usec,
        uint64_t interval_usec,
        WorkspaceChangeCallback cb,
        void *userdata,
        WorkspaceMonitor **ret) {
        _cleanup_(workspace_monitor_freep) WorkspaceMonitor *w = NULL;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->event = event;
        w->probe_fd = -EBADF;
        w->latency_ms = -1;
        w->stats_error = -ESTALE;
        w->timeout_usec = timeout_usec;
        w->interval_usec = interval_usec;
        w->cb = cb;
        w->userdata = userdata;
        w->path = strdup(path);
        w->expected_type = strdup(expected_type);
        if (!w->path || !w->expected_type)
                return -ENOMEM;
        (void)snprintf(w->detail, sizeof(w->detail), "not checked yet");

        r = workspace_monitor_arm(w);
        if (r < 0)
                return r;
        (void)workspace_monitor_check_now(w);
        *ret = TAKE_PTR(w);
        return 0;
}

WorkspaceMonitor *workspace_monitor_free(WorkspaceMonitor *w) {
        if (!w)
                return NULL;
        if (w->probe_pid > 0) {
                (void)kill(w->probe_pid, SIGKILL);
                /* Reaped if it already ended; a probe stuck in the kernel is left to init. */
                if (waitpid(w->probe_pid, NULL, WNOHANG) == 0)
                        log_notice(
                                "Workspace probe process %d is stuck on %s; it ends when the mount is released",
                                (int)w->probe_pid, w->path);
        }
        workspace_monitor_probe_release(w);
        sd_event_source_disable_unref(w->interval_source);
        free(w->path);
        free(w->expected_type);
        free(w);
        return NULL;
}

static int64_t json_int_field(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -1;
        return json_object_get_int64(v);
}

int workspace_stats_parse(const char *text, size_t size, WorkspaceStats *ret) {
        json_tokener *tok = json_tokener_new_ex(4);
        json_object *o, *v;

        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, text, (int)size);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = (WorkspaceStats){
                .dirty_bytes = json_int_field(o, "dirty_bytes"),
                .dirty_files = json_int_field(o, "dirty_files"),
                .cache_bytes = json_int_field(o, "cache_bytes"),
                .requests_total = json_int_field(o, "requests_total"),
                .requests_failed = json_int_field(o, "requests_failed"),
        };
        if (json_object_object_get_ex(o, "last_error", &v) &&
            json_object_is_type(v, json_type_string))
                (void)snprintf(
                        ret->last_error, sizeof(ret->last_error), "%s", json_object_get_string(v));
        json_object_put(o);
        return 0;
}

void workspace_monitor_set_result_callback(
        WorkspaceMonitor *w, WorkspaceResultCallback cb, void *userdata) {
        w->result_cb = cb;
        w->result_userdata = userdata;
}

int workspace_monitor_stats(const WorkspaceMonitor *w, WorkspaceStats *ret) {
        if (w->stats_error < 0)
                return w->stats_error;
        *ret = w->stats;
        return 0;
}

WorkspaceState workspace_monitor_state(const WorkspaceMonitor *w) {
        return w->state;
}

int workspace_monitor_error(const WorkspaceMonitor *w) {
        return w->error;
}

const char *workspace_monitor_detail(const WorkspaceMonitor *w) {
        return w->detail;
}

static int json_add_value(json_object *o, const char *key, json_object *v, bool may_be_null) {
        if (!v && !may_be_null)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int workspace_monitor_status_json(const WorkspaceMonitor *w, json_object *o) {
        int r = 0;

        r |= json_add_value(o, "path", json_object_new_string(w->path), false);
        r |= json_add_value(o, "expected_type", json_object_new_string(w->expected_type), false);
        r |= json_add_value(
                o, "state", json_object_new_string(workspace_state_to_string(w->state)), false);
        r |= json_add_value(o, "detail", json_object_new_string(w->detail), false);
        r |= json_add_value(
                o, "last_check_usec", json_object_new_uint64(w->last_check_usec), false);
        r |= json_add_value(
                o, "latency_ms", w->latency_ms >= 0 ? json_object_new_int64(w->latency_ms) : NULL,
                true);
        r |= json_add_value(
                o, "probe_pid", w->probe_pid > 0 ? json_object_new_int64(w->probe_pid) : NULL,
                true);
        r |= json_add_value(o, "timeout_ms", json_object_new_uint64(w->timeout_usec / 1000), false);
        r |= json_add_value(
                o, "interval_ms", json_object_new_uint64(w->interval_usec / 1000), false);
        return r < 0 ? -ENOMEM : 0;
}
