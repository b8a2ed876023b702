/* SPDX-License-Identifier: MIT */
#include "emu-xml.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct EmuXml {
        char *buf;
        size_t size;
        size_t alloc;
        bool failed;
};

static void put(EmuXml *x, const char *s, size_t n) {
        if (x->failed)
                return;
        if (x->size + n + 1 > EMU_XML_MAX) {
                x->failed = true;
                return;
        }
        if (x->size + n + 1 > x->alloc) {
                size_t want = MAX(x->alloc * 2, x->size + n + 1);
                char *nb = realloc(x->buf, want);
                if (!nb) {
                        x->failed = true;
                        return;
                }
                x->buf = nb;
                x->alloc = want;
        }
        memcpy(x->buf + x->size, s, n);
        x->size += n;
        x->buf[x->size] = '\0';
}

static void puts_(EmuXml *x, const char *s) {
        put(x, s, strlen(s));
}

static void put_escaped(EmuXml *x, const char *s, bool attribute) {
        const char *run = s;
        for (; *s; s++) {
                const char *rep = NULL;
                switch (*s) {
                case '&':
                        rep = "&amp;";
                        break;
                case '<':
                        rep = "&lt;";
                        break;
                case '>':
                        rep = "&gt;";
                        break;
                case '"':
                        /* Text keeps quotes as the service sends them (<Etag>"0x8D..."</Etag>). */
                        if (!attribute)
                                continue;
                        rep = "&quot;";
                        break;
                default:
                        continue;
                }
                put(x, run, (size_t)(s - run));
                puts_(x, rep);
                run = s + 1;
        }
        put(x, run, (size_t)(s - run));
}

EmuXml *emu_xml_new(void) {
        EmuXml *x = calloc(1, sizeof(EmuXml));
        if (!x)
                return NULL;
        puts_(x, "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        return x;
}

EmuXml *emu_xml_free(EmuXml *x) {
        if (x) {
                free(x->buf);
                free(x);
        }
        return NULL;
}

static void open_tag(EmuXml *x, const char *name, const char *const *attrs, const char *end) {
        puts_(x, "<");
        puts_(x, name);
        for (size_t i = 0; attrs && attrs[i] && attrs[i + 1]; i += 2) {
                puts_(x, " ");
                puts_(x, attrs[i]);
                puts_(x, "=\"");
                put_escaped(x, attrs[i + 1], true);
                puts_(x, "\"");
        }
        puts_(x, end);
}

void emu_xml_open(EmuXml *x, const char *name) {
        open_tag(x, name, NULL, ">");
}

void emu_xml_open_attrs(EmuXml *x, const char *name, const char *const *attrs) {
        open_tag(x, name, attrs, ">");
}

void emu_xml_close(EmuXml *x, const char *name) {
        puts_(x, "</");
        puts_(x, name);
        puts_(x, ">");
}

void emu_xml_element_attrs(
        EmuXml *x, const char *name, const char *const *attrs, const char *text) {
        open_tag(x, name, attrs, ">");
        put_escaped(x, text ? text : "", false);
        emu_xml_close(x, name);
}

void emu_xml_element(EmuXml *x, const char *name, const char *text) {
        emu_xml_element_attrs(x, name, NULL, text);
}

void emu_xml_elementf(EmuXml *x, const char *name, const char *format, ...) {
        char *text;
        va_list ap;
        va_start(ap, format);
        if (vasprintf(&text, format, ap) < 0) {
                va_end(ap);
                x->failed = true;
                return;
        }
        va_end(ap);
        emu_xml_element(x, name, text);
        free(text);
}

void emu_xml_empty(EmuXml *x, const char *name) {
        open_tag(x, name, NULL, " />");
}

char *emu_xml_steal(EmuXml *x, size_t *ret_size) {
        char *b;
        if (x->failed || !x->buf)
                return NULL;
        b = x->buf;
        *ret_size = x->size;
        x->buf = NULL;
        x->size = x->alloc = 0;
        return b;
}

int emu_xml_text_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                uint32_t cp;
                int n;
                if (p[0] < 0x80) {
                        cp = p[0];
                        n = 1;
                } else if ((p[0] & 0xE0) == 0xC0) {
                        cp = p[0] & 0x1F;
                        n = 2;
                } else if ((p[0] & 0xF0) == 0xE0) {
                        cp = p[0] & 0x0F;
                        n = 3;
                } else if ((p[0] & 0xF8) == 0xF0) {
                        cp = p[0] & 0x07;
                        n = 4;
                } else
                        return 0;
                for (int i = 1; i < n; i++) {
                        if ((p[i] & 0xC0) != 0x80)
                                return 0;
                        cp = cp << 6 | (p[i] & 0x3F);
                }
                if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
                        return 0; /* overlong */
                if (cp < 0x20 && cp != 0x9 && cp != 0xA && cp != 0xD)
                        return 0;
                if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF || cp > 0x10FFFF)
                        return 0;
                p += n;
        }
        return 1;
}
