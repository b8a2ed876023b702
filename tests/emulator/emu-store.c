/* SPDX-License-Identifier: MIT */
/* The emulator's share storage.
 *
 * Layout under --data:
 *
 *   DATA/shares/                       user.emu.next-id: the file id counter (8 bytes)
 *   DATA/shares/SHARE/                 the share and its root directory; user.emu.share (quota,
 *                                      ETag, Last-Modified), user.emu.share-meta, and the root's
 *                                      entry properties (id 0) in user.emu / user.emu.meta
 *   DATA/shares/SHARE/NAME/...         directories are directories, files are sparse files
 *   DATA/trash/                        deleted shares, removed outside the lock
 *
 * Every entry is named on disk by its case-folded name (emu_name_fold), so that "Foo" and "foo"
 * are one entry and a lookup is one openat() per component. Folded names longer than
 * DISK_NAME_MAX bytes, or starting with '#', are stored as "#" + SHA-256 hex of the folded name
 * (no folded name is stored raw with a leading '#', so the two forms never collide). The name as
 * the client spelt it lives in the entry's properties.
 *
 * Properties live in extended attributes of the entry itself, so a rename moves them along and a
 * restarted emulator finds them: user.emu (binary DiskProps + strings: name, permission key,
 * content headers), user.emu.meta (metadata, "name\0value\0..."), user.emu.ranges (files: the
 * written ranges for List Ranges; when more than RANGES_MAX, the marker "overflow" and List Ranges
 * falls back to SEEK_DATA/SEEK_HOLE, which is exact only to the file system's block size). ext4
 * holds at most about 4 KiB of xattrs per inode, which bounds metadata (-E2BIG). File ids come from
 * a persistent counter and are kept across rename and restart.
 *
 * Names never reach the file system unvalidated: components are checked by the handlers
 * (emu_name_normalize: no '/', no NUL, no "." or ".."), folded here, and opened with O_NOFOLLOW
 * relative to the share's directory fd; the store never creates symlinks.
 *
 * Locking: ns_lock (a writer-preferring rwlock) is held for writing by namespace changes (create,
 * delete, rename, share create/delete) and for reading by everything else while it resolves the
 * path and reads or updates properties. A property read-modify-write under the read lock also
 * takes the stripe mutex of the inode (stripes[ino % N]); stripes are only taken under the read
 * lock, so the write lock excludes them all. Lock order: ns_lock, then one stripe. File data is
 * read and written outside both: the handler gets an fd. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "emu-names.h"
#include "emu-store-internal.h"
#include "time-util.h"

typedef struct DiskShare {
        uint32_t magic;
        uint32_t reserved;
        uint64_t quota_gib;
        int64_t last_modified_ns;
        uint64_t etag;
} DiskShare;

/* ---- store lifecycle ---------------------------------------------------------------------- */

static int rm_rf_at(int dirfd, const char *name, bool is_dir);

static int rm_children(int fd) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                (void)safe_close(fd);
                return NEG_ERRNO();
        }
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = rm_rf_at(dirfd(d), de->d_name, de->d_type == DT_DIR);
                if (k < 0 && r == 0)
                        r = k;
        }
        (void)closedir(d);
        return r;
}

static int rm_rf_at(int dirfd, const char *name, bool is_dir) {
        if (!is_dir && unlinkat(dirfd, name, 0) >= 0)
                return 0;
        if (!is_dir && errno != EISDIR)
                return NEG_ERRNO();
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return NEG_ERRNO();
        (void)rm_children(fd);
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
                return NEG_ERRNO();
        return 0;
}

static int open_or_make_dir(int dirfd, const char *name) {
        int fd;

        if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
                return NEG_ERRNO();
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? NEG_ERRNO() : fd;
}

int emu_store_open(const char *data_dir, const char *account, EmuStore **ret) {
        _cleanup_(emu_store_freep) EmuStore *s = NULL;
        pthread_rwlockattr_t attr;
        uint64_t id = 0;
        ssize_t n;
        int r;

        (void)account;
        s = calloc(1, sizeof(EmuStore));
        if (!s)
                return -ENOMEM;
        s->data_fd = s->shares_fd = s->trash_fd = -EBADF;
        (void)pthread_rwlockattr_init(&attr);
        (void)pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        (void)pthread_rwlock_init(&s->ns_lock, &attr);
        (void)pthread_rwlockattr_destroy(&attr);
        for (size_t i = 0; i < N_STRIPES; i++)
                (void)pthread_mutex_init(&s->stripes[i], NULL);

        s->data_fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->data_fd < 0)
                return NEG_ERRNO();
        r = open_or_make_dir(s->data_fd, "shares");
        if (r < 0)
                return r;
        s->shares_fd = r;
        r = open_or_make_dir(s->data_fd, "trash");
        if (r < 0)
                return r;
        s->trash_fd = r;
        /* Leftovers of shares deleted just before a stop. */
        r = openat(s->trash_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r >= 0)
                (void)rm_children(r);

        n = fgetxattr(s->shares_fd, XATTR_NEXT_ID, &id, sizeof(id));
        if (n < 0 && errno != ENODATA)
                return NEG_ERRNO(); /* e.g. EOPNOTSUPP: the file system has no user xattrs */
        s->next_id = n == sizeof(id) ? id : 0;
        r = store_xattr_set(s->shares_fd, XATTR_NEXT_ID, &s->next_id, sizeof(s->next_id));
        if (r < 0)
                return r;
        atomic_store(&s->last_etag, 0);
        *ret = TAKE_PTR(s);
        return 0;
}

EmuStore *emu_store_free(EmuStore *s) {
        if (!s)
                return NULL;
        (void)safe_close(s->data_fd);
        (void)safe_close(s->shares_fd);
        (void)safe_close(s->trash_fd);
        (void)pthread_rwlock_destroy(&s->ns_lock);
        for (size_t i = 0; i < N_STRIPES; i++)
                (void)pthread_mutex_destroy(&s->stripes[i]);
        free(s);
        return NULL;
}

/* Under ns_lock (write). */
static int alloc_id(EmuStore *s, uint64_t *ret) {
        uint64_t next = s->next_id + 1;
        int r = store_xattr_set(s->shares_fd, XATTR_NEXT_ID, &next, sizeof(next));
        if (r < 0)
                return r;
        s->next_id = next;
        *ret = FILE_ID_BASE | next;
        return 0;
}

/* ---- shares ------------------------------------------------------------------------------- */

static int share_read(int fd, EmuShareInfo *ret) {
        DiskShare ds;
        ssize_t n = fgetxattr(fd, XATTR_SHARE, &ds, sizeof(ds));

        if (n < 0)
                return errno == ENODATA ? -ENOMEDIUM : NEG_ERRNO();
        if (n != sizeof(ds) || ds.magic != SHARE_MAGIC)
                return -EBADMSG;
        *ret = (EmuShareInfo){
                .quota_gib = ds.quota_gib,
                .last_modified_ns = ds.last_modified_ns,
                .etag = ds.etag,
        };
        return store_meta_read(fd, XATTR_SHARE_META, &ret->meta);
}

static int share_write(int fd, const EmuShareInfo *i) {
        DiskShare ds = {
                .magic = SHARE_MAGIC,
                .quota_gib = i->quota_gib,
                .last_modified_ns = i->last_modified_ns,
                .etag = i->etag,
        };
        return store_xattr_set(fd, XATTR_SHARE, &ds, sizeof(ds));
}

int emu_store_share_create(EmuStore *s, const char *share, uint64_t quota_gib, char *const *meta) {
        int64_t now = now_realtime_ns();
        EmuShareInfo info = {.quota_gib = quota_gib, .last_modified_ns = now};
        EmuEntry root = {
                .is_dir = true,
                .id = 0,
                .attributes = EMU_ATTR_DIRECTORY,
                .creation_ns = now,
                .last_write_ns = now,
                .change_ns = now,
                .last_modified_ns = now,
                .name = (char *)"",
                .permission_key = (char *)PERMISSION_KEY_DIR,
        };
        int fd, r;

        if (emu_share_name_validate(share) < 0)
                return -EINVAL;
        info.etag = root.etag = emu_store_new_etag(s);
        WRLOCK(s);
        if (mkdirat(s->shares_fd, share, 0700) < 0) {
                r = errno == EEXIST ? -EEXIST : NEG_ERRNO();
                UNLOCK(s);
                return r;
        }
        fd = openat(s->shares_fd, share, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = fd < 0 ? NEG_ERRNO() : 0;
        if (r >= 0)
                r = share_write(fd, &info);
        if (r >= 0)
                r = store_meta_write(fd, XATTR_SHARE_META, meta);
        if (r >= 0)
                r = store_props_write(fd, &root);
        if (r < 0)
                (void)unlinkat(s->shares_fd, share, AT_REMOVEDIR);
        UNLOCK(s);
        (void)safe_close(fd);
        return r;
}

int emu_store_share_get(EmuStore *s, const char *share, EmuShareInfo *ret) {
        int fd, r;

        RDLOCK(s);
        fd = store_open_share(s, share);
        r = fd < 0 ? fd : share_read(fd, ret);
        UNLOCK(s);
        (void)safe_close(fd);
        return r;
}

int emu_store_share_set(
        EmuStore *s, const char *share, uint64_t quota_gib, char *const *meta, EmuShareInfo *ret) {
        EmuShareInfo info = {};
        int fd, r;

        WRLOCK(s);
        fd = store_open_share(s, share);
        r = fd < 0 ? fd : share_read(fd, &info);
        if (r >= 0) {
                if (quota_gib > 0)
                        info.quota_gib = quota_gib;
                info.last_modified_ns = now_realtime_ns();
                info.etag = emu_store_new_etag(s);
                r = share_write(fd, &info);
        }
        if (r >= 0 && meta) {
                r = store_meta_write(fd, XATTR_SHARE_META, meta);
                store_strv_free(info.meta);
                info.meta = NULL;
                if (r >= 0)
                        r = store_strv_copy(meta, &info.meta);
        }
        UNLOCK(s);
        (void)safe_close(fd);
        if (r < 0) {
                emu_share_info_clear(&info);
                return r;
        }
        *ret = info;
        return 0;
}

static int usage_walk(int fd, uint64_t *total, unsigned depth) {
        DIR *d = fdopendir(fd);
        struct dirent *de;

        if (!d) {
                (void)safe_close(fd);
                return NEG_ERRNO();
        }
        while ((de = readdir(d))) {
                struct stat st;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISREG(st.st_mode))
                        *total += (uint64_t)st.st_size;
                else if (S_ISDIR(st.st_mode) && depth < EMU_PATH_DEPTH_MAX + 1) {
                        int sub =
                                openat(dirfd(d), de->d_name,
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                (void)usage_walk(sub, total, depth + 1);
                }
        }
        (void)closedir(d);
        return 0;
}

int emu_store_share_usage(EmuStore *s, const char *share, uint64_t *ret_bytes) {
        uint64_t total = 0;
        int fd, r;

        RDLOCK(s);
        fd = store_open_share(s, share);
        r = fd < 0 ? fd : usage_walk(fd, &total, 0);
        UNLOCK(s);
        if (r < 0)
                return r;
        *ret_bytes = total;
        return 0;
}

int emu_store_share_delete(EmuStore *s, const char *share) {
        char trash_name[64];
        int r = 0;

        if (emu_share_name_validate(share) < 0)
                return -ENOMEDIUM;
        (void)snprintf(
                trash_name, sizeof(trash_name), "%s.%llu", share,
                (unsigned long long)atomic_fetch_add(&s->trash_counter, 1));
        WRLOCK(s);
        if (renameat(s->shares_fd, share, s->trash_fd, trash_name) < 0)
                r = errno == ENOENT ? -ENOMEDIUM : NEG_ERRNO();
        UNLOCK(s);
        if (r < 0)
                return r;
        (void)rm_rf_at(s->trash_fd, trash_name, true);
        return 0;
}

/* ---- entries ------------------------------------------------------------------------------ */

int emu_store_create(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool is_dir,
        const EmuCreateArgs *args,
        EmuEntry *ret) {
        Loc l = {.share_fd = -EBADF, .parent_fd = -EBADF};
        _cleanup_close_ int fd = -EBADF;
        EmuEntry e = {};
        int64_t now = now_realtime_ns();
        bool created = false;
        int r;

        if (n == 0)
                return -EEXIST;
        WRLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0)
                goto out;
        fd = store_loc_open(&l, is_dir ? O_RDONLY : O_RDWR);
        if (fd >= 0 || fd == -EISDIR) {
                /* The name is taken (in any case spelling). Directories conflict; files are
                 * replaced, keeping their id. */
                if (is_dir || fd == -EISDIR) {
                        r = -EEXIST;
                        goto out;
                }
                r = store_entry_load(fd, l.parent_id, false, &e);
                if (r < 0)
                        goto out;
                if (e.is_dir) {
                        r = -EEXIST;
                        goto out;
                }
                r = store_lease_check(&e, args->lease_id);
                if (r < 0)
                        goto out;
                if (ftruncate(fd, 0) < 0) {
                        r = NEG_ERRNO();
                        goto out;
                }
                if (fremovexattr(fd, XATTR_RANGES) < 0 && errno != ENODATA) {
                        r = NEG_ERRNO();
                        goto out;
                }
                free(e.permission_key);
                e.permission_key = NULL;
                store_content_clear(&e.content);
                e.attributes = 0;
        } else if (fd != -ENOENT) {
                r = fd;
                goto out;
        } else {
                r = alloc_id(s, &e.id);
                if (r < 0)
                        goto out;
                if (is_dir) {
                        if (mkdirat(l.parent_fd, l.disk, 0700) < 0) {
                                r = NEG_ERRNO();
                                goto out;
                        }
                        created = true;
                        fd =
                                openat(l.parent_fd, l.disk,
                                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                } else {
                        fd =
                                openat(l.parent_fd, l.disk,
                                       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                        created = fd >= 0;
                }
                if (fd < 0) {
                        r = NEG_ERRNO();
                        goto out;
                }
                e.is_dir = is_dir;
                e.parent_id = l.parent_id;
        }

        if (!is_dir && ftruncate(fd, (off_t)args->size) < 0) {
                r = NEG_ERRNO();
                goto out;
        }
        e.size = is_dir ? 0 : args->size;
        free(e.name);
        e.name = strdup(path[n - 1]);
        if (!e.name) {
                r = -ENOMEM;
                goto out;
        }
        e.attributes = is_dir ? EMU_ATTR_DIRECTORY : EMU_ATTR_ARCHIVE;
        e.creation_ns = e.last_write_ns = e.change_ns = now;
        {
                EmuSmbProps smb = args->smb;
                if (smb.creation_ns == EMU_TIME_PRESERVE)
                        smb.creation_ns = EMU_TIME_NOW;
                if (smb.last_write_ns == EMU_TIME_PRESERVE)
                        smb.last_write_ns = EMU_TIME_NOW;
                if (smb.change_ns == EMU_TIME_PRESERVE)
                        smb.change_ns = EMU_TIME_NOW;
                r = store_apply_smb(&e, &smb, now, false);
                if (r < 0)
                        goto out;
        }
        if (!e.permission_key) {
                e.permission_key = strdup(is_dir ? PERMISSION_KEY_DIR : PERMISSION_KEY_FILE);
                if (!e.permission_key) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (!is_dir && args->content) {
                r = store_content_copy(args->content, &e.content);
                if (r < 0)
                        goto out;
        }
        e.last_modified_ns = now;
        e.etag = emu_store_new_etag(s);
        r = store_props_write(fd, &e);
        if (r >= 0)
                r = store_meta_write(fd, XATTR_META, args->meta);
        if (r >= 0 && args->meta)
                r = store_strv_copy(args->meta, &e.meta);
out:
        if (r < 0 && created)
                (void)unlinkat(l.parent_fd, l.disk, is_dir ? AT_REMOVEDIR : 0);
        if (l.share_fd >= 0)
                store_loc_done(&l);
        UNLOCK(s);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

int emu_store_get(
        EmuStore *s, const char *share, char *const *path, size_t n, bool want_dir, EmuEntry *ret) {
        Loc l;
        EmuEntry e = {};
        int fd, r;

        RDLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = store_loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : store_entry_load(fd, l.parent_id, true, &e);
        store_loc_done(&l);
        UNLOCK(s);
        (void)safe_close(fd);
        if (r >= 0)
                r = store_check_type(&e, want_dir);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

/* The shared part of set / set_meta / lease: locate and open under the read lock, then run fn
 * under the inode's stripe. */
typedef int (*ModifyFn)(EmuStore *s, int fd, EmuEntry *e, const void *userdata);

static int
modify(EmuStore *s,
       const char *share,
       char *const *path,
       size_t n,
       bool want_dir,
       int open_flags,
       ModifyFn fn,
       const void *userdata,
       EmuEntry *ret) {
        Loc l;
        EmuEntry e = {};
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        RDLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = store_loc_open(&l, want_dir ? O_RDONLY : open_flags);
        if (fd == -EISDIR)
                r = want_dir ? -EIO : -EISDIR;
        else if (fd < 0)
                r = fd;
        else if (fstat(fd, &st) < 0)
                r = NEG_ERRNO();
        if (r >= 0) {
                pthread_mutex_t *m = store_stripe_of(s, &st);
                (void)pthread_mutex_lock(m);
                r = store_entry_load(fd, l.parent_id, true, &e);
                if (r >= 0)
                        r = store_check_type(&e, want_dir);
                if (r >= 0)
                        r = fn(s, fd, &e, userdata);
                if (r >= 0 && !e.is_dir) {
                        if (fstat(fd, &st) >= 0)
                                e.size = (uint64_t)st.st_size;
                }
                (void)pthread_mutex_unlock(m);
        }
        store_loc_done(&l);
        UNLOCK(s);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

static int set_fn(EmuStore *s, int fd, EmuEntry *e, const void *userdata) {
        const EmuSetArgs *a = userdata;
        int64_t now = now_realtime_ns();
        int r;

        if (!e->is_dir) {
                r = store_lease_check(e, a->lease_id);
                if (r < 0)
                        return r;
        }
        if (!e->is_dir && a->size) {
                Ranges rs;
                if (ftruncate(fd, (off_t)*a->size) < 0)
                        return NEG_ERRNO();
                r = store_ranges_read(fd, &rs);
                if (r >= 0 && *a->size < UINT64_MAX)
                        r = store_ranges_sub(&rs, *a->size, UINT64_MAX);
                if (r >= 0)
                        r = store_ranges_write(fd, &rs);
                free(rs.r);
                if (r < 0)
                        return r;
        }
        r = store_apply_smb(e, &a->smb, now, true);
        if (r < 0)
                return r;
        if (!e->is_dir && a->content) {
                r = store_content_copy(a->content, &e->content);
                if (r < 0)
                        return r;
        }
        e->last_modified_ns = now;
        e->etag = emu_store_new_etag(s);
        return store_props_write(fd, e);
}

int emu_store_set(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        const EmuSetArgs *args,
        EmuEntry *ret) {
        return modify(s, share, path, n, want_dir, O_RDWR, set_fn, args, ret);
}

typedef struct MetaArgs {
        char *const *meta;
        const char *lease_id;
} MetaArgs;

static int meta_fn(EmuStore *s, int fd, EmuEntry *e, const void *userdata) {
        const MetaArgs *a = userdata;
        int r;

        if (!e->is_dir) {
                r = store_lease_check(e, a->lease_id);
                if (r < 0)
                        return r;
        }
        r = store_meta_write(fd, XATTR_META, a->meta);
        if (r < 0)
                return r;
        store_strv_free(e->meta);
        e->meta = NULL;
        if (a->meta) {
                r = store_strv_copy(a->meta, &e->meta);
                if (r < 0)
                        return r;
        }
        e->last_modified_ns = now_realtime_ns();
        e->etag = emu_store_new_etag(s);
        return store_props_write(fd, e);
}

int emu_store_set_meta(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        char *const *meta,
        const char *lease_id,
        EmuEntry *ret) {
        MetaArgs a = {.meta = meta, .lease_id = lease_id};
        return modify(s, share, path, n, want_dir, O_RDONLY, meta_fn, &a, ret);
}

typedef struct LeaseArgs {
        EmuLeaseAction action;
        const char *lease_id, *proposed;
} LeaseArgs;

static void random_guid(char buf[static EMU_LEASE_ID_MAX]) {
        uint8_t b[16] = {};
        (void)getrandom(b, sizeof(b), 0);
        b[6] = (uint8_t)((b[6] & 0x0F) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3F) | 0x80);
        (void)snprintf(
                buf, EMU_LEASE_ID_MAX,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
}

static int lease_fn(EmuStore *s, int fd, EmuEntry *e, const void *userdata) {
        const LeaseArgs *a = userdata;
        bool leased = e->lease_state == EMU_LEASE_LEASED;
        (void)s;

        switch (a->action) {
        case EMU_LEASE_ACQUIRE:
                if (leased) {
                        /* Acquiring again with the current id renews; any other id conflicts. */
                        if (a->proposed && strcasecmp(a->proposed, e->lease_id) == 0)
                                return 0;
                        return -EALREADY;
                }
                if (a->proposed)
                        (void)snprintf(e->lease_id, sizeof(e->lease_id), "%s", a->proposed);
                else
                        random_guid(e->lease_id);
                e->lease_state = EMU_LEASE_LEASED;
                break;
        case EMU_LEASE_CHANGE:
                if (!leased)
                        return -ENOLINK;
                if (strcasecmp(a->lease_id, e->lease_id) != 0 &&
                    strcasecmp(a->proposed, e->lease_id) != 0)
                        return -EPERM;
                (void)snprintf(e->lease_id, sizeof(e->lease_id), "%s", a->proposed);
                break;
        case EMU_LEASE_RELEASE:
                if (!leased)
                        return -ENOLINK;
                if (strcasecmp(a->lease_id, e->lease_id) != 0)
                        return -EPERM;
                e->lease_state = EMU_LEASE_AVAILABLE;
                break;
        case EMU_LEASE_BREAK:
                if (!leased)
                        return -ENOLINK;
                e->lease_state = EMU_LEASE_BROKEN;
                break;
        }
        /* Lease operations change neither the ETag nor Last-Modified. */
        return store_props_write(fd, e);
}

int emu_store_lease(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        EmuLeaseAction action,
        const char *lease_id,
        const char *proposed,
        EmuEntry *ret) {
        LeaseArgs a = {.action = action, .lease_id = lease_id, .proposed = proposed};
        return modify(s, share, path, n, false, O_RDONLY, lease_fn, &a, ret);
}

int emu_store_delete(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        const char *lease_id) {
        Loc l;
        EmuEntry e = {};
        int fd, r;

        if (n == 0)
                return -EPERM;
        WRLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = store_loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : store_entry_load(fd, l.parent_id, false, &e);
        (void)safe_close(fd);
        if (r >= 0)
                r = store_check_type(&e, want_dir);
        if (r >= 0 && !want_dir)
                r = store_lease_check(&e, lease_id);
        if (r >= 0 && unlinkat(l.parent_fd, l.disk, want_dir ? AT_REMOVEDIR : 0) < 0)
                r = errno == ENOTEMPTY || errno == EEXIST ? -ENOTEMPTY : NEG_ERRNO();
        store_loc_done(&l);
        UNLOCK(s);
        emu_entry_clear(&e);
        return r;
}

int emu_store_rename(
        EmuStore *s,
        const char *share,
        char *const *src,
        size_t n_src,
        char *const *dst,
        size_t n_dst,
        bool is_dir,
        const EmuRenameArgs *args,
        EmuEntry *ret) {
        Loc ls = {.share_fd = -EBADF, .parent_fd = -EBADF};
        Loc ld = {.share_fd = -EBADF, .parent_fd = -EBADF};
        _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
        EmuEntry e = {}, d = {};
        struct stat st_src, st_dst;
        int64_t now = now_realtime_ns();
        bool same = false;
        int r;

        if (n_src == 0 || n_dst == 0)
                return -EINVAL;
        WRLOCK(s);
        r = store_locate(s, share, src, n_src, &ls);
        if (r < 0) {
                /* A missing parent of the source is a missing source. */
                if (r == -ESRCH)
                        r = -ENOENT;
                goto out;
        }
        fd = store_loc_open(&ls, O_RDONLY);
        r = fd < 0 ? fd : store_entry_load(fd, ls.parent_id, true, &e);
        if (r >= 0)
                r = store_check_type(&e, is_dir);
        if (r >= 0 && !is_dir)
                r = store_lease_check(&e, args->source_lease_id);
        if (r >= 0 && fstat(fd, &st_src) < 0)
                r = NEG_ERRNO();
        if (r < 0)
                goto out;

        r = store_locate(s, share, dst, n_dst, &ld);
        if (r < 0)
                goto out;
        dfd = store_loc_open(&ld, O_RDONLY);
        if (dfd >= 0) {
                if (fstat(dfd, &st_dst) < 0) {
                        r = NEG_ERRNO();
                        goto out;
                }
                same = st_dst.st_ino == st_src.st_ino && st_dst.st_dev == st_src.st_dev;
                if (!same) {
                        r = store_entry_load(dfd, ld.parent_id, false, &d);
                        if (r < 0)
                                goto out;
                        if (d.is_dir || !args->replace_if_exists) {
                                r = -EEXIST;
                                goto out;
                        }
                        if ((d.attributes & EMU_ATTR_READONLY) && !args->ignore_readonly) {
                                r = -EROFS;
                                goto out;
                        }
                        r = store_lease_check(&d, args->destination_lease_id);
                        if (r < 0)
                                goto out;
                        /* A directory cannot rename(2) over a file; remove the file first. */
                        if (is_dir && unlinkat(ld.parent_fd, ld.disk, 0) < 0) {
                                r = NEG_ERRNO();
                                goto out;
                        }
                }
        } else if (dfd != -ENOENT) {
                r = dfd;
                goto out;
        }
        if (!same || !streq(ls.disk, ld.disk) || ls.parent_id != ld.parent_id) {
                if (renameat(ls.parent_fd, ls.disk, ld.parent_fd, ld.disk) < 0) {
                        r = errno == EINVAL ? -EINVAL : NEG_ERRNO();
                        goto out;
                }
        }
        free(e.name);
        e.name = strdup(dst[n_dst - 1]);
        if (!e.name) {
                r = -ENOMEM;
                goto out;
        }
        e.parent_id = ld.parent_id;
        r = store_apply_smb(&e, &args->smb, now, true);
        if (r < 0)
                goto out;
        if (!is_dir && args->content_type) {
                free(e.content.type);
                e.content.type = strdup(args->content_type);
                if (!e.content.type) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        if (args->meta) {
                r = store_meta_write(fd, XATTR_META, args->meta);
                if (r < 0)
                        goto out;
                store_strv_free(e.meta);
                e.meta = NULL;
                r = store_strv_copy(args->meta, &e.meta);
                if (r < 0)
                        goto out;
        }
        e.last_modified_ns = now;
        e.etag = emu_store_new_etag(s);
        r = store_props_write(fd, &e);
out:
        if (ls.share_fd >= 0)
                store_loc_done(&ls);
        if (ld.share_fd >= 0)
                store_loc_done(&ld);
        UNLOCK(s);
        emu_entry_clear(&d);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}
