/* SPDX-License-Identifier: MIT */
#include "strv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

char **strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char *const *l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

bool strv_contains(char *const *l, const char *s) {
        for (char *const *i = l; i && *i; i++)
                if (strcmp(*i, s) == 0)
                        return true;
        return false;
}

bool strv_equal(char *const *a, char *const *b) {
        size_t n = strv_length(a);

        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (strcmp(a[i], b[i]) != 0)
                        return false;
        return true;
}

int strv_push(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char *copy = strdup(s), **p;

        if (!copy)
                return -ENOMEM;
        p = realloc(*l, (n + 2) * sizeof(char *));
        if (!p) {
                free(copy);
                return -ENOMEM;
        }
        p[n] = copy;
        p[n + 1] = NULL;
        *l = p;
        return 0;
}

int strv_copy(char *const *l, size_t max, char ***ret) {
        size_t n = strv_length(l);
        _cleanup_strv_free_ char **c = NULL;

        if (n > max)
                return -E2BIG;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(l[i])))
                        return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}
