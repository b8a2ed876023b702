/* SPDX-License-Identifier: MIT */
#include "job-queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "json-util.h"
#include "state-file.h"
#include "strv.h"

#define JOB_QUEUE_JSON_DEPTH 8

static const char *const job_state_table[_JOB_STATE_MAX] = {
        [JOB_QUEUED] = "queued",     [JOB_STARTING] = "starting", [JOB_RUNNING] = "running",
        [JOB_FINISHED] = "finished", [JOB_FAILED] = "failed",     [JOB_CANCELLED] = "cancelled",
        [JOB_STOPPED] = "stopped",   [JOB_REQUEUED] = "requeued",
};

/* The index of s in table (n entries), or -EINVAL. */
static int table_lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; s && i < n; i++)
                if (streq(s, table[i]))
                        return i;
        return -EINVAL;
}

const char *job_state_to_string(JobState s) {
        return s >= 0 && s < _JOB_STATE_MAX ? job_state_table[s] : NULL;
}

JobState job_state_from_string(const char *s) {
        return (JobState)table_lookup(job_state_table, _JOB_STATE_MAX, s);
}

static const char *const job_stop_table[_JOB_STOP_MAX] = {
        [JOB_STOP_NONE] = "none",
        [JOB_STOP_CANCEL] = "cancel",
        [JOB_STOP_DRAIN] = "drain",
};

const char *job_stop_to_string(JobStop s) {
        return s >= 0 && s < _JOB_STOP_MAX ? job_stop_table[s] : NULL;
}

JobStop job_stop_from_string(const char *s) {
        return (JobStop)table_lookup(job_stop_table, _JOB_STOP_MAX, s);
}

bool job_state_is_active(JobState s) {
        return s == JOB_STARTING || s == JOB_RUNNING;
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        free(j->name);
        strv_free(j->argv);
        strv_free(j->env);
        free(j->cwd);
        free(j->unit);
        free(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Job *, job_free);

static bool string_ok(const char *s) {
        return s && strlen(s) < JOB_QUEUE_STRING_MAX;
}

/* A copy of l (at most max entries, each string_ok): 0, -EINVAL, -ENOMEM. */
static int copy_strings(char *const *l, size_t max, char ***ret) {
        for (size_t n = 0; l && l[n]; n++)
                if (n >= max || !string_ok(l[n]))
                        return -EINVAL;
        return strv_copy(l, max, ret);
}

int job_queue_new(unsigned slots_total, unsigned n_gpus, JobQueue **ret) {
        JobQueue *q;

        if (n_gpus > JOB_QUEUE_GPUS_MAX)
                return -EINVAL;
        q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->next_id = 1;
        q->slots_total = MAX(slots_total, 1U);
        q->n_gpus = n_gpus;
        q->accepting = true;
        *ret = q;
        return 0;
}

static void job_queue_clear(JobQueue *q) {
        for (size_t i = 0; i < q->n_jobs; i++)
                job_free(q->jobs[i]);
        free(q->jobs);
        q->jobs = NULL;
        q->n_jobs = 0;
}

JobQueue *job_queue_free(JobQueue *q) {
        if (!q)
                return NULL;
        job_queue_clear(q);
        free(q);
        return NULL;
}

/* Makes room for one more job: drops the oldest ended job when full. */
static int job_queue_make_room(JobQueue *q) {
        Job **l;

        if (q->n_jobs >= JOB_QUEUE_JOBS_MAX) {
                size_t i;

                for (i = 0; i < q->n_jobs; i++)
                        if (q->jobs[i]->state != JOB_QUEUED &&
                            !job_state_is_active(q->jobs[i]->state))
                                break;
                if (i == q->n_jobs)
                        return -E2BIG;
                job_free(q->jobs[i]);
                memmove(&q->jobs[i], &q->jobs[i + 1], (q->n_jobs - i - 1) * sizeof(Job *));
                q->n_jobs--;
                return 0;
        }
        l = realloc(q->jobs, (q->n_jobs + 1) * sizeof(Job *));
        if (!l)
                return -ENOMEM;
        q->jobs = l;
        return 0;
}

static int job_queue_append(JobQueue *q, Job *j) {
        int r = job_queue_make_room(q);

        if (r < 0)
                return r;
        q->jobs[q->n_jobs++] = j;
        if (j->id >= q->next_id)
                q->next_id = j->id + 1;
        return 0;
}

int job_queue_submit(
        JobQueue *q,
        const char *name,
        uid_t uid,
        gid_t gid,
        char *const *argv,
        char *const *env,
        const char *cwd,
        unsigned cpus,
        unsigned gpus,
        uint64_t now_usec,
        uint64_t *ret_id) {
        _cleanup_(job_freep) Job *j = NULL;
        int r = 0;

        if (!q->accepting)
                return -EBUSY;
        if (!argv || !argv[0] || !cwd || cwd[0] != '/' || !string_ok(cwd) ||
            (name && !string_ok(name)) || gpus > q->n_gpus || cpus > q->slots_total)
                return -EINVAL;
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        r = copy_strings(argv, JOB_QUEUE_ARGV_MAX, &j->argv);
        if (r < 0)
                return r;
        r = copy_strings(env, JOB_QUEUE_ENV_MAX, &j->env);
        if (r < 0)
                return r;
        j->cwd = strdup(cwd);
        j->name = strdup(name ? name : argv[0]);
        if (!j->cwd || !j->name)
                return -ENOMEM;
        j->id = q->next_id;
        j->uid = uid;
        j->gid = gid;
        j->cpus = MAX(cpus, 1U);
        j->gpus = gpus;
        j->state = JOB_QUEUED;
        j->exit_status = -1;
        j->submitted_usec = now_usec;
        r = job_queue_append(q, j);
        if (r < 0)
                return r;
        if (ret_id)
                *ret_id = j->id;
        TAKE_PTR(j);
        return 0;
}

Job *job_queue_get(JobQueue *q, uint64_t id) {
        for (size_t i = 0; i < q->n_jobs; i++)
                if (q->jobs[i]->id == id)
                        return q->jobs[i];
        return NULL;
}

unsigned job_queue_n_active(const JobQueue *q) {
        unsigned n = 0;

        for (size_t i = 0; i < q->n_jobs; i++)
                n += job_state_is_active(q->jobs[i]->state);
        return n;
}

/* ---- scheduling ------------------------------------------------------------------------------ */

static unsigned popcount64(uint64_t v) {
        return (unsigned)__builtin_popcountll(v);
}

/* The lowest free GPUs for n, or 0 when they do not fit. */
static uint64_t gpus_for(uint64_t used, unsigned n_gpus, unsigned n) {
        uint64_t mask = 0;

        for (unsigned g = 0; g < n_gpus && popcount64(mask) < n; g++)
                if (!(used & (UINT64_C(1) << g)))
                        mask |= UINT64_C(1) << g;
        return popcount64(mask) == n ? mask : 0;
}

Job *job_queue_pick(JobQueue *q, uint64_t now_usec, uint64_t *ret_gpu_mask) {
        unsigned used_slots = 0;
        uint64_t used_gpus = 0;

        if (!q->accepting)
                return NULL;
        for (size_t i = 0; i < q->n_jobs; i++)
                if (job_state_is_active(q->jobs[i]->state)) {
                        used_slots += q->jobs[i]->cpus;
                        used_gpus |= q->jobs[i]->gpu_mask;
                }
        for (size_t i = 0; i < q->n_jobs; i++) {
                Job *j = q->jobs[i];
                uint64_t mask = 0;
                bool fits;

                if (j->state != JOB_QUEUED)
                        continue;
                fits = used_slots + j->cpus <= q->slots_total;
                if (fits && j->gpus > 0) {
                        mask = gpus_for(used_gpus, q->n_gpus, j->gpus);
                        fits = mask != 0;
                }
                if (fits) {
                        if (ret_gpu_mask)
                                *ret_gpu_mask = mask;
                        return j;
                }
                /* An old job that does not fit holds back everything behind it. */
                if (now_usec >= j->submitted_usec + JOB_QUEUE_AGING_USEC)
                        return NULL;
        }
        return NULL;
}

int job_queue_mark_starting(
        JobQueue *q, Job *j, const char *unit, uint64_t gpu_mask, uint64_t now_usec) {
        char *u;

        if (j->state != JOB_QUEUED || popcount64(gpu_mask) != j->gpus)
                return -EINVAL;
        u = strdup(unit);
        if (!u)
                return -ENOMEM;
        free(j->unit);
        j->unit = u;
        j->gpu_mask = gpu_mask;
        j->state = JOB_STARTING;
        j->started_usec = now_usec;
        return 0;
}

int job_queue_mark_running(JobQueue *q, Job *j) {
        if (j->state != JOB_STARTING)
                return -EINVAL;
        j->state = JOB_RUNNING;
        return 0;
}

int job_queue_mark_ended(JobQueue *q, Job *j, int exit_status, bool stopped, uint64_t now_usec) {
        if (!job_state_is_active(j->state))
                return -EINVAL;
        j->state = stopped ? JOB_STOPPED : exit_status == 0 ? JOB_FINISHED : JOB_FAILED;
        j->exit_status = exit_status;
        j->gpu_mask = 0;
        j->ended_usec = now_usec;
        return 0;
}

int job_queue_cancel(JobQueue *q, Job *j, uint64_t now_usec) {
        if (job_state_is_active(j->state))
                return -EBUSY;
        if (j->state != JOB_QUEUED)
                return -EALREADY;
        j->state = JOB_CANCELLED;
        j->ended_usec = now_usec;
        return 0;
}

unsigned job_queue_drain(JobQueue *q, uint64_t now_usec) {
        unsigned n = 0;

        q->accepting = false;
        for (size_t i = 0; i < q->n_jobs; i++)
                if (q->jobs[i]->state == JOB_QUEUED) {
                        q->jobs[i]->state = JOB_REQUEUED;
                        q->jobs[i]->ended_usec = now_usec;
                        n++;
                }
        return n;
}

/* ---- the file -------------------------------------------------------------------------------- */

int job_queue_format(const JobQueue *q, char **ret) {
        _cleanup_(json_object_putp) json_object *root = json_object_new_object();
        json_object *jobs = json_object_new_array();
        char *text;
        int r = 0;

        if (!root || json_add_owned(root, "jobs", jobs) < 0)
                return -ENOMEM;
        r |= json_add_owned(root, "version", json_object_new_int(1));
        r |= json_add_owned(root, "boot_id", json_object_new_string(q->boot_id));
        r |= json_add_owned(root, "next_id", json_object_new_uint64(q->next_id));
        r |= json_add_owned(root, "accepting", json_object_new_boolean(q->accepting));
        for (size_t i = 0; r >= 0 && i < q->n_jobs; i++) {
                const Job *j = q->jobs[i];
                json_object *o = json_object_new_object();

                if (!o || json_object_array_add(jobs, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                r |= json_add_owned(o, "id", json_object_new_uint64(j->id));
                r |= json_add_owned(o, "name", json_object_new_string(j->name));
                r |= json_add_owned(o, "uid", json_object_new_int64(j->uid));
                r |= json_add_owned(o, "gid", json_object_new_int64(j->gid));
                r |= json_add_owned(o, "argv", json_strv_new(j->argv));
                r |= json_add_owned(o, "env", json_strv_new(j->env));
                r |= json_add_owned(o, "cwd", json_object_new_string(j->cwd));
                r |= json_add_owned(o, "cpus", json_object_new_int(j->cpus));
                r |= json_add_owned(o, "gpus", json_object_new_int(j->gpus));
                r |= json_add_owned(
                        o, "state", json_object_new_string(job_state_to_string(j->state)));
                r |= json_add_owned(o, "gpu_mask", json_object_new_uint64(j->gpu_mask));
                if (j->unit)
                        r |= json_add_owned(o, "unit", json_object_new_string(j->unit));
                if (j->stop != JOB_STOP_NONE)
                        r |= json_add_owned(
                                o, "stop", json_object_new_string(job_stop_to_string(j->stop)));
                r |= json_add_owned(o, "exit_status", json_object_new_int(j->exit_status));
                r |= json_add_owned(o, "submitted_usec", json_object_new_uint64(j->submitted_usec));
                r |= json_add_owned(o, "started_usec", json_object_new_uint64(j->started_usec));
                r |= json_add_owned(o, "ended_usec", json_object_new_uint64(j->ended_usec));
        }
        if (r < 0)
                return -ENOMEM;
        text = strdup(json_object_to_json_string_ext(
                root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

static const char *get_string(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool get_u64(json_object *o, const char *key, uint64_t max, uint64_t *ret) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0 || json_object_get_uint64(v) > max)
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

static char **get_strv(json_object *o, const char *key, size_t max) {
        json_object *a;
        size_t n;
        char **l;

        if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
                return NULL;
        n = json_object_array_length(a);
        if (n > max)
                return NULL;
        l = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; l && i < n; i++) {
                json_object *v = json_object_array_get_idx(a, i);

                if (!json_object_is_type(v, json_type_string) ||
                    !string_ok(json_object_get_string(v)) ||
                    !(l[i] = strdup(json_object_get_string(v)))) {
                        strv_free(l);
                        return NULL;
                }
        }
        return l;
}

static int parse_job(json_object *o, const JobQueue *q, Job **ret) {
        _cleanup_(job_freep) Job *j = calloc(1, sizeof(Job));
        const char *name, *cwd, *state, *unit, *stop;
        uint64_t id, uid, gid, cpus, gpus, mask, t1, t2, t3;
        json_object *v;

        if (!j)
                return -ENOMEM;
        if (!json_object_is_type(o, json_type_object) || !get_u64(o, "id", UINT64_MAX / 2, &id) ||
            id == 0 || !get_u64(o, "uid", UINT32_MAX - 1, &uid) ||
            !get_u64(o, "gid", UINT32_MAX - 1, &gid) || !get_u64(o, "cpus", 4096, &cpus) ||
            !get_u64(o, "gpus", q->n_gpus, &gpus) || !get_u64(o, "gpu_mask", UINT64_MAX, &mask) ||
            !get_u64(o, "submitted_usec", UINT64_MAX, &t1) ||
            !get_u64(o, "started_usec", UINT64_MAX, &t2) ||
            !get_u64(o, "ended_usec", UINT64_MAX, &t3))
                return -EBADMSG;
        name = get_string(o, "name");
        cwd = get_string(o, "cwd");
        state = get_string(o, "state");
        unit = get_string(o, "unit");
        stop = get_string(o, "stop");
        if (!string_ok(name) || !string_ok(cwd) || cwd[0] != '/' ||
            job_state_from_string(state) < 0 || (unit && !string_ok(unit)) ||
            (stop && job_stop_from_string(stop) < 0) ||
            (json_object_object_get_ex(o, "stop", &v) && !stop))
                return -EBADMSG;
        j->argv = get_strv(o, "argv", JOB_QUEUE_ARGV_MAX);
        j->env = get_strv(o, "env", JOB_QUEUE_ENV_MAX);
        if (!j->argv || !j->argv[0] || !j->env)
                return -EBADMSG;
        j->name = strdup(name);
        j->cwd = strdup(cwd);
        j->unit = unit ? strdup(unit) : NULL;
        if (!j->name || !j->cwd || (unit && !j->unit))
                return -ENOMEM;
        j->id = id;
        j->uid = (uid_t)uid;
        j->gid = (gid_t)gid;
        j->cpus = (unsigned)MAX(cpus, UINT64_C(1));
        j->gpus = (unsigned)gpus;
        j->state = job_state_from_string(state);
        j->stop =
                stop && job_state_is_active(j->state) ? job_stop_from_string(stop) : JOB_STOP_NONE;
        j->gpu_mask = job_state_is_active(j->state) ? mask : 0;
        if (job_state_is_active(j->state) &&
            (popcount64(mask) != j->gpus || (q->n_gpus < 64 && (mask >> q->n_gpus) != 0)))
                return -EBADMSG;
        j->exit_status = json_object_object_get_ex(o, "exit_status", &v) &&
                                         json_object_is_type(v, json_type_int)
                                 ? json_object_get_int(v)
                                 : -1;
        j->submitted_usec = t1;
        j->started_usec = t2;
        j->ended_usec = t3;
        *ret = TAKE_PTR(j);
        return 0;
}

int job_queue_parse(
        const char *json,
        size_t size,
        const char *boot_id,
        JobQueue *q,
        const char **reterr_reason) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        json_object *jobs, *v;
        const char *file_boot;
        bool same_boot;
        uint64_t next_id;

        *reterr_reason = "not a JSON object";
        root = json_parse_bounded(json, size, JOB_QUEUE_FILE_MAX, JOB_QUEUE_JSON_DEPTH);
        if (!root || !json_object_is_type(root, json_type_object))
                return -EBADMSG;
        *reterr_reason = "malformed queue";
        if (!json_object_object_get_ex(root, "version", &v) ||
            !json_object_is_type(v, json_type_int) || json_object_get_int(v) != 1 ||
            !get_u64(root, "next_id", UINT64_MAX / 2, &next_id) ||
            !json_object_object_get_ex(root, "jobs", &jobs) ||
            !json_object_is_type(jobs, json_type_array) ||
            json_object_array_length(jobs) > JOB_QUEUE_JOBS_MAX)
                return -EBADMSG;
        file_boot = get_string(root, "boot_id");
        same_boot = file_boot && boot_id && streq(file_boot, boot_id);

        job_queue_clear(q);
        q->next_id = MAX(next_id, UINT64_C(1));
        q->accepting = !json_object_object_get_ex(root, "accepting", &v) ||
                       !json_object_is_type(v, json_type_boolean) || json_object_get_boolean(v) ||
                       !same_boot; /* a drain ends with the boot */
        (void)snprintf(q->boot_id, sizeof(q->boot_id), "%s", boot_id ? boot_id : "");
        for (size_t i = 0; i < json_object_array_length(jobs); i++) {
                Job *j = NULL;
                int r = parse_job(json_object_array_get_idx(jobs, i), q, &j);

                if (r < 0) {
                        *reterr_reason = "malformed job";
                        job_queue_clear(q);
                        return r;
                }
                if (job_queue_get(q, j->id)) {
                        job_free(j);
                        *reterr_reason = "duplicate job id";
                        job_queue_clear(q);
                        return -EBADMSG;
                }
                /* Never twice: an active job of an earlier boot was interrupted. */
                if (!same_boot && job_state_is_active(j->state)) {
                        j->state = j->stop == JOB_STOP_CANCEL  ? JOB_CANCELLED
                                   : j->stop == JOB_STOP_DRAIN ? JOB_STOPPED
                                                               : JOB_FAILED;
                        j->stop = JOB_STOP_NONE;
                        j->gpu_mask = 0;
                        j->exit_status = -1;
                }
                r = job_queue_append(q, j);
                if (r < 0) {
                        job_free(j);
                        job_queue_clear(q);
                        return r;
                }
        }
        *reterr_reason = NULL;
        return 0;
}

int job_queue_load(const char *dir, const char *boot_id, JobQueue *q, const char **reterr_reason) {
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;
        int r;

        *reterr_reason = NULL;
        r = state_file_read(dir, JOB_QUEUE_FILE, JOB_QUEUE_FILE_MAX, &buf, &n);
        if (r == -EFBIG) {
                *reterr_reason = "file too large";
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        return job_queue_parse(buf, n, boot_id, q, reterr_reason);
}

int job_queue_save(const char *dir, const JobQueue *q) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = job_queue_format(q, &text);
        if (r < 0)
                return r;
        return state_file_write(dir, JOB_QUEUE_FILE, text);
}
