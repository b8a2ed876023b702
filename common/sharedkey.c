/* SPDX-License-Identifier: MIT */
/* Shared Key / SharedKeyLite string-to-sign, as documented in "Authorize with Shared Key"
 * (learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key), rules for versions
 * 2015-02-21 and later (Content-Length "0" signs as an empty line). Checked against the published
 * vectors in tests/data/sharedkey-vectors.json. */
#include "sharedkey.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base64-util.h"
#include "macro.h"
#include "strbuf.h"
#include "url-util.h"

typedef struct Pair {
        char *name;
        char *value;
        size_t seq; /* order of appearance, for repeated headers */
} Pair;

/* Query parameters (at most max) or x-ms-* headers (at most max_bytes of names and values: more
 * could not fit the string-to-sign anyway; no count, as Set Metadata may carry thousands). */
typedef struct PairList {
        Pair *items;
        size_t n, alloc;
        size_t max;
        size_t bytes, max_bytes;
        int error;
} PairList;

static void pair_list_done(PairList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].name);
                free(l->items[i].value);
        }
        free(l->items);
        *l = (PairList){0};
}

/* Takes name and value (freed on failure too): -E2BIG beyond the caps, -ENOMEM. */
static int pair_list_add(PairList *l, char *name, char *value) {
        _cleanup_free_ char *n = name, *v = value;
        size_t bytes = strlen(n) + strlen(v);

        if ((l->max > 0 && l->n >= l->max) || (l->max_bytes > 0 && bytes > l->max_bytes - l->bytes))
                return -E2BIG;
        if (array_reserve((void **)&l->items, &l->alloc, l->n + 1, sizeof(Pair)) < 0)
                return -ENOMEM;
        l->items[l->n] = (Pair){TAKE_PTR(n), TAKE_PTR(v), l->n};
        l->n++;
        l->bytes += bytes;
        return 0;
}

static void lowercase(char *s) {
        for (; *s; s++)
                *s = (char)tolower((unsigned char)*s);
}

static bool is_lws(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trims the value and folds every run of linear whitespace into one space. */
static char *fold_value(const char *v) {
        size_t len = strlen(v);
        char *out = malloc(len + 1), *o = out;
        bool space = false;

        if (!out)
                return NULL;
        while (*v && is_lws(*v))
                v++;
        for (; *v; v++) {
                if (is_lws(*v)) {
                        space = true;
                        continue;
                }
                if (space)
                        *o++ = ' ';
                space = false;
                *o++ = *v;
        }
        *o = '\0';
        return out;
}

static int collect_header(void *cbdata, const char *name, const char *value) {
        PairList *l = cbdata;
        char *n, *v;

        if (strncasecmp(name, "x-ms-", 5) != 0)
                return 0;
        n = strdup(name);
        v = fold_value(value ? value : "");
        if (!n || !v) {
                free(n);
                free(v);
                l->error = -ENOMEM;
                return 1;
        }
        lowercase(n);
        l->error = pair_list_add(l, n, v);
        return l->error < 0;
}

/* Query parameters: by name, then value (repeated names list their values sorted). */
static int pair_cmp(const void *a, const void *b) {
        const Pair *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c != 0 ? c : strcmp(x->value, y->value);
}

/* Headers: by name, then as they came. */
static int header_cmp(const void *a, const void *b) {
        const Pair *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* Sorts the headers and makes a repeated header one header whose values are joined with ',', in
 * the order they came, as HTTP defines. */
static int sort_and_join_headers(PairList *l) {
        size_t out = 0;

        if (l->n == 0)
                return 0;
        qsort(l->items, l->n, sizeof(Pair), header_cmp);
        for (size_t i = 1; i < l->n; i++) {
                Pair *last = &l->items[out], cur = l->items[i];
                size_t a, b;
                char *j;

                l->items[i] = (Pair){0}; /* moved to cur (the list frees what it holds) */
                if (!streq(last->name, cur.name)) {
                        l->items[++out] = cur;
                        continue;
                }
                a = strlen(last->value);
                b = strlen(cur.value);
                j = realloc(last->value, a + b + 2);
                if (j) {
                        j[a] = ',';
                        memcpy(j + a + 1, cur.value, b + 1);
                        last->value = j;
                }
                free(cur.name);
                free(cur.value);
                if (!j)
                        return -ENOMEM;
        }
        l->n = out + 1;
        return 0;
}

static int parse_query(const char *q, PairList *l) {
        while (q && *q) {
                const char *end = strchr(q, '&'), *eq;
                size_t len = end ? (size_t)(end - q) : strlen(q);
                char *n = NULL, *v = NULL;
                int r;

                if (len > 0) {
                        if (l->n >= l->max)
                                return -E2BIG;
                        eq = memchr(q, '=', len);
                        r = url_percent_decode(q, eq ? (size_t)(eq - q) : len, &n);
                        if (r < 0)
                                return r;
                        r = eq ? url_percent_decode(eq + 1, len - (size_t)(eq + 1 - q), &v)
                               : ((v = strdup("")) ? 0 : -ENOMEM);
                        if (r < 0) {
                                free(n);
                                return r;
                        }
                        lowercase(n);
                        r = pair_list_add(l, n, v);
                        if (r < 0)
                                return r;
                }
                q = end ? end + 1 : NULL;
        }
        if (l->n > 1) /* qsort() of a NULL array is undefined, even of none */
                qsort(l->items, l->n, sizeof(Pair), pair_cmp);
        return 0;
}

static const char *header_or_empty(const SharedKeyRequest *req, const char *name) {
        const char *v = req->get_header(req->userdata, name);
        return v ? v : "";
}

static int append_line(StrBuf *b, const char *s) {
        int r = strbuf_append(b, s);
        return r < 0 ? r : strbuf_append_char(b, '\n');
}

static int append_standard_headers(StrBuf *b, const SharedKeyRequest *req, SharedKeyScheme scheme) {
        static const char *const full[] = {
                "Content-Encoding",
                "Content-Language",
                "Content-Length",
                "Content-MD5",
                "Content-Type",
                "Date",
                "If-Modified-Since",
                "If-Match",
                "If-None-Match",
                "If-Unmodified-Since",
                "Range",
        };
        static const char *const lite[] = {"Content-MD5", "Content-Type", "Date"};
        const char *const *names = scheme == SHARED_KEY ? full : lite;
        size_t n = scheme == SHARED_KEY ? ELEMENTSOF(full) : ELEMENTSOF(lite);
        bool has_ms_date = req->get_header(req->userdata, "x-ms-date") != NULL;
        int r;

        r = append_line(b, req->method);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const char *v = header_or_empty(req, names[i]);
                if (streq(names[i], "Content-Length") && streq(v, "0"))
                        v = "";
                else if (streq(names[i], "Date") && has_ms_date)
                        v = "";
                r = append_line(b, v);
        }
        return r;
}

int sharedkey_string_to_sign(const SharedKeyRequest *req, SharedKeyScheme scheme, char **ret) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SHAREDKEY_STRING_TO_SIGN_MAX};
        _cleanup_(pair_list_done) PairList headers = {.max_bytes = SHAREDKEY_STRING_TO_SIGN_MAX};
        _cleanup_(pair_list_done) PairList query = {.max = SHAREDKEY_QUERY_PARAMS_MAX};
        int r;

        assert(req && req->method && req->account && req->encoded_path && req->get_header &&
               req->foreach_header && ret);
        assert(scheme == SHARED_KEY || scheme == SHARED_KEY_LITE);

        r = append_standard_headers(&b, req, scheme);
        if (r < 0)
                return r;

        (void)req->foreach_header(req->userdata, collect_header, &headers);
        if (headers.error < 0)
                return headers.error;
        r = sort_and_join_headers(&headers);
        if (r < 0)
                return r;
        for (size_t i = 0; i < headers.n; i++) {
                r = strbuf_appendf(&b, "%s:%s\n", headers.items[i].name, headers.items[i].value);
                if (r < 0)
                        return r;
        }

        r = strbuf_appendf(&b, "/%s%s", req->account, req->encoded_path);
        if (r < 0)
                return r;
        r = parse_query(req->raw_query, &query);
        if (r < 0)
                return r;
        for (size_t i = 0; i < query.n; i++) {
                const char *name = query.items[i].name;
                if (scheme == SHARED_KEY_LITE) {
                        /* Lite keeps only ?comp=, and only its first value. */
                        if (streq(name, "comp")) {
                                r = strbuf_appendf(&b, "?comp=%s", query.items[i].value);
                                break;
                        }
                        continue;
                }
                if (i > 0 && streq(name, query.items[i - 1].name))
                        r = strbuf_appendf(&b, ",%s", query.items[i].value);
                else
                        r = strbuf_appendf(&b, "\n%s:%s", name, query.items[i].value);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return strbuf_steal(&b, ret);
}

int sharedkey_sign(const uint8_t *key, size_t key_size, const char *string_to_sign, char **ret) {
        static const uint8_t empty_key[1];
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;

        assert(string_to_sign && ret);
        if (key_size > INT32_MAX)
                return -E2BIG;
        if (!HMAC(EVP_sha256(), key_size > 0 ? key : empty_key, (int)key_size,
                  (const unsigned char *)string_to_sign, strlen(string_to_sign), mac, &mac_len))
                return -EIO;
        return base64_encode(mac, mac_len, ret);
}

int sharedkey_authorization(
        const SharedKeyRequest *req,
        SharedKeyScheme scheme,
        const uint8_t *key,
        size_t key_size,
        char **ret) {
        _cleanup_free_ char *sts = NULL, *sig = NULL;
        char *out;
        int r;

        r = sharedkey_string_to_sign(req, scheme, &sts);
        if (r < 0)
                return r;
        r = sharedkey_sign(key, key_size, sts, &sig);
        if (r < 0)
                return r;
        if (asprintf(
                    &out, "%s %s:%s", scheme == SHARED_KEY ? "SharedKey" : "SharedKeyLite",
                    req->account, sig) < 0)
                return -ENOMEM;
        *ret = out;
        return 0;
}

bool sharedkey_signature_equal(const char *a, const char *b) {
        size_t la, lb;

        if (!a || !b)
                return false;
        la = strlen(a);
        lb = strlen(b);
        /* The length of a signature is not a secret; its bytes are. */
        if (la != lb)
                return false;
        return CRYPTO_memcmp(a, b, la) == 0;
}
