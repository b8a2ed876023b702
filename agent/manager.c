/* SPDX-License-Identifier: MIT */
#include "manager.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "control.h"
#include "disk-check.h"
#include "drain.h"
#include "gpu-check.h"
#include "health-http.h"
#include "health.h"
#include "job-queue.h"
#include "job-runner.h"
#include "links-manager.h"
#include "log.h"
#include "message-ids.h"
#include "time-util.h"
#include "unit-check.h"
#include "workspace-health.h"
#include "workspace-monitor.h"
#include "workspace-mount.h"

#define GROUP_BUFFER_MAX (1024U * 1024U)

static const char *const manager_state_table[_MANAGER_STATE_MAX] = {
        [MANAGER_STARTING] = "starting",
        [MANAGER_RUNNING] = "running",
        [MANAGER_RELOADING] = "reloading",
        [MANAGER_STOPPING] = "stopping",
};

const char *manager_state_to_string(ManagerState s) {
        if (s < 0 || s >= _MANAGER_STATE_MAX)
                return NULL;
        return manager_state_table[s];
}

static const char *log_level_to_string(int level) {
        static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                            "warning", "notice", "info", "debug"};
        return names[level & 7];
}

static uint64_t now_realtime_usec(void) {
        struct timespec ts;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * UINT64_C(1000000) + (uint64_t)ts.tv_nsec / 1000;
}

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

/* ---- applying configuration ----------------------------------------------------------------- */

/* Resolves AdminGroup= through NSS. A group that does not exist leaves only root as admin. */
static gid_t manager_resolve_admin_group(const char *name) {
        struct group grp, *result = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096;
        int r;

        if (!name)
                return (gid_t)-1;
        for (;;) {
                free(buf);
                buf = malloc(size);
                if (!buf)
                        return log_warning_errno(
                                       -ENOMEM,
                                       "Failed to resolve AdminGroup=%s, only root may change state: %m",
                                       name),
                               (gid_t)-1;
                r = getgrnam_r(name, &grp, buf, size, &result);
                if (r != ERANGE || size >= GROUP_BUFFER_MAX)
                        break;
                size *= 2;
        }
        if (r != 0 || !result) {
                if (r != 0)
                        log_warning_errno(
                                -r,
                                "Failed to resolve AdminGroup=%s, only root may change state: %m",
                                name);
                else
                        log_warning(
                                "AdminGroup=%s does not exist, only root may change state", name);
                return (gid_t)-1;
        }
        return result->gr_gid;
}

/* start: the configuration the agent started with (the workspace, which a reload does not change).
 */
static void manager_disk_config(const Config *c, const Config *start, DiskCheckConfig *ret) {
        *ret = (DiskCheckConfig){
                .disks =
                        {
                                {"root", c->root_path, c->root_min_free, c->root_warn_free},
                                {"tmp", c->tmp_path, c->tmp_min_free, c->tmp_warn_free},
                                {"scratch", c->scratch_path, c->scratch_min_free,
                                 c->scratch_warn_free},
                        },
                .n_disks = 3,
                .min_free_inodes_percent = (unsigned)c->min_free_inodes_percent,
                .warn_free_inodes_percent = (unsigned)c->warn_free_inodes_percent,
                .top_consumers = (unsigned)c->top_consumers,
                .interval_usec = c->health_interval_usec,
                /* Whoever mounted it (the agent, fstab): reclaim checks it is an azfilesfs. */
                .cache_directory = start->cache_directory,
                .mount_point = start->mount_point,
                .tmp_cleanup_age = c->tmp_cleanup_age,
        };
}

/* What can change without a restart. */
static void manager_apply_config(Manager *m) {
        log_set_max_level(m->config->log_level);
        m->admin_gid = manager_resolve_admin_group(m->config->admin_group);
        if (m->control)
                control_server_set_admin_gid(m->control, m->admin_gid);
        if (m->workspace) { /* new bounds, and a fresh check on each reload */
                workspace_monitor_set_timing(
                        m->workspace, m->config->stat_timeout_usec, m->config->check_interval_usec);
                (void)workspace_monitor_check_now(m->workspace);
        }
        if (m->links)
                links_manager_configure(m->links, m->config, m->config_start->mount_point);
        health_set_hysteresis(
                m->health, (unsigned)m->config->unhealthy_after,
                (unsigned)m->config->healthy_after);
        if (m->disks) {
                DiskCheckConfig dc;
                int r;

                manager_disk_config(m->config, m->config_start, &dc);
                r = disk_check_configure(m->disks, &dc);
                if (r < 0)
                        log_warning_errno(
                                r, "Failed to apply the disk check settings, ignoring: %m");
        }
        if (m->gpu) {
                gpu_monitor_set_config(
                        m->gpu, m->config->expected_gpus, m->config->gpu_check_interval_usec,
                        m->config->gpu_timeout_usec);
                (void)gpu_monitor_check_now(m->gpu);
        }
        if (m->units) {
                int r = unit_check_configure(
                        m->units, m->config->required_units, m->config->health_interval_usec);
                if (r < 0)
                        log_warning_errno(r, "Failed to apply RequiredUnits=, ignoring: %m");
        }
}

/* ---- status --------------------------------------------------------------------------------- */

static json_object *json_strv(char **l) {
        json_object *a = json_object_new_array();

        for (char **i = l; a && i && *i; i++)
                if (json_object_array_add(a, json_object_new_string(*i)) < 0) {
                        json_object_put(a);
                        return NULL;
                }
        return a;
}

static json_object *json_string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

static int json_add(json_object *o, const char *key, json_object *v, bool may_be_null) {
        if (!v && !may_be_null)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

/* The "health" object of status and of the health command. */
static int manager_health_json(Manager *m, json_object *o) {
        int r;

        r = health_status_json(m->health, o);
        if (r >= 0)
                r = json_add(
                        o, "http",
                        m->health_http ? json_object_new_string(health_http_address(m->health_http))
                                       : NULL,
                        true);
        if (r >= 0 && m->disks)
                r = disk_check_status_json(m->disks, o);
        return r;
}

int manager_status_json(Manager *m, json_object *o) {
        const Config *c = m->config;
        json_object *conf, *reload, *control, *ws, *users;
        char range[64];
        int r = 0;

        conf = json_object_new_object();
        reload = json_object_new_object();
        control = json_object_new_object();
        ws = json_object_new_object();
        users = json_object_new_object();
        (void)snprintf(
                range, sizeof(range), "%u-%u", (unsigned)c->uid_range.min,
                (unsigned)c->uid_range.max);

        r |= json_add(o, "version", json_object_new_string(PROJECT_VERSION), false);
        r |= json_add(o, "state", json_object_new_string(manager_state_to_string(m->state)), false);
        r |= json_add(o, "pid", json_object_new_int64(getpid()), false);
        r |= json_add(o, "since_usec", json_object_new_uint64(m->started_realtime_usec), false);

        r |= json_add(o, "config", conf, false);
        if (conf) {
                r |= json_add(conf, "files", json_strv(c->files), false);
                r |= json_add(
                        conf, "loaded_usec", json_object_new_uint64(m->config_loaded_realtime_usec),
                        false);
                r |= json_add(
                        conf, "log_level",
                        json_object_new_string(log_level_to_string(c->log_level)), false);
                r |= json_add(conf, "restart_pending", json_strv(m->restart_pending), false);
        }
        if (m->n_reloads > 0 && reload) {
                r |= json_add(reload, "ok", json_object_new_boolean(!m->last_reload_failed), false);
                r |= json_add(
                        reload, "usec", json_object_new_uint64(m->last_reload_realtime_usec),
                        false);
                r |= json_add(reload, "count", json_object_new_int64(m->n_reloads), false);
                r |= json_add(reload, "error", json_string_or_null(m->last_reload_error), true);
                r |= json_add(o, "last_reload", reload, false);
        } else {
                json_object_put(reload);
                r |= json_add(o, "last_reload", NULL, true);
        }

        r |= json_add(o, "control", control, false);
        if (control) {
                r |= json_add(
                        control, "socket",
                        json_object_new_string(
                                m->control ? control_server_path(m->control) : c->control_socket),
                        false);
                r |= json_add(
                        control, "clients",
                        json_object_new_int64(
                                m->control ? control_server_n_clients(m->control) : 0),
                        false);
                r |= json_add(control, "admin_group", json_string_or_null(c->admin_group), true);
                r |= json_add(
                        control, "admin_group_resolved",
                        json_object_new_boolean(m->admin_gid != (gid_t)-1), false);
        }

        /* Configured values (for restart-only keys, those in use); the workspace and user
         * modules add their live state here. */
        r |= json_add(o, "workspace", ws, false);
        if (ws) {
                r |= json_add(ws, "source", json_string_or_null(m->config_start->source), true);
                r |= json_add(
                        ws, "mount_point", json_object_new_string(m->config_start->mount_point),
                        false);
                r |= json_add(
                        ws, "cache_directory",
                        json_object_new_string(m->config_start->cache_directory), false);
                if (m->workspace)
                        r |= workspace_monitor_status_json(m->workspace, ws);
                if (m->workspace_mount)
                        r |= workspace_mount_status_json(m->workspace_mount, ws);
        }
        if (m->drain)
                r |= drain_status_json(m->drain, o);
        if (m->jobs)
                r |= job_runner_status_json(m->jobs, o);
        r |= json_add(o, "users", users, false);
        if (users) {
                r |= json_add(users, "uid_range", json_object_new_string(range), false);
                r |= json_add(users, "group", json_string_or_null(c->group), true);
                r |= json_add(users, "deny", json_strv(c->deny), false);
                r |= json_add(
                        users, "notebooks_directory",
                        json_object_new_string(c->notebooks_directory), false);
                r |= json_add(users, "link_name", json_object_new_string(c->link_name), false);
                if (m->links)
                        r |= links_manager_status_json(m->links, users);
        }
        {
                json_object *health = json_object_new_object();
                r |= json_add(o, "health", health, false);
                if (health)
                        r |= manager_health_json(m, health);
        }
        {
                json_object *gpu = json_object_new_object();
                r |= json_add(o, "gpu", gpu, false);
                if (gpu && m->gpu)
                        r |= gpu_monitor_status_json(m->gpu, gpu);
        }
        return r < 0 ? -ENOMEM : 0;
}

static const char *manager_workspace_summary(WorkspaceMonitor *w) {
        static const char *const summary[_WORKSPACE_STATE_MAX] = {
                [WORKSPACE_UNKNOWN] = ", workspace not checked yet",
                [WORKSPACE_OK] = ", workspace ok",
                [WORKSPACE_NOT_MOUNTED] = ", workspace NOT MOUNTED",
                [WORKSPACE_WRONG_TYPE] = ", workspace WRONG MOUNT",
                [WORKSPACE_HUNG] = ", workspace HUNG",
                [WORKSPACE_ERROR] = ", workspace check FAILED",
        };

        return summary[workspace_monitor_state(w)];
}

int manager_status_line(Manager *m, char **ret) {
        unsigned n_files = 0;
        char *s;

        for (char **f = m->config->files; f && *f; f++)
                n_files++;
        if (asprintf(
                    &s, "%s%s%s%s; health: %s; config from %u file%s%s%s",
                    m->state == MANAGER_RUNNING ? "Running" : manager_state_to_string(m->state),
                    m->config_start->source ? "" : ", no workspace configured",
                    m->workspace ? manager_workspace_summary(m->workspace) : "",
                    m->drain ? drain_status_summary(m->drain) : "", health_summary(m->health),
                    n_files, n_files == 1 ? "" : "s",
                    m->last_reload_failed ? "; last reload FAILED, old configuration in use" : "",
                    m->restart_pending && m->restart_pending[0]
                            ? "; restart needed for new settings"
                            : "") < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void manager_notify_status(Manager *m, const char *extra) {
        _cleanup_free_ char *line = NULL;

        if (manager_status_line(m, &line) < 0)
                return;
        (void)sd_notifyf(false, "%s%sSTATUS=%s", extra ? extra : "", extra ? "\n" : "", line);
}

static void manager_on_workspace_change(WorkspaceMonitor *w, WorkspaceState state, void *userdata) {
        Manager *m = userdata;

        if (m->links) /* links are made only on a healthy share */
                links_manager_set_share_ready(m->links, state == WORKSPACE_OK);
        if (m->workspace_mount)
                workspace_mount_on_state(m->workspace_mount, state, workspace_monitor_error(w));
        manager_notify_status(m, NULL);
}

static void manager_on_health_change(Health *h, HealthVerdict overall, void *userdata) {
        manager_notify_status(userdata, NULL);
}

static void manager_on_workspace_recheck(void *userdata) {
        Manager *m = userdata;

        if (m->workspace)
                (void)workspace_monitor_check_now(m->workspace);
}

static void manager_on_drain_health(bool draining, void *userdata) {
        Manager *m = userdata;

        m->draining = draining;
        if (m->health)
                health_set_draining(m->health, draining);
        manager_notify_status(m, NULL);
}

/* [Jobs] GPUs=auto with ExpectedGPUs=auto: jobs get the GPUs NVML found. */
static void manager_on_gpu_read(GpuMonitor *g, GpuVerdict overall, bool changed, void *userdata) {
        Manager *m = userdata;

        if (m->jobs && m->config_start->jobs_gpus == CONF_JOBS_GPUS_AUTO &&
            m->config_start->expected_gpus < 0 && gpu_monitor_count(g) >= 0)
                job_runner_set_gpus(m->jobs, (unsigned)gpu_monitor_count(g));
}

static int manager_start_jobs(Manager *m) {
        const Config *c = m->config_start;
        const JobRunnerConfig jc = {
                .state_directory = c->state_directory,
                .slots = (unsigned)c->jobs_slots,
                .gpus = c->jobs_gpus >= 0      ? (unsigned)c->jobs_gpus
                        : c->expected_gpus > 0 ? (unsigned)c->expected_gpus
                        : m->gpu && gpu_monitor_count(m->gpu) > 0
                                ? (unsigned)gpu_monitor_count(m->gpu)
                                : 0,
                .stop_grace_usec = c->jobs_stop_grace_usec,
        };
        int r;

        if (!c->jobs_enabled) {
                log_info("Job queue disabled ([Jobs] Enabled=no)");
                return 0;
        }
        r = job_runner_new(m->event, NULL, &jc, &m->jobs);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the job queue: %m");
        /* Not fatal: without systemd the agent works on and submit says why it cannot. */
        (void)job_runner_start(m->jobs);
        return 0;
}

static int manager_start_drain(Manager *m) {
        const Config *c = m->config_start;
        const DrainConfig dc = {
                .state_directory = c->state_directory,
                .mount_point = c->mount_point,
                .nologin_path = c->drain_nologin_file,
                .exec_start = c->drain_exec_start,
                .exec_stop = c->drain_exec_stop,
                .hook_timeout_usec = c->drain_hook_timeout_usec,
                .flush_budget_usec = c->drain_flush_budget_usec,
                .flush_timeout_usec = c->drain_flush_timeout_usec,
                .notify_users = c->drain_notify_users,
                .scheduled_events = c->drain_scheduled_events,
                .metadata_endpoint = c->metadata_endpoint,
                .vm_name = c->drain_vm_name,
                .poll_interval_usec = c->drain_poll_interval_usec,
                .shutdown_inhibitor = c->drain_shutdown_inhibitor,
                .manual_job_wait_usec = c->drain_manual_job_wait_usec,
                .job_stop_grace_usec = c->jobs_stop_grace_usec,
        };
        int r;

        r = drain_new(m->event, &dc, &m->drain);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the drain: %m");
        drain_set_health_hook(m->drain, manager_on_drain_health, m);
        /* Before drain_start(): a drain resumed after a restart asks the runner at once. */
        drain_set_job_runner(m->drain, m->jobs);
        r = drain_start(m->drain);
        if (r < 0)
                return log_error_errno(r, "Failed to start the drain: %m");
        return 0;
}

/* ---- reload --------------------------------------------------------------------------------- */

typedef struct ReloadChanges {
        json_object *changed;
        char **restart_pending;
        int r;
} ReloadChanges;

static void
manager_on_config_change(const char *section, const char *key, bool needs_restart, void *userdata) {
        ReloadChanges *ch = userdata;
        _cleanup_free_ char *name = NULL;
        json_object *o;

        if (asprintf(&name, "%s.%s", section, key) < 0) {
                ch->r = -ENOMEM;
                return;
        }
        log_info(
                "Configuration: %s changed%s", name,
                needs_restart ? " (takes effect after a restart)" : "");
        if (ch->changed) {
                o = json_object_new_object();
                if (!o || json_add(o, "key", json_object_new_string(name), false) < 0 ||
                    json_add(o, "needs_restart", json_object_new_boolean(needs_restart), false) <
                            0 ||
                    json_object_array_add(ch->changed, o) < 0) {
                        json_object_put(o);
                        ch->r = -ENOMEM;
                }
        }
}

/* Collects the restart-only keys that differ from the configuration the agent started with. */
static void
manager_on_restart_key(const char *section, const char *key, bool needs_restart, void *userdata) {
        ReloadChanges *ch = userdata;
        size_t n = 0;
        char **l;

        if (!needs_restart)
                return;
        while (ch->restart_pending && ch->restart_pending[n])
                n++;
        l = realloc(ch->restart_pending, (n + 2) * sizeof(char *));
        if (!l) {
                ch->r = -ENOMEM;
                return;
        }
        ch->restart_pending = l;
        l[n + 1] = NULL;
        if (asprintf(&l[n], "%s.%s", section, key) < 0) {
                l[n] = NULL;
                ch->r = -ENOMEM;
        }
}

int manager_reload(Manager *m, json_object *report) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        ReloadChanges ch = {};
        int r;

        m->state = MANAGER_RELOADING;
        (void)sd_notifyf(
                false, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=Reloading configuration",
                (unsigned long long)now_monotonic_ns() / 1000ULL);

        r = config_load(m->config_path, m->config_path_required, m->config_dropin_dir, &c, &error);
        m->n_reloads++;
        m->last_reload_realtime_usec = now_realtime_usec();
        free(m->last_reload_error);
        m->last_reload_error = NULL;
        m->state = MANAGER_RUNNING;
        if (r < 0) {
                m->last_reload_failed = true;
                if (!error && asprintf(&error, "%s", strerror(-r)) < 0)
                        error = NULL;
                m->last_reload_error = error ? strdup(error) : NULL;
                (void)log_struct(
                        LOG_ERR, r,
                        ((const char *[]){POOLAGENT_MESSAGE_CONFIG_RELOAD_FAILED, NULL}),
                        "Configuration reload failed, keeping the old configuration:\n%s",
                        error ? error : "out of memory");
                if (report && error)
                        (void)json_add(report, "error", json_object_new_string(error), false);
                manager_notify_status(m, "READY=1");
                return r;
        }

        if (report) {
                ch.changed = json_object_new_array();
                if (!ch.changed || json_add(report, "changed", ch.changed, false) < 0)
                        ch.changed = NULL;
        }
        (void)config_diff(m->config, c, manager_on_config_change, &ch);
        (void)config_diff(m->config_start, c, manager_on_restart_key, &ch);
        strv_free(m->restart_pending);
        m->restart_pending = TAKE_PTR(ch.restart_pending);
        if (m->config != m->config_start)
                config_free(m->config);
        m->config = TAKE_PTR(c);
        m->config_loaded_realtime_usec = m->last_reload_realtime_usec;
        m->last_reload_failed = false;
        manager_apply_config(m);
        if (report)
                (void)json_add(report, "restart_pending", json_strv(m->restart_pending), false);

        (void)log_struct(
                LOG_INFO, 0, ((const char *[]){POOLAGENT_MESSAGE_CONFIG_RELOADED, NULL}),
                "Configuration reloaded%s",
                m->restart_pending && m->restart_pending[0]
                        ? "; some changes take effect after a restart"
                        : "");
        manager_notify_status(m, "READY=1");
        return ch.r;
}

/* ---- control commands ----------------------------------------------------------------------- */

static int manager_on_status(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        json_object *you;
        int r;

        r = manager_status_json(m, result);
        if (r < 0)
                return r;
        you = json_object_new_object();
        if (!you || json_add(result, "peer", you, false) < 0)
                return -ENOMEM;
        r = json_add(you, "uid", json_object_new_int64(peer->uid), false);
        if (r >= 0)
                r = json_add(you, "admin", json_object_new_boolean(peer->admin), false);
        return r;
}

static int manager_on_version(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        return json_add(result, "version", json_object_new_string(PROJECT_VERSION), false);
}

static int manager_on_reload(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        json_object *err;
        int r;

        log_info(
                "Reload requested over the control socket by UID %u (PID %d)", (unsigned)peer->uid,
                (int)peer->pid);
        r = manager_reload(m, result);
        if (r < 0 && json_object_object_get_ex(result, "error", &err))
                *reterr_message = strdup(json_object_get_string(err));
        return r;
}

static int manager_on_links(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;

        return links_manager_on_control(
                m->links, m->control, peer, request, result, reterr_message);
}

static int manager_on_health(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        return manager_health_json(userdata, result);
}

static int manager_on_drain(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        json_object *v;
        bool cancel;
        int r;

        if (!m->drain)
                return -EOPNOTSUPP;
        cancel = json_object_object_get_ex(request, "cancel", &v) && json_object_get_boolean(v);
        log_notice(
                "Drain %s requested over the control socket by UID %u (PID %d)",
                cancel ? "cancel" : "start", (unsigned)peer->uid, (int)peer->pid);
        r = cancel ? drain_cancel(m->drain) : drain_start_manual(m->drain);
        if (r == -EALREADY)
                *reterr_message = strdup("a drain is already running");
        else if (r == -ENOENT)
                *reterr_message = strdup("the VM is not drained");
        if (r < 0)
                return r;
        manager_notify_status(m, NULL);
        return drain_status_json(m->drain, result);
}

static void manager_on_flush_done(int r, int64_t dirty_bytes, const char *note, void *userdata) {
        ControlDeferred *d = userdata;
        json_object *o = json_object_new_object();

        if (o && (json_add(o, "dirty_bytes", json_object_new_int64(dirty_bytes), false) < 0 ||
                  json_add(o, "note", json_object_new_string(note), false) < 0)) {
                json_object_put(o);
                o = NULL;
        }
        if (r < 0) {
                json_object_put(o);
                o = NULL;
        }
        control_deferred_reply(d, r < 0 ? r : 0, o, note);
}

static int manager_on_flush(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        uint64_t timeout = m->config->drain_flush_timeout_usec;
        ControlDeferred *d = NULL;
        int r;

        if (!m->drain)
                return -EOPNOTSUPP;
        log_info(
                "Flush requested over the control socket by UID %u (PID %d)", (unsigned)peer->uid,
                (int)peer->pid);
        r = control_server_defer(m->control, timeout + 5 * USEC_PER_SEC, &d);
        if (r < 0)
                return r;
        r = drain_flush(m->drain, timeout, manager_on_flush_done, d);
        if (r < 0) {
                control_deferred_free(d);
                return r;
        }
        return CONTROL_REPLY_DEFERRED;
}

/* ---- jobs ---- */

/* The strings of request[key] (borrowed from the request), at most max; missing: NULL. */
static int request_strv(json_object *request, const char *key, size_t max, const char ***ret) {
        json_object *a;
        const char **l;
        size_t n;

        *ret = NULL;
        if (!json_object_object_get_ex(request, key, &a))
                return 0;
        if (!json_object_is_type(a, json_type_array) || (n = json_object_array_length(a)) > max)
                return -EINVAL;
        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(a, i);

                if (!json_object_is_type(v, json_type_string)) {
                        free(l);
                        return -EINVAL;
                }
                l[i] = json_object_get_string(v);
        }
        *ret = l;
        return 0;
}

/* request[key] as a number in 0..max; missing: def. */
static int
request_uint(json_object *request, const char *key, int64_t max, int64_t def, int64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(request, key, &v)) {
                *ret = def;
                return 0;
        }
        if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
            json_object_get_int64(v) > max)
                return -EINVAL;
        *ret = json_object_get_int64(v);
        return 0;
}

static int manager_jobs_check(Manager *m, char **reterr_message) {
        if (m->jobs)
                return 0;
        *reterr_message = strdup("the job queue is disabled on this VM ([Jobs] Enabled=no)");
        return -EOPNOTSUPP;
}

static int manager_on_submit(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        _cleanup_free_ const char **argv = NULL, **env = NULL;
        const char *cwd = NULL, *name = NULL;
        int64_t cpus = 0, gpus = 0;
        uint64_t id = 0;
        json_object *v;
        char unit[64];
        int r;

        r = manager_jobs_check(m, reterr_message);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(request, "cwd", &v) &&
            json_object_is_type(v, json_type_string))
                cwd = json_object_get_string(v);
        if (json_object_object_get_ex(request, "name", &v))
                name = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        r = request_strv(request, "argv", JOB_QUEUE_ARGV_MAX, &argv);
        if (r >= 0)
                r = request_strv(request, "env", JOB_QUEUE_ENV_MAX, &env);
        if (r >= 0)
                r = request_uint(request, "cpus", JOB_QUEUE_JOBS_MAX * 64, 1, &cpus);
        if (r >= 0)
                r = request_uint(request, "gpus", JOB_QUEUE_GPUS_MAX, 0, &gpus);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !argv || !argv[0] || !cwd) {
                if (asprintf(
                            reterr_message,
                            "a job needs \"argv\" (at most %u strings), \"cwd\" (a string), and "
                            "optionally \"env\" (at most %u strings), \"name\", \"cpus\", \"gpus\"",
                            JOB_QUEUE_ARGV_MAX, JOB_QUEUE_ENV_MAX) < 0)
                        *reterr_message = NULL;
                return -EINVAL;
        }
        /* The identity is the peer's (SO_PEERCRED), never anything in the request. */
        r = job_runner_submit(
                m->jobs, peer->uid, peer->gid, name, (char *const *)argv, (char *const *)env, cwd,
                (unsigned)cpus, (unsigned)gpus, &id, reterr_message);
        if (r < 0)
                return r;
        log_info(
                "Job %" PRIu64 " submitted over the control socket by UID %u (PID %d)", id,
                (unsigned)peer->uid, (int)peer->pid);
        (void)snprintf(unit, sizeof(unit), JOB_RUNNER_UNIT_PREFIX "%" PRIu64 ".service", id);
        r = json_add(result, "id", json_object_new_uint64(id), false);
        if (r >= 0)
                r = json_add(result, "unit", json_object_new_string(unit), false);
        return r;
}

static int manager_on_jobs(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        int r;

        if (!m->jobs) {
                r = json_add(result, "jobs", json_object_new_array(), false);
                if (r >= 0)
                        r = json_add(result, "enabled", json_object_new_boolean(false), false);
                return r;
        }
        r = job_runner_list_json(m->jobs, peer->uid, peer->admin, result);
        if (r >= 0)
                r = json_add(result, "enabled", json_object_new_boolean(true), false);
        return r;
}

/* A message for the errors of cancel and logs about job id. */
static int manager_job_error(int r, int64_t id, char **reterr_message) {
        int k = 0;

        switch (r) {
        case -ENOENT:
                k = asprintf(reterr_message, "there is no job %" PRId64, id);
                break;
        case -EPERM:
                k = asprintf(reterr_message, "job %" PRId64 " is not yours", id);
                break;
        case -EALREADY:
                k = asprintf(reterr_message, "job %" PRId64 " has already ended", id);
                break;
        case -EHOSTDOWN:
                k = asprintf(reterr_message, "job %" PRId64 ": systemd is not reachable", id);
                break;
        default:
                break;
        }
        if (k < 0)
                *reterr_message = NULL;
        return r;
}

static int manager_on_cancel(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        int64_t id = 0;
        int r;

        r = manager_jobs_check(m, reterr_message);
        if (r < 0)
                return r;
        if (request_uint(request, "id", INT64_MAX, 0, &id) < 0 || id == 0) {
                *reterr_message = strdup("\"id\" must be a job number");
                return -EINVAL;
        }
        r = job_runner_cancel(m->jobs, (uint64_t)id, peer->uid, peer->admin);
        if (r < 0)
                return manager_job_error(r, id, reterr_message);
        log_info(
                "Job %" PRId64 " cancelled over the control socket by UID %u (PID %d)", id,
                (unsigned)peer->uid, (int)peer->pid);
        return json_add(result, "id", json_object_new_int64(id), false);
}

static int manager_on_logs(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        Manager *m = userdata;
        int64_t id = 0, offset = -1;
        json_object *v;
        int r;

        r = manager_jobs_check(m, reterr_message);
        if (r < 0)
                return r;
        if (request_uint(request, "id", INT64_MAX, 0, &id) < 0 || id == 0 ||
            (json_object_object_get_ex(request, "offset", &v) &&
             request_uint(request, "offset", INT64_MAX, -1, &offset) < 0)) {
                *reterr_message = strdup("\"id\" must be a job number, \"offset\" a byte offset");
                return -EINVAL;
        }
        r = job_runner_logs_json(m->jobs, (uint64_t)id, peer->uid, peer->admin, offset, result);
        if (r < 0)
                return manager_job_error(r, id, reterr_message);
        return 0;
}

/* Later subsystems add their rows here (health, drain, flush, jobs, submit, cancel, links). */
static const ControlCommand manager_commands[] = {
        {"status", manager_on_status, false},
        {"version", manager_on_version, false},
        {"reload", manager_on_reload, true},
        {"links", manager_on_links, false}, /* "sync" checks admin itself */
        {"drain", manager_on_drain, true},
        {"flush", manager_on_flush, true},
        {"health", manager_on_health, false},
        /* Jobs: every user; each sees, cancels and reads only its own (admins: all). */
        {"submit", manager_on_submit, false},
        {"jobs", manager_on_jobs, false},
        {"cancel", manager_on_cancel, false},
        {"logs", manager_on_logs, false},
};

/* ---- lifecycle ------------------------------------------------------------------------------ */

static int
manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received SIGHUP, reloading the configuration");
        (void)manager_reload(userdata, NULL);
        return 0;
}

static void manager_on_stop_flushed(int r, int64_t dirty_bytes, const char *note, void *userdata) {
        Manager *m = userdata;

        log_full_errno(r < 0 ? LOG_WARNING : LOG_INFO, r, "Final flush before stopping: %s", note);
        (void)sd_event_exit(m->event, 0);
}

static int
manager_on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        m->state = MANAGER_STOPPING;
        (void)log_struct(
                LOG_INFO, 0, ((const char *[]){POOLAGENT_MESSAGE_STOPPING, NULL}),
                "Received %s, stopping", strsignal((int)si->ssi_signo));
        (void)sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        /* A shutdown that bypasses logind still gets a final flush of a healthy workspace,
         * bounded by StopFlushTimeout=; a second signal stops at once. */
        if (!m->stop_flush_started && m->drain && m->workspace &&
            workspace_monitor_state(m->workspace) == WORKSPACE_OK &&
            drain_flush(
                    m->drain, m->config->drain_stop_flush_timeout_usec, manager_on_stop_flushed,
                    m) >= 0) {
                m->stop_flush_started = true;
                log_info("Flushing the workspace before stopping");
                return 0;
        }
        return sd_event_exit(m->event, 0);
}

int manager_new(const ManagerConfigSource *source, Config *config, Manager **ret) {
        _cleanup_(config_freep) Config *c = config;
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->admin_gid = (gid_t)-1;
        m->state = MANAGER_STARTING;
        m->started_realtime_usec = m->config_loaded_realtime_usec = now_realtime_usec();
        m->config_path = source->path ? strdup(source->path) : NULL;
        m->config_dropin_dir = source->dropin_dir ? strdup(source->dropin_dir) : NULL;
        m->config_path_required = source->path_required;
        if ((source->path && !m->config_path) || (source->dropin_dir && !m->config_dropin_dir))
                return -ENOMEM;
        m->config = m->config_start = TAKE_PTR(c);
        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        r = links_manager_new(m->event, &m->links);
        if (r < 0)
                return r;
        r = health_new(&m->health);
        if (r < 0)
                return r;
        health_set_change_callback(m->health, manager_on_health_change, m);
        *ret = TAKE_PTR(m);
        return 0;
}

int manager_start(Manager *m) {
        sigset_t mask;
        int r;

        manager_apply_config(m);

        (void)sigemptyset(&mask);
        (void)sigaddset(&mask, SIGTERM);
        (void)sigaddset(&mask, SIGINT);
        (void)sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(NEG_ERRNO(), "Failed to block signals: %m");
        r = sd_event_add_signal(m->event, NULL, SIGTERM, manager_on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, manager_on_terminate, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, manager_on_sighup, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up signal handling: %m");

        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");

        /* After the signals are blocked: the HTTP thread inherits the mask. */
        if (m->config_start->listen_address) {
                /* Not fatal: the mount, the links and the drain matter more than the endpoint,
                 * and a probe that gets no answer takes the VM out of rotation anyway. */
                r = health_http_new(m->health, m->config_start->listen_address, &m->health_http);
                if (r < 0)
                        log_error_errno(
                                r, "Failed to listen for HTTP on %s, running without /health: %m",
                                m->config_start->listen_address);
        }
        {
                DiskCheckConfig dc;

                manager_disk_config(m->config, m->config_start, &dc);
                r = disk_check_new(m->event, m->health, &dc, &m->disks);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the disk checks: %m");
        }
        {
                const GpuMonitorConfig gc = {
                        .library = m->config_start->nvml_library,
                        .metadata_endpoint = m->config_start->metadata_endpoint,
                        .expected = m->config->expected_gpus,
                        .interval_usec = m->config->gpu_check_interval_usec,
                        .timeout_usec = m->config->gpu_timeout_usec,
                };

                /* After the signals are blocked, like the HTTP thread (it blocks them anyway). */
                r = gpu_monitor_new(m->event, m->health, &gc, manager_on_gpu_read, m, &m->gpu);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the GPU check: %m");
        }
        r = unit_check_new(
                m->event, m->health, m->config->required_units, m->config->health_interval_usec,
                &m->units);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the unit checks: %m");

        r = control_server_new(
                m->event, m->config->control_socket, manager_commands, ELEMENTSOF(manager_commands),
                m, &m->control);
        if (r < 0)
                return log_error_errno(
                        r, "Failed to listen on control socket %s: %m%s", m->config->control_socket,
                        r == -EADDRINUSE ? " (another poolagentd is running)" : "");
        control_server_set_admin_gid(m->control, m->admin_gid);

        if (m->config_start->source) {
                const WorkspaceMountConfig mc = {
                        .source = m->config_start->source,
                        .mount_point = m->config_start->mount_point,
                        .credentials = m->config_start->credentials,
                        .cache_directory = m->config_start->cache_directory,
                        .mount_options = m->config_start->mount_options,
                        .recover_after_usec = m->config_start->recover_after_usec,
                };

                /* Before the monitor: its first result (at once) may already ask for a mount. */
                r = workspace_mount_new(m->event, &mc, &m->workspace_mount);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the workspace mount: %m");
                workspace_mount_set_recheck(m->workspace_mount, manager_on_workspace_recheck, m);
                r = workspace_monitor_new(
                        m->event, m->config_start->mount_point, WORKSPACE_FS_TYPE,
                        m->config->stat_timeout_usec, m->config->check_interval_usec,
                        manager_on_workspace_change, m, &m->workspace);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the workspace check: %m");
                r = workspace_health_new(
                        m->health, m->workspace, m->config_start->mount_point,
                        &m->workspace_health);
                if (r < 0)
                        return log_error_errno(r, "Failed to report the workspace's health: %m");
        }

        /* Without a workspace, MountPoint= is a plain directory and always ready. */
        links_manager_set_share_ready(
                m->links, !m->workspace || workspace_monitor_state(m->workspace) == WORKSPACE_OK);
        r = links_manager_start(m->links);
        if (r < 0)
                return log_error_errno(r, "Failed to set up user links: %m");

        r = manager_start_jobs(m);
        if (r < 0)
                return r;
        r = manager_start_drain(m);
        if (r < 0)
                return r;

        m->state = MANAGER_RUNNING;
        (void)log_struct(
                LOG_INFO, 0, ((const char *[]){POOLAGENT_MESSAGE_STARTED, NULL}),
                "poolagentd %s started, control socket %s", PROJECT_VERSION,
                control_server_path(m->control));
        manager_notify_status(m, "READY=1");
        return 0;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* Sources still report while they go (workspace_health_free() removes its checks): no
         * callback into a manager that is half gone. */
        if (m->health)
                health_set_change_callback(m->health, NULL, NULL);
        health_http_free(m->health_http); /* stops its thread before the state goes */
        drain_free(m->drain);             /* answers its waiting flush clients first */
        job_runner_free(m->jobs);         /* after the drain that uses it */
        links_manager_free(m->links);     /* answers its waiting clients first */
        control_server_free(m->control);
        workspace_health_free(m->workspace_health); /* before the monitor it listens to */
        workspace_monitor_free(m->workspace);
        workspace_mount_free(m->workspace_mount);
        disk_check_free(m->disks);
        gpu_monitor_free(m->gpu);
        unit_check_free(m->units);
        health_free(m->health); /* after every check source */
        sd_event_unref(m->event);
        if (m->config_start != m->config)
                config_free(m->config_start);
        config_free(m->config);
        free(m->config_path);
        free(m->config_dropin_dir);
        free(m->last_reload_error);
        strv_free(m->restart_pending);
        free(m);
        return NULL;
}
