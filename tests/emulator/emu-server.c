/* SPDX-License-Identifier: MIT */
#include "emu-server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "emu-admin.h"
#include "emu-faults.h"
#include "emu-files.h"
#include "emu-imds.h"
#include "emu-xml.h"
#include "log.h"
#include "time-util.h"

/* A reply's headers, by their bytes ("Name: value\r\n"): an entry's metadata alone may be 3,081
 * headers (the service's 8 KiB of one- to three-letter names), about 50 KiB. */
#define EMU_REPLY_HEADER_BYTES_MAX (64u * 1024u)
#define EMU_CLIENT_REQUEST_ID_MAX 1024
#define EMU_SERVER_HEADER "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0"

typedef struct EmuHeader {
        char *name;
        char *value;
} EmuHeader;

struct EmuResponse {
        unsigned status;
        EmuHeader *headers;
        size_t n_headers, n_headers_alloc;
        size_t header_bytes;
        bool replied;
        enum { BODY_NONE, BODY_MEMORY, BODY_FD, BODY_LENGTH_ONLY } body_kind;
        char *body;
        size_t body_size;
        int fd;
        uint64_t fd_offset;
        uint64_t fd_size;
};

/* Per-request state, created by the URI log callback (the first thing MHD tells us). */
typedef struct EmuContext {
        Emulator *emu;
        EmuListener listener;
        char *raw_uri;
        char *body;
        size_t body_size;
        size_t body_alloc;
        bool body_too_large;
        bool started;
        EmuResponse response;
} EmuContext;

typedef struct ListenerData {
        Emulator *emu;
        EmuListener which;
} ListenerData;

static ListenerData listener_data[2];
static int listen_fds[2] = {-EBADF, -EBADF}; /* bound, until their daemon takes them */
static atomic_uint_fast64_t request_counter;
static uint32_t request_id_prefix;

/* ---- URI parsing ------------------------------------------------------------------------- */

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int emu_percent_decode(const char *src, size_t len, char **ret) {
        _cleanup_free_ char *out = malloc(len + 1);
        size_t o = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                char c = src[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= len)
                                return -EINVAL;
                        hi = unhex(src[i + 1]);
                        lo = unhex(src[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (char)(hi << 4 | lo);
                        i += 2;
                }
                if (c == '\0')
                        return -EINVAL;
                out[o++] = c;
        }
        out[o] = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

static void strv_free_n(char **v, unsigned n) {
        for (unsigned i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

void emu_query_params_free(EmuQueryParam *q, size_t n) {
        for (size_t i = 0; q && i < n; i++) {
                free(q[i].name);
                free(q[i].value);
        }
        free(q);
}

static int split_path(const char *raw_path, char ***ret_segments, unsigned *ret_n) {
        _cleanup_free_ char *decoded = NULL;
        char **segments = NULL;
        unsigned n = 0;
        const char *p;
        int r;

        if (raw_path[0] != '/')
                return -EINVAL;
        /* Decode the whole path first: %2F is a separator for the service, like '/'. */
        r = emu_percent_decode(raw_path, strlen(raw_path), &decoded);
        if (r < 0)
                return r;
        segments = calloc(EMU_PATH_SEGMENTS_MAX, sizeof(char *));
        if (!segments)
                return -ENOMEM;
        p = decoded + 1;
        while (*p) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);

                if (len == 0) {
                        /* A trailing '/' is tolerated (the C++ SDK sends "/share/"); an empty
                         * interior segment is not a valid name. */
                        if (!slash || slash[1] == '\0')
                                break;
                        r = -EINVAL;
                        goto fail;
                }
                if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) {
                        r = -EINVAL;
                        goto fail;
                }
                if (n >= EMU_PATH_SEGMENTS_MAX) {
                        r = -E2BIG;
                        goto fail;
                }
                segments[n] = strndup(p, len);
                if (!segments[n]) {
                        r = -ENOMEM;
                        goto fail;
                }
                n++;
                if (!slash)
                        break;
                p = slash + 1;
        }
        *ret_segments = segments;
        *ret_n = n;
        return 0;
fail:
        strv_free_n(segments, n);
        return r;
}

static int parse_query(const char *raw_query, EmuQueryParam **ret, size_t *ret_n) {
        EmuQueryParam *q = NULL;
        size_t n = 0;
        const char *p = raw_query;
        int r;

        if (*p == '\0') {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        q = calloc(EMU_QUERY_PARAMS_MAX, sizeof(EmuQueryParam));
        if (!q)
                return -ENOMEM;
        while (*p) {
                const char *amp = strchr(p, '&');
                size_t len = amp ? (size_t)(amp - p) : strlen(p);
                const char *eq = memchr(p, '=', len);

                if (len > 0) {
                        if (n >= EMU_QUERY_PARAMS_MAX) {
                                r = -E2BIG;
                                goto fail;
                        }
                        r = emu_percent_decode(p, eq ? (size_t)(eq - p) : len, &q[n].name);
                        if (r < 0)
                                goto fail;
                        if (eq)
                                r = emu_percent_decode(
                                        eq + 1, len - (size_t)(eq + 1 - p), &q[n].value);
                        else
                                r = (q[n].value = strdup("")) ? 0 : -ENOMEM;
                        n++;
                        if (r < 0)
                                goto fail;
                }
                if (!amp)
                        break;
                p = amp + 1;
        }
        *ret = q;
        *ret_n = n;
        return 0;
fail:
        emu_query_params_free(q, n);
        return r;
}

int emu_parse_uri(
        const char *raw_uri,
        char **ret_path,
        char **ret_query,
        char ***ret_segments,
        unsigned *ret_n_segments,
        EmuQueryParam **ret_query_params,
        size_t *ret_n_query) {
        _cleanup_free_ char *path = NULL, *query = NULL;
        const char *qm;
        char **segments = NULL;
        unsigned n_segments = 0;
        EmuQueryParam *params = NULL;
        size_t n_params = 0;
        int r;

        if (strlen(raw_uri) > EMU_URI_MAX)
                return -E2BIG;
        qm = strchr(raw_uri, '?');
        path = qm ? strndup(raw_uri, (size_t)(qm - raw_uri)) : strdup(raw_uri);
        query = strdup(qm ? qm + 1 : "");
        if (!path || !query)
                return -ENOMEM;
        /* A fragment never reaches a server; refuse one rather than guess. */
        if (strchr(raw_uri, '#'))
                return -EINVAL;
        r = split_path(path, &segments, &n_segments);
        if (r < 0)
                return r;
        r = parse_query(query, &params, &n_params);
        if (r < 0) {
                strv_free_n(segments, n_segments);
                return r;
        }
        *ret_path = TAKE_PTR(path);
        *ret_query = TAKE_PTR(query);
        *ret_segments = segments;
        *ret_n_segments = n_segments;
        *ret_query_params = params;
        *ret_n_query = n_params;
        return 0;
}

/* ---- request accessors ------------------------------------------------------------------ */

const char *emu_request_header(const EmuRequest *r, const char *name) {
        return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

typedef struct HeaderIter {
        int (*cb)(void *, const char *, const char *);
        void *userdata;
        int result;
} HeaderIter;

static enum MHD_Result
header_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        HeaderIter *it = cls;
        (void)kind;
        it->result = it->cb(it->userdata, key, value ? value : "");
        return it->result == 0 ? MHD_YES : MHD_NO;
}

int emu_request_foreach_header(
        const EmuRequest *r,
        int (*cb)(void *userdata, const char *name, const char *value),
        void *userdata) {
        HeaderIter it = {.cb = cb, .userdata = userdata};
        (void)MHD_get_connection_values(r->connection, MHD_HEADER_KIND, header_iter, &it);
        return it.result;
}

const char *emu_request_query(const EmuRequest *r, const char *name) {
        for (size_t i = 0; i < r->n_query; i++)
                if (streq(r->query[i].name, name))
                        return r->query[i].value;
        return NULL;
}

int emu_request_client_address(const EmuRequest *req, char buf[static INET6_ADDRSTRLEN]) {
        const union MHD_ConnectionInfo *ci;
        const struct sockaddr *sa;

        if (!req->connection)
                return -ENOENT;
        ci = MHD_get_connection_info(req->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (!ci || !ci->client_addr)
                return -ENOENT;
        sa = ci->client_addr;
        if (sa->sa_family == AF_INET) {
                if (!inet_ntop(
                            AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
                            INET6_ADDRSTRLEN))
                        return -EINVAL;
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
                /* An IPv4-mapped address compares as IPv4. */
                if (IN6_IS_ADDR_V4MAPPED(a)) {
                        if (!inet_ntop(AF_INET, &a->s6_addr[12], buf, INET6_ADDRSTRLEN))
                                return -EINVAL;
                } else if (!inet_ntop(AF_INET6, a, buf, INET6_ADDRSTRLEN))
                        return -EINVAL;
        } else
                return -EAFNOSUPPORT;
        return 0;
}

/* ---- replies ----------------------------------------------------------------------------- */

int emu_reply_header(EmuRequest *r, const char *name, const char *format, ...) {
        EmuResponse *resp = r->response;
        char *value;
        va_list ap;
        int n;

        va_start(ap, format);
        n = vasprintf(&value, format, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        if (strlen(name) + (size_t)n + 4 > EMU_REPLY_HEADER_BYTES_MAX - resp->header_bytes) {
                free(value);
                return -E2BIG;
        }
        if (array_reserve(
                    (void **)&resp->headers, &resp->n_headers_alloc, resp->n_headers + 1,
                    sizeof(EmuHeader)) < 0 ||
            !(resp->headers[resp->n_headers].name = strdup(name))) {
                free(value);
                return -ENOMEM;
        }
        resp->headers[resp->n_headers++].value = value;
        resp->header_bytes += strlen(name) + (size_t)n + 4;
        return 0;
}

static void mark_replied(EmuRequest *r, unsigned status) {
        /* Two replies to one request is a bug in a handler, never a remote input. */
        assert(!r->response->replied);
        r->response->replied = true;
        r->response->status = status;
}

int emu_reply_empty(EmuRequest *r, unsigned status) {
        mark_replied(r, status);
        r->response->body_kind = BODY_NONE;
        return 0;
}

int emu_reply_body_take(
        EmuRequest *r, unsigned status, const char *content_type, char *body, size_t size) {
        mark_replied(r, status);
        r->response->body_kind = BODY_MEMORY;
        r->response->body = body;
        r->response->body_size = size;
        if (content_type)
                (void)emu_reply_header(r, "Content-Type", "%s", content_type);
        return 0;
}

int emu_reply_body(
        EmuRequest *r, unsigned status, const char *content_type, const void *body, size_t size) {
        char *copy = malloc(size + 1);
        if (!copy) {
                emu_reply_empty(r, 500);
                return -ENOMEM;
        }
        memcpy(copy, body, size);
        copy[size] = '\0';
        return emu_reply_body_take(r, status, content_type, copy, size);
}

int emu_reply_fd(
        EmuRequest *r,
        unsigned status,
        const char *content_type,
        int fd,
        uint64_t offset,
        uint64_t size) {
        mark_replied(r, status);
        r->response->body_kind = BODY_FD;
        r->response->fd = fd;
        r->response->fd_offset = offset;
        r->response->fd_size = size;
        if (content_type)
                (void)emu_reply_header(r, "Content-Type", "%s", content_type);
        return 0;
}

int emu_reply_head(EmuRequest *r, unsigned status, const char *content_type, uint64_t length) {
        mark_replied(r, status);
        r->response->body_kind = BODY_LENGTH_ONLY;
        r->response->fd_size = length;
        if (content_type)
                (void)emu_reply_header(r, "Content-Type", "%s", content_type);
        return 0;
}

static const struct {
        const char *code;
        const char *message;
} error_messages[] = {
        {"ResourceNotFound", "The specified resource does not exist."},
        {"ParentNotFound", "The specified parent path does not exist."},
        {"ShareNotFound", "The specified share does not exist."},
        {"ResourceAlreadyExists", "The specified resource already exists."},
        {"ShareAlreadyExists", "The specified share already exists."},
        {"DirectoryNotEmpty", "The specified directory is not empty."},
        {"AuthenticationFailed",
         "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."},
        {"AuthorizationPermissionMismatch",
         "This request is not authorized to perform this operation using this permission."},
        {"AuthorizationFailure", "This request is not authorized to perform this operation."},
        {"InvalidRange", "The range specified is invalid for the current size of the resource."},
        {"LeaseIdMissing",
         "There is currently a lease on the file and no lease ID was specified in the request."},
        {"LeaseAlreadyPresent", "There is already a lease present."},
        {"LeaseNotPresentWithFileOperation", "There is currently no lease on the file."},
        {"LeaseNotPresentWithLeaseOperation", "There is currently no lease on the file."},
        {"LeaseIdMismatchWithFileOperation",
         "The lease ID specified did not match the lease ID for the file."},
        {"LeaseIdMismatchWithLeaseOperation",
         "The lease ID specified did not match the lease ID for the file."},
        {"ServerBusy", "Operations per second is over the account limit."},
        {"InternalError",
         "Server encountered an internal error. Please try again after some time."},
        {"OperationTimedOut", "Operation could not be completed within the specified time."},
        {"MissingRequiredHeader",
         "An HTTP header that's mandatory for this request is not specified."},
        {"InvalidHeaderValue",
         "The value for one of the HTTP headers is not in the correct format."},
        {"MissingRequiredQueryParameter",
         "A query parameter that's mandatory for this request is not specified."},
        {"InvalidQueryParameterValue",
         "Value for one of the query parameters specified in the request URI is invalid."},
        {"InvalidUri", "The requested URI does not represent any resource on the server."},
        {"InvalidResourceName", "The specifed resource name contains invalid characters."},
        {"InvalidFileOrDirectoryPathName",
         "The specified path, file name, or directory name contains invalid characters or exceeds the limit."},
        {"OutOfRangeInput", "One of the request inputs is out of range."},
        {"InvalidInput", "One of the request inputs is not valid."},
        {"InvalidXmlDocument", "XML specified is not syntactically valid."},
        {"RequestBodyTooLarge",
         "The request body is too large and exceeds the maximum permissible limit."},
        {"UnsupportedHttpVerb", "The resource doesn't support specified Http Verb."},
        {"Md5Mismatch",
         "The MD5 value specified in the request did not match with the MD5 value calculated by the server."},
        {"ReadOnlyAttribute",
         "The specified resource is read-only and cannot be modified at this time."},
        {"InvalidAuthenticationInfo",
         "Authentication information is not given in the correct format. Check the value of Authorization header."},
        {"InvalidMetadata",
         "The metadata specified is invalid. It has characters that are not permitted."},
        {"ShareBeingDeleted", "The specified share is being deleted. Try operation later."},
        {"FileLockConflict", "A portion of the specified file is locked by an SMB client."},
};

const char *emu_error_message(const char *code) {
        for (size_t i = 0; i < ELEMENTSOF(error_messages); i++)
                if (streq(error_messages[i].code, code))
                        return error_messages[i].message;
        return "The request could not be processed.";
}

int emu_reply_error(
        EmuRequest *r,
        unsigned status,
        const char *code,
        const char *message,
        const char *const *extra) {
        _cleanup_(emu_xml_freep) EmuXml *x = NULL;
        char iso[ISO8601_MAX];
        char *text = NULL;
        size_t size;
        int k;

        (void)emu_reply_header(r, "x-ms-error-code", "%s", code);
        if (streq(r->method, "HEAD"))
                return emu_reply_empty(r, status);

        if (asprintf(
                    &text, "%s\nRequestId:%s\nTime:%s", message ? message : emu_error_message(code),
                    r->request_id, format_iso8601(iso, now_realtime_ns())) < 0)
                text = NULL;
        x = emu_xml_new();
        if (!x || !text) {
                free(text);
                return emu_reply_empty(r, status);
        }
        emu_xml_open(x, "Error");
        emu_xml_element(x, "Code", code);
        emu_xml_element(x, "Message", text);
        free(text);
        for (size_t i = 0; extra && extra[i] && extra[i + 1]; i += 2)
                emu_xml_element(x, extra[i], extra[i + 1]);
        emu_xml_close(x, "Error");
        char *doc = emu_xml_steal(x, &size);
        if (!doc)
                return emu_reply_empty(r, status);
        k = emu_reply_body_take(r, status, "application/xml", doc, size);
        return k;
}

/* ---- transport ---------------------------------------------------------------------------- */

static void make_request_id(char buf[static 40]) {
        uint64_t n = atomic_fetch_add(&request_counter, 1);
        (void)snprintf(
                buf, 40, "%08x-%04x-%04x-%04x-%012llx", request_id_prefix,
                (unsigned)((n >> 48) & 0xffff), (unsigned)((n >> 32) & 0xffff),
                (unsigned)((n >> 16) & 0xffff), (unsigned long long)(n & 0xffffffffffffULL));
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *connection) {
        ListenerData *ld = cls;
        EmuContext *ctx = calloc(1, sizeof(EmuContext));
        (void)connection;

        if (!ctx)
                return NULL;
        ctx->emu = ld->emu;
        ctx->listener = ld->which;
        ctx->raw_uri = strdup(uri ? uri : "/");
        ctx->response.fd = -EBADF;
        return ctx;
}

static size_t unescape_none(void *cls, struct MHD_Connection *c, char *s) {
        /* Keep the path and query encoded: we decode them ourselves, once, and Shared Key signs
         * the encoded form. */
        (void)cls;
        (void)c;
        return strlen(s);
}

static void response_free(EmuResponse *resp) {
        for (size_t i = 0; i < resp->n_headers; i++) {
                free(resp->headers[i].name);
                free(resp->headers[i].value);
        }
        free(resp->headers);
        resp->headers = NULL;
        resp->n_headers = resp->n_headers_alloc = resp->header_bytes = 0;
        free(resp->body);
        resp->body = NULL;
        resp->fd = safe_close(resp->fd);
}

static void request_completed(
        void *cls,
        struct MHD_Connection *connection,
        void **con_cls,
        enum MHD_RequestTerminationCode toe) {
        EmuContext *ctx = *con_cls;
        (void)cls;
        (void)connection;
        (void)toe;
        if (!ctx)
                return;
        response_free(&ctx->response);
        free(ctx->raw_uri);
        free(ctx->body);
        free(ctx);
        *con_cls = NULL;
}

typedef struct TruncatedBody {
        char *memory;
        int fd;
        uint64_t offset;
        uint64_t limit; /* bytes to send before failing */
} TruncatedBody;

static ssize_t truncated_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        TruncatedBody *t = cls;
        ssize_t n;

        if (pos >= t->limit)
                return MHD_CONTENT_READER_END_WITH_ERROR;
        max = (size_t)MIN((uint64_t)max, t->limit - pos);
        if (t->memory) {
                memcpy(buf, t->memory + pos, max);
                return (ssize_t)max;
        }
        n = pread(t->fd, buf, max, (off_t)(t->offset + pos));
        return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void truncated_free(void *cls) {
        TruncatedBody *t = cls;
        free(t->memory);
        (void)safe_close(t->fd);
        free(t);
}

static ssize_t never_reader(void *cls, uint64_t pos, char *buf, size_t max) {
        (void)cls;
        (void)pos;
        (void)buf;
        (void)max;
        return MHD_CONTENT_READER_END_WITH_ERROR;
}

static struct MHD_Response *build_mhd_response(EmuResponse *resp, bool truncate) {
        struct MHD_Response *m = NULL;

        if (truncate && (resp->body_kind == BODY_MEMORY || resp->body_kind == BODY_FD) &&
            (resp->body_kind == BODY_MEMORY ? resp->body_size : resp->fd_size) > 0) {
                TruncatedBody *t = calloc(1, sizeof(TruncatedBody));
                uint64_t size = resp->body_kind == BODY_MEMORY ? resp->body_size : resp->fd_size;
                if (!t)
                        return NULL;
                t->memory = TAKE_PTR(resp->body);
                t->fd = TAKE_FD(resp->fd);
                t->offset = resp->fd_offset;
                t->limit = size / 2;
                m = MHD_create_response_from_callback(
                        size, 64 * 1024, truncated_reader, t, truncated_free);
                if (!m)
                        truncated_free(t);
                return m;
        }

        switch (resp->body_kind) {
        case BODY_NONE:
                m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
                break;
        case BODY_MEMORY:
                m = MHD_create_response_from_buffer_with_free_callback(
                        resp->body_size, resp->body, free);
                if (m)
                        resp->body = NULL;
                break;
        case BODY_FD:
                if (resp->fd_size == 0) {
                        m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
                        break;
                }
                m = MHD_create_response_from_fd_at_offset64(
                        resp->fd_size, resp->fd, resp->fd_offset);
                if (m)
                        resp->fd = -EBADF;
                break;
        case BODY_LENGTH_ONLY:
                /* HEAD: MHD sends Content-Length from the size and never calls the reader. */
                m = MHD_create_response_from_callback(
                        resp->fd_size, 4096, never_reader, NULL, NULL);
                break;
        }
        return m;
}

static void add_common_headers(EmuRequest *r) {
        char date[RFC1123_MAX];
        const char *client_id;

        (void)emu_reply_header(r, "Date", "%s", format_rfc1123(date, now_realtime_ns()));
        if (r->listener == EMU_LISTENER_FILES) {
                (void)emu_reply_header(r, "Server", "%s", EMU_SERVER_HEADER);
                (void)emu_reply_header(r, "x-ms-request-id", "%s", r->request_id);
                if (r->version)
                        (void)emu_reply_header(r, "x-ms-version", "%s", r->version);
                client_id = emu_request_header(r, "x-ms-client-request-id");
                if (client_id && strlen(client_id) <= EMU_CLIENT_REQUEST_ID_MAX)
                        (void)emu_reply_header(r, "x-ms-client-request-id", "%s", client_id);
        } else
                (void)emu_reply_header(r, "Server", "%s", "azfiles-emu-imds/1.0");
}

static enum MHD_Result send_reset(struct MHD_Connection *connection) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) {
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                (void)setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
        return MHD_NO; /* MHD closes the socket; with linger 0 that is a RST */
}

static void classify(EmuRequest *req) {
        req->op = _EMU_OP_INVALID;
        if (req->n_segments > 0 && streq(req->segments[0], EMU_ADMIN_SEGMENT)) {
                req->op = EMU_OP_ADMIN;
                return;
        }
        if (req->listener == EMU_LISTENER_IMDS) {
                req->op = emu_imds_classify(req);
                return;
        }
        req->op = emu_op_classify_files(
                req->method, emu_request_query(req, "restype"), emu_request_query(req, "comp"),
                req->n_segments > 0 ? req->n_segments - 1 : 0);
}

static void dispatch(EmuRequest *req) {
        if (req->op == EMU_OP_ADMIN)
                emu_admin_handle(req);
        else if (req->listener == EMU_LISTENER_IMDS)
                emu_imds_handle(req);
        else
                emu_files_handle(req);
}

static enum MHD_Result
handle_request(EmuContext *ctx, struct MHD_Connection *connection, const char *method) {
        EmuRequest req = {
                .emu = ctx->emu,
                .listener = ctx->listener,
                .method = method,
                .raw_uri = ctx->raw_uri,
                .body = ctx->body,
                .body_size = ctx->body_size,
                .op = _EMU_OP_INVALID,
                .received_ns = now_realtime_ns(),
                .response = &ctx->response,
                .connection = connection,
        };
        EmuFaultDecision fault = {.kind = EMU_FAULT_NONE};
        struct MHD_Response *m;
        enum MHD_Result ret;
        int r;

        make_request_id(req.request_id);
        if (!req.body) {
                req.body = ctx->body = strdup("");
                if (!req.body)
                        return MHD_NO;
        }

        r = emu_parse_uri(
                ctx->raw_uri, &req.raw_path, &req.raw_query, &req.segments, &req.n_segments,
                &req.query, &req.n_query);
        if (r < 0) {
                req.raw_path = req.raw_query = NULL;
                req.version = emu_request_header(&req, "x-ms-version");
                (void)emu_reply_error(&req, 400, "InvalidUri", NULL, NULL);
        } else {
                /* With a SAS the service version is the token's sv=, not a header. */
                req.version = emu_request_header(&req, "x-ms-version");
                if (!req.version && emu_request_query(&req, "sig"))
                        req.version = emu_request_query(&req, "sv");
                classify(&req);
                if (req.op >= 0) {
                        atomic_fetch_add((_Atomic uint64_t *)&ctx->emu->counters[req.op][0], 1);
                        if (req.op != EMU_OP_ADMIN && ctx->emu->faults)
                                fault = emu_faults_decide(ctx->emu->faults, req.op);
                }
                if (fault.kind != EMU_FAULT_NONE)
                        atomic_fetch_add((_Atomic uint64_t *)&ctx->emu->counters[req.op][1], 1);
                if (fault.latency_ms > 0) {
                        struct timespec ts = {
                                .tv_sec = fault.latency_ms / 1000,
                                .tv_nsec = (long)(fault.latency_ms % 1000) * 1000000L};
                        /* Injected service latency, not synchronisation. */
                        (void)nanosleep(&ts, NULL);
                }
                if (fault.kind == EMU_FAULT_RESET) {
                        ret = send_reset(connection);
                        goto out;
                }
                if (ctx->body_too_large)
                        (void)emu_reply_error(&req, 413, "RequestBodyTooLarge", NULL, NULL);
                else if (fault.kind == EMU_FAULT_BUSY) {
                        (void)emu_reply_header(&req, "Retry-After", "%u", fault.retry_after_s);
                        (void)emu_reply_error(&req, 503, "ServerBusy", NULL, NULL);
                } else if (fault.kind == EMU_FAULT_INTERNAL)
                        (void)emu_reply_error(&req, 500, "OperationTimedOut", NULL, NULL);
                else {
                        req.fault = fault.kind;
                        dispatch(&req);
                }
                if (fault.answer_latency_ms > 0) {
                        struct timespec ts = {
                                .tv_sec = fault.answer_latency_ms / 1000,
                                .tv_nsec = (long)(fault.answer_latency_ms % 1000) * 1000000L};
                        /* Injected latency of the answer (the operation is done), not
                         * synchronisation. */
                        (void)nanosleep(&ts, NULL);
                }
        }

        assert(ctx->response.replied);
        add_common_headers(&req);
        m = build_mhd_response(&ctx->response, fault.kind == EMU_FAULT_TRUNCATE);
        if (!m) {
                ret = MHD_NO;
                goto out;
        }
        for (size_t i = 0; i < ctx->response.n_headers; i++)
                (void)MHD_add_response_header(
                        m, ctx->response.headers[i].name, ctx->response.headers[i].value);
        ret = MHD_queue_response(connection, ctx->response.status, m);
        MHD_destroy_response(m);
out:
        free(req.raw_path);
        free(req.raw_query);
        strv_free_n(req.segments, req.n_segments);
        emu_query_params_free(req.query, req.n_query);
        return ret;
}

static enum MHD_Result access_handler(
        void *cls,
        struct MHD_Connection *connection,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        EmuContext *ctx = *con_cls;
        (void)cls;
        (void)url;
        (void)version;

        if (!ctx)
                return MHD_NO;

        if (!ctx->started) {
                ctx->started = true;
                return MHD_YES; /* headers only; the body (if any) follows */
        }

        if (*upload_data_size > 0) {
                size_t n = *upload_data_size;
                if (!ctx->body_too_large) {
                        if (ctx->body_size + n > EMU_BODY_MAX) {
                                ctx->body_too_large = true;
                                free(ctx->body);
                                ctx->body = NULL;
                                ctx->body_size = ctx->body_alloc = 0;
                        } else {
                                if (ctx->body_size + n + 1 > ctx->body_alloc) {
                                        const char *cl = MHD_lookup_connection_value(
                                                connection, MHD_HEADER_KIND, "Content-Length");
                                        size_t want =
                                                MAX(ctx->body_alloc * 2, ctx->body_size + n + 1);
                                        unsigned long long declared =
                                                cl ? strtoull(cl, NULL, 10) : 0;
                                        if (declared > 0 && declared < EMU_BODY_MAX)
                                                want = MAX(want, (size_t)declared + 1);
                                        want = MIN(want, (size_t)EMU_BODY_MAX + 1);
                                        char *nb = realloc(ctx->body, want);
                                        if (!nb)
                                                return MHD_NO;
                                        ctx->body = nb;
                                        ctx->body_alloc = want;
                                }
                                memcpy(ctx->body + ctx->body_size, upload_data, n);
                                ctx->body_size += n;
                                ctx->body[ctx->body_size] = '\0';
                        }
                }
                *upload_data_size = 0;
                return MHD_YES;
        }

        return handle_request(ctx, connection, method);
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len) {
        _cleanup_free_ char *host = NULL;
        const char *colon;
        char *end;
        unsigned long port;

        if (listen[0] == '[') {
                const char *close = strchr(listen, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(listen + 1, (size_t)(close - listen - 1));
                colon = close + 1;
        } else {
                colon = strrchr(listen, ':');
                if (!colon)
                        return -EINVAL;
                host = strndup(listen, (size_t)(colon - listen));
        }
        if (!host)
                return -ENOMEM;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || *end != '\0' || end == colon + 1 || port > 65535)
                return -EINVAL;

        memset(ss, 0, sizeof(*ss));
        struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                in4->sin_family = AF_INET;
                in4->sin_port = htons((uint16_t)port);
                *len = sizeof(*in4);
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)port);
                *len = sizeof(*in6);
        } else
                return -EINVAL;
        return 0;
}

_printf_(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512];
        (void)cls;
        (void)vsnprintf(buf, sizeof(buf), fmt, ap);
        buf[strcspn(buf, "\n")] = '\0';
        log_debug("libmicrohttpd: %s", buf);
}

/* A socket bound to ADDR:PORT and listening (SOCK_CLOEXEC, non-blocking, SO_REUSEADDR and
 * IPV6_V6ONLY as libmicrohttpd sets on sockets of its own), and its URL. */
int emu_server_listen(Emulator *emu, EmuListener which, const char *addr, char **ret_url) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        bool v6;
        socklen_t len;
        char host[INET6_ADDRSTRLEN];
        uint16_t port;
        char *url;
        int r;

        r = parse_listen(addr, &ss, &len);
        if (r < 0)
                return r;
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) < 0)
                return -errno;
        if (ss.ss_family == AF_INET6 &&
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &(int){1}, sizeof(int)) < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
                return -errno;
        len = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
                return -errno;
        v6 = ss.ss_family == AF_INET6;
        (void)inet_ntop(
                ss.ss_family, v6 ? (void *)&in6->sin6_addr : (void *)&in4->sin_addr, host,
                sizeof(host));
        port = ntohs(v6 ? in6->sin6_port : in4->sin_port);
        r = asprintf(
                &url, "http://%s%s%s:%u%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port,
                which == EMU_LISTENER_FILES ? "/" : "",
                which == EMU_LISTENER_FILES ? emu->account : "");
        if (r < 0)
                return -ENOMEM;
        listen_fds[which] = TAKE_FD(fd);
        *ret_url = url;
        return 0;
}

int emu_server_start(Emulator *emu, EmuListener which) {
        struct MHD_Daemon *d;

        assert(listen_fds[which] >= 0);
        if (request_id_prefix == 0 &&
            getrandom(&request_id_prefix, sizeof(request_id_prefix), 0) < 0)
                request_id_prefix = (uint32_t)getpid();

        listener_data[which] = (ListenerData){.emu = emu, .which = which};
        d = MHD_start_daemon(
                MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                0, NULL, NULL, access_handler, &listener_data[which], MHD_OPTION_LISTEN_SOCKET,
                (MHD_socket)listen_fds[which], MHD_OPTION_URI_LOG_CALLBACK, uri_logger,
                &listener_data[which], MHD_OPTION_UNESCAPE_CALLBACK, unescape_none, NULL,
                MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
                (unsigned)1024, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
        if (!d)
                return -EADDRNOTAVAIL;
        listen_fds[which] = -EBADF; /* the daemon's now: MHD_stop_daemon closes it */
        if (which == EMU_LISTENER_FILES)
                emu->files_daemon = d;
        else
                emu->imds_daemon = d;
        return 0;
}

void emu_server_stop(Emulator *emu) {
        if (emu->files_daemon)
                MHD_stop_daemon(emu->files_daemon);
        if (emu->imds_daemon)
                MHD_stop_daemon(emu->imds_daemon);
        emu->files_daemon = emu->imds_daemon = NULL;
}
