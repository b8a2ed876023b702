/* SPDX-License-Identifier: MIT */
#include "conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>

#include <ini.h>

#include "log.h"
#include "strv.h"

/* ---- error collection ---------------------------------------------------------------------- */

#define CONF_ERROR_TEXT_MAX (CONF_ERRORS_MAX * 256U)

typedef struct ConfErrors {
        char *text; /* newline-separated "FILE:LINE: message" */
        size_t len;
        unsigned n;
        bool oom;
} ConfErrors;

_printf_(2, 3) static void conf_errors_add(ConfErrors *e, const char *format, ...) {
        char line[512];
        va_list ap;
        size_t l;
        char *p;

        e->n++;
        if (e->n > CONF_ERRORS_MAX)
                return; /* the count still grows; see conf_errors_finish() */
        va_start(ap, format);
        (void)vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        l = strlen(line);
        p = realloc(e->text, e->len + l + 2);
        if (!p) {
                e->oom = true;
                return;
        }
        e->text = p;
        if (e->len > 0)
                e->text[e->len++] = '\n';
        memcpy(e->text + e->len, line, l + 1);
        e->len += l;
}

/* Hands the collected text to *reterr (if given) and returns 0, -EINVAL or -ENOMEM. */
static int conf_errors_finish(ConfErrors *e, char **reterr) {
        int r = e->oom ? -ENOMEM : e->n > 0 ? -EINVAL : 0;

        if (e->n > CONF_ERRORS_MAX) {
                unsigned more = e->n - CONF_ERRORS_MAX;
                e->n = CONF_ERRORS_MAX - 1; /* let the summary line through */
                conf_errors_add(e, "(%u more errors not shown)", more);
        }
        if (reterr && e->text) {
                free(*reterr);
                *reterr = TAKE_PTR(e->text);
        }
        free(e->text);
        *e = (ConfErrors){};
        return r;
}

/* ---- value parsers -------------------------------------------------------------------------- */

int conf_parse_bool(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        static const char *const yes[] = {"1", "yes", "true", "on"};
        static const char *const no[] = {"0", "no", "false", "off"};

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcaseeq(value, yes[i])) {
                        *(bool *)ret = true;
                        return 0;
                }
                if (strcaseeq(value, no[i])) {
                        *(bool *)ret = false;
                        return 0;
                }
        }
        *reterr_reason = "expected a boolean (yes/no, true/false, on/off, 1/0)";
        return -EINVAL;
}

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static int parse_u64(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        *ret = v;
        return 0;
}

static int check_range(uint64_t v, const ConfRange *range, const char **reterr_reason) {
        if (range && (v < range->min || v > range->max)) {
                *reterr_reason = "value out of range";
                return -ERANGE;
        }
        return 0;
}

int conf_parse_uint(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        uint64_t v;
        int r;

        r = parse_u64(value, strlen(value), &v);
        if (r < 0) {
                *reterr_reason =
                        r == -ERANGE ? "number too large" : "expected an unsigned decimal number";
                return r;
        }
        r = check_range(v, arg, reterr_reason);
        if (r < 0)
                return r;
        *(uint64_t *)ret = v;
        return 0;
}

/* Parses "<number><unit>" sequences ("1min 30s", "10G") with the given unit table; the first
 * unit, "", applies to a bare number. */
typedef struct ConfUnit {
        const char *suffix;
        uint64_t factor;
} ConfUnit;

static int parse_with_units(
        const char *value,
        const ConfUnit *units,
        size_t n_units,
        bool allow_sequence,
        uint64_t *ret) {
        const char *p = value;
        uint64_t total = 0;
        unsigned parts = 0;

        for (;;) {
                size_t nd = 0, nu = 0;
                const ConfUnit *unit = NULL;
                uint64_t v;
                int r;

                while (*p == ' ' || *p == '\t')
                        p++;
                if (*p == '\0')
                        break;
                if (parts > 0 && !allow_sequence)
                        return -EINVAL;
                while (p[nd] >= '0' && p[nd] <= '9')
                        nd++;
                while (isalpha((unsigned char)p[nd + nu]))
                        nu++;
                r = parse_u64(p, nd, &v);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n_units; i++)
                        if (strlen(units[i].suffix) == nu &&
                            strncmp(units[i].suffix, p + nd, nu) == 0)
                                unit = &units[i];
                if (!unit)
                        return -EINVAL;
                if (v > UINT64_MAX / unit->factor || total > UINT64_MAX - v * unit->factor)
                        return -ERANGE;
                total += v * unit->factor;
                p += nd + nu;
                parts++;
        }
        if (parts == 0)
                return -EINVAL;
        *ret = total;
        return 0;
}

int conf_parse_size(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        static const ConfUnit units[] = {
                {"", 1},
                {"B", 1},
                {"K", UINT64_C(1) << 10},
                {"M", UINT64_C(1) << 20},
                {"G", UINT64_C(1) << 30},
                {"T", UINT64_C(1) << 40},
        };
        uint64_t v;
        int r;

        r = parse_with_units(value, units, ELEMENTSOF(units), false, &v);
        if (r < 0) {
                *reterr_reason =
                        r == -ERANGE
                                ? "size too large"
                                : "expected a size such as 512M or 5G (units B, K, M, G, T; powers of 1024)";
                return r;
        }
        r = check_range(v, arg, reterr_reason);
        if (r < 0)
                return r;
        *(uint64_t *)ret = v;
        return 0;
}

int conf_parse_duration(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        static const ConfUnit units[] = {
                {"", USEC_PER_SEC},
                {"us", 1},
                {"ms", 1000},
                {"s", USEC_PER_SEC},
                {"sec", USEC_PER_SEC},
                {"m", 60 * USEC_PER_SEC},
                {"min", 60 * USEC_PER_SEC},
                {"h", 3600 * USEC_PER_SEC},
                {"d", 86400 * USEC_PER_SEC},
        };
        uint64_t v;
        int r;

        r = parse_with_units(value, units, ELEMENTSOF(units), true, &v);
        if (r < 0) {
                *reterr_reason =
                        r == -ERANGE
                                ? "duration too long"
                                : "expected a duration such as 30s, 5min or 1min 30s (units us, ms, s, min, h, d; a bare number is seconds)";
                return r;
        }
        r = check_range(v, arg, reterr_reason);
        if (r < 0)
                return r;
        *(uint64_t *)ret = v;
        return 0;
}

static bool has_control_chars(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

/* No "." or ".." components, no empty components ("//"), no trailing slash. */
static bool path_is_normalized(const char *p) {
        const char *c = p;

        while (*c == '/')
                c++;
        if (c != p && c - p > 1)
                return false;
        while (*c) {
                size_t n = strcspn(c, "/");
                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                c += n;
                if (*c == '/') {
                        c++;
                        if (*c == '\0')
                                return false;
                }
        }
        return true;
}

static int set_string(void *ret, const char *value) {
        char **p = ret;
        char *copy = NULL;

        if (!isempty(value)) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*p);
        *p = copy;
        return 0;
}

int conf_parse_path(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] != '/' || value[1] == '\0' || strlen(value) >= PATH_MAX ||
            has_control_chars(value) || !path_is_normalized(value)) {
                *reterr_reason =
                        "expected a normalized absolute path (not \"/\", no \".\" or \"..\" components, no \"//\", no trailing \"/\")";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_path_or_empty(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] == '\0')
                return set_string(ret, NULL);
        return conf_parse_path(value, ret, arg, reterr_reason);
}

int conf_parse_disk_path(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (streq(value, "/"))
                return set_string(ret, value);
        return conf_parse_path_or_empty(value, ret, arg, reterr_reason);
}

int conf_parse_cleanup_age(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        static const ConfRange range = {60 * USEC_PER_SEC, 3650 * 86400 * USEC_PER_SEC};
        const char *colon = strchr(value, ':'), *span = colon ? colon + 1 : value;
        size_t n_by = colon ? (size_t)(colon - value) : 0;
        char buf[64];
        uint64_t usec;
        int r;

        if (value[0] == '\0')
                return set_string(ret, NULL);
        if (colon && (n_by == 0 || n_by > 8 || strspn(value, "aAbBcCmM") != n_by)) {
                *reterr_reason =
                        "expected an age such as 30d, optionally after the timestamps to look at and a colon (letters of aAbBcCmM, as in tmpfiles.d(5), e.g. amAM:30d)";
                return -EINVAL;
        }
        r = conf_parse_duration(span, &usec, &range, reterr_reason);
        if (r < 0)
                return r;
        (void)snprintf(
                buf, sizeof(buf), "%.*s%s%" PRIu64 "s", (int)n_by, value, colon ? ":" : "",
                usec / USEC_PER_SEC);
        return set_string(ret, buf);
}

int conf_parse_command(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] == '\0')
                return set_string(ret, NULL);
        if (has_control_chars(value) || strlen(value) > 4096) {
                *reterr_reason = "expected a command line without control characters";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_relative_path(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] == '\0' || value[0] == '/' || strlen(value) >= PATH_MAX ||
            has_control_chars(value) || !path_is_normalized(value)) {
                *reterr_reason = "expected a relative path without \".\" or \"..\" components";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_filename(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] == '\0' || strchr(value, '/') || streq(value, ".") || streq(value, "..") ||
            strlen(value) > NAME_MAX || has_control_chars(value)) {
                *reterr_reason = "expected a file name (one path component, no \"/\")";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_url(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        const char *host = NULL;

        if (value[0] == '\0')
                return set_string(ret, NULL);
        if (strncmp(value, "https://", 8) == 0)
                host = value + 8;
        else if (strncmp(value, "http://", 7) == 0)
                host = value + 7;
        if (!host || host[0] == '\0' || host[0] == '/' || strpbrk(value, " \t\"<>\\^`{|}") ||
            has_control_chars(value) || strlen(value) > 2048) {
                *reterr_reason =
                        "expected an http:// or https:// URL such as https://ACCOUNT.file.core.windows.net/SHARE";
                return -EINVAL;
        }
        if (!strchr(host, '/') || strchr(host, '/')[1] == '\0') {
                *reterr_reason =
                        "the URL names no share (expected https://ACCOUNT.file.core.windows.net/SHARE)";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_string(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (has_control_chars(value) || strpbrk(value, " \t")) {
                *reterr_reason = "expected a value without spaces or control characters";
                return -EINVAL;
        }
        return set_string(ret, value);
}

bool conf_valid_user_name(const char *s) {
        size_t n = strlen(s);
        bool all_digits = true;

        if (n == 0 || n > 32 || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '$' && i == n - 1 && n > 1)
                        continue;
                if (!(isascii((unsigned char)c) &&
                      (isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-')))
                        return false;
                if (!isdigit((unsigned char)c))
                        all_digits = false;
        }
        return !all_digits;
}

/* A list of words separated by seps, each accepted by valid(). */
static int parse_word_list(
        const char *value,
        const char *seps,
        bool (*valid)(const char *word),
        const char *what,
        void *ret,
        const char **reterr_reason) {
        _cleanup_free_ char *copy = strdup(value);
        char **list, *state = NULL, *word;
        size_t n = 0;

        if (!copy)
                return -ENOMEM;
        list = calloc(CONF_LIST_MAX + 1, sizeof(char *));
        if (!list)
                return -ENOMEM;
        for (word = strtok_r(copy, seps, &state); word; word = strtok_r(NULL, seps, &state)) {
                if (!valid(word)) {
                        *reterr_reason = what;
                        strv_free(list);
                        return -EINVAL;
                }
                if (n >= CONF_LIST_MAX) {
                        *reterr_reason = "too many entries (at most 256)";
                        strv_free(list);
                        return -E2BIG;
                }
                list[n] = strdup(word);
                if (!list[n]) {
                        strv_free(list);
                        return -ENOMEM;
                }
                n++;
        }
        strv_free(*(char ***)ret);
        *(char ***)ret = list;
        return 0;
}

int conf_parse_user_list(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        return parse_word_list(
                value, " \t,", conf_valid_user_name, "expected user names separated by spaces", ret,
                reterr_reason);
}

int conf_parse_uid_range(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        const char *dash = strchr(value, '-');
        uint64_t a, b;

        *reterr_reason = "expected a UID range such as 1000-59999";
        if (!dash || parse_u64(value, (size_t)(dash - value), &a) < 0 ||
            parse_u64(dash + 1, strlen(dash + 1), &b) < 0)
                return -EINVAL;
        if (a > b || b >= UINT32_MAX) {
                *reterr_reason = "UID range is empty or reaches the invalid UID 4294967295";
                return -ERANGE;
        }
        if (a == 0) {
                *reterr_reason = "UID range must not include root (0)";
                return -ERANGE;
        }
        *(UidRange *)ret = (UidRange){.min = (uid_t)a, .max = (uid_t)b};
        return 0;
}

int conf_parse_group_name(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        if (value[0] != '\0' && !conf_valid_user_name(value)) {
                *reterr_reason = "expected a group name";
                return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_log_level(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        int l = log_level_from_string(value);

        if (l < 0) {
                *reterr_reason =
                        "expected one of debug, info, notice, warning, err, crit, alert, emerg";
                return -EINVAL;
        }
        *(int *)ret = l;
        return 0;
}

int conf_parse_mode(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        unsigned long v = 0;
        size_t n = strlen(value);

        *reterr_reason = "expected an octal mode such as 0700";
        if (n == 0 || n > 4)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (value[i] < '0' || value[i] > '7')
                        return -EINVAL;
                v = v * 8 + (unsigned long)(value[i] - '0');
        }
        if (v & ~0777UL) {
                *reterr_reason = "only permission bits (0000-0777) are allowed";
                return -ERANGE;
        }
        *(mode_t *)ret = (mode_t)v;
        return 0;
}

int conf_parse_listen_address(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        _cleanup_free_ char *host = NULL;
        const char *colon, *port;
        unsigned char addr[16];
        uint64_t p;

        if (value[0] == '\0')
                return set_string(ret, NULL);
        *reterr_reason =
                "expected HOST:PORT with an IPv4 address or [IPv6] address, such as 0.0.0.0:8470 or [::1]:8470";
        colon = strrchr(value, ':');
        if (!colon || colon == value)
                return -EINVAL;
        port = colon + 1;
        if (parse_u64(port, strlen(port), &p) < 0 || p > 65535)
                return -EINVAL;
        if (value[0] == '[') {
                if (colon[-1] != ']')
                        return -EINVAL;
                host = strndup(value + 1, (size_t)(colon - value - 2));
                if (!host)
                        return -ENOMEM;
                if (inet_pton(AF_INET6, host, addr) != 1)
                        return -EINVAL;
        } else {
                host = strndup(value, (size_t)(colon - value));
                if (!host)
                        return -ENOMEM;
                if (inet_pton(AF_INET, host, addr) != 1)
                        return -EINVAL;
        }
        return set_string(ret, value);
}

int conf_parse_percent(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        size_t n = strlen(value);
        uint64_t v;

        if (n > 0 && value[n - 1] == '%')
                n--;
        if (parse_u64(value, n, &v) < 0 || v > 100) {
                *reterr_reason = "expected a percentage from 0% to 100%";
                return -EINVAL;
        }
        *(uint64_t *)ret = v;
        return 0;
}

static bool valid_unit_name(const char *s) {
        const char *dot = strrchr(s, '.');
        size_t n = strlen(s);

        if (n == 0 || n > 255 || !dot || dot == s || dot[1] == '\0')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(isascii((unsigned char)s[i]) &&
                      (isalnum((unsigned char)s[i]) || strchr(":-_.\\@", s[i]))))
                        return false;
        return true;
}

int conf_parse_unit_list(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        return parse_word_list(
                value, " \t", valid_unit_name,
                "expected systemd unit names such as ssh.service, separated by spaces", ret,
                reterr_reason);
}

int conf_parse_endpoint(const char *value, void *ret, const void *arg, const char **reterr_reason) {
        const char *host = NULL, *slash;

        if (value[0] == '\0')
                return set_string(ret, NULL);
        if (strncmp(value, "https://", 8) == 0)
                host = value + 8;
        else if (strncmp(value, "http://", 7) == 0)
                host = value + 7;
        slash = host ? strchr(host, '/') : NULL;
        if (!host || host[0] == '\0' || host[0] == '/' || (slash && slash[1] != '\0') ||
            strpbrk(value, " \t\"<>\\^`{|}?#@") || has_control_chars(value) ||
            strlen(value) > 256) {
                *reterr_reason = "expected http://HOST[:PORT] such as http://169.254.169.254";
                return -EINVAL;
        }
        if (slash) { /* drop the trailing "/": paths are appended to it */
                _cleanup_free_ char *copy = strndup(value, (size_t)(slash - value));
                if (!copy)
                        return -ENOMEM;
                return set_string(ret, copy);
        }
        return set_string(ret, value);
}

int conf_parse_expected_gpus(
        const char *value, void *ret, const void *arg, const char **reterr_reason) {
        static const ConfRange range = {0, CONF_GPUS_MAX};
        uint64_t v;
        int r;

        if (strcaseeq(value, "auto")) {
                *(int *)ret = CONF_EXPECTED_GPUS_AUTO;
                return 0;
        }
        if (strcaseeq(value, "none")) {
                *(int *)ret = 0;
                return 0;
        }
        r = conf_parse_uint(value, &v, &range, reterr_reason);
        if (r < 0) {
                if (r == -EINVAL)
                        *reterr_reason = "expected a number of GPUs (0-64), auto or none";
                return r;
        }
        *(int *)ret = (int)v;
        return 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

typedef enum ConfKind {
        CONF_KIND_SCALAR, /* compared and copied with memcmp over size */
        CONF_KIND_STRING, /* char*, NULL when unset */
        CONF_KIND_STRV,   /* char**, never NULL */
} ConfKind;

typedef struct ConfItem {
        const char *section;
        const char *key;
        ConfParser parser;
        size_t offset;
        ConfKind kind;
        size_t size;
        const void *arg;
        bool needs_restart;
} ConfItem;

static const ConfRange stat_timeout_range = {100 * 1000, 600 * USEC_PER_SEC};
static const ConfRange check_interval_range = {USEC_PER_SEC, 86400 * USEC_PER_SEC};
static const ConfRange recover_after_range = {USEC_PER_SEC, 86400 * USEC_PER_SEC};
static const ConfRange resync_interval_range = {10 * USEC_PER_SEC, 86400 * USEC_PER_SEC};
static const ConfRange health_interval_range = {100 * 1000, 86400 * USEC_PER_SEC};
static const ConfRange hysteresis_range = {1, 100};
static const ConfRange top_consumers_range = {0, 100};
static const ConfRange gpu_interval_range = {USEC_PER_SEC, 86400 * USEC_PER_SEC};
static const ConfRange gpu_timeout_range = {USEC_PER_SEC, 600 * USEC_PER_SEC};

static const ConfRange drain_poll_range = {100 * 1000, 60 * USEC_PER_SEC};
static const ConfRange drain_flush_range = {USEC_PER_SEC, 3600 * USEC_PER_SEC};
static const ConfRange drain_stop_flush_range = {USEC_PER_SEC, 600 * USEC_PER_SEC};
static const ConfRange jobs_slots_range = {0, CONF_JOBS_SLOTS_MAX};
static const ConfRange jobs_stop_grace_range = {USEC_PER_SEC, 3600 * USEC_PER_SEC};
static const ConfRange drain_job_wait_range = {0, 7 * 86400 * USEC_PER_SEC};

#define SCALAR(field) CONF_KIND_SCALAR, sizeof(((Config *)0)->field)
#define STRING CONF_KIND_STRING, sizeof(char *)
#define STRV CONF_KIND_STRV, sizeof(char **)

/* clang-format off */
static const ConfItem conf_table[] = {
        {"Agent",     "LogLevel",           conf_parse_log_level,     offsetof(Config, log_level),           SCALAR(log_level),           NULL,                  false},
        {"Agent",     "StateDirectory",     conf_parse_path,          offsetof(Config, state_directory),     STRING,                      NULL,                  true},
        {"Agent",     "ControlSocket",      conf_parse_path,          offsetof(Config, control_socket),      STRING,                      NULL,                  true},
        {"Agent",     "AdminGroup",         conf_parse_group_name,    offsetof(Config, admin_group),         STRING,                      NULL,                  false},
        {"Agent",     "MetadataEndpoint",   conf_parse_endpoint,      offsetof(Config, metadata_endpoint),   STRING,                      NULL,                  true},
        {"Workspace", "Source",             conf_parse_url,           offsetof(Config, source),              STRING,                      NULL,                  true},
        {"Workspace", "MountPoint",         conf_parse_path,          offsetof(Config, mount_point),         STRING,                      NULL,                  true},
        {"Workspace", "Credentials",        conf_parse_path_or_empty, offsetof(Config, credentials),         STRING,                      NULL,                  true},
        {"Workspace", "CacheDirectory",     conf_parse_path,          offsetof(Config, cache_directory),     STRING,                      NULL,                  true},
        {"Workspace", "MountOptions",       conf_parse_string,        offsetof(Config, mount_options),       STRING,                      NULL,                  true},
        {"Workspace", "StatTimeout",        conf_parse_duration,      offsetof(Config, stat_timeout_usec),   SCALAR(stat_timeout_usec),   &stat_timeout_range,   false},
        {"Workspace", "CheckInterval",      conf_parse_duration,      offsetof(Config, check_interval_usec), SCALAR(check_interval_usec), &check_interval_range, false},
        {"Workspace", "RecoverAfter",       conf_parse_duration,      offsetof(Config, recover_after_usec),  SCALAR(recover_after_usec),  &recover_after_range,  true},
        {"Users",     "UIDRange",           conf_parse_uid_range,     offsetof(Config, uid_range),           SCALAR(uid_range),           NULL,                  false},
        {"Users",     "Group",              conf_parse_group_name,    offsetof(Config, group),               STRING,                      NULL,                  false},
        {"Users",     "Deny",               conf_parse_user_list,     offsetof(Config, deny),                STRV,                        NULL,                  false},
        {"Users",     "NotebooksDirectory", conf_parse_relative_path, offsetof(Config, notebooks_directory), STRING,                      NULL,                  false},
        {"Users",     "LinkName",           conf_parse_filename,      offsetof(Config, link_name),           STRING,                      NULL,                  false},
        {"Users",     "UserDirectoryMode",  conf_parse_mode,          offsetof(Config, user_directory_mode), SCALAR(user_directory_mode), NULL,                  false},
        {"Users",     "ResyncInterval",     conf_parse_duration,      offsetof(Config, resync_interval_usec), SCALAR(resync_interval_usec), &resync_interval_range, false},
        {"Health",    "ListenAddress",      conf_parse_listen_address, offsetof(Config, listen_address),     STRING,                      NULL,                  true},
        {"Health",    "CheckInterval",      conf_parse_duration,      offsetof(Config, health_interval_usec), SCALAR(health_interval_usec), &health_interval_range, false},
        {"Health",    "UnhealthyAfter",     conf_parse_uint,          offsetof(Config, unhealthy_after),     SCALAR(unhealthy_after),     &hysteresis_range,     false},
        {"Health",    "HealthyAfter",       conf_parse_uint,          offsetof(Config, healthy_after),       SCALAR(healthy_after),       &hysteresis_range,     false},
        {"Health",    "RootPath",           conf_parse_disk_path,     offsetof(Config, root_path),           STRING,                      NULL,                  false},
        {"Health",    "RootMinFree",        conf_parse_size,          offsetof(Config, root_min_free),       SCALAR(root_min_free),       NULL,                  false},
        {"Health",    "RootWarnFree",       conf_parse_size,          offsetof(Config, root_warn_free),      SCALAR(root_warn_free),      NULL,                  false},
        {"Health",    "TmpPath",            conf_parse_disk_path,     offsetof(Config, tmp_path),            STRING,                      NULL,                  false},
        {"Health",    "TmpMinFree",         conf_parse_size,          offsetof(Config, tmp_min_free),        SCALAR(tmp_min_free),        NULL,                  false},
        {"Health",    "TmpWarnFree",        conf_parse_size,          offsetof(Config, tmp_warn_free),       SCALAR(tmp_warn_free),       NULL,                  false},
        {"Health",    "ScratchPath",        conf_parse_disk_path,     offsetof(Config, scratch_path),        STRING,                      NULL,                  false},
        {"Health",    "ScratchMinFree",     conf_parse_size,          offsetof(Config, scratch_min_free),    SCALAR(scratch_min_free),    NULL,                  false},
        {"Health",    "ScratchWarnFree",    conf_parse_size,          offsetof(Config, scratch_warn_free),   SCALAR(scratch_warn_free),   NULL,                  false},
        {"Health",    "MinFreeInodes",      conf_parse_percent,       offsetof(Config, min_free_inodes_percent), SCALAR(min_free_inodes_percent), NULL,      false},
        {"Health",    "WarnFreeInodes",     conf_parse_percent,       offsetof(Config, warn_free_inodes_percent), SCALAR(warn_free_inodes_percent), NULL,    false},
        {"Health",    "TopConsumers",       conf_parse_uint,          offsetof(Config, top_consumers),       SCALAR(top_consumers),       &top_consumers_range,  false},
        {"Health",    "TmpCleanupAge",      conf_parse_cleanup_age,   offsetof(Config, tmp_cleanup_age),     STRING,                      NULL,                  false},
        {"Health",    "RequiredUnits",      conf_parse_unit_list,     offsetof(Config, required_units),      STRV,                        NULL,                  false},
        {"Health",    "ExpectedGPUs",       conf_parse_expected_gpus, offsetof(Config, expected_gpus),       SCALAR(expected_gpus),       NULL,                  false},
        {"Health",    "GPUCheckInterval",   conf_parse_duration,      offsetof(Config, gpu_check_interval_usec), SCALAR(gpu_check_interval_usec), &gpu_interval_range, false},
        {"Health",    "GPUTimeout",         conf_parse_duration,      offsetof(Config, gpu_timeout_usec),    SCALAR(gpu_timeout_usec),    &gpu_timeout_range,    false},
        {"Health",    "NVMLLibrary",        conf_parse_path_or_empty, offsetof(Config, nvml_library),        STRING,                      NULL,                  true},
        {"Drain",     "ScheduledEvents",   conf_parse_bool,           offsetof(Config, drain_scheduled_events), SCALAR(drain_scheduled_events), NULL,                  true},
        {"Drain",     "VMName",            conf_parse_string,         offsetof(Config, drain_vm_name), STRING,                       NULL,                  true},
        {"Drain",     "PollInterval",      conf_parse_duration,       offsetof(Config, drain_poll_interval_usec), SCALAR(drain_poll_interval_usec), &drain_poll_range,     true},
        {"Drain",     "FlushBudget",       conf_parse_duration,       offsetof(Config, drain_flush_budget_usec), SCALAR(drain_flush_budget_usec), &drain_flush_range,    true},
        {"Drain",     "ManualJobWait",     conf_parse_duration,       offsetof(Config, drain_manual_job_wait_usec), SCALAR(drain_manual_job_wait_usec), &drain_job_wait_range, true},
        {"Drain",     "FlushTimeout",      conf_parse_duration,       offsetof(Config, drain_flush_timeout_usec), SCALAR(drain_flush_timeout_usec), &drain_flush_range,    true},
        {"Drain",     "StopFlushTimeout",  conf_parse_duration,       offsetof(Config, drain_stop_flush_timeout_usec), SCALAR(drain_stop_flush_timeout_usec), &drain_stop_flush_range, true},
        {"Drain",     "NoLoginFile",       conf_parse_path,           offsetof(Config, drain_nologin_file), STRING,                       NULL,                  true},
        {"Drain",     "NotifyUsers",       conf_parse_bool,           offsetof(Config, drain_notify_users), SCALAR(drain_notify_users),   NULL,                  true},
        {"Drain",     "ShutdownInhibitor", conf_parse_bool,           offsetof(Config, drain_shutdown_inhibitor), SCALAR(drain_shutdown_inhibitor), NULL,                  true},
        {"Drain",     "ExecStart",         conf_parse_command,        offsetof(Config, drain_exec_start), STRING,                       NULL,                  true},
        {"Drain",     "ExecStop",          conf_parse_command,        offsetof(Config, drain_exec_stop), STRING,                       NULL,                  true},
        {"Drain",     "HookTimeout",       conf_parse_duration,       offsetof(Config, drain_hook_timeout_usec), SCALAR(drain_hook_timeout_usec), &drain_flush_range,    true},
        {"Jobs",      "Enabled",           conf_parse_bool,           offsetof(Config, jobs_enabled),        SCALAR(jobs_enabled),        NULL,                  true},
        {"Jobs",      "Slots",             conf_parse_uint,           offsetof(Config, jobs_slots),          SCALAR(jobs_slots),          &jobs_slots_range,     true},
        {"Jobs",      "GPUs",              conf_parse_expected_gpus,  offsetof(Config, jobs_gpus),           SCALAR(jobs_gpus),           NULL,                  true},
        {"Jobs",      "StopGrace",         conf_parse_duration,       offsetof(Config, jobs_stop_grace_usec), SCALAR(jobs_stop_grace_usec), &jobs_stop_grace_range, true},
};
/* clang-format on */

#define CONF_TABLE_N ELEMENTSOF(conf_table)

bool config_table_get(unsigned i, const char **ret_section, const char **ret_key) {
        if (i >= CONF_TABLE_N)
                return false;
        *ret_section = conf_table[i].section;
        *ret_key = conf_table[i].key;
        return true;
}

static void *field_of(const Config *c, const ConfItem *item) {
        return (uint8_t *)c + item->offset;
}

/* ---- Config lifecycle ----------------------------------------------------------------------- */

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < CONF_TABLE_N; i++) {
                void *f = field_of(c, &conf_table[i]);
                if (conf_table[i].kind == CONF_KIND_STRING)
                        free(*(char **)f);
                else if (conf_table[i].kind == CONF_KIND_STRV)
                        strv_free(*(char ***)f);
        }
        strv_free(c->files);
        for (size_t i = 0; c->origins && i < CONF_TABLE_N; i++)
                free(c->origins[i]);
        free(c->origins);
        free(c);
        return NULL;
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = calloc(1, sizeof(Config));

        if (!c)
                return -ENOMEM;
        c->log_level = LOG_INFO;
        c->stat_timeout_usec = 5 * USEC_PER_SEC;
        c->check_interval_usec = 30 * USEC_PER_SEC;
        c->recover_after_usec = 120 * USEC_PER_SEC;
        c->uid_range = (UidRange){.min = 1000, .max = 59999};
        c->user_directory_mode = 0700;
        c->resync_interval_usec = 600 * USEC_PER_SEC;
        c->health_interval_usec = 30 * USEC_PER_SEC;
        c->unhealthy_after = 2;
        c->healthy_after = 3;
        c->root_min_free = UINT64_C(5) << 30;
        c->root_warn_free = UINT64_C(10) << 30;
        c->tmp_min_free = UINT64_C(1) << 30;
        c->tmp_warn_free = UINT64_C(2) << 30;
        c->scratch_min_free = UINT64_C(2) << 30;
        c->scratch_warn_free = UINT64_C(5) << 30;
        c->min_free_inodes_percent = 5;
        c->warn_free_inodes_percent = 10;
        c->top_consumers = 10;
        c->expected_gpus = CONF_EXPECTED_GPUS_AUTO;
        c->gpu_check_interval_usec = 60 * USEC_PER_SEC;
        c->gpu_timeout_usec = 30 * USEC_PER_SEC;
        c->metadata_endpoint = strdup("http://169.254.169.254");
        c->listen_address = strdup("0.0.0.0:8470");
        c->root_path = strdup("/");
        c->tmp_path = strdup("/tmp");
        c->scratch_path = strdup("/mnt");
        c->required_units = calloc(1, sizeof(char *));
        c->drain_scheduled_events = true;
        c->drain_poll_interval_usec = USEC_PER_SEC;
        c->drain_flush_budget_usec = 10 * USEC_PER_SEC;
        c->drain_manual_job_wait_usec = 30 * 60 * USEC_PER_SEC;
        c->drain_flush_timeout_usec = 120 * USEC_PER_SEC;
        c->drain_stop_flush_timeout_usec = 20 * USEC_PER_SEC;
        c->drain_notify_users = true;
        c->drain_shutdown_inhibitor = true;
        c->drain_hook_timeout_usec = 60 * USEC_PER_SEC;
        c->drain_nologin_file = strdup("/run/nologin");
        c->jobs_enabled = true;
        c->jobs_gpus = CONF_JOBS_GPUS_AUTO;
        c->jobs_stop_grace_usec = 30 * USEC_PER_SEC;
        c->state_directory = strdup("/var/lib/poolagent");
        c->control_socket = strdup("/run/poolagent/control.sock");
        c->mount_point = strdup("/srv/workspace");
        c->cache_directory = strdup("/mnt/poolagent/cache");
        c->notebooks_directory = strdup("notebooks");
        c->link_name = strdup("remote");
        c->deny = calloc(1, sizeof(char *));
        c->files = calloc(1, sizeof(char *));
        c->origins = calloc(CONF_TABLE_N, sizeof(char *));
        if (!c->origins || !c->drain_nologin_file || !c->state_directory || !c->control_socket ||
            !c->mount_point || !c->cache_directory || !c->notebooks_directory || !c->link_name ||
            !c->deny || !c->files || !c->listen_address || !c->root_path || !c->tmp_path ||
            !c->scratch_path || !c->required_units || !c->metadata_endpoint)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- parsing one file ----------------------------------------------------------------------- */

typedef struct ConfParseState {
        Config *config;
        const char *filename;
        ConfErrors *errors;
        /* reader */
        const char *pos;
        unsigned line; /* number of the line last handed to inih */
        /* duplicates within this file */
        unsigned seen_line[CONF_TABLE_N];
} ConfParseState;

static char *conf_reader(char *str, int num, void *stream) {
        ConfParseState *s = stream;
        size_t n, max;
        const char *p = s->pos;

        if (*p == '\0')
                return NULL;
        s->line++;
        n = strcspn(p, "\n");
        s->pos = p + n + (p[n] == '\n');
        /* Leading whitespace goes, so that inih never takes an indented line as the continuation
         * of the previous value: it becomes a key of its own, or a syntax error. */
        while (n > 0 && (*p == ' ' || *p == '\t')) {
                p++;
                n--;
        }
        max = num > 3 ? (size_t)num - 3 : 0; /* room for "\r\n\0", as inih documents */
        if (n > max) {
                conf_errors_add(
                        s->errors, "%s:%u: line too long (at most %zu characters)", s->filename,
                        s->line, max);
                str[0] = '\0';
                return str;
        }
        memcpy(str, p, n);
        str[n] = '\n';
        str[n + 1] = '\0';
        return str;
}

/* Levenshtein distance, capped: only short names are compared. */
static unsigned edit_distance(const char *a, const char *b) {
        unsigned d[64 + 1];
        size_t la = strlen(a), lb = strlen(b);

        if (la > 64 || lb > 64)
                return UINT32_MAX;
        for (size_t j = 0; j <= lb; j++)
                d[j] = (unsigned)j;
        for (size_t i = 1; i <= la; i++) {
                unsigned prev = d[0];
                d[0] = (unsigned)i;
                for (size_t j = 1; j <= lb; j++) {
                        unsigned cur = d[j];
                        unsigned sub = prev + (tolower((unsigned char)a[i - 1]) !=
                                               tolower((unsigned char)b[j - 1]));
                        d[j] = MIN(MIN(d[j] + 1, d[j - 1] + 1), sub);
                        prev = cur;
                }
        }
        return d[lb];
}

/* The closest known key (section != NULL) or section name, or NULL if none is close. */
static const char *did_you_mean(const char *section, const char *name) {
        const char *best = NULL;
        unsigned best_d = 3; /* accept distance <= 2 */

        for (size_t i = 0; i < CONF_TABLE_N; i++) {
                const char *cand = section ? conf_table[i].key : conf_table[i].section;
                unsigned d;
                if (section && !streq(conf_table[i].section, section))
                        continue;
                d = strcaseeq(cand, name) ? 0 : edit_distance(cand, name);
                if (d < best_d) {
                        best = cand;
                        best_d = d;
                }
        }
        return best;
}

static bool section_known(const char *section) {
        for (size_t i = 0; i < CONF_TABLE_N; i++)
                if (streq(conf_table[i].section, section))
                        return true;
        return false;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value) {
        ConfParseState *s = user;
        const char *reason = NULL, *hint;
        int r;

        if (isempty(section)) {
                conf_errors_add(
                        s->errors, "%s:%u: key '%s' outside of any [Section]", s->filename, s->line,
                        name);
                return 1;
        }
        if (!section_known(section)) {
                hint = did_you_mean(NULL, section);
                if (hint)
                        conf_errors_add(
                                s->errors, "%s:%u: unknown section [%s] (did you mean [%s]?)",
                                s->filename, s->line, section, hint);
                else
                        conf_errors_add(
                                s->errors, "%s:%u: unknown section [%s]", s->filename, s->line,
                                section);
                return 1;
        }
        for (size_t i = 0; i < CONF_TABLE_N; i++) {
                const ConfItem *item = &conf_table[i];
                if (!streq(item->section, section) || !streq(item->key, name))
                        continue;
                if (s->seen_line[i] > 0) {
                        conf_errors_add(
                                s->errors,
                                "%s:%u: duplicate key '%s' in [%s] (first set on line %u)",
                                s->filename, s->line, name, section, s->seen_line[i]);
                        return 1;
                }
                s->seen_line[i] = s->line;
                r = item->parser(value, field_of(s->config, item), item->arg, &reason);
                if (r == -ENOMEM) {
                        s->errors->oom = true;
                        return 0;
                }
                if (r >= 0) {
                        char *o = NULL;
                        if (asprintf(&o, "%s:%u", s->filename, s->line) < 0) {
                                s->errors->oom = true;
                                return 0;
                        }
                        free(s->config->origins[i]);
                        s->config->origins[i] = o;
                }
                if (r < 0)
                        conf_errors_add(
                                s->errors, "%s:%u: invalid value '%.200s' for key '%s' in [%s]: %s",
                                s->filename, s->line, value, name, section,
                                reason ? reason : "invalid value");
                return 1;
        }
        hint = did_you_mean(section, name);
        if (hint)
                conf_errors_add(
                        s->errors, "%s:%u: unknown key '%s' in [%s] (did you mean '%s'?)",
                        s->filename, s->line, name, section, hint);
        else
                conf_errors_add(
                        s->errors, "%s:%u: unknown key '%s' in [%s]", s->filename, s->line, name,
                        section);
        return 1;
}

static int
config_parse_text_collect(Config *c, const char *text, const char *filename, ConfErrors *errors) {
        ConfParseState s = {.config = c, .filename = filename, .errors = errors, .pos = text};
        int r;

        r = ini_parse_stream(conf_reader, &s, conf_handler, &s);
        if (r == -2)
                return -ENOMEM;
        if (r > 0)
                conf_errors_add(
                        errors, "%s:%d: syntax error (expected [Section], Key=Value or a comment)",
                        filename, r);
        return errors->oom ? -ENOMEM : 0;
}

int config_parse_text(Config *c, const char *text, const char *filename, char **reterr) {
        ConfErrors errors = {};
        int r;

        r = config_parse_text_collect(c, text, filename, &errors);
        if (r < 0) {
                (void)conf_errors_finish(&errors, NULL);
                return r;
        }
        return conf_errors_finish(&errors, reterr);
}

/* ---- cross-key checks ----------------------------------------------------------------------- */

static const char *origin_of(const Config *c, size_t offset) {
        for (size_t i = 0; i < CONF_TABLE_N; i++)
                if (conf_table[i].offset == offset)
                        return c->origins[i] ? c->origins[i] : "(default)";
        return "(default)";
}

static bool path_is_below_or_equal(const char *path, const char *dir) {
        size_t n = strlen(dir);

        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static void config_verify_collect(const Config *c, ConfErrors *e) {
        static const struct {
                const char *key;
                size_t min, warn;
        } thresholds[] = {
                {"Root", offsetof(Config, root_min_free), offsetof(Config, root_warn_free)},
                {"Tmp", offsetof(Config, tmp_min_free), offsetof(Config, tmp_warn_free)},
                {"Scratch", offsetof(Config, scratch_min_free),
                 offsetof(Config, scratch_warn_free)},
                {"", offsetof(Config, min_free_inodes_percent),
                 offsetof(Config, warn_free_inodes_percent)},
        };

        for (size_t i = 0; i < ELEMENTSOF(thresholds); i++) {
                uint64_t min = *(const uint64_t *)((const uint8_t *)c + thresholds[i].min);
                uint64_t warn = *(const uint64_t *)((const uint8_t *)c + thresholds[i].warn);
                if (warn < min)
                        conf_errors_add(
                                e, "%s: [Health] %sWarnFree%s= is below %sMinFree%s=",
                                origin_of(c, thresholds[i].warn), thresholds[i].key,
                                thresholds[i].key[0] ? "" : "Inodes", thresholds[i].key,
                                thresholds[i].key[0] ? "" : "Inodes");
        }
        if (c->source && !c->credentials)
                conf_errors_add(
                        e,
                        "%s: missing required key 'Credentials' in [Workspace] (required because Source= is set here)",
                        origin_of(c, offsetof(Config, source)));
        if (c->credentials && path_is_below_or_equal(c->credentials, c->mount_point))
                conf_errors_add(
                        e, "%s: [Workspace] Credentials=%s lies inside MountPoint=%s",
                        origin_of(c, offsetof(Config, credentials)), c->credentials,
                        c->mount_point);
        if (path_is_below_or_equal(c->cache_directory, c->mount_point) ||
            path_is_below_or_equal(c->mount_point, c->cache_directory))
                conf_errors_add(
                        e, "%s: [Workspace] CacheDirectory=%s and MountPoint=%s overlap",
                        origin_of(c, offsetof(Config, cache_directory)), c->cache_directory,
                        c->mount_point);
}

int config_verify(const Config *c, char **reterr) {
        ConfErrors errors = {};

        config_verify_collect(c, &errors);
        return conf_errors_finish(&errors, reterr);
}

/* ---- loading files -------------------------------------------------------------------------- */

static int read_text_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t len = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return NEG_ERRNO();
        if (fstat(fd, &st) < 0)
                return NEG_ERRNO();
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        buf = malloc(CONF_FILE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + len, CONF_FILE_MAX + 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return NEG_ERRNO();
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > CONF_FILE_MAX)
                        return -EFBIG;
        }
        if (memchr(buf, '\0', len))
                return -EBADMSG;
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

static int config_load_file(Config *c, const char *path, bool required, ConfErrors *errors) {
        _cleanup_free_ char *text = NULL;
        int r;

        r = read_text_file(path, &text);
        if (r == -ENOENT && !required)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                conf_errors_add(
                        errors, "%s: cannot read: %s", path,
                        r == -EFBIG     ? "file too large (at most 256 KiB)"
                        : r == -EBADMSG ? "file contains a NUL byte"
                        : r == -EBADFD  ? "not a regular file"
                                        : strerror(-r));
                return 0;
        }
        r = strv_push(&c->files, path);
        if (r < 0)
                return r;
        return config_parse_text_collect(c, text, path, errors);
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);

        return de->d_name[0] != '.' && n > 5 && streq(de->d_name + n - 5, ".conf");
}

static int config_load_dropins(Config *c, const char *dir, ConfErrors *errors) {
        struct dirent **names = NULL;
        int n, r = 0;

        n = scandir(dir, &names, dropin_filter, alphasort);
        if (n < 0) {
                if (errno == ENOENT)
                        return 0;
                conf_errors_add(errors, "%s: cannot read directory: %m", dir);
                return 0;
        }
        if ((unsigned)n > CONF_DROPINS_MAX)
                conf_errors_add(
                        errors, "%s: too many drop-in files (%d, at most %u)", dir, n,
                        CONF_DROPINS_MAX);
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *path = NULL;
                if (r >= 0 && (unsigned)i < CONF_DROPINS_MAX) {
                        if (asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
                                r = -ENOMEM;
                        else
                                r = config_load_file(c, path, true, errors);
                }
                free(names[i]);
        }
        free(names);
        return r;
}

int config_load(
        const char *main_path,
        bool main_required,
        const char *dropin_dir,
        Config **ret,
        char **reterr) {
        _cleanup_(config_freep) Config *c = NULL;
        ConfErrors errors = {};
        int r;

        r = config_new(&c);
        if (r < 0)
                return r;
        if (main_path)
                r = config_load_file(c, main_path, main_required, &errors);
        if (r >= 0 && dropin_dir)
                r = config_load_dropins(c, dropin_dir, &errors);
        if (r >= 0 && errors.n == 0)
                config_verify_collect(c, &errors);
        if (r < 0) {
                (void)conf_errors_finish(&errors, NULL);
                return r;
        }
        r = conf_errors_finish(&errors, reterr);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- comparing ------------------------------------------------------------------------------ */

unsigned config_diff(const Config *a, const Config *b, ConfChangeCallback cb, void *userdata) {
        unsigned n = 0;

        for (size_t i = 0; i < CONF_TABLE_N; i++) {
                const ConfItem *item = &conf_table[i];
                const void *fa = field_of(a, item), *fb = field_of(b, item);
                bool same;

                switch (item->kind) {
                case CONF_KIND_STRING: {
                        const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
                        same = (!sa && !sb) || (sa && sb && streq(sa, sb));
                        break;
                }
                case CONF_KIND_STRV:
                        same = strv_equal(*(char **const *)fa, *(char **const *)fb);
                        break;
                default:
                        same = memcmp(fa, fb, item->size) == 0;
                }
                if (same)
                        continue;
                n++;
                if (cb)
                        cb(item->section, item->key, item->needs_restart, userdata);
        }
        return n;
}
