/* SPDX-License-Identifier: MIT */
#pragma once

/* Test harness for azfilesfs: mounts the real driver ($AZFILESFS) against a real azfiles-emu
 * (emu-harness.h) and checks what is on the mount, in a local reference tree and ON THE SHARE
 * (read back over the File REST API, not through the cache).
 *
 * A mount lives in its own temporary directory (mount point, cache_dir, credentials file, the
 * driver's stderr). Every wait is on the real condition (the mount table, the daemon's pidfd)
 * with a bound. The harness never logs; failures are negative errnos, and the compare functions
 * say what differs in a message the caller frees.
 *
 * Callers are expected to run in a private mount namespace (fs_harness_enter_namespace()), so a
 * mount never leaks to the machine even when a test dies; the harness unmounts anyway. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "emu-harness.h"

#define FS_MOUNT_WAIT_MS 20000    /* mount to appear */
#define FS_UNMOUNT_WAIT_MS 180000 /* daemon to exit after fusermount3 -u (it may upload) */

/* Checks that the tests can run: returns 77 (skip) without root or /dev/fuse, 1 (fail, with a
 * message on stderr) when $AZFILESFS is unset or not executable, 0 when all is there. A test
 * whose driver is missing must fail, never pass silently. */
int fs_harness_preflight(void);
/* A decimal environment knob; def when unset or not a number. */
unsigned long fs_env_ulong(const char *name, unsigned long def);
/* unshare(CLONE_NEWNS) and make / private (recursive). -errno. */
int fs_harness_enter_namespace(void);

/* PUT ?restype=share with Shared Key. 0 on 201, -EIO otherwise. */
int fs_share_create(EmuInstance *e, const char *share);

typedef struct FsMount {
        EmuInstance *emu; /* not owned */
        char *share;
        char *dir;         /* temporary directory owned by the mount */
        char *mountpoint;  /* dir/mnt */
        char *cache_dir;   /* dir/cache, unless given */
        char *credentials; /* dir/credentials (0600) */
        char *log_path;    /* dir/azfilesfs.log: the driver's stdout and stderr, appended */
        char *options;     /* extra -o options, or NULL */
        pid_t pid;         /* the daemon, -1 when not running */
        bool mounted;
        unsigned mounts; /* how many times started */
} FsMount;

/* Creates the directories and the credentials file (account_key, mode 0600) and mounts
 * (fs_mount_start). cache_dir NULL: dir/cache. options: more -o options ("writeback=async"),
 * or NULL. On failure nothing is left behind; the driver's log went to stderr. */
int fs_mount_new(
        EmuInstance *e,
        const char *share,
        const char *cache_dir,
        const char *options,
        FsMount **ret);
/* Starts `azfilesfs SOURCE MNT -f -o credentials=...,cache_dir=...[,options]` and waits (bounded)
 * until MNT is in /proc/self/mountinfo with type fuse.azfilesfs. -ECHILD when the daemon exited
 * first, -ETIMEDOUT. */
int fs_mount_start(FsMount *m);
/* fusermount3 -u, then waits (bounded) for the daemon to exit. Returns its exit status (0
 * expected), or -ETIMEDOUT (then it was killed and the mount detached) or -errno. */
int fs_mount_stop(FsMount *m);
/* After something made the daemon exit (its pidfd taken before): waits for it as fs_mount_stop
 * does and returns the same (its exit status, its log's end on stderr when not 0). */
int fs_mount_wait_exit(FsMount *m, int pidfd);
/* SIGKILL, reaps it, detaches the dead mount. -errno. */
int fs_mount_kill(FsMount *m);
/* Stops (or kills when stopping fails), detaches, removes the directory. NULL-safe. */
FsMount *fs_mount_free(FsMount *m);
static inline void fs_mount_freep(FsMount **m) {
        *m = fs_mount_free(*m);
}
/* The last max bytes of the driver's log (for failure messages); caller frees; never NULL
 * except for OOM. */
char *fs_mount_log_tail(FsMount *m, size_t max);
/* A path on the mount (caller frees), rel "" for the root. */
char *fs_mount_path(FsMount *m, const char *rel);

/* The flush interface (xattrs on the mount root). */
int fs_dirty_bytes(FsMount *m, uint64_t *ret);
int fs_stats(FsMount *m, char **ret_json);
/* setxattr user.azfilesfs.flush = seconds: 0 when nothing is dirty, -ETIMEDOUT, -EIO, ... */
int fs_flush(FsMount *m, unsigned seconds);
/* VmHWM of the daemon in KiB. */
int fs_mount_peak_rss_kib(FsMount *m, uint64_t *ret);

typedef enum FsTreeFlags {
        FS_TREE_EXEC_BIT = 1 << 0, /* compare S_IXUSR of regular files */
        FS_TREE_NO_DATA = 1 << 1,  /* names, types and sizes only (an ls -lR): no file is read */
} FsTreeFlags;

/* Compares two local (or mounted) trees: the names in every directory (exactly, byte for
 * byte), types, sizes and contents. 0 when equal, -EBADMSG with *reterr_msg saying where they
 * first differ, other -errno when one could not be read. */
int fs_tree_compare(const char *a, const char *b, FsTreeFlags flags, char **reterr_msg);

/* Compares the share (below share-relative directory rel, "" for the root) with the local tree
 * ref, over REST: List Directories and Files (all pages) for the names and types, Content-Length
 * for sizes, Get File (in ranges) for the bytes. Same results as fs_tree_compare(). */
int fs_share_compare(
        EmuInstance *e, const char *share, const char *rel, const char *ref, char **reterr_msg);
/* Reads a whole file from the share (rel: share-relative, unencoded). -ENOENT on 404. */
int fs_share_read(EmuInstance *e, const char *share, const char *rel, char **ret, size_t *ret_size);
/* SHA-256 of a file on the share, read in 16 MiB ranges. */
int fs_share_sha256(EmuInstance *e, const char *share, const char *rel, uint8_t ret[32]);
/* Counter of one operation ("ListDirectoriesAndFiles") from /__emu/counters; "" or NULL for the
 * total of all requests. reset: zero the counters as they are read. */
int fs_emu_counter(EmuInstance *e, const char *op, bool reset, uint64_t *ret);
/* PUT /__emu/faults {"spec": spec}; "" removes every fault. */
int fs_emu_set_faults(EmuInstance *e, const char *spec);

/* Writes len bytes of the deterministic pattern of (seed, offset) into buf: the same bytes for
 * the same seed and absolute offset, so big files need no reference copy. */
void fs_pattern_fill(uint64_t seed, uint64_t offset, void *buf, size_t len);
/* Creates (or truncates) path and writes size bytes of the pattern of seed, chunk bytes per
 * write(), then closes it. The -errno of the first call that failed (open, write, close). */
int fs_write_pattern(const char *path, uint64_t seed, uint64_t size, size_t chunk);
/* 0 when path holds exactly size bytes of the pattern of seed, -EBADMSG when not, -errno. */
int fs_check_pattern(const char *path, uint64_t seed, uint64_t size);
/* SHA-256 of a local file. */
int fs_file_sha256(const char *path, uint8_t ret[32]);
/* rm -rf of a local tree (never follows links, stays on one filesystem). */
void fs_rm_rf(const char *path);
