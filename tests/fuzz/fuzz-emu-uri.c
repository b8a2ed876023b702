/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the emulator's request-line parser (path segments, percent-decoding,
 * query parameters). Every input must either parse into segments that are safe to use as names
 * (no '/', no NUL, never "." or "..") or be rejected; never crash or leak. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emu-server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *uri = malloc(size + 1), *path = NULL, *query = NULL, **segments = NULL;
        EmuQueryParam *params = NULL;
        unsigned n_segments = 0;
        size_t n_params = 0;

        if (!uri)
                return 0;
        memcpy(uri, data, size);
        uri[size] = '\0';
        if (emu_parse_uri(uri, &path, &query, &segments, &n_segments, &params, &n_params) == 0) {
                for (unsigned i = 0; i < n_segments; i++) {
                        assert(segments[i][0] != '\0');
                        assert(!strchr(segments[i], '/'));
                        assert(strcmp(segments[i], ".") != 0 && strcmp(segments[i], "..") != 0);
                        free(segments[i]);
                }
                assert(n_params <= EMU_QUERY_PARAMS_MAX);
                free(segments);
                emu_query_params_free(params, n_params);
                free(path);
                free(query);
        }
        free(uri);
        return 0;
}
