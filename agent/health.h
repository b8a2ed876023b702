/* SPDX-License-Identifier: MIT */
#pragma once

/* The agent's one health state, fed by check sources and read by every report.
 *
 * A source ("disk", "workspace", "units", "gpu", ...) measures on its own schedule and hands its
 * whole current list of checks to health_set_checks(); the list replaces what that source reported
 * before. One call is one cycle of that source. A check is identified by (source, name, subject).
 *
 * Hysteresis: the verdict a source gives (the raw verdict) is not reported at once. A check's
 * reported verdict moves to a worse raw verdict only after it was seen in UnhealthyAfter=
 * consecutive cycles, and back to a better one only after HealthyAfter= consecutive cycles, so a
 * value that wobbles around a threshold does not flap. The first result of a check (reported
 * verdict still unknown) is taken at once. A check missing from a source's new list is dropped.
 *
 * The overall verdict: unhealthy if any reported verdict is unhealthy or the VM is draining;
 * otherwise warning if any is warning; otherwise ok. Unknown checks (no NVML, no bus, no stats
 * xattr) do not make the VM unhealthy; they are shown as unknown.
 *
 * Each change of a reported verdict is logged once with a MESSAGE_ID naming check, subject,
 * value and threshold; each change of the overall verdict too, and calls the change callback.
 *
 * Readers on other threads (the HTTP endpoint) never touch the state: after every change the
 * loop thread renders an immutable snapshot (the /health, /metrics and /status bodies) and
 * publishes it under a mutex; health_snapshot_acquire() hands out a reference.
 *
 * Single-threaded except where noted: all other calls from the thread running the sd-event
 * loop. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define HEALTH_SOURCE_MAX 16U   /* bytes of a source name, with NUL: [a-z0-9_-] */
#define HEALTH_NAME_MAX 48U     /* bytes of a check name, with NUL: [a-z0-9_] */
#define HEALTH_SUBJECT_MAX 256U /* bytes of a subject: "/", "GPU 0 (GPU-uuid)", "ssh.service" */
#define HEALTH_UNIT_MAX 16U     /* "bytes", "ratio", "celsius", "count", "" */
#define HEALTH_MESSAGE_MAX 256U /* one human sentence */
#define HEALTH_CHECKS_MAX 256U  /* per source: more are refused (-E2BIG) */
#define HEALTH_SOURCES_MAX 16U
#define HEALTH_AFTER_DEFAULT 3U /* consecutive cycles before a verdict flips */

typedef struct json_object json_object;
typedef struct Health Health;
typedef struct HealthSnapshot HealthSnapshot;

/* Ordered by severity for HEALTH_OK..HEALTH_UNHEALTHY; unknown is apart. */
typedef enum HealthVerdict {
        HEALTH_OK,
        HEALTH_WARNING,
        HEALTH_UNHEALTHY,
        HEALTH_UNKNOWN, /* could not be measured: not a fault of the VM by itself */
        _HEALTH_VERDICT_MAX,
        _HEALTH_VERDICT_INVALID = -EINVAL,
} HealthVerdict;

const char *health_verdict_to_string(HealthVerdict v); /* "ok", "warning", "unhealthy", "unknown" */
HealthVerdict health_verdict_from_string(const char *s);

/* One check as a source reports it. Plain data (fixed arrays, no pointers): copied in and out.
 * Strings are truncated to their array; name must be [a-z0-9_], non-empty (Prometheus label
 * value and journal field safe); others are free text without control characters. */
typedef struct HealthCheck {
        char name[HEALTH_NAME_MAX];       /* what is checked: "disk_free_bytes", "gpu_xid" */
        char subject[HEALTH_SUBJECT_MAX]; /* which one: a path, a GPU, a unit; may be "" */
        char signal[HEALTH_NAME_MAX];     /* what was read, if more specific: "xid_79"; may be "" */
        bool has_value;                   /* false: no measurement (unknown) */
        double value;                     /* in unit */
        char unit[HEALTH_UNIT_MAX];       /* base units: "bytes", "ratio", "celsius", "count" */
        bool has_threshold;
        double threshold_warning;         /* the warning limit in unit, if has_threshold */
        double threshold_unhealthy;       /* the unhealthy limit in unit, if has_threshold */
        HealthVerdict verdict;            /* the raw verdict of this cycle */
        char message[HEALTH_MESSAGE_MAX]; /* why: "12.1 GiB free, warning below 10 GiB" */
} HealthCheck;

/* Fills in the text fields with snprintf semantics (truncating). Returns c. */
HealthCheck *
health_check_init(HealthCheck *c, const char *name, const char *subject, HealthVerdict verdict);
_printf_(2, 3) void health_check_set_message(HealthCheck *c, const char *format, ...);

/* Called on the loop thread after the overall verdict (or draining) changed. */
typedef void (*HealthChangeCallback)(Health *h, HealthVerdict overall, void *userdata);

int health_new(Health **ret);
/* NULL-safe. Snapshots still referenced by readers stay valid until released. */
Health *health_free(Health *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Health *, health_free);

void health_set_change_callback(Health *h, HealthChangeCallback cb, void *userdata);
/* Hysteresis counts (1..100; 1: no hysteresis). Applied from the next cycle. */
void health_set_hysteresis(Health *h, unsigned unhealthy_after, unsigned healthy_after);

/* Replaces source's checks (source: [a-z0-9_-], copied) with checks[0..n) (copied; checks may
 * be NULL when n == 0, which removes the source's checks). One call is one cycle for hysteresis.
 * Returns 0, -EINVAL (bad source or check name), -E2BIG (n > HEALTH_CHECKS_MAX, or too many
 * sources), -ENOMEM. */
int health_set_checks(Health *h, const char *source, const HealthCheck *checks, size_t n);

/* A draining VM is not healthy for the load balancer, whatever its checks say. */
void health_set_draining(Health *h, bool draining);
bool health_is_draining(const Health *h);

HealthVerdict health_overall(const Health *h);
/* healthy for the load balancer: not draining and overall is ok or warning */
bool health_is_healthy(const Health *h);

/* One check with its state here. */
typedef struct HealthEntry {
        char source[HEALTH_SOURCE_MAX];
        HealthCheck check;      /* as the source last reported it: check.verdict is the raw one */
        HealthVerdict reported; /* after hysteresis: what every report shows */
        unsigned streak;        /* consecutive cycles with the raw verdict check.verdict */
        uint64_t since_usec;    /* realtime of the last change of reported */
} HealthEntry;

/* Every check, in source order then as the source listed them: borrowed, valid until the next
 * health_set_checks(). */
size_t health_n_entries(const Health *h);
const HealthEntry *health_get_entry(const Health *h, size_t i);

/* One line for sd_notify STATUS=: "healthy" or "UNHEALTHY: disk_free_bytes /: 3.2 GiB free"
 * (the first bad check, and how many more). Borrowed, valid until the next change. */
const char *health_summary(const Health *h);

/* Adds "verdict", "healthy", "draining", "checks" (array of objects: source, name, subject,
 * signal, value, unit, threshold_warning, threshold_unhealthy, verdict, raw_verdict, streak,
 * since_usec, message) to o. */
int health_status_json(const Health *h, json_object *o);

/* ---- snapshot (any thread) ------------------------------------------------------------------ */

/* Takes a reference to the latest published snapshot (never NULL once health_new() returned). */
HealthSnapshot *health_snapshot_acquire(Health *h);
HealthSnapshot *health_snapshot_release(HealthSnapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HealthSnapshot *, health_snapshot_release);
bool health_snapshot_healthy(const HealthSnapshot *s);
/* The bodies, NUL-terminated, valid while the reference is held. */
const char *health_snapshot_health_json(const HealthSnapshot *s, size_t *ret_len);
const char *health_snapshot_metrics(const HealthSnapshot *s, size_t *ret_len);
const char *health_snapshot_status_json(const HealthSnapshot *s, size_t *ret_len);

/* ---- pure helpers (tests) ------------------------------------------------------------------- */

/* The hysteresis step of one check: given the reported verdict, the raw one, and how many
 * consecutive cycles (including this one) the raw verdict has been seen, returns the new
 * reported verdict. */
HealthVerdict health_hysteresis_step(
        HealthVerdict reported,
        HealthVerdict raw,
        unsigned streak,
        unsigned unhealthy_after,
        unsigned healthy_after);

/* Renders Prometheus text format 0.0.4 for the entries into a malloc'ed string: poolagent_up,
 * poolagent_healthy, poolagent_draining, poolagent_health_check_status{source,check,subject}
 * (0 ok, 1 warning, 2 unhealthy, 3 unknown; the reported verdict) and, per check name with a
 * value, a gauge poolagent_<name>{subject} (names carry their unit: disk_free_bytes). */
int health_format_metrics(
        const HealthEntry *entries, size_t n, bool healthy, bool draining, char **ret);
