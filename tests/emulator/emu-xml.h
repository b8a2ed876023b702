/* SPDX-License-Identifier: MIT */
#pragma once

/* A small XML writer for the service's response bodies: UTF-8 BOM, the declaration the service
 * sends, escaped text and attributes. Writing only; requests are parsed with expat. Errors
 * (allocation failure, output over EMU_XML_MAX) are sticky and reported by emu_xml_steal(). */

#include <stddef.h>

#include "macro.h"

#define EMU_XML_MAX (64u * 1024u * 1024u)

typedef struct EmuXml EmuXml;

/* Starts a document: BOM + <?xml version="1.0" encoding="utf-8"?> */
EmuXml *emu_xml_new(void);
EmuXml *emu_xml_free(EmuXml *x);
DEFINE_TRIVIAL_CLEANUP_FUNC(EmuXml *, emu_xml_free);

/* <name> ; attrs is a NULL-terminated list of name, value pairs (values escaped), may be NULL. */
void emu_xml_open(EmuXml *x, const char *name);
void emu_xml_open_attrs(EmuXml *x, const char *name, const char *const *attrs);
void emu_xml_close(EmuXml *x, const char *name);
/* <name>escaped text</name> */
void emu_xml_element(EmuXml *x, const char *name, const char *text);
void emu_xml_element_attrs(EmuXml *x, const char *name, const char *const *attrs, const char *text);
void emu_xml_elementf(EmuXml *x, const char *name, const char *format, ...) _printf_(3, 4);
/* <name /> */
void emu_xml_empty(EmuXml *x, const char *name);

/* Returns the document (caller frees) and its size, or NULL after any error. */
char *emu_xml_steal(EmuXml *x, size_t *ret_size);

/* True if every code point in the UTF-8 string s is allowed in XML 1.0 text and s is valid
 * UTF-8 (names that are not come back Encoded="true" in listings). */
int emu_xml_text_is_valid(const char *s);
