/* SPDX-License-Identifier: MIT */
#include "rest-client.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <systemd/sd-event.h>

#include "http-client.h"
#include "imds-client.h"
#include "log.h"
#include "loop-queue.h"
#include "macro.h"
#include "rest-error.h"
#include "sharedkey.h"
#include "strbuf.h"
#include "time-util.h"
#include "url-util.h"

#define REST_LIST_BODY_MAX (64u * 1024u * 1024u)
#define REST_SMALL_BODY_MAX (64u * 1024u)
#define REST_RETRY_AFTER_MAX_MS (10u * 60u * 1000u)

/* Idempotency: whether sending the op again after a failure that leaves it unclear whether the
 * service executed it (500, 502, 504, 408, connection reset, timeout mid-transfer) gives the same
 * end state as sending it once.
 *   reads (properties, stats, list, get range)      yes: no state changes
 *   put range (update, clear)                        yes: the same bytes at the same offset
 *                                                    (the caller keeps the source range stable)
 *   set properties/metadata                          yes: absolute values replace the old ones
 *   create file                                      yes: "create or replace" with the same
 *                                                    size and properties; the caller orders
 *                                                    it before its own writes
 *   delete file/directory                            yes, and a 404 on a retry after an unclear
 *                                                    failure counts as success (the end state,
 *                                                    "gone", is what was asked)
 *   create directory                                 no: a retry may see its own success as 409
 *   rename                                           no: a retry may see 404 (source already
 *                                                    moved) or replace a file created since
 *   lease                                            no: acquire/change/break are not repeatable
 * Non-idempotent ops are retried only on failures that prove nothing was executed: 503 and 429
 * (throttled before execution), connection refused, host or network unreachable; and they go on
 * a new connection, where curl never resends on its own (it does on a reused connection that
 * dies before any byte of the answer: then the answer is to the second copy, and the try counts
 * as an unclear failure). */
static const bool op_idempotent[_REST_OP_TYPE_MAX] = {
        [REST_OP_GET_SHARE_PROPERTIES] = true,
        [REST_OP_GET_SHARE_STATS] = true,
        [REST_OP_CREATE_DIRECTORY] = false,
        [REST_OP_DELETE_DIRECTORY] = true,
        [REST_OP_GET_DIRECTORY_PROPERTIES] = true,
        [REST_OP_LIST_DIRECTORY] = true,
        [REST_OP_CREATE_FILE] = true,
        [REST_OP_PUT_RANGE] = true,
        [REST_OP_CLEAR_RANGE] = true,
        [REST_OP_GET_RANGE] = true,
        [REST_OP_GET_FILE_PROPERTIES] = true,
        [REST_OP_SET_FILE_PROPERTIES] = true,
        [REST_OP_SET_METADATA] = true,
        [REST_OP_DELETE_FILE] = true,
        [REST_OP_RENAME] = false,
        [REST_OP_LEASE] = false,
};

static const char *const op_names[_REST_OP_TYPE_MAX] = {
        [REST_OP_GET_SHARE_PROPERTIES] = "GetShareProperties",
        [REST_OP_GET_SHARE_STATS] = "GetShareStats",
        [REST_OP_CREATE_DIRECTORY] = "CreateDirectory",
        [REST_OP_DELETE_DIRECTORY] = "DeleteDirectory",
        [REST_OP_GET_DIRECTORY_PROPERTIES] = "GetDirectoryProperties",
        [REST_OP_LIST_DIRECTORY] = "ListDirectory",
        [REST_OP_CREATE_FILE] = "CreateFile",
        [REST_OP_PUT_RANGE] = "PutRange",
        [REST_OP_CLEAR_RANGE] = "ClearRange",
        [REST_OP_GET_RANGE] = "GetRange",
        [REST_OP_GET_FILE_PROPERTIES] = "GetFileProperties",
        [REST_OP_SET_FILE_PROPERTIES] = "SetFileProperties",
        [REST_OP_SET_METADATA] = "SetMetadata",
        [REST_OP_DELETE_FILE] = "DeleteFile",
        [REST_OP_RENAME] = "Rename",
        [REST_OP_LEASE] = "Lease",
};

const char *rest_op_type_to_string(RestOpType t) {
        if (t < 0 || t >= _REST_OP_TYPE_MAX)
                return NULL;
        return op_names[t];
}

bool rest_op_is_idempotent(RestOpType t) {
        return t >= 0 && t < _REST_OP_TYPE_MAX && op_idempotent[t];
}

typedef struct RestCall RestCall;

/* The HTTP callback's userdata; outlives the call when the client is freed mid-transfer. */
typedef struct HttpTicket {
        RestCall *call; /* NULL once orphaned */
} HttpTicket;

struct RestCall {
        RestClient *rc;
        RestCall *prev, *next;
        uint64_t id;
        RestOpType type;
        RestDoneFn cb;
        void *userdata;
        uint64_t token_gen; /* bearer: the token this try was sent with */
        bool token_refused; /* the share answered 401 to a token: a new one was fetched once */

        /* The op, deep-copied; paths percent-encoded. */
        char *path;
        char *source_path;
        char *marker, *prefix;
        unsigned max_results;
        bool is_directory, set_size, replace_if_exists, preserve_last_write;
        uint64_t size, offset, length, fd_offset;
        int fd;
        void *data;
        RestSmbProps smb;
        RestMetadata *metadata;
        size_t n_metadata;
        RestLeaseAction lease_action;
        char *lease_id, *proposed_lease_id;

        /* Progress. */
        char client_request_id[40];
        unsigned attempts;
        int64_t first_ns;
        HttpTicket *ticket; /* while a transfer runs */
        uint64_t http_id;
        sd_event_source *retry_timer;
        bool waiting_token;
        bool cancelled;
        bool unclear_failure; /* an earlier try may have been executed */
        RestListParser *list_parser;

        /* The last answer. */
        int error;
        long status;
        char *error_code, *error_message, *request_id;
        RestProperties props;
        uint64_t share_usage;
        uint64_t bytes;
        bool eof;
        RestListPage *page;
};

struct RestClient {
        sd_event *event;
        HttpClient *http;
        ImdsClient *imds;
        LoopQueue *inbox;
        RestAuthKind auth;
        char *endpoint;  /* scheme://host[:port] + path prefix */
        char *base_path; /* encoded path prefix + "/" + share, as sent, e.g. "/acct/share" */
        char *account, *share, *version, *sas;
        uint8_t *key;
        size_t key_size;
        uint64_t meta_timeout_ms, data_timeout_ms, connect_timeout_ms;
        uint32_t low_speed_bytes, low_speed_s;
        unsigned max_attempts;
        uint64_t retry_base_ms, retry_max_delay_ms, retry_budget_ms;
        uint64_t rng;
        RestCall *calls; /* loop thread: every live call */
        _Atomic size_t n_calls;
        _Atomic uint64_t next_id;
        bool freeing;
};

typedef struct CancelItem {
        RestClient *rc;
        uint64_t id;
} CancelItem;

static void call_attempt(RestCall *call);
static void on_token(int error, const char *token, void *userdata);

/* ---- paths ---------------------------------------------------------------------------------- */

int rest_encode_path(const char *path, char **ret) {
        StrBuf b = {.cap = REST_PATH_MAX * 3};
        const char *p = path;
        int r;

        if (!path || strlen(path) > REST_PATH_MAX)
                return -EINVAL;
        if (*p == '\0') {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t)(slash - p) : strlen(p);
                _cleanup_free_ char *seg = NULL, *enc = NULL;

                if (len == 0 || (len == 1 && p[0] == '.') ||
                    (len == 2 && p[0] == '.' && p[1] == '.')) {
                        strbuf_done(&b);
                        return -EINVAL;
                }
                seg = strndup(p, len);
                if (!seg) {
                        strbuf_done(&b);
                        return -ENOMEM;
                }
                r = url_percent_encode(seg, false, &enc);
                if (r >= 0)
                        r = strbuf_append_char(&b, '/');
                if (r >= 0)
                        r = strbuf_append(&b, enc);
                if (r < 0) {
                        strbuf_done(&b);
                        return r == -E2BIG ? -EINVAL : r;
                }
                if (!slash)
                        break;
                p = slash + 1;
        }
        return strbuf_steal(&b, ret);
}

/* ---- call life cycle ----------------------------------------------------------------------- */

static void call_free(RestCall *call) {
        if (!call)
                return;
        free(call->path);
        free(call->source_path);
        free(call->marker);
        free(call->prefix);
        free(call->data);
        rest_metadata_free(call->metadata, call->n_metadata);
        free(call->lease_id);
        free(call->proposed_lease_id);
        free(call->error_code);
        free(call->error_message);
        free(call->request_id);
        rest_properties_done(&call->props);
        (void)rest_list_parser_free(call->list_parser);
        (void)rest_list_page_free(call->page);
        call->retry_timer = sd_event_source_disable_unref(call->retry_timer);
        free(call);
}

static void call_unlink(RestCall *call) {
        RestClient *rc = call->rc;

        if (call->prev)
                call->prev->next = call->next;
        else if (rc->calls == call)
                rc->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
        atomic_fetch_sub(&rc->n_calls, 1);
}

static void call_link(RestCall *call) {
        RestClient *rc = call->rc;

        call->next = rc->calls;
        if (rc->calls)
                rc->calls->prev = call;
        rc->calls = call;
}

/* Runs the callback once and frees the call. */
static void call_finish(RestCall *call, int error) {
        RestResult res = {
                .id = call->id,
                .type = call->type,
                .error = error,
                .status = call->status,
                .error_code = call->error_code,
                .error_message = call->error_message,
                .request_id = call->request_id,
                .client_request_id = call->client_request_id,
                .attempts = call->attempts,
                .props = &call->props,
                .page = error == 0 ? call->page : NULL,
                .share_usage_bytes = call->share_usage,
                .bytes = call->bytes,
                .eof = call->eof,
        };

        if (error != 0)
                rest_properties_done(&call->props);
        call_unlink(call);
        if (call->waiting_token && call->rc->imds)
                imds_client_cancel_waiter(call->rc->imds, on_token, call);
        call->cb(&res, call->userdata);
        if (error == 0)
                call->page = res.page; /* the callback may have taken it */
        call_free(call);
}

/* ---- building a request ---------------------------------------------------------------------- */

static const char *req_get_header(void *userdata, const char *name) {
        return http_request_get_header(userdata, name);
}

static int req_foreach_header(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        return http_request_foreach_header(userdata, cb, cbdata);
}

static int add_time_header(HttpRequest *req, const char *name, int64_t ns, const char *dflt) {
        char buf[ISO8601_MAX];

        if (ns != 0)
                return http_request_add_header(req, name, format_iso8601(buf, ns));
        if (dflt)
                return http_request_add_header(req, name, dflt);
        return 0;
}

static int add_smb_headers(HttpRequest *req, const RestSmbProps *smb, bool set) {
        const char *dflt = set ? "preserve" : NULL;
        char attrs[256];
        int r;

        if ((r = add_time_header(req, "x-ms-file-creation-time", smb->creation_ns, dflt)) < 0 ||
            (r = add_time_header(req, "x-ms-file-last-write-time", smb->last_write_ns, dflt)) < 0 ||
            (r = add_time_header(req, "x-ms-file-change-time", smb->change_ns, NULL)) < 0)
                return r;
        if (smb->attributes != 0)
                return http_request_add_header(
                        req, "x-ms-file-attributes",
                        rest_attributes_format(smb->attributes, attrs, sizeof(attrs)));
        if (set)
                return http_request_add_header(req, "x-ms-file-attributes", "preserve");
        return 0;
}

static int add_metadata(HttpRequest *req, const RestCall *call) {
        for (size_t i = 0; i < call->n_metadata; i++) {
                _cleanup_free_ char *name = NULL;
                int r;
                if (asprintf(&name, "x-ms-meta-%s", call->metadata[i].name) < 0)
                        return -ENOMEM;
                r = http_request_add_header(req, name, call->metadata[i].value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int add_range_header(HttpRequest *req, uint64_t offset, uint64_t length) {
        char buf[80];

        (void)snprintf(
                buf, sizeof(buf), "bytes=%llu-%llu", (unsigned long long)offset,
                (unsigned long long)(offset + length - 1));
        return http_request_add_header(req, "x-ms-range", buf);
}

static int on_list_data(const void *data, size_t size, void *userdata) {
        RestCall *call = userdata;
        return rest_list_parser_feed(call->list_parser, data, size);
}

static void on_http_done(const HttpResult *res, void *userdata);

/* Method, query and op-specific headers. */
static int call_build_op(RestCall *call, HttpRequest **ret, StrBuf *query) {
        RestClient *rc = call->rc;
        const char *method = "GET";
        bool dir = call->is_directory;
        int r = 0;

        switch (call->type) {
        case REST_OP_GET_SHARE_PROPERTIES:
                r = strbuf_append(query, "restype=share");
                break;
        case REST_OP_GET_SHARE_STATS:
                r = strbuf_append(query, "restype=share&comp=stats");
                break;
        case REST_OP_CREATE_DIRECTORY:
                method = "PUT";
                r = strbuf_append(query, "restype=directory");
                break;
        case REST_OP_DELETE_DIRECTORY:
                method = "DELETE";
                r = strbuf_append(query, "restype=directory");
                break;
        case REST_OP_GET_DIRECTORY_PROPERTIES:
                method = "HEAD";
                r = strbuf_append(query, "restype=directory");
                break;
        case REST_OP_LIST_DIRECTORY:
                r = strbuf_append(
                        query, "restype=directory&comp=list&include=Timestamps,Etag,Attributes");
                if (r >= 0 && call->max_results > 0)
                        r = strbuf_appendf(query, "&maxresults=%u", call->max_results);
                if (r >= 0 && call->marker)
                        r = strbuf_appendf(query, "&marker=%s", call->marker);
                if (r >= 0 && call->prefix)
                        r = strbuf_appendf(query, "&prefix=%s", call->prefix);
                break;
        case REST_OP_CREATE_FILE:
        case REST_OP_DELETE_FILE:
        case REST_OP_GET_RANGE:
                method = call->type == REST_OP_CREATE_FILE   ? "PUT"
                         : call->type == REST_OP_DELETE_FILE ? "DELETE"
                                                             : "GET";
                break;
        case REST_OP_GET_FILE_PROPERTIES:
                method = "HEAD";
                break;
        case REST_OP_PUT_RANGE:
        case REST_OP_CLEAR_RANGE:
                method = "PUT";
                r = strbuf_append(query, "comp=range");
                break;
        case REST_OP_SET_FILE_PROPERTIES:
                method = "PUT";
                r = strbuf_append(query, "comp=properties");
                break;
        case REST_OP_SET_METADATA:
                method = "PUT";
                r = strbuf_append(query, dir ? "restype=directory&comp=metadata" : "comp=metadata");
                break;
        case REST_OP_RENAME:
                method = "PUT";
                r = strbuf_append(query, dir ? "restype=directory&comp=rename" : "comp=rename");
                break;
        case REST_OP_LEASE:
                method = "PUT";
                r = strbuf_append(query, "comp=lease");
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return r;
        if (rc->auth == REST_AUTH_SAS)
                r = strbuf_appendf(query, "%s%s", query->len > 0 ? "&" : "", rc->sas);
        if (r < 0)
                return r;
        {
                _cleanup_free_ char *url = NULL;
                if (asprintf(
                            &url, "%s/%s%s%s%s", rc->endpoint, rc->share, call->path,
                            query->len > 0 ? "?" : "", query->len > 0 ? query->data : "") < 0)
                        return -ENOMEM;
                return http_request_new(method, url, ret);
        }
}

static int call_add_op_headers(RestCall *call, HttpRequest *req) {
        RestClient *rc = call->rc;
        char num[32];
        int r = 0;

        switch (call->type) {
        case REST_OP_CREATE_DIRECTORY:
                if ((r = add_smb_headers(req, &call->smb, false)) < 0)
                        return r;
                return add_metadata(req, call);
        case REST_OP_LIST_DIRECTORY:
                return http_request_add_header(req, "x-ms-file-extended-info", "true");
        case REST_OP_CREATE_FILE:
                (void)snprintf(num, sizeof(num), "%llu", (unsigned long long)call->size);
                if ((r = http_request_add_header(req, "x-ms-type", "file")) < 0 ||
                    (r = http_request_add_header(req, "x-ms-content-length", num)) < 0 ||
                    (r = add_smb_headers(req, &call->smb, false)) < 0)
                        return r;
                return add_metadata(req, call);
        case REST_OP_PUT_RANGE:
                if ((r = add_range_header(req, call->offset, call->length)) < 0 ||
                    (r = http_request_add_header(req, "x-ms-write", "update")) < 0)
                        return r;
                if (call->preserve_last_write &&
                    (r = http_request_add_header(req, "x-ms-file-last-write-time", "preserve")) < 0)
                        return r;
                if (call->data)
                        return http_request_set_body(req, call->data, call->length);
                return http_request_set_body_fd(req, call->fd, call->fd_offset, call->length);
        case REST_OP_CLEAR_RANGE:
                if ((r = add_range_header(req, call->offset, call->length)) < 0 ||
                    (r = http_request_add_header(req, "x-ms-write", "clear")) < 0)
                        return r;
                return http_request_set_body(req, NULL, 0);
        case REST_OP_GET_RANGE:
                http_request_set_sink_fd(req, call->fd, call->fd_offset, call->length);
                return add_range_header(req, call->offset, call->length);
        case REST_OP_SET_FILE_PROPERTIES:
                if (call->set_size) {
                        (void)snprintf(num, sizeof(num), "%llu", (unsigned long long)call->size);
                        if ((r = http_request_add_header(req, "x-ms-content-length", num)) < 0)
                                return r;
                }
                return add_smb_headers(req, &call->smb, true);
        case REST_OP_SET_METADATA:
                return add_metadata(req, call);
        case REST_OP_RENAME: {
                _cleanup_free_ char *src = NULL;
                if (asprintf(
                            &src, "%s/%s%s%s%s", rc->endpoint, rc->share, call->source_path,
                            rc->auth == REST_AUTH_SAS ? "?" : "",
                            rc->auth == REST_AUTH_SAS ? rc->sas : "") < 0)
                        return -ENOMEM;
                if ((r = http_request_add_header(req, "x-ms-file-rename-source", src)) < 0 ||
                    (r = http_request_add_header(
                             req, "x-ms-file-rename-replace-if-exists",
                             call->replace_if_exists ? "true" : "false")) < 0)
                        return r;
                if (call->lease_id)
                        return http_request_add_header(req, "x-ms-source-lease-id", call->lease_id);
                return 0;
        }
        case REST_OP_LEASE: {
                static const char *const actions[_REST_LEASE_ACTION_MAX] = {
                        "acquire", "change", "release", "break"};
                if ((r = http_request_add_header(
                             req, "x-ms-lease-action", actions[call->lease_action])) < 0)
                        return r;
                if (call->lease_action == REST_LEASE_ACQUIRE &&
                    (r = http_request_add_header(req, "x-ms-lease-duration", "-1")) < 0)
                        return r;
                if (call->lease_id &&
                    (r = http_request_add_header(req, "x-ms-lease-id", call->lease_id)) < 0)
                        return r;
                if (call->proposed_lease_id)
                        return http_request_add_header(
                                req, "x-ms-proposed-lease-id", call->proposed_lease_id);
                return 0;
        }
        default:
                return 0;
        }
}

static bool op_takes_lease_id(RestOpType t) {
        return t == REST_OP_PUT_RANGE || t == REST_OP_CLEAR_RANGE ||
               t == REST_OP_SET_FILE_PROPERTIES || t == REST_OP_SET_METADATA ||
               t == REST_OP_DELETE_FILE || t == REST_OP_CREATE_FILE;
}

/* What is left of the call's retry budget, in ms. */
static uint64_t call_budget_left_ms(const RestCall *call) {
        uint64_t elapsed_ms = (uint64_t)(now_monotonic_ns() - call->first_ns) / 1000000;
        return elapsed_ms >= call->rc->retry_budget_ms ? 0 : call->rc->retry_budget_ms - elapsed_ms;
}

static int call_build(RestCall *call, const char *token, HttpRequest **ret) {
        RestClient *rc = call->rc;
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *authz = NULL, *path = NULL;
        StrBuf query = {.cap = 16 * 1024};
        char date[RFC1123_MAX];
        bool data_op = call->type == REST_OP_GET_RANGE || call->type == REST_OP_PUT_RANGE;
        int r;

        r = call_build_op(call, &req, &query);
        if (r < 0) {
                strbuf_done(&query);
                return r;
        }
        if ((r = http_request_add_header(req, "x-ms-version", rc->version)) < 0 ||
            (r = http_request_add_header(
                     req, "x-ms-date", format_rfc1123(date, now_realtime_ns()))) < 0 ||
            (r = http_request_add_header(req, "x-ms-client-request-id", call->client_request_id)) <
                    0 ||
            (r = call_add_op_headers(call, req)) < 0)
                goto finish;
        if (call->lease_id && op_takes_lease_id(call->type) &&
            (r = http_request_add_header(req, "x-ms-lease-id", call->lease_id)) < 0)
                goto finish;

        if (rc->auth == REST_AUTH_BEARER) {
                _cleanup_free_ char *bearer = NULL;
                if (asprintf(&bearer, "Bearer %s", token) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                if ((r = http_request_add_header(req, "Authorization", bearer)) < 0 ||
                    (r = http_request_add_header(req, "x-ms-file-request-intent", "backup")) < 0)
                        goto finish;
        } else if (rc->auth == REST_AUTH_SHARED_KEY) {
                SharedKeyRequest skr;
                const char *sk_query;

                if (asprintf(&path, "%s%s", rc->base_path, call->path) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                sk_query = query.data ? query.data : "";
                skr = (SharedKeyRequest){
                        .method = http_request_method(req),
                        .account = rc->account,
                        .encoded_path = path,
                        .raw_query = sk_query,
                        .get_header = req_get_header,
                        .foreach_header = req_foreach_header,
                        .userdata = req,
                };
                /* Content-Length is added for bodies before signing; an absent one signs as the
                 * empty "0" would. */
                r = sharedkey_authorization(&skr, SHARED_KEY, rc->key, rc->key_size, &authz);
                if (r < 0)
                        goto finish;
                if ((r = http_request_add_header(req, "Authorization", authz)) < 0)
                        goto finish;
        }

        /* The retry budget bounds the whole call, this try included. */
        uint64_t left_ms = call_budget_left_ms(call);
        if (left_ms == 0) {
                r = -ETIMEDOUT;
                goto finish;
        }
        http_request_set_timeouts(
                req, MIN(data_op ? rc->data_timeout_ms : rc->meta_timeout_ms, left_ms),
                MIN(rc->connect_timeout_ms, left_ms), rc->low_speed_bytes, rc->low_speed_s);
        /* A request a caller waits for (a lookup, a listing, a rename...) is bounded also while
         * it waits for a connection slot behind others. Not the requests that move data or make
         * an upload round (Create File, Set File Properties): many of them are queued at once
         * by design, and one not sent in time would fail the round. */
        if (!data_op && call->type != REST_OP_CLEAR_RANGE && call->type != REST_OP_CREATE_FILE &&
            call->type != REST_OP_SET_FILE_PROPERTIES)
                http_request_set_deadline(
                        req, (uint64_t)call->first_ns + rc->retry_budget_ms * 1000000);
        /* Not resent by curl on its own after the share may have carried it out. */
        http_request_set_fresh_connect(req, !op_idempotent[call->type]);
        if (call->type == REST_OP_LIST_DIRECTORY) {
                call->list_parser = rest_list_parser_free(call->list_parser);
                r = rest_list_parser_new(&call->list_parser);
                if (r < 0)
                        goto finish;
                http_request_set_sink_callback(req, on_list_data, call, REST_LIST_BODY_MAX);
        } else if (call->type != REST_OP_GET_RANGE)
                http_request_set_sink_memory(req, REST_SMALL_BODY_MAX);
        *ret = TAKE_PTR(req);
        r = 0;
finish:
        strbuf_done(&query);
        return r;
}

/* ---- retries ------------------------------------------------------------------------------- */

static uint64_t rng_next(RestClient *rc) {
        /* xorshift64*: jitter only, not security. */
        rc->rng ^= rc->rng >> 12;
        rc->rng ^= rc->rng << 25;
        rc->rng ^= rc->rng >> 27;
        return rc->rng * UINT64_C(2685821657736338717);
}

/* Server-requested delay in ms, or -1. */
static int64_t retry_after_ms(const HttpResult *res) {
        const char *v;
        uint64_t n;
        int64_t t;

        if ((v = http_result_header(res, "x-ms-retry-after-ms")) ||
            (v = http_result_header(res, "retry-after-ms")))
                if (rest_parse_u64(v, &n) == 0)
                        return (int64_t)MIN(n, (uint64_t)REST_RETRY_AFTER_MAX_MS);
        if ((v = http_result_header(res, "Retry-After"))) {
                if (rest_parse_u64(v, &n) == 0)
                        return (int64_t)MIN(n, (uint64_t)REST_RETRY_AFTER_MAX_MS / 1000) * 1000;
                if (parse_rfc1123(v, &t) == 0) {
                        int64_t d = (t - now_realtime_ns()) / 1000000;
                        return CLAMP(d, 0, (int64_t)REST_RETRY_AFTER_MAX_MS);
                }
        }
        return -1;
}

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        RestCall *call = userdata;

        call->retry_timer = sd_event_source_disable_unref(call->retry_timer);
        call_attempt(call);
        return 0;
}

/* Schedules another try when the policy allows: true if scheduled. */
static bool call_maybe_retry(RestCall *call, bool unclear, int64_t server_delay_ms) {
        RestClient *rc = call->rc;
        uint64_t delay_ms, cap, elapsed_ms, now;
        unsigned shift;

        if (call->cancelled || rc->freeing)
                return false;
        if (unclear && !op_idempotent[call->type])
                return false;
        if (call->attempts >= rc->max_attempts)
                return false;
        shift = MIN(call->attempts - 1, 20u);
        cap = MIN(rc->retry_base_ms << shift, rc->retry_max_delay_ms);
        delay_ms = cap / 2 + (cap > 1 ? rng_next(rc) % (cap / 2 + 1) : 0);
        /* The server's delay is the least to wait: Retry-After 0 is no reason to hammer it,
         * and the jitter keeps a pool's VMs from retrying in step. */
        if (server_delay_ms >= 0)
                delay_ms = MAX(delay_ms, (uint64_t)server_delay_ms);
        elapsed_ms = (uint64_t)(now_monotonic_ns() - call->first_ns) / 1000000;
        if (elapsed_ms + delay_ms >= rc->retry_budget_ms)
                return false;
        if (unclear)
                call->unclear_failure = true;
        if (sd_event_now(rc->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_add_time(
                    rc->event, &call->retry_timer, CLOCK_MONOTONIC, now + delay_ms * 1000, 1000,
                    on_retry_timer, call) < 0)
                return false;
        log_debug(
                "%s %s: try %u failed (status %ld, %s), retrying in %llu ms", op_names[call->type],
                call->client_request_id, call->attempts, call->status,
                call->error_code ? call->error_code : "-", (unsigned long long)delay_ms);
        return true;
}

/* ---- answers ------------------------------------------------------------------------------- */

static int replace_str(char **dst, const char *src) {
        char *s = NULL;
        if (src && !(s = strdup(src)))
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

static const char *res_get_header(void *userdata, const char *name) {
        return http_result_header(userdata, name);
}

static int res_foreach_header(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        const HttpResult *res = userdata;
        for (size_t i = 0; i < res->n_headers; i++) {
                int k = cb(cbdata, res->headers[i].name, res->headers[i].value);
                if (k != 0)
                        return k;
        }
        return 0;
}

static bool op_requires_etag(RestOpType t) {
        return !(
                t == REST_OP_DELETE_FILE || t == REST_OP_DELETE_DIRECTORY ||
                t == REST_OP_GET_SHARE_STATS || t == REST_OP_LIST_DIRECTORY);
}

/* A 2xx answer: 0 or -EBADMSG for a malformed one. */
static int call_parse_success(RestCall *call, const HttpResult *res) {
        int r;

        rest_properties_done(&call->props);
        r = rest_properties_parse(&call->props, res_get_header, res_foreach_header, (void *)res);
        if (r < 0)
                return r;
        if (op_requires_etag(call->type) && isempty(call->props.etag))
                return -EBADMSG;
        switch (call->type) {
        case REST_OP_GET_FILE_PROPERTIES:
                if (!call->props.has_content_length)
                        return -EBADMSG;
                return 0;
        case REST_OP_GET_SHARE_STATS:
                return rest_xml_parse_share_stats(res->body, res->body_size, &call->share_usage);
        case REST_OP_LIST_DIRECTORY:
                call->page = rest_list_page_free(call->page);
                r = rest_list_parser_finish(call->list_parser, &call->page);
                call->list_parser = rest_list_parser_free(call->list_parser);
                return r;
        case REST_OP_GET_RANGE: {
                const char *cr = http_result_header(res, "Content-Range");
                unsigned long long s, e, total;
                int n;
                /* The bytes must be the ones asked for: a 200 with the whole file, or another
                 * range, would land at the wrong place of the cache file. Fewer than asked only
                 * where the file ends (the share clips a range there): else the rest of the
                 * piece would be taken for zeros. */
                if (res->status != 206 || !cr ||
                    (n = sscanf(cr, "bytes %llu-%llu/%llu", &s, &e, &total)) < 2 ||
                    s != call->offset || e < s || e - s + 1 != res->bytes_received ||
                    res->bytes_received > call->length ||
                    (res->bytes_received < call->length && (n != 3 || e + 1 != total)))
                        return -EBADMSG;
                call->bytes = res->bytes_received;
                return 0;
        }
        case REST_OP_LEASE:
                if (call->lease_action != REST_LEASE_BREAK &&
                    call->lease_action != REST_LEASE_RELEASE && !call->props.lease_id)
                        return -EBADMSG;
                return 0;
        default:
                return 0;
        }
}

static void on_http_done(const HttpResult *res, void *userdata) {
        HttpTicket *ticket = userdata;
        RestCall *call = ticket->call;
        const char *code;
        int error;

        free(ticket);
        if (!call)
                return; /* orphaned by rest_client_free() */
        call->ticket = NULL;
        if (call->cancelled) {
                call_finish(call, -ECANCELED);
                return;
        }

        call->status = res->status;
        (void)replace_str(&call->request_id, http_result_header(res, "x-ms-request-id"));
        if (res->resent)
                call->unclear_failure = true; /* the first copy may have been carried out */
        if (res->error == -E2BIG && res->status >= 200 && res->status <= 299) {
                /* A success with more than was asked for (a range longer than the request's, a
                 * body or headers over their caps): a malformed answer. */
                call_finish(call, -EBADMSG);
                return;
        }
        if (res->error < 0) {
                /* No (complete) answer. */
                bool retriable = rest_transport_error_is_retriable(res->error);
                bool unclear =
                        !(res->error == -ECONNREFUSED || res->error == -EHOSTUNREACH ||
                          res->error == -ENETUNREACH);
                if (res->error == -ECANCELED || res->status > 0)
                        unclear = true;
                if (retriable && call_maybe_retry(call, unclear, -1))
                        return;
                call_finish(call, res->error);
                return;
        }

        if (res->status >= 200 && res->status <= 299) {
                free(call->error_code);
                free(call->error_message);
                call->error_code = call->error_message = NULL;
                error = call_parse_success(call, res);
                call_finish(call, error);
                return;
        }

        /* An error answer: code from the header, else from the XML body (HEAD has none). */
        code = http_result_header(res, "x-ms-error-code");
        (void)replace_str(&call->error_code, code);
        free(call->error_message);
        call->error_message = NULL;
        if (res->body_size > 0) {
                _cleanup_free_ char *xcode = NULL;
                if (rest_xml_parse_error(res->body, res->body_size, &xcode, &call->error_message) ==
                            0 &&
                    !call->error_code)
                        call->error_code = TAKE_PTR(xcode);
        }
        if (call->type == REST_OP_GET_RANGE && res->status == 416) {
                /* At or past EOF, including any range of an empty file: a read of 0 bytes. */
                rest_properties_done(&call->props);
                (void)rest_properties_parse(
                        &call->props, res_get_header, res_foreach_header, (void *)res);
                call->eof = true;
                call->bytes = 0;
                call_finish(call, 0);
                return;
        }
        if ((call->type == REST_OP_DELETE_FILE || call->type == REST_OP_DELETE_DIRECTORY) &&
            res->status == 404 && call->unclear_failure &&
            (!call->error_code || strcaseeq(call->error_code, "ResourceNotFound"))) {
                /* An earlier try probably deleted it: the end state is the one asked for. */
                call_finish(call, 0);
                return;
        }
        if (res->status == 401 && call->rc->auth == REST_AUTH_BEARER && !call->token_refused) {
                /* The share refused the token (revoked, or expired by its clock): without this
                 * it was sent until its local refresh time, a day. Once per request, with a new
                 * one; the request was not carried out, so any may go again. */
                call->token_refused = true;
                imds_client_drop_token(call->rc->imds, call->token_gen);
                if (call_maybe_retry(call, false, 0))
                        return;
        }
        if (rest_status_is_retriable(res->status)) {
                bool unclear = !(res->status == 503 || res->status == 429);
                if (call_maybe_retry(call, unclear, retry_after_ms(res)))
                        return;
        }
        call_finish(call, rest_error_to_errno(res->status, call->error_code));
}

static void call_send(RestCall *call, const char *token) {
        RestClient *rc = call->rc;
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        HttpTicket *ticket;
        int r;

        if (rc->auth == REST_AUTH_BEARER)
                call->token_gen = imds_client_token_generation(rc->imds);
        r = call_build(call, token, &req);
        if (r < 0) {
                call_finish(call, r);
                return;
        }
        ticket = calloc(1, sizeof(HttpTicket));
        if (!ticket) {
                call_finish(call, -ENOMEM);
                return;
        }
        ticket->call = call;
        http_request_set_callback(req, on_http_done, ticket);
        r = http_client_submit(rc->http, req, &call->http_id);
        if (r < 0) {
                free(ticket);
                call_finish(call, r);
                return;
        }
        TAKE_PTR(req);
        call->ticket = ticket;
}

static void on_token(int error, const char *token, void *userdata) {
        RestCall *call = userdata;

        call->waiting_token = false;
        if (error < 0) {
                call_finish(call, error);
                return;
        }
        call_send(call, token);
}

static void call_attempt(RestCall *call) {
        RestClient *rc = call->rc;
        const char *token = NULL;
        int r;

        call->attempts++;
        if (rc->auth == REST_AUTH_BEARER && imds_client_peek_token(rc->imds, &token) < 0) {
                r = imds_client_get_token(rc->imds, on_token, call);
                if (r < 0) {
                        call_finish(call, r);
                        return;
                }
                call->waiting_token = true;
                return;
        }
        call_send(call, token);
}

/* ---- submit / cancel ------------------------------------------------------------------------- */

static void on_inbox_submit(void *userdata, bool cancelled) {
        RestCall *call = userdata;

        call_link(call);
        if (cancelled || call->rc->freeing) {
                call_finish(call, -ECANCELED);
                return;
        }
        call->first_ns = now_monotonic_ns();
        call_attempt(call);
}

static void on_inbox_cancel(void *userdata, bool cancelled) {
        CancelItem *item = userdata;
        RestClient *rc = item->rc;

        for (RestCall *call = cancelled ? NULL : rc->calls; call; call = call->next) {
                if (call->id != item->id || call->cancelled)
                        continue;
                call->cancelled = true;
                if (call->ticket)
                        (void)http_client_cancel(rc->http, call->http_id); /* finishes later */
                else
                        call_finish(call, -ECANCELED); /* waiting for a timer or a token */
                break;
        }
        free(item);
}

static int validate_op(const RestOp *op) {
        if (op->type < 0 || op->type >= _REST_OP_TYPE_MAX || !op->path)
                return -EINVAL;
        switch (op->type) {
        case REST_OP_PUT_RANGE:
        case REST_OP_CLEAR_RANGE:
        case REST_OP_GET_RANGE:
                if (op->length == 0 || op->offset > REST_FILE_SIZE_MAX ||
                    op->length > REST_FILE_SIZE_MAX - op->offset)
                        return -EINVAL;
                if (op->type == REST_OP_PUT_RANGE &&
                    (op->length > REST_PUT_RANGE_MAX || (op->fd < 0 && !op->data)))
                        return -EINVAL;
                if (op->type == REST_OP_GET_RANGE && op->fd < 0)
                        return -EBADF;
                return 0;
        case REST_OP_CREATE_FILE:
        case REST_OP_SET_FILE_PROPERTIES:
                return op->size > REST_FILE_SIZE_MAX ? -EFBIG : 0;
        case REST_OP_RENAME:
                return op->source_path ? 0 : -EINVAL;
        case REST_OP_LEASE:
                if (op->lease_action < 0 || op->lease_action >= _REST_LEASE_ACTION_MAX)
                        return -EINVAL;
                if ((op->lease_action == REST_LEASE_CHANGE ||
                     op->lease_action == REST_LEASE_RELEASE) &&
                    !op->lease_id)
                        return -EINVAL;
                return 0;
        default:
                return 0;
        }
}

static int dup_opt(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

static int metadata_name_ok(const char *s) {
        /* C identifiers, as the service requires. */
        if (isempty(s) || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

static int call_new(RestClient *rc, const RestOp *op, RestCall **ret) {
        RestCall *call;
        uint8_t rnd[16];
        size_t meta_bytes = 0;
        int r;

        r = validate_op(op);
        if (r < 0)
                return r;
        /* Metadata: no count, the bytes are checked below (at most REST_METADATA_BYTES_MAX pairs,
         * as names are never empty). */
        call = calloc(1, sizeof(RestCall));
        if (!call)
                return -ENOMEM;
        call->rc = rc;
        call->type = op->type;
        call->fd = op->fd;
        call->is_directory = op->is_directory;
        call->set_size = op->set_size;
        call->replace_if_exists = op->replace_if_exists;
        call->preserve_last_write = op->preserve_last_write;
        call->size = op->size;
        call->offset = op->offset;
        call->length = op->length;
        call->fd_offset = op->fd_offset;
        call->smb = op->smb;
        call->max_results = MIN(op->max_results, (unsigned)REST_LIST_ENTRIES_MAX);
        call->lease_action = op->lease_action;
        if ((r = rest_encode_path(op->path, &call->path)) < 0 ||
            (op->source_path && (r = rest_encode_path(op->source_path, &call->source_path)) < 0) ||
            (op->marker && (r = url_percent_encode(op->marker, false, &call->marker)) < 0) ||
            (op->prefix && (r = url_percent_encode(op->prefix, false, &call->prefix)) < 0) ||
            (r = dup_opt(op->lease_id, &call->lease_id)) < 0 ||
            (r = dup_opt(op->proposed_lease_id, &call->proposed_lease_id)) < 0)
                goto fail;
        if (op->type == REST_OP_PUT_RANGE && op->fd < 0) {
                call->data = malloc(op->length);
                if (!call->data) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(call->data, op->data, op->length);
        }
        if (op->n_metadata > 0) {
                call->metadata = calloc(op->n_metadata, sizeof(RestMetadata));
                if (!call->metadata) {
                        r = -ENOMEM;
                        goto fail;
                }
                for (size_t i = 0; i < op->n_metadata; i++) {
                        const RestMetadata *m = &op->metadata[i];
                        if (!metadata_name_ok(m->name) || !m->value) {
                                r = -EINVAL;
                                goto fail;
                        }
                        meta_bytes += strlen(m->name) + strlen(m->value);
                        if (meta_bytes > REST_METADATA_BYTES_MAX) {
                                r = -E2BIG;
                                goto fail;
                        }
                        call->metadata[i].name = strdup(m->name);
                        call->metadata[i].value = strdup(m->value);
                        call->n_metadata++;
                        if (!call->metadata[i].name || !call->metadata[i].value) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
        }
        if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                for (size_t i = 0; i < sizeof(rnd); i++)
                        rnd[i] = (uint8_t)rng_next(rc);
        rnd[6] = (uint8_t)((rnd[6] & 0x0f) | 0x40);
        rnd[8] = (uint8_t)((rnd[8] & 0x3f) | 0x80);
        (void)snprintf(
                call->client_request_id, sizeof(call->client_request_id),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0],
                rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10],
                rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
        *ret = call;
        return 0;
fail:
        call_free(call);
        return r;
}

int rest_client_submit(
        RestClient *rc, const RestOp *op, RestDoneFn cb, void *userdata, uint64_t *ret_id) {
        RestCall *call = NULL;
        uint64_t id;
        int r;

        assert(rc);
        assert(op);
        if (!cb)
                return -EINVAL;
        /* A callback of a call cancelled by rest_client_free() (on its thread) may submit the
         * next request: there is no inbox for it any more. */
        if (rc->freeing)
                return -ECANCELED;
        if (atomic_fetch_add(&rc->n_calls, 1) >= REST_CALLS_MAX) {
                atomic_fetch_sub(&rc->n_calls, 1);
                return -EAGAIN;
        }
        r = call_new(rc, op, &call);
        if (r < 0) {
                atomic_fetch_sub(&rc->n_calls, 1);
                return r;
        }
        id = atomic_fetch_add(&rc->next_id, 1) + 1;
        call->id = id;
        call->cb = cb;
        call->userdata = userdata;
        r = loop_queue_post(rc->inbox, on_inbox_submit, call);
        if (r < 0) {
                atomic_fetch_sub(&rc->n_calls, 1);
                call_free(call);
                return r;
        }
        if (ret_id)
                *ret_id = id;
        return 0;
}

int rest_client_cancel(RestClient *rc, uint64_t id) {
        CancelItem *item = malloc(sizeof(CancelItem));
        int r;

        if (!item)
                return -ENOMEM;
        *item = (CancelItem){.rc = rc, .id = id};
        r = loop_queue_post(rc->inbox, on_inbox_cancel, item);
        if (r < 0)
                free(item);
        return r;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int rest_client_new(
        sd_event *event, HttpClient *http, const RestClientConfig *cfg, RestClient **ret) {
        RestClient *rc;
        const char *p;
        _cleanup_free_ char *share_enc = NULL;
        int r;

        assert(event);
        assert(http);
        assert(cfg);
        if (isempty(cfg->endpoint) || isempty(cfg->account) || isempty(cfg->share) ||
            strchr(cfg->share, '/'))
                return -EINVAL;
        switch (cfg->auth) {
        case REST_AUTH_SHARED_KEY:
                if (!cfg->key || cfg->key_size == 0)
                        return -EINVAL;
                break;
        case REST_AUTH_SAS:
                if (isempty(cfg->sas_token))
                        return -EINVAL;
                break;
        case REST_AUTH_BEARER:
                if (!cfg->imds)
                        return -EINVAL;
                break;
        default:
                return -EINVAL;
        }
        p = strstr(cfg->endpoint, "://");
        if (!p)
                return -EINVAL;
        p = strchr(p + 3, '/'); /* the endpoint's path prefix (path-style), or none */

        rc = calloc(1, sizeof(RestClient));
        if (!rc)
                return -ENOMEM;
        rc->event = sd_event_ref(event);
        rc->http = http;
        rc->imds = cfg->imds;
        rc->auth = cfg->auth;
        rc->meta_timeout_ms = cfg->meta_timeout_ms ?: 30000;
        rc->data_timeout_ms = cfg->data_timeout_ms ?: 120000;
        rc->connect_timeout_ms = cfg->connect_timeout_ms ?: 10000;
        rc->low_speed_bytes = cfg->low_speed_bytes ?: 1024;
        rc->low_speed_s = cfg->low_speed_s ?: 30;
        rc->max_attempts = cfg->max_attempts ?: 6;
        rc->retry_base_ms = cfg->retry_base_ms ?: 400;
        rc->retry_max_delay_ms = cfg->retry_max_delay_ms ?: 20000;
        rc->retry_budget_ms = cfg->retry_budget_ms ?: 90000;
        if (getrandom(&rc->rng, sizeof(rc->rng), GRND_NONBLOCK) != sizeof(rc->rng))
                rc->rng = (uint64_t)now_monotonic_ns();
        rc->rng |= 1;

        r = url_percent_encode(cfg->share, false, &share_enc);
        if (r < 0)
                goto fail;
        rc->endpoint = strdup(cfg->endpoint);
        rc->account = strdup(cfg->account);
        rc->share = TAKE_PTR(share_enc);
        rc->version = strdup(cfg->version ? cfg->version : REST_DEFAULT_VERSION);
        if (cfg->sas_token)
                rc->sas = strdup(cfg->sas_token[0] == '?' ? cfg->sas_token + 1 : cfg->sas_token);
        if (!rc->endpoint || !rc->account || !rc->version || (cfg->sas_token && !rc->sas) ||
            asprintf(&rc->base_path, "%s/%s", p ? p : "", rc->share) < 0) {
                rc->base_path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        if (cfg->key) {
                rc->key = malloc(cfg->key_size);
                if (!rc->key) {
                        r = -ENOMEM;
                        goto fail;
                }
                memcpy(rc->key, cfg->key, cfg->key_size);
                rc->key_size = cfg->key_size;
        }
        r = loop_queue_new(event, REST_CALLS_MAX * 2, &rc->inbox);
        if (r < 0)
                goto fail;
        *ret = rc;
        return 0;
fail:
        (void)rest_client_free(rc);
        return r;
}

RestClient *rest_client_free(RestClient *rc) {
        if (!rc)
                return NULL;
        rc->freeing = true;
        rc->inbox = loop_queue_free(rc->inbox); /* queued submits finish with -ECANCELED */
        while (rc->calls) {
                RestCall *call = rc->calls;
                if (call->ticket) {
                        call->ticket->call = NULL; /* the HTTP callback frees the ticket */
                        (void)http_client_cancel(rc->http, call->http_id);
                        call->ticket = NULL;
                }
                call_finish(call, -ECANCELED);
        }
        if (rc->key)
                explicit_bzero(rc->key, rc->key_size);
        free(rc->key);
        free(rc->endpoint);
        free(rc->base_path);
        free(rc->account);
        free(rc->share);
        free(rc->version);
        if (rc->sas)
                explicit_bzero(rc->sas, strlen(rc->sas));
        free(rc->sas);
        rc->event = sd_event_unref(rc->event);
        free(rc);
        return NULL;
}
