/* SPDX-License-Identifier: MIT */
#include "emu-files.h"

void emu_files_handle(EmuRequest *req) {
        (void)emu_reply_error(req, 501, "NotImplemented", "Not implemented yet.", NULL);
}
