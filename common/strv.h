/* SPDX-License-Identifier: MIT */
#pragma once

/* NULL-terminated arrays of strings ("strv"), each string and the array malloc'ed and owned by
 * the array. A NULL strv is the empty list wherever one is read. */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* Frees every string and the array; NULL-safe; returns NULL. */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);
bool strv_equal(char *const *a, char *const *b);
/* Appends a copy of s to *l (allocating *l when NULL): 0, or -ENOMEM with *l unchanged. */
int strv_push(char ***l, const char *s);
/* A copy of l in *ret (never NULL on success, also for an empty or NULL l): 0, -E2BIG for more
 * than max entries, -ENOMEM. */
int strv_copy(char *const *l, size_t max, char ***ret);
