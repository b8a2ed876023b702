/* SPDX-License-Identifier: MIT */
/* Names the share refuses or rewrites (rest-names.h), after the File service's naming rules:
 * ../shared/azure-files/FACTS.md, "Limits & naming". The emulator keeps its own copy of these
 * rules (tests/emulator/emu-names.c) on purpose: it stands for the service, so it must not take
 * them from the client it tests; test-rest-names checks that the two agree. */
#include "rest-names.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "macro.h"

/* Length of the valid UTF-8 sequence at p (1-4), or 0: overlong forms, surrogates and code
 * points past U+10FFFF are not valid (RFC 3629). */
static size_t utf8_sequence(const unsigned char *p) {
        uint32_t cp;
        size_t n;

        if (p[0] < 0x80)
                return 1;
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
                size_t n = utf8_sequence(p);
                if (n == 0 || *p < 0x20 || strchr("\"\\/:|<>*?", *p))
                        return -EINVAL;
                p += n;
        }
        return is_reserved_device_name(name) ? -EINVAL : 0;
}
