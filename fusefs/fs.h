/* SPDX-License-Identifier: MIT */
#pragma once

/* The azfilesfs filesystem: FUSE low-level operations over the File REST client, with the local
 * cache (fs-cache.c) and the flush interface.
 *
 * Threads: FUSE workers run the fs_op_* callbacks; they never wait on the network: they copy what
 * they need, submit to the RestClient and return; the reply comes from the completion callback
 * on the I/O thread, which owns sd_event, the HttpClient (curl multi) and the RestClient.
 * Fs.lock protects the inode table, every Inode and the counters; it is never held across a
 * fuse_reply_*(), and the RestClient never calls back from inside submit. */

#include <stdint.h>

#include "fs-options.h"

struct fuse_lowlevel_ops;
struct fuse_session;
typedef struct Fs Fs;

/* Borrows o and c (they must outlive the Fs). Creates the event loop and clients, not yet the
 * thread. */
int fs_new(const FsOptions *o, const FsCredentials *c, Fs **ret);
/* Stops the I/O thread if it runs, frees everything. NULL-safe. */
Fs *fs_free(Fs *fs);
static inline void fs_freep(Fs **fs) {
        *fs = fs_free(*fs);
}
/* Opens and locks the cache directory, starts the I/O thread, checks that the share answers
 * (-EACCES, -ENOENT...: refuse to mount; transport errors: warn and go on), and uploads dirty data
 * left by an earlier run (bounded). *reterr_msg says what failed. */
int fs_start(Fs *fs, char **reterr_msg);
/* After the session ended: uploads what is still dirty (bounded by the retry budget) and stops
 * the I/O thread. Returns the number of dirty bytes left behind (kept in the cache dir). */
uint64_t fs_stop(Fs *fs);
void fs_set_session(Fs *fs, struct fuse_session *se);
const struct fuse_lowlevel_ops *fs_fuse_ops(void);
