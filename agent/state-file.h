/* SPDX-License-Identifier: MIT */
#pragma once

/* Small state files under the agent's StateDirectory= (drain-state.json, jobs.json): read with a
 * cap, written atomically (DIR/.NAME.tmp, fsync, rename over DIR/NAME, fsync of DIR), so that a
 * crash leaves either the old or the new file, never a torn one. Links are not followed. */

#include <stddef.h>

/* The whole file into *ret (NUL-terminated, malloc'ed) and its size; -ENOENT when there is none,
 * -EFBIG when it is larger than max. */
int state_file_read(const char *dir, const char *name, size_t max, char **ret, size_t *ret_size);
/* Creates dir (0755) if needed. */
int state_file_write(const char *dir, const char *name, const char *text);
