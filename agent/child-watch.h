/* SPDX-License-Identifier: MIT */
#pragma once

/* Watches one child process on the sd-event loop through a pidfd (no SIGCHLD handling needed),
 * with an optional deadline after which the child gets SIGKILL. The callback runs once, on the
 * loop, after the child was reaped: status is its waitpid() status, timed_out says it was killed
 * for the deadline. Single-threaded (the loop's thread). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct ChildWatch ChildWatch;

typedef void (*ChildExitFn)(ChildWatch *w, int status, bool timed_out, void *userdata);

/* Watches pid (a child of ours). timeout_usec 0: no deadline. On failure the child is killed
 * and reaped before returning the error. */
int child_watch_new(
        sd_event *event,
        pid_t pid,
        uint64_t timeout_usec,
        ChildExitFn cb,
        void *userdata,
        ChildWatch **ret);
/* A child still running is sent SIGKILL and reaped (waits: the caller knows the child can die,
 * i.e. it is not stuck in the kernel on a filesystem). NULL-safe; no callback. */
ChildWatch *child_watch_free(ChildWatch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(ChildWatch *, child_watch_free);

pid_t child_watch_pid(const ChildWatch *w);
