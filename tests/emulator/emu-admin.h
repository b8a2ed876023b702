/* SPDX-License-Identifier: MIT */
#pragma once

/* The emulator's admin API, under /__emu/ on both listeners (no real account or IMDS path can
 * start with "__emu": account names are 3-24 lowercase letters and digits). */

#include "emu-server.h"

#define EMU_ADMIN_SEGMENT "__emu"

void emu_admin_handle(EmuRequest *req);
