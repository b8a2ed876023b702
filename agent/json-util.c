/* SPDX-License-Identifier: MIT */
#include "json-util.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

json_object *json_parse_bounded(const char *text, size_t size, size_t max, int depth) {
        json_tokener *tok;
        json_object *root;

        if (size > max || size > INT32_MAX || memchr(text, '\0', size))
                return NULL;
        tok = json_tokener_new_ex(depth);
        if (!tok)
                return NULL;
        root = json_tokener_parse_ex(tok, text, (int)size);
        if (root && json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(root);
                root = NULL;
        }
        for (size_t i = root ? json_tokener_get_parse_end(tok) : size; i < size; i++)
                if (!strchr(" \t\r\n", text[i])) {
                        json_object_put(root);
                        root = NULL;
                        break;
                }
        json_tokener_free(tok);
        return root;
}

void json_object_putp(json_object **o) {
        if (*o)
                (void)json_object_put(*o);
}

int json_add_owned(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

json_object *json_strv_new(char *const *l) {
        json_object *a = json_object_new_array();

        for (char *const *i = l; a && i && *i; i++)
                if (json_object_array_add(a, json_object_new_string(*i)) < 0) {
                        json_object_put(a);
                        return NULL;
                }
        return a;
}
