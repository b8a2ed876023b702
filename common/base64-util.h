/* SPDX-License-Identifier: MIT */
#pragma once

/* Base64 (RFC 4648, with padding) over OpenSSL's EVP block coder, with the padding arithmetic
 * OpenSSL leaves to the caller. Both return 0 and a NUL-terminated buffer (caller frees). */

#include <stddef.h>
#include <stdint.h>

int base64_encode(const void *data, size_t size, char **ret);
/* Strict: rejects whitespace, bad characters, bad padding, lengths not a multiple of 4. */
int base64_decode(const char *text, uint8_t **ret, size_t *ret_size);
