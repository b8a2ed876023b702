/* SPDX-License-Identifier: MIT */
#pragma once

/* The Instance Metadata Service: /metadata/instance, /metadata/scheduledevents (GET and POST
 * StartRequests), /metadata/identity/oauth2/token. State (the VM's identity, scheduled events,
 * approvals) is kept in memory behind the EmuImds mutex; every function here takes it itself.
 *
 * Scheduled events are evaluated lazily against the wall clock whenever the document is read or
 * changed: a Scheduled event whose NotBefore has passed is Started by the "platform"; a Started
 * event disappears after its started_seconds (default 10). Every change of the visible document
 * (add, approve, start, disappear, clear) increments DocumentIncarnation once. */

#include "emu-server.h"

struct json_object;

int emu_imds_new(Emulator *emu, EmuImds **ret);
EmuImds *emu_imds_free(EmuImds *imds);

EmuOp emu_imds_classify(const EmuRequest *req);
void emu_imds_handle(EmuRequest *req);

/* Replies with obj serialised as compact JSON (slashes unescaped, as IMDS sends them),
 * Content-Type application/json; charset=utf-8. Does not take obj. */
int emu_reply_json(EmuRequest *r, unsigned status, struct json_object *obj);
/* Parses r's body as one JSON value (nothing but whitespace after it, depth <= 32). On error
 * returns -EINVAL and *reterr says why (caller frees). */
int emu_request_json(const EmuRequest *r, struct json_object **ret, char **reterr);

/* Admin hooks (emu-admin.c). Input objects are borrowed; returned objects are new references.
 * On bad input they return -EINVAL and *reterr names the offending field (caller frees). */

/* Changes the VM's identity; keys as in the compute section ("name", "vmScaleSetName", "vmSize",
 * "location", "zone", "priority", ...) plus "tags" (object of strings), "identities" (array of
 * {"client_id", "object_id", "msi_res_id", "system"}) and "tokenLifetimeSeconds". All or
 * nothing. */
int emu_imds_set_instance(EmuImds *imds, struct json_object *patch, char **reterr);
/* The current settings, in the form emu_imds_set_instance() takes. */
struct json_object *emu_imds_get_instance(EmuImds *imds);

/* Adds an event: {"type": "Terminate"|"Preempt"|"Reboot"|"Redeploy"|"Freeze" (required),
 * "resources": [names] (default: this VM's name), "not_before": seconds from now, or
 * "not_before_epoch": seconds since the epoch (default per type), "description", "source"
 * ("Platform"|"User"), "duration" (DurationInSeconds, default -1), "id" (EventId, default a
 * random GUID), "started_seconds" (how long it stays Started, default 10)}. *ret is the event as
 * the newest api-version shows it plus "DocumentIncarnation". */
int emu_imds_add_event(
        EmuImds *imds, struct json_object *spec, struct json_object **ret, char **reterr);
/* Removes every event (approvals stay). Returns how many were visible. */
unsigned emu_imds_clear_events(EmuImds *imds);
/* The document as GET /metadata/scheduledevents with the newest api-version would return it. */
struct json_object *emu_imds_get_events(EmuImds *imds);
/* {"Approvals": [{"EventId", "EventType" (null when unknown), "Count", "FirstApproved",
 * "LastApproved" (RFC 3339), "FirstApprovedMs", "LastApprovedMs" (epoch ms),
 * "StatusWhenApproved"}]} in order of first approval. */
struct json_object *emu_imds_get_approvals(EmuImds *imds);
