/* SPDX-License-Identifier: MIT */
#pragma once

/* The disk checks: free space and free inodes of the OS disk, /tmp and the scratch disk, as the
 * health source "disk".
 *
 * Every interval each configured path gets one statvfs() on the loop (local disks; the workspace
 * mount, which may hang, is checked by the workspace monitor instead) and two checks:
 *   disk_free_bytes        subject PATH, value f_bavail * f_frsize, unhealthy below MinFree,
 *                          warning below WarnFree
 *   disk_free_inodes_ratio subject PATH, value f_favail / f_files (0..1), thresholds in percent;
 *                          not reported where the file system has no inode count (f_files 0)
 * A path that cannot be read is "unknown".
 *
 * When a path's space goes below WarnFree (or its inodes below their warning), the agent walks
 * that file system once in a child process to find the largest directories (two levels below the
 * path), at most DISK_WALK_ENTRIES_MAX entries and DISK_WALK_TIMEOUT_USEC, never crossing into
 * another file system and never following a symbolic link; the child is killed at the deadline.
 * The top N are logged (POOLAGENT_MESSAGE_DISK_CONSUMERS) and kept for the status. One walk at a
 * time; a path is walked again at most every DISK_WALK_REPEAT_USEC while it stays low.
 *
 * Freeing space comes first (disk-reclaim.h), each step in a child process with a deadline, one
 * step of a path at a time, and the walk only after them when the path is still low:
 *   1. when the path's space is below WarnFree and its file system holds the workspace's cache
 *      directory (same st_dev), the workspace mount is asked to drop clean cache, enough to get
 *      back above WarnFree plus a margin; at most every DISK_RECLAIM_REPEAT_USEC while low;
 *   2. for the "tmp" path, only when TmpCleanupAge= is set: systemd-tmpfiles --clean of it, at
 *      most every DISK_TMP_CLEANUP_REPEAT_USEC while low;
 *   3. the walk above.
 * Each result is logged (POOLAGENT_DISK=, POOLAGENT_FREED_BYTES=) and kept for the status. The
 * health verdict is not touched by these steps: the next interval's check sees the space freed
 * (one call of health_set_checks() per cycle, for the hysteresis). Nothing else is deleted.
 *
 * Single-threaded: all calls from the thread running the sd-event loop. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/statvfs.h>

#include "health.h"
#include "macro.h"

#define DISK_PATHS_MAX 8U
#define DISK_WALK_ENTRIES_MAX 100000U
#define DISK_WALK_TIMEOUT_USEC (20U * 1000000U)
#define DISK_WALK_REPEAT_USEC (UINT64_C(600) * 1000000U)
#define DISK_CONSUMERS_MAX 100U
#define DISK_WALK_OUTPUT_MAX (32U * 1024U)

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct DiskCheck DiskCheck;

typedef struct DiskSpec {
        const char *label; /* "root", "tmp", "scratch" */
        const char *path;  /* NULL or "": not checked */
        uint64_t min_free; /* bytes */
        uint64_t warn_free;
} DiskSpec;

typedef struct DiskCheckConfig {
        DiskSpec disks[DISK_PATHS_MAX];
        size_t n_disks;
        unsigned min_free_inodes_percent;
        unsigned warn_free_inodes_percent;
        unsigned top_consumers; /* 0: no walk */
        uint64_t interval_usec;
        const char *cache_directory; /* the workspace's azfilesfs cache; NULL: no workspace */
        const char *mount_point;     /* the workspace mount, asked to reclaim */
        const char *tmp_cleanup_age; /* [Health] TmpCleanupAge= ("[AGEBY:]Ns"); NULL: off */
} DiskCheckConfig;

/* ---- pure parts ----------------------------------------------------------------------------- */

/* The checks for one path from its statvfs result (st NULL: error holds the -errno). Writes 1 or
 * 2 checks to ret (space, then inodes if the file system counts them) and returns how many. */
size_t disk_check_evaluate(
        const DiskSpec *spec,
        unsigned min_inodes_percent,
        unsigned warn_inodes_percent,
        const struct statvfs *st,
        int error,
        HealthCheck ret[static 2]);

/* "12.3 GiB", "512 B": for messages. */
char *disk_format_bytes(char *buf, size_t size, uint64_t bytes);

/* ---- the check ------------------------------------------------------------------------------ */

/* Checks at once and then every interval; health and event are borrowed. The config's strings
 * are copied. */
int disk_check_new(sd_event *event, Health *health, const DiskCheckConfig *config, DiskCheck **ret);
/* Kills a running walk. NULL-safe. */
DiskCheck *disk_check_free(DiskCheck *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(DiskCheck *, disk_check_free);

/* New paths and thresholds (reload); checks at once. */
int disk_check_configure(DiskCheck *d, const DiskCheckConfig *config);
int disk_check_now(DiskCheck *d);

/* Adds "disks": [{path, label, low, consumers: [{path, bytes}], walked_usec, walk_complete,
 * reclaim: {started_usec, asked_bytes, freed_bytes, cache_bytes, error} (when the path holds the
 * cache), tmp_cleanup: {age, started_usec, status, freed_bytes} (when configured)}] and
 * "walk_pid" to o. */
int disk_check_status_json(const DiskCheck *d, json_object *o);
