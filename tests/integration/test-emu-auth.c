/* SPDX-License-Identifier: MIT */
/* Authentication of the real azfiles-emu binary over loopback: Shared Key (good, bad signature,
 * wrong account, skewed and missing date, malformed header, no credentials), SAS (good, expired,
 * not yet valid, wrong permission, tampered, https-only, IP range, resource type) and bearer
 * tokens from the emulator's metadata service (good, expired, wrong audience, missing intent,
 * old version). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <check.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base64-util.h"
#include "emu-harness.h"
#include "macro.h"
#include "sas.h"
#include "sharedkey.h"
#include "time-util.h"

#define SHARE "/authshare"
#define FILE_PATH SHARE "/f.txt"

static EmuInstance *emu;
static uint8_t *key;
static size_t key_size;

static EmuHttpResult
http(const char *method, const char *pq, const char *const *hdrs, EmuAuthMode mode) {
        EmuHttpResult res;
        int r = emu_http(emu, method, pq, hdrs, NULL, 0, mode, &res);
        ck_assert_msg(r == 0, "%s %s: harness error %s", method, pq, strerror(-r));
        ck_assert_msg(res.curl_code == 0, "%s %s: transport error %d", method, pq, res.curl_code);
        return res;
}

static void
expect(const char *method,
       const char *pq,
       const char *const *hdrs,
       EmuAuthMode mode,
       long status,
       const char *code,
       const char *body_has) {
        EmuHttpResult res = http(method, pq, hdrs, mode);
        const char *got;

        ck_assert_msg(
                res.status == status, "%s %s: status %ld, want %ld: %s", method, pq, res.status,
                status, res.body);
        if (code) {
                got = emu_http_header(&res, "x-ms-error-code");
                ck_assert_msg(
                        got && streq(got, code), "%s %s: code %s, want %s", method, pq,
                        got ? got : "(none)", code);
        }
        if (body_has)
                ck_assert_msg(
                        res.body && strstr(res.body, body_has), "%s %s: body lacks '%s': %s",
                        method, pq, body_has, res.body);
        emu_http_result_clear(&res);
}

static void setup(void) {
        static const char *const file_hdrs[] = {"x-ms-type: file", "x-ms-content-length: 10", NULL};
        int r = emu_instance_start(NULL, NULL, &emu);

        ck_assert_msg(r == 0, "emu_instance_start: %s", strerror(-r));
        ck_assert_int_eq(base64_decode(EMU_TEST_KEY, &key, &key_size), 0);
        expect("PUT", SHARE "?restype=share", NULL, EMU_AUTH_MODE_SHARED_KEY, 201, NULL, NULL);
        expect("PUT", FILE_PATH, file_hdrs, EMU_AUTH_MODE_SHARED_KEY, 201, NULL, NULL);
}

static void teardown(void) {
        ck_assert_int_eq(emu_instance_stop(emu), 0);
        emu = emu_instance_free(emu);
        free(key);
        key = NULL;
}

/* ---- signing our own requests ------------------------------------------------------------- */

typedef struct Hdrs {
        const char *const *lines; /* "Name: value" */
} Hdrs;

static const char *hdrs_get(void *userdata, const char *name) {
        Hdrs *h = userdata;
        size_t n = strlen(name);
        for (size_t i = 0; h->lines[i]; i++)
                if (strncasecmp(h->lines[i], name, n) == 0 && h->lines[i][n] == ':') {
                        const char *v = h->lines[i] + n + 1;
                        while (*v == ' ')
                                v++;
                        return v;
                }
        return NULL;
}

static int hdrs_foreach(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        Hdrs *h = userdata;
        for (size_t i = 0; h->lines[i]; i++) {
                char name[128];
                const char *colon = strchr(h->lines[i], ':');
                size_t n = (size_t)(colon - h->lines[i]);
                ck_assert(colon && n < sizeof(name));
                memcpy(name, h->lines[i], n);
                name[n] = '\0';
                if (cb(cbdata, name, hdrs_get(userdata, name)) != 0)
                        return 1;
        }
        return 0;
}

/* "Authorization: SharedKey ACCOUNT:SIG" over exactly these headers (which must include
 * x-ms-date and x-ms-version, as sent). */
static char *sign(const char *method, const char *pq, const char *const *lines, const char *acct) {
        Hdrs h = {lines};
        _cleanup_free_ char *path = NULL, *authz = NULL;
        const char *q = strchr(pq, '?');
        char *line = NULL;
        SharedKeyRequest req;

        ck_assert_int_ge(
                asprintf(
                        &path, "/%s%.*s", EMU_TEST_ACCOUNT,
                        (int)(q ? (size_t)(q - pq) : strlen(pq)), pq),
                0);
        req = (SharedKeyRequest){
                .method = method,
                .account = acct,
                .encoded_path = path,
                .raw_query = q ? q + 1 : "",
                .get_header = hdrs_get,
                .foreach_header = hdrs_foreach,
                .userdata = &h,
        };
        ck_assert_int_eq(sharedkey_authorization(&req, SHARED_KEY, key, key_size, &authz), 0);
        ck_assert_int_ge(asprintf(&line, "Authorization: %s", authz), 0);
        return line;
}

static char *date_line(int64_t offset_s) {
        char buf[RFC1123_MAX], *line = NULL;
        ck_assert_int_ge(
                asprintf(
                        &line, "x-ms-date: %s",
                        format_rfc1123(buf, now_realtime_ns() + offset_s * NSEC_PER_SEC)),
                0);
        return line;
}

/* ---- Shared Key --------------------------------------------------------------------------- */

START_TEST(test_shared_key_good) {
        expect("GET", SHARE "?restype=share", NULL, EMU_AUTH_MODE_SHARED_KEY, 200, NULL, NULL);
        expect("GET", FILE_PATH, NULL, EMU_AUTH_MODE_SHARED_KEY, 200, NULL, NULL);
}
END_TEST

START_TEST(test_shared_key_bad_signature) {
        _cleanup_free_ char *date = date_line(0);
        const char *hdrs[] = {
                "x-ms-version: " EMU_TEST_VERSION, date,
                "Authorization: SharedKey " EMU_TEST_ACCOUNT
                ":AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                NULL};
        expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed",
               "Server used following string to sign: 'GET\n");
}
END_TEST

START_TEST(test_shared_key_signed_other_headers) {
        /* Signed over one x-ms-meta value, sent with another. */
        _cleanup_free_ char *date = date_line(0), *authz = NULL;
        const char *signed_hdrs[] = {
                "x-ms-version: " EMU_TEST_VERSION, date, "x-ms-meta-a: 1", NULL};
        authz = sign("GET", FILE_PATH, signed_hdrs, EMU_TEST_ACCOUNT);
        const char *sent[] = {
                "x-ms-version: " EMU_TEST_VERSION, date, "x-ms-meta-a: 2", authz, NULL};
        const char *good[] = {
                "x-ms-version: " EMU_TEST_VERSION, date, "x-ms-meta-a: 1", authz, NULL};
        expect("GET", FILE_PATH, sent, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed", NULL);
        expect("GET", FILE_PATH, good, EMU_AUTH_MODE_RAW, 200, NULL, NULL);
}
END_TEST

START_TEST(test_shared_key_wrong_account) {
        _cleanup_free_ char *date = date_line(0), *authz = NULL;
        const char *lines[] = {"x-ms-version: " EMU_TEST_VERSION, date, NULL};
        authz = sign("GET", FILE_PATH, lines, "otheraccount");
        const char *hdrs[] = {"x-ms-version: " EMU_TEST_VERSION, date, authz, NULL};
        expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed",
               "otheraccount");
}
END_TEST

START_TEST(test_shared_key_skewed_date) {
        static const int64_t offsets[] = {-20 * 60, 20 * 60};
        for (size_t i = 0; i < ELEMENTSOF(offsets); i++) {
                _cleanup_free_ char *date = date_line(offsets[i]), *authz = NULL;
                const char *lines[] = {"x-ms-version: " EMU_TEST_VERSION, date, NULL};
                authz = sign("GET", FILE_PATH, lines, EMU_TEST_ACCOUNT);
                const char *hdrs[] = {"x-ms-version: " EMU_TEST_VERSION, date, authz, NULL};
                expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed",
                       "Request date header too");
        }
        /* Ten minutes off is inside the window. */
        _cleanup_free_ char *date = date_line(-10 * 60), *authz = NULL;
        const char *lines[] = {"x-ms-version: " EMU_TEST_VERSION, date, NULL};
        authz = sign("GET", FILE_PATH, lines, EMU_TEST_ACCOUNT);
        const char *hdrs[] = {"x-ms-version: " EMU_TEST_VERSION, date, authz, NULL};
        expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 200, NULL, NULL);
}
END_TEST

START_TEST(test_shared_key_missing_date) {
        /* "x-ms-date:" makes curl send no x-ms-date at all (and the harness add none). */
        const char *lines[] = {"x-ms-version: " EMU_TEST_VERSION, NULL};
        _cleanup_free_ char *authz = sign("GET", FILE_PATH, lines, EMU_TEST_ACCOUNT);
        const char *hdrs[] = {"x-ms-version: " EMU_TEST_VERSION, "x-ms-date:", authz, NULL};
        expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed",
               "Request date header not specified");
}
END_TEST

START_TEST(test_malformed_and_missing) {
        const char *nocolon[] = {"Authorization: SharedKey " EMU_TEST_ACCOUNT, NULL};
        const char *scheme[] = {"Authorization: Basic Zm9vOmJhcg==", NULL};
        expect("GET", FILE_PATH, nocolon, EMU_AUTH_MODE_RAW, 400, "InvalidAuthenticationInfo",
               NULL);
        expect("GET", FILE_PATH, scheme, EMU_AUTH_MODE_RAW, 400, "InvalidAuthenticationInfo", NULL);
        expect("GET", FILE_PATH, NULL, EMU_AUTH_MODE_NONE, 401, "NoAuthenticationInformation",
               NULL);
}
END_TEST

/* ---- SAS ---------------------------------------------------------------------------------- */

static char *sas_url(const char *path, const SasToken *t, const char *resource) {
        _cleanup_free_ char *q = NULL;
        char *url = NULL;
        ck_assert_int_eq(sas_generate(t, EMU_TEST_ACCOUNT, resource, key, key_size, &q), 0);
        ck_assert_int_ge(asprintf(&url, "%s%s%s", path, strchr(path, '?') ? "&" : "?", q), 0);
        return url;
}

static SasToken file_token(const char *perms, int64_t start_s, int64_t expiry_s) {
        static char st[SAS_TIME_MAX], se[SAS_TIME_MAX];
        int64_t now = now_realtime_ns();
        return (SasToken){
                .kind = SAS_SERVICE,
                .version = (char *)EMU_TEST_VERSION,
                .resource = (char *)"f",
                .permissions = (char *)perms,
                .start = sas_format_time(st, now + start_s * NSEC_PER_SEC),
                .expiry = sas_format_time(se, now + expiry_s * NSEC_PER_SEC),
        };
}

START_TEST(test_sas_good) {
        SasToken t = file_token("r", -60, 3600);
        _cleanup_free_ char *url = sas_url(FILE_PATH, &t, "authshare/f.txt");
        expect("GET", url, NULL, EMU_AUTH_MODE_NONE, 200, NULL, NULL);

        /* Share SAS: list the root and read share properties. */
        t.resource = (char *)"s";
        t.permissions = (char *)"rl";
        _cleanup_free_ char *list = sas_url(SHARE "?restype=directory&comp=list", &t, "authshare");
        expect("GET", list, NULL, EMU_AUTH_MODE_NONE, 200, NULL, NULL);

        /* Account SAS. */
        char se[SAS_TIME_MAX];
        SasToken a = {
                .kind = SAS_ACCOUNT,
                .version = (char *)EMU_TEST_VERSION,
                .services = (char *)"f",
                .resource_types = (char *)"co",
                .permissions = (char *)"rl",
                .expiry = sas_format_time(se, now_realtime_ns() + 3600 * NSEC_PER_SEC)};
        _cleanup_free_ char *acct = sas_url(FILE_PATH, &a, NULL);
        expect("GET", acct, NULL, EMU_AUTH_MODE_NONE, 200, NULL, NULL);
}
END_TEST

START_TEST(test_sas_time_window) {
        SasToken expired = file_token("r", -7200, -3600);
        SasToken future = file_token("r", 3600, 7200);
        _cleanup_free_ char *u1 = sas_url(FILE_PATH, &expired, "authshare/f.txt");
        _cleanup_free_ char *u2 = sas_url(FILE_PATH, &future, "authshare/f.txt");
        expect("GET", u1, NULL, EMU_AUTH_MODE_NONE, 403, "AuthenticationFailed",
               "Signature not valid in the specified time frame");
        expect("GET", u2, NULL, EMU_AUTH_MODE_NONE, 403, "AuthenticationFailed",
               "Signature not valid in the specified time frame");
}
END_TEST

START_TEST(test_sas_permission) {
        SasToken t = file_token("r", -60, 3600);
        _cleanup_free_ char *url = sas_url(FILE_PATH, &t, "authshare/f.txt");
        expect("DELETE", url, NULL, EMU_AUTH_MODE_NONE, 403, "AuthorizationPermissionMismatch",
               NULL);
        /* A file SAS does not reach a directory operation. */
        t.permissions = (char *)"rl";
        t.resource = (char *)"s";
        char se[SAS_TIME_MAX];
        SasToken a = {
                .kind = SAS_ACCOUNT,
                .version = (char *)EMU_TEST_VERSION,
                .services = (char *)"f",
                .resource_types = (char *)"s",
                .permissions = (char *)"rl",
                .expiry = sas_format_time(se, now_realtime_ns() + 3600 * NSEC_PER_SEC)};
        _cleanup_free_ char *acct = sas_url(FILE_PATH, &a, NULL);
        expect("GET", acct, NULL, EMU_AUTH_MODE_NONE, 403, "AuthorizationResourceTypeMismatch",
               NULL);
        a.services = (char *)"b";
        a.resource_types = (char *)"o";
        _cleanup_free_ char *blob = sas_url(FILE_PATH, &a, NULL);
        expect("GET", blob, NULL, EMU_AUTH_MODE_NONE, 403, "AuthorizationServiceMismatch", NULL);
}
END_TEST

START_TEST(test_sas_tampered) {
        SasToken t = file_token("r", -60, 3600);
        _cleanup_free_ char *url = sas_url(FILE_PATH, &t, "authshare/f.txt");
        _cleanup_free_ char *other = NULL, *widened = NULL;
        char *p = strstr(url, "sp=r");

        ck_assert_ptr_nonnull(p);
        ck_assert_int_ge(asprintf(&widened, "%.*ssp=rd%s", (int)(p - url), url, p + 4), 0);
        expect("DELETE", widened, NULL, EMU_AUTH_MODE_NONE, 403, "AuthenticationFailed",
               "Signature did not match");
        /* The same token on another file. */
        ck_assert_int_ge(asprintf(&other, SHARE "/g.txt%s", strchr(url, '?')), 0);
        expect("GET", other, NULL, EMU_AUTH_MODE_NONE, 403, "AuthenticationFailed",
               "Signature did not match");
}
END_TEST

START_TEST(test_sas_protocol_and_ip) {
        SasToken t = file_token("r", -60, 3600);
        t.protocol = (char *)"https";
        _cleanup_free_ char *https = sas_url(FILE_PATH, &t, "authshare/f.txt");
        expect("GET", https, NULL, EMU_AUTH_MODE_NONE, 403, "AuthorizationProtocolMismatch", NULL);
        t.protocol = (char *)"https,http";
        t.ip = (char *)"10.1.2.3-10.1.2.9";
        _cleanup_free_ char *far = sas_url(FILE_PATH, &t, "authshare/f.txt");
        expect("GET", far, NULL, EMU_AUTH_MODE_NONE, 403, "AuthorizationSourceIPMismatch", NULL);
        t.ip = (char *)"127.0.0.1";
        _cleanup_free_ char *near = sas_url(FILE_PATH, &t, "authshare/f.txt");
        expect("GET", near, NULL, EMU_AUTH_MODE_NONE, 200, NULL, NULL);
}
END_TEST

/* ---- bearer ------------------------------------------------------------------------------- */

static char *imds_token(const char *resource_enc) {
        static const char *const md[] = {"Metadata: true", NULL};
        _cleanup_free_ char *url = NULL;
        json_object *o, *v;
        EmuHttpResult res;
        char *tok;

        ck_assert_int_ge(
                asprintf(
                        &url,
                        "imds:/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s",
                        resource_enc),
                0);
        res = http("GET", url, md, EMU_AUTH_MODE_NONE);
        ck_assert_msg(res.status == 200, "token: %ld %s", res.status, res.body);
        o = json_tokener_parse(res.body);
        ck_assert_ptr_nonnull(o);
        ck_assert(json_object_object_get_ex(o, "access_token", &v));
        tok = strdup(json_object_get_string(v));
        json_object_put(o);
        emu_http_result_clear(&res);
        return tok;
}

static char *bearer_line(const char *tok) {
        char *line = NULL;
        ck_assert_int_ge(asprintf(&line, "Authorization: Bearer %s", tok), 0);
        return line;
}

START_TEST(test_bearer) {
        _cleanup_free_ char *tok = imds_token("https%3A%2F%2Fstorage.azure.com%2F");
        _cleanup_free_ char *mgmt = imds_token("https%3A%2F%2Fmanagement.azure.com%2F");
        _cleanup_free_ char *auth = bearer_line(tok), *auth_mgmt = bearer_line(mgmt);
        _cleanup_free_ char *tampered = strdup(auth);
        const char *good[] = {auth, "x-ms-file-request-intent: backup", NULL};
        const char *no_intent[] = {auth, NULL};
        const char *old[] = {
                auth, "x-ms-file-request-intent: backup", "x-ms-version: 2021-06-08", NULL};
        const char *share_old[] = {auth, "x-ms-version: 2024-08-04", NULL};
        const char *wrong_aud[] = {auth_mgmt, "x-ms-file-request-intent: backup", NULL};
        const char *bad_sig[] = {tampered, "x-ms-file-request-intent: backup", NULL};

        expect("GET", FILE_PATH, good, EMU_AUTH_MODE_RAW, 200, NULL, NULL);
        expect("GET", FILE_PATH, no_intent, EMU_AUTH_MODE_RAW, 400, "MissingRequiredHeader",
               "<HeaderName>x-ms-file-request-intent</HeaderName>");
        expect("GET", FILE_PATH, old, EMU_AUTH_MODE_RAW, 403, "AuthenticationFailed", NULL);
        expect("GET", SHARE "?restype=share", share_old, EMU_AUTH_MODE_RAW, 403,
               "AuthenticationFailed", NULL);
        expect("GET", FILE_PATH, wrong_aud, EMU_AUTH_MODE_RAW, 401, "InvalidAuthenticationInfo",
               "Audience validation failed");
        tampered[strlen(tampered) - 2] ^= 1;
        expect("GET", FILE_PATH, bad_sig, EMU_AUTH_MODE_RAW, 401, "InvalidAuthenticationInfo",
               "Signature validation failed");
}
END_TEST

/* An expired token, signed the way the emulator signs (the test knows the account key). */
static char *b64url(const char *s, size_t n) {
        char *e = NULL;
        ck_assert_int_eq(base64_encode(s, n, &e), 0);
        for (char *p = e; *p; p++)
                *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        *strchrnul(e, '=') = '\0';
        return e;
}

START_TEST(test_bearer_expired) {
        uint8_t secret[32], mac[32];
        unsigned int n = 0;
        int64_t now = now_realtime_ns() / NSEC_PER_SEC;
        _cleanup_free_ char *payload = NULL, *h = NULL, *p = NULL, *input = NULL, *sig = NULL,
                            *line = NULL;
        const char *header = "{\"typ\":\"JWT\",\"alg\":\"HS256\"}";

        ck_assert_ptr_nonnull(
                HMAC(EVP_sha256(), key, (int)key_size,
                     (const unsigned char *)"azfiles-emu bearer token secret", 31, secret, &n));
        ck_assert_int_ge(
                asprintf(
                        &payload,
                        "{\"aud\":\"https://storage.azure.com/\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld}",
                        (long long)(now - 7200), (long long)(now - 7200), (long long)(now - 3600)),
                0);
        h = b64url(header, strlen(header));
        p = b64url(payload, strlen(payload));
        ck_assert_int_ge(asprintf(&input, "%s.%s", h, p), 0);
        ck_assert_ptr_nonnull(HMAC(
                EVP_sha256(), secret, 32, (const unsigned char *)input, strlen(input), mac, &n));
        sig = b64url((const char *)mac, 32);
        ck_assert_int_ge(asprintf(&line, "Authorization: Bearer %s.%s", input, sig), 0);
        const char *hdrs[] = {line, "x-ms-file-request-intent: backup", NULL};
        expect("GET", FILE_PATH, hdrs, EMU_AUTH_MODE_RAW, 401, "InvalidAuthenticationInfo",
               "The token is expired");
}
END_TEST

int main(void) {
        Suite *s = suite_create("emu-auth");
        TCase *sk = tcase_create("shared-key");
        TCase *sas = tcase_create("sas");
        TCase *bearer = tcase_create("bearer");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(sk, setup, teardown);
        tcase_add_test(sk, test_shared_key_good);
        tcase_add_test(sk, test_shared_key_bad_signature);
        tcase_add_test(sk, test_shared_key_signed_other_headers);
        tcase_add_test(sk, test_shared_key_wrong_account);
        tcase_add_test(sk, test_shared_key_skewed_date);
        tcase_add_test(sk, test_shared_key_missing_date);
        tcase_add_test(sk, test_malformed_and_missing);
        suite_add_tcase(s, sk);
        tcase_add_checked_fixture(sas, setup, teardown);
        tcase_add_test(sas, test_sas_good);
        tcase_add_test(sas, test_sas_time_window);
        tcase_add_test(sas, test_sas_permission);
        tcase_add_test(sas, test_sas_tampered);
        tcase_add_test(sas, test_sas_protocol_and_ip);
        suite_add_tcase(s, sas);
        tcase_add_checked_fixture(bearer, setup, teardown);
        tcase_add_test(bearer, test_bearer);
        tcase_add_test(bearer, test_bearer_expired);
        suite_add_tcase(s, bearer);
        tcase_set_timeout(sk, 60);
        tcase_set_timeout(sas, 60);
        tcase_set_timeout(bearer, 60);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
