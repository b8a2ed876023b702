/* SPDX-License-Identifier: MIT */
#pragma once

/* The File REST API handlers: version check, authentication (emu-auth), then the operation on
 * the store. Replies exactly once. */

#include "emu-server.h"

void emu_files_handle(EmuRequest *req);
