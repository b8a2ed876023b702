/* SPDX-License-Identifier: MIT */
/* File operations: create, get (whole and ranged), get properties, set properties, set metadata,
 * delete, put range, list ranges, lease. Rename lives with the directory operations.
 *
 * Decisions where the service's exact answer is not recorded:
 *  - A malformed Range / x-ms-range (not "bytes=S-E" / "bytes=S-") answers 400 InvalidHeaderValue.
 *  - Put Range with a range longer than 4 MiB answers 413 RequestBodyTooLarge; a Content-Length
 *    that differs from the range length 400 InvalidHeaderValue (Content-Length).
 *  - Put Range's response Content-MD5 is computed for ranges up to 1 MiB (every recording) or when
 *    the request carries Content-MD5; a 4 MiB range without one gets no Content-MD5 back, so that
 *    the emulator is not the bottleneck of upload benchmarks (MD5 runs at ~700 MB/s here).
 *  - x-ms-range-get-content-md5 on a range over 4 MiB answers 400 OutOfRangeInput, without a
 *    range 400 InvalidHeaderValue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "base64-util.h"
#include "emu-files-common.h"
#include "emu-store.h"
#include "emu-xml.h"
#include "macro.h"
#include "time-util.h"

#define PUT_RANGE_MAX (UINT64_C(4) * 1024 * 1024)
#define RANGE_MD5_MAX (UINT64_C(4) * 1024 * 1024)
/* Put Range answers Content-MD5 of the written bytes for ranges up to this size, or when the
 * request carried Content-MD5 (which is then checked). Above it, without a request MD5, it is left
 * out: hashing halves upload throughput on a 2-core machine (see the file comment). */
#define PUT_RANGE_MD5_MAX (UINT64_C(1) * 1024 * 1024)

static int md5_base64(const void *data, size_t size, char **ret) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (!EVP_Digest(data, size, md, &len, EVP_md5(), NULL))
                return -EIO;
        return base64_encode(md, len, ret);
}

static const char *lease_id_header(EmuRequest *req) {
        return emu_request_header(req, "x-ms-lease-id");
}

static void content_from_headers(EmuRequest *req, EmuContent *c) {
        /* Pointers into the request's headers: valid for the request's lifetime. */
        *c = (EmuContent){
                .type = (char *)emu_request_header(req, "x-ms-content-type"),
                .encoding = (char *)emu_request_header(req, "x-ms-content-encoding"),
                .language = (char *)emu_request_header(req, "x-ms-content-language"),
                .cache_control = (char *)emu_request_header(req, "x-ms-cache-control"),
                .disposition = (char *)emu_request_header(req, "x-ms-content-disposition"),
                .md5 = (char *)emu_request_header(req, "x-ms-content-md5"),
        };
}

static void lease_headers(EmuRequest *req, const EmuEntry *e) {
        switch (e->lease_state) {
        case EMU_LEASE_LEASED:
                (void)emu_reply_header(req, "x-ms-lease-duration", "infinite");
                (void)emu_reply_header(req, "x-ms-lease-state", "leased");
                (void)emu_reply_header(req, "x-ms-lease-status", "locked");
                break;
        case EMU_LEASE_BROKEN:
                (void)emu_reply_header(req, "x-ms-lease-state", "broken");
                (void)emu_reply_header(req, "x-ms-lease-status", "unlocked");
                break;
        default:
                (void)emu_reply_header(req, "x-ms-lease-state", "available");
                (void)emu_reply_header(req, "x-ms-lease-status", "unlocked");
        }
}

/* Headers of Get File and Get File Properties. */
static void file_read_headers(FilesCtx *c, const EmuEntry *e, bool whole) {
        EmuRequest *req = c->req;

        files_header_etag(req, e);
        files_header_meta(req, e->meta);
        (void)emu_reply_header(req, "x-ms-type", "File");
        (void)emu_reply_header(req, "x-ms-server-encrypted", "true");
        if (e->content.encoding)
                (void)emu_reply_header(req, "Content-Encoding", "%s", e->content.encoding);
        if (e->content.language)
                (void)emu_reply_header(req, "Content-Language", "%s", e->content.language);
        if (e->content.cache_control)
                (void)emu_reply_header(req, "Cache-Control", "%s", e->content.cache_control);
        if (e->content.disposition)
                (void)emu_reply_header(req, "Content-Disposition", "%s", e->content.disposition);
        if (e->content.md5)
                (void)emu_reply_header(
                        req, whole ? "Content-MD5" : "x-ms-content-md5", "%s", e->content.md5);
        files_header_smb(c, e);
        lease_headers(req, e);
}

static const char *content_type_of(const EmuEntry *e) {
        return e->content.type ? e->content.type : "application/octet-stream";
}

static int parse_content_length(FilesCtx *c, bool required, const uint64_t **ret, uint64_t *buf) {
        const char *v = emu_request_header(c->req, "x-ms-content-length");

        *ret = NULL;
        if (!v) {
                if (required)
                        return files_reply_missing_header(c->req, "x-ms-content-length");
                return 0;
        }
        if (files_parse_u64(c->req, "x-ms-content-length", v, buf) < 0)
                return -EINVAL;
        if (*buf > EMU_FILE_SIZE_MAX)
                return emu_reply_error(c->req, 400, "OutOfRangeInput", NULL, NULL), -EINVAL;
        *ret = buf;
        return 0;
}

static void handle_create(FilesCtx *c) {
        EmuRequest *req = c->req;
        const char *type = emu_request_header(req, "x-ms-type");
        _cleanup_(files_strv_freep) char **meta = NULL;
        _cleanup_free_ char *key = NULL;
        EmuCreateArgs a = {};
        EmuContent content;
        const uint64_t *size;
        uint64_t size_buf;
        EmuEntry e = {};
        int r;

        if (!type) {
                (void)files_reply_missing_header(req, "x-ms-type");
                return;
        }
        if (strcasecmp(type, "file") != 0) {
                (void)files_reply_invalid_header(req, "x-ms-type", type);
                return;
        }
        if (parse_content_length(c, true, &size, &size_buf) < 0)
                return;
        if (req->body_size > 0) {
                (void)files_reply_invalid_header(
                        req, "Content-Length", emu_request_header(req, "Content-Length"));
                return;
        }
        if (files_parse_smb(c, true, false, &a.smb, &key) < 0 || files_parse_meta(req, &meta) < 0)
                return;
        content_from_headers(req, &content);
        a.size = *size;
        a.content = &content;
        a.meta = meta;
        a.lease_id = lease_id_header(req);
        r = emu_store_create(c->store, c->share, c->path, c->n, false, &a, &e);
        files_reply_changed(c, r, &e, 201, true);
}

static const char *range_header(EmuRequest *req, const char **ret_name) {
        const char *v = emu_request_header(req, "x-ms-range");
        *ret_name = "x-ms-range";
        if (!v) {
                v = emu_request_header(req, "Range");
                *ret_name = "Range";
        }
        return v;
}

static void handle_get(FilesCtx *c) {
        EmuRequest *req = c->req;
        bool head = streq(req->method, "HEAD");
        const char *rname, *rvalue = head ? NULL : range_header(req, &rname);
        const char *want_md5 = emu_request_header(req, "x-ms-range-get-content-md5");
        uint64_t start = 0, end = 0, len;
        bool has_end = false, md5 = want_md5 && strcasecmp(want_md5, "true") == 0;
        _cleanup_close_ int fd = -EBADF;
        EmuEntry e = {};
        int r;

        if (rvalue && files_parse_range(rvalue, &start, &end, &has_end) < 0) {
                (void)files_reply_invalid_header(req, rname, rvalue);
                return;
        }
        if (md5 && !rvalue) {
                (void)files_reply_invalid_header(req, "x-ms-range-get-content-md5", want_md5);
                return;
        }
        r = emu_store_open_file(c->store, c->share, c->path, c->n, &e, &fd);
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        if (head) {
                file_read_headers(c, &e, true);
                (void)emu_reply_head(req, 200, content_type_of(&e), e.size);
                goto out;
        }
        if (!rvalue) {
                file_read_headers(c, &e, true);
                (void)emu_reply_header(req, "Accept-Ranges", "bytes");
                (void)emu_reply_fd(req, 200, content_type_of(&e), TAKE_FD(fd), 0, e.size);
                goto out;
        }
        if (start >= e.size) {
                (void)emu_reply_header(
                        req, "Content-Range", "bytes */%llu", (unsigned long long)e.size);
                (void)emu_reply_error(req, 416, "InvalidRange", NULL, NULL);
                goto out;
        }
        end = MIN(end, e.size - 1);
        len = end - start + 1;
        file_read_headers(c, &e, false);
        (void)emu_reply_header(req, "Accept-Ranges", "bytes");
        (void)emu_reply_header(
                req, "Content-Range", "bytes %llu-%llu/%llu", (unsigned long long)start,
                (unsigned long long)end, (unsigned long long)e.size);
        if (md5) {
                _cleanup_free_ char *buf = NULL, *b64 = NULL;
                ssize_t k;

                if (len > RANGE_MD5_MAX) {
                        r = emu_reply_error(req, 400, "OutOfRangeInput", NULL, NULL);
                        goto out;
                }
                buf = malloc(len);
                k = buf ? pread(fd, buf, len, (off_t)start) : -1;
                if (k != (ssize_t)len || md5_base64(buf, len, &b64) < 0) {
                        (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                        goto out;
                }
                (void)emu_reply_header(req, "Content-MD5", "%s", b64);
        }
        (void)emu_reply_fd(req, 206, content_type_of(&e), TAKE_FD(fd), start, len);
out:
        emu_entry_clear(&e);
}

static void handle_set_properties(FilesCtx *c) {
        EmuRequest *req = c->req;
        _cleanup_free_ char *key = NULL;
        EmuSetArgs a = {};
        EmuContent content;
        uint64_t size_buf;
        EmuEntry e = {};
        int r;

        if (parse_content_length(c, false, &a.size, &size_buf) < 0)
                return;
        if (files_parse_smb(c, false, false, &a.smb, &key) < 0)
                return;
        /* Set File Properties replaces every content header: one left out is cleared. */
        content_from_headers(req, &content);
        a.content = &content;
        a.lease_id = lease_id_header(req);
        r = emu_store_set(c->store, c->share, c->path, c->n, false, &a, &e);
        files_reply_changed(c, r, &e, 200, true);
}

static void handle_set_metadata(FilesCtx *c) {
        EmuRequest *req = c->req;
        _cleanup_(files_strv_freep) char **meta = NULL;
        EmuEntry e = {};
        int r;

        if (files_parse_meta(req, &meta) < 0)
                return;
        r = emu_store_set_meta(
                c->store, c->share, c->path, c->n, false, meta, lease_id_header(req), &e);
        files_reply_changed(c, r, &e, 200, false);
}

static void handle_delete(FilesCtx *c) {
        int r = emu_store_delete(c->store, c->share, c->path, c->n, false, lease_id_header(c->req));
        if (r < 0)
                (void)files_reply_store_error(c, r);
        else
                (void)emu_reply_empty(c->req, 202);
}

static void handle_put_range(FilesCtx *c) {
        EmuRequest *req = c->req;
        const char *write = emu_request_header(req, "x-ms-write");
        const char *md5_in = emu_request_header(req, "Content-MD5");
        const char *lw = emu_request_header(req, "x-ms-file-last-write-time");
        const char *rname, *rvalue = range_header(req, &rname);
        _cleanup_free_ char *md5 = NULL;
        int64_t last_write = EMU_TIME_NOW;
        uint64_t start, end, len;
        bool has_end, clear;
        EmuEntry e = {};
        char buf[ISO8601_MAX];
        int r;

        if (!write) {
                (void)files_reply_missing_header(req, "x-ms-write");
                return;
        }
        if (strcasecmp(write, "update") == 0)
                clear = false;
        else if (strcasecmp(write, "clear") == 0)
                clear = true;
        else {
                (void)files_reply_invalid_header(req, "x-ms-write", write);
                return;
        }
        if (!rvalue) {
                (void)files_reply_missing_header(req, "x-ms-range");
                return;
        }
        if (files_parse_range(rvalue, &start, &end, &has_end) < 0 || !has_end) {
                (void)files_reply_invalid_header(req, rname, rvalue);
                return;
        }
        len = end - start + 1;
        if (lw && files_version_ge(c, "2021-06-08")) {
                if (strcasecmp(lw, "preserve") == 0)
                        last_write = EMU_TIME_PRESERVE;
                else if (strcasecmp(lw, "now") != 0) {
                        (void)files_reply_invalid_header(req, "x-ms-file-last-write-time", lw);
                        return;
                }
        }
        if (clear) {
                if (req->body_size != 0) {
                        (void)files_reply_invalid_header(
                                req, "Content-Length", emu_request_header(req, "Content-Length"));
                        return;
                }
                if (md5_in) {
                        (void)files_reply_invalid_header(req, "Content-MD5", md5_in);
                        return;
                }
        } else {
                if (len > PUT_RANGE_MAX) {
                        (void)emu_reply_error(req, 413, "RequestBodyTooLarge", NULL, NULL);
                        return;
                }
                if (req->body_size != len) {
                        (void)files_reply_invalid_header(
                                req, "Content-Length", emu_request_header(req, "Content-Length"));
                        return;
                }
                if ((md5_in || len <= PUT_RANGE_MD5_MAX) &&
                    md5_base64(req->body, req->body_size, &md5) < 0) {
                        (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                        return;
                }
                if (md5_in && !streq(md5_in, md5)) {
                        const char *extra[] = {
                                "UserSpecifiedMd5", md5_in, "ServerCalculatedMd5", md5, NULL};
                        (void)emu_reply_error(req, 400, "Md5Mismatch", NULL, extra);
                        return;
                }
        }
        r = emu_store_write(
                c->store, c->share, c->path, c->n, start, clear ? NULL : req->body, len,
                lease_id_header(req), last_write, &e);
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        files_header_etag(req, &e);
        if (!clear) {
                if (md5)
                        (void)emu_reply_header(req, "Content-MD5", "%s", md5);
                (void)emu_reply_header(req, "x-ms-request-server-encrypted", "true");
        }
        if (files_version_ge(c, "2019-02-02"))
                (void)emu_reply_header(
                        req, "x-ms-file-last-write-time", "%s",
                        format_iso8601(buf, e.last_write_ns));
        (void)emu_reply_empty(req, 201);
        emu_entry_clear(&e);
}

static void handle_list_ranges(FilesCtx *c) {
        EmuRequest *req = c->req;
        const char *rname, *rvalue = range_header(req, &rname);
        uint64_t start = 0, end = UINT64_MAX;
        bool has_end;
        EmuRange *ranges = NULL;
        size_t n = 0;
        EmuEntry e = {};
        _cleanup_(emu_xml_freep) EmuXml *x = NULL;
        char *doc;
        size_t size;
        int r;

        if (rvalue && files_parse_range(rvalue, &start, &end, &has_end) < 0) {
                (void)files_reply_invalid_header(req, rname, rvalue);
                return;
        }
        r = emu_store_ranges(c->store, c->share, c->path, c->n, start, end, &e, &ranges, &n);
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        x = emu_xml_new();
        if (x) {
                emu_xml_open(x, "Ranges");
                for (size_t i = 0; i < n; i++) {
                        emu_xml_open(x, "Range");
                        emu_xml_elementf(x, "Start", "%llu", (unsigned long long)ranges[i].start);
                        emu_xml_elementf(x, "End", "%llu", (unsigned long long)ranges[i].end);
                        emu_xml_close(x, "Range");
                }
                emu_xml_close(x, "Ranges");
        }
        free(ranges);
        doc = x ? emu_xml_steal(x, &size) : NULL;
        if (!doc) {
                (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                emu_entry_clear(&e);
                return;
        }
        files_header_etag(req, &e);
        (void)emu_reply_header(req, "x-ms-content-length", "%llu", (unsigned long long)e.size);
        (void)emu_reply_body_take(req, 200, "application/xml", doc, size);
        emu_entry_clear(&e);
}

static bool guid_valid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
                        return false;
        }
        return true;
}

static void handle_lease(FilesCtx *c) {
        EmuRequest *req = c->req;
        const char *action = emu_request_header(req, "x-ms-lease-action");
        const char *id = emu_request_header(req, "x-ms-lease-id");
        const char *proposed = emu_request_header(req, "x-ms-proposed-lease-id");
        const char *duration = emu_request_header(req, "x-ms-lease-duration");
        EmuLeaseAction a;
        unsigned status;
        EmuEntry e = {};
        int r;

        if (!files_version_ge(c, "2019-02-02")) {
                (void)files_reply_invalid_query(req, "comp", "lease");
                return;
        }
        if (!action) {
                (void)files_reply_missing_header(req, "x-ms-lease-action");
                return;
        }
        if (strcasecmp(action, "acquire") == 0) {
                a = EMU_LEASE_ACQUIRE;
                status = 201;
                if (!duration) {
                        (void)files_reply_missing_header(req, "x-ms-lease-duration");
                        return;
                }
                if (!streq(duration, "-1")) {
                        (void)files_reply_invalid_header(req, "x-ms-lease-duration", duration);
                        return;
                }
        } else if (strcasecmp(action, "change") == 0) {
                a = EMU_LEASE_CHANGE;
                status = 200;
                if (!id) {
                        (void)files_reply_missing_header(req, "x-ms-lease-id");
                        return;
                }
                if (!proposed) {
                        (void)files_reply_missing_header(req, "x-ms-proposed-lease-id");
                        return;
                }
        } else if (strcasecmp(action, "release") == 0) {
                a = EMU_LEASE_RELEASE;
                status = 200;
                if (!id) {
                        (void)files_reply_missing_header(req, "x-ms-lease-id");
                        return;
                }
        } else if (strcasecmp(action, "break") == 0) {
                a = EMU_LEASE_BREAK;
                status = 202;
        } else {
                (void)files_reply_invalid_header(req, "x-ms-lease-action", action);
                return;
        }
        if (id && !guid_valid(id)) {
                (void)files_reply_invalid_header(req, "x-ms-lease-id", id);
                return;
        }
        if (proposed && !guid_valid(proposed)) {
                (void)files_reply_invalid_header(req, "x-ms-proposed-lease-id", proposed);
                return;
        }
        r = emu_store_lease(c->store, c->share, c->path, c->n, a, id, proposed, &e);
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        files_header_etag(req, &e);
        if (a == EMU_LEASE_ACQUIRE || a == EMU_LEASE_CHANGE)
                (void)emu_reply_header(req, "x-ms-lease-id", "%s", e.lease_id);
        if (a == EMU_LEASE_BREAK)
                (void)emu_reply_header(req, "x-ms-lease-time", "0");
        (void)emu_reply_empty(req, status);
        emu_entry_clear(&e);
}

void files_handle_file(FilesCtx *c) {
        switch (c->req->op) {
        case EMU_OP_CREATE_FILE:
                handle_create(c);
                break;
        case EMU_OP_GET_FILE:
        case EMU_OP_GET_FILE_PROPERTIES:
                handle_get(c);
                break;
        case EMU_OP_SET_FILE_PROPERTIES:
                handle_set_properties(c);
                break;
        case EMU_OP_SET_FILE_METADATA:
                handle_set_metadata(c);
                break;
        case EMU_OP_DELETE_FILE:
                handle_delete(c);
                break;
        case EMU_OP_PUT_RANGE:
                handle_put_range(c);
                break;
        case EMU_OP_LIST_RANGES:
                handle_list_ranges(c);
                break;
        case EMU_OP_LEASE_FILE:
                handle_lease(c);
                break;
        default:
                (void)emu_reply_error(c->req, 400, "InvalidUri", NULL, NULL);
        }
}
