/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging to the journal (structured, with CODE_FILE/CODE_LINE/CODE_FUNC) or to stderr.
 *
 * log_*_errno(r, ...) sets errno to -r for %m, logs, and returns -abs(r), so that
 *         return log_error_errno(r, "Failed to open %s: %m", path);
 * logs once and propagates. Extra journal fields can be passed with log_struct(). Thread-safe. */

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO, /* journal when stderr is connected to it ($JOURNAL_STREAM), else stderr */
        LOG_TARGET_JOURNAL, /* always sd_journal_sendv() */
        LOG_TARGET_STDERR,  /* always stderr, "prog: message" */
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

void log_setup(const char *program, LogTarget target);
void log_set_max_level(int level);
int log_get_max_level(void);
int log_level_from_string(const char *s);

/* Core entry: fields is a NULL-terminated list of extra "KEY=value" strings, may be NULL. */
int log_internal(
        int level,
        int error,
        const char *file,
        int line,
        const char *func,
        const char *const *fields,
        const char *format,
        ...) _printf_(7, 8);

#define log_full_errno_fields(level, error, fields, ...)                                           \
        ({                                                                                         \
                int _l = (level), _e = (error);                                                    \
                (log_get_max_level() >= _l)                                                        \
                        ? log_internal(_l, _e, __FILE__, __LINE__, __func__, fields, __VA_ARGS__)  \
                        : -abs(_e);                                                                \
        })
#define log_full_errno(level, error, ...) log_full_errno_fields(level, error, NULL, __VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* Structured event: log_struct(LOG_INFO, 0, ((const char*[]){"MESSAGE_ID=...", "X=1", NULL}),
 * "fmt", ...) */
#define log_struct(level, error, fields, ...)                                                      \
        log_full_errno_fields(level, error, fields, __VA_ARGS__)
