/* SPDX-License-Identifier: MIT */
#include "url-util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int url_percent_decode(const char *src, size_t len, char **ret) {
        char *out = malloc(len + 1);
        size_t o = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < len; i++) {
                char c = src[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= len) {
                                free(out);
                                return -EINVAL;
                        }
                        hi = unhex(src[i + 1]);
                        lo = unhex(src[i + 2]);
                        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                                free(out);
                                return -EINVAL;
                        }
                        c = (char)(hi * 16 + lo);
                        i += 2;
                } else if (c == '\0') {
                        free(out);
                        return -EINVAL;
                }
                out[o++] = c;
        }
        out[o] = '\0';
        *ret = out;
        return 0;
}

int url_percent_encode(const char *s, bool keep_slash, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        size_t len = strlen(s);
        char *out, *p;

        if (len > (SIZE_MAX - 1) / 3)
                return -E2BIG;
        out = malloc(3 * len + 1);
        if (!out)
                return -ENOMEM;
        p = out;
        for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
                if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                    (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' || *c == '~' ||
                    (keep_slash && *c == '/'))
                        *p++ = (char)*c;
                else {
                        *p++ = '%';
                        *p++ = hex[*c >> 4];
                        *p++ = hex[*c & 15];
                }
        }
        *p = '\0';
        *ret = out;
        return 0;
}
