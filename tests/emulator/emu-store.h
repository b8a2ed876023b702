/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulator's share storage on disk under --data. (Interface being written.) */

#include "emu-server.h"

int emu_store_open(const char *data_dir, const char *account, EmuStore **ret);
EmuStore *emu_store_free(EmuStore *s);
