/* SPDX-License-Identifier: MIT */
/* The File REST API: version check, authentication, request path normalization, then share and
 * directory operations here, listing in emu-files-list.c, file operations in emu-files-file.c.
 *
 * Decisions where the service's behaviour is not recorded (see also emu-store.h):
 *  - An unknown method answers 405 UnsupportedHttpVerb; a known method with a comp= or restype=
 *    the service does not have answers 400 InvalidQueryParameterValue naming the parameter; any
 *    other unroutable URL 400 InvalidUri.
 *  - Create File over an existing directory, and Create Directory over a file, answer 409
 *    ResourceAlreadyExists (one namespace).
 *  - Before 2019-02-02 (no SMB properties in REST) the x-ms-file-* response headers are left out,
 * as the 2018-11-09 recordings show.
 *  - Metadata is limited by what the file system's xattrs hold (about 4 KiB on ext4) and to 64
 *    pairs: beyond, 400 MetadataTooLarge. */
#include "emu-files.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu-auth.h"
#include "emu-files-common.h"
#include "emu-names.h"
#include "emu-store.h"
#include "log.h"
#include "time-util.h"

/* The service's limit: names and values of all of an entry's pairs; no count of its own. */
#define META_BYTES_MAX 8192
#define SDDL_MAX 8192

static const char *const supported_versions[] = {
        "2018-11-09", "2019-02-02", "2019-07-07", "2019-10-10", "2019-12-12", "2020-02-10",
        "2020-04-08", "2020-06-12", "2020-08-04", "2020-10-02", "2020-12-06", "2021-02-12",
        "2021-04-10", "2021-06-08", "2021-08-06", "2021-10-04", "2021-12-02", "2022-11-02",
        "2023-01-03", "2023-05-03", "2023-08-03", "2023-11-03", "2024-02-04", "2024-05-04",
        "2024-08-04", "2024-11-04", "2025-01-05", "2025-05-05",
};

bool files_version_ge(const FilesCtx *c, const char *v) {
        return strcmp(c->version, v) >= 0;
}

void files_strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

/* ---- errors ------------------------------------------------------------------------------- */

int files_reply_missing_header(EmuRequest *req, const char *name) {
        const char *extra[] = {"HeaderName", name, NULL};
        (void)emu_reply_error(req, 400, "MissingRequiredHeader", NULL, extra);
        return -EINVAL;
}

int files_reply_invalid_header(EmuRequest *req, const char *name, const char *value) {
        const char *extra[] = {"HeaderName", name, "HeaderValue", value ? value : "", NULL};
        (void)emu_reply_error(req, 400, "InvalidHeaderValue", NULL, extra);
        return -EINVAL;
}

int files_reply_invalid_query(EmuRequest *req, const char *name, const char *value) {
        const char *extra[] = {
                "QueryParameterName", name, "QueryParameterValue", value ? value : "", NULL};
        (void)emu_reply_error(req, 400, "InvalidQueryParameterValue", NULL, extra);
        return -EINVAL;
}

static bool is_lease_op(const EmuRequest *req) {
        return req->op == EMU_OP_LEASE_FILE;
}

int files_reply_store_error(FilesCtx *c, int r) {
        EmuRequest *req = c->req;

        switch (r) {
        case -ENOMEDIUM:
                return emu_reply_error(req, 404, "ShareNotFound", NULL, NULL);
        case -ESRCH:
                return emu_reply_error(req, 404, "ParentNotFound", NULL, NULL);
        case -ENOENT:
        case -EISDIR:
        case -ENOTDIR:
                return emu_reply_error(req, 404, "ResourceNotFound", NULL, NULL);
        case -EEXIST:
                if (req->op == EMU_OP_CREATE_SHARE)
                        return emu_reply_error(req, 409, "ShareAlreadyExists", NULL, NULL);
                return emu_reply_error(req, 409, "ResourceAlreadyExists", NULL, NULL);
        case -ENOTEMPTY:
                return emu_reply_error(req, 409, "DirectoryNotEmpty", NULL, NULL);
        case -EROFS:
                return emu_reply_error(req, 409, "ReadOnlyAttribute", NULL, NULL);
        case -ENOLCK:
                return emu_reply_error(req, 412, "LeaseIdMissing", NULL, NULL);
        case -EPERM:
                if (is_lease_op(req))
                        return emu_reply_error(
                                req, 409, "LeaseIdMismatchWithLeaseOperation", NULL, NULL);
                return emu_reply_error(req, 412, "LeaseIdMismatchWithFileOperation", NULL, NULL);
        case -ENOLINK:
                if (is_lease_op(req))
                        return emu_reply_error(
                                req, 409, "LeaseNotPresentWithLeaseOperation", NULL, NULL);
                return emu_reply_error(req, 412, "LeaseNotPresentWithFileOperation", NULL, NULL);
        case -EALREADY:
                return emu_reply_error(req, 409, "LeaseAlreadyPresent", NULL, NULL);
        case -ERANGE:
                return emu_reply_error(req, 416, "InvalidRange", NULL, NULL);
        case -E2BIG:
                return emu_reply_error(
                        req, 400, "MetadataTooLarge",
                        "The size of the specified metadata exceeds the maximum size permitted.",
                        NULL);
        case -EINVAL:
                return emu_reply_error(req, 400, "InvalidInput", NULL, NULL);
        default:
                log_debug_errno(r, "Store failure for %s: %m", req->raw_uri);
                return emu_reply_error(req, 500, "InternalError", NULL, NULL);
        }
}

/* ---- parsers ------------------------------------------------------------------------------ */

static int parse_u64_strict(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        *ret = v;
        return 0;
}

int files_parse_u64(EmuRequest *req, const char *header, const char *value, uint64_t *ret) {
        if (parse_u64_strict(value, ret) < 0)
                return files_reply_invalid_header(req, header, value), -EINVAL;
        return 0;
}

int files_parse_range(const char *value, uint64_t *start, uint64_t *end, bool *has_end) {
        const char *dash;
        char buf[32];
        size_t len;

        if (strncmp(value, "bytes=", 6) != 0)
                return -EINVAL;
        value += 6;
        dash = strchr(value, '-');
        if (!dash)
                return -EINVAL;
        len = (size_t)(dash - value);
        if (len == 0 || len >= sizeof(buf))
                return -EINVAL;
        memcpy(buf, value, len);
        buf[len] = '\0';
        if (parse_u64_strict(buf, start) < 0)
                return -EINVAL;
        if (dash[1] == '\0') {
                *has_end = false;
                *end = UINT64_MAX;
                return 0;
        }
        if (parse_u64_strict(dash + 1, end) < 0 || *end < *start)
                return -EINVAL;
        *has_end = true;
        return 0;
}

typedef struct MetaCollect {
        char **v; /* name, value, ..., NULL */
        size_t n, alloc;
        size_t bytes;
        int error;
} MetaCollect;

static int meta_cb(void *userdata, const char *name, const char *value) {
        MetaCollect *m = userdata;
        const char *key;

        if (strncasecmp(name, "x-ms-meta-", 10) != 0)
                return 0;
        key = name + 10;
        if (*key == '\0') {
                m->error = -EINVAL;
                return 1;
        }
        m->bytes += strlen(key) + strlen(value);
        if (m->bytes > META_BYTES_MAX) {
                m->error = -E2BIG;
                return 1;
        }
        /* At most META_BYTES_MAX pairs (a name is never empty), and a NULL after them. */
        if (array_reserve((void **)&m->v, &m->alloc, m->n + 3, sizeof(char *)) < 0) {
                m->error = -ENOMEM;
                return 1;
        }
        m->v[m->n + 2] = NULL;
        m->v[m->n] = strdup(key);
        m->v[m->n + 1] = strdup(value);
        if (!m->v[m->n] || !m->v[m->n + 1]) {
                free(m->v[m->n]);
                free(m->v[m->n + 1]);
                m->v[m->n] = m->v[m->n + 1] = NULL;
                m->error = -ENOMEM;
                return 1;
        }
        m->n += 2;
        return 0;
}

int files_parse_meta(EmuRequest *req, char ***ret) {
        MetaCollect m = {0};

        (void)emu_request_foreach_header(req, meta_cb, &m);
        if (m.error < 0) {
                files_strv_free(m.v);
                if (m.error == -E2BIG)
                        (void)emu_reply_error(
                                req, 400, "MetadataTooLarge",
                                "The size of the specified metadata exceeds the maximum size permitted.",
                                NULL);
                else if (m.error == -EINVAL)
                        (void)emu_reply_error(req, 400, "InvalidMetadata", NULL, NULL);
                else
                        (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                return m.error;
        }
        if (m.n == 0) {
                free(m.v);
                m.v = NULL;
        }
        *ret = m.v;
        return 0;
}

static int
parse_time(FilesCtx *c, const char *header, bool allow_preserve, int64_t dflt, int64_t *ret) {
        const char *v = emu_request_header(c->req, header);

        if (!v) {
                *ret = dflt;
                return 0;
        }
        if (strcasecmp(v, "now") == 0) {
                *ret = EMU_TIME_NOW;
                return 0;
        }
        if (allow_preserve && strcasecmp(v, "preserve") == 0) {
                *ret = EMU_TIME_PRESERVE;
                return 0;
        }
        if (parse_iso8601(v, ret) < 0)
                return files_reply_invalid_header(c->req, header, v), -EINVAL;
        return 0;
}

static char *permission_key_for(const char *sddl) {
        uint64_t h = UINT64_C(1469598103934665603);
        char *k;

        for (const unsigned char *p = (const unsigned char *)sddl; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        if (asprintf(&k, "%llu*16137673612980802019", (unsigned long long)h) < 0)
                return NULL;
        return k;
}

int files_parse_smb(FilesCtx *c, bool for_create, bool is_dir, EmuSmbProps *ret, char **ret_key) {
        EmuRequest *req = c->req;
        const char *perm = emu_request_header(req, "x-ms-file-permission");
        const char *key = emu_request_header(req, "x-ms-file-permission-key");
        const char *attrs = emu_request_header(req, "x-ms-file-attributes");
        int64_t dflt = for_create ? EMU_TIME_NOW : EMU_TIME_PRESERVE;
        EmuSmbProps smb = {.creation_ns = dflt, .last_write_ns = dflt, .change_ns = dflt};
        int r;

        *ret_key = NULL;
        if (!files_version_ge(c, "2019-02-02")) {
                /* No SMB properties in this version: everything defaults. */
                *ret = smb;
                return 0;
        }
        if (!files_version_ge(c, "2021-06-08")) {
                if (!perm && !key)
                        return files_reply_missing_header(req, "x-ms-file-permission");
                if (!attrs)
                        return files_reply_missing_header(req, "x-ms-file-attributes");
                if (!emu_request_header(req, "x-ms-file-creation-time"))
                        return files_reply_missing_header(req, "x-ms-file-creation-time");
                if (!emu_request_header(req, "x-ms-file-last-write-time"))
                        return files_reply_missing_header(req, "x-ms-file-last-write-time");
        }
        if (perm && key)
                return files_reply_invalid_header(req, "x-ms-file-permission-key", key);
        if (perm && strcasecmp(perm, "inherit") != 0 &&
            !(!for_create && strcasecmp(perm, "preserve") == 0)) {
                if (strlen(perm) > SDDL_MAX)
                        return emu_reply_error(
                                       req, 400, "FileInvalidPermission",
                                       "The specified permission is too large.", NULL),
                               -EINVAL;
                if (perm[0] != 'O' && perm[0] != 'G' && perm[0] != 'D' && perm[0] != 'S')
                        return emu_reply_error(
                                       req, 400, "FileInvalidPermission",
                                       "The specified permission is not valid.", NULL),
                               -EINVAL;
                *ret_key = permission_key_for(perm);
                if (!*ret_key)
                        return emu_reply_error(req, 500, "InternalError", NULL, NULL), -ENOMEM;
        } else if (key) {
                *ret_key = strdup(key);
                if (!*ret_key)
                        return emu_reply_error(req, 500, "InternalError", NULL, NULL), -ENOMEM;
        }
        smb.permission_key = *ret_key;
        if (attrs && !(!for_create && strcasecmp(attrs, "preserve") == 0)) {
                if (emu_attributes_parse(attrs, &smb.attributes) < 0 ||
                    (!is_dir && (smb.attributes & EMU_ATTR_DIRECTORY))) {
                        r = files_reply_invalid_header(req, "x-ms-file-attributes", attrs);
                        goto fail;
                }
                smb.attributes_set = true;
        }
        r = parse_time(c, "x-ms-file-creation-time", !for_create, dflt, &smb.creation_ns);
        if (r >= 0)
                r = parse_time(
                        c, "x-ms-file-last-write-time", !for_create, dflt, &smb.last_write_ns);
        if (r >= 0 && files_version_ge(c, "2021-06-08"))
                r = parse_time(c, "x-ms-file-change-time", !for_create, dflt, &smb.change_ns);
        if (r < 0)
                goto fail;
        *ret = smb;
        return 0;
fail:
        free(*ret_key);
        *ret_key = NULL;
        return -EINVAL;
}

/* ---- response headers --------------------------------------------------------------------- */

void files_header_etag(EmuRequest *req, const EmuEntry *e) {
        char date[RFC1123_MAX];
        (void)emu_reply_header(req, "ETag", "\"0x%llX\"", (unsigned long long)e->etag);
        (void)emu_reply_header(
                req, "Last-Modified", "%s", format_rfc1123(date, e->last_modified_ns));
}

void files_header_smb(FilesCtx *c, const EmuEntry *e) {
        EmuRequest *req = c->req;
        char buf[ISO8601_MAX], attrs[EMU_ATTRIBUTES_MAX];

        if (!files_version_ge(c, "2019-02-02"))
                return;
        (void)emu_reply_header(
                req, "x-ms-file-attributes", "%s", emu_attributes_format(attrs, e->attributes));
        (void)emu_reply_header(
                req, "x-ms-file-creation-time", "%s", format_iso8601(buf, e->creation_ns));
        (void)emu_reply_header(
                req, "x-ms-file-last-write-time", "%s", format_iso8601(buf, e->last_write_ns));
        (void)emu_reply_header(
                req, "x-ms-file-change-time", "%s", format_iso8601(buf, e->change_ns));
        (void)emu_reply_header(req, "x-ms-file-id", "%llu", (unsigned long long)e->id);
        (void)emu_reply_header(
                req, "x-ms-file-parent-id", "%llu", (unsigned long long)e->parent_id);
        if (e->permission_key)
                (void)emu_reply_header(req, "x-ms-file-permission-key", "%s", e->permission_key);
}

void files_header_meta(EmuRequest *req, char *const *meta) {
        for (size_t i = 0; meta && meta[i] && meta[i + 1]; i += 2) {
                char name[1024];
                (void)snprintf(name, sizeof(name), "x-ms-meta-%s", meta[i]);
                (void)emu_reply_header(req, name, "%s", meta[i + 1]);
        }
}

/* ---- shares ------------------------------------------------------------------------------- */

static int parse_quota(FilesCtx *c, uint64_t *ret) {
        const char *q = emu_request_header(c->req, "x-ms-share-quota");
        uint64_t v;

        *ret = 0;
        if (!q)
                return 0;
        if (parse_u64_strict(q, &v) < 0 || v == 0 || v > EMU_SHARE_QUOTA_MAX)
                return files_reply_invalid_header(c->req, "x-ms-share-quota", q), -EINVAL;
        *ret = v;
        return 0;
}

static void share_headers(FilesCtx *c, const EmuShareInfo *info) {
        char date[RFC1123_MAX];
        (void)emu_reply_header(c->req, "ETag", "\"0x%llX\"", (unsigned long long)info->etag);
        (void)emu_reply_header(
                c->req, "Last-Modified", "%s", format_rfc1123(date, info->last_modified_ns));
}

static void handle_share(FilesCtx *c) {
        EmuRequest *req = c->req;
        _cleanup_(files_strv_freep) char **meta = NULL;
        EmuShareInfo info = {};
        uint64_t quota;
        int r;

        switch (req->op) {
        case EMU_OP_CREATE_SHARE:
                if (parse_quota(c, &quota) < 0 || files_parse_meta(req, &meta) < 0)
                        return;
                r = emu_store_share_create(
                        c->store, c->share, quota ? quota : EMU_SHARE_QUOTA_DEFAULT, meta);
                if (r >= 0)
                        r = emu_store_share_get(c->store, c->share, &info);
                if (r < 0) {
                        (void)files_reply_store_error(c, r);
                        return;
                }
                share_headers(c, &info);
                (void)emu_reply_empty(req, 201);
                break;
        case EMU_OP_GET_SHARE_PROPERTIES:
                r = emu_store_share_get(c->store, c->share, &info);
                if (r < 0) {
                        (void)files_reply_store_error(c, r);
                        return;
                }
                share_headers(c, &info);
                files_header_meta(req, info.meta);
                (void)emu_reply_header(
                        req, "x-ms-share-quota", "%llu", (unsigned long long)info.quota_gib);
                (void)emu_reply_header(req, "x-ms-lease-state", "available");
                (void)emu_reply_header(req, "x-ms-lease-status", "unlocked");
                if (streq(req->method, "HEAD"))
                        (void)emu_reply_head(req, 200, NULL, 0);
                else
                        (void)emu_reply_empty(req, 200);
                break;
        case EMU_OP_SET_SHARE_PROPERTIES:
                if (parse_quota(c, &quota) < 0)
                        return;
                r = emu_store_share_set(c->store, c->share, quota, NULL, &info);
                if (r < 0) {
                        (void)files_reply_store_error(c, r);
                        return;
                }
                share_headers(c, &info);
                (void)emu_reply_empty(req, 200);
                break;
        case EMU_OP_GET_SHARE_STATS: {
                uint64_t usage;
                char *body;
                int k;

                r = emu_store_share_usage(c->store, c->share, &usage);
                if (r >= 0)
                        r = emu_store_share_get(c->store, c->share, &info);
                if (r < 0) {
                        (void)files_reply_store_error(c, r);
                        return;
                }
                share_headers(c, &info);
                k = asprintf(
                        &body,
                        "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?><ShareStats>"
                        "<ShareUsageBytes>%llu</ShareUsageBytes></ShareStats>",
                        (unsigned long long)usage);
                if (k < 0)
                        (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                else
                        (void)emu_reply_body_take(req, 200, "application/xml", body, (size_t)k);
                break;
        }
        case EMU_OP_DELETE_SHARE:
                r = emu_store_share_delete(c->store, c->share);
                if (r < 0) {
                        (void)files_reply_store_error(c, r);
                        return;
                }
                (void)emu_reply_empty(req, 202);
                break;
        default:
                (void)emu_reply_error(req, 400, "InvalidUri", NULL, NULL);
        }
        emu_share_info_clear(&info);
}

/* ---- directories -------------------------------------------------------------------------- */

static void reply_entry(FilesCtx *c, const EmuEntry *e, unsigned status, bool meta) {
        files_header_etag(c->req, e);
        (void)emu_reply_header(
                c->req,
                c->req->op == EMU_OP_GET_DIRECTORY_PROPERTIES ? "x-ms-server-encrypted"
                                                              : "x-ms-request-server-encrypted",
                "true");
        if (c->req->op != EMU_OP_SET_DIRECTORY_METADATA)
                files_header_smb(c, e);
        if (meta)
                files_header_meta(c->req, e->meta);
        if (streq(c->req->method, "HEAD"))
                (void)emu_reply_head(c->req, status, NULL, 0);
        else
                (void)emu_reply_empty(c->req, status);
}

static void handle_directory(FilesCtx *c) {
        EmuRequest *req = c->req;
        _cleanup_(files_strv_freep) char **meta = NULL;
        _cleanup_free_ char *key = NULL;
        EmuEntry e = {};
        EmuSmbProps smb;
        int r;

        switch (req->op) {
        case EMU_OP_CREATE_DIRECTORY: {
                EmuCreateArgs a = {};
                if (files_parse_smb(c, true, true, &smb, &key) < 0 ||
                    files_parse_meta(req, &meta) < 0)
                        return;
                a.smb = smb;
                a.meta = meta;
                r = emu_store_create(c->store, c->share, c->path, c->n, true, &a, &e);
                if (r < 0)
                        break;
                reply_entry(c, &e, 201, false);
                break;
        }
        case EMU_OP_GET_DIRECTORY_PROPERTIES:
                r = emu_store_get(c->store, c->share, c->path, c->n, true, &e);
                if (r < 0)
                        break;
                reply_entry(c, &e, 200, true);
                break;
        case EMU_OP_SET_DIRECTORY_PROPERTIES: {
                EmuSetArgs a = {};
                if (files_parse_smb(c, false, true, &smb, &key) < 0)
                        return;
                a.smb = smb;
                r = emu_store_set(c->store, c->share, c->path, c->n, true, &a, &e);
                if (r < 0)
                        break;
                reply_entry(c, &e, 200, false);
                break;
        }
        case EMU_OP_SET_DIRECTORY_METADATA:
                if (files_parse_meta(req, &meta) < 0)
                        return;
                r = emu_store_set_meta(c->store, c->share, c->path, c->n, true, meta, NULL, &e);
                if (r < 0)
                        break;
                reply_entry(c, &e, 200, false);
                break;
        case EMU_OP_DELETE_DIRECTORY:
                r = emu_store_delete(c->store, c->share, c->path, c->n, true, NULL);
                if (r < 0)
                        break;
                (void)emu_reply_empty(req, 202);
                break;
        default:
                r = 0;
                (void)emu_reply_error(req, 400, "InvalidUri", NULL, NULL);
        }
        if (r < 0)
                (void)files_reply_store_error(c, r);
        emu_entry_clear(&e);
}

/* ---- rename (files and directories) --------------------------------------------------------- */

static bool header_true(EmuRequest *req, const char *name, bool *ret, int *error) {
        const char *v = emu_request_header(req, name);
        *ret = false;
        if (!v)
                return true;
        if (strcasecmp(v, "true") == 0)
                *ret = true;
        else if (strcasecmp(v, "false") != 0) {
                *error = files_reply_invalid_header(req, name, v);
                return false;
        }
        return true;
}

/* Splits the rename source (a URL of this service, a path "/account/share/...", "/share/..." or
 * a path relative to the share) into normalized components; replies on failure. */
static int parse_rename_source(FilesCtx *c, const char *source, char ***ret, size_t *ret_n) {
        EmuRequest *req = c->req;
        _cleanup_free_ char *raw = NULL;
        char **segments = NULL, *path_copy = NULL, *query_copy = NULL;
        unsigned n_segments = 0;
        EmuQueryParam *params = NULL;
        size_t n_params = 0, skip = 0, n;
        char **out = NULL;
        const char *p = source;
        bool allow_dot = false;
        int r;

        if (strlen(source) > 2048)
                return files_reply_invalid_header(req, "x-ms-file-rename-source", source);
        if (strstr(p, "://")) {
                p = strchr(strstr(p, "://") + 3, '/');
                if (!p)
                        return files_reply_invalid_header(req, "x-ms-file-rename-source", source);
        }
        if (p[0] == '/')
                raw = strdup(p);
        else if (asprintf(&raw, "/%s/%s", c->share, p) < 0)
                raw = NULL;
        if (!raw)
                return emu_reply_error(req, 500, "InternalError", NULL, NULL), -ENOMEM;
        r = emu_parse_uri(raw, &path_copy, &query_copy, &segments, &n_segments, &params, &n_params);
        free(path_copy);
        free(query_copy);
        emu_query_params_free(params, n_params);
        if (r < 0)
                return files_reply_invalid_header(req, "x-ms-file-rename-source", source);
        if (n_segments > 0 && streq(segments[0], req->emu->account))
                skip = 1;
        if (n_segments < skip + 2 || !streq(segments[skip], c->share)) {
                r = files_reply_invalid_header(req, "x-ms-file-rename-source", source);
                goto out;
        }
        if (files_version_ge(c, "2022-11-02")) {
                const char *v = emu_request_header(req, "x-ms-source-allow-trailing-dot");
                allow_dot = v && strcasecmp(v, "true") == 0;
        }
        n = n_segments - skip - 1;
        out = calloc(n + 1, sizeof(char *));
        if (!out) {
                (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                r = emu_name_normalize(segments[skip + 1 + i], allow_dot, &out[i]);
                if (r < 0) {
                        files_strv_free(out);
                        (void)emu_reply_error(
                                req, 400,
                                r == -ENAMETOOLONG ? "InvalidFileOrDirectoryPathName"
                                                   : "InvalidResourceName",
                                NULL, NULL);
                        r = -EINVAL;
                        goto out;
                }
        }
        *ret = out;
        *ret_n = n;
        r = 0;
out:
        for (unsigned i = 0; i < n_segments; i++)
                free(segments[i]);
        free(segments);
        return r < 0 ? r : 0;
}

static void handle_rename(FilesCtx *c, bool is_dir) {
        EmuRequest *req = c->req;
        const char *source = emu_request_header(req, "x-ms-file-rename-source");
        _cleanup_(files_strv_freep) char **meta = NULL, **src = NULL;
        _cleanup_free_ char *key = NULL;
        EmuRenameArgs a = {};
        EmuEntry e = {};
        size_t n_src = 0;
        int err = 0, r;

        if (!files_version_ge(c, "2021-04-10")) {
                (void)files_reply_invalid_query(req, "comp", "rename");
                return;
        }
        if (!source) {
                (void)files_reply_missing_header(req, "x-ms-file-rename-source");
                return;
        }
        if (!header_true(req, "x-ms-file-rename-replace-if-exists", &a.replace_if_exists, &err) ||
            !header_true(req, "x-ms-file-rename-ignore-readonly", &a.ignore_readonly, &err))
                return;
        if (parse_rename_source(c, source, &src, &n_src) < 0)
                return;
        if (files_parse_smb(c, false, is_dir, &a.smb, &key) < 0 || files_parse_meta(req, &meta) < 0)
                return;
        /* Rename keeps the times unless told otherwise; only the change time moves. */
        a.meta = meta;
        a.source_lease_id = emu_request_header(req, "x-ms-source-lease-id");
        a.destination_lease_id = emu_request_header(req, "x-ms-destination-lease-id");
        if (!is_dir)
                a.content_type = emu_request_header(req, "x-ms-content-type");
        r = emu_store_rename(c->store, c->share, src, n_src, c->path, c->n, is_dir, &a, &e);
        files_reply_changed(c, r, &e, 200, true);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static const char *check_version(EmuRequest *req) {
        if (!req->version) {
                (void)files_reply_missing_header(req, "x-ms-version");
                return NULL;
        }
        for (size_t i = 0; i < ELEMENTSOF(supported_versions); i++)
                if (streq(req->version, supported_versions[i]))
                        return supported_versions[i];
        (void)files_reply_invalid_header(req, "x-ms-version", req->version);
        return NULL;
}

static void reply_invalid_op(EmuRequest *req) {
        const char *m = req->method;
        const char *comp = emu_request_query(req, "comp");
        const char *restype = emu_request_query(req, "restype");

        if (!streq(m, "GET") && !streq(m, "HEAD") && !streq(m, "PUT") && !streq(m, "DELETE"))
                (void)emu_reply_error(req, 405, "UnsupportedHttpVerb", NULL, NULL);
        else if (restype && !streq(restype, "share") && !streq(restype, "directory"))
                (void)files_reply_invalid_query(req, "restype", restype);
        else if (comp)
                (void)files_reply_invalid_query(req, "comp", comp);
        else
                (void)emu_reply_error(req, 400, "InvalidUri", NULL, NULL);
}

void emu_files_handle(EmuRequest *req) {
        FilesCtx c = {.req = req, .store = req->emu->store};
        _cleanup_(files_strv_freep) char **path = NULL;
        bool allow_dot = false;
        int r;

        c.version = check_version(req);
        if (!c.version)
                return;
        if (emu_auth_check(req) < 0)
                return;
        if (req->op < 0) {
                reply_invalid_op(req);
                return;
        }
        if (req->n_segments < 1 || !streq(req->segments[0], req->emu->account)) {
                (void)emu_reply_error(req, 400, "InvalidUri", NULL, NULL);
                return;
        }
        if (req->op == EMU_OP_LIST_SHARES) {
                (void)emu_reply_error(
                        req, 501, "NotImplemented", "List Shares is not implemented.", NULL);
                return;
        }
        c.share = req->segments[1];
        if (emu_share_name_validate(c.share) < 0) {
                (void)emu_reply_error(req, 400, "InvalidResourceName", NULL, NULL);
                return;
        }
        if (files_version_ge(&c, "2022-11-02")) {
                const char *v = emu_request_header(req, "x-ms-allow-trailing-dot");
                allow_dot = v && strcasecmp(v, "true") == 0;
        }
        c.n = req->n_segments - 2;
        path = calloc(c.n + 1, sizeof(char *));
        if (!path) {
                (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                return;
        }
        for (size_t i = 0; i < c.n; i++) {
                r = emu_name_normalize(req->segments[2 + i], allow_dot, &path[i]);
                if (r < 0) {
                        (void)emu_reply_error(
                                req, 400,
                                r == -ENAMETOOLONG ? "InvalidFileOrDirectoryPathName"
                                                   : "InvalidResourceName",
                                NULL, NULL);
                        return;
                }
        }
        if (emu_path_validate(path, c.n) < 0) {
                (void)emu_reply_error(req, 400, "InvalidFileOrDirectoryPathName", NULL, NULL);
                return;
        }
        c.path = path;

        switch (req->op) {
        case EMU_OP_CREATE_SHARE:
        case EMU_OP_GET_SHARE_PROPERTIES:
        case EMU_OP_SET_SHARE_PROPERTIES:
        case EMU_OP_GET_SHARE_STATS:
        case EMU_OP_DELETE_SHARE:
                handle_share(&c);
                break;
        case EMU_OP_LIST_DIRECTORIES_AND_FILES:
                files_handle_list(&c);
                break;
        case EMU_OP_RENAME_DIRECTORY:
                handle_rename(&c, true);
                break;
        case EMU_OP_RENAME_FILE:
                handle_rename(&c, false);
                break;
        case EMU_OP_CREATE_DIRECTORY:
        case EMU_OP_GET_DIRECTORY_PROPERTIES:
        case EMU_OP_SET_DIRECTORY_PROPERTIES:
        case EMU_OP_SET_DIRECTORY_METADATA:
        case EMU_OP_DELETE_DIRECTORY:
                handle_directory(&c);
                break;
        default:
                files_handle_file(&c);
        }
}

void files_reply_changed(FilesCtx *c, int r, EmuEntry *e, unsigned status, bool smb) {
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        files_header_etag(c->req, e);
        (void)emu_reply_header(c->req, "x-ms-request-server-encrypted", "true");
        if (smb)
                files_header_smb(c, e);
        (void)emu_reply_empty(c->req, status);
        emu_entry_clear(e);
}
