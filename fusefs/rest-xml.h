/* SPDX-License-Identifier: MIT */
#pragma once

/* XML bodies of the File REST API, parsed with expat as they stream in: directory listings
 * (EnumerationResults), error documents (Error/Code/Message) and share stats. A leading UTF-8 BOM
 * is fine. Anything malformed (not XML, wrong root, bad numbers or times, a Name that does not
 * decode or that no share holds: empty, ".", ".." or with a '/', more than the caps) is -EBADMSG
 * (or -E2BIG for caps), never a crash. Pure. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REST_LIST_ENTRIES_MAX 5000 /* the service's maxresults limit */
#define REST_XML_TEXT_MAX 4096     /* any one element's text */
#define REST_XML_DEPTH_MAX 16

typedef struct RestListEntry {
        char *name; /* decoded (Encoded="true" names are percent-decoded) */
        bool is_directory;
        bool has_file_id;
        uint64_t file_id;
        bool has_content_length;
        uint64_t content_length;
        int64_t creation_ns, last_access_ns, last_write_ns, change_ns, last_modified_ns; /* 0: - */
        char *etag; /* NULL when not included */
        bool has_attributes;
        uint32_t attributes;
        char *permission_key;
} RestListEntry;

typedef struct RestListPage {
        RestListEntry *entries;
        size_t n_entries;
        char *next_marker; /* NULL on the last page (empty NextMarker) */
        bool has_directory_id;
        uint64_t directory_id;
} RestListPage;

RestListPage *rest_list_page_free(RestListPage *p);
static inline void rest_list_page_freep(RestListPage **p) {
        *p = rest_list_page_free(*p);
}

typedef struct RestListParser RestListParser;
int rest_list_parser_new(RestListParser **ret);
RestListParser *rest_list_parser_free(RestListParser *p);
static inline void rest_list_parser_freep(RestListParser **p) {
        *p = rest_list_parser_free(*p);
}
/* Feed chunks as they arrive; the first error sticks. */
int rest_list_parser_feed(RestListParser *p, const void *data, size_t size);
/* Ends the document and hands the page out (caller frees). */
int rest_list_parser_finish(RestListParser *p, RestListPage **ret);
/* Whole body at once. */
int rest_xml_parse_list(const void *data, size_t size, RestListPage **ret);

/* <Error><Code>..</Code><Message>..</Message>...</Error>. Either out pointer may be NULL. */
int rest_xml_parse_error(const void *data, size_t size, char **ret_code, char **ret_message);

/* <ShareStats><ShareUsageBytes>N</ShareUsageBytes></ShareStats>. */
int rest_xml_parse_share_stats(const void *data, size_t size, uint64_t *ret_usage_bytes);
