/* SPDX-License-Identifier: MIT */
#include "workspace-health.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "time-util.h"

#define WORKSPACE_FAILING_WINDOW_NS (INT64_C(300) * 1000000000)

struct WorkspaceHealth {
        Health *health;      /* borrowed */
        WorkspaceMonitor *w; /* borrowed */
        char *mount_point;
        int64_t last_failed;    /* -1: no figures yet */
        int64_t last_growth_ns; /* monotonic: when the failed count last grew, 0: never */
};

size_t workspace_health_evaluate(
        const char *mount_point,
        WorkspaceState state,
        const char *detail,
        int stats_error,
        const WorkspaceStats *stats,
        bool failing_recently,
        HealthCheck ret[static 3]) {
        HealthCheck *mount = &ret[0], *dirty = &ret[1], *failed = &ret[2];
        bool have = stats_error >= 0 && stats;

        health_check_init(
                mount, "workspace_mount", mount_point,
                state == WORKSPACE_OK        ? HEALTH_OK
                : state == WORKSPACE_UNKNOWN ? HEALTH_UNKNOWN
                                             : HEALTH_UNHEALTHY);
        (void)snprintf(
                mount->signal, sizeof(mount->signal), "%s", workspace_state_to_string(state));
        health_check_set_message(
                mount, "%s: %s", workspace_state_to_string(state), detail ? detail : "");

        health_check_init(dirty, "workspace_dirty_bytes", mount_point, HEALTH_UNKNOWN);
        (void)snprintf(dirty->unit, sizeof(dirty->unit), "bytes");
        health_check_init(failed, "workspace_failed_requests", mount_point, HEALTH_UNKNOWN);
        (void)snprintf(failed->unit, sizeof(failed->unit), "count");
        if (!have) {
                const char *why =
                        stats_error == -ENODATA || stats_error == -EOPNOTSUPP
                                ? "no azfilesfs figures on this mount (no user.azfilesfs.stats xattr)"
                        : stats_error == -ESTALE  ? "no figures while the mount does not answer"
                        : stats_error == -EBADMSG ? "the user.azfilesfs.stats xattr is not JSON"
                                                  : "reading user.azfilesfs.stats failed";
                health_check_set_message(dirty, "%s", why);
                health_check_set_message(failed, "%s", why);
                return 3;
        }
        if (stats->dirty_bytes >= 0) {
                dirty->verdict = HEALTH_OK;
                dirty->has_value = true;
                dirty->value = (double)stats->dirty_bytes;
                health_check_set_message(
                        dirty, "%" PRId64 " bytes in %" PRId64 " files not yet on the share",
                        stats->dirty_bytes, stats->dirty_files < 0 ? 0 : stats->dirty_files);
        } else
                health_check_set_message(dirty, "no dirty_bytes in the figures");
        if (stats->requests_failed >= 0) {
                bool grew = failing_recently;

                failed->verdict = grew ? HEALTH_WARNING : HEALTH_OK;
                failed->has_value = true;
                failed->value = (double)stats->requests_failed;
                health_check_set_message(
                        failed, "%" PRId64 " of %" PRId64 " requests failed%s%s%s",
                        stats->requests_failed,
                        stats->requests_total < 0 ? 0 : stats->requests_total,
                        grew ? ", some within the last 5 minutes" : "",
                        stats->last_error[0] ? "; last error: " : "", stats->last_error);
        } else
                health_check_set_message(failed, "no requests_failed in the figures");
        return 3;
}

static void workspace_health_on_result(WorkspaceMonitor *w, WorkspaceState state, void *userdata) {
        WorkspaceHealth *wh = userdata;
        HealthCheck checks[3];
        WorkspaceStats stats = {};
        size_t n;
        int r;

        r = workspace_monitor_stats(w, &stats);
        if (r >= 0 && stats.requests_failed >= 0) {
                if (wh->last_failed >= 0 && stats.requests_failed > wh->last_failed)
                        wh->last_growth_ns = now_monotonic_ns();
                wh->last_failed = stats.requests_failed;
        }
        n = workspace_health_evaluate(
                wh->mount_point, state, workspace_monitor_detail(w), r, r >= 0 ? &stats : NULL,
                wh->last_growth_ns > 0 &&
                        now_monotonic_ns() - wh->last_growth_ns < WORKSPACE_FAILING_WINDOW_NS,
                checks);
        r = health_set_checks(wh->health, "workspace", checks, n);
        if (r < 0)
                log_warning_errno(r, "Failed to record the workspace checks, ignoring: %m");
}

int workspace_health_new(
        Health *health, WorkspaceMonitor *w, const char *mount_point, WorkspaceHealth **ret) {
        WorkspaceHealth *wh;

        wh = calloc(1, sizeof(*wh));
        if (!wh)
                return -ENOMEM;
        wh->mount_point = strdup(mount_point);
        if (!wh->mount_point) {
                free(wh);
                return -ENOMEM;
        }
        wh->health = health;
        wh->w = w;
        wh->last_failed = -1;
        workspace_monitor_set_result_callback(w, workspace_health_on_result, wh);
        /* The monitor's first result may have come already. */
        workspace_health_on_result(w, workspace_monitor_state(w), wh);
        *ret = wh;
        return 0;
}

WorkspaceHealth *workspace_health_free(WorkspaceHealth *wh) {
        if (!wh)
                return NULL;
        workspace_monitor_set_result_callback(wh->w, NULL, NULL);
        (void)health_set_checks(wh->health, "workspace", NULL, 0);
        free(wh->mount_point);
        free(wh);
        return NULL;
}
