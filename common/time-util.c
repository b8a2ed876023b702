/* SPDX-License-Identifier: MIT */
#include "time-util.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int64_t now_clock(clockid_t id) {
        struct timespec ts;
        (void)clock_gettime(id, &ts);
        return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

int64_t now_realtime_ns(void) {
        return now_clock(CLOCK_REALTIME);
}

int64_t now_monotonic_ns(void) {
        return now_clock(CLOCK_MONOTONIC);
}

static int64_t floor_div(int64_t a, int64_t b) {
        return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

char *format_rfc1123(char buf[static RFC1123_MAX], int64_t ns) {
        time_t t = (time_t)floor_div(ns, NSEC_PER_SEC);
        struct tm tm;

        (void)gmtime_r(&t, &tm);
        (void)snprintf(
                buf, RFC1123_MAX, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday],
                tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        return buf;
}

char *format_iso8601(char buf[static ISO8601_MAX], int64_t ns) {
        int64_t sec = floor_div(ns, NSEC_PER_SEC);
        time_t t = (time_t)sec;
        struct tm tm;

        (void)gmtime_r(&t, &tm);
        (void)snprintf(
                buf, ISO8601_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%07lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                (long long)((ns - sec * NSEC_PER_SEC) / 100));
        return buf;
}

static int parse_digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char)(*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect(const char **p, char c) {
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

static bool is_leap_year(int year) {
        return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* timegm() would move a day that does not exist into the next month. Second 60 is a leap second
 * only at 23:59, which timegm() counts as the next second, as POSIX time does. */
static int tm_valid(const struct tm *tm) {
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (tm->tm_mon < 0 || tm->tm_mon > 11 || tm->tm_mday < 1 ||
            tm->tm_mday > mdays[tm->tm_mon] ||
            (tm->tm_mon == 1 && tm->tm_mday == 29 && !is_leap_year(tm->tm_year + 1900)) ||
            tm->tm_hour > 23 || tm->tm_min > 59 || tm->tm_sec > 60 ||
            (tm->tm_sec == 60 && (tm->tm_hour != 23 || tm->tm_min != 59)))
                return -EINVAL;
        return 0;
}

static int tm_to_ns(struct tm *tm, int64_t frac_ns, int64_t *ret) {
        int64_t t = (int64_t)timegm(tm);

        if (t < TIME_SEC_MIN || t > TIME_SEC_MAX) {
                *ret = (t < 0 ? TIME_SEC_MIN : TIME_SEC_MAX) * NSEC_PER_SEC;
                return -ERANGE;
        }
        *ret = t * NSEC_PER_SEC + frac_ns;
        return 0;
}

int parse_rfc1123(const char *s, int64_t *ret) {
        struct tm tm = {0};
        const char *p = s;
        int year, r;
        size_t i;

        for (i = 0; i < ELEMENTSOF(wdays); i++)
                if (strncmp(p, wdays[i], 3) == 0)
                        break;
        if (i == ELEMENTSOF(wdays))
                return -EINVAL;
        p += 3;
        if (expect(&p, ',') < 0 || expect(&p, ' ') < 0)
                return -EINVAL;
        if ((r = parse_digits(&p, 2, &tm.tm_mday)) < 0 || expect(&p, ' ') < 0)
                return -EINVAL;
        for (i = 0; i < ELEMENTSOF(months); i++)
                if (strncmp(p, months[i], 3) == 0)
                        break;
        if (i == ELEMENTSOF(months))
                return -EINVAL;
        tm.tm_mon = (int)i;
        p += 3;
        if (expect(&p, ' ') < 0 || parse_digits(&p, 4, &year) < 0 || expect(&p, ' ') < 0 ||
            parse_digits(&p, 2, &tm.tm_hour) < 0 || expect(&p, ':') < 0 ||
            parse_digits(&p, 2, &tm.tm_min) < 0 || expect(&p, ':') < 0 ||
            parse_digits(&p, 2, &tm.tm_sec) < 0 || strcmp(p, " GMT") != 0)
                return -EINVAL;
        tm.tm_year = year - 1900;
        if (tm_valid(&tm) < 0)
                return -EINVAL;
        return tm_to_ns(&tm, 0, ret);
}

int parse_iso8601(const char *s, int64_t *ret) {
        struct tm tm = {0};
        const char *p = s;
        int year, mon, frac = 0, ndigits = 0;

        if (parse_digits(&p, 4, &year) < 0 || expect(&p, '-') < 0 ||
            parse_digits(&p, 2, &mon) < 0 || expect(&p, '-') < 0 ||
            parse_digits(&p, 2, &tm.tm_mday) < 0 || expect(&p, 'T') < 0 ||
            parse_digits(&p, 2, &tm.tm_hour) < 0 || expect(&p, ':') < 0 ||
            parse_digits(&p, 2, &tm.tm_min) < 0 || expect(&p, ':') < 0 ||
            parse_digits(&p, 2, &tm.tm_sec) < 0)
                return -EINVAL;
        if (*p == '.') {
                p++;
                while (isdigit((unsigned char)*p) && ndigits < 7) {
                        frac = frac * 10 + (*p++ - '0');
                        ndigits++;
                }
                if (ndigits == 0 || isdigit((unsigned char)*p))
                        return -EINVAL;
                for (; ndigits < 7; ndigits++)
                        frac *= 10;
        }
        if (strcmp(p, "Z") != 0)
                return -EINVAL;
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        if (tm_valid(&tm) < 0)
                return -EINVAL;
        return tm_to_ns(&tm, (int64_t)frac * 100, ret);
}
