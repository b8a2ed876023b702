/* SPDX-License-Identifier: MIT */
/* Shared Key signing against every vector in tests/data/sharedkey-vectors.json (published ones
 * from the Azure SDK test suites, canonicalized-resource and string-to-sign rows, and the derived
 * File-service requests), plus the canonicalization rules and caps one by one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <check.h>
#include <json-c/json.h>

#include "base64-util.h"
#include "macro.h"
#include "sharedkey.h"

/* Headers of a test request: a JSON object name -> value, or a plain array of pairs. */
typedef struct Headers {
        const char *names[3200];
        const char *values[3200];
        size_t n;
} Headers;

static const char *headers_get(void *userdata, const char *name) {
        Headers *h = userdata;
        for (size_t i = 0; i < h->n; i++)
                if (strcasecmp(h->names[i], name) == 0)
                        return h->values[i];
        return NULL;
}

static int headers_foreach(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        Headers *h = userdata;
        for (size_t i = 0; i < h->n; i++)
                if (cb(cbdata, h->names[i], h->values[i]) != 0)
                        return 1;
        return 0;
}

static void headers_add(Headers *h, const char *name, const char *value) {
        ck_assert_uint_lt(h->n, ELEMENTSOF(h->names));
        h->names[h->n] = name;
        h->values[h->n] = value;
        h->n++;
}

static void headers_from_json(Headers *h, json_object *o) {
        json_object_object_foreach(o, k, v) {
                headers_add(h, k, json_object_get_string(v));
        }
}

static SharedKeyRequest
make_req(const char *method, const char *account, const char *path, const char *query, Headers *h) {
        return (SharedKeyRequest){
                .method = method,
                .account = account,
                .encoded_path = path,
                .raw_query = query,
                .get_header = headers_get,
                .foreach_header = headers_foreach,
                .userdata = h,
        };
}

static json_object *vectors;

static void load_vectors(void) {
        const char *dir = getenv("TEST_DATA_DIR");
        char path[4096];

        ck_assert_msg(dir != NULL, "TEST_DATA_DIR is not set");
        (void)snprintf(path, sizeof(path), "%s/sharedkey-vectors.json", dir);
        vectors = json_object_from_file(path);
        ck_assert_msg(vectors != NULL, "cannot read %s", path);
}

static void put_vectors(void) {
        (void)json_object_put(vectors);
        vectors = NULL;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v;
        ck_assert_msg(json_object_object_get_ex(o, key, &v), "missing key %s", key);
        return json_object_get_string(v);
}

static void decode_key(const char *b64, uint8_t **key, size_t *n) {
        ck_assert_int_eq(base64_decode(b64, key, n), 0);
}

/* Splits "https://host/path?query" into the wire path (raw spaces encoded as %20, as a client
 * puts them on the wire) and the query. */
static void split_url(const char *url, char **ret_path, char **ret_query) {
        const char *p = strstr(url, "://");
        const char *q;
        char buf[4096];
        size_t o = 0;

        ck_assert_ptr_nonnull(p);
        p = strchr(p + 3, '/');
        ck_assert_ptr_nonnull(p);
        q = strchr(p, '?');
        for (const char *c = p; *c && c != q; c++) {
                ck_assert_uint_lt(o + 4, sizeof(buf));
                if (*c == ' ') {
                        memcpy(buf + o, "%20", 3);
                        o += 3;
                } else
                        buf[o++] = *c;
        }
        buf[o] = '\0';
        *ret_path = strdup(buf);
        *ret_query = strdup(q ? q + 1 : "");
}

static void check_full_vector(json_object *v, const char *path, const char *query, Headers *h) {
        const char *id = jstr(v, "id");
        const char *scheme_s =
                json_object_object_get_ex(v, "scheme", NULL) ? jstr(v, "scheme") : "SharedKey";
        SharedKeyScheme scheme = streq(scheme_s, "SharedKeyLite") ? SHARED_KEY_LITE : SHARED_KEY;
        json_object *request = json_object_object_get(v, "request");
        SharedKeyRequest req =
                make_req(jstr(request, "method"), jstr(v, "account"), path, query, h);
        const char *want_sig = json_object_object_get_ex(v, "expected_signature", NULL)
                                       ? jstr(v, "expected_signature")
                                       : jstr(v, "signature");
        const char *want_auth = json_object_object_get_ex(v, "expected_authorization", NULL)
                                        ? jstr(v, "expected_authorization")
                                        : jstr(v, "authorization");
        _cleanup_free_ char *sts = NULL, *sig = NULL, *auth = NULL;
        _cleanup_free_ uint8_t *key = NULL;
        size_t key_size;

        decode_key(jstr(v, "key_base64"), &key, &key_size);
        ck_assert_int_eq(sharedkey_string_to_sign(&req, scheme, &sts), 0);
        ck_assert_msg(
                streq(sts, jstr(v, "string_to_sign")), "%s: string-to-sign\n%s\nwant\n%s", id, sts,
                jstr(v, "string_to_sign"));
        ck_assert_int_eq(sharedkey_sign(key, key_size, sts, &sig), 0);
        ck_assert_msg(streq(sig, want_sig), "%s: signature %s want %s", id, sig, want_sig);
        ck_assert(sharedkey_signature_equal(sig, want_sig));
        ck_assert_int_eq(sharedkey_authorization(&req, scheme, key, key_size, &auth), 0);
        ck_assert_str_eq(auth, want_auth);
}

START_TEST(test_published_vectors) {
        json_object *list = json_object_object_get(vectors, "published_vectors");
        size_t n = json_object_array_length(list), checked = 0;

        ck_assert_uint_eq(n, 11);
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(list, i);
                const char *kind = jstr(v, "kind");

                if (streq(kind, "hmac-only")) {
                        _cleanup_free_ uint8_t *key = NULL;
                        _cleanup_free_ char *sig = NULL;
                        size_t key_size;

                        decode_key(jstr(v, "key_base64"), &key, &key_size);
                        ck_assert_int_eq(
                                sharedkey_sign(key, key_size, jstr(v, "string_to_sign"), &sig), 0);
                        ck_assert_str_eq(sig, jstr(v, "expected_signature"));
                } else {
                        json_object *request = json_object_object_get(v, "request");
                        json_object *query = json_object_object_get(request, "query");
                        _cleanup_free_ char *q = NULL;
                        Headers h = {};
                        char buf[1024] = "";

                        ck_assert_str_eq(kind, "full-request");
                        json_object_object_foreach(query, k, val) {
                                size_t l = strlen(buf);
                                (void)snprintf(
                                        buf + l, sizeof(buf) - l, "%s%s=%s", l ? "&" : "", k,
                                        json_object_get_string(val));
                        }
                        q = strdup(buf);
                        headers_from_json(&h, json_object_object_get(request, "headers"));
                        /* The node test hands the signer "container" without a leading '/'. */
                        check_full_vector(
                                v, jstr(request, "resource_path_as_given_to_signer"), q, &h);
                }
                checked++;
        }
        ck_assert_uint_eq(checked, 11);
}
END_TEST

/* The canonicalized resource is what follows the 12 fixed lines of a request without headers. */
static const char *resource_part(const char *sts) {
        for (int i = 0; i < 12; i++) {
                sts = strchr(sts, '\n');
                ck_assert_ptr_nonnull(sts);
                sts++;
        }
        return sts;
}

START_TEST(test_canonicalized_resource_vectors) {
        json_object *cr = json_object_object_get(vectors, "canonicalized_resource_vectors");
        json_object *cases = json_object_object_get(cr, "cases");
        size_t n = json_object_array_length(cases);

        ck_assert_uint_eq(n, 6);
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(cases, i);
                _cleanup_free_ char *path = NULL, *query = NULL, *sts = NULL;
                Headers h = {};
                SharedKeyRequest req;

                split_url(jstr(c, "url_in_test"), &path, &query);
                req = make_req("GET", jstr(c, "account"), path, query, &h);
                ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), 0);
                ck_assert_str_eq(resource_part(sts), jstr(c, "expected"));
        }
}
END_TEST

START_TEST(test_string_to_sign_vectors) {
        json_object *sv = json_object_object_get(vectors, "string_to_sign_vectors");
        json_object *cases = json_object_object_get(sv, "cases");
        size_t n = json_object_array_length(cases);

        ck_assert_uint_eq(n, 2);
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(cases, i);
                const char *resource = jstr(c, "canonicalized_resource");
                const char *nl = strchr(resource, '\n');
                const char *slash = strchr(resource + 1, '/');
                _cleanup_free_ char *account = NULL, *path = NULL, *sts = NULL;
                char query[1024] = "";
                Headers h = {};
                SharedKeyRequest req;

                /* "/account/path\nname:value\n..." back into account, path and a query. */
                account = strndup(resource + 1, (size_t)(slash - resource - 1));
                path = nl ? strndup(slash, (size_t)(nl - slash)) : strdup(slash);
                for (const char *l = nl; l; l = strchr(l + 1, '\n')) {
                        const char *end = strchr(l + 1, '\n');
                        size_t len = end ? (size_t)(end - l - 1) : strlen(l + 1), o = strlen(query);
                        (void)snprintf(
                                query + o, sizeof(query) - o, "%s%.*s", o ? "&" : "", (int)len,
                                l + 1);
                        for (char *p = query + o; *p; p++)
                                if (*p == ':') {
                                        *p = '=';
                                        break;
                                }
                }
                headers_from_json(&h, json_object_object_get(c, "headers"));
                req = make_req(jstr(c, "verb"), account, path, query, &h);
                ck_assert_int_eq(
                        sharedkey_string_to_sign(
                                &req,
                                streq(jstr(c, "scheme"), "SharedKeyLite") ? SHARED_KEY_LITE
                                                                          : SHARED_KEY,
                                &sts),
                        0);
                ck_assert_str_eq(sts, jstr(c, "expected_string_to_sign"));
        }
}
END_TEST

START_TEST(test_derived_vectors) {
        json_object *list = json_object_object_get(vectors, "derived_vectors");
        size_t n = json_object_array_length(list);

        ck_assert_uint_eq(n, 6);
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(list, i);
                json_object *request = json_object_object_get(v, "request");
                _cleanup_free_ char *path = NULL, *query = NULL;
                Headers h = {};

                split_url(jstr(request, "url"), &path, &query);
                headers_from_json(&h, json_object_object_get(request, "headers"));
                check_full_vector(v, path, query, &h);
        }
}
END_TEST

static char *sts_of(const char *method, const char *path, const char *query, Headers *h) {
        SharedKeyRequest req = make_req(method, "acct", path, query, h);
        char *sts = NULL;
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), 0);
        return sts;
}

START_TEST(test_rules) {
        Headers h = {};
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        /* Content-Length 0 is empty; Date drops out when x-ms-date is there; x-ms-* sorted,
         * lower-cased, folded and trimmed; other headers ignored. */
        headers_add(&h, "Content-Length", "0");
        headers_add(&h, "Date", "Mon, 06 Jul 2026 10:00:00 GMT");
        headers_add(&h, "X-MS-Meta-B", "  two   words\t here ");
        headers_add(&h, "x-ms-date", "Mon, 06 Jul 2026 10:00:00 GMT");
        headers_add(&h, "x-ms-meta-a", "");
        headers_add(&h, "User-Agent", "test");
        a = sts_of("PUT", "/acct/share/f", "", &h);
        ck_assert_str_eq(
                a, "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Mon, 06 Jul 2026 10:00:00 GMT\n"
                   "x-ms-meta-a:\nx-ms-meta-b:two words here\n/acct/acct/share/f");

        /* Without x-ms-date the Date header is signed. */
        h = (Headers){};
        headers_add(&h, "Date", "Mon, 06 Jul 2026 10:00:00 GMT");
        headers_add(&h, "Content-Length", "10");
        b = sts_of("GET", "/acct/", NULL, &h);
        ck_assert_str_eq(
                b, "GET\n\n\n10\n\n\nMon, 06 Jul 2026 10:00:00 GMT\n\n\n\n\n\n/acct/acct/");

        /* Query: names lower-cased and decoded, sorted; repeated names values sorted, joined. */
        h = (Headers){};
        c = sts_of("GET", "/acct/s", "Comp=list&b=2&b=1&x%20y=a%2Cb&flag&&a=", &h);
        ck_assert_str_eq(resource_part(c), "/acct/acct/s\na:\nb:1,2\ncomp:list\nflag:\nx y:a,b");

        /* A repeated x-ms header joins with ',', its values in the order they came. */
        headers_add(&h, "x-ms-meta-k", "2");
        headers_add(&h, "x-ms-meta-j", "x");
        headers_add(&h, "X-MS-META-K", "1");
        headers_add(&h, "x-ms-meta-k", "3");
        d = sts_of("GET", "/acct/s", "", &h);
        ck_assert_str_eq(
                strstr(d, "x-ms-meta-j:"), "x-ms-meta-j:x\nx-ms-meta-k:2,1,3\n/acct/acct/s");
}
END_TEST

START_TEST(test_lite_keeps_comp_only) {
        Headers h = {};
        SharedKeyRequest req;
        _cleanup_free_ char *sts = NULL;

        headers_add(&h, "x-ms-date", "Mon, 06 Jul 2026 10:00:00 GMT");
        headers_add(&h, "Content-Type", "text/plain");
        req = make_req("GET", "acct", "/acct/s/d", "restype=directory&comp=list&maxresults=2", &h);
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY_LITE, &sts), 0);
        ck_assert_str_eq(
                sts, "GET\n\ntext/plain\n\nx-ms-date:Mon, 06 Jul 2026 10:00:00 GMT\n"
                     "/acct/acct/s/d?comp=list");
}
END_TEST

START_TEST(test_errors_and_caps) {
        Headers h = {};
        SharedKeyRequest req;
        char *sts = NULL;
        static char names[3100][20];
        char query[2048] = "";

        req = make_req("GET", "acct", "/acct/s", "a=%zz", &h);
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), -EINVAL);
        req.raw_query = "a=%4";
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), -EINVAL);
        req.raw_query = "a=%00";
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), -EINVAL);

        /* x-ms-* headers have no count cap: a Set Metadata carries up to 3,081 pairs (the
         * service's 8 KiB of one- to three-letter names), all signed. */
        for (int i = 0; i < 3100; i++) {
                (void)snprintf(names[i], sizeof(names[i]), "x-ms-meta-m%d", i);
                headers_add(&h, names[i], "");
        }
        req.raw_query = "";
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), 0);
        ck_assert_ptr_nonnull(strstr(sts, "\nx-ms-meta-m0:\nx-ms-meta-m1:\nx-ms-meta-m10:\n"));
        ck_assert_ptr_nonnull(strstr(sts, "\nx-ms-meta-m999:\n/acct/acct/s"));
        free(sts);
        sts = NULL;

        h.n = 0;
        for (int i = 0; i < 65; i++) {
                size_t o = strlen(query);
                (void)snprintf(query + o, sizeof(query) - o, "%sp%d=1", i ? "&" : "", i);
        }
        req.raw_query = query;
        ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), -E2BIG);

        {
                size_t big = SHAREDKEY_STRING_TO_SIGN_MAX + 10;
                _cleanup_free_ char *v = malloc(big + 1);
                memset(v, 'a', big);
                v[big] = '\0';
                headers_add(&h, "x-ms-meta-big", v);
                req.raw_query = "";
                ck_assert_int_eq(sharedkey_string_to_sign(&req, SHARED_KEY, &sts), -E2BIG);
        }
        ck_assert_ptr_null(sts);
}
END_TEST

START_TEST(test_signature_equal) {
        ck_assert(sharedkey_signature_equal("abc=", "abc="));
        ck_assert(!sharedkey_signature_equal("abc=", "abd="));
        ck_assert(!sharedkey_signature_equal("abc=", "abc"));
        ck_assert(!sharedkey_signature_equal(NULL, "abc"));
        ck_assert(sharedkey_signature_equal("", ""));
}
END_TEST

int main(void) {
        Suite *s = suite_create("sharedkey");
        TCase *tc = tcase_create("vectors");
        TCase *rules = tcase_create("rules");
        SRunner *sr;
        int failed;

        tcase_add_checked_fixture(tc, load_vectors, put_vectors);
        tcase_add_test(tc, test_published_vectors);
        tcase_add_test(tc, test_canonicalized_resource_vectors);
        tcase_add_test(tc, test_string_to_sign_vectors);
        tcase_add_test(tc, test_derived_vectors);
        suite_add_tcase(s, tc);
        tcase_add_test(rules, test_rules);
        tcase_add_test(rules, test_lite_keeps_comp_only);
        tcase_add_test(rules, test_errors_and_caps);
        tcase_add_test(rules, test_signature_equal);
        suite_add_tcase(s, rules);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
