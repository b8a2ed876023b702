/* SPDX-License-Identifier: MIT */
#include "health.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <json-c/json.h>

#include "log.h"
#include "message-ids.h"
#include "strbuf.h"
#include "time-util.h"

#define HEALTH_SUMMARY_MAX 1024U
#define HEALTH_METRICS_MAX (4U << 20) /* bytes of /metrics at most */
#define HEALTH_AFTER_MAX 100U

static const char *const health_verdict_table[_HEALTH_VERDICT_MAX] = {
        [HEALTH_OK] = "ok",
        [HEALTH_WARNING] = "warning",
        [HEALTH_UNHEALTHY] = "unhealthy",
        [HEALTH_UNKNOWN] = "unknown",
};

const char *health_verdict_to_string(HealthVerdict v) {
        if (v < 0 || v >= _HEALTH_VERDICT_MAX)
                return NULL;
        return health_verdict_table[v];
}

HealthVerdict health_verdict_from_string(const char *s) {
        for (int i = 0; s && i < _HEALTH_VERDICT_MAX; i++)
                if (streq(s, health_verdict_table[i]))
                        return (HealthVerdict)i;
        return _HEALTH_VERDICT_INVALID;
}

struct HealthSnapshot {
        unsigned refcount; /* atomic */
        bool healthy;
        char *health_json;
        size_t health_json_len;
        char *metrics;
        size_t metrics_len;
        char *status_json;
        size_t status_json_len;
};

struct Health {
        HealthEntry *entries; /* grouped by source, sources in order of first report */
        size_t n_entries;
        char sources[HEALTH_SOURCES_MAX][HEALTH_SOURCE_MAX];
        size_t n_sources;
        unsigned unhealthy_after;
        unsigned healthy_after;
        bool draining;
        HealthVerdict overall;
        char summary[HEALTH_SUMMARY_MAX];
        HealthChangeCallback cb;
        void *userdata;

        pthread_mutex_t lock;
        HealthSnapshot *snapshot; /* protected by lock */
};

/* ---- checks --------------------------------------------------------------------------------- */

static void copy_text(char *dst, size_t size, const char *src) {
        size_t w = 0;

        for (const char *p = src ? src : ""; *p && w + 1 < size; p++)
                dst[w++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
        dst[w] = '\0';
}

HealthCheck *
health_check_init(HealthCheck *c, const char *name, const char *subject, HealthVerdict verdict) {
        *c = (HealthCheck){.verdict = verdict};
        copy_text(c->name, sizeof(c->name), name);
        copy_text(c->subject, sizeof(c->subject), subject);
        return c;
}

void health_check_set_message(HealthCheck *c, const char *format, ...) {
        char buf[HEALTH_MESSAGE_MAX];
        va_list ap;

        va_start(ap, format);
        (void)vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        copy_text(c->message, sizeof(c->message), buf);
}

static bool valid_identifier(const char *s, size_t max, bool allow_dash) {
        size_t n = strnlen(s, max);

        if (n == 0 || n >= max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
                      (allow_dash && s[i] == '-')))
                        return false;
        return true;
}

/* ---- hysteresis ----------------------------------------------------------------------------- */

static int verdict_rank(HealthVerdict v) {
        switch (v) {
        case HEALTH_OK:
                return 0;
        case HEALTH_WARNING:
                return 1;
        case HEALTH_UNKNOWN: /* losing sight of a check counts as getting worse */
                return 2;
        default:
                return 3;
        }
}

HealthVerdict health_hysteresis_step(
        HealthVerdict reported,
        HealthVerdict raw,
        unsigned streak,
        unsigned unhealthy_after,
        unsigned healthy_after) {
        if (raw == reported)
                return reported;
        if (reported == HEALTH_UNKNOWN && raw != HEALTH_UNKNOWN)
                return raw; /* a first (or regained) measurement counts at once */
        if (verdict_rank(raw) > verdict_rank(reported))
                return streak >= MAX(unhealthy_after, 1U) ? raw : reported;
        return streak >= MAX(healthy_after, 1U) ? raw : reported;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static HealthSnapshot *health_snapshot_ref(HealthSnapshot *s) {
        if (s)
                (void)__atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED);
        return s;
}

HealthSnapshot *health_snapshot_release(HealthSnapshot *s) {
        if (!s || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0)
                return NULL;
        free(s->health_json);
        free(s->metrics);
        free(s->status_json);
        free(s);
        return NULL;
}

static int health_publish(Health *h);

int health_new(Health **ret) {
        _cleanup_(health_freep) Health *h = NULL;
        int r;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        r = -pthread_mutex_init(&h->lock, NULL);
        if (r < 0) {
                free(TAKE_PTR(h));
                return r;
        }
        h->unhealthy_after = h->healthy_after = HEALTH_AFTER_DEFAULT;
        h->overall = HEALTH_OK;
        (void)snprintf(h->summary, sizeof(h->summary), "healthy");
        r = health_publish(h);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

Health *health_free(Health *h) {
        if (!h)
                return NULL;
        health_snapshot_release(h->snapshot);
        (void)pthread_mutex_destroy(&h->lock);
        free(h->entries);
        free(h);
        return NULL;
}

void health_set_change_callback(Health *h, HealthChangeCallback cb, void *userdata) {
        h->cb = cb;
        h->userdata = userdata;
}

void health_set_hysteresis(Health *h, unsigned unhealthy_after, unsigned healthy_after) {
        h->unhealthy_after = CLAMP(unhealthy_after, 1U, HEALTH_AFTER_MAX);
        h->healthy_after = CLAMP(healthy_after, 1U, HEALTH_AFTER_MAX);
}

/* ---- reporting ------------------------------------------------------------------------------ */

/* Integral values (bytes, counts) without a fraction; others with full precision. */
static void format_number(char *buf, size_t size, double v) {
        if (isnan(v))
                (void)snprintf(buf, size, "NaN");
        else if (isinf(v))
                (void)snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        else if (v == floor(v) && fabs(v) < 9007199254740992.0)
                (void)snprintf(buf, size, "%.0f", v);
        else
                (void)snprintf(buf, size, "%.17g", v);
}

static void health_update_summary(Health *h) {
        const HealthEntry *first = NULL;
        unsigned n_bad = 0, n_warn = 0;

        for (size_t i = 0; i < h->n_entries; i++) {
                const HealthEntry *e = &h->entries[i];
                if (e->reported == HEALTH_UNHEALTHY) {
                        if (n_bad++ == 0)
                                first = e;
                } else if (e->reported == HEALTH_WARNING)
                        n_warn++;
        }
        if (n_bad == 0)
                for (size_t i = 0; i < h->n_entries && !first; i++)
                        if (h->entries[i].reported == HEALTH_WARNING)
                                first = &h->entries[i];
        if (n_bad > 0)
                (void)snprintf(
                        h->summary, sizeof(h->summary), "%sUNHEALTHY: %s %s: %s%s",
                        h->draining ? "draining, " : "", first->check.name, first->check.subject,
                        first->check.message, n_bad > 1 ? " (and more)" : "");
        else if (n_warn > 0)
                (void)snprintf(
                        h->summary, sizeof(h->summary), "%s, %u warning%s: %s %s: %s",
                        h->draining ? "draining" : "healthy", n_warn, n_warn == 1 ? "" : "s",
                        first->check.name, first->check.subject, first->check.message);
        else
                (void)snprintf(
                        h->summary, sizeof(h->summary), "%s", h->draining ? "draining" : "healthy");
}

static HealthVerdict health_compute_overall(const Health *h) {
        HealthVerdict v = HEALTH_OK;

        for (size_t i = 0; i < h->n_entries; i++) {
                if (h->entries[i].reported == HEALTH_UNHEALTHY)
                        return HEALTH_UNHEALTHY;
                if (h->entries[i].reported == HEALTH_WARNING)
                        v = HEALTH_WARNING;
        }
        return h->draining ? HEALTH_UNHEALTHY : v;
}

static void health_log_check(const HealthEntry *e, HealthVerdict prev) {
        char f_source[64], f_check[96], f_subject[HEALTH_SUBJECT_MAX + 32], f_verdict[64],
                f_prev[64], f_value[96], f_threshold[96], f_unit[64], value[40], threshold[40];
        const HealthCheck *c = &e->check;
        int level = e->reported == HEALTH_OK        ? LOG_INFO
                    : e->reported == HEALTH_WARNING ? LOG_WARNING
                    : e->reported == HEALTH_UNKNOWN ? LOG_NOTICE
                                                    : LOG_ERR;

        format_number(value, sizeof(value), c->value);
        format_number(
                threshold, sizeof(threshold),
                e->reported == HEALTH_WARNING ? c->threshold_warning : c->threshold_unhealthy);
        (void)snprintf(f_source, sizeof(f_source), "POOLAGENT_HEALTH_SOURCE=%s", e->source);
        (void)snprintf(f_check, sizeof(f_check), "POOLAGENT_HEALTH_CHECK=%s", c->name);
        (void)snprintf(f_subject, sizeof(f_subject), "POOLAGENT_HEALTH_SUBJECT=%s", c->subject);
        (void)snprintf(
                f_verdict, sizeof(f_verdict), "POOLAGENT_HEALTH_VERDICT=%s",
                health_verdict_to_string(e->reported));
        (void)snprintf(
                f_prev, sizeof(f_prev), "POOLAGENT_HEALTH_PREVIOUS_VERDICT=%s",
                health_verdict_to_string(prev));
        (void)snprintf(
                f_value, sizeof(f_value), "POOLAGENT_HEALTH_VALUE=%s", c->has_value ? value : "");
        (void)snprintf(
                f_threshold, sizeof(f_threshold), "POOLAGENT_HEALTH_THRESHOLD=%s",
                c->has_threshold ? threshold : "");
        (void)snprintf(f_unit, sizeof(f_unit), "POOLAGENT_HEALTH_UNIT=%s", c->unit);
        (void)log_struct(
                level, 0,
                ((const char *[]){
                        e->reported == HEALTH_OK ? POOLAGENT_MESSAGE_HEALTH_CHECK_OK
                                                 : POOLAGENT_MESSAGE_HEALTH_CHECK_FAILED,
                        f_source, f_check, f_subject, f_verdict, f_prev, f_value, f_threshold,
                        f_unit, NULL}),
                "Health check %s%s%s: %s (was %s): %s%s%s%s%s%s%s", c->name,
                c->subject[0] ? " on " : "", c->subject, health_verdict_to_string(e->reported),
                health_verdict_to_string(prev), c->message, c->has_value ? "; value " : "",
                c->has_value ? value : "", c->has_value ? " " : "", c->has_value ? c->unit : "",
                c->has_threshold ? ", threshold " : "", c->has_threshold ? threshold : "");
}

/* Returns whether the overall verdict changed (then the callback ran). */
static bool health_update_overall(Health *h) {
        HealthVerdict prev = h->overall, now = health_compute_overall(h);
        bool was_healthy = prev != HEALTH_UNHEALTHY;

        health_update_summary(h);
        if (now == prev)
                return false;
        h->overall = now;
        if (was_healthy != (now != HEALTH_UNHEALTHY))
                (void)log_struct(
                        now == HEALTH_UNHEALTHY ? LOG_WARNING : LOG_INFO, 0,
                        ((const char *[]){
                                now == HEALTH_UNHEALTHY ? POOLAGENT_MESSAGE_HEALTH_UNHEALTHY
                                                        : POOLAGENT_MESSAGE_HEALTH_HEALTHY,
                                NULL}),
                        "This VM is now %s for the load balancer: %s",
                        now == HEALTH_UNHEALTHY ? "UNHEALTHY" : "healthy", h->summary);
        if (h->cb)
                h->cb(h, now, h->userdata);
        return true;
}

static json_object *json_number(const HealthCheck *c, bool has, double v) {
        if (!has)
                return NULL;
        if (v == floor(v) && fabs(v) < 9007199254740992.0)
                return json_object_new_int64((int64_t)v);
        return json_object_new_double(v);
}

static int json_put(json_object *o, const char *key, json_object *v, bool may_be_null) {
        if (!v && !may_be_null)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static json_object *json_string_or_null(const char *s) {
        return s && *s ? json_object_new_string(s) : NULL;
}

int health_status_json(const Health *h, json_object *o) {
        json_object *checks = json_object_new_array();
        int r = 0;

        r |= json_put(
                o, "verdict", json_object_new_string(health_verdict_to_string(h->overall)), false);
        r |= json_put(o, "healthy", json_object_new_boolean(health_is_healthy(h)), false);
        r |= json_put(o, "draining", json_object_new_boolean(h->draining), false);
        r |= json_put(o, "summary", json_object_new_string(h->summary), false);
        r |= json_put(o, "checks", checks, false);
        for (size_t i = 0; checks && i < h->n_entries; i++) {
                const HealthEntry *e = &h->entries[i];
                const HealthCheck *c = &e->check;
                json_object *j = json_object_new_object();

                if (!j || json_object_array_add(checks, j) < 0) {
                        json_object_put(j);
                        return -ENOMEM;
                }
                r |= json_put(j, "source", json_object_new_string(e->source), false);
                r |= json_put(j, "name", json_object_new_string(c->name), false);
                r |= json_put(j, "subject", json_object_new_string(c->subject), false);
                r |= json_put(j, "signal", json_string_or_null(c->signal), true);
                r |= json_put(j, "value", json_number(c, c->has_value, c->value), true);
                r |= json_put(j, "unit", json_string_or_null(c->unit), true);
                r |= json_put(
                        j, "threshold_warning",
                        json_number(c, c->has_threshold, c->threshold_warning), true);
                r |= json_put(
                        j, "threshold_unhealthy",
                        json_number(c, c->has_threshold, c->threshold_unhealthy), true);
                r |= json_put(
                        j, "verdict", json_object_new_string(health_verdict_to_string(e->reported)),
                        false);
                r |= json_put(
                        j, "raw_verdict",
                        json_object_new_string(health_verdict_to_string(c->verdict)), false);
                r |= json_put(j, "streak", json_object_new_int64(e->streak), false);
                r |= json_put(j, "since_usec", json_object_new_uint64(e->since_usec), false);
                r |= json_put(j, "message", json_object_new_string(c->message), false);
        }
        return r < 0 ? -ENOMEM : 0;
}

/* Prometheus label values: backslash, double quote and newline escaped. */
static int append_label_value(StrBuf *b, const char *s) {
        int r = 0;

        for (; *s && r >= 0; s++) {
                if (*s == '\\')
                        r = strbuf_append(b, "\\\\");
                else if (*s == '"')
                        r = strbuf_append(b, "\\\"");
                else if (*s == '\n')
                        r = strbuf_append(b, "\\n");
                else
                        r = strbuf_append_char(b, *s);
        }
        return r;
}

static int append_gauge(StrBuf *b, const char *name, const char *help, double v) {
        char num[40];

        format_number(num, sizeof(num), v);
        return strbuf_appendf(
                b, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, num);
}

int health_format_metrics(
        const HealthEntry *entries, size_t n, bool healthy, bool draining, char **ret) {
        StrBuf b = {.cap = HEALTH_METRICS_MAX};
        char num[40];
        int r;

        r = append_gauge(&b, "poolagent_up", "Whether poolagentd is running (always 1).", 1);
        if (r >= 0)
                r = append_gauge(
                        &b, "poolagent_healthy",
                        "Whether this VM takes new sessions (1) or is unhealthy or draining (0).",
                        healthy ? 1 : 0);
        if (r >= 0)
                r = append_gauge(
                        &b, "poolagent_draining", "Whether this VM is draining (1) or not (0).",
                        draining ? 1 : 0);
        if (r >= 0 && n > 0)
                r = strbuf_append(
                        &b,
                        "# HELP poolagent_health_check_status Reported verdict of each health check: 0 ok, 1 warning, 2 unhealthy, 3 unknown.\n"
                        "# TYPE poolagent_health_check_status gauge\n");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = strbuf_append(&b, "poolagent_health_check_status{source=\"");
                if (r >= 0)
                        r = append_label_value(&b, entries[i].source);
                if (r >= 0)
                        r = strbuf_append(&b, "\",check=\"");
                if (r >= 0)
                        r = append_label_value(&b, entries[i].check.name);
                if (r >= 0)
                        r = strbuf_append(&b, "\",subject=\"");
                if (r >= 0)
                        r = append_label_value(&b, entries[i].check.subject);
                if (r >= 0)
                        r = strbuf_appendf(&b, "\"} %d\n", (int)entries[i].reported);
        }
        /* One gauge family per check name with a value; its samples together. */
        for (size_t i = 0; r >= 0 && i < n; i++) {
                const HealthCheck *c = &entries[i].check;
                bool seen = false;

                if (!c->has_value)
                        continue;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = entries[j].check.has_value && streq(entries[j].check.name, c->name);
                if (seen)
                        continue;
                r = strbuf_appendf(
                        &b,
                        "# HELP poolagent_%s Health check value %s%s%s%s.\n# TYPE poolagent_%s gauge\n",
                        c->name, c->name, c->unit[0] ? " (" : "", c->unit, c->unit[0] ? ")" : "",
                        c->name);
                for (size_t j = i; r >= 0 && j < n; j++) {
                        const HealthCheck *d = &entries[j].check;
                        if (!d->has_value || !streq(d->name, c->name))
                                continue;
                        format_number(num, sizeof(num), d->value);
                        r = strbuf_appendf(&b, "poolagent_%s{subject=\"", d->name);
                        if (r >= 0)
                                r = append_label_value(&b, d->subject);
                        if (r >= 0)
                                r = strbuf_appendf(&b, "\"} %s\n", num);
                }
        }
        if (r >= 0)
                r = strbuf_steal(&b, ret);
        strbuf_done(&b);
        return r;
}

/* Renders the three bodies and swaps them in for readers. */
static int health_publish(Health *h) {
        _cleanup_(health_snapshot_releasep) HealthSnapshot *s = NULL;
        json_object *o = NULL;
        const char *text;
        bool healthy = health_is_healthy(h);
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->refcount = 1;
        s->healthy = healthy;
        s->health_json =
                strdup(healthy ? "{\"ApplicationHealthState\":\"Healthy\"}\n"
                               : "{\"ApplicationHealthState\":\"Unhealthy\"}\n");
        if (!s->health_json)
                return -ENOMEM;
        s->health_json_len = strlen(s->health_json);
        r = health_format_metrics(h->entries, h->n_entries, healthy, h->draining, &s->metrics);
        if (r < 0)
                return r;
        s->metrics_len = strlen(s->metrics);

        o = json_object_new_object();
        r = o ? health_status_json(h, o) : -ENOMEM;
        text = r >= 0 ? json_object_to_json_string_ext(
                                o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE)
                      : NULL;
        if (text && asprintf(&s->status_json, "%s\n", text) < 0)
                s->status_json = NULL;
        json_object_put(o);
        if (!s->status_json)
                return r < 0 ? r : -ENOMEM;
        s->status_json_len = strlen(s->status_json);

        (void)pthread_mutex_lock(&h->lock);
        health_snapshot_release(h->snapshot);
        h->snapshot = TAKE_PTR(s);
        (void)pthread_mutex_unlock(&h->lock);
        return 0;
}

static ssize_t health_find_source(const Health *h, const char *source) {
        for (size_t i = 0; i < h->n_sources; i++)
                if (streq(h->sources[i], source))
                        return (ssize_t)i;
        return -1;
}

static const HealthEntry *
health_find_entry(const Health *h, const char *source, const HealthCheck *c) {
        for (size_t i = 0; i < h->n_entries; i++) {
                const HealthEntry *e = &h->entries[i];
                if (streq(e->source, source) && streq(e->check.name, c->name) &&
                    streq(e->check.subject, c->subject))
                        return e;
        }
        return NULL;
}

static size_t health_source_rank(const Health *h, const char *source) {
        ssize_t i = health_find_source(h, source);
        return i < 0 ? SIZE_MAX : (size_t)i;
}

int health_set_checks(Health *h, const char *source, const HealthCheck *checks, size_t n) {
        _cleanup_free_ HealthEntry *next = NULL;
        uint64_t now = (uint64_t)now_realtime_ns() / 1000;
        size_t m = 0, rank;
        ssize_t si;

        if (!valid_identifier(source, HEALTH_SOURCE_MAX, true))
                return -EINVAL;
        if (n > HEALTH_CHECKS_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n; i++)
                if (!valid_identifier(checks[i].name, HEALTH_NAME_MAX, false) ||
                    checks[i].verdict < 0 || checks[i].verdict >= _HEALTH_VERDICT_MAX)
                        return -EINVAL;
        si = health_find_source(h, source);
        if (si < 0) {
                if (h->n_sources >= HEALTH_SOURCES_MAX)
                        return -E2BIG;
                copy_text(h->sources[h->n_sources], HEALTH_SOURCE_MAX, source);
                si = (ssize_t)h->n_sources++;
        }
        rank = (size_t)si;

        next = calloc(h->n_entries + n + 1, sizeof(HealthEntry));
        if (!next)
                return -ENOMEM;
        /* Sources before this one, then its new checks, then the sources after it. */
        for (size_t i = 0; i < h->n_entries; i++)
                if (health_source_rank(h, h->entries[i].source) < rank)
                        next[m++] = h->entries[i];
        for (size_t i = 0; i < n; i++) {
                const HealthEntry *old = health_find_entry(h, source, &checks[i]);
                HealthEntry *e = &next[m++];
                HealthVerdict prev;

                copy_text(e->source, sizeof(e->source), source);
                e->check = checks[i];
                /* Terminate every string a source may have filled to the brim. */
                e->check.name[HEALTH_NAME_MAX - 1] = e->check.signal[HEALTH_NAME_MAX - 1] = '\0';
                e->check.subject[HEALTH_SUBJECT_MAX - 1] = '\0';
                e->check.unit[HEALTH_UNIT_MAX - 1] = '\0';
                e->check.message[HEALTH_MESSAGE_MAX - 1] = '\0';
                if (!old) {
                        e->reported = e->check.verdict;
                        e->streak = 1;
                        e->since_usec = now;
                        if (e->reported == HEALTH_WARNING || e->reported == HEALTH_UNHEALTHY)
                                health_log_check(e, HEALTH_UNKNOWN);
                        continue;
                }
                prev = old->reported;
                e->streak = old->check.verdict == e->check.verdict ? old->streak + 1 : 1;
                e->reported = health_hysteresis_step(
                        prev, e->check.verdict, e->streak, h->unhealthy_after, h->healthy_after);
                e->since_usec = e->reported == prev ? old->since_usec : now;
                if (e->reported != prev)
                        health_log_check(e, prev);
        }
        for (size_t i = 0; i < h->n_entries; i++)
                if (health_source_rank(h, h->entries[i].source) > rank)
                        next[m++] = h->entries[i];

        free(h->entries);
        h->entries = TAKE_PTR(next);
        h->n_entries = m;
        (void)health_update_overall(h);
        return health_publish(h);
}

void health_set_draining(Health *h, bool draining) {
        bool changed;

        if (h->draining == draining)
                return;
        h->draining = draining;
        log_info("Health: %s", draining ? "draining, reporting not healthy" : "no longer draining");
        changed = health_update_overall(h);
        (void)health_publish(h);
        if (!changed && h->cb)
                h->cb(h, h->overall, h->userdata);
}

bool health_is_draining(const Health *h) {
        return h->draining;
}

HealthVerdict health_overall(const Health *h) {
        return h->overall;
}

bool health_is_healthy(const Health *h) {
        return !h->draining && h->overall != HEALTH_UNHEALTHY;
}

size_t health_n_entries(const Health *h) {
        return h->n_entries;
}

const HealthEntry *health_get_entry(const Health *h, size_t i) {
        return i < h->n_entries ? &h->entries[i] : NULL;
}

const char *health_summary(const Health *h) {
        return h->summary;
}

/* ---- snapshot ------------------------------------------------------------------------------- */

HealthSnapshot *health_snapshot_acquire(Health *h) {
        HealthSnapshot *s;

        (void)pthread_mutex_lock(&h->lock);
        s = health_snapshot_ref(h->snapshot);
        (void)pthread_mutex_unlock(&h->lock);
        return s;
}

bool health_snapshot_healthy(const HealthSnapshot *s) {
        return s->healthy;
}

const char *health_snapshot_health_json(const HealthSnapshot *s, size_t *ret_len) {
        *ret_len = s->health_json_len;
        return s->health_json;
}

const char *health_snapshot_metrics(const HealthSnapshot *s, size_t *ret_len) {
        *ret_len = s->metrics_len;
        return s->metrics;
}

const char *health_snapshot_status_json(const HealthSnapshot *s, size_t *ret_len) {
        *ret_len = s->status_json_len;
        return s->status_json;
}
