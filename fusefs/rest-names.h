/* SPDX-License-Identifier: MIT */
#pragma once

/* The names Azure Files takes for a file or directory, checked here before a name is used, so
 * that a name the share would refuse fails at once with a clear errno instead of at the upload
 * (a file made in the cache under such a name could never reach the share), and a name the share
 * would rewrite (a trailing dot, which it strips unless told otherwise) cannot reach another
 * file: "foo." is not a second name of "foo". */

/* REST_NAME_MAX: bytes of one component (NAME_MAX); the share counts 255 UTF-16 units. */
#define REST_NAME_MAX 255

/* 0 when the share takes name as one component of a path; -ENAMETOOLONG over REST_NAME_MAX
 * bytes; -EINVAL for "", ".", "..", a byte that is not valid UTF-8 (or a surrogate), a control
 * character (0x00-0x1f), one of " \ / : | < > * ?, a trailing dot, or a reserved DOS device
 * name (CON, PRN, AUX, NUL, CLOCK$, COM1-9, LPT1-9; any case). Pure. */
int rest_name_check(const char *name);
