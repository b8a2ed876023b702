/* SPDX-License-Identifier: MIT */
#include "fs-inode.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "rest-names.h"

struct InodeTable {
        Inode **by_ino;
        Inode **by_path;
        size_t n_buckets; /* power of two */
        size_t n;
        uint64_t next_ino;
};

uint64_t fs_path_hash(const char *path) {
        return rest_name_hash(path);
}

int fs_path_join(const char *dir, const char *name, char **ret) {
        char *s;
        int r = isempty(dir) ? asprintf(&s, "%s", name) : asprintf(&s, "%s/%s", dir, name);
        if (r < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

const char *fs_path_after_prefix(const char *path, const char *prefix, bool or_equal) {
        const char *rest;

        if (prefix[0] == '\0')
                return or_equal || path[0] != '\0' ? path : NULL;
        rest = rest_path_after_prefix(path, prefix);
        return rest && (rest[0] == '/' || (or_equal && rest[0] == '\0')) ? rest : NULL;
}

bool fs_path_has_prefix(const char *path, const char *prefix, bool or_equal) {
        return fs_path_after_prefix(path, prefix, or_equal) != NULL;
}

static uint64_t ino_hash(uint64_t ino) {
        return ino * UINT64_C(0x9E3779B97F4A7C15);
}

int inode_table_new(InodeTable **ret) {
        InodeTable *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->n_buckets = 1024;
        t->next_ino = FS_ROOT_INO;
        t->by_ino = calloc(t->n_buckets, sizeof(Inode *));
        t->by_path = calloc(t->n_buckets, sizeof(Inode *));
        if (!t->by_ino || !t->by_path) {
                free(t->by_ino);
                free(t->by_path);
                free(t);
                return -ENOMEM;
        }
        *ret = t;
        return 0;
}

void inode_free(Inode *i) {
        if (!i)
                return;
        free(i->path);
        free(i->rec_moving);
        free(i->rec_void_if_gone);
        free(i->pieces);
        free(i->names);
        free(i);
}

/* Whether name's hash is in d's sorted name hashes; *ret_slot: where it is, or would go. */
static bool names_find(const Inode *d, const char *name, uint64_t *ret_hash, size_t *ret_slot) {
        uint64_t h = fs_path_hash(name);
        size_t lo = 0, hi = d->n_names;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (d->names[mid] < h)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_hash = h;
        *ret_slot = lo;
        return lo < d->n_names && d->names[lo] == h;
}

bool inode_names_has(const Inode *d, const char *name) {
        uint64_t h;
        size_t k;
        return names_find(d, name, &h, &k);
}

void inode_names_clear(Inode *d) {
        free(d->names);
        d->names = NULL;
        d->n_names = d->names_alloc = 0;
        d->names_complete = false;
        d->names_until_ns = 0;
}

void inode_names_add(Inode *d, const char *name) {
        uint64_t h;
        size_t k;

        if (!d->names_complete || names_find(d, name, &h, &k))
                return;
        if (d->n_names >= FS_DIR_NAMES_MAX) {
                inode_names_clear(d);
                return;
        }
        if (d->n_names == d->names_alloc) {
                size_t na = d->names_alloc ? d->names_alloc * 2 : 16;
                uint64_t *n = realloc(d->names, na * sizeof(*n));
                if (!n) {
                        inode_names_clear(d);
                        return;
                }
                d->names = n;
                d->names_alloc = na;
        }
        memmove(d->names + k + 1, d->names + k, (d->n_names - k) * sizeof(*d->names));
        d->names[k] = h;
        d->n_names++;
}

void inode_names_remove(Inode *d, const char *name) {
        uint64_t h;
        size_t k;

        if (!d->names_complete || !names_find(d, name, &h, &k))
                return;
        memmove(d->names + k, d->names + k + 1, (d->n_names - k - 1) * sizeof(*d->names));
        d->n_names--;
}

InodeTable *inode_table_free(InodeTable *t) {
        if (!t)
                return NULL;
        for (size_t b = 0; b < t->n_buckets; b++)
                for (Inode *i = t->by_ino[b], *next; i; i = next) {
                        next = i->next_by_ino;
                        inode_free(i);
                }
        free(t->by_ino);
        free(t->by_path);
        free(t);
        return NULL;
}

Inode *inode_table_get(InodeTable *t, uint64_t ino) {
        for (Inode *i = t->by_ino[ino_hash(ino) & (t->n_buckets - 1)]; i; i = i->next_by_ino)
                if (i->ino == ino)
                        return i;
        return NULL;
}

Inode *inode_table_find(InodeTable *t, const char *path) {
        for (Inode *i = t->by_path[fs_path_hash(path) & (t->n_buckets - 1)]; i; i = i->next_by_path)
                if (rest_name_casecmp(i->path, path) == 0)
                        return i;
        return NULL;
}

static void link_path(InodeTable *t, Inode *i) {
        size_t b = fs_path_hash(i->path) & (t->n_buckets - 1);
        i->next_by_path = t->by_path[b];
        t->by_path[b] = i;
}

static void unlink_path(InodeTable *t, Inode *i) {
        for (Inode **p = &t->by_path[fs_path_hash(i->path) & (t->n_buckets - 1)]; *p;
             p = &(*p)->next_by_path)
                if (*p == i) {
                        *p = i->next_by_path;
                        i->next_by_path = NULL;
                        return;
                }
}

static void link_ino(InodeTable *t, Inode *i) {
        size_t b = ino_hash(i->ino) & (t->n_buckets - 1);
        i->next_by_ino = t->by_ino[b];
        t->by_ino[b] = i;
}

static int grow(InodeTable *t) {
        size_t n = t->n_buckets * 2;
        Inode **bi = calloc(n, sizeof(Inode *)), **bp = calloc(n, sizeof(Inode *));
        Inode **old = t->by_ino;
        size_t old_n = t->n_buckets;

        if (!bi || !bp) {
                free(bi);
                free(bp);
                return -ENOMEM;
        }
        free(t->by_path);
        t->by_ino = bi;
        t->by_path = bp;
        t->n_buckets = n;
        for (size_t b = 0; b < old_n; b++)
                for (Inode *i = old[b], *next; i; i = next) {
                        next = i->next_by_ino;
                        link_ino(t, i);
                        i->next_by_path = NULL;
                        if (!i->unlinked)
                                link_path(t, i);
                }
        free(old);
        return 0;
}

int inode_table_add(InodeTable *t, const char *path, bool is_dir, Inode **ret) {
        Inode *i;

        if (t->n >= t->n_buckets && grow(t) < 0)
                return -ENOMEM;
        i = calloc(1, sizeof(*i));
        if (!i)
                return -ENOMEM;
        i->path = strdup(path);
        if (!i->path) {
                free(i);
                return -ENOMEM;
        }
        i->ino = t->next_ino++;
        i->is_dir = is_dir;
        i->cache_fd = -EBADF;
        i->sidecar_fd = -EBADF;
        link_ino(t, i);
        link_path(t, i);
        t->n++;
        *ret = i;
        return 0;
}

void inode_table_remove(InodeTable *t, Inode *i) {
        if (!i->unlinked)
                unlink_path(t, i);
        for (Inode **p = &t->by_ino[ino_hash(i->ino) & (t->n_buckets - 1)]; *p;
             p = &(*p)->next_by_ino)
                if (*p == i) {
                        *p = i->next_by_ino;
                        break;
                }
        t->n--;
}

/* Marks i as no longer reachable by path (deleted or replaced on the share). */
static void detach(InodeTable *t, Inode *i) {
        if (i->unlinked)
                return;
        unlink_path(t, i);
        i->unlinked = true;
}

int inode_table_rename(InodeTable *t, Inode *i, const char *new_path, Inode **ret_displaced) {
        _cleanup_free_ char *old_path = strdup(i->path);
        char *np = strdup(new_path);
        Inode *d;

        if (!old_path || !np) {
                free(np);
                return -ENOMEM;
        }
        d = inode_table_find(t, new_path);
        if (d == i)
                d = NULL;
        if (d)
                detach(t, d);
        if (!i->unlinked)
                unlink_path(t, i);
        free(i->path);
        i->path = np;
        i->path_gen++;
        i->unlinked = false;
        link_path(t, i);

        if (i->is_dir) {
                for (size_t b = 0; b < t->n_buckets; b++)
                        for (Inode *c = t->by_ino[b]; c; c = c->next_by_ino) {
                                const char *below;
                                char *p;
                                if (c == i || c->unlinked ||
                                    !(below = fs_path_after_prefix(c->path, old_path, false)))
                                        continue;
                                if (asprintf(&p, "%s%s", new_path, below) < 0)
                                        return -ENOMEM;
                                unlink_path(t, c);
                                free(c->path);
                                c->path = p;
                                c->path_gen++;
                                link_path(t, c);
                        }
        }
        *ret_displaced = d;
        return 0;
}

size_t inode_table_size(const InodeTable *t) {
        return t->n;
}

void inode_table_detach(InodeTable *t, Inode *i) {
        detach(t, i);
}
