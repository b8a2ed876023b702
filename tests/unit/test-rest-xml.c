/* SPDX-License-Identifier: MIT */
/* Pure parts of the File REST client: listing, error and stats XML (streamed in pieces, with a
 * BOM, encoded names, malformed input), response headers into properties, SMB attributes, path
 * encoding, and the managed identity token JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <check.h>

#include "imds-client.h"
#include "rest-client.h"
#include "rest-props.h"
#include "rest-xml.h"
#include "time-util.h"

#define BOM "\xEF\xBB\xBF"

static const char list_doc[] =
        BOM "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
            "<EnumerationResults ServiceEndpoint=\"http://x/\" ShareName=\"s\" DirectoryPath=\"d\">"
            "<MaxResults>3</MaxResults><DirectoryId>13835128424026341376</DirectoryId><Entries>"
            "<File><Name>file0</Name><FileId>11529285414812647424</FileId><Properties>"
            "<Content-Length>1024</Content-Length>"
            "<CreationTime>2022-08-15T09:06:15.5256367Z</CreationTime>"
            "<LastAccessTime>2022-08-15T09:06:15.5256367Z</LastAccessTime>"
            "<LastWriteTime>2022-08-15T09:06:16.0000000Z</LastWriteTime>"
            "<ChangeTime>2022-08-15T09:06:17Z</ChangeTime>"
            "<Last-Modified>Mon, 15 Aug 2022 09:06:15 GMT</Last-Modified>"
            "<Etag>\"0x8DA7E9D68565E0D\"</Etag></Properties>"
            "<Attributes>Archive | ReadOnly</Attributes><PermissionKey>1*2</PermissionKey></File>"
            "<Directory><Name>sub dir &amp; more</Name><FileId>7</FileId><Properties />"
            "<Attributes>Directory</Attributes></Directory>"
            "<File><Name Encoded=\"true\">a%EF%BF%BFb</Name><Properties>"
            "<Content-Length>0</Content-Length></Properties></File>"
            "</Entries><NextMarker>1!8!ZmlsZTI-</NextMarker></EnumerationResults>";

static void check_list_page(RestListPage *p) {
        ck_assert_uint_eq(p->n_entries, 3);
        ck_assert(p->has_directory_id);
        ck_assert_uint_eq(p->directory_id, UINT64_C(13835128424026341376));
        ck_assert_str_eq(p->next_marker, "1!8!ZmlsZTI-");

        ck_assert_str_eq(p->entries[0].name, "file0");
        ck_assert(!p->entries[0].is_directory);
        ck_assert_uint_eq(p->entries[0].file_id, UINT64_C(11529285414812647424));
        ck_assert_uint_eq(p->entries[0].content_length, 1024);
        ck_assert_int_eq(p->entries[0].creation_ns, INT64_C(1660554375525636700));
        ck_assert_int_eq(p->entries[0].change_ns, INT64_C(1660554377000000000));
        ck_assert_int_eq(p->entries[0].last_modified_ns, INT64_C(1660554375000000000));
        ck_assert_str_eq(p->entries[0].etag, "\"0x8DA7E9D68565E0D\"");
        ck_assert_uint_eq(p->entries[0].attributes, REST_ATTR_ARCHIVE | REST_ATTR_READ_ONLY);
        ck_assert_str_eq(p->entries[0].permission_key, "1*2");

        ck_assert_str_eq(p->entries[1].name, "sub dir & more");
        ck_assert(p->entries[1].is_directory);
        ck_assert_uint_eq(p->entries[1].file_id, 7);
        ck_assert(!p->entries[1].has_content_length);

        ck_assert_str_eq(
                p->entries[2].name, "a\xEF\xBF\xBF"
                                    "b");
        ck_assert(!p->entries[2].has_file_id);
}

START_TEST(test_list_whole) {
        RestListPage *p = NULL;
        ck_assert_int_eq(rest_xml_parse_list(list_doc, strlen(list_doc), &p), 0);
        check_list_page(p);
        rest_list_page_free(p);
}
END_TEST

START_TEST(test_list_streamed_byte_by_byte) {
        RestListParser *parser = NULL;
        RestListPage *p = NULL;
        ck_assert_int_eq(rest_list_parser_new(&parser), 0);
        for (size_t i = 0; i < strlen(list_doc); i++)
                ck_assert_int_eq(rest_list_parser_feed(parser, list_doc + i, 1), 0);
        ck_assert_int_eq(rest_list_parser_finish(parser, &p), 0);
        rest_list_parser_free(parser);
        check_list_page(p);
        rest_list_page_free(p);
}
END_TEST

START_TEST(test_list_last_page_and_empty) {
        static const char doc[] =
                BOM "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                    "<EnumerationResults><Entries /><NextMarker /></EnumerationResults>";
        RestListPage *p = NULL;
        ck_assert_int_eq(rest_xml_parse_list(doc, strlen(doc), &p), 0);
        ck_assert_uint_eq(p->n_entries, 0);
        ck_assert_ptr_null(p->next_marker);
        rest_list_page_free(p);
}
END_TEST

START_TEST(test_list_malformed) {
        static const char *const bad[] = {
                "",
                "garbage",
                BOM,
                "<Error><Code>X</Code></Error>",
                "<EnumerationResults><Entries><File><Name>a</Name>", /* truncated */
                "<EnumerationResults><Entries><File></File></Entries></EnumerationResults>", /* no
                                                                                                name
                                                                                              */
                "<EnumerationResults><Entries><File><Name>a</Name><FileId>-1</FileId></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name>a</Name><FileId>99999999999999999999999"
                "</FileId></File></Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name>a</Name><Properties><Content-Length>1x"
                "</Content-Length></Properties></File></Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name>a</Name><Properties><Content-Length>"
                "72057594037927936</Content-Length></Properties></File></Entries>"
                "</EnumerationResults>", /* 2^56: above the share's file size limit */
                "<EnumerationResults><Entries><File><Name>a</Name><Properties><CreationTime>yesterday"
                "</CreationTime></Properties></File></Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name Encoded=\"true\">%zz</Name></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name Encoded=\"true\">a%00b</Name></File>"
                "</Entries></EnumerationResults>",
                /* names no share holds: a path, or the directory itself or its parent */
                "<EnumerationResults><Entries><File><Name>a/b</Name></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name>/</Name></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><Directory><Name>.</Name></Directory>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><Directory><Name>..</Name></Directory>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name Encoded=\"true\">a%2Fb</Name></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><Directory><Name Encoded=\"true\">%2E%2e</Name>"
                "</Directory></Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name Encoded=\"true\">%2E</Name></File>"
                "</Entries></EnumerationResults>",
                "<EnumerationResults><Entries><File><Name>a</Name><Attributes>Bogus</Attributes>"
                "</File></Entries></EnumerationResults>",
                "<EnumerationResults></Wrong>",
                "<EnumerationResults><!ENTITY x 'y'></EnumerationResults>",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                RestListPage *p = NULL;
                int r = rest_xml_parse_list(bad[i], strlen(bad[i]), &p);
                ck_assert_msg(r == -EBADMSG, "case %zu: %d", i, r);
                ck_assert_ptr_null(p);
        }
}
END_TEST

START_TEST(test_list_dot_names) {
        /* Only "." and ".." are refused (test_list_malformed), not names with dots. */
        static const char doc[] =
                "<EnumerationResults><Entries><File><Name>.bashrc</Name></File>"
                "<Directory><Name Encoded=\"true\">..a</Name></Directory></Entries>"
                "</EnumerationResults>";
        RestListPage *p = NULL;

        ck_assert_int_eq(rest_xml_parse_list(doc, strlen(doc), &p), 0);
        ck_assert_uint_eq(p->n_entries, 2);
        ck_assert_str_eq(p->entries[0].name, ".bashrc");
        ck_assert_str_eq(p->entries[1].name, "..a");
        rest_list_page_free(p);
}
END_TEST

START_TEST(test_list_caps) {
        /* Nested too deep, a name longer than the text cap, more entries than a page holds. */
        char *doc;
        size_t n = 0, alloc = 16 * 1024 * 1024;
        RestListPage *p = NULL;

        doc = malloc(alloc);
        n += (size_t)snprintf(doc, alloc, "<EnumerationResults>");
        for (int i = 0; i < 40; i++)
                n += (size_t)snprintf(doc + n, alloc - n, "<a>");
        ck_assert_int_eq(rest_xml_parse_list(doc, n, &p), -E2BIG);

        n = (size_t)snprintf(doc, alloc, "<EnumerationResults><Entries><File><Name>");
        memset(doc + n, 'x', 10000);
        n += 10000;
        n += (size_t)snprintf(doc + n, alloc - n, "</Name></File></Entries></EnumerationResults>");
        ck_assert_int_eq(rest_xml_parse_list(doc, n, &p), -E2BIG);

        n = (size_t)snprintf(doc, alloc, "<EnumerationResults><Entries>");
        for (int i = 0; i < REST_LIST_ENTRIES_MAX + 1; i++)
                n += (size_t)snprintf(doc + n, alloc - n, "<File><Name>f%d</Name></File>", i);
        n += (size_t)snprintf(doc + n, alloc - n, "</Entries></EnumerationResults>");
        ck_assert_int_eq(rest_xml_parse_list(doc, n, &p), -E2BIG);
        ck_assert_ptr_null(p);
        free(doc);
}
END_TEST

START_TEST(test_error_doc) {
        static const char doc[] =
                BOM "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error>"
                    "<Code>ResourceNotFound</Code><Message>The specified resource "
                    "does not exist.\nRequestId:1\nTime:2</Message></Error>";
        static const char extra[] = "<Error><Code>MissingRequiredHeader</Code><Message>m</Message>"
                                    "<HeaderName>x-ms-file-request-intent</HeaderName></Error>";
        char *code = NULL, *msg = NULL;

        ck_assert_int_eq(rest_xml_parse_error(doc, strlen(doc), &code, &msg), 0);
        ck_assert_str_eq(code, "ResourceNotFound");
        ck_assert_ptr_nonnull(strstr(msg, "RequestId:1"));
        free(code);
        free(msg);
        ck_assert_int_eq(rest_xml_parse_error(extra, strlen(extra), &code, NULL), 0);
        ck_assert_str_eq(code, "MissingRequiredHeader");
        free(code);

        ck_assert_int_eq(rest_xml_parse_error("<html>oops</html>", 17, &code, &msg), -EBADMSG);
        ck_assert_int_eq(rest_xml_parse_error("<Error></Error>", 15, &code, &msg), -EBADMSG);
        ck_assert_int_eq(rest_xml_parse_error("<Error><Code>X", 14, &code, &msg), -EBADMSG);
        ck_assert_int_eq(rest_xml_parse_error("", 0, &code, &msg), -EBADMSG);
}
END_TEST

START_TEST(test_share_stats) {
        static const char doc[] =
                BOM "<?xml version=\"1.0\"?><ShareStats><ShareUsageBytes>1000</ShareUsageBytes>"
                    "</ShareStats>";
        uint64_t u = 0;
        ck_assert_int_eq(rest_xml_parse_share_stats(doc, strlen(doc), &u), 0);
        ck_assert_uint_eq(u, 1000);
        ck_assert_int_eq(rest_xml_parse_share_stats("<ShareStats/>", 13, &u), -EBADMSG);
        ck_assert_int_eq(
                rest_xml_parse_share_stats(
                        "<ShareStats><ShareUsageBytes>-5</ShareUsageBytes></ShareStats>", 62, &u),
                -EBADMSG);
}
END_TEST

/* ---- headers ---------------------------------------------------------------------------- */

typedef struct Hdrs {
        const char *const *kv; /* name, value, ..., NULL */
} Hdrs;

static const char *hdr_get(void *userdata, const char *name) {
        const Hdrs *h = userdata;
        for (size_t i = 0; h->kv[i]; i += 2)
                if (strcasecmp(h->kv[i], name) == 0)
                        return h->kv[i + 1];
        return NULL;
}

static int hdr_foreach(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        const Hdrs *h = userdata;
        for (size_t i = 0; h->kv[i]; i += 2) {
                int r = cb(cbdata, h->kv[i], h->kv[i + 1]);
                if (r != 0)
                        return r;
        }
        return 0;
}

START_TEST(test_properties) {
        static const char *const kv[] = {
                "ETag",
                "\"0x8DA\"",
                "Last-Modified",
                "Mon, 15 Aug 2022 09:06:15 GMT",
                "Content-Length",
                "1024",
                "x-ms-file-id",
                "42",
                "x-ms-file-parent-id",
                "0",
                "x-ms-file-creation-time",
                "2022-08-15T09:06:15.5256367Z",
                "x-ms-file-last-write-time",
                "2022-08-15T09:06:16.0000000Z",
                "x-ms-file-change-time",
                "2022-08-15T09:06:17.0000000Z",
                "x-ms-file-attributes",
                "Archive",
                "x-ms-type",
                "File",
                "x-ms-meta-mode",
                "0755",
                "X-MS-META-uid",
                "1000",
                "x-ms-lease-state",
                "leased",
                "x-ms-request-id",
                "rid",
                NULL};
        Hdrs h = {kv};
        RestProperties p;

        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_str_eq(p.etag, "\"0x8DA\"");
        ck_assert_str_eq(p.request_id, "rid");
        ck_assert_uint_eq(p.content_length, 1024);
        ck_assert_uint_eq(p.file_id, 42);
        ck_assert(p.has_parent_id);
        ck_assert_uint_eq(p.parent_id, 0);
        ck_assert_int_eq(p.creation_ns, INT64_C(1660554375525636700));
        ck_assert_uint_eq(p.attributes, REST_ATTR_ARCHIVE);
        ck_assert(!p.is_directory);
        ck_assert(p.leased);
        ck_assert_str_eq(rest_properties_metadata(&p, "mode"), "0755");
        ck_assert_str_eq(rest_properties_metadata(&p, "UID"), "1000");
        ck_assert_ptr_null(rest_properties_metadata(&p, "gid"));
        rest_properties_done(&p);
        {
                /* A file of the largest size the share holds, 4 TiB. */
                static const char *const max[] = {"x-ms-content-length", "4398046511104", NULL};
                Hdrs hm = {max};
                ck_assert_int_eq(rest_properties_parse(&p, hdr_get, NULL, &hm), 0);
                ck_assert_uint_eq(p.content_length, REST_FILE_SIZE_MAX);
                rest_properties_done(&p);
        }
}
END_TEST

START_TEST(test_properties_times_out_of_range) {
        /* Times the share holds (SMB's run from 1601 to 30828) but int64 nanoseconds cannot: the
         * nearest time that fits, not a malformed reply. */
        static const char *const kv[] = {
                "x-ms-file-creation-time",
                "1601-01-01T00:00:00.0000000Z",
                "x-ms-file-last-write-time",
                "2300-01-01T00:00:00.0000000Z",
                "Last-Modified",
                "Mon, 01 Jan 2300 00:00:00 GMT",
                NULL};
        static const char doc[] = "<EnumerationResults><Entries><File><Name>f</Name><Properties>"
                                  "<CreationTime>1601-01-01T00:00:00.0000000Z</CreationTime>"
                                  "<LastWriteTime>2300-01-01T00:00:00.0000000Z</LastWriteTime>"
                                  "<Last-Modified>Mon, 01 Jan 2300 00:00:00 GMT</Last-Modified>"
                                  "</Properties></File></Entries></EnumerationResults>";
        Hdrs h = {kv};
        RestProperties p;
        RestListPage *page = NULL;

        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_int_eq(p.creation_ns, TIME_SEC_MIN * NSEC_PER_SEC);
        ck_assert_int_eq(p.last_write_ns, TIME_SEC_MAX * NSEC_PER_SEC);
        ck_assert_int_eq(p.last_modified_ns, TIME_SEC_MAX * NSEC_PER_SEC);
        rest_properties_done(&p);

        ck_assert_int_eq(rest_xml_parse_list(doc, strlen(doc), &page), 0);
        ck_assert_int_eq(page->entries[0].creation_ns, TIME_SEC_MIN * NSEC_PER_SEC);
        ck_assert_int_eq(page->entries[0].last_write_ns, TIME_SEC_MAX * NSEC_PER_SEC);
        ck_assert_int_eq(page->entries[0].last_modified_ns, TIME_SEC_MAX * NSEC_PER_SEC);
        rest_list_page_free(page);
}
END_TEST

START_TEST(test_properties_metadata_caps) {
        /* Any number of pairs within the service's 8 KiB (other tools set many): all kept, in
         * order. Past it (a server over the limit) the rest is left out and marked so, and
         * "mode" is kept wherever it comes. */
        static char names[600][16], big[3][3001];
        const char *kv[2 * 600 + 5];
        size_t n = 0;
        Hdrs h = {kv};
        RestProperties p;

        for (size_t i = 0; i < 600; i++) {
                snprintf(names[i], sizeof(names[i]), "x-ms-meta-k%zu", i);
                kv[n++] = names[i];
                kv[n++] = "v";
        }
        kv[n++] = "X-MS-META-Mode";
        kv[n++] = "0640";
        kv[n] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_uint_eq(p.n_metadata, 601);
        ck_assert(!p.metadata_incomplete);
        ck_assert_str_eq(rest_properties_metadata(&p, "mode"), "0640");
        for (size_t i = 0; i < 600; i++) {
                ck_assert_str_eq(p.metadata[i].name, names[i] + 10);
                ck_assert_str_eq(p.metadata[i].value, "v");
        }
        rest_properties_done(&p);

        n = 0;
        for (size_t i = 0; i < 3; i++) {
                memset(big[i], 'a' + (int)i, sizeof(big[i]) - 1);
                big[i][sizeof(big[i]) - 1] = '\0';
                kv[n++] = names[i];
                kv[n++] = big[i];
        }
        kv[n++] = "x-ms-meta-mode";
        kv[n++] = "0600";
        kv[n++] = "x-ms-meta-small";
        kv[n++] = "1";
        kv[n] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_str_eq(rest_properties_metadata(&p, "mode"), "0600");
        ck_assert_ptr_nonnull(rest_properties_metadata(&p, "k1"));
        ck_assert_ptr_null(rest_properties_metadata(&p, "k2")); /* 9 KB: over 8 KiB */
        ck_assert_str_eq(rest_properties_metadata(&p, "small"), "1");
        ck_assert(p.metadata_incomplete);
        rest_properties_done(&p);
}
END_TEST

START_TEST(test_metadata_with) {
        /* What chmod's Set Metadata sends: every other pair, in order, then the new mode; and
         * never a part of them. */
        static char names[600][16], values[600][8], a[4001], b[4189];
        const char *kv[2 * 600 + 3];
        size_t n = 0, got = 0;
        Hdrs h = {kv};
        RestProperties p;
        RestMetadata *m = NULL;

        for (size_t i = 0; i < 600; i++) {
                snprintf(names[i], sizeof(names[i]), "x-ms-meta-K%zu", i);
                snprintf(values[i], sizeof(values[i]), "%zu", i);
                kv[n++] = names[i];
                kv[n++] = values[i];
                if (i == 300) {
                        kv[n++] = "x-ms-meta-MODE";
                        kv[n++] = "0644";
                }
        }
        kv[n] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_int_eq(rest_metadata_with(&p, "mode", "0600", &m, &got), 0);
        ck_assert_uint_eq(got, 601);
        for (size_t i = 0; i < 600; i++) {
                ck_assert_str_eq(m[i].name, names[i] + 10);
                ck_assert_str_eq(m[i].value, values[i]);
        }
        ck_assert_str_eq(m[600].name, "mode");
        ck_assert_str_eq(m[600].value, "0600");
        rest_metadata_free(m, got);
        rest_properties_done(&p);

        /* 8190 bytes of other pairs: all read, but no room for a mode beside them */
        memset(a, 'a', sizeof(a) - 1);
        memset(b, 'b', sizeof(b) - 1);
        kv[0] = "x-ms-meta-a";
        kv[1] = a;
        kv[2] = "x-ms-meta-b";
        kv[3] = b;
        kv[4] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_uint_eq(p.n_metadata, 2);
        ck_assert(!p.metadata_incomplete);
        m = NULL;
        ck_assert_int_eq(rest_metadata_with(&p, "mode", "0600", &m, &got), -E2BIG);
        ck_assert_ptr_null(m);
        rest_properties_done(&p);
        /* 6 bytes less: the mode (8) fits exactly, and replaces the old one */
        b[sizeof(b) - 7] = '\0';
        kv[4] = "x-ms-meta-mode";
        kv[5] = "0755";
        kv[6] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert_int_eq(rest_metadata_with(&p, "mode", "0600", &m, &got), 0);
        ck_assert_uint_eq(got, 3);
        ck_assert_str_eq(m[2].value, "0600");
        rest_metadata_free(m, got);
        rest_properties_done(&p);

        /* Not all of the entry's metadata (a server over the limit): refused, not shortened */
        kv[1] = kv[3] = a;
        kv[4] = "x-ms-meta-c";
        kv[5] = a;
        kv[6] = NULL;
        ck_assert_int_eq(rest_properties_parse(&p, hdr_get, hdr_foreach, &h), 0);
        ck_assert(p.metadata_incomplete);
        m = NULL;
        ck_assert_int_eq(rest_metadata_with(&p, "mode", "0600", &m, &got), -EOVERFLOW);
        ck_assert_ptr_null(m);
        rest_properties_done(&p);
}
END_TEST

START_TEST(test_properties_malformed) {
        static const char *const bad[][3] = {
                {"Content-Length", "-1", NULL},
                {"Content-Length", "18446744073709551616", NULL},
                {"Content-Length", "", NULL},
                {"Content-Length", "12abc", NULL},
                {"Content-Length", "4398046511105", NULL},            /* 4 TiB + 1 */
                {"x-ms-content-length", "72057594037927936", NULL},   /* 2^56 */
                {"x-ms-content-length", "9223372036854775808", NULL}, /* 2^63 */
                {"x-ms-file-id", "0x10", NULL},
                {"x-ms-file-creation-time", "now", NULL},
                {"x-ms-file-last-write-time", "2023-02-29T00:00:00.0000000Z", NULL},
                {"Last-Modified", "yesterday", NULL},
                {"x-ms-file-attributes", "Archive|", NULL},
                {"x-ms-file-attributes", "Weird", NULL},
                {"Content-Range", "bytes 0-1/x", NULL},
                {"Content-Range", "items 0-1/2", NULL},
                {"x-ms-share-quota", "lots", NULL},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                Hdrs h = {bad[i]};
                RestProperties p;
                ck_assert_msg(
                        rest_properties_parse(&p, hdr_get, NULL, &h) == -EBADMSG, "%s: %s",
                        bad[i][0], bad[i][1]);
        }
        {
                char big[300];
                const char *kv[] = {"ETag", big, NULL};
                Hdrs h = {kv};
                RestProperties p;
                memset(big, 'e', sizeof(big) - 1);
                big[sizeof(big) - 1] = '\0';
                ck_assert_int_eq(rest_properties_parse(&p, hdr_get, NULL, &h), -EBADMSG);
        }
}
END_TEST

START_TEST(test_attributes) {
        uint32_t m;
        char buf[256];

        ck_assert_int_eq(rest_attributes_parse("ReadOnly|Hidden|System", &m), 0);
        ck_assert_uint_eq(m, REST_ATTR_READ_ONLY | REST_ATTR_HIDDEN | REST_ATTR_SYSTEM);
        ck_assert_str_eq(rest_attributes_format(m, buf, sizeof(buf)), "ReadOnly|Hidden|System");
        ck_assert_int_eq(rest_attributes_parse(" directory ", &m), 0);
        ck_assert_uint_eq(m, REST_ATTR_DIRECTORY);
        ck_assert_str_eq(rest_attributes_format(0, buf, sizeof(buf)), "None");
        ck_assert_int_eq(rest_attributes_parse("", &m), -EBADMSG);
        ck_assert_int_eq(rest_attributes_parse("|", &m), -EBADMSG);
        ck_assert_int_eq(rest_attributes_parse("Archive||Hidden", &m), -EBADMSG);
}
END_TEST

START_TEST(test_encode_path) {
        char *s = NULL;
        ck_assert_int_eq(rest_encode_path("", &s), 0);
        ck_assert_str_eq(s, "");
        free(s);
        ck_assert_int_eq(rest_encode_path("dir a/f#1%[x]^`", &s), 0);
        ck_assert_str_eq(s, "/dir%20a/f%231%25%5Bx%5D%5E%60");
        free(s);
        ck_assert_int_eq(rest_encode_path("\xE6\x97\xA5/b.txt", &s), 0);
        ck_assert_str_eq(s, "/%E6%97%A5/b.txt");
        free(s);
        ck_assert_int_eq(rest_encode_path("a//b", &s), -EINVAL);
        ck_assert_int_eq(rest_encode_path("/a", &s), -EINVAL);
        ck_assert_int_eq(rest_encode_path("a/", &s), -EINVAL);
        ck_assert_int_eq(rest_encode_path("a/../b", &s), -EINVAL);
        ck_assert_int_eq(rest_encode_path(".", &s), -EINVAL);
        {
                char *longp = malloc(REST_PATH_MAX + 2);
                memset(longp, 'a', REST_PATH_MAX + 1);
                longp[REST_PATH_MAX + 1] = '\0';
                ck_assert_int_eq(rest_encode_path(longp, &s), -EINVAL);
                free(longp);
        }
}
END_TEST

START_TEST(test_idempotency_table) {
        ck_assert(rest_op_is_idempotent(REST_OP_GET_RANGE));
        ck_assert(rest_op_is_idempotent(REST_OP_PUT_RANGE));
        ck_assert(rest_op_is_idempotent(REST_OP_DELETE_FILE));
        ck_assert(!rest_op_is_idempotent(REST_OP_CREATE_DIRECTORY));
        ck_assert(!rest_op_is_idempotent(REST_OP_RENAME));
        ck_assert(!rest_op_is_idempotent(REST_OP_LEASE));
        ck_assert(!rest_op_is_idempotent(_REST_OP_TYPE_MAX));
        for (int t = 0; t < _REST_OP_TYPE_MAX; t++)
                ck_assert_ptr_nonnull(rest_op_type_to_string((RestOpType)t));
}
END_TEST

/* ---- IMDS token JSON ---------------------------------------------------------------------- */

START_TEST(test_imds_token) {
        const int64_t now = 1700000000;
        char *tok = NULL;
        int64_t exp = 0;
        static const char emu[] =
                "{\"access_token\":\"eyJ.a.b\",\"client_id\":\"c\",\"expires_in\":\"86399\","
                "\"expires_on\":\"1700086399\",\"not_before\":\"1699999700\","
                "\"resource\":\"https://storage.azure.com/\",\"token_type\":\"Bearer\"}";
        static const char numbers[] = "{\"access_token\":\"t\",\"expires_on\":1700003600}";
        static const char in_only[] = "{\"access_token\":\"t\",\"expires_in\":3600}\n";

        ck_assert_int_eq(imds_parse_token_response(emu, strlen(emu), now, &tok, &exp), 0);
        ck_assert_str_eq(tok, "eyJ.a.b");
        ck_assert_int_eq(exp, 1700086399);
        free(tok);
        ck_assert_int_eq(imds_parse_token_response(numbers, strlen(numbers), now, &tok, &exp), 0);
        ck_assert_int_eq(exp, 1700003600);
        free(tok);
        ck_assert_int_eq(imds_parse_token_response(in_only, strlen(in_only), now, &tok, &exp), 0);
        ck_assert_int_eq(exp, now + 3600);
        free(tok);
}
END_TEST

START_TEST(test_imds_token_malformed) {
        static const char *const bad[] = {
                "",
                "null",
                "[]",
                "{",
                "{}",
                "{\"access_token\":\"\",\"expires_in\":60}",
                "{\"access_token\":5,\"expires_in\":60}",
                "{\"access_token\":\"t\"}",
                "{\"access_token\":\"t\",\"expires_in\":\"soon\"}",
                "{\"access_token\":\"t\",\"expires_in\":\"-5\"}",
                "{\"access_token\":\"t\",\"expires_in\":\"60x\"}",
                "{\"access_token\":\"t\",\"expires_on\":\"1\"}",                /* past */
                "{\"access_token\":\"t\",\"expires_on\":99999999999999999999}", /* absurd */
                "{\"access_token\":\"t\",\"expires_in\":99999999999}",
                "{\"access_token\":\"a b\",\"expires_in\":60}",
                "{\"access_token\":\"t\",\"expires_in\":60} trailing",
                "<html>Bad gateway</html>",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *tok = NULL;
                int64_t exp;
                ck_assert_msg(
                        imds_parse_token_response(bad[i], strlen(bad[i]), 1700000000, &tok, &exp) ==
                                -EBADMSG,
                        "accepted %s", bad[i]);
                ck_assert_ptr_null(tok);
        }
}
END_TEST

int main(void) {
        Suite *s = suite_create("rest-xml");
        TCase *xml = tcase_create("xml"), *props = tcase_create("properties"),
              *imds = tcase_create("imds");
        SRunner *sr;
        int failed;

        tcase_add_test(xml, test_list_whole);
        tcase_add_test(xml, test_list_streamed_byte_by_byte);
        tcase_add_test(xml, test_list_last_page_and_empty);
        tcase_add_test(xml, test_list_malformed);
        tcase_add_test(xml, test_list_dot_names);
        tcase_add_test(xml, test_list_caps);
        tcase_add_test(xml, test_error_doc);
        tcase_add_test(xml, test_share_stats);
        tcase_add_test(props, test_properties);
        tcase_add_test(props, test_properties_times_out_of_range);
        tcase_add_test(props, test_properties_metadata_caps);
        tcase_add_test(props, test_metadata_with);
        tcase_add_test(props, test_properties_malformed);
        tcase_add_test(props, test_attributes);
        tcase_add_test(props, test_encode_path);
        tcase_add_test(props, test_idempotency_table);
        tcase_add_test(imds, test_imds_token);
        tcase_add_test(imds, test_imds_token_malformed);
        suite_add_tcase(s, xml);
        suite_add_tcase(s, props);
        suite_add_tcase(s, imds);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
