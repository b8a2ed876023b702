/* SPDX-License-Identifier: MIT */
/* Benchmark helper (not a test), built by bench-agent-floor.sh: a program that does nothing but
 * load the libraries it was linked with (-Wl,--no-as-needed) and, with "init", call
 * curl_global_init() as poolagentd does. It prints its own resident memory and page faults, so
 * that the script can show the VmRSS a process carrying the agent's libraries has before it does
 * any work of its own. */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef WITH_CURL
#include <curl/curl.h>
#endif

static long status_kib(const char *key) {
        char line[256];
        size_t n = strlen(key);
        long v = -1;
        FILE *f;

        f = fopen("/proc/self/status", "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, key, n) == 0 && line[n] == ':') {
                        (void)sscanf(line + n + 1, "%ld", &v);
                        break;
                }
        (void)fclose(f);
        return v;
}

/* minflt + majflt from /proc/self/stat: each fault maps at least the one page it hit. */
static long faults(void) {
        unsigned long minflt = 0, majflt = 0;
        char buf[1024], *p;
        size_t n;
        FILE *f;

        f = fopen("/proc/self/stat", "re");
        if (!f)
                return -errno;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        (void)fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %lu %*u %lu", &minflt, &majflt) != 2)
                return -EIO;
        return (long)(minflt + majflt);
}

int main(int argc, char *argv[]) {
        long rss, anon, file, flt, page_kib = sysconf(_SC_PAGESIZE) / 1024;

        if (argc > 1 && strcmp(argv[1], "init") == 0) {
#ifdef WITH_CURL
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return 1;
#else
                return 2;
#endif
        }
        flt = faults();
        rss = status_kib("VmRSS");
        anon = status_kib("RssAnon");
        file = status_kib("RssFile");
        if (rss < 0 || anon < 0 || file < 0 || flt < 0)
                return 1;
        /* Resident pages beyond one per fault were mapped without a fault of this process:
         * the kernel's fault-around of page-cache pages next to the ones it touched. */
        printf("VmRSS %5.2f MiB  RssAnon %4.2f MiB  RssFile %4.2f MiB  faults %4ld  "
               "mapped without a fault >= %4.2f MiB\n",
               rss / 1024.0, anon / 1024.0, file / 1024.0, flt,
               rss > flt * page_kib ? (rss - flt * page_kib) / 1024.0 : 0.0);
        return 0;
}
