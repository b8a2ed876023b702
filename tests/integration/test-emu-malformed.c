/* SPDX-License-Identifier: MIT */
/* Hostile requests against the real azfiles-emu binary, over a raw TCP socket and with libcurl:
 * bad request lines and headers, invalid UTF-8 and NUL in names, path traversal in many
 * encodings, very deep paths and over-long names, negative/huge/overflowing/reversed ranges, an
 * over-sized Put Range body, garbage XML bodies, a 100 KiB header line and thousands of headers.
 * Each must get a 4xx (with x-ms-error-code where the service sends one; the expected code where
 * the service's is known) or a clean connection close; never a 5xx or a crash. Afterwards the
 * emulator must still answer, exit cleanly on SIGTERM, and nothing may have appeared outside its
 * --data directory (the tree around it is snapshotted before and after). */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "base64-util.h"
#include "emu-harness.h"
#include "macro.h"
#include "sas.h"
#include "time-util.h"

#define IO_TIMEOUT_MS 20000
#define MARKER "azfiles-emu-escape-marker"
#define SHARE "/hostile"
#define FILE_1K SHARE "/file1k"

static EmuInstance *emu;
static char *sas; /* account SAS query for raw requests */
static uint16_t port;
static char *snapshot_before;

/* ---- tree snapshot (everything under the instance's temp dir except data/ and the log) ---- */

static char *snap_buf;
static size_t snap_len;
static const char *snap_skip_data, *snap_skip_log;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        char line[4200];
        int n;
        (void)flag;
        (void)ftw;
        if (strncmp(path, snap_skip_data, strlen(snap_skip_data)) == 0 ||
            streq(path, snap_skip_log))
                return 0;
        n = snprintf(line, sizeof(line), "%s %o\n", path, (unsigned)st->st_mode);
        if (n > 0) {
                char *b = realloc(snap_buf, snap_len + (size_t)n + 1);
                ck_assert_ptr_nonnull(b);
                memcpy(b + snap_len, line, (size_t)n + 1);
                snap_buf = b;
                snap_len += (size_t)n;
        }
        return 0;
}

static char *snapshot(void) {
        snap_buf = strdup("");
        snap_len = 0;
        snap_skip_data = emu->data_dir;
        snap_skip_log = emu->stderr_path;
        ck_assert_int_eq(nftw(emu->dir, snap_one, 16, FTW_PHYS), 0);
        return snap_buf;
}

static bool exists_outside(void) {
        char p[4096];
        const char *places[] = {emu->dir, "/tmp", "/", NULL};
        for (size_t i = 0; places[i]; i++) {
                struct stat st;
                (void)snprintf(p, sizeof(p), "%s/%s", places[i], MARKER);
                if (lstat(p, &st) == 0)
                        return true;
        }
        return false;
}

/* ---- fixture ---------------------------------------------------------------------------- */

static EmuHttpResult
call(const char *method, const char *pq, const char *const *hdrs, const void *body, size_t size) {
        EmuHttpResult res;
        int r = emu_http(emu, method, pq, hdrs, body, size, EMU_AUTH_MODE_SHARED_KEY, &res);
        ck_assert_msg(r == 0, "%s %s: harness error %s", method, pq, strerror(-r));
        return res;
}

static void setup(void) {
        static const char *const file_hdrs[] = {
                "x-ms-type: file", "x-ms-content-length: 1024", NULL};
        static const char *const big_hdrs[] = {
                "x-ms-type: file", "x-ms-content-length: 20971520", NULL};
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_size;
        char expiry[SAS_TIME_MAX];
        SasToken t = {};
        const char *p;
        EmuHttpResult res;
        int r;

        r = emu_instance_start(NULL, NULL, &emu);
        ck_assert_msg(r == 0, "emu_instance_start: %s", strerror(-r));
        p = strrchr(emu->files_url, ':');
        ck_assert_ptr_nonnull(p);
        port = (uint16_t)strtoul(p + 1, NULL, 10);
        ck_assert_uint_gt(port, 0);

        ck_assert_int_eq(base64_decode(EMU_TEST_KEY, &key, &key_size), 0);
        t.kind = SAS_ACCOUNT;
        t.version = (char *)EMU_TEST_VERSION;
        t.permissions = (char *)"rwdlc";
        t.services = (char *)"f";
        t.resource_types = (char *)"sco";
        t.protocol = (char *)"https,http";
        t.expiry = sas_format_time(expiry, now_realtime_ns() + 3600LL * 1000000000LL);
        ck_assert_int_eq(sas_generate(&t, EMU_TEST_ACCOUNT, NULL, key, key_size, &sas), 0);

        res = call("PUT", SHARE "?restype=share", NULL, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        emu_http_result_clear(&res);
        res = call("PUT", FILE_1K, file_hdrs, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        emu_http_result_clear(&res);
        res = call("PUT", SHARE "/big", big_hdrs, NULL, 0);
        ck_assert_int_eq(res.status, 201);
        emu_http_result_clear(&res);
        snapshot_before = snapshot();
        ck_assert(!exists_outside());
}

static void teardown(void) {
        EmuHttpResult res;
        _cleanup_free_ char *after = NULL;

        /* Still alive and answering. */
        ck_assert_int_eq(kill(emu->pid, 0), 0);
        res = call("GET", SHARE "?restype=share", NULL, NULL, 0);
        ck_assert_msg(
                res.curl_code == 0 && res.status == 200,
                "emulator no longer answers: curl %d status %ld", res.curl_code, res.status);
        emu_http_result_clear(&res);
        res = call("HEAD", FILE_1K, NULL, NULL, 0);
        ck_assert_int_eq(res.status, 200);
        emu_http_result_clear(&res);
        /* Nothing outside --data. */
        after = snapshot();
        ck_assert_msg(
                streq(after, snapshot_before),
                "tree outside --data changed:\nbefore:\n%s\nafter:\n%s", snapshot_before, after);
        ck_assert(!exists_outside());
        /* A clean exit, not a crash. */
        ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
        free(snapshot_before);
        snapshot_before = NULL;
        free(sas);
        sas = NULL;
}

/* ---- raw TCP ------------------------------------------------------------------------------ */

typedef struct RawResult {
        int status;     /* 0: the connection closed without a status line */
        char code[128]; /* x-ms-error-code or "" */
} RawResult;

/* Sends data (all of it, or until the peer closes), half-closes, reads the answer until the header
 * block is complete or the connection closes, bounded by IO_TIMEOUT_MS. */
static RawResult raw_request(const void *data, size_t size) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 64 * 1024, sent = 0;
        int64_t deadline = now_monotonic_ns() + (int64_t)IO_TIMEOUT_MS * 1000000;
        RawResult rr = {};
        bool closed = false;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ck_assert_int_ge(fd, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                ck_assert_int_eq(errno, EINPROGRESS);
        buf = malloc(cap + 1);
        ck_assert_ptr_nonnull(buf);
        while (!closed) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN | (sent < size ? POLLOUT : 0)};
                int64_t left = (deadline - now_monotonic_ns()) / 1000000;
                ck_assert_msg(left > 0, "raw request: no answer within %d ms", IO_TIMEOUT_MS);
                if (poll(&pfd, 1, (int)left) <= 0)
                        continue;
                if ((pfd.revents & POLLOUT) && sent < size) {
                        ssize_t n = send(fd, (const char *)data + sent, size - sent, MSG_NOSIGNAL);
                        if (n > 0) {
                                sent += (size_t)n;
                                /* All sent: a half-close tells a server waiting for more
                                 * (a truncated body) that nothing else comes. */
                                if (sent == size)
                                        (void)shutdown(fd, SHUT_WR);
                        } else if (n < 0 && errno != EAGAIN)
                                sent = size; /* the peer closed or reset: read what it said */
                }
                if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = recv(fd, buf + len, cap - len, 0);
                        if (n <= 0) {
                                if (n < 0 && errno == EAGAIN)
                                        continue;
                                closed = true;
                                break;
                        }
                        len += (size_t)n;
                        buf[len] = '\0';
                        if (strstr(buf, "\r\n\r\n") || len == cap)
                                break;
                }
        }
        buf[len] = '\0';
        if (len > 0) {
                const char *c;
                ck_assert_msg(
                        sscanf(buf, "HTTP/1.%*d %d", &rr.status) == 1, "not HTTP: %.200s", buf);
                c = strcasestr(buf, "\r\nx-ms-error-code:");
                if (c) {
                        c += strlen("\r\nx-ms-error-code:");
                        while (*c == ' ')
                                c++;
                        (void)snprintf(
                                rr.code, sizeof(rr.code), "%.*s", (int)strcspn(c, "\r\n"), c);
                }
        }
        return rr;
}

/* Expectation: want 0 = any 4xx; code NULL = any (but a code must be present when want_code). */
static void
expect_raw(const char *what, const void *data, size_t size, int want, const char *code) {
        RawResult rr = raw_request(data, size);
        if (rr.status == 0)
                return; /* a clean close is an acceptable answer to garbage */
        if (want)       /* may be a 5xx: 505 for an unknown HTTP version, as HTTP.sys answers */
                ck_assert_msg(
                        rr.status == want, "%s: status %d (%s), want %d", what, rr.status, rr.code,
                        want);
        else
                ck_assert_msg(
                        rr.status >= 400 && rr.status < 500, "%s: status %d (%s)", what, rr.status,
                        rr.code);
        if (code)
                ck_assert_msg(streq(rr.code, code), "%s: code '%s', want %s", what, rr.code, code);
}

static void expect_curl(
        const char *what,
        const char *method,
        const char *pq,
        const char *const *hdrs,
        const void *body,
        size_t size,
        int want,
        const char *code) {
        EmuHttpResult res = call(method, pq, hdrs, body, size);
        const char *got;

        if (res.curl_code != 0) {
                /* Only a clean close (empty reply / reset while sending a body) is acceptable. */
                ck_assert_msg(
                        res.curl_code == 52 || res.curl_code == 55 || res.curl_code == 56,
                        "%s: transport error %d", what, res.curl_code);
                emu_http_result_clear(&res);
                return;
        }
        got = emu_http_header(&res, "x-ms-error-code");
        ck_assert_msg(
                res.status >= 400 && res.status < 500, "%s: status %ld (%s)", what, res.status,
                got ? got : "-");
        ck_assert_msg(got != NULL, "%s: %ld without x-ms-error-code", what, res.status);
        if (want)
                ck_assert_msg(
                        res.status == want, "%s: status %ld (%s), want %d", what, res.status, got,
                        want);
        if (code)
                ck_assert_msg(streq(got, code), "%s: code %s, want %s", what, got, code);
        emu_http_result_clear(&res);
}

/* ---- cases ---------------------------------------------------------------------------------- */

static const char *const CREATE_FILE[] = {"x-ms-type: file", "x-ms-content-length: 1", NULL};
static const char *const CREATE_DIR[] = {NULL};

/* Path traversal in many encodings, as a file create, a directory create and a read. */
START_TEST(test_traversal) {
        static const char *const paths[] = {
                SHARE "/../" MARKER,
                SHARE "/../../" MARKER,
                SHARE "/..%2F" MARKER,
                SHARE "/..%2f..%2f" MARKER,
                SHARE "/%2e%2e/" MARKER,
                SHARE "/%2E%2E%2F%2E%2E%2F" MARKER,
                SHARE "/%2e%2e%2f%2e%2e%2f%2e%2e%2f" MARKER,
                SHARE "/dir/../../" MARKER,
                SHARE "/./../" MARKER,
                SHARE "/%2e/%2e%2e/" MARKER,
                SHARE "/..%5c" MARKER,
                SHARE "/..\\..\\" MARKER,
                SHARE "/%c0%ae%c0%ae/" MARKER, /* overlong UTF-8 dots */
                SHARE "/%e0%80%ae%e0%80%ae/" MARKER,
                SHARE "/..%00/" MARKER,
                "/../" MARKER,
                "/%2e%2e/" MARKER,
                "/..%2f..%2ftmp%2f" MARKER,
                "/hostile%2f..%2f..%2f" MARKER,
                "//" MARKER,
                SHARE "//" MARKER "/",
        };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_free_ char *dir = NULL;
                ck_assert_int_ge(asprintf(&dir, "%s?restype=directory", paths[i]), 0);
                expect_curl(paths[i], "PUT", paths[i], CREATE_FILE, NULL, 0, 0, NULL);
                expect_curl(dir, "PUT", dir, CREATE_DIR, NULL, 0, 0, NULL);
                expect_curl(paths[i], "GET", paths[i], NULL, NULL, 0, 0, NULL);
                ck_assert_msg(!exists_outside(), "%s created something outside --data", paths[i]);
        }
}
END_TEST

/* Names the service refuses: invalid UTF-8, NUL, control characters, over-long, too deep. */
START_TEST(test_bad_names) {
        static const char *const names[] = {
                SHARE "/%ff%fe",    SHARE "/a%00b", SHARE "/%00",   SHARE "/a%01b", SHARE "/%c3",
                SHARE "/%ed%a0%80", SHARE "/a%22b", SHARE "/a%5cb", SHARE "/a%3ab", SHARE "/a%7cb",
                SHARE "/a%3fb",     SHARE "/a*b",   SHARE "/%zz",   SHARE "/%",     SHARE "/a%2",
        };
        _cleanup_free_ char *longname = NULL, *deep = NULL, *deepdir = NULL;
        size_t off;

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                expect_curl(names[i], "PUT", names[i], CREATE_FILE, NULL, 0, 400, NULL);

        /* A 4 KiB name component (the service allows 255 characters). */
        longname = malloc(strlen(SHARE) + 2 + 4096 + 1);
        ck_assert_ptr_nonnull(longname);
        off = (size_t)snprintf(longname, 32, "%s/", SHARE);
        memset(longname + off, 'n', 4096);
        longname[off + 4096] = '\0';
        expect_curl("4 KiB name", "PUT", longname, CREATE_FILE, NULL, 0, 0, NULL);

        /* 300 levels deep. */
        deep = malloc(strlen(SHARE) + 300 * 2 + 16);
        ck_assert_ptr_nonnull(deep);
        off = (size_t)snprintf(deep, 16, "%s", SHARE);
        for (int i = 0; i < 300; i++) {
                deep[off++] = '/';
                deep[off++] = 'd';
        }
        deep[off] = '\0';
        expect_curl("300-deep file", "PUT", deep, CREATE_FILE, NULL, 0, 0, NULL);
        ck_assert_int_ge(asprintf(&deepdir, "%s?restype=directory", deep), 0);
        expect_curl("300-deep directory", "PUT", deepdir, CREATE_DIR, NULL, 0, 0, NULL);
        expect_curl("300-deep get", "GET", deep, NULL, NULL, 0, 0, NULL);
}
END_TEST

/* Ranges: negative, reversed, huge, overflowing, malformed; Put Range past the end or too big. */
START_TEST(test_ranges) {
        static const struct {
                const char *range;
                int want;
                const char *code;
        } gets[] = {
                {"bytes=-1", 400, "InvalidHeaderValue"},
                {"bytes=5-3", 400, "InvalidHeaderValue"},
                {"bytes=18446744073709551615-", 416, "InvalidRange"},
                {"bytes=18446744073709551616-", 400, "InvalidHeaderValue"},
                {"bytes=99999999999999999999999999-1", 400, "InvalidHeaderValue"},
                {"bytes=1024-", 416, "InvalidRange"},
                {"bytes=-", 400, "InvalidHeaderValue"},
                {"bytes=--1", 400, "InvalidHeaderValue"},
                {"bytes=0x10-0x20", 400, "InvalidHeaderValue"},
                {"bytes= 1-2", 400, "InvalidHeaderValue"},
                {"bytes=1-2,4-5", 400, "InvalidHeaderValue"},
                {"items=0-1", 400, "InvalidHeaderValue"},
                {"bytes=+1-2", 400, "InvalidHeaderValue"},
        };
        static const struct {
                const char *range;
                const char *write;
                size_t body;
                int want;
                const char *code;
        } puts_[] = {
                {"bytes=0-18446744073709551615", "clear", 0, 416, "InvalidRange"},
                {"bytes=18446744073709551615-18446744073709551615", "update", 1, 0, NULL},
                {"bytes=1024-1024", "update", 1, 416, "InvalidRange"},
                {"bytes=5-3", "update", 0, 400, "InvalidHeaderValue"},
                {"bytes=-1", "update", 1, 400, "InvalidHeaderValue"},
                {"bytes=0-", "update", 1, 400, "InvalidHeaderValue"},
                {"bytes=0-9", "update", 5, 0, NULL}, /* body shorter than the range */
                {"bytes=0-1", "bogus", 2, 400, "InvalidHeaderValue"},
        };
        for (size_t i = 0; i < ELEMENTSOF(gets); i++) {
                char h[128];
                (void)snprintf(h, sizeof(h), "x-ms-range: %s", gets[i].range);
                expect_curl(
                        gets[i].range, "GET", FILE_1K, (const char *const[]){h, NULL}, NULL, 0,
                        gets[i].want, gets[i].code);
        }
        for (size_t i = 0; i < ELEMENTSOF(puts_); i++) {
                char h[128], w[64];
                (void)snprintf(h, sizeof(h), "x-ms-range: %s", puts_[i].range);
                (void)snprintf(w, sizeof(w), "x-ms-write: %s", puts_[i].write);
                expect_curl(
                        puts_[i].range, "PUT", FILE_1K "?comp=range",
                        (const char *const[]){h, w, NULL},
                        puts_[i].body ? "xxxxxxxxxxxxxxxx" : NULL, puts_[i].body, puts_[i].want,
                        puts_[i].code);
        }
}
END_TEST

/* A 10 MiB Put Range body: the 4 MiB limit answers 413 RequestBodyTooLarge (or the connection
 * is closed while the body is still coming). */
START_TEST(test_huge_body) {
        size_t size = 10u * 1024u * 1024u;
        _cleanup_free_ char *body = malloc(size);
        ck_assert_ptr_nonnull(body);
        memset(body, 'b', size);
        expect_curl(
                "10 MiB Put Range", "PUT", SHARE "/big?comp=range",
                (const char *const[]){"x-ms-range: bytes=0-10485759", "x-ms-write: update", NULL},
                body, size, 413, "RequestBodyTooLarge");
}
END_TEST

/* Garbage XML (and garbage bytes) to endpoints that take or refuse bodies. */
START_TEST(test_garbage_bodies) {
        static const char *const bodies[] = {
                "<?xml version=\"1.0\"?><SignedIdentifiers><SignedIdentifier><Id>",
                "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;\">]><x>&b;</x>",
                "\xff\xfe<\x00x\x00>",
                "<a><b></a></b>",
        };
        static const char *const targets[] = {
                SHARE "?restype=share&comp=acl",
                "?restype=service&comp=properties",
                SHARE "?restype=share&comp=properties",
                SHARE "/dirx?restype=directory&comp=metadata",
                FILE_1K "?comp=lease",
                FILE_1K "?comp=bogus",
        };
        /* The first two take XML bodies in the service (Set Share ACL, Set File Service
         * Properties) and the emulator does not implement them: a 4xx. The others take no body:
         * the service ignores one, so any answer but a 5xx will do. */
        for (size_t t = 0; t < ELEMENTSOF(targets); t++)
                for (size_t b = 0; b < ELEMENTSOF(bodies); b++) {
                        size_t size = strlen(bodies[b]) + (b == 2 ? 4 : 0);
                        const char *const h[] = {"Content-Type: application/xml", NULL};
                        EmuHttpResult res;

                        if (t < 2) {
                                expect_curl(
                                        targets[t], "PUT", targets[t], h, bodies[b], size, 0, NULL);
                                continue;
                        }
                        res = call("PUT", targets[t], h, bodies[b], size);
                        ck_assert_msg(
                                res.curl_code == 0 && res.status < 500, "%s: curl %d status %ld",
                                targets[t], res.curl_code, res.status);
                        emu_http_result_clear(&res);
                }
}
END_TEST

/* Bad header values the handlers parse. */
START_TEST(test_bad_headers) {
        static const char *const create[][3] = {
                {"x-ms-type: file", "x-ms-content-length: -1"},
                {"x-ms-type: file", "x-ms-content-length: 18446744073709551616"},
                {"x-ms-type: file", "x-ms-content-length: 1e3"},
                {"x-ms-type: directory", "x-ms-content-length: 1"},
                {
                        "x-ms-type: file",
                        "x-ms-content-length: 1",
                },
        };
        static const char *const versions[] = {
                "x-ms-version: 1999-01-01", "x-ms-version: garbage",
                "x-ms-version: 2025-05-05\x01"};
        for (size_t i = 0; i < ELEMENTSOF(create) - 1; i++)
                expect_curl(create[i][1], "PUT", SHARE "/hdr", create[i], NULL, 0, 400, NULL);
        for (size_t i = 0; i < ELEMENTSOF(versions); i++)
                expect_curl(
                        versions[i], "GET", FILE_1K, (const char *const[]){versions[i], NULL}, NULL,
                        0, 400, NULL);
        expect_curl(
                "bad lease action", "PUT", FILE_1K "?comp=lease",
                (const char *const[]){"x-ms-lease-action: steal", NULL}, NULL, 0, 400, NULL);
        expect_curl(
                "bad lease duration", "PUT", FILE_1K "?comp=lease",
                (const char *const[]){
                        "x-ms-lease-action: acquire", "x-ms-lease-duration: -7", NULL},
                NULL, 0, 400, NULL);
        expect_curl(
                "bad attributes", "PUT", SHARE "/attr",
                (const char *const[]){
                        "x-ms-type: file", "x-ms-content-length: 1",
                        "x-ms-file-attributes: Bogus|ReadOnly", NULL},
                NULL, 0, 400, NULL);
        expect_curl(
                "bad creation time", "PUT", SHARE "/attr",
                (const char *const[]){
                        "x-ms-type: file", "x-ms-content-length: 1",
                        "x-ms-file-creation-time: yesterday", NULL},
                NULL, 0, 400, NULL);
        expect_curl(
                "bad maxresults", "GET", SHARE "?restype=directory&comp=list&maxresults=-5", NULL,
                NULL, 0, 400, NULL);
}
END_TEST

#define HTTP99 "GET /devstoreaccount1" SHARE " HTTP/9.9\r\nHost: x\r\n\r\n"

/* Raw TCP: broken request lines, broken header syntax, a 100 KiB header line, thousands of
 * headers, a truncated request. */
START_TEST(test_raw) {
        static const char *const reqs[] = {
                "GARBAGE\r\n\r\n",
                "GET\r\n\r\n",
                "FOO /devstoreaccount1" SHARE " HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /devstoreaccount1/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
                "GET /devstoreaccount1" SHARE
                " HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
                "GET /devstoreaccount1" SHARE " HTTP/1.1\r\nHost: x\r\n: empty-name\r\n\r\n",
                "GET /devstoreaccount1" SHARE " HTTP/1.1\r\nHost: x\r\nX-\xff\xfe: v\r\n\r\n",
                "GET /devstoreaccount1" SHARE " HTTP/1.1\r\nHost: x\r\n x-folded: v\r\n\r\n",
                "PUT /devstoreaccount1" SHARE
                "/f HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                "PUT /devstoreaccount1" SHARE
                "/f HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "PUT /devstoreaccount1" SHARE
                "/f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "GET /devstoreaccount1" SHARE
                " HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
                "\x00\x01\x02\x03\r\n\r\n",
        };
        _cleanup_free_ char *big = NULL, *many = NULL;
        size_t off;

        expect_raw("HTTP/9.9", HTTP99, strlen(HTTP99), 505, NULL);
        for (size_t i = 0; i < ELEMENTSOF(reqs); i++)
                expect_raw(
                        reqs[i], reqs[i], strlen(reqs[i]) + (i == ELEMENTSOF(reqs) - 1 ? 8 : 0), 0,
                        NULL);

        /* A header line of 100 KiB. */
        big = malloc(200 * 1024);
        ck_assert_ptr_nonnull(big);
        off = (size_t)snprintf(
                big, 256, "GET /devstoreaccount1%s?%s HTTP/1.1\r\nHost: x\r\nX-Big: ", SHARE,
                "restype=share");
        memset(big + off, 'h', 100 * 1024);
        off += 100 * 1024;
        memcpy(big + off, "\r\n\r\n", 4);
        expect_raw("100 KiB header", big, off + 4, 0, NULL);

        /* 5000 headers. */
        many = malloc(5000 * 32 + 256);
        ck_assert_ptr_nonnull(many);
        off = (size_t)snprintf(
                many, 256, "GET /devstoreaccount1%s?restype=share HTTP/1.1\r\nHost: x\r\n", SHARE);
        for (int i = 0; i < 5000; i++)
                off += (size_t)snprintf(many + off, 32, "X-H%d: v\r\n", i);
        memcpy(many + off, "\r\n", 2);
        expect_raw("5000 headers", many, off + 2, 0, NULL);

        /* A well-formed SAS request with a traversal path. */
        {
                _cleanup_free_ char *r = NULL;
                ck_assert_int_ge(
                        asprintf(
                                &r,
                                "PUT /devstoreaccount1%s/..%%2f..%%2f%s?%s HTTP/1.1\r\nHost: x\r\n"
                                "x-ms-version: %s\r\nx-ms-type: file\r\nx-ms-content-length: 1\r\n"
                                "Content-Length: 0\r\n\r\n",
                                SHARE, MARKER, sas, EMU_TEST_VERSION),
                        0);
                expect_raw("SAS traversal", r, strlen(r), 0, NULL);
        }
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("emu-malformed");
        TCase *tc = tcase_create("hostile");
        tcase_set_timeout(tc, 120);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_traversal);
        tcase_add_test(tc, test_bad_names);
        tcase_add_test(tc, test_ranges);
        tcase_add_test(tc, test_huge_body);
        tcase_add_test(tc, test_garbage_bodies);
        tcase_add_test(tc, test_bad_headers);
        tcase_add_test(tc, test_raw);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(suite());
        int failed;
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
