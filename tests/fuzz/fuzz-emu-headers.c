/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the request-header parsers the emulator runs before any handler logic:
 *  - files_parse_range() (x-ms-range / Range: "bytes=S-E" or "bytes=S-"), and
 *  - sharedkey_string_to_sign() (Shared Key and SharedKeyLite canonicalisation of the method,
 *    the headers, the encoded path and the raw query).
 * The first input byte picks the parser; the rest is the input. For the string-to-sign the input
 * is lines: method, encoded path, raw query, then "Name: value" headers. Every input must be
 * parsed or refused (negative errno), never crash, leak or break the invariants asserted here. */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emu-files-common.h"
#include "sharedkey.h"

#define MAX_LINES 80

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Headers {
        char *name[MAX_LINES], *value[MAX_LINES];
        size_t n;
} Headers;

static const char *get_header(void *userdata, const char *name) {
        Headers *h = userdata;
        for (size_t i = 0; i < h->n; i++)
                if (strcasecmp(h->name[i], name) == 0)
                        return h->value[i];
        return NULL;
}

static int foreach_header(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        Headers *h = userdata;
        for (size_t i = 0; i < h->n; i++) {
                int r = cb(cbdata, h->name[i], h->value[i]);
                if (r != 0)
                        return r;
        }
        return 0;
}

static void fuzz_range(const char *s) {
        uint64_t start = 0, end = 0;
        bool has_end = false;

        if (files_parse_range(s, &start, &end, &has_end) == 0) {
                assert(strncmp(s, "bytes=", 6) == 0);
                if (has_end)
                        assert(start <= end);
                else
                        assert(end == UINT64_MAX);
        }
}

static void fuzz_string_to_sign(char *s) {
        char *lines[MAX_LINES + 3];
        size_t n = 0;
        Headers h = {};
        char *out = NULL;

        for (char *p = s; p && n < sizeof(lines) / sizeof(lines[0]);) {
                char *nl = strchr(p, '\n');
                lines[n++] = p;
                if (nl)
                        *nl = '\0';
                p = nl ? nl + 1 : NULL;
        }
        if (n < 3)
                return;
        for (size_t i = 3; i < n && h.n < MAX_LINES; i++) {
                char *colon = strchr(lines[i], ':');
                if (!colon)
                        continue;
                *colon = '\0';
                h.name[h.n] = lines[i];
                h.value[h.n] = colon + 1 + (colon[1] == ' ');
                h.n++;
        }
        for (int scheme = SHARED_KEY; scheme <= SHARED_KEY_LITE; scheme++) {
                SharedKeyRequest req = {
                        .method = lines[0],
                        .account = "devstoreaccount1",
                        .encoded_path = lines[1],
                        .raw_query = lines[2],
                        .get_header = get_header,
                        .foreach_header = foreach_header,
                        .userdata = &h,
                };
                if (sharedkey_string_to_sign(&req, (SharedKeyScheme)scheme, &out) == 0) {
                        assert(out);
                        assert(strlen(out) <= SHAREDKEY_STRING_TO_SIGN_MAX);
                        /* It starts with the method and a newline. */
                        assert(strncmp(out, lines[0], strlen(lines[0])) == 0);
                        free(out);
                        out = NULL;
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s;

        if (size < 1 || size > 64 * 1024)
                return 0;
        s = malloc(size);
        if (!s)
                return 0;
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        if (data[0] & 1)
                fuzz_string_to_sign(s);
        else
                fuzz_range(s);
        free(s);
        return 0;
}
