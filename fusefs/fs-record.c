/* SPDX-License-Identifier: MIT */
/* Dirty records ("sidecars", <id>.dirty): a record is written (not synced) before a write that
 * dirties a new piece is acknowledged, so a restarted mount finds and uploads what a crash of
 * azfilesfs left behind (the kernel keeps both). The record names the boot it was written in; the
 * tick wakes a thread of its own that makes records durable in the background (one syncfs() for
 * the cache files and the records, then "durable 1"; never on the I/O thread, whose requests a
 * slow disk would stall). A record's first version, and any that replaces a durable one, is a
 * temporary renamed into place (atomic across a machine crash); a record that is not durable is
 * rewritten in place (one pwrite of at most a page: atomic for a crash of azfilesfs, which is all
 * such a record is trusted for), a record that did not change is not rewritten, and making an
 * unchanged record durable writes its one flag byte in place. A new file thus costs one record
 * file instead of a new file (and a deleted one) per change: BENCHMARKS.md, tar x. After a reboot,
 * a record that is not durable may point at data the kernel never wrote: its bytes go to a new name
 * beside the file, never over it (recover_one). Recovery at mount (fs_recover) is here too. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fs-internal.h"
#include "log.h"
#include "rest-names.h"
#include "strbuf.h"
#include "thread-util.h"
#include "url-util.h"

#define SIDECAR_MAX (4u * 1024u * 1024u)
/* Records made durable per tick, at most; those of a file open for writing only once they are
 * DURABLE_OPEN_NS old (a file being written is not synced at every tick). */
#define DURABLE_BATCH_MAX 256
#define DURABLE_OPEN_NS (5 * INT64_C(1000000000))
#define RECOVERED_SUFFIX ".azfilesfs-recovered-"
/* Records up to this size are rewritten in place (one page: one copy in the kernel, which a
 * kill -9 cannot cut short); bigger ones always through a temporary. */
#define SIDECAR_IN_PLACE_MAX 4096u
#define SIDECAR_HEAD "azfilesfs-dirty 1\nboot "
#define SIDECAR_DURABLE "\ndurable "
#define SIDECAR_END "end\n"
/* A record of a clean file (fs_sidecar_mark_clean_locked); what follows it is ignored. */
#define SIDECAR_CLEAN "azfilesfs-clean\nend\n"

/* ---- dirty records ---- */

void fs_sidecar_close_locked(Inode *i) {
        i->sidecar_fd = safe_close(i->sidecar_fd);
}

void fs_sidecar_remove_locked(Fs *fs, Inode *i) {
        char name[64];

        fs_sidecar_close_locked(i);
        i->sidecar_syncing = false; /* a durable pass under way must not put its copy back */
        if (!i->sidecar_exists && !i->sidecar_clean_on_disk)
                return;
        fs_data_name(i->cache_id, ".dirty", name);
        if (unlinkat(fs->cache_dir_fd, name, 0) < 0 && errno != ENOENT)
                log_warning_errno(
                        -errno, "Cannot remove dirty record %s/%s, ignoring: %m", fs->cache_path,
                        name);
        i->sidecar_exists = false;
        i->sidecar_durable = false;
        i->sidecar_clean_on_disk = false;
}

/* Writes len bytes of data at off into i's record in place, whole or not at all (-errno, -EIO
 * when short); cut: the file ends after them (what a longer old text left is dropped). The record
 * stays open while the file is (a small file's record is rewritten by its write, chmod and
 * utimens: one pwrite each, not an open and a close around it). Lock held. */
static int sidecar_write_at(Fs *fs, Inode *i, const char *data, size_t len, off_t off, bool cut) {
        _cleanup_close_ int own = -EBADF;
        int fd = i->sidecar_fd;
        char name[64];
        ssize_t k;

        if (fd < 0) {
                fs_data_name(i->cache_id, ".dirty", name);
                own = openat(fs->cache_dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (own < 0)
                        return -errno;
                fd = own;
                if (i->open_count > 0)
                        i->sidecar_fd = TAKE_FD(own);
        }
        k = pwrite(fd, data, len, off);
        if (k < 0)
                return -errno;
        if ((size_t)k != len)
                return -EIO;
        if (cut)
                (void)ftruncate(fd, off + (off_t)len);
        return 0;
}

/* The file is clean: its record says so in place (SIDECAR_CLEAN over its first bytes, one
 * write shorter than a disk sector: a kill -9 or a machine crash leaves either the old record or
 * this line), and goes with the cache file (fs_sidecar_remove_locked). Deleting a file per
 * upload made every later file creation in the cache directory slower on ext4 (BENCHMARKS.md, tar
 * x). Falls back to removing the record. */
void fs_sidecar_mark_clean_locked(Fs *fs, Inode *i) {
        if (!i->sidecar_exists)
                return;
        if (sidecar_write_at(fs, i, SIDECAR_CLEAN, strlen(SIDECAR_CLEAN), 0, false) < 0)
                return fs_sidecar_remove_locked(fs, i);
        fs_sidecar_close_locked(i);
        i->sidecar_exists = false;
        i->sidecar_durable = false;
        i->sidecar_clean_on_disk = true;
}

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
                SIDECAR_HEAD "%s" SIDECAR_DURABLE "%d\npath %s\nremote_size %" PRIu64
                             "\nfetch_limit %" PRIu64 "\nsize_dirty %d\netag %s\n",
                fs->boot_id, (int)durable, enc, i->remote_size, i->fetch_limit, (int)i->size_dirty,
                i->cache_etag[0] ? i->cache_etag : "-");
        if (r >= 0 && i->create_pending)
                r = strbuf_appendf(
                        b, "create %04o %" PRId64 "\n", (unsigned)(i->perm & 07777), i->mtime_ns);
        if (r >= 0 && i->rec_moving) {
                _cleanup_free_ char *to = NULL;
                r = url_percent_encode(i->rec_moving, true, &to);
                if (r >= 0)
                        r = strbuf_appendf(b, "moving %s\n", to);
        }
        if (r >= 0 && i->rec_void_if_gone) {
                _cleanup_free_ char *gone = NULL;
                r = url_percent_encode(i->rec_void_if_gone, true, &gone);
                if (r >= 0)
                        r = strbuf_appendf(b, "void_if_gone %s\n", gone);
        }
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
        /* The parser stops here: what a shorter rewrite in place left behind it is ignored. */
        if (r >= 0)
                r = strbuf_append(b, "\n" SIDECAR_END);
        return r;
}

/* The offset of the digit after "durable " in a record of this mount. */
static size_t sidecar_durable_offset(Fs *fs) {
        return strlen(SIDECAR_HEAD) + strlen(fs->boot_id) + strlen(SIDECAR_DURABLE);
}

/* FNV-1a of a record's text with "durable 0": whether a record would say something new. */
static uint64_t text_hash(const StrBuf *b) {
        uint64_t h = UINT64_C(14695981039346656037);
        for (size_t k = 0; k < b->len; k++) {
                h ^= (unsigned char)b->data[k];
                h *= UINT64_C(1099511628211);
        }
        return h;
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
static int sidecar_commit_locked(
        Fs *fs, Inode *i, uint64_t seq, bool durable, const char *tmp, size_t len, uint64_t hash) {
        char name[64];

        if (seq <= i->sidecar_done_seq || !fs_inode_is_dirty(i)) {
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                return 0;
        }
        fs_data_name(i->cache_id, ".dirty", name);
        if (renameat(fs->cache_dir_fd, tmp, fs->cache_dir_fd, name) < 0) {
                int r = -errno;
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                return r;
        }
        fs_sidecar_close_locked(i); /* the old record's, replaced */
        i->sidecar_done_seq = seq;
        i->sidecar_exists = true;
        i->sidecar_clean_on_disk = false;
        i->sidecar_durable = durable;
        i->sidecar_written_ns = fs_now();
        i->sidecar_len = len;
        i->sidecar_hash = hash;
        return 0;
}

/* Whether i's record can be rewritten in place with a text of len bytes: it exists and is not
 * durable (a durable one is replaced atomically, through a temporary). Lock held. */
static bool sidecar_in_place_ok_locked(const Inode *i, size_t len) {
        return i->sidecar_exists && !i->sidecar_durable && !i->sidecar_syncing &&
               len <= SIDECAR_IN_PLACE_MAX;
}

/* Rewrites i's record (not durable) in place: one pwrite at offset 0, then the tail of a longer
 * old text cut off (the parser stops at "end" anyway). -errno when the record could not be
 * written whole: the caller writes it through a temporary instead. Lock held (two writers of
 * the same file must not interleave). */
static int sidecar_rewrite_locked(Fs *fs, Inode *i, uint64_t seq, const StrBuf *b, uint64_t hash) {
        int r = sidecar_write_at(fs, i, b->data, b->len, 0, b->len < i->sidecar_len);

        if (r < 0)
                return r;
        i->sidecar_done_seq = seq;
        i->sidecar_written_ns = fs_now();
        i->sidecar_len = b->len;
        i->sidecar_hash = hash;
        return 0;
}

/* A file's first record, when none is on disk: created in place, one pwrite of at most 4 KiB.
 * A kill -9 between the two leaves an empty record beside an empty cache file, which recovery
 * removes: nothing was acknowledged yet. -errno (the caller writes it through a temporary);
 * lock held. */
static int sidecar_create_locked(Fs *fs, Inode *i, uint64_t seq, const StrBuf *b, uint64_t hash) {
        char name[64];
        ssize_t k;

        fs_data_name(i->cache_id, ".dirty", name);
        assert(i->sidecar_fd < 0);
        i->sidecar_fd = openat(
                fs->cache_dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (i->sidecar_fd < 0)
                return -errno;
        k = pwrite(i->sidecar_fd, b->data, b->len, 0);
        if (k < 0 || (size_t)k != b->len) {
                int r = k < 0 ? -errno : -EIO;
                fs_sidecar_close_locked(i);
                (void)unlinkat(fs->cache_dir_fd, name, 0);
                return r;
        }
        if (i->open_count == 0)
                fs_sidecar_close_locked(i);
        i->sidecar_done_seq = seq;
        i->sidecar_exists = true;
        i->sidecar_durable = false;
        i->sidecar_written_ns = fs_now();
        i->sidecar_len = b->len;
        i->sidecar_hash = hash;
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

/* 0, or -errno when the record could not be written (logged). */
static int sidecar_write_locked(Fs *fs, Inode *i) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SIDECAR_MAX};
        uint64_t seq;
        char tmp[96];
        int r;

        uint64_t hash;

        /* Deleted or replaced while open: its bytes are never uploaded (fs_upload_start_locked),
         * and a record would make a recovery write them over what has its name now. */
        if (i->unlinked)
                return 0;
        seq = ++i->sidecar_seq;
        r = sidecar_text_locked(fs, i, false, &b);
        if (r < 0) {
                sidecar_fail(fs, i->path, r);
                return r;
        }
        hash = text_hash(&b);
        /* Says what the record in place says (not durable): nothing to write. */
        if (i->sidecar_exists && !i->sidecar_durable && i->sidecar_hash == hash &&
            i->sidecar_done_seq == i->sidecar_seq - 1) {
                i->sidecar_done_seq = seq;
                i->sidecar_syncing = false;
                return 0;
        }
        i->sidecar_syncing = false; /* what the tick synced is not what this record says */
        if (sidecar_in_place_ok_locked(i, b.len) &&
            sidecar_rewrite_locked(fs, i, seq, &b, hash) >= 0)
                return 0;
        if (!i->sidecar_exists && !i->sidecar_clean_on_disk && b.len <= SIDECAR_IN_PLACE_MAX &&
            sidecar_create_locked(fs, i, seq, &b, hash) >= 0)
                return 0;
        sidecar_tmp_name(i, seq, tmp);
        r = sidecar_write_tmp(fs, tmp, &b);
        if (r >= 0)
                r = sidecar_commit_locked(fs, i, seq, false, tmp, b.len, hash);
        if (r < 0) {
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
                sidecar_fail(fs, i->path, r);
        }
        return r < 0 ? r : 0;
}

void fs_sidecar_update_locked(Fs *fs, Inode *i) {
        (void)sidecar_write_locked(fs, i);
}

int fs_sidecar_note_locked(Fs *fs, Inode *i) {
        if (fs_inode_is_dirty(i) && i->cache_fd >= 0)
                return sidecar_write_locked(fs, i);
        return 0;
}

/* The same for the write path: Fs.lock held to take the text and to put the record in place
 * (a rewrite in place is one pwrite into the page cache); a record written through a
 * temporary is written without it. 0, or -errno when the record could not be written: the
 * write it was for must not be acknowledged (a crash would lose it). */
int fs_sidecar_update(Fs *fs, uint64_t ino) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SIDECAR_MAX};
        _cleanup_free_ char *path = NULL;
        uint64_t seq, hash = 0;
        char tmp[96];
        Inode *i;
        int r;

        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (!i || i->cache_fd < 0 || !fs_inode_is_dirty(i) || i->unlinked) {
                fs_unlock(fs);
                return 0;
        }
        if (i->sidecar_exists && !i->sidecar_durable) {
                /* Unchanged, or rewritten in place under the lock (or through a temporary). */
                r = sidecar_write_locked(fs, i);
                fs_unlock(fs);
                return r;
        }
        seq = ++i->sidecar_seq;
        i->sidecar_syncing = false;
        sidecar_tmp_name(i, seq, tmp);
        r = sidecar_text_locked(fs, i, false, &b);
        path = strdup(i->path);
        fs_unlock(fs);
        if (r >= 0) {
                hash = text_hash(&b);
                r = sidecar_write_tmp(fs, tmp, &b);
        }
        fs_lock(fs);
        i = inode_table_get(fs->inodes, ino);
        if (r >= 0 && i && !i->unlinked)
                r = sidecar_commit_locked(fs, i, seq, false, tmp, b.len, hash);
        else
                (void)unlinkat(fs->cache_dir_fd, tmp, 0);
        fs_unlock(fs);
        if (r < 0)
                sidecar_fail(fs, path ? path : "?", r);
        return r < 0 ? r : 0;
}

/* ---- making records durable ---- */

typedef struct DurableRecord {
        uint64_t ino, seq, hash;
        bool flag_only; /* the record in place says it all: its flag byte is set in place */
        char tmp[96];
        StrBuf text;
} DurableRecord;

/* Sets the durable flag of i's record in place (one byte: a machine crash leaves it either "0",
 * not trusted after a reboot, or "1", written after the syncfs() that put the record and the
 * data on disk). Lock held. */
static int sidecar_set_durable_locked(Fs *fs, Inode *i) {
        int r = sidecar_write_at(fs, i, "1", 1, (off_t)sidecar_durable_offset(fs), false);

        if (r < 0)
                return r;
        i->sidecar_durable = true;
        return 0;
}

/* Whether i's record should be made durable now. Lock held. */
static bool durable_wanted_locked(const Inode *i, int64_t now, bool final) {
        if (!i->sidecar_exists || i->sidecar_durable || i->sidecar_syncing ||
            i->writes_in_flight > 0 || !fs_inode_is_dirty(i))
                return false;
        /* A file open for writing is synced at most every DURABLE_OPEN_NS, not at every tick;
         * at unmount (final) every record goes. */
        return final || i->open_count == 0 || now - i->sidecar_written_ns >= DURABLE_OPEN_NS;
}

/* Makes the dirty records that are not durable durable (on the durable thread, off the FUSE
 * workers' and the I/O thread's paths; at unmount on the caller's, that thread stopped): their
 * texts (with "durable 1") are taken under Fs.lock, written to temporary records without it, then
 * one syncfs() puts every cache file and those records on disk; back under the lock, each goes in
 * place unless the file changed meanwhile (a write or truncate clears sidecar_syncing before it
 * touches the cache file, a newer record wins by its seq), and the directory is synced once. */
static unsigned durable_pass(Fs *fs, bool final) {
        DurableRecord *recs = NULL;
        size_t n = 0;
        unsigned made = 0;
        int64_t now = fs_now();
        int r = 0;

        fs_lock(fs);
        for (Inode *i = fs->state_list; i && n < DURABLE_BATCH_MAX; i = i->state_next) {
                DurableRecord *d;
                if (!durable_wanted_locked(i, now, final))
                        continue;
                if (!recs && !(recs = calloc(DURABLE_BATCH_MAX, sizeof(*recs))))
                        break;
                d = &recs[n];
                d->text = (StrBuf){.cap = SIDECAR_MAX};
                if (sidecar_text_locked(fs, i, false, &d->text) < 0) {
                        strbuf_done(&d->text);
                        continue;
                }
                d->ino = i->ino;
                d->hash = text_hash(&d->text);
                d->flag_only = i->sidecar_done_seq == i->sidecar_seq && i->sidecar_hash == d->hash;
                if (d->flag_only)
                        d->seq = i->sidecar_seq;
                else {
                        size_t off = sidecar_durable_offset(fs);
                        assert(off < d->text.len && d->text.data[off] == '0');
                        d->text.data[off] = '1';
                        d->seq = ++i->sidecar_seq;
                        sidecar_tmp_name(i, d->seq, d->tmp);
                }
                i->sidecar_syncing = true;
                n++;
        }
        fs_unlock(fs);
        if (n == 0) {
                free(recs);
                return 0;
        }
        for (size_t k = 0; k < n && r >= 0; k++)
                if (!recs[k].flag_only)
                        r = sidecar_write_tmp(fs, recs[k].tmp, &recs[k].text);
        if (r >= 0 && syncfs(fs->cache_dir_fd) < 0)
                r = -errno;
        fs_lock(fs);
        fs->record_syncs++;
        for (size_t k = 0; k < n; k++) {
                Inode *i = inode_table_get(fs->inodes, recs[k].ino);
                bool mine = i && i->sidecar_syncing && !i->unlinked;
                if (i)
                        i->sidecar_syncing = false;
                if (recs[k].flag_only) {
                        /* Unless the record was rewritten (or removed) meanwhile. */
                        if (r >= 0 && mine && i->sidecar_exists && !i->sidecar_durable &&
                            i->sidecar_done_seq == recs[k].seq &&
                            sidecar_set_durable_locked(fs, i) >= 0) {
                                fs->records_made_durable++;
                                made++;
                        }
                } else if (
                        r >= 0 && mine &&
                        sidecar_commit_locked(
                                fs, i, recs[k].seq, true, recs[k].tmp, recs[k].text.len,
                                recs[k].hash) >= 0) {
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
        unsigned made = 0, k;

        for (k = 0; k < 1000; k++) {
                unsigned m = durable_pass(fs, true);
                if (m == 0)
                        break;
                made += m;
        }
        /* Flags set in place after the last syncfs() go to disk too. */
        if (made > 0 && syncfs(fs->cache_dir_fd) < 0)
                log_warning_errno(
                        -errno, "Cannot sync the cache in %s, ignoring: %m", fs->cache_path);
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
                (void)durable_pass(fs, false);
                fs_lock(fs);
        }
        fs_unlock(fs);
        return NULL;
}

int fs_durable_start(Fs *fs) {
        int r;

        (void)pthread_cond_init(&fs->durable_cond, NULL);
        r = thread_create_unsignalled(&fs->durable_thread, durable_thread, fs);
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

/* ---- recovery ---- */

/* Whether path, read from a record, names a file this mount could have made: no empty component,
 * each one a name the share takes (rest_name_check), within REST_PATH_MAX. */
static bool record_path_ok(const char *path) {
        _cleanup_free_ char *copy = NULL;
        char *p, *name;

        if (isempty(path) || strlen(path) > REST_PATH_MAX || !(copy = strdup(path)))
                return false;
        p = copy;
        while ((name = strsep(&p, "/")))
                if (rest_name_check(name) < 0)
                        return false;
        return true;
}

/* -EBADMSG for a record without its magic line or path, or with a path the share would not
 * take. *cut: a record cut short (a damaged disk): the pieces it lists may not be all. */
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
        bool *cut,
        char **ret_moving,
        char **ret_void_if_gone,
        char **ret_pieces) {
        _cleanup_free_ char *copy = strdup(text), *path = NULL, *pieces = NULL, *moving = NULL,
                            *void_if_gone = NULL;
        char *p, *line;
        bool magic = false, ended = false;

        if (!copy)
                return -ENOMEM;
        p = copy;
        etag[0] = '\0';
        boot[0] = '\0'; /* none: a record of the old format, which was synced */
        while ((line = strsep(&p, "\n"))) {
                char *v = strchr(line, ' ');
                if (streq(line, "end")) {
                        ended = true;
                        break; /* what follows is left from a longer text rewritten in place */
                }
                if (!v)
                        continue;
                *v++ = '\0';
                if (streq(line, "azfilesfs-dirty"))
                        magic = streq(v, "1");
                else if (streq(line, "path")) {
                        free(path);
                        if (url_percent_decode(v, strlen(v), &path) < 0)
                                return -EBADMSG;
                } else if (streq(line, "moving")) {
                        free(moving);
                        moving = NULL;
                        if (url_percent_decode(v, strlen(v), &moving) < 0)
                                return -EBADMSG;
                } else if (streq(line, "void_if_gone")) {
                        free(void_if_gone);
                        void_if_gone = NULL;
                        if (url_percent_decode(v, strlen(v), &void_if_gone) < 0)
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
                        *mode = (mode_t)m & FS_PERM_BITS;
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
        /* Records of the formats before the end line (none or with a boot line) end with their
         * pieces line and a newline: one without its end line is cut when it has no pieces line
         * or does not end with a newline (a cut at a line's end leaves whole lines only). */
        *cut = !ended && (!pieces || text[0] == '\0' || text[strlen(text) - 1] != '\n');
        if (!magic || !record_path_ok(path) || (!pieces && !*cut) ||
            (!isempty(moving) && !record_path_ok(moving)) ||
            (!isempty(void_if_gone) && !record_path_ok(void_if_gone)))
                return -EBADMSG;
        *ret_path = TAKE_PTR(path);
        *ret_moving = isempty(moving) ? NULL : TAKE_PTR(moving);
        *ret_void_if_gone = isempty(void_if_gone) ? NULL : TAKE_PTR(void_if_gone);
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

/* Whether the rename a record announces ("moving") was carried out: path is gone from the share,
 * or for a file never created there (create) its directory is (a file created here is renamed
 * here only, so its record announces only the rename of a directory above it). */
static bool record_moved(Fs *fs, const char *path, bool create) {
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = NULL;

        if (!create)
                return share_probe(fs, REST_OP_GET_FILE_PROPERTIES, path) == -ENOENT;
        dir = slash ? strndup(path, (size_t)(slash - path)) : NULL;
        return dir && share_probe(fs, REST_OP_GET_DIRECTORY_PROPERTIES, dir) == -ENOENT;
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

/* The whole record in fd (up to SIDECAR_MAX bytes), NUL-terminated. A record is read whole, not
 * up to a buffer's size: one cut short would lose the pieces listed past the cut (a file with
 * some 13,000 dirty pieces has a record over 64 KiB). */
static int record_read_all(int fd, char **ret, size_t *ret_len) {
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size < 0 || (uint64_t)st.st_size > SIDECAR_MAX)
                return -EFBIG;
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return -ENOMEM;
        while (len < (size_t)st.st_size) {
                ssize_t n = pread(fd, text + len, (size_t)st.st_size - len, (off_t)len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break; /* shorter than it was a moment ago: what is there */
                len += (size_t)n;
        }
        text[len] = '\0';
        *ret = TAKE_PTR(text);
        *ret_len = len;
        return 0;
}

/* 1: recovered (uploaded by the flush after fs_recover), 0: a clean file's record, removed with
 * its cache file. */
static int recover_one(Fs *fs, uint64_t id) {
        char name[64];
        _cleanup_close_ int sfd = -EBADF;
        _cleanup_free_ char *path = NULL, *pieces = NULL, *torn = NULL, *text = NULL,
                            *moving = NULL, *void_if_gone = NULL;
        char etag[REST_ETAG_MAX], boot[64];
        uint64_t remote_size = 0, fetch_limit = 0, shrink_to = 0;
        bool shrunk = false, create = false, durable = false, intent = false, older = false,
             cut = false, torn_boot = false;
        mode_t mode = 0;
        int64_t mtime_ns = 0;
        struct stat st;
        size_t n = 0;
        Inode *i;
        int fd, r;

        fs_data_name(id, ".dirty", name);
        /* Not blocking on a FIFO someone put there; only a regular file is a record. */
        sfd = openat(fs->cache_dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (sfd < 0)
                return -errno;
        if (fstat(sfd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        r = record_read_all(sfd, &text, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                /* Empty beside an empty cache file: killed between creating a new file's first
                 * record and writing it (sidecar_create_locked), before the create was answered. */
                char data[64];
                fs_data_name(id, ".data", data);
                if (fstatat(fs->cache_dir_fd, data, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
                    S_ISREG(st.st_mode) && st.st_size == 0) {
                        (void)unlinkat(fs->cache_dir_fd, data, 0);
                        (void)unlinkat(fs->cache_dir_fd, name, 0);
                        return 0;
                }
        }
        if (strncmp(text, SIDECAR_CLEAN, strlen(SIDECAR_CLEAN)) == 0) {
                /* A clean file's: clean cache is not reused. */
                (void)unlinkat(fs->cache_dir_fd, name, 0);
                fs_data_name(id, ".data", name);
                (void)unlinkat(fs->cache_dir_fd, name, 0);
                return 0;
        }
        r = sidecar_parse(
                text, &path, &remote_size, &fetch_limit, &shrunk, &shrink_to, &create, &mode,
                &mtime_ns, etag, boot, &durable, &cut, &moving, &void_if_gone, &pieces);
        if (r < 0)
                return r;
        if (cut) {
                /* Its last lines may be cut too: a path cut short is not asked about. */
                free(TAKE_PTR(moving));
                free(TAKE_PTR(void_if_gone));
        }
        /* Killed while a Delete File of it, or a rename over it, was on its way, and the share
         * carried that out (the path it names is gone): its data goes with it. Not when the
         * share cannot be asked: the data is kept then. */
        intent = moving || void_if_gone;
        if (void_if_gone && !fs->backend_down &&
            share_probe(fs, REST_OP_GET_FILE_PROPERTIES, void_if_gone) == -ENOENT) {
                log_notice(
                        "Dropping data of /%s left by an earlier run: deleted or replaced on the share by its last request (/%s is gone)",
                        path, void_if_gone);
                (void)unlinkat(fs->cache_dir_fd, name, 0);
                fs_data_name(id, ".data", name);
                (void)unlinkat(fs->cache_dir_fd, name, 0);
                return 0;
        }
        /* Killed while a rename of it (or of a directory above it) was on its way, and the
         * share carried it out: the data goes under the new path. */
        if (moving && !fs->backend_down && record_moved(fs, path, create)) {
                log_notice(
                        "Data of /%s left by an earlier run: renamed to /%s on the share by its last rename",
                        path, moving);
                free(path);
                path = TAKE_PTR(moving);
        }
        torn_boot = boot[0] && !durable && (streq(boot, "-") || !streq(boot, fs->boot_id));
        if (!cut && !torn_boot) {
                /* A newer record of the same file was recovered first (fs_recover). */
                fs_lock(fs);
                i = inode_table_find(fs->inodes, path);
                older = i && (i->is_dir || i->cache_fd >= 0);
                fs_unlock(fs);
        }
        if (cut || older || torn_boot) {
                /* Written before a reboot and never synced: the data it points at may be torn
                 * (zeros, cut short). Or older than another record's data of the same file, or
                 * a record cut short, whose pieces may not be all. Its bytes go to a new file
                 * beside it (all of the cache file); the share's copy of path, and the newer
                 * data, are left alone. */
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
        fs_data_name(id, ".data", name);
        /* Not blocking on a FIFO either; only a regular file holds the bytes (a FIFO read as
         * empty would cut the share's file to 0). */
        fd = openat(fs->cache_dir_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        r = fstat(fd, &st) < 0          ? -errno
            : !S_ISREG(st.st_mode)      ? -EBADMSG
            : fcntl(fd, F_SETFL, 0) < 0 ? -errno
                                        : 0;
        if (r < 0) {
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
        fs_cache_push_locked(fs, i);
        i->size = (uint64_t)st.st_size;
        /* A round may have been cut short by the crash after its size or its Put Ranges
         * reached the share, before a record said so: the share's file may hold these bytes up
         * to the cache file's size, and a truncation below that must cut them off there. */
        i->remote_size = torn ? remote_size : MAX(remote_size, i->size);
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
        r = fs_pieces_grow_locked(i, i->size);
        for (size_t k = 0; torn && r >= 0 && k < i->n_pieces; k++)
                fs_piece_set_locked(fs, i, k, PIECE_DIRTY | PIECE_PRESENT, 0);
        for (char *p = pieces, *tok; !torn && r >= 0 && (tok = strsep(&p, ","));) {
                unsigned long long k;
                char *end;
                if (!*tok)
                        continue;
                k = strtoull(tok, &end, 10);
                if (*end || k >= i->n_pieces)
                        continue;
                fs_piece_set_locked(fs, i, (size_t)k, PIECE_DIRTY | PIECE_PRESENT, 0);
        }
        /* Pieces not marked dirty are not known to be in the cache file: fetched again when read.
         */
        if (torn) {
                _cleanup_free_ char *f1 = NULL, *f2 = NULL;
                char rec[64];

                fs_data_name(id, ".dirty", rec);
                if (asprintf(&f1, "AZFILESFS_PATH=/%s", torn) < 0)
                        f1 = NULL;
                if (asprintf(&f2, "AZFILESFS_RECOVERED_PATH=/%s", path) < 0)
                        f2 = NULL;
                log_struct(
                        LOG_WARNING, 0,
                        ((const char *[]){
                                f1 ? f1 : "AZFILESFS_PATH=?",
                                f2 ? f2 : "AZFILESFS_RECOVERED_PATH=?", NULL}),
                        cut     ? "Found data of /%s not yet on the share whose record %s is cut short (a damaged disk?): uploading all of its cache file as /%s, leaving /%s on the share as it is"
                        : older ? "Found older data of /%s not yet on the share (record %s, beside a newer one): uploading it as /%s, leaving /%s to the newer data"
                                : "Found data of /%s not yet on the share (record %s), left before a reboot and never synced (it may be torn): uploading it as /%s, leaving /%s on the share as it is",
                        torn, rec, path, torn);
                /* The record now names the new file (a crash before its upload keeps it so). */
                fs_sidecar_update_locked(fs, i);
        } else {
                if (intent)
                        fs_sidecar_update_locked(fs, i); /* the path it has, no intent */
                log_notice(
                        "Found data of /%s not yet on the share (left by an earlier run); uploading it",
                        path);
        }
        fs_upload_start_locked(fs, i);
        fs_unlock(fs);
        return r < 0 ? r : 1;
}

/* The id of a cache directory entry named as fs_data_name() names them (16 lower-case hex
 * digits, then *ret_suffix); false for any other name. */
static bool cache_entry_id(const char *name, uint64_t *ret_id, const char **ret_suffix) {
        uint64_t id = 0;

        for (size_t k = 0; k < 16; k++) {
                char c = name[k];
                if (c >= '0' && c <= '9')
                        id = id << 4 | (uint64_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        id = id << 4 | (uint64_t)(c - 'a' + 10);
                else
                        return false;
        }
        *ret_id = id;
        *ret_suffix = name + 16;
        return true;
}

static int id_cmp_desc(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? 1 : x > y ? -1 : 0;
}

int fs_recover(Fs *fs) {
        _cleanup_close_ int dfd = -EBADF;
        _cleanup_free_ uint64_t *ids = NULL;
        size_t n_ids = 0, cap = 0;
        DIR *d;
        struct dirent *de;
        uint64_t max_id = 0;
        int r = 0, n = 0;

        dfd = fcntl(fs->cache_dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d)
                return -errno;
        TAKE_FD(dfd);
        /* One pass: the highest id, stale temporaries, clean cache of an earlier run (not
         * reused), the ids of the records. */
        while ((de = readdir(d))) {
                const char *end;
                char name[64];
                uint64_t id;
                if (!cache_entry_id(de->d_name, &id, &end))
                        continue;
                max_id = MAX(max_id, id);
                if (strncmp(end, ".dirty.", 7) == 0 && strlen(end) > 4 &&
                    streq(end + strlen(end) - 4, ".tmp"))
                        (void)unlinkat(fs->cache_dir_fd, de->d_name, 0);
                else if (streq(end, ".data")) {
                        fs_data_name(id, ".dirty", name);
                        if (faccessat(fs->cache_dir_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
                                (void)unlinkat(fs->cache_dir_fd, de->d_name, 0);
                } else if (streq(end, ".dirty")) {
                        if (n_ids == cap) {
                                uint64_t *more = reallocarray(ids, cap * 2 + 16, sizeof(*ids));
                                if (!more) {
                                        r = -ENOMEM;
                                        break;
                                }
                                ids = more;
                                cap = cap * 2 + 16;
                        }
                        ids[n_ids++] = id;
                }
        }
        closedir(d);
        if (r < 0)
                return r;
        /* Wraps to 0 only after a stray name: new cache files skip the ids taken (O_EXCL). */
        fs->next_cache_id = max_id + 1;
        /* Newest first (ids only grow): of two records naming one path (one left by a recovery
         * that failed, then the file written again), the newer gets the path, and the older
         * goes beside it (recover_one), never over it. */
        if (n_ids > 1)
                qsort(ids, n_ids, sizeof(*ids), id_cmp_desc);
        for (size_t k = 0; k < n_ids; k++) {
                char name[64];
                r = recover_one(fs, ids[k]);
                fs_data_name(ids[k], ".dirty", name);
                if (r < 0)
                        log_warning_errno(
                                r, "Cannot recover %s/%s, leaving it there: %m", fs->cache_path,
                                name);
                else if (r > 0)
                        n++;
        }
        if (n == 0)
                return 0;
        return fs_flush_wait(fs, fs->o->retry_budget_ms + 5000);
}
