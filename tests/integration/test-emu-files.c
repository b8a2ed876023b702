/* SPDX-License-Identifier: MIT */
/* The File REST operations of the real azfiles-emu binary, over loopback with libcurl: shares,
 * directories, files, ranges, listing and paging, leases, rename, versions, names and case,
 * persistence across a restart, and parallel reads and writes of one file. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "emu-harness.h"
#include "macro.h"

#define V2018 "x-ms-version: 2018-11-09"
#define V2020 "x-ms-version: 2020-02-10"

static EmuInstance *emu;

static void setup(void) {
        int r = emu_instance_start(NULL, NULL, &emu);
        ck_assert_msg(r == 0, "emu_instance_start: %s", strerror(-r));
}

static void teardown(void) {
        if (emu)
                ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
}

static EmuHttpResult
call(const char *method, const char *url, const char *const *hdrs, const void *body, size_t size) {
        EmuHttpResult res;
        int r = emu_http(emu, method, url, hdrs, body, size, EMU_AUTH_MODE_SHARED_KEY, &res);
        ck_assert_msg(r == 0, "%s %s: harness error %s", method, url, strerror(-r));
        ck_assert_msg(res.curl_code == 0, "%s %s: transport error %d", method, url, res.curl_code);
        return res;
}

/* Checks status and (when code is non-NULL) x-ms-error-code, then frees the result. */
static void
expect(const char *method,
       const char *url,
       const char *const *hdrs,
       const void *body,
       size_t size,
       long status,
       const char *code) {
        EmuHttpResult res = call(method, url, hdrs, body, size);
        const char *got = emu_http_header(&res, "x-ms-error-code");
        ck_assert_msg(
                res.status == status, "%s %s: status %ld, want %ld (%s) %s", method, url,
                res.status, status, got ? got : "-",
                res.body && strstr(res.body, "</Message>") ? strstr(res.body, "</Message>") : "");
        if (code)
                ck_assert_msg(
                        got && streq(got, code), "%s %s: code %s, want %s", method, url,
                        got ? got : "-", code);
        emu_http_result_clear(&res);
}

static char *header_dup(const EmuHttpResult *res, const char *name) {
        const char *v = emu_http_header(res, name);
        ck_assert_msg(v != NULL, "missing header %s", name);
        return strdup(v);
}

static void make_share(void) {
        expect("PUT", "/share?restype=share", NULL, NULL, 0, 201, NULL);
}

static void make_file(const char *url, const char *size) {
        char len[64];
        snprintf(len, sizeof(len), "x-ms-content-length: %s", size);
        const char *const h[] = {"x-ms-type: file", len, NULL};
        expect("PUT", url, h, NULL, 0, 201, NULL);
}

static void put_range(const char *file, uint64_t start, const void *data, size_t len) {
        char range[96], url[512];
        snprintf(url, sizeof(url), "%s?comp=range", file);
        snprintf(
                range, sizeof(range), "x-ms-range: bytes=%llu-%llu", (unsigned long long)start,
                (unsigned long long)(start + len - 1));
        const char *const h[] = {"x-ms-write: update", range, NULL};
        expect("PUT", url, h, data, len, 201, NULL);
}

START_TEST(test_share_lifecycle) {
        EmuHttpResult res;

        make_share();
        expect("PUT", "/share?restype=share", NULL, NULL, 0, 409, "ShareAlreadyExists");
        expect("PUT", "/Bad_Share?restype=share", NULL, NULL, 0, 400, "InvalidResourceName");
        res = call("GET", "/share?restype=share", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-share-quota"), "5120");
        ck_assert_ptr_nonnull(emu_http_header(&res, "ETag"));
        emu_http_result_clear(&res);
        const char *const quota[] = {"x-ms-share-quota: 100", NULL};
        expect("PUT", "/share?restype=share&comp=properties", quota, NULL, 0, 200, NULL);
        res = call("HEAD", "/share?restype=share", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-share-quota"), "100");
        emu_http_result_clear(&res);

        make_file("/share/f", "1000");
        put_range("/share/f", 0, "abc", 3);
        res = call("GET", "/share?restype=share&comp=stats", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_msg(memcmp(res.body, "\xEF\xBB\xBF<?xml", 8) == 0, "BOM");
        ck_assert_ptr_nonnull(
                strstr(res.body, "<ShareStats><ShareUsageBytes>1000</ShareUsageBytes>"));
        emu_http_result_clear(&res);

        expect("DELETE", "/share?restype=share", NULL, NULL, 0, 202, NULL);
        expect("GET", "/share?restype=share", NULL, NULL, 0, 404, "ShareNotFound");
        expect("HEAD", "/share?restype=share", NULL, NULL, 0, 404, "ShareNotFound");
        expect("PUT", "/share/d?restype=directory", NULL, NULL, 0, 404, "ShareNotFound");
}
END_TEST

START_TEST(test_versions) {
        EmuHttpResult res;
        const char *const none[] = {"x-ms-version:", NULL};
        const char *const bad[] = {"x-ms-version: 2017-01-01", NULL};

        make_share();
        res = call("GET", "/share?restype=share", none, NULL, 0);
        ck_assert_int_eq(res.status, 400);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-error-code"), "MissingRequiredHeader");
        ck_assert_ptr_nonnull(strstr(res.body, "<HeaderName>x-ms-version</HeaderName>"));
        emu_http_result_clear(&res);
        res = call("GET", "/share?restype=share", bad, NULL, 0);
        ck_assert_int_eq(res.status, 400);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-error-code"), "InvalidHeaderValue");
        ck_assert_ptr_nonnull(strstr(res.body, "<HeaderValue>2017-01-01</HeaderValue>"));
        emu_http_result_clear(&res);

        /* 2018-11-09: no SMB headers either way. */
        const char *const old[] = {V2018, "x-ms-type: file", "x-ms-content-length: 5", NULL};
        res = call("PUT", "/share/old", old, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-version"), "2018-11-09");
        ck_assert_ptr_null(emu_http_header(&res, "x-ms-file-id"));
        emu_http_result_clear(&res);

        /* 2019-02-02 .. 2021-04-10: SMB headers required on create. */
        const char *const mid[] = {V2020, "x-ms-type: file", "x-ms-content-length: 5", NULL};
        res = call("PUT", "/share/mid", mid, NULL, 0);
        ck_assert_int_eq(res.status, 400);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-error-code"), "MissingRequiredHeader");
        emu_http_result_clear(&res);
        const char *const mid_ok[] = {
                V2020,
                "x-ms-type: file",
                "x-ms-content-length: 5",
                "x-ms-file-permission: inherit",
                "x-ms-file-attributes: None",
                "x-ms-file-creation-time: now",
                "x-ms-file-last-write-time: now",
                NULL};
        expect("PUT", "/share/mid", mid_ok, NULL, 0, 201, NULL);
        /* Rename needs 2021-04-10, leases 2019-02-02. */
        const char *const ren[] = {V2020, "x-ms-file-rename-source: /share/mid", NULL};
        expect("PUT", "/share/x?comp=rename", ren, NULL, 0, 400, "InvalidQueryParameterValue");
        const char *const lease[] = {
                V2018, "x-ms-lease-action: acquire", "x-ms-lease-duration: -1", NULL};
        expect("PUT", "/share/old?comp=lease", lease, NULL, 0, 400, NULL);
        /* Every whitelisted version works. */
        const char *const v25[] = {"x-ms-version: 2025-05-05", NULL};
        expect("HEAD", "/share/mid", v25, NULL, 0, 200, NULL);
}
END_TEST

START_TEST(test_directories) {
        EmuHttpResult res;

        make_share();
        res = call("PUT", "/share/Dir?restype=directory", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-attributes"), "Directory");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-parent-id"), "0");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-request-server-encrypted"), "true");
        _cleanup_free_ char *id = header_dup(&res, "x-ms-file-id");
        emu_http_result_clear(&res);
        expect("PUT", "/share/dir?restype=directory", NULL, NULL, 0, 409, "ResourceAlreadyExists");
        expect("PUT", "/share/no/sub?restype=directory", NULL, NULL, 0, 404, "ParentNotFound");
        expect("PUT", "/share/DIR/Sub?restype=directory", NULL, NULL, 0, 201, NULL);
        res = call("GET", "/share/dIr/sub?restype=directory", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-parent-id"), id);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-server-encrypted"), "true");
        emu_http_result_clear(&res);
        /* A directory probed as a file and vice versa. */
        expect("HEAD", "/share/dir", NULL, NULL, 0, 404, "ResourceNotFound");
        make_file("/share/dir/f", "0");
        make_file("/share/DIR/F", "1"); /* the same file, replaced */
        expect("GET", "/share/dir/f?restype=directory", NULL, NULL, 0, 404, "ResourceNotFound");
        expect("PUT", "/share/dir/F?restype=directory", NULL, NULL, 0, 409,
               "ResourceAlreadyExists");
        /* Metadata and properties. */
        const char *const meta[] = {"x-ms-meta-Color: blue", NULL};
        expect("PUT", "/share/dir?restype=directory&comp=metadata", meta, NULL, 0, 200, NULL);
        res = call("HEAD", "/share/dir?restype=directory", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-meta-Color"), "blue");
        emu_http_result_clear(&res);
        const char *const attrs[] = {"x-ms-file-attributes: Hidden", NULL};
        res = call("PUT", "/share/dir?restype=directory&comp=properties", attrs, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-attributes"), "Hidden | Directory");
        emu_http_result_clear(&res);
        /* Delete: not recursive. */
        expect("DELETE", "/share/dir?restype=directory", NULL, NULL, 0, 409, "DirectoryNotEmpty");
        expect("DELETE", "/share/dir/f", NULL, NULL, 0, 202, NULL);
        expect("DELETE", "/share/dir/f", NULL, NULL, 0, 404, "ResourceNotFound");
        expect("DELETE", "/share/nope/f", NULL, NULL, 0, 404, "ParentNotFound");
        expect("DELETE", "/share/dir/sub?restype=directory", NULL, NULL, 0, 202, NULL);
        expect("DELETE", "/share/dir?restype=directory", NULL, NULL, 0, 202, NULL);
        expect("DELETE", "/share/dir?restype=directory", NULL, NULL, 0, 404, "ResourceNotFound");
}
END_TEST

START_TEST(test_names) {
        make_share();
        expect("PUT", "/share/a%3Ab?restype=directory", NULL, NULL, 0, 400, "InvalidResourceName");
        expect("PUT", "/share/a%7Cb?restype=directory", NULL, NULL, 0, 400, "InvalidResourceName");
        expect("PUT", "/share/CON?restype=directory", NULL, NULL, 0, 400, "InvalidResourceName");
        expect("PUT", "/share/%2e%2e/x?restype=directory", NULL, NULL, 0, 400, NULL);
        char url[600];
        snprintf(url, sizeof(url), "/share/%0256d?restype=directory", 0);
        expect("PUT", url, NULL, NULL, 0, 400, "InvalidFileOrDirectoryPathName");
        /* Trailing dots are stripped unless allowed. */
        expect("PUT", "/share/dots...?restype=directory", NULL, NULL, 0, 201, NULL);
        expect("GET", "/share/dots?restype=directory", NULL, NULL, 0, 200, NULL);
        const char *const allow[] = {"x-ms-allow-trailing-dot: true", NULL};
        expect("PUT", "/share/dots.?restype=directory", allow, NULL, 0, 201, NULL);
        /* Unicode, case folded. */
        expect("PUT", "/share/%C3%89t%C3%A9?restype=directory", NULL, NULL, 0, 201, NULL);
        expect("GET", "/share/%C3%A9T%C3%89?restype=directory", NULL, NULL, 0, 200, NULL);
}
END_TEST

START_TEST(test_file_data) {
        EmuHttpResult res;
        char data[1024];

        for (size_t i = 0; i < sizeof(data); i++)
                data[i] = (char)('a' + i % 26);
        make_share();
        const char *const create[] = {
                "x-ms-type: file", "x-ms-content-length: 1024", "x-ms-content-type: text/plain",
                "x-ms-meta-k: v", NULL};
        res = call("PUT", "/share/f", create, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-attributes"), "Archive");
        _cleanup_free_ char *etag0 = header_dup(&res, "ETag");
        ck_assert_msg(strncmp(etag0, "\"0x8D", 5) == 0, "etag %s", etag0);
        emu_http_result_clear(&res);

        const char *const upd[] = {"x-ms-write: update", "x-ms-range: bytes=0-1023", NULL};
        res = call("PUT", "/share/f?comp=range", upd, data, sizeof(data));
        ck_assert_int_eq(res.status, 201);
        ck_assert_ptr_nonnull(emu_http_header(&res, "Content-MD5"));
        ck_assert_str_ne(emu_http_header(&res, "ETag"), etag0);
        emu_http_result_clear(&res);

        /* Whole, ranged, clipped. */
        res = call("GET", "/share/f", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_uint_eq(res.body_size, 1024);
        ck_assert_int_eq(memcmp(res.body, data, 1024), 0);
        ck_assert_str_eq(emu_http_header(&res, "Content-Type"), "text/plain");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-meta-k"), "v");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-type"), "File");
        emu_http_result_clear(&res);
        const char *const r1[] = {"x-ms-range: bytes=10-19", "Range: bytes=0-0", NULL};
        res = call("GET", "/share/f", r1, NULL, 0);
        ck_assert_int_eq(res.status, 206);
        ck_assert_str_eq(emu_http_header(&res, "Content-Range"), "bytes 10-19/1024");
        ck_assert_int_eq(memcmp(res.body, data + 10, 10), 0);
        emu_http_result_clear(&res);
        const char *const r2[] = {
                "Range: bytes=1000-33554431", "x-ms-range-get-content-md5: true", NULL};
        res = call("GET", "/share/f", r2, NULL, 0);
        ck_assert_int_eq(res.status, 206);
        ck_assert_str_eq(emu_http_header(&res, "Content-Range"), "bytes 1000-1023/1024");
        ck_assert_ptr_nonnull(emu_http_header(&res, "Content-MD5"));
        ck_assert_uint_eq(res.body_size, 24);
        emu_http_result_clear(&res);
        const char *const r3[] = {"x-ms-range: bytes=1024-", NULL};
        res = call("GET", "/share/f", r3, NULL, 0);
        ck_assert_int_eq(res.status, 416);
        ck_assert_str_eq(emu_http_header(&res, "Content-Range"), "bytes */1024");
        emu_http_result_clear(&res);
        make_file("/share/empty", "0");
        const char *const r4[] = {"x-ms-range: bytes=0-", NULL};
        res = call("GET", "/share/empty", r4, NULL, 0);
        ck_assert_int_eq(res.status, 416);
        ck_assert_str_eq(emu_http_header(&res, "Content-Range"), "bytes */0");
        emu_http_result_clear(&res);
        expect("GET", "/share/empty", NULL, NULL, 0, 200, NULL);
        res = call("HEAD", "/share/f", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "Content-Length"), "1024");
        emu_http_result_clear(&res);

        /* Put Range errors. */
        const char *const past[] = {"x-ms-write: update", "x-ms-range: bytes=1020-1027", NULL};
        expect("PUT", "/share/f?comp=range", past, data, 8, 416, "InvalidRange");
        const char *const short_body[] = {"x-ms-write: update", "x-ms-range: bytes=0-9", NULL};
        expect("PUT", "/share/f?comp=range", short_body, data, 5, 400, "InvalidHeaderValue");
        const char *const md5[] = {
                "x-ms-write: update", "x-ms-range: bytes=0-3",
                "Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==", NULL};
        expect("PUT", "/share/f?comp=range", md5, data, 4, 400, "Md5Mismatch");
        const char *const no_write[] = {"x-ms-range: bytes=0-3", NULL};
        expect("PUT", "/share/f?comp=range", no_write, data, 4, 400, "MissingRequiredHeader");

        /* Clear, list ranges, resize. */
        const char *const clr[] = {"x-ms-write: clear", "x-ms-range: bytes=0-511", NULL};
        expect("PUT", "/share/f?comp=range", clr, NULL, 0, 201, NULL);
        res = call("GET", "/share/f?comp=rangelist", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-content-length"), "1024");
        ck_assert_ptr_nonnull(strstr(
                res.body, "<Ranges><Range><Start>512</Start><End>1023</End></Range></Ranges>"));
        emu_http_result_clear(&res);
        res = call("GET", "/share/f", r1, NULL, 0);
        ck_assert_int_eq(memcmp(res.body, "\0\0\0\0\0\0\0\0\0\0", 10), 0);
        emu_http_result_clear(&res);
        const char *const resize[] = {"x-ms-content-length: 5", NULL};
        expect("PUT", "/share/f?comp=properties", resize, NULL, 0, 200, NULL);
        res = call("HEAD", "/share/f", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "Content-Length"), "5");
        /* Set File Properties without x-ms-content-type clears it. */
        ck_assert_str_eq(emu_http_header(&res, "Content-Type"), "application/octet-stream");
        emu_http_result_clear(&res);
        const char *const meta[] = {"x-ms-meta-a: 1", "x-ms-meta-b: 2", NULL};
        expect("PUT", "/share/f?comp=metadata", meta, NULL, 0, 200, NULL);
        res = call("HEAD", "/share/f", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-meta-b"), "2");
        ck_assert_ptr_null(emu_http_header(&res, "x-ms-meta-k"));
        emu_http_result_clear(&res);

        /* Create on an existing file replaces it. */
        make_file("/share/F", "10");
        res = call("GET", "/share/f", NULL, NULL, 0);
        ck_assert_uint_eq(res.body_size, 10);
        ck_assert_int_eq(memcmp(res.body, "\0\0\0\0\0\0\0\0\0\0", 10), 0);
        emu_http_result_clear(&res);
        expect("PUT", "/share/f", NULL, NULL, 0, 400, "MissingRequiredHeader");
        expect("POST", "/share/f", NULL, NULL, 0, 405, "UnsupportedHttpVerb");
        expect("GET", "/share/f?comp=bogus", NULL, NULL, 0, 400, "InvalidQueryParameterValue");
}
END_TEST

START_TEST(test_put_range_too_large) {
        size_t len = 4u * 1024 * 1024 + 1;
        char *big = calloc(1, len);
        char range[64];

        make_share();
        make_file("/share/f", "8388608");
        snprintf(range, sizeof(range), "x-ms-range: bytes=0-%zu", len - 1);
        const char *const h[] = {"x-ms-write: update", range, NULL};
        expect("PUT", "/share/f?comp=range", h, big, len, 413, "RequestBodyTooLarge");
        put_range("/share/f", 4u * 1024 * 1024, big, len - 1);
        free(big);
}
END_TEST

static size_t count(const char *s, const char *needle) {
        size_t n = 0;
        for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
                n++;
        return n;
}

START_TEST(test_list) {
        EmuHttpResult res;
        char url[256];

        make_share();
        expect("PUT", "/share/dirA?restype=directory", NULL, NULL, 0, 201, NULL);
        make_file("/share/dirA/file0", "7");
        expect("PUT", "/share/dirA/ListFiles?restype=directory", NULL, NULL, 0, 201, NULL);
        make_file("/share/dirA/b", "1");
        make_file("/share/dirA/a%EF%BF%BF", "1");

        const char *const ext[] = {"x-ms-file-extended-info: true", NULL};
        res = call("GET", "/share/dirA?restype=directory&comp=list", ext, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "Content-Type"), "application/xml");
        ck_assert_msg(memcmp(res.body, "\xEF\xBB\xBF<?xml", 8) == 0, "BOM");
        ck_assert_ptr_nonnull(
                strstr(res.body, "ShareName=\"share\" DirectoryPath=\"dirA\">"
                                 "<DirectoryId>"));
        /* One case-insensitive order, files and directories interleaved. */
        const char *a = strstr(res.body, "<Name Encoded=\"true\">a%EF%BF%BF</Name>");
        const char *b = strstr(res.body, "<Name>b</Name>");
        const char *f0 = strstr(res.body, "<File><Name>file0</Name><FileId>");
        const char *lf = strstr(res.body, "<Directory><Name>ListFiles</Name><FileId>");
        ck_assert_msg(a && b && f0 && lf && a < b && b < f0 && f0 < lf, "%s", res.body);
        ck_assert_ptr_nonnull(
                strstr(res.body, "<Properties><Content-Length>7</Content-Length>"
                                 "</Properties></File>"));
        ck_assert_ptr_nonnull(strstr(res.body, "<Properties /></Directory>"));
        ck_assert_ptr_nonnull(strstr(res.body, "</Entries><NextMarker /></EnumerationResults>"));
        emu_http_result_clear(&res);

        res =
                call("GET",
                     "/share/dirA?restype=directory&comp=list&include=Timestamps,Etag,Attributes,"
                     "PermissionKey&prefix=FILE",
                     NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_ptr_nonnull(strstr(res.body, "<Prefix>FILE</Prefix>"));
        ck_assert_ptr_null(strstr(res.body, "<FileId>"));
        ck_assert_ptr_nonnull(strstr(res.body, "<Content-Length>7</Content-Length><CreationTime>"));
        ck_assert_ptr_nonnull(strstr(res.body, "</ChangeTime><Last-Modified>"));
        ck_assert_ptr_nonnull(strstr(res.body, "<Attributes>Archive</Attributes><PermissionKey>"));
        ck_assert_uint_eq(count(res.body, "<File>"), 1);
        emu_http_result_clear(&res);

        /* Paging over the share root and its 2 entries + 20 more. */
        for (int i = 0; i < 20; i++) {
                snprintf(url, sizeof(url), "/share/n%02d", i);
                make_file(url, "0");
        }
        size_t total = 0, pages = 0;
        char marker[256] = "";
        for (;;) {
                snprintf(
                        url, sizeof(url), "/share?restype=directory&comp=list&maxresults=6%s%s",
                        marker[0] ? "&marker=" : "", marker);
                res = call("GET", url, NULL, NULL, 0);
                ck_assert_int_eq(res.status, 200);
                ck_assert_ptr_nonnull(strstr(res.body, "<MaxResults>6</MaxResults>"));
                total += count(res.body, "<Name>");
                pages++;
                const char *nm = strstr(res.body, "<NextMarker>");
                if (!nm) {
                        ck_assert_ptr_nonnull(strstr(res.body, "<NextMarker />"));
                        emu_http_result_clear(&res);
                        break;
                }
                nm += strlen("<NextMarker>");
                size_t l = strcspn(nm, "<");
                ck_assert_uint_lt(l, 200);
                /* Markers are "2!hex": URL-safe apart from '!'. */
                ck_assert_int_eq(strncmp(nm, "2!", 2), 0);
                snprintf(marker, sizeof(marker), "2%%21%.*s", (int)l - 2, nm + 2);
                emu_http_result_clear(&res);
        }
        ck_assert_uint_eq(total, 21);
        ck_assert_uint_eq(pages, 4);
        expect("GET", "/share?restype=directory&comp=list&maxresults=0", NULL, NULL, 0, 400,
               "InvalidQueryParameterValue");
        expect("GET", "/share?restype=directory&comp=list&include=Bogus", NULL, NULL, 0, 400,
               "InvalidQueryParameterValue");
        expect("GET", "/share/nope?restype=directory&comp=list", NULL, NULL, 0, 404,
               "ResourceNotFound");
}
END_TEST

START_TEST(test_lease) {
        EmuHttpResult res;
        const char *const acquire[] = {
                "x-ms-lease-action: acquire", "x-ms-lease-duration: -1", NULL};
        const char *const other[] = {
                "x-ms-lease-action: acquire", "x-ms-lease-duration: -1",
                "x-ms-proposed-lease-id: 11111111-2222-3333-4444-555555555555", NULL};

        make_share();
        make_file("/share/f", "16");
        res = call("HEAD", "/share/f", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-lease-state"), "available");
        _cleanup_free_ char *etag = header_dup(&res, "ETag");
        emu_http_result_clear(&res);
        const char *const d15[] = {"x-ms-lease-action: acquire", "x-ms-lease-duration: 15", NULL};
        expect("PUT", "/share/f?comp=lease", d15, NULL, 0, 400, "InvalidHeaderValue");
        res = call("PUT", "/share/f?comp=lease", acquire, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        ck_assert_str_eq(emu_http_header(&res, "ETag"), etag);
        _cleanup_free_ char *id = header_dup(&res, "x-ms-lease-id");
        emu_http_result_clear(&res);
        res = call("HEAD", "/share/f", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-lease-state"), "leased");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-lease-status"), "locked");
        ck_assert_str_eq(emu_http_header(&res, "x-ms-lease-duration"), "infinite");
        ck_assert_str_eq(emu_http_header(&res, "ETag"), etag);
        emu_http_result_clear(&res);

        expect("PUT", "/share/f?comp=lease", other, NULL, 0, 409, "LeaseAlreadyPresent");
        const char *const upd[] = {"x-ms-write: update", "x-ms-range: bytes=0-0", NULL};
        expect("PUT", "/share/f?comp=range", upd, "x", 1, 412, "LeaseIdMissing");
        expect("DELETE", "/share/f", NULL, NULL, 0, 412, "LeaseIdMissing");
        const char *const wrong[] = {
                "x-ms-write: update", "x-ms-range: bytes=0-0",
                "x-ms-lease-id: 11111111-2222-3333-4444-555555555555", NULL};
        expect("PUT", "/share/f?comp=range", wrong, "x", 1, 412,
               "LeaseIdMismatchWithFileOperation");
        char lid[128];
        snprintf(lid, sizeof(lid), "x-ms-lease-id: %s", id);
        const char *const right[] = {"x-ms-write: update", "x-ms-range: bytes=0-0", lid, NULL};
        expect("PUT", "/share/f?comp=range", right, "x", 1, 201, NULL);
        expect("GET", "/share/f", NULL, NULL, 0, 200, NULL); /* reads need no lease */

        const char *const change[] = {
                "x-ms-lease-action: change", lid,
                "x-ms-proposed-lease-id: 11111111-2222-3333-4444-555555555555", NULL};
        res = call("PUT", "/share/f?comp=lease", change, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(
                emu_http_header(&res, "x-ms-lease-id"), "11111111-2222-3333-4444-555555555555");
        emu_http_result_clear(&res);
        const char *const brk[] = {"x-ms-lease-action: break", NULL};
        res = call("PUT", "/share/f?comp=lease", brk, NULL, 0);
        ck_assert_int_eq(res.status, 202);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-lease-time"), "0");
        emu_http_result_clear(&res);
        expect("PUT", "/share/f?comp=lease", acquire, NULL, 0, 201, NULL);
        const char *const rel[] = {
                "x-ms-lease-action: release", "x-ms-lease-id: 11111111-2222-3333-4444-555555555555",
                NULL};
        expect("PUT", "/share/f?comp=lease", rel, NULL, 0, 409,
               "LeaseIdMismatchWithLeaseOperation");
        expect("PUT", "/share/dir?comp=lease", acquire, NULL, 0, 404, "ResourceNotFound");
}
END_TEST

START_TEST(test_rename) {
        EmuHttpResult res;
        char src[512];

        make_share();
        expect("PUT", "/share/d1?restype=directory", NULL, NULL, 0, 201, NULL);
        expect("PUT", "/share/d2?restype=directory", NULL, NULL, 0, 201, NULL);
        make_file("/share/d1/a", "3");
        put_range("/share/d1/a", 0, "abc", 3);
        res = call("HEAD", "/share/d1/a", NULL, NULL, 0);
        _cleanup_free_ char *id = header_dup(&res, "x-ms-file-id");
        _cleanup_free_ char *ctime = header_dup(&res, "x-ms-file-creation-time");
        emu_http_result_clear(&res);

        /* Full URL of this service as the source. */
        snprintf(src, sizeof(src), "x-ms-file-rename-source: %s/share/d1/a", emu->files_url);
        const char *const h1[] = {src, NULL};
        res = call("PUT", "/share/d2/b?comp=rename", h1, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-id"), id);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-creation-time"), ctime);
        emu_http_result_clear(&res);
        expect("HEAD", "/share/d1/a", NULL, NULL, 0, 404, "ResourceNotFound");
        res = call("GET", "/share/d2/b", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_int_eq(memcmp(res.body, "abc", 3), 0);
        emu_http_result_clear(&res);

        /* Onto an existing file: 409, then ReadOnly, then replaced. */
        const char *const ro[] = {
                "x-ms-type: file", "x-ms-content-length: 1", "x-ms-file-attributes: ReadOnly",
                NULL};
        expect("PUT", "/share/d2/c", ro, NULL, 0, 201, NULL);
        const char *const h2[] = {"x-ms-file-rename-source: /share/d2/b", NULL};
        expect("PUT", "/share/d2/c?comp=rename", h2, NULL, 0, 409, "ResourceAlreadyExists");
        const char *const h3[] = {
                "x-ms-file-rename-source: /share/d2/b", "x-ms-file-rename-replace-if-exists: true",
                NULL};
        expect("PUT", "/share/d2/c?comp=rename", h3, NULL, 0, 409, "ReadOnlyAttribute");
        const char *const h4[] = {
                "x-ms-file-rename-source: d2/b", "x-ms-file-rename-replace-if-exists: true",
                "x-ms-file-rename-ignore-readonly: true", NULL};
        expect("PUT", "/share/d2/c?comp=rename", h4, NULL, 0, 200, NULL);
        res = call("HEAD", "/share/d2/c", NULL, NULL, 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-id"), id);
        emu_http_result_clear(&res);

        /* Missing source, missing destination parent, missing header. */
        expect("PUT", "/share/d2/x?comp=rename", h2, NULL, 0, 404, "ResourceNotFound");
        const char *const h5[] = {"x-ms-file-rename-source: /share/d2/c", NULL};
        expect("PUT", "/share/no/x?comp=rename", h5, NULL, 0, 404, "ParentNotFound");
        expect("PUT", "/share/d2/x?comp=rename", NULL, NULL, 0, 400, "MissingRequiredHeader");

        /* Directory rename, non-empty, keeps children reachable; then case-only rename. */
        const char *const h6[] = {"x-ms-file-rename-source: /share/d2", NULL};
        expect("PUT", "/share/d3?restype=directory&comp=rename", h6, NULL, 0, 200, NULL);
        expect("HEAD", "/share/d3/c", NULL, NULL, 0, 200, NULL);
        const char *const h7[] = {"x-ms-file-rename-source: /share/d3", NULL};
        expect("PUT", "/share/D3?restype=directory&comp=rename", h7, NULL, 0, 200, NULL);
        res = call("GET", "/share?restype=directory&comp=list", NULL, NULL, 0);
        ck_assert_ptr_nonnull(strstr(res.body, "<Name>D3</Name>"));
        emu_http_result_clear(&res);
        const char *const h8[] = {"x-ms-file-rename-source: /share/d1", NULL};
        expect("PUT", "/share/D3/d1?restype=directory&comp=rename", h8, NULL, 0, 200, NULL);
        const char *const h9[] = {"x-ms-file-rename-source: /share/D3", NULL};
        expect("PUT", "/share/D3/d1/x?restype=directory&comp=rename", h9, NULL, 0, 400, NULL);
}
END_TEST

START_TEST(test_restart_keeps_data) {
        EmuHttpResult res;
        _cleanup_free_ char *data_dir = NULL, *id = NULL, *etag = NULL;

        make_share();
        expect("PUT", "/share/Dir?restype=directory", NULL, NULL, 0, 201, NULL);
        make_file("/share/Dir/File", "6");
        put_range("/share/Dir/File", 0, "persist", 6);
        res = call("HEAD", "/share/Dir/File", NULL, NULL, 0);
        id = header_dup(&res, "x-ms-file-id");
        etag = header_dup(&res, "ETag");
        emu_http_result_clear(&res);

        data_dir = strdup(emu->data_dir);
        ck_assert_int_eq(emu_instance_stop(emu), 0);
        /* Keep the data: start a second instance on it before freeing the first. */
        EmuInstance *second = NULL;
        int r = emu_instance_start(data_dir, NULL, &second);
        ck_assert_msg(r == 0, "restart: %s", strerror(-r));
        EmuInstance *first = emu;
        emu = second;
        res = call("GET", "/share/dir/file", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        ck_assert_int_eq(memcmp(res.body, "persis", 6), 0);
        ck_assert_str_eq(emu_http_header(&res, "x-ms-file-id"), id);
        ck_assert_str_eq(emu_http_header(&res, "ETag"), etag);
        emu_http_result_clear(&res);
        res = call("GET", "/share?restype=directory&comp=list", NULL, NULL, 0);
        ck_assert_ptr_nonnull(strstr(res.body, "<Name>Dir</Name>"));
        emu_http_result_clear(&res);
        ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
        emu = first;
        emu_instance_free(TAKE_PTR(emu));
}
END_TEST

#define PAR_THREADS 4
#define PAR_CHUNK (256 * 1024)

typedef struct ParArg {
        int index;
        bool ok;
} ParArg;

static void *par_worker(void *p) {
        ParArg *a = p;
        char *buf = malloc(PAR_CHUNK);
        char range[96];
        EmuHttpResult res;

        a->ok = buf != NULL;
        for (int round = 0; buf && round < 4 && a->ok; round++) {
                memset(buf, 'A' + a->index, PAR_CHUNK);
                snprintf(
                        range, sizeof(range), "x-ms-range: bytes=%d-%d", a->index * PAR_CHUNK,
                        (a->index + 1) * PAR_CHUNK - 1);
                const char *const w[] = {"x-ms-write: update", range, NULL};
                if (emu_http(
                            emu, "PUT", "/share/par?comp=range", w, buf, PAR_CHUNK,
                            EMU_AUTH_MODE_SHARED_KEY, &res) < 0 ||
                    res.status != 201)
                        a->ok = false;
                emu_http_result_clear(&res);
                const char *const g[] = {range, NULL};
                if (emu_http(emu, "GET", "/share/par", g, NULL, 0, EMU_AUTH_MODE_SHARED_KEY, &res) <
                            0 ||
                    res.status != 206 || res.body_size != PAR_CHUNK ||
                    memcmp(res.body, buf, PAR_CHUNK) != 0)
                        a->ok = false;
                emu_http_result_clear(&res);
        }
        free(buf);
        return NULL;
}

START_TEST(test_parallel_same_file) {
        pthread_t t[PAR_THREADS];
        ParArg args[PAR_THREADS];
        char size[32];

        make_share();
        snprintf(size, sizeof(size), "%d", PAR_THREADS * PAR_CHUNK);
        make_file("/share/par", size);
        for (int i = 0; i < PAR_THREADS; i++) {
                args[i] = (ParArg){.index = i};
                ck_assert_int_eq(pthread_create(&t[i], NULL, par_worker, &args[i]), 0);
        }
        for (int i = 0; i < PAR_THREADS; i++) {
                ck_assert_int_eq(pthread_join(t[i], NULL), 0);
                ck_assert_msg(args[i].ok, "worker %d", i);
        }
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-files");
        TCase *tc = tcase_create("files");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_share_lifecycle);
        tcase_add_test(tc, test_versions);
        tcase_add_test(tc, test_directories);
        tcase_add_test(tc, test_names);
        tcase_add_test(tc, test_file_data);
        tcase_add_test(tc, test_put_range_too_large);
        tcase_add_test(tc, test_list);
        tcase_add_test(tc, test_lease);
        tcase_add_test(tc, test_rename);
        tcase_add_test(tc, test_restart_keeps_data);
        tcase_add_test(tc, test_parallel_same_file);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
