/* SPDX-License-Identifier: MIT */
#include "scheduled-events.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "http-client.h"
#include "json-util.h"
#include "log.h"
#include "time-util.h"

#define SCHEDULED_EVENTS_JSON_DEPTH 16

static const char *const scheduled_event_type_table[_SCHEDULED_EVENT_TYPE_MAX] = {
        [SCHEDULED_EVENT_FREEZE] = "Freeze",       [SCHEDULED_EVENT_REBOOT] = "Reboot",
        [SCHEDULED_EVENT_REDEPLOY] = "Redeploy",   [SCHEDULED_EVENT_PREEMPT] = "Preempt",
        [SCHEDULED_EVENT_TERMINATE] = "Terminate",
};

const char *scheduled_event_type_to_string(ScheduledEventType t) {
        if (t < 0 || t >= _SCHEDULED_EVENT_TYPE_MAX)
                return NULL;
        return scheduled_event_type_table[t];
}

ScheduledEventType scheduled_event_type_from_string(const char *s) {
        for (int i = 0; s && i < _SCHEDULED_EVENT_TYPE_MAX; i++)
                if (streq(s, scheduled_event_type_table[i]))
                        return (ScheduledEventType)i;
        return _SCHEDULED_EVENT_TYPE_INVALID;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static const char *json_get_string(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool resources_name_vm(json_object *resources, const char *vm_name) {
        size_t n;

        if (isempty(vm_name) || !json_object_is_type(resources, json_type_array))
                return false;
        n = MIN(json_object_array_length(resources), (size_t)SCHEDULED_EVENTS_RESOURCES_MAX);
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(resources, i);

                if (json_object_is_type(v, json_type_string) &&
                    strcasecmp(json_object_get_string(v), vm_name) == 0)
                        return true;
        }
        return false;
}

/* 0, or -EBADMSG when the event is malformed or of a kind we do not know (skipped). */
static int parse_event(json_object *o, const char *vm_name, ScheduledEvent *ret) {
        ScheduledEvent e = {.duration_s = -1};
        const char *id, *type, *status, *nb;
        json_object *v;
        int64_t ns;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        id = json_get_string(o, "EventId");
        type = json_get_string(o, "EventType");
        status = json_get_string(o, "EventStatus");
        if (isempty(id) || strlen(id) >= sizeof(e.id) || strpbrk(id, "\"\\/\r\n\t ") || !type ||
            !status)
                return -EBADMSG;
        memcpy(e.id, id, strlen(id) + 1);
        e.type = scheduled_event_type_from_string(type);
        if (e.type < 0)
                return -EBADMSG;
        if (streq(status, "Scheduled"))
                e.status = SCHEDULED_EVENT_SCHEDULED;
        else if (streq(status, "Started"))
                e.status = SCHEDULED_EVENT_STARTED;
        else
                return -EBADMSG;
        if (json_object_object_get_ex(o, "NotBefore", &v)) {
                if (!json_object_is_type(v, json_type_string))
                        return -EBADMSG;
                nb = json_object_get_string(v);
                if (!isempty(nb)) {
                        if (parse_rfc1123(nb, &ns) < 0 || ns <= 0)
                                return -EBADMSG;
                        e.not_before_usec = (uint64_t)ns / 1000U;
                }
        }
        if (json_object_object_get_ex(o, "DurationInSeconds", &v) &&
            json_object_is_type(v, json_type_int))
                e.duration_s = json_object_get_int64(v);
        if (!json_object_object_get_ex(o, "Resources", &v))
                v = NULL;
        e.for_this_vm = resources_name_vm(v, vm_name);
        *ret = e;
        return 0;
}

int scheduled_events_parse(
        const char *json,
        size_t size,
        const char *vm_name,
        ScheduledEventsDocument *ret,
        const char **reterr_reason) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *inc, *events;
        size_t n;

        if (size > SCHEDULED_EVENTS_DOCUMENT_MAX) {
                *reterr_reason = "document too large";
                return -EBADMSG;
        }
        root = json_parse_bounded(
                json, size, SCHEDULED_EVENTS_DOCUMENT_MAX, SCHEDULED_EVENTS_JSON_DEPTH);
        if (!root || !json_object_is_type(root, json_type_object)) {
                *reterr_reason = "not a JSON object";
                return -EBADMSG;
        }
        if (!json_object_object_get_ex(root, "DocumentIncarnation", &inc) ||
            !json_object_is_type(inc, json_type_int) || json_object_get_int64(inc) < 0) {
                *reterr_reason = "no numeric DocumentIncarnation";
                return -EBADMSG;
        }
        if (!json_object_object_get_ex(root, "Events", &events) ||
            !json_object_is_type(events, json_type_array)) {
                *reterr_reason = "no Events array";
                return -EBADMSG;
        }

        ret->incarnation = json_object_get_int64(inc);
        ret->n_events = 0;
        ret->n_skipped = 0;
        n = json_object_array_length(events);
        for (size_t i = 0; i < n; i++) {
                ScheduledEvent e;

                if (ret->n_events >= SCHEDULED_EVENTS_MAX ||
                    parse_event(json_object_array_get_idx(events, i), vm_name, &e) < 0) {
                        ret->n_skipped++;
                        continue;
                }
                ret->events[ret->n_events++] = e;
        }
        return 0;
}

int scheduled_events_approval_body(const char *event_id, char **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *list = json_object_new_array(), *req = json_object_new_object();
        char *s;

        if (!o || !list || !req || json_object_object_add(o, "StartRequests", list) < 0) {
                json_object_put(list);
                json_object_put(req);
                return -ENOMEM;
        }
        if (json_object_array_add(list, req) < 0) {
                json_object_put(req);
                return -ENOMEM;
        }
        if (json_object_object_add(req, "EventId", json_object_new_string(event_id)) < 0)
                return -ENOMEM;
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

bool scheduled_events_incarnation_accept(ScheduledEventsIncarnation *s, int64_t incarnation) {
        if (s->known && incarnation < s->last && ++s->n_stale < SCHEDULED_EVENTS_STALE_RESET)
                return false;
        if (s->known && incarnation < s->last)
                log_warning(
                        "Scheduled events: DocumentIncarnation went back from %lld to %lld "
                        "repeatedly, taking the service to have been reset",
                        (long long)s->last, (long long)incarnation);
        s->n_stale = 0;
        s->known = true;
        s->last = incarnation;
        return true;
}

/* ---- the poller ------------------------------------------------------------------------------ */

struct ScheduledEventsPoller {
        sd_event *event;
        HttpClient *http; /* borrowed */
        char *endpoint;
        char *vm_name; /* configured or fetched; NULL until known */
        bool vm_name_configured;
        uint64_t interval_usec;
        uint64_t backoff_usec; /* 0 while the service answers */
        ScheduledEventFn cb;
        void *userdata;

        sd_event_source *timer;
        uint64_t request_id; /* in flight, 0: none */
        ScheduledEventsIncarnation incarnation;

        uint64_t n_polls, n_errors;
        char *last_error; /* NULL after a good answer */
};

static void poller_schedule(ScheduledEventsPoller *p, uint64_t delay_usec);

_printf_(2, 3) static void poller_error(ScheduledEventsPoller *p, const char *format, ...) {
        char *s = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        p->n_errors++;
        /* Log each new kind of error once, then at debug level while it repeats. */
        if (s && (!p->last_error || !streq(s, p->last_error)))
                log_error("%s, keeping the previous state", s);
        else
                log_debug("%s", s ? s : "scheduled events request failed");
        free(p->last_error);
        p->last_error = s;
        p->backoff_usec = p->backoff_usec == 0 ? p->interval_usec * 2
                                               : MIN(p->backoff_usec * 2,
                                                     (uint64_t)SCHEDULED_EVENTS_BACKOFF_MAX_USEC);
}

static void poller_ok(ScheduledEventsPoller *p) {
        if (p->last_error)
                log_info("Metadata service at %s answers again", p->endpoint);
        free(p->last_error);
        p->last_error = NULL;
        p->backoff_usec = 0;
}

static void poller_on_document(const HttpResult *res, void *userdata) {
        ScheduledEventsPoller *p = userdata;
        _cleanup_free_ ScheduledEventsDocument *doc = NULL;
        const char *reason = NULL;
        int r;

        p->request_id = 0;
        if (res->error == -ECANCELED)
                return;
        if (res->error < 0) {
                poller_error(
                        p, "GET %s%s failed: %s", p->endpoint, SCHEDULED_EVENTS_PATH,
                        strerror(-res->error));
                goto next;
        }
        if (res->status != 200) {
                poller_error(
                        p, "GET %s%s answered HTTP %ld", p->endpoint, SCHEDULED_EVENTS_PATH,
                        res->status);
                goto next;
        }
        doc = malloc(sizeof(*doc));
        if (!doc) {
                poller_error(p, "Out of memory parsing scheduled events");
                goto next;
        }
        r = scheduled_events_parse(res->body, res->body_size, p->vm_name, doc, &reason);
        if (r < 0) {
                poller_error(
                        p, "GET %s%s returned a malformed document (%s)", p->endpoint,
                        SCHEDULED_EVENTS_PATH, reason);
                goto next;
        }
        poller_ok(p);
        if (doc->n_skipped > 0)
                log_debug(
                        "Scheduled events: %u malformed or unknown events skipped", doc->n_skipped);
        if (!scheduled_events_incarnation_accept(&p->incarnation, doc->incarnation)) {
                log_debug(
                        "Scheduled events: incarnation %lld older than %lld, ignoring",
                        (long long)doc->incarnation, (long long)p->incarnation.last);
                goto next;
        }
        log_debug(
                "Scheduled events: incarnation %lld, %zu events", (long long)doc->incarnation,
                doc->n_events);
        for (size_t i = 0; i < doc->n_events; i++) {
                if (!doc->events[i].for_this_vm) {
                        log_debug(
                                "Scheduled event %s (%s) is not for this VM (%s), ignoring",
                                doc->events[i].id,
                                scheduled_event_type_to_string(doc->events[i].type), p->vm_name);
                        continue;
                }
                p->cb(&doc->events[i], p->userdata);
        }
next:
        poller_schedule(p, p->backoff_usec ? p->backoff_usec : p->interval_usec);
}

static int poller_submit(ScheduledEventsPoller *p, const char *path, HttpDoneFn done) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, "%s%s", p->endpoint, path) < 0)
                return -ENOMEM;
        r = http_request_new("GET", url, &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "Metadata", "true");
        if (r < 0)
                return r;
        http_request_set_no_proxy(req, true);
        http_request_set_sink_memory(req, SCHEDULED_EVENTS_DOCUMENT_MAX);
        http_request_set_timeouts(req, SCHEDULED_EVENTS_REQUEST_TIMEOUT_MS, 2000, 0, 0);
        http_request_set_callback(req, done, p);
        r = http_client_submit(p->http, req, &p->request_id);
        if (r < 0)
                return r;
        TAKE_PTR(req);
        p->n_polls++;
        return 0;
}

static void poller_on_vm_name(const HttpResult *res, void *userdata) {
        ScheduledEventsPoller *p = userdata;
        size_t n;

        p->request_id = 0;
        if (res->error == -ECANCELED)
                return;
        if (res->error < 0 || res->status != 200) {
                if (res->error < 0)
                        poller_error(
                                p, "GET %s%s failed: %s", p->endpoint,
                                SCHEDULED_EVENTS_INSTANCE_PATH, strerror(-res->error));
                else
                        poller_error(
                                p, "GET %s%s answered HTTP %ld", p->endpoint,
                                SCHEDULED_EVENTS_INSTANCE_PATH, res->status);
                goto next;
        }
        n = res->body_size;
        while (n > 0 && strchr(" \t\r\n", res->body[n - 1]))
                n--;
        if (n == 0 || n >= SCHEDULED_EVENTS_VM_NAME_MAX || memchr(res->body, '\0', n) ||
            strcspn(res->body, " \t\r\n\"\\") < n) {
                poller_error(
                        p, "GET %s%s returned no usable VM name", p->endpoint,
                        SCHEDULED_EVENTS_INSTANCE_PATH);
                goto next;
        }
        p->vm_name = strndup(res->body, n);
        if (!p->vm_name) {
                poller_error(p, "Out of memory");
                goto next;
        }
        poller_ok(p);
        log_info("Scheduled events: this VM is '%s' (instance metadata compute.name)", p->vm_name);
        poller_schedule(p, 0);
        return;
next:
        poller_schedule(p, p->backoff_usec);
}

static int poller_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ScheduledEventsPoller *p = userdata;
        int r;

        if (p->request_id != 0)
                return 0;
        if (!p->vm_name)
                r = poller_submit(p, SCHEDULED_EVENTS_INSTANCE_PATH, poller_on_vm_name);
        else
                r = poller_submit(p, SCHEDULED_EVENTS_PATH, poller_on_document);
        if (r < 0) {
                poller_error(p, "Failed to submit a metadata request: %s", strerror(-r));
                poller_schedule(p, p->backoff_usec);
        }
        return 0;
}

static void poller_schedule(ScheduledEventsPoller *p, uint64_t delay_usec) {
        uint64_t now;
        int r;

        if (sd_event_now(p->event, CLOCK_MONOTONIC, &now) < 0)
                now = (uint64_t)now_monotonic_ns() / 1000U;
        if (!p->timer) {
                r = sd_event_add_time(
                        p->event, &p->timer, CLOCK_MONOTONIC, now + delay_usec, 10000,
                        poller_on_timer, p);
                if (r < 0)
                        log_error_errno(r, "Failed to arm the scheduled events timer: %m");
                return;
        }
        (void)sd_event_source_set_time(p->timer, now + delay_usec);
        (void)sd_event_source_set_enabled(p->timer, SD_EVENT_ONESHOT);
}

int scheduled_events_poller_new(
        sd_event *event,
        HttpClient *http,
        const ScheduledEventsPollerConfig *config,
        ScheduledEventFn cb,
        void *userdata,
        ScheduledEventsPoller **ret) {
        _cleanup_(scheduled_events_poller_freep) ScheduledEventsPoller *p = NULL;
        size_t n;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->http = http;
        p->cb = cb;
        p->userdata = userdata;
        p->interval_usec = config->interval_usec;
        n = strlen(config->endpoint);
        while (n > 0 && config->endpoint[n - 1] == '/')
                n--;
        p->endpoint = strndup(config->endpoint, n);
        if (!p->endpoint)
                return -ENOMEM;
        if (config->vm_name) {
                p->vm_name = strdup(config->vm_name);
                if (!p->vm_name)
                        return -ENOMEM;
                p->vm_name_configured = true;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

ScheduledEventsPoller *scheduled_events_poller_free(ScheduledEventsPoller *p) {
        if (!p)
                return NULL;
        /* A request still in flight would call back into freed memory: the owner frees the
         * HttpClient first (its callbacks then run at once), see scheduled-events.h. */
        assert(p->request_id == 0);
        sd_event_source_disable_unref(p->timer);
        sd_event_unref(p->event);
        free(p->endpoint);
        free(p->vm_name);
        free(p->last_error);
        free(p);
        return NULL;
}

int scheduled_events_poller_start(ScheduledEventsPoller *p) {
        poller_schedule(p, 0);
        return p->timer ? 0 : -ENOMEM;
}

const char *scheduled_events_poller_vm_name(const ScheduledEventsPoller *p) {
        return p->vm_name;
}

int scheduled_events_poller_status_json(ScheduledEventsPoller *p, json_object *o) {
        json_object *s = json_object_new_object();
        int r = 0;

        if (!s || json_object_object_add(o, "scheduled_events", s) < 0) {
                json_object_put(s);
                return -ENOMEM;
        }
        r |= json_object_object_add(s, "endpoint", json_object_new_string(p->endpoint));
        r |= json_object_object_add(
                s, "vm_name", p->vm_name ? json_object_new_string(p->vm_name) : NULL);
        r |= json_object_object_add(
                s, "vm_name_source",
                json_object_new_string(p->vm_name_configured ? "config" : "instance-metadata"));
        r |= json_object_object_add(
                s, "incarnation",
                p->incarnation.known ? json_object_new_int64(p->incarnation.last) : NULL);
        r |= json_object_object_add(s, "polls", json_object_new_uint64(p->n_polls));
        r |= json_object_object_add(s, "errors", json_object_new_uint64(p->n_errors));
        r |= json_object_object_add(
                s, "last_error", p->last_error ? json_object_new_string(p->last_error) : NULL);
        return r < 0 ? -ENOMEM : 0;
}
