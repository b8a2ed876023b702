/* SPDX-License-Identifier: MIT */
#pragma once

/* The File REST operations azfilesfs needs: builds, signs and sends them on a borrowed
 * HttpClient, retries what is safe to retry, and parses the answers.
 *
 * Threads: rest_client_submit() and rest_client_cancel() are thread-safe (FUSE workers call them:
 * the op is deep-copied, so the caller's strings may die when submit returns; the call is posted
 * to the loop through an eventfd). Everything else, and every RestDoneFn, runs on the loop
 * thread. Each submitted call gets its callback exactly once, never from inside submit/cancel.
 *
 * Paths are share-relative, decoded UTF-8, '/'-separated, without a leading '/': "" is the share
 * root, "dir/sub/file.txt" a file. Each segment is percent-encoded (everything but A-Z a-z 0-9
 * - . _ ~), and the encoded path is what Shared Key signs.
 *
 * Retries (see rest-client.c for the table): exponential backoff with full jitter between
 * base/2·2^n and base·2^n (capped), Retry-After / x-ms-retry-after-ms / retry-after-ms honoured,
 * at most max_attempts tries and never past retry_budget_ms from the first try; then the last
 * failure's errno. Idempotent ops retry on every transient failure (408, 429, 5xx, connection
 * errors and timeouts); the others (create directory, rename, lease) only on failures that
 * prove the request was not executed (503, 429, connection refused, host unreachable). */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rest-props.h"
#include "rest-xml.h"

typedef struct HttpClient HttpClient;
typedef struct ImdsClient ImdsClient;
typedef struct sd_event sd_event;
typedef struct RestClient RestClient;

#define REST_DEFAULT_VERSION "2025-05-05"
#define REST_PUT_RANGE_MAX (4u * 1024u * 1024u)
#define REST_PATH_MAX 2048
#define REST_CALLS_MAX 8192 /* calls submitted and not yet completed */

typedef enum RestAuthKind {
        REST_AUTH_SHARED_KEY,
        REST_AUTH_SAS,
        REST_AUTH_BEARER, /* managed identity; adds x-ms-file-request-intent: backup */
        _REST_AUTH_KIND_MAX,
        _REST_AUTH_KIND_INVALID = -EINVAL,
} RestAuthKind;

typedef struct RestClientConfig {
        /* Everything before the share: "https://acct.file.core.windows.net" or, path-style,
         * "http://127.0.0.1:10000/acct". No trailing '/'. */
        const char *endpoint;
        const char *account;
        const char *share;
        const char *version; /* NULL: REST_DEFAULT_VERSION */
        RestAuthKind auth;
        const uint8_t *key; /* SHARED_KEY: the decoded account key (copied) */
        size_t key_size;
        const char *sas_token;       /* SAS: "sv=...&sig=..." (a leading '?' is dropped) */
        ImdsClient *imds;            /* BEARER: borrowed, must outlive the RestClient */
        uint64_t meta_timeout_ms;    /* per attempt, non-data ops; 0: 30 s */
        uint64_t data_timeout_ms;    /* per attempt, Get/Put Range; 0: 120 s */
        uint64_t connect_timeout_ms; /* 0: 10 s */
        uint32_t low_speed_bytes;    /* abort slower than this per second ... 0: 1024 */
        uint32_t low_speed_s;        /* ... for this long; 0: 30 */
        unsigned max_attempts;       /* 0: 6 */
        uint64_t retry_base_ms;      /* 0: 400 */
        uint64_t retry_max_delay_ms; /* 0: 20 s */
        uint64_t retry_budget_ms;    /* from the first try; 0: 90 s */
} RestClientConfig;

typedef enum RestOpType {
        REST_OP_GET_SHARE_PROPERTIES,
        REST_OP_GET_SHARE_STATS,
        REST_OP_CREATE_DIRECTORY,
        REST_OP_DELETE_DIRECTORY,
        REST_OP_GET_DIRECTORY_PROPERTIES,
        REST_OP_LIST_DIRECTORY,
        REST_OP_CREATE_FILE,
        REST_OP_PUT_RANGE,
        REST_OP_CLEAR_RANGE,
        REST_OP_GET_RANGE,
        REST_OP_GET_FILE_PROPERTIES,
        REST_OP_SET_FILE_PROPERTIES,
        REST_OP_SET_METADATA,
        REST_OP_DELETE_FILE,
        REST_OP_RENAME,
        REST_OP_LEASE,
        _REST_OP_TYPE_MAX,
        _REST_OP_TYPE_INVALID = -EINVAL,
} RestOpType;

typedef enum RestLeaseAction {
        REST_LEASE_ACQUIRE,
        REST_LEASE_CHANGE,
        REST_LEASE_RELEASE,
        REST_LEASE_BREAK,
        _REST_LEASE_ACTION_MAX,
        _REST_LEASE_ACTION_INVALID = -EINVAL,
} RestLeaseAction;

/* SMB times: 0 leaves the service's default ("now" on create, "preserve" on set). */
typedef struct RestSmbProps {
        int64_t creation_ns;
        int64_t last_write_ns;
        int64_t change_ns;
        uint32_t attributes; /* 0: default */
} RestSmbProps;

/* Borrowed for the duration of rest_client_submit() only. */
typedef struct RestOp {
        RestOpType type;
        const char *path;
        bool is_directory; /* SET_METADATA, RENAME */
        /* LIST_DIRECTORY: one page per call; marker NULL for the first. */
        const char *marker;
        const char *prefix;
        unsigned max_results; /* 0: the service's default (5000) */
        /* CREATE_FILE: size to reserve; SET_FILE_PROPERTIES: resize when set_size. */
        bool set_size;
        uint64_t size;
        /* PUT_RANGE / CLEAR_RANGE / GET_RANGE: [offset, offset+length). PUT_RANGE sends length
         * bytes from fd at fd_offset, or from data when fd < 0 (copied). GET_RANGE writes into fd
         * at fd_offset (fd borrowed: keep it open until the callback). */
        uint64_t offset;
        uint64_t length;
        int fd;
        uint64_t fd_offset;
        const void *data;
        /* PUT_RANGE: keep the file's last-write time (x-ms-file-last-write-time: preserve) */
        bool preserve_last_write;
        /* CREATE_*, SET_FILE_PROPERTIES */
        RestSmbProps smb;
        /* CREATE_*, SET_METADATA (replaces all metadata): names C identifiers, at most
         * REST_METADATA_BYTES_MAX bytes of names and values in all (more: -E2BIG) */
        const RestMetadata *metadata;
        size_t n_metadata;
        /* RENAME: source path; destination is path */
        const char *source_path;
        bool replace_if_exists;
        /* LEASE; lease_id also goes on writes/deletes of a leased file */
        RestLeaseAction lease_action;
        const char *lease_id;
        const char *proposed_lease_id;
} RestOp;

/* Valid only during the callback; a caller may take result->page (set it to NULL). */
typedef struct RestResult {
        uint64_t id;
        RestOpType type;
        int error;                 /* 0 or a negative errno */
        long status;               /* of the last answer, 0 when none came */
        const char *error_code;    /* x-ms-error-code (or the XML Code), else NULL */
        const char *error_message; /* from the XML body, else NULL */
        const char *request_id;    /* x-ms-request-id of the last answer, else NULL */
        const char *client_request_id;
        unsigned attempts;
        const RestProperties *props; /* of a successful answer (zeroed otherwise) */
        RestListPage *page;          /* LIST_DIRECTORY */
        uint64_t share_usage_bytes;  /* GET_SHARE_STATS */
        uint64_t bytes;              /* GET_RANGE: bytes written to fd */
        bool eof;                    /* GET_RANGE: offset at or past the end (416): 0 bytes */
} RestResult;

typedef void (*RestDoneFn)(RestResult *result, void *userdata);

int rest_client_new(
        sd_event *event, HttpClient *http, const RestClientConfig *config, RestClient **ret);
/* Loop thread. Outstanding calls complete with -ECANCELED. NULL-safe. */
RestClient *rest_client_free(RestClient *rc);
static inline void rest_client_freep(RestClient **rc) {
        *rc = rest_client_free(*rc);
}

/* Thread-safe. 0 (and *ret_id) or -EINVAL (bad op: path too long, range over 4 MiB, ...),
 * -E2BIG (metadata over REST_METADATA_BYTES_MAX), -EAGAIN (REST_CALLS_MAX reached), -ENOMEM. */
int rest_client_submit(
        RestClient *rc, const RestOp *op, RestDoneFn cb, void *userdata, uint64_t *ret_id);
/* Thread-safe; the callback then runs with -ECANCELED unless it already ran. */
int rest_client_cancel(RestClient *rc, uint64_t id);

const char *rest_op_type_to_string(RestOpType t);
/* Whether repeating the op after an unclear failure gives the same end state. */
bool rest_op_is_idempotent(RestOpType t);

/* Percent-encodes a share-relative path segment by segment. -EINVAL for empty segments ("a//b"),
 * "." or "..", or a path over REST_PATH_MAX. Pure. */
int rest_encode_path(const char *path, char **ret);
