/* SPDX-License-Identifier: MIT */
/* Fault injection in the real azfiles-emu binary, over loopback with libcurl: exact every=/count=
 * modes for 503 (with Retry-After), 500, connection reset, truncated bodies and latency (checked
 * only as a lower bound), counters, and replacing the spec at run time. Faults are decided before
 * dispatch, so any File REST URL will do, implemented or not. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "emu-harness.h"
#include "macro.h"
#include "time-util.h"

#define FILE_URL "/share/dir/file.bin"
#define INSTANCE_URL "imds:/metadata/instance?api-version=2021-02-01"

static EmuInstance *emu;
static const char *const md[] = {"Metadata: true", NULL};

static void start_with(const char *spec) {
        const char *const args[] = {"--faults", spec, NULL};
        int r = emu_instance_start(NULL, spec ? args : NULL, &emu);
        ck_assert_msg(r == 0, "emu_instance_start: %s", strerror(-r));
}

static void setup(void) {
        start_with(NULL);
}

static void teardown(void) {
        if (emu)
                ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
}

static EmuHttpResult
http(const char *method, const char *url, const char *const *hdrs, const char *body) {
        EmuHttpResult res;
        int r = emu_http(
                emu, method, url, hdrs, body, body ? strlen(body) : 0, EMU_AUTH_MODE_NONE, &res);
        ck_assert_msg(r == 0, "%s %s: harness error %s", method, url, strerror(-r));
        return res;
}

static long status_of(const char *method, const char *url, const char *const *hdrs) {
        EmuHttpResult res = http(method, url, hdrs, NULL);
        long s;
        ck_assert_msg(res.curl_code == 0, "%s %s: transport error %d", method, url, res.curl_code);
        s = res.status;
        emu_http_result_clear(&res);
        return s;
}

static json_object *admin(const char *method, const char *path, const char *body, long want) {
        char url[256];
        EmuHttpResult res;
        json_object *o;

        (void)snprintf(url, sizeof(url), "imds:/__emu/%s", path);
        res = http(method, url, NULL, body);
        ck_assert_int_eq(res.curl_code, 0);
        ck_assert_msg(
                res.status == want, "%s %s: %ld, want %ld: %s", method, url, res.status, want,
                res.body);
        o = json_tokener_parse(res.body);
        ck_assert_ptr_nonnull(o);
        emu_http_result_clear(&res);
        return o;
}

static void set_faults(const char *spec) {
        char body[512];
        json_object *o;

        (void)snprintf(body, sizeof(body), "{\"spec\":\"%s\"}", spec);
        o = admin("PUT", "faults", body, 200);
        json_object_put(o);
}

static int64_t counter(const char *op, const char *which) {
        json_object *o = admin("GET", "counters", NULL, 200), *c, *e, *v;
        int64_t n;

        ck_assert(json_object_object_get_ex(o, "counters", &c));
        ck_assert(json_object_object_get_ex(c, op, &e));
        ck_assert(json_object_object_get_ex(e, which, &v));
        n = json_object_get_int64(v);
        json_object_put(o);
        return n;
}

START_TEST(test_every_503_with_retry_after) {
        EmuHttpResult res;

        emu = emu_instance_free(emu);
        start_with("op=GetFile:503,every=3,retry-after=7");
        for (int i = 1; i <= 9; i++) {
                res = http("GET", FILE_URL, NULL, NULL);
                ck_assert_int_eq(res.curl_code, 0);
                if (i % 3 == 0) {
                        ck_assert_int_eq(res.status, 503);
                        ck_assert_str_eq(emu_http_header(&res, "Retry-After"), "7");
                        ck_assert_str_eq(emu_http_header(&res, "x-ms-error-code"), "ServerBusy");
                        ck_assert_ptr_nonnull(strstr(res.body, "<Code>ServerBusy</Code>"));
                } else
                        ck_assert_int_ne(res.status, 503);
                emu_http_result_clear(&res);
        }
        /* Other operations are not in scope. */
        for (int i = 0; i < 6; i++)
                ck_assert_int_ne(status_of("PUT", FILE_URL "?comp=range", NULL), 503);
        ck_assert_int_eq(counter("GetFile", "requests"), 9);
        ck_assert_int_eq(counter("GetFile", "faults"), 3);
        ck_assert_int_eq(counter("PutRange", "faults"), 0);
}
END_TEST

START_TEST(test_internal_error_count) {
        EmuHttpResult res;

        set_faults("500,count=2");
        for (int i = 0; i < 2; i++) {
                res = http("GET", FILE_URL, NULL, NULL);
                ck_assert_int_eq(res.status, 500);
                ck_assert_ptr_nonnull(emu_http_header(&res, "x-ms-error-code"));
                emu_http_result_clear(&res);
        }
        for (int i = 0; i < 5; i++)
                ck_assert_int_ne(status_of("GET", FILE_URL, NULL), 500);
        /* The admin API is never faulted. */
        set_faults("500");
        json_object_put(admin("GET", "health", NULL, 200));
        /* IMDS operations are faulted like any other. */
        ck_assert_int_eq(status_of("GET", INSTANCE_URL, md), 500);
}
END_TEST

START_TEST(test_reset_is_transport_error) {
        EmuHttpResult res;

        set_faults("op=GetFile:reset,count=1");
        res = http("GET", FILE_URL, NULL, NULL);
        ck_assert_msg(
                res.curl_code == CURLE_RECV_ERROR || res.curl_code == CURLE_GOT_NOTHING ||
                        res.curl_code == CURLE_SEND_ERROR,
                "curl code %d", res.curl_code);
        ck_assert_int_eq(res.status, 0);
        emu_http_result_clear(&res);
        /* The next one is answered. */
        ck_assert_int_ne(status_of("GET", FILE_URL, NULL), 0);
        ck_assert_int_eq(counter("GetFile", "faults"), 1);
        ck_assert_int_eq(counter("GetFile", "requests"), 2);
}
END_TEST

START_TEST(test_truncate_short_body) {
        EmuHttpResult full, cut;

        full = http("GET", INSTANCE_URL, md, NULL);
        ck_assert_int_eq(full.curl_code, 0);
        ck_assert_int_eq(full.status, 200);
        set_faults("op=ImdsInstance:truncate,count=1");
        cut = http("GET", INSTANCE_URL, md, NULL);
        /* Headers promise the full length; the body stops short and the connection closes. */
        ck_assert_int_eq(cut.status, 200);
        ck_assert_int_eq(cut.curl_code, CURLE_PARTIAL_FILE);
        ck_assert_int_lt(cut.body_size, full.body_size);
        ck_assert_int_eq(memcmp(cut.body, full.body, cut.body_size), 0);
        emu_http_result_clear(&cut);
        emu_http_result_clear(&full);
        /* Error bodies are cut too. */
        set_faults("op=GetFile:truncate,count=1");
        cut = http("GET", FILE_URL, NULL, NULL);
        ck_assert_int_eq(cut.curl_code, CURLE_PARTIAL_FILE);
        emu_http_result_clear(&cut);
        ck_assert_int_eq(status_of("GET", INSTANCE_URL, md), 200);
}
END_TEST

START_TEST(test_latency_lower_bound) {
        int64_t t0, elapsed_ms;

        set_faults("op=GetFile:latency=150ms");
        t0 = now_monotonic_ns();
        (void)status_of("GET", FILE_URL, NULL);
        elapsed_ms = (now_monotonic_ns() - t0) / 1000000;
        ck_assert_int_ge(elapsed_ms, 150);
        set_faults("op=GetFile:latency=100ms~50ms,503");
        t0 = now_monotonic_ns();
        ck_assert_int_eq(status_of("GET", FILE_URL, NULL), 503);
        elapsed_ms = (now_monotonic_ns() - t0) / 1000000;
        ck_assert_int_ge(elapsed_ms, 100);
}
END_TEST

START_TEST(test_runtime_spec_and_counters) {
        json_object *o, *v;

        /* Refused specs name the offending token and leave the old rules. */
        set_faults("op=PutRange:503=0.5,seed=9");
        o = admin("PUT", "faults", "{\"spec\":\"503=0.5,flood=1\"}", 400);
        ck_assert(json_object_object_get_ex(o, "error", &v));
        ck_assert_ptr_nonnull(strstr(json_object_get_string(v), "'flood'"));
        json_object_put(o);
        o = admin("PUT", "faults", "{\"spec\":5}", 400);
        json_object_put(o);
        o = admin("PUT", "faults", "not json", 400);
        json_object_put(o);
        o = admin("GET", "faults", NULL, 200);
        ck_assert(json_object_object_get_ex(o, "spec", &v));
        ck_assert_str_eq(json_object_get_string(v), "op=PutRange:503=0.5,retry-after=1;seed=9");
        json_object_put(o);

        set_faults("");
        for (int i = 0; i < 4; i++)
                ck_assert_int_ne(status_of("PUT", FILE_URL "?comp=range", NULL), 503);
        ck_assert_int_eq(counter("PutRange", "requests"), 4);
        ck_assert_int_eq(counter("PutRange", "faults"), 0);
        o = admin("GET", "counters?reset=1", NULL, 200);
        json_object_put(o);
        ck_assert_int_eq(counter("PutRange", "requests"), 0);
        o = admin("GET", "counters?reset=maybe", NULL, 400);
        json_object_put(o);
}
END_TEST

START_TEST(test_seed_reproducible_across_runs) {
        long first[24];

        for (int run = 0; run < 2; run++) {
                emu = emu_instance_free(emu);
                start_with("op=GetFile:503=0.5,seed=77");
                for (int i = 0; i < 24; i++) {
                        long s = status_of("GET", FILE_URL, NULL);
                        if (run == 0)
                                first[i] = s;
                        else
                                ck_assert_int_eq(s, first[i]);
                }
        }
}
END_TEST

START_TEST(test_bad_cli_spec_refused) {
        const char *const args[] = {"--faults", "503=7", NULL};
        EmuInstance *e = NULL;

        ck_assert_int_lt(emu_instance_start(NULL, args, &e), 0);
        ck_assert_ptr_null(e);
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-faults");
        TCase *tc = tcase_create("faults");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_every_503_with_retry_after);
        tcase_add_test(tc, test_internal_error_count);
        tcase_add_test(tc, test_reset_is_transport_error);
        tcase_add_test(tc, test_truncate_short_body);
        tcase_add_test(tc, test_latency_lower_bound);
        tcase_add_test(tc, test_runtime_spec_and_counters);
        tcase_add_test(tc, test_seed_reproducible_across_runs);
        tcase_add_test(tc, test_bad_cli_spec_refused);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
