/* SPDX-License-Identifier: MIT */
/* The emulator's entries on disk: names, properties in extended attributes, written ranges and
 * path resolution (see emu-store.c for the layout and the locking rules). */
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

/* ---- small helpers ------------------------------------------------------------------------ */

void store_strv_free(char **v) {
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

int store_strv_copy(char *const *v, char ***ret) {
        size_t n = strv_length(v);
        char **c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(v[i]);
                if (!c[i]) {
                        store_strv_free(c);
                        return -ENOMEM;
                }
        }
        *ret = c;
        return 0;
}

void store_content_clear(EmuContent *c) {
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
        store_content_clear(&e->content);
        store_strv_free(e->meta);
        *e = (EmuEntry){};
}

void emu_share_info_clear(EmuShareInfo *i) {
        if (!i)
                return;
        store_strv_free(i->meta);
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

pthread_mutex_t *store_stripe_of(EmuStore *s, const struct stat *st) {
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

int store_xattr_set(int fd, const char *name, const void *value, size_t size) {
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

int store_props_read(int fd, EmuEntry *e) {
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

int store_props_write(int fd, const EmuEntry *e) {
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
        return store_xattr_set(fd, XATTR_PROPS, buf, size);
}

int store_meta_read(int fd, const char *xname, EmuMeta *ret) {
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
                        store_strv_free(v);
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

int store_meta_write(int fd, const char *xname, char *const *meta) {
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
        return store_xattr_set(fd, xname, buf, size);
}

/* ---- written ranges ------------------------------------------------------------------------ */

int store_ranges_read(int fd, Ranges *ret) {
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

int store_ranges_write(int fd, const Ranges *rs) {
        uint64_t marker = RANGES_OVERFLOW;

        if (rs->overflow || rs->n > RANGES_MAX)
                return store_xattr_set(fd, XATTR_RANGES, &marker, sizeof(marker));
        if (rs->n == 0) {
                if (fremovexattr(fd, XATTR_RANGES) < 0 && errno != ENODATA)
                        return NEG_ERRNO();
                return 0;
        }
        return store_xattr_set(fd, XATTR_RANGES, rs->r, rs->n * sizeof(EmuRange));
}

/* Removes [start, end] from the list (may split one range into two). */
int store_ranges_sub(Ranges *rs, uint64_t start, uint64_t end) {
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
int store_ranges_add(Ranges *rs, uint64_t start, uint64_t end) {
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

void store_loc_done(Loc *l) {
        if (l->parent_fd != l->share_fd)
                (void)safe_close(l->parent_fd);
        (void)safe_close(l->share_fd);
        l->share_fd = l->parent_fd = -EBADF;
}

int store_open_share(EmuStore *s, const char *share) {
        int fd;

        if (emu_share_name_validate(share) < 0)
                return -ENOMEDIUM;
        fd = openat(s->shares_fd, share, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? -ENOMEDIUM : NEG_ERRNO();
        return fd;
}

int store_locate(EmuStore *s, const char *share, char *const *path, size_t n, Loc *ret) {
        Loc l = {.share_fd = -EBADF, .parent_fd = -EBADF};
        int r;

        r = store_open_share(s, share);
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
                r = store_props_read(l.parent_fd, &pe);
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
        store_loc_done(&l);
        return r;
}

/* Opens the entry at l. flags: O_RDONLY or O_RDWR. */
int store_loc_open(const Loc *l, int flags) {
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
int store_entry_load(int fd, uint64_t parent_id, bool with_meta, EmuEntry *ret) {
        EmuEntry e = {};
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return NEG_ERRNO();
        r = store_props_read(fd, &e);
        if (r >= 0 && with_meta)
                r = store_meta_read(fd, XATTR_META, &e.meta);
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

int store_check_type(const EmuEntry *e, bool want_dir) {
        if (want_dir && !e->is_dir)
                return -ENOTDIR;
        if (!want_dir && e->is_dir)
                return -EISDIR;
        return 0;
}

int store_lease_check(const EmuEntry *e, const char *lease_id) {
        if (e->lease_state == EMU_LEASE_LEASED) {
                if (!lease_id)
                        return -ENOLCK;
                if (strcasecmp(lease_id, e->lease_id) != 0)
                        return -EPERM;
                return 0;
        }
        return lease_id ? -ENOLINK : 0;
}

int64_t store_pick_time(int64_t want, int64_t current, int64_t now) {
        if (want == EMU_TIME_NOW)
                return now;
        if (want == EMU_TIME_PRESERVE)
                return current;
        return want;
}

int store_apply_smb(EmuEntry *e, const EmuSmbProps *smb, int64_t now, bool change_default_now) {
        if (smb->attributes_set) {
                uint32_t a = smb->attributes & ~(uint32_t)EMU_ATTR_DIRECTORY;
                if (e->is_dir)
                        a |= EMU_ATTR_DIRECTORY;
                else if (a == 0)
                        a = EMU_ATTR_ARCHIVE;
                e->attributes = a;
        }
        e->creation_ns = store_pick_time(smb->creation_ns, e->creation_ns, now);
        e->last_write_ns = store_pick_time(smb->last_write_ns, e->last_write_ns, now);
        if (smb->change_ns == EMU_TIME_PRESERVE && change_default_now)
                e->change_ns = now;
        else
                e->change_ns = store_pick_time(smb->change_ns, e->change_ns, now);
        if (smb->permission_key) {
                char *k = strdup(smb->permission_key);
                if (!k)
                        return -ENOMEM;
                free(e->permission_key);
                e->permission_key = k;
        }
        return 0;
}

int store_content_copy(const EmuContent *src, EmuContent *dst) {
        const char *from[] = {src->type,          src->encoding,    src->language,
                              src->cache_control, src->disposition, src->md5};
        char **to[] = {&dst->type,          &dst->encoding,    &dst->language,
                       &dst->cache_control, &dst->disposition, &dst->md5};
        int r;

        store_content_clear(dst);
        for (size_t i = 0; i < ELEMENTSOF(from); i++) {
                r = strdup_or_null(from[i], to[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}
