/* SPDX-License-Identifier: MIT */
#include "drain-state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "json-util.h"
#include "state-file.h"

#define DRAIN_STATE_JSON_DEPTH 8

static const char *const drain_step_table[_DRAIN_STEP_MAX] = {
        [DRAIN_STEP_NOT_HEALTHY] = "not-healthy",   [DRAIN_STEP_EXEC_START] = "exec-start",
        [DRAIN_STEP_BLOCK_LOGINS] = "block-logins", [DRAIN_STEP_STOP_JOBS] = "stop-jobs",
        [DRAIN_STEP_WAIT_JOBS] = "wait-jobs",       [DRAIN_STEP_FLUSH] = "flush",
        [DRAIN_STEP_EXEC_STOP] = "exec-stop",       [DRAIN_STEP_REPORT] = "report",
        [DRAIN_STEP_APPROVE] = "approve",
};
static const char *const drain_source_table[_DRAIN_SOURCE_MAX] = {
        [DRAIN_SOURCE_EVENT] = "event",
        [DRAIN_SOURCE_MANUAL] = "manual",
        [DRAIN_SOURCE_SHUTDOWN] = "shutdown",
};
static const char *const drain_approval_table[_DRAIN_APPROVAL_MAX] = {
        [DRAIN_APPROVAL_NONE] = "none",
        [DRAIN_APPROVAL_APPROVING] = "approving",
        [DRAIN_APPROVAL_APPROVED] = "approved",
};
static const char *const drain_result_table[_DRAIN_RESULT_MAX] = {
        [DRAIN_RESULT_PENDING] = "pending", [DRAIN_RESULT_RUNNING] = "running",
        [DRAIN_RESULT_DONE] = "done",       [DRAIN_RESULT_SKIPPED] = "skipped",
        [DRAIN_RESULT_FAILED] = "failed",
};

static int lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (table[i] && streq(table[i], s))
                        return i;
        return -EINVAL;
}

const char *drain_step_to_string(DrainStep s) {
        return s >= 0 && s < _DRAIN_STEP_MAX ? drain_step_table[s] : NULL;
}
DrainStep drain_step_from_string(const char *s) {
        return (DrainStep)lookup(drain_step_table, _DRAIN_STEP_MAX, s);
}
const char *drain_source_to_string(DrainSource s) {
        return s >= 0 && s < _DRAIN_SOURCE_MAX ? drain_source_table[s] : NULL;
}
DrainSource drain_source_from_string(const char *s) {
        return (DrainSource)lookup(drain_source_table, _DRAIN_SOURCE_MAX, s);
}
const char *drain_approval_to_string(DrainApproval a) {
        return a >= 0 && a < _DRAIN_APPROVAL_MAX ? drain_approval_table[a] : NULL;
}
const char *drain_step_result_to_string(DrainStepResult r) {
        return r >= 0 && r < _DRAIN_RESULT_MAX ? drain_result_table[r] : NULL;
}

void drain_state_init(DrainState *s) {
        *s = (DrainState){
                .event_type = _SCHEDULED_EVENT_TYPE_INVALID,
                .dirty_bytes = -1,
        };
}

DrainEventRecord *drain_state_find_event(DrainState *s, const char *id) {
        for (size_t i = 0; i < s->n_events; i++)
                if (streq(s->events[i].id, id))
                        return &s->events[i];
        return NULL;
}

DrainEventRecord *
drain_state_add_event(DrainState *s, const char *id, ScheduledEventType type, uint64_t usec) {
        DrainEventRecord *e = drain_state_find_event(s, id);

        if (e)
                return e;
        if (strlen(id) >= sizeof(e->id))
                return NULL;
        if (s->n_events >= DRAIN_STATE_EVENTS_MAX) {
                memmove(&s->events[0], &s->events[1], (s->n_events - 1) * sizeof(s->events[0]));
                s->n_events--;
        }
        e = &s->events[s->n_events++];
        *e = (DrainEventRecord){.type = type, .approval = DRAIN_APPROVAL_NONE, .usec = usec};
        memcpy(e->id, id, strlen(id) + 1);
        return e;
}

/* ---- parse ----------------------------------------------------------------------------------- */

static int get_string(json_object *o, const char *key, bool optional, const char **ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) {
                *ret = NULL;
                return optional ? 0 : -EBADMSG;
        }
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        *ret = json_object_get_string(v);
        return 0;
}

static int get_u64(json_object *o, const char *key, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v)) {
                *ret = 0;
                return 0;
        }
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

static int copy_string(char *dst, size_t size, const char *s) {
        if (!s) {
                dst[0] = '\0';
                return 0;
        }
        if (strlen(s) >= size)
                return -EBADMSG;
        memcpy(dst, s, strlen(s) + 1);
        return 0;
}

static int parse_drain(json_object *d, DrainState *s, const char **reason) {
        const char *str;
        json_object *steps, *v;
        int k;

        *reason = "malformed \"drain\"";
        if (!json_object_is_type(d, json_type_object))
                return -EBADMSG;
        s->active = true;
        if (get_string(d, "source", false, &str) < 0 || (k = drain_source_from_string(str)) < 0)
                return -EBADMSG;
        s->source = (DrainSource)k;
        if (get_string(d, "event_id", true, &str) < 0 ||
            copy_string(s->event_id, sizeof(s->event_id), str) < 0)
                return -EBADMSG;
        if (get_string(d, "event_type", true, &str) < 0)
                return -EBADMSG;
        s->event_type = str ? scheduled_event_type_from_string(str) : _SCHEDULED_EVENT_TYPE_INVALID;
        if (str && s->event_type < 0)
                return -EBADMSG;
        if (get_string(d, "step", false, &str) < 0 || (k = drain_step_from_string(str)) < 0)
                return -EBADMSG;
        s->step = (DrainStep)k;
        if (get_u64(d, "not_before_usec", &s->not_before_usec) < 0 ||
            get_u64(d, "started_usec", &s->started_usec) < 0 ||
            get_u64(d, "ended_usec", &s->ended_usec) < 0 ||
            get_u64(d, "bytes_flushed", &s->bytes_flushed) < 0)
                return -EBADMSG;
        if (json_object_object_get_ex(d, "dirty_bytes", &v)) {
                if (!json_object_is_type(v, json_type_int))
                        return -EBADMSG;
                s->dirty_bytes = json_object_get_int64(v);
        }
        if (json_object_object_get_ex(d, "event_started", &v)) {
                if (!json_object_is_type(v, json_type_boolean))
                        return -EBADMSG;
                s->event_started = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(d, "done", &v)) {
                if (!json_object_is_type(v, json_type_boolean))
                        return -EBADMSG;
                s->done = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(d, "steps", &steps)) {
                if (!json_object_is_type(steps, json_type_array))
                        return -EBADMSG;
                for (size_t i = 0; i < json_object_array_length(steps); i++) {
                        json_object *o = json_object_array_get_idx(steps, i);
                        DrainStepRecord *rec;

                        if (!json_object_is_type(o, json_type_object) ||
                            get_string(o, "step", false, &str) < 0 ||
                            (k = drain_step_from_string(str)) < 0)
                                return -EBADMSG;
                        rec = &s->steps[k];
                        if (get_string(o, "result", false, &str) < 0 ||
                            (k = lookup(drain_result_table, _DRAIN_RESULT_MAX, str)) < 0)
                                return -EBADMSG;
                        rec->result = (DrainStepResult)k;
                        if (get_u64(o, "start_usec", &rec->start_usec) < 0 ||
                            get_u64(o, "end_usec", &rec->end_usec) < 0 ||
                            get_string(o, "note", true, &str) < 0)
                                return -EBADMSG;
                        (void)snprintf(rec->note, sizeof(rec->note), "%s", str ? str : "");
                }
        }
        *reason = NULL;
        return 0;
}

int drain_state_parse(const char *json, size_t size, DrainState *ret, const char **reterr_reason) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *v, *events;
        const char *str;
        DrainState s;
        int r;

        drain_state_init(&s);
        *reterr_reason = "not a JSON object";
        root = json_parse_bounded(json, size, DRAIN_STATE_FILE_MAX, DRAIN_STATE_JSON_DEPTH);
        if (!root || !json_object_is_type(root, json_type_object))
                return -EBADMSG;
        if (!json_object_object_get_ex(root, "version", &v) ||
            !json_object_is_type(v, json_type_int) || json_object_get_int(v) != 1) {
                *reterr_reason = "missing or unknown \"version\"";
                return -EBADMSG;
        }
        if (get_string(root, "boot_id", true, &str) < 0 ||
            copy_string(s.boot_id, sizeof(s.boot_id), str) < 0) {
                *reterr_reason = "malformed \"boot_id\"";
                return -EBADMSG;
        }
        if (json_object_object_get_ex(root, "drain", &v) &&
            !json_object_is_type(v, json_type_null)) {
                r = parse_drain(v, &s, reterr_reason);
                if (r < 0)
                        return r;
        }
        *reterr_reason = "malformed \"events\"";
        if (json_object_object_get_ex(root, "events", &events)) {
                if (!json_object_is_type(events, json_type_array))
                        return -EBADMSG;
                for (size_t i = 0; i < json_object_array_length(events); i++) {
                        json_object *o = json_object_array_get_idx(events, i);
                        const char *id, *type, *approval;
                        DrainEventRecord *e;
                        uint64_t usec;
                        int k, t;

                        if (!json_object_is_type(o, json_type_object) ||
                            get_string(o, "id", false, &id) < 0 ||
                            get_string(o, "type", false, &type) < 0 ||
                            get_string(o, "approval", false, &approval) < 0 ||
                            get_u64(o, "usec", &usec) < 0 || isempty(id) ||
                            strlen(id) >= SCHEDULED_EVENT_ID_MAX ||
                            (t = scheduled_event_type_from_string(type)) < 0 ||
                            (k = lookup(drain_approval_table, _DRAIN_APPROVAL_MAX, approval)) < 0)
                                return -EBADMSG;
                        e = drain_state_add_event(&s, id, (ScheduledEventType)t, usec);
                        if (!e)
                                return -EBADMSG;
                        e->approval = (DrainApproval)k;
                }
        }
        *reterr_reason = NULL;
        *ret = s;
        return 0;
}

/* ---- format ---------------------------------------------------------------------------------- */

static int add(json_object *o, const char *key, json_object *v) {
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

json_object *drain_state_drain_json(const DrainState *s) {
        _cleanup_(json_object_putp) json_object *d = json_object_new_object();
        json_object *steps = json_object_new_array();
        int r = 0;

        if (!d || !steps || add(d, "steps", steps) < 0) {
                if (d)
                        json_object_put(steps);
                return NULL;
        }
        r |= add(d, "source", json_object_new_string(drain_source_to_string(s->source)));
        r |= add(d, "event_id", s->event_id[0] ? json_object_new_string(s->event_id) : NULL);
        r |=
                add(d, "event_type",
                    s->event_type >= 0
                            ? json_object_new_string(scheduled_event_type_to_string(s->event_type))
                            : NULL);
        r |= add(d, "not_before_usec", json_object_new_uint64(s->not_before_usec));
        r |= add(d, "step", json_object_new_string(drain_step_to_string(s->step)));
        r |= add(d, "event_started", json_object_new_boolean(s->event_started));
        r |= add(d, "done", json_object_new_boolean(s->done));
        r |= add(d, "started_usec", json_object_new_uint64(s->started_usec));
        r |= add(d, "ended_usec", json_object_new_uint64(s->ended_usec));
        r |= add(d, "bytes_flushed", json_object_new_uint64(s->bytes_flushed));
        r |= add(d, "dirty_bytes", json_object_new_int64(s->dirty_bytes));
        for (int i = 0; r >= 0 && i < _DRAIN_STEP_MAX; i++) {
                const DrainStepRecord *rec = &s->steps[i];
                json_object *o = json_object_new_object();

                if (!o || json_object_array_add(steps, o) < 0) {
                        json_object_put(o);
                        return NULL;
                }
                r |= add(o, "step", json_object_new_string(drain_step_to_string((DrainStep)i)));
                r |=
                        add(o, "result",
                            json_object_new_string(drain_step_result_to_string(rec->result)));
                r |= add(o, "start_usec", json_object_new_uint64(rec->start_usec));
                r |= add(o, "end_usec", json_object_new_uint64(rec->end_usec));
                r |=
                        add(o, "duration_ms",
                            json_object_new_uint64(
                                    rec->end_usec > rec->start_usec
                                            ? (rec->end_usec - rec->start_usec) / 1000U
                                            : 0));
                r |= add(o, "note", json_object_new_string(rec->note));
        }
        return r < 0 ? NULL : TAKE_PTR(d);
}

int drain_state_format(const DrainState *s, char **ret) {
        _cleanup_(json_object_putp) json_object *root = json_object_new_object();
        json_object *events = json_object_new_array(), *d = NULL;
        int r = 0;
        char *text;

        if (!root || !events || add(root, "events", events) < 0) {
                if (root)
                        json_object_put(events);
                return -ENOMEM;
        }
        r |= add(root, "version", json_object_new_int(1));
        r |= add(root, "boot_id", json_object_new_string(s->boot_id));
        if (s->active) {
                d = drain_state_drain_json(s);
                if (!d)
                        return -ENOMEM;
        }
        r |= add(root, "drain", d);
        for (size_t i = 0; r >= 0 && i < s->n_events; i++) {
                const DrainEventRecord *e = &s->events[i];
                json_object *o = json_object_new_object();

                if (!o || json_object_array_add(events, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                r |= add(o, "id", json_object_new_string(e->id));
                r |= add(
                        o, "type", json_object_new_string(scheduled_event_type_to_string(e->type)));
                r |=
                        add(o, "approval",
                            json_object_new_string(drain_approval_to_string(e->approval)));
                r |= add(o, "usec", json_object_new_uint64(e->usec));
        }
        if (r < 0)
                return -ENOMEM;
        text = strdup(json_object_to_json_string_ext(
                root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

/* ---- files ----------------------------------------------------------------------------------- */

int drain_state_load(const char *dir, DrainState *ret, const char **reterr_reason) {
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        int r;

        *reterr_reason = NULL;
        r = state_file_read(dir, DRAIN_STATE_FILE, DRAIN_STATE_FILE_MAX, &buf, &n);
        if (r == -EFBIG) {
                *reterr_reason = "file too large";
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        return drain_state_parse(buf, n, ret, reterr_reason);
}

int drain_state_save(const char *dir, const DrainState *s) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = drain_state_format(s, &text);
        if (r < 0)
                return r;
        return state_file_write(dir, DRAIN_STATE_FILE, text);
}

void drain_read_boot_id(char buf[static DRAIN_BOOT_ID_MAX]) {
        _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
        ssize_t n;

        buf[0] = '\0';
        if (fd < 0)
                return;
        n = read(fd, buf, DRAIN_BOOT_ID_MAX - 1);
        if (n <= 0) {
                buf[0] = '\0';
                return;
        }
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
}
