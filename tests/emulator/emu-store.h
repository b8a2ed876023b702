/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulator's share storage on disk under --data (layout and locking: top of emu-store.c).
 *
 * Paths are given as the share name plus an array of components below the share, already
 * normalized by emu_name_normalize() (the store folds case itself). n == 0 names the share's root
 * directory. The store never logs above debug; failures are negative errnos with these meanings
 * beyond the usual ones (the handlers map them to the service's codes):
 *
 *   -ENOMEDIUM  the share does not exist                      404 ShareNotFound
 *   -ESRCH      a parent directory on the path does not exist  404 ParentNotFound
 *   -ENOENT     the entry does not exist                       404 ResourceNotFound
 *   -EISDIR     wanted a file, found a directory               (404 / 409 by operation)
 *   -ENOTDIR    wanted a directory, found a file               (404 / 409 by operation)
 *   -EEXIST     the name is taken                              409 ResourceAlreadyExists
 *   -ENOTEMPTY  directory not empty                            409 DirectoryNotEmpty
 *   -EROFS      destination has the ReadOnly attribute         409 ReadOnlyAttribute
 *   -ENOLCK     leased, and no lease id given                  412 LeaseIdMissing
 *   -EPERM      leased, and the given lease id differs         412 LeaseIdMismatch...
 *   -ENOLINK    a lease id given but the file has no lease     412 LeaseNotPresent...
 *   -EALREADY   acquire on a file leased with another id       409 LeaseAlreadyPresent
 *   -ERANGE     range outside the file                         416 InvalidRange
 *   -E2BIG      properties or metadata do not fit              400 MetadataTooLarge
 *   -EINVAL     rename of a directory into itself
 *
 * Every function is thread-safe. Structures returned are owned by the caller (emu_entry_clear()).
 * Data I/O (pread/pwrite/sendfile) never happens under the store's locks. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emu-server.h"

#define EMU_FILE_SIZE_MAX (UINT64_C(4) << 40) /* 4 TiB */
#define EMU_SHARE_QUOTA_DEFAULT 5120          /* GiB */
#define EMU_SHARE_QUOTA_MAX 102400            /* GiB */

/* SMB attribute bits, in the order the service prints them. */
typedef enum EmuAttr {
        EMU_ATTR_READONLY = 1u << 0,
        EMU_ATTR_HIDDEN = 1u << 1,
        EMU_ATTR_SYSTEM = 1u << 2,
        EMU_ATTR_DIRECTORY = 1u << 3,
        EMU_ATTR_ARCHIVE = 1u << 4,
        EMU_ATTR_TEMPORARY = 1u << 5,
        EMU_ATTR_OFFLINE = 1u << 6,
        EMU_ATTR_NOT_CONTENT_INDEXED = 1u << 7,
        EMU_ATTR_NO_SCRUB_DATA = 1u << 8,
} EmuAttr;

typedef enum EmuLeaseState {
        EMU_LEASE_AVAILABLE,
        EMU_LEASE_LEASED,
        EMU_LEASE_BROKEN,
} EmuLeaseState;

#define EMU_LEASE_ID_MAX 64

/* Metadata: NULL-terminated name, value, name, value ... list (names as given). */
typedef char **EmuMeta;

/* Content headers kept with a file (x-ms-content-*), each NULL when unset. */
typedef struct EmuContent {
        char *type, *encoding, *language, *cache_control, *disposition, *md5;
} EmuContent;

/* A file or directory as the handlers see it. */
typedef struct EmuEntry {
        bool is_dir;
        uint64_t id, parent_id;
        uint64_t size; /* files */
        uint32_t attributes;
        int64_t creation_ns, last_write_ns, change_ns, last_modified_ns;
        uint64_t etag; /* printed as "0x%llX" */
        EmuLeaseState lease_state;
        char lease_id[EMU_LEASE_ID_MAX];
        char *name; /* case-preserved; "" for the share root */
        char *permission_key;
        EmuContent content;
        EmuMeta meta; /* may be NULL */
} EmuEntry;
void emu_entry_clear(EmuEntry *e);

typedef struct EmuShareInfo {
        uint64_t quota_gib;
        int64_t last_modified_ns;
        uint64_t etag;
        EmuMeta meta;
} EmuShareInfo;
void emu_share_info_clear(EmuShareInfo *i);

/* SMB properties and content headers for create / set / rename. A time of EMU_TIME_PRESERVE keeps
 * the current value, EMU_TIME_NOW takes the operation's time. attributes: 0 = preserve (set) or
 * default (create). */
#define EMU_TIME_NOW INT64_MIN
#define EMU_TIME_PRESERVE (INT64_MIN + 1)
typedef struct EmuSmbProps {
        uint32_t attributes;
        bool attributes_set;
        int64_t creation_ns, last_write_ns, change_ns;
        const char *permission_key; /* NULL: keep / default */
} EmuSmbProps;

typedef struct EmuCreateArgs {
        uint64_t size;             /* files */
        EmuSmbProps smb;           /* times: EMU_TIME_NOW or a value */
        const EmuContent *content; /* files; may be NULL */
        char *const *meta;         /* may be NULL */
        const char *lease_id;      /* for replacing a leased file */
} EmuCreateArgs;

typedef struct EmuSetArgs {
        const uint64_t *size; /* files: resize when non-NULL */
        EmuSmbProps smb;
        const EmuContent *content; /* files: replaces all content headers when non-NULL */
        const char *lease_id;
} EmuSetArgs;

typedef struct EmuRenameArgs {
        bool replace_if_exists;
        bool ignore_readonly;
        const char *source_lease_id;
        const char *destination_lease_id;
        EmuSmbProps smb;
        char *const *meta;        /* replaces metadata when non-NULL */
        const char *content_type; /* files: replaces Content-Type when non-NULL */
} EmuRenameArgs;

typedef enum EmuLeaseAction {
        EMU_LEASE_ACQUIRE,
        EMU_LEASE_CHANGE,
        EMU_LEASE_RELEASE,
        EMU_LEASE_BREAK,
} EmuLeaseAction;

typedef struct EmuRange {
        uint64_t start, end; /* inclusive */
} EmuRange;

typedef struct EmuListPage {
        EmuEntry dir; /* the listed directory */
        EmuEntry *items;
        size_t n_items;
        char *next_marker; /* NULL on the last page */
} EmuListPage;
void emu_list_page_clear(EmuListPage *p);

int emu_store_open(const char *data_dir, const char *account, EmuStore **ret);
EmuStore *emu_store_free(EmuStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(EmuStore *, emu_store_free);

/* A new ETag value, unique and increasing across the process (a FILETIME-like tick count). */
uint64_t emu_store_new_etag(EmuStore *s);

int emu_store_share_create(EmuStore *s, const char *share, uint64_t quota_gib, char *const *meta);
int emu_store_share_get(EmuStore *s, const char *share, EmuShareInfo *ret);
/* quota_gib 0: unchanged; meta NULL: unchanged. */
int emu_store_share_set(
        EmuStore *s, const char *share, uint64_t quota_gib, char *const *meta, EmuShareInfo *ret);
int emu_store_share_usage(EmuStore *s, const char *share, uint64_t *ret_bytes);
int emu_store_share_delete(EmuStore *s, const char *share);

/* Files are created or replaced; directories fail with -EEXIST when the name is taken. */
int emu_store_create(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool is_dir,
        const EmuCreateArgs *args,
        EmuEntry *ret);
/* want_dir: the entry must be a directory (else -ENOTDIR) or a file (else -EISDIR). */
int emu_store_get(
        EmuStore *s, const char *share, char *const *path, size_t n, bool want_dir, EmuEntry *ret);
int emu_store_set(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        const EmuSetArgs *args,
        EmuEntry *ret);
int emu_store_set_meta(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        char *const *meta,
        const char *lease_id,
        EmuEntry *ret);
int emu_store_delete(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        bool want_dir,
        const char *lease_id);
int emu_store_rename(
        EmuStore *s,
        const char *share,
        char *const *src,
        size_t n_src,
        char *const *dst,
        size_t n_dst,
        bool is_dir,
        const EmuRenameArgs *args,
        EmuEntry *ret);
/* lease_id: the current id (change, release), proposed: the new one (acquire, change; NULL for
 * acquire picks a random GUID). ret->lease_id holds the resulting id. */
int emu_store_lease(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        EmuLeaseAction action,
        const char *lease_id,
        const char *proposed,
        EmuEntry *ret);

/* Put Range: update writes data (len bytes) at offset; data NULL clears the range (zeros, hole).
 * The range must lie inside the file. last_write_ns: EMU_TIME_NOW or EMU_TIME_PRESERVE. */
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
        EmuEntry *ret);
/* Opens the file for reading; *ret_fd is owned by the caller. */
int emu_store_open_file(
        EmuStore *s, const char *share, char *const *path, size_t n, EmuEntry *ret, int *ret_fd);
/* The written ranges intersecting [start, end] (end clipped to the size). */
int emu_store_ranges(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        uint64_t start,
        uint64_t end,
        EmuEntry *ret,
        EmuRange **ret_ranges,
        size_t *ret_n);

/* Lists a directory: entries whose folded name starts with the folded prefix (may be NULL), from
 * marker (an opaque string from a previous next_marker, may be NULL; -EBADMSG when malformed), at
 * most max entries, in case-insensitive name order. */
int emu_store_list(
        EmuStore *s,
        const char *share,
        char *const *path,
        size_t n,
        const char *prefix,
        const char *marker,
        size_t max,
        EmuListPage *ret);

/* Parses and formats attribute lists ("ReadOnly | Archive"); parse returns -EINVAL on unknown
 * names. "None" parses to 0. */
int emu_attributes_parse(const char *s, uint32_t *ret);
/* buf of at least EMU_ATTRIBUTES_MAX bytes */
#define EMU_ATTRIBUTES_MAX 160
char *emu_attributes_format(char buf[static EMU_ATTRIBUTES_MAX], uint32_t attributes);
