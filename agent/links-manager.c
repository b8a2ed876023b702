/* SPDX-License-Identifier: MIT */
#include "links-manager.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "control.h"
#include "log.h"
#include "message-ids.h"
#include "session-watch.h"
#include "strv.h"
#include "time-util.h"
#include "user-links.h"
#include "users.h"

#define LINKS_JSON_DEPTH_MAX 4

static const char *const links_trigger_table[_LINKS_TRIGGER_MAX] = {
        [LINKS_TRIGGER_START] = "start",
        [LINKS_TRIGGER_RELOAD] = "reload",
        [LINKS_TRIGGER_PERIODIC] = "periodic",
        [LINKS_TRIGGER_HOME] = "home-appeared",
        [LINKS_TRIGGER_SESSION] = "session",
        [LINKS_TRIGGER_REQUEST] = "request",
        [LINKS_TRIGGER_WORKSPACE] = "workspace-ready",
};

const char *links_trigger_to_string(LinksTrigger t) {
        if (t < 0 || t >= _LINKS_TRIGGER_MAX)
                return NULL;
        return links_trigger_table[t];
}

/* What the loop keeps of one user's report. */
typedef struct LinksEntry {
        char *user;
        uid_t uid;
        UserLinkState state;
        int error;
        char *home; /* NULL if none */
        char *link; /* NULL if no home */
        char *detail;
} LinksEntry;

typedef struct LinksEntries {
        LinksEntry *e;
        size_t n, allocated;
} LinksEntries;

typedef struct LinksPassInfo {
        uint64_t generation; /* 0: no pass yet */
        LinksTrigger trigger;
        uint64_t started_usec, finished_usec; /* realtime */
        bool complete;
        char *error; /* why not complete, NULL if complete */
} LinksPassInfo;

typedef struct LinksWatch {
        LinksManager *manager;
        char *path;
        sd_event_source *source;
        char **names;     /* basenames of homes waited for, NULL-terminated */
        char **old_names; /* while rebuilding: the names before */
} LinksWatch;

typedef struct LinksWaiter {
        ControlDeferred *deferred;
        uid_t uid;
        bool admin;
        uint64_t generation; /* answered when a pass >= this one finished */
} LinksWaiter;

struct LinksManager {
        sd_event *event;         /* borrowed */
        const Config *config;    /* borrowed, see links_manager_configure() */
        const char *mount_point; /* borrowed */
        bool started, share_ready;
        UserSeen seen;
        SessionWatch *sessions;
        const char *sessions_reason; /* static: why sessions are not watched */

        /* requests: one more pass wanted */
        bool requested;
        LinksTrigger requested_trigger;
        uint64_t n_started; /* generation of the last pass started */

        /* the pass process */
        pid_t pid;                    /* 0: none; may be a killed one not reaped yet */
        int out_fd;                   /* read end of its report pipe */
        sd_event_source *out_source;  /* owns nothing */
        sd_event_source *exit_source; /* pidfd; owns it */
        sd_event_source *deadline_source;
        bool running; /* its results still count (not finished/killed) */
        LinksPassInfo current;
        LinksEntries incoming;
        char *line;
        size_t line_len;
        bool got_done;

        /* results of the last pass */
        LinksEntries entries;
        LinksPassInfo last;

        sd_event_source *resync_source;
        sd_event_source *debounce_source;
        LinksWatch *watches[LINKS_WATCHES_MAX];
        size_t n_watches;
        bool watches_full; /* more directories than LINKS_WATCHES_MAX */

        LinksWaiter waiters[LINKS_WAITERS_MAX];
        size_t n_waiters;
};

static uint64_t realtime_usec(void) {
        return (uint64_t)now_realtime_ns() / 1000;
}

static void links_entry_done(LinksEntry *e) {
        free(e->user);
        free(e->home);
        free(e->link);
        free(e->detail);
        *e = (LinksEntry){};
}

static void links_entries_done(LinksEntries *s) {
        for (size_t i = 0; i < s->n; i++)
                links_entry_done(&s->e[i]);
        free(s->e);
        *s = (LinksEntries){};
}

static int links_entries_push(LinksEntries *s, LinksEntry *e) {
        if (s->n >= USERS_MAX)
                return -E2BIG;
        if (s->n == s->allocated) {
                size_t a = MAX(s->allocated * 2, (size_t)16);
                LinksEntry *p = realloc(s->e, a * sizeof(LinksEntry));
                if (!p)
                        return -ENOMEM;
                s->e = p;
                s->allocated = a;
        }
        s->e[s->n++] = *e;
        *e = (LinksEntry){};
        return 0;
}

static const LinksEntry *links_entries_find(const LinksEntries *s, const char *user) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->e[i].user, user))
                        return &s->e[i];
        return NULL;
}

static void links_pass_info_done(LinksPassInfo *p) {
        free(p->error);
        *p = (LinksPassInfo){};
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

static json_object *json_string_or_null(const char *s) {
        return s ? json_object_new_string(s) : NULL;
}

static const char *json_get_string(json_object *o, const char *key) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* ---- the pass process ----------------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return NEG_ERRNO();
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static int links_child_write(int fd, json_object *o) {
        const char *s = o ? json_object_to_json_string_ext(
                                    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
                          : NULL;
        int r;

        if (!s)
                return -ENOMEM;
        r = write_all(fd, s, strlen(s));
        if (r >= 0)
                r = write_all(fd, "\n", 1);
        return r;
}

/* In the pass process: enumerate, apply, one JSON line per user, then {"done": n}. Never
 * returns. Runs on a copy of the agent's memory: l is not shared with the agent. */
_noreturn_ static void links_child_run(const LinksManager *l, int fd, pid_t parent) {
        const Config *c = l->config;
        UserPolicy policy = {
                .uid_min = c->uid_range.min,
                .uid_max = c->uid_range.max,
                .system_uid_max = USERS_SYSTEM_UID_MAX,
                .group = c->group,
                .deny = c->deny,
        };
        UserLinkOptions options = {
                .mount_point = l->mount_point,
                .notebooks_directory = c->notebooks_directory,
                .link_name = c->link_name,
                .directory_mode = c->user_directory_mode,
        };
        UserSet *set = NULL;
        sigset_t mask;
        json_object *o;
        int r;

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
                _exit(1);
        (void)setpgid(0, 0);
        (void)sigemptyset(&mask);
        (void)sigprocmask(SIG_SETMASK, &mask, NULL);

        r = users_enumerate(&policy, &l->seen, &set);
        if (r < 0) {
                o = json_object_new_object();
                if (o) {
                        (void)json_add(o, "error", json_object_new_string(strerror(-r)), false);
                        (void)links_child_write(fd, o);
                }
                _exit(1);
        }
        for (size_t i = 0; i < set->n; i++) {
                const UserEntry *e = &set->entries[i];
                UserLinkReport rep = {};

                r = user_link_apply(&options, e, &rep);
                if (r < 0)
                        _exit(1);
                o = json_object_new_object();
                if (!o || json_add(o, "user", json_object_new_string(rep.user), false) < 0 ||
                    json_add(o, "uid", json_object_new_int64(rep.uid), false) < 0 ||
                    json_add(
                            o, "state",
                            json_object_new_string(user_link_state_to_string(rep.state)),
                            false) < 0 ||
                    json_add(o, "error", json_object_new_int(rep.error), false) < 0 ||
                    json_add(o, "home", json_string_or_null(e->home), true) < 0 ||
                    json_add(o, "link", json_string_or_null(rep.link), true) < 0 ||
                    json_add(o, "detail", json_object_new_string(rep.detail), false) < 0 ||
                    links_child_write(fd, o) < 0)
                        _exit(1);
                json_object_put(o);
                user_link_report_done(&rep);
        }
        o = json_object_new_object();
        if (!o || json_add(o, "done", json_object_new_int64((int64_t)set->n), false) < 0 ||
            links_child_write(fd, o) < 0)
                _exit(1);
        _exit(0);
}

static UserLinkState link_state_from_string(const char *s) {
        for (UserLinkState i = 0; i < _USER_LINK_STATE_MAX; i++)
                if (s && streq(user_link_state_to_string(i), s))
                        return i;
        return _USER_LINK_STATE_INVALID;
}

/* One line from the pass process. -EBADMSG: garbled. */
static int links_parse_line(LinksManager *l, const char *line, size_t len) {
        _cleanup_(links_entry_done) LinksEntry e = {};
        json_tokener *tok;
        json_object *o, *v;
        const char *s;
        int r = -EBADMSG;

        tok = json_tokener_new_ex(LINKS_JSON_DEPTH_MAX);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, line, (int)len);
        json_tokener_free(tok);
        if (!o || !json_object_is_type(o, json_type_object))
                goto finish;
        if (json_object_object_get_ex(o, "done", &v)) {
                l->got_done = true;
                r = 0;
                goto finish;
        }
        if ((s = json_get_string(o, "error"))) {
                free(l->current.error);
                l->current.error = strdup(s);
                r = l->current.error ? 0 : -ENOMEM;
                goto finish;
        }
        e.state = link_state_from_string(json_get_string(o, "state"));
        if (e.state < 0 || !json_get_string(o, "user") || !json_get_string(o, "detail") ||
            !json_object_object_get_ex(o, "uid", &v))
                goto finish;
        e.uid = (uid_t)json_object_get_int64(v);
        if (json_object_object_get_ex(o, "error", &v))
                e.error = json_object_get_int(v);
        e.user = strdup(json_get_string(o, "user"));
        e.detail = strdup(json_get_string(o, "detail"));
        if ((s = json_get_string(o, "home")))
                e.home = strdup(s);
        if ((s = json_get_string(o, "link")))
                e.link = strdup(s);
        if (!e.user || !e.detail)
                r = -ENOMEM;
        else
                r = links_entries_push(&l->incoming, &e);
finish:
        json_object_put(o);
        return r;
}

static void links_pass_kill(LinksManager *l) {
        if (l->pid <= 0)
                return;
        /* Not reaped yet, so neither the pid nor the group can have been reused. */
        (void)kill(-l->pid, SIGKILL);
        (void)kill(l->pid, SIGKILL);
}

/* Reads what the pass process wrote so far. <0: stop reading (garbled or EOF). */
static int links_pass_read(LinksManager *l) {
        char buf[4096];

        for (;;) {
                ssize_t n = read(l->out_fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : NEG_ERRNO();
                }
                if (n == 0)
                        return -EPIPE;
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] != '\n') {
                                if (l->line_len >= LINKS_LINE_MAX)
                                        return -EBADMSG;
                                l->line[l->line_len++] = buf[i];
                                continue;
                        }
                        if (l->running) {
                                int r = links_parse_line(l, l->line, l->line_len);
                                if (r < 0)
                                        return r;
                        }
                        l->line_len = 0;
                }
        }
}

static void links_pass_finish(LinksManager *l, const char *why);

static void links_pass_stop_reading(LinksManager *l) {
        l->out_source = sd_event_source_disable_unref(l->out_source);
        l->out_fd = safe_close(l->out_fd);
}

static int links_on_pass_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LinksManager *l = userdata;
        int r;

        r = links_pass_read(l);
        if (r >= 0)
                return 0;
        links_pass_stop_reading(l);
        if (r != -EPIPE && l->running) {
                links_pass_kill(l);
                links_pass_finish(
                        l, r == -EBADMSG ? "the pass process sent a garbled report"
                                         : "reading the pass process failed");
        }
        return 0;
}

static void links_maybe_start(LinksManager *l);

static int links_on_pass_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        LinksManager *l = userdata;
        int status = 0;
        pid_t pid;

        pid = waitpid(l->pid, &status, WNOHANG);
        if (pid == 0)
                return 0;
        if (l->out_fd >= 0 && l->running)
                (void)links_pass_read(l); /* it wrote everything before it ended */
        links_pass_stop_reading(l);
        l->exit_source = sd_event_source_disable_unref(l->exit_source);
        l->deadline_source = sd_event_source_disable_unref(l->deadline_source);
        l->pid = 0;
        if (l->running) {
                char why[128] = "";

                if (!l->got_done && !l->current.error) {
                        if (WIFSIGNALED(status))
                                (void)snprintf(
                                        why, sizeof(why),
                                        "the pass process was killed by signal %d",
                                        WTERMSIG(status));
                        else
                                (void)snprintf(
                                        why, sizeof(why),
                                        "the pass process ended without finishing");
                }
                links_pass_finish(l, why[0] ? why : NULL);
        } else
                log_debug("The killed links pass process ended");
        links_maybe_start(l);
        return 0;
}

static int links_on_pass_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        LinksManager *l = userdata;
        char why[128];

        l->deadline_source = sd_event_source_disable_unref(l->deadline_source);
        links_pass_kill(l);
        (void)snprintf(
                why, sizeof(why), "the pass did not finish within %u s and was killed",
                LINKS_PASS_TIMEOUT_USEC / 1000000U);
        if (l->running)
                links_pass_finish(l, why);
        return 0;
}

static int links_pass_start(LinksManager *l) {
        _cleanup_close_ int pidfd = -EBADF;
        pid_t parent = getpid(), pid;
        int p[2], r;

        if (!l->line) {
                l->line = malloc(LINKS_LINE_MAX);
                if (!l->line)
                        return -ENOMEM;
        }
        if (pipe2(p, O_CLOEXEC) < 0)
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
                links_child_run(l, p[1], parent);
        }
        (void)setpgid(pid, pid); /* also done by the child: whichever runs first */
        (void)safe_close(p[1]);
        l->pid = pid;
        l->out_fd = p[0];
        l->line_len = 0;
        l->got_done = false;
        l->running = true;
        links_entries_done(&l->incoming);
        links_pass_info_done(&l->current);
        l->current.generation = ++l->n_started;
        l->current.trigger = l->requested_trigger;
        l->current.started_usec = realtime_usec();
        l->requested = false;

        r = fcntl(l->out_fd, F_SETFL, O_NONBLOCK) < 0 ? NEG_ERRNO() : 0;
        if (r >= 0)
                r = sd_event_add_io(
                        l->event, &l->out_source, l->out_fd, EPOLLIN, links_on_pass_output, l);
        if (r >= 0) {
                pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
                r = pidfd < 0 ? NEG_ERRNO()
                              : sd_event_add_io(
                                        l->event, &l->exit_source, pidfd, EPOLLIN,
                                        links_on_pass_exit, l);
        }
        if (r >= 0) {
                (void)sd_event_source_set_io_fd_own(l->exit_source, true);
                TAKE_FD(pidfd);
                r = sd_event_add_time_relative(
                        l->event, &l->deadline_source, CLOCK_MONOTONIC, LINKS_PASS_TIMEOUT_USEC, 0,
                        links_on_pass_timeout, l);
        }
        if (r < 0) {
                /* Cannot watch it: kill and reap it here (it cannot be stuck on anything yet
                 * that SIGKILL would not end, except a hung share; then it is left to init). */
                links_pass_kill(l);
                l->exit_source = sd_event_source_disable_unref(l->exit_source);
                l->deadline_source = sd_event_source_disable_unref(l->deadline_source);
                links_pass_stop_reading(l);
                (void)waitpid(pid, NULL, 0);
                l->pid = 0;
                l->running = false;
                return r;
        }
        log_debug(
                "Links pass %" PRIu64 " (%s) started in process %d", l->current.generation,
                links_trigger_to_string(l->current.trigger), (int)pid);
        return 0;
}

static void links_maybe_start(LinksManager *l) {
        int r;

        if (!l->started || !l->requested || !l->share_ready || l->pid > 0 || !l->config)
                return;
        r = links_pass_start(l);
        if (r < 0) {
                /* The periodic timer retries; waiting clients learn it now. */
                log_warning_errno(r, "Failed to start a links pass, retrying later: %m");
                l->requested = false;
                for (size_t i = 0; i < l->n_waiters; i++)
                        control_deferred_reply(
                                l->waiters[i].deferred, r, NULL, "could not start a links pass");
                l->n_waiters = 0;
        }
}

/* ---- results -------------------------------------------------------------------------------- */

static void links_log_change(const LinksEntry *e, const LinksEntry *old) {
        char f_user[128], f_state[64];

        if (old && old->state == e->state && streq(old->detail, e->detail))
                return;
        if (e->state == USER_LINK_OK && (!old || old->state == USER_LINK_CREATED))
                return; /* the second look after creating it, or the first at start */
        (void)snprintf(f_user, sizeof(f_user), "POOLAGENT_USER=%s", e->user);
        (void)snprintf(
                f_state, sizeof(f_state), "POOLAGENT_LINK_STATE=%s",
                user_link_state_to_string(e->state));
        switch (e->state) {
        case USER_LINK_CREATED:
                (void)log_struct(
                        LOG_INFO, 0,
                        ((const char *[]){
                                POOLAGENT_MESSAGE_USER_LINK_CREATED, f_user, f_state, NULL}),
                        "Notebooks link for %s: %s (%s)", e->user, e->detail,
                        e->link ? e->link : "no home");
                break;
        case USER_LINK_CONFLICT:
        case USER_LINK_ERROR:
        case USER_LINK_REFUSED:
                (void)log_struct(
                        e->state == USER_LINK_REFUSED ? LOG_NOTICE : LOG_WARNING, -e->error,
                        ((const char *[]){
                                POOLAGENT_MESSAGE_USER_LINK_PROBLEM, f_user, f_state, NULL}),
                        "No notebooks link for %s (%s): %s", e->user,
                        user_link_state_to_string(e->state), e->detail);
                break;
        default:
                log_info(
                        "Notebooks link for %s: %s: %s", e->user,
                        user_link_state_to_string(e->state), e->detail);
        }
}

static LinksWatch *links_watch_free(LinksWatch *w) {
        if (!w)
                return NULL;
        sd_event_source_disable_unref(w->source);
        free(w->path);
        strv_free(w->names);
        strv_free(w->old_names);
        free(w);
        return NULL;
}

static int links_on_debounce(sd_event_source *s, uint64_t usec, void *userdata) {
        LinksManager *l = userdata;

        l->debounce_source = sd_event_source_disable_unref(l->debounce_source);
        links_manager_request(l, LINKS_TRIGGER_HOME);
        return 0;
}

static int links_on_home_event(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        LinksWatch *w = userdata;
        LinksManager *l = w->manager;
        int r;

        if (!(ev->mask & IN_Q_OVERFLOW) && (ev->len == 0 || !strv_contains(w->names, ev->name)))
                return 0;
        log_debug("%s/%s appeared or changed", w->path, ev->len > 0 ? ev->name : "");
        if (l->debounce_source)
                return 0;
        r = sd_event_add_time_relative(
                l->event, &l->debounce_source, CLOCK_MONOTONIC, LINKS_HOME_DEBOUNCE_USEC, 0,
                links_on_debounce, l);
        if (r < 0)
                links_manager_request(l, LINKS_TRIGGER_HOME);
        return 0;
}

/* Adds (parent, name) to the new watch list built in next[]. Returns 1 if the pair was not watched
 * before the pass (the home may have appeared between the pass and now). */
static int links_watch_add(
        LinksManager *l, LinksWatch **next, size_t *n_next, const char *parent, const char *name) {
        LinksWatch *w = NULL;
        int r;

        for (size_t i = 0; i < *n_next && !w; i++)
                if (streq(next[i]->path, parent))
                        w = next[i];
        for (size_t i = 0; i < l->n_watches && !w; i++)
                if (l->watches[i] && streq(l->watches[i]->path, parent)) {
                        if (*n_next >= LINKS_WATCHES_MAX)
                                break;
                        w = TAKE_PTR(l->watches[i]); /* kept: no event in between is lost */
                        w->old_names = TAKE_PTR(w->names);
                        next[(*n_next)++] = w;
                }
        if (!w) {
                if (*n_next >= LINKS_WATCHES_MAX) {
                        l->watches_full = true;
                        return 0;
                }
                w = calloc(1, sizeof(*w));
                if (!w)
                        return -ENOMEM;
                w->manager = l;
                w->path = strdup(parent);
                if (!w->path)
                        return links_watch_free(w), -ENOMEM;
                r = sd_event_add_inotify(
                        l->event, &w->source, parent,
                        IN_CREATE | IN_MOVED_TO | IN_ATTRIB | IN_ONLYDIR, links_on_home_event, w);
                if (r < 0) {
                        log_debug_errno(
                                r, "Cannot watch %s for new homes, the periodic pass covers it: %m",
                                parent);
                        links_watch_free(w);
                        return 0;
                }
                next[(*n_next)++] = w;
        }
        if (strv_contains(w->names, name))
                return 0;
        r = strv_push(&w->names, name);
        if (r < 0)
                return r;
        return strv_contains(w->old_names, name) ? 0 : 1;
}

/* Watches the parents of the homes that are missing (PENDING) or refused (a home made by root
 * and chowned a moment later). Returns > 0 if a pair is new. */
static int links_update_watches(LinksManager *l) {
        LinksWatch *next[LINKS_WATCHES_MAX];
        size_t n_next = 0;
        bool new_pair = false;
        int r = 0;

        l->watches_full = false;
        for (size_t i = 0; i < l->entries.n && r >= 0; i++) {
                const LinksEntry *e = &l->entries.e[i];
                _cleanup_free_ char *parent = NULL;
                const char *base;

                if (!e->home || (e->state != USER_LINK_PENDING && e->state != USER_LINK_REFUSED))
                        continue;
                if (user_link_home_parent(e->home, &parent) < 0)
                        continue;
                base = strrchr(e->home, '/') + 1;
                if (isempty(base))
                        continue;
                r = links_watch_add(l, next, &n_next, parent, base);
                if (r > 0)
                        new_pair = true;
        }
        for (size_t i = 0; i < l->n_watches; i++)
                links_watch_free(l->watches[i]); /* those no longer needed */
        for (size_t i = 0; i < n_next; i++) {
                strv_free(next[i]->old_names);
                next[i]->old_names = NULL;
        }
        memcpy(l->watches, next, n_next * sizeof(LinksWatch *));
        l->n_watches = n_next;
        if (l->watches_full)
                log_notice(
                        "More than %u directories hold missing homes; the others are retried every ResyncInterval=",
                        LINKS_WATCHES_MAX);
        return r < 0 ? r : new_pair;
}

static int links_on_resync(sd_event_source *s, uint64_t usec, void *userdata) {
        links_manager_request(userdata, LINKS_TRIGGER_PERIODIC);
        return 0;
}

static void links_arm_resync(LinksManager *l) {
        int r;

        l->resync_source = sd_event_source_disable_unref(l->resync_source);
        if (!l->config)
                return;
        r = sd_event_add_time_relative(
                l->event, &l->resync_source, CLOCK_MONOTONIC, l->config->resync_interval_usec,
                USEC_PER_SEC, links_on_resync, l);
        if (r < 0)
                log_warning_errno(r, "Failed to arm the links resync timer, ignoring: %m");
}

static int links_result_json(LinksManager *l, uid_t uid, bool admin, json_object *o);

static void links_pass_finish(LinksManager *l, const char *why) {
        size_t counts[_USER_LINK_STATE_MAX] = {};
        int r;

        l->running = false;
        l->current.finished_usec = realtime_usec();
        l->current.complete = l->got_done && !l->current.error && !why;
        if (why && !l->current.error)
                l->current.error = strdup(why);

        for (size_t i = 0; i < l->incoming.n; i++) {
                links_log_change(
                        &l->incoming.e[i], links_entries_find(&l->entries, l->incoming.e[i].user));
                counts[l->incoming.e[i].state]++;
        }
        links_entries_done(&l->entries);
        l->entries = l->incoming;
        l->incoming = (LinksEntries){};
        links_pass_info_done(&l->last);
        l->last = l->current;
        l->current = (LinksPassInfo){};

        if (l->last.complete)
                log_debug(
                        "Links pass %" PRIu64
                        " (%s) done: %zu users, %zu ok, %zu created, %zu pending, %zu conflicts, %zu refused, %zu errors",
                        l->last.generation, links_trigger_to_string(l->last.trigger), l->entries.n,
                        counts[USER_LINK_OK], counts[USER_LINK_CREATED], counts[USER_LINK_PENDING],
                        counts[USER_LINK_CONFLICT], counts[USER_LINK_REFUSED],
                        counts[USER_LINK_ERROR]);
        else
                log_warning(
                        "Links pass %" PRIu64 " (%s) incomplete after %zu users: %s",
                        l->last.generation, links_trigger_to_string(l->last.trigger), l->entries.n,
                        l->last.error ? l->last.error : "unknown error");

        r = links_update_watches(l);
        if (r < 0)
                log_warning_errno(r, "Failed to watch for missing homes, ignoring: %m");
        else if (r > 0 && !l->requested) {
                /* A home that appeared after the pass looked and before the watch existed
                 * would be missed: look once more now that it is watched. */
                l->requested = true;
                l->requested_trigger = LINKS_TRIGGER_HOME;
        }

        /* Answer the clients waiting for this pass (or an earlier one). */
        for (size_t i = 0; i < l->n_waiters;) {
                LinksWaiter *w = &l->waiters[i];
                json_object *result;

                if (w->generation > l->last.generation) {
                        i++;
                        continue;
                }
                result = json_object_new_object();
                r = result ? links_result_json(l, w->uid, w->admin, result) : -ENOMEM;
                if (r < 0) {
                        json_object_put(result);
                        control_deferred_reply(w->deferred, r, NULL, NULL);
                } else
                        control_deferred_reply(w->deferred, 0, result, NULL);
                l->waiters[i] = l->waiters[--l->n_waiters];
        }
        links_arm_resync(l);
}

/* ---- requests, settings --------------------------------------------------------------------- */

void links_manager_request(LinksManager *l, LinksTrigger trigger) {
        if (!l->requested) {
                l->requested = true;
                l->requested_trigger = trigger;
        }
        links_maybe_start(l);
}

void links_manager_configure(LinksManager *l, const Config *config, const char *mount_point) {
        bool again = l->config != NULL;

        l->config = config;
        l->mount_point = mount_point;
        if (again && l->started) {
                links_arm_resync(l);
                links_manager_request(l, LINKS_TRIGGER_RELOAD);
        }
}

void links_manager_set_share_ready(LinksManager *l, bool ready) {
        bool was = l->share_ready;

        l->share_ready = ready;
        if (ready && !was && l->started)
                links_manager_request(l, LINKS_TRIGGER_WORKSPACE);
}

static void links_on_session_user(const char *user, void *userdata) {
        LinksManager *l = userdata;
        int r;

        r = user_seen_add(&l->seen, user);
        if (r < 0)
                log_debug_errno(r, "Cannot remember session user %s, ignoring: %m", user);
        else if (r > 0 && !links_entries_find(&l->entries, user)) {
                log_debug("New session user %s", user);
                links_manager_request(l, LINKS_TRIGGER_SESSION);
        }
}

int links_manager_new(sd_event *event, LinksManager **ret) {
        LinksManager *l = calloc(1, sizeof(*l));

        if (!l)
                return -ENOMEM;
        l->event = event;
        l->out_fd = -EBADF;
        *ret = l;
        return 0;
}

int links_manager_start(LinksManager *l) {
        const char *reason = NULL;
        int r;

        r = session_watch_new(l->event, links_on_session_user, l, &l->sessions, &reason);
        if (r < 0)
                return r;
        if (!session_watch_is_active(l->sessions)) {
                l->sessions_reason = reason;
                log_info(
                        "Not watching logind sessions (%s); users come from NSS only",
                        reason ? reason : "unknown reason");
        }
        l->started = true;
        links_arm_resync(l);
        links_manager_request(l, LINKS_TRIGGER_START);
        return 0;
}

LinksManager *links_manager_free(LinksManager *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n_waiters; i++)
                control_deferred_reply(
                        l->waiters[i].deferred, -ESHUTDOWN, NULL, "poolagentd is stopping");
        if (l->pid > 0) {
                links_pass_kill(l);
                if (waitpid(l->pid, NULL, WNOHANG) == 0)
                        log_notice(
                                "Links pass process %d is stuck; it ends when the share answers",
                                (int)l->pid);
        }
        links_pass_stop_reading(l);
        sd_event_source_disable_unref(l->exit_source);
        sd_event_source_disable_unref(l->deadline_source);
        sd_event_source_disable_unref(l->resync_source);
        sd_event_source_disable_unref(l->debounce_source);
        for (size_t i = 0; i < l->n_watches; i++)
                links_watch_free(l->watches[i]);
        session_watch_free(l->sessions);
        user_seen_done(&l->seen);
        links_entries_done(&l->entries);
        links_entries_done(&l->incoming);
        links_pass_info_done(&l->last);
        links_pass_info_done(&l->current);
        free(l->line);
        free(l);
        return NULL;
}

/* ---- control, status ------------------------------------------------------------------------ */

static json_object *links_pass_json(const LinksPassInfo *p) {
        json_object *o;
        int r = 0;

        if (p->generation == 0)
                return NULL;
        o = json_object_new_object();
        if (!o)
                return NULL;
        r |= json_add(o, "generation", json_object_new_uint64(p->generation), false);
        r |= json_add(
                o, "trigger", json_object_new_string(links_trigger_to_string(p->trigger)), false);
        r |= json_add(o, "started_usec", json_object_new_uint64(p->started_usec), false);
        if (p->finished_usec > 0) {
                r |= json_add(o, "finished_usec", json_object_new_uint64(p->finished_usec), false);
                r |= json_add(o, "complete", json_object_new_boolean(p->complete), false);
                r |= json_add(o, "error", json_string_or_null(p->error), true);
        }
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static json_object *links_entry_json(const LinksEntry *e) {
        json_object *o = json_object_new_object();
        int r = 0;

        if (!o)
                return NULL;
        r |= json_add(o, "user", json_object_new_string(e->user), false);
        r |= json_add(o, "uid", json_object_new_int64(e->uid), false);
        r |= json_add(
                o, "state", json_object_new_string(user_link_state_to_string(e->state)), false);
        r |= json_add(o, "link", json_string_or_null(e->link), true);
        r |= json_add(o, "detail", json_object_new_string(e->detail), false);
        if (e->error != 0)
                r |= json_add(
                        o, "errno",
                        json_object_new_string(
                                strerrorname_np(abs(e->error)) ? strerrorname_np(abs(e->error))
                                                               : "EIO"),
                        false);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int links_counts_json(const LinksManager *l, json_object *o) {
        size_t counts[_USER_LINK_STATE_MAX] = {};
        json_object *c = json_object_new_object();
        int r = 0;

        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < l->entries.n; i++)
                counts[l->entries.e[i].state]++;
        for (UserLinkState s = 0; s < _USER_LINK_STATE_MAX; s++)
                r |= json_add(
                        c, user_link_state_to_string(s), json_object_new_uint64(counts[s]), false);
        r |= json_add(o, "counts", c, false);
        return r < 0 ? -ENOMEM : 0;
}

/* The "links" result for a peer: pass info and the entries it may see. Admins see everyone, up to
 * LINKS_REPLY_BYTES_MAX of entries: problems first, then those in place ("omitted" counts the
 * rest); others only their own. */
static int links_result_json(LinksManager *l, uid_t uid, bool admin, json_object *o) {
        json_object *users = json_object_new_array();
        size_t bytes = 0, omitted = 0;
        int r = 0;

        if (!users)
                return -ENOMEM;
        r |= json_add(o, "users", users, false);
        r |= json_add(o, "pass", links_pass_json(&l->last), true);
        r |= json_add(o, "running", json_object_new_boolean(l->running), false);
        r |= json_add(o, "all_users", json_object_new_boolean(admin), false);
        if (r < 0)
                return -ENOMEM;
        for (int round = 0; round < (admin ? 2 : 1); round++)
                for (size_t i = 0; i < l->entries.n; i++) {
                        const LinksEntry *e = &l->entries.e[i];
                        bool fine = e->state == USER_LINK_OK || e->state == USER_LINK_CREATED;
                        size_t size;
                        json_object *j;

                        if (!admin && e->uid != uid)
                                continue;
                        if (admin && fine != (round == 1))
                                continue;
                        size = 128 + strlen(e->user) + strlen(e->detail) +
                               (e->link ? strlen(e->link) : 0);
                        if (bytes + size > LINKS_REPLY_BYTES_MAX) {
                                omitted++;
                                continue;
                        }
                        bytes += size;
                        j = links_entry_json(e);
                        if (!j || json_object_array_add(users, j) < 0) {
                                json_object_put(j);
                                return -ENOMEM;
                        }
                }
        if (admin) {
                r |= json_add(o, "omitted", json_object_new_uint64(omitted), false);
                r |= links_counts_json(l, o);
        }
        return r < 0 ? -ENOMEM : 0;
}

int links_manager_on_control(
        LinksManager *l,
        ControlServer *control,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message) {
        uint64_t timeout_usec = LINKS_SYNC_TIMEOUT_USEC_DEFAULT;
        LinksWaiter *w;
        json_object *v;
        int r;

        if (!json_object_object_get_ex(request, "sync", &v) || !json_object_get_boolean(v))
                return links_result_json(l, peer->uid, peer->admin, result);

        if (!peer->admin) {
                (void)log_struct(
                        LOG_NOTICE, 0, ((const char *[]){POOLAGENT_MESSAGE_CONTROL_DENIED, NULL}),
                        "Refused control command 'links --sync' from UID %u (PID %d): not root or in the admin group",
                        (unsigned)peer->uid, (int)peer->pid);
                *reterr_message =
                        strdup("permission denied: a links pass needs root or the admin group");
                return -EPERM;
        }
        if (json_object_object_get_ex(request, "timeout_ms", &v) &&
            json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0)
                timeout_usec =
                        MIN((uint64_t)json_object_get_int64(v) * 1000U,
                            (uint64_t)LINKS_SYNC_TIMEOUT_USEC_MAX);
        if (!l->share_ready) {
                *reterr_message = strdup(
                        "the workspace is not mounted and healthy: no links pass runs until it is");
                return -EAGAIN;
        }
        if (l->n_waiters >= LINKS_WAITERS_MAX) {
                *reterr_message = strdup("too many clients are waiting for a links pass");
                return -EBUSY;
        }
        w = &l->waiters[l->n_waiters];
        r = control_server_defer(control, timeout_usec, &w->deferred);
        if (r < 0)
                return r;
        w->uid = peer->uid;
        w->admin = peer->admin;
        /* A pass that is running may have enumerated the users before the request: wait for
         * the next one to start. */
        w->generation = l->n_started + 1;
        l->n_waiters++;
        log_info(
                "Links pass requested over the control socket by UID %u (PID %d)",
                (unsigned)peer->uid, (int)peer->pid);
        links_manager_request(l, LINKS_TRIGGER_REQUEST);
        return CONTROL_REPLY_DEFERRED;
}

int links_manager_status_json(LinksManager *l, json_object *o) {
        json_object *links = json_object_new_object(), *dirs = json_object_new_array();
        int r = 0;

        if (!links || !dirs) {
                json_object_put(links);
                json_object_put(dirs);
                return -ENOMEM;
        }
        r |= json_add(o, "links", links, false);
        r |= json_add(links, "last_pass", links_pass_json(&l->last), true);
        r |= json_add(links, "running", json_object_new_boolean(l->running), false);
        r |= json_add(
                links, "running_pid", l->pid > 0 ? json_object_new_int64(l->pid) : NULL, true);
        r |= json_add(links, "share_ready", json_object_new_boolean(l->share_ready), false);
        r |= json_add(links, "users", json_object_new_uint64(l->entries.n), false);
        r |= links_counts_json(l, links);
        for (size_t i = 0; i < l->n_watches; i++)
                if (json_object_array_add(dirs, json_object_new_string(l->watches[i]->path)) < 0)
                        r = -ENOMEM;
        r |= json_add(links, "watched_directories", dirs, false);
        r |= json_add(
                links, "sessions",
                json_object_new_string(
                        session_watch_is_active(l->sessions) ? "watching logind"
                        : l->sessions_reason                 ? l->sessions_reason
                                                             : "not watched"),
                false);
        r |= json_add(
                links, "resync_interval_ms",
                json_object_new_uint64(l->config ? l->config->resync_interval_usec / 1000 : 0),
                false);
        return r < 0 ? -ENOMEM : 0;
}
