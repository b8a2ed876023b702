/* SPDX-License-Identifier: MIT */
#include "control.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "log.h"
#include "message-ids.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define CONTROL_PEER_GROUPS_MAX 1024
#define CONTROL_JSON_DEPTH_MAX 16

typedef struct ControlConnection ControlConnection;

struct ControlServer {
        sd_event *event;
        sd_event_source *listen_source;
        int listen_fd;
        char *path;
        const ControlCommand *commands;
        size_t n_commands;
        void *userdata;
        gid_t admin_gid;
        ControlConnection *connections; /* doubly linked */
        unsigned n_connections;
        ControlConnection *dispatching; /* while a handler runs */
        ControlDeferred *deferring;     /* made by control_server_defer() in that handler */
};

struct ControlConnection {
        ControlServer *server;
        ControlConnection *prev, *next;
        int fd;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        ControlPeer peer;
        gid_t *groups; /* supplementary groups at connect time */
        int n_groups;
        char *pending; /* reply waiting for EPOLLOUT */
        size_t pending_len;
        ControlDeferred *deferred; /* a handler answers later; both point at each other */
};

struct ControlDeferred {
        ControlConnection *connection; /* NULL once the client went away or timed out */
};

static ControlConnection *control_connection_free(ControlConnection *c) {
        if (!c)
                return NULL;
        if (c->server) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        c->server->connections = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                c->server->n_connections--;
        }
        if (c->deferred)
                c->deferred->connection = NULL;
        sd_event_source_disable_unref(c->io_source);
        sd_event_source_disable_unref(c->timer_source);
        safe_close(c->fd);
        free(c->groups);
        free(c->pending);
        free(c);
        return NULL;
}

static bool control_peer_in_group(const ControlConnection *c, gid_t gid) {
        if (gid == (gid_t)-1)
                return false;
        if (c->peer.gid == gid)
                return true;
        for (int i = 0; i < c->n_groups; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}

static void control_connection_update_admin(ControlConnection *c) {
        c->peer.admin = c->peer.uid == 0 || control_peer_in_group(c, c->server->admin_gid);
}

static int control_connection_read_peer(ControlConnection *c) {
        struct ucred cred;
        socklen_t l = sizeof(cred);
        gid_t groups[CONTROL_PEER_GROUPS_MAX];

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0)
                return NEG_ERRNO();
        if (l != sizeof(cred) || cred.uid == (uid_t)-1)
                return -EPROTO;
        c->peer = (ControlPeer){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};

        l = sizeof(groups);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, groups, &l) >= 0 && l > 0) {
                c->groups = malloc(l);
                if (!c->groups)
                        return -ENOMEM;
                memcpy(c->groups, groups, l);
                c->n_groups = (int)(l / sizeof(gid_t));
        }
        /* ERANGE (more than CONTROL_PEER_GROUPS_MAX groups) or an old kernel: the primary group
         * still counts. */
        control_connection_update_admin(c);
        return 0;
}

static int control_connection_arm_timer(ControlConnection *c) {
        uint64_t now;
        int r;

        r = sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        r = sd_event_source_set_time(c->timer_source, now + CONTROL_IDLE_TIMEOUT_USEC);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
}

/* Sends what is pending. 0: all sent; 1: waiting for EPOLLOUT; <0: close the connection. */
static int control_connection_flush(ControlConnection *c) {
        ssize_t n;
        int r;

        if (!c->pending)
                return 0;
        n = send(c->fd, c->pending, c->pending_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                        r = sd_event_source_set_io_events(c->io_source, EPOLLOUT);
                        return r < 0 ? r : 1;
                }
                return NEG_ERRNO();
        }
        free(c->pending);
        c->pending = NULL;
        c->pending_len = 0;
        r = sd_event_source_set_io_events(c->io_source, EPOLLIN);
        if (r < 0)
                return r;
        r = control_connection_arm_timer(c);
        return r < 0 ? r : 0;
}

static json_object *control_error_reply(int error, const char *message) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, "ok", json_object_new_boolean(false)) < 0 ||
            json_object_object_add(
                    o, "error", json_object_new_string(message ? message : strerror(abs(error)))) <
                    0 ||
            json_object_object_add(
                    o, "errno",
                    json_object_new_string(
                            strerrorname_np(abs(error)) ? strerrorname_np(abs(error)) : "EIO")) <
                    0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* Queues reply (taken over) and tries to send it. */
static int control_connection_reply(ControlConnection *c, json_object *reply) {
        const char *s;
        size_t len;

        if (!reply)
                return -ENOMEM;
        s = json_object_to_json_string_ext(
                reply, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        len = s ? strlen(s) : 0;
        if (s && len > CONTROL_REPLY_MAX) {
                json_object_put(reply);
                reply = control_error_reply(-E2BIG, "reply too large");
                if (!reply)
                        return -ENOMEM;
                s = json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN);
                len = s ? strlen(s) : 0;
        }
        free(c->pending);
        c->pending = s ? strdup(s) : NULL;
        c->pending_len = len;
        json_object_put(reply);
        if (!c->pending)
                return -ENOMEM;
        return control_connection_flush(c);
}

static json_object *control_ok_reply(json_object *result) {
        json_object *reply = json_object_new_object();

        if (!result)
                result = json_object_new_object();
        if (!reply || !result ||
            json_object_object_add(reply, "ok", json_object_new_boolean(true)) < 0 ||
            json_object_object_add(reply, "result", result) < 0) {
                json_object_put(result);
                json_object_put(reply);
                return NULL;
        }
        return reply;
}

/* Returns the reply, or NULL with *reterr_deferred set when a handler answers later (NULL
 * without it: out of memory). */
static json_object *
control_dispatch(ControlConnection *c, const char *buf, size_t len, bool *reterr_deferred) {
        ControlServer *s = c->server;
        _cleanup_free_ char *message = NULL;
        json_tokener *tok;
        json_object *request, *cmd, *result;
        const ControlCommand *command = NULL;
        const char *name;
        int r;

        tok = json_tokener_new_ex(CONTROL_JSON_DEPTH_MAX);
        if (!tok)
                return NULL;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        request = json_tokener_parse_ex(tok, buf, (int)len);
        if (request && json_tokener_get_parse_end(tok) != len) {
                json_object_put(request);
                request = NULL;
        }
        json_tokener_free(tok);
        if (!request || !json_object_is_type(request, json_type_object)) {
                json_object_put(request);
                return control_error_reply(-EBADMSG, "request is not a JSON object");
        }
        if (!json_object_object_get_ex(request, "command", &cmd) ||
            !json_object_is_type(cmd, json_type_string)) {
                json_object_put(request);
                return control_error_reply(-EBADMSG, "request has no \"command\" string");
        }
        name = json_object_get_string(cmd);
        for (size_t i = 0; i < s->n_commands; i++)
                if (streq(s->commands[i].name, name))
                        command = &s->commands[i];
        if (!command) {
                json_object_put(request);
                return control_error_reply(-EOPNOTSUPP, "unknown command");
        }
        if (command->requires_admin && !c->peer.admin) {
                (void)log_struct(
                        LOG_NOTICE, 0, ((const char *[]){POOLAGENT_MESSAGE_CONTROL_DENIED, NULL}),
                        "Refused control command '%s' from UID %u (PID %d): not root or in the admin group",
                        command->name, (unsigned)c->peer.uid, (int)c->peer.pid);
                json_object_put(request);
                return control_error_reply(
                        -EPERM, "permission denied: this command needs root or the admin group");
        }
        log_debug(
                "Control command '%s' from UID %u (PID %d)", command->name, (unsigned)c->peer.uid,
                (int)c->peer.pid);

        result = json_object_new_object();
        if (!result) {
                json_object_put(request);
                return NULL;
        }
        s->dispatching = c;
        s->deferring = NULL;
        r = command->handler(s->userdata, &c->peer, request, result, &message);
        s->dispatching = NULL;
        json_object_put(request);
        if (r == CONTROL_REPLY_DEFERRED && s->deferring) {
                json_object_put(result);
                c->deferred = TAKE_PTR(s->deferring);
                *reterr_deferred = true;
                return NULL;
        }
        if (s->deferring) { /* deferred, then failed: the handle stays the handler's, detached */
                s->deferring->connection = NULL;
                s->deferring = NULL;
        }
        assert(r != CONTROL_REPLY_DEFERRED); /* a handler bug: deferred without a handle */
        if (r < 0) {
                json_object_put(result);
                return control_error_reply(r, message);
        }
        return control_ok_reply(result);
}

static int
control_connection_on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        static char buf[CONTROL_REQUEST_MAX + 1]; /* the loop's thread only */
        ControlConnection *c = userdata;
        ssize_t n;
        int r;

        if (c->pending) {
                r = control_connection_flush(c);
                if (r < 0)
                        control_connection_free(c);
                return 0;
        }
        if (c->deferred) {
                /* Only EPOLLHUP/EPOLLERR arrive while a reply is deferred: the client left. */
                control_connection_free(c);
                return 0;
        }
        if (!(revents & EPOLLIN)) {
                control_connection_free(c); /* EPOLLHUP/EPOLLERR with nothing to read */
                return 0;
        }
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                control_connection_free(c);
                return 0;
        }
        if (n == 0) {
                control_connection_free(c);
                return 0;
        }
        if ((size_t)n > CONTROL_REQUEST_MAX)
                r = control_connection_reply(c, control_error_reply(-E2BIG, "request too large"));
        else {
                bool deferred = false;
                json_object *reply = control_dispatch(c, buf, (size_t)n, &deferred);

                if (deferred)
                        r = sd_event_source_set_io_events(c->io_source, 0);
                else
                        r = control_connection_reply(c, reply);
        }
        if (r < 0)
                control_connection_free(c);
        return 0;
}

static int control_connection_on_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        ControlConnection *c = userdata;

        if (c->deferred) {
                c->deferred->connection = NULL;
                c->deferred = NULL;
                if (control_connection_reply(
                            c, control_error_reply(
                                       -ETIMEDOUT, "timed out waiting for the result")) < 0)
                        control_connection_free(c);
                return 0;
        }
        log_debug(
                "Closing idle control connection from UID %u (PID %d)", (unsigned)c->peer.uid,
                (int)c->peer.pid);
        control_connection_free(c);
        return 0;
}

static void control_refuse(int fd, const char *message) {
        json_object *reply = control_error_reply(-EBUSY, message);
        const char *s =
                reply ? json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PLAIN) : NULL;

        if (s)
                (void)send(fd, s, strlen(s), MSG_DONTWAIT | MSG_NOSIGNAL);
        json_object_put(reply);
}

static int
control_server_on_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        ControlConnection *c;
        _cleanup_close_ int cfd = -EBADF;
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning_errno(
                                NEG_ERRNO(), "Failed to accept control connection, ignoring: %m");
                return 0;
        }
        if (s->n_connections >= CONTROL_CLIENTS_MAX) {
                log_debug("Too many control connections (%u), refusing one", s->n_connections);
                control_refuse(cfd, "too many connections, try again later");
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return log_warning_errno(
                               -ENOMEM, "Failed to accept control connection, ignoring: %m"),
                       0;
        c->fd = TAKE_FD(cfd);
        /* Linked first, so that control_connection_free() undoes everything from here on. */
        c->server = s;
        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = c;
        s->n_connections++;

        r = control_connection_read_peer(c);
        if (r >= 0)
                r = sd_event_add_io(
                        s->event, &c->io_source, c->fd, EPOLLIN, control_connection_on_io, c);
        if (r >= 0)
                r = sd_event_add_time(
                        s->event, &c->timer_source, CLOCK_MONOTONIC, UINT64_MAX, 0,
                        control_connection_on_timeout, c);
        if (r < 0) {
                control_connection_free(c);
                log_warning_errno(r, "Failed to set up control connection, ignoring: %m");
                return 0;
        }
        r = control_connection_arm_timer(c);
        if (r < 0) {
                control_connection_free(c);
                log_warning_errno(r, "Failed to arm control connection timer, ignoring: %m");
        }
        return 0;
}

static int control_socket_in_use(const struct sockaddr_un *sa, socklen_t len) {
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return NEG_ERRNO();
        if (connect(fd, (const struct sockaddr *)sa, len) >= 0 || errno == EAGAIN)
                return 1;
        return 0;
}

static int mkdir_parent(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return NEG_ERRNO();
        return 0;
}

int control_server_new(
        sd_event *event,
        const char *path,
        const ControlCommand *commands,
        size_t n_commands,
        void *userdata,
        ControlServer **ret) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        socklen_t salen;
        struct stat st;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->listen_fd = -EBADF;
        s->admin_gid = (gid_t)-1;
        s->event = sd_event_ref(event);
        s->commands = commands;
        s->n_commands = n_commands;
        s->userdata = userdata;

        r = mkdir_parent(path);
        if (r < 0)
                return r;
        if (lstat(path, &st) >= 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                r = control_socket_in_use(&sa, salen);
                if (r < 0)
                        return r;
                if (r > 0)
                        return -EADDRINUSE;
                if (unlink(path) < 0)
                        return NEG_ERRNO();
        }
        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->listen_fd < 0)
                return NEG_ERRNO();
        if (bind(s->listen_fd, (struct sockaddr *)&sa, salen) < 0)
                return NEG_ERRNO();
        s->path = strdup(path); /* from here on, free unlinks it */
        if (!s->path) {
                (void)unlink(path);
                return -ENOMEM;
        }
        if (chmod(path, CONTROL_SOCKET_MODE) < 0)
                return NEG_ERRNO();
        if (listen(s->listen_fd, 16) < 0)
                return NEG_ERRNO();
        r = sd_event_add_io(
                event, &s->listen_source, s->listen_fd, EPOLLIN, control_server_on_accept, s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;
        while (s->connections)
                control_connection_free(s->connections);
        sd_event_source_disable_unref(s->listen_source);
        safe_close(s->listen_fd);
        if (s->path)
                (void)unlink(s->path);
        free(s->path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

int control_server_defer(ControlServer *s, uint64_t timeout_usec, ControlDeferred **ret) {
        ControlConnection *c = s->dispatching;
        ControlDeferred *d;
        uint64_t now;
        int r;

        if (!c || s->deferring)
                return -EINVAL;
        r = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        r = sd_event_source_set_time(c->timer_source, now + timeout_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
        if (r < 0) {
                free(d);
                return r;
        }
        d->connection = c;
        s->deferring = d;
        *ret = d;
        return 0;
}

void control_deferred_reply(ControlDeferred *d, int r, json_object *result, const char *message) {
        ControlConnection *c;

        if (!d) {
                json_object_put(result);
                return;
        }
        c = d->connection;
        free(d);
        if (!c) {
                json_object_put(result);
                return;
        }
        c->deferred = NULL;
        if (r < 0) {
                json_object_put(result);
                r = control_connection_reply(c, control_error_reply(r, message));
        } else
                r = control_connection_reply(c, control_ok_reply(result));
        if (r < 0)
                control_connection_free(c);
}

ControlDeferred *control_deferred_free(ControlDeferred *d) {
        control_deferred_reply(d, -ECANCELED, NULL, NULL);
        return NULL;
}

void control_server_set_admin_gid(ControlServer *s, gid_t gid) {
        s->admin_gid = gid;
        for (ControlConnection *c = s->connections; c; c = c->next)
                control_connection_update_admin(c);
}

unsigned control_server_n_clients(const ControlServer *s) {
        return s->n_connections;
}

const char *control_server_path(const ControlServer *s) {
        return s->path;
}
