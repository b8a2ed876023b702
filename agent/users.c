/* SPDX-License-Identifier: MIT */
#include "users.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NSS_BUFFER_MAX (1024U * 1024U) /* getpw*_r / getgr*_r buffer cap */

static const char *const user_verdict_table[_USER_VERDICT_MAX] = {
        [USER_VERDICT_ELIGIBLE] = "eligible",
        [USER_VERDICT_DENIED] = "denied",
        [USER_VERDICT_SYSTEM] = "system-account",
        [USER_VERDICT_BAD_NAME] = "bad-name",
        [USER_VERDICT_CASE_COLLISION] = "case-collision",
        [USER_VERDICT_NO_HOME] = "no-home",
};

const char *user_verdict_to_string(UserVerdict v) {
        if (v < 0 || v >= _USER_VERDICT_MAX)
                return NULL;
        return user_verdict_table[v];
}

/* ---- names ---------------------------------------------------------------------------------- */

static bool name_is_reserved_device(const char *name) {
        static const char *const reserved[] = {"CON", "PRN", "AUX", "NUL", "CLOCK$"};
        size_t n = strlen(name);

        for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
                if (strcaseeq(name, reserved[i]))
                        return true;
        /* COM1..COM9, LPT1..LPT9 */
        return n == 4 && (strncasecmp(name, "COM", 3) == 0 || strncasecmp(name, "LPT", 3) == 0) &&
               name[3] >= '1' && name[3] <= '9';
}

int user_name_share_check(const char *name, const char **reterr_reason) {
        size_t n;

        assert(name);
        assert(reterr_reason);

        n = strlen(name);
        if (n == 0) {
                *reterr_reason = "the name is empty";
                return -EINVAL;
        }
        if (streq(name, ".") || streq(name, "..")) {
                *reterr_reason = "\".\" and \"..\" cannot be folder names";
                return -EINVAL;
        }
        if (n > USER_NAME_SHARE_MAX) {
                *reterr_reason = "the name is longer than the share allows (255 bytes)";
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)name[i];

                if (c >= 0x80) {
                        *reterr_reason =
                                "the name is not ASCII; case folding on the share cannot be verified";
                        return -EINVAL;
                }
                if (c < 0x20 || c == 0x7f) {
                        *reterr_reason = "the name contains a control character";
                        return -EINVAL;
                }
                if (strchr("\"\\/:|<>*?", c)) {
                        *reterr_reason =
                                "the name contains a character the share forbids (\" \\ / : | < > * ?)";
                        return -EINVAL;
                }
        }
        if (name[n - 1] == '.' || name[n - 1] == ' ') {
                *reterr_reason = "the share does not allow a name ending in a dot or a space";
                return -EINVAL;
        }
        if (name_is_reserved_device(name)) {
                *reterr_reason =
                        "the name is a reserved device name on the share (CON, PRN, AUX, NUL, COM1-9, LPT1-9, CLOCK$)";
                return -EINVAL;
        }
        return 0;
}

bool user_names_collide(const char *a, const char *b) {
        /* Names reaching this point are ASCII (user_name_share_check), so ASCII folding is the
         * share's folding. */
        return strcaseeq(a, b);
}

bool user_uid_is_system(const UserPolicy *p, uid_t uid) {
        return uid == 0 || uid <= p->system_uid_max || uid == (uid_t)65534 || uid == (uid_t)65535 ||
               uid == (uid_t)-1;
}

/* ---- the set ----------------------------------------------------------------------------------
 */

int user_set_new(UserSet **ret) {
        UserSet *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void user_entry_done(UserEntry *e) {
        free(e->name);
        free(e->home);
        free(e->detail);
}

UserSet *user_set_free(UserSet *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                user_entry_done(&s->entries[i]);
        free(s->entries);
        free(s);
        return NULL;
}

static UserEntry *user_set_find_mutable(UserSet *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->entries[i].name, name))
                        return &s->entries[i];
        return NULL;
}

const UserEntry *user_set_find(const UserSet *s, const char *name) {
        return user_set_find_mutable((UserSet *)s, name);
}

static bool uid_in_range(const UserPolicy *p, uid_t uid) {
        return p->uid_min <= p->uid_max && uid >= p->uid_min && uid <= p->uid_max;
}

int user_set_consider(
        UserSet *s, const UserPolicy *p, const struct passwd *pw, bool in_group, bool in_session) {
        unsigned sources = 0;
        UserEntry *e;

        assert(s);
        assert(p);
        assert(pw);

        if (!pw->pw_name)
                return 0;
        if (uid_in_range(p, pw->pw_uid))
                sources |= USER_SOURCE_RANGE;
        if (in_group)
                sources |= USER_SOURCE_GROUP;
        if (in_session)
                sources |= USER_SOURCE_SESSION;
        if (sources == 0)
                return 0;

        e = user_set_find_mutable(s, pw->pw_name);
        if (e) {
                /* NSS may list a name twice (two sources); the first entry wins, sources merge. */
                e->sources |= sources;
                return 1;
        }
        if (s->n >= USERS_MAX)
                return -E2BIG;
        if (s->n == s->allocated) {
                size_t a = MAX(s->allocated * 2, (size_t)16);
                UserEntry *p2 = reallocarray(s->entries, a, sizeof(UserEntry));

                if (!p2)
                        return -ENOMEM;
                s->entries = p2;
                s->allocated = a;
        }
        e = &s->entries[s->n];
        *e = (UserEntry){
                .uid = pw->pw_uid,
                .gid = pw->pw_gid,
                .sources = sources,
                .verdict = USER_VERDICT_ELIGIBLE,
        };
        e->name = strdup(pw->pw_name);
        e->home = pw->pw_dir ? strdup(pw->pw_dir) : NULL;
        if (!e->name || (pw->pw_dir && !e->home)) {
                user_entry_done(e);
                return -ENOMEM;
        }
        s->n++;
        return 1;
}

static bool strv_contains(char *const *l, const char *s) {
        for (char *const *i = l; i && *i; i++)
                if (streq(*i, s))
                        return true;
        return false;
}

static int entry_set_verdict(UserEntry *e, UserVerdict v, const char *detail) {
        e->verdict = v;
        free(e->detail);
        e->detail = strdup(detail);
        return e->detail ? 0 : -ENOMEM;
}

static int entry_cmp_name(const void *a, const void *b) {
        return strcmp(((const UserEntry *)a)->name, ((const UserEntry *)b)->name);
}

static int entry_cmp_folded(const void *a, const void *b) {
        const UserEntry *x = a, *y = b;
        int r = strcasecmp(x->name, y->name);

        return r != 0 ? r : strcmp(x->name, y->name);
}

/* Marks every eligible entry whose name collides with another eligible one. s is sorted by
 * folded name, so colliding names are adjacent among the eligible entries. */
static int user_set_mark_collisions(UserSet *s) {
        size_t i = 0;

        while (i < s->n) {
                size_t j, k, count = 0;

                if (s->entries[i].verdict != USER_VERDICT_ELIGIBLE) {
                        i++;
                        continue;
                }
                /* The run of entries folding equal to entries[i] (ineligible ones may sit in it).
                 */
                for (j = i; j < s->n && user_names_collide(s->entries[i].name, s->entries[j].name);
                     j++)
                        if (s->entries[j].verdict == USER_VERDICT_ELIGIBLE)
                                count++;
                if (count > 1)
                        for (k = i; k < j; k++) {
                                char detail[512];
                                const char *other = NULL;

                                if (s->entries[k].verdict != USER_VERDICT_ELIGIBLE)
                                        continue;
                                for (size_t m = i; m < j && !other; m++)
                                        if (m != k &&
                                            (s->entries[m].verdict == USER_VERDICT_ELIGIBLE ||
                                             s->entries[m].verdict == USER_VERDICT_CASE_COLLISION))
                                                other = s->entries[m].name;
                                (void)snprintf(
                                        detail, sizeof(detail),
                                        "the name equals \"%s\" ignoring case; on the case-insensitive share they would share one folder, so neither gets one",
                                        other ? other : "?");
                                s->entries[k].verdict = USER_VERDICT_CASE_COLLISION;
                                free(s->entries[k].detail);
                                s->entries[k].detail = strdup(detail);
                                if (!s->entries[k].detail)
                                        return -ENOMEM;
                        }
                i = j;
        }
        return 0;
}

int user_set_finish(UserSet *s, const UserPolicy *p) {
        int r;

        assert(s);
        assert(p);

        for (size_t i = 0; i < s->n; i++) {
                UserEntry *e = &s->entries[i];
                const char *reason;

                if (user_uid_is_system(p, e->uid))
                        r = entry_set_verdict(
                                e, USER_VERDICT_SYSTEM,
                                "root and system accounts never get a folder");
                else if (strv_contains(p->deny, e->name))
                        r = entry_set_verdict(
                                e, USER_VERDICT_DENIED, "the user is in the deny list");
                else if (isempty(e->home) || e->home[0] != '/')
                        r = entry_set_verdict(
                                e, USER_VERDICT_NO_HOME,
                                "the home directory is not an absolute path");
                else if (user_name_share_check(e->name, &reason) < 0)
                        r = entry_set_verdict(e, USER_VERDICT_BAD_NAME, reason);
                else
                        r = 0;
                if (r < 0)
                        return r;
        }

        if (s->n > 1)
                qsort(s->entries, s->n, sizeof(UserEntry), entry_cmp_folded);
        r = user_set_mark_collisions(s);
        if (r < 0)
                return r;
        if (s->n > 1)
                qsort(s->entries, s->n, sizeof(UserEntry), entry_cmp_name);
        return 0;
}

/* ---- session names ----------------------------------------------------------------------------
 */

bool user_seen_has(const UserSeen *seen, const char *name) {
        for (size_t i = 0; seen && i < seen->n; i++)
                if (streq(seen->names[i], name))
                        return true;
        return false;
}

int user_seen_add(UserSeen *seen, const char *name) {
        char *copy;

        assert(seen);
        assert(name);

        if (user_seen_has(seen, name))
                return 0;
        if (seen->n >= USERS_SEEN_MAX)
                return -E2BIG;
        if (seen->n == seen->allocated) {
                size_t a = MAX(seen->allocated * 2, (size_t)8);
                char **p = reallocarray(seen->names, a, sizeof(char *));

                if (!p)
                        return -ENOMEM;
                seen->names = p;
                seen->allocated = a;
        }
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        seen->names[seen->n++] = copy;
        return 1;
}

void user_seen_done(UserSeen *seen) {
        if (!seen)
                return;
        for (size_t i = 0; i < seen->n; i++)
                free(seen->names[i]);
        free(seen->names);
        *seen = (UserSeen){};
}

/* ---- NSS --------------------------------------------------------------------------------------
 */

static void strv_freep(char ***l) {
        for (char **i = *l; i && *i; i++)
                free(*i);
        free(*l);
}

/* Looks the group up: *ret_found false if it does not exist; members copied into *ret_members. */
static int group_lookup(const char *name, bool *ret_found, gid_t *ret_gid, char ***ret_members) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096;

        for (;;) {
                struct group gr, *result = NULL;
                char **members = NULL;
                size_t n = 0;
                char *nb;
                int r;

                nb = realloc(buf, size);
                if (!nb)
                        return -ENOMEM;
                buf = nb;
                r = getgrnam_r(name, &gr, buf, size, &result);
                if (r == ERANGE && size < NSS_BUFFER_MAX) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (!result) {
                        *ret_found = false;
                        return 0;
                }
                while (gr.gr_mem && gr.gr_mem[n])
                        n++;
                members = calloc(n + 1, sizeof(char *));
                if (!members)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        members[i] = strdup(gr.gr_mem[i]);
                        if (!members[i]) {
                                strv_freep(&members);
                                return -ENOMEM;
                        }
                }
                *ret_found = true;
                *ret_gid = gr.gr_gid;
                *ret_members = members;
                return 0;
        }
}

/* Looks name up and considers it. A name NSS does not know is skipped. */
static int consider_by_name(
        UserSet *s, const UserPolicy *p, const char *name, bool in_group, bool in_session) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096;

        for (;;) {
                struct passwd pw, *result = NULL;
                char *nb;
                int r;

                nb = realloc(buf, size);
                if (!nb)
                        return -ENOMEM;
                buf = nb;
                r = getpwnam_r(name, &pw, buf, size, &result);
                if (r == ERANGE && size < NSS_BUFFER_MAX) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (!result)
                        return 0;
                return user_set_consider(s, p, &pw, in_group, in_session);
        }
}

static int enumerate_passwd(
        UserSet *s,
        const UserPolicy *p,
        const UserSeen *seen,
        bool have_group,
        gid_t group_gid,
        char *const *members) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 4096;
        int r = 0;

        buf = malloc(size);
        if (!buf)
                return -ENOMEM;
        setpwent();
        for (;;) {
                struct passwd pw, *result = NULL;
                int k = getpwent_r(&pw, buf, size, &result);

                if (k == ERANGE && size < NSS_BUFFER_MAX) {
                        char *nb = realloc(buf, size * 2);

                        if (!nb) {
                                r = -ENOMEM;
                                break;
                        }
                        buf = nb;
                        size *= 2;
                        continue; /* glibc retries the same entry */
                }
                if (k == ENOENT || (k == 0 && !result))
                        break;
                if (k != 0) {
                        r = -k;
                        break;
                }
                r = user_set_consider(
                        s, p, &pw,
                        have_group &&
                                (pw.pw_gid == group_gid || strv_contains(members, pw.pw_name)),
                        user_seen_has(seen, pw.pw_name));
                if (r < 0)
                        break;
                r = 0;
        }
        endpwent();
        return r;
}

int users_enumerate(const UserPolicy *p, const UserSeen *seen, UserSet **ret) {
        _cleanup_(user_set_freep) UserSet *s = NULL;
        _cleanup_(strv_freep) char **members = NULL;
        bool have_group = false;
        gid_t group_gid = 0;
        int r;

        assert(p);
        assert(ret);

        r = user_set_new(&s);
        if (r < 0)
                return r;
        if (p->group) {
                r = group_lookup(p->group, &have_group, &group_gid, &members);
                if (r < 0)
                        return r;
        }
        r = enumerate_passwd(s, p, seen, have_group, group_gid, members);
        if (r < 0)
                return r;
        /* Group members and session users that getpwent() did not list (directory users when the
         * directory does not enumerate). */
        for (char **m = members; m && *m; m++)
                if (!user_set_find(s, *m)) {
                        r = consider_by_name(s, p, *m, true, user_seen_has(seen, *m));
                        if (r < 0)
                                return r;
                }
        for (size_t i = 0; seen && i < seen->n; i++)
                if (!user_set_find(s, seen->names[i])) {
                        r = consider_by_name(s, p, seen->names[i], false, true);
                        if (r < 0)
                                return r;
                }
        r = user_set_finish(s, p);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int user_get_groups(const char *name, gid_t gid, gid_t **ret, size_t *ret_n) {
        int n = 64;

        assert(name);
        assert(ret);
        assert(ret_n);

        for (;;) {
                gid_t *groups = calloc((size_t)n, sizeof(gid_t));
                int k = n;

                if (!groups)
                        return -ENOMEM;
                if (getgrouplist(name, gid, groups, &k) >= 0) {
                        *ret = groups;
                        *ret_n = (size_t)k;
                        return 0;
                }
                free(groups);
                if (k <= n) /* no growth hint: give up rather than loop */
                        return -EIO;
                if ((unsigned)k > USERS_GROUPS_MAX)
                        return -E2BIG;
                n = k;
        }
}
