/* SPDX-License-Identifier: MIT */
/* The emulator's file data and directory listings (see emu-store.c for the layout and the
 * locking rules). */
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

/* ---- file data ---------------------------------------------------------------------------- */

int emu_store_write(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        uint64_t offset,
        const void *data,
        uint64_t len,
        const char *lease_id,
        int64_t last_write_ns,
        EmuEntry *ret) {
        Loc l;
        EmuEntry e = {};
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        pthread_mutex_t *m = NULL;
        Ranges rs = {};
        int r = 0;

        if (len == 0)
                return -ERANGE;
        RDLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = store_loc_open(&l, O_RDWR);
        if (fd < 0)
                r = fd;
        else if (fstat(fd, &st) < 0)
                r = NEG_ERRNO();
        if (r >= 0) {
                m = store_stripe_of(s, &st);
                (void)pthread_mutex_lock(m);
                r = store_entry_load(fd, l.parent_id, false, &e);
                if (r >= 0)
                        r = store_check_type(&e, false);
                if (r >= 0)
                        r = store_lease_check(&e, lease_id);
                if (r >= 0 && (offset >= e.size || len > e.size - offset))
                        r = -ERANGE;
                (void)pthread_mutex_unlock(m);
        }
        store_loc_done(&l);
        UNLOCK(s);
        if (r < 0)
                goto fail;

        /* The data itself, outside every lock. */
        if (data) {
                const char *p = data;
                uint64_t done = 0;
                while (done < len) {
                        ssize_t k =
                                pwrite(fd, p + done, (size_t)(len - done), (off_t)(offset + done));
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                r = NEG_ERRNO();
                                goto fail;
                        }
                        done += (uint64_t)k;
                }
        } else if (
                fallocate(
                        fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len) <
                0) {
                r = NEG_ERRNO();
                goto fail;
        }

        RDLOCK(s);
        (void)pthread_mutex_lock(m);
        r = store_props_read(fd, &e);
        if (r >= 0)
                r = store_ranges_read(fd, &rs);
        if (r >= 0)
                r = data ? store_ranges_add(&rs, offset, offset + len - 1)
                         : store_ranges_sub(&rs, offset, offset + len - 1);
        if (r >= 0)
                r = store_ranges_write(fd, &rs);
        if (r >= 0) {
                int64_t now = now_realtime_ns();
                e.last_write_ns = store_pick_time(last_write_ns, e.last_write_ns, now);
                e.change_ns = now;
                e.last_modified_ns = now;
                e.etag = emu_store_new_etag(s);
                r = store_props_write(fd, &e);
        }
        if (r >= 0 && fstat(fd, &st) >= 0)
                e.size = (uint64_t)st.st_size;
        (void)pthread_mutex_unlock(m);
        UNLOCK(s);
        free(rs.r);
        if (r < 0)
                goto fail;
        *ret = e;
        return 0;
fail:
        emu_entry_clear(&e);
        return r;
}

int emu_store_open_file(
        EmuStore *s, const char *share, char *const *path, size_t n, EmuEntry *ret, int *ret_fd) {
        Loc l;
        EmuEntry e = {};
        _cleanup_close_ int fd = -EBADF;
        int r;

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
        if (r >= 0)
                r = store_check_type(&e, false);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int ranges_from_holes(int fd, uint64_t size, Ranges *rs) {
        off_t pos = 0;

        rs->overflow = false;
        rs->n = 0;
        while ((uint64_t)pos < size) {
                off_t data = lseek(fd, pos, SEEK_DATA), hole;
                EmuRange *nr;
                if (data < 0)
                        return errno == ENXIO ? 0 : NEG_ERRNO();
                hole = lseek(fd, data, SEEK_HOLE);
                if (hole < 0)
                        return NEG_ERRNO();
                hole = MIN(hole, (off_t)size);
                nr = realloc(rs->r, (rs->n + 1) * sizeof(EmuRange));
                if (!nr)
                        return -ENOMEM;
                rs->r = nr;
                rs->r[rs->n++] = (EmuRange){(uint64_t)data, (uint64_t)hole - 1};
                pos = hole;
        }
        return 0;
}

int emu_store_ranges(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        uint64_t start,
        uint64_t end,
        EmuEntry *ret,
        EmuRange **ret_ranges,
        size_t *ret_n) {
        EmuEntry e = {};
        _cleanup_close_ int fd = -EBADF;
        Ranges rs = {};
        EmuRange *out = NULL;
        size_t o = 0;
        struct stat st;
        int r;

        r = emu_store_open_file(s, share, path, n, &e, &fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0) {
                r = NEG_ERRNO();
                goto fail;
        }
        RDLOCK(s);
        (void)pthread_mutex_lock(store_stripe_of(s, &st));
        r = store_ranges_read(fd, &rs);
        (void)pthread_mutex_unlock(store_stripe_of(s, &st));
        UNLOCK(s);
        if (r >= 0 && rs.overflow)
                r = ranges_from_holes(fd, e.size, &rs);
        if (r < 0)
                goto fail;
        if (e.size == 0 || start >= e.size)
                rs.n = 0; /* nothing to report */
        else
                end = MIN(end, e.size - 1);
        out = calloc(rs.n + 1, sizeof(EmuRange));
        if (!out) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < rs.n && start <= end; i++) {
                EmuRange c = rs.r[i];
                if (c.end < start || c.start > end)
                        continue;
                out[o++] = (EmuRange){MAX(c.start, start), MIN(c.end, end)};
        }
        free(rs.r);
        *ret = e;
        *ret_ranges = out;
        *ret_n = o;
        return 0;
fail:
        free(rs.r);
        free(out);
        emu_entry_clear(&e);
        return r;
}

/* ---- listing ------------------------------------------------------------------------------ */

typedef struct ListKey {
        char *key; /* folded name */
        char disk[NAME_MAX + 1];
} ListKey;

static int list_key_cmp(const void *a, const void *b) {
        return strcmp(((const ListKey *)a)->key, ((const ListKey *)b)->key);
}

static int marker_decode(const char *marker, char **ret) {
        size_t len = strlen(marker);
        char *out;

        if (len < 2 || len % 2 != 0 || strncmp(marker, "2!", 2) != 0)
                return -EBADMSG;
        out = malloc(len / 2 + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 2, o = 0; i < len; i += 2, o++) {
                unsigned v;
                if (sscanf(marker + i, "%2x", &v) != 1 || !strchr("0123456789abcdef", marker[i]) ||
                    !strchr("0123456789abcdef", marker[i + 1]) || v == 0) {
                        free(out);
                        return -EBADMSG;
                }
                out[o] = (char)v;
        }
        out[len / 2 - 1] = '\0';
        *ret = out;
        return 0;
}

static int marker_encode(const char *key, char **ret) {
        size_t len = strlen(key);
        char *out = malloc(2 + len * 2 + 1);

        if (!out)
                return -ENOMEM;
        memcpy(out, "2!", 2);
        for (size_t i = 0; i < len; i++)
                (void)snprintf(out + 2 + 2 * i, 3, "%02x", (unsigned char)key[i]);
        out[2 + len * 2] = '\0';
        *ret = out;
        return 0;
}

int emu_store_list(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        const char *prefix,
        const char *marker,
        size_t max,
        EmuListPage *ret) {
        _cleanup_free_ char *fprefix = NULL, *fmarker = NULL;
        EmuListPage page = {};
        ListKey *keys = NULL;
        size_t n_keys = 0, alloc = 0, first;
        DIR *d = NULL;
        Loc l;
        int fd = -EBADF, r;
        struct dirent *de;

        if (prefix) {
                r = emu_name_fold(prefix, &fprefix);
                if (r < 0)
                        return r;
        }
        if (marker) {
                r = marker_decode(marker, &fmarker);
                if (r < 0)
                        return r;
        }
        RDLOCK(s);
        r = store_locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = store_loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : store_entry_load(fd, l.parent_id, false, &page.dir);
        if (r >= 0)
                r = store_check_type(&page.dir, true);
        if (r < 0)
                goto out;
        d = fdopendir(fd);
        if (!d) {
                r = NEG_ERRNO();
                goto out;
        }
        fd = -EBADF;
        while ((de = readdir(d))) {
                ListKey k = {};
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                (void)snprintf(k.disk, sizeof(k.disk), "%s", de->d_name);
                if (de->d_name[0] == '#') {
                        EmuEntry tmp = {};
                        int efd = openat(dirfd(d), de->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                        if (efd < 0)
                                continue;
                        r = store_props_read(efd, &tmp);
                        (void)safe_close(efd);
                        if (r >= 0)
                                r = emu_name_fold(tmp.name, &k.key);
                        emu_entry_clear(&tmp);
                        if (r == -ENOMEM)
                                goto out;
                        if (r < 0)
                                continue;
                } else {
                        k.key = strdup(de->d_name);
                        if (!k.key) {
                                r = -ENOMEM;
                                goto out;
                        }
                }
                if ((fprefix && strncmp(k.key, fprefix, strlen(fprefix)) != 0) ||
                    (fmarker && strcmp(k.key, fmarker) < 0)) {
                        free(k.key);
                        continue;
                }
                if (n_keys == alloc) {
                        size_t na = MAX(alloc * 2, (size_t)64);
                        ListKey *nk = realloc(keys, na * sizeof(ListKey));
                        if (!nk) {
                                free(k.key);
                                r = -ENOMEM;
                                goto out;
                        }
                        keys = nk;
                        alloc = na;
                }
                keys[n_keys++] = k;
        }
        if (n_keys > 0) /* an empty directory has no array at all (qsort wants one) */
                qsort(keys, n_keys, sizeof(ListKey), list_key_cmp);
        page.items = calloc(MIN(n_keys, max) + 1, sizeof(EmuEntry));
        if (!page.items) {
                r = -ENOMEM;
                goto out;
        }
        r = 0;
        for (first = 0; first < n_keys && page.n_items < max; first++) {
                int efd = openat(dirfd(d), keys[first].disk, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
                if (efd < 0)
                        continue;
                r = store_entry_load(efd, page.dir.id, false, &page.items[page.n_items]);
                (void)safe_close(efd);
                if (r == -ENOMEM)
                        goto out;
                if (r >= 0)
                        page.n_items++;
                r = 0;
        }
        if (first < n_keys) {
                r = marker_encode(keys[first].key, &page.next_marker);
                if (r < 0)
                        goto out;
        }
out:
        if (d)
                (void)closedir(d);
        (void)safe_close(fd);
        store_loc_done(&l);
        UNLOCK(s);
        for (size_t i = 0; i < n_keys; i++)
                free(keys[i].key);
        free(keys);
        if (r < 0) {
                emu_list_page_clear(&page);
                return r;
        }
        *ret = page;
        return 0;
}
