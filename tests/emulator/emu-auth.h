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

/* Audience the File service accepts in bearer tokens (with or without the trailing '/'). */
#define EMU_AUTH_AUDIENCE "https://storage.azure.com/"
/* Tenant and system-assigned identity the emulator's tokens name (made up, stable). */
#define EMU_AUTH_TENANT_ID "72f9e1e1-0000-4000-8000-0000000000e1"
#define EMU_AUTH_SYSTEM_IDENTITY_ID "72f9e1e1-0000-4000-8000-00000000055a"

/* Tokens are JWTs (base64url header.payload.signature), HS256 with the secret
 * HMAC-SHA256(account key, "azfiles-emu bearer token secret"); claims aud (= resource), iss,
 * iat, nbf, exp, oid, appid, sub, tid. Clients should treat them as opaque. */

/* A bearer token for the managed identity client_id (NULL: the system-assigned identity),
 * valid until expires_on (seconds since the epoch). Caller frees *ret. */
int emu_auth_issue_token(
        Emulator *emu, const char *client_id, const char *resource, int64_t expires_on, char **ret);

/* Checks a token from emu_auth_issue_token(): form, signature, nbf/exp against now_ns (5 minutes
 * of clock skew allowed as Entra ID allows) and audience. 0, or -EACCES with *reterr_detail set
 * to a static explanation in the words the service uses. */
int emu_auth_token_verify(
        const Emulator *emu, const char *token, int64_t now_ns, const char **reterr_detail);
