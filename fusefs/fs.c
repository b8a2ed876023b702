/* SPDX-License-Identifier: MIT */
#include "fs.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "fs-internal.h"
#include "fs-message-ids.h"
#include "http-client.h"
#include "imds-client.h"
#include "list.h"
#include "log.h"
#include "loop-queue.h"
#include "rest-names.h"
#include "time-util.h"

#define FS_NAME_MAX REST_NAME_MAX
#define FS_DIR_ENTRIES_MAX (4u * 1024u * 1024u)
#define FS_STATS_TTL_NS                                                                            \
        (120 * INT64_C(1000000000)) /* an idle mount polled by df: <= 1 request per minute */
#define FS_USER_CACHE_SIZE 64
#define FS_USER_CACHE_TTL_NS (30 * INT64_C(1000000000))

void fs_lock(Fs *fs) {
        (void)pthread_mutex_lock(&fs->lock);
}

void fs_unlock(Fs *fs) {
        (void)pthread_mutex_unlock(&fs->lock);
}

int64_t fs_now(void) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static int64_t realtime_ns(void) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

static void set_string(char **dst, const char *s) {
        char *c = s ? strdup(s) : NULL;
        free(*dst);
        *dst = c;
}

/* The share did not answer (or only with 5xx): what we know locally may stand in for it. */
static bool is_unreachable(const RestResult *r) {
        return r->error < 0 && r->error != -ECANCELED && (r->status == 0 || r->status >= 500);
}

static bool is_transport_error(const RestResult *r) {
        return r->status == 0 && r->error != 0 && r->error != -ECANCELED && r->error != -EINVAL &&
               r->error != -ENOMEM && r->error != -EAGAIN && r->error != -ENODATA;
}

void fs_note_result_locked(
        Fs *fs, const RestResult *r, const char *what, const char *path, int quiet_errno) {
        char status[32];
        fs->requests_total += r->attempts > 0 ? r->attempts : 1;
        if (r->request_id)
                set_string(&fs->last_request_id, r->request_id);
        if (r->error == 0) {
                if (fs->backend_down) {
                        fs->backend_down = false;
                        log_struct(
                                LOG_NOTICE, 0,
                                ((const char *[]){AZFILESFS_MESSAGE_BACKEND_REACHABLE, NULL}),
                                "Share %s/%s reachable again", fs->o->endpoint, fs->o->share);
                }
                return;
        }
        fs->requests_failed++;
        /* What POSIX callers expect to see (a name that exists or not, a directory not empty)
         * is an answer, not a failure worth a warning. */
        if (r->error == quiet_errno || r->error == -ECANCELED || r->error == -ENOENT ||
            r->error == -EEXIST || r->error == -ENOTEMPTY || r->error == -ENOTDIR ||
            r->error == -EISDIR || r->error == -ENAMETOOLONG)
                return;
        {
                _cleanup_free_ char *msg = NULL;
                if (asprintf(
                            &msg, "%s %s: %s%s%s (HTTP %ld)", what, path, strerror(-r->error),
                            r->error_code ? ", " : "", r->error_code ? r->error_code : "",
                            r->status) < 0)
                        msg = NULL;
                set_string(&fs->last_error, msg);
                set_string(&fs->last_error_path, path);
        }
        if (is_transport_error(r) && !fs->backend_down) {
                fs->backend_down = true;
                log_struct(
                        LOG_ERR, r->error,
                        ((const char *[]){AZFILESFS_MESSAGE_BACKEND_UNREACHABLE, NULL}),
                        "Share %s/%s unreachable (%s of /%s): %m", fs->o->endpoint, fs->o->share,
                        what, path);
        }
        (void)snprintf(status, sizeof(status), "AZFILESFS_HTTP_STATUS=%ld", r->status);
        {
                _cleanup_free_ char *fpath = NULL, *freq = NULL;
                if (asprintf(&fpath, "AZFILESFS_PATH=/%s", path) < 0)
                        fpath = NULL;
                if (asprintf(
                            &freq, "AZFILESFS_REQUEST_ID=%s", r->request_id ? r->request_id : "-") <
                    0)
                        freq = NULL;
                log_struct(
                        LOG_WARNING, r->error,
                        ((const char *[]){
                                status, fpath ? fpath : "AZFILESFS_PATH=?",
                                freq ? freq : "AZFILESFS_REQUEST_ID=?", NULL}),
                        "%s of /%s failed after %u attempt(s): %m (HTTP %ld%s%s, request id %s)",
                        what, path, r->attempts, r->status, r->error_code ? " " : "",
                        r->error_code ? r->error_code : "", r->request_id ? r->request_id : "-");
        }
}

int fs_post(Fs *fs, void (*fn)(void *userdata, bool cancelled), void *userdata) {
        return loop_queue_post(fs->queue, fn, userdata);
}

/* ---- ownership ---- */

typedef struct UserEntry {
        char name[64];
        bool exists;
        uid_t uid;
        gid_t gid;
        int64_t until_ns;
} UserEntry;

static UserEntry user_cache[FS_USER_CACHE_SIZE]; /* protected by Fs.lock */

static const UserEntry *user_lookup_locked(const char *name, size_t len) {
        int64_t now = fs_now();
        UserEntry *slot = &user_cache[0];
        struct passwd pw, *res = NULL;
        char buf[4096];

        if (len == 0 || len >= sizeof(slot->name))
                return NULL;
        for (size_t k = 0; k < ELEMENTSOF(user_cache); k++) {
                UserEntry *e = &user_cache[k];
                if (e->until_ns > now && strlen(e->name) == len && strncmp(e->name, name, len) == 0)
                        return e->exists ? e : NULL;
                if (e->until_ns < slot->until_ns)
                        slot = e;
        }
        memcpy(slot->name, name, len);
        slot->name[len] = '\0';
        slot->until_ns = now + FS_USER_CACHE_TTL_NS;
        slot->exists = getpwnam_r(slot->name, &pw, buf, sizeof(buf), &res) == 0 && res;
        if (slot->exists) {
                slot->uid = pw.pw_uid;
                slot->gid = pw.pw_gid;
        }
        return slot->exists ? slot : NULL;
}

/* Owner and permission mask of a share path: <root>/<users_dir>/<name>/... belongs to <name>. */
static void owner_of_locked(Fs *fs, const char *path, uid_t *uid, gid_t *gid, mode_t *mask) {
        const char *rel = path;
        size_t ul;

        *uid = fs->o->uid;
        *gid = fs->o->gid;
        *mask = FS_PERM_BITS;
        if (!isempty(fs->o->subdir)) {
                rel = fs_path_after_prefix(path, fs->o->subdir, false);
                if (!rel)
                        return;
                rel++; /* the '/' */
        }
        if (isempty(fs->o->users_dir) ||
            !(rel = fs_path_after_prefix(rel, fs->o->users_dir, false)))
                return;
        rel++;
        ul = strcspn(rel, "/");
        const UserEntry *u = user_lookup_locked(rel, ul);
        if (!u)
                return;
        *uid = u->uid;
        *gid = u->gid;
        *mask = fs->o->users_mode | S_ISVTX;
}

/* Times before 1970 too: tv_nsec is never negative. */
static struct timespec timespec_of_ns(int64_t ns) {
        int64_t sec = ns / NSEC_PER_SEC, nsec = ns % NSEC_PER_SEC;

        if (nsec < 0) {
                nsec += NSEC_PER_SEC;
                sec--;
        }
        return (struct timespec){.tv_sec = (time_t)sec, .tv_nsec = (long)nsec};
}

void fs_fill_stat_locked(Fs *fs, const Inode *i, struct stat *st) {
        uid_t uid;
        gid_t gid;
        mode_t mask;

        *st = (struct stat){};
        owner_of_locked(fs, i->path, &uid, &gid, &mask);
        st->st_ino = i->ino;
        st->st_mode = (i->is_dir ? S_IFDIR : S_IFREG) | (i->perm & mask);
        st->st_nlink = i->is_dir ? 2 : 1;
        st->st_uid = uid;
        st->st_gid = gid;
        st->st_size = i->is_dir ? 4096 : (off_t)i->size;
        st->st_blksize = 4096;
        st->st_blocks = (st->st_size + 511) / 512;
        st->st_mtim = timespec_of_ns(i->mtime_ns);
        st->st_atim = st->st_mtim;
        st->st_ctim = timespec_of_ns(i->ctime_ns);
}

bool fs_inode_is_authoritative(const Inode *i) {
        return i->cache_fd >= 0 && (i->open_count > 0 || fs_inode_is_dirty(i) || i->uploading);
}

static mode_t perm_from_props(Fs *fs, const RestProperties *p, bool is_dir) {
        const char *m = rest_properties_metadata(p, "mode");
        char *end;
        unsigned long v;

        if (m) {
                errno = 0;
                v = strtoul(m, &end, 8);
                if (errno == 0 && *end == '\0' && end != m && v <= 07777)
                        return (mode_t)v & FS_PERM_BITS;
        }
        return is_dir ? fs->o->dir_mode : fs->o->file_mode;
}

static void apply_props_force_locked(Fs *fs, Inode *i, const RestProperties *p);

/* A listing carries no metadata, so a file whose stored mode differs from file_mode also carries
 * the NotContentIndexed attribute (a search-indexing hint with no effect on data): files without
 * it show file_mode straight from a listing; files with it ask the share for their mode once. */
#define MODE_HINT_ATTRIBUTE REST_ATTR_NOT_CONTENT_INDEXED

bool fs_mode_needs_hint(Fs *fs, mode_t mode) {
        return (mode & 07777) != (fs->o->file_mode & 07777);
}

/* The attributes to set so that the hint matches mode; 0 when they already do. */
static uint32_t hint_attributes(Fs *fs, const Inode *i, mode_t mode) {
        uint32_t cur = i->has_attributes ? i->attributes : REST_ATTR_ARCHIVE, want;
        bool has = cur & MODE_HINT_ATTRIBUTE;

        if (i->is_dir || has == fs_mode_needs_hint(fs, mode))
                return 0;
        want = has ? cur & ~(uint32_t)MODE_HINT_ATTRIBUTE
                   : (cur & ~(uint32_t)REST_ATTR_NONE) | MODE_HINT_ATTRIBUTE;
        return want ? want : REST_ATTR_NONE;
}

static void apply_props_locked(Fs *fs, Inode *i, const RestProperties *p) {
        if (!fs_inode_is_authoritative(i))
                apply_props_force_locked(fs, i, p);
}

static void apply_props_force_locked(Fs *fs, Inode *i, const RestProperties *p) {
        i->is_dir = p->is_directory || i->is_dir;
        if (!i->is_dir && p->has_content_length) {
                i->size = p->content_length;
                fs_charge_locked(fs, i);
        }
        i->mtime_ns = p->last_write_ns ? p->last_write_ns : p->last_modified_ns;
        i->ctime_ns = p->change_ns ? p->change_ns : i->mtime_ns;
        i->btime_ns = p->creation_ns;
        i->perm = perm_from_props(fs, p, i->is_dir);
        i->perm_known = true;
        i->has_attributes = p->has_attributes;
        i->attributes = p->attributes;
        (void)snprintf(i->etag, sizeof(i->etag), "%s", p->etag);
        i->attr_until_ns = fs_now() + (int64_t)(fs->o->attr_timeout * 1e9);
        i->entry_until_ns =
                fs_now() + (int64_t)((i->is_dir ? fs->o->dir_timeout : fs->o->entry_timeout) * 1e9);
}

static void apply_list_entry_locked(Fs *fs, Inode *i, const RestListEntry *e) {
        if (fs_inode_is_authoritative(i))
                return;
        if (i->is_dir != e->is_directory)
                i->perm = e->is_directory ? fs->o->dir_mode : fs->o->file_mode;
        i->is_dir = e->is_directory;
        if (!i->is_dir && e->has_content_length) {
                i->size = e->content_length;
                fs_charge_locked(fs, i);
        }
        if (e->last_write_ns || e->last_modified_ns)
                i->mtime_ns = e->last_write_ns ? e->last_write_ns : e->last_modified_ns;
        i->ctime_ns = e->change_ns ? e->change_ns : i->mtime_ns;
        i->btime_ns = e->creation_ns;
        if (e->etag)
                (void)snprintf(i->etag, sizeof(i->etag), "%s", e->etag);
        if (e->has_attributes) {
                i->has_attributes = true;
                i->attributes = e->attributes;
                /* A file without the hint has the default mode (see MODE_HINT_ATTRIBUTE). */
                if (!i->is_dir && !i->perm_known && !(e->attributes & MODE_HINT_ATTRIBUTE)) {
                        i->perm = fs->o->file_mode;
                        i->perm_known = true;
                } else if (
                        !i->is_dir && (e->attributes & MODE_HINT_ATTRIBUTE) &&
                        !fs_mode_needs_hint(fs, i->perm))
                        i->perm_known = false; /* changed elsewhere: ask */
        }
        i->attr_until_ns = fs_now() + (int64_t)(fs->o->attr_timeout * 1e9);
        i->entry_until_ns =
                fs_now() + (int64_t)((i->is_dir ? fs->o->dir_timeout : fs->o->entry_timeout) * 1e9);
}

static Inode *get_inode_locked(Fs *fs, fuse_ino_t ino) {
        return inode_table_get(fs->inodes, ino);
}

void fs_inode_maybe_free_locked(Fs *fs, Inode *i) {
        if (i->nlookup > 0 || i->refs > 0 || i->ino == FS_ROOT_INO || i->uploading ||
            i->upload_queued || i->create_waiters || fs_inode_is_dirty(i))
                return;
        if (i->cache_fd >= 0)
                fs_cache_drop_locked(fs, i);
        inode_table_remove(fs->inodes, i);
        inode_free(i);
}

void fs_inode_unref_locked(Fs *fs, Inode *i) {
        assert(i->refs > 0);
        i->refs--;
        fs_inode_maybe_free_locked(fs, i);
}

/* The inode for path, made when missing. A different kind at the same path replaces it, unless
 * it is a file this mount holds the truth of (open, or with unsynced data): that one stands (its
 * upload meets the share's entry and fails, keeping the data), and is returned. */
static int inode_for_path_locked(Fs *fs, const char *path, bool is_dir, Inode **ret) {
        Inode *i = inode_table_find(fs->inodes, path);
        int r;

        if (i && i->is_dir != is_dir && i->ino != FS_ROOT_INO && !fs_inode_is_authoritative(i)) {
                inode_table_detach(fs->inodes, i);
                i = NULL;
        }
        if (!i) {
                r = inode_table_add(fs->inodes, path, is_dir, &i);
                if (r < 0)
                        return r;
                i->perm = is_dir ? fs->o->dir_mode : fs->o->file_mode;
        }
        *ret = i;
        return 0;
}

/* The kernel caches no names of files (timeout 0): names are case-insensitive, and a cached
 * dentry of one spelling would outlive a change made through another. Lookups and getattr are
 * answered from the inode table while entry_until_ns / attr_until_ns hold (entry_timeout,
 * dir_timeout, attr_timeout), without a request to the share. Directories' attributes are only
 * their mode and owner (times are not stored), which the kernel may keep for attr_timeout, and
 * their names for dir_timeout, as this table does: path walks then cost no lookup and no getattr
 * (permission check) per component. A directory looked up under another spelling moves the
 * kernel's one dentry of it (directories have no aliases). Files' attributes: a file open or
 * dirty here is what this mount says (the share's copy does not count until it is uploaded), so
 * the kernel keeps them for attr_timeout (tar x: no GETATTR per file); any other file for what is
 * left of the table's attr_timeout, so that a change made on another VM is seen by stat() no
 * later than before. open() drops the kernel's copy when it asks the share (close-to-open),
 * a rename that changes the owner too. */
static double kernel_attr_timeout(Fs *fs, const Inode *i) {
        int64_t left;

        /* A mode known only from a listing is the default: asked for at the next getattr. */
        if (i->is_dir)
                return i->perm_known || i->ino == FS_ROOT_INO ? fs->o->attr_timeout : 0;
        if (!i->perm_known || i->unlinked)
                return 0;
        if (fs_inode_is_authoritative(i))
                return fs->o->attr_timeout;
        left = i->attr_until_ns - fs_now();
        return left > 0 ? MIN((double)left / 1e9, fs->o->attr_timeout) : 0;
}

static void fill_entry_locked(Fs *fs, Inode *i, struct fuse_entry_param *e) {
        *e = (struct fuse_entry_param){
                .ino = i->ino,
                .generation = 1,
                .attr_timeout = kernel_attr_timeout(fs, i),
                .entry_timeout = i->is_dir ? fs->o->dir_timeout : 0,
        };
        fs_fill_stat_locked(fs, i, &e->attr);
        i->nlookup++;
}

static int child_path_locked(Fs *fs, fuse_ino_t parent, const char *name, char **ret) {
        Inode *p = get_inode_locked(fs, parent);
        int r;

        if (!p)
                return -ESTALE;
        if (!p->is_dir)
                return -ENOTDIR;
        /* Checked here, not left to the share: a file made in the cache under a name the share
         * refuses could never be uploaded, and one it rewrites ("foo.") would land on another. */
        r = rest_name_check(name);
        if (r < 0)
                return r;
        if (strlen(p->path) + 1 + strlen(name) > REST_PATH_MAX)
                return -ENAMETOOLONG;
        return fs_path_join(p->path, name, ret);
}

/* ---- the name sets of directories (Inode.names) ---- */

/* The parent directory's inode of path and the last component; NULL when not in the table. */
static Inode *parent_of_locked(Fs *fs, const char *path, const char **ret_name) {
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *dir = NULL;
        Inode *p;

        *ret_name = slash ? slash + 1 : path;
        dir = strndup(path, slash ? (size_t)(slash - path) : 0);
        if (!dir)
                return NULL;
        p = inode_table_find(fs->inodes, dir);
        return p && p->is_dir ? p : NULL;
}

/* The share folds the case of non-ASCII letters by a table of its own, which rest_name_casecmp()
 * may not match for a few letters: a name with such bytes that is not in a set is asked for. */
static bool name_is_ascii(const char *name) {
        for (const char *p = name; *p; p++)
                if ((unsigned char)*p >= 0x80)
                        return false;
        return true;
}

/* Records that path exists (or not) on the share, or will once uploaded, in its parent's set. */
static void names_note_locked(Fs *fs, const char *path, bool exists) {
        const char *name;
        Inode *p = parent_of_locked(fs, path, &name);

        if (!p)
                return;
        if (exists)
                inode_names_add(p, name);
        else
                inode_names_remove(p, name);
}

void fs_confirm_parents_locked(Fs *fs, const char *path) {
        _cleanup_free_ char *p = strdup(path);
        int64_t until = fs_now() + (int64_t)(fs->o->dir_timeout * 1e9);
        char *slash;

        while (p && (slash = strrchr(p, '/'))) {
                Inode *d;
                *slash = '\0';
                d = inode_table_find(fs->inodes, p);
                if (d && d->is_dir && !d->unlinked)
                        d->entry_until_ns = MAX(d->entry_until_ns, until);
        }
}

/* Starts (or renews) a complete set for d: the names of a listing are added by the caller,
 * then those of children created here and not on the share yet, which no listing shows. A set
 * still complete keeps its names: a name it holds that is gone only costs a request, while one
 * added here during the listing and missing from it would be a wrong ENOENT. Trusted for
 * dir_timeout. */
static void names_reset_locked(Fs *fs, Inode *d) {
        if (!d->names_complete) {
                inode_names_clear(d);
                d->names_complete = true;
        }
        d->names_until_ns = fs_now() + (int64_t)(fs->o->dir_timeout * 1e9);
}

static void names_add_pending_locked(Fs *fs, Inode *d) {
        for (Inode *x = fs->state_list; x && d->names_complete; x = x->state_next) {
                const char *name;
                if (x->create_pending && !x->unlinked && parent_of_locked(fs, x->path, &name) == d)
                        inode_names_add(d, name);
        }
}

/* Whether a lookup of name in d can be answered ENOENT without asking the share: 1 yes, 0 no,
 * -ESTALE when d's set is complete but too old (a listing renews it). */
static int names_absent_locked(Fs *fs, Inode *d, const char *name) {
        if (!d->names_complete || !name_is_ascii(name) || inode_names_has(d, name))
                return 0;
        return d->names_until_ns > fs_now() ? 1 : -ESTALE;
}

/* ---- generic call context ---- */

typedef struct FsMove FsMove;

typedef struct Call {
        Fs *fs;
        fuse_req_t req;
        uint64_t ino;
        uint64_t ino2;    /* a rename queued by op_retry_queue_locked(): newparent */
        uint64_t intent;  /* its intent in the records (intents_begin_locked), 0 for none */
        uint64_t held[2]; /* a rename on its way to the share: its source and destination; an
                           * unlink: its file (their uploads held off, fs_rename_hold_locked), 0
                           * for none */
        FsMove *move;     /* a rename or delete on its way to the share: its paths (Fs.moves) */
        char *path;
        char *path2;
        int step;
        int flags;
        bool is_dir;
        struct stat attr;
        int to_set;
        mode_t mode;
        struct fuse_file_info fi; /* a create waiting for a rename (child_call_new) */
        /* chmod: what its Set Metadata sends, the entry's other metadata (read first: Set
         * Metadata replaces all of it) and the new mode */
        RestMetadata *meta;
        size_t n_meta;
        bool meta_read;
} Call;

static Call *call_new(Fs *fs, fuse_req_t req, uint64_t ino, char *path) {
        Call *c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->fs = fs;
        c->req = req;
        c->ino = ino;
        c->path = path;
        return c;
}

static void call_free(Call *c) {
        if (!c)
                return;
        rest_metadata_free(c->meta, c->n_meta);
        free(c->path);
        free(c->path2);
        free(c);
}

static void submit_or_fail(Call *c, const RestOp *op, RestDoneFn cb) {
        int r = rest_client_submit(c->fs->rest, op, cb, c, NULL);
        if (r < 0) {
                fuse_reply_err(c->req, r == -EAGAIN ? EAGAIN : -r);
                call_free(c);
        }
}

/* Queues a rename, unlink or rmdir (fn) on list (an Inode.create_waiters, an FsMove.waiters)
 * with its FUSE arguments, copied into a Call (the kernel's die when the op returns): ino, path:
 * parent, name; ino2, path2: newparent, newname; flags. -ENOMEM. */
static int op_retry_queue_locked(
        Fs *fs,
        FsRetry **list,
        void (*fn)(void *userdata),
        fuse_req_t req,
        fuse_ino_t parent,
        const char *name,
        fuse_ino_t newparent,
        const char *newname,
        unsigned flags) {
        char *n = strdup(name);
        Call *c = n ? call_new(fs, req, parent, n) : NULL;
        int r = -ENOMEM;

        if (!c) {
                free(n);
                return -ENOMEM;
        }
        c->ino2 = newparent;
        c->flags = (int)flags;
        c->path2 = newname ? strdup(newname) : NULL;
        if (!newname || c->path2)
                r = fs_retry_append(list, fn, c);
        if (r < 0)
                call_free(c);
        return r;
}

/* ---- renames and deletes on their way to the share ---- */

/* A rename or Delete File or Directory sent to the share (Fs.moves). A rename, unlink or rmdir
 * whose paths overlap its own (one is the other, or below it) waits for its answer (waiters):
 * the paths it would send are those the first may change, and the inode it looks up when
 * answered may have moved meanwhile (an unlink of d/f answered after a rename of d to e: e/f
 * stayed, and came back on the share with its unsynced data; sent after that rename: "gone",
 * and e/f stayed on the share). So no file is concerned by two requests at once either: one
 * intent per file in its record (intents_begin_locked). */
struct FsMove {
        FsMove *next, *prev;
        char *from, *to; /* to: NULL for a delete */
        FsRetry *waiters;
};

static bool paths_overlap(const char *a, const char *b) {
        return a && b && (fs_path_has_prefix(a, b, true) || fs_path_has_prefix(b, a, true));
}

/* The request in flight whose paths overlap from or to (NULL: none), NULL when there is none.
 * Lock held. */
static FsMove *move_overlapping_locked(Fs *fs, const char *from, const char *to) {
        for (FsMove *m = fs->moves; m; m = m->next)
                if (paths_overlap(m->from, from) || paths_overlap(m->from, to) ||
                    paths_overlap(m->to, from) || paths_overlap(m->to, to))
                        return m;
        return NULL;
}

/* A rename of from to to (NULL: a delete of from) goes to the share; NULL on ENOMEM. Lock
 * held. */
static FsMove *move_begin_locked(Fs *fs, const char *from, const char *to) {
        FsMove *m = calloc(1, sizeof(*m));

        if (!m)
                return NULL;
        m->from = strdup(from);
        m->to = to ? strdup(to) : NULL;
        if (!m->from || (to && !m->to)) {
                free(m->from);
                free(m->to);
                free(m);
                return NULL;
        }
        LIST_PREPEND(fs->moves, m, next, prev);
        return m;
}

/* m (NULL-safe) was answered or failed: the requests that waited for it, to run with
 * fs_create_waiters_run() once it is answered and the lock dropped. Lock held. */
static FsRetry *move_end_locked(Fs *fs, FsMove *m) {
        FsRetry *waiters;

        if (!m)
                return NULL;
        LIST_REMOVE(fs->moves, m, next, prev);
        waiters = m->waiters;
        free(m->from);
        free(m->to);
        free(m);
        return waiters;
}

/* The rename in flight that moves path or a directory above it (a delete: removes it), NULL
 * when there is none. A lookup, create or mkdir of such a path waits for its answer: sent now,
 * it would ask for or make the old path, which the share may have renamed already, and the
 * answer, when it comes, moves what it made to the new path. A lookup of d/h during a rename of d
 * to e got ENOENT, an O_CREAT open of d/h then made a new file here, and its upload replaced e/h
 * on the share. Lock held. */
static FsMove *move_containing_locked(Fs *fs, const char *path) {
        for (FsMove *m = fs->moves; m; m = m->next)
                if (fs_path_has_prefix(path, m->from, true) ||
                    (m->to && fs_path_has_prefix(path, m->to, true)))
                        return m;
        return NULL;
}

/* ---- init/destroy ---- */

static void fs_op_init(void *userdata, struct fuse_conn_info *conn) {
        Fs *fs = userdata;
        if (conn->capable & FUSE_CAP_READDIRPLUS)
                conn->want |= FUSE_CAP_READDIRPLUS;
        conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
        conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
        conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
        /* Close-to-open is decided at open (keep_cache); an open file keeps what it read. With
         * auto_inval_data the kernel would ask getattr before every read() of a cached page. */
        conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
        /* A read is answered from the cache file (fuse_reply_data with the fd): with splice the
         * kernel copies the cache file's pages straight into the request; without, libfuse
         * allocates a buffer per read (mmap, page faults, munmap with a TLB shootdown), copies
         * the data in with pread and out with writev (BENCHMARKS.md, azfilesfs cold read). */
        if (conn->capable & FUSE_CAP_SPLICE_WRITE)
                conn->want |= FUSE_CAP_SPLICE_WRITE;
        /* A write's data is spliced from the kernel into a pipe (no copy) and from the pipe into
         * the cache file (fs_op_write_buf). libfuse needs a pipe as large as a request with its
         * header: 1 MiB of data would need 1 MiB + 4 KiB, above /proc/sys/fs/pipe-max-size
         * (1 MiB) for a process without CAP_SYS_RESOURCE, and libfuse would copy instead. */
        if (conn->capable & FUSE_CAP_SPLICE_READ)
                conn->want |= FUSE_CAP_SPLICE_READ;
        conn->max_write = 1024 * 1024 - 4096;
        conn->max_readahead = 1024 * 1024;
        (void)fs;
}

/* ---- lookup ---- */

static void lookup_dir_done(RestResult *r, void *userdata);

/* Answers a call with its entry, or with err when negative, and frees it. */
static void reply_entry_or_err(Call *c, int err, const struct fuse_entry_param *e) {
        if (err < 0)
                fuse_reply_err(c->req, -err);
        else
                fuse_reply_entry(c->req, e);
        call_free(c);
}

static void reply_entry_from(Call *c, const RestResult *r, bool is_dir) {
        Fs *fs = c->fs;
        struct fuse_entry_param e;
        Inode *i;
        int k;

        fs_lock(fs);
        k = inode_for_path_locked(fs, c->path, is_dir, &i);
        if (k >= 0) {
                apply_props_locked(fs, i, r->props);
                fill_entry_locked(fs, i, &e);
                names_note_locked(fs, c->path, true);
        }
        fs_unlock(fs);
        reply_entry_or_err(c, k, &e);
}

static void reply_negative(Call *c) {
        struct fuse_entry_param e = {.ino = 0, .entry_timeout = 0};
        Fs *fs = c->fs;
        Inode *i;

        fs_lock(fs);
        i = inode_table_find(fs->inodes, c->path);
        if (i && !fs_inode_is_authoritative(i))
                inode_table_detach(fs->inodes, i);
        if (!i || !fs_inode_is_authoritative(i))
                names_note_locked(fs, c->path, false);
        fs_unlock(fs);
        fuse_reply_entry(c->req, &e);
        call_free(c);
}

/* Share unreachable: a name we know stands; others fail with the error. */
static void reply_known_or_fail(Call *c, int error) {
        Fs *fs = c->fs;
        struct fuse_entry_param e;
        Inode *i;

        fs_lock(fs);
        i = inode_table_find(fs->inodes, c->path);
        if (i)
                fill_entry_locked(fs, i, &e);
        fs_unlock(fs);
        reply_entry_or_err(c, i ? 0 : error, &e);
}

/* Call.step of a lookup that asks the share: what it asked first. When that is not there, the
 * other kind is asked: a name known as a directory may be a file now (made so on another VM),
 * and answered ENOENT it would stay missing from the renewed name set for dir_timeout, a create
 * through it then replacing the other VM's file. */
enum { LOOKUP_FILE_FIRST, LOOKUP_DIR_FIRST, LOOKUP_FILE_LAST };

static void lookup_file_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        RestOp op = {.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = c->path};

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get File Properties", c->path, -ENOENT);
        fs_unlock(fs);
        if (r->error == 0 && !r->props->is_directory)
                return reply_entry_from(c, r, false);
        if (is_unreachable(r))
                return reply_known_or_fail(c, r->error);
        if (r->error != 0 && r->error != -ENOENT && r->error != -EISDIR && r->error != -ENOTDIR) {
                fuse_reply_err(c->req, -r->error);
                return call_free(c);
        }
        if (c->step == LOOKUP_FILE_LAST)
                return reply_negative(c); /* the directory was asked first: neither */
        submit_or_fail(c, &op, lookup_dir_done);
}

static void lookup_dir_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get Directory Properties", c->path, -ENOENT);
        fs_unlock(fs);
        if (r->error == 0)
                return reply_entry_from(c, r, true);
        if (is_unreachable(r))
                return reply_known_or_fail(c, r->error);
        if ((r->error == -ENOENT || r->error == -ENOTDIR) && c->step == LOOKUP_DIR_FIRST) {
                RestOp op = {.type = REST_OP_GET_FILE_PROPERTIES, .path = c->path};
                c->step = LOOKUP_FILE_LAST;
                return submit_or_fail(c, &op, lookup_file_done);
        }
        if (r->error == -ENOENT || r->error == -ENOTDIR)
                return reply_negative(c);
        fuse_reply_err(c->req, -r->error);
        call_free(c);
}

static void lookup_ask_share(Call *c, bool known_dir) {
        RestOp op = {
                .type = known_dir ? REST_OP_GET_DIRECTORY_PROPERTIES : REST_OP_GET_FILE_PROPERTIES,
                .path = c->path};
        c->step = known_dir ? LOOKUP_DIR_FIRST : LOOKUP_FILE_FIRST;
        submit_or_fail(c, &op, known_dir ? lookup_dir_done : lookup_file_done);
}

/* A listing of the parent (c->path2) renewed for a lookup of c->path: the name is answered
 * from the renewed set, or asked for when it is in it. */
static void lookup_list_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        RestListPage *page = r->page;
        const char *name;
        Inode *d;
        int absent = 0;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "List Directory", c->path2, 0);
        d = get_inode_locked(fs, c->ino);
        if (d && d->is_dir && streq(d->path, c->path2)) {
                if (r->error == 0 && page && !page->next_marker &&
                    page->n_entries <= FS_DIR_NAMES_MAX) {
                        names_reset_locked(fs, d);
                        for (size_t k = 0; k < page->n_entries; k++)
                                inode_names_add(d, page->entries[k].name);
                        names_add_pending_locked(fs, d);
                        name = strrchr(c->path, '/');
                        name = name ? name + 1 : c->path;
                        absent = names_absent_locked(fs, d, name) > 0 &&
                                 !inode_table_find(fs->inodes, c->path);
                } else if (r->error == 0)
                        inode_names_clear(d); /* too large to keep */
        }
        fs_unlock(fs);
        if (absent)
                return reply_negative(c);
        lookup_ask_share(c, false);
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);

static void lookup_retry(void *userdata) {
        Call *c = userdata;
        fs_op_lookup(c->req, c->ino, c->path);
        call_free(c);
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
        Fs *fs = fs_of(req);
        _cleanup_free_ char *path = NULL, *dir_path = NULL;
        struct fuse_entry_param e;
        bool known_dir = false, known = false;
        int absent = 0;
        FsMove *move;
        Inode *i, *p;
        Call *c;
        int r;

        fs_lock(fs);
        r = child_path_locked(fs, parent, name, &path);
        if (r >= 0 && (i = inode_table_find(fs->inodes, path))) {
                if (fs_inode_is_authoritative(i) || i->entry_until_ns > fs_now()) {
                        fill_entry_locked(fs, i, &e);
                        fs_unlock(fs);
                        fuse_reply_entry(req, &e);
                        return;
                }
                known_dir = i->is_dir;
                known = true;
        }
        if (r >= 0 && (move = move_containing_locked(fs, path))) {
                /* Again once that rename is answered, with the path it leaves. */
                r = op_retry_queue_locked(
                        fs, &move->waiters, lookup_retry, req, parent, name, 0, NULL, 0);
                fs_unlock(fs);
                if (r < 0)
                        fuse_reply_err(req, -r);
                return;
        }
        /* A name missing from a directory this mount created or listed within dir_timeout. */
        if (r >= 0 && !known && (p = get_inode_locked(fs, parent))) {
                absent = names_absent_locked(fs, p, name);
                if (absent == -ESTALE && !(dir_path = strdup(p->path)))
                        absent = 0;
        }
        fs_unlock(fs);
        if (r < 0) {
                fuse_reply_err(req, -r);
                return;
        }
        if (absent > 0) {
                e = (struct fuse_entry_param){.ino = 0, .entry_timeout = 0};
                fuse_reply_entry(req, &e);
                return;
        }
        c = call_new(fs, req, parent, TAKE_PTR(path));
        if (!c) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        if (absent == -ESTALE) {
                /* One listing renews the set for every lookup in the next dir_timeout. */
                c->path2 = TAKE_PTR(dir_path);
                RestOp op = {
                        .type = REST_OP_LIST_DIRECTORY,
                        .path = c->path2,
                        .max_results = FS_DIR_NAMES_MAX};
                return submit_or_fail(c, &op, lookup_list_done);
        }
        lookup_ask_share(c, known_dir);
}

static void fs_op_forget_one(Fs *fs, fuse_ino_t ino, uint64_t n) {
        Inode *i = get_inode_locked(fs, ino);
        if (!i)
                return;
        assert(i->nlookup >= n);
        i->nlookup -= n;
        fs_inode_maybe_free_locked(fs, i);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
        Fs *fs = fs_of(req);
        fs_lock(fs);
        fs_op_forget_one(fs, ino, nlookup);
        fs_unlock(fs);
        fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
        Fs *fs = fs_of(req);
        fs_lock(fs);
        for (size_t k = 0; k < count; k++)
                fs_op_forget_one(fs, forgets[k].ino, forgets[k].nlookup);
        fs_unlock(fs);
        fuse_reply_none(req);
}

/* ---- getattr ---- */

static void getattr_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        struct stat st;
        double timeout = 0;
        Inode *i;
        int err = r->error;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get Properties", c->path, -ENOENT);
        i = get_inode_locked(fs, c->ino);
        if (!i)
                err = -ESTALE;
        else if (err == 0) {
                apply_props_locked(fs, i, r->props);
                fs_fill_stat_locked(fs, i, &st);
                timeout = kernel_attr_timeout(fs, i);
        } else if (is_unreachable(r)) {
                err = 0; /* the last known attributes */
                fs_fill_stat_locked(fs, i, &st);
        } else if (err == -ENOENT && !fs_inode_is_authoritative(i))
                inode_table_detach(fs->inodes, i);
        fs_unlock(fs);
        if (err < 0)
                fuse_reply_err(c->req, -err);
        else
                fuse_reply_attr(c->req, &st, timeout);
        call_free(c);
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        struct stat st;
        Inode *i;
        Call *c;
        char *path;
        bool is_dir;

        fs_lock(fs);
        i = get_inode_locked(fs, ino);
        if (!i) {
                fs_unlock(fs);
                fuse_reply_err(req, ESTALE);
                return;
        }
        /* A listing does not carry the mode (x-ms-meta-mode): an inode known from one alone
         * asks the share once. */
        if (i->ino == FS_ROOT_INO || i->unlinked || fs_inode_is_authoritative(i) ||
            (i->attr_until_ns > fs_now() && i->perm_known)) {
                double timeout = kernel_attr_timeout(fs, i);
                fs_fill_stat_locked(fs, i, &st);
                fs_unlock(fs);
                fuse_reply_attr(req, &st, timeout);
                return;
        }
        path = strdup(i->path);
        is_dir = i->is_dir;
        fs_unlock(fs);
        c = path ? call_new(fs, req, ino, path) : NULL;
        if (!c) {
                free(path);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        RestOp op = {
                .type = is_dir ? REST_OP_GET_DIRECTORY_PROPERTIES : REST_OP_GET_FILE_PROPERTIES,
                .path = c->path};
        submit_or_fail(c, &op, getattr_done);
}

/* ---- setattr: size, then mode, then times; each a call, the reply after the last ---- */

enum {
        SETATTR_STEP_SIZE,
        SETATTR_STEP_MODE,
        SETATTR_STEP_HINT,
        SETATTR_STEP_TIMES,
        SETATTR_STEP_DONE,
};

static void setattr_next(Call *c);

static void setattr_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        int err = r->error;
        Inode *i;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Set Properties", c->path, 0);
        i = get_inode_locked(fs, c->ino);
        if (err == 0 && i) {
                uint64_t size = (uint64_t)c->attr.st_size;

                if (c->step == SETATTR_STEP_SIZE && !fs_inode_is_authoritative(i)) {
                        i->size = size;
                        if (i->cache_fd >= 0)
                                fs_cache_reset_locked(fs, i, i->size, r->props->etag);
                } else if (c->step == SETATTR_STEP_SIZE) {
                        /* Opened while the Set File Properties was on its way: the open's Get
                         * File Properties was answered first, with the old size, and the cache
                         * holds the truth now. The truncation goes there, as for an open file
                         * (a write at the old end must not bring the old bytes back), and with
                         * the next upload. The share's file is this long now, or was: its size
                         * is counted as at least that, so that a cut below is a shrink. */
                        i->remote_size = MAX(i->remote_size, size);
                        err = fs_truncate_local_locked(fs, i, size);
                } else if (c->step == SETATTR_STEP_MODE) {
                        i->perm = c->attr.st_mode & 07777;
                        i->perm_known = true;
                } else if (c->step == SETATTR_STEP_HINT) {
                        i->has_attributes = r->props->has_attributes || i->has_attributes;
                        i->attributes = r->props->has_attributes ? r->props->attributes
                                                                 : hint_attributes(fs, i, i->perm);
                }
                if (r->props->etag[0])
                        (void)snprintf(i->etag, sizeof(i->etag), "%s", r->props->etag);
                if (r->props->last_write_ns)
                        i->mtime_ns = r->props->last_write_ns;
                i->ctime_ns = realtime_ns();
        }
        fs_unlock(fs);
        if (err < 0) {
                fuse_reply_err(c->req, -err);
                return call_free(c);
        }
        c->step++;
        setattr_next(c);
}

static void setattr_retry(void *userdata) {
        setattr_next(userdata);
}

/* The entry's metadata, read for a chmod: Set Metadata replaces all of it, so the chmod sends
 * every pair but the mode back with the new mode. One that cannot (the share sent more than its
 * limit, or the mode does not fit beside the rest) is refused, the share's metadata left as it
 * is: never a Set Metadata that would drop pairs another tool set. */
static void setattr_meta_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        char mode[16];
        int err = r->error;

        fs_lock(c->fs);
        fs_note_result_locked(c->fs, r, "Get Properties", c->path, 0);
        fs_unlock(c->fs);
        if (err == 0) {
                (void)snprintf(mode, sizeof(mode), "%04o", (unsigned)(c->attr.st_mode & 07777));
                err = rest_metadata_with(r->props, "mode", mode, &c->meta, &c->n_meta);
        }
        if (err == -EOVERFLOW || err == -E2BIG)
                err = log_warning_errno(
                        -ENOTSUP,
                        "chmod of /%s refused, its metadata left as it is: %s (%zu pairs); "
                        "chmod fails with ENOTSUP",
                        c->path,
                        err == -EOVERFLOW
                                ? "the share sent more metadata than its 8 KiB limit, so not all "
                                  "of it could be sent back"
                                : "the mode does not fit beside the other pairs within the "
                                  "share's 8 KiB of metadata",
                        r->props->n_metadata);
        if (err < 0) {
                fuse_reply_err(c->req, -err);
                return call_free(c);
        }
        c->meta_read = true;
        setattr_next(c);
}

/* The modification time a setattr asks for, or cur when it asks for none. */
static int64_t setattr_mtime(const Call *c, int64_t cur) {
        if (c->to_set & FUSE_SET_ATTR_MTIME_NOW)
                return realtime_ns();
        if (c->to_set & FUSE_SET_ATTR_MTIME)
                return (int64_t)c->attr.st_mtim.tv_sec * INT64_C(1000000000) +
                       c->attr.st_mtim.tv_nsec;
        return cur;
}

static void setattr_next(Call *c) {
        Fs *fs = c->fs;
        struct stat st;
        RestOp op = {.path = c->path};
        Inode *i;
        int r = 0;

        for (; c->step < SETATTR_STEP_DONE; c->step++) {
                fs_lock(fs);
                i = get_inode_locked(fs, c->ino);
                if (!i) {
                        fs_unlock(fs);
                        r = -ESTALE;
                        break;
                }
                free(c->path);
                c->path = strdup(i->path);
                if (!c->path) {
                        fs_unlock(fs);
                        r = -ENOMEM;
                        break;
                }
                op.path = c->path;
                if (i->unlinked && c->step != SETATTR_STEP_SIZE) {
                        /* Deleted or replaced on the share while open: its name is another
                         * file's now, so its mode and time are kept here only. */
                        if (c->step == SETATTR_STEP_MODE && (c->to_set & FUSE_SET_ATTR_MODE)) {
                                i->perm = c->attr.st_mode & FS_PERM_BITS;
                                i->perm_known = true;
                                i->ctime_ns = realtime_ns();
                        } else if (c->step == SETATTR_STEP_TIMES)
                                i->mtime_ns = setattr_mtime(c, i->mtime_ns);
                        fs_unlock(fs);
                        continue;
                }
                if (c->step == SETATTR_STEP_SIZE && (c->to_set & FUSE_SET_ATTR_SIZE)) {
                        if (i->is_dir) {
                                fs_unlock(fs);
                                r = -EISDIR;
                                break;
                        }
                        if (fs_inode_is_authoritative(i)) {
                                /* Open or dirty: the cache holds the truth; uploaded with the data.
                                 */
                                r = fs_truncate_local_locked(fs, i, (uint64_t)c->attr.st_size);
                                fs_unlock(fs);
                                if (r < 0)
                                        break;
                                continue;
                        }
                        fs_unlock(fs);
                        /* A change of size sets the last-write time (truncate(2) asks for none). */
                        op.type = REST_OP_SET_FILE_PROPERTIES;
                        op.set_size = true;
                        op.size = (uint64_t)c->attr.st_size;
                        op.smb.last_write_ns = realtime_ns();
                        return submit_or_fail(c, &op, setattr_done);
                }
                if (((c->step == SETATTR_STEP_MODE && (c->to_set & FUSE_SET_ATTR_MODE)) ||
                     (c->step == SETATTR_STEP_TIMES &&
                      (c->to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)))) &&
                    fs_create_in_flight(i)) {
                        /* The share may not have it yet, and its Create File carries the mode and
                         * time it had when sent: again once that upload round ends (then the
                         * share's mode or time is set, or this one goes into the next try). */
                        r = fs_create_wait_locked(i, setattr_retry, c);
                        fs_unlock(fs);
                        if (r < 0)
                                break;
                        return;
                }
                if (c->step == SETATTR_STEP_MODE && (c->to_set & FUSE_SET_ATTR_MODE) &&
                    i->create_pending && !i->uploading) {
                        /* Not on the share yet: Create File carries the mode (and the hint). */
                        i->perm = c->attr.st_mode & 07777;
                        i->perm_known = true;
                        i->ctime_ns = realtime_ns();
                        (void)fs_sidecar_note_locked(fs, i);
                        fs_unlock(fs);
                        c->step = SETATTR_STEP_HINT; /* the loop goes on to the times */
                        continue;
                }
                if (c->step == SETATTR_STEP_MODE && (c->to_set & FUSE_SET_ATTR_MODE) &&
                    !c->meta_read) {
                        /* Set Metadata replaces all of the entry's metadata: what other tools
                         * put there (AzCopy, Storage Explorer) goes with the mode. */
                        op.type = i->is_dir ? REST_OP_GET_DIRECTORY_PROPERTIES
                                            : REST_OP_GET_FILE_PROPERTIES;
                        fs_unlock(fs);
                        return submit_or_fail(c, &op, setattr_meta_done);
                }
                if (c->step == SETATTR_STEP_MODE && (c->to_set & FUSE_SET_ATTR_MODE)) {
                        /* The entry's other metadata and the new mode (setattr_meta_done) */
                        op.type = REST_OP_SET_METADATA;
                        op.is_directory = i->is_dir;
                        op.metadata = c->meta;
                        op.n_metadata = c->n_meta;
                        fs_unlock(fs);
                        return submit_or_fail(c, &op, setattr_done);
                }
                if (c->step == SETATTR_STEP_HINT && (c->to_set & FUSE_SET_ATTR_MODE)) {
                        uint32_t attrs = hint_attributes(fs, i, c->attr.st_mode);
                        fs_unlock(fs);
                        if (!attrs)
                                continue;
                        op.type = REST_OP_SET_FILE_PROPERTIES;
                        op.smb.attributes = attrs;
                        return submit_or_fail(c, &op, setattr_done);
                }
                if (c->step == SETATTR_STEP_TIMES &&
                    (c->to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
                        int64_t t = setattr_mtime(c, i->mtime_ns);
                        i->mtime_ns = t;
                        if (i->is_dir || fs_inode_is_dirty(i)) {
                                /* Directories: kept in memory only (see SEMANTICS.md); dirty files:
                                 * the upload sets the share's time. One not on the share yet has
                                 * it in its record (its Create File after a kill -9). */
                                if (i->create_pending)
                                        (void)fs_sidecar_note_locked(fs, i);
                                fs_unlock(fs);
                                continue;
                        }
                        fs_unlock(fs);
                        op.type = REST_OP_SET_FILE_PROPERTIES;
                        op.smb.last_write_ns = t;
                        return submit_or_fail(c, &op, setattr_done);
                }
                fs_unlock(fs);
        }
        if (r < 0) {
                fuse_reply_err(c->req, -r);
                return call_free(c);
        }
        double timeout = 0;
        fs_lock(fs);
        i = get_inode_locked(fs, c->ino);
        if (i) {
                fs_fill_stat_locked(fs, i, &st);
                timeout = kernel_attr_timeout(fs, i);
        }
        fs_unlock(fs);
        if (!i)
                fuse_reply_err(c->req, ESTALE);
        else
                fuse_reply_attr(c->req, &st, timeout);
        call_free(c);
}

static void fs_op_setattr(
        fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        struct stat cur;
        Inode *i;
        Call *c;

        fs_lock(fs);
        i = get_inode_locked(fs, ino);
        if (i)
                fs_fill_stat_locked(fs, i, &cur);
        fs_unlock(fs);
        if (!i) {
                fuse_reply_err(req, ESTALE);
                return;
        }
        /* The share has no owners: only a no-op chown is accepted. */
        if (((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur.st_uid) ||
            ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur.st_gid)) {
                fuse_reply_err(req, EPERM);
                return;
        }
        if (to_set & FUSE_SET_ATTR_MODE)
                attr->st_mode &= S_IFMT | FS_PERM_BITS;
        c = call_new(fs, req, ino, NULL);
        if (!c) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        c->attr = *attr;
        c->to_set = to_set;
        setattr_next(c);
}

/* ---- mkdir, create ---- */

static void make_metadata(mode_t mode, char buf[static 16], RestMetadata *md) {
        (void)snprintf(buf, 16, "%04o", (unsigned)(mode & FS_PERM_BITS));
        *md = (RestMetadata){.name = (char *)"mode", .value = buf};
}

/* A call for an entry to be made in parent: replies the error itself and returns NULL. */
/* A Call for a mkdir or create of name in parent; NULL when answered (an error) or when it
 * waits for a rename of a directory above it (move_containing_locked()): then retry runs with
 * a Call holding the FUSE arguments (name in Call.path, mode, *fi) once that rename is
 * answered. */
static Call *child_call_new(
        fuse_req_t req,
        fuse_ino_t parent,
        const char *name,
        mode_t mode,
        const struct fuse_file_info *fi,
        void (*retry)(void *userdata)) {
        Fs *fs = fs_of(req);
        char *path = NULL;
        FsMove *move;
        Call *c;
        int r;

        fs_lock(fs);
        r = child_path_locked(fs, parent, name, &path);
        if (r >= 0 && (move = move_containing_locked(fs, path))) {
                free(path);
                path = strdup(name);
                c = path ? call_new(fs, req, parent, path) : NULL;
                r = -ENOMEM;
                if (c) {
                        c->mode = mode;
                        if (fi)
                                c->fi = *fi;
                        r = fs_retry_append(&move->waiters, retry, c);
                }
                if (r < 0 && c)
                        call_free(c);
                else if (r < 0)
                        free(path);
                fs_unlock(fs);
                if (r < 0)
                        fuse_reply_err(req, -r);
                return NULL;
        }
        fs_unlock(fs);
        if (r < 0) {
                fuse_reply_err(req, -r);
                return NULL;
        }
        c = call_new(fs, req, parent, path);
        if (!c) {
                free(path);
                fuse_reply_err(req, ENOMEM);
                return NULL;
        }
        c->mode = mode & ~fuse_req_ctx(req)->umask & FS_PERM_BITS;
        return c;
}

static void mkdir_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        struct fuse_entry_param e;
        Inode *i = NULL;
        int err = r->error;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Create Directory", c->path, -EEXIST);
        if (err == 0)
                err = inode_for_path_locked(fs, c->path, true, &i);
        if (err == 0 && !i->is_dir)
                err = -EEXIST; /* a file of that name here, not on the share yet */
        if (err == 0) {
                apply_props_locked(fs, i, r->props);
                i->perm = c->mode & FS_PERM_BITS;
                i->perm_known = true;
                if (!i->mtime_ns)
                        i->mtime_ns = i->ctime_ns = realtime_ns();
                /* Made just now: empty, as far as this mount knows for dir_timeout. */
                inode_names_clear(i);
                names_reset_locked(fs, i);
                names_note_locked(fs, c->path, true);
                fill_entry_locked(fs, i, &e);
        }
        fs_unlock(fs);
        reply_entry_or_err(c, err, &e);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);

static void mkdir_retry(void *userdata) {
        Call *c = userdata;
        fs_op_mkdir(c->req, c->ino, c->path, c->mode);
        call_free(c);
}

static void fs_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
        char buf[16];
        RestMetadata md;
        Call *c = child_call_new(req, parent, name, mode, NULL, mkdir_retry);

        if (!c)
                return;
        make_metadata(c->mode, buf, &md);
        RestOp op = {
                .type = REST_OP_CREATE_DIRECTORY,
                .path = c->path,
                .metadata = &md,
                .n_metadata = 1};
        submit_or_fail(c, &op, mkdir_done);
}

/* The file is made in the cache only; the upload at close (or fsync, or write-back) creates it
 * on the share with its size, mode and times, in one Create File before its Put Ranges. The
 * kernel asks create only for a name its lookup found missing. */
static void create_local(Call *c, struct fuse_file_info *fi) {
        Fs *fs = c->fs;
        struct fuse_entry_param e;
        Inode *i = NULL, *old;
        int err;

        fs_lock(fs);
        old = inode_table_find(fs->inodes, c->path);
        if (old) {
                fs_discard_dirty_locked(fs, old);
                inode_table_detach(fs->inodes, old);
        }
        err = inode_for_path_locked(fs, c->path, false, &i);
        if (err == 0)
                err = fs_cache_attach_locked(fs, i);
        if (err == 0) {
                fs_cache_reset_locked(fs, i, 0, "");
                i->perm = c->mode & FS_PERM_BITS;
                i->perm_known = true;
                i->mtime_ns = i->ctime_ns = i->btime_ns = realtime_ns();
                i->etag[0] = '\0';
                i->create_pending = true;
                i->dirty_since_ns = fs_now();
                /* Its record says the file is to be made: without it a kill -9 loses it. */
                err = fs_sidecar_note_locked(fs, i);
                if (err < 0) {
                        fs_discard_dirty_locked(fs, i);
                        inode_table_detach(fs->inodes, i);
                        fs_inode_maybe_free_locked(fs, i);
                        err = fs_record_errno(err);
                }
        }
        if (err == 0) {
                names_note_locked(fs, c->path, true);
                i->open_count++;
                i->refs++;
                fill_entry_locked(fs, i, &e);
                fi->fh = i->ino;
                fi->direct_io = fs_write_only(fi->flags);
                i->kernel_cached |= !fi->direct_io;
        }
        fs_unlock(fs);
        if (err < 0)
                fuse_reply_err(c->req, -err);
        else if (fuse_reply_create(c->req, &e, fi) < 0) {
                fs_lock(fs);
                i = get_inode_locked(fs, e.ino);
                if (i) {
                        i->open_count--;
                        fs_inode_unref_locked(fs, i);
                }
                fs_unlock(fs);
        }
        call_free(c);
}

static void fs_op_create(
        fuse_req_t req,
        fuse_ino_t parent,
        const char *name,
        mode_t mode,
        struct fuse_file_info *fi);

static void create_retry(void *userdata) {
        Call *c = userdata;
        fs_op_create(c->req, c->ino, c->path, c->mode, &c->fi);
        call_free(c);
}

static void fs_op_create(
        fuse_req_t req,
        fuse_ino_t parent,
        const char *name,
        mode_t mode,
        struct fuse_file_info *fi) {
        Call *c;

        if (!S_ISREG(mode)) {
                fuse_reply_err(req, EPERM);
                return;
        }
        c = child_call_new(req, parent, name, mode, fi, create_retry);
        if (!c)
                return;
        create_local(c, fi);
}

/* ---- unlink, rmdir ---- */

/* A rename or unlink went to the share, or failed before: the uploads it held off (held[],
 * cleared) may start (a file it replaced or deleted has its data dropped by then). Lock held;
 * *replies for fs_flush_waiters_reply(). */
static void holds_end_locked(Fs *fs, uint64_t held[static 2], FsWaiter **replies) {
        for (size_t k = 0; k < 2; k++) {
                uint64_t ino = held[k];
                held[k] = 0;
                if (ino != 0)
                        fs_rename_hold_end_locked(fs, get_inode_locked(fs, ino), replies);
        }
}

/* Whether x is a file whose record an intent concerns: one with unsynced data, or one with a
 * cache file, which a write may dirty before the answer (below a renamed directory: the kernel
 * locks a renamed or deleted file itself against writes meanwhile). Also one created here and
 * not on the share yet: below a renamed directory its Create File must go to the new path, and
 * replaced its data is void (never itself moved or deleted by a request: fs_op_rename,
 * remove_entry). Lock held. */
static bool intent_concerns_locked(const Inode *x) {
        return x && !x->unlinked && !x->is_dir && (fs_inode_is_dirty(x) || x->cache_fd >= 0);
}

/* Gives x the intent id: its record (now, or when a write makes one) says the request may move
 * it (moving, a path) or void its data (void_if_gone: once that path is gone from the share).
 * Lock held. */
static int intent_set_locked(Fs *fs, Inode *x, uint64_t id, char *moving, char *void_if_gone) {
        free(x->rec_moving);
        free(x->rec_void_if_gone);
        x->rec_moving = moving;
        x->rec_void_if_gone = void_if_gone;
        x->rec_intent = id;
        return fs_sidecar_note_locked(fs, x);
}

/* A rename of src (from) to to, over dst (NULL: none), or with to NULL a Delete File of src
 * (from), goes to the share: first each file it concerns (intent_concerns_locked()) that it moves
 * (src, or the files below the directory src), deletes (src) or replaces (dst) takes the intent,
 * and its record, if it has one, says so (a write into the page cache), so that after a kill -9
 * before the answer the recovery asks the share whether it was carried out (fs-record.c).
 * *ret_id: its id, 0 when no file took it. 0, or -errno when a record could not say so (the
 * cache disk full: a durable record is replaced through a temporary): then the request must not
 * go, as after a kill -9 the recovery would put the data back under the old name, or bring a
 * deleted file back (the caller ends the intents it set). Lock held. */
static int intents_begin_locked(
        Fs *fs, Inode *src, Inode *dst, const char *from, const char *to, uint64_t *ret_id) {
        uint64_t id = ++fs->next_intent;
        bool any = false;
        int r = 0;

        *ret_id = 0;
        if (!src)
                return 0;
        for (Inode *x = fs->state_list; x; x = x->state_next) {
                const char *rest = fs_path_after_prefix(x->path, from, true);
                char *moving = NULL, *gone = NULL;
                if (!rest || !intent_concerns_locked(x) || (x == src) != !rest[0])
                        continue;
                if (to ? asprintf(&moving, "%s%s", to, rest) < 0 : !(gone = strdup(x->path))) {
                        r = r < 0 ? r : -ENOMEM;
                        continue;
                }
                int k = intent_set_locked(fs, x, id, moving, gone);
                r = r < 0 ? r : k;
                any = true;
        }
        /* Replaced: its data is void once the renamed file's old name is gone. */
        if (to && dst != src && intent_concerns_locked(dst)) {
                char *gone = strdup(from);
                int k = gone ? intent_set_locked(fs, dst, id, NULL, gone) : -ENOMEM;
                r = r < 0 ? r : k;
                any = any || gone;
        }
        *ret_id = any ? id : 0;
        return r < 0 ? (r == -ENOMEM ? r : fs_record_errno(r)) : 0;
}

/* The rename or Delete File of intent id was answered or failed: the records say what is. */
static void intents_end_locked(Fs *fs, uint64_t id) {
        if (id == 0)
                return;
        for (Inode *x = fs->state_list; x; x = x->state_next)
                if (x->rec_intent == id)
                        (void)intent_set_locked(fs, x, 0, NULL, NULL);
}

/* The rename or delete of c ended (answered, failed, or not sent): its intent leaves the
 * records, the uploads it held may start (*replies: flushes to answer), and the requests that
 * waited for it are returned, to run with fs_create_waiters_run() once c is answered. Lock
 * held. */
static FsRetry *call_end_locked(Call *c, FsWaiter **replies) {
        intents_end_locked(c->fs, c->intent);
        c->intent = 0;
        holds_end_locked(c->fs, c->held, replies);
        return move_end_locked(c->fs, TAKE_PTR(c->move));
}

/* Submits the rename's or unlink's request; when that fails, it ends and fails. */
static void submit_holding(Call *c, const RestOp *op, RestDoneFn cb) {
        FsWaiter *replies = NULL;
        FsRetry *retries;
        int r = rest_client_submit(c->fs->rest, op, cb, c, NULL);

        if (r >= 0)
                return;
        fs_lock(c->fs);
        retries = call_end_locked(c, &replies);
        fs_unlock(c->fs);
        fs_flush_waiters_reply(replies);
        fuse_reply_err(c->req, r == -EAGAIN ? EAGAIN : -r);
        call_free(c);
        fs_create_waiters_run(retries);
}

static void remove_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        FsWaiter *replies = NULL;
        FsRetry *retries;
        Inode *i;

        fs_lock(fs);
        fs_note_result_locked(
                fs, r, c->is_dir ? "Delete Directory" : "Delete File", c->path, -ENOENT);
        if (r->error == 0 || r->error == -ENOENT) {
                i = inode_table_find(fs->inodes, c->path);
                if (i) {
                        fs_discard_dirty_locked(fs, i);
                        inode_table_detach(fs->inodes, i);
                }
                names_note_locked(fs, c->path, false);
        }
        retries = call_end_locked(c, &replies);
        fs_unlock(fs);
        fs_flush_waiters_reply(replies);
        fuse_reply_err(c->req, -r->error);
        call_free(c);
        fs_create_waiters_run(retries);
}

static bool has_pending_below_locked(Fs *fs, const char *dir) {
        for (Inode *x = fs->state_list; x; x = x->state_next)
                if (x->create_pending && !x->unlinked && fs_path_has_prefix(x->path, dir, false))
                        return true;
        return false;
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, bool is_dir);

static void remove_retry(void *userdata) {
        Call *c = userdata;
        remove_entry(c->req, c->ino, c->path, c->flags != 0);
        call_free(c);
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, bool is_dir) {
        Fs *fs = fs_of(req);
        uint64_t held[2] = {}, intent = 0;
        FsMove *move = NULL;
        char *path = NULL;
        Inode *i = NULL;
        Call *c;
        int r, ierr = 0;

        fs_lock(fs);
        r = child_path_locked(fs, parent, name, &path);
        if (r >= 0 && (move = move_overlapping_locked(fs, path, NULL))) {
                /* Again once that rename or delete is answered. */
                r = op_retry_queue_locked(
                        fs, &move->waiters, remove_retry, req, parent, name, 0, NULL, is_dir);
                fs_unlock(fs);
                free(path);
                if (r < 0)
                        fuse_reply_err(req, -r);
                return;
        }
        if (r >= 0 && (i = inode_table_find(fs->inodes, path)) && i->is_dir != is_dir)
                r = is_dir ? -ENOTDIR : -EISDIR;
        else if (r >= 0 && is_dir && has_pending_below_locked(fs, path))
                r = -ENOTEMPTY; /* files created here, not on the share yet */
        else if (r >= 0 && fs_upload_in_flight(i)) {
                /* Its Create File may not have reached the share, or its Put Ranges could land
                 * after the Delete File: once the upload round ends, the file is deleted there
                 * (or here, when it never got there). */
                r = op_retry_queue_locked(
                        fs, &i->create_waiters, remove_retry, req, parent, name, 0, NULL, 0);
                fs_unlock(fs);
                free(path);
                if (r < 0)
                        fuse_reply_err(req, -r);
                return;
        } else if (r >= 0 && i && i->create_pending && !i->uploading) {
                /* Never reached the share: nothing to delete there. */
                fs_discard_dirty_locked(fs, i);
                inode_table_detach(fs->inodes, i);
                names_note_locked(fs, path, false);
                fs_unlock(fs);
                free(path);
                fuse_reply_err(req, 0);
                return;
        }
        if (r >= 0 && !(move = move_begin_locked(fs, path, NULL)))
                r = -ENOMEM;
        if (r >= 0 && i && !is_dir) {
                /* No upload of it starts before the Delete File is answered: its Create File or
                 * Put Ranges could bring the file back. */
                fs_rename_hold_locked(i);
                held[0] = i->ino;
                ierr = intents_begin_locked(fs, i, NULL, path, NULL, &intent);
        }
        fs_unlock(fs);
        if (r < 0) {
                free(path);
                fuse_reply_err(req, -r);
                return;
        }
        c = ierr < 0 ? NULL : call_new(fs, req, parent, path);
        if (!c) {
                FsWaiter *replies = NULL;
                FsRetry *retries;

                fs_lock(fs);
                intents_end_locked(fs, intent);
                holds_end_locked(fs, held, &replies);
                retries = move_end_locked(fs, move);
                fs_unlock(fs);
                fs_flush_waiters_reply(replies);
                free(path);
                fuse_reply_err(req, ierr < 0 ? -ierr : ENOMEM);
                fs_create_waiters_run(retries);
                return;
        }
        c->intent = intent;
        c->move = move;
        c->is_dir = is_dir;
        memcpy(c->held, held, sizeof(held));
        RestOp op = {.type = is_dir ? REST_OP_DELETE_DIRECTORY : REST_OP_DELETE_FILE, .path = path};
        submit_holding(c, &op, remove_done);
}

static void fs_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
        remove_entry(req, parent, name, false);
}

static void fs_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
        remove_entry(req, parent, name, true);
}

/* ---- rename ---- */

/* Replies to a rename. One that moved an entry to another owner (into or out of
 * <users_dir>/<name>) drops the kernel's copy of that entry's attributes first (attributes only:
 * no lock that the rename in flight holds). */
static void rename_reply(Call *c, int err) {
        Fs *fs = c->fs;
        uint64_t ino = 0;

        if (err == 0) {
                uid_t u1, u2;
                gid_t g1, g2;
                mode_t m1, m2;
                Inode *i;

                fs_lock(fs);
                i = inode_table_find(fs->inodes, c->path);
                owner_of_locked(fs, c->path2, &u1, &g1, &m1);
                owner_of_locked(fs, c->path, &u2, &g2, &m2);
                if (i && (u1 != u2 || g1 != g2 || m1 != m2))
                        ino = i->ino;
                fs_unlock(fs);
        }
        if (ino)
                (void)fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
        fuse_reply_err(c->req, -err);
}

static void rename_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        Inode *i, *displaced = NULL;
        FsWaiter *replies = NULL;
        FsRetry *retries;
        int err = r->error;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Rename", c->path2, -EEXIST);
        if (err == 0) {
                names_note_locked(fs, c->path2, false);
                names_note_locked(fs, c->path, true);
        }
        if (err == 0 && (i = inode_table_find(fs->inodes, c->path2))) {
                err = inode_table_rename(fs->inodes, i, c->path, &displaced);
                if (displaced)
                        fs_discard_dirty_locked(fs, displaced);
                if (err == 0 && fs_inode_is_dirty(i))
                        fs_sidecar_update_locked(fs, i);
                /* Files below a renamed directory: their dirty records name the new path. */
                for (Inode *x = fs->state_list; err == 0 && i->is_dir && x; x = x->state_next)
                        if (fs_inode_is_dirty(x) && fs_path_has_prefix(x->path, i->path, false))
                                fs_sidecar_update_locked(fs, x);
                i->ctime_ns = realtime_ns();
        } else if (err == 0 && (displaced = inode_table_find(fs->inodes, c->path))) {
                fs_discard_dirty_locked(fs, displaced);
                inode_table_detach(fs->inodes, displaced);
        }
        retries = call_end_locked(c, &replies);
        fs_unlock(fs);
        fs_flush_waiters_reply(replies);
        rename_reply(c, err);
        call_free(c);
        fs_create_waiters_run(retries);
}

/* A file not on the share yet (src, at from) renamed to to, here only. */
static int rename_local_locked(Fs *fs, Inode *src, const char *from, const char *to) {
        Inode *displaced = NULL;
        int r = inode_table_rename(fs->inodes, src, to, &displaced);

        if (r < 0)
                return r;
        if (displaced)
                fs_discard_dirty_locked(fs, displaced);
        names_note_locked(fs, from, false);
        names_note_locked(fs, to, true);
        src->ctime_ns = realtime_ns();
        (void)fs_sidecar_note_locked(fs, src);
        return 0;
}

static void rename_replaced_next(Call *c, int err);

static void rename_replaced_retry(void *userdata) {
        rename_replaced_next(userdata, 0);
}

/* The file a rename of a file not on the share yet replaces was deleted on the share (c->path:
 * the destination, c->path2: the source): the rename itself is made here. */
static void rename_replaced_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Delete File", c->path, -ENOENT);
        fs_unlock(fs);
        rename_replaced_next(c, r->error == -ENOENT ? 0 : r->error);
}

static void rename_replaced_next(Call *c, int err) {
        Fs *fs = c->fs;
        FsWaiter *replies = NULL;
        FsRetry *retries;
        Inode *src;

        fs_lock(fs);
        if (err == 0) {
                src = inode_table_find(fs->inodes, c->path2);
                if (!src)
                        err = -ENOENT;
                else if (fs_create_in_flight(src)) {
                        /* Its upload started meanwhile and may not have created it yet. */
                        err = fs_create_wait_locked(src, rename_replaced_retry, c);
                        if (err >= 0) {
                                fs_unlock(fs);
                                return;
                        }
                } else if (!src->create_pending) {
                        /* Its upload created it meanwhile: the share renames it. */
                        fs_unlock(fs);
                        RestOp op = {
                                .type = REST_OP_RENAME,
                                .path = c->path,
                                .source_path = c->path2,
                                .replace_if_exists = true};
                        return submit_holding(c, &op, rename_done);
                } else
                        err = rename_local_locked(fs, src, c->path2, c->path);
        }
        retries = call_end_locked(c, &replies);
        fs_unlock(fs);
        fs_flush_waiters_reply(replies);
        rename_reply(c, err);
        call_free(c);
        fs_create_waiters_run(retries);
}

static void rename_retry(void *userdata);

static void fs_op_rename(
        fuse_req_t req,
        fuse_ino_t parent,
        const char *name,
        fuse_ino_t newparent,
        const char *newname,
        unsigned int flags) {
        Fs *fs = fs_of(req);
        char *from = NULL, *to = NULL;
        Inode *src = NULL, *dst = NULL;
        bool is_dir = false, delete_first = false;
        uint64_t held[2] = {}, intent = 0;
        FsRetry **wait = NULL;
        FsMove *move = NULL;
        Call *c;
        int r, ierr = 0;

        if (flags & ~(unsigned)RENAME_NOREPLACE) {
                fuse_reply_err(req, EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT */
                return;
        }
        fs_lock(fs);
        r = child_path_locked(fs, parent, name, &from);
        if (r >= 0)
                r = child_path_locked(fs, newparent, newname, &to);
        if (r >= 0 && (move = move_overlapping_locked(fs, from, to)))
                wait = &move->waiters; /* again once that rename or delete is answered */
        if (r >= 0 && !wait) {
                src = inode_table_find(fs->inodes, from);
                dst = inode_table_find(fs->inodes, to);
                is_dir = src && src->is_dir;
                if (src && dst && src != dst && dst->is_dir && !src->is_dir)
                        r = -EISDIR;
                else if (src && dst && src != dst && !dst->is_dir && src->is_dir)
                        r = -ENOTDIR;
                else if (src && src->is_dir && fs_path_has_prefix(to, from, false))
                        r = -EINVAL;
        }
        if (r >= 0 && !wait && !streq(from, to) &&
            (fs_upload_in_flight(src) || fs_upload_in_flight(dst)))
                /* The share may not have it yet, or the Create File or Put Ranges of the file it
                 * replaces could land after the rename (and write their bytes into the renamed
                 * file): again once that upload round ends. */
                wait = &(fs_upload_in_flight(src) ? src : dst)->create_waiters;
        if (r >= 0 && wait) {
                r = op_retry_queue_locked(
                        fs, wait, rename_retry, req, parent, name, newparent, newname, flags);
                fs_unlock(fs);
                free(from);
                free(to);
                if (r < 0)
                        fuse_reply_err(req, -r);
                return;
        }
        if (r >= 0 && src && src->create_pending && !src->uploading && !streq(from, to)) {
                /* Not on the share yet: renamed here; the upload creates it under the new
                 * name. A file it replaces that is on the share is deleted there first. */
                delete_first = dst && dst != src && !dst->create_pending;
                if ((flags & RENAME_NOREPLACE) && dst && dst != src)
                        r = -EEXIST;
                else if (!delete_first) {
                        r = rename_local_locked(fs, src, from, to);
                        if (r >= 0)
                                r = 1; /* done */
                }
        }
        if (r == 0 && !streq(from, to) && !(move = move_begin_locked(fs, from, to)))
                r = -ENOMEM;
        if (r == 0 && !streq(from, to)) {
                /* To the share: no upload of either starts before it is answered. */
                fs_rename_hold_locked(src);
                fs_rename_hold_locked(dst);
                held[0] = src ? src->ino : 0;
                held[1] = dst ? dst->ino : 0;
                /* A file not on the share yet replacing one that is: that one is deleted (its
                 * data void once its name is gone), then this one renamed here. */
                ierr = delete_first ? intents_begin_locked(fs, dst, NULL, to, NULL, &intent)
                                    : intents_begin_locked(fs, src, dst, from, to, &intent);
        }
        fs_unlock(fs);
        if (r > 0 || (r >= 0 && streq(from, to))) {
                free(from);
                free(to);
                fuse_reply_err(req, 0);
                return;
        }
        if (r < 0) {
                free(from);
                free(to);
                fuse_reply_err(req, -r);
                return;
        }
        c = ierr < 0 ? NULL : call_new(fs, req, newparent, to);
        if (!c) {
                FsWaiter *replies = NULL;
                FsRetry *retries;

                fs_lock(fs);
                intents_end_locked(fs, intent);
                holds_end_locked(fs, held, &replies);
                retries = move_end_locked(fs, move);
                fs_unlock(fs);
                fs_flush_waiters_reply(replies);
                free(from);
                free(to);
                fuse_reply_err(req, ierr < 0 ? -ierr : ENOMEM);
                fs_create_waiters_run(retries);
                return;
        }
        c->path2 = from;
        c->intent = intent;
        c->move = move;
        memcpy(c->held, held, sizeof(held));
        if (delete_first) {
                RestOp op = {.type = REST_OP_DELETE_FILE, .path = to};
                return submit_holding(c, &op, rename_replaced_done);
        }
        RestOp op = {
                .type = REST_OP_RENAME,
                .path = to,
                .source_path = from,
                .is_directory = is_dir,
                .replace_if_exists =
                        !(flags & RENAME_NOREPLACE) && rest_name_casecmp(from, to) != 0 && !is_dir};
        submit_holding(c, &op, rename_done);
}

static void rename_retry(void *userdata) {
        Call *c = userdata;
        fs_op_rename(c->req, c->ino, c->path, c->ino2, c->path2, (unsigned)c->flags);
        call_free(c);
}

/* ---- unsupported ---- */

static void fs_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
        fuse_reply_err(req, EPERM); /* no hard links on the share */
}

static void fs_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
        fuse_reply_err(req, EPERM); /* no faithful representation over REST */
}

static void
fs_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
        fuse_reply_err(req, EPERM); /* device nodes, FIFOs and sockets cannot be stored */
}

/* ---- open ---- */

static void open_done(RestResult *r, void *userdata) {
        Call *c = userdata;
        Fs *fs = c->fs;
        struct fuse_file_info fi = {.flags = c->flags};
        bool inval = false;
        Inode *i;
        int err = r->error;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get File Properties", c->path, -ENOENT);
        i = get_inode_locked(fs, c->ino);
        if (!i)
                err = -ESTALE;
        if (err == -ENOENT && !fs_inode_is_authoritative(i))
                inode_table_detach(fs->inodes, i);
        /* Share unreachable: a cached copy is served as it is (reads of cached data go on). */
        bool offline = err < 0 && is_unreachable(r) && i && i->cache_fd >= 0 && i->cache_etag[0];
        if (offline)
                err = 0;
        if (err == 0 && !offline && r->props->is_directory)
                err = -EISDIR;
        if (err == 0 && !offline && !fs_inode_is_dirty(i) && !i->uploading &&
            i->writes_in_flight == 0) {
                /* Close-to-open: the share's version wins unless we hold changes to it; the
                 * kernel's copy of its attributes (size) is dropped below. */
                apply_props_force_locked(fs, i, r->props);
                inval = true;
                err = fs_cache_attach_locked(fs, i);
                if (err == 0) {
                        if (i->cache_etag[0] && streq(i->cache_etag, r->props->etag) &&
                            i->remote_size == i->size && !i->cache_mixed)
                                fi.keep_cache = 1;
                        else
                                fs_cache_reset_locked(fs, i, i->size, r->props->etag);
                }
        } else if (err == 0)
                fi.keep_cache = 1;
        if (err == 0) {
                i->open_count++;
                i->refs++;
                fs_cache_touch_locked(fs, i);
                fi.fh = i->ino;
                fi.direct_io = fs_write_only(c->flags);
                i->kernel_cached |= !fi.direct_io;
        }
        fs_unlock(fs);
        /* Attributes only (offset < 0): takes no lock that the open in flight holds. */
        if (err == 0 && inval)
                (void)fuse_lowlevel_notify_inval_inode(fs->se, c->ino, -1, 0);
        if (err < 0)
                fuse_reply_err(c->req, -err);
        else if (fuse_reply_open(c->req, &fi) < 0) {
                fs_lock(fs);
                if ((i = get_inode_locked(fs, c->ino))) {
                        i->open_count--;
                        fs_inode_unref_locked(fs, i);
                }
                fs_unlock(fs);
        }
        call_free(c);
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        Inode *i;
        char *path;
        Call *c;

        fs_lock(fs);
        i = get_inode_locked(fs, ino);
        if (!i || i->is_dir) {
                fs_unlock(fs);
                fuse_reply_err(req, i ? EISDIR : ESTALE);
                return;
        }
        if (fs_inode_is_dirty(i) || i->uploading || i->unlinked) {
                /* Changed here and not all on the share yet: the local copy is newer than the
                 * share's. A name replaced or deleted on the share no longer leads here. */
                if (i->cache_fd < 0 || !fs_inode_is_authoritative(i)) {
                        fs_unlock(fs);
                        fuse_reply_err(req, ESTALE);
                        return;
                }
                i->open_count++;
                i->refs++;
                fi->fh = i->ino;
                fi->keep_cache = 1;
                fi->direct_io = fs_write_only(fi->flags);
                i->kernel_cached |= !fi->direct_io;
                fs_unlock(fs);
                if (fuse_reply_open(req, fi) < 0) {
                        fs_lock(fs);
                        i->open_count--;
                        fs_inode_unref_locked(fs, i);
                        fs_unlock(fs);
                }
                return;
        }
        path = strdup(i->path);
        fs_unlock(fs);
        c = path ? call_new(fs, req, ino, path) : NULL;
        if (!c) {
                free(path);
                fuse_reply_err(req, ENOMEM);
                return;
        }
        c->flags = fi->flags;
        RestOp op = {.type = REST_OP_GET_FILE_PROPERTIES, .path = c->path};
        submit_or_fail(c, &op, open_done);
}

/* ---- directories ---- */

typedef struct DirEntry {
        char *name;
        bool is_dir;
        RestListEntry e; /* name/etag/permission_key moved out; numbers kept */
} DirEntry;

/* An open directory. Its state (listed, listing, error, req and what req asked for) is read and
 * changed under Fs.lock: the threads that use it one after another (opendir, each readdir, the
 * I/O thread ending a listing) are ordered by the kernel, through replies and requests, and the
 * lock makes that order hold for the memory too (libfuse receives requests by splice, which
 * ThreadSanitizer does not see as synchronization). The listing's entries are written by one
 * thread at a time, before the state says they are there. */
typedef struct DirHandle {
        Fs *fs;
        struct DirHandle *prev, *next; /* Fs.dir_handles */
        uint64_t ino;
        char *path;
        DirEntry *entries;
        size_t n, alloc;
        bool listed;
        bool listing;
        int error;
        /* The listing's progress: the marker of the page asked for last, pages so far, and
         * pages in a row without an entry. */
        char *marker;
        unsigned pages, empty_pages;
        /* The one readdir waiting for the listing (the kernel serializes readdir per file). */
        fuse_req_t req;
        size_t size;
        off_t off;
        bool plus;
} DirHandle;

static void dir_handle_clear(DirHandle *d) {
        for (size_t k = 0; k < d->n; k++) {
                free(d->entries[k].name);
                free(d->entries[k].e.etag);
        }
        free(d->entries);
        d->entries = NULL;
        d->n = d->alloc = 0;
}

static void dir_handle_link_locked(Fs *fs, DirHandle *d) {
        LIST_PREPEND(fs->dir_handles, d, next, prev);
}

static void dir_handle_unlink_locked(Fs *fs, DirHandle *d) {
        LIST_REMOVE(fs->dir_handles, d, next, prev);
}

/* Unlinked (or never linked) d, with what it holds. */
static void dir_handle_free(DirHandle *d) {
        dir_handle_clear(d);
        free(d->marker);
        free(d->path);
        free(d);
}

static void dir_serve(DirHandle *d, fuse_req_t req, size_t size, off_t off, bool plus) {
        Fs *fs = d->fs;
        _cleanup_free_ char *buf = NULL;
        size_t used = 0;
        int error;
        off_t k;

        fs_lock(fs);
        error = d->error;
        if (error < 0) {
                d->error = 0;
                d->listed = false;
        }
        fs_unlock(fs);
        if (error < 0) {
                fuse_reply_err(req, -error);
                return;
        }
        buf = malloc(size);
        if (!buf) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        fs_lock(fs);
        for (k = off; k < (off_t)d->n + 2; k++) {
                struct stat st = {};
                const char *name;
                size_t need;

                if (k < 2) {
                        name = k == 0 ? "." : "..";
                        st.st_ino = k == 0 ? d->ino : FS_ROOT_INO;
                        st.st_mode = S_IFDIR;
                        if (plus) {
                                struct fuse_entry_param e = {.attr = st};
                                need = fuse_add_direntry_plus(
                                        req, buf + used, size - used, name, &e, k + 1);
                        } else
                                need = fuse_add_direntry(
                                        req, buf + used, size - used, name, &st, k + 1);
                } else {
                        DirEntry *de = &d->entries[k - 2];
                        _cleanup_free_ char *path = NULL;
                        Inode *i = NULL;

                        name = de->name;
                        if (fs_path_join(d->path, name, &path) < 0 ||
                            inode_for_path_locked(fs, path, de->is_dir, &i) < 0) {
                                if (used == 0) {
                                        fs_unlock(fs);
                                        fuse_reply_err(req, ENOMEM);
                                        return;
                                }
                                break;
                        }
                        apply_list_entry_locked(fs, i, &de->e);
                        if (plus) {
                                struct fuse_entry_param e;
                                fill_entry_locked(fs, i, &e);
                                need = fuse_add_direntry_plus(
                                        req, buf + used, size - used, name, &e, k + 1);
                                if (need > size - used)
                                        i->nlookup--;
                        } else {
                                fs_fill_stat_locked(fs, i, &st);
                                need = fuse_add_direntry(
                                        req, buf + used, size - used, name, &st, k + 1);
                        }
                        if (need > size - used) {
                                fs_inode_maybe_free_locked(fs, i);
                                break;
                        }
                        if (!plus)
                                fs_inode_maybe_free_locked(fs, i);
                }
                if (need > size - used)
                        break;
                used += need;
        }
        fs_unlock(fs);
        fuse_reply_buf(req, buf, used);
}

static int dir_entries_grow(DirHandle *d) {
        size_t na;
        DirEntry *ne;

        if (d->n >= FS_DIR_ENTRIES_MAX)
                return -E2BIG;
        if (d->n < d->alloc)
                return 0;
        na = d->alloc ? d->alloc * 2 : 256;
        ne = realloc(d->entries, na * sizeof(*ne));
        if (!ne)
                return -ENOMEM;
        d->entries = ne;
        d->alloc = na;
        return 0;
}

/* The whole listing is in: files created here and not on the share yet join it, and it renews
 * the directory's name set. */
static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

static int dir_complete_listing(DirHandle *d) {
        _cleanup_free_ uint64_t *listed = NULL;
        size_t n_listed = d->n;
        Fs *fs = d->fs;
        Inode *dir;
        int r = 0;

        /* The listed names, to tell which files created here are not in the listing. */
        listed = malloc(MAX(n_listed, (size_t)1) * sizeof(*listed));
        if (!listed)
                return -ENOMEM;
        for (size_t k = 0; k < n_listed; k++)
                listed[k] = fs_path_hash(d->entries[k].name);
        qsort(listed, n_listed, sizeof(*listed), cmp_u64);
        fs_lock(fs);
        dir = get_inode_locked(fs, d->ino);
        /* Not a listing of what the directory is now (renamed or removed meanwhile): its names
         * are not the set of the directory. */
        if (!dir || !dir->is_dir || dir->unlinked || !streq(dir->path, d->path)) {
                fs_unlock(fs);
                return 0;
        }
        for (Inode *x = fs->state_list; x && r >= 0; x = x->state_next) {
                const char *name;
                uint64_t h;
                char *copy;

                if (!x->create_pending || x->unlinked ||
                    parent_of_locked(fs, x->path, &name) != dir)
                        continue;
                /* Listed when a file of that name is on the share already (it replaces it), or
                 * when its Create File reached the share while the listing ran. */
                h = fs_path_hash(name);
                if (bsearch(&h, listed, n_listed, sizeof(*listed), cmp_u64))
                        continue;
                r = dir_entries_grow(d);
                if (r < 0 || !(copy = strdup(name))) {
                        r = r < 0 ? r : -ENOMEM;
                        break;
                }
                d->entries[d->n++] = (DirEntry){.name = copy, .is_dir = false};
        }
        if (r >= 0 && d->n <= FS_DIR_NAMES_MAX) {
                names_reset_locked(fs, dir);
                for (size_t k = 0; k < d->n; k++)
                        inode_names_add(dir, d->entries[k].name);
        } else if (r >= 0)
                inode_names_clear(dir);
        fs_unlock(fs);
        return r;
}

/* A share that answers with the same NextMarker again, or never with an entry, would make the
 * listing (and the readdir waiting for it, which the caller cannot interrupt) go on for ever.
 * The service needs about 840 full pages for FS_DIR_ENTRIES_MAX entries. */
#define LIST_PAGES_MAX 8192u
#define LIST_EMPTY_PAGES_MAX 64u

static int dir_next_page(DirHandle *d, const RestResult *r, const RestListPage *page) {
        char *m;

        d->pages++;
        d->empty_pages = page->n_entries > 0 ? 0 : d->empty_pages + 1;
        if ((d->marker && streq(d->marker, page->next_marker)) || d->pages >= LIST_PAGES_MAX ||
            d->empty_pages >= LIST_EMPTY_PAGES_MAX) {
                log_warning(
                        "List Directory /%s: the share's listing does not end (page %u, %u in a row "
                        "without entries, NextMarker %s, request id %s); readdir fails with EIO",
                        d->path, d->pages, d->empty_pages,
                        d->marker && streq(d->marker, page->next_marker) ? "repeated" : "new",
                        r->request_id ? r->request_id : "-");
                return -EIO;
        }
        m = strdup(page->next_marker);
        if (!m)
                return -ENOMEM;
        free(d->marker);
        d->marker = m;
        return 0;
}

static void list_page_done(RestResult *r, void *userdata) {
        DirHandle *d = userdata;
        Fs *fs = d->fs;
        RestListPage *page = r->page;
        fuse_req_t req;
        int err = r->error;
        size_t size;
        off_t off;
        bool plus;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "List Directory", d->path, 0);
        fs_unlock(fs);
        if (err == 0 && page) {
                for (size_t k = 0; k < page->n_entries && err == 0; k++) {
                        RestListEntry *e = &page->entries[k];
                        err = dir_entries_grow(d);
                        if (err < 0)
                                break;
                        d->entries[d->n] =
                                (DirEntry){.name = e->name, .is_dir = e->is_directory, .e = *e};
                        d->entries[d->n].e.name = NULL;
                        d->entries[d->n].e.permission_key = NULL;
                        free(e->permission_key);
                        e->name = NULL;
                        e->etag = NULL;
                        e->permission_key = NULL;
                        d->n++;
                }
                if (err == 0 && page->next_marker)
                        err = dir_next_page(d, r, page);
                if (err == 0 && page->next_marker) {
                        RestOp op = {
                                .type = REST_OP_LIST_DIRECTORY,
                                .path = d->path,
                                .marker = page->next_marker,
                                .max_results = REST_LIST_ENTRIES_MAX};
                        err = rest_client_submit(fs->rest, &op, list_page_done, d, NULL);
                        if (err == 0)
                                return;
                }
        }
        if (err == 0)
                err = dir_complete_listing(d);
        fs_lock(fs);
        d->listing = false;
        if (err < 0) {
                dir_handle_clear(d);
                d->error = err;
        } else
                d->listed = true;
        req = d->req;
        d->req = NULL;
        size = d->size;
        off = d->off;
        plus = d->plus;
        fs_unlock(fs);
        if (req)
                dir_serve(d, req, size, off, plus);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        Fs *fs = fs_of(req);
        DirHandle *d;
        Inode *i;

        d = calloc(1, sizeof(*d));
        if (!d) {
                fuse_reply_err(req, ENOMEM);
                return;
        }
        int err = 0;

        fs_lock(fs);
        i = get_inode_locked(fs, ino);
        if (!i)
                err = ESTALE;
        else if (!i->is_dir)
                err = ENOTDIR;
        else if (!(d->path = strdup(i->path)))
                err = ENOMEM;
        fs_unlock(fs);
        if (err) {
                free(d);
                fuse_reply_err(req, err);
                return;
        }
        d->fs = fs;
        d->ino = ino;
        fi->fh = (uint64_t)(uintptr_t)d;
        fi->cache_readdir = 0;
        fs_lock(fs);
        dir_handle_link_locked(fs, d);
        fs_unlock(fs);
        if (fuse_reply_open(req, fi) < 0) {
                fs_lock(fs);
                dir_handle_unlink_locked(fs, d);
                fs_unlock(fs);
                dir_handle_free(d);
        }
}

static void
readdir_common(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus) {
        DirHandle *d = (DirHandle *)(uintptr_t)fi->fh;
        Fs *fs = fs_of(req);
        int r;

        fs_lock(fs);
        if (off == 0 && d->listed) {
                dir_handle_clear(d);
                d->listed = false;
        }
        if (d->listed || d->error < 0) {
                fs_unlock(fs);
                dir_serve(d, req, size, off, plus);
                return;
        }
        d->req = req;
        d->size = size;
        d->off = off;
        d->plus = plus;
        if (d->listing) {
                fs_unlock(fs);
                return;
        }
        {
                /* Renamed (or a directory above it) since it was opened: list it where it is. */
                Inode *di = get_inode_locked(fs, d->ino);
                char *now;
                if (di && !di->unlinked && !streq(di->path, d->path) && (now = strdup(di->path))) {
                        free(d->path);
                        d->path = now;
                }
        }
        d->listing = true;
        free(d->marker);
        d->marker = NULL;
        d->pages = d->empty_pages = 0;
        fs_unlock(fs);
        RestOp op = {
                .type = REST_OP_LIST_DIRECTORY,
                .path = d->path,
                .max_results = REST_LIST_ENTRIES_MAX};
        r = rest_client_submit(fs->rest, &op, list_page_done, d, NULL);
        if (r < 0) {
                fs_lock(fs);
                d->listing = false;
                d->req = NULL;
                fs_unlock(fs);
                fuse_reply_err(req, -r);
        }
}

static void
fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
        readdir_common(req, size, off, fi, false);
}

static void fs_op_readdirplus(
        fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
        readdir_common(req, size, off, fi, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        DirHandle *d = (DirHandle *)(uintptr_t)fi->fh;
        Fs *fs = fs_of(req);

        /* The kernel never releases a handle with a readdir in flight. */
        fs_lock(fs);
        dir_handle_unlink_locked(fs, d);
        fs_unlock(fs);
        dir_handle_free(d);
        fuse_reply_err(req, 0);
}

static void
fs_op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
        fuse_reply_err(req, 0); /* directory changes are made on the share synchronously */
}

/* ---- statfs ---- */

static void reply_statfs(Fs *fs, fuse_req_t req) {
        struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = FS_NAME_MAX};
        uint64_t total, used;

        fs_lock(fs);
        /* A quota past 2^33 GiB (no share has one) would overflow. */
        total = fs->quota_gib ? MIN(fs->quota_gib, UINT64_C(1) << 33) << 30 : UINT64_C(5) << 40;
        used = fs->usage_bytes;
        fs_unlock(fs);
        sv.f_blocks = total / 4096;
        sv.f_bfree = sv.f_bavail = used >= total ? 0 : (total - used) / 4096;
        sv.f_files = UINT32_MAX;
        sv.f_ffree = sv.f_favail = UINT32_MAX / 2;
        fuse_reply_statfs(req, &sv);
}

typedef struct StatfsCall {
        Fs *fs;
        fuse_req_t req;
        int pending; /* calls not answered yet; Fs.lock (the first may be answered on the I/O
                      * thread before the second is submitted) */
        int error;
} StatfsCall;

static void statfs_done(RestResult *r, void *userdata) {
        StatfsCall *c = userdata;
        Fs *fs = c->fs;
        bool last;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get Share Stats", "", 0);
        if (r->error == 0 && r->type == REST_OP_GET_SHARE_STATS)
                fs->usage_bytes = r->share_usage_bytes;
        if (r->error == 0 && r->type == REST_OP_GET_SHARE_PROPERTIES && r->props->has_share_quota)
                fs->quota_gib = r->props->share_quota_gib;
        if (r->error == 0)
                fs->stats_until_ns = fs_now() + FS_STATS_TTL_NS;
        else if (!c->error)
                c->error = r->error;
        last = --c->pending == 0;
        fs_unlock(fs);
        if (!last)
                return;
        /* A share that cannot be reached still answers statfs with the last figures. */
        reply_statfs(fs, c->req);
        free(c);
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino) {
        Fs *fs = fs_of(req);
        StatfsCall *c;
        bool fresh;
        int r;

        fs_lock(fs);
        fresh = fs->stats_until_ns > fs_now();
        fs_unlock(fs);
        if (fresh || !(c = calloc(1, sizeof(*c)))) {
                reply_statfs(fs, req);
                return;
        }
        c->fs = fs;
        c->req = req;
        c->pending = 2;
        RestOp op = {.type = REST_OP_GET_SHARE_STATS, .path = ""};
        r = rest_client_submit(fs->rest, &op, statfs_done, c, NULL);
        if (r < 0) {
                free(c);
                reply_statfs(fs, req);
                return;
        }
        op.type = REST_OP_GET_SHARE_PROPERTIES;
        if (rest_client_submit(fs->rest, &op, statfs_done, c, NULL) < 0) {
                bool last;

                fs_lock(fs);
                last = --c->pending == 0;
                fs_unlock(fs);
                if (last) {
                        reply_statfs(fs, req);
                        free(c);
                }
        }
}

static void fs_op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
        fuse_reply_err(req, 0); /* default_permissions does the checks */
}

static const struct fuse_lowlevel_ops fs_ops = {
        .init = fs_op_init,
        .lookup = fs_op_lookup,
        .forget = fs_op_forget,
        .forget_multi = fs_op_forget_multi,
        .getattr = fs_op_getattr,
        .setattr = fs_op_setattr,
        .mkdir = fs_op_mkdir,
        .mknod = fs_op_mknod,
        .symlink = fs_op_symlink,
        .link = fs_op_link,
        .unlink = fs_op_unlink,
        .rmdir = fs_op_rmdir,
        .rename = fs_op_rename,
        .create = fs_op_create,
        .open = fs_op_open,
        .read = fs_op_read,
        .write_buf = fs_op_write_buf,
        .flush = fs_op_flush,
        .fsync = fs_op_fsync,
        .release = fs_op_release,
        .opendir = fs_op_opendir,
        .readdir = fs_op_readdir,
        .readdirplus = fs_op_readdirplus,
        .releasedir = fs_op_releasedir,
        .fsyncdir = fs_op_fsyncdir,
        .statfs = fs_op_statfs,
        .access = fs_op_access,
        .getxattr = fs_op_getxattr,
        .setxattr = fs_op_setxattr,
        .listxattr = fs_op_listxattr,
        .removexattr = fs_op_removexattr,
};

const struct fuse_lowlevel_ops *fs_fuse_ops(void) {
        return &fs_ops;
}

/* ---- lifecycle ---- */

int fs_new(const FsOptions *o, const FsCredentials *cred, Fs **ret) {
        _cleanup_(fs_freep) Fs *fs = NULL;
        HttpClientConfig hcfg = {
                .max_in_flight = o->max_requests,
                .max_host_connections = o->max_requests,
                .max_connects = o->max_requests * 2,
                .transfer_threads = o->transfer_threads,
                .user_agent = "azfilesfs/" PROJECT_VERSION,
        };
        Inode *root;
        int r;

        fs = calloc(1, sizeof(*fs));
        if (!fs)
                return -ENOMEM;
        fs->o = o;
        fs->cred = cred;
        fs->cache_dir_fd = -EBADF;
        fs->mount_time_ns = realtime_ns();
        (void)pthread_mutex_init(&fs->lock, NULL);
        {
                pthread_condattr_t ca;
                (void)pthread_condattr_init(&ca);
                (void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                (void)pthread_cond_init(&fs->cond, &ca);
                (void)pthread_condattr_destroy(&ca);
        }
        r = inode_table_new(&fs->inodes);
        if (r < 0)
                return r;
        r = inode_table_add(fs->inodes, o->subdir, true, &root);
        if (r < 0)
                return r;
        root->perm = o->dir_mode;
        root->mtime_ns = root->ctime_ns = fs->mount_time_ns;
        root->nlookup = 1;

        r = sd_event_new(&fs->event);
        if (r < 0)
                return r;
        r = loop_queue_new(fs->event, 65536, &fs->queue);
        if (r < 0)
                return r;
        r = http_client_new(fs->event, &hcfg, &fs->http);
        if (r < 0)
                return r;
        if (cred->auth == REST_AUTH_BEARER) {
                /* A request waiting for a token counts the wait in its retry budget: the
                 * token's fetch gives up within that budget as well (its default is 60 s, and
                 * 10 s a try), or an operation could wait on IMDS far longer than retry_budget. */
                ImdsClientConfig icfg = {
                        .endpoint = o->imds,
                        .client_id = cred->client_id,
                        .retry_budget_ms = o->retry_budget_ms,
                        .attempt_timeout_ms = MIN(o->retry_budget_ms, UINT64_C(10000)),
                };
                r = imds_client_new(fs->event, fs->http, &icfg, &fs->imds);
                if (r < 0)
                        return r;
        }
        RestClientConfig rcfg = {
                .endpoint = o->endpoint,
                .account = o->account,
                .share = o->share,
                .auth = cred->auth,
                .key = cred->key,
                .key_size = cred->key_size,
                .sas_token = cred->sas_token,
                .imds = fs->imds,
                .retry_budget_ms = o->retry_budget_ms,
                /* The time budget is the bound; a burst of 503s must not end it early. */
                .max_attempts = 64,
                .meta_timeout_ms = MIN(o->retry_budget_ms, UINT64_C(30000)),
                .data_timeout_ms = MIN(o->retry_budget_ms, UINT64_C(120000)),
                .connect_timeout_ms = MIN(o->retry_budget_ms, UINT64_C(10000)),
                .retry_base_ms = o->retry_delay_ms ? o->retry_delay_ms
                                                   : MIN(o->retry_budget_ms / 20, UINT64_C(400)),
                .retry_max_delay_ms = MIN(o->retry_budget_ms / 4, UINT64_C(20000)),
        };
        r = rest_client_new(fs->event, fs->http, &rcfg, &fs->rest);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(fs);
        return 0;
}

static void on_quit(void *userdata, bool cancelled) {
        Fs *fs = userdata;
        (void)sd_event_exit(fs->event, 0);
}

static void stop_thread(Fs *fs) {
        if (!fs->thread_started)
                return;
        if (fs_post(fs, on_quit, fs) < 0)
                abort(); /* cannot stop the loop: nothing sane left to do */
        (void)pthread_join(fs->thread, NULL);
        fs->thread_started = false;
        fs_flush_all_cancel(fs);
        fs_durable_stop(fs); /* after the loop: no tick wakes it any more */
}

Fs *fs_free(Fs *fs) {
        if (!fs)
                return NULL;
        stop_thread(fs);
        fs_inval_stop(fs); /* after the unmount: a drop of pages may wait for reads it ends */
        fs->tick = sd_event_source_disable_unref(fs->tick);
        fs->rest = rest_client_free(fs->rest);
        fs->imds = imds_client_free(fs->imds);
        fs->http = http_client_free(fs->http);
        fs->queue = loop_queue_free(fs->queue);
        /* Handles the kernel did not release (their RELEASEDIR dropped at unmount); after the
         * clients above, which ran the callbacks of their listings. */
        while (fs->dir_handles) {
                DirHandle *d = fs->dir_handles;
                dir_handle_unlink_locked(fs, d);
                dir_handle_free(d);
        }
        for (Inode *i = fs->state_list; i; i = i->state_next) {
                i->cache_fd = safe_close(i->cache_fd);
                fs_sidecar_close_locked(i);
        }
        fs->inodes = inode_table_free(fs->inodes);
        fs->event = sd_event_unref(fs->event);
        fs->cache_dir_fd = safe_close(fs->cache_dir_fd);
        free(fs->cache_path);
        free(fs->last_error);
        free(fs->last_error_path);
        free(fs->last_request_id);
        (void)pthread_mutex_destroy(&fs->lock);
        (void)pthread_cond_destroy(&fs->cond);
        free(fs);
        return NULL;
}

static void *loop_thread(void *userdata) {
        Fs *fs = userdata;
        int r;

        (void)pthread_setname_np(pthread_self(), "azfilesfs-io");
        r = sd_event_loop(fs->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        return NULL;
}

typedef struct SyncCall {
        Fs *fs;
        bool done;
        int error;
        bool has_quota;
        uint64_t quota_gib;
        char code[64];
} SyncCall;

static void sync_done(RestResult *r, void *userdata) {
        SyncCall *s = userdata;
        Fs *fs = s->fs;

        fs_lock(fs);
        fs_note_result_locked(fs, r, "Get Share Properties", "", 0);
        s->error = r->error;
        s->has_quota = r->props && r->props->has_share_quota;
        s->quota_gib = s->has_quota ? r->props->share_quota_gib : 0;
        (void)snprintf(s->code, sizeof(s->code), "%s", r->error_code ? r->error_code : "");
        s->done = true;
        (void)pthread_cond_broadcast(&fs->cond);
        fs_unlock(fs);
}

static void tick_start_cb(void *userdata, bool cancelled) {
        if (!cancelled)
                fs_tick_start(userdata);
}

int fs_start(Fs *fs, char **reterr_msg) {
        SyncCall s = {.fs = fs};
        RestOp op = {.type = REST_OP_GET_SHARE_PROPERTIES, .path = ""};
        int r;

        r = fs_cache_open_dir(fs, reterr_msg);
        if (r < 0)
                return r;
        if (!rest_name_fold_unicode())
                log_warning("The C.UTF-8 locale is missing: names that differ only in the case of "
                            "non-ASCII letters are taken for different names here, which the "
                            "share takes for one name");
        r = pthread_create(&fs->thread, NULL, loop_thread, fs);
        if (r != 0)
                return -r;
        fs->thread_started = true;
        r = fs_durable_start(fs);
        if (r < 0)
                return r;
        r = fs_inval_start(fs);
        if (r < 0)
                return r;
        r = fs_post(fs, tick_start_cb, fs);
        if (r < 0)
                return r;

        r = rest_client_submit(fs->rest, &op, sync_done, &s, NULL);
        if (r < 0)
                return r;
        fs_lock(fs);
        while (!s.done)
                (void)pthread_cond_wait(&fs->cond, &fs->lock); /* bounded by the retry budget */
        if (s.has_quota)
                fs->quota_gib = s.quota_gib;
        fs_unlock(fs);
        if (s.error == -EACCES || s.error == -ENOENT || s.error == -EINVAL || s.error == -EPERM) {
                if (asprintf(
                            reterr_msg, "Share %s/%s refused access: %s%s%s", fs->o->endpoint,
                            fs->o->share, strerror(-s.error), s.code[0] ? " " : "", s.code) < 0)
                        *reterr_msg = NULL;
                return s.error;
        }
        if (s.error < 0)
                log_warning_errno(
                        s.error,
                        "Share %s/%s not reachable now (%m); mounting anyway, operations fail until it is",
                        fs->o->endpoint, fs->o->share);
        r = fs_recover(fs);
        if (r < 0)
                log_warning_errno(
                        r,
                        "Could not upload all data left dirty by an earlier run (%m); it stays in %s and is retried",
                        fs->cache_path);
        return 0;
}

uint64_t fs_stop(Fs *fs) {
        uint64_t left;
        unsigned files;
        int r;

        r = fs_flush_wait(fs, fs->o->retry_budget_ms + 5000);
        if (r < 0)
                log_warning_errno(
                        r,
                        "Unmounting with data not yet on the share (%m); it stays in %s and is uploaded by the next mount",
                        fs->cache_path);
        fs_lock(fs);
        left = fs_dirty_bytes_locked(fs, &files);
        fs_unlock(fs);
        stop_thread(fs);
        if (left > 0) /* what stays for the next mount must survive a reboot as it is */
                fs_records_make_durable(fs);
        return left;
}

void fs_set_session(Fs *fs, struct fuse_session *se) {
        fs->se = se;
}
