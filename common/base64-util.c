/* SPDX-License-Identifier: MIT */
#include "base64-util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "macro.h"

int base64_encode(const void *data, size_t size, char **ret) {
        size_t n = 4 * ((size + 2) / 3);
        char *out;

        if (size > (size_t)INT32_MAX / 2)
                return -E2BIG;
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        (void)EVP_EncodeBlock((unsigned char *)out, data, (int)size);
        out[n] = '\0';
        *ret = out;
        return 0;
}

int base64_decode(const char *text, uint8_t **ret, size_t *ret_size) {
        size_t len = strlen(text), pad = 0;
        _cleanup_free_ uint8_t *out = NULL;
        int n;

        if (len % 4 != 0 || len > (size_t)INT32_MAX / 2)
                return -EINVAL;
        if (len >= 1 && text[len - 1] == '=')
                pad++;
        if (len >= 2 && text[len - 2] == '=')
                pad++;
        for (size_t i = 0; i < len - pad; i++) {
                char c = text[i];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '+' || c == '/'))
                        return -EINVAL;
        }
        out = malloc(len / 4 * 3 + 1);
        if (!out)
                return -ENOMEM;
        n = EVP_DecodeBlock(out, (const unsigned char *)text, (int)len);
        if (n < 0 || (size_t)n < pad)
                return -EINVAL;
        *ret_size = (size_t)n - pad;
        out[*ret_size] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}
