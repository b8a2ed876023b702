/* SPDX-License-Identifier: MIT */
#include "user-links.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "users.h"

#define USER_LINK_RETRIES 4U
#define USER_LINK_SCAN_MAX                                                                         \
        1000000U /* entries read in Users/ when checking case */ /* observe/plan/apply rounds when \
                                                                    something changes under us */

static const char *const user_link_state_table[_USER_LINK_STATE_MAX] = {
        [USER_LINK_OK] = "ok",           [USER_LINK_CREATED] = "created",
        [USER_LINK_PENDING] = "pending", [USER_LINK_CONFLICT] = "conflict",
        [USER_LINK_REFUSED] = "refused", [USER_LINK_ERROR] = "error",
};

const char *user_link_state_to_string(UserLinkState s) {
        if (s < 0 || s >= _USER_LINK_STATE_MAX)
                return NULL;
        return user_link_state_table[s];
}

void user_link_report_done(UserLinkReport *r) {
        if (!r)
                return;
        free(r->user);
        free(r->link);
        free(r->target);
        free(r->detail);
        *r = (UserLinkReport){};
}

UserLinkReport *user_link_reports_free(UserLinkReport *r, size_t n) {
        for (size_t i = 0; r && i < n; i++)
                user_link_report_done(&r[i]);
        free(r);
        return NULL;
}

/* ---- planning ----------------------------------------------------------------------------------
 */

void user_link_plan(const UserLinkObservation *o, UserLinkPlan *ret) {
        UserLinkPlan p = {.state = USER_LINK_OK, .reason = "the folder and the link are in place"};

        assert(o);
        assert(ret);

        switch (o->share_dir) {
        case LINK_NODE_MISSING:
                p.mkdir_share_dir = true;
                break;
        case LINK_NODE_DIRECTORY:
                if (o->share_dir_uid != o->uid) {
                        *ret = (UserLinkPlan){
                                .state = USER_LINK_CONFLICT,
                                .reason =
                                        "the notebooks folder on the share belongs to another user; left alone",
                        };
                        return;
                }
                break;
        default:
                *ret = (UserLinkPlan){
                        .state = USER_LINK_CONFLICT,
                        .reason =
                                "something other than a directory is where the notebooks folder on the share belongs; left alone",
                };
                return;
        }

        if (!o->home_exists) {
                p.state = USER_LINK_PENDING;
                p.reason = "the home directory does not exist yet";
                *ret = p;
                return;
        }

        switch (o->notebooks) {
        case LINK_NODE_MISSING:
                p.mkdir_notebooks = true;
                p.symlink = true;
                break;
        case LINK_NODE_SYMLINK:
                p.state = USER_LINK_CONFLICT;
                p.reason =
                        "the notebooks directory in the home (or a directory above it) is a symbolic link; left alone";
                break;
        case LINK_NODE_OTHER:
                p.state = USER_LINK_CONFLICT;
                p.reason =
                        "the notebooks directory in the home (or a directory above it) is not a directory; left alone";
                break;
        case LINK_NODE_DIRECTORY:
                switch (o->link) {
                case LINK_NODE_MISSING:
                        p.symlink = true;
                        break;
                case LINK_NODE_SYMLINK:
                        if (!o->link_target || !o->expected_target ||
                            !streq(o->link_target, o->expected_target)) {
                                p.state = USER_LINK_CONFLICT;
                                p.reason =
                                        "a symbolic link pointing elsewhere is where the link belongs; left alone";
                        }
                        break;
                case LINK_NODE_DIRECTORY:
                        p.state = USER_LINK_CONFLICT;
                        p.reason = "a directory is where the link belongs; left alone";
                        break;
                default:
                        p.state = USER_LINK_CONFLICT;
                        p.reason = "a file is where the link belongs; left alone";
                        break;
                }
                break;
        default:
                p.state = USER_LINK_CONFLICT;
                p.reason = "the notebooks directory could not be examined";
                break;
        }

        if (p.state == USER_LINK_OK && (p.mkdir_share_dir || p.mkdir_notebooks || p.symlink)) {
                p.state = USER_LINK_CREATED;
                p.reason = "created";
        }
        *ret = p;
}

/* ---- pure helpers ------------------------------------------------------------------------------
 */

static bool component_valid(const char *s, size_t n) {
        if (n == 0 || n > NAME_MAX)
                return false;
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                return false;
        return memchr(s, '/', n) == NULL;
}

bool user_link_options_valid(const UserLinkOptions *o, const char **reterr_reason) {
        const char *p;
        unsigned depth = 0;

        assert(o);
        assert(reterr_reason);

        if (isempty(o->mount_point) || o->mount_point[0] != '/') {
                *reterr_reason = "the mount point must be an absolute path";
                return false;
        }
        if (isempty(o->notebooks_directory) || o->notebooks_directory[0] == '/') {
                *reterr_reason = "the notebooks directory must be a path relative to the home";
                return false;
        }
        p = o->notebooks_directory;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);

                if (!component_valid(p, n) || ++depth > USER_LINK_DEPTH_MAX) {
                        *reterr_reason =
                                "the notebooks directory must be plain components (no empty, \".\" or \"..\"), at most 16";
                        return false;
                }
                if (!slash)
                        break;
                p = slash + 1;
        }
        if (isempty(o->link_name) || !component_valid(o->link_name, strlen(o->link_name))) {
                *reterr_reason = "the link name must be one path component";
                return false;
        }
        if ((o->directory_mode & ~(mode_t)07777) != 0) {
                *reterr_reason = "the directory mode must be at most 07777";
                return false;
        }
        return true;
}

int user_link_target(const UserLinkOptions *o, const char *name, char **ret) {
        size_t n = strlen(o->mount_point);
        bool slash = n > 0 && o->mount_point[n - 1] == '/';

        if (asprintf(
                    ret, "%s%s" USER_LINK_SHARE_USERS "/%s/" USER_LINK_SHARE_NOTEBOOKS,
                    o->mount_point, slash ? "" : "/", name) < 0)
                return -ENOMEM;
        return 0;
}

/* Splits an absolute home into its parent directory and last component (both malloc'd).
 * Trailing slashes are dropped; "/" and a last component "." or ".." are -EINVAL. */
static int home_split(const char *home, char **ret_parent, char **ret_base) {
        _cleanup_free_ char *copy = NULL, *base = NULL;
        char *slash;
        size_t n;

        if (isempty(home) || home[0] != '/')
                return -EINVAL;
        copy = strdup(home);
        if (!copy)
                return -ENOMEM;
        n = strlen(copy);
        while (n > 1 && copy[n - 1] == '/')
                copy[--n] = '\0';
        slash = strrchr(copy, '/');
        if (!component_valid(slash + 1, strlen(slash + 1)))
                return -EINVAL;
        base = strdup(slash + 1);
        if (!base)
                return -ENOMEM;
        if (slash == copy)
                slash[1] = '\0';
        else
                *slash = '\0';
        *ret_parent = TAKE_PTR(copy);
        *ret_base = TAKE_PTR(base);
        return 0;
}

int user_link_home_parent(const char *home, char **ret) {
        _cleanup_free_ char *base = NULL;

        return home_split(home, ret, &base);
}

static int link_path(const UserLinkOptions *o, const char *home, char **ret) {
        size_t n = strlen(home);

        while (n > 1 && home[n - 1] == '/')
                n--;
        if (asprintf(
                    ret, "%.*s%s%s/%s", (int)n, home, n == 1 ? "" : "/", o->notebooks_directory,
                    o->link_name) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- the worker child --------------------------------------------------------------------------
 */

/* What the child sends back: one write, smaller than PIPE_BUF, so it arrives whole or not at all.
 */
typedef struct ChildResult {
        int32_t state;
        int32_t error;
        char detail[USER_LINK_DETAIL_MAX];
} ChildResult;

_printf_(4, 5) static int result_set(
        ChildResult *res, UserLinkState state, int error, const char *format, ...) {
        va_list ap;

        res->state = state;
        res->error = error;
        va_start(ap, format);
        (void)vsnprintf(res->detail, sizeof(res->detail), format, ap);
        va_end(ap);
        return 1;
}

static LinkNode node_from_mode(mode_t m) {
        if (S_ISDIR(m))
                return LINK_NODE_DIRECTORY;
        if (S_ISLNK(m))
                return LINK_NODE_SYMLINK;
        return LINK_NODE_OTHER;
}

/* Root phase: opens the home without following a link at its last component and checks it.
 * Returns 0 with *ret_fd (or -EBADF when pending/refused, with res filled), <0 on error. */
static int home_open(const UserEntry *e, int *ret_fd, ChildResult *res) {
        _cleanup_free_ char *parent = NULL, *base = NULL;
        _cleanup_close_ int pfd = -EBADF, hfd = -EBADF;
        struct stat st;
        int r;

        r = home_split(e->home, &parent, &base);
        if (r == -EINVAL)
                return result_set(
                        res, USER_LINK_REFUSED, 0,
                        "the home directory \"%s\" is not a usable absolute path", e->home);
        if (r < 0)
                return r;

        /* The path up to the parent is the administrator's (/home may well be a link). */
        pfd = open(parent, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0) {
                if (errno == ENOENT)
                        return result_set(
                                res, USER_LINK_PENDING, 0,
                                "the home directory %s does not exist yet", e->home);
                return result_set(
                        res, USER_LINK_ERROR, -errno, "cannot open %s: %s", parent,
                        strerror(errno));
        }
        if (fstat(pfd, &st) < 0)
                return result_set(
                        res, USER_LINK_ERROR, -errno, "cannot stat %s: %s", parent,
                        strerror(errno));
        if (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
                return result_set(
                        res, USER_LINK_REFUSED, 0,
                        "the home's parent directory %s is not owned by root or is writable by others; a user could swap the home",
                        parent);

        hfd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (hfd < 0) {
                int err = errno;

                if (err == ENOENT)
                        return result_set(
                                res, USER_LINK_PENDING, 0,
                                "the home directory %s does not exist yet", e->home);
                if (err == ENOTDIR || err == ELOOP) {
                        if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                            S_ISLNK(st.st_mode))
                                return result_set(
                                        res, USER_LINK_REFUSED, 0,
                                        "the home directory %s is a symbolic link; refusing to follow it",
                                        e->home);
                        return result_set(
                                res, USER_LINK_REFUSED, 0, "the home %s is not a directory",
                                e->home);
                }
                return result_set(
                        res, USER_LINK_ERROR, -err, "cannot open the home directory %s: %s",
                        e->home, strerror(err));
        }
        if (fstat(hfd, &st) < 0)
                return result_set(
                        res, USER_LINK_ERROR, -errno, "cannot stat %s: %s", e->home,
                        strerror(errno));
        if (st.st_uid != e->uid)
                return result_set(
                        res, USER_LINK_REFUSED, 0,
                        "the home directory %s is owned by uid %u, not by the user", e->home,
                        (unsigned)st.st_uid);
        if ((st.st_mode & S_IWOTH) != 0)
                return result_set(
                        res, USER_LINK_REFUSED, 0, "the home directory %s is world-writable",
                        e->home);
        if ((st.st_mode & S_IWGRP) != 0 && st.st_gid != e->gid)
                return result_set(
                        res, USER_LINK_REFUSED, 0,
                        "the home directory %s is writable by group %u, not the user's own",
                        e->home, (unsigned)st.st_gid);
        *ret_fd = TAKE_FD(hfd);
        return 0;
}

/* Opens name in dirfd as a directory without following a link, creating it with mode if missing.
 * Returns the fd, or -errno (-ELOOP/-ENOTDIR: something else is there). */
static int
open_or_make_dir(int dirfd, const char *name, mode_t mode, int flags, bool *ret_created) {
        int fd;

        if (ret_created)
                *ret_created = false;
        fd = openat(dirfd, name, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
                return fd;
        if (errno != ENOENT)
                return -errno;
        if (mkdirat(dirfd, name, mode) < 0) {
                if (errno != EEXIST)
                        return -errno;
        } else if (ret_created)
                *ret_created = true;
        fd = openat(dirfd, name, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd >= 0 ? fd : -errno;
}

/* Looks in Users/ for an entry equal to name ignoring case but not byte-equal: on the share that
 * entry and name are one folder, which may belong to a user of that name on another VM. Returns 1
 * and copies it into ret, 0 if none, -errno. */
static int users_dir_case_variant(int users_fd, const char *name, char *ret, size_t size) {
        struct dirent *de;
        unsigned seen = 0;
        DIR *d;
        int fd, r = 0;

        fd = openat(users_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        while ((de = readdir(d)) && seen++ < USER_LINK_SCAN_MAX)
                if (strcaseeq(de->d_name, name) && !streq(de->d_name, name)) {
                        (void)snprintf(ret, size, "%s", de->d_name);
                        r = 1;
                        break;
                }
        closedir(d);
        return r;
}

/* Root phase: <mount>/Users/<user>, owned by the user. Returns 0 with *ret_fd, 1 with res filled
 * (conflict or error). */
static int
share_user_dir_open(const UserLinkOptions *o, const UserEntry *e, int *ret_fd, ChildResult *res) {
        _cleanup_close_ int mfd = -EBADF, ufd = -EBADF, dfd = -EBADF;
        char variant[NAME_MAX + 1];
        bool created = false;
        struct stat st;
        int r;

        mfd = open(o->mount_point, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (mfd < 0)
                return result_set(
                        res, USER_LINK_ERROR, -errno, "cannot open the mount point %s: %s",
                        o->mount_point, strerror(errno));
        ufd = open_or_make_dir(mfd, USER_LINK_SHARE_USERS, 0755, O_PATH, NULL);
        if (ufd < 0)
                return result_set(
                        res,
                        ufd == -ELOOP || ufd == -ENOTDIR ? USER_LINK_CONFLICT : USER_LINK_ERROR,
                        ufd == -ELOOP || ufd == -ENOTDIR ? 0 : ufd,
                        "%s/" USER_LINK_SHARE_USERS " on the share is not usable: %s",
                        o->mount_point, strerror(-ufd));
        /* O_RDONLY, not O_PATH: fchown() and fchmod() need a real descriptor. */
        dfd = open_or_make_dir(ufd, e->name, o->directory_mode, O_RDONLY, &created);
        if (dfd == -ELOOP || dfd == -ENOTDIR)
                return result_set(
                        res, USER_LINK_CONFLICT, 0,
                        "the user's folder " USER_LINK_SHARE_USERS
                        "/%s on the share is not a directory; left alone",
                        e->name);
        if (dfd < 0)
                return result_set(
                        res, USER_LINK_ERROR, dfd,
                        "cannot create the user's folder " USER_LINK_SHARE_USERS
                        "/%s on the share: %s",
                        e->name, strerror(-dfd));
        if (fstat(dfd, &st) < 0)
                return result_set(
                        res, USER_LINK_ERROR, -errno,
                        "cannot stat " USER_LINK_SHARE_USERS "/%s: %s", e->name, strerror(errno));
        if (st.st_uid == 0 && e->uid != 0) {
                /* Only root can make an entry in Users/, so a root-owned folder is ours, unless
                 * it is another user's under another case (made on a VM that knows that user). */
                r = users_dir_case_variant(ufd, e->name, variant, sizeof(variant));
                if (r < 0)
                        return result_set(
                                res, USER_LINK_ERROR, r,
                                "cannot read " USER_LINK_SHARE_USERS "/ on the share: %s",
                                strerror(-r));
                if (r > 0) {
                        if (created)
                                (void)unlinkat(ufd, e->name, AT_REMOVEDIR);
                        return result_set(
                                res, USER_LINK_CONFLICT, 0,
                                "the share already has the folder " USER_LINK_SHARE_USERS
                                "/%s, which is the same folder on the case-insensitive share; left alone",
                                variant);
                }
                if (fchown(dfd, e->uid, e->gid) < 0 || fchmod(dfd, o->directory_mode) < 0)
                        return result_set(
                                res, USER_LINK_ERROR, -errno,
                                "cannot hand " USER_LINK_SHARE_USERS
                                "/%s on the share to the user: %s",
                                e->name, strerror(errno));
        } else if (st.st_uid != e->uid)
                return result_set(
                        res, USER_LINK_CONFLICT, 0,
                        "the folder " USER_LINK_SHARE_USERS
                        "/%s on the share belongs to uid %u; left alone",
                        e->name, (unsigned)st.st_uid);
        *ret_fd = TAKE_FD(dfd);
        return 0;
}

static int drop_privileges(const UserEntry *e, const gid_t *groups, size_t n_groups) {
        uid_t ru, eu, su;
        gid_t rg, eg, sg;

        if (setgroups(n_groups, groups) < 0)
                return -errno;
        if (setresgid(e->gid, e->gid, e->gid) < 0)
                return -errno;
        if (setresuid(e->uid, e->uid, e->uid) < 0)
                return -errno;
        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
                return -errno;
        if (ru != e->uid || eu != e->uid || su != e->uid || rg != e->gid || eg != e->gid ||
            sg != e->gid)
                return -EPERM;
        return 0;
}

/* User phase, observation: fills o (link_target points into target_buf). *ret_fd is the deepest
 * directory reached in the home walk (the notebooks directory when complete), *ret_missing the
 * index of the first missing component. */
static int
observe(const UserLinkOptions *opts,
        int home_fd,
        int share_fd,
        UserLinkObservation *o,
        char *target_buf,
        size_t target_size,
        int *ret_fd,
        unsigned *ret_missing) {
        _cleanup_close_ int cur = -EBADF;
        char comp[NAME_MAX + 1];
        const char *p = opts->notebooks_directory;
        unsigned index = 0;
        struct stat st;

        if (fstatat(share_fd, USER_LINK_SHARE_NOTEBOOKS, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return -errno;
                o->share_dir = LINK_NODE_MISSING;
        } else {
                o->share_dir = node_from_mode(st.st_mode);
                o->share_dir_uid = st.st_uid;
        }

        cur = fcntl(home_fd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;
        o->notebooks = LINK_NODE_DIRECTORY;
        for (;;) {
                const char *slash = strchr(p, '/');
                size_t n = slash ? (size_t)(slash - p) : strlen(p);
                int fd;

                memcpy(comp, p, n);
                comp[n] = '\0';
                if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT)
                                return -errno;
                        o->notebooks = LINK_NODE_MISSING;
                        break;
                }
                if (!S_ISDIR(st.st_mode)) {
                        o->notebooks = node_from_mode(st.st_mode);
                        break;
                }
                fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return -errno; /* changed since the stat: the caller retries */
                safe_close(cur);
                cur = fd;
                if (!slash)
                        break;
                p = slash + 1;
                index++;
        }
        *ret_missing = index;

        o->link = LINK_NODE_MISSING;
        o->link_target = NULL;
        if (o->notebooks == LINK_NODE_DIRECTORY) {
                if (fstatat(cur, opts->link_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno != ENOENT)
                                return -errno;
                } else {
                        o->link = node_from_mode(st.st_mode);
                        if (o->link == LINK_NODE_SYMLINK) {
                                ssize_t l = readlinkat(
                                        cur, opts->link_name, target_buf, target_size - 1);

                                if (l < 0)
                                        return -errno;
                                target_buf[l] = '\0';
                                o->link_target = target_buf;
                        }
                }
        }
        *ret_fd = TAKE_FD(cur);
        return 0;
}

/* User phase, doing: every step on a descriptor, nothing by path, nothing followed. */
static int
act(const UserLinkOptions *opts,
    const UserLinkPlan *plan,
    int share_fd,
    int walk_fd,
    unsigned missing,
    const char *target) {
        _cleanup_close_ int cur = -EBADF;

        if (plan->mkdir_share_dir &&
            mkdirat(share_fd, USER_LINK_SHARE_NOTEBOOKS, opts->directory_mode) < 0)
                return -errno;

        if (!plan->mkdir_notebooks && !plan->symlink)
                return 0;
        cur = fcntl(walk_fd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;
        if (plan->mkdir_notebooks) {
                const char *p = opts->notebooks_directory;

                for (unsigned i = 0;; i++) {
                        const char *slash = strchr(p, '/');
                        size_t n = slash ? (size_t)(slash - p) : strlen(p);
                        char comp[NAME_MAX + 1];
                        int fd;

                        if (i >= missing) {
                                memcpy(comp, p, n);
                                comp[n] = '\0';
                                if (mkdirat(cur, comp, opts->directory_mode) < 0)
                                        return -errno;
                                fd = openat(
                                        cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                                if (fd < 0)
                                        return -errno;
                                safe_close(cur);
                                cur = fd;
                        }
                        if (!slash)
                                break;
                        p = slash + 1;
                }
        }
        if (plan->symlink && symlinkat(target, cur, opts->link_name) < 0)
                return -errno;
        return 0;
}

static bool error_is_race(int r) {
        return r == -EEXIST || r == -ENOENT || r == -ELOOP || r == -ENOTDIR;
}

static void child_user_phase(
        const UserLinkOptions *opts,
        int home_fd,
        int share_fd,
        const char *target,
        ChildResult *res) {
        bool changed = false;

        for (unsigned round = 0; round < USER_LINK_RETRIES; round++) {
                _cleanup_close_ int walk_fd = -EBADF;
                char link_target[PATH_MAX];
                UserLinkObservation o = {
                        .uid = geteuid(), .home_exists = true, .expected_target = target};
                UserLinkPlan plan;
                unsigned missing = 0;
                int r;

                r =
                        observe(opts, home_fd, share_fd, &o, link_target, sizeof(link_target),
                                &walk_fd, &missing);
                if (r < 0) {
                        if (error_is_race(r))
                                continue;
                        (void)result_set(
                                res, USER_LINK_ERROR, r,
                                "cannot examine the home or the share folder: %s", strerror(-r));
                        return;
                }
                user_link_plan(&o, &plan);
                r = act(opts, &plan, share_fd, walk_fd, missing, target);
                if (r < 0) {
                        if (error_is_race(r))
                                continue;
                        (void)result_set(
                                res, USER_LINK_ERROR, r,
                                "cannot create the folder or the link as the user: %s",
                                strerror(-r));
                        return;
                }
                if (plan.mkdir_share_dir || plan.mkdir_notebooks || plan.symlink) {
                        /* Look again: report what is there now, not what we meant to make. */
                        changed = true;
                        continue;
                }
                if (plan.state == USER_LINK_OK && changed)
                        plan.state = USER_LINK_CREATED;
                (void)result_set(res, plan.state, 0, "%s", plan.reason);
                return;
        }
        (void)result_set(
                res, USER_LINK_ERROR, -EAGAIN,
                "the home or the share folder kept changing while the link was being made; will retry");
}

static void close_all_but(int keep) {
        if (keep > 3)
                (void)close_range(3, (unsigned)keep - 1, 0);
        (void)close_range((unsigned)keep + 1, ~0U, 0);
}

_noreturn_ static void child_run(
        const UserLinkOptions *opts,
        const UserEntry *e,
        const gid_t *groups,
        size_t n_groups,
        const char *target,
        int result_fd) {
        _cleanup_close_ int home_fd = -EBADF, share_fd = -EBADF;
        ChildResult res = {.state = USER_LINK_ERROR};
        bool pending = false;
        int r;

        close_all_but(result_fd);
        (void)umask(0);

        /* Root phase: the home is checked first, so that a hostile home gets nothing. */
        r = home_open(e, &home_fd, &res);
        if (r < 0) {
                (void)result_set(
                        &res, USER_LINK_ERROR, r, "cannot open the home: %s", strerror(-r));
                goto finish;
        }
        if (r > 0 && res.state != USER_LINK_PENDING)
                goto finish;
        pending = r > 0;
        r = share_user_dir_open(opts, e, &share_fd, &res);
        if (r != 0)
                goto finish;

        /* User phase. */
        r = drop_privileges(e, groups, n_groups);
        if (r < 0) {
                (void)result_set(
                        &res, USER_LINK_ERROR, r, "cannot take the user's identity: %s",
                        strerror(-r));
                goto finish;
        }
        if (pending) {
                /* Pending: the share folder can still be made, as the user. */
                UserLinkObservation o = {.uid = e->uid, .home_exists = false};
                UserLinkPlan plan;
                struct stat st;

                if (fstatat(share_fd, USER_LINK_SHARE_NOTEBOOKS, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        o.share_dir = LINK_NODE_MISSING;
                else {
                        o.share_dir = node_from_mode(st.st_mode);
                        o.share_dir_uid = st.st_uid;
                }
                user_link_plan(&o, &plan);
                if (plan.mkdir_share_dir)
                        (void)mkdirat(share_fd, USER_LINK_SHARE_NOTEBOOKS, opts->directory_mode);
                if (plan.state == USER_LINK_CONFLICT)
                        (void)result_set(&res, plan.state, 0, "%s", plan.reason);
                else
                        (void)result_set(
                                &res, USER_LINK_PENDING, 0,
                                "the home directory %s does not exist yet", e->home);
                goto finish;
        }
        child_user_phase(opts, home_fd, share_fd, target, &res);

finish:
        (void)!write(result_fd, &res, sizeof(res));
        _exit(0);
}

/* ---- the parent side ----------------------------------------------------------------------------
 */

static int64_t now_msec(void) {
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one ChildResult with a deadline. Returns 1 if complete, 0 on EOF/short, -ETIMEDOUT. */
static int read_result(int fd, ChildResult *res, uint64_t timeout_usec) {
        int64_t deadline = now_msec() + (int64_t)(timeout_usec / 1000);
        size_t got = 0;

        while (got < sizeof(*res)) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int64_t left = deadline - now_msec();
                ssize_t n;
                int k;

                if (left <= 0)
                        return -ETIMEDOUT;
                k = poll(&pfd, 1, (int)MIN(left, (int64_t)INT32_MAX));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ETIMEDOUT;
                n = read(fd, (char *)res + got, sizeof(*res) - got);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return 0;
                got += (size_t)n;
        }
        return 1;
}

static int
report_set_detail(UserLinkReport *rep, UserLinkState state, int error, const char *detail) {
        rep->state = state;
        rep->error = error;
        free(rep->detail);
        rep->detail = strdup(detail);
        return rep->detail ? 0 : -ENOMEM;
}

int user_link_apply(const UserLinkOptions *o, const UserEntry *e, UserLinkReport *ret) {
        _cleanup_(user_link_report_done) UserLinkReport rep = {};
        _cleanup_free_ gid_t *groups = NULL;
        _cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
        ChildResult res = {};
        const char *reason;
        size_t n_groups = 0;
        int fds[2], status = 0, r;
        pid_t pid;

        assert(o);
        assert(e);
        assert(ret);

        if (!user_link_options_valid(o, &reason))
                return -EINVAL;
        rep.uid = e->uid;
        rep.user = strdup(e->name);
        if (!rep.user)
                return -ENOMEM;
        if (user_link_target(o, e->name, &rep.target) < 0)
                return -ENOMEM;
        if (e->home && e->home[0] == '/' && link_path(o, e->home, &rep.link) < 0)
                return -ENOMEM;

        if (e->verdict != USER_VERDICT_ELIGIBLE) {
                r = report_set_detail(
                        &rep, USER_LINK_REFUSED, 0,
                        e->detail ? e->detail : user_verdict_to_string(e->verdict));
                if (r < 0)
                        return r;
                *ret = rep;
                rep = (UserLinkReport){};
                return 0;
        }

        r = user_get_groups(e->name, e->gid, &groups, &n_groups);
        if (r < 0) {
                char detail[USER_LINK_DETAIL_MAX];

                (void)snprintf(
                        detail, sizeof(detail), "cannot look up the user's groups: %s",
                        strerror(-r));
                if (report_set_detail(&rep, USER_LINK_ERROR, r, detail) < 0)
                        return -ENOMEM;
                *ret = rep;
                rep = (UserLinkReport){};
                return 0;
        }

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        rfd = fds[0];
        wfd = fds[1];
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                child_run(o, e, groups, n_groups, rep.target, wfd);
        wfd = safe_close(wfd);

        r = read_result(
                rfd, &res, o->timeout_usec > 0 ? o->timeout_usec : USER_LINK_TIMEOUT_USEC_DEFAULT);
        if (r == -ETIMEDOUT)
                (void)kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        break;

        if (r == 1) {
                res.detail[sizeof(res.detail) - 1] = '\0';
                if (res.state < 0 || res.state >= _USER_LINK_STATE_MAX)
                        r = report_set_detail(
                                &rep, USER_LINK_ERROR, -EPROTO, "the worker sent a bad result");
                else
                        r = report_set_detail(
                                &rep, res.state, res.state == USER_LINK_ERROR ? res.error : 0,
                                res.detail);
        } else {
                char detail[USER_LINK_DETAIL_MAX];

                if (r == -ETIMEDOUT)
                        (void)snprintf(
                                detail, sizeof(detail),
                                "the worker did not finish within %llu ms (hung mount?); killed",
                                (unsigned long long)((o->timeout_usec > 0 ? o->timeout_usec : USER_LINK_TIMEOUT_USEC_DEFAULT) / 1000));
                else if (WIFSIGNALED(status))
                        (void)snprintf(
                                detail, sizeof(detail), "the worker was killed by signal %d",
                                WTERMSIG(status));
                else
                        (void)snprintf(
                                detail, sizeof(detail), "the worker exited without a result");
                r = report_set_detail(&rep, USER_LINK_ERROR, r < 0 ? r : -EPROTO, detail);
        }
        if (r < 0)
                return r;
        *ret = rep;
        rep = (UserLinkReport){};
        return 0;
}

int user_links_apply_all(
        const UserLinkOptions *o, const UserSet *s, UserLinkReport **ret, size_t *ret_n) {
        UserLinkReport *reports;
        int r;

        assert(o);
        assert(s);
        assert(ret);
        assert(ret_n);

        reports = calloc(MAX(s->n, (size_t)1), sizeof(UserLinkReport));
        if (!reports)
                return -ENOMEM;
        for (size_t i = 0; i < s->n; i++) {
                r = user_link_apply(o, &s->entries[i], &reports[i]);
                if (r < 0) {
                        user_link_reports_free(reports, i);
                        return r;
                }
        }
        *ret = reports;
        *ret_n = s->n;
        return 0;
}
