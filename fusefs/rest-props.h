/* SPDX-License-Identifier: MIT */
#pragma once

/* Properties of a share, directory or file as the File REST API reports them in response headers,
 * parsed strictly (a present but malformed header is an error, -EBADMSG, never a guess), and the
 * SMB attribute set. Pure. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REST_ETAG_MAX 128
#define REST_REQUEST_ID_MAX 128
/* The service's limit for all of an entry's metadata: names (without "x-ms-meta-") and values.
 * No count: that is up to 3,081 pairs (names of one to three characters, empty values). */
#define REST_METADATA_BYTES_MAX 8192
#define REST_FILE_SIZE_MAX (UINT64_C(4) << 40) /* 4 TiB */

typedef enum RestAttribute {
        REST_ATTR_READ_ONLY = 1u << 0,
        REST_ATTR_HIDDEN = 1u << 1,
        REST_ATTR_SYSTEM = 1u << 2,
        REST_ATTR_NONE = 1u << 3,
        REST_ATTR_DIRECTORY = 1u << 4,
        REST_ATTR_ARCHIVE = 1u << 5,
        REST_ATTR_TEMPORARY = 1u << 6,
        REST_ATTR_OFFLINE = 1u << 7,
        REST_ATTR_NOT_CONTENT_INDEXED = 1u << 8,
        REST_ATTR_NO_SCRUB_DATA = 1u << 9,
} RestAttribute;

/* "ReadOnly | Archive" (case-insensitive, spaces allowed) to a mask; -EBADMSG for unknown names. */
int rest_attributes_parse(const char *s, uint32_t *ret);
/* The mask as the service spells it ("ReadOnly|Archive"; "None" for 0). Returns buf. */
char *rest_attributes_format(uint32_t mask, char *buf, size_t size);

typedef struct RestMetadata {
        char *name; /* without "x-ms-meta-", lower-case as received */
        char *value;
} RestMetadata;

typedef struct RestProperties {
        char etag[REST_ETAG_MAX]; /* with its quotes, as sent; "" when absent */
        char request_id[REST_REQUEST_ID_MAX];
        int64_t last_modified_ns; /* 0 when absent */
        bool has_content_length;
        uint64_t content_length; /* file size (x-ms-content-length wins for range lists) */
        bool has_range_total;
        uint64_t range_total; /* from Content-Range "bytes S-E/TOTAL" or "bytes * /TOTAL" */
        bool has_file_id, has_parent_id;
        uint64_t file_id, parent_id;
        int64_t creation_ns, last_write_ns, change_ns; /* 0 when absent */
        bool has_attributes;
        uint32_t attributes;
        bool is_directory; /* x-ms-type: Directory, or the Directory attribute */
        bool leased;       /* x-ms-lease-state: leased */
        char *lease_id;    /* x-ms-lease-id from lease operations */
        bool has_share_quota;
        uint64_t share_quota_gib;
        RestMetadata *metadata; /* every x-ms-meta-* pair, in the order received */
        size_t n_metadata, n_metadata_alloc;
        /* Pairs past REST_METADATA_BYTES_MAX were left out (a server over the service's limit):
         * what is here is not all of the entry's metadata, and must not be written back as such. */
        bool metadata_incomplete;
} RestProperties;

void rest_properties_done(RestProperties *p);
/* Value of x-ms-meta-NAME (case-insensitive) or NULL. */
const char *rest_properties_metadata(const RestProperties *p, const char *name);

/* What a Set Metadata (which replaces all of an entry's metadata) must send to set name to value
 * and keep every other pair: p's pairs but name (case-insensitive), in order, then name=value;
 * copies, the caller frees them with rest_metadata_free(). Never a part of them: -EOVERFLOW when
 * p does not hold all of the entry's metadata (metadata_incomplete), -E2BIG when the pairs would
 * pass REST_METADATA_BYTES_MAX; -ENOMEM. */
int rest_metadata_with(
        const RestProperties *p,
        const char *name,
        const char *value,
        RestMetadata **ret,
        size_t *ret_n);
void rest_metadata_free(RestMetadata *m, size_t n);

/* Fills p (zeroed first) from response headers. get(userdata, name) returns the first value of
 * a header, case-insensitively, or NULL; foreach lists all of them (for x-ms-meta-*).
 * -EBADMSG for a malformed value. Metadata past REST_METADATA_BYTES_MAX is left out and
 * metadata_incomplete set, except x-ms-meta-mode, which is always kept. */
int rest_properties_parse(
        RestProperties *p,
        const char *(*get)(void *userdata, const char *name),
        int (*foreach)(
                void *userdata,
                int (*cb)(void *cbdata, const char *name, const char *value),
                void *cbdata),
        void *userdata);

/* Strict decimal: digits only, no sign, no overflow; -EBADMSG otherwise. */
int rest_parse_u64(const char *s, uint64_t *ret);
/* An ISO 8601 (iso) or RFC 1123 time; -EBADMSG if malformed. One that int64 nanoseconds cannot
 * hold (before 1677, after 2262; SMB times run from 1601 to 30828) is taken as the nearest that
 * fits, so that such a file stays usable. */
int rest_parse_time(const char *s, bool iso, int64_t *ret);
/* A file size: as rest_parse_u64, and -EBADMSG above REST_FILE_SIZE_MAX, which no file of a share
 * exceeds (larger ones would turn negative as off_t, or size per-piece state to GiBs). */
int rest_parse_file_size(const char *s, uint64_t *ret);
