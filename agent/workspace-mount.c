/* SPDX-License-Identifier: MIT */
#include "workspace-mount.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-login.h>

#include "child-watch.h"
#include "conf.h"
#include "log.h"
#include "message-ids.h"
#include "strbuf.h"
#include "workspace-monitor.h"

#define MOUNT_TIMEOUT_USEC (120 * USEC_PER_SEC)  /* azfilesfs until mounted, direct mode */
#define UNMOUNT_TIMEOUT_USEC (30 * USEC_PER_SEC) /* abort + lazy unmount in direct mode */
#define RETRY_MIN_USEC (5 * USEC_PER_SEC)
#define RETRY_MAX_USEC (300 * USEC_PER_SEC)
#define RESULT_MAX 160

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"

typedef enum MountAction {
        ACTION_IDLE,
        ACTION_MOUNTING,
        ACTION_RECOVERING, /* ending the old mount; a mount follows */
} MountAction;

static const char *const action_table[] = {
        [ACTION_IDLE] = "idle",
        [ACTION_MOUNTING] = "mounting",
        [ACTION_RECOVERING] = "recovering",
};

struct WorkspaceMount {
        sd_event *event; /* borrowed */
        char *source;
        char *mount_point;
        char *unit;    /* "srv-workspace.mount" */
        char *options; /* what azfilesfs gets after -o */
        uint64_t recover_after_usec;

        sd_bus *bus;               /* NULL: no systemd, azfilesfs is run directly */
        sd_bus_slot *job_removed;  /* JobRemoved subscription */
        sd_bus_slot *call;         /* the call in flight */
        char *job;                 /* the job whose end we wait for */
        ChildWatch *child;         /* azfilesfs or the unmount helper, direct mode */
        sd_event_source *retry;    /* the next mount attempt after a failure */
        sd_event_source *hung;     /* RecoverAfter= while the mount stays hung */
        uint64_t retry_delay_usec; /* the next backoff */

        MountAction action;
        WorkspaceState state; /* as last reported */
        unsigned attempts;    /* mounts started since the last success */
        unsigned recoveries;  /* dead or hung mounts ended, since start */
        char last_result[RESULT_MAX];

        WorkspaceRecheckCallback recheck;
        void *recheck_userdata;
};

/* ---- pure parts ----------------------------------------------------------------------------- */

static bool unit_char_plain(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == ':' || c == '_' || c == '.';
}

int mount_unit_name_from_path(const char *path, char **ret) {
        _cleanup_(strbuf_done) StrBuf b = {0};
        const char *p = path;
        bool first = true;

        if (!path || path[0] != '/')
                return -EINVAL;
        while (*p == '/')
                p++;
        if (!*p) { /* the root directory */
                *ret = strdup("-.mount");
                return *ret ? 0 : -ENOMEM;
        }
        while (*p) {
                size_t n = strcspn(p, "/");

                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return -EINVAL;
                if (!first && strbuf_append_char(&b, '-') < 0)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        char c = p[i];

                        /* A leading '.' and everything but [A-Za-z0-9:_.] become \xNN. */
                        if (unit_char_plain(c) && !(c == '.' && first && i == 0)) {
                                if (strbuf_append_char(&b, c) < 0)
                                        return -ENOMEM;
                        } else if (strbuf_appendf(&b, "\\x%02x", (unsigned)(unsigned char)c) < 0)
                                return -ENOMEM;
                }
                first = false;
                p += n;
                while (*p == '/')
                        p++;
        }
        if (strbuf_append(&b, ".mount") < 0)
                return -ENOMEM;
        return strbuf_steal(&b, ret);
}

int workspace_mount_options(const WorkspaceMountConfig *c, char **ret) {
        _cleanup_(strbuf_done) StrBuf b = {0};

        if ((c->credentials && strchr(c->credentials, ',')) || strchr(c->cache_directory, ','))
                return -EINVAL;
        if (c->credentials && strbuf_appendf(&b, "credentials=%s,", c->credentials) < 0)
                return -ENOMEM;
        if (strbuf_appendf(&b, "cache_dir=%s", c->cache_directory) < 0)
                return -ENOMEM;
        if (c->mount_options && *c->mount_options &&
            strbuf_appendf(&b, ",%s", c->mount_options) < 0)
                return -ENOMEM;
        return strbuf_steal(&b, ret);
}

/* ---- outcome -------------------------------------------------------------------------------- */

static void workspace_mount_start(WorkspaceMount *w);

static int workspace_mount_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        WorkspaceMount *w = userdata;

        w->retry = sd_event_source_disable_unref(w->retry);
        if (w->state == WORKSPACE_NOT_MOUNTED)
                workspace_mount_start(w);
        else if (w->recheck) /* the check's result decides */
                w->recheck(w->recheck_userdata);
        return 0;
}

static void workspace_mount_schedule_retry(WorkspaceMount *w) {
        int r;

        if (w->retry)
                return;
        r = sd_event_add_time_relative(
                w->event, &w->retry, CLOCK_MONOTONIC, w->retry_delay_usec, 0,
                workspace_mount_on_retry, w);
        if (r < 0)
                log_warning_errno(
                        r, "Failed to schedule the next mount of %s, ignoring: %m", w->mount_point);
        w->retry_delay_usec = MIN(w->retry_delay_usec * 2, (uint64_t)RETRY_MAX_USEC);
}

/* The end of a mount or of a recovery step. ok: it did what it should. */
static void workspace_mount_finished(WorkspaceMount *w, bool ok, const char *result) {
        MountAction was = w->action;

        (void)snprintf(w->last_result, sizeof(w->last_result), "%s", result);
        w->action = ACTION_IDLE;
        if (was == ACTION_RECOVERING) {
                if (!ok)
                        log_warning(
                                "Ending the old mount of %s: %s; mounting anyway", w->mount_point,
                                result);
                workspace_mount_start(w);
                return;
        }
        if (!ok)
                log_error(
                        "Mounting the workspace at %s failed: %s (attempt %u, next in %" PRIu64
                        " s)",
                        w->mount_point, result, w->attempts, w->retry_delay_usec / USEC_PER_SEC);
        /* Also after a mount that said it worked: until a check finds it mounted (which cancels
         * this), the next attempt stays due. */
        workspace_mount_schedule_retry(w);
        if (w->recheck)
                w->recheck(w->recheck_userdata);
}

/* ---- direct mode: azfilesfs and an unmount helper as children ------------------------------- */

static void workspace_mount_on_child(ChildWatch *c, int status, bool timed_out, void *userdata) {
        WorkspaceMount *w = userdata;
        char result[RESULT_MAX];

        w->child = child_watch_free(w->child);
        if (timed_out)
                (void)snprintf(result, sizeof(result), "timed out, killed");
        else if (WIFEXITED(status))
                (void)snprintf(result, sizeof(result), "exit status %d", WEXITSTATUS(status));
        else
                (void)snprintf(result, sizeof(result), "killed by signal %d", WTERMSIG(status));
        workspace_mount_finished(
                w, !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "done" : result);
}

static int workspace_mount_spawn(WorkspaceMount *w, const char *what, bool unmount) {
        _cleanup_free_ char *text = NULL, *fstype = NULL, *dev = NULL;
        size_t size = 0;
        pid_t pid;
        int r;

        if (unmount) { /* found here, in the parent: the child only writes and unmounts */
                r = mountinfo_read(&text, &size);
                if (r >= 0)
                        r = mountinfo_find_dev(text, size, w->mount_point, &fstype, &dev);
                if (r < 0)
                        return r;
        }
        pid = fork();
        if (pid < 0)
                return NEG_ERRNO();
        if (pid == 0) {
                unsigned major_, minor_;

                if (!unmount) {
                        /* What mount.fuse3 would run, without its sanitised PATH. */
                        execlp("azfilesfs", "azfilesfs", w->source, w->mount_point, "-o",
                               w->options, (char *)NULL);
                        _exit(127);
                }
                /* End the FUSE connection (what a SIGKILL of the daemon would do): every
                 * process waiting on it gets ENOTCONN, and the daemon sees ENODEV and exits. */
                if (dev && fstype && streq(fstype, WORKSPACE_FS_TYPE) &&
                    sscanf(dev, "%u:%u", &major_, &minor_) == 2) {
                        char path[64];
                        int fd;

                        (void)snprintf(
                                path, sizeof(path), "/sys/fs/fuse/connections/%u/abort",
                                (unsigned)makedev(major_, minor_));
                        fd = open(path, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 && errno == ENOENT &&
                            mount("fusectl", "/sys/fs/fuse/connections", "fusectl",
                                  MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) >= 0)
                                /* Not mounted yet (systemd mounts it at boot; we are not under
                                 * systemd here). */
                                fd = open(path, O_WRONLY | O_CLOEXEC);
                        if (fd >= 0) {
                                (void)!write(fd, "1", 1);
                                (void)close(fd);
                        }
                }
                _exit(r > 0 && umount2(w->mount_point, MNT_DETACH) < 0 && errno != EINVAL ? 1 : 0);
        }
        r = child_watch_new(
                w->event, pid, unmount ? UNMOUNT_TIMEOUT_USEC : MOUNT_TIMEOUT_USEC,
                workspace_mount_on_child, w, &w->child);
        if (r < 0)
                return r;
        log_debug("Started %s (PID %d) for %s", what, (int)pid, w->mount_point);
        return 0;
}

/* ---- systemd mode: a mount unit, started and stopped through the manager -------------------- */

static int workspace_mount_on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        WorkspaceMount *w = userdata;
        const char *job, *unit, *result;
        char text[RESULT_MAX];
        uint32_t id;

        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        if (!w->job || !streq(job, w->job))
                return 0;
        free(w->job);
        w->job = NULL;
        (void)snprintf(text, sizeof(text), "job %s", result);
        workspace_mount_finished(w, streq(result, "done"), streq(result, "done") ? "done" : text);
        return 0;
}

static int workspace_mount_on_job_reply(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        WorkspaceMount *w = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        const char *job;
        char text[RESULT_MAX];

        w->call = sd_bus_slot_unref(w->call);
        if (err) {
                (void)snprintf(text, sizeof(text), "%s", err->message ? err->message : err->name);
                workspace_mount_finished(w, false, text);
                return 0;
        }
        if (sd_bus_message_read(m, "o", &job) < 0 || !(w->job = strdup(job))) {
                workspace_mount_finished(w, false, "malformed reply from systemd");
                return 0;
        }
        return 0;
}

static int workspace_mount_call(WorkspaceMount *w, const char *method, sd_bus_message_handler_t h) {
        return sd_bus_call_method_async(
                w->bus, &w->call, SD_DEST, SD_PATH, SD_MANAGER, method, h, w, "ss", w->unit,
                "replace");
}

static int workspace_mount_on_transient_reply(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        WorkspaceMount *w = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        int r;

        if (err && sd_bus_error_has_name(err, "org.freedesktop.systemd1.UnitExists")) {
                /* The unit comes from a file (fstab, an admin's unit) or is an old transient one
                 * still loaded: start it as it is. */
                w->call = sd_bus_slot_unref(w->call);
                r = workspace_mount_call(w, "StartUnit", workspace_mount_on_job_reply);
                if (r < 0)
                        workspace_mount_finished(w, false, "cannot call StartUnit");
                return 0;
        }
        return workspace_mount_on_job_reply(m, userdata, e);
}

static int workspace_mount_start_transient(WorkspaceMount *w) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *description = NULL, *own_unit = NULL;
        int r;

        /* Ordered before the agent's own unit: at shutdown the agent stops (and flushes) while
         * the mount is still there, and the mount goes after it. */
        (void)sd_pid_get_unit(0, &own_unit); /* not in a unit (tests): no ordering */

        if (asprintf(&description, "Team workspace (%s)", w->source) < 0)
                return -ENOMEM;
        r = sd_bus_message_new_method_call(
                w->bus, &m, SD_DEST, SD_PATH, SD_MANAGER, "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(
                        m, "ss", w->unit, "fail"); /* "fail": never replace a job in flight */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(
                        m, "(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", description, "What", "s",
                        w->source, "Where", "s", w->mount_point, "Type", "s", WORKSPACE_FS_TYPE,
                        "Options", "s", w->options, "LazyUnmount", "b", 1);
        if (r >= 0 && own_unit)
                r = sd_bus_message_append(m, "(sv)", "Before", "as", 1, own_unit);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r < 0)
                return r;
        return sd_bus_call_async(w->bus, &w->call, m, workspace_mount_on_transient_reply, w, 0);
}

static int workspace_mount_on_kill_reply(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        WorkspaceMount *w = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        int r;

        w->call = sd_bus_slot_unref(w->call);
        if (err)
                log_warning(
                        "Killing the processes of %s: %s, ignoring", w->unit,
                        err->message ? err->message : err->name);
        /* The daemon is gone, the mount dead: unmount it (lazily) through its unit. */
        r = workspace_mount_call(w, "StopUnit", workspace_mount_on_job_reply);
        if (r < 0)
                workspace_mount_finished(w, false, "cannot call StopUnit");
        return 0;
}

/* ---- actions -------------------------------------------------------------------------------- */

static void workspace_mount_start(WorkspaceMount *w) {
        int r;

        if (w->action != ACTION_IDLE)
                return;
        w->retry = sd_event_source_disable_unref(w->retry);
        w->action = ACTION_MOUNTING;
        w->attempts++;
        log_info(
                "Mounting the workspace %s at %s (%s, attempt %u)", w->source, w->mount_point,
                w->bus ? w->unit : "azfilesfs", w->attempts);
        r = w->bus ? workspace_mount_start_transient(w)
                   : workspace_mount_spawn(w, "azfilesfs", false);
        if (r < 0) {
                char text[RESULT_MAX];

                (void)snprintf(text, sizeof(text), "cannot start: %s", strerror(-r));
                workspace_mount_finished(w, false, text);
        }
}

static void workspace_mount_recover(WorkspaceMount *w, const char *why) {
        char f_path[PATH_MAX + 32];
        int r;

        if (w->action != ACTION_IDLE)
                return;
        w->hung = sd_event_source_disable_unref(w->hung);
        w->action = ACTION_RECOVERING;
        w->recoveries++;
        (void)snprintf(f_path, sizeof(f_path), "POOLAGENT_WORKSPACE=%s", w->mount_point);
        (void)log_struct(
                LOG_WARNING, 0,
                ((const char *[]){POOLAGENT_MESSAGE_WORKSPACE_RECOVER, f_path, NULL}),
                "Workspace %s is %s: ending its FUSE connection and mounting it again (dirty data "
                "stays in the cache and is uploaded by the new mount)",
                w->mount_point, why);
        if (w->bus)
                r = sd_bus_call_method_async(
                        w->bus, &w->call, SD_DEST, SD_PATH, SD_MANAGER, "KillUnit",
                        workspace_mount_on_kill_reply, w, "ssi", w->unit, "all", SIGKILL);
        else
                r = workspace_mount_spawn(w, "unmount helper", true);
        if (r < 0) {
                char text[RESULT_MAX];

                (void)snprintf(text, sizeof(text), "cannot end the old mount: %s", strerror(-r));
                workspace_mount_finished(w, false, text);
        }
}

static int workspace_mount_on_hung(sd_event_source *s, uint64_t usec, void *userdata) {
        WorkspaceMount *w = userdata;

        w->hung = sd_event_source_disable_unref(w->hung);
        if (w->state == WORKSPACE_HUNG)
                workspace_mount_recover(w, "hung");
        return 0;
}

void workspace_mount_on_state(WorkspaceMount *w, WorkspaceState state, int error) {
        int r;

        w->state = state;
        if (state != WORKSPACE_HUNG)
                w->hung = sd_event_source_disable_unref(w->hung);
        switch (state) {
        case WORKSPACE_OK:
                if (w->attempts > 0)
                        log_info("Workspace %s is mounted", w->mount_point);
                w->attempts = 0;
                w->retry_delay_usec = RETRY_MIN_USEC;
                w->retry = sd_event_source_disable_unref(w->retry);
                break;
        case WORKSPACE_NOT_MOUNTED:
                if (!w->retry) /* after a failure, the backoff decides */
                        workspace_mount_start(w);
                break;
        case WORKSPACE_ERROR:
                if (error == ENOTCONN || error == ECONNABORTED)
                        workspace_mount_recover(w, "dead (its FUSE daemon is gone)");
                break;
        case WORKSPACE_HUNG:
                if (w->hung || w->action != ACTION_IDLE)
                        break;
                r = sd_event_add_time_relative(
                        w->event, &w->hung, CLOCK_MONOTONIC, w->recover_after_usec, 0,
                        workspace_mount_on_hung, w);
                if (r < 0)
                        log_warning_errno(r, "Failed to arm the hung-mount timer, ignoring: %m");
                break;
        default: /* unknown, or another file system there: never touched */
                break;
        }
}

void workspace_mount_set_recheck(WorkspaceMount *w, WorkspaceRecheckCallback cb, void *userdata) {
        w->recheck = cb;
        w->recheck_userdata = userdata;
}

int workspace_mount_status_json(const WorkspaceMount *w, json_object *o) {
        json_object *m = json_object_new_object();

        if (!m)
                return -ENOMEM;
        if (json_object_object_add(m, "unit", json_object_new_string(w->unit)) < 0 ||
            json_object_object_add(
                    m, "mode", json_object_new_string(w->bus ? "systemd" : "direct")) < 0 ||
            json_object_object_add(m, "action", json_object_new_string(action_table[w->action])) <
                    0 ||
            json_object_object_add(m, "attempts", json_object_new_int64(w->attempts)) < 0 ||
            json_object_object_add(m, "recoveries", json_object_new_int64(w->recoveries)) < 0 ||
            json_object_object_add(
                    m, "last_result",
                    w->last_result[0] ? json_object_new_string(w->last_result) : NULL) < 0 ||
            json_object_object_add(o, "mount", m) < 0) {
                json_object_put(m);
                return -ENOMEM;
        }
        return 0;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

WorkspaceMount *workspace_mount_free(WorkspaceMount *w) {
        if (!w)
                return NULL;
        /* An azfilesfs not yet mounted is killed; the mount it makes, if any, stays: the next agent
         * finds it mounted. */
        child_watch_free(w->child);
        sd_bus_slot_unref(w->call);
        sd_bus_slot_unref(w->job_removed);
        if (w->bus) {
                (void)sd_bus_detach_event(w->bus);
                sd_bus_flush_close_unref(w->bus);
        }
        sd_event_source_disable_unref(w->retry);
        sd_event_source_disable_unref(w->hung);
        free(w->job);
        free(w->source);
        free(w->mount_point);
        free(w->unit);
        free(w->options);
        free(w);
        return NULL;
}

static void workspace_mount_connect(WorkspaceMount *w) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (sd_booted() <= 0) {
                log_info("systemd is not init here: the agent runs azfilesfs itself to mount the "
                         "workspace");
                return;
        }
        r = sd_bus_open_system(&bus);
        if (r >= 0)
                r = sd_bus_attach_event(bus, w->event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_match_signal_async(
                        bus, &w->job_removed, SD_DEST, SD_PATH, SD_MANAGER, "JobRemoved",
                        workspace_mount_on_job_removed, NULL, w);
        /* JobRemoved is only sent while someone is subscribed. */
        if (r >= 0)
                r = sd_bus_call_method_async(
                        bus, NULL, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe", NULL, NULL, "");
        if (r < 0) {
                w->job_removed = sd_bus_slot_unref(w->job_removed);
                log_warning_errno(
                        r, "Cannot talk to systemd on the system bus (%m): the "
                           "agent runs azfilesfs itself to mount the workspace");
                return;
        }
        w->bus = TAKE_PTR(bus);
}

int workspace_mount_new(sd_event *event, const WorkspaceMountConfig *c, WorkspaceMount **ret) {
        _cleanup_(workspace_mount_freep) WorkspaceMount *w = NULL;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->event = event;
        w->recover_after_usec = c->recover_after_usec;
        w->retry_delay_usec = RETRY_MIN_USEC;
        w->state = WORKSPACE_UNKNOWN;
        w->source = strdup(c->source);
        w->mount_point = strdup(c->mount_point);
        if (!w->source || !w->mount_point)
                return -ENOMEM;
        r = mount_unit_name_from_path(c->mount_point, &w->unit);
        if (r < 0)
                return r;
        r = workspace_mount_options(c, &w->options);
        if (r < 0)
                return r;
        workspace_mount_connect(w);
        *ret = TAKE_PTR(w);
        return 0;
}
