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
#include "emu-store.h"

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
#include "time-util.h"

#define XATTR_PROPS "user.emu"
#define XATTR_META "user.emu.meta"
#define XATTR_RANGES "user.emu.ranges"
#define XATTR_SHARE "user.emu.share"
#define XATTR_SHARE_META "user.emu.share-meta"
#define XATTR_NEXT_ID "user.emu.next-id"
#define XATTR_VALUE_MAX 65536
#define PROPS_MAGIC UINT32_C(0x31554d45) /* "EMU1" */
#define SHARE_MAGIC UINT32_C(0x31485345) /* "ESH1" */
#define DISK_NAME_MAX 200
#define N_STRIPES 64
#define RANGES_MAX 128
#define RANGES_OVERFLOW UINT64_MAX
#define FILE_ID_BASE (UINT64_C(1) << 63)
#define FILETIME_EPOCH_TICKS UINT64_C(116444736000000000)
/* The service's ETags are FILETIME ticks offset so that they print as "0x8D...". */
#define ETAG_OFFSET UINT64_C(0x0700000000000000)

#define PERMISSION_KEY_FILE "8598604137816897901*16137673612980802019"
#define PERMISSION_KEY_DIR "13199961128260716138*16137673612980802019"

struct EmuStore {
        int data_fd;
        int shares_fd;
        int trash_fd;
        pthread_rwlock_t ns_lock;
        pthread_mutex_t stripes[N_STRIPES];
        _Atomic uint64_t last_etag;
        uint64_t next_id; /* protected by ns_lock (write) */
        _Atomic uint64_t trash_counter;
};

typedef struct DiskProps {
        uint32_t magic;
        uint32_t attributes;
        uint64_t id;
        int64_t creation_ns, last_write_ns, change_ns, last_modified_ns;
        uint64_t etag;
        uint32_t lease_state;
        uint32_t is_dir;
        char lease_id[EMU_LEASE_ID_MAX];
} DiskProps;

typedef struct DiskShare {
        uint32_t magic;
        uint32_t reserved;
        uint64_t quota_gib;
        int64_t last_modified_ns;
        uint64_t etag;
} DiskShare;

/* ---- small helpers ------------------------------------------------------------------------ */

static void strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

static size_t strv_length(char *const *v) {
        size_t n = 0;
        while (v && v[n])
                n++;
        return n;
}

static int strv_copy(char *const *v, char ***ret) {
        size_t n = strv_length(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i]);
                if (!c[i]) {
                        strv_free(c);
                        return -ENOMEM;
                }
        }
        *ret = c;
        return 0;
}

static void content_clear(EmuContent *c) {
        free(c->type);
        free(c->encoding);
        free(c->language);
        free(c->cache_control);
        free(c->disposition);
        free(c->md5);
        *c = (EmuContent){};
}

void emu_entry_clear(EmuEntry *e) {
        if (!e)
                return;
        free(e->name);
        free(e->permission_key);
        content_clear(&e->content);
        strv_free(e->meta);
        *e = (EmuEntry){};
}

void emu_share_info_clear(EmuShareInfo *i) {
        if (!i)
                return;
        strv_free(i->meta);
        *i = (EmuShareInfo){};
}

void emu_list_page_clear(EmuListPage *p) {
        if (!p)
                return;
        emu_entry_clear(&p->dir);
        for (size_t i = 0; i < p->n_items; i++)
                emu_entry_clear(&p->items[i]);
        free(p->items);
        free(p->next_marker);
        *p = (EmuListPage){};
}

uint64_t emu_store_new_etag(EmuStore *s) {
        uint64_t now = (uint64_t)now_realtime_ns() / 100 + FILETIME_EPOCH_TICKS + ETAG_OFFSET;
        uint64_t last = atomic_load(&s->last_etag), next;

        do
                next = MAX(now, last + 1);
        while (!atomic_compare_exchange_weak(&s->last_etag, &last, next));
        return next;
}

static pthread_mutex_t *stripe_of(EmuStore *s, const struct stat *st) {
        return &s->stripes[st->st_ino % N_STRIPES];
}

/* ---- attributes --------------------------------------------------------------------------- */

static const char *const attr_names[] = {
        "ReadOnly",    "Hidden",    "System",  "Directory",
        "Archive",     "Temporary", "Offline", "NotContentIndexed",
        "NoScrubData",
};

int emu_attributes_parse(const char *s, uint32_t *ret) {
        uint32_t a = 0;
        const char *p = s;

        for (;;) {
                size_t len;
                bool found = false;

                p += strspn(p, " ");
                len = strcspn(p, "|");
                while (len > 0 && p[len - 1] == ' ')
                        len--;
                if (len == 4 && strncasecmp(p, "None", 4) == 0)
                        found = true;
                for (size_t i = 0; !found && i < ELEMENTSOF(attr_names); i++)
                        if (strlen(attr_names[i]) == len &&
                            strncasecmp(p, attr_names[i], len) == 0) {
                                a |= 1u << i;
                                found = true;
                        }
                if (!found)
                        return -EINVAL;
                p = strchr(p, '|');
                if (!p)
                        break;
                p++;
        }
        *ret = a;
        return 0;
}

char *emu_attributes_format(char buf[static EMU_ATTRIBUTES_MAX], uint32_t attributes) {
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(attr_names); i++)
                if (attributes & (1u << i)) {
                        int k = snprintf(
                                buf + o, EMU_ATTRIBUTES_MAX - o, "%s%s", o > 0 ? " | " : "",
                                attr_names[i]);
                        if (k > 0)
                                o = MIN(o + (size_t)k, (size_t)EMU_ATTRIBUTES_MAX - 1);
                }
        if (o == 0)
                (void)snprintf(buf, EMU_ATTRIBUTES_MAX, "None");
        return buf;
}

/* ---- on-disk names ------------------------------------------------------------------------ */

static int disk_name(const char *name, char ret[static NAME_MAX + 1]) {
        _cleanup_free_ char *folded = NULL;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        int r;

        r = emu_name_fold(name, &folded);
        if (r < 0)
                return r;
        if (strlen(folded) <= DISK_NAME_MAX && folded[0] != '#') {
                (void)snprintf(ret, NAME_MAX + 1, "%s", folded);
                return 0;
        }
        if (!EVP_Digest(folded, strlen(folded), md, &md_len, EVP_sha256(), NULL))
                return -EIO;
        ret[0] = '#';
        for (unsigned i = 0; i < md_len && 1 + 2 * i + 2 < NAME_MAX; i++)
                (void)snprintf(ret + 1 + 2 * i, 3, "%02x", md[i]);
        return 0;
}

/* ---- properties in xattrs ------------------------------------------------------------------ */

static int xattr_get(int fd, const char *name, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = malloc(XATTR_VALUE_MAX + 1);
        ssize_t n;

        if (!buf)
                return -ENOMEM;
        n = fgetxattr(fd, name, buf, XATTR_VALUE_MAX);
        if (n < 0)
                return errno == ENODATA ? -ENODATA : NEG_ERRNO();
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = (size_t)n;
        return 0;
}

static int xattr_set(int fd, const char *name, const void *value, size_t size) {
        if (fsetxattr(fd, name, value, size, 0) < 0)
                return (errno == ENOSPC || errno == E2BIG || errno == ERANGE) ? -E2BIG
                                                                              : NEG_ERRNO();
        return 0;
}

static int strdup_or_null(const char *s, char **ret) {
        if (isempty(s)) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int props_read(int fd, EmuEntry *e) {
        _cleanup_free_ char *buf = NULL;
        char **strings[] = {
                &e->name,
                &e->permission_key,
                &e->content.type,
                &e->content.encoding,
                &e->content.language,
                &e->content.cache_control,
                &e->content.disposition,
                &e->content.md5,
        };
        DiskProps dp;
        size_t size, o;
        int r;

        r = xattr_get(fd, XATTR_PROPS, &buf, &size);
        if (r == -ENODATA)
                return -ENOENT; /* not one of ours */
        if (r < 0)
                return r;
        if (size < sizeof(dp))
                return -EBADMSG;
        memcpy(&dp, buf, sizeof(dp));
        if (dp.magic != PROPS_MAGIC)
                return -EBADMSG;
        e->is_dir = dp.is_dir;
        e->id = dp.id;
        e->attributes = dp.attributes;
        e->creation_ns = dp.creation_ns;
        e->last_write_ns = dp.last_write_ns;
        e->change_ns = dp.change_ns;
        e->last_modified_ns = dp.last_modified_ns;
        e->etag = dp.etag;
        e->lease_state = (EmuLeaseState)dp.lease_state;
        memcpy(e->lease_id, dp.lease_id, sizeof(e->lease_id));
        e->lease_id[EMU_LEASE_ID_MAX - 1] = '\0';
        o = sizeof(dp);
        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                free(*strings[i]);
                *strings[i] = NULL;
                if (o >= size)
                        continue;
                r = strdup_or_null(buf + o, strings[i]);
                if (r < 0)
                        return r;
                o += strlen(buf + o) + 1;
        }
        if (!e->name && !(e->name = strdup("")))
                return -ENOMEM;
        return 0;
}

static int props_write(int fd, const EmuEntry *e) {
        const char *strings[] = {
                e->name,
                e->permission_key,
                e->content.type,
                e->content.encoding,
                e->content.language,
                e->content.cache_control,
                e->content.disposition,
                e->content.md5,
        };
        DiskProps dp = {
                .magic = PROPS_MAGIC,
                .attributes = e->attributes,
                .id = e->id,
                .creation_ns = e->creation_ns,
                .last_write_ns = e->last_write_ns,
                .change_ns = e->change_ns,
                .last_modified_ns = e->last_modified_ns,
                .etag = e->etag,
                .lease_state = e->lease_state,
                .is_dir = e->is_dir,
        };
        _cleanup_free_ char *buf = NULL;
        size_t size = sizeof(dp), o;

        memcpy(dp.lease_id, e->lease_id, sizeof(dp.lease_id));
        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                size += strlen(strings[i] ? strings[i] : "") + 1;
        if (size > XATTR_VALUE_MAX)
                return -E2BIG;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, &dp, sizeof(dp));
        o = sizeof(dp);
        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                size_t l = strlen(strings[i] ? strings[i] : "") + 1;
                memcpy(buf + o, strings[i] ? strings[i] : "", l);
                o += l;
        }
        return xattr_set(fd, XATTR_PROPS, buf, size);
}

static int meta_read(int fd, const char *xname, EmuMeta *ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size, n = 0, o;
        char **v;
        int r;

        r = xattr_get(fd, xname, &buf, &size);
        if (r == -ENODATA || (r >= 0 && size == 0)) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        for (o = 0; o < size; o += strlen(buf + o) + 1)
                n++;
        v = calloc(n + 2, sizeof(char *));
        if (!v)
                return -ENOMEM;
        n = 0;
        for (o = 0; o < size; o += strlen(buf + o) + 1) {
                v[n] = strdup(buf + o);
                if (!v[n]) {
                        strv_free(v);
                        return -ENOMEM;
                }
                n++;
        }
        if (n % 2 == 1) {
                free(v[n - 1]);
                v[n - 1] = NULL;
        }
        *ret = v;
        return 0;
}

static int meta_write(int fd, const char *xname, char *const *meta) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, o = 0;

        if (!meta || !meta[0]) {
                if (fremovexattr(fd, xname) < 0 && errno != ENODATA)
                        return NEG_ERRNO();
                return 0;
        }
        for (size_t i = 0; meta[i]; i++)
                size += strlen(meta[i]) + 1;
        if (size > XATTR_VALUE_MAX)
                return -E2BIG;
        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        for (size_t i = 0; meta[i]; i++) {
                size_t l = strlen(meta[i]) + 1;
                memcpy(buf + o, meta[i], l);
                o += l;
        }
        return xattr_set(fd, xname, buf, size);
}

/* ---- written ranges ------------------------------------------------------------------------ */

typedef struct Ranges {
        EmuRange *r;
        size_t n;
        bool overflow;
} Ranges;

static int ranges_read(int fd, Ranges *ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size;
        int r;

        *ret = (Ranges){};
        r = xattr_get(fd, XATTR_RANGES, &buf, &size);
        if (r == -ENODATA)
                return 0;
        if (r < 0)
                return r;
        if (size == sizeof(uint64_t)) {
                ret->overflow = true;
                return 0;
        }
        if (size % sizeof(EmuRange) != 0)
                return -EBADMSG;
        ret->n = size / sizeof(EmuRange);
        ret->r = malloc(MAX(size, sizeof(EmuRange)) + 2 * sizeof(EmuRange));
        if (!ret->r)
                return -ENOMEM;
        memcpy(ret->r, buf, size);
        return 0;
}

static int ranges_write(int fd, const Ranges *rs) {
        uint64_t marker = RANGES_OVERFLOW;

        if (rs->overflow || rs->n > RANGES_MAX)
                return xattr_set(fd, XATTR_RANGES, &marker, sizeof(marker));
        if (rs->n == 0) {
                if (fremovexattr(fd, XATTR_RANGES) < 0 && errno != ENODATA)
                        return NEG_ERRNO();
                return 0;
        }
        return xattr_set(fd, XATTR_RANGES, rs->r, rs->n * sizeof(EmuRange));
}

/* Removes [start, end] from the list (may split one range into two). */
static int ranges_sub(Ranges *rs, uint64_t start, uint64_t end) {
        EmuRange *out;
        size_t o = 0;

        if (rs->overflow)
                return 0;
        out = malloc((rs->n + 2) * sizeof(EmuRange));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n; i++) {
                EmuRange c = rs->r[i];
                if (c.end < start || c.start > end) {
                        out[o++] = c;
                        continue;
                }
                if (c.start < start)
                        out[o++] = (EmuRange){c.start, start - 1};
                if (c.end > end)
                        out[o++] = (EmuRange){end + 1, c.end};
        }
        free(rs->r);
        rs->r = out;
        rs->n = o;
        return 0;
}

/* Adds [start, end], merging overlapping and adjacent ranges; keeps the list sorted. */
static int ranges_add(Ranges *rs, uint64_t start, uint64_t end) {
        EmuRange *out;
        size_t o = 0;
        bool placed = false;

        if (rs->overflow)
                return 0;
        out = malloc((rs->n + 1) * sizeof(EmuRange));
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < rs->n; i++) {
                EmuRange c = rs->r[i];
                if (c.end + 1 < start) {
                        out[o++] = c;
                        continue;
                }
                if (end != UINT64_MAX && c.start > end + 1) {
                        if (!placed) {
                                out[o++] = (EmuRange){start, end};
                                placed = true;
                        }
                        out[o++] = c;
                        continue;
                }
                start = MIN(start, c.start);
                end = MAX(end, c.end);
        }
        if (!placed)
                out[o++] = (EmuRange){start, end};
        free(rs->r);
        rs->r = out;
        rs->n = o;
        if (rs->n > RANGES_MAX)
                rs->overflow = true;
        return 0;
}

/* ---- path resolution ---------------------------------------------------------------------- */

typedef struct Loc {
        int share_fd;
        int parent_fd; /* == share_fd when the parent is the root */
        uint64_t parent_id;
        bool root; /* the path names the share's root directory */
        char disk[NAME_MAX + 1];
} Loc;

static void loc_done(Loc *l) {
        if (l->parent_fd != l->share_fd)
                (void)safe_close(l->parent_fd);
        (void)safe_close(l->share_fd);
        l->share_fd = l->parent_fd = -EBADF;
}

static int open_share(EmuStore *s, const char *share) {
        int fd;

        if (emu_share_name_validate(share) < 0)
                return -ENOMEDIUM;
        fd = openat(s->shares_fd, share, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ENOMEDIUM : NEG_ERRNO();
        return fd;
}

static int locate(EmuStore *s, const char *share, char *const *path, size_t n, Loc *ret) {
        Loc l = {.share_fd = -EBADF, .parent_fd = -EBADF};
        int r;

        r = open_share(s, share);
        if (r < 0)
                return r;
        l.share_fd = l.parent_fd = r;
        l.root = n == 0;
        for (size_t i = 0; i + 1 < n; i++) {
                char name[NAME_MAX + 1];
                int fd;

                r = disk_name(path[i], name);
                if (r < 0)
                        goto fail;
                fd = openat(l.parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        r = (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) ? -ESRCH
                                                                                    : NEG_ERRNO();
                        goto fail;
                }
                if (l.parent_fd != l.share_fd)
                        (void)safe_close(l.parent_fd);
                l.parent_fd = fd;
        }
        if (n >= 2) {
                EmuEntry pe = {};
                r = props_read(l.parent_fd, &pe);
                l.parent_id = pe.id;
                emu_entry_clear(&pe);
                if (r < 0)
                        goto fail;
        }
        if (n >= 1) {
                r = disk_name(path[n - 1], l.disk);
                if (r < 0)
                        goto fail;
        }
        *ret = l;
        return 0;
fail:
        loc_done(&l);
        return r;
}

/* Opens the entry at l. flags: O_RDONLY or O_RDWR. */
static int loc_open(const Loc *l, int flags) {
        int fd;

        if (l->root)
                fd = openat(l->share_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        else
                fd = openat(l->parent_fd, l->disk, flags | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ELOOP)
                        return -ENOENT;
                return NEG_ERRNO();
        }
        return fd;
}

/* Loads properties (and metadata) of an open entry and checks its type. */
static int entry_load(int fd, uint64_t parent_id, bool with_meta, EmuEntry *ret) {
        EmuEntry e = {};
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return NEG_ERRNO();
        r = props_read(fd, &e);
        if (r >= 0 && with_meta)
                r = meta_read(fd, XATTR_META, &e.meta);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        e.is_dir = S_ISDIR(st.st_mode);
        e.size = e.is_dir ? 0 : (uint64_t)st.st_size;
        e.parent_id = parent_id;
        *ret = e;
        return 0;
}

static int check_type(const EmuEntry *e, bool want_dir) {
        if (want_dir && !e->is_dir)
                return -ENOTDIR;
        if (!want_dir && e->is_dir)
                return -EISDIR;
        return 0;
}

static int lease_check(const EmuEntry *e, const char *lease_id) {
        if (e->lease_state == EMU_LEASE_LEASED) {
                if (!lease_id)
                        return -ENOLCK;
                if (strcasecmp(lease_id, e->lease_id) != 0)
                        return -EPERM;
                return 0;
        }
        return lease_id ? -ENOLINK : 0;
}

static int64_t pick_time(int64_t want, int64_t current, int64_t now) {
        if (want == EMU_TIME_NOW)
                return now;
        if (want == EMU_TIME_PRESERVE)
                return current;
        return want;
}

static int apply_smb(EmuEntry *e, const EmuSmbProps *smb, int64_t now, bool change_default_now) {
        if (smb->attributes_set) {
                uint32_t a = smb->attributes & ~(uint32_t)EMU_ATTR_DIRECTORY;
                if (e->is_dir)
                        a |= EMU_ATTR_DIRECTORY;
                else if (a == 0)
                        a = EMU_ATTR_ARCHIVE;
                e->attributes = a;
        }
        e->creation_ns = pick_time(smb->creation_ns, e->creation_ns, now);
        e->last_write_ns = pick_time(smb->last_write_ns, e->last_write_ns, now);
        if (smb->change_ns == EMU_TIME_PRESERVE && change_default_now)
                e->change_ns = now;
        else
                e->change_ns = pick_time(smb->change_ns, e->change_ns, now);
        if (smb->permission_key) {
                char *k = strdup(smb->permission_key);
                if (!k)
                        return -ENOMEM;
                free(e->permission_key);
                e->permission_key = k;
        }
        return 0;
}

static int content_copy(const EmuContent *src, EmuContent *dst) {
        const char *from[] = {src->type,          src->encoding,    src->language,
                              src->cache_control, src->disposition, src->md5};
        char **to[] = {&dst->type,          &dst->encoding,    &dst->language,
                       &dst->cache_control, &dst->disposition, &dst->md5};
        int r;

        content_clear(dst);
        for (size_t i = 0; i < ELEMENTSOF(from); i++) {
                r = strdup_or_null(from[i], to[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

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
        r = xattr_set(s->shares_fd, XATTR_NEXT_ID, &s->next_id, sizeof(s->next_id));
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
        int r = xattr_set(s->shares_fd, XATTR_NEXT_ID, &next, sizeof(next));
        if (r < 0)
                return r;
        s->next_id = next;
        *ret = FILE_ID_BASE | next;
        return 0;
}

#define RDLOCK(s) (void)pthread_rwlock_rdlock(&(s)->ns_lock)
#define WRLOCK(s) (void)pthread_rwlock_wrlock(&(s)->ns_lock)
#define UNLOCK(s) (void)pthread_rwlock_unlock(&(s)->ns_lock)

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
        return meta_read(fd, XATTR_SHARE_META, &ret->meta);
}

static int share_write(int fd, const EmuShareInfo *i) {
        DiskShare ds = {
                .magic = SHARE_MAGIC,
                .quota_gib = i->quota_gib,
                .last_modified_ns = i->last_modified_ns,
                .etag = i->etag,
        };
        return xattr_set(fd, XATTR_SHARE, &ds, sizeof(ds));
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
                r = meta_write(fd, XATTR_SHARE_META, meta);
        if (r >= 0)
                r = props_write(fd, &root);
        if (r < 0)
                (void)unlinkat(s->shares_fd, share, AT_REMOVEDIR);
        UNLOCK(s);
        (void)safe_close(fd);
        return r;
}

int emu_store_share_get(EmuStore *s, const char *share, EmuShareInfo *ret) {
        int fd, r;

        RDLOCK(s);
        fd = open_share(s, share);
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
        fd = open_share(s, share);
        r = fd < 0 ? fd : share_read(fd, &info);
        if (r >= 0) {
                if (quota_gib > 0)
                        info.quota_gib = quota_gib;
                info.last_modified_ns = now_realtime_ns();
                info.etag = emu_store_new_etag(s);
                r = share_write(fd, &info);
        }
        if (r >= 0 && meta) {
                r = meta_write(fd, XATTR_SHARE_META, meta);
                strv_free(info.meta);
                info.meta = NULL;
                if (r >= 0)
                        r = strv_copy(meta, &info.meta);
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
        fd = open_share(s, share);
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
        r = locate(s, share, path, n, &l);
        if (r < 0)
                goto out;
        fd = loc_open(&l, is_dir ? O_RDONLY : O_RDWR);
        if (fd >= 0 || fd == -EISDIR) {
                /* The name is taken (in any case spelling). Directories conflict; files are
                 * replaced, keeping their id. */
                if (is_dir || fd == -EISDIR) {
                        r = -EEXIST;
                        goto out;
                }
                r = entry_load(fd, l.parent_id, false, &e);
                if (r < 0)
                        goto out;
                if (e.is_dir) {
                        r = -EEXIST;
                        goto out;
                }
                r = lease_check(&e, args->lease_id);
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
                content_clear(&e.content);
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
                r = apply_smb(&e, &smb, now, false);
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
                r = content_copy(args->content, &e.content);
                if (r < 0)
                        goto out;
        }
        e.last_modified_ns = now;
        e.etag = emu_store_new_etag(s);
        r = props_write(fd, &e);
        if (r >= 0)
                r = meta_write(fd, XATTR_META, args->meta);
        if (r >= 0 && args->meta)
                r = strv_copy(args->meta, &e.meta);
out:
        if (r < 0 && created)
                (void)unlinkat(l.parent_fd, l.disk, is_dir ? AT_REMOVEDIR : 0);
        if (l.share_fd >= 0)
                loc_done(&l);
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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : entry_load(fd, l.parent_id, true, &e);
        loc_done(&l);
        UNLOCK(s);
        (void)safe_close(fd);
        if (r >= 0)
                r = check_type(&e, want_dir);
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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, want_dir ? O_RDONLY : open_flags);
        if (fd == -EISDIR)
                r = want_dir ? -EIO : -EISDIR;
        else if (fd < 0)
                r = fd;
        else if (fstat(fd, &st) < 0)
                r = NEG_ERRNO();
        if (r >= 0) {
                pthread_mutex_t *m = stripe_of(s, &st);
                (void)pthread_mutex_lock(m);
                r = entry_load(fd, l.parent_id, true, &e);
                if (r >= 0)
                        r = check_type(&e, want_dir);
                if (r >= 0)
                        r = fn(s, fd, &e, userdata);
                if (r >= 0 && !e.is_dir) {
                        if (fstat(fd, &st) >= 0)
                                e.size = (uint64_t)st.st_size;
                }
                (void)pthread_mutex_unlock(m);
        }
        loc_done(&l);
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
                r = lease_check(e, a->lease_id);
                if (r < 0)
                        return r;
        }
        if (!e->is_dir && a->size) {
                Ranges rs;
                if (ftruncate(fd, (off_t)*a->size) < 0)
                        return NEG_ERRNO();
                r = ranges_read(fd, &rs);
                if (r >= 0 && *a->size < UINT64_MAX)
                        r = ranges_sub(&rs, *a->size, UINT64_MAX);
                if (r >= 0)
                        r = ranges_write(fd, &rs);
                free(rs.r);
                if (r < 0)
                        return r;
        }
        r = apply_smb(e, &a->smb, now, true);
        if (r < 0)
                return r;
        if (!e->is_dir && a->content) {
                r = content_copy(a->content, &e->content);
                if (r < 0)
                        return r;
        }
        e->last_modified_ns = now;
        e->etag = emu_store_new_etag(s);
        return props_write(fd, e);
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
                r = lease_check(e, a->lease_id);
                if (r < 0)
                        return r;
        }
        r = meta_write(fd, XATTR_META, a->meta);
        if (r < 0)
                return r;
        strv_free(e->meta);
        e->meta = NULL;
        if (a->meta) {
                r = strv_copy(a->meta, &e->meta);
                if (r < 0)
                        return r;
        }
        e->last_modified_ns = now_realtime_ns();
        e->etag = emu_store_new_etag(s);
        return props_write(fd, e);
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
        return props_write(fd, e);
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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : entry_load(fd, l.parent_id, false, &e);
        (void)safe_close(fd);
        if (r >= 0)
                r = check_type(&e, want_dir);
        if (r >= 0 && !want_dir)
                r = lease_check(&e, lease_id);
        if (r >= 0 && unlinkat(l.parent_fd, l.disk, want_dir ? AT_REMOVEDIR : 0) < 0)
                r = errno == ENOTEMPTY || errno == EEXIST ? -ENOTEMPTY : NEG_ERRNO();
        loc_done(&l);
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
        r = locate(s, share, src, n_src, &ls);
        if (r < 0) {
                /* A missing parent of the source is a missing source. */
                if (r == -ESRCH)
                        r = -ENOENT;
                goto out;
        }
        fd = loc_open(&ls, O_RDONLY);
        r = fd < 0 ? fd : entry_load(fd, ls.parent_id, true, &e);
        if (r >= 0)
                r = check_type(&e, is_dir);
        if (r >= 0 && !is_dir)
                r = lease_check(&e, args->source_lease_id);
        if (r >= 0 && fstat(fd, &st_src) < 0)
                r = NEG_ERRNO();
        if (r < 0)
                goto out;

        r = locate(s, share, dst, n_dst, &ld);
        if (r < 0)
                goto out;
        dfd = loc_open(&ld, O_RDONLY);
        if (dfd >= 0) {
                if (fstat(dfd, &st_dst) < 0) {
                        r = NEG_ERRNO();
                        goto out;
                }
                same = st_dst.st_ino == st_src.st_ino && st_dst.st_dev == st_src.st_dev;
                if (!same) {
                        r = entry_load(dfd, ld.parent_id, false, &d);
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
                        r = lease_check(&d, args->destination_lease_id);
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
        r = apply_smb(&e, &args->smb, now, true);
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
                r = meta_write(fd, XATTR_META, args->meta);
                if (r < 0)
                        goto out;
                strv_free(e.meta);
                e.meta = NULL;
                r = strv_copy(args->meta, &e.meta);
                if (r < 0)
                        goto out;
        }
        e.last_modified_ns = now;
        e.etag = emu_store_new_etag(s);
        r = props_write(fd, &e);
out:
        if (ls.share_fd >= 0)
                loc_done(&ls);
        if (ld.share_fd >= 0)
                loc_done(&ld);
        UNLOCK(s);
        emu_entry_clear(&d);
        if (r < 0) {
                emu_entry_clear(&e);
                return r;
        }
        *ret = e;
        return 0;
}

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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, O_RDWR);
        if (fd < 0)
                r = fd;
        else if (fstat(fd, &st) < 0)
                r = NEG_ERRNO();
        if (r >= 0) {
                m = stripe_of(s, &st);
                (void)pthread_mutex_lock(m);
                r = entry_load(fd, l.parent_id, false, &e);
                if (r >= 0)
                        r = check_type(&e, false);
                if (r >= 0)
                        r = lease_check(&e, lease_id);
                if (r >= 0 && (offset >= e.size || len > e.size - offset))
                        r = -ERANGE;
                (void)pthread_mutex_unlock(m);
        }
        loc_done(&l);
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
        r = props_read(fd, &e);
        if (r >= 0)
                r = ranges_read(fd, &rs);
        if (r >= 0)
                r = data ? ranges_add(&rs, offset, offset + len - 1)
                         : ranges_sub(&rs, offset, offset + len - 1);
        if (r >= 0)
                r = ranges_write(fd, &rs);
        if (r >= 0) {
                int64_t now = now_realtime_ns();
                e.last_write_ns = pick_time(last_write_ns, e.last_write_ns, now);
                e.change_ns = now;
                e.last_modified_ns = now;
                e.etag = emu_store_new_etag(s);
                r = props_write(fd, &e);
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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : entry_load(fd, l.parent_id, true, &e);
        loc_done(&l);
        UNLOCK(s);
        if (r >= 0)
                r = check_type(&e, false);
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
        (void)pthread_mutex_lock(stripe_of(s, &st));
        r = ranges_read(fd, &rs);
        (void)pthread_mutex_unlock(stripe_of(s, &st));
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
        r = locate(s, share, path, n, &l);
        if (r < 0) {
                UNLOCK(s);
                return r;
        }
        fd = loc_open(&l, O_RDONLY);
        r = fd < 0 ? fd : entry_load(fd, l.parent_id, false, &page.dir);
        if (r >= 0)
                r = check_type(&page.dir, true);
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
                        r = props_read(efd, &tmp);
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
                r = entry_load(efd, page.dir.id, false, &page.items[page.n_items]);
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
        loc_done(&l);
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
