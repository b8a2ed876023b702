/* SPDX-License-Identifier: MIT */
#pragma once

/* azfilesfs command line: SOURCE, MOUNTPOINT and the -o option list, and the credentials file.
 * Pure apart from fs_credentials_load() (reads one file). Unknown options are errors; generic
 * mount options (ro, nosuid, ...) are passed on to libfuse in fuse_opts, and the ones mount(8)
 * and systemd add for their own use (_netdev, nofail, x-systemd.*, ...) are dropped. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rest-client.h"

#define FS_DEFAULT_CACHE_DIR "/mnt/azfilesfs-cache"
#define FS_DEFAULT_USERS_DIR "Users"
#define FS_PIECE_SIZE (4u * 1024u * 1024u)

typedef struct FsOptions {
        char *source;
        char *mountpoint;
        /* From SOURCE. */
        char *endpoint; /* "https://acct.file.core.windows.net" or "http://h:p/acct" */
        char *account;
        char *share;
        char *subdir; /* "" or "dir/sub", share-relative, no leading or trailing '/' */

        char *credentials;
        uid_t uid;
        gid_t gid;
        mode_t file_mode;
        mode_t dir_mode;
        char *users_dir; /* "" disables the per-user mapping */
        mode_t users_mode;
        char *cache_dir;
        uint64_t cache_size;
        uint64_t max_dirty;
        bool writeback_async;
        uint64_t async_delay_ms;
        double attr_timeout;
        double entry_timeout;
        double dir_timeout;
        char *imds;                /* IMDS endpoint, NULL: the default */
        uint64_t retry_budget_ms;  /* bound of every share request, retries included */
        uint64_t retry_delay_ms;   /* the first retry's backoff; 0: min(budget / 20, 400 ms) */
        unsigned max_requests;     /* parallel HTTP transfers */
        unsigned transfer_threads; /* threads for Get/Put Range bodies (0: the I/O thread) */

        char *fuse_opts; /* generic mount options for libfuse, comma-separated, or NULL */
        bool foreground;
        bool debug;
        bool help;
        bool version;
} FsOptions;

typedef struct FsCredentials {
        RestAuthKind auth;
        uint8_t *key; /* SHARED_KEY, decoded */
        size_t key_size;
        char *sas_token; /* SAS */
        char *client_id; /* BEARER, optional */
} FsCredentials;

void fs_options_init(FsOptions *o);
void fs_options_done(FsOptions *o);
/* argv as main() got it. On error, reterr_msg (caller frees) says what is wrong. */
int fs_options_parse(FsOptions *o, int argc, char *const *argv, char **reterr_msg);
/* SOURCE to endpoint/account/share/subdir. -EINVAL with a message. */
int fs_parse_source(FsOptions *o, const char *source, char **reterr_msg);
/* Parses one "key[=value]" option. 1 when it is ours (and applied), 0 when it is a generic mount
 * option to pass to libfuse (appended to o->fuse_opts), 2 when it is to be ignored, -EINVAL
 * otherwise. */
int fs_options_apply(FsOptions *o, const char *opt, char **reterr_msg);

/* Loads and checks the credentials file: owned by root or by the calling user, no access for
 * group or others, exactly one of account_key / sas_token / managed_identity = yes. */
int fs_credentials_load(const char *path, FsCredentials *ret, char **reterr_msg);
/* Same checks and parsing on text already read (for tests); st_uid/st_mode from fstat(). */
int fs_credentials_parse(
        const char *path,
        const char *text,
        uid_t st_uid,
        mode_t st_mode,
        uid_t caller,
        FsCredentials *ret,
        char **reterr_msg);
void fs_credentials_done(FsCredentials *c);
