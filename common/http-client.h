/* SPDX-License-Identifier: MIT */
#pragma once

/* HTTP client: libcurl's multi interface driven by an sd-event loop.
 *
 * One HttpClient owns one CURLM (so connections are reused: CURLMOPT_MAXCONNECTS,
 * CURLMOPT_MAX_HOST_CONNECTIONS), bridges curl's sockets and timer to sd_event_add_io() and
 * sd_event_add_time(), runs at most max_in_flight transfers and keeps the rest in a FIFO queue
 * (capped at max_queued). Every completion callback runs on the loop thread, exactly once per
 * submitted request, and never from inside http_client_submit() or http_client_cancel().
 *
 * Threads: http_request_*() touch only the request (build it on any thread);
 * http_client_submit() and http_client_cancel() are thread-safe (they post to the loop through
 * an eventfd); http_client_new()/_free() and everything else run on the loop thread.
 *
 * Transfer threads (HttpClientConfig.transfer_threads > 0): a request whose body goes to an fd
 * (http_request_set_sink_fd) or comes from one (http_request_set_body_fd) runs on one of that
 * many threads, each with its own CURLM and sd_event loop (so its own connections), the least
 * busy one when it gets its slot; everything else, the queue and the max_in_flight count stay on
 * the loop thread. Such a request's curl callbacks (the pwrite/pread of its body) run on the
 * transfer thread and touch only the request; its completion callback still runs on the loop
 * thread, once, after the transfer thread let go of it. A cancel of such a request is passed on
 * to its thread: its callback runs with -ECANCELED unless the transfer finished first.
 *
 * Body sinks: a capped memory buffer (default), or pwrite() to an fd at an offset (for cache
 * files), or a callback fed each chunk (streaming parsers). Only 2xx bodies go to the fd or the
 * callback: any other status's body always lands in the memory buffer (capped at
 * HTTP_ERROR_BODY_MAX), so an error document never ends up in a cache file.
 * Request bodies: a copy in memory, or pread() from an fd at an offset.
 *
 * Errors (HttpResult.error): 0 when a complete HTTP response arrived (whatever its status);
 * otherwise a negative errno from http_curl_code_to_errno() (transport), -E2BIG (body or
 * response headers over their caps), -EIO/-ENOSPC... (pread/pwrite failures, as errno said),
 * -ECANCELED (cancelled or client freed), -EAGAIN (the queue was full when the loop took the
 * request). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_event sd_event;
typedef struct HttpClient HttpClient;
typedef struct HttpRequest HttpRequest;

/* Headers are bounded by their bytes, not their count: a File REST entry may carry as many
 * metadata pairs as fit the service's 8 KiB of names and values, up to 3,081 (names of one to
 * three characters, empty values), 50 KiB of header lines ("x-ms-meta-N: V\r\n" costs 14
 * bytes plus the pair). Counted for a request: name, value and 4 bytes (": ", CRLF) per header;
 * for a response: the raw header lines curl hands over, status line included. A response header
 * takes one allocation (name and value) besides its slot: at worst (4-byte lines "a:\r\n")
 * about 1 MiB per request while it runs. */
#define HTTP_REQUEST_HEADER_BYTES_MAX (64u * 1024u)
#define HTTP_RESPONSE_HEADER_BYTES_MAX (64u * 1024u)
#define HTTP_ERROR_BODY_MAX (64u * 1024u)
#define HTTP_BODY_DEFAULT_MAX (1024u * 1024u)
/* curl's receive buffer for a request with an fd sink, per transfer while it runs. */
#define HTTP_FD_SINK_BUFFER_SIZE (256u * 1024u)
/* curl's upload buffer for a request with a body from a file, per transfer while it runs. */
#define HTTP_FD_BODY_BUFFER_SIZE (1024u * 1024u)
/* Bodies from a file smaller than this are sent by the loop thread, not a transfer thread. */
#define HTTP_WORKER_MIN_BODY (64u * 1024u)
#define HTTP_TRANSFER_THREADS_MAX 16u

typedef struct HttpClientConfig {
        unsigned max_in_flight;    /* transfers running at once; 0: 16 */
        unsigned max_queued;       /* waiting beyond those; 0: 4096 */
        long max_connects;         /* CURLMOPT_MAXCONNECTS; 0: 32 */
        long max_host_connections; /* CURLMOPT_MAX_HOST_CONNECTIONS; 0: 16 */
        const char *user_agent;    /* NULL: "poolagent/VERSION" */
        unsigned transfer_threads; /* threads for fd-body transfers; 0: none (all on the loop
                                    * thread); at most HTTP_TRANSFER_THREADS_MAX (more: -EINVAL).
                                    * The connection caps above apply per thread. */
} HttpClientConfig;

typedef struct HttpHeader {
        char *name;
        char *value;
} HttpHeader;

/* Valid only during the completion callback. */
typedef struct HttpResult {
        uint64_t id;
        int error;                 /* see above */
        int curl_code;             /* CURLcode, for logs */
        long status;               /* 0 when no response arrived */
        const HttpHeader *headers; /* of the final response (after 100-continue) */
        size_t n_headers;
        const char *body; /* memory sink or error body: NUL-terminated, body_size bytes */
        size_t body_size;
        uint64_t bytes_received; /* body bytes taken by the sink (fd/callback/memory) */
        uint64_t bytes_sent;     /* request body bytes */
        /* curl sent the request again on its own (a reused connection died before any byte of
         * the answer): the answer is to the second copy, the first may have been carried out. */
        bool resent;
} HttpResult;

/* Case-insensitive; the first header of that name, or NULL. */
const char *http_result_header(const HttpResult *r, const char *name);

typedef void (*HttpDoneFn)(const HttpResult *result, void *userdata);
/* Streaming sink: return 0 to go on, a negative errno to abort (becomes result->error). */
typedef int (*HttpDataFn)(const void *data, size_t size, void *userdata);

int http_client_new(sd_event *event, const HttpClientConfig *config, HttpClient **ret);
/* Cancels every request (callbacks run with -ECANCELED) and frees. Loop thread. NULL-safe. */
HttpClient *http_client_free(HttpClient *c);
static inline void http_client_freep(HttpClient **c) {
        *c = http_client_free(*c);
}

/* Thread-safe. Takes ownership of req on success (0, *ret_id set if non-NULL); on failure the
 * caller still owns it: -EAGAIN (queue full), -ENOMEM, -ESHUTDOWN, -EINVAL (no callback). */
int http_client_submit(HttpClient *c, HttpRequest *req, uint64_t *ret_id);
/* Thread-safe. The request's callback runs with -ECANCELED unless it already completed (then
 * nothing happens). Unknown ids are ignored. */
int http_client_cancel(HttpClient *c, uint64_t id);
/* Loop thread: counts for tests and metrics. */
size_t http_client_in_flight(const HttpClient *c);
size_t http_client_queued(const HttpClient *c);
unsigned http_client_transfer_threads(const HttpClient *c);
/* Thread-safe: requests that ran on a transfer thread and were handed back (for stats). */
uint64_t http_client_thread_transfers(HttpClient *c);

/* method: "GET", "PUT", "HEAD", "DELETE", "POST"; url is copied. */
int http_request_new(const char *method, const char *url, HttpRequest **ret);
HttpRequest *http_request_free(HttpRequest *req);
static inline void http_request_freep(HttpRequest **r) {
        *r = http_request_free(*r);
}
/* Copies name and value; a header set twice keeps both. -E2BIG beyond
 * HTTP_REQUEST_HEADER_BYTES_MAX, -EINVAL for CR/LF or ':' in the name. */
int http_request_add_header(HttpRequest *req, const char *name, const char *value);
/* First value of a header (case-insensitive), for signing; NULL when absent. */
const char *http_request_get_header(const HttpRequest *req, const char *name);
int http_request_foreach_header(
        const HttpRequest *req,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata);
const char *http_request_method(const HttpRequest *req);
const char *http_request_url(const HttpRequest *req);

/* Request body, copied. Sets Content-Length. */
int http_request_set_body(HttpRequest *req, const void *data, size_t size);
/* Request body read with pread(fd, .., offset + pos); fd is borrowed and must stay open until the
 * callback ran. A file that ends before offset + size (truncated meanwhile) fails the request
 * with -ENODATA. */
int http_request_set_body_fd(HttpRequest *req, int fd, uint64_t offset, uint64_t size);

/* Response body into memory, at most max bytes (more: -E2BIG). The default, with
 * HTTP_BODY_DEFAULT_MAX. */
void http_request_set_sink_memory(HttpRequest *req, size_t max);
/* 2xx body written with pwrite(fd, .., offset + pos), at most max bytes; fd borrowed. */
void http_request_set_sink_fd(HttpRequest *req, int fd, uint64_t offset, uint64_t max);
/* 2xx body handed to fn chunk by chunk on the loop thread, at most max bytes in total. */
void http_request_set_sink_callback(HttpRequest *req, HttpDataFn fn, void *userdata, uint64_t max);

/* total_ms: CURLOPT_TIMEOUT_MS (0: none); connect_ms: CURLOPT_CONNECTTIMEOUT_MS (0: curl's);
 * abort when slower than low_speed_bytes per second for low_speed_s seconds (0: off). */
void http_request_set_timeouts(
        HttpRequest *req,
        uint64_t total_ms,
        uint64_t connect_ms,
        uint32_t low_speed_bytes,
        uint32_t low_speed_s);
/* A bound that also counts the time the request waits for a free slot (max_in_flight): not
 * started by deadline_ns (CLOCK_MONOTONIC, now_monotonic_ns(); 0: none), it fails with
 * -ETIMEDOUT without being sent, and its transfer is cut there. */
void http_request_set_deadline(HttpRequest *req, uint64_t deadline_ns);
/* Sent on a new connection: curl resends a request on its own only on a reused one (see
 * HttpResult.resent), which a request that is not safe to repeat must not be. */
void http_request_set_fresh_connect(HttpRequest *req, bool fresh);
/* Never use a proxy for this request (the metadata service must not be proxied). */
void http_request_set_no_proxy(HttpRequest *req, bool no_proxy);
void http_request_set_callback(HttpRequest *req, HttpDoneFn fn, void *userdata);

/* CURLcode to negative errno; the one table for transport errors. */
int http_curl_code_to_errno(int curl_code);
