/* SPDX-License-Identifier: MIT */
#pragma once

/* Per-user notebooks on the share: <mount>/Users/<user>/notebooks (owned by the user) and the link
 * $HOME/<notebooks_directory>/<link_name> -> <mount>/Users/<user>/notebooks.
 *
 * Security (the agent is root, homes belong to users):
 *   - All the work for one user runs in a forked child; the parent only looks up groups (NSS),
 *     waits with a bound, and reads one fixed-size result from a pipe. The child closes every
 *     other descriptor first.
 *   - Root phase (in the child, still root): opens the home's parent (admin-controlled path) and
 *     then the home with openat(O_PATH|O_DIRECTORY|O_NOFOLLOW); refuses a home that is a symlink,
 *     not owned by the user, writable by others (or by a group other than the user's), or whose
 *     parent is not a root-owned directory without group/other write. Creates <mount>/Users and
 *     <mount>/Users/<user> with mkdirat, opens them with O_NOFOLLOW and fchown()s the user's
 *     folder through that descriptor (only if it is owned by root, i.e. just made by us). Root
 *     never creates, chowns or writes anything inside the home.
 *   - User phase: setgroups/setresgid/setresuid to the user, verified. It then walks the home
 *     from the inherited descriptor with openat(O_NOFOLLOW) per component, observes, plans
 *     (user_link_plan, pure) and applies with mkdirat/symlinkat on descriptors. A race that swaps
 *     a directory for a link can therefore only reach what the user could reach anyway.
 *   - Nothing is ever clobbered: a file, directory or other link where the link belongs, or a
 *     symlink where a directory belongs, is reported as a conflict and left alone.
 *
 * Idempotent: a second run with nothing changed reports USER_LINK_OK and changes nothing.
 *
 * Limits, in writing:
 *   - user_link_apply() forks; the child calls snprintf/strerror, so the caller must be
 *     single-threaded (poolagentd's sd-event loop is). It blocks the caller for up to the timeout.
 *   - Two users whose names differ only by case are caught on one VM (users.h). Across VMs with
 *     different user databases, <mount>/Users/<name> may already exist under another case; it is
 *     then used only if the share reports it owned by this user (or by root, i.e. made by us).
 *   - The share must support chown; if it refuses, the user is reported as USER_LINK_ERROR. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct UserEntry UserEntry;
typedef struct UserSet UserSet;

#define USER_LINK_DETAIL_MAX 512U             /* bytes of one report's detail */
#define USER_LINK_SHARE_USERS "Users"         /* <mount>/Users */
#define USER_LINK_SHARE_NOTEBOOKS "notebooks" /* <mount>/Users/<user>/notebooks */
#define USER_LINK_DEPTH_MAX 16U               /* components in notebooks_directory */
#define USER_LINK_TIMEOUT_USEC_DEFAULT (30U * 1000000U)

typedef enum UserLinkState {
        USER_LINK_OK,       /* already correct, nothing changed */
        USER_LINK_CREATED,  /* created the folder and/or the link now */
        USER_LINK_PENDING,  /* the home does not exist yet; call again when it appears */
        USER_LINK_CONFLICT, /* something else is where the link or a folder belongs; left alone */
        USER_LINK_REFUSED,  /* user not eligible, or a hostile home; detail says why */
        USER_LINK_ERROR,    /* an I/O error or timeout; detail says which */
        _USER_LINK_STATE_MAX,
        _USER_LINK_STATE_INVALID = -EINVAL,
} UserLinkState;

const char *user_link_state_to_string(UserLinkState s);

typedef struct UserLinkOptions {
        const char *mount_point;         /* absolute; the share */
        const char *notebooks_directory; /* relative to $HOME, "/"-separated, no "." or ".." */
        const char *link_name;           /* one component */
        mode_t directory_mode;           /* for folders created on the share and in the home */
        uint64_t timeout_usec;           /* per user; 0: USER_LINK_TIMEOUT_USEC_DEFAULT */
} UserLinkOptions;

/* What one pass found or did for one user. All strings owned; detail never NULL. */
typedef struct UserLinkReport {
        char *user;
        uid_t uid;
        UserLinkState state;
        int error;    /* negative errno for USER_LINK_ERROR, else 0 */
        char *link;   /* $HOME/<notebooks_directory>/<link_name>, NULL if no home */
        char *target; /* <mount>/Users/<user>/notebooks */
        char *detail;
} UserLinkReport;

void user_link_report_done(UserLinkReport *r);
UserLinkReport *user_link_reports_free(UserLinkReport *r, size_t n);

/* ---- planning (pure) --------------------------------------------------------------------------
 */

typedef enum LinkNode {
        LINK_NODE_MISSING,
        LINK_NODE_DIRECTORY,
        LINK_NODE_SYMLINK,
        LINK_NODE_OTHER, /* regular file, socket, device, ... */
        _LINK_NODE_MAX,
        _LINK_NODE_INVALID = -EINVAL,
} LinkNode;

typedef struct UserLinkObservation {
        uid_t uid;                   /* the user */
        LinkNode share_dir;          /* <mount>/Users/<user>/notebooks */
        uid_t share_dir_uid;         /* when a directory */
        bool home_exists;            /* false: pending */
        LinkNode notebooks;          /* $HOME/<notebooks_directory>: DIRECTORY when every
                                      * component is one, MISSING when the first non-directory
                                      * is missing, else what blocks the walk */
        LinkNode link;               /* the link itself, when notebooks is a DIRECTORY */
        const char *link_target;     /* when link is a SYMLINK */
        const char *expected_target; /* <mount>/Users/<user>/notebooks */
} UserLinkObservation;

typedef struct UserLinkPlan {
        bool mkdir_share_dir;
        bool mkdir_notebooks; /* the missing components of notebooks_directory */
        bool symlink;
        UserLinkState state; /* OK: nothing to do; CREATED: do the above; PENDING; CONFLICT */
        const char *reason;  /* static sentence */
} UserLinkPlan;

/* Decides what to do. Never plans to touch anything that exists: a conflicting home side still
 * lets the share folder be made, a conflicting share folder stops the link. */
void user_link_plan(const UserLinkObservation *o, UserLinkPlan *ret);

/* Pure helpers. */
bool user_link_options_valid(const UserLinkOptions *o, const char **reterr_reason);
/* <mount>/Users/<name>/notebooks; -ENOMEM. */
int user_link_target(const UserLinkOptions *o, const char *name, char **ret);
/* The directory whose change makes a pending home appear: the home's parent. -EINVAL if home is
 * not absolute or is "/". A daemon watches it (inotify IN_CREATE|IN_MOVED_TO|IN_ATTRIB) and calls
 * user_link_apply() again. */
int user_link_home_parent(const char *home, char **ret);

/* ---- applying (I/O) ---------------------------------------------------------------------------
 */

/* Does the work for one user (see the top of this file) and fills *ret (always, unless -ENOMEM or
 * -EINVAL for bad options/entry, which are returned). A user that is not eligible is reported as
 * USER_LINK_REFUSED without any I/O. Returns 0 otherwise: failures are in the report. Must be
 * called as root. Blocks up to o->timeout_usec (the child is killed then). */
int user_link_apply(const UserLinkOptions *o, const UserEntry *e, UserLinkReport *ret);

/* user_link_apply() for every entry of s, in order. *ret has s->n reports. */
int user_links_apply_all(
        const UserLinkOptions *o, const UserSet *s, UserLinkReport **ret, size_t *ret_n);
