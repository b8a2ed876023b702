/* SPDX-License-Identifier: MIT */
#include "strbuf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int strbuf_reserve(StrBuf *b, size_t extra) {
        size_t need, n;
        char *p;

        if (extra > SIZE_MAX / 2 - b->len - 1)
                return -E2BIG;
        need = b->len + extra;
        if (b->cap > 0 && need > b->cap)
                return -E2BIG;
        if (need + 1 <= b->alloc)
                return 0;
        n = MAX(need + 1, MAX(b->alloc * 2, (size_t)64));
        p = realloc(b->data, n);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->alloc = n;
        return 0;
}

int strbuf_append_n(StrBuf *b, const char *s, size_t n) {
        int r = strbuf_reserve(b, n);
        if (r < 0)
                return r;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

int strbuf_append(StrBuf *b, const char *s) {
        return strbuf_append_n(b, s, strlen(s));
}

int strbuf_append_char(StrBuf *b, char c) {
        return strbuf_append_n(b, &c, 1);
}

int strbuf_appendf(StrBuf *b, const char *format, ...) {
        va_list ap;
        int n, r;

        va_start(ap, format);
        n = vsnprintf(NULL, 0, format, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        r = strbuf_reserve(b, (size_t)n);
        if (r < 0)
                return r;
        va_start(ap, format);
        (void)vsnprintf(b->data + b->len, (size_t)n + 1, format, ap);
        va_end(ap);
        b->len += (size_t)n;
        return 0;
}

int strbuf_steal(StrBuf *b, char **ret) {
        if (!b->data) {
                char *e = strdup("");
                if (!e)
                        return -ENOMEM;
                *ret = e;
                return 0;
        }
        *ret = b->data;
        b->data = NULL;
        b->len = b->alloc = 0;
        return 0;
}

void strbuf_done(StrBuf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->alloc = 0;
}
