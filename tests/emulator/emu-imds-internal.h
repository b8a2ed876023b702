/* SPDX-License-Identifier: MIT */
#pragma once

/* What the two parts of the emulator's Instance Metadata Service share: emu-imds.c (instance
 * metadata, managed-identity tokens, request routing, configuration) and emu-imds-events.c
 * (scheduled events and their approvals). Not for use outside them. */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "emu-imds.h"
#include "macro.h"

#define IMDS_EVENTS_MAX 256
#define IMDS_APPROVALS_MAX 1024
#define IMDS_IDENTITIES_MAX 16
#define IMDS_RESOURCES_MAX 64
#define IMDS_STRING_MAX 1024
#define IMDS_JSON_DEPTH 32
#define IMDS_DEFAULT_STARTED_SECONDS 10
#define IMDS_DEFAULT_TOKEN_LIFETIME 86399
#define IMDS_TOKEN_LIFETIME_MAX (7 * 86400)
#define IMDS_NOT_BEFORE_SKEW 300

#define CT_JSON "application/json; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

#define EVENTS_VERSION_EVENT_SOURCE "2019-08-01"
#define EVENTS_VERSION_DURATION "2020-07-01"
#define EVENTS_VERSION_NEWEST "2020-07-01"
#define IDENTITY_VERSION_OLDEST "2018-02-01"

/* ---- state ------------------------------------------------------------------------------- */

typedef enum ImdsEventStatus {
        EVENT_SCHEDULED,
        EVENT_STARTED,
        EVENT_GONE,
} ImdsEventStatus;

typedef struct ImdsEvent {
        char id[64];
        const char *type; /* static string */
        json_object *resources;
        char *description;
        const char *source; /* static string */
        int64_t duration_s;
        int64_t not_before_ns;
        int64_t started_ns;
        int64_t started_seconds;
        ImdsEventStatus status;
} ImdsEvent;

typedef struct ImdsApproval {
        char id[64];
        const char *type; /* NULL: no such event when first approved */
        const char *status_when_approved;
        unsigned count;
        int64_t first_ns;
        int64_t last_ns;
} ImdsApproval;

typedef struct ImdsIdentity {
        char *client_id;
        char *object_id;
        char *msi_res_id;
        bool system;
} ImdsIdentity;

/* String fields of the VM's identity, in the compute section's names. */
static const struct {
        const char *name;
        const char *initial;
} instance_fields[] = {
        {"azEnvironment", "AzurePublicCloud"},
        {"computerName", "emu-pool000000"},
        {"evictionPolicy", ""},
        {"location", "westeurope"},
        {"macAddress", "000D3A5F1C2B"},
        {"name", "emu-pool_0"},
        {"offer", "ubuntu-2204"},
        {"osType", "Linux"},
        {"placementGroupId", "5e1bd4a5-3f3c-4b8e-9d2a-4f7b0f0c6a11"},
        {"platformFaultDomain", "0"},
        {"platformUpdateDomain", "0"},
        {"priority", "Regular"},
        {"privateIpAddress", "10.0.0.4"},
        {"publisher", "microsoft-dsvm"},
        {"resourceGroupName", "emu-rg"},
        {"resourceId", ""}, /* "" = derived from the others */
        {"sku", "2204"},
        {"subscriptionId", "8f5c1b7e-2d4a-4c3b-9e6f-1a2b3c4d5e6f"},
        {"version", "latest"},
        {"vmId", "2b7f1c9e-6a0d-4e5b-8c3f-9d1e2f3a4b5c"},
        {"vmScaleSetName", "emu-pool"},
        {"vmSize", "Standard_D4s_v5"},
        {"zone", "1"},
};
#define N_FIELDS ELEMENTSOF(instance_fields)

typedef struct ImdsConfig {
        char *fields[N_FIELDS];
        json_object *tags; /* object of strings */
        ImdsIdentity identities[IMDS_IDENTITIES_MAX];
        size_t n_identities;
        int64_t token_lifetime_s;
} ImdsConfig;

struct EmuImds {
        Emulator *emu;
        pthread_mutex_t lock;
        ImdsConfig config;                          /* protected by lock */
        ImdsEvent events[IMDS_EVENTS_MAX];          /* protected by lock */
        size_t n_events;                            /* protected by lock */
        ImdsApproval approvals[IMDS_APPROVALS_MAX]; /* protected by lock */
        size_t n_approvals;                         /* protected by lock */
        uint64_t incarnation;                       /* protected by lock */
};

_printf_(2, 3) int imds_set_err(char **reterr, const char *format, ...);
int imds_add_string(json_object *o, const char *key, const char *value);
void imds_lock(EmuImds *imds);
void imds_unlock(EmuImds *imds);
void imds_make_guid(char buf[static 64], bool upper);
const char *imds_cfg(const ImdsConfig *c, const char *name);
int imds_add_obj(json_object *parent, const char *key, json_object *child);
void imds_reply_error(EmuRequest *req, unsigned status, const char *error);
void imds_event_clear(ImdsEvent *e);
void imds_handle_events_get(EmuRequest *req, EmuImds *imds, const char *version);
void imds_handle_events_post(EmuRequest *req, EmuImds *imds);

static inline void json_object_putp(json_object **o) {
        if (*o)
                (void)json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)
