/* SPDX-License-Identifier: MIT */
#pragma once

/* The Instance Metadata Service: /metadata/instance, /metadata/scheduledevents (GET and POST
 * StartRequests), /metadata/identity/oauth2/token. State (scheduled events, approvals) is kept
 * in memory behind the EmuImds lock. */

#include "emu-server.h"

int emu_imds_new(Emulator *emu, EmuImds **ret);
EmuImds *emu_imds_free(EmuImds *imds);

EmuOp emu_imds_classify(const EmuRequest *req);
void emu_imds_handle(EmuRequest *req);
