/* SPDX-License-Identifier: MIT */
#pragma once

/* Fault injection: a set of rules, each "for these operations, with this probability, do this".
 * Parsed from --faults or replaced at run time through the admin API; decided per request.
 * Thread-safe (a rwlock around the rule set; decisions use a per-thread PRNG seeded from the
 * rule set's seed, so a seeded run is reproducible per connection order). */

#include <stdbool.h>

#include "emu-ops.h"

typedef struct EmuFaults EmuFaults;

typedef enum EmuFaultKind {
        EMU_FAULT_NONE,
        EMU_FAULT_BUSY,     /* 503 ServerBusy with Retry-After */
        EMU_FAULT_INTERNAL, /* 500 InternalError (OperationTimedOut) */
        EMU_FAULT_RESET,    /* TCP reset instead of a response */
        EMU_FAULT_TRUNCATE, /* the real response, body cut short, then the connection closed */
        _EMU_FAULT_KIND_MAX,
        _EMU_FAULT_KIND_INVALID = -1,
} EmuFaultKind;

typedef struct EmuFaultDecision {
        EmuFaultKind kind;
        unsigned latency_ms;    /* added before anything is answered; 0 for none */
        unsigned retry_after_s; /* for EMU_FAULT_BUSY */
} EmuFaultDecision;

/* spec may be NULL or "" (no faults). On a syntax error returns -EINVAL and *reterr names the
 * offending part (caller frees). */
int emu_faults_new(const char *spec, EmuFaults **ret, char **reterr);
EmuFaults *emu_faults_free(EmuFaults *f);
/* Atomically replaces the rules; on error the old rules stay. */
int emu_faults_set(EmuFaults *f, const char *spec, char **reterr);
/* The current spec, normalised (caller frees). */
char *emu_faults_describe(EmuFaults *f);

EmuFaultDecision emu_faults_decide(EmuFaults *f, EmuOp op);
