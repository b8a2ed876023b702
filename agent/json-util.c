/* SPDX-License-Identifier: MIT */
#include "json-util.h"

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
