/* SPDX-License-Identifier: MIT */
#pragma once

/* The workspace check: is the mount point a mount of the expected type, and does it answer?
 *
 * Every check interval (and on workspace_monitor_check_now()) the monitor reads
 * /proc/self/mountinfo (which never waits on a filesystem) and, when the mount point is a mount of
 * the expected type, forks one probe process that runs statfs() and stat() on it and reports over
 * a pipe. The event loop never touches the mount itself, so a hung FUSE filesystem cannot block
 * it. A probe that has not answered within the stat timeout makes the state "hung" and is sent
 * SIGKILL.
 *
 * A process waiting on a FUSE request that the filesystem already read cannot be killed, not even
 * by SIGKILL: it stays in the kernel until the filesystem replies or its connection is aborted
 * (the FUSE daemon exits, or /sys/fs/fuse/connections/N/abort). So there is at most ONE probe
 * process at any time: while a killed probe is still stuck, no new one is started, the state stays
 * "hung" (unless mountinfo shows the mount gone or changed), and the probe is reaped as soon as it
 * exits, which starts the next check. When the monitor is freed with a probe still stuck, the
 * probe is left to init (it has SIGKILL pending and ends when the mount is released).
 *
 * Single-threaded: all calls from the thread running the sd-event loop. */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

#define WORKSPACE_FS_TYPE "fuse.azfilesfs"  /* what a healthy workspace is mounted as */
#define WORKSPACE_MOUNTINFO_MAX (4U << 20)  /* bytes of /proc/self/mountinfo read at most */
#define WORKSPACE_MOUNTINFO_LINE_MAX 16384U /* longer lines are skipped */
#define WORKSPACE_DETAIL_MAX 256U

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct WorkspaceMonitor WorkspaceMonitor;

typedef enum WorkspaceState {
        WORKSPACE_UNKNOWN, /* not checked yet */
        WORKSPACE_OK,
        WORKSPACE_NOT_MOUNTED,
        WORKSPACE_WRONG_TYPE,
        WORKSPACE_HUNG,  /* statfs/stat did not return within the timeout */
        WORKSPACE_ERROR, /* statfs/stat failed (errno), or the probe could not run */
        _WORKSPACE_STATE_MAX,
        _WORKSPACE_STATE_INVALID = -EINVAL,
} WorkspaceState;

const char *workspace_state_to_string(WorkspaceState s);
WorkspaceState workspace_state_from_string(const char *s);

/* ---- pure parts (no I/O) ------------------------------------------------------------------- */

/* One line of /proc/PID/mountinfo (proc(5)): pointers into a caller's buffer, which
 * mountinfo_parse_line() modifies in place (fields NUL-terminated, octal escapes such as \040
 * decoded). Valid as long as that buffer. */
typedef struct MountInfoEntry {
        const char *dev; /* "MAJOR:MINOR" */
        const char *root;
        const char *mount_point;
        const char *fstype;
        const char *source;
} MountInfoEntry;

/* Parses one line (without its newline). 0 on success, -EINVAL if it is malformed. */
int mountinfo_parse_line(char *line, MountInfoEntry *ret);

/* Finds the mount at path in mountinfo text (the last one listed wins: it is the one on top).
 * Returns 1 and the file system type (malloc'ed) in *ret_fstype if path is a mount point, 0 if
 * not, -ENOMEM. Malformed and overlong lines are skipped. */
int mountinfo_find(const char *text, size_t size, const char *path, char **ret_fstype);
/* The same, and the mount's "MAJOR:MINOR" (malloc'ed) in *ret_dev (may be NULL). */
int mountinfo_find_dev(
        const char *text, size_t size, const char *path, char **ret_fstype, char **ret_dev);
/* Reads /proc/self/mountinfo (never waits on a filesystem), at most WORKSPACE_MOUNTINFO_MAX
 * bytes (-E2BIG beyond). */
int mountinfo_read(char **ret, size_t *ret_size);

/* What a check means: mounted (from mountinfo) with fstype; then whether the probe timed out, or
 * its result (0 or -errno). The probe only counts when mounted with the expected type. */
WorkspaceState workspace_classify(
        bool mounted, const char *fstype, const char *expected, bool timed_out, int probe);

/* ---- the monitor --------------------------------------------------------------------------- */

/* Called after each change of state (not for repeated results). */
typedef void (*WorkspaceChangeCallback)(WorkspaceMonitor *w, WorkspaceState state, void *userdata);
/* Called after every check's result, repeated ones too (the health state counts cycles). */
typedef void (*WorkspaceResultCallback)(WorkspaceMonitor *w, WorkspaceState state, void *userdata);

/* azfilesfs's own figures, read in the same bounded probe with getxattr(MOUNTPOINT,
 * "user.azfilesfs.stats") (one line of JSON, at most WORKSPACE_STATS_MAX bytes). */
#define WORKSPACE_STATS_XATTR "user.azfilesfs.stats"
#define WORKSPACE_STATS_MAX 3072U
typedef struct WorkspaceStats {
        int64_t dirty_bytes; /* -1: not in the reply */
        int64_t dirty_files;
        int64_t cache_bytes;
        int64_t requests_total;
        int64_t requests_failed;
        char last_error[WORKSPACE_DETAIL_MAX]; /* "" if none */
} WorkspaceStats;

/* Parses the xattr's JSON; -EBADMSG if it is not a JSON object. Missing fields are -1. */
int workspace_stats_parse(const char *text, size_t size, WorkspaceStats *ret);

/* Checks path (copied) for a mount of type expected_type (copied) every interval_usec, each probe
 * bounded by timeout_usec. The first check runs at once. event is borrowed and must outlive the
 * monitor. */
int workspace_monitor_new(
        sd_event *event,
        const char *path,
        const char *expected_type,
        uint64_t timeout_usec,
        uint64_t interval_usec,
        WorkspaceChangeCallback cb,
        void *userdata,
        WorkspaceMonitor **ret);
/* Kills a running probe (reaping it if it already ended). NULL-safe. */
WorkspaceMonitor *workspace_monitor_free(WorkspaceMonitor *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(WorkspaceMonitor *, workspace_monitor_free);

/* New bounds (on reload); the next check uses them. */
void workspace_monitor_set_timing(
        WorkspaceMonitor *w, uint64_t timeout_usec, uint64_t interval_usec);
/* Starts a check now unless one is running; the result arrives on the loop. */
int workspace_monitor_check_now(WorkspaceMonitor *w);

void workspace_monitor_set_result_callback(
        WorkspaceMonitor *w, WorkspaceResultCallback cb, void *userdata);
/* The figures of the last probe that answered: 0 and *ret, or -ENODATA (no such xattr: not an
 * azfilesfs, or an older one), -EOPNOTSUPP, -EBADMSG (not JSON), another -errno of getxattr(),
 * or -ESTALE (no probe has answered since the state last changed). */
int workspace_monitor_stats(const WorkspaceMonitor *w, WorkspaceStats *ret);

WorkspaceState workspace_monitor_state(const WorkspaceMonitor *w);
/* The errno (positive) behind WORKSPACE_ERROR (e.g. ENOTCONN: the FUSE daemon is gone), 0 in
 * every other state. */
int workspace_monitor_error(const WorkspaceMonitor *w);
/* A short human explanation of the state (borrowed; valid until the next check). */
const char *workspace_monitor_detail(const WorkspaceMonitor *w);
/* Adds path, state, detail, last_check_usec (0: never), latency_ms (null: no probe finished) and
 * probe_pid (null: none running) to o. */
int workspace_monitor_status_json(const WorkspaceMonitor *w, json_object *o);
