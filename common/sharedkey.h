/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared Key (and SharedKeyLite) signing for the Azure Storage REST APIs, shared by the client
 * (azfilesfs signs) and the emulator (verifies). Pure: no I/O.
 *
 * The canonicalized resource is "/" + account + the request path exactly as sent on the wire
 * (percent-encoded). With a path-style endpoint (http://host:port/ACCOUNT/SHARE/...) the path
 * includes the account segment, so the account appears twice ("/acct/acct/share/f"), as the
 * Azure SDKs and Azurite compute it. Query parameters: names lower-cased and sorted, names and
 * values percent-decoded, repeated names joined with ',' (values sorted).
 *
 * Headers: the 11 standard headers of the layout (Content-Length "0" signs as empty, Date as empty
 * when x-ms-date is present), then every x-ms-* header: names lower-cased, sorted, values trimmed
 * with whitespace runs folded to one space; a header given twice is one header with both values
 * joined by ',' (HTTP semantics) [unverified against the service]. '+' in the query stays '+'.
 *
 * Caps (whatever input can grow): SHAREDKEY_STRING_TO_SIGN_MAX bytes of output, and as many
 * bytes of x-ms-* header names and values (no count: a Set Metadata carries up to 3,081 pairs
 * within the service's 8 KiB), SHAREDKEY_QUERY_PARAMS_MAX query parameters.
 *
 * Headers are read through callbacks so that both a libcurl request under construction and a
 * libmicrohttpd connection can be signed/verified without copying. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHAREDKEY_QUERY_PARAMS_MAX 64
#define SHAREDKEY_STRING_TO_SIGN_MAX (64u * 1024u)

typedef struct SharedKeyRequest {
        const char *method;       /* "GET", "PUT", ... */
        const char *account;      /* account name */
        const char *encoded_path; /* path as sent, starts with '/', no query (appended as is) */
        const char *raw_query;    /* query as sent, without '?', percent-encoded; NULL or "" */
        /* Case-insensitive header lookup; NULL when absent. */
        const char *(*get_header)(void *userdata, const char *name);
        /* Calls cb(cbdata, name, value) for every header; stops when cb returns non-zero. */
        int (*foreach_header)(
                void *userdata,
                int (*cb)(void *cbdata, const char *name, const char *value),
                void *cbdata);
        void *userdata;
} SharedKeyRequest;

typedef enum SharedKeyScheme {
        SHARED_KEY,
        SHARED_KEY_LITE,
} SharedKeyScheme;

/* Builds the string-to-sign. Returns 0 and a NUL-terminated string (caller frees), -EINVAL for a
 * malformed query (bad percent-escape), -E2BIG beyond the caps. */
int sharedkey_string_to_sign(const SharedKeyRequest *req, SharedKeyScheme scheme, char **ret);

/* base64(HMAC-SHA256(key, string_to_sign)). Caller frees *ret. */
int sharedkey_sign(const uint8_t *key, size_t key_size, const char *string_to_sign, char **ret);

/* "SharedKey ACCOUNT:SIGNATURE" for req. Caller frees *ret. */
int sharedkey_authorization(
        const SharedKeyRequest *req,
        SharedKeyScheme scheme,
        const uint8_t *key,
        size_t key_size,
        char **ret);

/* Constant-time comparison of two signatures (base64 text). */
bool sharedkey_signature_equal(const char *a, const char *b);
