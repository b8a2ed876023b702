/* SPDX-License-Identifier: MIT */
#include "http-client.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "list.h"
#include "loop-queue.h"
#include "macro.h"
#include "thread-util.h"
#include "time-util.h"

typedef enum BodyKind {
        BODY_NONE,
        BODY_MEMORY,
        BODY_FD,
} BodyKind;

typedef enum SinkKind {
        SINK_MEMORY,
        SINK_FD,
        SINK_CALLBACK,
} SinkKind;

typedef struct HttpEngine HttpEngine;
typedef struct HttpWorker HttpWorker;

typedef struct HttpSocket {
        struct HttpSocket *prev, *next;
        HttpEngine *engine;
        sd_event_source *source;
        curl_socket_t fd;
} HttpSocket;

typedef struct RequestLink {
        struct HttpRequest *prev, *next;
} RequestLink;

struct HttpRequest {
        /* What the caller built. */
        char *method;
        char *url;
        HttpHeader *headers;
        size_t n_headers, n_headers_alloc;
        size_t header_bytes; /* counted against HTTP_REQUEST_HEADER_BYTES_MAX */
        BodyKind body_kind;
        void *body_data;
        int body_fd;
        uint64_t body_offset;
        uint64_t body_size;
        SinkKind sink_kind;
        uint64_t sink_max;
        int sink_fd;
        uint64_t sink_offset;
        HttpDataFn data_fn;
        void *data_userdata;
        uint64_t timeout_ms, connect_timeout_ms;
        uint64_t deadline_ns; /* CLOCK_MONOTONIC, 0: none */
        bool fresh_connect;
        uint32_t low_speed_bytes, low_speed_s;
        bool no_proxy;
        HttpDoneFn done_fn;
        void *done_userdata;

        /* Runtime: the loop thread's, but for the fields below the line while a transfer
         * thread runs the request (worker set, from the post that hands it over until the
         * post that hands it back). */
        HttpClient *client;
        uint64_t id;
        RequestLink link;   /* in the client's queue or active list */
        HttpWorker *worker; /* runs the transfer; NULL: the loop thread does */
        RequestLink wlink;  /* in the worker's running list, its thread only */
        /* ---- */
        CURL *easy;
        struct curl_slist *slist;
        uint64_t body_pos;
        HttpHeader *resp_headers; /* name and value in one allocation (name's) */
        size_t n_resp_headers, n_resp_headers_alloc;
        size_t resp_header_bytes;
        bool sink_decided, sink_to_buffer, sink_error_body;
        unsigned sends; /* times curl was about to send it (on_prereq) */
        char *buf;
        size_t buf_size, buf_alloc;
        uint64_t received;
        int local_error; /* first error of ours (cap, pread/pwrite, callback) */
        int done_error;  /* a transfer thread's outcome, for the loop thread */
        int done_curl_code;
        long done_status;
        char errbuf[CURL_ERROR_SIZE];
};

/* A list through the requests' link, or through their wlink (on_thread). */
typedef struct RequestList {
        HttpRequest *head, *tail;
        size_t n;
        bool on_thread;
} RequestList;

/* One curl multi handle driven by one sd_event loop, on one thread: the client's own (the loop
 * thread) or a transfer thread's. on_done runs when curl finished a transfer of it. */
struct HttpEngine {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        HttpSocket *sockets;
        const char *user_agent; /* the client's */
        void (*on_done)(HttpEngine *e, HttpRequest *r, int error, int curl_code);
        void *owner; /* HttpClient or HttpWorker */
};

/* A transfer thread: runs the transfers the loop thread hands it (through inbox) in its own
 * engine and hands each back (through the client's returns) when it finished. */
struct HttpWorker {
        HttpClient *client;
        HttpEngine engine;
        LoopQueue *inbox;    /* start and cancel items from the loop thread */
        RequestList running; /* worker thread only (on_thread: through wlink) */
        unsigned assigned;   /* loop thread only: requests handed over, not yet back */
        pthread_t thread;
        bool started;
};

struct HttpClient {
        HttpEngine engine; /* the loop thread's transfers */
        sd_event *event;
        LoopQueue *inbox;
        LoopQueue *returns; /* requests handed back by the transfer threads */
        RequestList queue;  /* waiting for a slot */
        RequestList active; /* running, here or on a transfer thread */
        HttpWorker *workers;
        unsigned n_workers;
        unsigned max_in_flight;
        unsigned max_queued;
        char *user_agent;
        _Atomic uint64_t next_id;
        _Atomic uint64_t thread_transfers; /* handed back by the transfer threads */
        bool freeing;
};

/* A cancel for the client (loop thread) or, passed on, for a transfer thread (worker set). */
typedef struct CancelItem {
        HttpClient *client;
        HttpWorker *worker;
        uint64_t id;
} CancelItem;

static RequestLink *link_of(const RequestList *l, HttpRequest *r) {
        return l->on_thread ? &r->wlink : &r->link;
}

static void list_append(RequestList *l, HttpRequest *r) {
        link_of(l, r)->prev = l->tail;
        link_of(l, r)->next = NULL;
        if (l->tail)
                link_of(l, l->tail)->next = r;
        else
                l->head = r;
        l->tail = r;
        l->n++;
}

static void list_remove(RequestList *l, HttpRequest *r) {
        RequestLink *k = link_of(l, r);

        if (k->prev)
                link_of(l, k->prev)->next = k->next;
        else
                l->head = k->next;
        if (k->next)
                link_of(l, k->next)->prev = k->prev;
        else
                l->tail = k->prev;
        k->prev = k->next = NULL;
        l->n--;
}

static HttpRequest *list_find(const RequestList *l, uint64_t id) {
        for (HttpRequest *r = l->head; r; r = link_of(l, r)->next)
                if (r->id == id)
                        return r;
        return NULL;
}

/* ---- errors ---------------------------------------------------------------------------- */

int http_curl_code_to_errno(int curl_code) {
        switch ((CURLcode)curl_code) {
        case CURLE_OK:
                return 0;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_BAD_FUNCTION_ARGUMENT:
                return -EINVAL;
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_RESOLVE_HOST:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -ECONNRESET;
        case CURLE_PARTIAL_FILE:
                return -ECONNABORTED; /* body shorter than Content-Length */
        case CURLE_WEIRD_SERVER_REPLY:
                return -EPROTO;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
                return -EKEYREJECTED;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_TOO_MANY_REDIRECTS:
                return -ELOOP;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        default:
                return -EIO;
        }
}

/* ---- requests -------------------------------------------------------------------------- */

static void request_headers_clear(HttpRequest *r) {
        for (size_t i = 0; i < r->n_headers; i++) {
                free(r->headers[i].name);
                free(r->headers[i].value);
        }
        r->n_headers = 0;
        r->header_bytes = 0;
}

/* Keeps the array (a new response after 100 Continue refills it). */
static void response_headers_clear(HttpRequest *r) {
        for (size_t i = 0; i < r->n_resp_headers; i++)
                free(r->resp_headers[i].name); /* value lives in the same allocation */
        r->n_resp_headers = 0;
        r->resp_header_bytes = 0;
}

int http_request_new(const char *method, const char *url, HttpRequest **ret) {
        HttpRequest *r;

        assert(method);
        assert(url);
        assert(ret);
        r = calloc(1, sizeof(HttpRequest));
        if (!r)
                return -ENOMEM;
        r->body_fd = r->sink_fd = -EBADF;
        r->sink_kind = SINK_MEMORY;
        r->sink_max = HTTP_BODY_DEFAULT_MAX;
        r->method = strdup(method);
        r->url = strdup(url);
        if (!r->method || !r->url) {
                (void)http_request_free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

HttpRequest *http_request_free(HttpRequest *r) {
        if (!r)
                return NULL;
        assert(!r->easy);
        free(r->method);
        free(r->url);
        request_headers_clear(r);
        free(r->headers);
        response_headers_clear(r);
        free(r->resp_headers);
        free(r->body_data);
        curl_slist_free_all(r->slist);
        free(r->buf);
        free(r);
        return NULL;
}

static bool header_text_ok(const char *s, bool name) {
        for (; *s; s++)
                if (*s == '\r' || *s == '\n' || (name && (*s == ':' || *s == ' ')))
                        return false;
        return true;
}

/* A header's cost against HTTP_REQUEST_HEADER_BYTES_MAX: "name: value\r\n". */
static size_t header_bytes(const char *name, const char *value) {
        return strlen(name) + strlen(value) + 4;
}

int http_request_add_header(HttpRequest *r, const char *name, const char *value) {
        size_t bytes;
        char *n, *v;

        assert(r);
        if (isempty(name) || !value || !header_text_ok(name, true) || !header_text_ok(value, false))
                return -EINVAL;
        bytes = header_bytes(name, value);
        if (bytes > HTTP_REQUEST_HEADER_BYTES_MAX - r->header_bytes)
                return -E2BIG;
        if (array_reserve(
                    (void **)&r->headers, &r->n_headers_alloc, r->n_headers + 1,
                    sizeof(HttpHeader)) < 0)
                return -ENOMEM;
        n = strdup(name);
        v = strdup(value);
        if (!n || !v) {
                free(n);
                free(v);
                return -ENOMEM;
        }
        r->headers[r->n_headers++] = (HttpHeader){.name = n, .value = v};
        r->header_bytes += bytes;
        return 0;
}

const char *http_request_get_header(const HttpRequest *r, const char *name) {
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcaseeq(r->headers[i].name, name))
                        return r->headers[i].value;
        return NULL;
}

int http_request_foreach_header(
        const HttpRequest *r,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        for (size_t i = 0; i < r->n_headers; i++) {
                int k = cb(cbdata, r->headers[i].name, r->headers[i].value);
                if (k != 0)
                        return k;
        }
        return 0;
}

const char *http_request_method(const HttpRequest *r) {
        return r->method;
}

const char *http_request_url(const HttpRequest *r) {
        return r->url;
}

static int request_set_content_length(HttpRequest *r, uint64_t size) {
        char len[32];

        (void)snprintf(len, sizeof(len), "%llu", (unsigned long long)size);
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcaseeq(r->headers[i].name, "Content-Length")) {
                        size_t was = strlen(r->headers[i].value), is = strlen(len);
                        char *v;
                        if (is > was && is - was > HTTP_REQUEST_HEADER_BYTES_MAX - r->header_bytes)
                                return -E2BIG;
                        v = strdup(len);
                        if (!v)
                                return -ENOMEM;
                        free(r->headers[i].value);
                        r->headers[i].value = v;
                        r->header_bytes = r->header_bytes - was + is;
                        return 0;
                }
        return http_request_add_header(r, "Content-Length", len);
}

int http_request_set_body(HttpRequest *r, const void *data, size_t size) {
        void *copy = NULL;
        int k;

        if (size > 0) {
                copy = malloc(size);
                if (!copy)
                        return -ENOMEM;
                memcpy(copy, data, size);
        }
        k = request_set_content_length(r, size);
        if (k < 0) {
                free(copy);
                return k;
        }
        free(r->body_data);
        r->body_data = copy;
        r->body_kind = BODY_MEMORY;
        r->body_size = size;
        return 0;
}

int http_request_set_body_fd(HttpRequest *r, int fd, uint64_t offset, uint64_t size) {
        int k;

        if (fd < 0)
                return -EBADF;
        k = request_set_content_length(r, size);
        if (k < 0)
                return k;
        free(r->body_data);
        r->body_data = NULL;
        r->body_kind = BODY_FD;
        r->body_fd = fd;
        r->body_offset = offset;
        r->body_size = size;
        return 0;
}

void http_request_set_sink_memory(HttpRequest *r, size_t max) {
        r->sink_kind = SINK_MEMORY;
        r->sink_max = max;
}

void http_request_set_sink_fd(HttpRequest *r, int fd, uint64_t offset, uint64_t max) {
        r->sink_kind = SINK_FD;
        r->sink_fd = fd;
        r->sink_offset = offset;
        r->sink_max = max;
}

void http_request_set_sink_callback(HttpRequest *r, HttpDataFn fn, void *userdata, uint64_t max) {
        r->sink_kind = SINK_CALLBACK;
        r->data_fn = fn;
        r->data_userdata = userdata;
        r->sink_max = max;
}

void http_request_set_timeouts(
        HttpRequest *r,
        uint64_t total_ms,
        uint64_t connect_ms,
        uint32_t low_speed_bytes,
        uint32_t low_speed_s) {
        r->timeout_ms = total_ms;
        r->connect_timeout_ms = connect_ms;
        r->low_speed_bytes = low_speed_bytes;
        r->low_speed_s = low_speed_s;
}

void http_request_set_deadline(HttpRequest *r, uint64_t deadline_ns) {
        r->deadline_ns = deadline_ns;
}

void http_request_set_fresh_connect(HttpRequest *r, bool fresh) {
        r->fresh_connect = fresh;
}

void http_request_set_no_proxy(HttpRequest *r, bool no_proxy) {
        r->no_proxy = no_proxy;
}

void http_request_set_callback(HttpRequest *r, HttpDoneFn fn, void *userdata) {
        r->done_fn = fn;
        r->done_userdata = userdata;
}

const char *http_result_header(const HttpResult *res, const char *name) {
        for (size_t i = 0; i < res->n_headers; i++)
                if (strcaseeq(res->headers[i].name, name))
                        return res->headers[i].value;
        return NULL;
}

/* ---- curl callbacks (all on the loop thread, inside curl_multi_socket_action) ---------- */

static void request_fail_local(HttpRequest *r, int error) {
        if (r->local_error == 0)
                r->local_error = error;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *r = userdata;
        size_t n = size * nmemb, len = n, name_len, value_len;
        const char *colon, *v, *end;
        char *name;

        if (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0)
                /* A new response (after 100 Continue or an interim one): start over. */
                response_headers_clear(r);
        r->resp_header_bytes += n;
        if (r->resp_header_bytes > HTTP_RESPONSE_HEADER_BYTES_MAX) {
                request_fail_local(r, -E2BIG);
                return 0;
        }
        while (len > 0 && (ptr[len - 1] == '\n' || ptr[len - 1] == '\r'))
                len--;
        colon = memchr(ptr, ':', len);
        if (!colon || colon == ptr || (n >= 5 && memcmp(ptr, "HTTP/", 5) == 0))
                return n;
        v = colon + 1;
        end = ptr + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        name_len = (size_t)(colon - ptr);
        value_len = (size_t)(end - v);
        /* As many headers as the byte cap lets in: no count of ours to run into. */
        if (array_reserve(
                    (void **)&r->resp_headers, &r->n_resp_headers_alloc, r->n_resp_headers + 1,
                    sizeof(HttpHeader)) < 0 ||
            !(name = malloc(name_len + value_len + 2))) {
                request_fail_local(r, -ENOMEM);
                return 0;
        }
        memcpy(name, ptr, name_len);
        name[name_len] = '\0';
        memcpy(name + name_len + 1, v, value_len);
        name[name_len + 1 + value_len] = '\0';
        r->resp_headers[r->n_resp_headers++] =
                (HttpHeader){.name = name, .value = name + name_len + 1};
        return n;
}

static int buffer_append(HttpRequest *r, const char *p, size_t n, size_t max) {
        if (r->buf_size + n > max)
                return -E2BIG;
        if (r->buf_size + n + 1 > r->buf_alloc) {
                size_t want = MAX(r->buf_alloc * 2, r->buf_size + n + 1);
                char *nb;
                want = MIN(want, max + 1);
                nb = realloc(r->buf, want);
                if (!nb)
                        return -ENOMEM;
                r->buf = nb;
                r->buf_alloc = want;
        }
        memcpy(r->buf + r->buf_size, p, n);
        r->buf_size += n;
        r->buf[r->buf_size] = '\0';
        return 0;
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t offset) {
        while (n > 0) {
                ssize_t k = pwrite(fd, p, n, (off_t)offset);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return NEG_ERRNO();
                }
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t)k;
                offset += (uint64_t)k;
        }
        return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *r = userdata;
        size_t n = size * nmemb;
        int k;

        if (!r->sink_decided) {
                long status = 0;
                (void)curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
                r->sink_decided = true;
                r->sink_error_body = status < 200 || status > 299;
                r->sink_to_buffer = r->sink_kind == SINK_MEMORY || r->sink_error_body;
        }
        if (r->sink_to_buffer) {
                size_t max = r->sink_kind == SINK_MEMORY && r->sink_max < SIZE_MAX
                                     ? (size_t)r->sink_max
                                     : HTTP_ERROR_BODY_MAX;
                if (r->sink_kind != SINK_MEMORY)
                        max = HTTP_ERROR_BODY_MAX;
                /* An error's text past what is kept is dropped: its status still says what
                 * happened (a 503 with a long body is still retried). */
                if (r->sink_error_body && r->buf_size + n > max)
                        k = r->buf_size < max ? buffer_append(r, ptr, max - r->buf_size, max) : 0;
                else
                        k = buffer_append(r, ptr, n, max);
        } else if (r->received + n > r->sink_max)
                k = -E2BIG;
        else if (r->sink_kind == SINK_FD)
                k = pwrite_all(r->sink_fd, ptr, n, r->sink_offset + r->received);
        else
                k = r->data_fn(ptr, n, r->data_userdata);
        if (k < 0) {
                request_fail_local(r, k);
                return 0;
        }
        r->received += n;
        return n;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Called by curl before each time it sends the request: more than once when it resends it. */
static int
on_prereq(void *userdata, char *primary_ip, char *local_ip, int primary_port, int local_port) {
        HttpRequest *r = userdata;

        r->sends++;
        return CURL_PREREQFUNC_OK;
}
#endif

static size_t on_read(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *r = userdata;
        size_t want = MIN(size * nmemb, r->body_size - r->body_pos);
        ssize_t k;

        if (want == 0)
                return 0;
        if (r->body_kind == BODY_MEMORY) {
                memcpy(ptr, (const char *)r->body_data + r->body_pos, want);
                r->body_pos += want;
                return want;
        }
        do
                k = pread(r->body_fd, ptr, want, (off_t)(r->body_offset + r->body_pos));
        while (k < 0 && errno == EINTR);
        if (k <= 0) {
                request_fail_local(r, k < 0 ? NEG_ERRNO() : -ENODATA); /* short file */
                return CURL_READFUNC_ABORT;
        }
        r->body_pos += (uint64_t)k;
        return (size_t)k;
}

static int on_seek(void *userdata, curl_off_t offset, int origin) {
        HttpRequest *r = userdata;

        /* curl rewinds to resend a body on a reused connection that turned out dead. */
        if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > r->body_size)
                return CURL_SEEKFUNC_CANTSEEK;
        r->body_pos = (uint64_t)offset;
        return CURL_SEEKFUNC_OK;
}

/* ---- completion ------------------------------------------------------------------------ */

/* Takes r's easy handle out of e (when it has one) and keeps the response status. */
static void request_detach(HttpEngine *en, HttpRequest *r) {
        if (!r->easy)
                return;
        (void)curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->done_status);
        if (en && en->multi)
                (void)curl_multi_remove_handle(en->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
}

/* Loop thread: r is in no list any more; runs its callback and frees it. */
static void request_complete(HttpRequest *r, int error, int curl_code) {
        HttpResult res;

        request_detach(r->client ? &r->client->engine : NULL, r);
        res = (HttpResult){
                .id = r->id,
                .error = error,
                .curl_code = curl_code,
                .status = r->done_status,
                .headers = r->resp_headers,
                .n_headers = r->n_resp_headers,
                .body = r->buf ? r->buf : "",
                .body_size = r->buf_size,
                .bytes_received = r->received,
                .bytes_sent = r->body_pos,
                .resent = r->sends > 1,
        };
        if (error != 0 && res.status == 0)
                res.n_headers = 0;
        r->done_fn(&res, r->done_userdata);
        (void)http_request_free(r);
}

/* Builds r's easy handle and adds it to e's multi handle; on failure r->easy may be set (the
 * caller cleans it up). */
static int request_start(HttpEngine *en, HttpRequest *r) {
        uint64_t timeout_ms = r->timeout_ms, connect_ms = r->connect_timeout_ms;
        CURL *e;
        bool has_ct = false;

        if (r->deadline_ns > 0) {
                /* Its wait in the queue counts: what is left of the deadline bounds the try. */
                int64_t now = now_monotonic_ns();
                uint64_t left_ms;
                if (now < 0 || (uint64_t)now >= r->deadline_ns)
                        return -ETIMEDOUT;
                left_ms = (r->deadline_ns - (uint64_t)now + 999999) / 1000000;
                timeout_ms = timeout_ms > 0 ? MIN(timeout_ms, left_ms) : left_ms;
                connect_ms = connect_ms > 0 ? MIN(connect_ms, left_ms) : left_ms;
        }
        e = curl_easy_init();
        if (!e)
                return -ENOMEM;
        r->easy = e;
        for (size_t i = 0; i < r->n_headers; i++) {
                _cleanup_free_ char *line = NULL;
                struct curl_slist *l;
                if (strcaseeq(r->headers[i].name, "Content-Type"))
                        has_ct = true;
                /* "Name;" sends an empty value; "Name:" would remove the header. */
                if (asprintf(
                            &line, isempty(r->headers[i].value) ? "%s;" : "%s: %s",
                            r->headers[i].name, r->headers[i].value) < 0)
                        return -ENOMEM;
                l = curl_slist_append(r->slist, line);
                if (!l)
                        return -ENOMEM;
                r->slist = l;
        }
        /* Nothing curl adds on its own may change what was signed, nor stall on 100-continue. */
        {
                const char *extra[] = {"Expect:", "Accept:", has_ct ? NULL : "Content-Type:"};
                for (size_t i = 0; i < ELEMENTSOF(extra); i++) {
                        struct curl_slist *l;
                        if (!extra[i])
                                continue;
                        l = curl_slist_append(r->slist, extra[i]);
                        if (!l)
                                return -ENOMEM;
                        r->slist = l;
                }
        }

        (void)curl_easy_setopt(e, CURLOPT_URL, r->url);
        (void)curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        (void)curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
        (void)curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->slist);
        (void)curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
        (void)curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        (void)curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        (void)curl_easy_setopt(e, CURLOPT_USERAGENT, en->user_agent);
#if LIBCURL_VERSION_NUM >= 0x075500
        (void)curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
        (void)curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        (void)curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
        (void)curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        (void)curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        /* A body for a file (azfilesfs's Get Range of a 4 MiB piece) is read from the socket
         * in chunks of this size: curl's default of 16 KiB costs a recv(), a poll() and a
         * pwrite() per 16 KiB on the loop thread (BENCHMARKS.md, azfilesfs cold read). */
        if (r->sink_kind == SINK_FD)
                (void)curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)HTTP_FD_SINK_BUFFER_SIZE);
        if (timeout_ms > 0)
                (void)curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)MIN(timeout_ms, LONG_MAX));
        if (connect_ms > 0)
                (void)curl_easy_setopt(
                        e, CURLOPT_CONNECTTIMEOUT_MS, (long)MIN(connect_ms, LONG_MAX));
        if (r->low_speed_bytes > 0 && r->low_speed_s > 0) {
                (void)curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)r->low_speed_bytes);
                (void)curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)r->low_speed_s);
        }
        if (r->no_proxy)
                (void)curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        if (r->fresh_connect)
                (void)curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
#if LIBCURL_VERSION_NUM >= 0x075000
        (void)curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        (void)curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
#endif

        if (streq(r->method, "HEAD"))
                (void)curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        else if (streq(r->method, "GET"))
                (void)curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        else if (streq(r->method, "PUT") || streq(r->method, "POST")) {
                /* Always with a body, even an empty one, so that Content-Length: 0 goes out. */
                if (r->body_kind == BODY_NONE && !http_request_get_header(r, "Content-Length")) {
                        int k = request_set_content_length(r, 0);
                        if (k < 0)
                                return k;
                }
                /* A body from a file (a Put Range of up to 4 MiB) is read and sent in pieces of
                 * this size: with curl's 64 KiB, 16 times the pread()s, send()s and wakeups. */
                if (r->body_kind == BODY_FD)
                        (void)curl_easy_setopt(
                                e, CURLOPT_UPLOAD_BUFFERSIZE, (long)HTTP_FD_BODY_BUFFER_SIZE);
                (void)curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
                (void)curl_easy_setopt(e, CURLOPT_READDATA, r);
                (void)curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
                (void)curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
                if (streq(r->method, "PUT")) {
                        (void)curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
                        (void)curl_easy_setopt(
                                e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_size);
                } else {
                        (void)curl_easy_setopt(e, CURLOPT_POST, 1L);
                        (void)curl_easy_setopt(
                                e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_size);
                }
        } else
                (void)curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);

        if (curl_multi_add_handle(en->multi, e) != CURLM_OK)
                return -ENOMEM;
        return 0;
}

/* ---- transfer threads ------------------------------------------------------------------ */

static void client_pump(HttpClient *c);

/* Loop thread: a transfer thread handed r back (or the client is being freed: cancelled, and
 * r stays in the active list, completed there). */
static void on_returned(void *userdata, bool cancelled) {
        HttpRequest *r = userdata;
        HttpClient *c = r->client;

        if (cancelled)
                return;
        list_remove(&c->active, r);
        r->worker->assigned--;
        r->worker = NULL;
        atomic_fetch_add(&c->thread_transfers, 1);
        request_complete(r, r->done_error, r->done_curl_code);
        client_pump(c);
}

/* Worker thread: r is finished here (done, failed to start or cancelled). */
static void worker_hand_back(HttpWorker *w, HttpRequest *r, int error, int curl_code) {
        request_detach(&w->engine, r);
        r->done_error = error;
        r->done_curl_code = curl_code;
        /* Cannot fail for want of room: the queue holds max_in_flight, more than can be
         * handed over at once; -ESHUTDOWN only once the client is freed, after this thread
         * was joined. */
        if (loop_queue_post(w->client->returns, on_returned, r) < 0)
                abort();
}

static void worker_on_done(HttpEngine *en, HttpRequest *r, int error, int curl_code) {
        HttpWorker *w = en->owner;

        list_remove(&w->running, r);
        worker_hand_back(w, r, error, curl_code);
}

static void on_worker_start(void *userdata, bool cancelled) {
        HttpRequest *r = userdata;
        HttpWorker *w = r->worker;
        int k;

        if (cancelled) /* the client is being freed: r is still in its active list */
                return;
        k = request_start(&w->engine, r);
        if (k < 0) {
                worker_hand_back(w, r, k, 0);
                return;
        }
        list_append(&w->running, r);
}

static void on_worker_cancel(void *userdata, bool cancelled) {
        CancelItem *item = userdata;
        HttpRequest *r = cancelled ? NULL : list_find(&item->worker->running, item->id);

        if (r) {
                list_remove(&item->worker->running, r);
                worker_hand_back(item->worker, r, -ECANCELED, 0);
        }
        free(item);
}

static void on_worker_quit(void *userdata, bool cancelled) {
        HttpWorker *w = userdata;

        if (!cancelled)
                (void)sd_event_exit(w->engine.event, 0);
}

static void *worker_thread(void *userdata) {
        HttpWorker *w = userdata;

        (void)pthread_setname_np(pthread_self(), "http-transfer");
        (void)sd_event_loop(w->engine.event);
        return NULL;
}

/* Loop thread: whether r's transfer may run on a transfer thread. Only transfers whose body
 * goes to or comes from a file: their callbacks touch nothing but r and its fds (a callback
 * sink runs the caller's code, which expects the loop thread). A body under
 * HTTP_WORKER_MIN_BODY goes in one write here: handing it over and back costs more (two
 * wake-ups across threads per small file of a tar x). */
static bool request_for_worker(const HttpRequest *r) {
        if (r->sink_kind == SINK_CALLBACK)
                return false;
        return r->sink_kind == SINK_FD ||
               (r->body_kind == BODY_FD && r->body_size >= HTTP_WORKER_MIN_BODY);
}

static HttpWorker *client_pick_worker(HttpClient *c) {
        HttpWorker *best = NULL;

        for (unsigned i = 0; i < c->n_workers; i++)
                if (!best || c->workers[i].assigned < best->assigned)
                        best = &c->workers[i];
        return best;
}

/* ---- the engine: one curl multi handle on one sd-event loop ------------------------------- */

static void engine_check_done(HttpEngine *en) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(en->multi, &left))) {
                HttpRequest *r = NULL;
                int error;

                if (m->msg != CURLMSG_DONE)
                        continue;
                (void)curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
                assert(r);
                error = r->local_error != 0 ? r->local_error
                                            : http_curl_code_to_errno((int)m->data.result);
                en->on_done(en, r, error, (int)m->data.result);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpSocket *sock = userdata;
        HttpEngine *en = sock->engine;
        int flags = 0, running;

        if (revents & EPOLLIN)
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
        /* sock may be freed inside: do not touch it afterwards. */
        (void)curl_multi_socket_action(en->multi, fd, flags, &running);
        engine_check_done(en);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpEngine *en = userdata;
        int running;

        (void)curl_multi_socket_action(en->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        engine_check_done(en);
        return 0;
}

static void socket_free(HttpEngine *en, HttpSocket *sock) {
        LIST_REMOVE(en->sockets, sock, next, prev);
        sock->source = sd_event_source_disable_unref(sock->source);
        free(sock);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpEngine *en = userp;
        HttpSocket *sock = socketp;
        uint32_t events = 0;
        int k;

        if (what == CURL_POLL_REMOVE) {
                if (sock) {
                        (void)curl_multi_assign(en->multi, fd, NULL);
                        socket_free(en, sock);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;
        if (sock) {
                k = sd_event_source_set_io_events(sock->source, events);
                return k < 0 ? -1 : 0;
        }
        sock = calloc(1, sizeof(HttpSocket));
        if (!sock)
                return -1;
        sock->engine = en;
        sock->fd = fd;
        k = sd_event_add_io(en->event, &sock->source, fd, events, on_io, sock);
        if (k < 0) {
                free(sock);
                return -1;
        }
        (void)sd_event_source_set_description(sock->source, "http-socket");
        LIST_PREPEND(en->sockets, sock, next, prev);
        (void)curl_multi_assign(en->multi, fd, sock);
        return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp) {
        HttpEngine *en = userp;
        uint64_t now;
        int k;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(en->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        k = sd_event_now(en->event, CLOCK_MONOTONIC, &now);
        if (k < 0)
                return -1;
        k = sd_event_source_set_time(en->timer, now + (uint64_t)timeout_ms * 1000);
        if (k >= 0)
                k = sd_event_source_set_enabled(en->timer, SD_EVENT_ONESHOT);
        return k < 0 ? -1 : 0;
}

static int engine_init(
        HttpEngine *en,
        sd_event *event,
        const HttpClientConfig *cfg,
        const char *user_agent,
        void (*on_done)(HttpEngine *, HttpRequest *, int, int),
        void *owner) {
        int k;

        en->event = sd_event_ref(event);
        en->user_agent = user_agent;
        en->on_done = on_done;
        en->owner = owner;
        en->multi = curl_multi_init();
        if (!en->multi)
                return -ENOMEM;
        (void)curl_multi_setopt(en->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        (void)curl_multi_setopt(en->multi, CURLMOPT_SOCKETDATA, en);
        (void)curl_multi_setopt(en->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        (void)curl_multi_setopt(en->multi, CURLMOPT_TIMERDATA, en);
        (void)curl_multi_setopt(
                en->multi, CURLMOPT_MAXCONNECTS, cfg->max_connects > 0 ? cfg->max_connects : 32L);
        (void)curl_multi_setopt(
                en->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                cfg->max_host_connections > 0 ? cfg->max_host_connections : 16L);
        k = sd_event_add_time(en->event, &en->timer, CLOCK_MONOTONIC, 0, 1000, on_timer, en);
        if (k < 0)
                return k;
        (void)sd_event_source_set_enabled(en->timer, SD_EVENT_OFF);
        (void)sd_event_source_set_description(en->timer, "http-timer");
        return 0;
}

/* The engine's transfers must be gone from its multi handle already. */
static void engine_done(HttpEngine *en) {
        if (en->multi)
                (void)curl_multi_cleanup(en->multi); /* may still call on_curl_socket(REMOVE) */
        en->multi = NULL;
        while (en->sockets)
                socket_free(en, en->sockets);
        en->timer = sd_event_source_disable_unref(en->timer);
        en->event = sd_event_unref(en->event);
}

/* ---- the loop thread's side ------------------------------------------------------------ */

static void client_on_done(HttpEngine *en, HttpRequest *r, int error, int curl_code) {
        HttpClient *c = en->owner;

        list_remove(&c->active, r);
        request_complete(r, error, curl_code);
        client_pump(c);
}

static void client_pump(HttpClient *c) {
        while (!c->freeing && c->queue.head && c->active.n < c->max_in_flight) {
                HttpRequest *r = c->queue.head;
                HttpWorker *w = request_for_worker(r) ? client_pick_worker(c) : NULL;
                int k;

                list_remove(&c->queue, r);
                if (w) {
                        r->worker = w;
                        w->assigned++;
                        list_append(&c->active, r);
                        /* Room for max_in_flight starts and as many cancels; -ESHUTDOWN
                         * only while freeing. */
                        k = loop_queue_post(w->inbox, on_worker_start, r);
                        if (k >= 0)
                                continue;
                        list_remove(&c->active, r);
                        w->assigned--;
                        r->worker = NULL;
                        request_complete(r, k, 0);
                        continue;
                }
                k = request_start(&c->engine, r);
                if (k < 0) {
                        if (r->easy) {
                                curl_easy_cleanup(r->easy);
                                r->easy = NULL;
                        }
                        request_complete(r, k, 0);
                        continue;
                }
                list_append(&c->active, r);
        }
}

/* ---- inbox (thread-safe entry points) -------------------------------------------------- */

static void on_inbox_submit(void *userdata, bool cancelled) {
        HttpRequest *r = userdata;
        HttpClient *c = r->client;

        if (cancelled || c->freeing) {
                request_complete(r, -ECANCELED, 0);
                return;
        }
        if (c->queue.n >= c->max_queued) {
                request_complete(r, -EAGAIN, 0);
                return;
        }
        list_append(&c->queue, r);
        client_pump(c);
}

static void on_inbox_cancel(void *userdata, bool cancelled) {
        CancelItem *item = userdata;
        HttpClient *c = item->client;
        HttpRequest *r;

        if (!cancelled) {
                if ((r = list_find(&c->queue, item->id))) {
                        list_remove(&c->queue, r);
                        request_complete(r, -ECANCELED, 0);
                } else if ((r = list_find(&c->active, item->id)) && r->worker) {
                        /* Its thread hands it back, cancelled unless it finished first. */
                        item->worker = r->worker;
                        if (loop_queue_post(r->worker->inbox, on_worker_cancel, item) >= 0)
                                return; /* the item is the transfer thread's now */
                        /* it still ends, by its own timeouts */
                } else if (r) {
                        list_remove(&c->active, r);
                        request_complete(r, -ECANCELED, 0);
                        client_pump(c);
                }
        }
        free(item);
}

int http_client_submit(HttpClient *c, HttpRequest *r, uint64_t *ret_id) {
        uint64_t id;
        int k;

        assert(c);
        assert(r);
        if (!r->done_fn)
                return -EINVAL;
        id = atomic_fetch_add(&c->next_id, 1) + 1;
        r->client = c;
        r->id = id;
        k = loop_queue_post(c->inbox, on_inbox_submit, r);
        if (k < 0) {
                r->client = NULL;
                r->id = 0;
                return k;
        }
        /* r may be gone already: only the id is ours now. */
        if (ret_id)
                *ret_id = id;
        return 0;
}

int http_client_cancel(HttpClient *c, uint64_t id) {
        CancelItem *item;
        int k;

        assert(c);
        item = malloc(sizeof(CancelItem));
        if (!item)
                return -ENOMEM;
        *item = (CancelItem){.client = c, .id = id};
        k = loop_queue_post(c->inbox, on_inbox_cancel, item);
        if (k < 0)
                free(item);
        return k;
}

size_t http_client_in_flight(const HttpClient *c) {
        return c->active.n;
}

size_t http_client_queued(const HttpClient *c) {
        return c->queue.n;
}

unsigned http_client_transfer_threads(const HttpClient *c) {
        return c->n_workers;
}

uint64_t http_client_thread_transfers(HttpClient *c) {
        return atomic_load(&c->thread_transfers);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int worker_init(HttpClient *c, HttpWorker *w, const HttpClientConfig *cfg) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int k;

        w->client = c;
        w->running.on_thread = true;
        k = sd_event_new(&event);
        if (k < 0)
                return k;
        k = engine_init(&w->engine, event, cfg, c->user_agent, worker_on_done, w);
        if (k < 0)
                return k;
        /* Room for every transfer the loop thread may hand over and as many cancels. */
        return loop_queue_new(event, (size_t)c->max_in_flight * 2 + 64, &w->inbox);
}

static int worker_start(HttpWorker *w) {
        int k = thread_create_unsignalled(&w->thread, worker_thread, w);

        if (k < 0)
                return k;
        w->started = true;
        return 0;
}

/* Loop thread, while freeing: stops w's thread; its transfers stay in the client's active list
 * (completed there with -ECANCELED). */
static void worker_stop(HttpWorker *w) {
        if (w->started) {
                if (loop_queue_post(w->inbox, on_worker_quit, w) < 0)
                        abort(); /* the thread would never end */
                (void)pthread_join(w->thread, NULL);
                w->started = false;
        }
        /* The thread is gone: what it held is ours now. */
        w->inbox = loop_queue_free(w->inbox); /* starts not taken: still in the active list */
        while (w->running.head) {
                HttpRequest *r = w->running.head;
                list_remove(&w->running, r);
                request_detach(&w->engine, r);
        }
        engine_done(&w->engine);
}

int http_client_new(sd_event *event, const HttpClientConfig *config, HttpClient **ret) {
        HttpClientConfig cfg = config ? *config : (HttpClientConfig){0};
        HttpClient *c;
        int k;

        assert(event);
        assert(ret);
        if (cfg.transfer_threads > HTTP_TRANSFER_THREADS_MAX)
                return -EINVAL;
        c = calloc(1, sizeof(HttpClient));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->max_in_flight = cfg.max_in_flight > 0 ? cfg.max_in_flight : 16;
        c->max_queued = cfg.max_queued > 0 ? cfg.max_queued : 4096;
        c->user_agent = strdup(cfg.user_agent ? cfg.user_agent : "poolagent/" PROJECT_VERSION);
        if (!c->user_agent) {
                k = -ENOMEM;
                goto fail;
        }
        k = engine_init(&c->engine, event, &cfg, c->user_agent, client_on_done, c);
        if (k < 0)
                goto fail;
        /* Room for everything that may be queued plus as many cancellations. */
        k = loop_queue_new(c->event, (size_t)c->max_queued * 2 + 64, &c->inbox);
        if (k < 0)
                goto fail;
        if (cfg.transfer_threads > 0) {
                /* At most max_in_flight requests are handed over at a time. */
                k = loop_queue_new(c->event, (size_t)c->max_in_flight + 64, &c->returns);
                if (k < 0)
                        goto fail;
                c->workers = calloc(cfg.transfer_threads, sizeof(HttpWorker));
                if (!c->workers) {
                        k = -ENOMEM;
                        goto fail;
                }
                for (unsigned i = 0; i < cfg.transfer_threads; i++) {
                        c->n_workers++;
                        k = worker_init(c, &c->workers[i], &cfg);
                        if (k < 0)
                                goto fail;
                }
                for (unsigned i = 0; i < c->n_workers; i++) {
                        k = worker_start(&c->workers[i]);
                        if (k < 0)
                                goto fail;
                }
        }
        *ret = c;
        return 0;
fail:
        (void)http_client_free(c);
        return k;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        c->freeing = true;
        /* First the transfer threads, so that nothing posts to returns any more. */
        for (unsigned i = 0; i < c->n_workers; i++)
                worker_stop(&c->workers[i]);
        c->returns = loop_queue_free(c->returns); /* handed back: still in the active list */
        c->inbox = loop_queue_free(c->inbox);     /* pending submits complete with -ECANCELED */
        while (c->active.head) {
                HttpRequest *r = c->active.head;
                list_remove(&c->active, r);
                r->worker = NULL;
                request_complete(r, -ECANCELED, 0);
        }
        while (c->queue.head) {
                HttpRequest *r = c->queue.head;
                list_remove(&c->queue, r);
                request_complete(r, -ECANCELED, 0);
        }
        engine_done(&c->engine);
        free(c->workers);
        c->event = sd_event_unref(c->event);
        free(c->user_agent);
        free(c);
        return NULL;
}
