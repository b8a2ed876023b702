/* SPDX-License-Identifier: MIT */
/* The emulator's scheduled events (Terminate, Preempt, Reboot, Redeploy, Freeze): the document
 * GET /metadata/scheduledevents serves, approvals by POST StartRequests, and the admin hooks that
 * add, list and clear events and approvals. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <json-c/json.h>

#include "emu-auth.h"
#include "emu-imds-internal.h"
#include "time-util.h"

/* ---- scheduled events -------------------------------------------------------------------- */

static const char *const event_types[] = {
        "Freeze", "Reboot", "Redeploy", "Preempt", "Terminate", NULL,
};

static int64_t default_notice_s(const char *type) {
        /* The minimum notice the documentation gives per type. */
        if (streq(type, "Preempt"))
                return 30;
        if (streq(type, "Redeploy"))
                return 600;
        if (streq(type, "Terminate"))
                return 300;
        return 900; /* Freeze, Reboot */
}

static const char *default_description(const char *type) {
        if (streq(type, "Preempt"))
                return "Virtual machine is being evicted from Azure Spot.";
        if (streq(type, "Terminate"))
                return "Virtual machine is going to be deleted as requested by authorized user.";
        if (streq(type, "Reboot"))
                return "Virtual machine is going to be restarted as requested by authorized user.";
        if (streq(type, "Redeploy"))
                return "Virtual machine is going to be redeployed as requested by authorized user.";
        return "Host server is undergoing maintenance.";
}

static const char *status_string(ImdsEventStatus s) {
        return s == EVENT_SCHEDULED ? "Scheduled" : s == EVENT_STARTED ? "Started" : "Completed";
}

void imds_event_clear(ImdsEvent *e) {
        if (e->resources)
                (void)json_object_put(e->resources);
        free(e->description);
        *e = (ImdsEvent){0};
}

/* Platform side: starts events whose time has come, retires started ones. Lock held. */
static void events_tick(EmuImds *imds, int64_t now) {
        bool changed = false;
        size_t j = 0;

        for (size_t i = 0; i < imds->n_events; i++) {
                ImdsEvent *e = &imds->events[i];
                if (e->status == EVENT_SCHEDULED && e->not_before_ns <= now) {
                        e->status = EVENT_STARTED;
                        e->started_ns = now;
                        changed = true;
                }
                if (e->status == EVENT_STARTED &&
                    now >= e->started_ns + e->started_seconds * NSEC_PER_SEC) {
                        e->status = EVENT_GONE;
                        changed = true;
                }
        }
        /* Compact: gone events are no longer needed (approvals are kept apart). */
        for (size_t i = 0; i < imds->n_events; i++) {
                if (imds->events[i].status == EVENT_GONE) {
                        imds_event_clear(&imds->events[i]);
                        continue;
                }
                if (i != j) {
                        imds->events[j] = imds->events[i];
                        imds->events[i] = (ImdsEvent){0};
                }
                j++;
        }
        imds->n_events = j;
        if (changed)
                imds->incarnation++;
}

static json_object *event_json(const ImdsEvent *e, const char *version) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *res = NULL;
        char nb[RFC1123_MAX];
        int r = 0;

        if (!o || json_object_deep_copy(e->resources, &res, NULL) < 0)
                return NULL;
        r |= imds_add_string(o, "EventId", e->id);
        r |= imds_add_string(o, "EventStatus", status_string(e->status));
        r |= imds_add_string(o, "EventType", e->type);
        r |= imds_add_string(o, "ResourceType", "VirtualMachine");
        r |= imds_add_obj(o, "Resources", res);
        r |= imds_add_string(
                o, "NotBefore",
                e->status == EVENT_SCHEDULED ? format_rfc1123(nb, e->not_before_ns) : "");
        r |= imds_add_string(o, "Description", e->description);
        if (strcmp(version, EVENTS_VERSION_EVENT_SOURCE) >= 0)
                r |= imds_add_string(o, "EventSource", e->source);
        if (strcmp(version, EVENTS_VERSION_DURATION) >= 0)
                r |= imds_add_obj(o, "DurationInSeconds", json_object_new_int64(e->duration_s));
        return r < 0 ? NULL : TAKE_PTR(o);
}

/* Lock held. */
static json_object *events_document(EmuImds *imds, const char *version) {
        _cleanup_json_ json_object *doc = json_object_new_object();
        json_object *list = json_object_new_array();
        int r = 0;

        if (!doc || !list) {
                if (list)
                        (void)json_object_put(list);
                return NULL;
        }
        r |= imds_add_obj(
                doc, "DocumentIncarnation", json_object_new_int64((int64_t)imds->incarnation));
        r |= imds_add_obj(doc, "Events", list);
        for (size_t i = 0; r >= 0 && i < imds->n_events; i++)
                r |= imds_add_obj(list, NULL, event_json(&imds->events[i], version));
        return r < 0 ? NULL : TAKE_PTR(doc);
}

static ImdsApproval *approval_find_or_add(EmuImds *imds, const char *id) {
        for (size_t i = 0; i < imds->n_approvals; i++)
                if (streq(imds->approvals[i].id, id))
                        return &imds->approvals[i];
        if (imds->n_approvals >= IMDS_APPROVALS_MAX || strlen(id) >= sizeof(imds->approvals[0].id))
                return NULL;
        ImdsApproval *a = &imds->approvals[imds->n_approvals++];
        *a = (ImdsApproval){0};
        memcpy(a->id, id, strlen(id) + 1);
        return a;
}

void imds_handle_events_get(EmuRequest *req, EmuImds *imds, const char *version) {
        _cleanup_json_ json_object *doc = NULL;

        imds_lock(imds);
        events_tick(imds, now_realtime_ns());
        doc = events_document(imds, version);
        imds_unlock(imds);
        if (!doc) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, 200, doc);
}
void imds_handle_events_post(EmuRequest *req, EmuImds *imds) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_free_ char *err = NULL, *msg = NULL;
        json_object *starts;
        size_t n;
        int64_t now;
        bool changed = false;

        if (emu_request_json(req, &body, &err) < 0)
                goto bad;
        if (!json_object_is_type(body, json_type_object) ||
            !json_object_object_get_ex(body, "StartRequests", &starts) ||
            !json_object_is_type(starts, json_type_array)) {
                err = strdup("expected {\"StartRequests\": [{\"EventId\": \"...\"}]}");
                goto bad;
        }
        n = json_object_array_length(starts);
        for (size_t i = 0; i < n; i++) {
                json_object *item = json_object_array_get_idx(starts, i), *id;
                if (!json_object_is_type(item, json_type_object) ||
                    !json_object_object_get_ex(item, "EventId", &id) ||
                    !json_object_is_type(id, json_type_string) ||
                    json_object_get_string_len(id) == 0 || json_object_get_string_len(id) >= 64) {
                        if (asprintf(&err, "StartRequests[%zu] needs an \"EventId\" string", i) < 0)
                                err = NULL;
                        goto bad;
                }
        }

        imds_lock(imds);
        now = now_realtime_ns();
        events_tick(imds, now);
        for (size_t i = 0; i < n; i++) {
                json_object *id = NULL;
                ImdsEvent *e = NULL;
                ImdsApproval *a;

                (void)json_object_object_get_ex(
                        json_object_array_get_idx(starts, i), "EventId", &id);
                for (size_t k = 0; k < imds->n_events; k++)
                        if (strcaseeq(imds->events[k].id, json_object_get_string(id)))
                                e = &imds->events[k];
                a = approval_find_or_add(imds, e ? e->id : json_object_get_string(id));
                if (a) {
                        if (a->count++ == 0) {
                                a->first_ns = now;
                                a->type = e ? e->type : NULL;
                                a->status_when_approved = e ? status_string(e->status) : NULL;
                        }
                        a->last_ns = now;
                }
                if (e && e->status == EVENT_SCHEDULED) {
                        e->status = EVENT_STARTED;
                        e->started_ns = now;
                        changed = true;
                }
        }
        if (changed)
                imds->incarnation++;
        imds_unlock(imds);
        (void)emu_reply_empty(req, 200);
        return;
bad:
        if (asprintf(&msg, "Bad request. %s", err ? err : "invalid body") < 0)
                msg = NULL;
        imds_reply_error(req, 400, msg ? msg : "Bad request.");
}
int emu_imds_add_event(EmuImds *imds, json_object *spec, json_object **ret, char **reterr) {
        ImdsEvent e = {.duration_s = -1, .started_seconds = IMDS_DEFAULT_STARTED_SECONDS};
        _cleanup_json_ json_object *out = NULL;
        bool has_nb = false, has_nb_epoch = false;
        int64_t nb_rel = 0, nb_abs = 0, now;
        const char *description = NULL, *id = NULL;
        json_object *resources = NULL;
        int r = -EINVAL;

        if (!json_object_is_type(spec, json_type_object))
                return imds_set_err(reterr, "body must be a JSON object");
        json_object_object_foreach(spec, key, val) {
                bool is_str = json_object_is_type(val, json_type_string);
                bool is_int = json_object_is_type(val, json_type_int);
                const char *s = is_str ? json_object_get_string(val) : NULL;

                if (streq(key, "type")) {
                        for (size_t i = 0; s && event_types[i]; i++)
                                if (strcaseeq(s, event_types[i]))
                                        e.type = event_types[i];
                        if (!e.type)
                                return imds_set_err(
                                        reterr,
                                        "'type' must be one of Freeze, Reboot, Redeploy, Preempt, "
                                        "Terminate");
                } else if (streq(key, "resources")) {
                        size_t n;
                        if (!json_object_is_type(val, json_type_array))
                                return imds_set_err(
                                        reterr, "'resources' must be an array of names");
                        n = json_object_array_length(val);
                        if (n > IMDS_RESOURCES_MAX)
                                return imds_set_err(
                                        reterr, "'resources': at most %d", IMDS_RESOURCES_MAX);
                        for (size_t i = 0; i < n; i++) {
                                json_object *v = json_object_array_get_idx(val, i);
                                if (!json_object_is_type(v, json_type_string) ||
                                    json_object_get_string_len(v) == 0 ||
                                    json_object_get_string_len(v) > IMDS_STRING_MAX)
                                        return imds_set_err(
                                                reterr, "'resources'[%zu] must be a non-empty name",
                                                i);
                        }
                        resources = val;
                } else if (streq(key, "not_before")) {
                        if (!is_int || json_object_get_int64(val) < 0 ||
                            json_object_get_int64(val) > 366 * 86400)
                                return imds_set_err(
                                        reterr,
                                        "'not_before' must be seconds from now (0..31622400)");
                        nb_rel = json_object_get_int64(val);
                        has_nb = true;
                } else if (streq(key, "not_before_epoch")) {
                        if (!is_int || json_object_get_int64(val) < 0 ||
                            json_object_get_int64(val) > INT64_C(253402300799))
                                return imds_set_err(
                                        reterr,
                                        "'not_before_epoch' must be seconds since the epoch");
                        nb_abs = json_object_get_int64(val);
                        has_nb_epoch = true;
                } else if (streq(key, "description")) {
                        if (!is_str || json_object_get_string_len(val) > IMDS_STRING_MAX)
                                return imds_set_err(reterr, "'description' must be a string");
                        description = s;
                } else if (streq(key, "source")) {
                        if (s && strcaseeq(s, "Platform"))
                                e.source = "Platform";
                        else if (s && strcaseeq(s, "User"))
                                e.source = "User";
                        else
                                return imds_set_err(reterr, "'source' must be Platform or User");
                } else if (streq(key, "duration")) {
                        if (!is_int || json_object_get_int64(val) < -1 ||
                            json_object_get_int64(val) > 86400 * 30)
                                return imds_set_err(
                                        reterr, "'duration' must be -1 or seconds (<= 30 days)");
                        e.duration_s = json_object_get_int64(val);
                } else if (streq(key, "started_seconds")) {
                        if (!is_int || json_object_get_int64(val) < 0 ||
                            json_object_get_int64(val) > 86400)
                                return imds_set_err(
                                        reterr, "'started_seconds' must be 0..86400 seconds");
                        e.started_seconds = json_object_get_int64(val);
                } else if (streq(key, "id")) {
                        if (!is_str || json_object_get_string_len(val) == 0 ||
                            json_object_get_string_len(val) >= (int)sizeof(e.id))
                                return imds_set_err(
                                        reterr, "'id' must be a non-empty string (< 64)");
                        id = s;
                } else
                        return imds_set_err(reterr, "unknown key '%s'", key);
        }
        if (!e.type)
                return imds_set_err(reterr, "'type' is required");
        if (has_nb && has_nb_epoch)
                return imds_set_err(reterr, "give 'not_before' or 'not_before_epoch', not both");
        if (!e.source)
                e.source = "Platform";
        if (!(e.description = strdup(description ? description : default_description(e.type))))
                return -ENOMEM;
        if (id)
                memcpy(e.id, id, strlen(id) + 1);
        else
                imds_make_guid(e.id, true);

        imds_lock(imds);
        now = now_realtime_ns();
        events_tick(imds, now);
        for (size_t i = 0; i < imds->n_events; i++)
                if (strcaseeq(imds->events[i].id, e.id)) {
                        r = imds_set_err(reterr, "an event with id '%s' exists", e.id);
                        goto fail;
                }
        if (imds->n_events >= IMDS_EVENTS_MAX) {
                r = imds_set_err(reterr, "too many events (at most %d)", IMDS_EVENTS_MAX);
                goto fail;
        }
        if (resources) {
                if (json_object_deep_copy(resources, &e.resources, NULL) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        } else {
                e.resources = json_object_new_array();
                if (!e.resources ||
                    imds_add_obj(
                            e.resources, NULL,
                            json_object_new_string(imds_cfg(&imds->config, "name"))) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        e.not_before_ns = has_nb_epoch ? nb_abs * NSEC_PER_SEC
                          : has_nb     ? now + nb_rel * NSEC_PER_SEC
                                       : now + default_notice_s(e.type) * NSEC_PER_SEC;
        /* RFC 1123 has whole seconds: what clients see is what is compared. */
        e.not_before_ns -= e.not_before_ns % NSEC_PER_SEC;
        e.status = EVENT_SCHEDULED;
        imds->events[imds->n_events++] = e;
        imds->incarnation++;
        out = event_json(&imds->events[imds->n_events - 1], EVENTS_VERSION_NEWEST);
        /* An event already due starts at once, as the platform would (and may be gone). */
        events_tick(imds, now);
        for (size_t i = 0; out && i < imds->n_events; i++)
                if (streq(imds->events[i].id, e.id)) {
                        (void)json_object_put(out);
                        out = event_json(&imds->events[i], EVENTS_VERSION_NEWEST);
                        e.id[0] = '\0';
                        break;
                }
        if (out && e.id[0] != '\0')
                r = imds_add_string(out, "EventStatus", "Completed");
        else
                r = out ? 0 : -ENOMEM;
        if (r >= 0)
                r = imds_add_obj(
                        out, "DocumentIncarnation",
                        json_object_new_int64((int64_t)imds->incarnation));
        imds_unlock(imds);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
fail:
        imds_unlock(imds);
        imds_event_clear(&e);
        return r;
}

unsigned emu_imds_clear_events(EmuImds *imds) {
        unsigned n;

        imds_lock(imds);
        events_tick(imds, now_realtime_ns());
        n = (unsigned)imds->n_events;
        for (size_t i = 0; i < imds->n_events; i++)
                imds_event_clear(&imds->events[i]);
        imds->n_events = 0;
        if (n > 0)
                imds->incarnation++;
        imds_unlock(imds);
        return n;
}

json_object *emu_imds_get_events(EmuImds *imds) {
        json_object *doc;

        imds_lock(imds);
        events_tick(imds, now_realtime_ns());
        doc = events_document(imds, EVENTS_VERSION_NEWEST);
        imds_unlock(imds);
        return doc;
}

json_object *emu_imds_get_approvals(EmuImds *imds) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *list = json_object_new_array();
        char first[ISO8601_MAX], last[ISO8601_MAX];
        int r = 0;

        if (!o || !list) {
                if (list)
                        (void)json_object_put(list);
                return NULL;
        }
        r |= imds_add_obj(o, "Approvals", list);
        imds_lock(imds);
        for (size_t i = 0; r >= 0 && i < imds->n_approvals; i++) {
                const ImdsApproval *a = &imds->approvals[i];
                json_object *e = json_object_new_object();
                r |= imds_add_obj(list, NULL, e);
                if (r < 0)
                        break;
                r |= imds_add_string(e, "EventId", a->id);
                if (a->type)
                        r |= imds_add_string(e, "EventType", a->type);
                else if (json_object_object_add(e, "EventType", NULL) < 0) /* JSON null */
                        r = -ENOMEM;
                r |= imds_add_obj(e, "Count", json_object_new_int64(a->count));
                r |= imds_add_string(e, "FirstApproved", format_iso8601(first, a->first_ns));
                r |= imds_add_string(e, "LastApproved", format_iso8601(last, a->last_ns));
                r |= imds_add_obj(
                        e, "FirstApprovedMs", json_object_new_int64(a->first_ns / 1000000));
                r |= imds_add_obj(e, "LastApprovedMs", json_object_new_int64(a->last_ns / 1000000));
                r |= imds_add_string(
                        e, "StatusWhenApproved",
                        a->status_when_approved ? a->status_when_approved : "Unknown");
        }
        imds_unlock(imds);
        return r < 0 ? NULL : TAKE_PTR(o);
}
