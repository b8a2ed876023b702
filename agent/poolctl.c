/* SPDX-License-Identifier: MIT */
/* poolctl: talks to poolagentd over its control socket. See poolctl(1). */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "control.h"
#include "job-queue.h"
#include "macro.h"
#include "time-util.h"

/* Exit codes, documented in poolctl(1). */
enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,      /* the agent answered with an error */
        EXIT_USAGE = 2,       /* bad command line */
        EXIT_UNREACHABLE = 3, /* no agent on the socket, no reply in time, or a garbled reply */
        EXIT_PERMISSION = 4,  /* the command needs root or the admin group */
};

DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put);

#define DEFAULT_SOCKET "/run/poolagent/control.sock"
#define DEFAULT_TIMEOUT_MS 30000

static const char *arg_socket = DEFAULT_SOCKET;
static bool arg_json = false;
static bool arg_sync = false;
static bool arg_cancel = false;
static int arg_timeout_ms = DEFAULT_TIMEOUT_MS;
static const char *arg_name = NULL;
static long arg_cpus = -1; /* -1: not given (one slot) */
static long arg_gpus = -1;

extern char **environ;

static void help(void) {
        printf("Usage: poolctl [OPTIONS] COMMAND\n\n"
               "Query and control poolagentd.\n\n"
               "Commands:\n"
               "  status                  show the agent's state and configuration\n"
               "  version                 show the versions of poolctl and the agent\n"
               "  reload                  reload the agent's configuration (root or admin group)\n"
               "  drain                   drain this VM now: not healthy, no new logins, flush\n"
               "                          the workspace (root or admin group)\n"
               "  drain --cancel          end a drain: healthy again, logins allowed\n"
               "  flush                   flush the workspace and print the dirty bytes left\n"
               "                          (root or admin group)\n"
               "  links                   show the notebooks link of each user (others: your own)\n"
               "  links --sync            check and repair every user's link now and show the\n"
               "                          result (root or admin group)\n"
               "  health                  show every health check; exit 0 if the VM is healthy,\n"
               "                          1 if not (unhealthy or draining)\n"
               "  submit [--name N] [--cpus C] [--gpus K] -- COMMAND...\n"
               "                          queue COMMAND as a job that runs as you, with your\n"
               "                          environment and working directory\n"
               "  jobs                    list your jobs (root or admin group: everyone's)\n"
               "  cancel ID               cancel a queued job or stop a running one\n"
               "  logs ID                 show the end of a job's output\n\n"
               "Options:\n"
               "      --json              print the agent's reply as JSON\n"
               "      --sync              with links: run a pass and wait for it\n"
               "      --cancel            with drain: end the drain\n"
               "      --name=NAME         with submit: the job's name (default: the command)\n"
               "      --cpus=C            with submit: CPU slots the job takes (default 1)\n"
               "      --gpus=K            with submit: GPUs the job gets (CUDA_VISIBLE_DEVICES)\n"
               "  -s, --socket=PATH       control socket (default $POOLAGENT_CONTROL_SOCKET or\n"
               "                          " DEFAULT_SOCKET ")\n"
               "  -t, --timeout=SECONDS   how long to wait for the agent (default 30)\n"
               "  -h, --help              show this help\n\n"
               "Exit status: 0 success, 1 the agent reported an error (health: the VM is not\n"
               "healthy), 2 usage error, 3 agent not reachable, 4 permission denied.\n"
               "See poolctl(1).\n");
}

static void die_usage(const char *message, const char *arg) {
        fprintf(stderr, "poolctl: %s%s%s\nTry 'poolctl --help'.\n", message, arg ? ": " : "",
                arg ? arg : "");
}

/* ---- talking to the agent ------------------------------------------------------------------- */

static int64_t remaining_ms(int64_t deadline_ns) {
        int64_t left = deadline_ns - now_monotonic_ns();

        return left <= 0 ? 0 : (left + 999999) / 1000000;
}

/* Sends the request and returns the parsed reply. On failure prints why and returns the exit code
 * to use. */
static int call(const char *request, int64_t extra_wait_ms, json_object **ret) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        int64_t deadline = now_monotonic_ns() + ((int64_t)arg_timeout_ms + extra_wait_ms) * 1000000;
        json_object *reply;
        ssize_t n;

        if (strlen(arg_socket) >= sizeof(sa.sun_path)) {
                die_usage("socket path too long", arg_socket);
                return EXIT_USAGE;
        }
        memcpy(sa.sun_path, arg_socket, strlen(arg_socket) + 1);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "poolctl: cannot reach poolagentd at %s: %m\n", arg_socket);
                return EXIT_UNREACHABLE;
        }
        if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
                fprintf(stderr, "poolctl: cannot send to poolagentd: %m\n");
                return EXIT_UNREACHABLE;
        }
        buf = malloc(CONTROL_REPLY_MAX + 1);
        if (!buf) {
                fprintf(stderr, "poolctl: out of memory\n");
                return EXIT_FAILED;
        }
        for (;;) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                int k = poll(&p, 1, (int)remaining_ms(deadline));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        fprintf(stderr, "poolctl: no reply from poolagentd within %d s\n",
                                arg_timeout_ms / 1000);
                        return EXIT_UNREACHABLE;
                }
                break;
        }
        n = recv(fd, buf, CONTROL_REPLY_MAX + 1, MSG_TRUNC);
        if (n <= 0 || (size_t)n > CONTROL_REPLY_MAX) {
                fprintf(stderr, "poolctl: %s\n",
                        n < 0    ? strerror(errno)
                        : n == 0 ? "poolagentd closed the connection"
                                 : "reply too large");
                return EXIT_UNREACHABLE;
        }
        buf[n] = '\0';
        reply = json_tokener_parse(buf);
        if (!reply || !json_object_is_type(reply, json_type_object)) {
                json_object_put(reply);
                fprintf(stderr, "poolctl: garbled reply from poolagentd\n");
                return EXIT_UNREACHABLE;
        }
        *ret = reply;
        return EXIT_OK;
}

static const char *get_str(json_object *o, const char *key) {
        json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) ||
            !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static json_object *get(json_object *o, const char *key) {
        json_object *v = NULL;

        if (o)
                (void)json_object_object_get_ex(o, key, &v);
        return v;
}

/* Returns the exit code for an {"ok": false} reply after printing the error. */
static int report_error(json_object *reply) {
        const char *err = get_str(reply, "error"), *no = get_str(reply, "errno");

        fprintf(stderr, "poolctl: %s\n", err ? err : "the agent reported an unspecified error");
        return no && streq(no, "EPERM") ? EXIT_PERMISSION : EXIT_FAILED;
}

/* Prints the reply with --json; for an {"ok": false} reply returns its exit code (after printing
 * the error without --json), else EXIT_OK. */
static int print_reply(json_object *reply) {
        if (arg_json)
                printf("%s\n",
                       json_object_to_json_string_ext(
                               reply, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (!json_object_get_boolean(get(reply, "ok"))) {
                if (arg_json) {
                        const char *no = get_str(reply, "errno");
                        return no && streq(no, "EPERM") ? EXIT_PERMISSION : EXIT_FAILED;
                }
                return report_error(reply);
        }
        return EXIT_OK;
}

/* ---- human output --------------------------------------------------------------------------- */

static void format_time(char *buf, size_t size, uint64_t usec) {
        time_t t = (time_t)(usec / 1000000);
        struct tm tm;

        if (usec == 0 || !localtime_r(&t, &tm) ||
            strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                (void)snprintf(buf, size, "n/a");
}

static void format_span(char *buf, size_t size, uint64_t usec) {
        uint64_t s = usec / 1000000;

        if (s < 60)
                (void)snprintf(buf, size, "%" PRIu64 "s", s);
        else if (s < 3600)
                (void)snprintf(buf, size, "%" PRIu64 "min %" PRIu64 "s", s / 60, s % 60);
        else if (s < 86400)
                (void)snprintf(buf, size, "%" PRIu64 "h %" PRIu64 "min", s / 3600, (s % 3600) / 60);
        else
                (void)snprintf(
                        buf, size, "%" PRIu64 "d %" PRIu64 "h", s / 86400, (s % 86400) / 3600);
}

static void print_list(json_object *a, const char *sep, const char *none) {
        size_t n = a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;

        if (n == 0)
                fputs(none, stdout);
        for (size_t i = 0; i < n; i++)
                printf("%s%s", i ? sep : "",
                       json_object_get_string(json_object_array_get_idx(a, i)));
}

/* The drain's state and its steps with durations (status and drain). */
static void print_drain_status(json_object *d) {
        json_object *steps = get(d, "steps"), *se = get(d, "scheduled_events");
        const char *state = get_str(d, "state");

        if (!d)
                return;
        if (!state || streq(state, "idle"))
                printf("      Drain: idle");
        else
                printf("      Drain: %s (%s%s%s), step %s%s", state, get_str(d, "source") ?: "?",
                       get_str(d, "event_type") ? " " : "", get_str(d, "event_type") ?: "",
                       get_str(d, "step") ?: "?",
                       json_object_get_boolean(get(d, "draining")) ? ", VM reported not healthy"
                                                                   : "");
        if (se)
                printf("; scheduled events from %s for %s: %" PRId64 " polls, %" PRId64
                       " errors%s%s\n",
                       get_str(se, "endpoint") ?: "?",
                       get_str(se, "vm_name") ?: "(name not known yet)",
                       json_object_get_int64(get(se, "polls")),
                       json_object_get_int64(get(se, "errors")),
                       get_str(se, "last_error") ? ", last: " : "",
                       get_str(se, "last_error") ?: "");
        else
                printf("; scheduled events not polled\n");
        for (size_t i = 0; steps && i < json_object_array_length(steps); i++) {
                json_object *st = json_object_array_get_idx(steps, i);
                const char *res = get_str(st, "result") ?: "?";

                if (streq(res, "pending"))
                        continue;
                printf("             %-12s %-8s %6" PRId64 " ms  %s\n", get_str(st, "step") ?: "?",
                       res, json_object_get_int64(get(st, "duration_ms")),
                       get_str(st, "note") ?: "");
        }
}

static void print_status(json_object *r) {
        json_object *conf = get(r, "config"), *reload = get(r, "last_reload"),
                    *control = get(r, "control"), *ws = get(r, "workspace"),
                    *users = get(r, "users"), *peer = get(r, "peer"),
                    *pending = get(conf, "restart_pending");
        uint64_t since = json_object_get_uint64(get(r, "since_usec"));
        struct timespec now;
        char t1[64], t2[64];

        (void)clock_gettime(CLOCK_REALTIME, &now);
        format_time(t1, sizeof(t1), since);
        format_span(
                t2, sizeof(t2),
                (uint64_t)now.tv_sec * 1000000 > since ? (uint64_t)now.tv_sec * 1000000 - since
                                                       : 0);

        printf("poolagentd %s: %s\n", get_str(r, "version") ?: "?", get_str(r, "state") ?: "?");
        printf("        PID: %" PRId64 ", up %s (since %s)\n", json_object_get_int64(get(r, "pid")),
               t2, t1);
        printf("     Config: ");
        print_list(get(conf, "files"), ", ", "(none, built-in defaults)");
        format_time(t1, sizeof(t1), json_object_get_uint64(get(conf, "loaded_usec")));
        printf("\n             loaded %s, log level %s\n", t1, get_str(conf, "log_level") ?: "?");
        if (reload && json_object_is_type(reload, json_type_object)) {
                format_time(t1, sizeof(t1), json_object_get_uint64(get(reload, "usec")));
                if (json_object_get_boolean(get(reload, "ok")))
                        printf("     Reload: ok at %s (%" PRId64 " so far)\n", t1,
                               json_object_get_int64(get(reload, "count")));
                else
                        printf("     Reload: FAILED at %s, old configuration in use:\n             %s\n",
                               t1, get_str(reload, "error") ?: "unknown error");
        }
        if (pending && json_object_array_length(pending) > 0) {
                printf("    Restart: needed for ");
                print_list(pending, ", ", "");
                printf("\n");
        }
        printf("    Control: %s, %" PRId64 " client%s connected\n",
               get_str(control, "socket") ?: "?", json_object_get_int64(get(control, "clients")),
               json_object_get_int64(get(control, "clients")) == 1 ? "" : "s");
        if (get_str(control, "admin_group"))
                printf("     Admins: root and group %s%s\n", get_str(control, "admin_group"),
                       json_object_get_boolean(get(control, "admin_group_resolved"))
                               ? ""
                               : " (group not found: root only)");
        else
                printf("     Admins: root only\n");
        if (get_str(ws, "source")) {
                printf("  Workspace: %s at %s\n             cache %s\n", get_str(ws, "source"),
                       get_str(ws, "mount_point") ?: "?", get_str(ws, "cache_directory") ?: "?");
                if (get_str(ws, "state")) {
                        format_time(
                                t1, sizeof(t1), json_object_get_uint64(get(ws, "last_check_usec")));
                        printf("      Mount: %s: %s\n             checked %s\n",
                               get_str(ws, "state"), get_str(ws, "detail") ?: "", t1);
                }
                if (get(ws, "mount")) {
                        json_object *mo = get(ws, "mount");
                        const char *mode = get_str(mo, "mode"), *last = get_str(mo, "last_result");
                        bool by_systemd = mode && streq(mode, "systemd");

                        printf("             mounted by %s %s, %s; %" PRId64 " recoveries%s%s\n",
                               by_systemd ? "systemd unit" : "the agent running",
                               by_systemd ? get_str(mo, "unit") : "azfilesfs",
                               get_str(mo, "action") ?: "?",
                               json_object_get_int64(get(mo, "recoveries")), last ? ", last: " : "",
                               last ?: "");
                }
        } else
                printf("  Workspace: none configured ([Workspace] Source=)\n");
        printf("      Users: UID %s%s%s, deny: ", get_str(users, "uid_range") ?: "?",
               get_str(users, "group") ? " and group " : "", get_str(users, "group") ?: "");
        print_list(get(users, "deny"), " ", "nobody");
        printf("\n             link ~/%s/%s\n", get_str(users, "notebooks_directory") ?: "?",
               get_str(users, "link_name") ?: "?");
        if (get(users, "links")) {
                json_object *l = get(users, "links"), *c = get(l, "counts"),
                            *last = get(l, "last_pass");
                printf("      Links: %" PRId64 " users: %" PRId64 " ok, %" PRId64
                       " pending, %" PRId64 " conflict, %" PRId64 " refused, %" PRId64 " error\n",
                       json_object_get_int64(get(l, "users")),
                       json_object_get_int64(get(c, "ok")) +
                               json_object_get_int64(get(c, "created")),
                       json_object_get_int64(get(c, "pending")),
                       json_object_get_int64(get(c, "conflict")),
                       json_object_get_int64(get(c, "refused")),
                       json_object_get_int64(get(c, "error")));
                format_time(t1, sizeof(t1), json_object_get_uint64(get(last, "finished_usec")));
                printf("             last pass %s%s%s; sessions: %s\n", last ? t1 : "not yet",
                       json_object_get_boolean(get(l, "running")) ? ", one running" : "",
                       json_object_get_boolean(get(l, "share_ready"))
                               ? ""
                               : ", waiting for the workspace",
                       get_str(l, "sessions") ?: "?");
        }
        if (get(r, "health"))
                printf("     Health: %s%s%s\n", get_str(get(r, "health"), "summary") ?: "?",
                       get_str(get(r, "health"), "http") ? ", HTTP on " : "",
                       get_str(get(r, "health"), "http") ?: "");
        print_drain_status(get(r, "drain"));
        if (get(r, "jobs")) {
                json_object *j = get(r, "jobs");

                printf("       Jobs: %" PRId64 " running, %" PRId64 " queued; %" PRId64
                       " of %" PRId64 " slots, %" PRId64 " GPUs%s%s%s\n",
                       json_object_get_int64(get(j, "running")),
                       json_object_get_int64(get(j, "queued")),
                       json_object_get_int64(get(j, "slots_used")),
                       json_object_get_int64(get(j, "slots")),
                       json_object_get_int64(get(j, "gpus")),
                       json_object_get_boolean(get(j, "accepting")) ? ""
                                                                    : "; not accepting (draining)",
                       get_str(j, "unavailable_reason") ? "; UNAVAILABLE: " : "",
                       get_str(j, "unavailable_reason") ?: "");
        }
        if (peer)
                printf("        You: UID %" PRId64 ", %s\n",
                       json_object_get_int64(get(peer, "uid")),
                       json_object_get_boolean(get(peer, "admin")) ? "admin (may change state)"
                                                                   : "read-only");
}

static void format_value(char *buf, size_t size, json_object *v, const char *unit) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
        double d = json_object_get_double(v);
        size_t u = 0;

        if (!v || json_object_is_type(v, json_type_null)) {
                (void)snprintf(buf, size, "-");
                return;
        }
        if (unit && streq(unit, "bytes")) {
                while (d >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                        d /= 1024.0;
                        u++;
                }
                (void)snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", d, units[u]);
        } else if (unit && streq(unit, "ratio"))
                (void)snprintf(buf, size, "%.1f%%", d * 100.0);
        else
                (void)snprintf(buf, size, "%g%s%s", d, unit ? " " : "", unit ?: "");
}

/* What the agent freed on a low disk (disk-check.h): the workspace cache, the /tmp cleanup. */
static void print_disk_freed(json_object *d) {
        json_object *rc = get(d, "reclaim"), *tc = get(d, "tmp_cleanup");
        char freed[64];

        if (rc && json_object_get_int64(get(rc, "started_usec")) > 0) {
                format_value(freed, sizeof(freed), get(rc, "freed_bytes"), "bytes");
                if (json_object_get_boolean(get(rc, "running")))
                        printf("\nReclaiming workspace cache on %s\n", get_str(d, "path") ?: "?");
                else if (json_object_get_int(get(rc, "error")) < 0)
                        printf("\nReclaiming workspace cache on %s failed: %s\n",
                               get_str(d, "path") ?: "?",
                               strerror(-json_object_get_int(get(rc, "error"))));
                else
                        printf("\nReclaimed %s of clean workspace cache on %s\n", freed,
                               get_str(d, "path") ?: "?");
        }
        if (tc && json_object_get_int64(get(tc, "started_usec")) > 0) {
                format_value(freed, sizeof(freed), get(tc, "freed_bytes"), "bytes");
                if (json_object_get_boolean(get(tc, "running")))
                        printf("\nRemoving files older than TmpCleanupAge=%s from %s\n",
                               get_str(tc, "age") ?: "?", get_str(d, "path") ?: "?");
                else
                        printf("\nRemoved files older than TmpCleanupAge=%s from %s: %s freed%s\n",
                               get_str(tc, "age") ?: "?", get_str(d, "path") ?: "?", freed,
                               json_object_get_int(get(tc, "status")) == 0
                                       ? ""
                                       : " (systemd-tmpfiles failed)");
        }
}

static void print_health(json_object *r) {
        json_object *checks = get(r, "checks"), *disks = get(r, "disks");
        size_t n = checks && json_object_is_type(checks, json_type_array)
                           ? json_object_array_length(checks)
                           : 0;
        int w_name = 5, w_subject = 7;

        printf("Health: %s%s\n", get_str(r, "summary") ?: "?",
               json_object_get_boolean(get(r, "draining")) ? " (draining)" : "");
        if (get_str(r, "http"))
                printf("  HTTP: http://%s/health\n", get_str(r, "http"));
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(checks, i);
                w_name = MAX(w_name, (int)strlen(get_str(c, "name") ?: "?"));
                w_subject = MAX(w_subject, (int)strlen(get_str(c, "subject") ?: ""));
        }
        w_subject = MIN(w_subject, 40);
        if (n > 0)
                printf("\n%-9s  %-*s  %-*s  %12s  %s\n", "VERDICT", w_name, "CHECK", w_subject,
                       "SUBJECT", "VALUE", "DETAIL");
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(checks, i);
                char value[64];

                format_value(value, sizeof(value), get(c, "value"), get_str(c, "unit"));
                printf("%-9s  %-*s  %-*s  %12s  %s\n", get_str(c, "verdict") ?: "?", w_name,
                       get_str(c, "name") ?: "?", w_subject, get_str(c, "subject") ?: "", value,
                       get_str(c, "message") ?: "");
        }
        for (size_t i = 0; disks && i < json_object_array_length(disks); i++) {
                json_object *d = json_object_array_get_idx(disks, i), *l = get(d, "consumers");
                size_t k = l ? json_object_array_length(l) : 0;

                print_disk_freed(d);
                if (k == 0)
                        continue;
                printf("\nLargest directories on %s%s:\n", get_str(d, "path") ?: "?",
                       json_object_get_boolean(get(d, "walk_complete")) ? ""
                                                                        : " (incomplete walk)");
                for (size_t j = 0; j < k; j++) {
                        json_object *e = json_object_array_get_idx(l, j);
                        char value[64];

                        format_value(value, sizeof(value), get(e, "bytes"), "bytes");
                        printf("  %12s  %s\n", value, get_str(e, "path") ?: "?");
                }
        }
}

static void print_links(json_object *r) {
        static const char *const states[] = {"ok",       "created", "pending",
                                             "conflict", "refused", "error"};
        json_object *users = get(r, "users"), *pass = get(r, "pass"), *counts = get(r, "counts");
        size_t n = users && json_object_is_type(users, json_type_array)
                           ? json_object_array_length(users)
                           : 0;
        int w_user = 4, w_state = 5, w_link = 4;
        char t[64];

        for (size_t i = 0; i < n; i++) {
                json_object *u = json_object_array_get_idx(users, i);
                w_user = MAX(w_user, (int)strlen(get_str(u, "user") ?: "?"));
                w_state = MAX(w_state, (int)strlen(get_str(u, "state") ?: "?"));
                w_link = MAX(w_link, (int)strlen(get_str(u, "link") ?: "-"));
        }
        w_user = MIN(w_user, 32);
        w_link = MIN(w_link, 60);
        if (n > 0) {
                printf("%-*s  %-*s  %-*s  %s\n", w_user, "USER", w_state, "STATE", w_link, "LINK",
                       "DETAIL");
                for (size_t i = 0; i < n; i++) {
                        json_object *u = json_object_array_get_idx(users, i);
                        printf("%-*s  %-*s  %-*s  %s\n", w_user, get_str(u, "user") ?: "?", w_state,
                               get_str(u, "state") ?: "?", w_link, get_str(u, "link") ?: "-",
                               get_str(u, "detail") ?: "");
                }
        } else if (json_object_get_boolean(get(r, "all_users")))
                printf("No eligible users.\n");
        else
                printf("You have no notebooks link entry (not an eligible user, or no pass has run yet).\n");
        if (json_object_get_int64(get(r, "omitted")) > 0)
                printf("(%" PRId64 " more users with links in place not shown; see --json)\n",
                       json_object_get_int64(get(r, "omitted")));
        if (counts) {
                bool first = true;
                printf("\n");
                for (size_t i = 0; i < ELEMENTSOF(states); i++) {
                        int64_t k = json_object_get_int64(get(counts, states[i]));
                        if (k > 0) {
                                printf("%s%" PRId64 " %s", first ? "" : ", ", k, states[i]);
                                first = false;
                        }
                }
                if (first)
                        printf("no users");
                printf("\n");
        }
        if (!pass || !json_object_is_type(pass, json_type_object)) {
                printf("No links pass has finished yet%s.\n",
                       json_object_get_boolean(get(r, "running")) ? " (one is running)" : "");
                return;
        }
        format_time(t, sizeof(t), json_object_get_uint64(get(pass, "finished_usec")));
        printf("Last pass: %s (%s)", t, get_str(pass, "trigger") ?: "?");
        if (json_object_get_boolean(get(pass, "complete")))
                printf(", complete");
        else
                printf(", INCOMPLETE: %s", get_str(pass, "error") ?: "unknown error");
        printf("%s\n", json_object_get_boolean(get(r, "running")) ? "; another is running" : "");
}

static void print_reload(json_object *r) {
        json_object *changed = get(r, "changed"), *pending = get(r, "restart_pending");
        size_t n = changed ? json_object_array_length(changed) : 0;

        if (n == 0)
                printf("Configuration reloaded, nothing changed.\n");
        else
                printf("Configuration reloaded, %zu setting%s changed:\n", n, n == 1 ? "" : "s");
        for (size_t i = 0; i < n; i++) {
                json_object *c = json_object_array_get_idx(changed, i);
                printf("  %s%s\n", get_str(c, "key") ?: "?",
                       json_object_get_boolean(get(c, "needs_restart"))
                               ? " (takes effect after a restart)"
                               : "");
        }
        if (pending && json_object_array_length(pending) > 0) {
                printf("Restart poolagentd to apply: ");
                print_list(pending, ", ", "");
                printf("\n");
        }
}

/* ---- commands ------------------------------------------------------------------------------- */

/* A --sync pass that did not finish: the reply is shown, but it is no success. */
static bool sync_incomplete(json_object *result) {
        return arg_sync && !json_object_get_boolean(get(get(result, "pass"), "complete"));
}

static int verb(const char *name) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *result;
        char request[256];
        int r;

        if (arg_sync)
                /* The agent answers within timeout_ms (an error if the pass takes longer);
                 * poolctl waits a little more for that answer. */
                (void)snprintf(
                        request, sizeof(request),
                        "{\"command\":\"%s\",\"sync\":true,\"timeout_ms\":%d}", name,
                        arg_timeout_ms);
        else if (arg_cancel)
                (void)snprintf(
                        request, sizeof(request), "{\"command\":\"%s\",\"cancel\":true}", name);
        else
                (void)snprintf(request, sizeof(request), "{\"command\":\"%s\"}", name);
        /* A flush may take the agent's FlushTimeout= (default 2 minutes). */
        r = call(request, arg_sync ? 2000 : streq(name, "flush") ? 3600 * 1000 : 0, &reply);
        if (r != EXIT_OK)
                return r;
        r = print_reply(reply);
        if (r != EXIT_OK)
                return r;
        result = get(reply, "result");
        if (streq(name, "health")) {
                if (!arg_json)
                        print_health(result);
                return json_object_get_boolean(get(result, "healthy")) ? EXIT_OK : EXIT_FAILED;
        }
        if (arg_json)
                return sync_incomplete(result) ? EXIT_FAILED : EXIT_OK;
        if (streq(name, "status"))
                print_status(result);
        else if (streq(name, "version"))
                printf("poolctl %s\npoolagentd %s\n", PROJECT_VERSION,
                       get_str(result, "version") ?: "?");
        else if (streq(name, "reload"))
                print_reload(result);
        else if (streq(name, "drain"))
                print_drain_status(get(result, "drain"));
        else if (streq(name, "flush"))
                printf("%s\n", get_str(result, "note") ?: "flushed");
        else if (streq(name, "links"))
                print_links(result);
        return sync_incomplete(result) ? EXIT_FAILED : EXIT_OK;
}

/* ---- jobs ------------------------------------------------------------------------------------ */

/* Sends request (taken over), prints the reply as JSON with --json; *ret: the result of an
 * {"ok": true} reply. Returns the exit code. */
static int call_json(json_object *request, json_object **ret_reply, json_object **ret_result) {
        _cleanup_(json_object_putp) json_object *req = request, *reply = NULL;
        const char *text;
        size_t len;
        int r;

        if (!req)
                return EXIT_FAILED;
        text = json_object_to_json_string_ext(
                req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        len = text ? strlen(text) : 0;
        if (!text || len > CONTROL_REQUEST_MAX) {
                fprintf(stderr,
                        "poolctl: the request is too large: %zu bytes, the agent takes at most %u "
                        "(with submit: the command and your environment; unset large variables or "
                        "run poolctl under env -i with the variables the job needs)\n",
                        len, CONTROL_REQUEST_MAX);
                return EXIT_FAILED;
        }
        r = call(text, 0, &reply);
        if (r != EXIT_OK)
                return r;
        r = print_reply(reply);
        if (r != EXIT_OK)
                return r;
        *ret_result = get(reply, "result");
        *ret_reply = TAKE_PTR(reply);
        return EXIT_OK;
}

static json_object *request_new(const char *command) {
        json_object *o = json_object_new_object();

        if (o && json_object_object_add(o, "command", json_object_new_string(command)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* Adds l as the array key: at most max strings, each shorter than JOB_QUEUE_STRING_MAX (-E2BIG);
 * with skip_long, longer ones are left out with a warning instead (an environment variable). */
static int add_strv(json_object *o, const char *key, char *const *l, size_t max, bool skip_long) {
        json_object *a = json_object_new_array();
        size_t n = 0;

        if (!a || json_object_object_add(o, key, a) < 0) {
                json_object_put(a);
                return -ENOMEM;
        }
        for (; l && *l; l++) {
                if (strlen(*l) >= JOB_QUEUE_STRING_MAX) {
                        if (!skip_long)
                                return -E2BIG;
                        fprintf(stderr,
                                "poolctl: not passing %.*s to the job (longer than %u bytes)\n",
                                (int)MIN(strcspn(*l, "="), (size_t)64), *l,
                                JOB_QUEUE_STRING_MAX - 1);
                        continue;
                }
                if (n++ >= max)
                        return -E2BIG;
                if (json_object_array_add(a, json_object_new_string(*l)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int cmd_submit(char **command) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        json_object *req = request_new("submit"), *result = NULL;
        int r;

        if (!cwd) {
                json_object_put(req);
                fprintf(stderr, "poolctl: cannot tell the current directory: %m\n");
                return EXIT_FAILED;
        }
        if (!req)
                return EXIT_FAILED;
        r = add_strv(req, "argv", command, JOB_QUEUE_ARGV_MAX, false);
        if (r == -E2BIG) {
                json_object_put(req);
                fprintf(stderr,
                        "poolctl: the command is too long: at most %u arguments of less than %u bytes each\n",
                        JOB_QUEUE_ARGV_MAX, JOB_QUEUE_STRING_MAX);
                return EXIT_USAGE;
        }
        if (r >= 0)
                r = add_strv(req, "env", environ, JOB_QUEUE_ENV_MAX, true);
        if (r == -E2BIG) {
                json_object_put(req);
                fprintf(stderr,
                        "poolctl: your environment is too large for a job: at most %u variables (unset some, or run poolctl under env -i)\n",
                        JOB_QUEUE_ENV_MAX);
                return EXIT_FAILED;
        }
        if (r >= 0)
                r = json_object_object_add(req, "cwd", json_object_new_string(cwd));
        if (r >= 0 && arg_name)
                r = json_object_object_add(req, "name", json_object_new_string(arg_name));
        if (r >= 0 && arg_cpus >= 0)
                r = json_object_object_add(req, "cpus", json_object_new_int64(arg_cpus));
        if (r >= 0 && arg_gpus >= 0)
                r = json_object_object_add(req, "gpus", json_object_new_int64(arg_gpus));
        if (r < 0) {
                json_object_put(req);
                fprintf(stderr, "poolctl: out of memory\n");
                return EXIT_FAILED;
        }
        r = call_json(req, &reply, &result);
        if (r != EXIT_OK || arg_json)
                return r;
        printf("Submitted job %" PRIu64 " (%s).\n", json_object_get_uint64(get(result, "id")),
               get_str(result, "unit") ?: "?");
        return EXIT_OK;
}

static void print_jobs(json_object *r) {
        json_object *jobs = get(r, "jobs");
        size_t n = jobs && json_object_is_type(jobs, json_type_array)
                           ? json_object_array_length(jobs)
                           : 0;
        int w_user = 4;

        for (size_t i = 0; i < n; i++)
                w_user =
                        MAX(w_user, (int)strlen(
                                            get_str(json_object_array_get_idx(jobs, i), "user")
                                                    ?: "?????"));
        w_user = MIN(w_user, 32);
        if (!json_object_get_boolean(get(r, "enabled"))) {
                printf("The job queue is disabled on this VM ([Jobs] Enabled=no).\n");
                return;
        }
        if (n == 0)
                printf("No jobs.\n");
        else
                printf("%6s  %-*s  %-9s  %4s  %5s  %-5s  %-19s  %s\n", "ID", w_user, "USER",
                       "STATE", "EXIT", "SLOTS", "GPUS", "SUBMITTED", "COMMAND");
        for (size_t i = 0; i < n; i++) {
                json_object *j = json_object_array_get_idx(jobs, i);
                char t[64], exit_status[16] = "-", uid[32];
                struct tm tm;
                time_t sec = (time_t)(json_object_get_uint64(get(j, "submitted_usec")) / 1000000);

                if (!localtime_r(&sec, &tm) ||
                    strftime(t, sizeof(t), "%Y-%m-%d %H:%M:%S", &tm) == 0)
                        (void)snprintf(t, sizeof(t), "?");
                if (get(j, "exit_status"))
                        (void)snprintf(
                                exit_status, sizeof(exit_status), "%" PRId64,
                                json_object_get_int64(get(j, "exit_status")));
                (void)snprintf(uid, sizeof(uid), "%" PRId64, json_object_get_int64(get(j, "uid")));
                printf("%6" PRIu64 "  %-*s  %-9s  %4s  %5" PRId64 "  %-5s  %-19s  %s\n",
                       json_object_get_uint64(get(j, "id")), w_user, get_str(j, "user") ?: uid,
                       get_str(j, "state") ?: "?", exit_status,
                       json_object_get_int64(get(j, "cpus")),
                       get_str(j, "gpu_devices")
                               ?: (json_object_get_int64(get(j, "gpus")) ? "?" : "-"),
                       t, get_str(j, "command") ?: "?");
        }
        if (json_object_get_int64(get(r, "omitted")) > 0)
                printf("(%" PRId64 " older jobs not shown)\n",
                       json_object_get_int64(get(r, "omitted")));
        printf("\n%" PRId64 " running, %" PRId64 " queued; %" PRId64 " of %" PRId64
               " slots in use, %" PRId64 " GPUs for jobs%s\n",
               json_object_get_int64(get(r, "running")), json_object_get_int64(get(r, "queued")),
               json_object_get_int64(get(r, "slots_used")), json_object_get_int64(get(r, "slots")),
               json_object_get_int64(get(r, "gpus")),
               json_object_get_boolean(get(r, "accepting")) ? ""
                                                            : "; not accepting jobs (draining)");
        if (get_str(r, "unavailable_reason"))
                printf("Jobs cannot run here: %s\n", get_str(r, "unavailable_reason"));
}

static int parse_job_id(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s || *end || v == 0 || s[0] == '-' || v > INT64_MAX) {
                die_usage("invalid job ID", s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int cmd_job(const char *verb_name, const char *id_arg) {
        _cleanup_(json_object_putp) json_object *reply = NULL;
        json_object *req = request_new(verb_name), *result = NULL, *log;
        uint64_t id = 0;
        int r;

        if (!req)
                return EXIT_FAILED;
        if (id_arg) {
                if (parse_job_id(id_arg, &id) < 0) {
                        json_object_put(req);
                        return EXIT_USAGE;
                }
                if (json_object_object_add(req, "id", json_object_new_int64((int64_t)id)) < 0) {
                        json_object_put(req);
                        return EXIT_FAILED;
                }
        }
        r = call_json(req, &reply, &result);
        if (r != EXIT_OK || arg_json)
                return r;
        if (streq(verb_name, "jobs"))
                print_jobs(result);
        else if (streq(verb_name, "cancel"))
                printf("Job %" PRIu64 " cancelled.\n", id);
        else {
                log = get(result, "log");
                if (json_object_get_int64(get(result, "offset")) > 0)
                        fprintf(stderr,
                                "(the last %" PRId64 " of %" PRId64 " bytes of job %" PRIu64
                                "'s output)\n",
                                json_object_get_int64(get(result, "size")) -
                                        json_object_get_int64(get(result, "offset")),
                                json_object_get_int64(get(result, "size")), id);
                if (log)
                        (void)fwrite(
                                json_object_get_string(log), 1,
                                (size_t)json_object_get_string_len(log), stdout);
        }
        return EXIT_OK;
}

static int parse_count(const char *what, const char *s, long max, long *ret) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end || v < 0 || v > max) {
                die_usage(what, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                {"json", no_argument, NULL, 'j'},          {"sync", no_argument, NULL, 'S'},
                {"cancel", no_argument, NULL, 'C'},        {"socket", required_argument, NULL, 's'},
                {"timeout", required_argument, NULL, 't'}, {"name", required_argument, NULL, 'N'},
                {"cpus", required_argument, NULL, 'c'},    {"gpus", required_argument, NULL, 'g'},
                {"help", no_argument, NULL, 'h'},          {},
        };
        const char *env = getenv("POOLAGENT_CONTROL_SOCKET");
        char *end;
        long v;
        int c;

        if (!isempty(env))
                arg_socket = env;
        while ((c = getopt_long(argc, argv, "s:t:h", options, NULL)) >= 0) {
                switch (c) {
                case 'j':
                        arg_json = true;
                        break;
                case 'C':
                        arg_cancel = true;
                        break;
                case 'S':
                        arg_sync = true;
                        break;
                case 's':
                        arg_socket = optarg;
                        break;
                case 't':
                        errno = 0;
                        v = strtol(optarg, &end, 10);
                        if (errno != 0 || end == optarg || *end || v < 1 || v > 3600) {
                                die_usage("invalid timeout (1-3600 seconds)", optarg);
                                return -EINVAL;
                        }
                        arg_timeout_ms = (int)v * 1000;
                        break;
                case 'N':
                        arg_name = optarg;
                        break;
                case 'c':
                        if (parse_count("invalid --cpus (0-65536)", optarg, 65536, &arg_cpus) < 0)
                                return -EINVAL;
                        break;
                case 'g':
                        if (parse_count(
                                    "invalid --gpus (0-64)", optarg, JOB_QUEUE_GPUS_MAX,
                                    &arg_gpus) < 0)
                                return -EINVAL;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        fprintf(stderr, "Try 'poolctl --help'.\n");
                        return -EINVAL;
                }
        }
        return 1;
}

int main(int argc, char *argv[]) {
        static const char *const verbs[] = {"status", "version", "reload", "links",
                                            "drain",  "flush",   "health"};
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_OK;
        if (optind >= argc) {
                die_usage("missing command", NULL);
                return EXIT_USAGE;
        }
        if ((arg_name || arg_cpus >= 0 || arg_gpus >= 0) && !streq(argv[optind], "submit")) {
                die_usage("--name, --cpus and --gpus only apply to submit", NULL);
                return EXIT_USAGE;
        }
        if (streq(argv[optind], "submit")) {
                if (optind + 1 >= argc) {
                        die_usage(
                                "submit needs a command: poolctl submit [OPTIONS] -- COMMAND...",
                                NULL);
                        return EXIT_USAGE;
                }
                return cmd_submit(argv + optind + 1);
        }
        if (streq(argv[optind], "cancel") || streq(argv[optind], "logs")) {
                if (optind + 2 != argc) {
                        die_usage(
                                optind + 2 > argc ? "missing job ID" : "unexpected argument",
                                optind + 2 > argc ? NULL : argv[optind + 2]);
                        return EXIT_USAGE;
                }
                return cmd_job(argv[optind], argv[optind + 1]);
        }
        if (streq(argv[optind], "jobs") && optind + 1 == argc)
                return cmd_job("jobs", NULL);
        if (optind + 1 < argc) {
                die_usage("unexpected argument", argv[optind + 1]);
                return EXIT_USAGE;
        }
        if (arg_sync && !streq(argv[optind], "links")) {
                die_usage("--sync only applies to links", NULL);
                return EXIT_USAGE;
        }
        if (arg_cancel && !streq(argv[optind], "drain")) {
                die_usage("--cancel only applies to drain", NULL);
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(argv[optind], verbs[i]))
                        return verb(verbs[i]);
        die_usage("unknown command", argv[optind]);
        return EXIT_USAGE;
}
