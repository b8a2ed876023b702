/* SPDX-License-Identifier: MIT */
#pragma once

/* Which users get a notebooks folder on the share and a link in their home.
 *
 * A user is a candidate when any of these holds:
 *   - a passwd entry (NSS, so directory users work too) with a UID in the configured range;
 *   - a member of the configured group (listed in the group, or with it as primary group);
 *   - the user was seen opening a session (logind SessionNew; the daemon feeds them in).
 * and is never eligible when: UID 0, a system account (UID <= policy->system_uid_max, 65534
 * "nobody", (uid_t)-1), or named in the deny list.
 *
 * Eligible users must also have a name the case-insensitive share can hold as one folder
 * (<mount>/Users/<name>): see user_name_share_check(). Two eligible users whose names are equal
 * ignoring case would share a folder: both are marked USER_VERDICT_CASE_COLLISION and neither gets
 * one; the detail names the other user.
 *
 * The pure part (user_set_consider, user_set_finish, name checks) does no I/O and is unit-tested;
 * users_enumerate() is the NSS walk on top of it. Nothing here logs. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "macro.h"

struct passwd;

#define USERS_MAX 65536U          /* entries in one UserSet; more is -E2BIG */
#define USERS_SEEN_MAX 65536U     /* names remembered from sessions */
#define USER_NAME_SHARE_MAX 255U  /* bytes in one share path component */
#define USERS_SYSTEM_UID_MAX 999U /* default: UID_MIN in login.defs is 1000 */
#define USERS_GROUPS_MAX 65536U   /* supplementary groups of one user */

typedef struct UserPolicy {
        uid_t uid_min, uid_max; /* inclusive range of eligible UIDs; min > max: none */
        uid_t system_uid_max;   /* UIDs 1..system_uid_max are system accounts, never eligible */
        const char *group;      /* members are eligible too; NULL: none */
        char *const *deny;      /* NULL-terminated names, compared exactly; may be NULL */
} UserPolicy;

typedef enum UserSource {
        USER_SOURCE_RANGE = 1 << 0,
        USER_SOURCE_GROUP = 1 << 1,
        USER_SOURCE_SESSION = 1 << 2,
} UserSource;

typedef enum UserVerdict {
        USER_VERDICT_ELIGIBLE,
        USER_VERDICT_DENIED,         /* in the deny list */
        USER_VERDICT_SYSTEM,         /* UID 0 or a system account */
        USER_VERDICT_BAD_NAME,       /* the share cannot hold the name; detail says why */
        USER_VERDICT_CASE_COLLISION, /* another eligible name equals this one ignoring case */
        USER_VERDICT_NO_HOME,        /* passwd entry without an absolute home */
        _USER_VERDICT_MAX,
        _USER_VERDICT_INVALID = -EINVAL,
} UserVerdict;

typedef struct UserEntry {
        char *name;
        uid_t uid;
        gid_t gid;
        char *home;
        unsigned sources; /* UserSource bits */
        UserVerdict verdict;
        char *detail; /* why not eligible, NULL when eligible; owned */
} UserEntry;

/* Entries sorted by name (bytewise) after user_set_finish(). Owns everything it points to. */
typedef struct UserSet {
        UserEntry *entries;
        size_t n, allocated;
} UserSet;

/* Names remembered from sessions, so that directory users that NSS cannot enumerate stay
 * eligible on later passes. Owned by the daemon. */
typedef struct UserSeen {
        char **names;
        size_t n, allocated;
} UserSeen;

const char *user_verdict_to_string(UserVerdict v);

/* 0 if name can be one folder on the share, else -EINVAL with *reterr_reason (static) saying
 * why: empty, "." or "..", longer than USER_NAME_SHARE_MAX, a character the share forbids
 * (" \ / : | < > * ? or a control character), a trailing dot or space, a reserved DOS device
 * name (CON PRN AUX NUL COM1-9 LPT1-9 CLOCK$, any case), or not ASCII (case folding beyond
 * ASCII cannot be verified, so such names are refused rather than risk two users sharing). */
int user_name_share_check(const char *name, const char **reterr_reason);

/* Whether a and b name the same folder on the case-insensitive share. */
bool user_names_collide(const char *a, const char *b);

/* Whether uid is root or a system account under p. */
bool user_uid_is_system(const UserPolicy *p, uid_t uid);

int user_set_new(UserSet **ret);
UserSet *user_set_free(UserSet *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(UserSet *, user_set_free);

/* Adds pw to s if it is a candidate (sources != 0: in range is computed here; in_group and
 * in_session are what the caller found). An entry already present with the same name gains the
 * sources. Returns 1 if added or merged, 0 if not a candidate, -ENOMEM, -E2BIG (USERS_MAX). */
int user_set_consider(
        UserSet *s, const UserPolicy *p, const struct passwd *pw, bool in_group, bool in_session);

/* Decides every verdict (system, deny, home, name, case collisions) and sorts by name. */
int user_set_finish(UserSet *s, const UserPolicy *p);

/* Finds an entry by exact name, NULL if none. */
const UserEntry *user_set_find(const UserSet *s, const char *name);

/* Session names. user_seen_add() returns 1 if new, 0 if known, -ENOMEM, -E2BIG. */
int user_seen_add(UserSeen *seen, const char *name);
bool user_seen_has(const UserSeen *seen, const char *name);
void user_seen_done(UserSeen *seen);

/* I/O: walks NSS (getpwent; getgrnam_r for the group; getpwnam_r for each seen name) and returns
 * the finished set. A configured group that does not exist adds nobody (not an error here; the
 * daemon reports it). A seen name NSS no longer knows is skipped. Returns 0, -ENOMEM, -E2BIG, or
 * a negative errno from NSS. */
int users_enumerate(const UserPolicy *p, const UserSeen *seen, UserSet **ret);

/* I/O: the supplementary groups of a user (getgrouplist, including gid). *ret is malloc'd. */
int user_get_groups(const char *name, gid_t gid, gid_t **ret, size_t *ret_n);
