/* SPDX-License-Identifier: MIT */
/* List Directories and Files.
 *
 * Element names and order follow the recordings: <EnumerationResults ServiceEndpoint ShareName
 * DirectoryPath> <Prefix> <Marker> <MaxResults> <DirectoryId> <Entries> (<File>|<Directory>:
 * <Name> <FileId> <Properties> <Attributes> <PermissionKey>) <NextMarker>. <DirectoryId> and
 * <FileId> come with x-ms-file-extended-info: true. The prefix matches case-insensitively.
 * Names that are not valid XML text are sent as <Name Encoded="true"> with the percent-encoded
 * UTF-8; the service does so from 2021-12-02, and older versions get the same (a parseable answer
 * rather than a broken document). Markers are "2!" + hex of the next folded name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu-files-common.h"
#include "emu-names.h"
#include "emu-store.h"
#include "emu-xml.h"
#include "time-util.h"

#define LIST_MAX 5000

enum {
        INCLUDE_TIMESTAMPS = 1 << 0,
        INCLUDE_ETAG = 1 << 1,
        INCLUDE_ATTRIBUTES = 1 << 2,
        INCLUDE_PERMISSION_KEY = 1 << 3,
};

static int parse_include(const char *s, unsigned *ret) {
        static const char *const names[] = {"Timestamps", "Etag", "Attributes", "PermissionKey"};
        unsigned v = 0;
        const char *p = s;

        while (*p) {
                size_t len = strcspn(p, ",");
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        if (strlen(names[i]) == len && strncasecmp(p, names[i], len) == 0) {
                                v |= 1u << i;
                                found = true;
                        }
                if (!found)
                        return -EINVAL;
                p += len;
                if (*p == ',')
                        p++;
        }
        *ret = v;
        return 0;
}

static void name_element(EmuXml *x, const char *name) {
        _cleanup_free_ char *encoded = NULL;

        if (emu_xml_text_is_valid(name) || emu_name_percent_encode(name, &encoded) < 0) {
                emu_xml_element(x, "Name", name);
                return;
        }
        emu_xml_element_attrs(x, "Name", (const char *const[]){"Encoded", "true", NULL}, encoded);
}

static void entry_element(EmuXml *x, const EmuEntry *e, unsigned include, bool extended) {
        const char *tag = e->is_dir ? "Directory" : "File";
        char buf[ISO8601_MAX > RFC1123_MAX ? ISO8601_MAX : RFC1123_MAX];
        char attrs[EMU_ATTRIBUTES_MAX];

        emu_xml_open(x, tag);
        name_element(x, e->name);
        if (extended)
                emu_xml_elementf(x, "FileId", "%llu", (unsigned long long)e->id);
        if (e->is_dir && !(include & (INCLUDE_TIMESTAMPS | INCLUDE_ETAG)))
                emu_xml_empty(x, "Properties");
        else {
                emu_xml_open(x, "Properties");
                if (!e->is_dir)
                        emu_xml_elementf(x, "Content-Length", "%llu", (unsigned long long)e->size);
                if (include & INCLUDE_TIMESTAMPS) {
                        emu_xml_element(x, "CreationTime", format_iso8601(buf, e->creation_ns));
                        emu_xml_element(x, "LastAccessTime", format_iso8601(buf, e->last_write_ns));
                        emu_xml_element(x, "LastWriteTime", format_iso8601(buf, e->last_write_ns));
                        emu_xml_element(x, "ChangeTime", format_iso8601(buf, e->change_ns));
                        emu_xml_element(
                                x, "Last-Modified", format_rfc1123(buf, e->last_modified_ns));
                }
                if (include & INCLUDE_ETAG)
                        emu_xml_elementf(x, "Etag", "\"0x%llX\"", (unsigned long long)e->etag);
                emu_xml_close(x, "Properties");
        }
        if (include & INCLUDE_ATTRIBUTES)
                emu_xml_element(x, "Attributes", emu_attributes_format(attrs, e->attributes));
        if ((include & INCLUDE_PERMISSION_KEY) && e->permission_key)
                emu_xml_element(x, "PermissionKey", e->permission_key);
        emu_xml_close(x, tag);
}

void files_handle_list(FilesCtx *c) {
        EmuRequest *req = c->req;
        const char *prefix = emu_request_query(req, "prefix");
        const char *marker = emu_request_query(req, "marker");
        const char *maxresults = emu_request_query(req, "maxresults");
        const char *include_s = emu_request_query(req, "include");
        const char *ext = emu_request_header(req, "x-ms-file-extended-info");
        bool extended = ext && strcasecmp(ext, "true") == 0;
        _cleanup_(emu_xml_freep) EmuXml *x = NULL;
        _cleanup_free_ char *endpoint = NULL, *dirpath = NULL;
        unsigned include = 0;
        size_t max = LIST_MAX, size, len = 0;
        EmuListPage page = {};
        char *doc;
        int r;

        if (maxresults) {
                char *end;
                long long v;
                errno = 0;
                v = strtoll(maxresults, &end, 10);
                if (errno != 0 || *end != '\0' || end == maxresults || v < 1) {
                        (void)files_reply_invalid_query(req, "maxresults", maxresults);
                        return;
                }
                max = (size_t)MIN(v, (long long)LIST_MAX);
        }
        if (include_s && parse_include(include_s, &include) < 0) {
                (void)files_reply_invalid_query(req, "include", include_s);
                return;
        }
        if (isempty(prefix))
                prefix = NULL;
        if (isempty(marker))
                marker = NULL;
        /* A stale marker is the server's own: not one the store would accept. */
        r = emu_store_list(
                c->store, c->share, c->path, c->n, prefix,
                req->fault == EMU_FAULT_STALE_MARKER ? NULL : marker, max, &page);
        if (r == -EBADMSG) {
                (void)files_reply_invalid_query(req, "marker", marker);
                return;
        }
        if (r == -ENOTDIR || r == -EISDIR)
                r = -ENOENT;
        if (r < 0) {
                (void)files_reply_store_error(c, r);
                return;
        }
        if (req->fault == EMU_FAULT_STALE_MARKER) {
                /* A broken server: no entries, and the marker it was given as the next one. */
                for (size_t i = 0; i < page.n_items; i++)
                        emu_entry_clear(&page.items[i]);
                page.n_items = 0;
                free(page.next_marker);
                page.next_marker = strdup(marker ? marker : "stale");
        }

        for (size_t i = 0; i < c->n; i++)
                len += strlen(c->path[i]) + 1;
        dirpath = calloc(1, len + 1);
        if (asprintf(&endpoint, "%s/", req->emu->files_url ? req->emu->files_url : "") < 0)
                endpoint = NULL;
        x = emu_xml_new();
        if (!dirpath || !endpoint || !x) {
                emu_list_page_clear(&page);
                (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                return;
        }
        for (size_t i = 0, o = 0; i < c->n; i++) {
                size_t l = strlen(c->path[i]);
                if (i > 0)
                        dirpath[o++] = '/';
                memcpy(dirpath + o, c->path[i], l);
                o += l;
        }
        emu_xml_open_attrs(
                x, "EnumerationResults",
                (const char *const[]){
                        "ServiceEndpoint", endpoint, "ShareName", c->share, "DirectoryPath",
                        dirpath, NULL});
        if (prefix)
                emu_xml_element(x, "Prefix", prefix);
        if (marker)
                emu_xml_element(x, "Marker", marker);
        if (maxresults)
                emu_xml_element(x, "MaxResults", maxresults);
        if (extended)
                emu_xml_elementf(x, "DirectoryId", "%llu", (unsigned long long)page.dir.id);
        emu_xml_open(x, "Entries");
        for (size_t i = 0; i < page.n_items; i++)
                entry_element(x, &page.items[i], include, extended);
        emu_xml_close(x, "Entries");
        if (page.next_marker)
                emu_xml_element(x, "NextMarker", page.next_marker);
        else
                emu_xml_empty(x, "NextMarker");
        emu_xml_close(x, "EnumerationResults");
        emu_list_page_clear(&page);
        doc = emu_xml_steal(x, &size);
        if (!doc) {
                (void)emu_reply_error(req, 500, "InternalError", NULL, NULL);
                return;
        }
        (void)emu_reply_body_take(req, 200, "application/xml", doc, size);
}
