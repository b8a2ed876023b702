/* SPDX-License-Identifier: MIT */
#pragma once

/* JSON from outside the agent's control (the metadata service, state files), parsed defensively. */

#include <stddef.h>

typedef struct json_object json_object;

/* One JSON value filling exactly text[0..size) (whitespace around it allowed): not larger than
 * max bytes, no NUL inside, nested at most depth deep. A new reference, or NULL for anything
 * else (including out of memory). */
json_object *json_parse_bounded(const char *text, size_t size, size_t max, int depth);

/* For _cleanup_(json_object_putp): drops the reference, NULL-safe. */
void json_object_putp(json_object **o);

/* Adds v (taken over, NULL: out of memory) to o as key: 0 or -ENOMEM (v freed). */
int json_add_owned(json_object *o, const char *key, json_object *v);
/* A JSON array of the strings of NULL-terminated l (NULL: empty), or NULL (out of memory). */
json_object *json_strv_new(char *const *l);
