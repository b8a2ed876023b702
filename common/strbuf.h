/* SPDX-License-Identifier: MIT */
#pragma once

/* A growable, always NUL-terminated string with a hard cap, for building strings-to-sign, SAS
 * tokens and the like. Appends fail with -E2BIG beyond the cap (nothing is appended then) and
 * -ENOMEM on allocation failure; the buffer stays valid either way. */

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

typedef struct StrBuf {
        char *data; /* NULL until the first append */
        size_t len;
        size_t alloc;
        size_t cap; /* largest len allowed; 0 means no limit */
} StrBuf;

int strbuf_append_n(StrBuf *b, const char *s, size_t n);
int strbuf_append(StrBuf *b, const char *s);
int strbuf_append_char(StrBuf *b, char c);
int strbuf_appendf(StrBuf *b, const char *format, ...) _printf_(2, 3);
/* Hands the string out (never NULL on success: "" for an empty buffer) and resets b. */
int strbuf_steal(StrBuf *b, char **ret);
void strbuf_done(StrBuf *b);
