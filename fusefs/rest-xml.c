/* SPDX-License-Identifier: MIT */
#include "rest-xml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#include "macro.h"
#include "rest-props.h"
#include "url-util.h"

/* ---- a small element-path tracker shared by the three documents ------------------------- */

typedef struct XmlState {
        XML_Parser parser;
        const char *path[REST_XML_DEPTH_MAX]; /* element names, interned in static tables */
        size_t depth;
        size_t unknown_depth; /* > 0 while inside elements we do not track */
        char text[REST_XML_TEXT_MAX + 1];
        size_t text_len;
        bool text_overflow;
        bool encoded; /* the current element had Encoded="true" */
        int error;
        void (*on_start)(struct XmlState *x, const char *name, const char **attrs);
        void (*on_end)(struct XmlState *x, const char *name);
        void *userdata;
} XmlState;

static void xml_fail(XmlState *x, int error) {
        if (x->error == 0)
                x->error = error;
        (void)XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL xml_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        XmlState *x = userdata;

        if (x->error)
                return;
        if (x->depth >= REST_XML_DEPTH_MAX) {
                xml_fail(x, -E2BIG);
                return;
        }
        x->depth++;
        x->text_len = 0;
        x->text_overflow = false;
        x->encoded = false;
        for (size_t i = 0; attrs && attrs[i]; i += 2)
                if (streq(attrs[i], "Encoded") && attrs[i + 1] && streq(attrs[i + 1], "true"))
                        x->encoded = true;
        x->on_start(x, name, attrs);
}

static void XMLCALL xml_end(void *userdata, const XML_Char *name) {
        XmlState *x = userdata;

        if (x->error)
                return;
        if (x->text_overflow) {
                xml_fail(x, -E2BIG);
                return;
        }
        x->text[x->text_len] = '\0';
        x->on_end(x, name);
        x->depth--;
        x->text_len = 0;
}

static void XMLCALL xml_text(void *userdata, const XML_Char *s, int len) {
        XmlState *x = userdata;

        if (x->error || len <= 0)
                return;
        if (x->text_len + (size_t)len > REST_XML_TEXT_MAX) {
                x->text_overflow = true;
                return;
        }
        memcpy(x->text + x->text_len, s, (size_t)len);
        x->text_len += (size_t)len;
}

static int xml_init(XmlState *x) {
        x->parser = XML_ParserCreate("UTF-8");
        if (!x->parser)
                return -ENOMEM;
        XML_SetUserData(x->parser, x);
        XML_SetElementHandler(x->parser, xml_start, xml_end);
        XML_SetCharacterDataHandler(x->parser, xml_text);
        return 0;
}

static int xml_feed(XmlState *x, const void *data, size_t size, bool final) {
        if (x->error)
                return x->error;
        if (size > INT32_MAX)
                return -E2BIG;
        if (XML_Parse(x->parser, data, (int)size, final) != XML_STATUS_OK && x->error == 0)
                x->error = -EBADMSG;
        return x->error;
}

/* Element name at depth d (1 = root). */
static bool xml_at(XmlState *x, size_t depth, const char *name, const char *el) {
        return x->depth == depth && streq(name, el);
}

/* ---- listing ------------------------------------------------------------------------------ */

struct RestListParser {
        XmlState x;
        RestListPage *page;
        RestListEntry cur;
        size_t n_alloc; /* entries allocated in page */
        bool in_entry;
        bool seen_root;
        bool finished;
};

static void entry_done(RestListEntry *e) {
        free(e->name);
        free(e->etag);
        free(e->permission_key);
        *e = (RestListEntry){0};
}

RestListPage *rest_list_page_free(RestListPage *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_entries; i++)
                entry_done(&p->entries[i]);
        free(p->entries);
        free(p->next_marker);
        free(p);
        return NULL;
}

static int dup_text(XmlState *x, char **ret) {
        char *s = strdup(x->text);
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static int parse_u64_text(const char *text, uint64_t *ret) {
        return rest_parse_u64(text, ret) < 0 ? -EBADMSG : 0;
}

static void list_on_start(XmlState *x, const char *name, const char **attrs) {
        RestListParser *p = x->userdata;

        if (x->depth == 1) {
                if (!streq(name, "EnumerationResults"))
                        xml_fail(x, -EBADMSG);
                p->seen_root = true;
                return;
        }
        if (x->depth == 3 && (streq(name, "File") || streq(name, "Directory"))) {
                if (p->page->n_entries >= REST_LIST_ENTRIES_MAX) {
                        xml_fail(x, -E2BIG);
                        return;
                }
                entry_done(&p->cur);
                p->in_entry = true;
                p->cur.is_directory = streq(name, "Directory");
        }
}

static int list_entry_field(RestListParser *p, XmlState *x, const char *name) {
        RestListEntry *e = &p->cur;
        const char *t = x->text;

        if (x->depth == 4) {
                if (streq(name, "Name")) {
                        if (x->encoded) {
                                char *dec = NULL;
                                if (url_percent_decode(t, strlen(t), &dec) < 0)
                                        return -EBADMSG;
                                free(e->name);
                                e->name = dec;
                                return 0;
                        }
                        return dup_text(x, &e->name);
                }
                if (streq(name, "FileId")) {
                        e->has_file_id = true;
                        return parse_u64_text(t, &e->file_id);
                }
                if (streq(name, "Attributes")) {
                        e->has_attributes = true;
                        return rest_attributes_parse(t, &e->attributes);
                }
                if (streq(name, "PermissionKey"))
                        return dup_text(x, &e->permission_key);
                return 0;
        }
        if (x->depth == 5) { /* inside Properties */
                if (streq(name, "Content-Length")) {
                        e->has_content_length = true;
                        return rest_parse_file_size(t, &e->content_length);
                }
                if (streq(name, "CreationTime"))
                        return rest_parse_time(t, true, &e->creation_ns);
                if (streq(name, "LastAccessTime"))
                        return rest_parse_time(t, true, &e->last_access_ns);
                if (streq(name, "LastWriteTime"))
                        return rest_parse_time(t, true, &e->last_write_ns);
                if (streq(name, "ChangeTime"))
                        return rest_parse_time(t, true, &e->change_ns);
                if (streq(name, "Last-Modified"))
                        return rest_parse_time(t, false, &e->last_modified_ns);
                if (streq(name, "Etag"))
                        return dup_text(x, &e->etag);
        }
        return 0;
}

static void list_on_end(XmlState *x, const char *name) {
        RestListParser *p = x->userdata;
        RestListPage *page = p->page;
        int r = 0;

        if (p->in_entry && x->depth == 3) {
                RestListEntry *n;
                /* No share holds such a name (checked after percent-decoding): only a broken or
                 * hostile server would send it, and it would name another entry. */
                if (isempty(p->cur.name) || strchr(p->cur.name, '/') || streq(p->cur.name, ".") ||
                    streq(p->cur.name, "..")) {
                        xml_fail(x, -EBADMSG);
                        return;
                }
                if (page->n_entries == p->n_alloc) {
                        size_t want = MAX(p->n_alloc * 2, (size_t)64);
                        n = reallocarray(page->entries, want, sizeof(RestListEntry));
                        if (!n) {
                                xml_fail(x, -ENOMEM);
                                return;
                        }
                        page->entries = n;
                        p->n_alloc = want;
                }
                page->entries[page->n_entries++] = p->cur;
                p->cur = (RestListEntry){0};
                p->in_entry = false;
                return;
        }
        if (p->in_entry)
                r = list_entry_field(p, x, name);
        else if (xml_at(x, 2, name, "NextMarker")) {
                free(page->next_marker);
                page->next_marker = NULL;
                if (x->text_len > 0)
                        r = dup_text(x, &page->next_marker);
        } else if (xml_at(x, 2, name, "DirectoryId")) {
                page->has_directory_id = true;
                r = parse_u64_text(x->text, &page->directory_id);
        }
        if (r < 0)
                xml_fail(x, r);
}

int rest_list_parser_new(RestListParser **ret) {
        RestListParser *p;
        int r;

        p = calloc(1, sizeof(RestListParser));
        if (!p)
                return -ENOMEM;
        p->page = calloc(1, sizeof(RestListPage));
        p->x.on_start = list_on_start;
        p->x.on_end = list_on_end;
        p->x.userdata = p;
        r = p->page ? xml_init(&p->x) : -ENOMEM;
        if (r < 0) {
                (void)rest_list_parser_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

RestListParser *rest_list_parser_free(RestListParser *p) {
        if (!p)
                return NULL;
        if (p->x.parser)
                XML_ParserFree(p->x.parser);
        entry_done(&p->cur);
        (void)rest_list_page_free(p->page);
        free(p);
        return NULL;
}

int rest_list_parser_feed(RestListParser *p, const void *data, size_t size) {
        return xml_feed(&p->x, data, size, false);
}

int rest_list_parser_finish(RestListParser *p, RestListPage **ret) {
        int r = xml_feed(&p->x, "", 0, true);
        if (r < 0)
                return r;
        if (!p->seen_root)
                return -EBADMSG;
        *ret = TAKE_PTR(p->page);
        return 0;
}

int rest_xml_parse_list(const void *data, size_t size, RestListPage **ret) {
        _cleanup_(rest_list_parser_freep) RestListParser *p = NULL;
        int r;

        r = rest_list_parser_new(&p);
        if (r < 0)
                return r;
        r = rest_list_parser_feed(p, data, size);
        if (r < 0)
                return r;
        return rest_list_parser_finish(p, ret);
}

/* ---- error documents ---------------------------------------------------------------------- */

typedef struct ErrorDoc {
        char *code, *message;
        bool seen_root;
} ErrorDoc;

static void error_on_start(XmlState *x, const char *name, const char **attrs) {
        ErrorDoc *d = x->userdata;
        if (x->depth == 1) {
                if (!streq(name, "Error"))
                        xml_fail(x, -EBADMSG);
                d->seen_root = true;
        }
}

static void error_on_end(XmlState *x, const char *name) {
        ErrorDoc *d = x->userdata;
        int r = 0;
        if (xml_at(x, 2, name, "Code"))
                r = dup_text(x, &d->code);
        else if (xml_at(x, 2, name, "Message"))
                r = dup_text(x, &d->message);
        if (r < 0)
                xml_fail(x, r);
}

int rest_xml_parse_error(const void *data, size_t size, char **ret_code, char **ret_message) {
        ErrorDoc d = {0};
        XmlState x = {.on_start = error_on_start, .on_end = error_on_end, .userdata = &d};
        int r;

        r = xml_init(&x);
        if (r < 0)
                return r;
        r = xml_feed(&x, data, size, true);
        XML_ParserFree(x.parser);
        if (r == 0 && (!d.seen_root || isempty(d.code)))
                r = -EBADMSG;
        if (r < 0) {
                free(d.code);
                free(d.message);
                return r;
        }
        if (ret_code)
                *ret_code = TAKE_PTR(d.code);
        if (ret_message)
                *ret_message = TAKE_PTR(d.message);
        free(d.code);
        free(d.message);
        return 0;
}

/* ---- share stats -------------------------------------------------------------------------- */

typedef struct StatsDoc {
        bool seen_root, seen_usage;
        uint64_t usage;
} StatsDoc;

static void stats_on_start(XmlState *x, const char *name, const char **attrs) {
        StatsDoc *d = x->userdata;
        if (x->depth == 1) {
                if (!streq(name, "ShareStats"))
                        xml_fail(x, -EBADMSG);
                d->seen_root = true;
        }
}

static void stats_on_end(XmlState *x, const char *name) {
        StatsDoc *d = x->userdata;
        if (xml_at(x, 2, name, "ShareUsageBytes")) {
                d->seen_usage = true;
                if (parse_u64_text(x->text, &d->usage) < 0)
                        xml_fail(x, -EBADMSG);
        }
}

int rest_xml_parse_share_stats(const void *data, size_t size, uint64_t *ret_usage_bytes) {
        StatsDoc d = {0};
        XmlState x = {.on_start = stats_on_start, .on_end = stats_on_end, .userdata = &d};
        int r;

        r = xml_init(&x);
        if (r < 0)
                return r;
        r = xml_feed(&x, data, size, true);
        XML_ParserFree(x.parser);
        if (r < 0)
                return r;
        if (!d.seen_root || !d.seen_usage)
                return -EBADMSG;
        *ret_usage_bytes = d.usage;
        return 0;
}
