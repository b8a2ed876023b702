/* SPDX-License-Identifier: MIT */
/* The data path: one cache file per share file under the per-mount cache directory, filled in
 * FS_PIECE_SIZE pieces by range GETs; writes land in the cache file and mark pieces dirty; a
 * dirty record ("sidecar", <id>.dirty) is written (not synced) before a write that dirties a new
 * piece is acknowledged, so a restarted mount finds and uploads what a crash of azfilesfs left
 * behind (the kernel keeps both). The record names the boot it was written in; the tick wakes
 * a thread of its own that makes records durable in the background (one syncfs() for the cache
 * files and the records, then "durable 1"; never on the I/O thread, whose requests a slow disk
 * would stall). After a reboot, a record that is not durable may point at data the kernel never
 * wrote: its bytes go to a new name beside the file, never over it (recover_one). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "fs-internal.h"
#include "log.h"
#include "strbuf.h"
#include "url-util.h"

#define P ((uint64_t)FS_PIECE_SIZE)
#define READAHEAD_PIECES 4
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
#define SIDECAR_MAX (4u * 1024u * 1024u)
/* Records made durable per tick, at most; those of a file open for writing only once they are
 * DURABLE_OPEN_NS old (a file being written is not synced at every tick). */
#define DURABLE_BATCH_MAX 256
#define DURABLE_OPEN_NS (5 * INT64_C(1000000000))
#define RECOVERED_SUFFIX ".azfilesfs-recovered-"
#define XATTR_DIRTY "user.azfilesfs.dirty_bytes"
#define XATTR_STATS "user.azfilesfs.stats"
#define XATTR_FLUSH "user.azfilesfs.flush"
#define XATTR_RECLAIM "user.azfilesfs.reclaim"

static int64_t realtime_ns(void) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static Fs *fs_of(fuse_req_t req) {
        return fuse_req_userdata(req);
}

/* ---- pieces ---- */

static int pieces_grow_locked(Inode *i, uint64_t size) {
        size_t n = (size_t)((size + P - 1) / P);
        uint8_t *p;

        if (n <= i->n_pieces)
                return 0;
        p = realloc(i->pieces, n);
        if (!p)
                return -ENOMEM;
        memset(p + i->n_pieces, 0, n - i->n_pieces);
        i->pieces = p;
        i->n_pieces = n;
        return 0;
}

/* Changes piece k's flags and keeps the counters (dirty and cached pieces) right. */
static void piece_set_locked(Fs *fs, Inode *i, size_t k, uint8_t set, uint8_t clear) {
        uint8_t old = i->pieces[k], new = (uint8_t)((old | set) & ~clear);
        bool was_dirty = old & (PIECE_DIRTY | PIECE_UPLOADING),
             is_dirty = new &(PIECE_DIRTY | PIECE_UPLOADING);

        if (was_dirty != is_dirty) {
                if (is_dirty) {
                        fs->dirty_pieces++;
                        if (i->n_dirty++ == 0)
                                i->dirty_since_ns = fs_now();
                } else {
                        fs->dirty_pieces--;
                        i->n_dirty--;
                }
        }
        if ((old & PIECE_PRESENT) != (new &PIECE_PRESENT)) {
                if (new &PIECE_PRESENT)
                        fs->cache_pieces++;
                else
                        fs->cache_pieces--;
        }
        i->pieces[k] = new;
}

bool fs_inode_is_dirty(const Inode *i) {
        return i->n_dirty > 0 || i->size_dirty || i->create_pending;
}

/* ---- cache directory and files ---- */

static void data_name(uint64_t id, const char *suffix, char buf[static 64]) {
        (void)snprintf(buf, 64, "%016" PRIx64 "%s", id, suffix);
}

/* The kernel's boot id (a UUID), "-" when it cannot be read: records of such a boot are never
 * taken for this boot's. */
static void read_boot_id(char buf[static 64]) {
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, 63) : -1;

        if (n <= 0) {
                (void)snprintf(buf, 64, "-");
                return;
        }
        buf[n] = '\0';
        buf[strcspn(buf, " \n")] = '\0';
        if (!buf[0])
                (void)snprintf(buf, 64, "-");
}

int fs_cache_open_dir(Fs *fs, char **reterr_msg) {
        _cleanup_close_ int top = -EBADF, dfd = -EBADF, lfd = -EBADF;
        uint64_t h = fs_path_hash(fs->o->endpoint) ^ (fs_path_hash(fs->o->share) * 31) ^
                     (fs_path_hash(fs->o->subdir) * 131);
        char name[256];
        int r;

        if (mkdir(fs->o->cache_dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                if (asprintf(
                            reterr_msg, "Cannot create cache directory %s: %s", fs->o->cache_dir,
                            strerror(-r)) < 0)
                        *reterr_msg = NULL;
                return r;
        }
        top = open(fs->o->cache_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (top < 0) {
                r = -errno;
                if (asprintf(
                            reterr_msg, "Cannot open cache directory %s: %s", fs->o->cache_dir,
                            strerror(-r)) < 0)
                        *reterr_msg = NULL;
                return r;
        }
        (void)snprintf(
                name, sizeof(name), "%.64s-%.64s-%016" PRIx64, fs->o->account, fs->o->share, h);
        if (mkdirat(top, name, 0700) < 0 && errno != EEXIST)
                return -errno;
        dfd = openat(top, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return -errno;
        lfd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (lfd < 0)
                return -errno;
        if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
                r = -errno;
                if (asprintf(
                            reterr_msg,
                            "Cache directory %s/%s is in use by another mount of this share",
                            fs->o->cache_dir, name) < 0)
                        *reterr_msg = NULL;
                return r == -EWOULDBLOCK ? -EBUSY : r;
        }
        if (asprintf(&fs->cache_path, "%s/%s", fs->o->cache_dir, name) < 0)
                return -ENOMEM;
        read_boot_id(fs->boot_id);
        /* The lock lives as long as the process: the fd is intentionally kept open. */
        (void)TAKE_FD(lfd);
        fs->cache_dir_fd = TAKE_FD(dfd);
        return 0;
}

int fs_cache_attach_locked(Fs *fs, Inode *i) {
        char name[64];
        int fd;

        if (i->cache_fd >= 0)
                return 0;
        i->cache_id = fs->next_cache_id++;
        data_name(i->cache_id, ".data", name);
        fd = openat(
                fs->cache_dir_fd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        i->cache_fd = fd;
        i->state_prev = NULL;
        i->state_next = fs->state_list;
        if (fs->state_list)
                fs->state_list->state_prev = i;
        fs->state_list = i;
        i->last_used_ns = fs_now();
        return 0;
}

void fs_cache_reset_locked(Fs *fs, Inode *i, uint64_t remote_size, const char *etag) {
        assert(!fs_inode_is_dirty(i));
        i->cache_gen++; /* ranges still in flight belong to the old version */
        for (size_t k = 0; k < i->n_pieces; k++)
                if (!(i->pieces[k] & PIECE_FETCHING))
                        piece_set_locked(fs, i, k, 0, PIECE_PRESENT);
        if (ftruncate(i->cache_fd, 0) < 0 || ftruncate(i->cache_fd, (off_t)remote_size) < 0)
                log_debug_errno(-errno, "Cannot resize cache file of %s, ignoring: %m", i->path);
        (void)pieces_grow_locked(i, remote_size);
        i->size = remote_size;
        i->remote_size = remote_size;
        i->fetch_limit = remote_size;
        i->size_dirty = false;
        (void)snprintf(i->cache_etag, sizeof(i->cache_etag), "%s", etag ? etag : "");
}

static void sidecar_remove_locked(Fs *fs, Inode *i) {
        char name[64];
        if (!i->sidecar_exists)
                return;
        data_name(i->cache_id, ".dirty", name);
        if (unlinkat(fs->cache_dir_fd, name, 0) < 0 && errno != ENOENT)
                log_warning_errno(
                        -errno, "Cannot remove dirty record %s/%s, ignoring: %m", fs->cache_path,
                        name);
        i->sidecar_exists = false;
        i->sidecar_durable = false;
}

void fs_cache_drop_locked(Fs *fs, Inode *i) {
        char name[64];

        if (i->cache_fd < 0)
                return;
        for (size_t k = 0; k < i->n_pieces; k++)
                piece_set_locked(fs, i, k, 0, PIECE_PRESENT | PIECE_DIRTY | PIECE_UPLOADING);
        sidecar_remove_locked(fs, i);
        i->cache_fd = safe_close(i->cache_fd);
        data_name(i->cache_id, ".data", name);
        (void)unlinkat(fs->cache_dir_fd, name, 0);
        free(i->pieces);
        i->pieces = NULL;
        i->n_pieces = 0;
        i->cache_etag[0] = '\0';
        if (i->state_prev)
                i->state_prev->state_next = i->state_next;
        else
                fs->state_list = i->state_next;
        if (i->state_next)
                i->state_next->state_prev = i->state_prev;
        i->state_prev = i->state_next = NULL;
}

static bool inode_busy_locked(const Inode *i) {
        if (i->open_count > 0 || fs_inode_is_dirty(i) || i->uploading || i->waiters)
                return true;
        for (size_t k = 0; k < i->n_pieces; k++)
                if (i->pieces[k] & PIECE_FETCHING)
                        return true;
        return false;
}

/* The least recently used cache file that can go: nothing dirty, not open (so no read is
 * splicing from it), nothing fetched or uploaded, nobody waiting. NULL when there is none. */
static Inode *cache_victim_locked(Fs *fs) {
        Inode *victim = NULL;

        for (Inode *i = fs->state_list; i; i = i->state_next) {
                if (inode_busy_locked(i))
                        continue;
                if (!victim || i->last_used_ns < victim->last_used_ns)
                        victim = i;
        }
        return victim;
}

void fs_cache_evict_locked(Fs *fs) {
        while (fs->cache_pieces * P > fs->o->cache_size) {
                Inode *victim = cache_victim_locked(fs);
                if (!victim)
                        return;
                fs_cache_drop_locked(fs, victim);
        }
}

uint64_t fs_cache_reclaim_locked(Fs *fs, uint64_t bytes) {
        uint64_t freed = 0;

        while (freed < bytes) {
                Inode *victim = cache_victim_locked(fs);
                struct stat st;

                if (!victim)
                        break;
                /* What the disk gets back: the blocks of the (sparse) cache file. */
                if (fstat(victim->cache_fd, &st) >= 0)
                        freed += (uint64_t)st.st_blocks * 512U;
                fs_cache_drop_locked(fs, victim);
        }
        fs->reclaimed_bytes += freed;
        fs->last_reclaim_bytes = freed;
        return freed;
}

/* ---- dirty records ---- */

/* The record's text. Lock held. */
static int sidecar_text_locked(Fs *fs, const Inode *i, bool durable, StrBuf *b) {
        _cleanup_free_ char *enc = NULL;
        const char *sep = "";
        int r;

        r = url_percent_encode(i->path, true, &enc);
        if (r < 0)
                return r;
        r = strbuf_appendf(
                b,
                "azfilesfs-dirty 1\nboot %s\ndurable %d\npath %s\nremote_size %" PRIu64
                "\nfetch_limit %" PRIu64 "\nsize_dirty %d\netag %s\n",
                fs->boot_id, (int)durable, enc, i->remote_size, i->fetch_limit, (int)i->size_dirty,
                i->cache_etag[0] ? i->cache_etag : "-");
        if (r >= 0 && i->create_pending)
                r = strbuf_appendf(
                        b, "create %04o %" PRId64 "\n", (unsigned)(i->perm & 07777), i->mtime_ns);
        if (r >= 0 && (i->shrunk || i->upload_shrunk))
                r = strbuf_appendf(
                        b, "shrink_to %" PRIu64 "\n",
                        i->shrunk && i->upload_shrunk ? MIN(i->shrink_to, i->upload_shrink_to)
                        : i->shrunk                   ? i->shrink_to
                                                      : i->upload_shrink_to);
        if (r >= 0)
                r = strbuf_append(b, "pieces ");
        for (size_t k = 0; r >= 0 && k < i->n_pieces; k++)
                if (i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)) {
                        r = strbuf_appendf(b, "%s%zu", sep, k);
                        sep = ",";
                }
        if (r >= 0)
                r = strbuf_append(b, "\n");
        return r;
}

/* Writes text to a temporary record (not synced: see durable_pass). */
static int sidecar_write_tmp(Fs *fs, const char *tmp, const StrBuf *b) {
        _cleanup_close_ int fd = -EBADF;

        fd = openat(
                fs->cache_dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        for (size_t done = 0; done < b->len;) {
                ssize_t k = write(fd, b->data + done, b->len - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)k;
        }
        return 0;
}

/* Puts a temporary record in place unless a newer one already is, or the file is clean by now.
 * Lock held. */
static int sidecar_commit_locked(Fs *fs, Inode *i, uint64_t seq, bool durable, const char *tmp) {
        char name[64];

        if (seq <= i->sidecar_done_seq || !fs_inode_is_dirty(i)) {
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                return 0;
        }
        data_name(i->cache_id, ".dirty", name);
        if (renameat(fs->cache_dir_fd, tmp, fs->cache_dir_fd, name) < 0) {
                int r = -errno;
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                return r;
        }
        i->sidecar_done_seq = seq;
        i->sidecar_exists = true;
        i->sidecar_durable = durable;
        i->sidecar_written_ns = fs_now();
        return 0;
}

static void sidecar_tmp_name(const Inode *i, uint64_t seq, char buf[static 96]) {
        (void)snprintf(buf, 96, "%016" PRIx64 ".dirty.%" PRIu64 ".tmp", i->cache_id, seq);
}

static void sidecar_fail(Fs *fs, const char *path, int r) {
        log_warning_errno(
                r, "Cannot write dirty record for /%s in %s (a crash now would lose it): %m", path,
                fs->cache_path);
}

static void sidecar_write_locked(Fs *fs, Inode *i) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SIDECAR_MAX};
        uint64_t seq = ++i->sidecar_seq;
        char tmp[96];
        int r;

        i->sidecar_syncing = false; /* what the tick synced is not what this record says */
        sidecar_tmp_name(i, seq, tmp);
        r = sidecar_text_locked(fs, i, false, &b);
        if (r >= 0)
                r = sidecar_write_tmp(fs, tmp, &b);
        if (r >= 0)
                r = sidecar_commit_locked(fs, i, seq, false, tmp);
        if (r < 0) {
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                sidecar_fail(fs, i->path, r);
        }
}

void fs_sidecar_update_locked(Fs *fs, Inode *i) {
        sidecar_write_locked(fs, i);
}

void fs_sidecar_note_locked(Fs *fs, Inode *i) {
        if (fs_inode_is_dirty(i) && i->cache_fd >= 0)
                sidecar_write_locked(fs, i);
}

/* The same for the write path: Fs.lock only to take the text and to put the record in place. */
static void sidecar_update(Fs *fs, uint64_t ino) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SIDECAR_MAX};
        _cleanup_free_ char *path = NULL;
        uint64_t seq;
        char tmp[96];
        Inode *i;
        int r;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || i->cache_fd < 0 || !fs_inode_is_dirty(i)) {
                fs_unlock(fs);
                return;
        }
        seq = ++i->sidecar_seq;
        i->sidecar_syncing = false;
        sidecar_tmp_name(i, seq, tmp);
        r = sidecar_text_locked(fs, i, false, &b);
        path = strdup(i->path);
        fs_unlock(fs);
        if (r >= 0)
                r = sidecar_write_tmp(fs, tmp, &b);
        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (r >= 0 && i)
                r = sidecar_commit_locked(fs, i, seq, false, tmp);
        else
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
        fs_unlock(fs);
        if (r < 0)
                sidecar_fail(fs, path ? path : "?", r);
}

void fs_discard_dirty_locked(Fs *fs, Inode *i) {
        if (i->cache_fd < 0)
                return;
        for (size_t k = 0; k < i->n_pieces; k++)
                piece_set_locked(fs, i, k, 0, PIECE_DIRTY);
        i->size_dirty = false;
        i->create_pending = false;
        sidecar_remove_locked(fs, i);
}

int fs_truncate_local_locked(Fs *fs, Inode *i, uint64_t size) {
        int r;

        /* A durable record must not outlive a change of the data it points at. */
        if (i->sidecar_durable || i->sidecar_syncing)
                fs_sidecar_note_locked(fs, i);
        if (ftruncate(i->cache_fd, (off_t)size) < 0)
                return -errno;
        r = pieces_grow_locked(i, size);
        if (r < 0)
                return r;
        for (size_t k = (size_t)((size + P - 1) / P); k < i->n_pieces; k++)
                piece_set_locked(fs, i, k, 0, PIECE_DIRTY | PIECE_PRESENT);
        i->fetch_limit = MIN(i->fetch_limit, size);
        /* The share's end: a round running may have grown the file there already. */
        uint64_t share_size = i->uploading ? MAX(i->remote_size, i->upload_size) : i->remote_size;
        if (size < share_size && (!i->shrunk || size < i->shrink_to)) {
                i->shrunk = true;
                i->shrink_to = size;
        }
        i->size = size;
        i->size_dirty = true;
        i->mtime_ns = i->ctime_ns = realtime_ns();
        if (i->dirty_since_ns == 0 || i->n_dirty == 0)
                i->dirty_since_ns = fs_now();
        fs_sidecar_update_locked(fs, i);
        return 0;
}

/* ---- reads and writes ---- */

typedef struct FetchCall {
        Fs *fs;
        uint64_t ino;
        uint64_t gen;
        size_t piece;
        uint64_t start, len;
} FetchCall;

static void fetch_done(RestResult *r, void *userdata);

/* Pieces of [off, off+len) that are not yet usable; submits Get Range for missing ones. For a
 * write, a piece the write covers entirely needs no fetch. */
static int
pieces_need_locked(Fs *fs, Inode *i, uint64_t off, uint64_t len, bool write, bool fetch) {
        int need = 0;

        if (len == 0)
                return 0;
        if (pieces_grow_locked(i, off + len) < 0)
                return -ENOMEM;
        for (size_t k = (size_t)(off / P); k <= (size_t)((off + len - 1) / P); k++) {
                uint64_t start = (uint64_t)k * P, end = MIN(start + P, i->fetch_limit);
                uint8_t f = i->pieces[k];
                FetchCall *c;

                if (f & PIECE_PRESENT)
                        continue;
                if (f & PIECE_FETCHING) {
                        need++;
                        continue;
                }
                if (start >= i->fetch_limit || (write && off <= start && off + len >= end)) {
                        piece_set_locked(fs, i, k, PIECE_PRESENT, 0);
                        continue;
                }
                need++;
                if (!fetch)
                        continue;
                c = malloc(sizeof(*c));
                if (!c)
                        return -ENOMEM;
                *c = (FetchCall){
                        .fs = fs,
                        .ino = i->ino,
                        .gen = i->cache_gen,
                        .piece = k,
                        .start = start,
                        .len = end - start};
                RestOp op = {
                        .type = REST_OP_GET_RANGE,
                        .path = i->path,
                        .offset = start,
                        .length = end - start,
                        .fd = i->cache_fd,
                        .fd_offset = start};
                int r = rest_client_submit(fs->rest, &op, fetch_done, c, NULL);
                if (r < 0) {
                        free(c);
                        return r;
                }
                piece_set_locked(fs, i, k, PIECE_FETCHING, 0);
                i->refs++;
        }
        return need;
}

static void reply_read(fuse_req_t req, int fd, uint64_t off, uint64_t len) {
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(len);
        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = fd;
        buf.buf[0].pos = (off_t)off;
        (void)fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void waiter_free(FsWaiter *w) {
        if (!w)
                return;
        free(w->data);
        free(w);
}

static void write_through_locked(Fs *fs, Inode *i, uint64_t off, uint64_t end);

/* Writes buf into the cache file and marks it dirty. No lock held; the pieces are ready. */
static ssize_t write_commit(Fs *fs, uint64_t ino, const char *buf, size_t size, uint64_t off) {
        size_t done = 0;
        bool new_piece = false, was_durable = false;
        int fd, err = 0;
        Inode *i;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        fd = i ? i->cache_fd : -EBADF;
        if (fd >= 0) {
                /* Counted so that the tick does not take the data for synced while it changes. */
                i->writes_in_flight++;
                was_durable = i->sidecar_durable || i->sidecar_syncing;
        }
        fs_unlock(fs);
        if (fd < 0)
                return -EBADF;
        /* A durable record must not outlive a change of the data it points at: replaced first by
         * one that is not (written, not synced; a reboot then makes recovery keep the file). */
        if (was_durable)
                sidecar_update(fs, ino);
        while (done < size) {
                ssize_t k = pwrite(fd, buf + done, size - done, (off_t)(off + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        err = -errno;
                        break;
                }
                done += (size_t)k;
        }
        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (i)
                i->writes_in_flight--;
        if (done == 0) {
                fs_unlock(fs);
                return err ? err : -EIO;
        }
        if (i && i->cache_fd >= 0 && pieces_grow_locked(i, off + done) >= 0) {
                for (size_t k = (size_t)(off / P); k <= (size_t)((off + done - 1) / P); k++) {
                        if (!(i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)))
                                new_piece = true;
                        piece_set_locked(fs, i, k, PIECE_DIRTY | PIECE_PRESENT, 0);
                }
                if (off + done > i->size) {
                        i->size = off + done;
                }
                i->mtime_ns = i->ctime_ns = realtime_ns();
                i->last_used_ns = fs_now();
                /* A record another writer started may not be on disk yet: this write is
                 * acknowledged only after one that covers it is. */
                new_piece = new_piece || !i->sidecar_exists || i->sidecar_done_seq < i->sidecar_seq;
                write_through_locked(fs, i, off, off + done);
        }
        fs_unlock(fs);
        /* Acknowledged only once the record of the new dirty piece is in place. */
        if (new_piece)
                sidecar_update(fs, ino);
        return (ssize_t)done;
}

static bool over_cap_locked(Fs *fs) {
        return fs->dirty_pieces * P > fs->o->max_dirty;
}

/* Tries a write now; when it must wait (pieces to fetch, too much dirty data), queues it (copying
 * the data unless w already holds it). */
static void write_try(
        Fs *fs,
        fuse_req_t req,
        uint64_t ino,
        const char *buf,
        size_t size,
        uint64_t off,
        FsWaiter *w) {
        Inode *i;
        int need;
        ssize_t n;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || i->cache_fd < 0) {
                fs_unlock(fs);
                waiter_free(w);
                fuse_reply_err(req, EBADF);
                return;
        }
        need = over_cap_locked(fs) ? 1 : pieces_need_locked(fs, i, off, size, true, true);
        if (need > 0) {
                if (!w && (w = calloc(1, sizeof(*w))) && !(w->data = malloc(size ? size : 1))) {
                        free(w);
                        w = NULL;
                }
                if (!w) {
                        fs_unlock(fs);
                        fuse_reply_err(req, ENOMEM);
                        return;
                }
                if (w->data != buf && buf)
                        memcpy(w->data, buf, size);
                *w = (FsWaiter){
                        .kind = FS_WAIT_WRITE,
                        .req = req,
                        .ino = ino,
                        .off = off,
                        .len = size,
                        .data = w->data};
                if (over_cap_locked(fs)) {
                        w->next = fs->cap_waiters;
                        fs->cap_waiters = w;
                        fs_upload_all_locked(fs);
                } else {
                        w->next = i->waiters;
                        i->waiters = w;
                }
                fs_unlock(fs);
                return;
        }
        fs_unlock(fs);
        if (need < 0) {
                waiter_free(w);
                fuse_reply_err(req, -need);
                return;
        }
        n = write_commit(fs, ino, buf, size, off);
        waiter_free(w);
        if (n < 0)
                fuse_reply_err(req, (int)-n);
        else
                fuse_reply_write(req, (size_t)n);
}

void fs_op_write(
        fuse_req_t req,
        fuse_ino_t ino,
        const char *buf,
        size_t size,
        off_t off,
        struct fuse_file_info *fi) {
        write_try(fs_of(req), req, ino, buf, size, (uint64_t)off, NULL);
}

void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        uint64_t len;
        Inode *i;
        FsWaiter *w;
        int need, fd;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || i->cache_fd < 0) {
                fs_unlock(fs);
                fuse_reply_err(req, EBADF);
                return;
        }
        if ((uint64_t)off >= i->size) {
                fs_unlock(fs);
                fuse_reply_buf(req, NULL, 0);
                return;
        }
        len = MIN((uint64_t)size, i->size - (uint64_t)off);
        need = pieces_need_locked(fs, i, (uint64_t)off, len, false, true);
        /* Sequential: fetch the next pieces ahead of the reader. */
        if (need >= 0 && (uint64_t)off == i->next_seq_off && (uint64_t)off + len < i->fetch_limit) {
                uint64_t ra = MIN(READAHEAD_PIECES * P, i->fetch_limit - (uint64_t)off - len);
                (void)pieces_need_locked(fs, i, (uint64_t)off + len, ra, false, true);
        }
        i->next_seq_off = (uint64_t)off + len;
        i->last_used_ns = fs_now();
        fd = i->cache_fd;
        if (need > 0) {
                w = calloc(1, sizeof(*w));
                if (w) {
                        *w = (FsWaiter){
                                .kind = FS_WAIT_READ,
                                .req = req,
                                .ino = ino,
                                .off = (uint64_t)off,
                                .len = len};
                        w->next = i->waiters;
                        i->waiters = w;
                }
                fs_unlock(fs);
                if (!w)
                        fuse_reply_err(req, ENOMEM);
                return;
        }
        fs_unlock(fs);
        if (need < 0)
                fuse_reply_err(req, -need);
        else
                reply_read(req, fd, (uint64_t)off, len);
}

static bool overlaps(const FsWaiter *w, uint64_t start, uint64_t len) {
        return w->off < start + len && start < w->off + MAX(w->len, 1);
}

static void run_ready_waiters(Fs *fs, FsWaiter *ready) {
        while (ready) {
                FsWaiter *w = ready;
                ready = w->next;
                w->next = NULL;
                if (w->kind == FS_WAIT_READ) {
                        int fd;
                        Inode *i;
                        fs_lock(fs);
                        i = inode_table_get(fs->inodes, w->ino);
                        fd = i ? i->cache_fd : -EBADF;
                        fs_unlock(fs);
                        if (fd < 0)
                                fuse_reply_err(w->req, EBADF);
                        else
                                reply_read(w->req, fd, w->off, w->len);
                        waiter_free(w);
                } else
                        write_try(fs, w->req, w->ino, w->data, w->len, w->off, w);
        }
}

static void fetch_done(RestResult *r, void *userdata) {
        FetchCall *c = userdata;
        Fs *fs = c->fs;
        FsWaiter *ready = NULL, *failed = NULL, **p;
        Inode *i;
        int err = r->error;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, c->ino);
        fs_note_result_locked(fs, r, "Get Range", i ? i->path : "?", 0);
        if (!i) {
                fs_unlock(fs);
                free(c);
                return;
        }
        if (c->piece < i->n_pieces) {
                bool current = c->gen == i->cache_gen;
                piece_set_locked(
                        fs, i, c->piece, err == 0 && current ? PIECE_PRESENT : 0, PIECE_FETCHING);
                /* Truncated while the range was in flight: what lies past the new end is gone. */
                if (err == 0 && current && c->start + c->len > i->fetch_limit) {
                        uint64_t from = MAX(c->start, i->fetch_limit);
                        (void)fallocate(
                                i->cache_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)from, (off_t)(c->start + c->len - from));
                        if (ftruncate(i->cache_fd, (off_t)i->size) < 0)
                                err = -errno;
                }
        }
        if (err < 0)
                log_warning_errno(
                        err, "Get Range of /%s at %" PRIu64 " failed (request id %s): %m", i->path,
                        c->start, r->request_id ? r->request_id : "-");
        for (p = &i->waiters; *p;) {
                FsWaiter *w = *p;
                int need = 0;
                if (w->kind == FS_WAIT_FLUSH) {
                        p = &w->next;
                        continue;
                }
                if (err < 0 && overlaps(w, c->start, P))
                        need = err;
                else
                        need = pieces_need_locked(
                                fs, i, w->off, w->len, w->kind == FS_WAIT_WRITE, true);
                if (need > 0) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                if (need < 0) {
                        w->off = (uint64_t)-need; /* the errno, for the reply below */
                        w->next = failed;
                        failed = w;
                } else {
                        w->next = ready;
                        ready = w;
                }
        }
        fs_cache_evict_locked(fs);
        fs_inode_unref_locked(fs, i);
        fs_unlock(fs);
        free(c);
        while (failed) {
                FsWaiter *w = failed;
                failed = w->next;
                fuse_reply_err(w->req, (int)w->off);
                waiter_free(w);
        }
        run_ready_waiters(fs, ready);
}

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
        size_t piece; /* UPLOAD_RANGE */
        bool wt;      /* a Put Range of write-through (Fs.wt_ranges_in_flight) */
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

        (void)snprintf(mode, sizeof(mode), "%04o", (unsigned)(i->perm & 07777));
        if (fs_mode_needs_hint(fs, i->perm))
                op.smb.attributes = REST_ATTR_ARCHIVE | REST_ATTR_NOT_CONTENT_INDEXED;
        if (i->upload_create)
                op.smb.last_write_ns = i->mtime_ns;
        return upload_submit_locked(fs, i, UPLOAD_CREATE, &op, SIZE_MAX);
}

/* Set File Properties of the file's size: upload_size, and the last-write time when a
 * write-through round created the file (wt_created). */
static int upload_size_locked(Fs *fs, Inode *i) {
        RestOp op = {.type = REST_OP_SET_FILE_PROPERTIES, .set_size = true, .size = i->upload_size};

        if (i->wt_created && !i->upload_wt)
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
                .size = MAX(i->upload_goal + (i->upload_wt ? WT_GROW_AHEAD : 0), i->upload_size)};
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
         * the next round: write-through takes no more pieces. */
        if (i->upload_wt && (i->create_waiters || i->shrunk))
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
                                piece_set_locked(fs, i, k, 0, PIECE_UPLOADING);
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
                piece_set_locked(
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

        fs_lock(fs);
        i = inode_table_get(fs->inodes, f->ino);
        if (i && i->uploading && i->upload_pending == 0)
                upload_finish_locked(fs, i, &replies);
        if (i)
                retries = fs_create_waiters_take_locked(i);
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
                        piece_set_locked(fs, i, k, PIECE_DIRTY, PIECE_UPLOADING);
        i->uploading = false;
        fs->uploads_in_flight--;
}

/* Starts a round: the file's Create File, or its shrink and size, then its Put Ranges. A whole
 * upload takes every dirty piece now; a write-through round (wt) takes pieces as the writer moves
 * past them. */
static void upload_begin_locked(Fs *fs, Inode *i, bool wt) {
        int r;

        i->uploading = true;
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
        /* The round takes every dirty piece; its window sends them (upload_fill_locked). */
        for (size_t k = 0; !wt && k < i->n_pieces; k++)
                if (i->pieces[k] & PIECE_DIRTY)
                        piece_set_locked(fs, i, k, PIECE_UPLOADING, PIECE_DIRTY);
        /* A shrink at or above the final size is done by setting the size itself. */
        i->upload_shrunk = i->shrunk && i->shrink_to < i->upload_size;
        i->upload_shrink_to = i->shrink_to;
        i->shrunk = false;
        if (wt)
                /* Ahead of the writer (see WT_GROW_AHEAD); the upload at close sets the size. */
                i->upload_size += WT_GROW_AHEAD;
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
                i->upload_again = true; /* truncated: the next round cuts the share first */
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
                        piece_set_locked(fs, i, k, PIECE_UPLOADING, PIECE_DIRTY);
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
static void write_through_locked(Fs *fs, Inode *i, uint64_t off, uint64_t end) {
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

int fs_create_wait_locked(Inode *i, void (*fn)(void *userdata), void *userdata) {
        FsRetry *r = calloc(1, sizeof(*r)), **tail = &i->create_waiters;

        if (!r)
                return -ENOMEM;
        r->fn = fn;
        r->userdata = userdata;
        while (*tail)
                tail = &(*tail)->next;
        *tail = r;
        return 0;
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

/* Starts queued uploads while there is room. */
static void upload_kick_queue_locked(Fs *fs) {
        while (fs->upload_queue && fs->uploads_in_flight < UPLOADS_MAX) {
                Inode *i = fs->upload_queue;
                fs->upload_queue = i->upload_queue_next;
                if (!fs->upload_queue)
                        fs->upload_queue_tail = NULL;
                i->upload_queue_next = NULL;
                i->upload_queued = false;
                fs_upload_start_locked(fs, i);
        }
}

void fs_upload_all_locked(Fs *fs) {
        for (Inode *i = fs->state_list; i; i = i->state_next)
                if (fs_inode_is_dirty(i))
                        fs_upload_start_locked(fs, i);
}

static bool any_dirty_locked(Fs *fs) {
        for (Inode *i = fs->state_list; i; i = i->state_next)
                if (fs_inode_is_dirty(i) || i->uploading)
                        return true;
        return false;
}

/* Moves the flush-all waiters that are done to *done: all of them when nothing is dirty (their
 * error 0), those that saw an upload fail since they started (error EIO). */
static void flush_all_check_locked(Fs *fs, FsFlushAll **done) {
        bool dirty = any_dirty_locked(fs);

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

static void reply_flush_all(FsFlushAll *list, int error) {
        while (list) {
                FsFlushAll *f = list;
                list = f->next;
                f->timer = sd_event_source_disable_unref(f->timer);
                fuse_reply_err(f->req, -(error ? error : f->error));
                free(f);
        }
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
                        piece_set_locked(fs, i, k, i->unlinked ? 0 : PIECE_DIRTY, PIECE_UPLOADING);
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
                fs->last_upload_error = 0;
                /* A write-through grow answered after a flush turned the round into a whole
                 * upload leaves the share's file longer than this one: set it again. */
                if (!was_wt && !i->unlinked && i->remote_size != i->size)
                        i->size_dirty = true;
                if (!was_wt && !fs_inode_is_dirty(i))
                        i->wt_created = false; /* its time is set */
                if (!fs_inode_is_dirty(i))
                        sidecar_remove_locked(fs, i);
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
                fs_upload_start_locked(fs, i);
                if (i->uploading || i->upload_queued)
                        return;
        }
        upload_kick_queue_locked(fs);
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

static void upload_done_reply(Fs *fs, Inode *unused, FsWaiter *replies) {
        while (replies) {
                FsWaiter *w = replies;
                replies = w->next;
                fuse_reply_err(w->req, (int)w->off);
                waiter_free(w);
        }
}

static void upload_done(RestResult *r, void *userdata) {
        UploadCall *c = userdata;
        Fs *fs = c->fs;
        FsWaiter *replies = NULL, *cap = NULL;
        FsFlushAll *flushed = NULL;
        FsRetry *retries = NULL;
        int cap_err = 0;
        Inode *i;

        fs_lock(fs);
        fs_note_result_locked(
                fs, r,
                c->phase == UPLOAD_RANGE   ? "Put Range"
                : c->phase == UPLOAD_PROPS ? "Get File Properties"
                                           : "Set File Properties",
                c->path, 0);
        if (c->wt)
                fs->wt_ranges_in_flight--;
        i = inode_table_get(fs->inodes, c->ino);
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
                        if (!i->upload_error)
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
                        piece_set_locked(fs, i, c->piece, 0, PIECE_UPLOADING);
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
                flush_all_check_locked(fs, &flushed);
        if (fs->cap_waiters && (!over_cap_locked(fs) || fs->last_upload_error < 0)) {
                cap = fs->cap_waiters;
                fs->cap_waiters = NULL;
                cap_err = over_cap_locked(fs) ? fs->last_upload_error : 0;
        }
        if (i)
                fs_cache_evict_locked(fs);
        fs_unlock(fs);
        free(c->path);
        free(c);
        upload_done_reply(fs, NULL, replies);
        reply_flush_all(flushed, 0);
        fs_create_waiters_run(retries);
        while (cap) {
                FsWaiter *w = cap;
                cap = w->next;
                w->next = NULL;
                if (cap_err < 0) {
                        fuse_reply_err(w->req, -cap_err);
                        waiter_free(w);
                } else
                        write_try(fs, w->req, w->ino, w->data, w->len, w->off, w);
        }
}

static void flush_all_check_later(void *userdata, bool cancelled) {
        Fs *fs = userdata;
        FsFlushAll *done = NULL;

        if (cancelled)
                return;
        fs_lock(fs);
        flush_all_check_locked(fs, &done);
        fs_unlock(fs);
        reply_flush_all(done, 0);
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
        /* Nothing left to upload (replaced by the rename: its data was dropped): the flushes
         * waiting for it are done. */
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
        if (fs->flush_all)
                (void)fs_post(fs, flush_all_check_later, fs);
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
        fs_upload_start_locked(fs, i);
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
                i->open_count--;
                i->last_used_ns = fs_now();
                fs_inode_unref_locked(fs, i);
                fs_cache_evict_locked(fs);
        }
        fs_unlock(fs);
        fuse_reply_err(req, 0);
}

/* ---- background tick: async write-back, retries of failed uploads, eviction ---- */

typedef struct DurableRecord {
        uint64_t ino, seq;
        char tmp[96];
        StrBuf text;
} DurableRecord;

/* Whether i's record should be made durable now. Lock held. */
static bool durable_wanted_locked(const Inode *i, int64_t now) {
        if (!i->sidecar_exists || i->sidecar_durable || i->sidecar_syncing ||
            i->writes_in_flight > 0 || !fs_inode_is_dirty(i))
                return false;
        /* A file open for writing is synced at most every DURABLE_OPEN_NS, not at every tick. */
        return i->open_count == 0 || now - i->sidecar_written_ns >= DURABLE_OPEN_NS;
}

/* Makes the dirty records that are not durable durable (on the durable thread, off the FUSE
 * workers' and the I/O thread's paths; at unmount on the caller's, that thread stopped): their
 * texts (with "durable 1") are taken under Fs.lock, written to temporary records without it, then
 * one syncfs() puts every cache file and those records on disk; back under the lock, each goes in
 * place unless the file changed meanwhile (a write or truncate clears sidecar_syncing before it
 * touches the cache file, a newer record wins by its seq), and the directory is synced once. */
static unsigned durable_pass(Fs *fs) {
        DurableRecord *recs = NULL;
        size_t n = 0;
        unsigned made = 0;
        int64_t now = fs_now();
        int r = 0;

        fs_lock(fs);
        for (Inode *i = fs->state_list; i && n < DURABLE_BATCH_MAX; i = i->state_next) {
                DurableRecord *d;
                if (!durable_wanted_locked(i, now))
                        continue;
                if (!recs && !(recs = calloc(DURABLE_BATCH_MAX, sizeof(*recs))))
                        break;
                d = &recs[n];
                d->text = (StrBuf){.cap = SIDECAR_MAX};
                if (sidecar_text_locked(fs, i, true, &d->text) < 0) {
                        strbuf_done(&d->text);
                        continue;
                }
                d->ino = i->ino;
                d->seq = ++i->sidecar_seq;
                sidecar_tmp_name(i, d->seq, d->tmp);
                i->sidecar_syncing = true;
                n++;
        }
        fs_unlock(fs);
        if (n == 0) {
                free(recs);
                return 0;
        }
        for (size_t k = 0; k < n && r >= 0; k++)
                r = sidecar_write_tmp(fs, recs[k].tmp, &recs[k].text);
        if (r >= 0 && syncfs(fs->cache_dir_fd) < 0)
                r = -errno;
        fs_lock(fs);
        fs->record_syncs++;
        for (size_t k = 0; k < n; k++) {
                Inode *i = inode_table_get(fs->inodes, recs[k].ino);
                bool mine = i && i->sidecar_syncing;
                if (i)
                        i->sidecar_syncing = false;
                if (r >= 0 && mine &&
                    sidecar_commit_locked(fs, i, recs[k].seq, true, recs[k].tmp) >= 0) {
                        if (i->sidecar_durable) {
                                fs->records_made_durable++;
                                made++;
                        }
                } else
                        (void)unlinkat(fs->cache_dir_fd, recs[k].tmp, 0);
                strbuf_done(&recs[k].text);
        }
        fs_unlock(fs);
        free(recs);
        if (r < 0)
                log_warning_errno(
                        r, "Cannot sync the cache in %s (records stay not durable, retried): %m",
                        fs->cache_path);
        else if (fsync(fs->cache_dir_fd) < 0)
                log_debug_errno(
                        -errno, "Cannot sync cache directory %s, ignoring: %m", fs->cache_path);
        return r < 0 ? 0 : made;
}

void fs_records_make_durable(Fs *fs) {
        /* Bounded: each pass takes up to DURABLE_BATCH_MAX records or ends the loop. */
        for (unsigned k = 0; k < 1000 && durable_pass(fs) > 0; k++)
                ;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Fs *fs = userdata;
        int64_t now = fs_now(), delay = (int64_t)fs->o->async_delay_ms * INT64_C(1000000);

        fs_lock(fs);
        for (Inode *i = fs->state_list; i; i = i->state_next) {
                if (!fs_inode_is_dirty(i) || i->uploading)
                        continue;
                if (!fs->o->writeback_async && i->open_count > 0)
                        continue;
                /* Retries of failed uploads back off to at least 5 s. */
                if (now - i->dirty_since_ns <
                    (fs->o->writeback_async ? delay : MAX(delay, 5 * INT64_C(1000000000))))
                        continue;
                fs_upload_start_locked(fs, i);
        }
        fs_cache_evict_locked(fs);
        fs->durable_kick = true; /* the durable thread syncs, off this thread */
        (void)pthread_cond_signal(&fs->durable_cond);
        fs_unlock(fs);
        (void)sd_event_source_set_time_relative(s, TICK_USEC);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static void *durable_thread(void *userdata) {
        Fs *fs = userdata;

        fs_lock(fs);
        for (;;) {
                while (!fs->durable_kick && !fs->durable_quit)
                        (void)pthread_cond_wait(&fs->durable_cond, &fs->lock);
                if (fs->durable_quit)
                        break;
                fs->durable_kick = false;
                fs_unlock(fs);
                (void)durable_pass(fs);
                fs_lock(fs);
        }
        fs_unlock(fs);
        return NULL;
}

int fs_durable_start(Fs *fs) {
        sigset_t all, saved;
        int r;

        (void)pthread_cond_init(&fs->durable_cond, NULL);
        /* Signals are for the FUSE session's thread. */
        (void)sigfillset(&all);
        (void)pthread_sigmask(SIG_BLOCK, &all, &saved);
        r = -pthread_create(&fs->durable_thread, NULL, durable_thread, fs);
        (void)pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                (void)pthread_cond_destroy(&fs->durable_cond);
                return r;
        }
        fs->durable_started = true;
        return 0;
}

void fs_durable_stop(Fs *fs) {
        if (!fs->durable_started)
                return;
        fs_lock(fs);
        fs->durable_quit = true;
        (void)pthread_cond_signal(&fs->durable_cond);
        fs_unlock(fs);
        (void)pthread_join(fs->durable_thread, NULL);
        (void)pthread_cond_destroy(&fs->durable_cond);
        fs->durable_started = false;
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

typedef struct CacheFigures {
        uint64_t bytes;             /* cached data (pieces present, up to the file's size) */
        uint64_t clean_bytes;       /* of which not dirty */
        uint64_t reclaimable_bytes; /* disk blocks of the files reclaim may drop now */
        uint64_t disk_bytes;        /* disk blocks of all cache files */
} CacheFigures;

static void cache_figures_locked(Fs *fs, CacheFigures *ret) {
        *ret = (CacheFigures){};
        for (Inode *i = fs->state_list; i; i = i->state_next) {
                struct stat st;
                uint64_t blocks;

                for (size_t k = 0; k < i->n_pieces; k++) {
                        uint64_t start = (uint64_t)k * P, n;
                        if (!(i->pieces[k] & PIECE_PRESENT) || start >= i->size)
                                continue;
                        n = MIN(P, i->size - start);
                        ret->bytes += n;
                        if (!(i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)))
                                ret->clean_bytes += n;
                }
                blocks = fstat(i->cache_fd, &st) >= 0 ? (uint64_t)st.st_blocks * 512U : 0;
                ret->disk_bytes += blocks;
                if (!inode_busy_locked(i))
                        ret->reclaimable_bytes += blocks;
        }
}

static void json_add_u64(json_object *o, const char *key, uint64_t v) {
        (void)json_object_object_add(o, key, json_object_new_int64((int64_t)MIN(v, INT64_MAX)));
}

static char *stats_json_locked(Fs *fs) {
        CacheFigures cache;
        unsigned files;
        uint64_t dirty = fs_dirty_bytes_locked(fs, &files);
        json_object *o = json_object_new_object();
        char *s;

        if (!o)
                return NULL;
        (void)json_object_object_add(o, "dirty_bytes", json_object_new_int64((int64_t)dirty));
        (void)json_object_object_add(o, "dirty_files", json_object_new_int64(files));
        cache_figures_locked(fs, &cache);
        json_add_u64(o, "cache_bytes", cache.bytes);
        json_add_u64(o, "cache_clean_bytes", cache.clean_bytes);
        json_add_u64(o, "cache_dirty_bytes", cache.bytes - cache.clean_bytes);
        json_add_u64(o, "cache_disk_bytes", cache.disk_bytes);
        json_add_u64(o, "cache_reclaimable_bytes", cache.reclaimable_bytes);
        json_add_u64(o, "cache_size", fs->o->cache_size);
        json_add_u64(o, "reclaimed_bytes", fs->reclaimed_bytes);
        json_add_u64(o, "last_reclaim_bytes", fs->last_reclaim_bytes);
        json_add_u64(o, "records_made_durable", fs->records_made_durable);
        json_add_u64(o, "record_syncs", fs->record_syncs);
        (void)json_object_object_add(
                o, "requests_total", json_object_new_int64((int64_t)fs->requests_total));
        (void)json_object_object_add(
                o, "requests_failed", json_object_new_int64((int64_t)fs->requests_failed));
        (void)json_object_object_add(
                o, "uploads_in_flight", json_object_new_int64(fs->uploads_in_flight));
        (void)json_object_object_add(
                o, "last_error", fs->last_error ? json_object_new_string(fs->last_error) : NULL);
        (void)json_object_object_add(
                o, "last_error_path",
                fs->last_error_path ? json_object_new_string(fs->last_error_path) : NULL);
        (void)json_object_object_add(
                o, "last_request_id",
                fs->last_request_id ? json_object_new_string(fs->last_request_id) : NULL);
        (void)json_object_object_add(
                o, "backend_reachable", json_object_new_boolean(!fs->backend_down));
        (void)json_object_object_add(
                o, "writeback", json_object_new_string(fs->o->writeback_async ? "async" : "sync"));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return s;
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
        Fs *fs = fs_of(req);
        _cleanup_free_ char *v = NULL;
        size_t len;

        if (ino != FS_ROOT_INO) {
                fuse_reply_err(req, ENODATA);
                return;
        }
        fs_lock(fs);
        if (streq(name, XATTR_DIRTY)) {
                if (asprintf(&v, "%" PRIu64, fs_dirty_bytes_locked(fs, NULL)) < 0)
                        v = NULL;
        } else if (streq(name, XATTR_STATS))
                v = stats_json_locked(fs);
        else if (streq(name, XATTR_FLUSH) || streq(name, XATTR_RECLAIM))
                v = strdup(""); /* write-only: reads as empty, so that getfattr -d works */
        else {
                fs_unlock(fs);
                fuse_reply_err(req, ENODATA);
                return;
        }
        fs_unlock(fs);
        if (!v) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        len = strlen(v);
        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, v, len);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
        static const char names[] =
                XATTR_DIRTY "\0" XATTR_STATS "\0" XATTR_FLUSH "\0" XATTR_RECLAIM "\0";
        size_t len = ino == FS_ROOT_INO ? sizeof(names) - 1 : 0;

        if (size == 0)
                fuse_reply_xattr(req, len);
        else if (size < len)
                fuse_reply_err(req, ERANGE);
        else
                fuse_reply_buf(req, names, len);
}

typedef struct FlushAllStart {
        Fs *fs;
        FsFlushAll *f;
        uint64_t timeout_ms;
} FlushAllStart;

static int flush_all_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        FlushAllStart *st = userdata;
        Fs *fs = st->fs;
        bool found = false;

        fs_lock(fs);
        for (FsFlushAll **p = &fs->flush_all; *p; p = &(*p)->next)
                if (*p == st->f) {
                        *p = st->f->next;
                        found = true;
                        break;
                }
        fs_unlock(fs);
        if (found) {
                st->f->next = NULL;
                reply_flush_all(st->f, -ETIMEDOUT);
        }
        return 0;
}

static void flush_all_start(void *userdata, bool cancelled) {
        FlushAllStart *st = userdata;
        Fs *fs = st->fs;
        FsFlushAll *f = st->f, *done = NULL;
        int r;

        if (cancelled) {
                fuse_reply_err(f->req, ECANCELED);
                free(f);
                free(st);
                return;
        }
        r = sd_event_add_time_relative(
                fs->event, &f->timer, CLOCK_MONOTONIC, st->timeout_ms * 1000, 0, flush_all_timer,
                st);
        if (r < 0) {
                fuse_reply_err(f->req, -r);
                free(f);
                free(st);
                return;
        }
        (void)sd_event_source_set_destroy_callback(f->timer, free);
        fs_lock(fs);
        f->failures_at_start = fs->upload_failures;
        f->next = fs->flush_all;
        fs->flush_all = f;
        fs_upload_all_locked(fs);
        flush_all_check_locked(fs, &done);
        fs_unlock(fs);
        reply_flush_all(done, 0);
}

/* user.azfilesfs.reclaim = BYTES or "all": local work only (unlinking cache files), done here
 * under the lock like the eviction that cache_size triggers. */
static void reclaim(fuse_req_t req, const char *value, size_t size) {
        Fs *fs = fs_of(req);
        char buf[32];
        char *end;
        uint64_t bytes, freed;

        if (size == 0 || size >= sizeof(buf)) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        memcpy(buf, value, size);
        buf[size] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (streq(buf, "all"))
                bytes = UINT64_MAX;
        else {
                errno = 0;
                bytes = strtoull(buf, &end, 10);
                if (errno != 0 || end == buf || *end != '\0' || buf[0] == '-') {
                        fuse_reply_err(req, EINVAL);
                        return;
                }
        }
        fs_lock(fs);
        freed = fs_cache_reclaim_locked(fs, bytes);
        fs_unlock(fs);
        log_info(
                "Reclaimed %" PRIu64 " bytes of clean cache (asked for %s)", freed,
                bytes == UINT64_MAX ? "all" : buf);
        fuse_reply_err(req, 0);
}

void fs_op_setxattr(
        fuse_req_t req,
        fuse_ino_t ino,
        const char *name,
        const char *value,
        size_t size,
        int flags) {
        Fs *fs = fs_of(req);
        char buf[32];
        char *end;
        double secs;
        FlushAllStart *st;
        FsFlushAll *f;

        if (ino != FS_ROOT_INO || strncmp(name, "user.azfilesfs.", 15) != 0) {
                fuse_reply_err(req, ENOTSUP);
                return;
        }
        if (streq(name, XATTR_RECLAIM)) {
                reclaim(req, value, size);
                return;
        }
        if (!streq(name, XATTR_FLUSH)) {
                fuse_reply_err(req, EPERM);
                return;
        }
        if (size == 0 || size >= sizeof(buf)) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        memcpy(buf, value, size);
        buf[size] = '\0';
        errno = 0;
        secs = strtod(buf, &end);
        while (*end == '\n' || *end == ' ')
                end++;
        if (errno != 0 || end == buf || *end != '\0' || !(secs >= 0) || secs > 86400) {
                fuse_reply_err(req, EINVAL);
                return;
        }
        st = calloc(1, sizeof(*st));
        f = calloc(1, sizeof(*f));
        if (!st || !f) {
                free(st);
                free(f);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        f->req = req;
        st->fs = fs;
        st->f = f;
        st->timeout_ms = (uint64_t)(secs * 1000);
        if (fs_post(fs, flush_all_start, st) < 0) {
                free(st);
                free(f);
                fuse_reply_err(req, EAGAIN);
        }
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
        fuse_reply_err(
                req,
                ino == FS_ROOT_INO && strncmp(name, "user.azfilesfs.", 15) == 0 ? EPERM : ENOTSUP);
}

/* ---- recovery ---- */

static int sidecar_parse(
        const char *text,
        char **ret_path,
        uint64_t *remote_size,
        uint64_t *fetch_limit,
        bool *shrunk,
        uint64_t *shrink_to,
        bool *create,
        mode_t *mode,
        int64_t *mtime_ns,
        char etag[static REST_ETAG_MAX],
        char boot[static 64],
        bool *durable,
        char **ret_pieces) {
        _cleanup_free_ char *copy = strdup(text), *path = NULL, *pieces = NULL;
        char *p, *line;
        bool magic = false;

        if (!copy)
                return -ENOMEM;
        p = copy;
        etag[0] = '\0';
        boot[0] = '\0'; /* none: a record of the old format, which was synced */
        while ((line = strsep(&p, "\n"))) {
                char *v = strchr(line, ' ');
                if (!v)
                        continue;
                *v++ = '\0';
                if (streq(line, "azfilesfs-dirty"))
                        magic = streq(v, "1");
                else if (streq(line, "path")) {
                        free(path);
                        if (url_percent_decode(v, strlen(v), &path) < 0)
                                return -EBADMSG;
                } else if (streq(line, "remote_size"))
                        *remote_size = strtoull(v, NULL, 10);
                else if (streq(line, "fetch_limit"))
                        *fetch_limit = strtoull(v, NULL, 10);
                else if (streq(line, "create")) {
                        unsigned m;
                        long long t;
                        if (sscanf(v, "%o %lld", &m, &t) != 2 || m > 07777)
                                return -EBADMSG;
                        *create = true;
                        *mode = (mode_t)m;
                        *mtime_ns = (int64_t)t;
                } else if (streq(line, "shrink_to")) {
                        *shrunk = true;
                        *shrink_to = strtoull(v, NULL, 10);
                } else if (streq(line, "boot"))
                        (void)snprintf(boot, 64, "%s", v);
                else if (streq(line, "durable"))
                        *durable = streq(v, "1");
                else if (streq(line, "etag"))
                        (void)snprintf(etag, REST_ETAG_MAX, "%s", streq(v, "-") ? "" : v);
                else if (streq(line, "pieces")) {
                        free(pieces);
                        pieces = strdup(v);
                }
        }
        if (!magic || isempty(path) || !pieces)
                return -EBADMSG;
        *ret_path = TAKE_PTR(path);
        *ret_pieces = TAKE_PTR(pieces);
        return 0;
}

typedef struct ProbeCall {
        Fs *fs;
        const char *path;
        bool done;
        int error;
} ProbeCall;

static void probe_done(RestResult *r, void *userdata) {
        ProbeCall *p = userdata;

        fs_lock(p->fs);
        fs_note_result_locked(p->fs, r, "Get Properties", p->path, -ENOENT);
        p->error = r->error;
        p->done = true;
        (void)pthread_cond_broadcast(&p->fs->cond);
        fs_unlock(p->fs);
}

/* Asks the share about path (type: Get File or Directory Properties) and waits for the answer
 * (bounded by the retry budget): 0 when it is there, -ENOENT when not. At mount time only. */
static int share_probe(Fs *fs, int type, const char *path) {
        ProbeCall p = {.fs = fs, .path = path};
        RestOp op = {.type = type, .path = path};
        int r = rest_client_submit(fs->rest, &op, probe_done, &p, NULL);

        if (r < 0)
                return r;
        fs_lock(fs);
        while (!p.done)
                (void)pthread_cond_wait(&fs->cond, &fs->lock);
        fs_unlock(fs);
        return p.error;
}

/* A new name beside path for bytes that must not go over it: <name>.azfilesfs-recovered-<UTC>
 * in path's directory, or in the root when that directory is gone; never a name the share or
 * this mount has. */
static int recovered_name(Fs *fs, const char *path, char **ret) {
        const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
        _cleanup_free_ char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup("");
        char stamp[32], leaf[256];
        struct tm tm;
        time_t t = time(NULL);
        size_t len;

        if (!dir || !gmtime_r(&t, &tm) ||
            strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) == 0)
                return -ENOMEM;
        if (dir[0] && !fs->backend_down &&
            share_probe(fs, REST_OP_GET_DIRECTORY_PROPERTIES, dir) == -ENOENT)
                dir[0] = '\0';
        /* At most 255 bytes with the suffix, cut at a character boundary. */
        len = MIN(strlen(base), sizeof(leaf) - 1 - strlen(RECOVERED_SUFFIX) - strlen(stamp) - 4);
        while (len > 0 && ((unsigned char)base[len] & 0xC0) == 0x80)
                len--;
        for (unsigned k = 0; k < 100; k++) {
                _cleanup_free_ char *cand = NULL;
                char n[4] = "";
                bool taken;

                if (k > 0)
                        (void)snprintf(n, sizeof(n), "-%u", k);
                (void)snprintf(
                        leaf, sizeof(leaf), "%.*s" RECOVERED_SUFFIX "%s%s", (int)len, base, stamp,
                        n);
                if (fs_path_join(dir, leaf, &cand) < 0)
                        return -ENOMEM;
                fs_lock(fs);
                taken = inode_table_find(fs->inodes, cand);
                fs_unlock(fs);
                if (taken ||
                    (!fs->backend_down && share_probe(fs, REST_OP_GET_FILE_PROPERTIES, cand) == 0))
                        continue;
                *ret = TAKE_PTR(cand);
                return 0;
        }
        return -EEXIST;
}

static int recover_one(Fs *fs, uint64_t id) {
        char name[64], text[65536];
        _cleanup_close_ int sfd = -EBADF;
        _cleanup_free_ char *path = NULL, *pieces = NULL, *torn = NULL;
        char etag[REST_ETAG_MAX], boot[64];
        uint64_t remote_size = 0, fetch_limit = 0, shrink_to = 0;
        bool shrunk = false, create = false, durable = false;
        mode_t mode = 0;
        int64_t mtime_ns = 0;
        struct stat st;
        ssize_t n;
        Inode *i;
        int fd, r;

        data_name(id, ".dirty", name);
        sfd = openat(fs->cache_dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (sfd < 0)
                return -errno;
        n = read(sfd, text, sizeof(text) - 1);
        if (n < 0)
                return -errno;
        text[n] = '\0';
        r = sidecar_parse(
                text, &path, &remote_size, &fetch_limit, &shrunk, &shrink_to, &create, &mode,
                &mtime_ns, etag, boot, &durable, &pieces);
        if (r < 0)
                return r;
        if (boot[0] && !durable && (streq(boot, "-") || !streq(boot, fs->boot_id))) {
                /* Written before a reboot and never synced: the data it points at may be torn
                 * (zeros, cut short). Its bytes go to a new file beside it; the share's copy of
                 * path is left alone. */
                torn = TAKE_PTR(path);
                r = recovered_name(fs, torn, &path);
                if (r < 0)
                        return r;
                if (!create)
                        mode = fs->o->file_mode;
                create = true;
                remote_size = fetch_limit = 0;
                shrunk = false;
                etag[0] = '\0';
        }
        data_name(id, ".data", name);
        fd = openat(fs->cache_dir_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        fs_lock(fs);
        i = inode_table_find(fs->inodes, path);
        if (!i)
                r = inode_table_add(fs->inodes, path, false, &i);
        if (r >= 0 && (i->is_dir || i->cache_fd >= 0))
                r = -EEXIST;
        if (r < 0) {
                fs_unlock(fs);
                safe_close(fd);
                return r;
        }
        i->perm = fs->o->file_mode;
        i->cache_fd = fd;
        i->cache_id = id;
        i->state_next = fs->state_list;
        if (fs->state_list)
                fs->state_list->state_prev = i;
        fs->state_list = i;
        i->size = (uint64_t)st.st_size;
        i->remote_size = remote_size;
        i->fetch_limit = MIN(fetch_limit, i->size);
        i->shrunk = shrunk;
        i->shrink_to = shrink_to;
        i->size_dirty = true;
        i->sidecar_exists = true;
        i->sidecar_durable = !boot[0] || durable;
        i->mtime_ns = i->ctime_ns =
                (int64_t)st.st_mtim.tv_sec * INT64_C(1000000000) + st.st_mtim.tv_nsec;
        if (create && torn)
                mtime_ns = i->mtime_ns;
        if (create) {
                /* Never reached the share: Create File with its mode and time first. */
                i->create_pending = true;
                i->perm = mode;
                i->perm_known = true;
                i->mtime_ns = mtime_ns;
        }
        (void)snprintf(i->cache_etag, sizeof(i->cache_etag), "%s", etag);
        r = pieces_grow_locked(i, i->size);
        for (size_t k = 0; torn && r >= 0 && k < i->n_pieces; k++)
                piece_set_locked(fs, i, k, PIECE_DIRTY | PIECE_PRESENT, 0);
        for (char *p = pieces, *tok; !torn && r >= 0 && (tok = strsep(&p, ","));) {
                unsigned long long k;
                char *end;
                if (!*tok)
                        continue;
                k = strtoull(tok, &end, 10);
                if (*end || k >= i->n_pieces)
                        continue;
                piece_set_locked(fs, i, (size_t)k, PIECE_DIRTY | PIECE_PRESENT, 0);
        }
        /* Pieces not marked dirty are not known to be in the cache file: fetched again when read.
         */
        if (torn) {
                _cleanup_free_ char *f1 = NULL, *f2 = NULL;
                if (asprintf(&f1, "AZFILESFS_PATH=/%s", torn) < 0)
                        f1 = NULL;
                if (asprintf(&f2, "AZFILESFS_RECOVERED_PATH=/%s", path) < 0)
                        f2 = NULL;
                log_struct(
                        LOG_WARNING, 0,
                        ((const char *[]){
                                f1 ? f1 : "AZFILESFS_PATH=?",
                                f2 ? f2 : "AZFILESFS_RECOVERED_PATH=?", NULL}),
                        "Found data of /%s not yet on the share, left before a reboot and never synced (it may be torn): uploading it as /%s, leaving /%s on the share as it is",
                        torn, path, torn);
                /* The record now names the new file (a crash before its upload keeps it so). */
                fs_sidecar_update_locked(fs, i);
        } else
                log_notice(
                        "Found data of /%s not yet on the share (left by an earlier run); uploading it",
                        path);
        fs_upload_start_locked(fs, i);
        fs_unlock(fs);
        return r < 0 ? r : 1;
}

int fs_recover(Fs *fs) {
        _cleanup_close_ int dfd = -EBADF;
        DIR *d;
        struct dirent *de;
        uint64_t max_id = 0;
        int r, n = 0;

        dfd = fcntl(fs->cache_dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d)
                return -errno;
        TAKE_FD(dfd);
        /* First pass: highest id, stale temporaries. */
        while ((de = readdir(d))) {
                char *end;
                uint64_t id = strtoull(de->d_name, &end, 16);
                if (end == de->d_name)
                        continue;
                if (id > max_id)
                        max_id = id;
                if (strncmp(end, ".dirty.", 7) == 0 && strlen(end) > 4 &&
                    streq(end + strlen(end) - 4, ".tmp"))
                        (void)unlinkat(fs->cache_dir_fd, de->d_name, 0);
        }
        fs->next_cache_id = max_id + 1;
        rewinddir(d);
        while ((de = readdir(d))) {
                char *end, name[64];
                uint64_t id = strtoull(de->d_name, &end, 16);
                if (end == de->d_name)
                        continue;
                if (streq(end, ".data")) {
                        /* Clean cache of an earlier run: not reused. */
                        data_name(id, ".dirty", name);
                        if (faccessat(fs->cache_dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                                (void)unlinkat(fs->cache_dir_fd, de->d_name, 0);
                        continue;
                }
                if (!streq(end, ".dirty"))
                        continue;
                r = recover_one(fs, id);
                if (r < 0)
                        log_warning_errno(
                                r, "Cannot recover %s/%s, leaving it there: %m", fs->cache_path,
                                de->d_name);
                else
                        n++;
        }
        closedir(d);
        if (n == 0)
                return 0;
        return fs_flush_wait(fs, fs->o->retry_budget_ms + 5000);
}
