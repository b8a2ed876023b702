/* SPDX-License-Identifier: MIT */
#pragma once

/* Scheduled Events from the Instance Metadata Service.
 *
 *   GET  {endpoint}/metadata/scheduledevents?api-version=2020-07-01     (Metadata: true, no proxy)
 *   POST {endpoint}/metadata/scheduledevents?api-version=2020-07-01     {"StartRequests":[...]}
 *
 * Three layers, each usable alone:
 *  - the document parser (pure): defensive against garbage, wrong types and oversized input; an
 *    event is "for this VM" when its Resources array names this VM (case-insensitively). The
 *    name is the instance metadata's compute.name, which for a scale set instance is the
 *    instance name ("pool_3") that the platform puts into Resources; it can be set in the
 *    configuration ([Drain] VMName=) instead.
 *  - the state file (pure JSON plus an atomic write): which EventIds were handled and how far,
 *    so that each one is handled once across agent restarts;
 *  - the poller: a timer on the agent's sd-event loop that fetches the document through the
 *    HttpClient (never blocking), applies DocumentIncarnation (a document older than the last
 *    one accepted is ignored as a reordered answer) and calls back with every Scheduled event
 *    for this VM. Errors back off exponentially up to SCHEDULED_EVENTS_BACKOFF_MAX_USEC and keep
 *    the previous state. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct HttpClient HttpClient;
typedef struct ScheduledEventsPoller ScheduledEventsPoller;

#define SCHEDULED_EVENTS_API_VERSION "2020-07-01"
#define SCHEDULED_EVENTS_PATH "/metadata/scheduledevents?api-version=" SCHEDULED_EVENTS_API_VERSION
#define SCHEDULED_EVENTS_INSTANCE_PATH                                                             \
        "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
#define SCHEDULED_EVENTS_DOCUMENT_MAX (64U * 1024U) /* bytes of one document */
#define SCHEDULED_EVENTS_MAX 64U                    /* events kept from one document */
#define SCHEDULED_EVENT_ID_MAX 128U                 /* bytes of an EventId, with the NUL */
#define SCHEDULED_EVENTS_RESOURCES_MAX 1024U        /* Resources entries looked at per event */
#define SCHEDULED_EVENTS_VM_NAME_MAX 256U
#define SCHEDULED_EVENTS_REQUEST_TIMEOUT_MS 5000U
#define SCHEDULED_EVENTS_BACKOFF_MAX_USEC (30U * 1000000U)
/* A lower DocumentIncarnation seen this many times in a row means the service was reset. */
#define SCHEDULED_EVENTS_STALE_RESET 10U

typedef enum ScheduledEventType {
        SCHEDULED_EVENT_FREEZE,
        SCHEDULED_EVENT_REBOOT,
        SCHEDULED_EVENT_REDEPLOY,
        SCHEDULED_EVENT_PREEMPT,
        SCHEDULED_EVENT_TERMINATE,
        _SCHEDULED_EVENT_TYPE_MAX,
        _SCHEDULED_EVENT_TYPE_INVALID = -EINVAL,
} ScheduledEventType;

const char *scheduled_event_type_to_string(ScheduledEventType t);
ScheduledEventType scheduled_event_type_from_string(const char *s);

typedef enum ScheduledEventStatus {
        SCHEDULED_EVENT_SCHEDULED,
        SCHEDULED_EVENT_STARTED,
        _SCHEDULED_EVENT_STATUS_MAX,
        _SCHEDULED_EVENT_STATUS_INVALID = -EINVAL,
} ScheduledEventStatus;

typedef struct ScheduledEvent {
        char id[SCHEDULED_EVENT_ID_MAX];
        ScheduledEventType type;
        ScheduledEventStatus status;
        uint64_t not_before_usec; /* CLOCK_REALTIME; 0 when NotBefore is empty (Started) */
        int64_t duration_s;       /* DurationInSeconds, -1 when absent */
        bool for_this_vm;
} ScheduledEvent;

typedef struct ScheduledEventsDocument {
        int64_t incarnation;
        size_t n_events;
        ScheduledEvent events[SCHEDULED_EVENTS_MAX];
        unsigned n_skipped; /* events left out: unknown type/status, malformed, over the cap */
} ScheduledEventsDocument;

/* Pure. Parses one document. Events of unknown type or status, or with a malformed field, are
 * skipped (counted in n_skipped) rather than failing the whole document; a document that is not
 * a JSON object with a numeric DocumentIncarnation and an Events array is -EBADMSG with
 * *reterr_reason (static) naming what is wrong. vm_name may be NULL (no event is for us). */
int scheduled_events_parse(
        const char *json,
        size_t size,
        const char *vm_name,
        ScheduledEventsDocument *ret,
        const char **reterr_reason);

/* Pure: DocumentIncarnation bookkeeping. A document is taken when its incarnation is at least
 * the last one taken (the same incarnation again is taken too, so that an event that had to wait
 * is seen again); a lower one is a reordered or stale answer and is dropped, unless lower ones
 * came SCHEDULED_EVENTS_STALE_RESET times in a row (the service was reset). */
typedef struct ScheduledEventsIncarnation {
        bool known;
        int64_t last;
        unsigned n_stale;
} ScheduledEventsIncarnation;
bool scheduled_events_incarnation_accept(ScheduledEventsIncarnation *s, int64_t incarnation);

/* The approval body {"StartRequests":[{"EventId":"ID"}]}; malloc'ed. */
int scheduled_events_approval_body(const char *event_id, char **ret);

/* ---- the poller ------------------------------------------------------------------------------ */

/* Called on the loop for each event for this VM in an accepted document (every poll that
 * brings a new incarnation; the callee dedupes by EventId). */
typedef void (*ScheduledEventFn)(const ScheduledEvent *e, void *userdata);

typedef struct ScheduledEventsPollerConfig {
        const char *endpoint;   /* scheme://host[:port], no trailing slash needed */
        const char *vm_name;    /* NULL: fetched from the instance metadata first */
        uint64_t interval_usec; /* between polls while the service answers */
} ScheduledEventsPollerConfig;

int scheduled_events_poller_new(
        sd_event *event,
        HttpClient *http,
        const ScheduledEventsPollerConfig *config,
        ScheduledEventFn cb,
        void *userdata,
        ScheduledEventsPoller **ret);
/* Free the HttpClient first (http_client_free() completes a poll in flight with -ECANCELED while
 * the poller is still there); then this. NULL-safe. */
ScheduledEventsPoller *scheduled_events_poller_free(ScheduledEventsPoller *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(ScheduledEventsPoller *, scheduled_events_poller_free);
/* The first poll runs at once. */
int scheduled_events_poller_start(ScheduledEventsPoller *p);
const char *scheduled_events_poller_vm_name(const ScheduledEventsPoller *p);
/* Adds a "scheduled_events" object: endpoint, vm_name, incarnation, polls, errors, last_error. */
int scheduled_events_poller_status_json(ScheduledEventsPoller *p, json_object *o);
