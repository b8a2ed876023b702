/* SPDX-License-Identifier: MIT */
#pragma once

/* Wall-clock formats of the File REST API: RFC 1123 ("Tue, 04 Jan 2022 22:50:57 GMT") for Date,
 * x-ms-date and Last-Modified, and ISO 8601 with 7 fractional digits
 * ("2022-01-04T22:50:57.9013837Z") for the x-ms-file-*-time SMB properties. Times are nanoseconds
 * since the epoch (UTC). */

#include <stdint.h>
#include <time.h>

#define RFC1123_MAX 64
#define ISO8601_MAX 64
#define NSEC_PER_SEC INT64_C(1000000000)
/* The seconds the parsers return, so that any fraction still fits int64 nanoseconds:
 * 1677-09-21T00:12:44Z to 2262-04-11T23:47:15.9999999Z. */
#define TIME_SEC_MIN (INT64_MIN / NSEC_PER_SEC)
#define TIME_SEC_MAX (INT64_MAX / NSEC_PER_SEC - 1)

int64_t now_realtime_ns(void);
int64_t now_monotonic_ns(void);

/* Both write a NUL-terminated string into buf and return buf. */
char *format_rfc1123(char buf[static RFC1123_MAX], int64_t ns);
char *format_iso8601(char buf[static ISO8601_MAX], int64_t ns);

/* Strict parsers: 0 and *ret set on success, -EINVAL on anything else (also a day the month does
 * not have). parse_iso8601 accepts 0 to 7 fractional digits and a trailing 'Z'. A valid time
 * outside TIME_SEC_MIN..TIME_SEC_MAX is -ERANGE with *ret set to the nearest bound (as strtol()
 * does): callers for which such a time is still a time take that. */
int parse_rfc1123(const char *s, int64_t *ret);
int parse_iso8601(const char *s, int64_t *ret);
