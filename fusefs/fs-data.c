/* SPDX-License-Identifier: MIT */
/* The data path: one cache file per share file under the per-mount cache directory, filled in
 * FS_PIECE_SIZE pieces by range GETs; writes land in the cache file and mark pieces dirty. The
 * dirty records that let a restarted mount upload what a crash left behind are in fs-record.c,
 * the uploads to the share in fs-upload.c. Here too: the cache's eviction and reclaim, and the
 * root's xattrs (stats, dirty bytes, flush, reclaim). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "fs-internal.h"
#include "http-client.h"
#include "list.h"
#include "log.h"

#define P ((uint64_t)FS_PIECE_SIZE)
#define READAHEAD_PIECES 4
#define XATTR_DIRTY "user.azfilesfs.dirty_bytes"
#define XATTR_STATS "user.azfilesfs.stats"
#define XATTR_FLUSH "user.azfilesfs.flush"
#define XATTR_RECLAIM "user.azfilesfs.reclaim"

static int64_t realtime_ns(void) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

/* ---- pieces ---- */

int fs_pieces_grow_locked(Inode *i, uint64_t size) {
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

/* The bytes of i's n pieces with any of flags that lie inside the file (only pieces from the one
 * the size falls in on can be partly outside). */
static uint64_t pieces_bytes(const Inode *i, uint64_t n, uint8_t flags) {
        uint64_t bytes = n * P;

        for (size_t k = (size_t)(i->size / P); k < i->n_pieces; k++) {
                uint64_t start = (uint64_t)k * P;
                if (i->pieces[k] & flags)
                        bytes -= start >= i->size ? P : P - MIN(P, i->size - start);
        }
        return bytes;
}

/* Counts i again in Fs.cache_bytes (cached bytes, for cache_size) and Fs.dirty_charge (unsynced
 * bytes and DIRTY_FILE_COST per file, for max_dirty): after its pieces or its size changed. A
 * small file counts its size, not a whole piece: counted in pieces, the default cache held 2,560
 * small files (a tar x of more deleted one cached file per file it wrote) and max_dirty 256 (its
 * writers waited for uploads after that many); BENCHMARKS.md, tar x. */
void fs_charge_locked(Fs *fs, Inode *i) {
        uint64_t cached = pieces_bytes(i, i->n_present, PIECE_PRESENT), dirty = 0;

        if (i->n_dirty > 0)
                dirty = DIRTY_FILE_COST +
                        pieces_bytes(i, i->n_dirty, PIECE_DIRTY | PIECE_UPLOADING);
        assert(fs->cache_bytes >= i->cache_charged && fs->dirty_charge >= i->dirty_charged);
        fs->cache_bytes = fs->cache_bytes - i->cache_charged + cached;
        i->cache_charged = cached;
        fs->dirty_files = fs->dirty_files - (i->dirty_charged > 0) + (dirty > 0);
        fs->dirty_charge = fs->dirty_charge - i->dirty_charged + dirty;
        i->dirty_charged = dirty;
}

/* Changes piece k's flags and keeps the counters (dirty pieces, cached bytes) right. */
void fs_piece_set_locked(Fs *fs, Inode *i, size_t k, uint8_t set, uint8_t clear) {
        uint8_t old = i->pieces[k], new = (uint8_t)((old | set) & ~clear);
        bool was_dirty = old & (PIECE_DIRTY | PIECE_UPLOADING),
             is_dirty = new &(PIECE_DIRTY | PIECE_UPLOADING);

        /* Written here, or gone: its bytes are no longer only the share's. */
        if ((new &PIECE_DIRTY) || !(new &PIECE_PRESENT))
                new &= (uint8_t)~PIECE_FETCHED;
        if ((old & PIECE_FETCHED) != (new &PIECE_FETCHED)) {
                if (new &PIECE_FETCHED)
                        i->n_fetched++;
                else
                        i->n_fetched--;
        }

        if (was_dirty != is_dirty) {
                if (is_dirty) {
                        if (i->n_dirty++ == 0)
                                i->dirty_since_ns = fs_now();
                } else
                        i->n_dirty--;
        }
        if ((old & PIECE_PRESENT) != (new &PIECE_PRESENT)) {
                if (new &PIECE_PRESENT)
                        i->n_present++;
                else
                        i->n_present--;
        }
        i->pieces[k] = new;
        if (was_dirty != is_dirty || (old & PIECE_PRESENT) != (new &PIECE_PRESENT))
                fs_charge_locked(fs, i);
}

bool fs_inode_is_dirty(const Inode *i) {
        return i->n_dirty > 0 || i->size_dirty || i->create_pending;
}

/* ---- cache directory and files ---- */

#define CACHE_FILES_CAP 65536u
#define FD_RESERVE 512u

void fs_data_name(uint64_t id, const char *suffix, char buf[static 64]) {
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

/* How many files the cache keeps at most (each holds its cache file open): what the limit of open
 * files leaves after FD_RESERVE for connections, records and the FUSE device, up to
 * CACHE_FILES_CAP (beyond it the walks of the list cost more than the files save). */
static unsigned cache_files_max(void) {
        struct rlimit rl;
        uint64_t n = 1024;

        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0)
                n = rl.rlim_cur == RLIM_INFINITY ? CACHE_FILES_CAP : (uint64_t)rl.rlim_cur;
        n = n > 2 * FD_RESERVE ? n - FD_RESERVE : n / 2;
        return (unsigned)MAX(MIN(n, CACHE_FILES_CAP), 16u);
}

/* FNV-1a of s with ASCII letters in lower case: names the cache directory of a share. Frozen (a
 * new release must find the dirty data an old one left), so not fs_path_hash(). */
static uint64_t cache_dir_hash(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                h ^= *p >= 'A' && *p <= 'Z' ? (uint8_t)(*p - 'A' + 'a') : *p;
                h *= UINT64_C(1099511628211);
        }
        return h;
}

int fs_cache_open_dir(Fs *fs, char **reterr_msg) {
        _cleanup_close_ int top = -EBADF, dfd = -EBADF, lfd = -EBADF;
        uint64_t h = cache_dir_hash(fs->o->endpoint) ^ (cache_dir_hash(fs->o->share) * 31) ^
                     (cache_dir_hash(fs->o->subdir) * 131);
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
        fs->cache_files_max = cache_files_max();
        return 0;
}

/* Ids are taken in order from one past the highest the cache directory had at mount
 * (fs_recover); an id whose cache file or record is there (a stray name made the count wrap, or
 * a record left by a recovery that failed) is skipped, never truncated or replaced. */
int fs_cache_attach_locked(Fs *fs, Inode *i) {
        char name[64], rec[64];
        int fd = -EBADF;

        if (i->cache_fd >= 0)
                return 0;
        for (unsigned tries = 0; fd < 0; tries++) {
                if (tries == 64)
                        return -EEXIST;
                i->cache_id = fs->next_cache_id++;
                fs_data_name(i->cache_id, ".data", name);
                fs_data_name(i->cache_id, ".dirty", rec);
                fd =
                        openat(fs->cache_dir_fd, name,
                               O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0 && errno != EEXIST)
                        return -errno;
                if (fd >= 0 && faccessat(fs->cache_dir_fd, rec, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                        fd = safe_close(fd);
                        (void)unlinkat(fs->cache_dir_fd, name, 0);
                }
        }
        i->cache_fd = fd;
        fs_cache_push_locked(fs, i);
        return 0;
}

static void state_link_front_locked(Fs *fs, Inode *i) {
        LIST_PREPEND(fs->state_list, i, state_next, state_prev);
        if (!i->state_next)
                fs->state_tail = i;
}

/* Puts i (its cache file just opened) on Fs.state_list, as the most recently used. */
void fs_cache_push_locked(Fs *fs, Inode *i) {
        assert(!i->state_prev && !i->state_next && fs->state_list != i);
        state_link_front_locked(fs, i);
        fs->cache_files++;
}

static void state_unlink_locked(Fs *fs, Inode *i) {
        if (fs->state_tail == i)
                fs->state_tail = i->state_prev;
        LIST_REMOVE(fs->state_list, i, state_next, state_prev);
}

/* i was used now: it moves to the front of Fs.state_list, so that the list's tail is the least
 * recently used (eviction looks there first, not through every cached file). */
void fs_cache_touch_locked(Fs *fs, Inode *i) {
        if (i->cache_fd < 0 || fs->state_list == i)
                return;
        state_unlink_locked(fs, i);
        state_link_front_locked(fs, i);
}

/* Punches holes where no piece is usable or being filled (the old version's bytes after a
 * reset). Lock held, no read replying from the cache file. */
static void punch_missing_locked(Inode *i) {
        const uint8_t busy =
                PIECE_PRESENT | PIECE_DIRTY | PIECE_FETCHING | PIECE_UPLOADING | PIECE_FILLING;

        i->punch_pending = false;
        for (size_t k = 0; k < i->n_pieces;) {
                size_t end = k;
                while (end < i->n_pieces && !(i->pieces[end] & busy))
                        end++;
                if (end > k &&
                    fallocate(
                            i->cache_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                            (off_t)((uint64_t)k * P), (off_t)((uint64_t)(end - k) * P)) < 0)
                        log_debug_errno(
                                -errno, "Cannot punch the cache file of %s, ignoring: %m", i->path);
                k = end + 1;
        }
}

void fs_cache_reset_locked(Fs *fs, Inode *i, uint64_t remote_size, const char *etag) {
        assert(!fs_inode_is_dirty(i));
        i->cache_gen++; /* ranges still in flight belong to the old version */
        for (size_t k = 0; k < i->n_pieces; k++)
                if (!(i->pieces[k] & PIECE_FETCHING))
                        fs_piece_set_locked(fs, i, k, 0, PIECE_PRESENT);
        if (i->reads_in_flight > 0) {
                /* Another descriptor's read is copying the old version's bytes out of the
                 * file: holes now would reach it as zeros. Only the end moves now (a read past
                 * it is cut short, as by a truncation); the holes once the reads are done. */
                if (ftruncate(i->cache_fd, (off_t)remote_size) < 0)
                        log_debug_errno(
                                -errno, "Cannot resize cache file of %s, ignoring: %m", i->path);
                i->punch_pending = true;
        } else if (ftruncate(i->cache_fd, 0) < 0 || ftruncate(i->cache_fd, (off_t)remote_size) < 0)
                log_debug_errno(-errno, "Cannot resize cache file of %s, ignoring: %m", i->path);
        (void)fs_pieces_grow_locked(i, remote_size);
        i->size = remote_size;
        fs_charge_locked(fs, i);
        i->remote_size = remote_size;
        i->fetch_limit = remote_size;
        i->size_dirty = false;
        (void)snprintf(i->cache_etag, sizeof(i->cache_etag), "%s", etag ? etag : "");
        i->cache_mixed = false;
}

void fs_cache_drop_locked(Fs *fs, Inode *i) {
        char name[64];

        if (i->cache_fd < 0)
                return;
        for (size_t k = 0; k < i->n_pieces; k++)
                fs_piece_set_locked(fs, i, k, 0, PIECE_PRESENT | PIECE_DIRTY | PIECE_UPLOADING);
        fs_sidecar_remove_locked(fs, i);
        i->cache_fd = safe_close(i->cache_fd);
        fs_data_name(i->cache_id, ".data", name);
        (void)unlinkat(fs->cache_dir_fd, name, 0);
        assert(i->n_present == 0 && i->cache_charged == 0 && i->dirty_charged == 0);
        free(i->pieces);
        i->pieces = NULL;
        i->n_pieces = 0;
        i->cache_etag[0] = '\0';
        i->cache_mixed = false;
        state_unlink_locked(fs, i);
        fs->cache_files--;
}

static bool inode_busy_locked(const Inode *i) {
        /* rec_intent: a rename or Delete File concerning it is on its way; its end finds the
         * files to clear among the cached ones (intents_end_locked). */
        if (i->open_count > 0 || fs_inode_is_dirty(i) || i->uploading || i->waiters ||
            i->rec_intent != 0)
                return true;
        for (size_t k = 0; k < i->n_pieces; k++)
                if (i->pieces[k] & (PIECE_FETCHING | PIECE_FILLING))
                        return true;
        return false;
}

/* The least recently used cache file that can go: nothing dirty, not open (so no read is
 * splicing from it), nothing fetched or uploaded, nobody waiting, no request's intent. NULL when
 * there is none. The list is in the order of use: only the busy files behind the victim are looked
 * at. */
static Inode *cache_victim_locked(Fs *fs) {
        for (Inode *i = fs->state_tail; i; i = i->state_prev)
                if (!inode_busy_locked(i))
                        return i;
        return NULL;
}

static bool cache_over_locked(const Fs *fs) {
        return fs->cache_bytes > fs->o->cache_size || fs->cache_files > fs->cache_files_max;
}

void fs_cache_evict_locked(Fs *fs) {
        while (cache_over_locked(fs)) {
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

void fs_discard_dirty_locked(Fs *fs, Inode *i) {
        if (i->cache_fd < 0)
                return;
        for (size_t k = 0; k < i->n_pieces; k++)
                fs_piece_set_locked(fs, i, k, 0, PIECE_DIRTY);
        i->size_dirty = false;
        i->create_pending = false;
        fs_sidecar_remove_locked(fs, i);
        /* No upload ends for it: writes waiting under max_dirty, and a flush-all waiting for
         * nothing else, would wait for ever (the flush-all until its timeout). */
        fs_cap_recheck_later_locked(fs);
        fs_flush_all_check_later_locked(fs);
}

int fs_truncate_local_locked(Fs *fs, Inode *i, uint64_t size) {
        int r;

        if (size > REST_FILE_SIZE_MAX)
                return -EFBIG; /* the share's limit, as for a file not open (Set File Properties) */

        /* A durable record must not outlive a change of the data it points at: when it cannot
         * be replaced, the data is not touched (as for a write). */
        if (i->sidecar_durable || i->sidecar_syncing) {
                r = fs_sidecar_note_locked(fs, i);
                if (r < 0)
                        return fs_record_errno(r);
        }
        if (ftruncate(i->cache_fd, (off_t)size) < 0)
                return -errno;
        r = fs_pieces_grow_locked(i, size);
        if (r < 0)
                return r;
        for (size_t k = (size_t)((size + P - 1) / P); k < i->n_pieces; k++)
                fs_piece_set_locked(fs, i, k, 0, PIECE_DIRTY | PIECE_PRESENT);
        i->fetch_limit = MIN(i->fetch_limit, size);
        /* The share's end: a round running may have grown the file there already. */
        uint64_t share_size = i->uploading ? MAX(i->remote_size, i->upload_size) : i->remote_size;
        if (size < share_size && (!i->shrunk || size < i->shrink_to)) {
                i->shrunk = true;
                i->shrink_to = size;
        }
        if (size < i->size)
                i->shrink_gen++;
        i->size = size;
        fs_charge_locked(fs, i);
        i->size_dirty = true;
        i->mtime_ns = i->ctime_ns = realtime_ns();
        if (i->dirty_since_ns == 0 || i->n_dirty == 0)
                i->dirty_since_ns = fs_now();
        /* As for a write: not acknowledged when its record cannot be written (the cache disk
         * full), as a crash would lose it. The cache has it all the same (dirty: uploaded unless
         * azfilesfs dies first). */
        r = fs_sidecar_note_locked(fs, i);
        return r < 0 ? fs_record_errno(r) : 0;
}

/* Requests of one kind waiting on their file: close() and fsync() calls for the upload
 * (FS_WAIT_FLUSH), reads for a Get Range (FS_WAIT_READ). */
static uint64_t waiting_locked(Fs *fs, FsWaitKind kind) {
        uint64_t n = 0;

        for (Inode *i = fs->state_list; i; i = i->state_next)
                for (FsWaiter *w = i->waiters; w; w = w->next)
                        n += w->kind == kind;
        return n;
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
 * write, a piece the write covers entirely needs no fetch; take: the write goes ahead now (none
 * needed), and those pieces are being filled by it (PIECE_FILLING): reads and other writes of
 * them wait until write_commit() has copied the bytes in (or failed to). Not before: a write
 * that waits again (under max_dirty) would hold them, and they would be read as zeros. */
static int pieces_need_locked(
        Fs *fs, Inode *i, uint64_t off, uint64_t len, bool write, bool fetch, bool take) {
        size_t covered_first = SIZE_MAX, covered_end = 0;
        int need = 0;

        if (len == 0)
                return 0;
        if (fs_pieces_grow_locked(i, off + len) < 0)
                return -ENOMEM;
        for (size_t k = (size_t)(off / P); k <= (size_t)((off + len - 1) / P); k++) {
                uint64_t start = (uint64_t)k * P, end = MIN(start + P, i->fetch_limit);
                uint8_t f = i->pieces[k];
                FetchCall *c;

                if (f & PIECE_PRESENT)
                        continue;
                if (f & (PIECE_FETCHING | PIECE_FILLING)) {
                        need++;
                        continue;
                }
                if (start >= i->fetch_limit) {
                        fs_piece_set_locked(fs, i, k, PIECE_PRESENT, 0); /* zeros */
                        continue;
                }
                if (write && off <= start && off + len >= end) {
                        /* The write fills it: taken once the write goes ahead (below). */
                        covered_first = MIN(covered_first, k);
                        covered_end = k + 1;
                        continue;
                }
                need++;
                if (!fetch)
                        continue;
                /* Deleted or replaced on the share while open: what has its name now (if
                 * anything) is another file, whose bytes these are not. */
                if (i->unlinked)
                        return -EIO;
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
                fs_piece_set_locked(fs, i, k, PIECE_FETCHING, 0);
                i->refs++;
        }
        for (size_t k = covered_first; take && need == 0 && k < covered_end; k++)
                if (!(i->pieces[k] & (PIECE_PRESENT | PIECE_FETCHING)))
                        fs_piece_set_locked(fs, i, k, PIECE_FILLING, 0);
        return need;
}

/* Counts a read that replies from i's cache file (reply_read). Lock held. */
static int read_begin_locked(Inode *i) {
        i->reads_in_flight++;
        i->refs++; /* once the reply is out, the kernel may release and forget the file */
        return i->cache_fd;
}

/* Replies to a read from i's cache file fd, without the lock: the caller counted it
 * (read_begin_locked), so that no reset punches the bytes it copies and i stays. */
static void reply_read(Fs *fs, fuse_req_t req, Inode *i, int fd, uint64_t off, uint64_t len) {
        struct fuse_bufvec buf = FUSE_BUFVEC_INIT(len);

        buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        buf.buf[0].fd = fd;
        buf.buf[0].pos = (off_t)off;
        (void)fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
        fs_lock(fs);
        assert(i->reads_in_flight > 0);
        if (--i->reads_in_flight == 0 && i->punch_pending && i->cache_fd >= 0)
                punch_missing_locked(i);
        fs_inode_unref_locked(fs, i);
        fs_unlock(fs);
}

void fs_waiter_free(FsWaiter *w) {
        if (!w)
                return;
        free(w->data);
        free(w);
}

static bool overlaps(const FsWaiter *w, uint64_t start, uint64_t len) {
        return w->off < start + len && start < w->off + MAX(w->len, 1);
}

/* Reads and writes of i taken off its queue: ready to go, or failed (off holds the errno). */
typedef struct FsWaitersWoken {
        FsWaiter *ready, *failed;
} FsWaitersWoken;

/* Takes off i's queue the reads and writes that need no piece now; those that waited for the
 * piece at start fail with err, when it is an error. Lock held. */
static void
waiters_recheck_locked(Fs *fs, Inode *i, uint64_t start, int err, FsWaitersWoken *woken) {
        for (FsWaiter **p = &i->waiters; *p;) {
                FsWaiter *w = *p;
                int need = 0;
                if (w->kind == FS_WAIT_FLUSH) {
                        p = &w->next;
                        continue;
                }
                if (err < 0 && overlaps(w, start, P))
                        need = err;
                else
                        /* A write found ready takes its pieces when it is retried. */
                        need = pieces_need_locked(
                                fs, i, w->off, w->len, w->kind == FS_WAIT_WRITE, true, false);
                if (need > 0) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                if (need < 0) {
                        w->off = (uint64_t)-need; /* the errno, for the reply */
                        w->next = woken->failed;
                        woken->failed = w;
                } else {
                        w->next = woken->ready;
                        woken->ready = w;
                }
        }
}

/* Replies to the failed ones and runs the ready ones of woken. No lock held. */
static void run_woken_waiters(Fs *fs, FsWaitersWoken *woken) {
        FsWaiter *ready = TAKE_PTR(woken->ready);

        while (woken->failed) {
                FsWaiter *w = woken->failed;
                woken->failed = w->next;
                fuse_reply_err(w->req, (int)w->off);
                fs_waiter_free(w);
        }
        while (ready) {
                FsWaiter *w = ready;
                ready = w->next;
                w->next = NULL;
                if (w->kind == FS_WAIT_READ) {
                        int fd;
                        Inode *i;
                        fs_lock(fs);
                        i = inode_table_get(fs->inodes, w->ino);
                        fd = i && i->cache_fd >= 0 ? read_begin_locked(i) : -EBADF;
                        fs_unlock(fs);
                        if (fd < 0)
                                fuse_reply_err(w->req, EBADF);
                        else
                                reply_read(fs, w->req, i, fd, w->off, w->len);
                        fs_waiter_free(w);
                } else
                        fs_write_retry(fs, w);
        }
}

/* Copies src (a pipe that libfuse spliced the request into, or memory) to the cache file at off:
 * from a pipe by splice, so the bytes are copied once, from the writer's pages (direct I/O) or
 * the kernel's request into the cache file's page cache; from memory by pwrite. */
static ssize_t write_to_cache(int fd, struct fuse_bufvec *src, uint64_t off) {
        struct fuse_bufvec dst = FUSE_BUFVEC_INIT(fuse_buf_size(src));

        dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
        dst.buf[0].fd = fd;
        dst.buf[0].pos = (off_t)off;
        return fuse_buf_copy(&dst, src, 0);
}

/* A fetch cut the cache file back to the file's size while a write was extending it: done once
 * the last write in flight has set the size (trim_pending). Lock held. */
static void trim_after_writes_locked(Inode *i) {
        if (!i->trim_pending || i->writes_in_flight > 0 || i->cache_fd < 0)
                return;
        i->trim_pending = false;
        if (ftruncate(i->cache_fd, (off_t)i->size) < 0)
                log_debug_errno(-errno, "Cannot resize cache file of %s, ignoring: %m", i->path);
}

/* A write of len bytes at off that copied done of them into the cache file (fewer: the cache disk
 * full, a failed copy). The pieces it was filling (taken without a fetch: it covered them whole,
 * pieces_need_locked()) are present if it filled them; else they hold holes where the share's
 * bytes belong, are missing again, fetched when next needed, and the write counts only up to the
 * first of them. No other write can have written into them: it waited. A short write's extension
 * of the cache file is cut back after the writes in flight. Returns the bytes the write may
 * report; *filled: pieces were released (reads and writes may wait for them). Lock held. */
static size_t write_settle_filling_locked(
        Fs *fs, Inode *i, uint64_t off, uint64_t len, size_t done, bool *filled) {
        size_t keep = done;

        for (size_t k = (size_t)(off / P); k < i->n_pieces && (uint64_t)k * P < off + len; k++) {
                uint64_t start = (uint64_t)k * P, end = MIN(start + P, i->fetch_limit);
                if (!(i->pieces[k] & PIECE_FILLING))
                        continue;
                *filled = true;
                if (off + done >= end)
                        fs_piece_set_locked(fs, i, k, PIECE_PRESENT, PIECE_FILLING);
                else {
                        fs_piece_set_locked(fs, i, k, 0, PIECE_FILLING);
                        keep = MIN(keep, (size_t)(start - off));
                }
        }
        if (done < len && off + len > i->size)
                i->trim_pending = true;
        return keep;
}

/* Writes src into i's cache file fd and marks it dirty. No lock held; write_try() found the
 * pieces ready and counted the write in Inode.writes_in_flight under the lock, so that nothing
 * drops or cuts the cache file under it (a fetch's trim, an open's reset, the tick taking the
 * data for synced). *cached: the kernel may hold pages of the file (Inode.kernel_cached);
 * woken: reads and writes that waited for the pieces this write was filling, for the caller to
 * run. */
static ssize_t write_commit(
        Fs *fs,
        uint64_t ino,
        int fd,
        bool was_durable,
        struct fuse_bufvec *src,
        uint64_t off,
        bool *cached,
        FsWaitersWoken *woken) {
        bool new_piece = false, filled = false;
        size_t done = 0;
        int err = 0;
        ssize_t copied = 0;
        Inode *i;

        /* A durable record must not outlive a change of the data it points at: replaced first by
         * one that is not (written, not synced; a reboot then makes recovery keep the file).
         * When that fails, the data is not touched. */
        if (was_durable)
                err = fs_sidecar_update(fs, ino);
        if (err == 0)
                copied = write_to_cache(fd, src, off);
        if (copied < 0)
                err = (int)copied;
        else
                done = (size_t)copied;
        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (i)
                i->writes_in_flight--;
        *cached = i && i->kernel_cached;
        if (i && i->cache_fd >= 0)
                done = write_settle_filling_locked(fs, i, off, fuse_buf_size(src), done, &filled);
        if (filled)
                waiters_recheck_locked(fs, i, 0, 0, woken);
        if (done == 0) {
                if (i)
                        trim_after_writes_locked(i);
                fs_unlock(fs);
                return err ? err : -EIO;
        }
        /* Not acknowledged when its pieces cannot be marked dirty: its bytes would never go. */
        if (i && i->cache_fd >= 0 && fs_pieces_grow_locked(i, off + done) < 0) {
                trim_after_writes_locked(i);
                fs_unlock(fs);
                return -ENOMEM;
        }
        if (i && i->cache_fd >= 0) {
                for (size_t k = (size_t)(off / P); k <= (size_t)((off + done - 1) / P); k++) {
                        if (!(i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)))
                                new_piece = true;
                        fs_piece_set_locked(fs, i, k, PIECE_DIRTY | PIECE_PRESENT, 0);
                }
                if (off + done > i->size) {
                        i->size = off + done;
                        fs_charge_locked(fs, i);
                }
                i->mtime_ns = i->ctime_ns = realtime_ns();
                fs_cache_touch_locked(fs, i);
                /* A record another writer started may not be on disk yet: this write is
                 * acknowledged only after one that covers it is. */
                new_piece = new_piece || !i->sidecar_exists || i->sidecar_done_seq < i->sidecar_seq;
                fs_write_through_locked(fs, i, off, off + done);
        }
        if (i)
                trim_after_writes_locked(i);
        fs_unlock(fs);
        /* Acknowledged only once the record of the new dirty piece is in place: a write whose
         * record could not be written (the cache disk full) fails, as a crash would lose it. Its
         * bytes are in the cache all the same (dirty: uploaded unless azfilesfs dies first). */
        if (new_piece) {
                err = fs_sidecar_update(fs, ino);
                if (err < 0)
                        return fs_record_errno(err);
        }
        return (ssize_t)done;
}

FsWaiter *fs_cap_waiters_take_locked(Fs *fs, int *ret_err) {
        FsWaiter *cap;

        if (!fs->cap_waiters || (fs_over_cap_locked(fs) && fs->last_upload_error >= 0))
                return NULL;
        cap = TAKE_PTR(fs->cap_waiters);
        *ret_err = fs_over_cap_locked(fs) ? fs->last_upload_error : 0;
        return cap;
}

void fs_cap_waiters_run(Fs *fs, FsWaiter *cap, int err) {
        while (cap) {
                FsWaiter *w = cap;
                cap = w->next;
                w->next = NULL;
                if (err < 0) {
                        fuse_reply_err(w->req, -err);
                        fs_waiter_free(w);
                } else
                        fs_write_retry(fs, w);
        }
}

static void cap_recheck(void *userdata, bool cancelled) {
        Fs *fs = userdata;
        FsWaiter *cap;
        int err = 0;

        if (cancelled)
                return; /* at fs_free(): the session has ended */
        fs_lock(fs);
        fs->cap_recheck_posted = false;
        cap = fs_cap_waiters_take_locked(fs, &err);
        fs_unlock(fs);
        fs_cap_waiters_run(fs, cap, err);
}

void fs_cap_recheck_later_locked(Fs *fs) {
        if (!fs->cap_waiters || fs->cap_recheck_posted)
                return;
        if (fs_post(fs, cap_recheck, fs) >= 0)
                fs->cap_recheck_posted = true;
}

bool fs_over_cap_locked(Fs *fs) {
        /* Files with unsynced data are not evicted, and each holds its cache file open: beyond
         * cache_files_max of them, writers wait too (else a limit of open files lower than
         * max_dirty / DIRTY_FILE_COST small files would run out). */
        return fs->dirty_charge > fs->o->max_dirty || fs->dirty_files >= fs->cache_files_max;
}

/* Tries a write of src now; when it must wait (pieces to fetch, too much dirty data), queues it,
 * with a copy of the data unless w (a write queued before, src its data) already holds it.
 * direct: from a write-only descriptor, whose writes do not go through the page cache. */
static void write_try(
        Fs *fs,
        fuse_req_t req,
        uint64_t ino,
        struct fuse_bufvec *src,
        uint64_t off,
        bool direct,
        FsWaiter *w) {
        size_t size = fuse_buf_size(src);
        bool cached = false, was_durable = false;
        FsWaitersWoken woken = {};
        int need, fd = -EBADF;
        Inode *i;
        ssize_t n;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || i->cache_fd < 0) {
                fs_unlock(fs);
                fs_waiter_free(w);
                fuse_reply_err(req, EBADF);
                return;
        }
        need = fs_over_cap_locked(fs) ? 1 : pieces_need_locked(fs, i, off, size, true, true, true);
        if (need > 0) {
                if (!w) {
                        struct fuse_bufvec mem = FUSE_BUFVEC_INIT(size);
                        int e = ENOMEM;

                        if ((w = calloc(1, sizeof(*w))) && (w->data = malloc(size ? size : 1))) {
                                mem.buf[0].mem = w->data;
                                e = fuse_buf_copy(&mem, src, 0) == (ssize_t)size ? 0 : EIO;
                        }
                        if (e != 0) {
                                fs_unlock(fs);
                                fs_waiter_free(w);
                                fuse_reply_err(req, e);
                                return;
                        }
                }
                *w = (FsWaiter){
                        .kind = FS_WAIT_WRITE,
                        .req = req,
                        .ino = ino,
                        .off = off,
                        .len = size,
                        .data = w->data,
                        .direct = direct};
                if (fs_over_cap_locked(fs)) {
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
        if (need == 0) {
                /* Counted before the lock is let go: the pieces found ready stay so. */
                i->writes_in_flight++;
                fd = i->cache_fd;
                was_durable = i->sidecar_durable || i->sidecar_syncing;
        }
        fs_unlock(fs);
        if (need < 0) {
                fs_waiter_free(w);
                fuse_reply_err(req, -need);
                return;
        }
        n = write_commit(fs, ino, fd, was_durable, src, off, &cached, &woken);
        /* Reads that waited for the pieces this write filled hold their pages of the file locked
         * in the kernel: answered before the range is dropped below, which waits for them. */
        run_woken_waiters(fs, &woken);
        /* A direct write went around the page cache, and pages of the file that another
         * descriptor read may be in it: they are dropped before the write is answered, so that
         * no read after it sees the old bytes. Kernels before 6.6 do not drop the range of a
         * direct write at all (6.18 does, before the write and after the answer). Takes no lock
         * the writer holds, but waits for reads in flight of the range: a write that waited is
         * retried on the I/O thread, which must stay free to answer them (fs-inval.c). */
        if (n > 0 && direct && cached && w) {
                free(w->data);
                w->data = NULL;
                w->off = off;
                w->len = (uint64_t)n;
                fs_inval_reply_write(fs, w);
        } else {
                fs_waiter_free(w);
                if (n > 0 && direct && cached)
                        (void)fuse_lowlevel_notify_inval_inode(fs->se, ino, (off_t)off, (off_t)n);
                if (n < 0)
                        fuse_reply_err(req, (int)-n);
                else
                        fuse_reply_write(req, (size_t)n);
        }
}

void fs_write_retry(Fs *fs, FsWaiter *w) {
        struct fuse_bufvec src = FUSE_BUFVEC_INIT(w->len);

        src.buf[0].mem = w->data;
        write_try(fs, w->req, w->ino, &src, w->off, w->direct, w);
}

void fs_op_write_buf(
        fuse_req_t req,
        fuse_ino_t ino,
        struct fuse_bufvec *bufv,
        off_t off,
        struct fuse_file_info *fi) {
        /* The share's limit, here and not at the upload: a write past it could never reach the
         * share (its data would stay dirty for good). */
        if ((uint64_t)off > REST_FILE_SIZE_MAX ||
            fuse_buf_size(bufv) > REST_FILE_SIZE_MAX - (uint64_t)off) {
                fuse_reply_err(req, EFBIG);
                return;
        }
        /* libfuse hands small writes over in memory, larger ones in its pipe (splice) */
        write_try(fs_of(req), req, ino, bufv, (uint64_t)off, fs_write_only(fi->flags), NULL);
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
        need = pieces_need_locked(fs, i, (uint64_t)off, len, false, true, false);
        /* Sequential: fetch the next pieces ahead of the reader. */
        if (need >= 0 && (uint64_t)off == i->next_seq_off && (uint64_t)off + len < i->fetch_limit) {
                uint64_t ra = MIN(READAHEAD_PIECES * P, i->fetch_limit - (uint64_t)off - len);
                (void)pieces_need_locked(fs, i, (uint64_t)off + len, ra, false, true, false);
        }
        i->next_seq_off = (uint64_t)off + len;
        fs_cache_touch_locked(fs, i);
        fd = need == 0 ? read_begin_locked(i) : -EBADF;
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
                reply_read(fs, req, i, fd, (uint64_t)off, len);
}

static void fetch_done(RestResult *r, void *userdata) {
        FetchCall *c = userdata;
        Fs *fs = c->fs;
        FsWaitersWoken woken = {};
        bool shorter = false;
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
                /* Not of the version the file holds now; nor of this file at all once it was
                 * deleted or replaced (here or on another VM) while the range was on its way:
                 * the share answered by name, maybe with the bytes of what has the name now. */
                bool current = c->gen == i->cache_gen && !i->unlinked;
                /* Fewer bytes than the share held when the file was opened here (416: none),
                 * and no truncation here since: the file was cut short on the share (another
                 * VM) while open here. What lies past the share's end is not zeros to read, nor
                 * to upload around a write into the piece: the piece stays missing, and the
                 * reads and writes waiting for it fail; the next open sees the share's size. */
                if (err == 0 && current && r->bytes < c->len &&
                    c->start + c->len <= i->fetch_limit) {
                        err = -EIO;
                        shorter = true;
                }
                fs_piece_set_locked(
                        fs, i, c->piece, err == 0 && current ? PIECE_PRESENT | PIECE_FETCHED : 0,
                        PIECE_FETCHING);
                /* Sent before the cache was reset (a truncation, another version opened): its
                 * bytes landed in the new version's file, where this piece is missing (reads and
                 * writes waited for it). Holes again, or a piece past the new end would be taken
                 * as zeros with the old bytes in it. */
                if (!current && !(i->pieces[c->piece] & (PIECE_PRESENT | PIECE_DIRTY))) {
                        /* A read of the old version still copying out: after it, as a reset. */
                        if (i->reads_in_flight > 0)
                                i->punch_pending = true;
                        else
                                (void)fallocate(
                                        i->cache_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        (off_t)c->start, (off_t)c->len);
                        i->trim_pending = true;
                        trim_after_writes_locked(i);
                }
                /* Truncated while the range was in flight: what lies past the new end is gone,
                 * also when the fetch failed after part of its body landed (a piece there is not
                 * fetched again: it is taken as zeros, pieces_need_locked()). */
                if (current && c->start + c->len > i->fetch_limit) {
                        uint64_t from = MAX(c->start, i->fetch_limit);
                        (void)fallocate(
                                i->cache_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)from, (off_t)(c->start + c->len - from));
                        /* Not while a write may be extending the file: after it. */
                        i->trim_pending = true;
                        trim_after_writes_locked(i);
                }
        }
        if (shorter)
                log_warning(
                        "Get Range of /%s at %" PRIu64 " got %" PRIu64 " of %" PRIu64
                        " bytes (request id %s): shorter on the share, changed elsewhere while "
                        "open here; open it again",
                        i->path, c->start, r->bytes, c->len, r->request_id ? r->request_id : "-");
        else if (err < 0)
                log_warning_errno(
                        err, "Get Range of /%s at %" PRIu64 " failed (request id %s): %m", i->path,
                        c->start, r->request_id ? r->request_id : "-");
        waiters_recheck_locked(fs, i, c->start, err, &woken);
        fs_cache_evict_locked(fs);
        fs_inode_unref_locked(fs, i);
        fs_unlock(fs);
        free(c);
        run_woken_waiters(fs, &woken);
}

/* ---- the root's xattrs: stats, flush, reclaim ---- */

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

/* The counts kept as pieces and sizes change (fs_charge_locked) against counts from scratch:
 * every stats read of a debug build checks them. */
static void charges_check_locked(Fs *fs, const CacheFigures *c) {
#ifndef NDEBUG
        uint64_t dirty = 0;
        unsigned files = 0, dirty_files = 0;

        for (Inode *i = fs->state_list; i; i = i->state_next, files++) {
                bool any = false;
                for (size_t k = 0; k < i->n_pieces; k++) {
                        uint64_t start = (uint64_t)k * P;
                        if (!(i->pieces[k] & (PIECE_DIRTY | PIECE_UPLOADING)))
                                continue;
                        any = true;
                        if (start < i->size)
                                dirty += MIN(P, i->size - start);
                }
                dirty += any ? DIRTY_FILE_COST : 0;
                dirty_files += any;
        }
        assert(c->bytes == fs->cache_bytes);
        assert(dirty == fs->dirty_charge && dirty_files == fs->dirty_files);
        assert(files == fs->cache_files);
#else
        (void)fs;
        (void)c;
#endif
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
        charges_check_locked(fs, &cache);
        json_add_u64(o, "cache_bytes", cache.bytes);
        json_add_u64(o, "cache_clean_bytes", cache.clean_bytes);
        json_add_u64(o, "cache_dirty_bytes", cache.bytes - cache.clean_bytes);
        json_add_u64(o, "cache_disk_bytes", cache.disk_bytes);
        json_add_u64(o, "cache_reclaimable_bytes", cache.reclaimable_bytes);
        json_add_u64(o, "cache_size", fs->o->cache_size);
        json_add_u64(o, "cache_files", fs->cache_files);
        json_add_u64(o, "cache_files_max", fs->cache_files_max);
        json_add_u64(o, "reclaimed_bytes", fs->reclaimed_bytes);
        json_add_u64(o, "last_reclaim_bytes", fs->last_reclaim_bytes);
        json_add_u64(o, "records_made_durable", fs->records_made_durable);
        json_add_u64(o, "record_syncs", fs->record_syncs);
        json_add_u64(o, "flushes_waiting", waiting_locked(fs, FS_WAIT_FLUSH));
        json_add_u64(o, "reads_waiting", waiting_locked(fs, FS_WAIT_READ));
        (void)json_object_object_add(
                o, "requests_total", json_object_new_int64((int64_t)fs->requests_total));
        (void)json_object_object_add(
                o, "requests_failed", json_object_new_int64((int64_t)fs->requests_failed));
        (void)json_object_object_add(
                o, "uploads_in_flight", json_object_new_int64(fs->uploads_in_flight));
        json_add_u64(o, "transfer_thread_requests", http_client_thread_transfers(fs->http));
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
                fs_reply_flush_all(st->f, -ETIMEDOUT);
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
        fs_flush_all_check_locked(fs, &done);
        fs_unlock(fs);
        fs_reply_flush_all(done, 0);
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
