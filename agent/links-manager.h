/* SPDX-License-Identifier: MIT */
#pragma once

/* The agent side of per-user notebook links (users.h decides who, user-links.h does the work).
 *
 * A "pass" enumerates the eligible users and applies the link for each. user_link_apply() forks
 * and waits, and NSS may block, so a pass never runs on the event loop: it runs in one forked
 * pass process (its own process group) that writes one JSON line per user to a pipe; the loop
 * reads the pipe, reaps the process through a pidfd and kills the whole group after
 * LINKS_PASS_TIMEOUT_USEC. At most one pass process exists at a time; requests made while one
 * runs are coalesced into one more pass after it. A killed pass process that cannot die (stuck
 * on a hung share) blocks further passes until it ends.
 *
 * Passes run at start, on reload, every ResyncInterval=, when a pending home appears (inotify on
 * the homes' parent directories, at most LINKS_WATCHES_MAX of them, debounced), when a new user
 * opens a session (session-watch.h), and on request (the "links" control command with "sync").
 * While the share is not ready (a workspace is configured and not healthy), no pass starts:
 * creating <mount>/Users under an unmounted share would write into the empty mount point.
 *
 * The reports of the last pass are kept for the "links" command and status. Single-threaded:
 * every call from the loop's thread. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define LINKS_PASS_TIMEOUT_USEC (15U * 60U * 1000000U) /* one whole pass */
#define LINKS_LINE_MAX (32U * 1024U)                   /* one report line from the pass */
#define LINKS_WATCHES_MAX 64U                          /* directories watched for new homes */
#define LINKS_WAITERS_MAX 32U                          /* "links --sync" clients waiting */
#define LINKS_HOME_DEBOUNCE_USEC (500U * 1000U)        /* from a home event to the pass */
#define LINKS_SYNC_TIMEOUT_USEC_DEFAULT (120U * 1000000U)
#define LINKS_SYNC_TIMEOUT_USEC_MAX (3600U * 1000000U)
#define LINKS_REPLY_BYTES_MAX (48U * 1024U) /* user entries in one "links" reply */

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct Config Config;
typedef struct ControlPeer ControlPeer;
typedef struct ControlServer ControlServer;
typedef struct LinksManager LinksManager;

typedef enum LinksTrigger {
        LINKS_TRIGGER_START,
        LINKS_TRIGGER_RELOAD,
        LINKS_TRIGGER_PERIODIC,
        LINKS_TRIGGER_HOME,      /* a watched home appeared or changed */
        LINKS_TRIGGER_SESSION,   /* a new user opened a session */
        LINKS_TRIGGER_REQUEST,   /* "poolctl links --sync" */
        LINKS_TRIGGER_WORKSPACE, /* the share became ready */
        _LINKS_TRIGGER_MAX,
        _LINKS_TRIGGER_INVALID = -EINVAL,
} LinksTrigger;

const char *links_trigger_to_string(LinksTrigger t);

/* event is borrowed and must outlive the manager. Nothing runs before links_manager_start(). */
int links_manager_new(sd_event *event, LinksManager **ret);
/* Kills a running pass process (reaping it if it ended), answers waiting clients. NULL-safe. */
LinksManager *links_manager_free(LinksManager *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(LinksManager *, links_manager_free);

/* The settings to use: config for [Users], mount_point for the share (the value in use, which may
 * differ from config's after a reload). Both borrowed: call again whenever either is replaced. A
 * later call also requests a pass (trigger RELOAD) once started. */
void links_manager_configure(LinksManager *l, const Config *config, const char *mount_point);
/* Whether passes may run; false -> true requests a pass. */
void links_manager_set_share_ready(LinksManager *l, bool ready);
/* Subscribes to sessions (fails soft) and requests the first pass. */
int links_manager_start(LinksManager *l);
void links_manager_request(LinksManager *l, LinksTrigger trigger);

/* The "links" control command. request may hold "sync": true (admins only; then the reply is
 * deferred until a pass that started after the request has finished, or "timeout_ms", default
 * LINKS_SYNC_TIMEOUT_USEC_DEFAULT) and is otherwise answered at once. Non-admin peers see only
 * their own entry. Same contract as ControlHandler (control.h), control is the server to defer
 * on. */
int links_manager_on_control(
        LinksManager *l,
        ControlServer *control,
        const ControlPeer *peer,
        json_object *request,
        json_object *result,
        char **reterr_message);

/* Adds a "links" object (pass state, counts by state, watched directories, sessions) to o. */
int links_manager_status_json(LinksManager *l, json_object *o);
