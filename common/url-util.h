/* SPDX-License-Identifier: MIT */
#pragma once

/* Percent-encoding (RFC 3986) for query values and path segments. */

#include <stdbool.h>
#include <stddef.h>

/* Decodes len bytes of src. '+' is kept as '+' (the storage services do not read it as a space).
 * Returns 0 and a NUL-terminated copy, -EINVAL for a malformed escape or an embedded NUL. */
int url_percent_decode(const char *src, size_t len, char **ret);

/* Encodes s, leaving the RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) as they are, and
 * '/' too when keep_slash (for paths). Returns 0 and a new string. */
int url_percent_encode(const char *s, bool keep_slash, char **ret);
