/* SPDX-License-Identifier: MIT */
/* Names the share refuses or rewrites (rest-names.h), after the File service's naming rules:
 * ../shared/azure-files/FACTS.md, "Limits & naming". The emulator keeps its own copy of these
 * rules (tests/emulator/emu-names.c) on purpose: it stands for the service, so it must not take
 * them from the client it tests; test-rest-names checks that the two agree. */
#include "rest-names.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include "macro.h"

/* Length of the valid UTF-8 sequence at p (1-4), its code point in *ret_cp, or 0: overlong
 * forms, surrogates and code points past U+10FFFF are not valid (RFC 3629). */
static size_t utf8_decode(const unsigned char *p, uint32_t *ret_cp) {
        uint32_t cp;
        size_t n;

        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2, cp = p[0] & 0x1f;
        else if (p[0] >= 0xe0 && p[0] <= 0xef)
                n = 3, cp = p[0] & 0x0f;
        else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                n = 4, cp = p[0] & 0x07;
        else
                return 0;
        for (size_t k = 1; k < n; k++) {
                if ((p[k] & 0xc0) != 0x80)
                        return 0; /* also the terminating NUL */
                cp = cp << 6 | (p[k] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return n;
}

static bool is_reserved_device_name(const char *name) {
        static const char *const reserved[] = {
                "CON",  "PRN",  "AUX",  "NUL",  "CLOCK$", "COM1", "COM2", "COM3",
                "COM4", "COM5", "COM6", "COM7", "COM8",   "COM9", "LPT1", "LPT2",
                "LPT3", "LPT4", "LPT5", "LPT6", "LPT7",   "LPT8", "LPT9",
        };

        for (size_t k = 0; k < ELEMENTSOF(reserved); k++)
                if (strcasecmp(name, reserved[k]) == 0)
                        return true;
        return false;
}

int rest_name_check(const char *name) {
        size_t len = strlen(name);

        if (len > REST_NAME_MAX)
                return -ENAMETOOLONG;
        if (len == 0 || streq(name, ".") || streq(name, "..") || name[len - 1] == '.')
                return -EINVAL;
        for (const unsigned char *p = (const unsigned char *)name; *p;) {
                uint32_t cp;
                size_t n = utf8_decode(p, &cp);
                if (n == 0 || *p < 0x20 || strchr("\"\\/:|<>*?", *p))
                        return -EINVAL;
                p += n;
        }
        return is_reserved_device_name(name) ? -EINVAL : 0;
}

/* ---- case folding ---- */

static locale_t fold_locale = (locale_t)0;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void) {
        fold_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

bool rest_name_fold_unicode(void) {
        (void)pthread_once(&fold_once, fold_init);
        return fold_locale != (locale_t)0;
}

static uint32_t ascii_lower(uint32_t c) {
        return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* The folded code point at *p, which moves past it: its upper case (towupper_l()), or for ASCII
 * its lower case, so that two code points fold alike exactly when their upper cases are one
 * (no towupper() result is a lower-case ASCII letter). A byte that is not valid UTF-8 is one
 * unit of its own, never equal to a code point (above U+10FFFF). */
static uint32_t fold_next(const unsigned char **p) {
        uint32_t cp;
        size_t n;

        if (**p < 0x80)
                return ascii_lower(*(*p)++);
        n = utf8_decode(*p, &cp);
        if (n == 0)
                return 0x110000u + *(*p)++;
        *p += n;
        if (rest_name_fold_unicode()) {
                wint_t u = towupper_l((wint_t)cp, fold_locale);
                if (u != WEOF && u <= 0x10ffff && !(u >= 0xd800 && u <= 0xdfff))
                        cp = (uint32_t)u;
        }
        return ascii_lower(cp); /* U+0131 and U+017F have ASCII upper cases, I and S */
}

int rest_name_casecmp(const char *a, const char *b) {
        const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;

        for (;;) {
                /* ASCII, the usual case, without a call */
                while (*p && *p < 0x80 && *q < 0x80 && ascii_lower(*p) == ascii_lower(*q))
                        p++, q++;
                if (!*p || !*q)
                        return (int)(*p != 0) - (int)(*q != 0);
                uint32_t x = fold_next(&p), y = fold_next(&q);
                if (x != y)
                        return x < y ? -1 : 1;
        }
}

const char *rest_path_after_prefix(const char *path, const char *prefix) {
        const unsigned char *p = (const unsigned char *)path, *q = (const unsigned char *)prefix;

        while (*q) {
                if (!*p || fold_next(&p) != fold_next(&q))
                        return NULL;
        }
        return (const char *)p;
}

uint64_t rest_name_hash(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);

        /* FNV-1a over the folded code points, each as its UTF-8 bytes (so a code point that is
         * not ASCII is never hashed as ASCII bytes: 0x80 and above); a byte that is not UTF-8 as
         * 0xff and itself. */
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                uint32_t cp = fold_next(&p);
                uint8_t b[4];
                size_t n;

                if (cp < 0x80)
                        b[0] = (uint8_t)cp, n = 1;
                else if (cp < 0x800)
                        b[0] = (uint8_t)(0xc0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 0x3f)),
                        n = 2;
                else if (cp < 0x10000)
                        b[0] = (uint8_t)(0xe0 | cp >> 12),
                        b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)),
                        b[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
                else if (cp < 0x110000)
                        b[0] = (uint8_t)(0xf0 | cp >> 18),
                        b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f)),
                        b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)),
                        b[3] = (uint8_t)(0x80 | (cp & 0x3f)), n = 4;
                else
                        b[0] = 0xff, b[1] = (uint8_t)(cp - 0x110000u), n = 2;
                for (size_t k = 0; k < n; k++) {
                        h ^= b[k];
                        h *= UINT64_C(1099511628211);
                }
        }
        return h;
}
