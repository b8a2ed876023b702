/* SPDX-License-Identifier: MIT */
/* hang-fs: a tiny FUSE filesystem for tests of mount health checks. Its root is an empty
 * directory; what it does with getattr, lookup and statfs is chosen with --mode:
 *
 *   --mode=ok    answers them normally (an empty root directory, a small statfs)
 *   --mode=hang  never answers them: each request is held (at most HANG_FS_HELD_MAX; beyond that
 *                they get EIO) and only answered, with EIO, when the filesystem is unmounted or
 *                the process is told to exit (SIGTERM, SIGINT, SIGHUP), so nothing stays stuck
 *                after hang-fs is gone. A process waiting on a held request is in the kernel's
 *                uninterruptible FUSE wait: not even SIGKILL ends it before the reply.
 *   --mode=eio   answers them with EIO
 *
 * With --stats=FILE, getxattr("user.azfilesfs.stats") on the root answers FILE's content (read
 * anew each time, at most 3 KiB; no such file: ENODATA), as azfilesfs does with its figures; any
 * other xattr is ENODATA.
 *
 * Usage: hang-fs --mode=MODE [--stats=FILE] [-o subtype=NAME,fsname=NAME] MOUNTPOINT
 * Runs in the foreground, single-threaded, and prints "ready" on stdout once mounted. Must run as
 * root or with fusermount3. Not installed. */

#define FUSE_USE_VERSION 31

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#define HANG_FS_HELD_MAX 4096U

typedef enum HangFsMode {
        HANG_FS_OK,
        HANG_FS_HANG,
        HANG_FS_EIO,
} HangFsMode;

typedef struct HangFs {
        HangFsMode mode;
        fuse_req_t held[HANG_FS_HELD_MAX]; /* requests held in hang mode (one thread: no lock) */
        size_t n_held;
        const char *stats_file; /* NULL: no stats xattr */
} HangFs;

static HangFs hang_fs;

/* Returns 1 if the request was answered or held here (mode hang or eio), 0 to answer normally. */
static int hang_fs_intercept(fuse_req_t req) {
        switch (hang_fs.mode) {
        case HANG_FS_HANG:
                if (hang_fs.n_held < HANG_FS_HELD_MAX)
                        hang_fs.held[hang_fs.n_held++] = req;
                else
                        (void)fuse_reply_err(req, EIO);
                return 1;
        case HANG_FS_EIO:
                (void)fuse_reply_err(req, EIO);
                return 1;
        case HANG_FS_OK:
        default:
                return 0;
        }
}

static void hang_fs_root_stat(struct stat *st) {
        memset(st, 0, sizeof(*st));
        st->st_ino = FUSE_ROOT_ID;
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
}

static void hang_fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
        struct stat st;

        if (hang_fs_intercept(req))
                return;
        if (ino != FUSE_ROOT_ID) {
                (void)fuse_reply_err(req, ENOENT);
                return;
        }
        hang_fs_root_stat(&st);
        (void)fuse_reply_attr(req, &st, 1.0);
}

static void hang_fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
        if (hang_fs_intercept(req))
                return;
        (void)fuse_reply_err(req, ENOENT);
}

static void hang_fs_statfs(fuse_req_t req, fuse_ino_t ino) {
        struct statvfs sv = {
                .f_bsize = 4096,
                .f_frsize = 4096,
                .f_blocks = 1024,
                .f_bfree = 1024,
                .f_bavail = 1024,
                .f_files = 16,
                .f_ffree = 15,
                .f_namemax = 255,
        };

        if (hang_fs_intercept(req))
                return;
        (void)fuse_reply_statfs(req, &sv);
}

static void hang_fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
        char buf[3072];
        ssize_t n = -1;
        int fd;

        if (hang_fs_intercept(req))
                return;
        if (ino != FUSE_ROOT_ID || strcmp(name, "user.azfilesfs.stats") != 0 ||
            !hang_fs.stats_file) {
                (void)fuse_reply_err(req, ENODATA);
                return;
        }
        fd = open(hang_fs.stats_file, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                n = read(fd, buf, sizeof(buf));
                (void)close(fd);
        }
        if (n < 0)
                (void)fuse_reply_err(req, ENODATA);
        else if (size == 0)
                (void)fuse_reply_xattr(req, (size_t)n);
        else if (size < (size_t)n)
                (void)fuse_reply_err(req, ERANGE);
        else
                (void)fuse_reply_buf(req, buf, (size_t)n);
}

static const struct fuse_lowlevel_ops hang_fs_ops = {
        .getattr = hang_fs_getattr,
        .getxattr = hang_fs_getxattr,
        .lookup = hang_fs_lookup,
        .statfs = hang_fs_statfs,
};

typedef struct HangFsOptions {
        char *mode;
        char *stats;
} HangFsOptions;

static const struct fuse_opt hang_fs_opts[] = {
        {"--mode=%s", offsetof(HangFsOptions, mode), 0},
        {"--stats=%s", offsetof(HangFsOptions, stats), 0},
        FUSE_OPT_END,
};

static int hang_fs_parse_mode(const char *s, HangFsMode *ret) {
        if (!s)
                return -EINVAL;
        if (strcmp(s, "ok") == 0)
                *ret = HANG_FS_OK;
        else if (strcmp(s, "hang") == 0)
                *ret = HANG_FS_HANG;
        else if (strcmp(s, "eio") == 0)
                *ret = HANG_FS_EIO;
        else
                return -EINVAL;
        return 0;
}

int main(int argc, char *argv[]) {
        struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
        struct fuse_cmdline_opts opts = {0};
        HangFsOptions o = {0};
        struct fuse_session *se = NULL;
        int r = 1;

        if (fuse_opt_parse(&args, &o, hang_fs_opts, NULL) < 0 ||
            fuse_parse_cmdline(&args, &opts) != 0)
                goto out;
        if (hang_fs_parse_mode(o.mode, &hang_fs.mode) < 0 || !opts.mountpoint) {
                fprintf(stderr,
                        "Usage: %s --mode=ok|hang|eio [-o subtype=NAME,fsname=NAME] MOUNTPOINT\n",
                        argv[0]);
                goto out;
        }
        hang_fs.stats_file = o.stats;
        se = fuse_session_new(&args, &hang_fs_ops, sizeof(hang_fs_ops), NULL);
        if (!se)
                goto out;
        if (fuse_set_signal_handlers(se) != 0)
                goto out;
        if (fuse_session_mount(se, opts.mountpoint) != 0) {
                fuse_remove_signal_handlers(se);
                goto out;
        }
        printf("ready\n");
        (void)fflush(stdout);

        /* 0, or the number of the signal that ended the loop. */
        r = fuse_session_loop(se) >= 0 ? 0 : 1;

        /* Whatever is still held gets its one reply now (an error if the connection is gone). */
        for (size_t i = 0; i < hang_fs.n_held; i++)
                (void)fuse_reply_err(hang_fs.held[i], EIO);
        hang_fs.n_held = 0;
        fuse_session_unmount(se);
        fuse_remove_signal_handlers(se);
out:
        if (se)
                fuse_session_destroy(se);
        free(opts.mountpoint);
        free(o.mode);
        free(o.stats);
        fuse_opt_free_args(&args);
        return r;
}
