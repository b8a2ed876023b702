/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared by the File REST handlers (emu-files*.c): the parsed request context, header parsers that
 * answer the service's 400s themselves, the store-errno-to-service-error table, and the response
 * headers every entry carries. Functions returning int reply on failure (< 0) unless noted. */

#include <stdbool.h>
#include <stdint.h>

#include "emu-server.h"
#include "emu-store.h"

typedef struct FilesCtx {
        EmuRequest *req;
        EmuStore *store;
        const char *version; /* a supported one */
        const char *share;
        char **path; /* normalized components below the share */
        size_t n;
} FilesCtx;

/* x-ms-version >= v (versions are YYYY-MM-DD and compare as strings). */
bool files_version_ge(const FilesCtx *c, const char *v);

int files_reply_missing_header(EmuRequest *req, const char *name);
int files_reply_invalid_header(EmuRequest *req, const char *name, const char *value);
int files_reply_invalid_query(EmuRequest *req, const char *name, const char *value);
/* Maps a store failure (see emu-store.h) to the service's error for req->op and replies. */
int files_reply_store_error(FilesCtx *c, int r);

/* Parsers: return 0 or reply and return < 0. */
int files_parse_u64(EmuRequest *req, const char *header, const char *value, uint64_t *ret);
/* "bytes=S-E" (has_end) or "bytes=S-". */
int files_parse_range(const char *value, uint64_t *start, uint64_t *end, bool *has_end);
/* The x-ms-meta-* headers as a NULL-terminated name/value list (NULL when none). */
int files_parse_meta(EmuRequest *req, char ***ret);
/* SMB headers. for_create: missing values default to now/default; otherwise to preserve. Before
 * 2021-06-08 (and from 2019-02-02) they are required on create and set properties. */
int files_parse_smb(FilesCtx *c, bool for_create, bool is_dir, EmuSmbProps *ret, char **ret_key);

/* Finishes a write that changed an entry: on r < 0 the store error, else ETag/Last-Modified,
 * x-ms-request-server-encrypted, the SMB properties when smb, an empty reply with status; clears
 * *e. */
void files_reply_changed(FilesCtx *c, int r, EmuEntry *e, unsigned status, bool smb);

/* Response headers. */
void files_header_etag(EmuRequest *req, const EmuEntry *e);
void files_header_smb(FilesCtx *c, const EmuEntry *e);
void files_header_meta(EmuRequest *req, char *const *meta);

void files_strv_free(char **v);
static inline void files_strv_freep(char ***v) {
        files_strv_free(*v);
        *v = NULL;
}

/* Operation handlers, one per file. */
void files_handle_list(FilesCtx *c);
void files_handle_file(FilesCtx *c);
