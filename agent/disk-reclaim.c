/* SPDX-License-Identifier: MIT */
#include "disk-reclaim.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <json-c/json.h>

#include "macro.h"

#define FUSE_SUPER_MAGIC 0x65735546

/* ---- pure parts ----------------------------------------------------------------------------- */

uint64_t disk_reclaim_target(uint64_t avail, uint64_t warn_free) {
        uint64_t missing = warn_free > avail ? warn_free - avail : 0;
        uint64_t margin = warn_free / 100U * DISK_RECLAIM_MARGIN_PERCENT +
                          warn_free % 100U * DISK_RECLAIM_MARGIN_PERCENT / 100U;

        return MAX(missing + margin, UINT64_C(1));
}

int disk_tmpfiles_line(const char *path, const char *age, char *buf, size_t size) {
        int n;

        if (!path || path[0] != '/' || isempty(age))
                return -EINVAL;
        for (const char *p = path; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("\"'\\%", *p))
                        return -EINVAL;
        for (const char *p = age; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f)
                        return -EINVAL;
        n = snprintf(buf, size, "e %s - - - %s\n", path, age);
        if (n < 0 || (size_t)n >= size)
                return -ENOBUFS;
        return 0;
}

int disk_reclaim_parse(
        const char *output, int *ret_error, int64_t *ret_freed, int64_t *ret_cache_bytes) {
        int error;
        long long freed, cache;
        char end;

        if (!output || sscanf(output, "%d %lld %lld%c", &error, &freed, &cache, &end) != 4 ||
            end != '\n' || error > 0 || freed < -1 || cache < -1)
                return -EBADMSG;
        *ret_error = error;
        *ret_freed = freed;
        *ret_cache_bytes = cache;
        return 0;
}

/* ---- the children --------------------------------------------------------------------------- */

static int64_t stats_field(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -1;
        return json_object_get_int64(v);
}

void disk_reclaim_child_run(const void *arg, int out_fd) {
        const DiskReclaimArgs *a = arg;
        char value[32], stats[8192], out[96];
        int64_t freed = -1, cache = -1;
        struct statfs sf;
        int r = 0, n;

        if (statfs(a->mount_point, &sf) < 0)
                r = NEG_ERRNO();
        else if (
                sf.f_type != FUSE_SUPER_MAGIC ||
                getxattr(a->mount_point, DISK_RECLAIM_XATTR, NULL, 0) < 0)
                r = -ENOTSUP; /* not a (new enough) azfilesfs: never set it on a bare directory */
        else {
                (void)snprintf(value, sizeof(value), "%" PRIu64, a->bytes);
                if (setxattr(a->mount_point, DISK_RECLAIM_XATTR, value, strlen(value), 0) < 0)
                        r = NEG_ERRNO();
        }
        if (r == 0) {
                ssize_t k = getxattr(
                        a->mount_point, DISK_RECLAIM_STATS_XATTR, stats, sizeof(stats) - 1);
                if (k > 0) {
                        json_object *o;

                        stats[k] = '\0';
                        o = json_tokener_parse(stats);
                        freed = stats_field(o, "last_reclaim_bytes");
                        cache = stats_field(o, "cache_disk_bytes");
                        json_object_put(o);
                }
        }
        n = snprintf(out, sizeof(out), "%d %" PRId64 " %" PRId64 "\n", r, freed, cache);
        (void)!write(out_fd, out, (size_t)n);
        _exit(r < 0 ? 1 : 0);
}

void disk_tmp_cleanup_child_run(const void *arg, int out_fd) {
        static const char *const binaries[] = {
                "/usr/bin/systemd-tmpfiles",
                "/bin/systemd-tmpfiles",
        };
        const DiskTmpCleanupArgs *a = arg;
        char *argv[] = {(char *)"systemd-tmpfiles", (char *)"--clean", (char *)"-", NULL};
        size_t len = strlen(a->line);
        int p[2];

        /* The line is far below a pipe's capacity: the write cannot block. The dup2() onto
         * standard input below clears O_CLOEXEC there. */
        if (len > DISK_TMPFILES_LINE_MAX || pipe2(p, O_CLOEXEC) < 0)
                _exit(126);
        if (write(p[1], a->line, len) != (ssize_t)len)
                _exit(126);
        (void)close(p[1]);
        if (dup2(p[0], STDIN_FILENO) < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                _exit(126);
        if (p[0] != STDIN_FILENO)
                (void)close(p[0]);
        (void)close(out_fd);
        for (size_t i = 0; i < ELEMENTSOF(binaries); i++)
                (void)execv(binaries[i], argv);
        _exit(127);
}
