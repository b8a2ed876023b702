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
 * Reclaiming: the agent's only own data on these disks is the azfilesfs cache, whose clean part
 * azfilesfs does not yet let anyone drop; disk_check_reclaim() is the hook for that and does
 * nothing today. Nothing is ever deleted.
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

/* The hook to free the agent's own space on a low disk (see above). Returns bytes freed. */
uint64_t disk_check_reclaim(DiskCheck *d, const char *path);

/* Adds "disks": [{path, label, consumers: [{path, bytes}], walked_usec, walk_complete}] and
 * "walk_pid" to o. */
int disk_check_status_json(const DiskCheck *d, json_object *o);
