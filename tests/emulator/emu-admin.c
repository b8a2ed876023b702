/* SPDX-License-Identifier: MIT */
#include "emu-admin.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "emu-faults.h"
#include "emu-imds.h"

static void json_object_putp(json_object **o) {
        if (*o)
                (void)json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

_printf_(3, 4) static void reply_error(EmuRequest *req, unsigned status, const char *format, ...) {
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *msg = NULL;
        json_object *s;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        s = json_object_new_string(msg ? msg : "out of memory");
        if (!o || !s || json_object_object_add(o, "error", s) < 0) {
                if (s && !o)
                        (void)json_object_put(s);
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, status, o);
}

static void reply_taken(EmuRequest *req, unsigned status, json_object *o) {
        if (!o) {
                (void)emu_reply_empty(req, 500);
                return;
        }
        (void)emu_reply_json(req, status, o);
        (void)json_object_put(o);
}

static void reply_bad_input(EmuRequest *req, int r, const char *err) {
        if (r == -ENOMEM)
                (void)emu_reply_empty(req, 500);
        else
                reply_error(req, 400, "%s", err ? err : "invalid input");
}

static void reply_wrong_method(EmuRequest *req, const char *allowed) {
        (void)emu_reply_header(req, "Allow", "%s", allowed);
        reply_error(req, 405, "method %s not allowed here; use %s", req->method, allowed);
}

static void handle_health(EmuRequest *req) {
        json_object *o = json_object_new_object();
        Emulator *emu = req->emu;

        if (o) {
                (void)json_object_object_add(o, "status", json_object_new_string("ok"));
                (void)json_object_object_add(o, "account", json_object_new_string(emu->account));
                (void)json_object_object_add(
                        o, "files_url",
                        emu->files_url ? json_object_new_string(emu->files_url) : NULL);
                (void)json_object_object_add(
                        o, "imds_url",
                        emu->imds_url ? json_object_new_string(emu->imds_url) : NULL);
        }
        reply_taken(req, 200, o);
}

static void handle_counters(EmuRequest *req) {
        const char *reset = emu_request_query(req, "reset");
        bool zero = reset && (streq(reset, "1") || streq(reset, "true"));
        json_object *o = json_object_new_object(), *per_op = json_object_new_object();
        uint64_t total_requests = 0, total_faults = 0;

        if (reset && !zero && !streq(reset, "0") && !streq(reset, "false")) {
                if (o)
                        (void)json_object_put(o);
                if (per_op)
                        (void)json_object_put(per_op);
                reply_error(req, 400, "reset must be 1 or 0, not '%s'", reset);
                return;
        }
        if (!o || !per_op) {
                if (o)
                        (void)json_object_put(o);
                if (per_op)
                        (void)json_object_put(per_op);
                (void)emu_reply_empty(req, 500);
                return;
        }
        for (int op = 0; op < _EMU_OP_MAX; op++) {
                _Atomic uint64_t *c = (_Atomic uint64_t *)req->emu->counters[op];
                uint64_t requests, faults;
                json_object *e;

                if (op == EMU_OP_ADMIN) {
                        requests = atomic_load(&c[0]);
                        faults = atomic_load(&c[1]);
                } else if (zero) {
                        requests = atomic_exchange(&c[0], 0);
                        faults = atomic_exchange(&c[1], 0);
                } else {
                        requests = atomic_load(&c[0]);
                        faults = atomic_load(&c[1]);
                }
                if (op != EMU_OP_ADMIN) {
                        total_requests += requests;
                        total_faults += faults;
                }
                e = json_object_new_object();
                if (!e)
                        continue;
                (void)json_object_object_add(
                        e, "requests", json_object_new_int64((int64_t)requests));
                (void)json_object_object_add(e, "faults", json_object_new_int64((int64_t)faults));
                (void)json_object_object_add(per_op, emu_op_to_string((EmuOp)op), e);
        }
        (void)json_object_object_add(o, "counters", per_op);
        (void)json_object_object_add(o, "requests", json_object_new_int64((int64_t)total_requests));
        (void)json_object_object_add(o, "faults", json_object_new_int64((int64_t)total_faults));
        (void)json_object_object_add(o, "reset", json_object_new_boolean(zero));
        reply_taken(req, 200, o);
}

static json_object *faults_json(EmuFaults *f) {
        _cleanup_free_ char *spec = f ? emu_faults_describe(f) : strdup("");
        json_object *o;

        if (!spec)
                return NULL;
        o = json_object_new_object();
        if (o)
                (void)json_object_object_add(o, "spec", json_object_new_string(spec));
        return o;
}

static void handle_faults(EmuRequest *req) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_free_ char *err = NULL;
        json_object *spec;
        int r;

        if (streq(req->method, "GET")) {
                reply_taken(req, 200, faults_json(req->emu->faults));
                return;
        }
        if (!streq(req->method, "PUT")) {
                reply_wrong_method(req, "GET, PUT");
                return;
        }
        if (!req->emu->faults) {
                reply_error(req, 500, "fault injection is not set up");
                return;
        }
        r = emu_request_json(req, &body, &err);
        if (r < 0) {
                reply_bad_input(req, r, err);
                return;
        }
        if (!json_object_is_type(body, json_type_object) ||
            !json_object_object_get_ex(body, "spec", &spec) ||
            !json_object_is_type(spec, json_type_string) || json_object_object_length(body) != 1) {
                reply_error(req, 400, "expected {\"spec\": \"FAULTS\"} (\"\" for none)");
                return;
        }
        r = emu_faults_set(req->emu->faults, json_object_get_string(spec), &err);
        if (r < 0) {
                if (r == -ENOMEM)
                        (void)emu_reply_empty(req, 500);
                else
                        reply_error(req, 400, "invalid fault spec: %s", err ? err : "?");
                return;
        }
        reply_taken(req, 200, faults_json(req->emu->faults));
}

static void handle_events(EmuRequest *req, EmuImds *imds) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_free_ char *err = NULL;
        json_object *out = NULL;
        int r;

        if (streq(req->method, "GET")) {
                reply_taken(req, 200, emu_imds_get_events(imds));
                return;
        }
        if (streq(req->method, "DELETE")) {
                unsigned n = emu_imds_clear_events(imds);
                out = json_object_new_object();
                if (out)
                        (void)json_object_object_add(out, "cleared", json_object_new_int64(n));
                reply_taken(req, 200, out);
                return;
        }
        if (!streq(req->method, "POST")) {
                reply_wrong_method(req, "GET, POST, DELETE");
                return;
        }
        r = emu_request_json(req, &body, &err);
        if (r >= 0)
                r = emu_imds_add_event(imds, body, &out, &err);
        if (r < 0) {
                reply_bad_input(req, r, err);
                return;
        }
        reply_taken(req, 201, out);
}

static void handle_instance(EmuRequest *req, EmuImds *imds) {
        _cleanup_json_ json_object *body = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        if (streq(req->method, "GET")) {
                reply_taken(req, 200, emu_imds_get_instance(imds));
                return;
        }
        if (!streq(req->method, "PUT")) {
                reply_wrong_method(req, "GET, PUT");
                return;
        }
        r = emu_request_json(req, &body, &err);
        if (r >= 0)
                r = emu_imds_set_instance(imds, body, &err);
        if (r < 0) {
                reply_bad_input(req, r, err);
                return;
        }
        reply_taken(req, 200, emu_imds_get_instance(imds));
}

void emu_admin_handle(EmuRequest *req) {
        const char *what = req->n_segments >= 2 ? req->segments[1] : "";
        EmuImds *imds = req->emu->imds;
        bool get = streq(req->method, "GET");

        if (req->n_segments == 2 && streq(what, "health")) {
                if (get)
                        handle_health(req);
                else
                        reply_wrong_method(req, "GET");
        } else if (req->n_segments == 2 && streq(what, "counters")) {
                if (get)
                        handle_counters(req);
                else
                        reply_wrong_method(req, "GET");
        } else if (req->n_segments == 2 && streq(what, "faults"))
                handle_faults(req);
        else if (!imds && (streq(what, "scheduledevents") || streq(what, "instance")))
                reply_error(req, 500, "the metadata service is not set up");
        else if (req->n_segments == 2 && streq(what, "scheduledevents"))
                handle_events(req, imds);
        else if (
                req->n_segments == 3 && streq(what, "scheduledevents") &&
                streq(req->segments[2], "approvals")) {
                if (get)
                        reply_taken(req, 200, emu_imds_get_approvals(imds));
                else
                        reply_wrong_method(req, "GET");
        } else if (req->n_segments == 2 && streq(what, "instance"))
                handle_instance(req, imds);
        else
                reply_error(
                        req, 404,
                        "unknown admin path '%s'; see azfiles-emu(1): health, counters, faults, "
                        "instance, scheduledevents, scheduledevents/approvals",
                        req->raw_path ? req->raw_path : "?");
}
