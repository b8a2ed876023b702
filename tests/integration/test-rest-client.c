/* SPDX-License-Identifier: MIT */
/* The File REST client, the HTTP client under it and the managed identity client, on a real
 * sd-event loop against the real azfiles-emu over loopback (and a tiny libmicrohttpd server for
 * malformed replies): every operation, errors to errno, paging, ranges through files, retries
 * under injected faults (and no retry of non-idempotent ops), cancellation, timeouts, submission
 * from other threads, Shared Key, SAS and bearer auth. No timing is asserted. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <systemd/sd-event.h>

#include "base64-util.h"
#include "emu-harness.h"
#include "http-client.h"
#include "imds-client.h"
#include "macro.h"
#include "rest-client.h"
#include "rest-error.h"
#include "sas.h"
#include "sharedkey.h"
#include "time-util.h"

#define GUARD_USEC (60ULL * 1000000ULL) /* a hung loop fails the test instead of CI */

static EmuInstance *emu;
static sd_event *ev;
static HttpClient *http;
static ImdsClient *imds;
static RestClient *rc;
static uint8_t *key;
static size_t key_size;

typedef struct Done {
        bool done;
        int error;
        long status;
        unsigned attempts;
        char code[128];
        char etag[REST_ETAG_MAX];
        char mode[32];
        char lease_id[64];
        bool has_content_length;
        uint64_t content_length;
        uint64_t file_id;
        bool is_directory;
        bool has_quota;
        uint64_t quota;
        uint64_t usage;
        uint64_t bytes;
        bool eof;
        RestListPage *page;
} Done;

static void on_done(RestResult *r, void *userdata) {
        Done *d = userdata;
        const char *m;

        ck_assert(!d->done); /* exactly once */
        d->done = true;
        d->error = r->error;
        d->status = r->status;
        d->attempts = r->attempts;
        snprintf(d->code, sizeof(d->code), "%s", r->error_code ? r->error_code : "");
        snprintf(d->etag, sizeof(d->etag), "%s", r->props->etag);
        m = rest_properties_metadata(r->props, "mode");
        snprintf(d->mode, sizeof(d->mode), "%s", m ? m : "");
        snprintf(d->lease_id, sizeof(d->lease_id), "%s", r->props->lease_id ?: "");
        d->has_content_length = r->props->has_content_length;
        d->content_length = r->props->content_length;
        d->file_id = r->props->file_id;
        d->is_directory = r->props->is_directory;
        d->has_quota = r->props->has_share_quota;
        d->quota = r->props->share_quota_gib;
        d->usage = r->share_usage_bytes;
        d->bytes = r->bytes;
        d->eof = r->eof;
        d->page = TAKE_PTR(r->page);
}

static int on_guard(sd_event_source *s, uint64_t usec, void *userdata) {
        ck_abort_msg("event loop guard expired: a request never completed");
        return 0;
}

static void run_until(const bool *flag) {
        sd_event_source *guard = NULL;
        ck_assert_int_ge(
                sd_event_add_time_relative(
                        ev, &guard, CLOCK_MONOTONIC, GUARD_USEC, 0, on_guard, NULL),
                0);
        while (!*flag)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        sd_event_source_disable_unref(guard);
}

static Done run_op_on(RestClient *client, const RestOp *op) {
        Done d = {0};
        ck_assert_int_eq(rest_client_submit(client, op, on_done, &d, NULL), 0);
        run_until(&d.done);
        return d;
}

static Done run_op(const RestOp *op) {
        return run_op_on(rc, op);
}

/* A client of the test share with auth (its tokens from ic for bearer). */
static RestClient *
make_client_imds(RestAuthKind auth, const char *sas, ImdsClient *ic, unsigned max_attempts) {
        RestClient *c = NULL;
        RestClientConfig cfg = {
                .endpoint = emu->files_url,
                .account = EMU_TEST_ACCOUNT,
                .share = "share",
                .auth = auth,
                .key = key,
                .key_size = key_size,
                .sas_token = sas,
                .imds = ic,
                .max_attempts = max_attempts,
                .retry_base_ms = 5,
                .retry_max_delay_ms = 50,
                .retry_budget_ms = 30000,
        };
        ck_assert_int_eq(rest_client_new(ev, http, &cfg, &c), 0);
        return c;
}

static RestClient *make_client(RestAuthKind auth, const char *sas, unsigned max_attempts) {
        return make_client_imds(auth, sas, imds, max_attempts);
}

/* A Shared Key client of the test share, with cfg's retry and timeout settings. */
static RestClient *client_with(RestClientConfig cfg) {
        RestClient *c = NULL;

        cfg.endpoint = emu->files_url;
        cfg.account = EMU_TEST_ACCOUNT;
        cfg.share = "share";
        cfg.key = key;
        cfg.key_size = key_size;
        ck_assert_int_eq(rest_client_new(ev, http, &cfg, &c), 0);
        return c;
}

static void set_faults(const char *spec) {
        EmuHttpResult res;
        char body[512];
        const char *const h[] = {"Content-Type: application/json", NULL};
        snprintf(body, sizeof(body), "{\"spec\":\"%s\"}", spec);
        ck_assert_int_eq(
                emu_http(
                        emu, "PUT", "imds:/__emu/faults", h, body, strlen(body), EMU_AUTH_MODE_NONE,
                        &res),
                0);
        ck_assert_msg(res.status == 200, "faults %s: %ld %s", spec, res.status, res.body);
        emu_http_result_clear(&res);
}

/* 0: every transfer on the loop thread; setup_threads: 2 transfer threads. */
static unsigned transfer_threads;

static void setup(void) {
        EmuHttpResult res;
        ImdsClientConfig icfg = {0};
        HttpClientConfig hcfg = {.max_in_flight = 4, .transfer_threads = transfer_threads};

        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(
                emu_http(
                        emu, "PUT", "/share?restype=share", NULL, NULL, 0, EMU_AUTH_MODE_SHARED_KEY,
                        &res),
                0);
        ck_assert_int_eq(res.status, 201);
        emu_http_result_clear(&res);
        ck_assert_int_eq(base64_decode(EMU_TEST_KEY, &key, &key_size), 0);
        ck_assert_int_ge(sd_event_new(&ev), 0);
        ck_assert_int_eq(http_client_new(ev, &hcfg, &http), 0);
        icfg.endpoint = emu->imds_url;
        ck_assert_int_eq(imds_client_new(ev, http, &icfg, &imds), 0);
        rc = make_client(REST_AUTH_SHARED_KEY, NULL, 0);
}

static void setup_threads(void) {
        transfer_threads = 2;
        setup();
        ck_assert_uint_eq(http_client_transfer_threads(http), 2);
}

static void teardown(void) {
        rc = rest_client_free(rc);
        imds = imds_client_free(imds);
        http = http_client_free(http);
        ev = sd_event_unref(ev);
        free(key);
        key = NULL;
        if (emu)
                ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
}

static void create_file(const char *path, uint64_t size) {
        RestOp op = {.type = REST_OP_CREATE_FILE, .path = path, .size = size};
        Done d = run_op(&op);
        ck_assert_msg(d.error == 0, "create %s: %d %s", path, d.error, d.code);
}

static int tmpfile_with(size_t size, unsigned seed) {
        char tmpl[] = "/tmp/rest-test.XXXXXX";
        int fd = mkostemp(tmpl, O_CLOEXEC);
        uint8_t *buf = malloc(size);
        ck_assert_int_ge(fd, 0);
        (void)unlink(tmpl);
        for (size_t i = 0; i < size; i++)
                buf[i] = (uint8_t)((i * 131 + seed) ^ (i >> 9));
        ck_assert_int_eq(pwrite(fd, buf, size, 0), (ssize_t)size);
        free(buf);
        return fd;
}

static bool fd_ranges_equal(int a, uint64_t aoff, int b, uint64_t boff, size_t n) {
        uint8_t *x = malloc(n), *y = malloc(n);
        bool eq = pread(a, x, n, (off_t)aoff) == (ssize_t)n &&
                  pread(b, y, n, (off_t)boff) == (ssize_t)n && memcmp(x, y, n) == 0;
        free(x);
        free(y);
        return eq;
}

/* ---- operations ------------------------------------------------------------------------- */

START_TEST(test_share_and_directories) {
        Done d;

        d = run_op(&(RestOp){.type = REST_OP_GET_SHARE_PROPERTIES, .path = ""});
        ck_assert_int_eq(d.error, 0);
        ck_assert(d.has_quota);
        ck_assert_uint_eq(d.quota, 5120);

        d = run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "dir a"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_str_ne(d.etag, "");
        d = run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "DIR A"});
        ck_assert_int_eq(d.error, -EEXIST);
        ck_assert_str_eq(d.code, "ResourceAlreadyExists");
        d = run_op(&(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "dir a"});
        ck_assert_int_eq(d.error, 0);
        ck_assert(d.is_directory);
        d = run_op(&(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "nope"});
        ck_assert_int_eq(d.error, -ENOENT); /* HEAD: code from the header only */
        d = run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "nope/sub"});
        ck_assert_int_eq(d.error, -ENOENT);
        ck_assert_str_eq(d.code, "ParentNotFound");

        create_file("dir a/f \xC3\xBC#1%[x].txt", 1000);
        d = run_op(&(RestOp){.type = REST_OP_DELETE_DIRECTORY, .path = "dir a"});
        ck_assert_int_eq(d.error, -ENOTEMPTY);
        d = run_op(&(RestOp){
                .type = REST_OP_GET_FILE_PROPERTIES, .path = "dir a/f \xC3\xBC#1%[x].txt"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.content_length, 1000);
        ck_assert(!d.is_directory);
        d = run_op(&(RestOp){.type = REST_OP_GET_SHARE_STATS, .path = ""});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.usage, 1000);
        d = run_op(&(RestOp){.type = REST_OP_DELETE_FILE, .path = "dir a/f \xC3\xBC#1%[x].txt"});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){.type = REST_OP_DELETE_FILE, .path = "dir a/f \xC3\xBC#1%[x].txt"});
        ck_assert_int_eq(d.error, -ENOENT);
        d = run_op(&(RestOp){.type = REST_OP_DELETE_DIRECTORY, .path = "dir a"});
        ck_assert_int_eq(d.error, 0);
}
END_TEST

START_TEST(test_list_paging) {
        static const char *const names[] = {"b", "A", "c d", "E", "f\xC3\xA9", "g", "H"};
        char seen[16][32];
        size_t n_seen = 0, pages = 0;
        char *marker = NULL;

        ck_assert_int_eq(run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "d"}).error, 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                char p[64];
                snprintf(p, sizeof(p), "d/%s", names[i]);
                if (i == 3)
                        ck_assert_int_eq(
                                run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = p})
                                        .error,
                                0);
                else
                        create_file(p, i);
        }
        do {
                Done d = run_op(&(RestOp){
                        .type = REST_OP_LIST_DIRECTORY,
                        .path = "d",
                        .marker = marker,
                        .max_results = 3});
                ck_assert_int_eq(d.error, 0);
                ck_assert_ptr_nonnull(d.page);
                ck_assert_uint_le(d.page->n_entries, 3);
                ck_assert(d.page->has_directory_id);
                for (size_t i = 0; i < d.page->n_entries; i++) {
                        const RestListEntry *e = &d.page->entries[i];
                        ck_assert_uint_lt(n_seen, 16);
                        snprintf(seen[n_seen++], 32, "%s", e->name);
                        ck_assert(e->has_file_id);
                        ck_assert_ptr_nonnull(e->etag);
                        ck_assert(e->has_attributes);
                        ck_assert_int_ne(e->last_write_ns, 0);
                        ck_assert(e->is_directory == streq(e->name, "E"));
                }
                free(marker);
                marker = d.page->next_marker ? strdup(d.page->next_marker) : NULL;
                rest_list_page_free(d.page);
                pages++;
        } while (marker);
        ck_assert_uint_eq(n_seen, ELEMENTSOF(names));
        ck_assert_uint_ge(pages, 3);
        /* One list, files and directories together, case-insensitive order. */
        ck_assert_str_eq(seen[0], "A");
        ck_assert_str_eq(seen[1], "b");
        ck_assert_str_eq(seen[2], "c d");
        ck_assert_str_eq(seen[3], "E");
        ck_assert_str_eq(seen[6], "H");

        /* The root directory lists too. */
        Done d = run_op(&(RestOp){.type = REST_OP_LIST_DIRECTORY, .path = ""});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.page->n_entries, 1);
        ck_assert_ptr_null(d.page->next_marker);
        rest_list_page_free(d.page);
}
END_TEST

START_TEST(test_ranges_through_files) {
        const size_t piece = REST_PUT_RANGE_MAX;
        int src = tmpfile_with(piece + 4096, 7), dst = tmpfile_with(16, 0);
        static const char small[] = "hello, share";
        uint64_t threaded;
        Done d;

        create_file("big", 3 * (uint64_t)piece);
        /* Put Range from a cache file at an offset, and from memory. */
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE,
                .path = "big",
                .offset = piece,
                .length = piece,
                .fd = src,
                .fd_offset = 4096});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE,
                .path = "big",
                .offset = 10,
                .length = sizeof(small) - 1,
                .fd = -1,
                .data = small});
        ck_assert_int_eq(d.error, 0);
        /* A small body from a file goes from the loop thread (HTTP_WORKER_MIN_BODY), a piece
         * from a transfer thread when there are some. */
        threaded = http_client_thread_transfers(http);
        ck_assert_uint_eq(threaded, transfer_threads > 0 ? 1 : 0);
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE,
                .path = "big",
                .offset = 2 * (uint64_t)piece,
                .length = 4096,
                .fd = src,
                .fd_offset = 4096});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(http_client_thread_transfers(http), threaded);

        /* Get Range into a cache file at another offset. */
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE,
                .path = "big",
                .offset = piece,
                .length = piece,
                .fd = dst,
                .fd_offset = 100});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.bytes, piece);
        ck_assert(fd_ranges_equal(src, 4096, dst, 100, piece));
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE, .path = "big", .offset = 0, .length = 64, .fd = dst});
        ck_assert_int_eq(d.error, 0);
        {
                char buf[64];
                ck_assert_int_eq(pread(dst, buf, 64, 0), 64);
                ck_assert_int_eq(memcmp(buf + 10, small, sizeof(small) - 1), 0);
                ck_assert_int_eq(buf[0], 0); /* sparse: unwritten reads as zeros */
        }
        /* Clipped at EOF, then at/after EOF: 0 bytes, not an error. */
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE,
                .path = "big",
                .offset = 3 * (uint64_t)piece - 5,
                .length = 100,
                .fd = dst});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.bytes, 5);
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE,
                .path = "big",
                .offset = 3 * (uint64_t)piece,
                .length = 100,
                .fd = dst});
        ck_assert_int_eq(d.error, 0);
        ck_assert(d.eof);
        ck_assert_uint_eq(d.bytes, 0);
        create_file("empty", 0);
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE, .path = "empty", .offset = 0, .length = 1, .fd = dst});
        ck_assert_int_eq(d.error, 0);
        ck_assert(d.eof);

        /* Clear, then past the end (must resize first). */
        d = run_op(&(RestOp){
                .type = REST_OP_CLEAR_RANGE, .path = "big", .offset = piece, .length = piece});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){
                .type = REST_OP_GET_RANGE,
                .path = "big",
                .offset = piece,
                .length = 4096,
                .fd = dst});
        ck_assert_int_eq(d.error, 0);
        {
                uint8_t buf[4096], zero[4096] = {0};
                ck_assert_int_eq(pread(dst, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
                ck_assert_int_eq(memcmp(buf, zero, sizeof(buf)), 0);
        }
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE,
                .path = "empty",
                .offset = 0,
                .length = 4,
                .fd = -1,
                .data = "abcd"});
        ck_assert_int_lt(d.error, 0);
        ck_assert_int_eq(d.status, 416);

        /* Refused before any I/O. */
        ck_assert_int_eq(
                rest_client_submit(
                        rc,
                        &(RestOp){
                                .type = REST_OP_PUT_RANGE,
                                .path = "big",
                                .length = piece + 1,
                                .fd = src},
                        on_done, &d, NULL),
                -EINVAL);
        ck_assert_int_eq(
                rest_client_submit(
                        rc,
                        &(RestOp){
                                .type = REST_OP_GET_RANGE,
                                .path = "a/../b",
                                .length = 1,
                                .fd = dst},
                        on_done, &d, NULL),
                -EINVAL);
        close(src);
        close(dst);
}
END_TEST

START_TEST(test_properties_metadata_rename_lease) {
        const RestMetadata meta[] = {
                {(char *)"mode", (char *)"0755"}, {(char *)"uid", (char *)"1000"}};
        char lease[64];
        Done d;
        uint64_t id;

        create_file("x", 10);
        d = run_op(&(RestOp){
                .type = REST_OP_SET_METADATA,
                .path = "x",
                .metadata = meta,
                .n_metadata = ELEMENTSOF(meta)});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){
                .type = REST_OP_SET_FILE_PROPERTIES,
                .path = "x",
                .set_size = true,
                .size = 12345,
                .smb = {.last_write_ns = INT64_C(1600000000123456700)}});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "x"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.content_length, 12345);
        ck_assert_str_eq(d.mode, "0755");
        id = d.file_id;

        /* Rename keeps the file id; onto an existing file only with replace. */
        create_file("y", 1);
        d = run_op(&(RestOp){.type = REST_OP_RENAME, .path = "y", .source_path = "x"});
        ck_assert_int_eq(d.error, -EEXIST);
        d = run_op(&(RestOp){
                .type = REST_OP_RENAME,
                .path = "y",
                .source_path = "x",
                .replace_if_exists = true});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "y"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.file_id, id);
        ck_assert_uint_eq(d.content_length, 12345);
        d = run_op(&(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "x"});
        ck_assert_int_eq(d.error, -ENOENT);
        /* Directories rename too. */
        ck_assert_int_eq(
                run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "d1"}).error, 0);
        d = run_op(&(RestOp){
                .type = REST_OP_RENAME, .path = "d2", .source_path = "d1", .is_directory = true});
        ck_assert_int_eq(d.error, 0);
        ck_assert_int_eq(
                run_op(&(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "d2"}).error, 0);

        /* Leases: writes need the id. */
        d = run_op(
                &(RestOp){.type = REST_OP_LEASE, .path = "y", .lease_action = REST_LEASE_ACQUIRE});
        ck_assert_int_eq(d.error, 0);
        ck_assert_str_ne(d.lease_id, "");
        snprintf(lease, sizeof(lease), "%s", d.lease_id);
        d = run_op(
                &(RestOp){.type = REST_OP_LEASE, .path = "y", .lease_action = REST_LEASE_ACQUIRE});
        ck_assert_int_eq(d.error, -EBUSY);
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE, .path = "y", .length = 2, .fd = -1, .data = "hi"});
        ck_assert_int_eq(d.error, -EBUSY);
        ck_assert_str_eq(d.code, "LeaseIdMissing");
        d = run_op(&(RestOp){
                .type = REST_OP_PUT_RANGE,
                .path = "y",
                .length = 2,
                .fd = -1,
                .data = "hi",
                .lease_id = lease});
        ck_assert_int_eq(d.error, 0);
        d = run_op(&(RestOp){.type = REST_OP_DELETE_FILE, .path = "y"});
        ck_assert_int_eq(d.error, -EBUSY);
        d = run_op(&(RestOp){
                .type = REST_OP_LEASE,
                .path = "y",
                .lease_action = REST_LEASE_RELEASE,
                .lease_id = lease});
        ck_assert_int_eq(d.error, 0);
        ck_assert_int_eq(run_op(&(RestOp){.type = REST_OP_DELETE_FILE, .path = "y"}).error, 0);
}
END_TEST

/* ---- retries ------------------------------------------------------------------------------- */

START_TEST(test_retry_busy_and_reset) {
        static const char hundred[] =
                "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789abcdefghijklmnopqr";
        int dst = tmpfile_with(16, 0);
        Done d;

        create_file("f", 100);
        set_faults("op=GetFileProperties:503,count=2,retry-after=0");
        d = run_op(&(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.attempts, 3);

        ck_assert_int_eq(
                run_op(&(RestOp){
                               .type = REST_OP_PUT_RANGE,
                               .path = "f",
                               .length = 100,
                               .fd = -1,
                               .data = hundred})
                        .error,
                0);
        /* A reset on a reused connection is retried by curl itself (a fresh connect), or
         * by us: either way the read succeeds. */
        set_faults("op=GetFile:reset,count=1");
        d = run_op(&(RestOp){.type = REST_OP_GET_RANGE, .path = "f", .length = 100, .fd = dst});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_le(d.attempts, 2);
        ck_assert_uint_eq(d.bytes, 100);
        /* Half a body, then the connection closes: retried, and the file range is whole. */
        set_faults("op=GetFile:truncate,count=1");
        d = run_op(&(RestOp){.type = REST_OP_GET_RANGE, .path = "f", .length = 100, .fd = dst});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.attempts, 2);
        ck_assert_uint_eq(d.bytes, 100);
        {
                char buf[100];
                ck_assert_int_eq(pread(dst, buf, 100, 0), 100);
                ck_assert_int_eq(memcmp(buf, hundred, 100), 0);
        }

        /* Retry-After is the least delay, not the delay: "0" still waits the backoff (here 500
         * to 1,000 ms, past the budget of 300 ms, so no second try). */
        {
                RestClient *slow = client_with((RestClientConfig){
                        .retry_base_ms = 1000,
                        .retry_max_delay_ms = 1000,
                        .retry_budget_ms = 300,
                        .max_attempts = 10});
                set_faults("op=GetFileProperties:503,count=1,retry-after=0");
                d = run_op_on(slow, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
                ck_assert_int_eq(d.status, 503);
                ck_assert_uint_eq(d.attempts, 1);
                slow = rest_client_free(slow);
        }

        /* Always failing: bounded by max_attempts, then a clear errno. */
        set_faults("op=GetFileProperties:500");
        d = run_op(&(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
        ck_assert_int_eq(d.status, 500);
        ck_assert_int_eq(d.error, rest_error_to_errno(500, d.code)); /* -EIO or -ETIMEDOUT */
        ck_assert_int_lt(d.error, 0);
        ck_assert_uint_eq(d.attempts, 6);
        set_faults("");
        close(dst);
}
END_TEST

START_TEST(test_no_blind_retry_of_non_idempotent) {
        Done d;

        /* 500: the directory may have been created: not retried. */
        set_faults("op=CreateDirectory:500,count=1");
        d = run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "d"});
        ck_assert_int_eq(d.status, 500);
        ck_assert_int_lt(d.error, 0);
        ck_assert_uint_eq(d.attempts, 1);
        /* 503 ServerBusy: throttled before execution: retried. */
        set_faults("op=CreateDirectory:503,count=1,retry-after=0");
        d = run_op(&(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "d"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.attempts, 2);
        /* Nor is a rename that failed with 500 (the source may already be gone). */
        create_file("a", 1);
        set_faults("op=RenameFile:500,count=1");
        d = run_op(&(RestOp){.type = REST_OP_RENAME, .path = "b", .source_path = "a"});
        ck_assert_int_eq(d.status, 500);
        ck_assert_int_lt(d.error, 0);
        ck_assert_uint_eq(d.attempts, 1);
        /* Deleting: a 404 on a retry after an unclear failure is the asked-for end state. */
        set_faults("op=DeleteFile:500,count=1");
        d = run_op(&(RestOp){.type = REST_OP_DELETE_FILE, .path = "a"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.attempts, 2);
        set_faults("");
}
END_TEST

/* ---- cancellation, timeouts, threads --------------------------------------------------------- */

START_TEST(test_cancel_and_timeout) {
        RestClient *fast;
        uint64_t id;
        Done d = {0};

        create_file("f", 1);
        set_faults("op=GetFileProperties:latency=5s");
        ck_assert_int_eq(
                rest_client_submit(
                        rc, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"}, on_done,
                        &d, &id),
                0);
        ck_assert_int_eq(rest_client_cancel(rc, id), 0);
        run_until(&d.done);
        ck_assert_int_eq(d.error, -ECANCELED);

        /* A per-attempt timeout far below the injected latency, one try. */
        fast = client_with((RestClientConfig){.meta_timeout_ms = 100, .max_attempts = 1});
        d = run_op_on(fast, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
        ck_assert_int_eq(d.error, -ETIMEDOUT);
        /* The retry budget bounds the try too: with a long per-try timeout the answer after 5 s
         * would come in (success), but the budget of 300 ms ended the call before. */
        {
                RestClient *budget = client_with((RestClientConfig){
                        .meta_timeout_ms = 30000, .retry_budget_ms = 300, .max_attempts = 10});
                d = run_op_on(budget, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
                ck_assert_int_eq(d.error, -ETIMEDOUT);
                budget = rest_client_free(budget);
        }
        /* Freeing with calls in flight completes them with -ECANCELED. */
        d = (Done){0};
        ck_assert_int_eq(
                rest_client_submit(
                        fast, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"}, on_done,
                        &d, NULL),
                0);
        ck_assert_int_ge(sd_event_run(ev, 0), 0);
        fast = rest_client_free(fast);
        ck_assert(d.done);
        ck_assert_int_eq(d.error, -ECANCELED);
        set_faults("");
}
END_TEST

/* Runs the loop until n requests are in flight (bounded: the emulator holds them 5 s). */
static void run_until_in_flight(size_t n) {
        for (unsigned i = 0; i < 400 && http_client_in_flight(http) != n; i++)
                ck_assert_int_ge(sd_event_run(ev, 10 * 1000), 0);
        ck_assert_uint_eq(http_client_in_flight(http), n);
}

/* With transfer threads: a Get Range into a file (a transfer thread's) cancelled while the
 * emulator holds it, then one in flight when the client is freed: both end with -ECANCELED,
 * once, on the loop thread. */
START_TEST(test_cancel_on_transfer_thread) {
        int dst = tmpfile_with(16, 0);
        RestOp get = {
                .type = REST_OP_GET_RANGE, .path = "f", .offset = 0, .length = 4096, .fd = dst};
        uint64_t id;
        Done d = {0}, d2 = {0};

        create_file("f", 4096);
        set_faults("op=GetFile:latency=5s");
        ck_assert_int_eq(rest_client_submit(rc, &get, on_done, &d, &id), 0);
        run_until_in_flight(1); /* handed to a transfer thread */
        ck_assert_int_eq(rest_client_cancel(rc, id), 0);
        run_until(&d.done);
        ck_assert_int_eq(d.error, -ECANCELED);
        ck_assert_uint_eq(http_client_in_flight(http), 0);

        ck_assert_int_eq(rest_client_submit(rc, &get, on_done, &d2, NULL), 0);
        run_until_in_flight(1);
        rc = rest_client_free(rc);
        http = http_client_free(http);
        ck_assert(d2.done);
        ck_assert_int_eq(d2.error, -ECANCELED);
        set_faults("");
        close(dst);
}
END_TEST

#define THREADS 4
#define PER_THREAD 25

typedef struct ThreadCtx {
        Done done[PER_THREAD];
        int submitted;
} ThreadCtx;

static void *submitter(void *arg) {
        ThreadCtx *t = arg;
        for (int i = 0; i < PER_THREAD; i++)
                if (rest_client_submit(
                            rc, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"},
                            on_done, &t->done[i], NULL) == 0)
                        t->submitted++;
        return NULL;
}

static bool all_done(ThreadCtx *t) {
        for (int k = 0; k < THREADS; k++)
                for (int i = 0; i < PER_THREAD; i++)
                        if (!t[k].done[i].done)
                                return false;
        return true;
}

START_TEST(test_submit_from_threads) {
        static ThreadCtx ctx[THREADS];
        pthread_t th[THREADS];
        bool flag = false;

        memset(ctx, 0, sizeof(ctx));
        create_file("f", 77);
        for (int k = 0; k < THREADS; k++)
                ck_assert_int_eq(pthread_create(&th[k], NULL, submitter, &ctx[k]), 0);
        for (int k = 0; k < THREADS; k++)
                ck_assert_int_eq(pthread_join(th[k], NULL), 0);
        while (!flag) {
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
                ck_assert_uint_le(http_client_in_flight(http), 4); /* max_in_flight */
                flag = all_done(ctx);
        }
        for (int k = 0; k < THREADS; k++) {
                ck_assert_int_eq(ctx[k].submitted, PER_THREAD);
                for (int i = 0; i < PER_THREAD; i++) {
                        ck_assert_int_eq(ctx[k].done[i].error, 0);
                        ck_assert_uint_eq(ctx[k].done[i].content_length, 77);
                }
        }
}
END_TEST

/* ---- auth ---------------------------------------------------------------------------------- */

START_TEST(test_sas) {
        char se[SAS_TIME_MAX];
        SasToken t = {
                .kind = SAS_SERVICE,
                .version = (char *)EMU_TEST_VERSION,
                .resource = (char *)"s",
                .permissions = (char *)"rcwdl",
                .expiry = sas_format_time(se, now_realtime_ns() + 3600 * NSEC_PER_SEC)};
        char *q = NULL;
        RestClient *c;
        Done d;

        ck_assert_int_eq(sas_generate(&t, EMU_TEST_ACCOUNT, "share", key, key_size, &q), 0);
        c = make_client(REST_AUTH_SAS, q, 0);
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "s d"}).error, 0);
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_CREATE_FILE, .path = "s d/f", .size = 3})
                        .error,
                0);
        d = run_op_on(c, &(RestOp){.type = REST_OP_LIST_DIRECTORY, .path = "s d"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_uint_eq(d.page->n_entries, 1);
        rest_list_page_free(d.page);
        d = run_op_on(
                c, &(RestOp){.type = REST_OP_RENAME, .path = "s d/g", .source_path = "s d/f"});
        ck_assert_int_eq(d.error, 0);
        rest_client_free(c);
        free(q);

        /* A wrong signature is an auth error. */
        c = make_client(
                REST_AUTH_SAS, "sv=2025-05-05&sr=s&sp=r&se=2099-01-01T00:00:00Z&sig=AAAA", 0);
        d = run_op_on(c, &(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "s d"});
        ck_assert_int_eq(d.error, -EACCES);
        rest_client_free(c);
}
END_TEST

static void on_token(int error, const char *token, void *userdata) {
        int *r = userdata;
        *r = error == 0 && token && *token ? 1 : error;
}

START_TEST(test_bearer_from_imds) {
        RestClient *c = make_client(REST_AUTH_BEARER, NULL, 0);
        const char *tok = NULL;
        int a = 0, b = 0;
        Done d;

        ck_assert_int_eq(imds_client_peek_token(imds, &tok), -ENOKEY);
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "m"}).error, 0);
        d = run_op_on(c, &(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "m"});
        ck_assert_int_eq(d.error, 0);
        ck_assert_int_eq(imds_client_peek_token(imds, &tok), 0);
        /* Cached: waiters are served without a fetch, and never from inside the call. */
        ck_assert_int_eq(imds_client_get_token(imds, on_token, &a), 0);
        ck_assert_int_eq(imds_client_get_token(imds, on_token, &b), 0);
        ck_assert_int_eq(a, 0);
        while (a == 0 || b == 0)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        ck_assert_int_eq(a, 1);
        ck_assert_int_eq(b, 1);
        rest_client_free(c);
}
END_TEST

START_TEST(test_imds_retry_and_refusal) {
        ImdsClient *ic;
        ImdsClientConfig cfg = {.endpoint = emu->imds_url, .retry_base_ms = 5};
        int a = 0;

        set_faults("op=ImdsToken:503,count=2,retry-after=0");
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &ic), 0);
        ck_assert_int_eq(imds_client_get_token(ic, on_token, &a), 0);
        while (a == 0)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        ck_assert_int_eq(a, 1);
        imds_client_free(ic);
        set_faults("");

        /* An unknown user-assigned identity: refused, not retried forever. */
        cfg.client_id = "00000000-0000-0000-0000-000000000000";
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &ic), 0);
        a = 0;
        ck_assert_int_eq(imds_client_get_token(ic, on_token, &a), 0);
        while (a == 0)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        ck_assert_int_eq(a, -EACCES);
        imds_client_free(ic);
}
END_TEST

/* ---- token refresh: request counts over bounded windows ------------------------------------- */

static void set_instance(const char *json) {
        const char *const h[] = {"Content-Type: application/json", NULL};
        EmuHttpResult res;

        ck_assert_int_eq(
                emu_http(
                        emu, "PUT", "imds:/__emu/instance", h, json, strlen(json),
                        EMU_AUTH_MODE_NONE, &res),
                0);
        ck_assert_msg(res.status == 200, "instance %s: %ld %s", json, res.status, res.body);
        emu_http_result_clear(&res);
}

/* Token requests emulator e has counted; reset: zeroes its counters as it reads them. */
static int64_t imds_token_requests_of(EmuInstance *e, bool reset) {
        EmuHttpResult res;
        json_object *o, *c, *one, *v;
        int64_t n = 0;

        ck_assert_int_eq(
                emu_http(
                        e, "GET", reset ? "imds:/__emu/counters?reset=1" : "imds:/__emu/counters",
                        NULL, NULL, 0, EMU_AUTH_MODE_NONE, &res),
                0);
        ck_assert_int_eq(res.status, 200);
        o = json_tokener_parse(res.body);
        emu_http_result_clear(&res);
        ck_assert_ptr_nonnull(o);
        ck_assert(json_object_object_get_ex(o, "counters", &c));
        if (json_object_object_get_ex(c, "ImdsToken", &one) &&
            json_object_object_get_ex(one, "requests", &v))
                n = json_object_get_int64(v);
        json_object_put(o);
        return n;
}

static int64_t imds_token_requests(bool reset) {
        return imds_token_requests_of(emu, reset);
}

typedef struct Poll {
        bool (*cond)(void *userdata);
        void *userdata;
        bool met, expired;
} Poll;

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Poll *p = userdata;

        if (p->cond(p->userdata)) {
                p->met = true;
                return 0;
        }
        ck_assert_int_ge(sd_event_source_set_time_relative(s, 100 * 1000), 0);
        ck_assert_int_ge(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT), 0);
        return 0;
}

static int on_window(sd_event_source *s, uint64_t usec, void *userdata) {
        Poll *p = userdata;

        p->expired = true;
        return 0;
}

/* Runs the loop until cond holds (checked every 100 ms) or bound_usec have passed: whether it
 * held. */
static bool run_until_cond(bool (*cond)(void *userdata), void *userdata, uint64_t bound_usec) {
        Poll p = {.cond = cond, .userdata = userdata};
        sd_event_source *poll = NULL, *window = NULL;

        ck_assert_int_ge(
                sd_event_add_time_relative(
                        ev, &poll, CLOCK_MONOTONIC, 100 * 1000, 1000, on_poll, &p),
                0);
        ck_assert_int_ge(
                sd_event_add_time_relative(
                        ev, &window, CLOCK_MONOTONIC, bound_usec, 1000, on_window, &p),
                0);
        while (!p.met && !p.expired)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        sd_event_source_disable_unref(poll);
        sd_event_source_disable_unref(window);
        return p.met;
}

static bool token_requests_above(void *userdata) {
        return imds_token_requests(false) > *(int64_t *)userdata;
}

static int get_token_now(ImdsClient *ic) {
        int a = 0;

        ck_assert_int_eq(imds_client_get_token(ic, on_token, &a), 0);
        while (a == 0)
                ck_assert_int_ge(sd_event_run(ev, UINT64_MAX), 0);
        return a;
}

START_TEST(test_imds_short_lived_token) {
        const char *tok;
        int64_t one = 1;

        /* A token living less than the 5 minute margin: refreshed at half its life, not at once
         * and not on every request. */
        set_instance("{\"tokenLifetimeSeconds\":120}");
        (void)imds_token_requests(true);
        ck_assert_int_eq(get_token_now(imds), 1);
        for (int i = 0; i < 10; i++) {
                ck_assert_int_eq(imds_client_peek_token(imds, &tok), 0);
                ck_assert_int_eq(get_token_now(imds), 1);
        }
        ck_assert(!run_until_cond(token_requests_above, &one, 2 * 1000000ULL));
        ck_assert_int_le(imds_token_requests(false), 1);
}
END_TEST

typedef struct Grace {
        ImdsClient *ic;
        int64_t bound;
} Grace;

static bool served_from_cache_or_above(void *userdata) {
        Grace *g = userdata;
        const char *tok;

        return imds_client_peek_token(g->ic, &tok) == 0 || imds_token_requests(false) > g->bound;
}

START_TEST(test_imds_failed_refresh_backs_off) {
        /* Refresh 65 s before expiry, with 65 s of life left: the old token is good for more
         * than a minute when the refresh fails. */
        ImdsClientConfig cfg = {.endpoint = emu->imds_url, .refresh_margin_ms = 65000};
        Grace g = {.bound = 4};
        int64_t zero = 0;

        set_instance("{\"tokenLifetimeSeconds\":130}");
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &g.ic), 0);
        ck_assert_int_eq(get_token_now(g.ic), 1);
        /* The identity is detached: every token request from now on is refused with 400. */
        set_instance("{\"identities\":[]}");
        (void)imds_token_requests(true);
        ck_assert(run_until_cond(token_requests_above, &zero, 100 * 1000000ULL));
        /* The refresh failed: the old token is still served, from the cache, */
        ck_assert(run_until_cond(served_from_cache_or_above, &g, 10 * 1000000ULL));
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(get_token_now(g.ic), 1);
        /* and the refresh is tried again after a delay, not back to back: the refresh, at most
         * two more tries before the old token is down to a minute, and none after that. */
        (void)run_until_cond(token_requests_above, &g.bound, 8 * 1000000ULL);
        ck_assert_int_le(imds_token_requests(false), g.bound);
        imds_client_free(g.ic);
}
END_TEST

/* Due for refresh while IMDS is slow: the old token, good for more than a minute, is served
 * until the refresh ends. Every request waited for the refresh (a hung IMDS: 5 tries of 10 s). */
START_TEST(test_imds_refresh_in_background) {
        /* A 130 s token refreshed 65 s before it expires (a token is refreshed at half its life
         * at the earliest, and the old one serves only while it has more than a minute left). */
        ImdsClientConfig cfg = {.endpoint = emu->imds_url, .refresh_margin_ms = 65000};
        ImdsClient *ic;
        const char *tok;
        int64_t zero = 0;

        set_instance("{\"tokenLifetimeSeconds\":130}");
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &ic), 0);
        ck_assert_int_eq(get_token_now(ic), 1);
        set_faults("op=ImdsToken:latency=8s");
        (void)imds_token_requests(true);
        /* The refresh has reached IMDS (counted as it arrives, answered 8 s later): */
        ck_assert(run_until_cond(token_requests_above, &zero, 100 * 1000000ULL));
        ck_assert_int_eq(imds_client_peek_token(ic, &tok), 0);
        ck_assert_int_eq(get_token_now(ic), 1);
        set_faults("");
        imds_client_free(ic);
}
END_TEST

/* A bearer token the share refuses (401: revoked, or expired by the service's clock) is dropped
 * and a new one fetched, once per request; the request then fails with EACCES. The token was
 * sent until its refresh time (a day), and the request failed with EIO. The tokens come from a
 * second emulator with another key: the share refuses every one. */
START_TEST(test_bearer_refused_refetched) {
        static const char *const other_key[] = {
                "--key", "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktLS0=", NULL};
        EmuInstance *e2 = NULL;
        ImdsClient *ic = NULL;
        RestClient *c = NULL;
        Done d;

        ck_assert_int_eq(emu_instance_start(NULL, other_key, &e2), 0);
        ck_assert_int_eq(
                imds_client_new(ev, http, &(ImdsClientConfig){.endpoint = e2->imds_url}, &ic), 0);
        c = make_client_imds(REST_AUTH_BEARER, NULL, ic, 3);
        (void)imds_token_requests_of(e2, true);
        d = run_op_on(c, &(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "m"});
        ck_assert_int_eq(d.status, 401);
        ck_assert_int_eq(d.error, -EACCES);
        ck_assert_int_eq(imds_token_requests_of(e2, false), 2); /* the first, one after the 401 */
        d = run_op_on(c, &(RestOp){.type = REST_OP_GET_DIRECTORY_PROPERTIES, .path = "m"});
        ck_assert_int_eq(d.error, -EACCES);
        ck_assert_int_eq(imds_token_requests_of(e2, false), 3); /* its token, then a new one */
        rest_client_free(c);
        imds_client_free(ic);
        ck_assert_int_eq(emu_instance_stop(e2), 0);
        emu_instance_free(e2);
}
END_TEST

START_TEST(test_imds_retry_after_is_a_minimum) {
        /* The backoff (5..10 s) does not fit the 5 s budget: no retry. Retry-After: 0 must not
         * shorten it. */
        ImdsClientConfig cfg = {
                .endpoint = emu->imds_url, .retry_base_ms = 10000, .retry_budget_ms = 5000};
        ImdsClient *ic;

        set_faults("op=ImdsToken:503,retry-after=0");
        (void)imds_token_requests(true);
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &ic), 0);
        ck_assert_int_eq(get_token_now(ic), -EIO);
        ck_assert_int_le(imds_token_requests(true), 1);
        imds_client_free(ic);

        /* Nor does a Retry-After beyond the budget get waited for. */
        cfg.retry_base_ms = 5;
        set_faults("op=ImdsToken:503,retry-after=10");
        ck_assert_int_eq(imds_client_new(ev, http, &cfg, &ic), 0);
        ck_assert_int_eq(get_token_now(ic), -EIO);
        ck_assert_int_le(imds_token_requests(true), 1);
        imds_client_free(ic);
        set_faults("");
}
END_TEST

/* A Shared Key client (account "acct", share "share", one attempt per op) of the server at url,
 * through h, with a retry budget of retry_budget_ms (0: the default). */
static RestClient *acct_client(HttpClient *h, const char *url, uint64_t retry_budget_ms) {
        RestClientConfig cfg = {
                .endpoint = url,
                .account = "acct",
                .share = "share",
                .key = key,
                .key_size = key_size,
                .retry_budget_ms = retry_budget_ms,
                .max_attempts = 1};
        RestClient *c = NULL;

        ck_assert_int_eq(rest_client_new(ev, h, &cfg, &c), 0);
        return c;
}

/* ---- the retry budget counts the wait for a connection slot -------------------------------- */

static atomic_int slow_fast_seen_fast;

/* Get File Properties of any path; those of "slow..." answered after 800 ms. */
static enum MHD_Result slow_fast_handler(
        void *cls,
        struct MHD_Connection *conn,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_size,
        void **con_cls) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r;

        if (strstr(url, "slow")) {
                struct timespec ts = {.tv_nsec = 800000000L};
                (void)nanosleep(&ts, NULL); /* the slow server under test, not synchronization */
        } else
                atomic_fetch_add(&slow_fast_seen_fast, 1);
        (void)MHD_add_response_header(resp, "x-ms-type", "File");
        (void)MHD_add_response_header(resp, "x-ms-content-length", "1");
        (void)MHD_add_response_header(resp, "ETag", "\"1\"");
        r = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

/* One connection slot, a retry budget of 1 s, three requests answered after 800 ms each, then
 * one answered at once: the last one cannot start within its budget (it would only after 2.4 s,
 * and ran then, its budget counted from the start of its transfer), so it fails with ETIMEDOUT
 * without being sent. */
START_TEST(test_budget_counts_queue_wait) {
        HttpClientConfig hcfg = {.max_in_flight = 1};
        struct MHD_Daemon *d;
        HttpClient *one = NULL;
        RestClient *c = NULL;
        Done slow[3] = {}, fast = {};
        char url[128];

        atomic_store(&slow_fast_seen_fast, 0);
        d = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                slow_fast_handler, NULL, MHD_OPTION_END);
        ck_assert_ptr_nonnull(d);
        snprintf(
                url, sizeof(url), "http://127.0.0.1:%u/acct",
                MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
        ck_assert_int_eq(http_client_new(ev, &hcfg, &one), 0);
        c = acct_client(one, url, 1000);
        for (size_t k = 0; k < ELEMENTSOF(slow); k++)
                ck_assert_int_eq(
                        rest_client_submit(
                                c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "slow"},
                                on_done, &slow[k], NULL),
                        0);
        ck_assert_int_eq(
                rest_client_submit(
                        c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "fast"}, on_done,
                        &fast, NULL),
                0);
        run_until(&fast.done);
        for (size_t k = 0; k < ELEMENTSOF(slow); k++)
                run_until(&slow[k].done);
        ck_assert_int_eq(slow[0].error, 0);
        ck_assert_int_eq(fast.error, -ETIMEDOUT);
        ck_assert_int_eq(atomic_load(&slow_fast_seen_fast), 0);
        rest_client_free(c);
        http_client_free(one);
        MHD_stop_daemon(d);
}
END_TEST

/* ---- requests carried out, their connection dropped before the answer ---------------------- */

/* A share stand-in on a raw socket: GET and HEAD are answered 200 (a file's properties) on a
 * kept-alive connection; the first PUT or DELETE of each kind (rename, create directory, delete)
 * is "carried out" and its connection closed before any answer; later ones are answered as the
 * share would then: 404 ResourceNotFound for a rename or delete, 409 ResourceAlreadyExists for
 * a create directory. */
enum { DROP_RENAME, DROP_MKDIR, DROP_DELETE, _DROP_MAX };
static atomic_int drop_seen[_DROP_MAX];

/* Reads one request's head and body from fd; its first line in line. false at the end. */
static bool drop_read_request(int fd, char line[static 256]) {
        char buf[16384];
        size_t n = 0;
        const char *end = NULL, *cl;
        long body;

        while (!(end = memmem(buf, n, "\r\n\r\n", 4))) {
                ssize_t k = n < sizeof(buf) ? read(fd, buf + n, sizeof(buf) - n) : -1;
                if (k <= 0)
                        return false;
                n += (size_t)k;
        }
        (void)snprintf(line, 256, "%.*s", (int)strcspn(buf, "\r\n"), buf);
        cl = strcasestr(buf, "\r\nContent-Length:");
        body = cl && cl < end ? strtol(cl + 17, NULL, 10) : 0;
        for (long have = (long)(n - (size_t)(end + 4 - buf)); have < body;) {
                ssize_t k = read(fd, buf, (size_t)MIN(body - have, (long)sizeof(buf)));
                if (k <= 0)
                        return false;
                have += k;
        }
        return true;
}

static int drop_count(int kind) {
        return atomic_load(&drop_seen[kind]);
}

static void *drop_connection(void *userdata) {
        int fd = (int)(intptr_t)userdata;
        char line[256];

        while (drop_read_request(fd, line)) {
                const char *answer =
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"1\"\r\nx-ms-type: File\r\n"
                        "x-ms-content-length: 1\r\n\r\n";
                if (strncmp(line, "PUT ", 4) == 0 || strncmp(line, "DELETE ", 7) == 0) {
                        int kind = line[0] == 'D'                ? DROP_DELETE
                                   : strstr(line, "comp=rename") ? DROP_RENAME
                                                                 : DROP_MKDIR;
                        if (atomic_fetch_add(&drop_seen[kind], 1) == 0)
                                break; /* carried out; the connection dies unanswered */
                        answer = kind == DROP_MKDIR
                                         ? "HTTP/1.1 409 Exists\r\nContent-Length: 0\r\n"
                                           "x-ms-error-code: ResourceAlreadyExists\r\n\r\n"
                                         : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                           "x-ms-error-code: ResourceNotFound\r\n\r\n";
                }
                if (write(fd, answer, strlen(answer)) < 0)
                        break;
        }
        (void)close(fd);
        return NULL;
}

static void *drop_server(void *userdata) {
        int lfd = (int)(intptr_t)userdata;

        for (;;) {
                pthread_t t;
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        return NULL; /* the listening socket was shut down */
                if (pthread_create(&t, NULL, drop_connection, (void *)(intptr_t)fd) != 0)
                        (void)close(fd);
                else
                        (void)pthread_detach(t);
        }
}

/* curl resends a request on a reused connection that dies before any byte of the answer. A
 * rename or create directory the share may have carried out is not sent again (a new
 * connection each): it fails as unclear, instead of ENOENT or EEXIST for what succeeded. A
 * delete sent again and answered 404 succeeds (its first copy did it), instead of ENOENT. */
START_TEST(test_no_resend_of_non_idempotent) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof(a);
        RestClient *c = NULL;
        pthread_t server;
        char url[128];
        Done r;
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        for (size_t k = 0; k < _DROP_MAX; k++)
                atomic_store(&drop_seen[k], 0);
        ck_assert_int_ge(lfd, 0);
        ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        ck_assert_int_eq(listen(lfd, 16), 0);
        ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
        ck_assert_int_eq(pthread_create(&server, NULL, drop_server, (void *)(intptr_t)lfd), 0);
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/acct", ntohs(a.sin_port));
        c = acct_client(http, url, 0);
        /* Each time first a request that leaves a kept-alive connection to reuse. */
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "a"}).error, 0);
        r = run_op_on(c, &(RestOp){.type = REST_OP_RENAME, .path = "b", .source_path = "a"});
        ck_assert_int_eq(drop_count(DROP_RENAME), 1);
        ck_assert_msg(
                r.error != 0 && r.error != -ENOENT && r.status == 0, "rename: %d (status %ld)",
                r.error, r.status);
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "a"}).error, 0);
        r = run_op_on(c, &(RestOp){.type = REST_OP_CREATE_DIRECTORY, .path = "d"});
        ck_assert_int_eq(drop_count(DROP_MKDIR), 1);
        ck_assert_msg(
                r.error != 0 && r.error != -EEXIST && r.status == 0, "mkdir: %d (status %ld)",
                r.error, r.status);
        ck_assert_int_eq(
                run_op_on(c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "a"}).error, 0);
        r = run_op_on(c, &(RestOp){.type = REST_OP_DELETE_FILE, .path = "a"});
        ck_assert_int_eq(drop_count(DROP_DELETE), 2); /* curl sent it again */
        ck_assert_int_eq(r.error, 0);
        rest_client_free(c);
        (void)shutdown(lfd, SHUT_RDWR);
        ck_assert_int_eq(pthread_join(server, NULL), 0);
        (void)close(lfd);
}
END_TEST

/* ---- malformed replies from a server that is not the emulator ------------------------------- */

/* A libmicrohttpd server on loopback answering with handler, and a Shared Key client of it
 * (acct_client()) in *ret. */
static struct MHD_Daemon *local_server(MHD_AccessHandlerCallback handler, RestClient **ret) {
        struct MHD_Daemon *d;
        char url[128];

        /* Room for a request or reply with 3,081 metadata headers (MHD's default: 32 KiB). */
        d = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, NULL,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_END);
        ck_assert_ptr_nonnull(d);
        snprintf(
                url, sizeof(url), "http://127.0.0.1:%u/acct",
                MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port);
        *ret = acct_client(http, url, 0);
        return d;
}

static const char *canned_status_headers; /* "status|Header: v|Header: v" */
static const char *canned_body;

static enum MHD_Result
canned(void *cls,
       struct MHD_Connection *conn,
       const char *url,
       const char *method,
       const char *version,
       const char *upload_data,
       size_t *upload_size,
       void **con_cls) {
        struct MHD_Response *resp;
        char buf[1024], *save = NULL, *tok;
        unsigned status;
        enum MHD_Result r;

        if (*upload_size > 0) {
                *upload_size = 0;
                return MHD_YES;
        }
        resp = MHD_create_response_from_buffer(
                strlen(canned_body), (void *)canned_body, MHD_RESPMEM_PERSISTENT);
        snprintf(buf, sizeof(buf), "%s", canned_status_headers);
        tok = strtok_r(buf, "|", &save);
        status = (unsigned)strtoul(tok, NULL, 10);
        while ((tok = strtok_r(NULL, "|", &save))) {
                char *colon = strchr(tok, ':');
                *colon = '\0';
                MHD_add_response_header(resp, tok, colon + 2);
        }
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

START_TEST(test_malformed_replies) {
        static const struct {
                RestOpType type;
                const char *status_headers;
                const char *body;
                int error;
        } cases[] = {
                {REST_OP_LIST_DIRECTORY, "200", "garbage <<<", -EBADMSG},
                {REST_OP_LIST_DIRECTORY, "200", "<EnumerationResults><Entries><File>", -EBADMSG},
                {REST_OP_LIST_DIRECTORY, "200", "<Other/>", -EBADMSG},
                {REST_OP_GET_SHARE_STATS, "200", "{\"json\":1}", -EBADMSG},
                {REST_OP_GET_FILE_PROPERTIES, "200", "", -EBADMSG}, /* no ETag */
                {REST_OP_GET_FILE_PROPERTIES, "200|ETag: \"1\"|x-ms-file-id: -3", "", -EBADMSG},
                {REST_OP_GET_FILE_PROPERTIES,
                 "200|ETag: \"1\"|x-ms-content-length: 99999999999999999999999", "", -EBADMSG},
                /* a u64, but above the share's 4 TiB file size limit */
                {REST_OP_GET_FILE_PROPERTIES,
                 "200|ETag: \"1\"|x-ms-content-length: 72057594037927936", "", -EBADMSG},
                {REST_OP_LIST_DIRECTORY, "200",
                 "<EnumerationResults><Entries><File><Name>f</Name><Properties><Content-Length>"
                 "9223372036854775808</Content-Length></Properties></File></Entries>"
                 "</EnumerationResults>",
                 -EBADMSG},
                {REST_OP_LIST_DIRECTORY, "200",
                 "<EnumerationResults><Entries><Directory><Name>..</Name></Directory></Entries>"
                 "</EnumerationResults>",
                 -EBADMSG},
                {REST_OP_LIST_DIRECTORY, "200",
                 "<EnumerationResults><Entries><File><Name Encoded=\"true\">..%2F..%2Fetc</Name>"
                 "</File></Entries></EnumerationResults>",
                 -EBADMSG},
                /* a time int64 nanoseconds cannot hold is still a time: the file stays usable */
                {REST_OP_GET_FILE_PROPERTIES,
                 "200|ETag: \"1\"|x-ms-content-length: 1|"
                 "x-ms-file-last-write-time: 2300-01-01T00:00:00.0000000Z",
                 "", 0},
                {REST_OP_CREATE_FILE, "201|ETag: \"1\"|x-ms-file-creation-time: soon", "",
                 -EBADMSG},
                {REST_OP_GET_RANGE, "200|ETag: \"1\"", "whole", -EBADMSG},
                /* more bytes than asked: the whole file, or a longer range (it was E2BIG) */
                {REST_OP_GET_RANGE, "200|ETag: \"1\"", "0123456789abcdefghij", -EBADMSG},
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 0-19/20",
                 "0123456789abcdefghij", -EBADMSG},
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 5-9/100", "01234",
                 -EBADMSG},
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 0-63/100", "0123456789",
                 -EBADMSG},
                /* fewer bytes than asked, the file not ending there */
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 0-4/100", "01234",
                 -EBADMSG},
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 0-4/*", "01234",
                 -EBADMSG},
                /* the same where it ends: a clipped range, all of the file there is */
                {REST_OP_GET_RANGE, "206|ETag: \"1\"|Content-Range: bytes 0-4/5", "01234", 0},
                {REST_OP_LEASE, "201|ETag: \"1\"", "", -EBADMSG}, /* no lease id */
                {REST_OP_DELETE_FILE, "404", "<html>not xml</html>", -ENOENT},
                {REST_OP_DELETE_FILE, "409|x-ms-error-code: DirectoryNotEmpty",
                 "\xEF\xBB\xBF<Error><Code>Other", -ENOTEMPTY},
                {REST_OP_DELETE_FILE, "302|Location: http://elsewhere/", "", -EPROTO},
                {REST_OP_DELETE_FILE, "999", "", -EPROTO},
        };
        RestClient *c;
        struct MHD_Daemon *d = local_server(canned, &c);
        int dst = tmpfile_with(16, 0);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Done r;
                canned_status_headers = cases[i].status_headers;
                canned_body = cases[i].body;
                r = run_op_on(
                        c, &(RestOp){
                                   .type = cases[i].type,
                                   .path = "f",
                                   .length = 10,
                                   .fd = dst,
                                   .lease_action = REST_LEASE_ACQUIRE});
                ck_assert_msg(
                        r.error == cases[i].error, "case %zu (%s): %d, want %d", i,
                        cases[i].status_headers, r.error, cases[i].error);
                rest_list_page_free(r.page);
        }
        /* An error answer with a body longer than what is kept of it (64 KiB) is still that
         * error: it failed as E2BIG, and a 503 was not retried. */
        {
                /* Static: the server's thread may still be sending it after the answer. */
                static char long_body[70 * 1024 + 1];
                Done short_503, long_503;
                memset(long_body, 'x', 70 * 1024);
                long_body[70 * 1024] = '\0';
                canned_status_headers = "503";
                canned_body = "busy";
                short_503 = run_op_on(c, &(RestOp){.type = REST_OP_DELETE_FILE, .path = "f"});
                canned_body = long_body;
                long_503 = run_op_on(c, &(RestOp){.type = REST_OP_DELETE_FILE, .path = "f"});
                ck_assert_int_eq(long_503.status, 503);
                ck_assert_int_eq(long_503.error, short_503.error);
                canned_body = "";
        }
        rest_client_free(c);
        MHD_stop_daemon(d);
        close(dst);
}
END_TEST

/* ---- many metadata pairs, from a server that keeps what it is sent ----------------------------
 */

/* Other tools may put as many pairs on an entry as fit the service's 8 KiB of names and values:
 * up to 3,081 (names of one to three characters, empty values). */
#define META_WORST_PAIRS 3081u

static RestMetadata served[META_WORST_PAIRS + 1]; /* the entry's metadata on the server */
static size_t n_served;
static bool served_signed; /* the last Set Metadata's Shared Key signature was right */

static void served_clear(void) {
        for (size_t i = 0; i < n_served; i++) {
                free(served[i].name);
                free(served[i].value);
        }
        n_served = 0;
}

static void served_add(const char *name, const char *value) {
        ck_assert_uint_lt(n_served, ELEMENTSOF(served));
        served[n_served].name = strdup(name);
        served[n_served].value = strdup(value);
        ck_assert(served[n_served].name && served[n_served].value);
        n_served++;
}

/* The i-th shortest metadata name (a C identifier; the service ignores case): 27 of one
 * character, 999 of two, then of three. */
static void short_name(size_t i, char buf[static 4]) {
        static const char c[] = "abcdefghijklmnopqrstuvwxyz_0123456789"; /* 27 may start one */
        size_t len = i < 27 ? 1 : i < 27 + 27 * 37 ? 2 : 3;

        i -= len == 1 ? 0 : len == 2 ? 27 : 27 + 27 * 37;
        for (size_t k = len - 1; k > 0; k--, i /= 37)
                buf[k] = c[i % 37];
        buf[0] = c[i];
        buf[len] = '\0';
}

static const char *mhd_get_header(void *userdata, const char *name) {
        return MHD_lookup_connection_value(userdata, MHD_HEADER_KIND, name);
}

typedef struct MhdForeach {
        int (*cb)(void *cbdata, const char *name, const char *value);
        void *cbdata;
} MhdForeach;

static enum MHD_Result
mhd_foreach_one(void *cls, enum MHD_ValueKind kind, const char *k, const char *v) {
        MhdForeach *f = cls;
        return f->cb(f->cbdata, k, v ? v : "") == 0 ? MHD_YES : MHD_NO;
}

static int mhd_foreach_header(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        MhdForeach f = {cb, cbdata};
        (void)MHD_get_connection_values(userdata, MHD_HEADER_KIND, mhd_foreach_one, &f);
        return 0;
}

static int served_take(void *cbdata, const char *name, const char *value) {
        if (strncasecmp(name, "x-ms-meta-", 10) == 0)
                served_add(name + 10, value);
        return 0;
}

/* Set Metadata (PUT) replaces the entry's metadata with what it carries, if its signature is
 * right; any other request is answered as Get File Properties, with all of it. */
static enum MHD_Result meta_server(
        void *cls,
        struct MHD_Connection *conn,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_size,
        void **con_cls) {
        struct MHD_Response *resp =
                MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r;

        if (streq(method, "PUT")) {
                SharedKeyRequest req = {
                        .method = method,
                        .account = "acct",
                        .encoded_path = url,
                        .raw_query = "comp=metadata",
                        .get_header = mhd_get_header,
                        .foreach_header = mhd_foreach_header,
                        .userdata = conn,
                };
                const char *got =
                        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
                _cleanup_free_ char *want = NULL;

                served_signed =
                        sharedkey_authorization(&req, SHARED_KEY, key, key_size, &want) == 0 &&
                        got && streq(got, want);
                served_clear();
                (void)mhd_foreach_header(conn, served_take, NULL);
        } else {
                (void)MHD_add_response_header(resp, "x-ms-type", "File");
                (void)MHD_add_response_header(resp, "x-ms-content-length", "0");
                for (size_t i = 0; i < n_served; i++) {
                        char name[64];
                        snprintf(name, sizeof(name), "x-ms-meta-%s", served[i].name);
                        /* MHD refuses an empty value: a space, which the client trims */
                        (void)MHD_add_response_header(
                                resp, name, isempty(served[i].value) ? " " : served[i].value);
                }
        }
        (void)MHD_add_response_header(resp, "ETag", "\"1\"");
        r = MHD_queue_response(conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

typedef struct MetaDone {
        bool done;
        int error;
        size_t n, matching; /* pairs read, and of them those the server holds, in its order */
} MetaDone;

static void on_meta_done(RestResult *r, void *userdata) {
        MetaDone *d = userdata;

        d->done = true;
        d->error = r->error;
        d->n = r->props->n_metadata;
        for (size_t i = 0; i < d->n && i < n_served; i++)
                if (streq(r->props->metadata[i].name, served[i].name) &&
                    streq(r->props->metadata[i].value, served[i].value))
                        d->matching++;
}

static MetaDone run_meta_op(RestClient *c, const RestOp *op) {
        MetaDone d = {0};
        ck_assert_int_eq(rest_client_submit(c, op, on_meta_done, &d, NULL), 0);
        run_until(&d.done);
        return d;
}

START_TEST(test_many_metadata_pairs) {
        static RestMetadata worst[META_WORST_PAIRS];
        static char names[META_WORST_PAIRS][4];
        RestClient *c;
        struct MHD_Daemon *d = local_server(meta_server, &c);
        MetaDone r;
        char name[16], value[16];
        size_t bytes = 0;

        /* 600 pairs another tool set: all read (the reply has over 600 headers) */
        for (size_t i = 0; i < 600; i++) {
                snprintf(name, sizeof(name), "Tag_%03zu", i);
                snprintf(value, sizeof(value), "v%zu", i);
                served_add(name, value);
        }
        r = run_meta_op(c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
        ck_assert_int_eq(r.error, 0);
        ck_assert_uint_eq(r.n, 600);
        ck_assert_uint_eq(r.matching, 600);

        /* The worst case: 3,081 pairs, 8,190 bytes. Set Metadata sends them all, signed (the
         * server checks), and Get File Properties reads them all back. */
        for (size_t i = 0; i < META_WORST_PAIRS; i++) {
                short_name(i, names[i]);
                worst[i] = (RestMetadata){.name = names[i], .value = (char *)""};
                bytes += strlen(names[i]);
        }
        ck_assert_uint_eq(bytes, 8190);
        served_clear();
        r = run_meta_op(
                c, &(RestOp){
                           .type = REST_OP_SET_METADATA,
                           .path = "f",
                           .metadata = worst,
                           .n_metadata = META_WORST_PAIRS});
        ck_assert_int_eq(r.error, 0);
        ck_assert(served_signed);
        ck_assert_uint_eq(n_served, META_WORST_PAIRS);
        for (size_t i = 0; i < META_WORST_PAIRS; i++)
                ck_assert_str_eq(served[i].name, names[i]);
        r = run_meta_op(c, &(RestOp){.type = REST_OP_GET_FILE_PROPERTIES, .path = "f"});
        ck_assert_int_eq(r.error, 0);
        ck_assert_uint_eq(r.n, META_WORST_PAIRS);
        ck_assert_uint_eq(r.matching, META_WORST_PAIRS);

        rest_client_free(c);
        MHD_stop_daemon(d);
        served_clear();
}
END_TEST

int main(void) {
        Suite *s = suite_create("rest-client");
        TCase *ops = tcase_create("operations"), *retry = tcase_create("retries"),
              *flow = tcase_create("flow"), *auth = tcase_create("auth"),
              *bad = tcase_create("malformed"), *threads = tcase_create("transfer-threads");
        SRunner *sr;
        int failed;

        curl_global_init(CURL_GLOBAL_ALL);
        TCase *all[] = {ops, retry, flow, auth, bad};
        for (size_t i = 0; i < ELEMENTSOF(all); i++) {
                tcase_add_checked_fixture(all[i], setup, teardown);
                tcase_set_timeout(all[i], 120);
                suite_add_tcase(s, all[i]);
        }
        tcase_add_test(ops, test_share_and_directories);
        tcase_add_test(ops, test_list_paging);
        tcase_add_test(ops, test_ranges_through_files);
        tcase_add_test(ops, test_properties_metadata_rename_lease);
        tcase_add_test(retry, test_retry_busy_and_reset);
        tcase_add_test(retry, test_no_blind_retry_of_non_idempotent);
        tcase_add_test(flow, test_cancel_and_timeout);
        tcase_add_test(flow, test_submit_from_threads);
        tcase_add_test(flow, test_budget_counts_queue_wait);
        tcase_add_test(flow, test_no_resend_of_non_idempotent);
        tcase_add_test(auth, test_sas);
        tcase_add_test(auth, test_bearer_from_imds);
        tcase_add_test(auth, test_imds_retry_and_refusal);
        tcase_add_test(auth, test_imds_short_lived_token);
        tcase_add_test(auth, test_imds_failed_refresh_backs_off);
        tcase_add_test(auth, test_imds_retry_after_is_a_minimum);
        tcase_add_test(auth, test_imds_refresh_in_background);
        tcase_add_test(auth, test_bearer_refused_refetched);
        tcase_add_test(bad, test_malformed_replies);
        tcase_add_test(ops, test_many_metadata_pairs);
        /* The transfers through files again, with their bodies on transfer threads. */
        tcase_add_checked_fixture(threads, setup_threads, teardown);
        tcase_set_timeout(threads, 120);
        suite_add_tcase(s, threads);
        tcase_add_test(threads, test_ranges_through_files);
        tcase_add_test(threads, test_retry_busy_and_reset);
        tcase_add_test(threads, test_submit_from_threads);
        tcase_add_test(threads, test_cancel_on_transfer_thread);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        curl_global_cleanup();
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
