/* SPDX-License-Identifier: MIT */
#pragma once

/* The agent's one Manager: owns the event loop, the configuration and every subsystem (for now
 * the control socket). Later subsystems (workspace, user links, health, drain, jobs) hang off it
 * the same way: a field here, a start step in manager_start(), an apply step in
 * manager_reload(), a section in the status object and rows in the control command table. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct Config Config;
typedef struct ControlServer ControlServer;
typedef struct WorkspaceMonitor WorkspaceMonitor;
typedef struct WorkspaceMount WorkspaceMount;
typedef struct LinksManager LinksManager;
typedef struct Drain Drain;
typedef struct Health Health;
typedef struct HealthHttp HealthHttp;
typedef struct DiskCheck DiskCheck;
typedef struct GpuMonitor GpuMonitor;
typedef struct WorkspaceHealth WorkspaceHealth;
typedef struct UnitCheck UnitCheck;
typedef struct JobRunner JobRunner;

typedef enum ManagerState {
        MANAGER_STARTING,
        MANAGER_RUNNING,
        MANAGER_RELOADING,
        MANAGER_STOPPING,
        _MANAGER_STATE_MAX,
        _MANAGER_STATE_INVALID = -EINVAL,
} ManagerState;

const char *manager_state_to_string(ManagerState s);

typedef struct ManagerConfigSource {
        const char *path;   /* main file */
        bool path_required; /* given on the command line: missing is an error */
        const char *dropin_dir;
} ManagerConfigSource;

typedef struct Manager {
        sd_event *event;
        ManagerState state;
        uint64_t started_realtime_usec;

        /* configuration */
        char *config_path;
        bool config_path_required;
        char *config_dropin_dir;
        Config *config;       /* in use */
        Config *config_start; /* at start (may be config): restart-only keys keep these values */
        uint64_t config_loaded_realtime_usec;
        gid_t admin_gid; /* resolved AdminGroup=, (gid_t)-1 if none */

        /* the last reload (SIGHUP or "reload" command) */
        unsigned n_reloads;
        bool last_reload_failed;
        char *last_reload_error; /* NULL when it succeeded */
        uint64_t last_reload_realtime_usec;
        char **restart_pending; /* "Section.Key" that differ from config_start: restart to apply */

        ControlServer *control;
        WorkspaceMonitor *workspace;     /* NULL when no workspace is configured (Source=) */
        WorkspaceMount *workspace_mount; /* mounts and recovers it; NULL with workspace */
        LinksManager *links;             /* per-user notebook links */
        Health *health;                  /* the one health state; every check source feeds it */
        HealthHttp *health_http; /* /health, /metrics, /status; NULL: ListenAddress= empty */
        DiskCheck *disks;        /* health source "disk" */
        GpuMonitor *gpu;         /* health source "gpu" (NVML in a worker thread) */
        WorkspaceHealth *workspace_health; /* health source "workspace"; NULL with workspace */
        UnitCheck *units;                  /* health source "units" (RequiredUnits=) */
        Drain *drain;                      /* scheduled events, drain, flush, shutdown lock */
        JobRunner *jobs;                   /* the job queue; NULL: [Jobs] Enabled=no */
        bool draining;                     /* the drain reported the VM not healthy */
        bool stop_flush_started;           /* the final flush of the stop path is running */
} Manager;

/* Takes over config (NULL on failure too). */
int manager_new(const ManagerConfigSource *source, Config *config, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Signals, watchdog, control socket; then READY=1. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT; returns the exit code (0) or -errno. */
int manager_run(Manager *m);

/* Re-reads the configuration. On success swaps it in, applies what can change at run time and
 * records what needs a restart; on failure keeps the old one. If report is given, adds
 * "changed" (array of {key, needs_restart}) or "error" to it. Returns 0 or the load error. */
int manager_reload(Manager *m, json_object *report);

/* The status object of the "status" command, and the one-line summary for STATUS=. */
int manager_status_json(Manager *m, json_object *o);
int manager_status_line(Manager *m, char **ret);
