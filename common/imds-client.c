/* SPDX-License-Identifier: MIT */
#include "imds-client.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "http-client.h"
#include "log.h"
#include "macro.h"
#include "time-util.h"
#include "url-util.h"

#define IMDS_EXPIRY_MAX_S (366 * 24 * 3600) /* a token claiming to live longer is malformed */
#define IMDS_GRACE_S 60 /* an old token this far from expiry still beats a failed refresh */
/* After a failed refresh that left the old token in use: the first delay, doubled each time */
#define IMDS_REFRESH_RETRY_MIN_MS UINT64_C(5000)
#define IMDS_REFRESH_RETRY_MAX_MS UINT64_C(60000)

typedef struct ImdsWaiter {
        struct ImdsWaiter *next;
        ImdsTokenFn cb;
        void *userdata;
} ImdsWaiter;

typedef struct ImdsTicket {
        ImdsClient *client; /* NULL once orphaned */
} ImdsTicket;

struct ImdsClient {
        sd_event *event;
        HttpClient *http;
        char *url;
        uint64_t refresh_margin_ms, retry_base_ms, retry_budget_ms, attempt_timeout_ms;
        unsigned max_attempts;
        char *token;
        uint64_t token_gen; /* counts the tokens stored, so that a refusal drops only its own */
        int64_t expires_on_s;
        uint64_t refresh_at_us;    /* CLOCK_REALTIME: the token is due for refresh */
        unsigned refresh_failures; /* in a row, the old token still in use */
        ImdsWaiter *waiters;
        size_t n_waiters;
        bool fetching;
        unsigned attempts;
        int64_t first_ns;
        ImdsTicket *ticket;
        uint64_t http_id;
        sd_event_source *retry_timer, *refresh_timer, *deliver;
        uint64_t rng;
};

static void imds_fetch_start(ImdsClient *c);

/* ---- parsing ---------------------------------------------------------------------------- */

static int json_int64_lenient(json_object *o, int64_t *ret) {
        const char *s;
        char *end;
        long long v;

        if (json_object_is_type(o, json_type_int)) {
                errno = 0;
                v = json_object_get_int64(o);
                if (errno != 0)
                        return -EBADMSG;
                *ret = v;
                return 0;
        }
        if (!json_object_is_type(o, json_type_string))
                return -EBADMSG;
        s = json_object_get_string(o);
        if (isempty(s) || s[0] < '0' || s[0] > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EBADMSG;
        *ret = v;
        return 0;
}

int imds_parse_token_response(
        const char *json, size_t size, int64_t now_s, char **ret_token, int64_t *ret_expires_on_s) {
        json_tokener *tok;
        json_object *root, *o;
        const char *token;
        int64_t expires_on, expires_in;
        int r = -EBADMSG;

        if (size > IMDS_RESPONSE_MAX || size > INT32_MAX)
                return -EBADMSG;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        root = json_tokener_parse_ex(tok, json, (int)size);
        if (root && json_tokener_get_error(tok) == json_tokener_success &&
            tok->char_offset < (int)size) {
                /* trailing garbage after the object */
                for (size_t i = (size_t)tok->char_offset; i < size; i++)
                        if (json[i] != ' ' && json[i] != '\n' && json[i] != '\r' &&
                            json[i] != '\t') {
                                json_object_put(root);
                                root = NULL;
                                break;
                        }
        }
        json_tokener_free(tok);
        if (!root || !json_object_is_type(root, json_type_object))
                goto finish;
        if (!json_object_object_get_ex(root, "access_token", &o) ||
            !json_object_is_type(o, json_type_string))
                goto finish;
        token = json_object_get_string(o);
        if (isempty(token) || strlen(token) > IMDS_TOKEN_MAX || strpbrk(token, "\r\n "))
                goto finish;
        if (json_object_object_get_ex(root, "expires_on", &o)) {
                if (json_int64_lenient(o, &expires_on) < 0)
                        goto finish;
        } else if (json_object_object_get_ex(root, "expires_in", &o)) {
                if (json_int64_lenient(o, &expires_in) < 0 || expires_in > IMDS_EXPIRY_MAX_S)
                        goto finish;
                expires_on = now_s + expires_in;
        } else
                goto finish;
        if (expires_on <= now_s || expires_on - now_s > IMDS_EXPIRY_MAX_S)
                goto finish;
        *ret_token = strdup(token);
        if (!*ret_token) {
                r = -ENOMEM;
                goto finish;
        }
        *ret_expires_on_s = expires_on;
        r = 0;
finish:
        if (root)
                json_object_put(root);
        return r;
}

/* ---- waiters ---------------------------------------------------------------------------- */

static int64_t now_s(void) {
        return now_realtime_ns() / NSEC_PER_SEC;
}

static bool token_good_for(const ImdsClient *c, int64_t seconds) {
        return c->token && c->expires_on_s - now_s() > seconds;
}

static bool token_usable(const ImdsClient *c) {
        /* Due for refresh while the refresh runs (a slow or hung IMDS must not stall every
         * request behind it), or after it failed (the refresh timer tries again): the old token
         * serves while it has more than a minute left. */
        if ((c->fetching || c->refresh_failures > 0) && token_good_for(c, IMDS_GRACE_S))
                return true;
        return c->token && (uint64_t)now_realtime_ns() / 1000 < c->refresh_at_us;
}

static void deliver_all(ImdsClient *c, int error) {
        ImdsWaiter *w = c->waiters;

        c->waiters = NULL;
        c->n_waiters = 0;
        while (w) {
                ImdsWaiter *next = w->next;
                if (error < 0)
                        w->cb(error, NULL, w->userdata);
                else
                        w->cb(0, c->token, w->userdata);
                free(w);
                w = next;
        }
}

static int on_deliver(sd_event_source *s, void *userdata) {
        ImdsClient *c = userdata;

        c->deliver = sd_event_source_disable_unref(c->deliver);
        if (token_usable(c))
                deliver_all(c, 0);
        else if (!c->fetching)
                imds_fetch_start(c);
        return 0;
}

int imds_client_peek_token(ImdsClient *c, const char **ret_token) {
        if (!token_usable(c))
                return -ENOKEY;
        *ret_token = c->token;
        return 0;
}

uint64_t imds_client_token_generation(ImdsClient *c) {
        return c->token_gen;
}

void imds_client_drop_token(ImdsClient *c, uint64_t generation) {
        if (!c->token || generation != c->token_gen)
                return; /* another one since, or none */
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        c->token = NULL;
        c->expires_on_s = 0;
        c->refresh_at_us = 0;
        c->refresh_failures = 0;
}

int imds_client_get_token(ImdsClient *c, ImdsTokenFn cb, void *userdata) {
        ImdsWaiter *w, **tail;

        assert(c);
        assert(cb);
        if (c->n_waiters >= IMDS_WAITERS_MAX)
                return -EAGAIN;
        w = calloc(1, sizeof(ImdsWaiter));
        if (!w)
                return -ENOMEM;
        *w = (ImdsWaiter){.cb = cb, .userdata = userdata};
        for (tail = &c->waiters; *tail; tail = &(*tail)->next)
                ;
        *tail = w;
        c->n_waiters++;
        if (!c->fetching && !c->deliver) {
                /* Deliver (or start fetching) from the loop, never from inside this call. */
                int r = sd_event_add_defer(c->event, &c->deliver, on_deliver, c);
                if (r < 0) {
                        imds_client_cancel_waiter(c, cb, userdata);
                        return r;
                }
        }
        return 0;
}

void imds_client_cancel_waiter(ImdsClient *c, ImdsTokenFn cb, void *userdata) {
        for (ImdsWaiter **p = &c->waiters; *p; p = &(*p)->next)
                if ((*p)->cb == cb && (*p)->userdata == userdata) {
                        ImdsWaiter *w = *p;
                        *p = w->next;
                        free(w);
                        c->n_waiters--;
                        return;
                }
}

/* ---- fetching ------------------------------------------------------------------------------ */

static uint64_t rng_next(ImdsClient *c) {
        c->rng ^= c->rng >> 12;
        c->rng ^= c->rng << 25;
        c->rng ^= c->rng >> 27;
        return c->rng * UINT64_C(2685821657736338717);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        ImdsClient *c = userdata;

        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        imds_fetch_start(c);
        return 0;
}

static int on_refresh(sd_event_source *s, uint64_t usec, void *userdata) {
        ImdsClient *c = userdata;

        if (!c->fetching && !c->retry_timer)
                imds_fetch_start(c);
        return 0;
}

/* After a failed refresh that left the old token in use: when to try again. Exponential backoff
 * with jitter, and at the latest when the token has IMDS_GRACE_S left (a failure then goes to the
 * waiters, as without a token). */
static uint64_t refresh_retry_at(ImdsClient *c) {
        unsigned n = MIN(c->refresh_failures, 16u);
        uint64_t cap = MIN(IMDS_REFRESH_RETRY_MIN_MS << n, IMDS_REFRESH_RETRY_MAX_MS);
        uint64_t delay_ms = cap / 2 + rng_next(c) % (cap / 2 + 1);
        uint64_t at = (uint64_t)now_realtime_ns() / 1000 + delay_ms * 1000;

        c->refresh_failures++;
        return MIN(at, (uint64_t)(c->expires_on_s - IMDS_GRACE_S) * 1000000);
}

static void fetch_done(ImdsClient *c, int error) {
        uint64_t at = 0;

        c->fetching = false;
        c->attempts = 0;
        if (error == 0) {
                uint64_t now = (uint64_t)now_realtime_ns() / 1000,
                         expires = (uint64_t)c->expires_on_s * 1000000,
                         left = expires > now ? expires - now : 0;
                /* At most half the lifetime left early: a token living less than twice the
                 * margin is not due for refresh the moment it arrives. */
                c->refresh_at_us = expires - MIN(c->refresh_margin_ms * 1000, left / 2);
                c->refresh_failures = 0;
                at = c->refresh_at_us;
        } else if (token_good_for(c, IMDS_GRACE_S)) {
                at = refresh_retry_at(c);
                error = 0; /* keep serving the old token until then */
        }
        if (error == 0) {
                if (!c->refresh_timer)
                        (void)sd_event_add_time(
                                c->event, &c->refresh_timer, CLOCK_REALTIME, at, 1000000,
                                on_refresh, c);
                else {
                        (void)sd_event_source_set_time(c->refresh_timer, at);
                        (void)sd_event_source_set_enabled(c->refresh_timer, SD_EVENT_ONESHOT);
                }
        }
        deliver_all(c, error);
}

static bool fetch_maybe_retry(ImdsClient *c, int64_t server_delay_ms) {
        uint64_t cap, delay_ms, elapsed_ms, now;

        if (c->attempts >= c->max_attempts)
                return false;
        cap = c->retry_base_ms << MIN(c->attempts - 1, 16u);
        delay_ms = cap / 2 + rng_next(c) % (cap / 2 + 1);
        /* Retry-After is a floor: 0 must not mean at once, nor a fixed value undo the jitter. */
        if (server_delay_ms >= 0)
                delay_ms = MAX(delay_ms, (uint64_t)server_delay_ms);
        elapsed_ms = (uint64_t)(now_monotonic_ns() - c->first_ns) / 1000000;
        if (elapsed_ms + delay_ms >= c->retry_budget_ms)
                return false;
        if (sd_event_now(c->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_add_time(
                    c->event, &c->retry_timer, CLOCK_MONOTONIC, now + delay_ms * 1000, 1000,
                    on_retry, c) < 0)
                return false;
        return true;
}

static int status_to_errno(long status) {
        switch (status) {
        case 400:
        case 401:
        case 403:
                return -EACCES; /* unknown identity, or not allowed */
        case 404:
                return -ENOENT;
        default:
                return status >= 500 ? -EIO : -EPROTO;
        }
}

static void on_http(const HttpResult *res, void *userdata) {
        ImdsTicket *ticket = userdata;
        ImdsClient *c = ticket->client;
        int error;

        free(ticket);
        if (!c)
                return;
        c->ticket = NULL;
        if (res->error < 0) {
                error = res->error;
                if (error != -ECANCELED && error != -EBADMSG && error != -E2BIG &&
                    fetch_maybe_retry(c, -1))
                        return;
                fetch_done(c, error);
                return;
        }
        if (res->status == 200) {
                _cleanup_free_ char *token = NULL;
                int64_t expires;
                error = imds_parse_token_response(
                        res->body, res->body_size, now_s(), &token, &expires);
                if (error == 0) {
                        if (c->token)
                                explicit_bzero(c->token, strlen(c->token));
                        free(c->token);
                        c->token = TAKE_PTR(token);
                        c->token_gen++;
                        c->expires_on_s = expires;
                }
                fetch_done(c, error);
                return;
        }
        /* Microsoft's guidance for managed identity: retry 404 (IMDS still starting), 410,
         * 429 and 5xx. */
        if (res->status == 404 || res->status == 410 || res->status == 429 || res->status >= 500) {
                const char *ra = http_result_header(res, "Retry-After");
                char *end = NULL;
                long long s = ra ? strtoll(ra, &end, 10) : -1;
                int64_t delay = ra && end && *end == '\0' && s >= 0 && s <= 600 ? s * 1000 : -1;
                if (fetch_maybe_retry(c, delay))
                        return;
        }
        fetch_done(c, status_to_errno(res->status));
}

static void imds_fetch_start(ImdsClient *c) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        ImdsTicket *ticket;
        int r;

        if (!c->fetching) {
                c->fetching = true;
                c->attempts = 0;
                c->first_ns = now_monotonic_ns();
        }
        c->attempts++;
        r = http_request_new("GET", c->url, &req);
        if (r >= 0)
                r = http_request_add_header(req, "Metadata", "true");
        if (r < 0) {
                fetch_done(c, r);
                return;
        }
        http_request_set_no_proxy(req, true);
        http_request_set_sink_memory(req, IMDS_RESPONSE_MAX);
        http_request_set_timeouts(
                req, c->attempt_timeout_ms, MIN(c->attempt_timeout_ms, 5000), 0, 0);
        ticket = calloc(1, sizeof(ImdsTicket));
        if (!ticket) {
                fetch_done(c, -ENOMEM);
                return;
        }
        ticket->client = c;
        http_request_set_callback(req, on_http, ticket);
        r = http_client_submit(c->http, req, &c->http_id);
        if (r < 0) {
                free(ticket);
                fetch_done(c, r);
                return;
        }
        TAKE_PTR(req);
        c->ticket = ticket;
}

/* ---- life cycle ---------------------------------------------------------------------------- */

int imds_client_new(
        sd_event *event, HttpClient *http, const ImdsClientConfig *config, ImdsClient **ret) {
        ImdsClientConfig cfg = config ? *config : (ImdsClientConfig){0};
        _cleanup_free_ char *resource = NULL, *client_id = NULL;
        ImdsClient *c;
        int r;

        assert(event);
        assert(http);
        c = calloc(1, sizeof(ImdsClient));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        c->http = http;
        c->refresh_margin_ms = cfg.refresh_margin_ms ?: 5 * 60 * 1000;
        c->max_attempts = cfg.max_attempts ?: 5;
        c->retry_base_ms = cfg.retry_base_ms ?: 500;
        c->retry_budget_ms = cfg.retry_budget_ms ?: 60000;
        c->attempt_timeout_ms = cfg.attempt_timeout_ms ?: 10000;
        if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != sizeof(c->rng))
                c->rng = (uint64_t)now_monotonic_ns();
        c->rng |= 1;
        r = url_percent_encode(cfg.resource ?: IMDS_STORAGE_RESOURCE, false, &resource);
        if (r >= 0 && cfg.client_id)
                r = url_percent_encode(cfg.client_id, false, &client_id);
        if (r < 0)
                goto fail;
        if (asprintf(
                    &c->url,
                    "%s/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s%s%s",
                    cfg.endpoint ?: IMDS_DEFAULT_ENDPOINT, resource, client_id ? "&client_id=" : "",
                    client_id ?: "") < 0) {
                c->url = NULL;
                r = -ENOMEM;
                goto fail;
        }
        *ret = c;
        return 0;
fail:
        (void)imds_client_free(c);
        return r;
}

ImdsClient *imds_client_free(ImdsClient *c) {
        if (!c)
                return NULL;
        if (c->ticket) {
                c->ticket->client = NULL;
                (void)http_client_cancel(c->http, c->http_id);
        }
        deliver_all(c, -ECANCELED);
        c->retry_timer = sd_event_source_disable_unref(c->retry_timer);
        c->refresh_timer = sd_event_source_disable_unref(c->refresh_timer);
        c->deliver = sd_event_source_disable_unref(c->deliver);
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        free(c->url);
        c->event = sd_event_unref(c->event);
        free(c);
        return NULL;
}
