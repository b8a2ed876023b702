/* SPDX-License-Identifier: MIT */
#pragma once

/* What the three parts of the emulator's share storage share: emu-store-disk.c (entries on disk:
 * names, properties in xattrs, written ranges, path resolution), emu-store.c (the store, shares,
 * namespace operations) and emu-store-data.c (file data and listings). The layout and the locking
 * rules are described at the top of emu-store.c. Not for use outside the store. */

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "emu-store.h"

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

/* ns_lock, see the locking rules in emu-store.c. */
#define RDLOCK(s) (void)pthread_rwlock_rdlock(&(s)->ns_lock)
#define WRLOCK(s) (void)pthread_rwlock_wrlock(&(s)->ns_lock)
#define UNLOCK(s) (void)pthread_rwlock_unlock(&(s)->ns_lock)

typedef struct Ranges {
        EmuRange *r;
        size_t n;
        bool overflow;
} Ranges;

typedef struct Loc {
        int share_fd;
        int parent_fd; /* == share_fd when the parent is the root */
        uint64_t parent_id;
        bool root; /* the path names the share's root directory */
        char disk[NAME_MAX + 1];
} Loc;

int store_apply_smb(EmuEntry *e, const EmuSmbProps *smb, int64_t now, bool change_default_now);
int store_check_type(const EmuEntry *e, bool want_dir);
void store_content_clear(EmuContent *c);
int store_content_copy(const EmuContent *src, EmuContent *dst);
int store_entry_load(int fd, uint64_t parent_id, bool with_meta, EmuEntry *ret);
int store_lease_check(const EmuEntry *e, const char *lease_id);
void store_loc_done(Loc *l);
int store_loc_open(const Loc *l, int flags);
int store_locate(EmuStore *s, const char *share, char *const *path, size_t n, Loc *ret);
int store_meta_read(int fd, const char *xname, EmuMeta *ret);
int store_meta_write(int fd, const char *xname, char *const *meta);
int store_open_share(EmuStore *s, const char *share);
int64_t store_pick_time(int64_t want, int64_t current, int64_t now);
int store_props_read(int fd, EmuEntry *e);
int store_props_write(int fd, const EmuEntry *e);
int store_ranges_add(Ranges *rs, uint64_t start, uint64_t end);
int store_ranges_read(int fd, Ranges *ret);
int store_ranges_sub(Ranges *rs, uint64_t start, uint64_t end);
int store_ranges_write(int fd, const Ranges *rs);
pthread_mutex_t *store_stripe_of(EmuStore *s, const struct stat *st);
int store_strv_copy(char *const *v, char ***ret);
void store_strv_free(char **v);
int store_xattr_set(int fd, const char *name, const void *value, size_t size);
