/* SPDX-License-Identifier: MIT */
#pragma once

/* The control socket: AF_UNIX, SOCK_SEQPACKET, one JSON object per message.
 *
 *   request: {"command": "NAME", ...arguments}                  at most CONTROL_REQUEST_MAX bytes
 *   reply:   {"ok": true, "result": {...}}
 *            {"ok": false, "error": "message", "errno": "EPERM"}  at most CONTROL_REPLY_MAX bytes
 *
 * A connection may send several requests, one at a time (the next one is read only after the
 * reply went out). Peers are identified with SO_PEERCRED/SO_PEERGROUPS when they connect: root
 * and members of the admin group may run every command; others only those not marked
 * requires_admin. Everything runs on the sd-event loop without blocking: at most
 * CONTROL_CLIENTS_MAX connections (more are answered with an error and closed), and a connection
 * idle for CONTROL_IDLE_TIMEOUT_USEC, or whose reply cannot be sent within that time, is closed. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* A request carries at most a job's command and environment (poolctl submit): 64 KiB. */
#define CONTROL_REQUEST_MAX (64U * 1024U)
#define CONTROL_REPLY_MAX (64U * 1024U)
#define CONTROL_CLIENTS_MAX 32U
#define CONTROL_IDLE_TIMEOUT_USEC (10U * 1000000U)
#define CONTROL_SOCKET_MODE 0666 /* anyone may connect; commands are checked per peer */

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct ControlServer ControlServer;
typedef struct ControlDeferred ControlDeferred;

typedef struct ControlPeer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        bool admin; /* root or member of the admin group */
} ControlPeer;

/* Runs one command. request is the whole request object (borrowed). On success adds the result's
 * fields to result (borrowed, an empty object) and returns >= 0. On failure returns -errno and
 * may set *reterr_message (malloc'ed, taken over) to a message for the client; without one the
 * client gets strerror(). */
typedef int (*ControlHandler)(
        void *userdata,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message);

typedef struct ControlCommand {
        const char *name;
        ControlHandler handler;
        bool requires_admin;
} ControlCommand;

/* A handler that cannot answer at once (it waits for work done off the loop) calls
 * control_server_defer() and returns CONTROL_REPLY_DEFERRED; it then owns the returned handle and
 * must hand it to control_deferred_reply() (or control_deferred_free()) later. Meanwhile nothing
 * more is read from that connection. If the reply is not given within timeout_usec, the client gets
 * an ETIMEDOUT error and a later control_deferred_reply() only frees the handle; the same if the
 * client went away. Only valid inside a handler, once per request. */
#define CONTROL_REPLY_DEFERRED 1
int control_server_defer(ControlServer *s, uint64_t timeout_usec, ControlDeferred **ret);
/* Sends {"ok": true, "result": result} (r >= 0; result taken over, NULL: empty) or the error r
 * with message (may be NULL), if the client is still there; frees d. NULL-safe. */
void control_deferred_reply(ControlDeferred *d, int r, json_object *result, const char *message);
/* Drops d without a reply (the client gets ECANCELED). NULL-safe; returns NULL. */
ControlDeferred *control_deferred_free(ControlDeferred *d);

/* Binds path (removing a stale socket there; -EADDRINUSE if another process answers on it) and
 * starts accepting on event. commands is an array of n entries that must outlive the server. */
int control_server_new(
        sd_event *event,
        const char *path,
        const ControlCommand *commands,
        size_t n_commands,
        void *userdata,
        ControlServer **ret);
/* Closes every connection and the listening socket and removes the socket file. NULL-safe. */
ControlServer *control_server_free(ControlServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ControlServer *, control_server_free);

/* The group whose members count as admins; (gid_t)-1 for none (root only). */
void control_server_set_admin_gid(ControlServer *s, gid_t gid);
unsigned control_server_n_clients(const ControlServer *s);
const char *control_server_path(const ControlServer *s);
