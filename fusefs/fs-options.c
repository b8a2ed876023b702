/* SPDX-License-Identifier: MIT */
#include "fs-options.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "base64-util.h"
#include "http-client.h"
#include "macro.h"

#define CREDENTIALS_FILE_MAX (64u * 1024u)

_printf_(2, 3) static int fail(char **reterr_msg, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        if (reterr_msg) {
                free(*reterr_msg);
                *reterr_msg = m;
        } else
                free(m);
        return -EINVAL;
}

void fs_options_init(FsOptions *o) {
        *o = (FsOptions){
                .uid = getuid(),
                .gid = getgid(),
                .file_mode = 0644,
                .dir_mode = 0755,
                .users_mode = 0700,
                .cache_size = UINT64_C(10) << 30,
                .max_dirty = UINT64_C(1) << 30,
                .async_delay_ms = 5000,
                .attr_timeout = 1.0,
                .entry_timeout = 1.0,
                .dir_timeout = 1.0,
                .retry_budget_ms = 90000,
                .max_requests = 16,
                .transfer_threads = 2,
        };
}

void fs_options_done(FsOptions *o) {
        free(o->source);
        free(o->mountpoint);
        free(o->endpoint);
        free(o->account);
        free(o->share);
        free(o->subdir);
        free(o->credentials);
        free(o->users_dir);
        free(o->cache_dir);
        free(o->imds);
        free(o->fuse_opts);
        *o = (FsOptions){};
}

static int set_str(char **dst, const char *v) {
        char *s = strdup(v);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

static int parse_u64(const char *v, uint64_t *ret) {
        char *end;
        unsigned long long x;

        if (isempty(v) || v[0] == '-')
                return -EINVAL;
        errno = 0;
        x = strtoull(v, &end, 10);
        if (errno != 0 || end == v)
                return -EINVAL;
        /* Size suffixes, binary. */
        if (*end != '\0') {
                unsigned shift;
                switch (*end) {
                case 'K':
                case 'k':
                        shift = 10;
                        break;
                case 'M':
                        shift = 20;
                        break;
                case 'G':
                        shift = 30;
                        break;
                case 'T':
                        shift = 40;
                        break;
                default:
                        return -EINVAL;
                }
                if (end[1] != '\0' || x > (UINT64_MAX >> shift))
                        return -EINVAL;
                x <<= shift;
        }
        *ret = x;
        return 0;
}

static int parse_mode(const char *v, mode_t *ret) {
        char *end;
        unsigned long x;

        if (isempty(v))
                return -EINVAL;
        errno = 0;
        x = strtoul(v, &end, 8);
        if (errno != 0 || *end != '\0' || x > 07777 || (x & (S_ISUID | S_ISGID)))
                return -EINVAL; /* setuid and setgid are never kept (fs-internal.h) */
        *ret = (mode_t)x;
        return 0;
}

static int parse_seconds(const char *v, double *ret) {
        char *end;
        double x;

        if (isempty(v))
                return -EINVAL;
        errno = 0;
        x = strtod(v, &end);
        if (errno != 0 || *end != '\0' || !(x >= 0) || x > 86400)
                return -EINVAL;
        *ret = x;
        return 0;
}

static int parse_id(const char *v, unsigned *ret) {
        uint64_t x;
        if (parse_u64(v, &x) < 0 || x >= UINT32_MAX)
                return -EINVAL;
        *ret = (unsigned)x;
        return 0;
}

/* Options mount(8), fstab and systemd add for themselves: never for the filesystem. */
static bool is_ignored_option(const char *opt) {
        static const char *const ignored[] = {"defaults", "auto",  "noauto", "_netdev",
                                              "nofail",   "user",  "users",  "nouser",
                                              "owner",    "group", "nogroup"};
        for (size_t i = 0; i < ELEMENTSOF(ignored); i++)
                if (streq(opt, ignored[i]))
                        return true;
        return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* Generic mount options that libfuse understands. */
static bool is_fuse_option(const char *opt) {
        static const char *const plain[] = {
                "rw",           "ro",         "nosuid",      "suid",       "nodev",
                "dev",          "noexec",     "exec",        "async",      "sync",
                "dirsync",      "atime",      "noatime",     "relatime",   "norelatime",
                "strictatime",  "nodiratime", "allow_other", "allow_root", "default_permissions",
                "auto_unmount", "lazytime",   "nolazytime"};
        static const char *const keyed[] = {"fsname=", "subtype=", "max_read=", "blkdev"};
        for (size_t i = 0; i < ELEMENTSOF(plain); i++)
                if (streq(opt, plain[i]))
                        return true;
        for (size_t i = 0; i < ELEMENTSOF(keyed); i++)
                if (strncmp(opt, keyed[i], strlen(keyed[i])) == 0)
                        return true;
        return false;
}

static int append_fuse_opt(FsOptions *o, const char *opt) {
        char *s;
        if (o->fuse_opts) {
                if (asprintf(&s, "%s,%s", o->fuse_opts, opt) < 0)
                        return -ENOMEM;
        } else if (!(s = strdup(opt)))
                return -ENOMEM;
        free(o->fuse_opts);
        o->fuse_opts = s;
        return 0;
}

int fs_options_apply(FsOptions *o, const char *opt, char **reterr_msg) {
        const char *eq = strchr(opt, '=');
        _cleanup_free_ char *key = eq ? strndup(opt, (size_t)(eq - opt)) : strdup(opt);
        const char *v = eq ? eq + 1 : NULL;
        unsigned id;
        int r = 0;

        if (!key)
                return -ENOMEM;
        if (is_ignored_option(opt))
                return 2;
        if (is_fuse_option(opt)) {
                r = append_fuse_opt(o, opt);
                return r < 0 ? r : 0;
        }
        if (!v)
                return fail(reterr_msg, "Unknown option '%s'", opt);

        if (streq(key, "credentials"))
                r = isempty(v) ? -EINVAL : set_str(&o->credentials, v);
        else if (streq(key, "uid")) {
                if ((r = parse_id(v, &id)) >= 0)
                        o->uid = id;
        } else if (streq(key, "gid")) {
                if ((r = parse_id(v, &id)) >= 0)
                        o->gid = id;
        } else if (streq(key, "file_mode"))
                r = parse_mode(v, &o->file_mode);
        else if (streq(key, "dir_mode"))
                r = parse_mode(v, &o->dir_mode);
        else if (streq(key, "users_dir"))
                r = strchr(v, '/') ? -EINVAL : set_str(&o->users_dir, v);
        else if (streq(key, "users_mode"))
                r = parse_mode(v, &o->users_mode);
        else if (streq(key, "cache_dir"))
                r = v[0] != '/' ? -EINVAL : set_str(&o->cache_dir, v);
        else if (streq(key, "cache_size"))
                r = parse_u64(v, &o->cache_size);
        else if (streq(key, "max_dirty")) {
                r = parse_u64(v, &o->max_dirty);
                if (r >= 0 && o->max_dirty < FS_PIECE_SIZE)
                        r = -EINVAL;
        } else if (streq(key, "writeback")) {
                if (streq(v, "sync"))
                        o->writeback_async = false;
                else if (streq(v, "async"))
                        o->writeback_async = true;
                else
                        r = -EINVAL;
        } else if (streq(key, "async_delay")) {
                double s;
                if ((r = parse_seconds(v, &s)) >= 0)
                        o->async_delay_ms = (uint64_t)(s * 1000);
        } else if (streq(key, "attr_timeout"))
                r = parse_seconds(v, &o->attr_timeout);
        else if (streq(key, "entry_timeout"))
                r = parse_seconds(v, &o->entry_timeout);
        else if (streq(key, "dir_timeout"))
                r = parse_seconds(v, &o->dir_timeout);
        else if (streq(key, "imds"))
                r = (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
                            ? -EINVAL
                            : set_str(&o->imds, v);
        else if (streq(key, "retry_budget")) {
                double s;
                if ((r = parse_seconds(v, &s)) >= 0 && s < 1)
                        r = -EINVAL;
                if (r >= 0)
                        o->retry_budget_ms = (uint64_t)(s * 1000);
        } else if (streq(key, "retry_delay")) {
                double s;
                if ((r = parse_seconds(v, &s)) >= 0 && (s < 0.001 || s > 60))
                        r = -EINVAL;
                if (r >= 0)
                        o->retry_delay_ms = (uint64_t)(s * 1000);
        } else if (streq(key, "max_requests")) {
                r = parse_id(v, &id);
                if (r >= 0 && (id < 1 || id > 256))
                        r = -EINVAL;
                if (r >= 0)
                        o->max_requests = id;
        } else if (streq(key, "transfer_threads")) {
                r = parse_id(v, &id);
                if (r >= 0 && id > HTTP_TRANSFER_THREADS_MAX)
                        r = -EINVAL;
                if (r >= 0)
                        o->transfer_threads = id;
        } else
                return fail(reterr_msg, "Unknown option '%s'", key);

        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(reterr_msg, "Invalid value for option %s: '%s'", key, v);
        return 1;
}

static int apply_option_list(FsOptions *o, const char *list, char **reterr_msg) {
        _cleanup_free_ char *copy = strdup(list);
        char *p, *opt;
        int r;

        if (!copy)
                return -ENOMEM;
        p = copy;
        while ((opt = strsep(&p, ","))) {
                if (opt[0] == '\0')
                        continue;
                r = fs_options_apply(o, opt, reterr_msg);
                if (r < 0)
                        return r;
        }
        return 0;
}

int fs_parse_source(FsOptions *o, const char *source, char **reterr_msg) {
        const char *rest, *host_end, *host;
        _cleanup_free_ char *scheme_host = NULL, *p = NULL;
        char *seg[3] = {}, *cursor;
        size_t n = 0;
        bool host_style;

        if (strncmp(source, "https://", 8) == 0)
                host = source + 8;
        else if (strncmp(source, "http://", 7) == 0)
                host = source + 7;
        else
                return fail(reterr_msg, "SOURCE '%s' must start with https:// or http://", source);
        host_end = strchr(host, '/');
        if (!host_end || host_end == host)
                return fail(reterr_msg, "SOURCE '%s' names no share", source);
        if (strpbrk(source, "?#@ "))
                return fail(
                        reterr_msg, "SOURCE '%s' must not contain '?', '#', '@' or spaces", source);
        scheme_host = strndup(source, (size_t)(host_end - source));
        rest = host_end + 1;
        p = strdup(rest);
        if (!scheme_host || !p)
                return -ENOMEM;
        /* Strip trailing slashes. */
        for (size_t l = strlen(p); l > 0 && p[l - 1] == '/'; l--)
                p[l - 1] = '\0';

        host_style = strstr(scheme_host, ".file.") != NULL;
        cursor = p;
        /* account (path-style only), share, then the rest is the directory. */
        while (n < (host_style ? 1u : 2u)) {
                char *s = strsep(&cursor, "/");
                if (!s || s[0] == '\0')
                        return fail(
                                reterr_msg, "SOURCE '%s': expected %s", source,
                                host_style ? "https://ACCOUNT.file.core.windows.net/SHARE[/DIR]"
                                           : "http://HOST:PORT/ACCOUNT/SHARE[/DIR]");
                seg[n++] = s;
        }
        if (cursor && (strstr(cursor, "//") || cursor[0] == '/' || streq(cursor, ".") ||
                       strstr(cursor, "/./") || strstr(cursor, "..")))
                return fail(reterr_msg, "SOURCE '%s': bad directory part", source);

        free(o->endpoint);
        free(o->account);
        free(o->share);
        free(o->subdir);
        o->endpoint = o->account = o->share = o->subdir = NULL;
        if (host_style) {
                const char *dot = strchr(host, '.');
                o->endpoint = TAKE_PTR(scheme_host);
                o->account = strndup(host, (size_t)(dot - host));
                o->share = strdup(seg[0]);
        } else {
                if (asprintf(&o->endpoint, "%s/%s", scheme_host, seg[0]) < 0)
                        o->endpoint = NULL;
                o->account = strdup(seg[0]);
                o->share = strdup(seg[1]);
        }
        o->subdir = strdup(cursor ? cursor : "");
        if (!o->endpoint || !o->account || !o->share || !o->subdir)
                return -ENOMEM;
        if (o->account[0] == '\0')
                return fail(reterr_msg, "SOURCE '%s' names no account", source);
        return 0;
}

int fs_options_parse(FsOptions *o, int argc, char *const *argv, char **reterr_msg) {
        const char *positional[2] = {};
        size_t n_pos = 0;
        int r;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (streq(a, "-h") || streq(a, "--help"))
                        o->help = true;
                else if (streq(a, "-V") || streq(a, "--version"))
                        o->version = true;
                else if (streq(a, "-f"))
                        o->foreground = true;
                else if (streq(a, "-d") || streq(a, "--debug"))
                        o->debug = o->foreground = true;
                else if (streq(a, "-s"))
                        continue; /* single-threaded: accepted from mount helpers, ignored */
                else if (streq(a, "-o") || strncmp(a, "-o", 2) == 0) {
                        const char *list = a[2] ? a + 2 : NULL;
                        if (!list) {
                                if (i + 1 >= argc)
                                        return fail(reterr_msg, "Option -o needs a value");
                                list = argv[++i];
                        }
                        r = apply_option_list(o, list, reterr_msg);
                        if (r < 0)
                                return r;
                } else if (a[0] == '-' && a[1] != '\0')
                        return fail(reterr_msg, "Unknown argument '%s'", a);
                else if (n_pos < 2)
                        positional[n_pos++] = a;
                else
                        return fail(reterr_msg, "Too many arguments ('%s')", a);
        }
        if (o->help || o->version)
                return 0;
        if (n_pos != 2)
                return fail(reterr_msg, "Expected SOURCE and MOUNTPOINT");
        if ((r = set_str(&o->source, positional[0])) < 0 ||
            (r = set_str(&o->mountpoint, positional[1])) < 0)
                return r;
        r = fs_parse_source(o, o->source, reterr_msg);
        if (r < 0)
                return r;
        if (!o->credentials)
                return fail(reterr_msg, "Missing -o credentials=FILE");
        if (!o->users_dir && (r = set_str(&o->users_dir, FS_DEFAULT_USERS_DIR)) < 0)
                return r;
        if (!o->cache_dir && (r = set_str(&o->cache_dir, FS_DEFAULT_CACHE_DIR)) < 0)
                return r;
        return 0;
}

typedef struct CredParse {
        FsCredentials *c;
        bool has_key, has_sas, has_mi;
        char *err;
        const char *path;
} CredParse;

static bool looks_like_key_name(const char *s) {
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        return n <= 32 && s[n] == '\0';
}

static int cred_handler(void *userdata, const char *section, const char *name, const char *value) {
        CredParse *p = userdata;
        int r;

        if (!strcaseeq(section, "storage")) {
                (void)fail(&p->err, "%s: unknown section [%s]", p->path, section);
                return 0;
        }
        if (streq(name, "account_key")) {
                if (p->has_key)
                        goto dup;
                p->has_key = true;
                r = base64_decode(value, &p->c->key, &p->c->key_size);
                if (r < 0 || p->c->key_size == 0) {
                        (void)fail(&p->err, "%s: account_key is not valid base64", p->path);
                        return 0;
                }
        } else if (streq(name, "sas_token")) {
                /* A token longer than a line of the INI reader goes on over further lines (an
                 * indented continuation, or sas_token again): the parts are joined. */
                char *joined;
                if (!p->has_sas && !isempty(value) && value[0] == '?')
                        value++;
                if (isempty(value)) {
                        (void)fail(&p->err, "%s: sas_token is empty", p->path);
                        return 0;
                }
                if (asprintf(&joined, "%s%s", p->c->sas_token ? p->c->sas_token : "", value) < 0)
                        return 0;
                if (p->c->sas_token)
                        explicit_bzero(p->c->sas_token, strlen(p->c->sas_token));
                free(p->c->sas_token);
                p->c->sas_token = joined;
                p->has_sas = true;
        } else if (streq(name, "managed_identity")) {
                if (p->has_mi)
                        goto dup;
                if (strcaseeq(value, "yes") || strcaseeq(value, "true") || streq(value, "1"))
                        p->has_mi = true;
                else if (!(strcaseeq(value, "no") || strcaseeq(value, "false") ||
                           streq(value, "0"))) {
                        (void)fail(&p->err, "%s: managed_identity must be yes or no", p->path);
                        return 0;
                }
        } else if (streq(name, "client_id")) {
                free(p->c->client_id);
                if (!(p->c->client_id = strdup(value)))
                        return 0;
        } else {
                /* A secret pasted without its name (or its "=") arrives as a name. */
                bool show = looks_like_key_name(name);
                (void)fail(
                        &p->err, "%s: unknown key %s%s%s in [storage]", p->path, show ? "'" : "",
                        show ? name : "(not shown: it may be a secret)", show ? "'" : "");
                return 0;
        }
        return 1;
dup:
        (void)fail(&p->err, "%s: key '%s' given twice", p->path, name);
        return 0;
}

int fs_credentials_parse(
        const char *path,
        const char *text,
        uid_t st_uid,
        mode_t st_mode,
        uid_t caller,
        FsCredentials *ret,
        char **reterr_msg) {
        FsCredentials c = {};
        CredParse p = {.c = &c, .path = path};
        unsigned line = 0;
        int r, n;

        if (st_uid != 0 && st_uid != caller)
                return fail(
                        reterr_msg,
                        "Credentials file %s must be owned by root or uid %u (it is owned by uid %u)",
                        path, (unsigned)caller, (unsigned)st_uid);
        if (st_mode & 077)
                return fail(
                        reterr_msg,
                        "Credentials file %s must not be accessible by group or others (mode %04o; chmod 600 it)",
                        path, (unsigned)(st_mode & 07777));
        /* libinih reads at most INI_MAX_LINE - 1 bytes of a line and takes the rest for a line
         * of its own: say so instead of a "syntax error" further down. */
        for (const char *l = text; *l;) {
                size_t len = strcspn(l, "\n");
                line++;
                if (len > INI_MAX_LINE - 2)
                        return fail(
                                reterr_msg,
                                "%s:%u: line longer than %d bytes, the most the INI reader takes "
                                "(a long sas_token may go on over further lines, indented)",
                                path, line, INI_MAX_LINE - 2);
                l += len + (l[len] == '\n');
        }
        r = ini_parse_string(text, cred_handler, &p);
        if (r != 0) {
                fs_credentials_done(&c);
                if (p.err) {
                        free(*reterr_msg);
                        *reterr_msg = p.err;
                        return -EINVAL;
                }
                return fail(reterr_msg, "%s:%d: syntax error", path, r);
        }
        n = (int)p.has_key + (int)p.has_sas + (int)p.has_mi;
        if (n != 1) {
                fs_credentials_done(&c);
                return fail(
                        reterr_msg,
                        "%s: [storage] must hold exactly one of account_key, sas_token, managed_identity = yes",
                        path);
        }
        if (c.client_id && !p.has_mi) {
                fs_credentials_done(&c);
                return fail(reterr_msg, "%s: client_id needs managed_identity = yes", path);
        }
        c.auth = p.has_key ? REST_AUTH_SHARED_KEY : p.has_sas ? REST_AUTH_SAS : REST_AUTH_BEARER;
        *ret = c;
        return 0;
}

int fs_credentials_load(const char *path, FsCredentials *ret, char **reterr_msg) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        /* O_NONBLOCK: a FIFO in its place must not hang the mount (refused below). */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ELOOP)
                return fail(
                        reterr_msg,
                        "Credentials file %s is a symbolic link (not followed: name the "
                        "file itself)",
                        path);
        if (fd < 0) {
                r = -errno;
                (void)fail(reterr_msg, "Cannot open credentials file %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                (void)fail(reterr_msg, "Cannot stat credentials file %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode))
                return fail(reterr_msg, "Credentials file %s is not a regular file", path);
        if ((uint64_t)st.st_size > CREDENTIALS_FILE_MAX)
                return fail(reterr_msg, "Credentials file %s is too large", path);
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (len < (size_t)st.st_size) {
                ssize_t k = read(fd, buf + len, (size_t)st.st_size - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        buf[len] = '\0';
        r = fs_credentials_parse(path, buf, st.st_uid, st.st_mode, getuid(), ret, reterr_msg);
        explicit_bzero(buf, len);
        return r;
}

void fs_credentials_done(FsCredentials *c) {
        if (c->key)
                explicit_bzero(c->key, c->key_size);
        free(c->key);
        if (c->sas_token)
                explicit_bzero(c->sas_token, strlen(c->sas_token));
        free(c->sas_token);
        free(c->client_id);
        *c = (FsCredentials){};
}
