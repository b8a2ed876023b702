/* SPDX-License-Identifier: MIT */
#pragma once

/* Model-based random workload for azfilesfs: a seeded sequence of file system operations
 * (create/open with several flag sets, pwrite at random offsets including across the 4 MiB piece
 * boundary, append, read-verify, truncate/extend, fsync, close, rename including replace and
 * case-only renames, mkdir, rmdir, unlink, chmod, stat, readdir, names with spaces and
 * non-ASCII letters) applied to the mount and to a local reference directory. Every result
 * (return value, errno, bytes read) must be the same on both; whole trees are compared at
 * checkpoints, after every remount, and at the end.
 *
 * The share is case-insensitive and case-preserving: with case_insensitive, names are also tried
 * under other ASCII case, and the reference (a case-sensitive local directory) resolves each
 * component to the entry it already has under another case, as the share does. What the model
 * deliberately leaves out (see fs-model.c): renaming a directory over an existing directory, and
 * operating on a file through a handle after its name was unlinked or replaced (the victim's
 * handles are closed first).
 *
 * The sequence depends only on the seed and the reference, so a failure reproduces with the
 * same seed; the op log (last FS_MODEL_LOG_TAIL ops, default 80, or all with FS_MODEL_LOG=all)
 * goes to stderr with the seed. */

#include <stdbool.h>
#include <stdint.h>

#include "fs-harness.h"

typedef struct FsModelConfig {
        uint64_t seed;
        unsigned ops;
        bool case_insensitive;
        /* Unmount and remount at random points (about one in remount_every ops; 0: never). */
        unsigned remount_every;
        /* Half the remounts are a kill -9 of the daemon instead of an unmount (after every
         * handle is closed): for writeback=async, where closed files may be dirty in the cache
         * only; the restarted mount must upload them and lose nothing. */
        bool crash_remounts;
        unsigned checkpoint_every; /* whole-tree compare; 0: only at the end */
        bool compare_exec_bit;     /* compare the owner x bit (chmod must persist) */
        FsMount *mount;            /* NULL: root is a plain directory (harness self-test) */
        const char *root;          /* the tree under test (the mount point, or a stand-in) */
        const char *ref;           /* the local reference directory (empty at the start) */
        /* Optional hooks (may be NULL): on_op runs before each op (e.g. to change the emulator's
         * faults), before_flush before the final flush (e.g. to stop them). A negative return
         * ends the run with that error. */
        int (*on_op)(void *userdata, unsigned op);
        int (*before_flush)(void *userdata);
        void *userdata;
} FsModelConfig;

/* The mount options the model runs under: writeback=async or the default mode, with the
 * driver's default timeouts. */
const char *fs_model_mount_options(bool async);

/* Runs cfg->ops operations. 0 when every result matched, -EBADMSG with *reterr_msg (caller
 * frees) saying which op diverged and how (the op log is already on stderr), other -errno when
 * the harness itself failed. Closes every handle it opened before returning. */
int fs_model_run(const FsModelConfig *cfg, char **reterr_msg);
