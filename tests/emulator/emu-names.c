/* SPDX-License-Identifier: MIT */
#include "emu-names.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include "macro.h"

int emu_share_name_validate(const char *name) {
        size_t n = strlen(name);

        if (n < 3 || n > 63)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                        continue;
                if (c == '-' && i > 0 && i < n - 1 && name[i - 1] != '-')
                        continue;
                return -EINVAL;
        }
        return 0;
}

/* Decodes one UTF-8 sequence strictly (no overlongs, no surrogates, <= U+10FFFF). Returns the
 * number of bytes, or -EINVAL. */
static int utf8_decode(const unsigned char *p, uint32_t *ret) {
        uint32_t cp;
        int n;

        if (p[0] < 0x80) {
                *ret = p[0];
                return 1;
        }
        if ((p[0] & 0xE0) == 0xC0) {
                cp = p[0] & 0x1F;
                n = 2;
        } else if ((p[0] & 0xF0) == 0xE0) {
                cp = p[0] & 0x0F;
                n = 3;
        } else if ((p[0] & 0xF8) == 0xF0) {
                cp = p[0] & 0x07;
                n = 4;
        } else
                return -EINVAL;
        for (int i = 1; i < n; i++) {
                if ((p[i] & 0xC0) != 0x80)
                        return -EINVAL;
                cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
                return -EINVAL;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
                return -EINVAL;
        *ret = cp;
        return n;
}

static size_t utf8_encode(uint32_t cp, char *out) {
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xC0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xE0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                out[2] = (char)(0x80 | (cp & 0x3F));
                return 3;
        }
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        return 4;
}

long emu_utf16_length(const char *s) {
        const unsigned char *p = (const unsigned char *)s;
        long units = 0;

        while (*p) {
                uint32_t cp;
                int n = utf8_decode(p, &cp);
                if (n < 0)
                        return -EINVAL;
                units += cp >= 0x10000 ? 2 : 1;
                p += n;
        }
        return units;
}

static bool is_reserved_device_name(const char *s) {
        static const char *const reserved[] = {
                "CON",  "PRN",  "AUX",  "NUL",  "CLOCK$", "COM1", "COM2", "COM3",
                "COM4", "COM5", "COM6", "COM7", "COM8",   "COM9", "LPT1", "LPT2",
                "LPT3", "LPT4", "LPT5", "LPT6", "LPT7",   "LPT8", "LPT9",
        };
        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (strcasecmp(s, reserved[i]) == 0)
                        return true;
        return false;
}

int emu_name_normalize(const char *name, bool allow_trailing_dot, char **ret) {
        _cleanup_free_ char *copy = NULL;
        size_t len = strlen(name);
        long units;

        if (!allow_trailing_dot)
                while (len > 0 && name[len - 1] == '.')
                        len--;
        if (len == 0)
                return -EINVAL;
        copy = strndup(name, len);
        if (!copy)
                return -ENOMEM;
        for (const unsigned char *p = (const unsigned char *)copy; *p; p++)
                if (*p < 0x20 || strchr("\"\\/:|<>*?", *p))
                        return -EINVAL;
        if (streq(copy, ".") || streq(copy, ".."))
                return -EINVAL;
        units = emu_utf16_length(copy);
        if (units < 0)
                return -EINVAL;
        if (units > EMU_NAME_MAX)
                return -ENAMETOOLONG;
        if (is_reserved_device_name(copy))
                return -EINVAL;
        *ret = TAKE_PTR(copy);
        return 0;
}

int emu_path_validate(char *const *components, size_t n) {
        long total = 0;

        if (n > EMU_PATH_DEPTH_MAX)
                return -ENAMETOOLONG;
        for (size_t i = 0; i < n; i++) {
                long units = emu_utf16_length(components[i]);
                if (units < 0)
                        return -EINVAL;
                total += units + (i > 0 ? 1 : 0);
        }
        return total > EMU_PATH_MAX ? -ENAMETOOLONG : 0;
}

static locale_t fold_locale = (locale_t)0;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void) {
        fold_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

int emu_name_fold(const char *name, char **ret) {
        const unsigned char *p = (const unsigned char *)name;
        size_t len = strlen(name);
        char *out, *o;

        (void)pthread_once(&fold_once, fold_init);
        /* Case mappings never need more than 4 bytes per code point; allow for growth from
         * 2-byte to 3-byte forms (e.g. U+0250 -> U+2C6F) by reserving twice the input. */
        out = malloc(len * 2 + 1);
        if (!out)
                return -ENOMEM;
        o = out;
        while (*p) {
                uint32_t cp;
                int n;

                if (*p < 0x80) {
                        *o++ = (char)((*p >= 'A' && *p <= 'Z') ? *p + ('a' - 'A') : *p);
                        p++;
                        continue;
                }
                n = utf8_decode(p, &cp);
                if (n < 0) {
                        free(out);
                        return -EINVAL;
                }
                if (fold_locale != (locale_t)0) {
                        wint_t u = towupper_l((wint_t)cp, fold_locale);
                        if (u != WEOF && u <= 0x10FFFF && !(u >= 0xD800 && u <= 0xDFFF))
                                cp = (uint32_t)u;
                }
                if (cp >= 'A' && cp <= 'Z') /* the upper cases of U+0131 and U+017F */
                        cp += 'a' - 'A';
                o += utf8_encode(cp, o);
                p += n;
        }
        *o = '\0';
        *ret = out;
        return 0;
}

int emu_name_percent_encode(const char *s, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        size_t len = strlen(s);
        char *out = malloc(len * 3 + 1), *o;

        if (!out)
                return -ENOMEM;
        o = out;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p))
                        *o++ = (char)*p;
                else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 0xF];
                }
        }
        *o = '\0';
        *ret = out;
        return 0;
}
