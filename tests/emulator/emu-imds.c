/* SPDX-License-Identifier: MIT */
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

/* ---- versions ---------------------------------------------------------------------------- */

/* api-versions the service accepts for /metadata/instance (and, from 2018-02-01, for the
 * identity endpoint), oldest first. */
static const char *const instance_versions[] = {
        "2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01",
        "2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01",
        "2019-06-04", "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15",
        "2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
        "2021-05-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13", "2023-07-01",
};
static const char *const events_versions[] = {
        "2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01", "2019-08-01", "2020-07-01",
};

/* ---- small helpers ----------------------------------------------------------------------- */

_printf_(2, 3) int imds_set_err(char **reterr, const char *format, ...) {
        va_list ap;

        if (!reterr)
                return -EINVAL;
        va_start(ap, format);
        if (vasprintf(reterr, format, ap) < 0)
                *reterr = NULL;
        va_end(ap);
        return -EINVAL;
}

int imds_add_string(json_object *o, const char *key, const char *value) {
        json_object *s = json_object_new_string(value ? value : "");
        if (!s)
                return -ENOMEM;
        return json_object_object_add(o, key, s) < 0 ? -ENOMEM : 0;
}

static int add_int64_string(json_object *o, const char *key, int64_t value) {
        char buf[32];
        (void)snprintf(buf, sizeof(buf), "%" PRId64, value);
        return imds_add_string(o, key, buf);
}

void imds_lock(EmuImds *imds) {
        (void)pthread_mutex_lock(&imds->lock);
}
void imds_unlock(EmuImds *imds) {
        (void)pthread_mutex_unlock(&imds->lock);
}

void imds_make_guid(char buf[static 64], bool upper) {
        uint8_t b[16];

        if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
                uint64_t t = (uint64_t)now_monotonic_ns();
                for (size_t i = 0; i < sizeof(b); i++)
                        b[i] = (uint8_t)(t >> ((i % 8) * 8)) ^ (uint8_t)(i * 37);
        }
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
        (void)snprintf(
                buf, 64,
                upper ? "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X"
                      : "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15]);
}

int emu_reply_json(EmuRequest *r, unsigned status, json_object *obj) {
        const char *s = json_object_to_json_string_ext(
                obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return emu_reply_empty(r, 500);
        return emu_reply_body(r, status, CT_JSON, s, strlen(s));
}

int emu_request_json(const EmuRequest *r, json_object **ret, char **reterr) {
        json_tokener *tok;
        json_object *o;
        size_t end;

        if (r->body_size == 0)
                return imds_set_err(reterr, "empty body, expected JSON");
        if (r->body_size > INT32_MAX)
                return imds_set_err(reterr, "body too large");
        tok = json_tokener_new_ex(IMDS_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, r->body, (int)r->body_size);
        if (!o) {
                enum json_tokener_error e = json_tokener_get_error(tok);
                json_tokener_free(tok);
                return imds_set_err(
                        reterr, "invalid JSON: %s",
                        e == json_tokener_continue ? "unexpected end of input"
                                                   : json_tokener_error_desc(e));
        }
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        for (; end < r->body_size; end++)
                if (!strchr(" \t\r\n", r->body[end])) {
                        (void)json_object_put(o);
                        return imds_set_err(
                                reterr, "invalid JSON: trailing data at offset %zu", end);
                }
        *ret = o;
        return 0;
}

/* ---- configuration ----------------------------------------------------------------------- */

static void identity_clear(ImdsIdentity *id) {
        free(id->client_id);
        free(id->object_id);
        free(id->msi_res_id);
        *id = (ImdsIdentity){0};
}

static void config_clear(ImdsConfig *c) {
        for (size_t i = 0; i < N_FIELDS; i++) {
                free(c->fields[i]);
                c->fields[i] = NULL;
        }
        if (c->tags)
                (void)json_object_put(c->tags);
        c->tags = NULL;
        for (size_t i = 0; i < c->n_identities; i++)
                identity_clear(&c->identities[i]);
        c->n_identities = 0;
}

static int config_copy(const ImdsConfig *src, ImdsConfig *dst) {
        *dst = (ImdsConfig){.token_lifetime_s = src->token_lifetime_s};
        for (size_t i = 0; i < N_FIELDS; i++)
                if (!(dst->fields[i] = strdup(src->fields[i])))
                        goto oom;
        if (json_object_deep_copy(src->tags, &dst->tags, NULL) < 0)
                goto oom;
        for (size_t i = 0; i < src->n_identities; i++) {
                const ImdsIdentity *s = &src->identities[i];
                ImdsIdentity *d = &dst->identities[dst->n_identities++];
                d->system = s->system;
                d->client_id = strdup(s->client_id);
                d->object_id = strdup(s->object_id);
                d->msi_res_id = strdup(s->msi_res_id);
                if (!d->client_id || !d->object_id || !d->msi_res_id)
                        goto oom;
        }
        return 0;
oom:
        config_clear(dst);
        return -ENOMEM;
}

static int field_index(const char *name) {
        for (size_t i = 0; i < N_FIELDS; i++)
                if (streq(instance_fields[i].name, name))
                        return (int)i;
        return -1;
}

const char *imds_cfg(const ImdsConfig *c, const char *name) {
        int i = field_index(name);
        assert(i >= 0);
        return c->fields[i];
}

static int
identity_from_json(json_object *o, const ImdsConfig *c, ImdsIdentity *ret, char **reterr) {
        _cleanup_(identity_clear) ImdsIdentity id = {0};
        char guid[64];
        int r;

        if (!json_object_is_type(o, json_type_object))
                return imds_set_err(reterr, "identities[]: each entry must be an object");
        json_object_object_foreach(o, key, val) {
                char **field = NULL;

                if (streq(key, "system")) {
                        if (!json_object_is_type(val, json_type_boolean))
                                return imds_set_err(
                                        reterr, "identities[]: 'system' must be a boolean");
                        id.system = json_object_get_boolean(val);
                        continue;
                }
                if (streq(key, "client_id"))
                        field = &id.client_id;
                else if (streq(key, "object_id"))
                        field = &id.object_id;
                else if (streq(key, "msi_res_id"))
                        field = &id.msi_res_id;
                else
                        return imds_set_err(reterr, "identities[]: unknown key '%s'", key);
                if (!json_object_is_type(val, json_type_string) ||
                    json_object_get_string_len(val) == 0 ||
                    json_object_get_string_len(val) > IMDS_STRING_MAX)
                        return imds_set_err(
                                reterr, "identities[]: '%s' must be a non-empty string", key);
                free(*field);
                *field = strdup(json_object_get_string(val));
                if (!*field)
                        return -ENOMEM;
        }
        if (!id.client_id) {
                imds_make_guid(guid, false);
                if (!(id.client_id = strdup(guid)))
                        return -ENOMEM;
        }
        if (!id.object_id) {
                imds_make_guid(guid, false);
                if (!(id.object_id = strdup(guid)))
                        return -ENOMEM;
        }
        if (!id.msi_res_id) {
                if (id.system)
                        r = asprintf(
                                &id.msi_res_id,
                                "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/"
                                "virtualMachines/%s",
                                imds_cfg(c, "subscriptionId"), imds_cfg(c, "resourceGroupName"),
                                imds_cfg(c, "name"));
                else
                        r = asprintf(
                                &id.msi_res_id,
                                "/subscriptions/%s/resourcegroups/%s/providers/"
                                "Microsoft.ManagedIdentity/userAssignedIdentities/id-%s",
                                imds_cfg(c, "subscriptionId"), imds_cfg(c, "resourceGroupName"),
                                id.client_id);
                if (r < 0) {
                        id.msi_res_id = NULL;
                        return -ENOMEM;
                }
        }
        *ret = id;
        id = (ImdsIdentity){0};
        return 0;
}

static bool one_of(const char *s, const char *const *set) {
        for (; *set; set++)
                if (streq(s, *set))
                        return true;
        return false;
}

static int config_apply(ImdsConfig *c, json_object *patch, char **reterr) {
        static const char *const priorities[] = {"Regular", "Spot", "Low", NULL};
        static const char *const os_types[] = {"Linux", "Windows", NULL};
        int r;

        if (!json_object_is_type(patch, json_type_object))
                return imds_set_err(reterr, "body must be a JSON object");
        json_object_object_foreach(patch, key, val) {
                int i = field_index(key);

                if (i >= 0) {
                        const char *s;
                        if (!json_object_is_type(val, json_type_string) ||
                            json_object_get_string_len(val) > IMDS_STRING_MAX)
                                return imds_set_err(reterr, "'%s' must be a string", key);
                        s = json_object_get_string(val);
                        if (streq(key, "priority") && !one_of(s, priorities))
                                return imds_set_err(
                                        reterr, "'priority' must be Regular, Spot or Low, not '%s'",
                                        s);
                        if (streq(key, "osType") && !one_of(s, os_types))
                                return imds_set_err(
                                        reterr, "'osType' must be Linux or Windows, not '%s'", s);
                        if (streq(key, "name") && isempty(s))
                                return imds_set_err(reterr, "'name' must not be empty");
                        free(c->fields[i]);
                        if (!(c->fields[i] = strdup(s)))
                                return -ENOMEM;
                } else if (streq(key, "tags")) {
                        json_object *copy = NULL;
                        if (!json_object_is_type(val, json_type_object))
                                return imds_set_err(reterr, "'tags' must be an object of strings");
                        json_object_object_foreach(val, tk, tv) {
                                if (!json_object_is_type(tv, json_type_string) ||
                                    strpbrk(tk, ":;") ||
                                    json_object_get_string_len(tv) > IMDS_STRING_MAX)
                                        return imds_set_err(
                                                reterr,
                                                "tag '%s': names are strings without ':' or ';', "
                                                "values strings",
                                                tk);
                        }
                        if (json_object_deep_copy(val, &copy, NULL) < 0)
                                return -ENOMEM;
                        (void)json_object_put(c->tags);
                        c->tags = copy;
                } else if (streq(key, "tokenLifetimeSeconds")) {
                        int64_t v;
                        if (!json_object_is_type(val, json_type_int))
                                return imds_set_err(
                                        reterr, "'tokenLifetimeSeconds' must be an integer");
                        v = json_object_get_int64(val);
                        if (v < 1 || v > IMDS_TOKEN_LIFETIME_MAX)
                                return imds_set_err(
                                        reterr, "'tokenLifetimeSeconds' must be 1..%d",
                                        IMDS_TOKEN_LIFETIME_MAX);
                        c->token_lifetime_s = v;
                } else if (streq(key, "identities")) {
                        ImdsIdentity ids[IMDS_IDENTITIES_MAX];
                        size_t n, n_system = 0;

                        if (!json_object_is_type(val, json_type_array))
                                return imds_set_err(reterr, "'identities' must be an array");
                        n = json_object_array_length(val);
                        if (n > IMDS_IDENTITIES_MAX)
                                return imds_set_err(
                                        reterr, "'identities': at most %d", IMDS_IDENTITIES_MAX);
                        for (size_t k = 0; k < n; k++) {
                                r = identity_from_json(
                                        json_object_array_get_idx(val, k), c, &ids[k], reterr);
                                if (r >= 0 && ids[k].system && ++n_system > 1) {
                                        identity_clear(&ids[k]);
                                        r = imds_set_err(
                                                reterr,
                                                "'identities': at most one system-assigned");
                                }
                                if (r < 0) {
                                        for (size_t j = 0; j < k; j++)
                                                identity_clear(&ids[j]);
                                        return r;
                                }
                        }
                        for (size_t k = 0; k < c->n_identities; k++)
                                identity_clear(&c->identities[k]);
                        memcpy(c->identities, ids, n * sizeof(ImdsIdentity));
                        c->n_identities = n;
                } else
                        return imds_set_err(reterr, "unknown key '%s'", key);
        }
        return 0;
}

static int config_init(ImdsConfig *c) {
        static const char initial_identities[] =
                "{\"identities\":[{\"system\":true,"
                "\"client_id\":\"7c1f3a52-8e4b-4d6a-9b0c-2e5f6a7b8c9d\","
                "\"object_id\":\"1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9\"}]}";
        _cleanup_json_ json_object *ids = NULL;

        *c = (ImdsConfig){.token_lifetime_s = IMDS_DEFAULT_TOKEN_LIFETIME};
        for (size_t i = 0; i < N_FIELDS; i++)
                if (!(c->fields[i] = strdup(instance_fields[i].initial)))
                        goto oom;
        c->tags = json_object_new_object();
        ids = json_tokener_parse(initial_identities);
        if (!c->tags || !ids || config_apply(c, ids, NULL) < 0)
                goto oom;
        return 0;
oom:
        config_clear(c);
        return -ENOMEM;
}

static char *derived_resource_id(const ImdsConfig *c) {
        const char *rid = imds_cfg(c, "resourceId"), *name = imds_cfg(c, "name"),
                   *vmss = imds_cfg(c, "vmScaleSetName"), *underscore;
        char *s = NULL;

        if (!isempty(rid))
                return strdup(rid);
        underscore = strrchr(name, '_');
        if (!isempty(vmss) && underscore && underscore[1] &&
            strspn(underscore + 1, "0123456789") == strlen(underscore + 1)) {
                /* Uniform scale set: NAME_INSTANCEID. */
                if (asprintf(
                            &s,
                            "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/"
                            "virtualMachineScaleSets/%s/virtualMachines/%s",
                            imds_cfg(c, "subscriptionId"), imds_cfg(c, "resourceGroupName"), vmss,
                            underscore + 1) < 0)
                        return NULL;
                return s;
        }
        if (asprintf(
                    &s,
                    "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s",
                    imds_cfg(c, "subscriptionId"), imds_cfg(c, "resourceGroupName"), name) < 0)
                return NULL;
        return s;
}

/* ---- /metadata/instance ------------------------------------------------------------------ */

static json_object *obj_of(const char *const *kv) {
        json_object *o = json_object_new_object();
        for (; o && kv[0]; kv += 2)
                if (imds_add_string(o, kv[0], kv[1]) < 0) {
                        (void)json_object_put(o);
                        return NULL;
                }
        return o;
}

int imds_add_obj(json_object *parent, const char *key, json_object *child) {
        if (!child)
                return -ENOMEM;
        if (json_type_array == json_object_get_type(parent))
                return json_object_array_add(parent, child) < 0 ? -ENOMEM : 0;
        return json_object_object_add(parent, key, child) < 0 ? -ENOMEM : 0;
}

/* Builds the full document under the imds_lock (the caller holds it). */
static json_object *instance_document(const ImdsConfig *c) {
        _cleanup_json_ json_object *doc = json_object_new_object();
        _cleanup_free_ char *rid = derived_resource_id(c), *tags = NULL;
        json_object *compute, *tags_list, *network, *iface, *iface0, *ipv4, *addr, *subnet;
        char *tbuf = NULL;
        size_t tsize = 0;
        FILE *t;
        bool first = true;
        int r = 0;

        if (!doc || !rid)
                return NULL;
        /* "tags" is "k1:v1;k2:v2" next to the structured "tagsList". */
        t = open_memstream(&tbuf, &tsize);
        if (!t)
                return NULL;
        json_object_object_foreach(c->tags, tk, tv) {
                fprintf(t, "%s%s:%s", first ? "" : ";", tk, json_object_get_string(tv));
                first = false;
        }
        if (fclose(t) != 0) {
                free(tbuf);
                return NULL;
        }
        tags = tbuf;

        compute = json_object_new_object();
        r |= imds_add_obj(doc, "compute", compute);
        if (r < 0)
                return NULL;
        r |= imds_add_string(compute, "azEnvironment", imds_cfg(c, "azEnvironment"));
        r |= imds_add_obj(
                compute, "additionalCapabilities",
                obj_of((const char *const[]){"hibernationEnabled", "false", NULL}));
        r |= imds_add_string(compute, "evictionPolicy", imds_cfg(c, "evictionPolicy"));
        r |= imds_add_string(compute, "isHostCompatibilityLayerVm", "false");
        r |= imds_add_string(compute, "licenseType", "");
        r |= imds_add_string(compute, "location", imds_cfg(c, "location"));
        r |= imds_add_string(compute, "name", imds_cfg(c, "name"));
        r |= imds_add_string(compute, "offer", imds_cfg(c, "offer"));
        r |= imds_add_obj(
                compute, "osProfile",
                obj_of((const char *const[]){
                        "adminUsername", "azureuser", "computerName", imds_cfg(c, "computerName"),
                        "disablePasswordAuthentication", "true", NULL}));
        r |= imds_add_string(compute, "osType", imds_cfg(c, "osType"));
        r |= imds_add_string(compute, "placementGroupId", imds_cfg(c, "placementGroupId"));
        r |= imds_add_obj(
                compute, "plan",
                obj_of((const char *const[]){"name", "", "product", "", "publisher", "", NULL}));
        r |= imds_add_string(compute, "platformFaultDomain", imds_cfg(c, "platformFaultDomain"));
        r |= imds_add_string(compute, "platformUpdateDomain", imds_cfg(c, "platformUpdateDomain"));
        r |= imds_add_string(compute, "priority", imds_cfg(c, "priority"));
        r |= imds_add_string(compute, "provider", "Microsoft.Compute");
        r |= imds_add_obj(compute, "publicKeys", json_object_new_array());
        r |= imds_add_string(compute, "publisher", imds_cfg(c, "publisher"));
        r |= imds_add_string(compute, "resourceGroupName", imds_cfg(c, "resourceGroupName"));
        r |= imds_add_string(compute, "resourceId", rid);
        r |= imds_add_obj(
                compute, "securityProfile",
                obj_of((const char *const[]){
                        "secureBootEnabled", "false", "virtualTpmEnabled", "false", NULL}));
        r |= imds_add_string(compute, "sku", imds_cfg(c, "sku"));
        r |= imds_add_string(compute, "subscriptionId", imds_cfg(c, "subscriptionId"));
        r |= imds_add_string(compute, "tags", tags);
        tags_list = json_object_new_array();
        r |= imds_add_obj(compute, "tagsList", tags_list);
        if (r < 0)
                return NULL;
        json_object_object_foreach(c->tags, k2, v2) {
                r |= imds_add_obj(
                        tags_list, NULL,
                        obj_of((const char *const[]){
                                "name", k2, "value", json_object_get_string(v2), NULL}));
        }
        r |= imds_add_string(compute, "userData", "");
        r |= imds_add_string(compute, "version", imds_cfg(c, "version"));
        r |= imds_add_string(compute, "vmId", imds_cfg(c, "vmId"));
        r |= imds_add_string(compute, "vmScaleSetName", imds_cfg(c, "vmScaleSetName"));
        r |= imds_add_string(compute, "vmSize", imds_cfg(c, "vmSize"));
        r |= imds_add_string(compute, "zone", imds_cfg(c, "zone"));

        network = json_object_new_object();
        r |= imds_add_obj(doc, "network", network);
        if (r < 0)
                return NULL;
        iface = json_object_new_array();
        r |= imds_add_obj(network, "interface", iface);
        if (r < 0)
                return NULL;
        iface0 = json_object_new_object();
        r |= imds_add_obj(iface, NULL, iface0);
        if (r < 0)
                return NULL;
        ipv4 = json_object_new_object();
        r |= imds_add_obj(iface0, "ipv4", ipv4);
        if (r < 0)
                return NULL;
        addr = json_object_new_array();
        r |= imds_add_obj(ipv4, "ipAddress", addr);
        if (r < 0)
                return NULL;
        r |= imds_add_obj(
                addr, NULL,
                obj_of((const char *const[]){
                        "privateIpAddress", imds_cfg(c, "privateIpAddress"), "publicIpAddress", "",
                        NULL}));
        subnet = json_object_new_array();
        r |= imds_add_obj(ipv4, "subnet", subnet);
        if (r < 0)
                return NULL;
        r |= imds_add_obj(
                subnet, NULL,
                obj_of((const char *const[]){"address", "10.0.0.0", "prefix", "24", NULL}));
        r |= imds_add_obj(iface0, "ipv6", obj_of((const char *const[]){NULL}));
        if (r < 0)
                return NULL;
        r |= imds_add_obj(
                json_object_object_get(iface0, "ipv6"), "ipAddress", json_object_new_array());
        r |= imds_add_string(iface0, "macAddress", imds_cfg(c, "macAddress"));
        if (r < 0)
                return NULL;
        return TAKE_PTR(doc);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int emu_imds_new(Emulator *emu, EmuImds **ret) {
        EmuImds *i = calloc(1, sizeof(EmuImds));
        int r;

        if (!i)
                return -ENOMEM;
        i->emu = emu;
        r = config_init(&i->config);
        if (r < 0) {
                free(i);
                return r;
        }
        if (pthread_mutex_init(&i->lock, NULL) != 0) {
                config_clear(&i->config);
                free(i);
                return -ENOMEM;
        }
        *ret = i;
        return 0;
}

EmuImds *emu_imds_free(EmuImds *imds) {
        if (!imds)
                return NULL;
        for (size_t i = 0; i < imds->n_events; i++)
                imds_event_clear(&imds->events[i]);
        config_clear(&imds->config);
        (void)pthread_mutex_destroy(&imds->lock);
        free(imds);
        return NULL;
}

/* ---- requests ----------------------------------------------------------------------------- */

typedef enum ImdsRoute {
        ROUTE_NONE,
        ROUTE_INSTANCE,
        ROUTE_EVENTS,
        ROUTE_TOKEN,
} ImdsRoute;

static ImdsRoute route_of(const EmuRequest *req) {
        if (req->n_segments < 2 || !streq(req->segments[0], "metadata"))
                return ROUTE_NONE;
        if (streq(req->segments[1], "instance"))
                return ROUTE_INSTANCE;
        if (streq(req->segments[1], "scheduledevents") && req->n_segments == 2)
                return ROUTE_EVENTS;
        if (streq(req->segments[1], "identity") && req->n_segments == 4 &&
            streq(req->segments[2], "oauth2") && streq(req->segments[3], "token"))
                return ROUTE_TOKEN;
        return ROUTE_NONE;
}

EmuOp emu_imds_classify(const EmuRequest *req) {
        bool get = streq(req->method, "GET"), post = streq(req->method, "POST");

        switch (route_of(req)) {
        case ROUTE_INSTANCE:
                return get ? EMU_OP_IMDS_INSTANCE : _EMU_OP_INVALID;
        case ROUTE_EVENTS:
                return get    ? EMU_OP_IMDS_SCHEDULED_EVENTS
                       : post ? EMU_OP_IMDS_APPROVE_EVENTS
                              : _EMU_OP_INVALID;
        case ROUTE_TOKEN:
                return get ? EMU_OP_IMDS_TOKEN : _EMU_OP_INVALID;
        default:
                return _EMU_OP_INVALID;
        }
}

void imds_reply_error(EmuRequest *req, unsigned status, const char *error) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o || imds_add_string(o, "error", error) < 0) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, status, o);
}

/* The identity endpoint answers errors the OAuth way. */
static void
reply_oauth_error(EmuRequest *req, unsigned status, const char *error, const char *desc) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o || imds_add_string(o, "error", error) < 0 ||
            imds_add_string(o, "error_description", desc) < 0) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, status, o);
}

static void reply_bad_version(
        EmuRequest *req, const char *const *versions, size_t n, bool missing, bool oauth) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *newest = json_object_new_array();
        int r = 0;

        if (oauth) {
                if (newest)
                        (void)json_object_put(newest);
                reply_oauth_error(
                        req, 400, "invalid_request",
                        missing ? "Required query variable 'api-version' is missing"
                                : "Invalid api-version");
                return;
        }
        if (!o || !newest) {
                if (newest)
                        (void)json_object_put(newest);
                (void)emu_reply_empty(req, 500);
                return;
        }
        r |= imds_add_string(
                o, "error",
                missing ? "Bad request. api-version was not specified in the request. For more "
                          "information refer to aka.ms/azureimds"
                        : "Bad request. api-version is invalid or was not specified in the "
                          "request. For more information refer to aka.ms/azureimds");
        for (size_t i = 0; i < 3 && i < n; i++)
                r |= imds_add_obj(newest, NULL, json_object_new_string(versions[n - 1 - i]));
        r |= imds_add_obj(o, "newest-versions", newest);
        if (r < 0) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, 400, o);
}

static bool
version_known(const char *v, const char *const *versions, size_t n, const char *oldest) {
        if (oldest && strcmp(v, oldest) < 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (streq(v, versions[i]))
                        return true;
        return false;
}

static void handle_instance(EmuRequest *req, EmuImds *imds) {
        _cleanup_json_ json_object *doc = NULL;
        const char *format = emu_request_query(req, "format");
        json_object *node;
        bool text;

        if (format && !streq(format, "json") && !streq(format, "text")) {
                imds_reply_error(
                        req, 400,
                        "Bad request. Unsupported format; use format=json or format=text");
                return;
        }
        text = format && streq(format, "text");

        imds_lock(imds);
        doc = instance_document(&imds->config);
        imds_unlock(imds);
        if (!doc) {
                (void)emu_reply_empty(req, 500);
                return;
        }

        /* Route parameters: /metadata/instance/compute/vmSize, .../interface/0/... */
        node = doc;
        for (unsigned i = 2; i < req->n_segments; i++) {
                const char *seg = req->segments[i];
                json_object *next = NULL;

                if (json_object_is_type(node, json_type_object))
                        next = json_object_object_get(node, seg);
                else if (json_object_is_type(node, json_type_array)) {
                        char *end;
                        unsigned long idx;
                        errno = 0;
                        idx = strtoul(seg, &end, 10);
                        if (errno == 0 && *end == '\0' && seg[0] >= '0' && seg[0] <= '9' &&
                            idx < json_object_array_length(node))
                                next = json_object_array_get_idx(node, idx);
                }
                if (!next) {
                        imds_reply_error(req, 404, "Not found");
                        return;
                }
                node = next;
        }

        if (json_object_is_type(node, json_type_object) ||
            json_object_is_type(node, json_type_array)) {
                if (text) {
                        imds_reply_error(
                                req, 400,
                                "Bad request. format=text is only supported for leaf nodes");
                        return;
                }
                (void)emu_reply_json(req, 200, node);
                return;
        }
        if (!text) {
                imds_reply_error(
                        req, 400,
                        "Bad request. Querying a leaf node requires the parameter format=text");
                return;
        }
        (void)emu_reply_body(
                req, 200, CT_TEXT, json_object_get_string(node),
                (size_t)json_object_get_string_len(node));
}

static void handle_token(EmuRequest *req, EmuImds *imds) {
        const char *resource = emu_request_query(req, "resource");
        const char *client_id = emu_request_query(req, "client_id");
        const char *object_id = emu_request_query(req, "object_id");
        const char *res_id = emu_request_query(req, "msi_res_id");
        const char *mi_res_id = emu_request_query(req, "mi_res_id");
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *token = NULL, *chosen_client = NULL;
        const ImdsIdentity *id = NULL;
        bool system = false;
        int64_t now_s, lifetime;
        int selectors, r;

        if (isempty(resource)) {
                reply_oauth_error(
                        req, 400, "invalid_request", "Required audience parameter not specified");
                return;
        }
        if (!res_id)
                res_id = mi_res_id;
        selectors = !!client_id + !!object_id + !!res_id + (mi_res_id && res_id != mi_res_id);
        if (selectors > 1) {
                reply_oauth_error(
                        req, 400, "invalid_request",
                        "Only one of client_id, object_id, msi_res_id may be specified");
                return;
        }

        imds_lock(imds);
        for (size_t i = 0; i < imds->config.n_identities; i++) {
                const ImdsIdentity *c = &imds->config.identities[i];
                if ((client_id && strcaseeq(c->client_id, client_id)) ||
                    (object_id && strcaseeq(c->object_id, object_id)) ||
                    (res_id && strcaseeq(c->msi_res_id, res_id)) || (selectors == 0 && c->system))
                        id = c;
        }
        /* No selector and no system-assigned identity: a single user-assigned one is used. */
        if (!id && selectors == 0 && imds->config.n_identities == 1)
                id = &imds->config.identities[0];
        if (id) {
                system = id->system;
                chosen_client = strdup(id->client_id);
        }
        lifetime = imds->config.token_lifetime_s;
        imds_unlock(imds);

        if (!id) {
                reply_oauth_error(req, 400, "invalid_request", "Identity not found");
                return;
        }
        if (!chosen_client) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        now_s = now_realtime_ns() / NSEC_PER_SEC;
        r = emu_auth_issue_token(
                imds->emu, system ? NULL : chosen_client, resource, now_s + lifetime, &token);
        if (r < 0) {
                reply_oauth_error(
                        req, 500, "unknown_error",
                        r == -EOPNOTSUPP ? "Token issuance is not available in this emulator build"
                                         : "Failed to issue a token");
                return;
        }
        o = json_object_new_object();
        if (!o || imds_add_string(o, "access_token", token) < 0 ||
            imds_add_string(o, "client_id", chosen_client) < 0 ||
            add_int64_string(o, "expires_in", lifetime) < 0 ||
            add_int64_string(o, "expires_on", now_s + lifetime) < 0 ||
            add_int64_string(o, "ext_expires_in", lifetime) < 0 ||
            add_int64_string(o, "not_before", now_s - IMDS_NOT_BEFORE_SKEW) < 0 ||
            imds_add_string(o, "resource", resource) < 0 ||
            imds_add_string(o, "token_type", "Bearer") < 0) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, 200, o);
}

void emu_imds_handle(EmuRequest *req) {
        EmuImds *imds = req->emu->imds;
        ImdsRoute route = route_of(req);
        const char *metadata, *version;
        bool oauth = route == ROUTE_TOKEN;

        if (route == ROUTE_NONE || !imds) {
                imds_reply_error(req, 404, "Not found");
                return;
        }
        metadata = emu_request_header(req, "Metadata");
        if (!metadata || !strcaseeq(metadata, "true")) {
                if (oauth)
                        reply_oauth_error(
                                req, 400, "invalid_request",
                                "Required metadata header not specified");
                else
                        imds_reply_error(
                                req, 400, "Bad request. Required metadata header not specified");
                return;
        }
        if (emu_request_header(req, "X-Forwarded-For")) {
                if (oauth)
                        reply_oauth_error(
                                req, 400, "invalid_request",
                                "Requests with an X-Forwarded-For header are not allowed");
                else
                        imds_reply_error(
                                req, 400,
                                "Bad request. Requests with an X-Forwarded-For header are not "
                                "allowed");
                return;
        }
        if (req->op < 0) {
                imds_reply_error(req, 405, "Method not allowed");
                return;
        }

        version = emu_request_query(req, "api-version");
        switch (route) {
        case ROUTE_INSTANCE:
                if (!version ||
                    !version_known(
                            version, instance_versions, ELEMENTSOF(instance_versions), NULL)) {
                        reply_bad_version(
                                req, instance_versions, ELEMENTSOF(instance_versions), !version,
                                false);
                        return;
                }
                handle_instance(req, imds);
                return;
        case ROUTE_EVENTS:
                if (!version ||
                    !version_known(version, events_versions, ELEMENTSOF(events_versions), NULL)) {
                        reply_bad_version(
                                req, events_versions, ELEMENTSOF(events_versions), !version, false);
                        return;
                }
                if (req->op == EMU_OP_IMDS_APPROVE_EVENTS)
                        imds_handle_events_post(req, imds);
                else
                        imds_handle_events_get(req, imds, version);
                return;
        case ROUTE_TOKEN:
                if (!version || !version_known(
                                        version, instance_versions, ELEMENTSOF(instance_versions),
                                        IDENTITY_VERSION_OLDEST)) {
                        reply_bad_version(
                                req, instance_versions, ELEMENTSOF(instance_versions), !version,
                                true);
                        return;
                }
                handle_token(req, imds);
                return;
        default:
                imds_reply_error(req, 404, "Not found");
                return;
        }
}

/* ---- admin hooks ---------------------------------------------------------------------------- */

int emu_imds_set_instance(EmuImds *imds, json_object *patch, char **reterr) {
        ImdsConfig next;
        int r;

        imds_lock(imds);
        r = config_copy(&imds->config, &next);
        if (r >= 0) {
                r = config_apply(&next, patch, reterr);
                if (r >= 0) {
                        config_clear(&imds->config);
                        imds->config = next;
                } else
                        config_clear(&next);
        }
        imds_unlock(imds);
        return r;
}

json_object *emu_imds_get_instance(EmuImds *imds) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *ids, *tags = NULL;
        int r = 0;

        if (!o)
                return NULL;
        imds_lock(imds);
        for (size_t i = 0; i < N_FIELDS; i++)
                r |= imds_add_string(o, instance_fields[i].name, imds->config.fields[i]);
        if (json_object_deep_copy(imds->config.tags, &tags, NULL) < 0)
                r = -ENOMEM;
        r |= imds_add_obj(o, "tags", tags);
        ids = json_object_new_array();
        r |= imds_add_obj(o, "identities", ids);
        for (size_t i = 0; r >= 0 && i < imds->config.n_identities; i++) {
                const ImdsIdentity *id = &imds->config.identities[i];
                json_object *e = obj_of((const char *const[]){
                        "client_id", id->client_id, "object_id", id->object_id, "msi_res_id",
                        id->msi_res_id, NULL});
                r |= imds_add_obj(ids, NULL, e);
                if (e)
                        r |= imds_add_obj(e, "system", json_object_new_boolean(id->system));
        }
        r |= imds_add_obj(
                o, "tokenLifetimeSeconds", json_object_new_int64(imds->config.token_lifetime_s));
        imds_unlock(imds);
        return r < 0 ? NULL : TAKE_PTR(o);
}
