/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared access signatures for the File service: generating (tests, demo) and parsing and
 * checking (the emulator). Pure: no I/O; times are nanoseconds since the epoch, passed in.
 *
 * Layouts implemented (string-to-sign, fields joined by '\n'):
 *  - Service SAS, File service, sv >= 2015-04-05 (unchanged through 2025-05-05 for a key-signed
 *    SAS: the 2018-11-09 signedResource/snapshot and 2020-12-06 encryption-scope fields are
 * Blob's): sp, st, se, "/file/" account "/" share ["/" path], si, sip, spr, sv, rscc, rscd, rsce,
 *      rscl, rsct
 *    as in azure-sdk-for-cpp sdk/storage/azure-storage-files-shares/src/share_sas_builder.cpp
 *    (GenerateSasStringToSign) and azure-sdk-for-js storage-file-share FileSASSignatureValues.ts.
 *  - Account SAS, sv >= 2015-04-05:
 *      account, sp, ss, srt, st, se, sip, spr, sv, ""              (sv <  2020-12-06)
 *      account, sp, ss, srt, st, se, sip, spr, sv, ses, ""         (sv >= 2020-12-06)
 *    as in the "Create an account SAS" REST docs and azure-sdk-for-js
 *    storage-file-share/src/AccountSASSignatureValues.ts (the trailing "" is the final '\n').
 * Older sv values (2012-02-12, 2013-08-15) are refused with -EOPNOTSUPP.
 *
 * Times (st, se) are signed exactly as they appear in the token (decoded). Accepted forms, UTC
 * only: YYYY-MM-DD, YYYY-MM-DDThh:mmZ, YYYY-MM-DDThh:mm:ssZ, YYYY-MM-DDThh:mm:ss.f{1,7}Z. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SAS_TIME_MAX 32
#define SAS_QUERY_MAX (8u * 1024u)

typedef enum SasKind {
        SAS_SERVICE,
        SAS_ACCOUNT,
        _SAS_KIND_MAX,
        _SAS_KIND_INVALID = -22,
} SasKind;

/* Every string is decoded text; NULL when the parameter is absent. */
typedef struct SasToken {
        SasKind kind;
        char *version;             /* sv */
        char *permissions;         /* sp */
        char *start;               /* st */
        char *expiry;              /* se */
        char *ip;                  /* sip: "a.b.c.d" or "a.b.c.d-e.f.g.h" */
        char *protocol;            /* spr: "https" or "https,http" */
        char *identifier;          /* si (service SAS) */
        char *resource;            /* sr (service SAS): "s" share or "f" file */
        char *services;            /* ss (account SAS) */
        char *resource_types;      /* srt (account SAS): s, c, o */
        char *encryption_scope;    /* ses (account SAS, sv >= 2020-12-06) */
        char *cache_control;       /* rscc */
        char *content_disposition; /* rscd */
        char *content_encoding;    /* rsce */
        char *content_language;    /* rscl */
        char *content_type;        /* rsct */
        char *signature;           /* sig */
        int64_t start_ns;          /* parsed st, 0 when absent */
        int64_t expiry_ns;         /* parsed se, 0 when absent */
} SasToken;

void sas_token_clear(SasToken *t);

/* "2026-07-06T10:00:00Z" into buf; returns buf. */
char *sas_format_time(char buf[static SAS_TIME_MAX], int64_t ns);
/* Strict parser for the forms above: 0 and *ret, or -EINVAL. */
int sas_parse_time(const char *s, int64_t *ret);

/* The resource part of a service SAS: share, or share + "/" + path (decoded, '/'-separated,
 * no leading or trailing '/'). Unused for an account SAS (pass NULL). */
int sas_string_to_sign(const SasToken *t, const char *account, const char *resource, char **ret);

/* Signs t (its signature field is ignored) and returns the query string to append to a URL,
 * percent-encoded, without a leading '?'. t->kind picks the layout; fields NULL are left out. */
int sas_generate(
        const SasToken *t,
        const char *account,
        const char *resource,
        const uint8_t *key,
        size_t key_size,
        char **ret);

/* Parses the SAS parameters out of a raw (encoded) query; other parameters are ignored.
 * Returns 0 on success, -ENOENT when there is no sig=, -EINVAL for a malformed token (repeated
 * or undecodable parameter, bad time, missing required field, unknown sr/spr), -EOPNOTSUPP for
 * an sv older than 2015-04-05, -E2BIG for a query over SAS_QUERY_MAX. On failure *ret is
 * cleared. */
int sas_parse_query(const char *raw_query, SasToken *ret);

/* 0 when the signature matches; -EACCES when it does not (then *reterr_string_to_sign, when
 * given, receives the string the signature was checked against; caller frees). */
int sas_verify_signature(
        const SasToken *t,
        const char *account,
        const char *resource,
        const uint8_t *key,
        size_t key_size,
        char **reterr_string_to_sign);

/* 0 inside [st, se]; -EKEYEXPIRED after se; -EKEYREJECTED before st. */
int sas_check_time(const SasToken *t, int64_t now_ns);
/* True when sp holds any one of the permission letters in any_of. */
bool sas_has_permission(const SasToken *t, const char *any_of);
/* True when spr allows plain http (absent or "https,http"/"http,https"). */
bool sas_allows_http(const SasToken *t);
/* 0 when sip is absent or the IPv4 address ip lies in it; -EACCES otherwise (including an
 * unknown or non-IPv4 ip while sip is set). */
int sas_check_ip(const SasToken *t, const char *ip);
