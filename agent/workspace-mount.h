/* SPDX-License-Identifier: MIT */
#pragma once

/* Keeps the share mounted at the mount point, and brings a dead or hung mount back.
 *
 * Under systemd the mount is a unit, so `systemctl status srv-workspace.mount` and journalctl
 * show it: when the mount point's unit is loaded from a file (fstab, a drop-in an admin wrote)
 * the agent starts that unit; otherwise it starts a transient mount unit of its own (What=SOURCE,
 * Where=MOUNTPOINT, Type=fuse.azfilesfs, Options=credentials=…,cache_dir=…,MountOptions,
 * LazyUnmount=yes), as systemd-mount(1) does; mount(8) runs mount.fuse3, which runs azfilesfs.
 * Without systemd as init (containers, this project's tests) it runs
 * `azfilesfs SOURCE MOUNTPOINT -o OPTIONS` itself (found in PATH), which returns once mounted.
 *
 * What the workspace check reports decides (workspace_mount_on_state()):
 *   not mounted      → mount; a failed mount is retried with backoff (5 s doubling to 5 min);
 *   error ENOTCONN   → the FUSE daemon is gone: unmount (lazily) and mount again, at once;
 *   hung             → if it stays hung for RecoverAfter=, end the FUSE connection (systemd:
 *                      SIGKILL to the mount unit's processes; otherwise
 *                      /sys/fs/fuse/connections/N/abort), unmount lazily, mount again;
 *   wrong type       → never touched: something else is mounted there on purpose.
 * Killing azfilesfs loses nothing: every byte it acknowledged is in its cache directory on the
 * scratch disk, and the next mount with the same cache directory uploads it (see azfilesfs(8)).
 *
 * Single-threaded (the loop's thread). */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct WorkspaceMount WorkspaceMount;
typedef enum WorkspaceState WorkspaceState;

typedef struct WorkspaceMountConfig {
        const char *source;          /* the share URL */
        const char *mount_point;     /* absolute */
        const char *credentials;     /* absolute, may be NULL */
        const char *cache_directory; /* absolute */
        const char *mount_options;   /* extra options, comma-separated, may be NULL */
        uint64_t recover_after_usec; /* how long a hung mount is left alone */
} WorkspaceMountConfig;

/* ---- pure parts ---------------------------------------------------------------------------- */

/* The mount unit's name for an absolute path, escaped as systemd-escape --path does:
 * "/srv/workspace" → "srv-workspace.mount". -EINVAL for a relative path or one with "." or ".."
 * components, -ENOMEM. */
int mount_unit_name_from_path(const char *path, char **ret);

/* The -o options azfilesfs gets: "credentials=C,cache_dir=D" plus the extra options. -EINVAL if
 * a path holds a comma (the option parser would split it), -ENOMEM. */
int workspace_mount_options(const WorkspaceMountConfig *c, char **ret);

/* ---- the mounter --------------------------------------------------------------------------- */

/* Copies the config. Connects to the system bus when systemd is init (fails soft: without a bus
 * it mounts by itself). event is borrowed and must outlive the mounter. -ENOMEM. */
int workspace_mount_new(sd_event *event, const WorkspaceMountConfig *c, WorkspaceMount **ret);
WorkspaceMount *workspace_mount_free(WorkspaceMount *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(WorkspaceMount *, workspace_mount_free);

/* Called by the owner after each workspace check whose result it wants acted on: the state and
 * the errno behind an error state (workspace_monitor_error()). When a mount or a recovery
 * finishes, recheck is called so that the owner checks the workspace at once. */
typedef void (*WorkspaceRecheckCallback)(void *userdata);
void workspace_mount_set_recheck(WorkspaceMount *w, WorkspaceRecheckCallback cb, void *userdata);
void workspace_mount_on_state(WorkspaceMount *w, WorkspaceState state, int error);

/* Adds "mount": {unit, mode, action, attempts, recoveries, last_result} to o. */
int workspace_mount_status_json(const WorkspaceMount *w, json_object *o);
