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
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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

/* Jobs that never started, handed back to their owners by the drain's stop-jobs step: each is
 * written to mount_point/Users/<user>/DRAIN_REQUEUED_DIR/<name> (mode 0600, directories 0700
 * created as needed), atomically (temporary file, fsync, rename, fsync of the directory). For
 * each owner a grandchild opens mount_point/Users/<user> as root without following links,
 * refuses a folder that does not belong to the job's uid, takes the folder's group, drops every
 * privilege to uid and that group (no supplementary groups), and writes that owner's files: so
 * the files are the user's, and nothing outside the user's folder can be reached through it.
 * Writes "WRITTEN FAILED\n". */
#define DRAIN_REQUEUED_DIR ".poolagent/requeued-jobs"
#define DRAIN_REQUEUE_JOBS_MAX 1024U

typedef struct DrainRequeueJob {
        uid_t uid;
        const char *user; /* the folder under Users/, one path component */
        const char *name; /* the file, one path component */
        const char *text;
} DrainRequeueJob;
typedef struct DrainRequeueArgs {
        const char *mount_point;
        const DrainRequeueJob *jobs;
        size_t n_jobs; /* <= DRAIN_REQUEUE_JOBS_MAX */
} DrainRequeueArgs;
void drain_requeue_child_run(const void *arg, int out_fd);
/* Its output: written and failed counts; -EIO for output that is not of that form. */
int drain_requeue_parse(const char *output, unsigned *ret_written, unsigned *ret_failed);
