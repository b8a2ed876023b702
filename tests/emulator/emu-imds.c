/* SPDX-License-Identifier: MIT */
#include "emu-imds.h"

#include <stdlib.h>

struct EmuImds {
        Emulator *emu;
};

int emu_imds_new(Emulator *emu, EmuImds **ret) {
        EmuImds *i = calloc(1, sizeof(EmuImds));
        if (!i)
                return -ENOMEM;
        i->emu = emu;
        *ret = i;
        return 0;
}

EmuImds *emu_imds_free(EmuImds *imds) {
        free(imds);
        return NULL;
}

EmuOp emu_imds_classify(const EmuRequest *req) {
        (void)req;
        return _EMU_OP_INVALID;
}

void emu_imds_handle(EmuRequest *req) {
        (void)emu_reply_body(req, 404, "text/plain", "not found\n", 10);
}
