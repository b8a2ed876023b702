/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>

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

/* The share compares names case-insensitively for every letter that has a case, not only ASCII
 * letters ("Über" and "über" are one name), as Windows file systems do: two names are one when
 * their upper cases are (a simple mapping, one code point to one: "ß" is not "SS"; final "ς"
 * and "σ" are one, "Σ"; the KELVIN SIGN is not "k", whose upper case is "K"). The share's table
 * is not published; here it is C.UTF-8's towupper(), and the emulator folds alike. Bytes that
 * are not valid UTF-8 match only themselves. Without the C.UTF-8 locale only ASCII letters are
 * folded (rest_name_fold_unicode() is then false). */
bool rest_name_fold_unicode(void);
/* <0, 0, >0 as a sorts before, equals, or sorts after b, folded. */
int rest_name_casecmp(const char *a, const char *b);
/* The rest of path after prefix (folded alike), or NULL when path does not start with it. The
 * rest may start anywhere: the caller checks for the '/' or the end. */
const char *rest_path_after_prefix(const char *path, const char *prefix);
/* A hash (FNV-1a) of s folded: equal for names rest_name_casecmp() finds equal. For ASCII it is
 * that of the lower-case bytes. */
uint64_t rest_name_hash(const char *s);
