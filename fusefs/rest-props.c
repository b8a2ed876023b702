/* SPDX-License-Identifier: MIT */
#include "rest-props.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "macro.h"
#include "time-util.h"

static const char *const attribute_names[] = {
        "ReadOnly",          "Hidden",      "System",    "None",
        "Directory",         "Archive",     "Temporary", "Offline",
        "NotContentIndexed", "NoScrubData",
};

int rest_attributes_parse(const char *s, uint32_t *ret) {
        uint32_t mask = 0;
        const char *p = s;

        if (!s)
                return -EBADMSG;
        for (;;) {
                const char *start, *end;
                size_t len, i;

                while (*p == ' ')
                        p++;
                start = p;
                while (*p && *p != '|')
                        p++;
                end = p;
                while (end > start && end[-1] == ' ')
                        end--;
                len = (size_t)(end - start);
                if (len == 0)
                        return -EBADMSG;
                for (i = 0; i < ELEMENTSOF(attribute_names); i++)
                        if (strlen(attribute_names[i]) == len &&
                            strncasecmp(attribute_names[i], start, len) == 0)
                                break;
                if (i == ELEMENTSOF(attribute_names))
                        return -EBADMSG;
                mask |= 1u << i;
                if (*p == '\0')
                        break;
                p++; /* '|' */
        }
        *ret = mask;
        return 0;
}

char *rest_attributes_format(uint32_t mask, char *buf, size_t size) {
        size_t len = 0;

        if (size == 0)
                return buf;
        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(attribute_names); i++) {
                int k;
                if (!(mask & (1u << i)))
                        continue;
                k = snprintf(buf + len, size - len, "%s%s", len > 0 ? "|" : "", attribute_names[i]);
                if (k < 0 || (size_t)k >= size - len)
                        break;
                len += (size_t)k;
        }
        if (len == 0)
                (void)snprintf(buf, size, "None");
        return buf;
}

int rest_parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EBADMSG;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EBADMSG;
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return -EBADMSG;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return 0;
}

int rest_parse_file_size(const char *s, uint64_t *ret) {
        uint64_t v;
        int r;

        r = rest_parse_u64(s, &v);
        if (r < 0)
                return r;
        if (v > REST_FILE_SIZE_MAX)
                return -EBADMSG;
        *ret = v;
        return 0;
}

void rest_metadata_free(RestMetadata *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].name);
                free(m[i].value);
        }
        free(m);
}

void rest_properties_done(RestProperties *p) {
        if (!p)
                return;
        rest_metadata_free(p->metadata, p->n_metadata);
        free(p->lease_id);
        *p = (RestProperties){0};
}

const char *rest_properties_metadata(const RestProperties *p, const char *name) {
        for (size_t i = 0; i < p->n_metadata; i++)
                if (strcaseeq(p->metadata[i].name, name))
                        return p->metadata[i].value;
        return NULL;
}

static int metadata_copy(RestMetadata *dst, const char *name, const char *value) {
        dst->name = strdup(name);
        dst->value = strdup(value);
        if (dst->name && dst->value)
                return 0;
        free(dst->name);
        free(dst->value);
        *dst = (RestMetadata){0};
        return -ENOMEM;
}

int rest_metadata_with(
        const RestProperties *p,
        const char *name,
        const char *value,
        RestMetadata **ret,
        size_t *ret_n) {
        RestMetadata *m;
        size_t n = 0, bytes = strlen(name) + strlen(value);

        if (p->metadata_incomplete)
                return -EOVERFLOW;
        for (size_t i = 0; i < p->n_metadata; i++)
                if (!strcaseeq(p->metadata[i].name, name))
                        bytes += strlen(p->metadata[i].name) + strlen(p->metadata[i].value);
        if (bytes > REST_METADATA_BYTES_MAX)
                return -E2BIG;
        m = calloc(p->n_metadata + 1, sizeof(RestMetadata));
        if (!m)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_metadata; i++) {
                if (strcaseeq(p->metadata[i].name, name))
                        continue;
                if (metadata_copy(&m[n], p->metadata[i].name, p->metadata[i].value) < 0) {
                        rest_metadata_free(m, n);
                        return -ENOMEM;
                }
                n++;
        }
        if (metadata_copy(&m[n], name, value) < 0) {
                rest_metadata_free(m, n);
                return -ENOMEM;
        }
        *ret = m;
        *ret_n = n + 1;
        return 0;
}

typedef struct MetaCollect {
        RestProperties *p;
        size_t bytes;
        int error;
} MetaCollect;

static int collect_metadata(void *cbdata, const char *name, const char *value) {
        MetaCollect *m = cbdata;
        RestProperties *p = m->p;
        size_t bytes;

        if (strncasecmp(name, "x-ms-meta-", 10) != 0 || name[10] == '\0')
                return 0;
        /* Every pair within the service's limit is kept, however many (other tools set many).
         * Past it (a server over that limit) the rest is left out and marked so, but "mode", the
         * one the driver reads, is kept wherever it comes. */
        bytes = strlen(name + 10) + strlen(value);
        if (bytes > REST_METADATA_BYTES_MAX - MIN(m->bytes, REST_METADATA_BYTES_MAX) &&
            !strcaseeq(name + 10, "mode")) {
                p->metadata_incomplete = true;
                return 0;
        }
        if (array_reserve(
                    (void **)&p->metadata, &p->n_metadata_alloc, p->n_metadata + 1,
                    sizeof(RestMetadata)) < 0) {
                m->error = -ENOMEM;
                return 1;
        }
        if (metadata_copy(&p->metadata[p->n_metadata], name + 10, value) < 0) {
                m->error = -ENOMEM;
                return 1;
        }
        p->n_metadata++;
        m->bytes += bytes;
        return 0;
}

int rest_parse_time(const char *s, bool iso, int64_t *ret) {
        int r = iso ? parse_iso8601(s, ret) : parse_rfc1123(s, ret);
        return r < 0 && r != -ERANGE ? -EBADMSG : 0; /* -ERANGE: *ret saturated */
}

static int parse_time_header(const char *v, bool iso, int64_t *ret) {
        return v ? rest_parse_time(v, iso, ret) : 0;
}

/* "bytes S-E/TOTAL" or "bytes * /TOTAL" (no space before '/'). */
static int parse_content_range(const char *v, uint64_t *ret_total) {
        const char *slash;

        if (strncmp(v, "bytes ", 6) != 0)
                return -EBADMSG;
        slash = strchr(v, '/');
        if (!slash)
                return -EBADMSG;
        return rest_parse_u64(slash + 1, ret_total);
}

static int copy_bounded(char *dst, size_t size, const char *src) {
        size_t n = strlen(src);
        if (n >= size)
                return -EBADMSG;
        memcpy(dst, src, n + 1);
        return 0;
}

int rest_properties_parse(
        RestProperties *p,
        const char *(*get)(void *userdata, const char *name),
        int (*foreach)(
                void *userdata,
                int (*cb)(void *cbdata, const char *name, const char *value),
                void *cbdata),
        void *userdata) {
        MetaCollect mc = {.p = p};
        const char *v;
        int r;

        *p = (RestProperties){0};
        if ((v = get(userdata, "ETag")) && (r = copy_bounded(p->etag, sizeof(p->etag), v)) < 0)
                goto fail;
        if ((v = get(userdata, "x-ms-request-id")) &&
            (r = copy_bounded(p->request_id, sizeof(p->request_id), v)) < 0)
                goto fail;
        if ((r = parse_time_header(get(userdata, "Last-Modified"), false, &p->last_modified_ns)) <
            0)
                goto fail;
        v = get(userdata, "x-ms-content-length");
        if (!v)
                v = get(userdata, "Content-Length");
        if (v) {
                if ((r = rest_parse_file_size(v, &p->content_length)) < 0)
                        goto fail;
                p->has_content_length = true;
        }
        if ((v = get(userdata, "Content-Range"))) {
                if ((r = parse_content_range(v, &p->range_total)) < 0)
                        goto fail;
                p->has_range_total = true;
        }
        if ((v = get(userdata, "x-ms-file-id"))) {
                if ((r = rest_parse_u64(v, &p->file_id)) < 0)
                        goto fail;
                p->has_file_id = true;
        }
        if ((v = get(userdata, "x-ms-file-parent-id"))) {
                if ((r = rest_parse_u64(v, &p->parent_id)) < 0)
                        goto fail;
                p->has_parent_id = true;
        }
        if ((r = parse_time_header(
                     get(userdata, "x-ms-file-creation-time"), true, &p->creation_ns)) < 0 ||
            (r = parse_time_header(
                     get(userdata, "x-ms-file-last-write-time"), true, &p->last_write_ns)) < 0 ||
            (r = parse_time_header(get(userdata, "x-ms-file-change-time"), true, &p->change_ns)) <
                    0)
                goto fail;
        if ((v = get(userdata, "x-ms-file-attributes"))) {
                if ((r = rest_attributes_parse(v, &p->attributes)) < 0)
                        goto fail;
                p->has_attributes = true;
                if (p->attributes & REST_ATTR_DIRECTORY)
                        p->is_directory = true;
        }
        if ((v = get(userdata, "x-ms-type")) && strcaseeq(v, "Directory"))
                p->is_directory = true;
        if ((v = get(userdata, "x-ms-lease-state")) && strcaseeq(v, "leased"))
                p->leased = true;
        if ((v = get(userdata, "x-ms-lease-id")) && !(p->lease_id = strdup(v))) {
                r = -ENOMEM;
                goto fail;
        }
        if ((v = get(userdata, "x-ms-share-quota"))) {
                if ((r = rest_parse_u64(v, &p->share_quota_gib)) < 0)
                        goto fail;
                p->has_share_quota = true;
        }
        if (foreach) {
                (void)foreach(userdata, collect_metadata, &mc);
                if ((r = mc.error) < 0)
                        goto fail;
        }
        return 0;
fail:
        rest_properties_done(p);
        return r;
}
