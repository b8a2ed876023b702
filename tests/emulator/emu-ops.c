/* SPDX-License-Identifier: MIT */
#include "emu-ops.h"

#include <string.h>
#include <strings.h>

#include "macro.h"

static const char *const op_names[_EMU_OP_MAX] = {
        [EMU_OP_LIST_SHARES] = "ListShares",
        [EMU_OP_CREATE_SHARE] = "CreateShare",
        [EMU_OP_GET_SHARE_PROPERTIES] = "GetShareProperties",
        [EMU_OP_SET_SHARE_PROPERTIES] = "SetShareProperties",
        [EMU_OP_GET_SHARE_STATS] = "GetShareStats",
        [EMU_OP_DELETE_SHARE] = "DeleteShare",
        [EMU_OP_CREATE_DIRECTORY] = "CreateDirectory",
        [EMU_OP_GET_DIRECTORY_PROPERTIES] = "GetDirectoryProperties",
        [EMU_OP_SET_DIRECTORY_PROPERTIES] = "SetDirectoryProperties",
        [EMU_OP_SET_DIRECTORY_METADATA] = "SetDirectoryMetadata",
        [EMU_OP_DELETE_DIRECTORY] = "DeleteDirectory",
        [EMU_OP_LIST_DIRECTORIES_AND_FILES] = "ListDirectoriesAndFiles",
        [EMU_OP_RENAME_DIRECTORY] = "RenameDirectory",
        [EMU_OP_CREATE_FILE] = "CreateFile",
        [EMU_OP_GET_FILE] = "GetFile",
        [EMU_OP_GET_FILE_PROPERTIES] = "GetFileProperties",
        [EMU_OP_SET_FILE_PROPERTIES] = "SetFileProperties",
        [EMU_OP_SET_FILE_METADATA] = "SetFileMetadata",
        [EMU_OP_DELETE_FILE] = "DeleteFile",
        [EMU_OP_PUT_RANGE] = "PutRange",
        [EMU_OP_LIST_RANGES] = "ListRanges",
        [EMU_OP_LEASE_FILE] = "LeaseFile",
        [EMU_OP_RENAME_FILE] = "RenameFile",
        [EMU_OP_IMDS_INSTANCE] = "ImdsInstance",
        [EMU_OP_IMDS_SCHEDULED_EVENTS] = "ImdsScheduledEvents",
        [EMU_OP_IMDS_APPROVE_EVENTS] = "ImdsApproveEvents",
        [EMU_OP_IMDS_TOKEN] = "ImdsToken",
        [EMU_OP_ADMIN] = "Admin",
};

const char *emu_op_to_string(EmuOp op) {
        if (op < 0 || op >= _EMU_OP_MAX)
                return NULL;
        return op_names[op];
}

EmuOp emu_op_from_string(const char *s) {
        for (int i = 0; i < _EMU_OP_MAX; i++)
                if (strcasecmp(s, op_names[i]) == 0)
                        return (EmuOp)i;
        return _EMU_OP_INVALID;
}

static bool is(const char *value, const char *want) {
        return value && strcmp(value, want) == 0;
}

EmuOp emu_op_classify_files(
        const char *method, const char *restype, const char *comp, unsigned n_path_segments) {
        bool get = streq(method, "GET"), head = streq(method, "HEAD"), put = streq(method, "PUT"),
             del = streq(method, "DELETE");

        if (n_path_segments == 0)
                return (get && is(comp, "list") && !restype) ? EMU_OP_LIST_SHARES : _EMU_OP_INVALID;

        if (is(restype, "share")) {
                if (n_path_segments != 1)
                        return _EMU_OP_INVALID;
                if (put && !comp)
                        return EMU_OP_CREATE_SHARE;
                if (put && is(comp, "properties"))
                        return EMU_OP_SET_SHARE_PROPERTIES;
                if ((get || head) && !comp)
                        return EMU_OP_GET_SHARE_PROPERTIES;
                if (get && is(comp, "stats"))
                        return EMU_OP_GET_SHARE_STATS;
                if (del && !comp)
                        return EMU_OP_DELETE_SHARE;
                return _EMU_OP_INVALID;
        }

        if (is(restype, "directory")) {
                /* The share root is a directory too: /share?restype=directory&comp=list. */
                if (get && is(comp, "list"))
                        return EMU_OP_LIST_DIRECTORIES_AND_FILES;
                if ((get || head) && !comp)
                        return EMU_OP_GET_DIRECTORY_PROPERTIES;
                if (n_path_segments < 2) {
                        if (put && is(comp, "properties"))
                                return EMU_OP_SET_DIRECTORY_PROPERTIES;
                        if (put && is(comp, "metadata"))
                                return EMU_OP_SET_DIRECTORY_METADATA;
                        return _EMU_OP_INVALID;
                }
                if (put && !comp)
                        return EMU_OP_CREATE_DIRECTORY;
                if (put && is(comp, "properties"))
                        return EMU_OP_SET_DIRECTORY_PROPERTIES;
                if (put && is(comp, "metadata"))
                        return EMU_OP_SET_DIRECTORY_METADATA;
                if (put && is(comp, "rename"))
                        return EMU_OP_RENAME_DIRECTORY;
                if (del && !comp)
                        return EMU_OP_DELETE_DIRECTORY;
                return _EMU_OP_INVALID;
        }

        if (restype || n_path_segments < 2)
                return _EMU_OP_INVALID;

        if (put && !comp)
                return EMU_OP_CREATE_FILE;
        if (get && !comp)
                return EMU_OP_GET_FILE;
        if (head && !comp)
                return EMU_OP_GET_FILE_PROPERTIES;
        if (put && is(comp, "properties"))
                return EMU_OP_SET_FILE_PROPERTIES;
        if (put && is(comp, "metadata"))
                return EMU_OP_SET_FILE_METADATA;
        if (del && !comp)
                return EMU_OP_DELETE_FILE;
        if (put && is(comp, "range"))
                return EMU_OP_PUT_RANGE;
        if (get && is(comp, "rangelist"))
                return EMU_OP_LIST_RANGES;
        if (put && is(comp, "lease"))
                return EMU_OP_LEASE_FILE;
        if (put && is(comp, "rename"))
                return EMU_OP_RENAME_FILE;
        return _EMU_OP_INVALID;
}

bool emu_op_is_write(EmuOp op) {
        switch (op) {
        case EMU_OP_CREATE_SHARE:
        case EMU_OP_SET_SHARE_PROPERTIES:
        case EMU_OP_DELETE_SHARE:
        case EMU_OP_CREATE_DIRECTORY:
        case EMU_OP_SET_DIRECTORY_PROPERTIES:
        case EMU_OP_SET_DIRECTORY_METADATA:
        case EMU_OP_DELETE_DIRECTORY:
        case EMU_OP_RENAME_DIRECTORY:
        case EMU_OP_CREATE_FILE:
        case EMU_OP_SET_FILE_PROPERTIES:
        case EMU_OP_SET_FILE_METADATA:
        case EMU_OP_DELETE_FILE:
        case EMU_OP_PUT_RANGE:
        case EMU_OP_LEASE_FILE:
        case EMU_OP_RENAME_FILE:
                return true;
        default:
                return false;
        }
}
