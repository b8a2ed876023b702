/* SPDX-License-Identifier: MIT */
#pragma once

/* The drain's child processes: whatever could block on a filesystem or a terminal (the flush, the
 * hooks, telling users, the report on the share) runs in a forked child with a deadline, so that
 * a hung mount never blocks the agent's loop. A child runs in its own process group, dies with
 * the agent (PR_SET_PDEATHSIG), and writes a short result line to a pipe. Its exit is watched
 * through a pidfd on the sd-event loop. At the deadline the group gets SIGKILL and the callback
 * runs at once with timed_out (a child stuck in the kernel is reaped later, when it can be); else
 * the callback runs once the child was reaped. Single-threaded (the loop's thread). */

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_event sd_event;
typedef struct DrainChild DrainChild;

#define DRAIN_FLUSH_XATTR "user.azfilesfs.flush"
#define DRAIN_DIRTY_XATTR "user.azfilesfs.dirty_bytes"
#define DRAIN_CHILD_OUTPUT_MAX 512U /* bytes of a child's result kept */
#define DRAIN_NOTIFY_TTYS_MAX 256U  /* terminals told at most */

/* status: the waitpid() status (unless timed_out); output: what the child wrote (NUL-terminated).
 * c is freed after the callback returns (or, when timed out, once reaped). */
typedef void (*DrainChildFn)(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata);
/* Runs in the child; must end with _exit(). */
typedef void (*DrainChildRun)(const void *arg, int out_fd);

/* Forks run(arg, fd) and adds the child to *list (it stays there until reaped). */
int drain_child_spawn(
        sd_event *event,
        DrainChild **list,
        uint64_t timeout_usec,
        DrainChildRun run,
        const void *arg,
        DrainChildFn cb,
        void *userdata,
        DrainChild **ret);
/* Drops the callback and kills the child's group; it is reaped when it exits. NULL-safe. */
void drain_child_abandon(DrainChild *c);
/* Kills every child of *list, reaps those that already exited, frees all (no callbacks). */
void drain_child_free_all(DrainChild **list);

/* The flush: reads DRAIN_DIRTY_XATTR of mount_point (ENODATA/ENOTSUP: not azfilesfs, 0 dirty
 * bytes), sets DRAIN_FLUSH_XATTR to seconds (blocks until zero dirty bytes, ETIMEDOUT or EIO) and
 * reads the dirty bytes again; writes "ERRNO BEFORE AFTER AZFILESFS\n". */
typedef struct DrainFlushArgs {
        const char *mount_point;
        uint64_t seconds;
} DrainFlushArgs;
void drain_flush_child_run(const void *arg, int out_fd);
/* Its output: 0 or -errno of the flush, the dirty bytes before/after (-1 unknown), and whether
 * the mount is azfilesfs. -EIO for output that is not of that form. */
int drain_flush_parse(const char *output, int64_t *ret_before, int64_t *ret_after, bool *ret_fs);

/* A hook: /bin/sh -c command, stdin /dev/null, stdout to stderr, env entries added when set. */
typedef struct DrainHookArgs {
        const char *command;
        char env[4][192];
} DrainHookArgs;
void drain_hook_child_run(const void *arg, int out_fd);

/* Writes the message (arg) to the terminal of every utmp USER_PROCESS entry (pts/N, ttyN only;
 * O_NOCTTY|O_NONBLOCK|O_NOFOLLOW, character devices only); writes "TOLD FOUND\n". */
void drain_notify_child_run(const void *arg, int out_fd);

/* Writes text to mount_point/.poolagent/drain-reports/name atomically and fsync'ed (on
 * azfilesfs, fsync returns once the bytes are on the share), never following links below the
 * mount point. Exit status 0 on success. */
typedef struct DrainReportArgs {
        const char *mount_point;
        const char *name; /* one path component */
        const char *text;
} DrainReportArgs;
void drain_report_child_run(const void *arg, int out_fd);
