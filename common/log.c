/* SPDX-License-Identifier: MIT */
#define SD_JOURNAL_SUPPRESS_LOCATION 1

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <systemd/sd-journal.h>

#define LOG_FIELDS_MAX 16
#define LOG_MESSAGE_MAX 4096

static const char *log_program = "poolagent";
static LogTarget log_target = LOG_TARGET_STDERR;
static atomic_int log_max_level = LOG_INFO;
static pthread_mutex_t log_stderr_lock = PTHREAD_MUTEX_INITIALIZER;

static int stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(const char *program, LogTarget target) {
        if (program)
                log_program = program;
        if (target == LOG_TARGET_AUTO)
                target = stderr_is_journal() ? LOG_TARGET_JOURNAL : LOG_TARGET_STDERR;
        log_target = target;
}

void log_set_max_level(int level) {
        atomic_store(&log_max_level, CLAMP(level, LOG_EMERG, LOG_DEBUG));
}

int log_get_max_level(void) {
        return atomic_load(&log_max_level);
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {"emerg",   "alert",  "crit", "err",
                                            "warning", "notice", "info", "debug"};
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (strcaseeq(s, names[i]))
                        return (int)i;
        if (strcaseeq(s, "error"))
                return LOG_ERR;
        return -EINVAL;
}

static void log_to_stderr(int level, const char *file, int line, const char *message) {
        static const char *const prefix[] = {"EMERG", "ALERT", "CRIT", "ERROR", "WARN", "", "", ""};
        pthread_mutex_lock(&log_stderr_lock);
        if (log_get_max_level() >= LOG_DEBUG)
                fprintf(stderr, "%s: %s%s(%s:%d) %s\n", log_program, prefix[level & 7],
                        *prefix[level & 7] ? ": " : "", file, line, message);
        else
                fprintf(stderr, "%s: %s%s%s\n", log_program, prefix[level & 7],
                        *prefix[level & 7] ? ": " : "", message);
        pthread_mutex_unlock(&log_stderr_lock);
}

static void log_to_journal(
        int level,
        int error,
        const char *file,
        int line,
        const char *func,
        const char *const *fields,
        const char *message) {
        char f_priority[32], f_file[512], f_line[32], f_func[256], f_errno[32], f_ident[128];
        char f_message[LOG_MESSAGE_MAX + 16];
        struct iovec iov[8 + LOG_FIELDS_MAX];
        size_t n = 0;

#define ADD(buf, ...)                                                                              \
        do {                                                                                       \
                (void)snprintf(buf, sizeof(buf), __VA_ARGS__);                                     \
                iov[n++] = (struct iovec){.iov_base = buf, .iov_len = strlen(buf)};                \
        } while (0)
        ADD(f_message, "MESSAGE=%s", message);
        ADD(f_priority, "PRIORITY=%d", level & 7);
        ADD(f_file, "CODE_FILE=%s", file);
        ADD(f_line, "CODE_LINE=%d", line);
        ADD(f_func, "CODE_FUNC=%s", func);
        ADD(f_ident, "SYSLOG_IDENTIFIER=%s", log_program);
        if (error != 0)
                ADD(f_errno, "ERRNO=%d", abs(error));
#undef ADD
        for (size_t i = 0; fields && fields[i] && i < LOG_FIELDS_MAX; i++)
                iov[n++] =
                        (struct iovec){.iov_base = (void *)fields[i], .iov_len = strlen(fields[i])};
        (void)sd_journal_sendv(iov, (int)n);
}

int log_internal(
        int level,
        int error,
        const char *file,
        int line,
        const char *func,
        const char *const *fields,
        const char *format,
        ...) {
        char message[LOG_MESSAGE_MAX];
        int saved_errno = errno;
        va_list ap;

        /* %m prints the error we were given, not whatever errno happens to hold. */
        errno = abs(error);
        va_start(ap, format);
        (void)vsnprintf(message, sizeof(message), format, ap);
        va_end(ap);

        if (log_target == LOG_TARGET_JOURNAL)
                log_to_journal(level, error, file, line, func, fields, message);
        else
                log_to_stderr(level, file, line, message);

        errno = saved_errno;
        return -abs(error);
}
