/* SPDX-License-Identifier: MIT */
#pragma once

/* Freeing space on a low disk, the two ways the agent may (disk-check.c decides when):
 *
 *   the workspace cache  the clean part of the azfilesfs cache, the agent's own data: when the
 *                        disk that holds the cache directory goes below its warning threshold,
 *                        setxattr(MOUNTPOINT, "user.azfilesfs.reclaim", BYTES) asks the mount to
 *                        drop clean cache files (never unsynced data, never an open file) until
 *                        the disk is back above the threshold plus a margin
 *                        (disk_reclaim_target()).
 *   the /tmp cleanup     only when an administrator set [Health] TmpCleanupAge=: files under
 *                        TmpPath older than that go, by systemd-tmpfiles --clean with one line
 *                        "e PATH - - - AGE" read from standard input (no file, no other
 *                        configuration applied; systemd-tmpfiles never follows symbolic links,
 *                        stays on PATH's file system and skips directories locked with flock()).
 *
 * Both run in a child process (drain-child.h) with a deadline, so a hung mount or a slow disk
 * never blocks the loop. These are the children's bodies and the pure parts. */

#include <stddef.h>
#include <stdint.h>

#define DISK_RECLAIM_XATTR "user.azfilesfs.reclaim"
#define DISK_RECLAIM_STATS_XATTR "user.azfilesfs.stats"
#define DISK_RECLAIM_TIMEOUT_USEC (UINT64_C(10) * 1000000U)
#define DISK_RECLAIM_REPEAT_USEC (UINT64_C(60) * 1000000U) /* while the disk stays low */
#define DISK_RECLAIM_MARGIN_PERCENT 25U                    /* of the warning threshold */
#define DISK_TMP_CLEANUP_TIMEOUT_USEC (UINT64_C(300) * 1000000U)
#define DISK_TMP_CLEANUP_REPEAT_USEC (UINT64_C(600) * 1000000U)
#define DISK_TMPFILES_LINE_MAX 4200U

/* ---- pure parts ----------------------------------------------------------------------------- */

/* Bytes to ask the cache for: what is missing to the warning threshold, plus
 * DISK_RECLAIM_MARGIN_PERCENT of it; at least 1. */
uint64_t disk_reclaim_target(uint64_t avail, uint64_t warn_free);

/* The tmpfiles.d line for path and age (as [Health] TmpCleanupAge= stores it: "[AGEBY:]Ns").
 * -EINVAL when path is not absolute or holds a character the line cannot carry as is
 * (whitespace, quotes, backslash, control characters, '%' specifiers), or age is empty;
 * -ENOBUFS when it does not fit. */
int disk_tmpfiles_line(const char *path, const char *age, char *buf, size_t size);

/* The reclaim child's output: "ERRNO FREED CACHE_DISK_BYTES". -EBADMSG when malformed. */
int disk_reclaim_parse(
        const char *output, int *ret_error, int64_t *ret_freed, int64_t *ret_cache_bytes);

/* ---- the children (run(arg, fd) of drain_child_spawn()) ------------------------------------- */

typedef struct DiskReclaimArgs {
        const char *mount_point;
        uint64_t bytes;
} DiskReclaimArgs;
/* Refuses (-ENOTSUP) unless mount_point is a FUSE mount that knows DISK_RECLAIM_XATTR (so the
 * attribute is never set on a bare directory), sets it, then reads last_reclaim_bytes and
 * cache_disk_bytes from the stats; writes "ERRNO FREED CACHE_DISK_BYTES\n" (-1: unknown). */
void disk_reclaim_child_run(const void *arg, int out_fd);

typedef struct DiskTmpCleanupArgs {
        const char *line; /* from disk_tmpfiles_line() */
} DiskTmpCleanupArgs;
/* Execs systemd-tmpfiles --clean - with line on standard input, standard output to standard
 * error (the journal). Its exit status is the child's (127: not found). */
void disk_tmp_cleanup_child_run(const void *arg, int out_fd);
