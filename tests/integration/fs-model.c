/* SPDX-License-Identifier: MIT */
/* The model: see fs-model.h. Deliberately not modelled (each would need semantics the share
 * cannot give or that SEMANTICS.md may refuse, and a mismatch there would not be a bug):
 *   - names the share cannot hold (control characters, trailing dots, \\ : | < > * ? "): the
 *     pool has none; they belong in targeted tests with the errno SEMANTICS.md promises;
 *   - rename of a directory over an existing directory (the share's rename cannot replace a
 *     directory);
 *   - I/O through a handle whose name was unlinked or replaced: handles on a victim are closed
 *     before the unlink/rename (the loss and scale tests keep files open across their own
 *     checks instead).
 *
 * Driver bugs this model found, all fixed (the model runs with the default entry_timeout,
 * compares the x bit and makes kill -9 remounts; test-fs-basic and test-fs-loss keep a short
 * reproducer of 5 and 6):
 *   1. (fixed) A name that was replaced (rename over it) or unlinked stays visible, with the old
 * file, under another case spelling that the kernel looked up before, until entry_timeout: `cat
 * ABC` after `mv tmp abc` shows the old content, `stat ABC` after `rm abc` succeeds. Steered around
 * with entry_timeout=0 (the kernel then asks the driver at every lookup).
 *   2. (fixed) After a remount, a listing (readdirplus) reports the default mode (0644) of a file
 * whose x-ms-meta-mode on the share is 0755, and stat keeps saying so: `chmod +x` does not survive
 * a remount for whoever lists the directory first. Steered around by not comparing the x bit
 * (compare_exec_bit).
 *   5. (fixed) writeback=async: a directory renamed while a file below it is dirty leaves the
 * file's dirty record on the old path; after a kill -9 the restarted azfilesfs retries Set File
 *      Properties of the old path for ever (404 ParentNotFound, hundreds a second) and the
 *      mount never appears; the file's bytes never reach the share.
 *   6. (fixed) A file on the share shrunk and grown again while open (ftruncate 0, ftruncate
 *      4 MiB, close) kept its old bytes on the share where nothing was written after: the
 *      upload only set the final size. Seen first after a kill -9 in writeback=async (seed 8),
 *      it happened without a crash too. */
#include "fs-model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

#define HANDLES_MAX 8
#define BUF_MAX (1024u * 1024u + 65536u)
#define PIECE (4u * 1024u * 1024u)
#define DEPTH_MAX 3
#define LOG_TAIL_DEFAULT 80
#define ENTRIES_MAX 4096

/* Names: spaces, dots, non-ASCII letters. Case variants flip ASCII letters and the Latin-1 ones
 * (U+00C0-U+00DE and U+00E0-U+00FE but for the signs × and ÷), whose case every table agrees
 * on; ß and ÿ, whose upper case is elsewhere, stay as they are. */
static const char *const name_pool[] = {
        "a",        "B",      "file one.txt", "Ünïcødé-名前", "notes.ipynb", "x y z",
        "data",     "ÉTÉ",    "résumé.md",    "Dir",          "Mixed Case",  "ñandú",
        "ß-straße", "日本語", "a.b.c",        " lead",        "emoji-😀.py",  "zz",
};

typedef struct Handle {
        int fm, fr;
        char *ref_rel; /* reference-side path, kept current across renames */
        int flags;
} Handle;

typedef struct Entry {
        char *rel;
        bool is_dir;
        unsigned depth;
} Entry;

typedef struct Model {
        const FsModelConfig *cfg;
        uint64_t rng;
        unsigned op;
        Handle h[HANDLES_MAX];
        size_t nh;
        Entry *e;
        size_t ne;
        char **log;
        size_t nlog;
        uint8_t *wbuf, *rbuf_m, *rbuf_r;
        char *err;
} Model;

static uint64_t rnd64(Model *m) {
        /* xorshift64* */
        m->rng ^= m->rng >> 12;
        m->rng ^= m->rng << 25;
        m->rng ^= m->rng >> 27;
        return m->rng * UINT64_C(2685821657736338717);
}

static uint64_t rnd(Model *m, uint64_t n) {
        return n ? rnd64(m) % n : 0;
}

static bool chance(Model *m, unsigned percent) {
        return rnd(m, 100) < percent;
}

_printf_(2, 3) static void logop(Model *m, const char *fmt, ...) {
        va_list ap;
        char *s = NULL, *line = NULL, **nl;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (!s || asprintf(&line, "#%u %s", m->op, s) < 0)
                line = NULL;
        free(s);
        if (!line)
                return;
        nl = realloc(m->log, sizeof(char *) * (m->nlog + 1));
        if (!nl) {
                free(line);
                return;
        }
        m->log = nl;
        m->log[m->nlog++] = line;
}

_printf_(2, 3) static int fail(Model *m, const char *fmt, ...) {
        va_list ap;
        char *s = NULL;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        free(m->err);
        m->err = NULL;
        if (asprintf(
                    &m->err, "seed %" PRIu64 ", op #%u: %s", m->cfg->seed, m->op, s ? s : "(oom)") <
            0)
                m->err = NULL;
        free(s);
        return -EBADMSG;
}

static const char *errname(long r) {
        /* Rotating buffers: several may appear in one message. */
        static __thread char bufs[4][64];
        static __thread unsigned next;
        char *buf = bufs[next++ % ELEMENTSOF(bufs)];
        if (r >= 0) {
                (void)snprintf(buf, sizeof(bufs[0]), "%ld", r);
                return buf;
        }
        (void)snprintf(buf, sizeof(bufs[0]), "-%s", strerrorname_np((int)-r) ?: "?");
        return buf;
}

/* Results: >= 0 values, < 0 -errno. */
static int expect_same(Model *m, const char *what, long got, long want) {
        if (got == want)
                return 0;
        return fail(m, "%s: mount gave %s, reference %s", what, errname(got), errname(want));
}

#define RES(x)                                                                                     \
        ({                                                                                         \
                long _r = (long)(x);                                                               \
                _r < 0 ? (long)-errno : _r;                                                        \
        })

/* ---- paths ----------------------------------------------------------------------------------- */

static char *join(const char *a, const char *b) {
        char *p;
        if (asprintf(&p, "%s%s%s", a, *a && *b ? "/" : "", b) < 0)
                abort();
        return p;
}

static void entries_clear(Model *m) {
        for (size_t i = 0; i < m->ne; i++)
                free(m->e[i].rel);
        free(m->e);
        m->e = NULL;
        m->ne = 0;
}

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const Entry *)a)->rel, ((const Entry *)b)->rel);
}

static void scan_at(Model *m, const char *rel, unsigned depth) {
        _cleanup_free_ char *abs = join(m->cfg->ref, rel);
        DIR *d = opendir(abs);
        struct dirent *de;

        if (!d)
                abort();
        while ((de = readdir(d))) {
                Entry *ne;
                char *r;
                bool is_dir;
                if (streq(de->d_name, ".") || streq(de->d_name, "..") || m->ne >= ENTRIES_MAX)
                        continue;
                r = join(rel, de->d_name);
                is_dir = de->d_type == DT_DIR;
                ne = realloc(m->e, sizeof(Entry) * (m->ne + 1));
                if (!ne)
                        abort();
                m->e = ne;
                m->e[m->ne++] = (Entry){.rel = r, .is_dir = is_dir, .depth = depth};
                if (is_dir)
                        scan_at(m, r, depth + 1);
        }
        (void)closedir(d);
}

/* The reference's entries, sorted so that the choice depends only on the seed. */
static void scan(Model *m) {
        entries_clear(m);
        scan_at(m, "", 1);
        if (m->ne > 0)
                qsort(m->e, m->ne, sizeof(Entry), cmp_entry);
}

/* 0 any, 1 files, 2 dirs; NULL when there is none. */
static const Entry *pick_entry(Model *m, int kind) {
        size_t n = 0, k;
        for (size_t i = 0; i < m->ne; i++)
                n += kind == 0 || (kind == 2) == m->e[i].is_dir;
        if (n == 0)
                return NULL;
        k = rnd(m, n);
        for (size_t i = 0; i < m->ne; i++)
                if (kind == 0 || (kind == 2) == m->e[i].is_dir) {
                        if (k == 0)
                                return &m->e[i];
                        k--;
                }
        return NULL;
}

/* A directory that may get children: "" or one above DEPTH_MAX. */
static const char *pick_parent(Model *m) {
        size_t n = 1, k;
        for (size_t i = 0; i < m->ne; i++)
                n += m->e[i].is_dir && m->e[i].depth < DEPTH_MAX;
        k = rnd(m, n);
        if (k == 0)
                return "";
        for (size_t i = 0; i < m->ne; i++)
                if (m->e[i].is_dir && m->e[i].depth < DEPTH_MAX && --k == 0)
                        return m->e[i].rel;
        return "";
}

/* Whether the letter at p has a case the model flips: an ASCII letter (its byte) or a Latin-1 one
 * (the second byte of 0xc3 0x80-0x9e or 0xa0-0xbe, but for × and ÷). Returns the byte to flip
 * (by 0x20), or NULL. */
static unsigned char *flippable(unsigned char *p) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
                return p;
        if (p[0] == 0xc3 && ((p[1] >= 0x80 && p[1] <= 0x9e) || (p[1] >= 0xa0 && p[1] <= 0xbe)) &&
            p[1] != 0x97 && p[1] != 0xb7)
                return p + 1;
        return NULL;
}

/* s with the letters the model flips in lower case, in place. */
static char *fold(char *s) {
        for (unsigned char *p = (unsigned char *)s, *f; *p; p++)
                if ((f = flippable(p)) && !(*f & 0x20))
                        *f |= 0x20;
        return s;
}

/* Compares as the share does, for the letters the model flips: 0 when equal but for case. */
static int model_casecmp(const char *a, const char *b) {
        _cleanup_free_ char *x = strdup(a), *y = strdup(b);

        if (!x || !y)
                abort();
        return strcmp(fold(x), fold(y));
}

/* Flips the case of some letters of the last component (case-insensitive shares only). */
static char *variant(Model *m, const char *rel) {
        char *s = strdup(rel), *last;
        if (!s)
                abort();
        if (!m->cfg->case_insensitive || !chance(m, 25))
                return s;
        last = strrchr(s, '/');
        for (unsigned char *p = (unsigned char *)(last ? last + 1 : s), *f; *p; p++)
                if ((f = flippable(p)) && chance(m, 50))
                        *f ^= 0x20;
        return s;
}

/* A path for the mount side: mostly an existing entry of that kind, else a new name. */
static char *pick_path(Model *m, int kind, unsigned existing_percent) {
        const Entry *e = chance(m, existing_percent) ? pick_entry(m, kind) : NULL;
        _cleanup_free_ char *p = NULL;

        if (e)
                p = strdup(e->rel);
        else
                p = join(pick_parent(m), name_pool[rnd(m, ELEMENTSOF(name_pool))]);
        if (!p)
                abort();
        return variant(m, p);
}

/* Maps a mount-side path to the reference: each component that exists there under another
 * case takes that spelling, as the case-insensitive share does. */
static char *resolve(Model *m, const char *rel) {
        _cleanup_free_ char *copy = strdup(rel);
        char *out = strdup(""), *save = NULL;

        if (!copy || !out)
                abort();
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                _cleanup_free_ char *dir = join(m->cfg->ref, out);
                const char *use = c;
                char *next;
                DIR *d = m->cfg->case_insensitive ? opendir(dir) : NULL;
                struct dirent *de;
                char *found = NULL;

                while (d && (de = readdir(d))) {
                        if (streq(de->d_name, c)) {
                                free(found);
                                found = NULL;
                                break;
                        }
                        if (!found && model_casecmp(de->d_name, c) == 0)
                                found = strdup(de->d_name);
                }
                if (d)
                        (void)closedir(d);
                if (found)
                        use = found;
                next = join(out, use);
                free(out);
                free(found);
                out = next;
        }
        return out;
}

static char *mpath(Model *m, const char *rel) {
        return join(m->cfg->root, rel);
}

static char *rpath(Model *m, const char *rel) {
        return join(m->cfg->ref, rel);
}

/* ---- handles --------------------------------------------------------------------------------- */

static int handle_close(Model *m, size_t i) {
        long a = RES(close(m->h[i].fm)), b = RES(close(m->h[i].fr));
        char what[64];

        logop(m, "close(h%zu %s) = %s", i, m->h[i].ref_rel, errname(a));
        free(m->h[i].ref_rel);
        m->h[i] = m->h[--m->nh];
        (void)snprintf(what, sizeof(what), "close(h%zu)", i);
        return expect_same(m, what, a, b);
}

static int close_all(Model *m) {
        while (m->nh > 0) {
                int r = handle_close(m, m->nh - 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool under(const char *path, const char *prefix) {
        size_t n = strlen(prefix);
        return strncasecmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Closes the handles on (or below) a reference path that is about to go away. */
static int close_victims(Model *m, const char *ref_rel) {
        for (size_t i = m->nh; i > 0; i--)
                if (under(m->h[i - 1].ref_rel, ref_rel)) {
                        int r = handle_close(m, i - 1);
                        if (r < 0)
                                return r;
                }
        return 0;
}

static void rename_handles(Model *m, const char *from, const char *to) {
        size_t n = strlen(from);
        for (size_t i = 0; i < m->nh; i++)
                if (under(m->h[i].ref_rel, from)) {
                        char *p;
                        if (asprintf(&p, "%s%s", to, m->h[i].ref_rel + n) < 0)
                                abort();
                        free(m->h[i].ref_rel);
                        m->h[i].ref_rel = p;
                }
}

/* ---- operations ------------------------------------------------------------------------------ */

static const struct {
        int flags;
        const char *name;
} open_flags[] = {
        {O_RDWR | O_CREAT, "O_RDWR|O_CREAT"},
        {O_RDWR | O_CREAT, "O_RDWR|O_CREAT"},
        {O_RDWR | O_CREAT | O_EXCL, "O_RDWR|O_CREAT|O_EXCL"},
        {O_RDWR | O_CREAT | O_TRUNC, "O_RDWR|O_CREAT|O_TRUNC"},
        {O_RDWR, "O_RDWR"},
        {O_RDONLY, "O_RDONLY"},
        {O_WRONLY | O_CREAT | O_APPEND, "O_WRONLY|O_CREAT|O_APPEND"},
        {O_WRONLY | O_TRUNC, "O_WRONLY|O_TRUNC"},
};

static int op_open(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, 1, 60), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        size_t k = rnd(m, ELEMENTSOF(open_flags));
        int fm, fr, r;

        if (m->nh == HANDLES_MAX) {
                r = handle_close(m, rnd(m, m->nh));
                if (r < 0)
                        return r;
        }
        fm = open(mp, open_flags[k].flags | O_CLOEXEC, 0644);
        long a = RES(fm);
        fr = open(rp, open_flags[k].flags | O_CLOEXEC, 0644);
        long b = RES(fr);
        logop(m, "open(\"%s\" [ref \"%s\"], %s) = %s -> h%zu", rel, rrel, open_flags[k].name,
              errname(a < 0 ? a : 0), m->nh);
        if (fm >= 0 && fr >= 0) {
                m->h[m->nh++] = (Handle){
                        .fm = fm, .fr = fr, .ref_rel = strdup(rrel), .flags = open_flags[k].flags};
                return 0;
        }
        if (fm >= 0)
                (void)close(fm);
        if (fr >= 0)
                (void)close(fr);
        return expect_same(m, "open", a < 0 ? a : 0, b < 0 ? b : 0);
}

static Handle *pick_handle(Model *m, size_t *ret_i) {
        if (m->nh == 0)
                return NULL;
        *ret_i = rnd(m, m->nh);
        return &m->h[*ret_i];
}

static uint64_t pick_offset(Model *m, off_t size) {
        if (chance(m, 4))
                return PIECE - 65536 + rnd(m, 131072); /* across the 4 MiB piece boundary */
        if (chance(m, 10))
                return (uint64_t)size; /* extend exactly */
        return rnd(m, (uint64_t)size + 65536);
}

static int op_write(Model *m, bool positional) {
        struct stat st;
        size_t i, len;
        uint64_t off;
        long a, b;
        Handle *h = pick_handle(m, &i);

        if (!h)
                return op_open(m);
        if (fstat(h->fr, &st) < 0)
                return -errno;
        off = pick_offset(m, st.st_size);
        len = chance(m, 5) ? 1 + rnd(m, 1024 * 1024) : 1 + rnd(m, 65536);
        fs_pattern_fill(m->cfg->seed * 1000003 + m->op, 0, m->wbuf, len);
        if (positional) {
                a = RES(pwrite(h->fm, m->wbuf, len, (off_t)off));
                b = RES(pwrite(h->fr, m->wbuf, len, (off_t)off));
                logop(m, "pwrite(h%zu %s, %zu, %" PRIu64 ") = %s", i, h->ref_rel, len, off,
                      errname(a));
                return expect_same(m, "pwrite", a, b);
        }
        a = RES(write(h->fm, m->wbuf, len));
        b = RES(write(h->fr, m->wbuf, len));
        logop(m, "write(h%zu %s, %zu) = %s", i, h->ref_rel, len, errname(a));
        return expect_same(m, "write", a, b);
}

static int op_read(Model *m) {
        struct stat st;
        size_t i, len;
        uint64_t off;
        long a, b;
        Handle *h = pick_handle(m, &i);

        if (!h)
                return op_open(m);
        if (fstat(h->fr, &st) < 0)
                return -errno;
        off = chance(m, 50) ? 0 : rnd(m, (uint64_t)st.st_size + 16);
        len = chance(m, 30) ? (size_t)st.st_size : 1 + rnd(m, 262144);
        len = MIN(len, (size_t)BUF_MAX);
        a = RES(pread(h->fm, m->rbuf_m, len, (off_t)off));
        b = RES(pread(h->fr, m->rbuf_r, len, (off_t)off));
        logop(m, "pread(h%zu %s, %zu, %" PRIu64 ") = %s", i, h->ref_rel, len, off, errname(a));
        if (expect_same(m, "pread", a, b) < 0)
                return -EBADMSG;
        if (a > 0 && memcmp(m->rbuf_m, m->rbuf_r, (size_t)a) != 0) {
                size_t k = 0;
                while (m->rbuf_m[k] == m->rbuf_r[k])
                        k++;
                return fail(
                        m, "pread: bytes differ at file offset %" PRIu64 " (%s)", off + k,
                        h->ref_rel);
        }
        return 0;
}

static uint64_t pick_size(Model *m) {
        if (chance(m, 10))
                return PIECE - 4096 + rnd(m, 8192);
        if (chance(m, 20))
                return 0;
        return rnd(m, 1536 * 1024);
}

static int op_ftruncate(Model *m) {
        size_t i;
        uint64_t size = pick_size(m);
        Handle *h = pick_handle(m, &i);
        long a, b;

        if (!h)
                return op_open(m);
        a = RES(ftruncate(h->fm, (off_t)size));
        b = RES(ftruncate(h->fr, (off_t)size));
        logop(m, "ftruncate(h%zu %s, %" PRIu64 ") = %s", i, h->ref_rel, size, errname(a));
        return expect_same(m, "ftruncate", a, b);
}

static int op_truncate(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, 1, 90), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        uint64_t size = pick_size(m);
        long a = RES(truncate(mp, (off_t)size)), b = RES(truncate(rp, (off_t)size));

        logop(m, "truncate(\"%s\", %" PRIu64 ") = %s", rel, size, errname(a));
        return expect_same(m, "truncate", a, b);
}

static int op_fsync(Model *m) {
        size_t i;
        Handle *h = pick_handle(m, &i);
        long a, b;

        if (!h)
                return op_open(m);
        a = RES(fsync(h->fm));
        b = RES(fsync(h->fr));
        logop(m, "fsync(h%zu %s) = %s", i, h->ref_rel, errname(a));
        return expect_same(m, "fsync", a, b);
}

static int op_close(Model *m) {
        size_t i;
        if (!pick_handle(m, &i))
                return op_open(m);
        return handle_close(m, i);
}

static int op_mkdir(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, 0, 15), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        long a = RES(mkdir(mp, 0755)), b = RES(mkdir(rp, 0755));

        logop(m, "mkdir(\"%s\" [ref \"%s\"]) = %s", rel, rrel, errname(a));
        return expect_same(m, "mkdir", a, b);
}

static int op_rmdir(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, chance(m, 80) ? 2 : 0, 90), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        long a = RES(rmdir(mp)), b = RES(rmdir(rp));

        logop(m, "rmdir(\"%s\") = %s", rel, errname(a));
        return expect_same(m, "rmdir", a, b);
}

static int op_unlink(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, chance(m, 90) ? 1 : 0, 85), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        long a, b;
        int r = close_victims(m, rrel);

        if (r < 0)
                return r;
        a = RES(unlink(mp));
        b = RES(unlink(rp));
        logop(m, "unlink(\"%s\") = %s", rel, errname(a));
        return expect_same(m, "unlink", a, b);
}

static int op_rename(Model *m) {
        const Entry *se = pick_entry(m, 0);
        _cleanup_free_ char *src = NULL, *dst = NULL, *rsrc = NULL, *rdst = NULL;
        _cleanup_free_ char *ms = NULL, *md = NULL, *rs = NULL, *rd = NULL;
        const char *dlast, *rlast;
        struct stat sst, dst_st;
        long a, b;
        int r;

        if (!se)
                return op_mkdir(m);
        src = variant(m, se->rel);
        dst = chance(m, 10) ? variant(m, se->rel) /* case-only rename, or itself */
                            : pick_path(m, se->is_dir ? 1 : 0, 40);
        rsrc = resolve(m, src);
        rdst = resolve(m, dst);
        rs = rpath(m, rsrc);
        rd = rpath(m, rdst);
        ms = mpath(m, src);
        md = mpath(m, dst);
        if (lstat(rs, &sst) < 0)
                return -errno;
        /* Not modelled: a directory over an existing directory. */
        if (S_ISDIR(sst.st_mode) && lstat(rd, &dst_st) == 0 && S_ISDIR(dst_st.st_mode) &&
            model_casecmp(rsrc, rdst) != 0)
                return 0;
        if ((r = close_victims(m, rsrc)) < 0 || (r = close_victims(m, rdst)) < 0)
                return r;

        a = RES(rename(ms, md));
        if (m->cfg->case_insensitive && model_casecmp(rsrc, rdst) == 0) {
                /* Both names are the same entry: the kernel sees one inode and does nothing. */
                logop(m, "rename(\"%s\", \"%s\") [same entry] = %s", src, dst, errname(a));
                return expect_same(m, "rename to the same entry", a, 0);
        }
        b = RES(rename(rs, rd));
        dlast = strrchr(dst, '/');
        dlast = dlast ? dlast + 1 : dst;
        rlast = strrchr(rdst, '/');
        rlast = rlast ? rlast + 1 : rdst;
        if (b == 0 && !streq(dlast, rlast)) {
                /* Replaced an entry spelt otherwise: the share now has the new spelling. */
                _cleanup_free_ char *parent = strndup(rdst, (size_t)(rlast - rdst));
                _cleanup_free_ char *newrel = NULL, *np = NULL;
                if (!parent)
                        abort();
                if (asprintf(&newrel, "%s%s", parent, dlast) < 0)
                        abort();
                np = rpath(m, newrel);
                if (rename(rd, np) < 0)
                        return -errno;
                free(rdst);
                rdst = TAKE_PTR(newrel);
        }
        if (b == 0)
                rename_handles(m, rsrc, rdst);
        logop(m, "rename(\"%s\", \"%s\") [ref \"%s\" -> \"%s\"] = %s", src, dst, rsrc, rdst,
              errname(a));
        return expect_same(m, "rename", a, b);
}

static int op_chmod(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, 1, 90), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        mode_t mode = chance(m, 50) ? 0755 : 0644;
        long a, b;
        struct stat st;

        /* Directories keep their mode (dir_mode=); only files are chmod'ed. */
        if (lstat(rp, &st) == 0 && S_ISDIR(st.st_mode))
                return 0;
        a = RES(chmod(mp, mode));
        b = RES(chmod(rp, mode));
        logop(m, "chmod(\"%s\", %o) = %s", rel, mode, errname(a));
        return expect_same(m, "chmod", a, b);
}

static int op_stat(Model *m) {
        _cleanup_free_ char *rel = pick_path(m, 0, 80), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        struct stat sm, sr;
        long a = RES(lstat(mp, &sm)), b = RES(lstat(rp, &sr));

        logop(m, "stat(\"%s\") = %s", rel, errname(a));
        if (expect_same(m, "stat", a, b) < 0 || a < 0)
                return a == b ? 0 : -EBADMSG;
        if ((sm.st_mode & S_IFMT) != (sr.st_mode & S_IFMT))
                return fail(
                        m, "stat(\"%s\"): type %o, reference %o", rel, sm.st_mode & S_IFMT,
                        sr.st_mode & S_IFMT);
        if (S_ISREG(sr.st_mode) && sm.st_size != sr.st_size)
                return fail(
                        m, "stat(\"%s\"): size %jd, reference %jd", rel, (intmax_t)sm.st_size,
                        (intmax_t)sr.st_size);
        if (S_ISREG(sr.st_mode) && m->cfg->compare_exec_bit &&
            (sm.st_mode & S_IXUSR) != (sr.st_mode & S_IXUSR))
                return fail(
                        m, "stat(\"%s\"): mode %o, reference %o", rel, sm.st_mode & 07777,
                        sr.st_mode & 07777);
        return 0;
}

static int op_readdir(Model *m) {
        const Entry *e = chance(m, 30) ? NULL : pick_entry(m, 2);
        _cleanup_free_ char *rel = variant(m, e ? e->rel : ""), *rrel = resolve(m, rel);
        _cleanup_free_ char *mp = mpath(m, rel), *rp = rpath(m, rrel);
        _cleanup_free_ char *msg = NULL;
        int r;

        logop(m, "readdir+compare(\"%s\")", rel);
        /* A whole-subtree compare also reads every file through fresh opens. */
        r = fs_tree_compare(mp, rp, m->cfg->compare_exec_bit ? FS_TREE_EXEC_BIT : 0, &msg);
        if (r == -EBADMSG)
                return fail(m, "tree below \"%s\": %s", rel, msg);
        return r;
}

static int checkpoint(Model *m, const char *why) {
        _cleanup_free_ char *msg = NULL;
        int r;

        logop(m, "checkpoint (%s): whole tree", why);
        r = fs_tree_compare(
                m->cfg->root, m->cfg->ref, m->cfg->compare_exec_bit ? FS_TREE_EXEC_BIT : 0, &msg);
        if (r == -EBADMSG)
                return fail(m, "whole tree (%s): %s", why, msg);
        return r;
}

static int remount(Model *m) {
        FsMount *mnt = m->cfg->mount;
        bool crash = m->cfg->crash_remounts && chance(m, 50);
        int r = close_all(m);

        if (r < 0)
                return r;
        if (crash) {
                uint64_t dirty = 0;
                (void)fs_dirty_bytes(mnt, &dirty);
                logop(m, "kill -9 (%" PRIu64 " bytes dirty) + mount", dirty);
                r = fs_mount_kill(mnt);
                if (r < 0)
                        return fail(m, "kill: %s", strerror(-r));
        } else {
                logop(m, "unmount + mount");
                r = fs_mount_stop(mnt);
                if (r != 0)
                        return fail(m, "unmount: %s (exit status or -errno)", errname(r));
        }
        r = fs_mount_start(mnt);
        if (r < 0)
                return fail(m, "remount: %s", strerror(-r));
        return checkpoint(m, crash ? "after kill -9 and remount" : "after remount");
}

static int op_pwrite(Model *m) {
        return op_write(m, true);
}

static int op_append(Model *m) {
        return op_write(m, false);
}

/* Operations and their weights (percent). */
static const struct {
        unsigned weight;
        int (*run)(Model *m);
} ops_table[] = {
        {12, op_open},    {18, op_pwrite}, {5, op_append}, {10, op_read},  {4, op_ftruncate},
        {3, op_truncate}, {3, op_fsync},   {8, op_close},  {8, op_rename}, {5, op_mkdir},
        {3, op_rmdir},    {6, op_unlink},  {3, op_chmod},  {8, op_stat},   {4, op_readdir},
};

static int one_op(Model *m) {
        unsigned total = 0, k;

        for (size_t i = 0; i < ELEMENTSOF(ops_table); i++)
                total += ops_table[i].weight;
        k = (unsigned)rnd(m, total);
        for (size_t i = 0; i < ELEMENTSOF(ops_table); i++) {
                if (k < ops_table[i].weight)
                        return ops_table[i].run(m);
                k -= ops_table[i].weight;
        }
        return op_stat(m);
}

static void print_log(Model *m) {
        const char *all = getenv("FS_MODEL_LOG"), *tail_s = getenv("FS_MODEL_LOG_TAIL");
        size_t tail = tail_s ? strtoul(tail_s, NULL, 10) : LOG_TAIL_DEFAULT;
        size_t from = (all && streq(all, "all")) || m->nlog <= tail ? 0 : m->nlog - tail;

        fprintf(stderr, "--- op log of seed %" PRIu64 " (ops %zu..%zu of %zu) ---\n", m->cfg->seed,
                from, m->nlog, m->nlog);
        for (size_t i = from; i < m->nlog; i++)
                fprintf(stderr, "%s\n", m->log[i]);
        fprintf(stderr,
                "--- reproduce: FS_MODEL_SEED=%" PRIu64 " FS_MODEL_OPS=%u (FS_MODEL_LOG=all for "
                "the whole log) ---\n",
                m->cfg->seed, m->cfg->ops);
}

static int finish(Model *m) {
        FsMount *mnt = m->cfg->mount;
        _cleanup_free_ char *msg = NULL;
        uint64_t dirty = UINT64_MAX;
        int r = close_all(m);

        if (r < 0)
                return r;
        r = checkpoint(m, "end");
        if (r < 0 || !mnt)
                return r;
        if (m->cfg->before_flush) {
                r = m->cfg->before_flush(m->cfg->userdata);
                if (r < 0)
                        return fail(m, "before_flush hook: %s", strerror(-r));
        }
        logop(m, "flush");
        r = fs_flush(mnt, 120);
        if (r < 0)
                return fail(m, "flush: %s", strerror(-r));
        r = fs_dirty_bytes(mnt, &dirty);
        if (r < 0 || dirty != 0)
                return fail(
                        m, "after flush: dirty_bytes %" PRIu64 " (%s)", dirty,
                        r < 0 ? strerror(-r) : "should be 0");
        logop(m, "compare the share over REST with the reference");
        r = fs_share_compare(mnt->emu, mnt->share, "", m->cfg->ref, &msg);
        if (r == -EBADMSG)
                return fail(m, "share vs reference: %s", msg);
        if (r < 0)
                return fail(m, "share compare: %s", strerror(-r));
        return 0;
}

const char *fs_model_mount_options(bool async) {
        return async ? "writeback=async" : NULL; /* the default entry_timeout: bug 1 is fixed */
}

int fs_model_run(const FsModelConfig *cfg, char **reterr_msg) {
        Model m = {.cfg = cfg, .rng = cfg->seed * UINT64_C(0x9e3779b97f4a7c15) | 1};
        int r = 0;

        m.wbuf = malloc(BUF_MAX);
        m.rbuf_m = malloc(BUF_MAX);
        m.rbuf_r = malloc(BUF_MAX);
        if (!m.wbuf || !m.rbuf_m || !m.rbuf_r)
                r = -ENOMEM;
        for (m.op = 1; r == 0 && m.op <= cfg->ops; m.op++) {
                scan(&m);
                if (cfg->on_op && (r = cfg->on_op(cfg->userdata, m.op)) < 0)
                        break;
                r = one_op(&m);
                if (r == 0 && cfg->checkpoint_every && m.op % cfg->checkpoint_every == 0)
                        r = checkpoint(&m, "periodic");
                if (r == 0 && cfg->mount && cfg->remount_every && rnd(&m, cfg->remount_every) == 0)
                        r = remount(&m);
        }
        if (r == 0) {
                m.op = cfg->ops + 1;
                r = finish(&m);
        }
        if (r < 0) {
                print_log(&m);
                for (size_t i = 0; i < m.nh; i++) {
                        (void)close(m.h[i].fm);
                        (void)close(m.h[i].fr);
                        free(m.h[i].ref_rel);
                }
                m.nh = 0;
                if (reterr_msg)
                        *reterr_msg = m.err ? TAKE_PTR(m.err)
                                            : strdup(strerror(r == -EBADMSG ? EIO : -r));
        }
        entries_clear(&m);
        for (size_t i = 0; i < m.nlog; i++)
                free(m.log[i]);
        free(m.log);
        free(m.wbuf);
        free(m.rbuf_m);
        free(m.rbuf_r);
        free(m.err);
        return r;
}
