/* SPDX-License-Identifier: MIT */
#include "emu-admin.h"

void emu_admin_handle(EmuRequest *req) {
        (void)emu_reply_body(req, 200, "text/plain", "ok\n", 3);
}
