/* SPDX-License-Identifier: MIT */
/* Uploads of dirty files to the share: upload rounds (Create File or sizes, then Put Ranges in
 * flight, then the ETag), write-through behind a sequential writer, the queue of files waiting
 * for an upload slot, rename holds, flush waiters and flush-all, flush/fsync/release, the
 * background tick (async write-back, retries, eviction; it wakes the durable thread of
 * fs-record.c) and the flush interface (fs_dirty_bytes_locked, fs_flush_wait). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "fs-internal.h"
#include "log.h"

#define P ((uint64_t)FS_PIECE_SIZE)
/* An upload keeps up to max_requests Put Ranges of its file in flight, sending the next piece
 * as one is answered (no barrier between pieces; one Get File Properties for the ETag at the
 * end); at most UPLOADS_MAX files upload at a time (the others queue), so that the calls in
 * flight stay well under REST_CALLS_MAX whatever is dirty. */
#define UPLOADS_MAX 64
/* Write-through (default mode): Put Ranges in flight per file; all write-through together takes
 * at most half of max_requests, the rest stays for reads and flushes. WT_SCAN: how far behind a
 * sequential writer a piece is looked for. */
#define WT_FILE_MAX 4
#define WT_SCAN 8
/* Write-through grows the share's file this far beyond what is written (zeros until the writer
 * gets there; the upload at close sets the exact size), so that it takes one Set File
 * Properties per 8 pieces, not one per piece. */
#define WT_GROW_AHEAD (8 * P)
#define TICK_USEC (250 * UINT64_C(1000))

/* ---- uploads ---- */

enum {
        UPLOAD_SHRINK, /* cut the share's stale bytes off before setting the final size */
        UPLOAD_SIZE,
        UPLOAD_CREATE,
        UPLOAD_RANGE,
        UPLOAD_PROPS,
        UPLOAD_GROW, /* the file grew while write-through ran: the share's file follows */
};

typedef struct UploadCall {
        Fs *fs;
        uint64_t ino;
        int phase;
        size_t piece;        /* UPLOAD_RANGE */
        bool wt;             /* a Put Range of write-through (Fs.wt_ranges_in_flight) */
        unsigned shrink_gen; /* Inode.shrink_gen when it was sent */
        uint64_t size;
        char *path;
} UploadCall;

static void upload_done(RestResult *r, void *userdata);

static int upload_submit_locked(Fs *fs, Inode *i, int phase, RestOp *op, size_t piece) {
        UploadCall *c = calloc(1, sizeof(*c));
        int r;

        if (!c || !(c->path = strdup(i->path))) {
                free(c);
                return -ENOMEM;
        }
        c->fs = fs;
        c->ino = i->ino;
        c->phase = phase;
        c->piece = piece;
        c->wt = phase == UPLOAD_RANGE && i->upload_wt;
        c->shrink_gen = i->shrink_gen;
        c->size = op->size;
        op->path = c->path;
        r = rest_client_submit(fs->rest, op, upload_done, c, NULL);
        if (r < 0) {
                free(c->path);
                free(c);
                return r;
        }
        i->upload_pending++;
        if (phase == UPLOAD_RANGE)
                i->upload_ranges_in_flight++;
        if (c->wt)
                fs->wt_ranges_in_flight++;
        return 0;
}

static void upload_finish_locked(Fs *fs, Inode *i, FsWaiter **replies);
static void flush_waiters_covered_locked(Inode *i, FsWaiter **replies);
static void upload_done_reply(Fs *fs, Inode *i, FsWaiter *replies);

/* Create File of the whole file: its size, its mode and, for a file created here, its
 * last-write time, in one request. */
static int upload_create_locked(Fs *fs, Inode *i) {
        char mode[16];
        RestMetadata md = {.name = (char *)"mode", .value = mode};
        RestOp op = {
                .type = REST_OP_CREATE_FILE,
                .set_size = true,
                .size = i->upload_size,
                .metadata = &md,
                .n_metadata = 1};

        (void)snprintf(mode, sizeof(mode), "%04o", (unsigned)(i->perm & FS_PERM_BITS));
        if (fs_mode_needs_hint(fs, i->perm))
                op.smb.attributes = REST_ATTR_ARCHIVE | REST_ATTR_NOT_CONTENT_INDEXED;
        if (i->upload_create)
                op.smb.last_write_ns = i->mtime_ns;
        return upload_submit_locked(fs, i, UPLOAD_CREATE, &op, SIZE_MAX);
}

/* Set File Properties of the file's size: upload_size, with the file's last-write time (that of
 * the truncation, or one set after it): a round that changes the size only sends no Put Range,
 * which would set the time of the upload (the time was preserved: `: > f`, or ftruncate() and
 * futimens(), left the share's file with its old time). Not in a write-through round, which
 * sets the time when it ends. */
static int upload_size_locked(Fs *fs, Inode *i) {
        RestOp op = {.type = REST_OP_SET_FILE_PROPERTIES, .set_size = true, .size = i->upload_size};

        if (!i->upload_wt)
                op.smb.last_write_ns = i->mtime_ns;
        return upload_submit_locked(fs, i, UPLOAD_SIZE, &op, SIZE_MAX);
}

/* Set File Properties: the share's file grows to upload_goal (the file grew while write-through
 * ran; write-through: WT_GROW_AHEAD beyond), with the last-write time when the round owes it
 * (upload_set_time). */
static int upload_grow_locked(Fs *fs, Inode *i) {
        RestOp op = {
                .type = REST_OP_SET_FILE_PROPERTIES,
                .set_size = true,
                .size = MIN(
                        MAX(i->upload_goal + (i->upload_wt ? WT_GROW_AHEAD : 0), i->upload_size),
                        REST_FILE_SIZE_MAX)};
        int r;

        if (i->upload_set_time)
                op.smb.last_write_ns = i->mtime_ns;
        r = upload_submit_locked(fs, i, UPLOAD_GROW, &op, SIZE_MAX);
        if (r >= 0) {
                i->upload_growing = true;
                i->upload_set_time = false;
        }
        return r;
}

/* Sends the round's next Put Ranges, in the order of the pieces, while the file has fewer than
 * max_requests in flight (write-through: WT_FILE_MAX, and the global write-through budget);
 * upload_done() sends the next as one is answered. A piece goes when the round took it
 * (PIECE_UPLOADING at its start or when a flush turned it into a whole upload), or, in a
 * write-through round, when it is dirty and the writer has moved past it (below wt_limit). A
 * piece beyond the share's end waits for a Set File Properties growing the file. The number of
 * requests sent, or the first error. */
static int upload_fill_locked(Fs *fs, Inode *i) {
        unsigned window = i->upload_wt ? WT_FILE_MAX : MAX(fs->o->max_requests, 1u);
        size_t stop = i->upload_wt ? MIN(i->wt_limit, i->n_pieces) : i->n_pieces;
        int r, n = 0;

        if (!i->upload_in_ranges || i->upload_error < 0)
                return 0;
        if (i->path_gen != i->upload_path_gen) {
                /* Renamed (a parent directory): the rest goes under the new path, next round. */
                i->upload_partial = true;
                return 0;
        }
        /* A rename or unlink waits for the round's end, a truncation below the share's end for
         * the next round, and so does a flush that could not make the round whole (the share's
         * file is grown ahead, upload_convert_locked): write-through takes no more pieces. Else
         * a writer faster than the uploads would keep the round going, and the flush waiting
         * for the next round, until it stopped writing. */
        if (i->upload_wt && (i->create_waiters || i->shrunk || i->upload_again))
                return 0;
        if (i->upload_wt && i->size > i->upload_goal)
                i->upload_goal = i->size;
        if (i->upload_set_time && !i->upload_growing) {
                r = upload_grow_locked(fs, i);
                if (r < 0)
                        return r;
                n++;
        }
        for (; i->upload_next < stop; i->upload_next++) {
                size_t k = i->upload_next;
                uint64_t start = (uint64_t)k * P, end = MIN(i->upload_goal, i->size), len;
                uint8_t f = i->pieces[k];

                if (i->upload_wt ? (f & (PIECE_DIRTY | PIECE_UPLOADING)) != PIECE_DIRTY
                                 : !(f & PIECE_UPLOADING))
                        continue;
                if (start >= end) {
                        if (!i->upload_wt)
                                fs_piece_set_locked(fs, i, k, 0, PIECE_UPLOADING);
                        continue;
                }
                len = MIN(P, end - start);
                if (start + len > i->upload_size) {
                        if (!i->upload_growing) {
                                r = upload_grow_locked(fs, i);
                                if (r < 0)
                                        return r;
                                n++;
                        }
                        break;
                }
                if (i->upload_ranges_in_flight >= window ||
                    (i->upload_wt && fs->wt_ranges_in_flight >= MAX(fs->o->max_requests / 2, 1u)))
                        break;
                RestOp op = {
                        .type = REST_OP_PUT_RANGE,
                        .offset = start,
                        .length = len,
                        .fd = i->cache_fd,
                        .fd_offset = start,
                        /* Create File (or a write-through round's) set the file's time: keep it. */
                        .preserve_last_write = i->upload_create || i->wt_created};
                r = upload_submit_locked(fs, i, UPLOAD_RANGE, &op, k);
                if (r < 0)
                        return r;
                /* Sent as it is when the Put Range reads it: written again from now on, it is
                 * dirty again and sent again. Unless the range stops short of what the file
                 * holds now (it grew since the round took the piece): that part goes next. */
                fs_piece_set_locked(
                        fs, i, k, PIECE_UPLOADING,
                        start + len >= MIN(start + P, i->size) ? PIECE_DIRTY : 0);
                n++;
                i->upload_ranges++;
        }
        return n;
}

/* Create File or the size is answered (or was not needed): the Put Ranges may go. */
static int upload_ranges_start_locked(Fs *fs, Inode *i) {
        int r;

        i->upload_in_ranges = true;
        r = upload_fill_locked(fs, i);
        if (r == 0 && !i->upload_create && !i->upload_wt) {
                /* Only the size changed: learn the new ETag (Create File's answer has it). */
                RestOp op = {.type = REST_OP_GET_FILE_PROPERTIES};
                r = upload_submit_locked(fs, i, UPLOAD_PROPS, &op, SIZE_MAX);
                if (r < 0)
                        return r;
                r = 1;
        }
        return r;
}

typedef struct FinishLater {
        Fs *fs;
        uint64_t ino;
} FinishLater;

static void upload_finish_later(void *userdata, bool cancelled) {
        FinishLater *f = userdata;
        Fs *fs = f->fs;
        FsWaiter *replies = NULL;
        FsRetry *retries = NULL;
        Inode *i;

        /* Run by fs_free() after the REST client is gone: no round may start (its submit would
         * meet no client) and no request may be answered (the session has ended). The pieces
         * stay marked as being uploaded, which the record on disk counts as dirty. */
        if (cancelled) {
                free(f);
                return;
        }
        fs_lock(fs);
        i = inode_table_get(fs->inodes, f->ino);
        if (i && i->uploading && i->upload_pending == 0)
                upload_finish_locked(fs, i, &replies);
        if (i)
                retries = fs_create_waiters_take_locked(i);
        fs_cap_recheck_later_locked(fs); /* as upload_done() does */
        fs_unlock(fs);
        upload_done_reply(fs, NULL, replies);
        fs_create_waiters_run(retries);
        free(f);
}

/* Nothing could be submitted: the round ends on the I/O thread, where replies can be made. */
static void upload_fail_locked(Fs *fs, Inode *i, int error) {
        FinishLater *f;

        if (!i->upload_error)
                i->upload_error = error;
        if (i->upload_pending > 0)
                return;
        f = malloc(sizeof(*f));
        if (f) {
                *f = (FinishLater){.fs = fs, .ino = i->ino};
                if (fs_post(fs, upload_finish_later, f) >= 0)
                        return;
                free(f);
        }
        /* Not even that: drop the round; the data stays dirty, the tick retries. */
        for (size_t k = 0; k < i->n_pieces; k++)
                if (i->pieces[k] & PIECE_UPLOADING)
                        fs_piece_set_locked(fs, i, k, PIECE_DIRTY, PIECE_UPLOADING);
        i->uploading = false;
        fs->uploads_in_flight--;
}

/* Starts a round: the file's Create File, or its shrink and size, then its Put Ranges. A whole
 * upload takes every dirty piece now; a write-through round (wt) takes pieces as the writer moves
 * past them. */
static void upload_begin_locked(Fs *fs, Inode *i, bool wt) {
        int r;

        i->uploading = true;
        i->upload_whole = !wt;
        if (!wt)
                i->rounds_begun++;
        i->upload_path_gen = i->path_gen;
        i->upload_again = false;
        i->upload_error = 0;
        i->upload_pending = 0;
        i->upload_ranges = 0;
        i->upload_ranges_in_flight = 0;
        i->upload_next = 0;
        i->upload_in_ranges = false;
        i->upload_wt = wt;
        i->upload_growing = i->upload_grew = i->upload_set_time = false;
        i->upload_size = i->upload_goal = i->size;
        i->upload_etag[0] = '\0';
        fs->uploads_in_flight++;
        i->upload_partial = false;
        i->upload_create = i->create_pending;
        if (wt && i->create_pending)
                i->wt_created = true;
        /* No piece cached whose bytes came from the share (the others were written here): the
         * ETag the round learns names what the cache holds (cache_mixed). */
        i->upload_covers = i->n_fetched == 0;
        /* The round takes every dirty piece; its window sends them (upload_fill_locked). */
        for (size_t k = 0; !wt && k < i->n_pieces; k++)
                if (i->pieces[k] & PIECE_DIRTY)
                        fs_piece_set_locked(fs, i, k, PIECE_UPLOADING, PIECE_DIRTY);
        /* A shrink at or above the final size is done by setting the size itself. */
        i->upload_shrunk = i->shrunk && i->shrink_to < i->upload_size;
        i->upload_shrink_to = i->shrink_to;
        i->shrunk = false;
        if (wt)
                /* Ahead of the writer (see WT_GROW_AHEAD), not past the share's limit (the
                 * request would be refused); the upload at close sets the size. */
                i->upload_size = MIN(i->upload_size + WT_GROW_AHEAD, REST_FILE_SIZE_MAX);
        if (i->upload_create) {
                i->size_dirty = false;
                i->upload_shrunk = false;
                r = upload_create_locked(fs, i);
        } else if (
                wt && !i->size_dirty && !i->upload_shrunk &&
                i->remote_size >= MIN(i->size, (uint64_t)i->wt_limit * P)) {
                /* The share's file (grown ahead by the last round) holds the pieces to send. */
                i->upload_size = i->remote_size;
                r = upload_ranges_start_locked(fs, i);
        } else if (i->upload_shrunk) {
                RestOp op = {
                        .type = REST_OP_SET_FILE_PROPERTIES,
                        .set_size = true,
                        .size = i->upload_shrink_to};
                i->size_dirty = false;
                r = upload_submit_locked(fs, i, UPLOAD_SHRINK, &op, SIZE_MAX);
        } else if (i->size_dirty || i->size != i->remote_size || (i->wt_created && !wt)) {
                i->size_dirty = false;
                r = upload_size_locked(fs, i);
        } else
                r = upload_ranges_start_locked(fs, i);
        if (r < 0 || i->upload_pending == 0)
                upload_fail_locked(fs, i, r); /* ends the round (with 0: nothing to send) */
}

/* A flush (or the dirty cap) while a write-through round runs: the round becomes a whole upload
 * (every dirty piece it has not passed, the file's whole size, the last-write time), so that
 * close() waits for the tail only; pieces it passed that are dirty again go in the next round. */
static void upload_convert_locked(Fs *fs, Inode *i) {
        int r;

        if (i->size < i->upload_size || i->shrunk) {
                /* Truncated, or the share's file grown ahead of the writer: the next round, a
                 * whole one, cuts or sets the share's size first. This one sends what it has in
                 * flight and takes nothing more (upload_fill_locked), so that it ends soon. */
                i->upload_again = true;
                return;
        }
        i->upload_wt = false;
        i->upload_goal = i->size;
        i->upload_set_time = i->wt_created;
        for (size_t k = 0; k < i->n_pieces; k++) {
                if (!(i->pieces[k] & PIECE_DIRTY))
                        continue;
                if (k < i->upload_next || (i->pieces[k] & PIECE_UPLOADING))
                        i->upload_again = true;
                else
                        fs_piece_set_locked(fs, i, k, PIECE_UPLOADING, PIECE_DIRTY);
        }
        r = upload_fill_locked(fs, i);
        if (r < 0 && !i->upload_error)
                i->upload_error = r;
}

void fs_upload_start_locked(Fs *fs, Inode *i) {
        if (i->cache_fd < 0 || i->is_dir)
                return;
        if (i->uploading) {
                if (i->upload_wt)
                        upload_convert_locked(fs, i);
                else
                        i->upload_again = true;
                return;
        }
        if (i->unlinked) {
                /* Deleted or replaced on the share: its name may belong to another file now. */
                fs_discard_dirty_locked(fs, i);
                return;
        }
        if (!fs_inode_is_dirty(i))
                return;
        if (i->renames_in_flight > 0) {
                i->upload_held = true; /* started by fs_rename_hold_end_locked() */
                return;
        }
        if (fs->uploads_in_flight >= UPLOADS_MAX) {
                if (!i->upload_queued) {
                        i->upload_queued = true;
                        i->upload_queue_next = NULL;
                        if (fs->upload_queue_tail)
                                fs->upload_queue_tail->upload_queue_next = i;
                        else
                                fs->upload_queue = i;
                        fs->upload_queue_tail = i;
                }
                return;
        }
        upload_begin_locked(fs, i, false);
}

/* Write-through (default mode): a sequential writer has moved past the pieces below the one off
 * lies in: those dirty go to the share now (a round of their own, or the one running), so that
 * close() waits only for the tail. Lock held; called by write_commit(). */
void fs_write_through_locked(Fs *fs, Inode *i, uint64_t off, uint64_t end) {
        size_t limit = (size_t)(off / P);
        bool seq = off == i->wt_next_off;
        int r;

        i->wt_next_off = end;
        /* Nor while a rename of it, or onto it, is on its way to the share (its Put Ranges could
         * land in the file that replaced it there): its end starts the upload. */
        if (fs->o->writeback_async || !seq || limit == 0 || i->open_count == 0 || i->unlinked ||
            i->shrunk || i->create_waiters || i->renames_in_flight > 0)
                return;
        i->wt_limit = MIN(limit, i->n_pieces);
        if (i->uploading) {
                if (i->upload_wt) {
                        r = upload_fill_locked(fs, i);
                        if (r < 0 && !i->upload_error)
                                i->upload_error = r;
                }
                return;
        }
        if (i->upload_queued || fs->uploads_in_flight >= UPLOADS_MAX ||
            fs->wt_ranges_in_flight >= MAX(fs->o->max_requests / 2, 1u))
                return;
        for (size_t k = limit > WT_SCAN ? limit - WT_SCAN : 0; k < i->wt_limit; k++)
                if ((i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)) == PIECE_DIRTY) {
                        upload_begin_locked(fs, i, true);
                        return;
                }
}

bool fs_create_in_flight(const Inode *i) {
        return i && i->create_pending && i->uploading;
}

bool fs_upload_in_flight(const Inode *i) {
        return i && i->uploading;
}

int fs_retry_append(FsRetry **list, void (*fn)(void *userdata), void *userdata) {
        FsRetry *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->fn = fn;
        r->userdata = userdata;
        while (*list)
                list = &(*list)->next;
        *list = r;
        return 0;
}

int fs_create_wait_locked(Inode *i, void (*fn)(void *userdata), void *userdata) {
        return fs_retry_append(&i->create_waiters, fn, userdata);
}

FsRetry *fs_create_waiters_take_locked(Inode *i) {
        if (fs_upload_in_flight(i))
                return NULL;
        return TAKE_PTR(i->create_waiters);
}

void fs_create_waiters_run(FsRetry *list) {
        while (list) {
                FsRetry *r = list;
                list = r->next;
                r->fn(r->userdata);
                free(r);
        }
}

/* i's upload did not start (nothing left to upload, or its data was dropped: deleted or
 * replaced; or not even the submission worked): the flushes waiting for it are answered, 0 when
 * it is clean, EIO when it is still dirty. */
static void flush_waiters_end_locked(Inode *i, FsWaiter **replies) {
        for (FsWaiter **p = &i->waiters; *p;) {
                FsWaiter *w = *p;
                if (w->kind != FS_WAIT_FLUSH) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                w->off = fs_inode_is_dirty(i) ? EIO : 0;
                w->next = *replies;
                *replies = w;
        }
}

/* Starts queued uploads while there is room. A file deleted or replaced while it waited (unlink,
 * rename over it) has no upload left to start: the close() or fsync() waiting for it is
 * answered here, as nothing else would answer it. */
static void upload_kick_queue_locked(Fs *fs, FsWaiter **replies) {
        while (fs->upload_queue && fs->uploads_in_flight < UPLOADS_MAX) {
                Inode *i = fs->upload_queue;
                fs->upload_queue = i->upload_queue_next;
                if (!fs->upload_queue)
                        fs->upload_queue_tail = NULL;
                i->upload_queue_next = NULL;
                i->upload_queued = false;
                fs_upload_start_locked(fs, i);
                if (!i->uploading && !i->upload_queued && !i->upload_held)
                        flush_waiters_end_locked(i, replies);
        }
}

void fs_upload_all_locked(Fs *fs) {
        for (Inode *i = fs->state_list; i; i = i->state_next)
                if (fs_inode_is_dirty(i))
                        fs_upload_start_locked(fs, i);
}

/* Whether any file holds unsynced data or is being uploaded. Asked at every upload's end while a
 * flush waits: a file with dirty pieces (Fs.dirty_files, kept as pieces change) answers it
 * without a walk over every cached file, which made a flush of n small files O(n^2) (a quarter
 * of the I/O thread's time in a flush of 10,000). */
static bool any_dirty_locked(Fs *fs) {
        if (fs->dirty_files > 0)
                return true;
        for (Inode *i = fs->state_list; i; i = i->state_next)
                if (fs_inode_is_dirty(i) || i->uploading)
                        return true;
        return false;
}

/* Moves the flush-all waiters that are done to *done: all of them when nothing is dirty (their
 * error 0), those that saw an upload fail since they started (error EIO). */
void fs_flush_all_check_locked(Fs *fs, FsFlushAll **done) {
        bool dirty;

        if (!fs->flush_all)
                return;
        dirty = any_dirty_locked(fs);

        for (FsFlushAll **p = &fs->flush_all; *p;) {
                FsFlushAll *f = *p;
                if (dirty && fs->upload_failures == f->failures_at_start) {
                        p = &f->next;
                        continue;
                }
                *p = f->next;
                f->error = dirty ? -EIO : 0;
                f->next = *done;
                *done = f;
        }
}

void fs_reply_flush_all(FsFlushAll *list, int error) {
        while (list) {
                FsFlushAll *f = list;
                list = f->next;
                f->timer = sd_event_source_disable_unref(f->timer);
                fuse_reply_err(f->req, -(error ? error : f->error));
                free(f);
        }
}

/* The mount stops (its I/O thread has ended, so no upload and no timer moves on): a flush-all
 * still waiting is answered now, while the kernel's connection still stands, not left to the
 * unmount (its caller got ECONNABORTED, and the request and its timer were never released).
 * 0 if nothing is dirty any more, EIO if an upload failed since it started, else ECANCELED:
 * what is left stays in the cache for the next mount. */
void fs_flush_all_cancel(Fs *fs) {
        FsFlushAll *done = NULL, *left;

        fs_lock(fs);
        fs_flush_all_check_locked(fs, &done);
        left = fs->flush_all;
        fs->flush_all = NULL;
        fs_unlock(fs);
        fs_reply_flush_all(done, 0);
        fs_reply_flush_all(left, -ECANCELED);
}

static void upload_finish_locked(Fs *fs, Inode *i, FsWaiter **replies) {
        int err = i->upload_error;
        bool moved, was_wt = i->upload_wt;

        i->uploading = false;
        i->upload_wt = false;
        fs->uploads_in_flight--;
        if (err == -ENOENT && i->unlinked)
                err = 0; /* deleted meanwhile: nothing left to upload */
        /* Left taken: failed, or never sent (an error or a rename stopped the round). A piece
         * whose Put Range succeeded was released when it was answered. */
        for (size_t k = 0; k < i->n_pieces; k++)
                if (i->pieces[k] & PIECE_UPLOADING) {
                        fs_piece_set_locked(
                                fs, i, k, i->unlinked ? 0 : PIECE_DIRTY, PIECE_UPLOADING);
                        if (err == 0 && !i->unlinked)
                                i->upload_partial = true;
                }
        /* Renamed while uploading: go again under the new path. */
        moved = err == -ENOENT && i->upload_path_gen != i->path_gen;
        if (err < 0 && !i->unlinked) {
                if (i->upload_shrunk) { /* not cut yet: the next round must */
                        i->shrink_to = i->shrunk ? MIN(i->shrink_to, i->upload_shrink_to)
                                                 : i->upload_shrink_to;
                        i->shrunk = true;
                }
                /* Its Create File or sizes, and its Put Ranges, may have reached the share
                 * (answered, or lost on the way back): the share's file may be as long as the
                 * round made it, holding this file's bytes up to there. A truncation below that
                 * must cut them off (shrunk, fs_truncate_local_locked), not only set the size. */
                i->remote_size = MAX(i->remote_size, i->upload_size);
                i->size_dirty = true;
                i->dirty_since_ns = fs_now();
                if (!moved) {
                        fs->last_upload_error = err;
                        fs->upload_failures++;
                        log_error_errno(
                                err,
                                "Upload of /%s failed; the data stays in the cache (%s) and is retried: %m",
                                i->path, fs->cache_path);
                }
                fs_sidecar_update_locked(fs, i);
        } else if (err == 0) {
                i->remote_size = i->upload_size;
                if (i->upload_etag[0])
                        (void)snprintf(i->cache_etag, sizeof(i->cache_etag), "%s", i->upload_etag);
                /* That ETag is of the share's whole file: with pieces cached that this round did
                 * not send, it also covers what another VM changed in them since they were
                 * fetched. Kept as current, those stale pieces were served at the next open, and
                 * a write into one uploaded them over the other VM's bytes. */
                if (!i->upload_covers)
                        i->cache_mixed = true;
                fs->last_upload_error = 0;
                /* A write-through grow answered after a flush turned the round into a whole
                 * upload leaves the share's file longer than this one: set it again. */
                if (!was_wt && !i->unlinked && i->remote_size != i->size)
                        i->size_dirty = true;
                if (!was_wt && !fs_inode_is_dirty(i))
                        i->wt_created = false; /* its time is set */
                if (!fs_inode_is_dirty(i))
                        fs_sidecar_mark_clean_locked(fs, i);
        }
        fs->upload_generation++;
        (void)pthread_cond_broadcast(&fs->cond);

        bool waiters = false;
        for (FsWaiter *w = i->waiters; w; w = w->next)
                if (w->kind == FS_WAIT_FLUSH)
                        waiters = true;
        if ((err == 0 || moved) && fs_inode_is_dirty(i) && !i->unlinked &&
            (waiters || fs->flush_all || (!fs->o->writeback_async && !was_wt) || i->upload_again ||
             moved || i->upload_partial)) {
                /* Written to meanwhile: the flushes this round covered are answered, the others
                 * wait for the next (a writer that keeps the file dirty holds no close() off).
                 * Not after a write-through round made whole: the share's file may be longer
                 * (grown ahead) until the next round sets its size. */
                if (err == 0 && i->upload_whole && !i->upload_partial)
                        flush_waiters_covered_locked(i, replies);
                fs_upload_start_locked(fs, i);
                if (i->uploading || i->upload_queued)
                        return;
                /* Not started: not even its submission worked (a rename holding it off cannot
                 * be, as renames wait for the round's end). The data stays dirty and the tick
                 * retries; the flushes still waiting fail, as in flush_waiters_end_locked(),
                 * rather than hear 0 with their data not on the share. */
                if (err == 0)
                        err = -EIO;
        }
        upload_kick_queue_locked(fs, replies);
        for (FsWaiter **p = &i->waiters; *p;) {
                FsWaiter *w = *p;
                if (w->kind != FS_WAIT_FLUSH) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                w->off = (uint64_t)(err == -ENOENT ? EIO : -err);
                w->next = *replies;
                *replies = w;
        }
}

/* The flushes that i's whole round, just ended well, answers: those it began after. Lock held. */
static void flush_waiters_covered_locked(Inode *i, FsWaiter **replies) {
        for (FsWaiter **p = &i->waiters; *p;) {
                FsWaiter *w = *p;
                if (w->kind != FS_WAIT_FLUSH || w->round > i->rounds_begun) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                w->off = 0;
                w->next = *replies;
                *replies = w;
        }
}

static void upload_done_reply(Fs *fs, Inode *unused, FsWaiter *replies) {
        while (replies) {
                FsWaiter *w = replies;
                replies = w->next;
                fuse_reply_err(w->req, (int)w->off);
                fs_waiter_free(w);
        }
}

static void upload_done(RestResult *r, void *userdata) {
        UploadCall *c = userdata;
        Fs *fs = c->fs;
        FsWaiter *replies = NULL, *cap = NULL;
        FsFlushAll *flushed = NULL;
        FsRetry *retries = NULL;
        int cap_err = 0;
        bool cut;
        Inode *i;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, c->ino);
        /* The file was cut short while its Put Range read it (ftruncate() from another
         * descriptor, or behind a write-through round): not a failure. The piece stays taken,
         * so the round's end marks it dirty again, and the next round sends what is left of it
         * and cuts the share's file. */
        cut = c->phase == UPLOAD_RANGE && r->error == -ENODATA && i &&
              i->shrink_gen != c->shrink_gen;
        fs_note_result_locked(
                fs, r,
                c->phase == UPLOAD_RANGE    ? "Put Range"
                : c->phase == UPLOAD_PROPS  ? "Get File Properties"
                : c->phase == UPLOAD_CREATE ? "Create File"
                                            : "Set File Properties",
                c->path, cut ? -ENODATA : 0);
        if (c->wt)
                fs->wt_ranges_in_flight--;
        /* The share takes uploads again: writers over the cap wait for them, not fail with the
         * error of a round that failed before (fs_cap_waiters_take_locked()). */
        if (r->error == 0)
                fs->last_upload_error = 0;
        if (i && i->uploading) {
                i->upload_pending--;
                if (c->phase == UPLOAD_RANGE)
                        i->upload_ranges_in_flight--;
                if (c->phase == UPLOAD_GROW)
                        i->upload_growing = false;
                if (r->error < 0 && (c->phase == UPLOAD_SIZE || c->phase == UPLOAD_SHRINK) &&
                    r->error == -ENOENT && !i->unlinked && streq(c->path, i->path)) {
                        /* Gone from the share (recovered data of a file deleted elsewhere, or a
                         * file removed behind our back): create it again, then write. */
                        if (upload_create_locked(fs, i) < 0)
                                i->upload_error = -ENOMEM;
                } else if (r->error < 0) {
                        if (!i->upload_error && !cut)
                                i->upload_error = r->error;
                } else if (c->phase == UPLOAD_SHRINK) {
                        int k;

                        i->upload_shrunk = false; /* the stale bytes are gone */
                        i->remote_size = i->upload_shrink_to;
                        k = upload_size_locked(fs, i);
                        if (k < 0 && !i->upload_error)
                                i->upload_error = k;
                } else if (c->phase == UPLOAD_GROW) {
                        i->upload_grew = true;
                        i->upload_size = MAX(i->upload_size, c->size);
                } else if (c->phase == UPLOAD_SIZE || c->phase == UPLOAD_CREATE) {
                        int k;
                        if (c->phase == UPLOAD_CREATE) {
                                /* On the share now; its ETag holds until a Put Range runs. */
                                i->create_pending = false;
                                if (streq(c->path, i->path))
                                        fs_confirm_parents_locked(fs, i->path);
                                (void)snprintf(
                                        i->upload_etag, sizeof(i->upload_etag), "%s",
                                        r->props->etag);
                                (void)snprintf(i->etag, sizeof(i->etag), "%s", r->props->etag);
                                if (r->props->has_attributes) {
                                        i->has_attributes = true;
                                        i->attributes = r->props->attributes;
                                }
                        }
                        k = upload_ranges_start_locked(fs, i);
                        if (k < 0 && !i->upload_error)
                                i->upload_error = k;
                } else if (c->phase == UPLOAD_PROPS || c->phase == UPLOAD_RANGE) {
                        (void)snprintf(
                                i->upload_etag, sizeof(i->upload_etag), "%s", r->props->etag);
                        (void)snprintf(i->etag, sizeof(i->etag), "%s", r->props->etag);
                }
                if (c->phase == UPLOAD_RANGE && r->error == 0 && c->piece < i->n_pieces)
                        /* On the share; dirty again if written meanwhile (then sent again). */
                        fs_piece_set_locked(fs, i, c->piece, 0, PIECE_UPLOADING);
                if (c->phase == UPLOAD_RANGE || c->phase == UPLOAD_GROW) {
                        int k = upload_fill_locked(fs, i);
                        if (k < 0 && !i->upload_error)
                                i->upload_error = k;
                }
                if (i->upload_pending == 0) {
                        /* One Put Range: its answer carries the file's final ETag. Several ran
                         * in parallel: which answered last is not which the service ran last. */
                        bool etag = i->upload_error == 0 && c->phase != UPLOAD_PROPS &&
                                    (i->upload_ranges > 1 || i->upload_grew);
                        if (etag && i->upload_wt && fs_inode_is_dirty(i)) {
                                /* Write-through, the tail to come: its upload learns it. */
                                etag = false;
                                i->upload_etag[0] = '\0';
                        }
                        if (etag) {
                                RestOp op = {.type = REST_OP_GET_FILE_PROPERTIES};
                                if (upload_submit_locked(fs, i, UPLOAD_PROPS, &op, SIZE_MAX) >= 0)
                                        goto out;
                        }
                        upload_finish_locked(fs, i, &replies);
                }
        }
out:
        if (i)
                retries = fs_create_waiters_take_locked(i);
        if (fs->flush_all)
                fs_flush_all_check_locked(fs, &flushed);
        cap = fs_cap_waiters_take_locked(fs, &cap_err);
        if (i)
                fs_cache_evict_locked(fs);
        fs_unlock(fs);
        free(c->path);
        free(c);
        upload_done_reply(fs, NULL, replies);
        fs_reply_flush_all(flushed, 0);
        fs_create_waiters_run(retries);
        fs_cap_waiters_run(fs, cap, cap_err);
}

static void flush_all_check_later(void *userdata, bool cancelled) {
        Fs *fs = userdata;
        FsFlushAll *done = NULL;

        if (cancelled)
                return;
        fs_lock(fs);
        fs->flush_all_check_posted = false;
        fs_flush_all_check_locked(fs, &done);
        fs_unlock(fs);
        fs_reply_flush_all(done, 0);
}

void fs_flush_all_check_later_locked(Fs *fs) {
        if (!fs->flush_all || fs->flush_all_check_posted)
                return;
        if (fs_post(fs, flush_all_check_later, fs) >= 0)
                fs->flush_all_check_posted = true;
}

void fs_rename_hold_locked(Inode *i) {
        if (i)
                i->renames_in_flight++;
}

void fs_rename_hold_end_locked(Fs *fs, Inode *i, FsWaiter **replies) {
        if (!i)
                return;
        assert(i->renames_in_flight > 0);
        if (--i->renames_in_flight > 0 || !i->upload_held)
                return;
        i->upload_held = false;
        fs_upload_start_locked(fs, i);
        if (i->uploading || i->upload_queued)
                return;
        /* Nothing left to upload (replaced by the rename: its data was dropped). */
        flush_waiters_end_locked(i, replies);
        fs_flush_all_check_later_locked(fs);
}

void fs_flush_waiters_reply(FsWaiter *replies) {
        upload_done_reply(NULL, NULL, replies);
}

/* ---- flush, fsync, release ---- */

static void sync_upload(fuse_req_t req, fuse_ino_t ino) {
        Fs *fs = fs_of(req);
        FsWaiter *w;
        Inode *i;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || (!fs_inode_is_dirty(i) && !i->uploading)) {
                fs_unlock(fs);
                fuse_reply_err(req, 0);
                return;
        }
        w = calloc(1, sizeof(*w));
        if (!w) {
                fs_unlock(fs);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        *w = (FsWaiter){.kind = FS_WAIT_FLUSH, .req = req, .ino = ino, .next = i->waiters};
        i->waiters = w;
        uint64_t begun = i->rounds_begun;
        fs_upload_start_locked(fs, i);
        /* Covered by the round under way when it began just now (it took everything dirty), else
         * by the next whole one. */
        w->round = i->uploading && i->rounds_begun != begun ? i->rounds_begun : i->rounds_begun + 1;
        if (!i->uploading && !i->upload_queued && !i->upload_held) {
                /* Nothing to do after all (a deleted file's data is dropped), or not even the
                 * submission worked (the data stays dirty): answer now. */
                int err = fs_inode_is_dirty(i) ? EIO : 0;
                i->waiters = w->next;
                fs_unlock(fs);
                free(w);
                fuse_reply_err(req, err);
                return;
        }
        fs_unlock(fs);
}

void fs_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        if (fs->o->writeback_async) {
                fuse_reply_err(req, 0); /* uploaded within async_delay by the tick */
                return;
        }
        sync_upload(req, ino);
}

void fs_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
        sync_upload(req, ino);
}

void fs_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        Inode *i;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (i) {
                assert(i->open_count > 0);
                if (--i->open_count == 0)
                        fs_sidecar_close_locked(i); /* kept open while the file is */
                fs_cache_touch_locked(fs, i);
                fs_inode_unref_locked(fs, i);
                fs_cache_evict_locked(fs);
        }
        fs_unlock(fs);
        fuse_reply_err(req, 0);
}

/* ---- background tick: async write-back, retries of failed uploads, eviction ---- */

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Fs *fs = userdata;
        int64_t now = fs_now(), delay = (int64_t)fs->o->async_delay_ms * INT64_C(1000000);

        fs_lock(fs);
        for (Inode *i = fs->state_list, *next; i; i = next) {
                next = i->state_next;
                if (!fs_inode_is_dirty(i) || i->uploading)
                        continue;
                if (!fs->o->writeback_async && i->open_count > 0)
                        continue;
                /* Retries of failed uploads back off to at least 5 s. */
                if (now - i->dirty_since_ns <
                    (fs->o->writeback_async ? delay : MAX(delay, 5 * INT64_C(1000000000))))
                        continue;
                fs_upload_start_locked(fs, i);
                /* Deleted while open and closed since (writeback=async): its data was dropped
                 * just now, and the kernel may have forgotten it while it was dirty. */
                if (i->unlinked)
                        fs_inode_maybe_free_locked(fs, i);
        }
        fs_cache_evict_locked(fs);
        fs->durable_kick = true; /* the durable thread syncs, off this thread */
        (void)pthread_cond_signal(&fs->durable_cond);
        fs_unlock(fs);
        (void)sd_event_source_set_time_relative(s, TICK_USEC);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

void fs_tick_start(Fs *fs) {
        int r = sd_event_add_time_relative(
                fs->event, &fs->tick, CLOCK_MONOTONIC, TICK_USEC, 50 * 1000, on_tick, fs);
        if (r < 0)
                log_warning_errno(
                        r, "Cannot start the write-back timer (background uploads off): %m");
}

/* ---- the flush interface ---- */

uint64_t fs_dirty_bytes_locked(Fs *fs, unsigned *ret_files) {
        uint64_t bytes = 0;
        unsigned files = 0;

        for (Inode *i = fs->state_list; i; i = i->state_next) {
                if (!fs_inode_is_dirty(i) && !i->uploading)
                        continue;
                files++;
                for (size_t k = 0; k < i->n_pieces; k++) {
                        uint64_t start = (uint64_t)k * P;
                        if ((i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)) && start < i->size)
                                bytes += MIN(P, i->size - start);
                }
        }
        if (ret_files)
                *ret_files = files;
        return bytes;
}

int fs_flush_wait(Fs *fs, uint64_t timeout_ms) {
        struct timespec ts;
        int r = 0;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(timeout_ms / 1000);
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        fs_lock(fs);
        uint64_t failures = fs->upload_failures;
        fs_upload_all_locked(fs);
        while (any_dirty_locked(fs)) {
                if (fs->upload_failures != failures) {
                        r = fs->last_upload_error < 0 ? fs->last_upload_error : -EIO;
                        break;
                }
                if (pthread_cond_timedwait(&fs->cond, &fs->lock, &ts) == ETIMEDOUT) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        fs_unlock(fs);
        return r;
}
