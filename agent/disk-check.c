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
#include "disk-reclaim.h"
#include "drain-child.h"
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

        /* freeing space (see disk-check.h); the started_ns are reset when the path is fine */
        bool holds_cache;           /* same file system as the workspace cache (last check) */
        int64_t reclaim_started_ns; /* monotonic, 0: not in this low spell */
        uint64_t reclaim_usec;      /* realtime of the last reclaim asked, 0: none */
        uint64_t reclaim_asked;
        int64_t reclaim_freed; /* -1: unknown */
        int64_t reclaim_cache; /* cache files' disk bytes after it, -1: unknown */
        int reclaim_error;
        int64_t cleanup_started_ns;
        uint64_t cleanup_usec;
        int cleanup_status; /* exit status, -1: killed at the deadline or could not run */
        int64_t cleanup_freed;
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

        /* freeing space: at most one child of each kind alive (one stuck on a hung mount stays
         * listed until it can be reaped, and blocks the next reclaim until then) */
        char *cache_directory; /* NULL: no workspace */
        char *mount_point;
        char *tmp_cleanup_age; /* NULL: off */
        DrainChild *reclaim_children, *cleanup_children;
        char *reclaim_path; /* the path being freed, NULL: none running */
        char *cleanup_path;
        uint64_t cleanup_avail_before;
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

static DiskEntry *disk_check_find(DiskCheck *d, const char *path) {
        for (size_t i = 0; path && i < d->n_entries; i++)
                if (streq(d->entries[i].path, path))
                        return &d->entries[i];
        return NULL;
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

static void disk_check_next_step(DiskCheck *d, size_t i, const struct statvfs *st);

static bool space_low(const DiskEntry *e, const struct statvfs *st, uint64_t *ret_avail) {
        uint64_t avail = (uint64_t)st->f_bavail * (uint64_t)(st->f_frsize ?: st->f_bsize);

        *ret_avail = avail;
        return avail < e->warn_free;
}

/* After a step: the path's state now, and the next step when it is still low. */
static void disk_check_step_done(DiskCheck *d, const char *path) {
        DiskEntry *e = disk_check_find(d, path);
        struct statvfs st;
        uint64_t avail;

        if (!e || statvfs(e->path, &st) < 0)
                return;
        if (!space_low(e, &st, &avail) &&
            (st.f_files == 0 ||
             (double)st.f_favail / (double)st.f_files >= d->warn_inodes_percent / 100.0))
                return; /* freed enough: no walk */
        disk_check_next_step(d, (size_t)(e - d->entries), &st);
}

static void disk_check_on_reclaim_exit(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        DiskCheck *d = userdata;
        _cleanup_free_ char *path = TAKE_PTR(d->reclaim_path);
        DiskEntry *e = disk_check_find(d, path);
        char f_path[300], f_freed[64], a[32], b[32], left[32];
        int64_t freed = -1, cache = -1;
        int error = 0;

        if (!e)
                return; /* no longer checked */
        if (timed_out)
                error = -ETIMEDOUT;
        else if (disk_reclaim_parse(output, &error, &freed, &cache) < 0)
                error = -EIO;
        e->reclaim_error = error;
        e->reclaim_freed = freed;
        e->reclaim_cache = cache;
        if (error < 0) {
                log_warning_errno(
                        error, "Failed to reclaim workspace cache on %s (mount %s), ignoring: %m",
                        e->path, d->mount_point);
                return; /* the next check goes on with the next step */
        }
        (void)snprintf(f_path, sizeof(f_path), "POOLAGENT_DISK=%s", e->path);
        (void)snprintf(f_freed, sizeof(f_freed), "POOLAGENT_FREED_BYTES=%" PRId64, freed);
        (void)log_struct(
                LOG_NOTICE, 0, ((const char *[]){f_path, f_freed, NULL}),
                "Disk %s is low: reclaimed %s of clean workspace cache (asked for %s; %s of cache "
                "left on disk)",
                e->path, freed >= 0 ? disk_format_bytes(a, sizeof(a), (uint64_t)freed) : "?",
                disk_format_bytes(b, sizeof(b), e->reclaim_asked),
                cache >= 0 ? disk_format_bytes(left, sizeof(left), (uint64_t)cache) : "?");
        disk_check_step_done(d, e->path);
}

static int disk_check_reclaim_start(DiskCheck *d, DiskEntry *e, uint64_t avail) {
        DiskReclaimArgs args = {
                .mount_point = d->mount_point,
                .bytes = disk_reclaim_target(avail, e->warn_free),
        };
        int r;

        d->reclaim_path = strdup(e->path);
        if (!d->reclaim_path)
                return -ENOMEM;
        r = drain_child_spawn(
                d->event, &d->reclaim_children, DISK_RECLAIM_TIMEOUT_USEC, disk_reclaim_child_run,
                &args, disk_check_on_reclaim_exit, d, NULL);
        if (r < 0) {
                free(TAKE_PTR(d->reclaim_path));
                return r;
        }
        e->reclaim_started_ns = now_monotonic_ns();
        e->reclaim_usec = (uint64_t)now_realtime_ns() / 1000;
        e->reclaim_asked = args.bytes;
        e->reclaim_freed = e->reclaim_cache = -1;
        e->reclaim_error = 0;
        log_info(
                "Disk %s is low, asking the workspace mount %s to drop %" PRIu64
                " bytes of clean cache",
                e->path, d->mount_point, args.bytes);
        return 0;
}

static void disk_check_on_cleanup_exit(
        DrainChild *c, int status, bool timed_out, const char *output, void *userdata) {
        DiskCheck *d = userdata;
        _cleanup_free_ char *path = TAKE_PTR(d->cleanup_path);
        DiskEntry *e = disk_check_find(d, path);
        char f_path[300], f_freed[64], a[32];
        struct statvfs st;
        uint64_t avail = 0;

        if (!e)
                return;
        e->cleanup_status = !timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        e->cleanup_freed = -1;
        if (statvfs(e->path, &st) >= 0) {
                (void)space_low(e, &st, &avail);
                e->cleanup_freed = avail > d->cleanup_avail_before
                                           ? (int64_t)(avail - d->cleanup_avail_before)
                                           : 0;
        }
        (void)snprintf(f_path, sizeof(f_path), "POOLAGENT_DISK=%s", e->path);
        (void)snprintf(
                f_freed, sizeof(f_freed), "POOLAGENT_FREED_BYTES=%" PRId64, e->cleanup_freed);
        (void)log_struct(
                e->cleanup_status == 0 ? LOG_NOTICE : LOG_WARNING, 0,
                ((const char *[]){f_path, f_freed, NULL}),
                "Disk %s is low: removed its files older than TmpCleanupAge=%s with "
                "systemd-tmpfiles (%s; %s freed)",
                e->path, d->tmp_cleanup_age ?: "?",
                timed_out                  ? "killed at its deadline"
                : e->cleanup_status == 0   ? "done"
                : e->cleanup_status == 127 ? "systemd-tmpfiles not found"
                                           : "systemd-tmpfiles failed",
                e->cleanup_freed >= 0 ? disk_format_bytes(a, sizeof(a), (uint64_t)e->cleanup_freed)
                                      : "?");
        disk_check_step_done(d, e->path);
}

static int disk_check_cleanup_start(DiskCheck *d, DiskEntry *e, uint64_t avail) {
        char line[DISK_TMPFILES_LINE_MAX];
        DiskTmpCleanupArgs args = {.line = line};
        int r;

        r = disk_tmpfiles_line(e->path, d->tmp_cleanup_age, line, sizeof(line));
        if (r < 0)
                return r;
        d->cleanup_path = strdup(e->path);
        if (!d->cleanup_path)
                return -ENOMEM;
        r = drain_child_spawn(
                d->event, &d->cleanup_children, DISK_TMP_CLEANUP_TIMEOUT_USEC,
                disk_tmp_cleanup_child_run, &args, disk_check_on_cleanup_exit, d, NULL);
        if (r < 0) {
                free(TAKE_PTR(d->cleanup_path));
                return r;
        }
        d->cleanup_avail_before = avail;
        e->cleanup_started_ns = now_monotonic_ns();
        e->cleanup_usec = (uint64_t)now_realtime_ns() / 1000;
        e->cleanup_status = -1;
        e->cleanup_freed = -1;
        log_info(
                "Disk %s is low, removing its files older than TmpCleanupAge=%s (systemd-tmpfiles)",
                e->path, d->tmp_cleanup_age);
        return 0;
}

static bool due(int64_t started_ns, int64_t now, uint64_t repeat_usec) {
        return started_ns == 0 || now - started_ns >= (int64_t)repeat_usec * 1000;
}

/* The next step for a path that is low (see disk-check.h): reclaim, /tmp cleanup, walk. */
static void disk_check_next_step(DiskCheck *d, size_t i, const struct statvfs *st) {
        DiskEntry *e = &d->entries[i];
        int64_t now = now_monotonic_ns();
        uint64_t avail;
        bool low_space = space_low(e, st, &avail);
        int r;

        if ((d->reclaim_path && streq(d->reclaim_path, e->path)) ||
            (d->cleanup_path && streq(d->cleanup_path, e->path)))
                return; /* a step of this path runs */
        if (low_space && e->holds_cache && d->mount_point &&
            due(e->reclaim_started_ns, now, DISK_RECLAIM_REPEAT_USEC)) {
                if (d->reclaim_path)
                        return; /* one for another path on this file system: its turn next */
                /* Not while a killed one is still stuck in the mount: on to the next steps. */
                if (!d->reclaim_children) {
                        r = disk_check_reclaim_start(d, e, avail);
                        if (r >= 0)
                                return;
                        log_warning_errno(
                                r,
                                "Failed to ask the workspace mount to reclaim cache, ignoring: %m");
                }
        }
        if (low_space && d->tmp_cleanup_age && streq(e->label, "tmp") && !d->cleanup_children &&
            due(e->cleanup_started_ns, now, DISK_TMP_CLEANUP_REPEAT_USEC)) {
                r = disk_check_cleanup_start(d, e, avail);
                if (r >= 0)
                        return;
                e->cleanup_started_ns = now; /* not again at every check */
                log_warning_errno(r, "Failed to start the cleanup of %s, ignoring: %m", e->path);
        }
        if (d->top > 0 && !d->walk && due(e->walk_started_ns, now, DISK_WALK_REPEAT_USEC)) {
                r = disk_check_walk_start(d, i);
                if (r < 0)
                        log_warning_errno(
                                r, "Failed to look for the largest directories on %s, ignoring: %m",
                                e->path);
        }
}

/* Whether path lies on the file system of the workspace's cache directory. */
static bool disk_check_holds_cache(DiskCheck *d, const char *path) {
        struct stat a, b;

        return d->cache_directory && stat(path, &a) >= 0 && stat(d->cache_directory, &b) >= 0 &&
               a.st_dev == b.st_dev;
}

int disk_check_now(DiskCheck *d) {
        HealthCheck checks[DISK_PATHS_MAX * 2];
        size_t n = 0;

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
                e->low = low;
                e->holds_cache = ok && disk_check_holds_cache(d, e->path);
                if (!low)
                        e->reclaim_started_ns = e->cleanup_started_ns = 0;
                else
                        disk_check_next_step(d, i, &st);
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

static int disk_check_set_string(char **s, const char *v) {
        char *c = NULL;

        if (!isempty(v) && !(c = strdup(v)))
                return -ENOMEM;
        free(*s);
        *s = c;
        return 0;
}

int disk_check_configure(DiskCheck *d, const DiskCheckConfig *config) {
        DiskEntry next[DISK_PATHS_MAX] = {};
        size_t n = 0, walk_entry = SIZE_MAX;
        int r;

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
                                e->holds_cache = o->holds_cache;
                                e->reclaim_started_ns = o->reclaim_started_ns;
                                e->reclaim_usec = o->reclaim_usec;
                                e->reclaim_asked = o->reclaim_asked;
                                e->reclaim_freed = o->reclaim_freed;
                                e->reclaim_cache = o->reclaim_cache;
                                e->reclaim_error = o->reclaim_error;
                                e->cleanup_started_ns = o->cleanup_started_ns;
                                e->cleanup_usec = o->cleanup_usec;
                                e->cleanup_status = o->cleanup_status;
                                e->cleanup_freed = o->cleanup_freed;
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
        r = disk_check_set_string(&d->cache_directory, config->cache_directory);
        if (r >= 0)
                r = disk_check_set_string(&d->mount_point, config->mount_point);
        if (r >= 0)
                r = disk_check_set_string(&d->tmp_cleanup_age, config->tmp_cleanup_age);
        if (r < 0)
                return r;
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
        drain_child_free_all(&d->reclaim_children);
        drain_child_free_all(&d->cleanup_children);
        free(d->reclaim_path);
        free(d->cleanup_path);
        free(d->cache_directory);
        free(d->mount_point);
        free(d->tmp_cleanup_age);
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

/* A step's object under key in j, with what every step has; NULL on OOM. */
static json_object *
step_json(json_object *j, const char *key, uint64_t started_usec, int64_t freed, bool running) {
        json_object *c = json_object_new_object();
        int r = json_put(j, key, c);

        if (r < 0)
                return NULL;
        r |= json_put(c, "started_usec", json_object_new_uint64(started_usec));
        r |= json_put(c, "freed_bytes", json_object_new_int64(freed));
        r |= json_put(c, "running", json_object_new_boolean(running));
        return r < 0 ? NULL : c;
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
                if (e->holds_cache && d->mount_point) {
                        json_object *c = step_json(
                                j, "reclaim", e->reclaim_usec, e->reclaim_freed,
                                d->reclaim_path && streq(d->reclaim_path, e->path));
                        if (!c)
                                return -ENOMEM;
                        r |= json_put(c, "asked_bytes", json_object_new_uint64(e->reclaim_asked));
                        r |= json_put(c, "cache_bytes", json_object_new_int64(e->reclaim_cache));
                        r |= json_put(c, "error", json_object_new_int(e->reclaim_error));
                }
                if (d->tmp_cleanup_age && streq(e->label, "tmp")) {
                        json_object *c = step_json(
                                j, "tmp_cleanup", e->cleanup_usec, e->cleanup_freed,
                                d->cleanup_path && streq(d->cleanup_path, e->path));
                        if (!c)
                                return -ENOMEM;
                        r |= json_put(c, "age", json_object_new_string(d->tmp_cleanup_age));
                        r |= json_put(c, "status", json_object_new_int(e->cleanup_status));
                }
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
