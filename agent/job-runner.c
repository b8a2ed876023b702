/* SPDX-License-Identifier: MIT */
#include "job-runner.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "event-util.h"
#include "job-queue.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"
#include "time-util.h"

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define JOB_RUNNER_CALL_TIMEOUT_USEC (25U * 1000000U)
#define JOB_RUNNER_RECONNECT_USEC (5U * 1000000U)
/* Every active job's unit is read again this often: a signal missed or a read that failed does
 * not leave a job "running" for ever. */
#define JOB_RUNNER_RESYNC_USEC (60U * 1000000U)
#define JOB_RUNNER_LIST_MAX 100U              /* jobs in one "jobs" reply (the newest) */
#define JOB_RUNNER_ACTIVE_MAX 20U             /* active jobs in the status object */
#define JOB_RUNNER_LIST_BYTES (40U * 1024U)   /* their JSON, well within the reply cap */
#define JOB_RUNNER_COMMAND_MAX 256U           /* bytes of the command line shown per job */
#define JOB_RUNNER_LOG_JSON_MAX (56U * 1024U) /* the log as a JSON string, within the reply cap */
#define JOB_RUNNER_SHELL "/bin/sh"

typedef enum JobRunnerBus {
        RUNNER_BUS_NONE,       /* unavailable: r->unavailable says why */
        RUNNER_BUS_CONNECTING, /* Subscribe sent */
        RUNNER_BUS_READY,
} JobRunnerBus;

/* An active job's unit as the runner watches it. */
typedef struct JobWatch JobWatch;
struct JobWatch {
        JobRunner *runner;
        JobWatch *prev, *next;
        uint64_t id;
        char *path;                /* the unit's object path */
        sd_bus_slot *match;        /* PropertiesChanged on path */
        sd_bus_slot *start_call;   /* StartTransientUnit in flight */
        sd_bus_slot *stop_call;    /* StopUnit in flight */
        sd_bus_slot *refresh_call; /* GetAll in flight */
        bool refresh_again;        /* a change came while GetAll was in flight */
        bool started;              /* the unit exists (start answered, or re-attached) */
};

struct JobRunner {
        sd_event *event;
        sd_bus *bus;
        bool bus_given;
        JobRunnerBus bus_state;
        const char *unavailable; /* static, or unavailable_buf */
        char unavailable_buf[256];
        sd_bus_slot *subscribe_call, *disconnect_match;
        sd_event_source *reconnect_timer, *pick_source, *resync_timer;

        char *state_directory;
        char *log_directory;
        unsigned gpus;
        uint64_t stop_grace_usec;
        JobQueue *queue;
        bool started;
        JobWatch *watches;

        JobRunnerChangeFn change_fn;
        void *change_userdata;
};

static uint64_t now_usec(void) {
        return (uint64_t)now_realtime_ns() / 1000;
}

/* ---- pure parts ------------------------------------------------------------------------------ */

bool job_runner_may_access(uid_t job_uid, uid_t uid, bool admin) {
        return admin || uid == 0 || job_uid == uid;
}

void job_runner_format_gpus(uint64_t mask, char *buf, size_t size) {
        size_t n = 0;

        buf[0] = '\0';
        for (unsigned g = 0; g < 64 && n + 4 < size; g++)
                if (mask & (UINT64_C(1) << g)) {
                        int k = snprintf(buf + n, size - n, "%s%u", n ? "," : "", g);
                        if (k < 0 || (size_t)k >= size - n)
                                break;
                        n += (size_t)k;
                }
}

static bool env_name_ok(const char *s, size_t n) {
        if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9')))
                        return false;
        return true;
}

static bool utf8_ok(const char *s) {
        const unsigned char *p = (const unsigned char *)s;

        while (*p) {
                unsigned n, c;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if ((*p & 0xE0) == 0xC0)
                        n = 1, c = *p & 0x1F;
                else if ((*p & 0xF0) == 0xE0)
                        n = 2, c = *p & 0x0F;
                else if ((*p & 0xF8) == 0xF0)
                        n = 3, c = *p & 0x07;
                else
                        return false;
                p++;
                for (unsigned i = 0; i < n; i++, p++) {
                        if ((*p & 0xC0) != 0x80)
                                return false;
                        c = (c << 6) | (*p & 0x3F);
                }
                if ((n == 1 && c < 0x80) || (n == 2 && c < 0x800) || (n == 3 && c < 0x10000) ||
                    c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
                        return false;
        }
        return true;
}

/* Set by systemd for every service, or by the runner: never taken from the submitter. */
static bool env_name_reserved(const char *s, size_t n) {
        static const char *const names[] = {
                "POOLAGENT_JOB_ID", "CUDA_VISIBLE_DEVICES", "NOTIFY_SOCKET",    "LISTEN_PID",
                "LISTEN_FDS",       "LISTEN_FDNAMES",       "WATCHDOG_PID",     "WATCHDOG_USEC",
                "INVOCATION_ID",    "JOURNAL_STREAM",       "SYSTEMD_EXEC_PID", "MANAGERPID",
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strlen(names[i]) == n && strncmp(names[i], s, n) == 0)
                        return true;
        return false;
}

int job_runner_job_env(const Job *j, unsigned n_gpus, char ***ret) {
        size_t n = 0, k = 0;
        char **l, gpus[JOB_QUEUE_GPUS_MAX * 3 + 1];

        while (j->env && j->env[n])
                n++;
        l = calloc(n + 3, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *e = j->env[i], *eq = strchr(e, '=');

                if (!eq || !env_name_ok(e, (size_t)(eq - e)) ||
                    env_name_reserved(e, (size_t)(eq - e)) || !utf8_ok(eq + 1))
                        continue;
                l[k] = strdup(e);
                if (!l[k]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                k++;
        }
        if (asprintf(&l[k], "POOLAGENT_JOB_ID=%" PRIu64, j->id) < 0) {
                l[k] = NULL;
                strv_free(l);
                return -ENOMEM;
        }
        k++;
        if (n_gpus > 0) {
                job_runner_format_gpus(j->gpu_mask, gpus, sizeof(gpus));
                if (asprintf(&l[k], "CUDA_VISIBLE_DEVICES=%s", gpus) < 0) {
                        l[k] = NULL;
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *ret = l;
        return 0;
}

JobUnitVerdict
job_runner_unit_verdict(const JobUnitStatus *s, bool starting, int *ret_exit_status) {
        int status = -1;

        if (s->exec_main_code == CLD_EXITED)
                status = s->exec_main_status;
        else if (s->exec_main_code == CLD_KILLED || s->exec_main_code == CLD_DUMPED)
                status = 128 + s->exec_main_status;

        if (!streq(s->load_state, "loaded") && streq(s->active_state, "inactive"))
                return JOB_UNIT_GONE;
        if (streq(s->active_state, "failed") ||
            (streq(s->active_state, "active") && streq(s->sub_state, "exited")) ||
            (streq(s->active_state, "inactive") && !(starting && s->exec_main_code == 0))) {
                *ret_exit_status = status;
                return JOB_UNIT_ENDED;
        }
        if (streq(s->active_state, "inactive"))
                return JOB_UNIT_WAIT;
        return JOB_UNIT_RUNNING;
}

/* ---- watches --------------------------------------------------------------------------------- */

static JobWatch *job_watch_free(JobWatch *w) {
        if (!w)
                return NULL;
        if (w->runner) {
                if (w->prev)
                        w->prev->next = w->next;
                else
                        w->runner->watches = w->next;
                if (w->next)
                        w->next->prev = w->prev;
        }
        sd_bus_slot_unref(w->match);
        sd_bus_slot_unref(w->start_call);
        sd_bus_slot_unref(w->stop_call);
        sd_bus_slot_unref(w->refresh_call);
        free(w->path);
        free(w);
        return NULL;
}

static JobWatch *job_runner_watch(JobRunner *r, uint64_t id) {
        for (JobWatch *w = r->watches; w; w = w->next)
                if (w->id == id)
                        return w;
        return NULL;
}

static int job_watch_on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *e);

/* A watch for job j's unit: the match on its PropertiesChanged is sent before anything else. */
static int job_runner_watch_new(JobRunner *r, const Job *j, JobWatch **ret) {
        JobWatch *w;
        int k;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->id = j->id;
        k = sd_bus_path_encode("/org/freedesktop/systemd1/unit", j->unit, &w->path);
        if (k >= 0)
                k = sd_bus_match_signal_async(
                        r->bus, &w->match, SYSTEMD_SERVICE, w->path,
                        "org.freedesktop.DBus.Properties", "PropertiesChanged",
                        job_watch_on_properties_changed, NULL, w);
        if (k < 0) {
                job_watch_free(w);
                return k;
        }
        w->runner = r;
        w->next = r->watches;
        if (r->watches)
                r->watches->prev = w;
        r->watches = w;
        *ret = w;
        return 0;
}

static void job_runner_drop_watches(JobRunner *r) {
        while (r->watches)
                job_watch_free(r->watches);
}

/* ---- state changes --------------------------------------------------------------------------- */

static void job_runner_save(JobRunner *r) {
        int k;

        if (!r->started)
                return; /* a queue file that could not be read is never overwritten */
        k = job_queue_save(r->state_directory, r->queue);
        if (k < 0)
                log_error_errno(
                        k, "Failed to save the job queue to %s/%s, ignoring: %m",
                        r->state_directory, JOB_QUEUE_FILE);
}

static void job_runner_schedule(JobRunner *r) {
        if (r->pick_source)
                (void)sd_event_source_set_enabled(r->pick_source, SD_EVENT_ONESHOT);
}

static void job_runner_changed(JobRunner *r) {
        job_runner_save(r);
        job_runner_schedule(r);
        if (r->change_fn)
                r->change_fn(r, r->change_userdata);
}

static void job_runner_log_job(int level, const Job *j, const char *format, ...) _printf_(3, 4);
static void job_runner_log_job(int level, const Job *j, const char *format, ...) {
        char id_field[64], msg[512];
        va_list ap;

        va_start(ap, format);
        (void)vsnprintf(msg, sizeof(msg), format, ap);
        va_end(ap);
        (void)snprintf(id_field, sizeof(id_field), "POOLAGENT_JOB_ID=%" PRIu64, j->id);
        (void)log_struct(
                level, 0, ((const char *[]){id_field, NULL}), "Job %" PRIu64 " (%s, UID %u): %s",
                j->id, j->name, (unsigned)j->uid, msg);
}

static int job_runner_on_collected(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        const sd_bus_error *err = sd_bus_message_get_error(m);

        if (err)
                log_debug("Collecting a job's unit: %s, ignoring", err->message ?: err->name);
        return 0;
}

/* The job of watch w ended; collect its unit (stop a RemainAfterExit one, reset a failed one). */
static void job_runner_end(JobRunner *r, JobWatch *w, int exit_status, const char *collect) {
        Job *j = job_queue_get(r->queue, w->id);
        JobStop stop;

        if (collect && r->bus && j && j->unit)
                (void)sd_bus_call_method_async(
                        r->bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, collect,
                        job_runner_on_collected, NULL, streq(collect, "StopUnit") ? "ss" : "s",
                        j->unit, "replace");
        job_watch_free(w);
        if (!j || !job_state_is_active(j->state))
                return;
        stop = j->stop;
        (void)job_queue_mark_ended(r->queue, j, exit_status, stop == JOB_STOP_DRAIN, now_usec());
        if (stop == JOB_STOP_CANCEL)
                j->state = JOB_CANCELLED; /* job-queue.h: CANCELLED also by "poolctl cancel" */
        j->stop = JOB_STOP_NONE;
        job_runner_log_job(
                j->state == JOB_FINISHED ? LOG_INFO : LOG_NOTICE, j, "%s (exit status %d)",
                job_state_to_string(j->state), exit_status);
        job_runner_changed(r);
}

/* ---- reading a unit -------------------------------------------------------------------------- */

static void copy_state(char *dst, size_t size, const char *s) {
        (void)snprintf(dst, size, "%s", s ? s : "");
}

static int job_runner_read_status(sd_bus_message *m, JobUnitStatus *s) {
        int k;

        *s = (JobUnitStatus){};
        k = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *str = NULL;
                int32_t i = 0;

                k = sd_bus_message_read(m, "s", &name);
                if (k < 0)
                        return k;
                if (streq(name, "LoadState") || streq(name, "ActiveState") ||
                    streq(name, "SubState") || streq(name, "Result")) {
                        k = sd_bus_message_read(m, "v", "s", &str);
                        if (k < 0)
                                return k;
                        copy_state(
                                streq(name, "LoadState")     ? s->load_state
                                : streq(name, "ActiveState") ? s->active_state
                                : streq(name, "SubState")    ? s->sub_state
                                                             : s->result,
                                sizeof(s->load_state), str);
                } else if (streq(name, "ExecMainCode") || streq(name, "ExecMainStatus")) {
                        k = sd_bus_message_read(m, "v", "i", &i);
                        if (k < 0)
                                return k;
                        if (streq(name, "ExecMainCode"))
                                s->exec_main_code = i;
                        else
                                s->exec_main_status = i;
                } else {
                        k = sd_bus_message_skip(m, "v");
                        if (k < 0)
                                return k;
                }
                k = sd_bus_message_exit_container(m);
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        if (k < 0)
                return k;
        return s->active_state[0] && s->load_state[0] ? 0 : -EBADMSG;
}

static int job_watch_refresh(JobWatch *w);

static int job_watch_on_refresh(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        JobWatch *w = userdata;
        JobRunner *r = w->runner;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        Job *j = job_queue_get(r->queue, w->id);
        JobUnitStatus s;
        JobUnitVerdict v;
        int k, status = -1;

        w->refresh_call = sd_bus_slot_unref(w->refresh_call);
        if (!j || !job_state_is_active(j->state)) {
                job_watch_free(w);
                return 0;
        }
        if (err) {
                job_runner_log_job(
                        LOG_WARNING, j, "cannot read the state of %s: %s", j->unit,
                        err->message ?: err->name);
                return 0; /* the next PropertiesChanged asks again */
        }
        k = job_runner_read_status(m, &s);
        if (k < 0) {
                job_runner_log_job(LOG_WARNING, j, "unexpected properties of %s", j->unit);
                return 0;
        }
        v = job_runner_unit_verdict(&s, j->state == JOB_STARTING, &status);
        switch (v) {
        case JOB_UNIT_WAIT:
                break;
        case JOB_UNIT_RUNNING:
                if (j->state == JOB_STARTING) {
                        (void)job_queue_mark_running(r->queue, j);
                        job_runner_log_job(LOG_INFO, j, "running as %s", j->unit);
                        job_runner_changed(r);
                }
                break;
        case JOB_UNIT_ENDED:
                job_runner_end(
                        r, w, status,
                        streq(s.active_state, "failed")   ? "ResetFailedUnit"
                        : streq(s.active_state, "active") ? "StopUnit"
                                                          : NULL);
                return 0;
        case JOB_UNIT_GONE:
                if (j->stop == JOB_STOP_NONE)
                        job_runner_log_job(
                                LOG_WARNING, j, "its unit %s vanished (%s)", j->unit,
                                j->state == JOB_STARTING ? "it never started"
                                                         : "stopped outside the agent");
                job_runner_end(r, w, -1, NULL);
                return 0;
        default:
                break;
        }
        if (w->refresh_again) {
                w->refresh_again = false;
                (void)job_watch_refresh(w);
        }
        return 0;
}

/* Reads the unit's properties (all interfaces: Unit and Service) once more. */
static int job_watch_refresh(JobWatch *w) {
        JobRunner *r = w->runner;

        if (w->refresh_call) {
                w->refresh_again = true;
                return 0;
        }
        return sd_bus_call_method_async(
                r->bus, &w->refresh_call, SYSTEMD_SERVICE, w->path,
                "org.freedesktop.DBus.Properties", "GetAll", job_watch_on_refresh, w, "s", "");
}

static int job_watch_on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        JobWatch *w = userdata;

        if (w->started)
                (void)job_watch_refresh(w);
        return 0;
}

/* ---- starting and stopping ------------------------------------------------------------------- */

static int job_watch_on_stopped(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        JobWatch *w = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);

        w->stop_call = sd_bus_slot_unref(w->stop_call);
        if (err)
                log_debug("StopUnit for job %" PRIu64 ": %s", w->id, err->message ?: err->name);
        (void)job_watch_refresh(w); /* NoSuchUnit: it is gone; else PropertiesChanged follows */
        return 0;
}

static int job_watch_stop(JobWatch *w) {
        JobRunner *r = w->runner;
        Job *j = job_queue_get(r->queue, w->id);

        if (!j || !j->unit || w->stop_call)
                return 0;
        if (!w->started)
                return 0; /* asked again once StartTransientUnit answered */
        return sd_bus_call_method_async(
                r->bus, &w->stop_call, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit",
                job_watch_on_stopped, w, "ss", j->unit, "replace");
}

static int job_watch_on_started(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        JobWatch *w = userdata;
        JobRunner *r = w->runner;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        Job *j = job_queue_get(r->queue, w->id);

        w->start_call = sd_bus_slot_unref(w->start_call);
        if (!j)
                return 0;
        if (err) {
                job_runner_log_job(
                        LOG_ERR, j, "systemd refused to start %s: %s", j->unit,
                        err->message ?: err->name);
                job_runner_end(r, w, -1, NULL);
                return 0;
        }
        w->started = true;
        if (j->stop != JOB_STOP_NONE)
                (void)job_watch_stop(w);
        (void)job_watch_refresh(w);
        return 0;
}

static int append_string_property(sd_bus_message *m, const char *name, const char *value) {
        return sd_bus_message_append(m, "(sv)", name, "s", value);
}

static int append_strv_property(sd_bus_message *m, const char *name, char **l) {
        int k;

        k = sd_bus_message_open_container(m, 'r', "sv");
        if (k >= 0)
                k = sd_bus_message_append(m, "s", name);
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'v', "as");
        if (k >= 0)
                k = sd_bus_message_append_strv(m, l);
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        return k;
}

/* ExecStartEx= with no-env-expand (systemd >= 243): the arguments are the user's, "$X" in them
 * stays as it is. A command that is not an absolute path is looked up in the job's $PATH by
 * /bin/sh, as the user, in the job's directory; exec keeps the process (and its exit status). */
static int append_exec(sd_bus_message *m, char **argv) {
        static char *const flags[] = {(char *)"no-env-expand", NULL};
        _cleanup_free_ char **wrapped = NULL;
        const char *path = argv[0];
        size_t n = 0;
        int k;

        while (argv[n])
                n++;
        if (argv[0][0] != '/') {
                wrapped = calloc(n + 5, sizeof(char *));
                if (!wrapped)
                        return -ENOMEM;
                wrapped[0] = (char *)JOB_RUNNER_SHELL;
                wrapped[1] = (char *)"-c";
                wrapped[2] = (char *)"exec \"$@\"";
                wrapped[3] = (char *)"poolagent-job";
                memcpy(wrapped + 4, argv, n * sizeof(char *));
                path = JOB_RUNNER_SHELL;
        }
        k = sd_bus_message_open_container(m, 'r', "sv");
        if (k >= 0)
                k = sd_bus_message_append(m, "s", "ExecStartEx");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'v', "a(sasas)");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "(sasas)");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'r', "sasas");
        if (k >= 0)
                k = sd_bus_message_append(m, "s", path);
        if (k >= 0)
                k = sd_bus_message_append_strv(m, wrapped ? wrapped : argv);
        if (k >= 0)
                k = sd_bus_message_append_strv(m, (char **)flags);
        for (int i = 0; k >= 0 && i < 4; i++)
                k = sd_bus_message_close_container(m);
        return k;
}

static int
job_runner_start_message(JobRunner *r, const Job *j, const char *log_path, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        char **env = NULL;
        char user[16], group[16], description[256];
        int k;

        (void)snprintf(user, sizeof(user), "%u", (unsigned)j->uid);
        (void)snprintf(group, sizeof(group), "%u", (unsigned)j->gid);
        (void)snprintf(
                description, sizeof(description), "poolagent job %" PRIu64 " (%s) of UID %u", j->id,
                j->name, (unsigned)j->uid);
        k = job_runner_job_env(j, r->queue->n_gpus, &env);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_call(
                r->bus, &m, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "StartTransientUnit");
        if (k >= 0)
                k = sd_bus_message_append(m, "ss", j->unit, "fail");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "(sv)");
        if (k >= 0)
                k = append_string_property(m, "Description", description);
        if (k >= 0)
                k = append_string_property(m, "Slice", JOB_RUNNER_SLICE);
        if (k >= 0)
                k = append_string_property(m, "User", user);
        if (k >= 0)
                k = append_string_property(m, "Group", group);
        if (k >= 0)
                k = append_string_property(m, "WorkingDirectory", j->cwd);
        if (k >= 0)
                k = append_strv_property(m, "Environment", env);
        if (k >= 0)
                k = append_string_property(m, "StandardOutputFileToAppend", log_path);
        if (k >= 0)
                k = append_string_property(m, "StandardErrorFileToAppend", log_path);
        if (k >= 0)
                k = sd_bus_message_append(m, "(sv)", "RemainAfterExit", "b", 1);
        if (k >= 0)
                k = sd_bus_message_append(m, "(sv)", "TimeoutStopUSec", "t", r->stop_grace_usec);
        if (k >= 0)
                k = append_exec(m, j->argv);
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        if (k >= 0)
                k = sd_bus_message_append(m, "a(sa(sv))", 0);
        strv_free(env);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(m);
        return 0;
}

/* The job's log file, made by the runner (root) in its own directory, owned by the job's user. */
static int job_runner_make_log(JobRunner *r, const Job *j, char **ret_path) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (mkdir(r->state_directory, 0750) < 0 && errno != EEXIST)
                return NEG_ERRNO();
        if (mkdir(r->log_directory, 0700) < 0 && errno != EEXIST)
                return NEG_ERRNO();
        if (asprintf(&path, "%s/%" PRIu64 ".log", r->log_directory, j->id) < 0)
                return -ENOMEM;
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return NEG_ERRNO();
        if (fchown(fd, j->uid, j->gid) < 0 || fchmod(fd, 0600) < 0)
                return NEG_ERRNO();
        *ret_path = TAKE_PTR(path);
        return 0;
}

static void job_runner_start_job(JobRunner *r, Job *j, uint64_t gpu_mask) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *unit = NULL, *log_path = NULL;
        char gpus[JOB_QUEUE_GPUS_MAX * 3 + 1];
        JobWatch *w = NULL;
        int k;

        if (asprintf(&unit, JOB_RUNNER_UNIT_PREFIX "%" PRIu64 ".service", j->id) < 0)
                return;
        k = job_queue_mark_starting(r->queue, j, unit, gpu_mask, now_usec());
        if (k < 0)
                return;
        /* Written before systemd hears of it: after a crash the job is never started again. */
        k = job_queue_save(r->state_directory, r->queue);
        if (k < 0) {
                log_error_errno(
                        k, "Failed to save the job queue, not starting job %" PRIu64 ": %m", j->id);
                j->state = JOB_QUEUED; /* nothing started: it may be picked again */
                j->gpu_mask = 0;
                return;
        }
        k = job_runner_make_log(r, j, &log_path);
        if (k < 0) {
                job_runner_log_job(LOG_ERR, j, "cannot create its log file: %s", strerror(-k));
                goto fail;
        }
        k = job_runner_watch_new(r, j, &w);
        if (k >= 0)
                k = job_runner_start_message(r, j, log_path, &m);
        if (k >= 0)
                k = sd_bus_call_async(
                        r->bus, &w->start_call, m, job_watch_on_started, w,
                        JOB_RUNNER_CALL_TIMEOUT_USEC);
        if (k < 0) {
                job_runner_log_job(LOG_ERR, j, "cannot ask systemd to start it: %s", strerror(-k));
                goto fail;
        }
        job_runner_format_gpus(j->gpu_mask, gpus, sizeof(gpus));
        job_runner_log_job(
                LOG_INFO, j, "starting %s in %s (%u slot%s%s%s)", j->unit, JOB_RUNNER_SLICE,
                j->cpus, j->cpus == 1 ? "" : "s", j->gpus ? ", GPUs " : "", gpus);
        if (r->change_fn)
                r->change_fn(r, r->change_userdata);
        return;
fail:
        job_watch_free(w);
        (void)job_queue_mark_ended(r->queue, j, -1, false, now_usec());
        job_runner_save(r);
        if (r->change_fn)
                r->change_fn(r, r->change_userdata);
}

static int job_runner_on_resync(sd_event_source *s, uint64_t usec, void *userdata) {
        JobRunner *r = userdata;

        if (r->bus_state == RUNNER_BUS_READY)
                for (JobWatch *w = r->watches; w; w = w->next)
                        if (w->started)
                                (void)job_watch_refresh(w);
        (void)event_arm_relative(
                r->event, &r->resync_timer, JOB_RUNNER_RESYNC_USEC, job_runner_on_resync, r,
                "job runner resync");
        return 0;
}

static int job_runner_on_pick(sd_event_source *s, void *userdata) {
        JobRunner *r = userdata;
        uint64_t mask = 0;
        Job *j;

        while (r->bus_state == RUNNER_BUS_READY &&
               (j = job_queue_pick(r->queue, now_usec(), &mask))) {
                job_runner_start_job(r, j, mask);
                if (j->state == JOB_QUEUED)
                        break; /* the queue could not be saved: try on the next change */
        }
        return 0;
}

/* ---- the bus --------------------------------------------------------------------------------- */

static void job_runner_set_unavailable(JobRunner *r, const char *format, ...) _printf_(2, 3);
static void job_runner_set_unavailable(JobRunner *r, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void)vsnprintf(r->unavailable_buf, sizeof(r->unavailable_buf), format, ap);
        va_end(ap);
        r->unavailable = r->unavailable_buf;
        r->bus_state = RUNNER_BUS_NONE;
}

static int job_runner_connect(JobRunner *r);

static int job_runner_on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)job_runner_connect(userdata);
        return 0;
}

static void job_runner_lost_bus(JobRunner *r, const char *why) {
        uint64_t now;

        job_runner_drop_watches(r);
        r->subscribe_call = sd_bus_slot_unref(r->subscribe_call);
        r->disconnect_match = sd_bus_slot_unref(r->disconnect_match);
        job_runner_set_unavailable(r, "%s", why);
        if (r->bus_given)
                return;
        r->bus = sd_bus_close_unref(r->bus);
        log_warning("Job runner: %s; connecting again in 5 s", why);
        if (sd_event_now(r->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        r->reconnect_timer = sd_event_source_disable_unref(r->reconnect_timer);
        (void)sd_event_add_time(
                r->event, &r->reconnect_timer, CLOCK_MONOTONIC, now + JOB_RUNNER_RECONNECT_USEC, 0,
                job_runner_on_reconnect, r);
}

static int job_runner_on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        job_runner_lost_bus(userdata, "lost the connection to the system bus");
        return 0;
}

/* Watches every active job's unit again (agent restart, bus reconnect): a unit still there
 * decides the job's state, a unit gone leaves it FAILED (or CANCELLED/STOPPED as asked). */
static void job_runner_reattach(JobRunner *r) {
        for (size_t i = 0; i < r->queue->n_jobs; i++) {
                Job *j = r->queue->jobs[i];
                JobWatch *w;
                int k;

                if (!job_state_is_active(j->state) || !j->unit || job_runner_watch(r, j->id))
                        continue;
                k = job_runner_watch_new(r, j, &w);
                if (k >= 0) {
                        w->started = true;
                        k = job_watch_refresh(w);
                }
                if (k >= 0 && j->stop != JOB_STOP_NONE)
                        k = job_watch_stop(w); /* asked before the restart: ask again */
                if (k < 0)
                        job_runner_log_job(
                                LOG_WARNING, j, "cannot watch %s again: %s", j->unit, strerror(-k));
                else
                        job_runner_log_job(LOG_INFO, j, "watching %s again", j->unit);
        }
}

static int job_runner_on_subscribed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        JobRunner *r = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);

        r->subscribe_call = sd_bus_slot_unref(r->subscribe_call);
        if (err) {
                job_runner_set_unavailable(
                        r, "systemd does not answer on the system bus (%s)",
                        err->message ?: err->name);
                log_warning("Job runner unavailable: %s", r->unavailable);
                return 0;
        }
        r->bus_state = RUNNER_BUS_READY;
        r->unavailable = NULL;
        log_info("Job runner connected to systemd: jobs run in %s", JOB_RUNNER_SLICE);
        job_runner_reattach(r);
        job_runner_schedule(r);
        return 0;
}

static int job_runner_connect(JobRunner *r) {
        int k;

        r->reconnect_timer = sd_event_source_disable_unref(r->reconnect_timer);
        if (!r->bus) {
                _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;

                if (sd_booted() <= 0) {
                        job_runner_set_unavailable(
                                r, "systemd is not the init system here (jobs run as systemd "
                                   "services)");
                        return -EHOSTDOWN;
                }
                k = sd_bus_open_system(&bus);
                if (k < 0) {
                        job_runner_set_unavailable(
                                r, "cannot connect to the system bus: %s", strerror(-k));
                        return -EHOSTDOWN;
                }
                k = sd_bus_attach_event(bus, r->event, SD_EVENT_PRIORITY_NORMAL);
                if (k < 0)
                        return k;
                r->bus = TAKE_PTR(bus);
        }
        k = sd_bus_match_signal_async(
                r->bus, &r->disconnect_match, "org.freedesktop.DBus.Local", NULL,
                "org.freedesktop.DBus.Local", "Disconnected", job_runner_on_disconnected, NULL, r);
        if (k >= 0)
                k = sd_bus_call_method_async(
                        r->bus, &r->subscribe_call, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                        "Subscribe", job_runner_on_subscribed, r, "");
        if (k < 0) {
                job_runner_lost_bus(r, "cannot talk to systemd on the system bus");
                return -EHOSTDOWN;
        }
        r->bus_state = RUNNER_BUS_CONNECTING;
        r->unavailable = NULL;
        return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

int job_runner_new(sd_event *event, sd_bus *bus, const JobRunnerConfig *config, JobRunner **ret) {
        _cleanup_(job_runner_freep) JobRunner *r = NULL;
        long cpus;
        unsigned slots = config->slots;
        int k;

        if (!config->state_directory || config->gpus > JOB_QUEUE_GPUS_MAX)
                return -EINVAL;
        if (slots == 0) {
                cpus = sysconf(_SC_NPROCESSORS_ONLN);
                slots = 2 * (unsigned)CLAMP(cpus, 1L, 65536L);
        }
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(event);
        r->bus = bus ? sd_bus_ref(bus) : NULL;
        r->bus_given = bus;
        r->gpus = config->gpus;
        r->stop_grace_usec = config->stop_grace_usec;
        r->unavailable = "not started yet";
        r->state_directory = strdup(config->state_directory);
        if (!r->state_directory ||
            asprintf(&r->log_directory, "%s/%s", config->state_directory, JOB_RUNNER_LOG_DIR) < 0)
                return -ENOMEM;
        /* All GPUs while the file is read (a job's GPUs are checked against them), then ours. */
        k = job_queue_new(slots, JOB_QUEUE_GPUS_MAX, &r->queue);
        if (k < 0)
                return k;
        k = sd_event_add_defer(event, &r->pick_source, job_runner_on_pick, r);
        if (k < 0)
                return k;
        (void)sd_event_source_set_enabled(r->pick_source, SD_EVENT_OFF);
        *ret = TAKE_PTR(r);
        return 0;
}

JobRunner *job_runner_free(JobRunner *r) {
        if (!r)
                return NULL;
        job_runner_drop_watches(r);
        sd_bus_slot_unref(r->subscribe_call);
        sd_bus_slot_unref(r->disconnect_match);
        sd_event_source_disable_unref(r->reconnect_timer);
        sd_event_source_disable_unref(r->pick_source);
        sd_event_source_disable_unref(r->resync_timer);
        if (r->bus_given)
                sd_bus_unref(r->bus);
        else
                sd_bus_flush_close_unref(r->bus); /* the last collecting calls go out */
        sd_event_unref(r->event);
        job_queue_free(r->queue);
        free(r->state_directory);
        free(r->log_directory);
        free(r);
        return NULL;
}

/* The unreadable queue file is kept aside: jobs.json.bad-<time>. */
static void job_runner_keep_bad_file(JobRunner *r, const char *reason) {
        _cleanup_free_ char *from = NULL, *to = NULL;

        if (asprintf(&from, "%s/%s", r->state_directory, JOB_QUEUE_FILE) < 0 ||
            asprintf(
                    &to, "%s/%s.bad-%" PRIu64, r->state_directory, JOB_QUEUE_FILE,
                    now_usec() / 1000000) < 0)
                return;
        if (rename(from, to) < 0)
                log_error_errno(
                        NEG_ERRNO(),
                        "The job queue %s is unreadable (%s) and cannot be moved aside: %m", from,
                        reason);
        else
                log_error(
                        "The job queue %s is unreadable (%s): kept as %s, starting empty", from,
                        reason, to);
}

int job_runner_start(JobRunner *r) {
        const char *reason = NULL;
        char boot[SD_ID128_STRING_MAX] = "";
        sd_id128_t id;
        int k;

        if (sd_id128_get_boot(&id) >= 0)
                (void)sd_id128_to_string(id, boot);
        k = job_queue_load(r->state_directory, boot, r->queue, &reason);
        if (k == -EBADMSG)
                job_runner_keep_bad_file(r, reason ?: "malformed");
        else if (k < 0 && k != -ENOENT) {
                job_runner_set_unavailable(
                        r, "cannot read %s/%s: %s", r->state_directory, JOB_QUEUE_FILE,
                        strerror(-k));
                return log_error_errno(k, "Job runner unavailable: %s", r->unavailable);
        }
        (void)snprintf(r->queue->boot_id, sizeof(r->queue->boot_id), "%s", boot);
        r->queue->n_gpus = r->gpus;
        r->started = true;
        (void)event_arm_relative(
                r->event, &r->resync_timer, JOB_RUNNER_RESYNC_USEC, job_runner_on_resync, r,
                "job runner resync");
        if (k >= 0)
                log_info(
                        "Job queue loaded: %zu jobs, %u active", r->queue->n_jobs,
                        job_queue_n_active(r->queue));
        job_runner_save(r); /* the restart rule's outcome (jobs of an earlier boot failed) */
        k = job_runner_connect(r);
        if (k < 0)
                log_notice("Job runner unavailable: %s", r->unavailable);
        return 0;
}

bool job_runner_is_available(const JobRunner *r) {
        return r->started && r->bus_state != RUNNER_BUS_NONE;
}

const char *job_runner_unavailable_reason(const JobRunner *r) {
        return job_runner_is_available(r) ? NULL : r->unavailable;
}

void job_runner_set_gpus(JobRunner *r, unsigned gpus) {
        gpus = MIN(gpus, JOB_QUEUE_GPUS_MAX);
        if (r->gpus == gpus)
                return;
        log_info("Jobs may use %u GPU%s", gpus, gpus == 1 ? "" : "s");
        r->gpus = gpus;
        if (r->started) {
                r->queue->n_gpus = gpus;
                job_runner_schedule(r);
        }
}

void job_runner_set_change_hook(JobRunner *r, JobRunnerChangeFn fn, void *userdata) {
        r->change_fn = fn;
        r->change_userdata = userdata;
}

/* ---- control commands ------------------------------------------------------------------------ */

int job_runner_submit(
        JobRunner *r,
        uid_t uid,
        gid_t gid,
        const char *name,
        char *const *argv,
        char *const *env,
        const char *cwd,
        unsigned cpus,
        unsigned gpus,
        uint64_t *ret_id,
        char **reterr_message) {
        uint64_t id = 0;
        Job *j;
        int k;

        if (!job_runner_is_available(r)) {
                if (asprintf(
                            reterr_message, "cannot run jobs on this VM: %s",
                            r->unavailable ?: "unavailable") < 0)
                        *reterr_message = NULL;
                return -EHOSTDOWN;
        }
        if (gpus > r->queue->n_gpus || cpus > r->queue->slots_total) {
                if (asprintf(
                            reterr_message,
                            "the job asks for %u CPU slot%s and %u GPU%s; this VM gives jobs %u "
                            "slots and %u GPUs",
                            cpus, cpus == 1 ? "" : "s", gpus, gpus == 1 ? "" : "s",
                            r->queue->slots_total, r->queue->n_gpus) < 0)
                        *reterr_message = NULL;
                return -EINVAL;
        }
        k = job_queue_submit(r->queue, name, uid, gid, argv, env, cwd, cpus, gpus, now_usec(), &id);
        if (k == -EBUSY)
                *reterr_message = strdup("the VM is draining: no new jobs");
        else if (k == -E2BIG)
                *reterr_message = strdup("the job queue is full");
        else if (k == -EINVAL)
                *reterr_message = strdup(
                        "bad job: a command is needed, the directory must be absolute, and the "
                        "command, environment and name must be within the queue's limits");
        if (k < 0)
                return k;
        j = job_queue_get(r->queue, id);
        job_runner_log_job(LOG_INFO, j, "queued: %s", j->argv[0]);
        job_runner_changed(r);
        *ret_id = id;
        return 0;
}

static json_object *user_json(uid_t uid) {
        struct passwd pw, *res = NULL;
        char buf[4096];

        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
                return NULL;
        return json_object_new_string(res->pw_name);
}

static json_object *short_string_json(const char *s) {
        return json_object_new_string_len(s, (int)MIN(strlen(s), (size_t)JOB_RUNNER_COMMAND_MAX));
}

/* The command line, shortened to JOB_RUNNER_COMMAND_MAX bytes. */
static json_object *command_json(char **argv) {
        char buf[JOB_RUNNER_COMMAND_MAX];
        size_t n = 0;

        buf[0] = '\0';
        for (char **a = argv; a && *a && n + 1 < sizeof(buf); a++) {
                int k = snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? " " : "", *a);
                if (k < 0)
                        break;
                n = MIN(n + (size_t)k, sizeof(buf) - 1);
        }
        return json_object_new_string(buf);
}

static int job_json(JobRunner *r, const Job *j, json_object **ret) {
        json_object *o = json_object_new_object(), *u;
        char gpus[JOB_QUEUE_GPUS_MAX * 3 + 1];
        int k = 0;

        if (!o)
                return -ENOMEM;
        job_runner_format_gpus(j->gpu_mask, gpus, sizeof(gpus));
        k |= json_add_owned(o, "id", json_object_new_uint64(j->id));
        k |= json_add_owned(o, "name", short_string_json(j->name));
        k |= json_add_owned(o, "uid", json_object_new_int64(j->uid));
        u = user_json(j->uid);
        if (u)
                k |= json_add_owned(o, "user", u);
        k |= json_add_owned(o, "state", json_object_new_string(job_state_to_string(j->state)));
        k |= json_add_owned(o, "command", command_json(j->argv));
        k |= json_add_owned(o, "cwd", short_string_json(j->cwd));
        k |= json_add_owned(o, "cpus", json_object_new_int(j->cpus));
        k |= json_add_owned(o, "gpus", json_object_new_int(j->gpus));
        if (j->gpu_mask)
                k |= json_add_owned(o, "gpu_devices", json_object_new_string(gpus));
        if (j->unit)
                k |= json_add_owned(o, "unit", json_object_new_string(j->unit));
        if (j->state == JOB_FINISHED || j->state == JOB_FAILED || j->state == JOB_STOPPED ||
            j->state == JOB_CANCELLED)
                k |= json_add_owned(o, "exit_status", json_object_new_int(j->exit_status));
        k |= json_add_owned(o, "submitted_usec", json_object_new_uint64(j->submitted_usec));
        k |= json_add_owned(o, "started_usec", json_object_new_uint64(j->started_usec));
        k |= json_add_owned(o, "ended_usec", json_object_new_uint64(j->ended_usec));
        if (k < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        *ret = o;
        return 0;
}

static int job_runner_totals_json(JobRunner *r, json_object *o) {
        unsigned running = 0, queued = 0, used = 0;
        int k = 0;

        for (size_t i = 0; i < r->queue->n_jobs; i++) {
                const Job *j = r->queue->jobs[i];

                if (job_state_is_active(j->state)) {
                        running++;
                        used += j->cpus;
                } else if (j->state == JOB_QUEUED)
                        queued++;
        }
        k |= json_add_owned(o, "available", json_object_new_boolean(job_runner_is_available(r)));
        if (!job_runner_is_available(r))
                k |= json_add_owned(
                        o, "unavailable_reason", json_object_new_string(r->unavailable ?: "?"));
        k |= json_add_owned(o, "slots", json_object_new_int64(r->queue->slots_total));
        k |= json_add_owned(o, "slots_used", json_object_new_int64(used));
        k |= json_add_owned(o, "gpus", json_object_new_int64(r->queue->n_gpus));
        k |= json_add_owned(o, "accepting", json_object_new_boolean(r->queue->accepting));
        k |= json_add_owned(o, "running", json_object_new_int64(running));
        k |= json_add_owned(o, "queued", json_object_new_int64(queued));
        return k < 0 ? -ENOMEM : 0;
}

/* Adds key: the jobs the peer may see (active ones only with active_only), the newest max of
 * them within JOB_RUNNER_LIST_BYTES of JSON, in submission order; and key_omitted: how many
 * were left out. */
static int job_runner_add_jobs(
        JobRunner *r,
        json_object *o,
        const char *key,
        const char *key_omitted,
        uid_t uid,
        bool admin,
        bool active_only,
        size_t max) {
        _cleanup_free_ json_object **kept = calloc(r->queue->n_jobs + 1, sizeof(json_object *));
        json_object *a = json_object_new_array();
        size_t n = 0, bytes = 0, omitted = 0;
        int k = 0;

        if (!kept || json_add_owned(o, key, a) < 0)
                return -ENOMEM;
        for (size_t i = r->queue->n_jobs; i > 0; i--) { /* newest first */
                const Job *j = r->queue->jobs[i - 1];
                json_object *jo;

                if (!job_runner_may_access(j->uid, uid, admin) ||
                    (active_only && !job_state_is_active(j->state)))
                        continue;
                if (omitted > 0 || n >= max) {
                        omitted++;
                        continue;
                }
                k = job_json(r, j, &jo);
                if (k < 0)
                        break;
                bytes += strlen(json_object_to_json_string_ext(jo, JSON_C_TO_STRING_PLAIN));
                if (bytes > JOB_RUNNER_LIST_BYTES) {
                        json_object_put(jo);
                        omitted++;
                        continue;
                }
                kept[n++] = jo;
        }
        for (size_t i = n; i > 0; i--) { /* oldest first */
                if (k >= 0 && json_object_array_add(a, kept[i - 1]) < 0)
                        k = -ENOMEM;
                if (k < 0)
                        json_object_put(kept[i - 1]);
        }
        if (k < 0)
                return k;
        return json_add_owned(o, key_omitted, json_object_new_int64((int64_t)omitted));
}

int job_runner_list_json(JobRunner *r, uid_t uid, bool admin, json_object *o) {
        int k;

        k = job_runner_add_jobs(r, o, "jobs", "omitted", uid, admin, false, JOB_RUNNER_LIST_MAX);
        if (k < 0)
                return k;
        return job_runner_totals_json(r, o);
}

/* The job id names, if the peer may see it: -ENOENT, -EPERM. */
static int job_runner_find(JobRunner *r, uint64_t id, uid_t uid, bool admin, Job **ret) {
        Job *j = job_queue_get(r->queue, id);

        if (!j)
                return -ENOENT;
        if (!job_runner_may_access(j->uid, uid, admin))
                return -EPERM;
        *ret = j;
        return 0;
}

int job_runner_cancel(JobRunner *r, uint64_t id, uid_t uid, bool admin) {
        JobWatch *w;
        Job *j;
        int k;

        k = job_runner_find(r, id, uid, admin, &j);
        if (k < 0)
                return k;
        k = job_queue_cancel(r->queue, j, now_usec());
        if (k == 0) {
                job_runner_log_job(LOG_INFO, j, "cancelled by UID %u before it started", uid);
                job_runner_changed(r);
                return 0;
        }
        if (k != -EBUSY)
                return k;
        w = job_runner_watch(r, id);
        if (!w || r->bus_state != RUNNER_BUS_READY)
                return -EHOSTDOWN;
        if (j->stop != JOB_STOP_NONE)
                return 0;
        j->stop = JOB_STOP_CANCEL;
        job_runner_save(r); /* a restarted agent still records it as cancelled */
        job_runner_log_job(LOG_INFO, j, "cancelled by UID %u: stopping %s", uid, j->unit);
        return job_watch_stop(w);
}

int job_runner_logs_json(
        JobRunner *r, uint64_t id, uid_t uid, bool admin, int64_t offset, json_object *o) {
        _cleanup_free_ char *path = NULL, *buf = NULL;
        _cleanup_close_ int fd = -EBADF;
        json_object *s = NULL;
        struct stat st;
        size_t len, want;
        off_t start;
        ssize_t n;
        Job *j;
        int k;

        k = job_runner_find(r, id, uid, admin, &j);
        if (k < 0)
                return k;
        if (asprintf(&path, "%s/%" PRIu64 ".log", r->log_directory, id) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno != ENOENT)
                return NEG_ERRNO();
        if (fd < 0)
                st = (struct stat){};
        else if (fstat(fd, &st) < 0)
                return NEG_ERRNO();
        else if (!S_ISREG(st.st_mode))
                return -EBADFD;
        want = JOB_RUNNER_LOG_TAIL_MAX;
        start = offset >= 0 ? MIN((off_t)offset, st.st_size)
                            : st.st_size - MIN(st.st_size, (off_t)want);
        len = (size_t)MIN((off_t)want, st.st_size - start);
        buf = malloc(len + 1);
        if (!buf)
                return -ENOMEM;
        n = len > 0 ? pread(fd, buf, len, start) : 0;
        if (n < 0)
                return NEG_ERRNO();
        len = (size_t)n;
        /* Escapes may grow the text six-fold: keep the newest part that fits the reply. */
        for (;;) {
                json_object_put(s);
                s = json_object_new_string_len(buf, (int)len);
                if (!s)
                        return -ENOMEM;
                if (len == 0 || strlen(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN)) <=
                                        JOB_RUNNER_LOG_JSON_MAX)
                        break;
                if (offset < 0) { /* the tail: drop the oldest half */
                        memmove(buf, buf + len / 2, len - len / 2);
                        start += (off_t)(len / 2);
                }
                len -= len / 2;
        }
        k = json_add_owned(o, "log", s);
        k |= json_add_owned(o, "offset", json_object_new_int64(start));
        k |= json_add_owned(o, "next_offset", json_object_new_int64(start + (off_t)len));
        k |= json_add_owned(o, "size", json_object_new_int64(st.st_size));
        k |= json_add_owned(o, "state", json_object_new_string(job_state_to_string(j->state)));
        return k < 0 ? -ENOMEM : 0;
}

/* ---- the drain ------------------------------------------------------------------------------- */

unsigned job_runner_stop_starting(JobRunner *r) {
        unsigned n = job_queue_drain(r->queue, now_usec());

        log_info(
                "Job queue: not starting jobs any more, %u queued job%s requeued", n,
                n == 1 ? "" : "s");
        job_runner_changed(r);
        return n;
}

void job_runner_resume(JobRunner *r) {
        if (r->queue->accepting)
                return;
        r->queue->accepting = true;
        log_info("Job queue: accepting and starting jobs again");
        job_runner_changed(r);
}

unsigned job_runner_n_active(const JobRunner *r) {
        return job_queue_n_active(r->queue);
}

int job_runner_stop_all(JobRunner *r) {
        int ret = 0;

        for (size_t i = 0; i < r->queue->n_jobs; i++) {
                Job *j = r->queue->jobs[i];
                JobWatch *w;
                int k;

                if (!job_state_is_active(j->state))
                        continue;
                if (j->stop != JOB_STOP_DRAIN)
                        job_runner_log_job(LOG_NOTICE, j, "stopping %s for the drain", j->unit);
                /* Recorded even without systemd now: asked again once it is back. A cancel in
                 * progress ends as stopped too. */
                j->stop = JOB_STOP_DRAIN;
                w = job_runner_watch(r, j->id);
                if (!w || r->bus_state != RUNNER_BUS_READY) {
                        ret = -EHOSTDOWN;
                        continue;
                }
                k = job_watch_stop(w);
                if (k < 0)
                        ret = k;
        }
        job_runner_save(r); /* a restarted agent still records them as stopped */
        return ret;
}

int job_runner_requeued_json(JobRunner *r, uint64_t since_usec, json_object **ret) {
        json_object *a = json_object_new_array();

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < r->queue->n_jobs; i++) {
                const Job *j = r->queue->jobs[i];
                json_object *o, *u;
                int k = 0;

                if (j->state != JOB_REQUEUED || j->ended_usec < since_usec)
                        continue;
                o = json_object_new_object();
                if (!o || json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        json_object_put(a);
                        return -ENOMEM;
                }
                k |= json_add_owned(o, "id", json_object_new_uint64(j->id));
                k |= json_add_owned(o, "name", json_object_new_string(j->name));
                k |= json_add_owned(o, "uid", json_object_new_int64(j->uid));
                u = user_json(j->uid);
                if (u)
                        k |= json_add_owned(o, "user", u);
                else if (json_object_object_add(o, "user", NULL) < 0) /* JSON null */
                        k = -ENOMEM;
                k |= json_add_owned(o, "argv", json_strv_new(j->argv));
                k |= json_add_owned(o, "env", json_strv_new(j->env));
                k |= json_add_owned(o, "cwd", json_object_new_string(j->cwd));
                k |= json_add_owned(o, "cpus", json_object_new_int(j->cpus));
                k |= json_add_owned(o, "gpus", json_object_new_int(j->gpus));
                k |= json_add_owned(o, "submitted", json_object_new_uint64(j->submitted_usec));
                if (k < 0) {
                        json_object_put(a);
                        return -ENOMEM;
                }
        }
        *ret = a;
        return 0;
}

void job_runner_counts_since(
        JobRunner *r,
        uint64_t since_usec,
        unsigned *ret_finished,
        unsigned *ret_stopped,
        unsigned *ret_requeued) {
        unsigned f = 0, s = 0, q = 0;

        for (size_t i = 0; i < r->queue->n_jobs; i++) {
                const Job *j = r->queue->jobs[i];

                if (j->ended_usec < since_usec || j->ended_usec == 0)
                        continue;
                f += j->state == JOB_FINISHED || j->state == JOB_FAILED;
                s += j->state == JOB_STOPPED;
                q += j->state == JOB_REQUEUED;
        }
        if (ret_finished)
                *ret_finished = f;
        if (ret_stopped)
                *ret_stopped = s;
        if (ret_requeued)
                *ret_requeued = q;
}

int job_runner_status_json(JobRunner *r, json_object *o) {
        json_object *jobs = json_object_new_object();
        int k;

        if (json_add_owned(o, "jobs", jobs) < 0)
                return -ENOMEM;
        k = job_runner_add_jobs(
                r, jobs, "active", "active_omitted", 0, true, true, JOB_RUNNER_ACTIVE_MAX);
        if (k < 0)
                return k;
        return job_runner_totals_json(r, jobs);
}
