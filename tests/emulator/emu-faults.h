/* SPDX-License-Identifier: MIT */
#pragma once

/* Fault injection: a set of rules, each "for these operations, with this probability, do this".
 * Parsed from --faults or replaced at run time through the admin API; decided per request.
 *
 * Grammar (also in azfiles-emu(1)); spaces around tokens are ignored:
 *
 *   SPEC  := RULE { ';' RULE }
 *   RULE  := [ 'op=' OP { '+' OP } ':' ] ITEM { ',' ITEM }
 *   OP    := an operation name as in the counters ("PutRange", case-insensitive), or the groups
 *            "write" (operations that change the share), "imds" (metadata service), "files"
 *   ITEM  := KIND [ '=' PROB ]          KIND: 503|busy, 500|internal, reset, truncate,
 *                                       stale-marker; PROB in [0, 1], default 1
 *          | 'latency=' DUR [ '~' DUR ]  added delay; '~J' adds a uniform 0..J on top
 *          | 'answer-latency=' DUR       the operation is carried out at once, its answer is
 *                                        delayed by DUR (a request in flight that the share
 *                                        has already done)
 *          | 'retry-after=' SECONDS      Retry-After of the 503 (default 1)
 *          | 'every=' N                  the rule acts only on every Nth request it matches
 *          | 'count=' N                  the rule acts at most N times, then is spent
 *          | 'seed=' N                   PRNG seed for the whole spec (at most once)
 *   DUR   := N [ 'ms' | 's' ]           milliseconds when no unit; at most 60 s
 *
 * A rule without op= matches every operation (the admin API is never faulted). Per request,
 * the rules that match its operation are visited in order; each one counts the match, then
 * (if every=/count= let it act) adds its latencies and, unless an earlier rule already chose a
 * fault, draws one: the kinds' probabilities are cumulative (their sum must be <= 1). The first
 * rule that draws a fault decides the kind; latencies of all acting rules add up. A rule
 * "acts" when it added a latency or chose a fault; count= counts those.
 *
 * Decisions draw from one PRNG per rule set (splitmix64, seeded by seed= or at random), under a
 * mutex, so a seeded spec replayed by a client that sends requests one at a time gives the same
 * faults in the same places. Thread-safe: a rwlock guards the rule set pointer (replaced by
 * emu_faults_set()), a mutex inside the set guards its counters and PRNG; order rwlock, then
 * mutex. */

#include <stdbool.h>

#include "emu-ops.h"

typedef struct EmuFaults EmuFaults;

typedef enum EmuFaultKind {
        EMU_FAULT_NONE,
        EMU_FAULT_BUSY,     /* 503 ServerBusy with Retry-After */
        EMU_FAULT_INTERNAL, /* 500 InternalError (OperationTimedOut) */
        EMU_FAULT_RESET,    /* TCP reset instead of a response */
        EMU_FAULT_TRUNCATE, /* the real response, body cut short, then the connection closed */
        /* List Directories and Files only (no effect on other operations): a page without
         * entries whose NextMarker is the request's own marker ("stale" without one), as a
         * broken or hostile server would answer. */
        EMU_FAULT_STALE_MARKER,
        _EMU_FAULT_KIND_MAX,
        _EMU_FAULT_KIND_INVALID = -1,
} EmuFaultKind;

typedef struct EmuFaultDecision {
        EmuFaultKind kind;
        unsigned latency_ms;        /* added before the request is carried out; 0 for none */
        unsigned answer_latency_ms; /* added after it was carried out, before its answer */
        unsigned retry_after_s;     /* for EMU_FAULT_BUSY */
} EmuFaultDecision;

/* spec may be NULL or "" (no faults). On a syntax error returns -EINVAL and *reterr names the
 * offending part (caller frees). */
int emu_faults_new(const char *spec, EmuFaults **ret, char **reterr);
EmuFaults *emu_faults_free(EmuFaults *f);
/* Atomically replaces the rules; on error the old rules stay. */
int emu_faults_set(EmuFaults *f, const char *spec, char **reterr);
/* The current spec, normalised, with the effective seed (caller frees; NULL on OOM). */
char *emu_faults_describe(EmuFaults *f);

EmuFaultDecision emu_faults_decide(EmuFaults *f, EmuOp op);
