/* SPDX-License-Identifier: MIT */
#pragma once

/* Managed identity tokens from the Instance Metadata Service:
 *   GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C]
 * with "Metadata: true" and never through a proxy. The token is cached and refreshed
 * refresh_margin (default 5 minutes) before it expires, or halfway through the life it had left
 * when it arrived if that is later, by a timer, so that requests rarely wait; 429 and 5xx (and
 * transport errors) are retried with exponential backoff and jitter, waiting at least as long as a
 * Retry-After asks, within a bounded time. When a refresh fails while the old token has more than
 * a minute left, the old one is still served and the refresh is tried again after 5 s, doubling up
 * to 60 s (with jitter), and at the latest with a minute left; so it is while the refresh runs.
 * Loop thread only; runs on a borrowed HttpClient. Never logs the token. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sd_event sd_event;
typedef struct HttpClient HttpClient;
typedef struct ImdsClient ImdsClient;

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_STORAGE_RESOURCE "https://storage.azure.com/"
#define IMDS_TOKEN_MAX (16u * 1024u)
#define IMDS_RESPONSE_MAX (64u * 1024u)
#define IMDS_WAITERS_MAX 4096

typedef struct ImdsClientConfig {
        const char *endpoint;        /* NULL: IMDS_DEFAULT_ENDPOINT (scheme://host[:port]) */
        const char *resource;        /* NULL: IMDS_STORAGE_RESOURCE */
        const char *client_id;       /* user-assigned identity, or NULL */
        uint64_t refresh_margin_ms;  /* 0: 5 minutes */
        unsigned max_attempts;       /* 0: 5 */
        uint64_t retry_base_ms;      /* 0: 500 */
        uint64_t retry_budget_ms;    /* 0: 60 s */
        uint64_t attempt_timeout_ms; /* 0: 10 s */
} ImdsClientConfig;

/* error 0: token is valid during the callback only (copy it to keep it). */
typedef void (*ImdsTokenFn)(int error, const char *token, void *userdata);

int imds_client_new(
        sd_event *event, HttpClient *http, const ImdsClientConfig *config, ImdsClient **ret);
/* Pending waiters are called with -ECANCELED. NULL-safe. */
ImdsClient *imds_client_free(ImdsClient *c);
static inline void imds_client_freep(ImdsClient **c) {
        *c = imds_client_free(*c);
}

/* The cached token if it is not yet due for refresh, or a refresh runs or failed and it has more
 * than a minute left: 0 and *ret_token (valid until the loop runs again). -ENOKEY when there is
 * none (then use imds_client_get_token()). */
int imds_client_peek_token(ImdsClient *c, const char **ret_token);
/* Which token the cached one is (a new one each time a fetch stores one). */
uint64_t imds_client_token_generation(ImdsClient *c);
/* Forgets the cached token if it is still the one of that generation (the service refused it:
 * revoked, or expired by its clock); the next request fetches a new one. */
void imds_client_drop_token(ImdsClient *c, uint64_t generation);
/* Calls cb later on the loop with a fresh token or a negative errno (-EACCES for 400/403 refusals,
 * -EIO/-ETIMEDOUT/... when retries ran out, -EBADMSG for a malformed answer). Waiters share one
 * request. Never calls cb from inside this function. */
int imds_client_get_token(ImdsClient *c, ImdsTokenFn cb, void *userdata);
/* Forgets a waiter registered with exactly this cb and userdata (its cb is not called). */
void imds_client_cancel_waiter(ImdsClient *c, ImdsTokenFn cb, void *userdata);

/* Pure: access_token (non-empty string) and expires_on (seconds since the epoch) from the JSON
 * answer, accepting numbers or numeric strings for expires_on/expires_in; without expires_on,
 * now_s + expires_in. -EBADMSG for anything else. */
int imds_parse_token_response(
        const char *json, size_t size, int64_t now_s, char **ret_token, int64_t *ret_expires_on_s);
