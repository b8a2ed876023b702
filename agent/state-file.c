/* SPDX-License-Identifier: MIT */
#include "state-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"

int state_file_read(const char *dir, const char *name, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *path = NULL, *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;
        ssize_t k;

        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return NEG_ERRNO();
        buf = malloc(max + 2);
        if (!buf)
                return -ENOMEM;
        while ((k = read(fd, buf + n, max + 1 - n)) > 0) {
                n += (size_t)k;
                if (n > max)
                        return -EFBIG;
        }
        if (k < 0)
                return NEG_ERRNO();
        buf[n] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = n;
        return 0;
}

int state_file_write(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *tmp = NULL, *path = NULL;
        _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
        size_t n = strlen(text), off = 0;
        int r;

        if (asprintf(&tmp, "%s/.%s.tmp", dir, name) < 0 || asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return NEG_ERRNO();
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return NEG_ERRNO();
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return NEG_ERRNO();
        while (off < n) {
                ssize_t k = write(fd, text + off, n - off);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = NEG_ERRNO();
                        (void)unlink(tmp);
                        return r;
                }
                off += (size_t)k;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0) {
                r = NEG_ERRNO();
                (void)unlink(tmp);
                return r;
        }
        if (fsync(dfd) < 0)
                return NEG_ERRNO();
        return 0;
}
