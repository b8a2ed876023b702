/* SPDX-License-Identifier: MIT */
#include "disk-check.h"

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "child-watch.h"
#include "event-util.h"
#include "log.h"
#include "message-ids.h"
#include "time-util.h"

#define DISK_WALK_SLOTS 8192U /* directories tallied per walk (a power of two) */

/* ---- pure parts ----------------------------------------------------------------------------- */

char *disk_format_bytes(char *buf, size_t size, uint64_t bytes) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = (double)bytes;
        size_t u = 0;

        while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                u++;
        }
        if (u == 0)
                (void)snprintf(buf, size, "%" PRIu64 " B", bytes);
        else
                (void)snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

static HealthVerdict verdict_below(double value, double unhealthy, double warning) {
        return value < unhealthy ? HEALTH_UNHEALTHY : value < warning ? HEALTH_WARNING : HEALTH_OK;
}

size_t disk_check_evaluate(
        const DiskSpec *spec,
        unsigned min_inodes_percent,
        unsigned warn_inodes_percent,
        const struct statvfs *st,
        int error,
        HealthCheck ret[static 2]) {
        char a[32], b[32], c[32];
        HealthCheck *space = &ret[0], *inodes = &ret[1];
        uint64_t avail;
        double ratio;

        health_check_init(space, "disk_free_bytes", spec->path, HEALTH_UNKNOWN);
        (void)snprintf(space->unit, sizeof(space->unit), "bytes");
        space->has_threshold = true;
        space->threshold_unhealthy = (double)spec->min_free;
        space->threshold_warning = (double)spec->warn_free;
        if (!st) {
                health_check_set_message(space, "statvfs() failed: %s", strerror(abs(error)));
                return 1;
        }
        avail = (uint64_t)st->f_bavail * (uint64_t)(st->f_frsize ? st->f_frsize : st->f_bsize);
        space->has_value = true;
        space->value = (double)avail;
        space->verdict =
                verdict_below((double)avail, (double)spec->min_free, (double)spec->warn_free);
        health_check_set_message(
                space, "%s free (unhealthy below %s, warning below %s)",
                disk_format_bytes(a, sizeof(a), avail),
                disk_format_bytes(b, sizeof(b), spec->min_free),
                disk_format_bytes(c, sizeof(c), spec->warn_free));
        if (st->f_files == 0)
                return 1;

        ratio = (double)st->f_favail / (double)st->f_files;
        health_check_init(inodes, "disk_free_inodes_ratio", spec->path, HEALTH_UNKNOWN);
        (void)snprintf(inodes->unit, sizeof(inodes->unit), "ratio");
        inodes->has_value = true;
        inodes->value = ratio;
        inodes->has_threshold = true;
        inodes->threshold_unhealthy = min_inodes_percent / 100.0;
        inodes->threshold_warning = warn_inodes_percent / 100.0;
        inodes->verdict =
                verdict_below(ratio, inodes->threshold_unhealthy, inodes->threshold_warning);
        health_check_set_message(
                inodes,
                "%.1f%% of inodes free (%" PRIu64 " of %" PRIu64
                "; unhealthy below %u%%, warning below %u%%)",
                ratio * 100.0, (uint64_t)st->f_favail, (uint64_t)st->f_files, min_inodes_percent,
                warn_inodes_percent);
        return 2;
}

/* ---- the walk (in the child process) -------------------------------------------------------- */

typedef struct WalkSlot {
        char *path; /* NULL: empty */
        uint64_t bytes;
} WalkSlot;

/* nftw() has no user data: the child's own globals. */
static WalkSlot *walk_slots;
static size_t walk_root_len;
static unsigned walk_entries;
static int64_t walk_deadline_ns;
static bool walk_partial;

static uint64_t hash_string(const char *s, size_t n) {
        uint64_t h = UINT64_C(1469598103934665603);

        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)s[i]) * UINT64_C(1099511628211);
        return h;
}

static void walk_tally(const char *path, size_t n, uint64_t bytes) {
        for (uint64_t h = hash_string(path, n), i = 0; i < 64; i++) {
                WalkSlot *s = &walk_slots[(h + i) & (DISK_WALK_SLOTS - 1)];
                if (!s->path) {
                        s->path = strndup(path, n);
                        if (!s->path)
                                return;
                        s->bytes = bytes;
                        return;
                }
                if (strlen(s->path) == n && memcmp(s->path, path, n) == 0) {
                        s->bytes += bytes;
                        return;
                }
        }
        /* Table crowded: this directory goes uncounted (the walk is marked partial). */
        walk_partial = true;
}

static int walk_on_entry(const char *fpath, const struct stat *st, int flag, struct FTW *ftw) {
        const char *rel = fpath + walk_root_len, *slash;
        uint64_t bytes = (uint64_t)st->st_blocks * 512U;

        if (++walk_entries > DISK_WALK_ENTRIES_MAX ||
            ((walk_entries & 1023U) == 0 && now_monotonic_ns() > walk_deadline_ns)) {
                walk_partial = true;
                return FTW_STOP;
        }
        if (ftw->level == 0 || flag == FTW_DNR || flag == FTW_NS)
                return FTW_CONTINUE;
        while (*rel == '/')
                rel++;
        /* The first and second level below the root, each with everything beneath it. */
        slash = strchr(rel, '/');
        walk_tally(fpath, (size_t)((slash ? slash : rel + strlen(rel)) - fpath), bytes);
        if (slash) {
                const char *slash2 = strchr(slash + 1, '/');
                walk_tally(
                        fpath, (size_t)((slash2 ? slash2 : slash + strlen(slash)) - fpath), bytes);
        }
        return FTW_CONTINUE;
}

static int walk_compare(const void *a, const void *b) {
        const WalkSlot *x = a, *y = b;

        if (!x->path || !y->path)
                return !x->path - !y->path;
        return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : strcmp(x->path, y->path);
}

/* Never returns. Writes "complete|partial\n" then "BYTES\tPATH\n" lines, at most top of them and
 * DISK_WALK_OUTPUT_MAX bytes (less than a pipe holds, so the write cannot block). */
_noreturn_ static void disk_walk_run(const char *root, unsigned top, int fd, pid_t parent) {
        static char out[DISK_WALK_OUTPUT_MAX];
        size_t len = 0;
        int r;

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(1);
        walk_slots = calloc(DISK_WALK_SLOTS, sizeof(WalkSlot));
        if (!walk_slots)
                _exit(1);
        walk_root_len = strlen(root);
        walk_deadline_ns = now_monotonic_ns() + (int64_t)DISK_WALK_TIMEOUT_USEC * 800; /* 80% */
        r = nftw(root, walk_on_entry, 16, FTW_PHYS | FTW_MOUNT | FTW_ACTIONRETVAL);
        if (r < 0)
                walk_partial = true;
        qsort(walk_slots, DISK_WALK_SLOTS, sizeof(WalkSlot), walk_compare);
        len = (size_t)snprintf(out, sizeof(out), "%s\n", walk_partial ? "partial" : "complete");
        for (unsigned i = 0; i < top && i < DISK_WALK_SLOTS && walk_slots[i].path; i++) {
                int n = snprintf(
                        out + len, sizeof(out) - len, "%" PRIu64 "\t%s\n", walk_slots[i].bytes,
                        walk_slots[i].path);
                if (n < 0 || (size_t)n >= sizeof(out) - len)
                        break;
                len += (size_t)n;
        }
        (void)!write(fd, out, len);
        _exit(0);
}

/* ---- the check ------------------------------------------------------------------------------ */

typedef struct DiskConsumer {
        char *path;
        uint64_t bytes;
} DiskConsumer;

typedef struct DiskEntry {
        char *label;
        char *path;
        uint64_t min_free;
        uint64_t warn_free;
        bool low;                /* warning or worse at the last check */
        int64_t walk_started_ns; /* monotonic, 0: never */
        uint64_t walked_usec;    /* realtime of the last finished walk, 0: none */
        bool walk_complete;
        DiskConsumer *consumers;
        size_t n_consumers;
} DiskEntry;

struct DiskCheck {
        sd_event *event; /* borrowed */
        Health *health;  /* borrowed */
        DiskEntry entries[DISK_PATHS_MAX];
        size_t n_entries;
        unsigned min_inodes_percent;
        unsigned warn_inodes_percent;
        unsigned top;
        uint64_t interval_usec;
        sd_event_source *timer;

        /* the walk: at most one */
        ChildWatch *walk; /* NULL: none */
        int walk_fd;      /* read end of its output pipe */
        size_t walk_entry;
};

static void disk_entry_clear_consumers(DiskEntry *e) {
        for (size_t i = 0; i < e->n_consumers; i++)
                free(e->consumers[i].path);
        free(e->consumers);
        e->consumers = NULL;
        e->n_consumers = 0;
}

static void disk_entry_done(DiskEntry *e) {
        disk_entry_clear_consumers(e);
        free(e->label);
        free(e->path);
        *e = (DiskEntry){};
}

static void disk_check_walk_release(DiskCheck *d) {
        d->walk = child_watch_free(d->walk);
        d->walk_fd = safe_close(d->walk_fd);
}

/* Parses the child's output into the entry and logs the report. */
static void disk_check_walk_report(DiskCheck *d, DiskEntry *e, char *text) {
        char line_bytes[32], report[2048] = "", f_path[300];
        size_t len = 0;
        char *line, *state = NULL;

        disk_entry_clear_consumers(e);
        e->walked_usec = (uint64_t)now_realtime_ns() / 1000;
        line = strtok_r(text, "\n", &state);
        e->walk_complete = line && streq(line, "complete");
        e->consumers = calloc(DISK_CONSUMERS_MAX, sizeof(DiskConsumer));
        for (line = strtok_r(NULL, "\n", &state); e->consumers && line;
             line = strtok_r(NULL, "\n", &state)) {
                char *tab = strchr(line, '\t'), *end;
                uint64_t bytes;

                if (!tab || e->n_consumers >= DISK_CONSUMERS_MAX)
                        continue;
                *tab = '\0';
                errno = 0;
                bytes = strtoull(line, &end, 10);
                if (errno != 0 || *end)
                        continue;
                e->consumers[e->n_consumers].path = strdup(tab + 1);
                if (!e->consumers[e->n_consumers].path)
                        break;
                e->consumers[e->n_consumers++].bytes = bytes;
                if (len < sizeof(report))
                        len += (size_t)snprintf(
                                report + len, sizeof(report) - len, "\n  %10s  %s",
                                disk_format_bytes(line_bytes, sizeof(line_bytes), bytes), tab + 1);
        }
        (void)snprintf(f_path, sizeof(f_path), "POOLAGENT_DISK=%s", e->path);
        (void)log_struct(
                LOG_WARNING, 0, ((const char *[]){POOLAGENT_MESSAGE_DISK_CONSUMERS, f_path, NULL}),
                "Disk %s is low on space or inodes; largest directories on it%s:%s", e->path,
                e->walk_complete ? "" : " (walk incomplete: bounded in entries and time)",
                e->n_consumers ? report : " none found");
}

static void disk_check_on_walk_exit(ChildWatch *w, int status, bool timed_out, void *userdata) {
        DiskCheck *d = userdata;
        char buf[DISK_WALK_OUTPUT_MAX + 1];
        DiskEntry *e;
        ssize_t n;

        n = read(d->walk_fd, buf, sizeof(buf) - 1);
        disk_check_walk_release(d);
        if (d->walk_entry >= d->n_entries)
                return; /* its path is no longer checked */
        e = &d->entries[d->walk_entry];
        if (timed_out || n <= 0) {
                log_warning(
                        "Looking for the largest directories on %s %s, ignoring", e->path,
                        timed_out ? "took too long" : "failed");
                e->walked_usec = (uint64_t)now_realtime_ns() / 1000;
                e->walk_complete = false;
                return;
        }
        buf[n] = '\0';
        disk_check_walk_report(d, e, buf);
}

static int disk_check_walk_start(DiskCheck *d, size_t i) {
        pid_t parent = getpid(), pid;
        int p[2], r;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return NEG_ERRNO();
        pid = fork();
        if (pid < 0) {
                r = NEG_ERRNO();
                (void)safe_close(p[0]);
                (void)safe_close(p[1]);
                return r;
        }
        if (pid == 0) {
                (void)close(p[0]);
                disk_walk_run(d->entries[i].path, d->top, p[1], parent);
        }
        (void)safe_close(p[1]);
        /* On failure the child is killed and reaped (a local walk ends at once). */
        r = child_watch_new(
                d->event, pid, DISK_WALK_TIMEOUT_USEC, disk_check_on_walk_exit, d, &d->walk);
        if (r < 0) {
                (void)safe_close(p[0]);
                return r;
        }
        d->walk_fd = p[0];
        d->walk_entry = i;
        d->entries[i].walk_started_ns = now_monotonic_ns();
        log_info(
                "Disk %s is low, looking for its largest directories (PID %d)", d->entries[i].path,
                (int)pid);
        return 0;
}

uint64_t disk_check_reclaim(DiskCheck *d, const char *path) {
        /* The hook for the agent's own data (the clean part of the azfilesfs cache): azfilesfs
         * offers no interface to drop it yet, so there is nothing to free here. */
        log_debug("Disk %s is low; the agent has nothing of its own to free there", path);
        return 0;
}

int disk_check_now(DiskCheck *d) {
        HealthCheck checks[DISK_PATHS_MAX * 2];
        size_t n = 0;
        int64_t now = now_monotonic_ns();

        for (size_t i = 0; i < d->n_entries; i++) {
                DiskEntry *e = &d->entries[i];
                DiskSpec spec = {
                        .label = e->label,
                        .path = e->path,
                        .min_free = e->min_free,
                        .warn_free = e->warn_free,
                };
                struct statvfs st;
                bool ok = statvfs(e->path, &st) >= 0;
                size_t k = disk_check_evaluate(
                        &spec, d->min_inodes_percent, d->warn_inodes_percent, ok ? &st : NULL,
                        ok ? 0 : NEG_ERRNO(), checks + n);
                bool low = false;

                for (size_t j = n; j < n + k; j++)
                        if (checks[j].verdict == HEALTH_WARNING ||
                            checks[j].verdict == HEALTH_UNHEALTHY)
                                low = true;
                n += k;
                if (low && !e->low)
                        (void)disk_check_reclaim(d, e->path);
                e->low = low;
                if (low && d->top > 0 && !d->walk &&
                    (e->walk_started_ns == 0 ||
                     now - e->walk_started_ns >= (int64_t)DISK_WALK_REPEAT_USEC * 1000)) {
                        int r = disk_check_walk_start(d, i);
                        if (r < 0)
                                log_warning_errno(
                                        r,
                                        "Failed to look for the largest directories on %s, ignoring: %m",
                                        e->path);
                }
        }
        return health_set_checks(d->health, "disk", checks, n);
}

static int disk_check_arm(DiskCheck *d);

static int disk_check_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DiskCheck *d = userdata;
        int r;

        r = disk_check_now(d);
        if (r < 0)
                log_warning_errno(r, "Failed to record the disk checks, ignoring: %m");
        (void)disk_check_arm(d);
        return 0;
}

static int disk_check_arm(DiskCheck *d) {
        return event_arm_relative(
                d->event, &d->timer, d->interval_usec, disk_check_on_timer, d, "disk check");
}

int disk_check_configure(DiskCheck *d, const DiskCheckConfig *config) {
        DiskEntry next[DISK_PATHS_MAX] = {};
        size_t n = 0, walk_entry = SIZE_MAX;

        for (size_t i = 0; i < config->n_disks && i < DISK_PATHS_MAX; i++) {
                const DiskSpec *s = &config->disks[i];
                DiskEntry *e = &next[n];

                if (isempty(s->path))
                        continue;
                e->label = strdup(s->label);
                e->path = strdup(s->path);
                if (!e->label || !e->path) {
                        for (size_t j = 0; j <= n; j++)
                                disk_entry_done(&next[j]);
                        return -ENOMEM;
                }
                e->min_free = s->min_free;
                e->warn_free = s->warn_free;
                /* The same path keeps its walk results. */
                for (size_t j = 0; j < d->n_entries; j++)
                        if (streq(d->entries[j].path, e->path)) {
                                DiskEntry *o = &d->entries[j];
                                e->low = o->low;
                                e->walk_started_ns = o->walk_started_ns;
                                e->walked_usec = o->walked_usec;
                                e->walk_complete = o->walk_complete;
                                e->consumers = TAKE_PTR(o->consumers);
                                e->n_consumers = o->n_consumers;
                                o->n_consumers = 0;
                                if (d->walk && d->walk_entry == j)
                                        walk_entry = n;
                        }
                n++;
        }
        d->walk_entry = walk_entry; /* SIZE_MAX: its path is gone, the result is dropped */
        for (size_t i = 0; i < d->n_entries; i++)
                disk_entry_done(&d->entries[i]);
        memcpy(d->entries, next, sizeof(next));
        d->n_entries = n;
        d->min_inodes_percent = config->min_free_inodes_percent;
        d->warn_inodes_percent = config->warn_free_inodes_percent;
        d->top = MIN(config->top_consumers, DISK_CONSUMERS_MAX);
        d->interval_usec = config->interval_usec;
        (void)disk_check_arm(d);
        return disk_check_now(d);
}

int disk_check_new(
        sd_event *event, Health *health, const DiskCheckConfig *config, DiskCheck **ret) {
        _cleanup_(disk_check_freep) DiskCheck *d = NULL;
        int r;

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->event = event;
        d->health = health;
        d->walk_fd = -EBADF;
        r = disk_check_configure(d, config);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(d);
        return 0;
}

DiskCheck *disk_check_free(DiskCheck *d) {
        if (!d)
                return NULL;
        disk_check_walk_release(d); /* kills and reaps a walk (local: it ends at once) */
        sd_event_source_disable_unref(d->timer);
        for (size_t i = 0; i < d->n_entries; i++)
                disk_entry_done(&d->entries[i]);
        free(d);
        return NULL;
}

static int json_put(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int disk_check_status_json(const DiskCheck *d, json_object *o) {
        json_object *disks = json_object_new_array();
        int r = 0;

        r |= json_put(o, "disks", disks);
        for (size_t i = 0; disks && i < d->n_entries; i++) {
                const DiskEntry *e = &d->entries[i];
                json_object *j = json_object_new_object(), *list = json_object_new_array();

                if (!j || json_object_array_add(disks, j) < 0) {
                        json_object_put(j);
                        json_object_put(list);
                        return -ENOMEM;
                }
                r |= json_put(j, "label", json_object_new_string(e->label));
                r |= json_put(j, "path", json_object_new_string(e->path));
                r |= json_put(j, "low", json_object_new_boolean(e->low));
                r |= json_put(j, "walked_usec", json_object_new_uint64(e->walked_usec));
                r |= json_put(j, "walk_complete", json_object_new_boolean(e->walk_complete));
                r |= json_put(j, "consumers", list);
                for (size_t k = 0; list && k < e->n_consumers; k++) {
                        json_object *c = json_object_new_object();
                        if (!c || json_object_array_add(list, c) < 0) {
                                json_object_put(c);
                                return -ENOMEM;
                        }
                        r |= json_put(c, "path", json_object_new_string(e->consumers[k].path));
                        r |= json_put(c, "bytes", json_object_new_uint64(e->consumers[k].bytes));
                }
        }
        r |= json_put(o, "walk_pid", json_object_new_int64(d->walk ? child_watch_pid(d->walk) : 0));
        return r < 0 ? -ENOMEM : 0;
}
