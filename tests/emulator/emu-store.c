/* SPDX-License-Identifier: MIT */
#include "emu-store.h"

#include <stdlib.h>

struct EmuStore {
        int unused;
};

int emu_store_open(const char *data_dir, const char *account, EmuStore **ret) {
        (void)data_dir;
        (void)account;
        *ret = calloc(1, sizeof(EmuStore));
        return *ret ? 0 : -ENOMEM;
}

EmuStore *emu_store_free(EmuStore *s) {
        free(s);
        return NULL;
}
