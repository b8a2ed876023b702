/* SPDX-License-Identifier: MIT */
#pragma once

/* The operations the emulator knows, classified from method + query (+ a header or two) alone, so
 * that counters, faults and dispatch share one name per operation. Pure; no I/O. */

#include <errno.h>
#include <stdbool.h>

typedef enum EmuOp {
        /* File REST API */
        EMU_OP_LIST_SHARES,
        EMU_OP_CREATE_SHARE,
        EMU_OP_GET_SHARE_PROPERTIES,
        EMU_OP_SET_SHARE_PROPERTIES,
        EMU_OP_GET_SHARE_STATS,
        EMU_OP_DELETE_SHARE,
        EMU_OP_CREATE_DIRECTORY,
        EMU_OP_GET_DIRECTORY_PROPERTIES,
        EMU_OP_SET_DIRECTORY_PROPERTIES,
        EMU_OP_SET_DIRECTORY_METADATA,
        EMU_OP_DELETE_DIRECTORY,
        EMU_OP_LIST_DIRECTORIES_AND_FILES,
        EMU_OP_RENAME_DIRECTORY,
        EMU_OP_CREATE_FILE,
        EMU_OP_GET_FILE,
        EMU_OP_GET_FILE_PROPERTIES,
        EMU_OP_SET_FILE_PROPERTIES,
        EMU_OP_SET_FILE_METADATA,
        EMU_OP_DELETE_FILE,
        EMU_OP_PUT_RANGE,
        EMU_OP_LIST_RANGES,
        EMU_OP_LEASE_FILE,
        EMU_OP_RENAME_FILE,
        /* Instance Metadata Service */
        EMU_OP_IMDS_INSTANCE,
        EMU_OP_IMDS_SCHEDULED_EVENTS,
        EMU_OP_IMDS_APPROVE_EVENTS,
        EMU_OP_IMDS_TOKEN,
        /* the emulator's own admin API */
        EMU_OP_ADMIN,
        _EMU_OP_MAX,
        _EMU_OP_INVALID = -EINVAL,
} EmuOp;

/* "PutRange", "GetFile", ...: the names used in counters and in --faults op=NAME. */
const char *emu_op_to_string(EmuOp op);
EmuOp emu_op_from_string(const char *s);

/* Classifies a File REST request. restype and comp are the decoded query values or NULL;
 * n_path_segments counts the decoded segments after the account (0 = account root,
 * 1 = share, more = directory or file). Returns _EMU_OP_INVALID for combinations the service
 * does not have (the caller answers 400 InvalidQueryParameterValue / 405 as appropriate). */
EmuOp emu_op_classify_files(
        const char *method, const char *restype, const char *comp, unsigned n_path_segments);

/* True for operations whose success mutates the share (used by counters and write faults). */
bool emu_op_is_write(EmuOp op);
