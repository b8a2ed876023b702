/* SPDX-License-Identifier: MIT */
/* File service SAS: string-to-sign layouts and their sources are listed in sas.h. */
#include "sas.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "sharedkey.h"
#include "strbuf.h"
#include "time-util.h"
#include "url-util.h"

/* Query name -> field, in the order a generated token lists them. */
#define SAS_FIELDS(X)                                                                              \
        X("sv", version)                                                                           \
        X("ss", services)                                                                          \
        X("srt", resource_types)                                                                   \
        X("sp", permissions)                                                                       \
        X("st", start)                                                                             \
        X("se", expiry)                                                                            \
        X("sip", ip)                                                                               \
        X("spr", protocol)                                                                         \
        X("sr", resource)                                                                          \
        X("si", identifier)                                                                        \
        X("ses", encryption_scope)                                                                 \
        X("rscc", cache_control)                                                                   \
        X("rscd", content_disposition)                                                             \
        X("rsce", content_encoding)                                                                \
        X("rscl", content_language)                                                                \
        X("rsct", content_type)                                                                    \
        X("sig", signature)

static char **field_by_name(SasToken *t, const char *name) {
#define MATCH(n, f)                                                                                \
        if (streq(name, n))                                                                        \
                return &t->f;
        SAS_FIELDS(MATCH)
#undef MATCH
        return NULL;
}

void sas_token_clear(SasToken *t) {
#define FREE(n, f) free(t->f);
        SAS_FIELDS(FREE)
#undef FREE
        *t = (SasToken){};
}

char *sas_format_time(char buf[static SAS_TIME_MAX], int64_t ns) {
        time_t s = (time_t)(ns / NSEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&s, &tm) || strftime(buf, SAS_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                buf[0] = '\0';
        return buf;
}

static int digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect(const char **p, char c) {
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

int sas_parse_time(const char *s, int64_t *ret) {
        struct tm tm = {};
        int y, mo, d, h = 0, mi = 0, sec = 0, frac_ns = 0;
        const char *p = s;
        time_t t;

        if (digits(&p, 4, &y) < 0 || expect(&p, '-') < 0 || digits(&p, 2, &mo) < 0 ||
            expect(&p, '-') < 0 || digits(&p, 2, &d) < 0)
                return -EINVAL;
        if (*p == 'T') {
                p++;
                if (digits(&p, 2, &h) < 0 || expect(&p, ':') < 0 || digits(&p, 2, &mi) < 0)
                        return -EINVAL;
                if (*p == ':') {
                        p++;
                        if (digits(&p, 2, &sec) < 0)
                                return -EINVAL;
                        if (*p == '.') {
                                int n = 0, scale = 100000000;
                                p++;
                                while (*p >= '0' && *p <= '9' && n < 7) {
                                        frac_ns += (*p - '0') * scale;
                                        scale /= 10;
                                        p++;
                                        n++;
                                }
                                if (n == 0)
                                        return -EINVAL;
                        }
                }
                if (expect(&p, 'Z') < 0)
                        return -EINVAL;
        }
        if (*p != '\0')
                return -EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 59)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        t = timegm(&tm);
        if (t == (time_t)-1 || tm.tm_mday != d || (int64_t)t > INT64_MAX / NSEC_PER_SEC - 1)
                return -EINVAL;
        *ret = (int64_t)t * NSEC_PER_SEC + frac_ns;
        return 0;
}

static const char *s_or_empty(const char *s) {
        return s ? s : "";
}

int sas_string_to_sign(const SasToken *t, const char *account, const char *resource, char **ret) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SAS_QUERY_MAX};
        int r;

        if (!t->version || strcmp(t->version, "2015-04-05") < 0)
                return -EOPNOTSUPP;
        if (t->kind == SAS_ACCOUNT) {
                r = strbuf_appendf(
                        &b, "%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n", account,
                        s_or_empty(t->permissions), s_or_empty(t->services),
                        s_or_empty(t->resource_types), s_or_empty(t->start), s_or_empty(t->expiry),
                        s_or_empty(t->ip), s_or_empty(t->protocol), t->version);
                if (r >= 0 && strcmp(t->version, "2020-12-06") >= 0)
                        r = strbuf_appendf(&b, "%s\n", s_or_empty(t->encryption_scope));
        } else if (t->kind == SAS_SERVICE) {
                if (!resource)
                        return -EINVAL;
                r = strbuf_appendf(
                        &b, "%s\n%s\n%s\n/file/%s/%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s",
                        s_or_empty(t->permissions), s_or_empty(t->start), s_or_empty(t->expiry),
                        account, resource, s_or_empty(t->identifier), s_or_empty(t->ip),
                        s_or_empty(t->protocol), t->version, s_or_empty(t->cache_control),
                        s_or_empty(t->content_disposition), s_or_empty(t->content_encoding),
                        s_or_empty(t->content_language), s_or_empty(t->content_type));
        } else
                return -EINVAL;
        if (r < 0)
                return r;
        return strbuf_steal(&b, ret);
}

static int append_param(StrBuf *b, const char *name, const char *value) {
        _cleanup_free_ char *enc = NULL;
        int r;

        if (!value)
                return 0;
        r = url_percent_encode(value, false, &enc);
        if (r < 0)
                return r;
        return strbuf_appendf(b, "%s%s=%s", b->len > 0 ? "&" : "", name, enc);
}

int sas_generate(
        const SasToken *t,
        const char *account,
        const char *resource,
        const uint8_t *key,
        size_t key_size,
        char **ret) {
        _cleanup_(strbuf_done) StrBuf b = {.cap = SAS_QUERY_MAX};
        _cleanup_free_ char *sts = NULL, *sig = NULL;
        int r;

        r = sas_string_to_sign(t, account, resource, &sts);
        if (r < 0)
                return r;
        r = sharedkey_sign(key, key_size, sts, &sig);
        if (r < 0)
                return r;
#define APPEND(n, f)                                                                               \
        if (r >= 0)                                                                                \
                r = append_param(&b, n, streq(n, "sig") ? sig : t->f);
        SAS_FIELDS(APPEND)
#undef APPEND
        if (r < 0)
                return r;
        return strbuf_steal(&b, ret);
}

static int sas_parse_query_internal(const char *q, SasToken *t) {
        int r;

        if (strlen(q) > SAS_QUERY_MAX)
                return -E2BIG;
        while (*q) {
                const char *end = strchr(q, '&'), *eq;
                size_t len = end ? (size_t)(end - q) : strlen(q);
                _cleanup_free_ char *name = NULL;
                char **field;

                eq = memchr(q, '=', len);
                if (len > 0) {
                        r = url_percent_decode(q, eq ? (size_t)(eq - q) : len, &name);
                        if (r < 0)
                                return r;
                        field = field_by_name(t, name);
                        if (field) {
                                if (*field) /* the same SAS field twice */
                                        return -EINVAL;
                                if (eq)
                                        r = url_percent_decode(
                                                eq + 1, len - (size_t)(eq + 1 - q), field);
                                else
                                        r = (*field = strdup("")) ? 0 : -ENOMEM;
                                if (r < 0)
                                        return r;
                        }
                }
                if (!end)
                        break;
                q = end + 1;
        }

        if (!t->signature)
                return -ENOENT;
        if (isempty(t->signature) || isempty(t->version))
                return -EINVAL;
        if (strcmp(t->version, "2015-04-05") < 0)
                return -EOPNOTSUPP;
        if (t->services || t->resource_types) {
                t->kind = SAS_ACCOUNT;
                if (isempty(t->services) || isempty(t->resource_types) || isempty(t->permissions) ||
                    isempty(t->expiry) || t->resource || t->identifier)
                        return -EINVAL;
        } else {
                t->kind = SAS_SERVICE;
                if (!t->resource || (!streq(t->resource, "s") && !streq(t->resource, "f")))
                        return -EINVAL;
                /* Without a stored access policy, sp and se must be in the token. */
                if (!t->identifier && (isempty(t->permissions) || isempty(t->expiry)))
                        return -EINVAL;
        }
        if (t->protocol && !streq(t->protocol, "https") && !streq(t->protocol, "https,http") &&
            !streq(t->protocol, "http,https"))
                return -EINVAL;
        if (t->start && sas_parse_time(t->start, &t->start_ns) < 0)
                return -EINVAL;
        if (t->expiry && sas_parse_time(t->expiry, &t->expiry_ns) < 0)
                return -EINVAL;
        if (t->ip) {
                const char *dash = strchr(t->ip, '-');
                struct in_addr a, b;
                char first[INET_ADDRSTRLEN];
                size_t n = dash ? (size_t)(dash - t->ip) : strlen(t->ip);

                if (n >= sizeof(first))
                        return -EINVAL;
                memcpy(first, t->ip, n);
                first[n] = '\0';
                if (inet_pton(AF_INET, first, &a) != 1 ||
                    (dash && inet_pton(AF_INET, dash + 1, &b) != 1))
                        return -EINVAL;
        }
        return 0;
}

int sas_parse_query(const char *raw_query, SasToken *ret) {
        SasToken t = {};
        int r = sas_parse_query_internal(raw_query ? raw_query : "", &t);
        if (r < 0) {
                sas_token_clear(&t);
                *ret = (SasToken){};
                return r;
        }
        *ret = t;
        return 0;
}

int sas_verify_signature(
        const SasToken *t,
        const char *account,
        const char *resource,
        const uint8_t *key,
        size_t key_size,
        char **reterr_string_to_sign) {
        _cleanup_free_ char *sts = NULL, *sig = NULL;
        int r;

        r = sas_string_to_sign(t, account, resource, &sts);
        if (r < 0)
                return r;
        r = sharedkey_sign(key, key_size, sts, &sig);
        if (r < 0)
                return r;
        if (sharedkey_signature_equal(sig, t->signature))
                return 0;
        if (reterr_string_to_sign)
                *reterr_string_to_sign = TAKE_PTR(sts);
        return -EACCES;
}

int sas_check_time(const SasToken *t, int64_t now_ns) {
        if (t->start && now_ns < t->start_ns)
                return -EKEYREJECTED;
        if (t->expiry && now_ns > t->expiry_ns)
                return -EKEYEXPIRED;
        return 0;
}

bool sas_has_permission(const SasToken *t, const char *any_of) {
        if (!t->permissions)
                return false;
        for (const char *c = any_of; *c; c++)
                if (strchr(t->permissions, *c))
                        return true;
        return false;
}

bool sas_allows_http(const SasToken *t) {
        return !t->protocol || streq(t->protocol, "https,http") || streq(t->protocol, "http,https");
}

int sas_check_ip(const SasToken *t, const char *ip) {
        const char *dash;
        struct in_addr lo, hi, a;
        char first[INET_ADDRSTRLEN];
        size_t n;

        if (!t->ip)
                return 0;
        if (!ip || inet_pton(AF_INET, ip, &a) != 1)
                return -EACCES;
        dash = strchr(t->ip, '-');
        n = dash ? (size_t)(dash - t->ip) : strlen(t->ip);
        if (n >= sizeof(first))
                return -EACCES;
        memcpy(first, t->ip, n);
        first[n] = '\0';
        if (inet_pton(AF_INET, first, &lo) != 1)
                return -EACCES;
        hi = lo;
        if (dash && inet_pton(AF_INET, dash + 1, &hi) != 1)
                return -EACCES;
        if (ntohl(a.s_addr) < ntohl(lo.s_addr) || ntohl(a.s_addr) > ntohl(hi.s_addr))
                return -EACCES;
        return 0;
}
