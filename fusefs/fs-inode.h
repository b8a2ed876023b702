/* SPDX-License-Identifier: MIT */
#pragma once

/* The inode table: inode number to Inode, and share path (case-insensitively, as the share
 * compares names) to Inode. Pure data structure; no locking of its own: the caller (fs.c) holds
 * Fs.lock around every call. Never logs. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rest-props.h"

#define FS_ROOT_INO UINT64_C(1)

typedef struct FsRetry FsRetry;
typedef struct FsWaiter FsWaiter;
typedef struct Inode Inode;

/* Piece flags (one byte per FS_PIECE_SIZE piece of the file). */
enum {
        PIECE_PRESENT = 1u << 0,   /* the cache file holds this piece's data */
        PIECE_FETCHING = 1u << 1,  /* a Get Range for it is in flight */
        PIECE_DIRTY = 1u << 2,     /* written locally, not yet uploaded */
        PIECE_UPLOADING = 1u << 3, /* a Put Range of it is in flight */
        PIECE_FILLING = 1u << 4,   /* a write that covers it whole is copying its bytes in */
        PIECE_FETCHED = 1u << 5,   /* present, its bytes from a Get Range, not written here since */
};

/* Lock order: Fs.lock is the only lock; every field below is protected by it. */
struct Inode {
        uint64_t ino;
        char *path; /* share-relative, as the share spells it */
        /* A rename or Delete File that moves this dirty file on the share, deletes it or
         * replaces it is on its way (rec_intent: its id): the record says so, so that after a
         * kill -9 before its answer the recovery asks the share whether it was carried out
         * (rec_moving: the path the rename gives it, once its path is gone from the share;
         * rec_void_if_gone: its data is void once that path is gone: its own for a Delete File,
         * the source's for a rename over it). */
        char *rec_moving;
        char *rec_void_if_gone;
        uint64_t rec_intent;
        uint64_t nlookup; /* references the kernel holds (lookup, create, readdirplus) */
        unsigned refs;    /* our own: open handles, calls in flight, dirty state */
        bool is_dir;
        bool unlinked;
        unsigned path_gen; /* bumped by every rename */

        /* Attributes. */
        mode_t perm;     /* from x-ms-meta-mode, else the mount's default */
        bool perm_known; /* perm came from the file's own properties (or we set it) */
        bool has_attributes;
        uint32_t attributes; /* SMB attributes as last seen (RestAttribute) */
        uint64_t size;
        int64_t mtime_ns, ctime_ns, btime_ns;
        int64_t attr_until_ns;  /* monotonic; attributes fresh until then */
        int64_t entry_until_ns; /* monotonic; the name trusted until then */
        char etag[REST_ETAG_MAX];

        /* Local cache, when cache_fd >= 0. */
        int cache_fd;
        uint64_t cache_id;
        uint64_t cache_gen;             /* bumped when the cached version is dropped */
        char cache_etag[REST_ETAG_MAX]; /* the share's ETag the cached pieces belong to */
        /* Clean pieces may be older than the version cache_etag names: an upload that did not
         * send them all ended, and the ETag it learnt covers what other VMs changed in them
         * meanwhile. The next open takes the share's version (fs.c, open_done). */
        bool cache_mixed;
        uint64_t fetch_limit; /* [0, fetch_limit) may still need fetching */
        /* Size on the share, as we last knew it; after a failed upload the largest it may have
         * (what that round sent may have landed), so that a truncation below it is a shrink. */
        uint64_t remote_size;
        uint8_t *pieces;
        size_t n_pieces;
        uint64_t n_dirty;       /* pieces DIRTY or UPLOADING */
        uint64_t n_present;     /* pieces PRESENT */
        uint64_t n_fetched;     /* pieces FETCHED */
        uint64_t cache_charged; /* what Fs.cache_bytes counts for it (fs_charge_locked) */
        uint64_t dirty_charged; /* what Fs.dirty_charge counts for it */
        int64_t dirty_since_ns;
        bool size_dirty; /* the share's size differs from size */
        /* Created here and not on the share yet: the upload's first request is Create File
         * with the final size, the mode (x-ms-meta-mode) and the last-write time. */
        bool create_pending;
        /* Truncated below remote_size since the last upload (to shrink_to at the lowest): the
         * share's bytes from there on are stale and no dirty piece covers them, so the upload
         * cuts them off before it sets the final size. */
        bool shrunk;
        uint64_t shrink_to;
        unsigned shrink_gen; /* bumped by every truncation to a smaller size */
        bool upload_shrunk;  /* this round cut the share to upload_shrink_to */
        uint64_t upload_shrink_to;
        bool sidecar_exists;       /* the dirty record is on disk */
        uint64_t sidecar_seq;      /* records started */
        uint64_t sidecar_done_seq; /* the one in place */
        /* The record in place says "durable": the data it points at was synced before it. Any
         * change of the cache file first replaces such a record with one that is not. */
        bool sidecar_durable;
        bool sidecar_syncing;      /* the tick is writing a durable record of it */
        unsigned writes_in_flight; /* write()s between their check and their pwrite's end */
        bool trim_pending;         /* cut the cache file to size after those (fetch_done) */
        /* Reads replying from the cache file (spliced, no lock held): a reset of the cache
         * punches the holes of the old version's bytes only after them (punch_pending). */
        unsigned reads_in_flight;
        bool punch_pending;
        int64_t sidecar_written_ns; /* monotonic; when the record in place was written */
        size_t sidecar_len;         /* bytes of the record in place */
        bool sidecar_clean_on_disk; /* a record that says "clean" is in place (fs-record.c) */
        uint64_t sidecar_hash;      /* of its text with "durable 0" (fs-record.c, text_hash) */
        int sidecar_fd; /* the record in place, kept open while the file is (else -EBADF) */
        unsigned open_count;
        /* Opened for reading at least once: the kernel may hold its pages (write-only opens go
         * around the page cache, and what they write is dropped from it: fs-data.c). */
        bool kernel_cached;
        uint64_t next_seq_off; /* for readahead */
        FsWaiter *waiters;     /* reads/writes waiting for pieces, flushes for the upload */
        /* Renames, unlinks and chmods of this file (or onto it) that arrived while its Create
         * File was in flight (create_pending && uploading): the share may not have the file yet;
         * renames and unlinks that arrived while an upload round ran (its Put Ranges could land
         * after them). Run again, in order, once no upload round runs. */
        FsRetry *create_waiters;

        /* Upload (loop thread). */
        bool uploading;
        bool upload_queued;  /* waiting for a free upload slot (Fs.upload_queue) */
        bool upload_partial; /* this round left dirty pieces for the next */
        bool upload_create;  /* this round creates the file (create_pending) */
        /* Write-through (default mode): the round sends pieces as the writer moves past them
         * (below wt_limit), until it is turned into a whole upload by a flush or it runs dry. */
        bool upload_wt;
        bool upload_in_ranges; /* Create File / size answered: Put Ranges may go */
        bool upload_growing;   /* a Set File Properties growing the share's file is in flight */
        bool upload_grew;      /* one was answered: the Put Ranges' ETags may be older */
        bool upload_set_time;  /* the round's size request carries the last-write time */
        size_t upload_next;    /* the next piece the round may send: those below were sent */
        unsigned upload_ranges_in_flight;
        uint64_t upload_goal; /* the size the round gives the share's file */
        /* Created on the share by a write-through round: the share's last-write time is still
         * ours to set (Put Ranges keep it, the next whole upload sets it). */
        bool wt_created;
        uint64_t wt_next_off; /* where the last write ended (sequential writers) */
        size_t wt_limit;      /* pieces below it lie behind a sequential writer */
        Inode *upload_queue_next;
        unsigned upload_path_gen; /* path_gen when the round started */
        bool upload_again;
        uint64_t rounds_begun; /* whole upload rounds begun (a flush waits for one, FsWaiter) */
        bool upload_whole;     /* this round began whole (not write-through made whole later) */
        bool upload_covers;    /* no piece fetched from the share was cached when it began */
        unsigned upload_pending;
        unsigned upload_ranges; /* Put Ranges of this round */
        int upload_error;
        uint64_t upload_size;
        char upload_etag[REST_ETAG_MAX];
        void *async_timer; /* sd_event_source */
        /* Renames of this file, or onto it, on their way to the share: no upload round of it
         * starts meanwhile (its requests could reach a name the share is changing: a replaced
         * file's old bytes written into the renamed one, a source's to its old name). One asked
         * for meanwhile (upload_held) starts when the last of them ends. */
        unsigned renames_in_flight;
        bool upload_held;

        /* Directories: the names of the children on the share, as hashes (fs_path_hash of the
         * name), sorted; complete (every child's name is in it) when names_complete, trusted
         * until names_until_ns (monotonic; dir_timeout after this mount created the directory
         * or listed it). A name not in a trusted set is answered ENOENT without a request. */
        uint64_t *names;
        size_t n_names, names_alloc;
        bool names_complete;
        int64_t names_until_ns;

        Inode *next_by_ino, *next_by_path;
        /* List of inodes with a cache file, most recently used first (fs_cache_touch_locked). */
        Inode *state_prev, *state_next;
};

typedef struct InodeTable InodeTable;

int inode_table_new(InodeTable **ret);
/* Frees the table and every inode still in it. */
InodeTable *inode_table_free(InodeTable *t);
Inode *inode_table_get(InodeTable *t, uint64_t ino);
Inode *inode_table_find(InodeTable *t, const char *path);
/* Allocates an inode for path with the next number (or FS_ROOT_INO for the first). */
int inode_table_add(InodeTable *t, const char *path, bool is_dir, Inode **ret);
void inode_table_remove(InodeTable *t, Inode *i);
/* Unhashes i from the path index: it was deleted or replaced on the share. */
void inode_table_detach(InodeTable *t, Inode *i);
/* Changes i's path (and those of everything below it when it is a directory). An inode already
 * at new_path is unhashed from the path index first and returned in *ret_displaced (or NULL). */
int inode_table_rename(InodeTable *t, Inode *i, const char *new_path, Inode **ret_displaced);
size_t inode_table_size(const InodeTable *t);
void inode_free(Inode *i);

/* The name set of a directory (see Inode.names). Adding a name already there and removing one
 * that is not are no-ops; when adding fails for want of memory the set stops being complete. */
#define FS_DIR_NAMES_MAX 5000
bool inode_names_has(const Inode *d, const char *name);
void inode_names_add(Inode *d, const char *name);
void inode_names_remove(Inode *d, const char *name);
void inode_names_clear(Inode *d);

/* Pure helpers. Paths and names compare as on the share: case-insensitively, for every letter
 * (rest_name_casecmp()). */
uint64_t fs_path_hash(const char *path);
/* "a/b" + "c" = "a/b/c"; "" + "c" = "c". */
int fs_path_join(const char *dir, const char *name, char **ret);
/* Whether path is below (or equal to, with or_equal) prefix. */
bool fs_path_has_prefix(const char *path, const char *prefix, bool or_equal);
/* Where in path what lies below prefix starts (at its '/'; or its end, with or_equal and path
 * equal to prefix; path itself for the empty prefix, the root), or NULL when path is not below
 * prefix. The two spellings of prefix may differ in length. */
const char *fs_path_after_prefix(const char *path, const char *prefix, bool or_equal);
