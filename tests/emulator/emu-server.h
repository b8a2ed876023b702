/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulator's HTTP layer (libmicrohttpd, one thread per connection). It owns parsing of the
 * raw request line (path and query are decoded here, once, strictly), the request body (capped),
 * the common response headers, and turning an EmuResponse into bytes on the wire (including the
 * transport-level faults: reset, truncated body, latency).
 *
 * Handlers (files, imds, admin) receive an EmuRequest and must call exactly one emu_reply_*()
 * before returning. All strings in EmuRequest live as long as the request. */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emu-faults.h"
#include "emu-ops.h"
#include "macro.h"

typedef struct Emulator Emulator;
typedef struct EmuStore EmuStore;
typedef struct EmuFaults EmuFaults;
typedef struct EmuImds EmuImds;
typedef struct EmuResponse EmuResponse;

/* Largest request body accepted; Put Range's 4 MiB limit is checked by the handler, this is the
 * transport cap beyond which the body is discarded and 413 RequestBodyTooLarge is answered. */
#define EMU_BODY_MAX (4u * 1024u * 1024u + 64u * 1024u)
#define EMU_PATH_SEGMENTS_MAX 260
#define EMU_URI_MAX 8192
#define EMU_QUERY_PARAMS_MAX 64

typedef enum EmuListener {
        EMU_LISTENER_FILES,
        EMU_LISTENER_IMDS,
} EmuListener;

typedef struct EmuQueryParam {
        char *name;  /* decoded */
        char *value; /* decoded; "" when the parameter had no '=' */
} EmuQueryParam;

typedef enum EmuAuthKind {
        EMU_AUTH_NONE,
        EMU_AUTH_SHARED_KEY,
        EMU_AUTH_SHARED_KEY_LITE,
        EMU_AUTH_SAS,
        EMU_AUTH_BEARER,
} EmuAuthKind;

typedef struct EmuRequest {
        Emulator *emu;
        EmuListener listener;
        const char *method; /* "GET", "PUT", ... */

        char *raw_uri;   /* as received, path + '?' + query, percent-encoded */
        char *raw_path;  /* raw_uri up to '?', still encoded (Shared Key uses this form) */
        char *raw_query; /* after '?', "" if none */

        /* Decoded path segments. For the files listener segments[0] is the account. A decoded
         * '/' (%2F) splits a segment as the service does. '.', '..', NUL and empty interior
         * segments never reach a handler: the server answers 400 first. */
        char **segments;
        unsigned n_segments;

        EmuQueryParam *query;
        size_t n_query;

        char *body; /* NUL-terminated copy, body_size bytes before the NUL */
        size_t body_size;

        EmuOp op;            /* classified operation, or _EMU_OP_INVALID */
        EmuFaultKind fault;  /* the fault drawn for it: handlers act on EMU_FAULT_STALE_MARKER */
        const char *version; /* effective x-ms-version (header, or sv= of a SAS), may be NULL */
        EmuAuthKind auth;    /* set by emu_auth_check() */

        char request_id[40];
        int64_t received_ns; /* realtime when the request line arrived */

        EmuResponse *response; /* private to the server */
        void *connection;      /* private: struct MHD_Connection */
} EmuRequest;

/* The emulator: configuration plus the parts. Fields are set up by main and read-only after the
 * daemons start, except where the part has its own lock. */
struct Emulator {
        char *account;    /* account name in path-style URLs */
        char *key_base64; /* account key as given */
        uint8_t *key;     /* decoded account key */
        size_t key_size;
        char *data_dir;  /* --data */
        char *files_url; /* http://ADDR:PORT/ACCOUNT, set once listening */
        char *imds_url;  /* http://ADDR:PORT, or NULL without --imds */
        EmuStore *store;
        EmuFaults *faults;
        EmuImds *imds;
        void *files_daemon; /* struct MHD_Daemon */
        void *imds_daemon;
        uint64_t counters[_EMU_OP_MAX][2]; /* [op][0]=requests, [op][1]=faults injected; atomic */
};

/* Header lookup, case-insensitive; NULL when absent. */
const char *emu_request_header(const EmuRequest *r, const char *name);
/* Calls cb for every request header in arrival order; stops early when cb returns non-zero. */
int emu_request_foreach_header(
        const EmuRequest *r,
        int (*cb)(void *userdata, const char *name, const char *value),
        void *userdata);
/* Decoded query value by exact (case-sensitive) name; NULL when absent. */
const char *emu_request_query(const EmuRequest *r, const char *name);

/* The peer's address as text (IPv4-mapped IPv6 shown as IPv4): 0, or -ENOENT/-EAFNOSUPPORT. */
int emu_request_client_address(const EmuRequest *r, char buf[static 46]);

/* Replies. Every handler calls exactly one of these (or emu_reply_error); a second call is a bug
 * and aborts. Headers added with emu_reply_header() before the reply are sent with it. */
int emu_reply_header(EmuRequest *r, const char *name, const char *format, ...) _printf_(3, 4);
int emu_reply_empty(EmuRequest *r, unsigned status);
/* Body is copied. content_type may be NULL. */
int emu_reply_body(
        EmuRequest *r, unsigned status, const char *content_type, const void *body, size_t size);
/* Body is taken over (freed with free()). */
int emu_reply_body_take(
        EmuRequest *r, unsigned status, const char *content_type, char *body, size_t size);
/* Sends size bytes of fd from offset (sendfile where possible); takes ownership of fd. */
int emu_reply_fd(
        EmuRequest *r,
        unsigned status,
        const char *content_type,
        int fd,
        uint64_t offset,
        uint64_t size);

/* HEAD: headers only, with Content-Length: length (the size of what GET would send). */
int emu_reply_head(EmuRequest *r, unsigned status, const char *content_type, uint64_t length);

/* The service's error: XML body with BOM (none for HEAD), x-ms-error-code header,
 * "<Message>text\nRequestId:...\nTime:...</Message>". extra is a NULL-terminated list of
 * element-name, text pairs appended after <Message> (e.g. "HeaderName", "x-ms-version", NULL). */
int emu_reply_error(
        EmuRequest *r,
        unsigned status,
        const char *code,
        const char *message,
        const char *const *extra);

/* The default message text the service uses for a code ("The specified resource does not
 * exist." for ResourceNotFound), or a generic one. */
const char *emu_error_message(const char *code);

/* Lifecycle, called from main: emu_server_listen binds addr, ADDR:PORT (IPv4 or [IPv6]; port 0
 * picks a free port) and returns the listener's URL; emu_server_start then serves it. main sets
 * every URL before it starts any daemon, so that no request thread reads one while it is written.
 */
int emu_server_listen(Emulator *emu, EmuListener which, const char *addr, char **ret_url);
int emu_server_start(Emulator *emu, EmuListener which);
void emu_server_stop(Emulator *emu);

/* Parsers exposed for unit tests and the fuzz target. */
int emu_parse_uri(
        const char *raw_uri,
        char **ret_path,
        char **ret_query,
        char ***ret_segments,
        unsigned *ret_n_segments,
        EmuQueryParam **ret_query_params,
        size_t *ret_n_query);
void emu_query_params_free(EmuQueryParam *q, size_t n);
/* Percent-decodes src (len bytes) into a new string. Rejects malformed escapes and embedded NUL
 * with -EINVAL. '+' is kept as is (the service does not treat it as a space in paths). */
int emu_percent_decode(const char *src, size_t len, char **ret);
