/* SPDX-License-Identifier: MIT */
#include "emu-faults.h"

#include <stdlib.h>
#include <string.h>

struct EmuFaults {
        int unused;
};

int emu_faults_new(const char *spec, EmuFaults **ret, char **reterr) {
        (void)spec;
        (void)reterr;
        *ret = calloc(1, sizeof(EmuFaults));
        return *ret ? 0 : -ENOMEM;
}

EmuFaults *emu_faults_free(EmuFaults *f) {
        free(f);
        return NULL;
}

int emu_faults_set(EmuFaults *f, const char *spec, char **reterr) {
        (void)f;
        (void)spec;
        (void)reterr;
        return -EOPNOTSUPP;
}

char *emu_faults_describe(EmuFaults *f) {
        (void)f;
        return strdup("");
}

EmuFaultDecision emu_faults_decide(EmuFaults *f, EmuOp op) {
        (void)f;
        (void)op;
        return (EmuFaultDecision){.kind = EMU_FAULT_NONE};
}
