/* SPDX-License-Identifier: MIT */
#pragma once

/* The workspace as the health source "workspace": after every result of the workspace monitor
 * (its bounded probe: a hung mount never blocks the loop) three checks, subject the mount point:
 *   workspace_mount            ok when the mount answers; unhealthy when hung, failing, not
 *                              mounted or of another type; unknown before the first check
 *   workspace_dirty_bytes      azfilesfs's bytes not yet on the share (value only, always ok)
 *   workspace_failed_requests  azfilesfs's failed requests so far; a warning for 5 minutes after
 *                              the count last grew (the last error in the message)
 * The figures come from the user.azfilesfs.stats xattr; without it (not an azfilesfs, or an
 * older one: ENODATA, ENOTSUP) or while the mount does not answer they are unknown, not a fault.
 *
 * Single-threaded: the loop's thread. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "health.h"
#include "macro.h"
#include "workspace-monitor.h"

typedef struct WorkspaceHealth WorkspaceHealth;

/* Pure: the checks for one result. failing_recently: the failed count grew within the last 5
 * minutes. Returns how many were written (3). */
size_t workspace_health_evaluate(
        const char *mount_point,
        WorkspaceState state,
        const char *detail,
        int stats_error,
        const WorkspaceStats *stats,
        bool failing_recently,
        HealthCheck ret[static 3]);

/* Registers itself as w's result callback; health and w are borrowed and must outlive it. */
int workspace_health_new(
        Health *health, WorkspaceMonitor *w, const char *mount_point, WorkspaceHealth **ret);
/* Removes the source's checks. NULL-safe. */
WorkspaceHealth *workspace_health_free(WorkspaceHealth *wh);
DEFINE_TRIVIAL_CLEANUP_FUNC(WorkspaceHealth *, workspace_health_free);
