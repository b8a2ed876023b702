/* SPDX-License-Identifier: MIT */
/* azfilesfs: mounts an Azure Files share over the File REST API. See azfilesfs(8). */
#define FUSE_USE_VERSION 312

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fuse_lowlevel.h>

#include "fs-message-ids.h"
#include "fs-options.h"
#include "fs.h"
#include "log.h"

static void help(void) {
        printf("Usage: azfilesfs SOURCE MOUNTPOINT [-o OPTION[,OPTION...]] [-f] [-d]\n"
               "       azfilesfs --help | --version\n\n"
               "SOURCE: https://ACCOUNT.file.core.windows.net/SHARE[/DIR]\n"
               "        or path-style http://HOST:PORT/ACCOUNT/SHARE[/DIR]\n\n"
               "Options (-o):\n"
               "  credentials=FILE    INI file, [storage] with one of account_key, sas_token,\n"
               "                      managed_identity=yes (client_id=); mode 0600 (required)\n"
               "  uid=N, gid=N        owner of everything (default: the mounting user)\n"
               "  file_mode=OCT       mode of files without a stored mode (default 0644)\n"
               "  dir_mode=OCT        mode of directories without a stored mode (default 0755)\n"
               "  users_dir=NAME      <mount>/NAME/<user>/... belongs to local user <user>\n"
               "                      (default Users; empty to turn off)\n"
               "  users_mode=OCT      permission mask below users_dir (default 0700)\n"
               "  cache_dir=DIR       local cache (default " FS_DEFAULT_CACHE_DIR ")\n"
               "  cache_size=BYTES    clean cache kept (K/M/G/T suffixes; default 10G)\n"
               "  max_dirty=BYTES     writers wait beyond this much unsynced data (default 1G)\n"
               "  writeback=sync|async  close() uploads (sync, default) or returns at once\n"
               "  async_delay=SECONDS upload delay in async mode (default 5)\n"
               "  attr_timeout=S, entry_timeout=S, dir_timeout=S  kernel caches (default 1)\n"
               "  retry_budget=S      bound of every share request, retries included (default 90)\n"
               "  max_requests=N      parallel HTTP transfers (default 16)\n"
               "  transfer_threads=N  threads moving Get/Put Range bodies (default 2; 0: the I/O thread)\n"
               "  imds=URL            Instance Metadata Service endpoint (tests)\n"
               "  ro, nosuid, nodev, noexec, allow_other, default_permissions, ...: passed to FUSE\n\n"
               "Flush interface (extended attributes of the mount's root):\n"
               "  getfattr --only-values -n user.azfilesfs.dirty_bytes MOUNTPOINT\n"
               "  getfattr --only-values -n user.azfilesfs.stats MOUNTPOINT\n"
               "  setfattr -n user.azfilesfs.flush -v SECONDS MOUNTPOINT\n");
}

/* Arguments for fuse_session_new(): our fixed options plus the generic ones the user gave. */
static int make_fuse_args(const FsOptions *o, struct fuse_args *args) {
        _cleanup_free_ char *opts = NULL;
        int r;

        r = asprintf(
                &opts, "fsname=%s,subtype=azfilesfs,default_permissions%s%s%s", o->source,
                geteuid() == 0 ? ",allow_other" : "", o->fuse_opts ? "," : "",
                o->fuse_opts ? o->fuse_opts : "");
        if (r < 0)
                return -ENOMEM;
        if (fuse_opt_add_arg(args, "azfilesfs") < 0 || fuse_opt_add_arg(args, "-o") < 0 ||
            fuse_opt_add_arg(args, opts) < 0)
                return -ENOMEM;
        if (o->debug && fuse_opt_add_arg(args, "-d") < 0)
                return -ENOMEM;
        return 0;
}

/* Forks: the parent waits for the child to report the mount's outcome and exits with it. */
static int daemonize(int *ret_notify_fd) {
        int p[2];
        pid_t pid;
        char status = 1;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid > 0) {
                (void)close(p[1]);
                if (read(p[0], &status, 1) != 1)
                        status = 1;
                _exit(status);
        }
        (void)close(p[0]);
        (void)setsid();
        *ret_notify_fd = p[1];
        return 0;
}

static void daemon_ready(int *notify_fd, char status) {
        int null;

        if (*notify_fd < 0)
                return;
        if (status == 0 && (null = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
                (void)dup2(null, STDIN_FILENO);
                (void)dup2(null, STDOUT_FILENO);
                (void)dup2(null, STDERR_FILENO);
                if (null > STDERR_FILENO)
                        (void)close(null);
        }
        (void)!write(*notify_fd, &status, 1);
        *notify_fd = safe_close(*notify_fd);
}

/* Every file with data in the cache keeps its cache file open (the cache keeps at most the limit
 * less 512 of them, fs-data.c), besides the connections: a soft limit of 1024 (systemd's default
 * for services, and for mount helpers) ran out after a few hundred small files of a tar x, and
 * writes, uploads and flushes failed with EMFILE. The soft limit is raised to the hard one, as
 * systemd asks of programs that need many descriptors (we use poll and epoll, never select). */
static void raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
                return;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                log_warning_errno(
                        -errno, "Cannot raise the limit of open files to %llu: %m",
                        (unsigned long long)rl.rlim_max);
}

static int run(int argc, char **argv) {
        _cleanup_(fs_options_done) FsOptions o;
        _cleanup_(fs_credentials_done) FsCredentials cred = {};
        _cleanup_free_ char *err = NULL;
        _cleanup_(fs_freep) Fs *fs = NULL;
        struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
        struct fuse_session *se = NULL;
        struct fuse_loop_config *loop_cfg = NULL;
        int notify_fd = -EBADF, r;
        uint64_t left;

        fs_options_init(&o);
        r = fs_options_parse(&o, argc, argv, &err);
        if (r < 0) {
                fprintf(stderr, "azfilesfs: %s\n", err ? err : strerror(-r));
                return 1;
        }
        if (o.help) {
                help();
                return 0;
        }
        if (o.version) {
                printf("azfilesfs %s (libfuse %s)\n", PROJECT_VERSION, fuse_pkgversion());
                return 0;
        }
        r = fs_credentials_load(o.credentials, &cred, &err);
        if (r < 0) {
                fprintf(stderr, "azfilesfs: %s\n", err ? err : strerror(-r));
                return 1;
        }
        if (!o.foreground && daemonize(&notify_fd) < 0) {
                fprintf(stderr, "azfilesfs: cannot fork: %m\n");
                return 1;
        }
        log_setup("azfilesfs", o.foreground ? LOG_TARGET_AUTO : LOG_TARGET_JOURNAL);
        if (o.debug)
                log_set_max_level(LOG_DEBUG);
        raise_fd_limit();
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "azfilesfs: curl_global_init failed\n");
                r = -EIO;
                goto out;
        }
        r = fs_new(&o, &cred, &fs);
        if (r < 0) {
                fprintf(stderr, "azfilesfs: cannot set up: %s\n", strerror(-r));
                goto out;
        }
        r = fs_start(fs, &err);
        if (r < 0) {
                fprintf(stderr, "azfilesfs: %s\n", err ? err : strerror(-r));
                goto out;
        }
        r = make_fuse_args(&o, &args);
        if (r < 0)
                goto out;
        se = fuse_session_new(&args, fs_fuse_ops(), sizeof(*fs_fuse_ops()), fs);
        if (!se) {
                fprintf(stderr, "azfilesfs: invalid mount options\n");
                r = -EINVAL;
                goto out;
        }
        fs_set_session(fs, se);
        if (fuse_set_signal_handlers(se) < 0) {
                r = -EIO;
                goto out;
        }
        if (fuse_session_mount(se, o.mountpoint) < 0) {
                fprintf(stderr, "azfilesfs: cannot mount on %s\n", o.mountpoint);
                r = -EIO;
                goto out_signals;
        }
        log_struct(
                LOG_INFO, 0, ((const char *[]){AZFILESFS_MESSAGE_MOUNT_READY, NULL}),
                "Mounted %s on %s (writeback=%s)", o.source, o.mountpoint,
                o.writeback_async ? "async" : "sync");
        daemon_ready(&notify_fd, 0);
        loop_cfg = fuse_loop_cfg_create();
        if (!loop_cfg) {
                r = -ENOMEM;
                goto out_unmount;
        }
        fuse_loop_cfg_set_max_threads(loop_cfg, 64);
        fuse_loop_cfg_set_idle_threads(loop_cfg, 8);
        r = fuse_session_loop_mt(se, loop_cfg);
        fuse_loop_cfg_destroy(loop_cfg);
        if (r != 0)
                log_warning("Session loop ended with %d", r);
        r = 0;
out_unmount:
        left = fs_stop(fs);
        if (left > 0)
                log_warning(
                        "%llu bytes not yet on the share stay in the cache for the next mount",
                        (unsigned long long)left);
        fuse_session_unmount(se);
out_signals:
        fuse_remove_signal_handlers(se);
out:
        fs = fs_free(fs);
        if (se)
                fuse_session_destroy(se);
        fuse_opt_free_args(&args);
        daemon_ready(&notify_fd, r < 0 ? 1 : 0);
        curl_global_cleanup();
        return r < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
