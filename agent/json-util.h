/* SPDX-License-Identifier: MIT */
#pragma once

/* JSON from outside the agent's control (the metadata service, state files), parsed defensively. */

#include <stddef.h>

typedef struct json_object json_object;

/* One JSON value filling exactly text[0..size) (whitespace around it allowed): not larger than
 * max bytes, no NUL inside, nested at most depth deep. A new reference, or NULL for anything
 * else (including out of memory). */
json_object *json_parse_bounded(const char *text, size_t size, size_t max, int depth);
