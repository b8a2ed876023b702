/* SPDX-License-Identifier: MIT */
#pragma once

/* Test harness for integration tests: starts the real azfiles-emu binary ($AZFILES_EMU) on a
 * free loopback port with a fresh (or given) data directory, waits for its ready line (bounded),
 * and makes real HTTP requests to it with libcurl, signed the way the service expects.
 * Never touches anything outside its temporary directory. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EMU_TEST_ACCOUNT "devstoreaccount1"
/* The public, documented development-storage key (not a secret). */
#define EMU_TEST_KEY                                                                               \
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define EMU_TEST_VERSION "2025-05-05"

typedef struct EmuInstance {
        pid_t pid;
        char *dir;       /* temporary directory owned by the instance */
        char *data_dir;  /* --data */
        char *files_url; /* http://127.0.0.1:PORT/devstoreaccount1 */
        char *imds_url;  /* http://127.0.0.1:PORT (always started with --imds) */
        char *stderr_path;
        bool owns_data; /* data_dir was created by us and is removed on free */
} EmuInstance;

/* Starts azfiles-emu. data_dir NULL: a fresh one inside the instance's temp dir. extra_args: more
 * arguments (NULL-terminated), e.g. {"--faults", "503=0.5", NULL}; may be NULL. Waits at most
 * 10 s for the ready line. */
int emu_instance_start(const char *data_dir, const char *const *extra_args, EmuInstance **ret);
/* SIGTERM, waits (bounded) and returns the exit status (0 expected), or -errno. */
int emu_instance_stop(EmuInstance *e);
/* Stops if running and frees; removes the temp dir (and data_dir if owned). NULL-safe. */
EmuInstance *emu_instance_free(EmuInstance *e);
static inline void emu_instance_freep(EmuInstance **e) {
        *e = emu_instance_free(*e);
}

typedef enum EmuAuthMode {
        EMU_AUTH_MODE_NONE,       /* no Authorization header */
        EMU_AUTH_MODE_SHARED_KEY, /* sign with EMU_TEST_KEY */
        EMU_AUTH_MODE_RAW,        /* caller supplies Authorization / SAS itself */
} EmuAuthMode;

typedef struct EmuHttpResult {
        long status;
        char *headers; /* raw response header block, "Name: value\r\n" lines */
        char *body;    /* NUL-terminated; body_size bytes before the NUL */
        size_t body_size;
        int curl_code; /* CURLcode; non-zero for transport errors (reset, truncation) */
} EmuHttpResult;

/* One request. path_and_query is appended to files_url (or to imds_url when it starts with
 * "imds:"), already percent-encoded, e.g. "/share/dir%20a/f?comp=range". headers are
 * "Name: value" strings, NULL-terminated, may be NULL; x-ms-version (EMU_TEST_VERSION) and
 * x-ms-date are added unless given. Returns 0 when an HTTP response arrived (any status) or
 * when a transport error happened (see curl_code); -errno only for harness failures. */
int emu_http(
        EmuInstance *e,
        const char *method,
        const char *path_and_query,
        const char *const *headers,
        const void *body,
        size_t body_size,
        EmuAuthMode auth,
        EmuHttpResult *ret);
void emu_http_result_clear(EmuHttpResult *r);
/* Case-insensitive lookup in r->headers; returns a pointer into a static per-thread buffer or
 * NULL. */
const char *emu_http_header(const EmuHttpResult *r, const char *name);
