/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between fs.c (metadata operations, the FUSE glue), fs-data.c (cache files, reads,
 * writes, xattrs), fs-record.c (dirty records, their durability, recovery) and fs-upload.c
 * (uploads, write-through, rename holds, flushes, the tick, the flush interface). Not an interface
 * for anyone else. */

#define FUSE_USE_VERSION 312

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <fuse_lowlevel.h>

#include "fs-inode.h"
#include "fs-options.h"
#include "rest-client.h"

typedef struct sd_event sd_event;
typedef struct sd_event_source sd_event_source;
typedef struct HttpClient HttpClient;
typedef struct ImdsClient ImdsClient;
typedef struct LoopQueue LoopQueue;

typedef enum FsWaitKind {
        FS_WAIT_READ,
        FS_WAIT_WRITE,
        FS_WAIT_FLUSH, /* flush/fsync: replied when the inode is clean or the upload failed */
        _FS_WAIT_KIND_MAX,
        _FS_WAIT_KIND_INVALID = -EINVAL,
} FsWaitKind;

struct FsWaiter {
        FsWaiter *next;
        FsWaitKind kind;
        fuse_req_t req;
        uint64_t ino;
        uint64_t off;
        uint64_t len;
        char *data;  /* WRITE: a copy of the caller's bytes */
        bool direct; /* WRITE: from a write-only descriptor (no page cache) */
        /* FLUSH: the first whole upload round (Inode.rounds_begun) that takes everything dirty
         * when the flush came: its success answers the flush, later writes need not be up. */
        uint64_t round;
};

/* A metadata operation queued on Inode.create_waiters, or behind a rename or delete in flight
 * (FsMove.waiters, fs.c): fn(userdata) runs it again, on the I/O thread, without the lock; it
 * replies to its request (or queues itself again). */
struct FsRetry {
        FsRetry *next;
        void (*fn)(void *userdata);
        void *userdata;
};

/* A setxattr user.azfilesfs.flush waiting for every dirty byte to reach the share. */
typedef struct FsFlushAll {
        struct FsFlushAll *next;
        fuse_req_t req;
        sd_event_source *timer;
        uint64_t failures_at_start; /* Fs.upload_failures when it started */
        int error;
} FsFlushAll;

typedef struct Fs {
        const FsOptions *o;
        const FsCredentials *cred;
        sd_event *event;
        HttpClient *http;
        ImdsClient *imds;
        RestClient *rest;
        LoopQueue *queue; /* closures for the I/O thread (timers) */
        pthread_t thread;
        bool thread_started;
        struct fuse_session *se;
        int cache_dir_fd; /* the per-mount cache directory, locked */
        char *cache_path;
        uid_t owner_uid; /* fallback owner */
        gid_t owner_gid;
        int64_t mount_time_ns;
        sd_event_source *tick;
        char boot_id[64]; /* /proc/sys/kernel/random/boot_id at mount, "-" when unknown */

        /* Lock order: lock is the only lock (inode table, every Inode, everything below). */
        pthread_mutex_t lock;
        pthread_cond_t cond; /* broadcast when an upload or sync call finishes */
        InodeTable *inodes;  /* protected by lock */
        /* Inodes with a cache file, most recently used first; protected by lock. */
        Inode *state_list, *state_tail;
        unsigned cache_files;     /* on state_list */
        unsigned cache_files_max; /* beyond it, clean files go as beyond cache_size */
        uint64_t next_cache_id;
        uint64_t next_intent;    /* ids of renames and deletes the records announce (fs.c) */
        struct FsMove *moves;    /* renames and deletes on their way to the share (fs.c) */
        uint64_t dirty_charge;   /* for max_dirty: unsynced bytes, DIRTY_FILE_COST per file */
        unsigned dirty_files;    /* files with dirty pieces, also for the cap */
        uint64_t cache_bytes;    /* of the pieces PRESENT, those up to their file's size */
        FsWaiter *cap_waiters;   /* writes waiting for dirty data to drop under max_dirty */
        bool cap_recheck_posted; /* fs_cap_recheck_later_locked() has a check queued */
        FsFlushAll *flush_all;   /* protected by lock; timers touched on the I/O thread only
                                  * (and once it has ended: fs_flush_all_cancel) */
        /* A check of flush_all is queued (fs_flush_all_check_later_locked): one for many files
         * dropped at once (rm -r), not one each, as the I/O thread's queue is capped. By lock. */
        bool flush_all_check_posted;
        /* Open directory handles (fs.c), by lock: at unmount the kernel drops a RELEASEDIR it
         * has not sent yet, and fs_free frees what is left. */
        struct DirHandle *dir_handles;
        unsigned uploads_in_flight;
        unsigned wt_ranges_in_flight;            /* Put Ranges of write-through rounds */
        Inode *upload_queue, *upload_queue_tail; /* files waiting for an upload slot, FIFO */
        uint64_t requests_total, requests_failed;
        char *last_error, *last_error_path, *last_request_id;
        int last_upload_error;      /* the last upload round that failed, 0 after a success */
        uint64_t upload_generation; /* bumped when an upload round ends */
        uint64_t upload_failures;   /* upload rounds that failed */
        bool backend_down;
        uint64_t quota_gib;
        uint64_t usage_bytes;
        int64_t stats_until_ns;

        /* user.azfilesfs.reclaim; protected by lock */
        uint64_t reclaimed_bytes;      /* freed since the mount */
        uint64_t last_reclaim_bytes;   /* freed by the last one */
        uint64_t records_made_durable; /* dirty records made durable by the tick */
        uint64_t record_syncs;         /* syncfs() calls made for them */

        /* The thread that makes records durable (a syncfs() can take seconds on a busy disk:
         * never on the I/O thread). durable_kick and durable_quit are protected by lock. */
        pthread_t durable_thread;
        bool durable_started;
        bool durable_kick, durable_quit;
        pthread_cond_t durable_cond;

        /* The thread that answers retried writes of write-only descriptors after dropping their
         * range of the kernel's page cache (fs-inval.c); the queue and inval_quit by lock. */
        pthread_t inval_thread;
        bool inval_started, inval_quit;
        pthread_cond_t inval_cond;
        FsWaiter *inval_queue, *inval_tail;
} Fs;

/* The mount a FUSE request belongs to. */
static inline Fs *fs_of(fuse_req_t req) {
        return fuse_req_userdata(req);
}

/* A descriptor that can only write goes around the kernel's page cache (FOPEN_DIRECT_IO): each
 * write reaches us from the writer's own pages, spliced into the cache file, one copy instead
 * of two (into the page cache, then out of it to us). Nothing else changes for it: writes that
 * are not cached are sent one by one either way (no writeback_cache), it cannot be mapped or
 * read, and the range it writes is dropped from the page cache, by the kernel and by us
 * (fs-data.c, write_try), so that other descriptors of the file read the new bytes
 * (test-fs-basic write_only). flags: the open flags (fuse_file_info.flags). */
static inline bool fs_write_only(int flags) {
        return (flags & O_ACCMODE) == O_WRONLY;
}

/* What a change whose crash record could not be written fails with: ENOSPC and EDQUOT as they
 * are (the cache disk full), anything else as EIO. r < 0. */
static inline int fs_record_errno(int r) {
        return r == -ENOSPC || r == -EDQUOT ? r : -EIO;
}

/* fs.c */
void fs_lock(Fs *fs);
void fs_unlock(Fs *fs);
int64_t fs_now(void);
/* Records a finished REST call in the counters and, for failures other than quiet_errno, in
 * last_error and the journal (path and request id). Lock held. */
void fs_note_result_locked(
        Fs *fs, const RestResult *r, const char *what, const char *path, int quiet_errno);
void fs_inode_unref_locked(Fs *fs, Inode *i);
/* Frees i when nothing holds it any more: no lookup, reference, upload or unsynced data. */
void fs_inode_maybe_free_locked(Fs *fs, Inode *i);
void fs_fill_stat_locked(Fs *fs, const Inode *i, struct stat *st);
bool fs_inode_is_authoritative(const Inode *i);
/* Whether a file of this mode carries the NotContentIndexed hint (see SEMANTICS.md). */
bool fs_mode_needs_hint(Fs *fs, mode_t mode);
/* The share just made or changed something at path: its parent directories exist (their names
 * are trusted for dir_timeout from now). */
void fs_confirm_parents_locked(Fs *fs, const char *path);
int fs_post(Fs *fs, void (*fn)(void *userdata, bool cancelled), void *userdata);

/* fs-data.c */
/* What a file with unsynced data counts against max_dirty besides its bytes: its upload's
 * requests (a Put Range, a Create File or Set Properties), as the bytes the upload rate moves in
 * their time (a small file is mostly requests, and the flush that max_dirty bounds pays them). */
/* The permission bits a file or directory can have here: setuid and setgid are never kept, shown
 * or stored (a mode on the share comes from anyone who can write its metadata). */
#define FS_PERM_BITS ((mode_t)(S_ISVTX | S_IRWXU | S_IRWXG | S_IRWXO))

#define DIRTY_FILE_COST (UINT64_C(64) * 1024)
int fs_pieces_grow_locked(Inode *i, uint64_t size);
void fs_piece_set_locked(Fs *fs, Inode *i, size_t k, uint8_t set, uint8_t clear);
void fs_charge_locked(Fs *fs, Inode *i);
void fs_data_name(uint64_t id, const char *suffix, char buf[static 64]);
void fs_waiter_free(FsWaiter *w);
bool fs_over_cap_locked(Fs *fs);
/* Runs a write queued in w again (its data in w->data). */
void fs_write_retry(Fs *fs, FsWaiter *w);
/* The writes waiting under max_dirty that may go on (0 in *ret_err: below the cap) or fail (the
 * last upload's error: still over it after a failed upload), taken off the queue; NULL when
 * they still wait. Lock held. fs_cap_waiters_run() then retries or fails them (no lock held;
 * on the I/O thread). */
FsWaiter *fs_cap_waiters_take_locked(Fs *fs, int *ret_err);
void fs_cap_waiters_run(Fs *fs, FsWaiter *cap, int err);
/* Dirty data left without an upload (dropped, or an upload that could not be sent): the writes
 * waiting under max_dirty are looked at again on the I/O thread, as an upload's end does. */
void fs_cap_recheck_later_locked(Fs *fs);
int fs_cache_open_dir(Fs *fs, char **reterr_msg);
int fs_cache_attach_locked(Fs *fs, Inode *i);
void fs_cache_push_locked(Fs *fs, Inode *i);
void fs_cache_touch_locked(Fs *fs, Inode *i);
void fs_cache_reset_locked(Fs *fs, Inode *i, uint64_t remote_size, const char *etag);
void fs_cache_drop_locked(Fs *fs, Inode *i);
void fs_cache_evict_locked(Fs *fs);
/* Drops whole cache files that nothing uses (never dirty data, never an open file), least
 * recently used first, until at least bytes of disk space are freed or none is left to drop.
 * Returns the bytes freed (the files' allocated blocks). */
uint64_t fs_cache_reclaim_locked(Fs *fs, uint64_t bytes);
bool fs_inode_is_dirty(const Inode *i);
void fs_discard_dirty_locked(Fs *fs, Inode *i);
int fs_truncate_local_locked(Fs *fs, Inode *i, uint64_t size);

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fs_op_write_buf(
        fuse_req_t req,
        fuse_ino_t ino,
        struct fuse_bufvec *bufv,
        off_t off,
        struct fuse_file_info *fi);
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_op_setxattr(
        fuse_req_t req,
        fuse_ino_t ino,
        const char *name,
        const char *value,
        size_t size,
        int flags);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* fs-record.c */
/* Rewrites i's dirty record, not durable and not synced: it survives a crash of azfilesfs (the
 * kernel keeps it); the tick makes it durable (fs-record.c, durable_pass). */
void fs_sidecar_update_locked(Fs *fs, Inode *i);
/* The same when i is dirty and has a cache file (mode, name of a file not on the share yet): 0, or
 * -errno when the record could not be written. */
int fs_sidecar_note_locked(Fs *fs, Inode *i);
int fs_recover(Fs *fs);
/* Makes every dirty record durable now (at unmount, after the I/O thread stopped). */
void fs_records_make_durable(Fs *fs);
/* Starts and stops (joins) the thread that makes dirty records durable; the tick wakes it. */
int fs_durable_start(Fs *fs);
void fs_durable_stop(Fs *fs);

/* fs-inval.c: w, a write of w->len bytes at w->off done in the cache, is answered once that
 * range of the kernel's page cache is dropped, on the thread started and stopped (after the
 * unmount: it may wait for reads the kernel ends then) by these. Takes w. No lock held. */
void fs_inval_reply_write(Fs *fs, FsWaiter *w);
int fs_inval_start(Fs *fs);
void fs_inval_stop(Fs *fs);
void fs_sidecar_remove_locked(Fs *fs, Inode *i);
void fs_sidecar_close_locked(Inode *i);
/* i is clean: its record says so in place, and is removed with its cache file. */
void fs_sidecar_mark_clean_locked(Fs *fs, Inode *i);
/* Rewrites the record of inode ino after a write (Fs.lock not held). */
int fs_sidecar_update(Fs *fs, uint64_t ino);

/* fs-upload.c */
void fs_upload_start_locked(Fs *fs, Inode *i);
/* Whether i is a file whose first upload's Create File is in flight: the share may not have it
 * yet, so a request about it there must wait (fs_create_wait_locked). */
bool fs_create_in_flight(const Inode *i);
/* Whether an upload round of i is running (its Put Ranges may be in flight): a rename onto or
 * of it, or a Delete File of it, sent now could be overtaken by them (they would write the old
 * bytes into the file renamed there, or fail). Such a request waits too (fs_create_wait_locked). */
bool fs_upload_in_flight(const Inode *i);
/* Queues fn(userdata) at the end of *list. -ENOMEM. */
int fs_retry_append(FsRetry **list, void (*fn)(void *userdata), void *userdata);
/* Queues fn(userdata) on i->create_waiters. -ENOMEM. */
int fs_create_wait_locked(Inode *i, void (*fn)(void *userdata), void *userdata);
/* The create_waiters of i once no upload round of it runs (else NULL), to be run
 * with fs_create_waiters_run() after the lock is dropped. */
FsRetry *fs_create_waiters_take_locked(Inode *i);
void fs_create_waiters_run(FsRetry *list);
void fs_upload_all_locked(Fs *fs);
/* A rename of i, or onto it, goes to the share: no upload round of i starts until the matching
 * fs_rename_hold_end_locked(). NULL-safe. */
void fs_rename_hold_locked(Inode *i);
/* That rename ended (i may have been replaced by it, its data dropped): an upload held off
 * starts now. Flushes of i left with nothing to wait for are moved to *replies, to be answered
 * with fs_flush_waiters_reply() once the lock is dropped. NULL-safe. */
void fs_rename_hold_end_locked(Fs *fs, Inode *i, FsWaiter **replies);
void fs_flush_waiters_reply(FsWaiter *replies);
uint64_t fs_dirty_bytes_locked(Fs *fs, unsigned *ret_files);
int fs_flush_wait(Fs *fs, uint64_t timeout_ms);
void fs_tick_start(Fs *fs);
void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void fs_write_through_locked(Fs *fs, Inode *i, uint64_t off, uint64_t end);
void fs_flush_all_check_locked(Fs *fs, FsFlushAll **done);
/* Dirty data left without an upload (dropped, or a rename's end that starts none): a flush-all
 * waiting is looked at again on the I/O thread, as an upload's end does. Lock held. */
void fs_flush_all_check_later_locked(Fs *fs);
void fs_reply_flush_all(FsFlushAll *list, int error);
void fs_flush_all_cancel(Fs *fs);
