/* SPDX-License-Identifier: MIT */
#pragma once

/* The service's naming rules, pure (no I/O): share names, file and directory names, whole paths,
 * and the case folding that makes names case-insensitive but case-preserving.
 *
 * Lengths are counted the way the service (a Windows file system) counts them: in UTF-16 code
 * units, so a character outside the BMP counts twice. */

#include <stdbool.h>
#include <stddef.h>

#define EMU_NAME_MAX 255       /* UTF-16 code units per component */
#define EMU_PATH_MAX 2048      /* UTF-16 code units of the whole path below the share */
#define EMU_PATH_DEPTH_MAX 250 /* components below the share */

/* 3-63 characters, lowercase letters, digits and single hyphens, starting and ending with a letter
 * or digit. Returns 0 or -EINVAL. */
int emu_share_name_validate(const char *name);

/* Validates one decoded path component and returns the name as the service keeps it: trailing
 * dots are stripped unless allow_trailing_dot (x-ms-allow-trailing-dot: true, >= 2022-11-02).
 * Returns 0 and sets *ret (caller frees), -EINVAL for a name with forbidden characters (" \ / : |
 * < > * ? and 0x00-0x1F), invalid UTF-8, a reserved device name, or nothing left after stripping
 * (service: 400 InvalidResourceName), -ENAMETOOLONG for more than EMU_NAME_MAX UTF-16 units (400
 * InvalidFileOrDirectoryPathName), -ENOMEM. */
int emu_name_normalize(const char *name, bool allow_trailing_dot, char **ret);

/* Checks a whole path of already-normalized components: depth <= EMU_PATH_DEPTH_MAX and length
 * (components joined with '/') <= EMU_PATH_MAX. Returns 0 or -ENAMETOOLONG. */
int emu_path_validate(char *const *components, size_t n);

/* UTF-16 code units of a valid UTF-8 string; -EINVAL for invalid UTF-8. */
long emu_utf16_length(const char *s);

/* Case folding for lookups, as Windows file systems compare names: two names are one when their
 * upper cases are (towupper_l() in the C.UTF-8 locale, a simple mapping; when that locale is
 * missing only ASCII is folded). The folded form is that upper case, but for ASCII letters,
 * which fold to lower case (as on disk before Unicode folding was by upper case). The input
 * must be valid UTF-8 (as returned by emu_name_normalize). Sets *ret (caller frees). */
int emu_name_fold(const char *name, char **ret);

/* Percent-encodes every byte of s except the unreserved characters A-Z a-z 0-9 - . _ ~, as the
 * service does for <Name Encoded="true">. Sets *ret (caller frees). */
int emu_name_percent_encode(const char *s, char **ret);
