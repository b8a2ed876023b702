/* SPDX-License-Identifier: MIT */
#pragma once

/* Authentication as the service checks it: Shared Key (and SharedKeyLite) over the exact
 * string-to-sign, SAS tokens (signature, start/expiry, permissions, resource), and OAuth bearer
 * tokens issued by the emulator's own metadata service. */

#include <stdint.h>

#include "emu-server.h"

/* Checks req's credentials for req->op. On success sets req->auth and returns 0. On failure it
 * has already replied (403 AuthenticationFailed, 400 MissingRequiredHeader, ...) and returns a
 * negative errno. */
int emu_auth_check(EmuRequest *req);

/* A bearer token for the managed identity client_id (NULL: the system-assigned identity),
 * valid until expires_on (seconds since the epoch). Caller frees *ret. */
int emu_auth_issue_token(
        Emulator *emu, const char *client_id, const char *resource, int64_t expires_on, char **ret);
