/* SPDX-License-Identifier: MIT */
#include "emu-auth.h"

int emu_auth_check(EmuRequest *req) {
        req->auth = EMU_AUTH_NONE;
        return 0;
}

int emu_auth_issue_token(
        Emulator *emu,
        const char *client_id,
        const char *resource,
        int64_t expires_on,
        char **ret) {
        (void)emu;
        (void)client_id;
        (void)resource;
        (void)expires_on;
        (void)ret;
        return -EOPNOTSUPP;
}
