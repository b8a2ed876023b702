/* SPDX-License-Identifier: MIT */
#include "emu-harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base64-util.h"
#include "macro.h"
#include "sharedkey.h"
#include "time-util.h"

#define READY_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
/* A request's headers: room for an entry's metadata at the service's limit (3,081 pairs). */
#define HARNESS_HEADERS_MAX 4096
#define HARNESS_BODY_MAX (1024u * 1024u * 1024u + 1024u)

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void)st;
        (void)flag;
        (void)ftw;
        (void)remove(path);
        return 0;
}

static void rm_rf(const char *path) {
        if (path)
                (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *field_after(const char *line, const char *key) {
        const char *p = strstr(line, key);
        if (!p)
                return NULL;
        p += strlen(key);
        return strndup(p, strcspn(p, " \n"));
}

int emu_instance_start(const char *data_dir, const char *const *extra_args, EmuInstance **ret) {
        const char *bin = getenv("AZFILES_EMU");
        _cleanup_(emu_instance_freep) EmuInstance *e = NULL;
        char tmpl[] = "/tmp/emu-test.XXXXXX";
        char line[4096];
        size_t len = 0;
        int pipefd[2];
        int64_t deadline;

        if (!bin)
                return -ENOENT;
        e = calloc(1, sizeof(EmuInstance));
        if (!e)
                return -ENOMEM;
        e->pid = -1;
        if (!mkdtemp(tmpl))
                return -errno;
        e->dir = strdup(tmpl);
        if (data_dir)
                e->data_dir = strdup(data_dir);
        else {
                e->owns_data = true;
                if (asprintf(&e->data_dir, "%s/data", tmpl) < 0)
                        e->data_dir = NULL;
        }
        if (asprintf(&e->stderr_path, "%s/stderr", tmpl) < 0)
                e->stderr_path = NULL;
        if (!e->dir || !e->data_dir || !e->stderr_path)
                return -ENOMEM;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        e->pid = fork();
        if (e->pid < 0) {
                (void)close(pipefd[0]);
                (void)close(pipefd[1]);
                return -errno;
        }
        if (e->pid == 0) {
                const char *argv[64] = {bin,         "--listen",    "127.0.0.1:0",
                                        "--imds",    "127.0.0.1:0", "--data",
                                        e->data_dir, "--account",   EMU_TEST_ACCOUNT,
                                        "--key",     EMU_TEST_KEY};
                size_t n = 11;
                int err = open(e->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                for (size_t i = 0; extra_args && extra_args[i] && n < 62; i++)
                        argv[n++] = extra_args[i];
                argv[n] = NULL;
                if (dup2(pipefd[1], STDOUT_FILENO) < 0 || err < 0 || dup2(err, STDERR_FILENO) < 0)
                        _exit(127);
                (void)execv(bin, (char *const *)argv);
                _exit(127);
        }
        (void)close(pipefd[1]);

        /* Wait for the ready line, bounded. */
        deadline = now_monotonic_ns() + (int64_t)READY_TIMEOUT_MS * 1000000;
        for (;;) {
                struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
                int64_t left = (deadline - now_monotonic_ns()) / 1000000;
                ssize_t n;

                if (memchr(line, '\n', len))
                        break;
                if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
                        (void)close(pipefd[0]);
                        return -ETIMEDOUT;
                }
                n = read(pipefd[0], line + len, sizeof(line) - 1 - len);
                if (n <= 0) {
                        (void)close(pipefd[0]);
                        return -EPIPE; /* exited before it was ready: see stderr_path */
                }
                len += (size_t)n;
                line[len] = '\0';
                if (len >= sizeof(line) - 1)
                        break;
        }
        /* Keep the pipe open by leaking it into nothing: the emulator prints nothing more, and
         * SIGPIPE is blocked there. Closing is fine too. */
        (void)close(pipefd[0]);
        if (!strstr(line, "azfiles-emu ready:"))
                return -EBADMSG;
        e->files_url = field_after(line, "file=");
        e->imds_url = field_after(line, "imds=");
        if (!e->files_url || !e->imds_url)
                return -EBADMSG;
        *ret = TAKE_PTR(e);
        return 0;
}

int emu_instance_stop(EmuInstance *e) {
        int pidfd, status;

        if (!e || e->pid <= 0)
                return -ESRCH;
        pidfd = (int)pidfd_open(e->pid, 0);
        if (kill(e->pid, SIGTERM) < 0) {
                (void)safe_close(pidfd);
                return -errno;
        }
        if (pidfd >= 0) {
                struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
                int r = poll(&pfd, 1, STOP_TIMEOUT_MS);
                (void)close(pidfd);
                if (r == 0) {
                        (void)kill(e->pid, SIGKILL);
                        (void)waitpid(e->pid, &status, 0);
                        e->pid = -1;
                        return -ETIMEDOUT;
                }
        }
        if (waitpid(e->pid, &status, 0) < 0)
                return -errno;
        e->pid = -1;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

EmuInstance *emu_instance_free(EmuInstance *e) {
        if (!e)
                return NULL;
        if (e->pid > 0)
                (void)emu_instance_stop(e);
        if (e->owns_data)
                rm_rf(e->data_dir);
        rm_rf(e->dir);
        free(e->dir);
        free(e->data_dir);
        free(e->files_url);
        free(e->imds_url);
        free(e->stderr_path);
        free(e);
        return NULL;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

typedef struct HeaderSet {
        char **lines; /* "Name: value" */
        size_t n, alloc;
} HeaderSet;

static const char *headerset_get(void *userdata, const char *name) {
        HeaderSet *h = userdata;
        size_t len = strlen(name);
        for (size_t i = 0; i < h->n; i++)
                if (strncasecmp(h->lines[i], name, len) == 0 && h->lines[i][len] == ':') {
                        const char *v = h->lines[i] + len + 1;
                        while (*v == ' ')
                                v++;
                        return v;
                }
        return NULL;
}

static int headerset_foreach(
        void *userdata,
        int (*cb)(void *cbdata, const char *name, const char *value),
        void *cbdata) {
        HeaderSet *h = userdata;
        for (size_t i = 0; i < h->n; i++) {
                const char *colon = strchr(h->lines[i], ':');
                char name[256];
                const char *v;
                int r;
                if (!colon || (size_t)(colon - h->lines[i]) >= sizeof(name))
                        continue;
                memcpy(name, h->lines[i], (size_t)(colon - h->lines[i]));
                name[colon - h->lines[i]] = '\0';
                v = colon + 1;
                while (*v == ' ')
                        v++;
                r = cb(cbdata, name, v);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int headerset_add(HeaderSet *h, const char *line) {
        if (h->n >= HARNESS_HEADERS_MAX)
                return -E2BIG;
        if (array_reserve((void **)&h->lines, &h->alloc, h->n + 1, sizeof(char *)) < 0)
                return -ENOMEM;
        h->lines[h->n] = strdup(line);
        if (!h->lines[h->n])
                return -ENOMEM;
        h->n++;
        return 0;
}

static void headerset_clear(HeaderSet *h) {
        for (size_t i = 0; i < h->n; i++)
                free(h->lines[i]);
        free(h->lines);
        *h = (HeaderSet){0};
}

typedef struct Buffer {
        char *data;
        size_t size;
        size_t alloc;
        bool overflow;
} Buffer;

static size_t buffer_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Buffer *b = userdata;
        size_t n = size * nmemb;
        if (b->size + n + 1 > HARNESS_BODY_MAX) {
                b->overflow = true;
                return 0;
        }
        if (b->size + n + 1 > b->alloc) {
                size_t want = MAX(b->alloc * 2, b->size + n + 1);
                char *nb = realloc(b->data, want);
                if (!nb)
                        return 0;
                b->data = nb;
                b->alloc = want;
        }
        memcpy(b->data + b->size, ptr, n);
        b->size += n;
        b->data[b->size] = '\0';
        return n;
}

typedef struct Upload {
        const char *data;
        size_t size;
        size_t pos;
} Upload;

static size_t upload_read(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Upload *u = userdata;
        size_t n = MIN(size * nmemb, u->size - u->pos);
        memcpy(ptr, u->data + u->pos, n);
        u->pos += n;
        return n;
}

static void curl_easy_cleanupp(CURL **c) {
        if (*c)
                curl_easy_cleanup(*c);
}

int emu_http(
        EmuInstance *e,
        const char *method,
        const char *path_and_query,
        const char *const *headers,
        const void *body,
        size_t body_size,
        EmuAuthMode auth,
        EmuHttpResult *ret) {
        _cleanup_(curl_easy_cleanupp) CURL *c = NULL;
        _cleanup_free_ char *url = NULL, *path = NULL, *authz = NULL;
        HeaderSet hs = {0};
        struct curl_slist *list = NULL;
        Buffer hdr = {0}, out = {0};
        Upload up = {.data = body, .size = body_size};
        const char *base = e->files_url, *pq = path_and_query, *qm;
        char line[512], date[RFC1123_MAX];
        long status = 0;
        CURLcode cc;
        int r = 0;

        memset(ret, 0, sizeof(*ret));
        if (strncmp(pq, "imds:", 5) == 0) {
                base = e->imds_url;
                pq += 5;
        }
        if (asprintf(&url, "%s%s", base, pq) < 0)
                return -ENOMEM;

        for (size_t i = 0; headers && headers[i]; i++)
                if ((r = headerset_add(&hs, headers[i])) < 0)
                        goto finish;
        if (base == e->files_url) {
                if (!headerset_get(&hs, "x-ms-version"))
                        (void)headerset_add(&hs, "x-ms-version: " EMU_TEST_VERSION);
                if (!headerset_get(&hs, "x-ms-date") && !headerset_get(&hs, "Date")) {
                        (void)snprintf(
                                line, sizeof(line), "x-ms-date: %s",
                                format_rfc1123(date, now_realtime_ns()));
                        (void)headerset_add(&hs, line);
                }
        }
        if (body && !headerset_get(&hs, "Content-Length")) {
                (void)snprintf(line, sizeof(line), "Content-Length: %zu", body_size);
                (void)headerset_add(&hs, line);
        }

        if (auth == EMU_AUTH_MODE_SHARED_KEY) {
                /* The path as sent: files_url's path plus ours, up to the query. */
                const char *p = strstr(url, "://");
                SharedKeyRequest req;
                _cleanup_free_ uint8_t *key = NULL;
                size_t key_size;

                p = p ? strchr(p + 3, '/') : NULL;
                if (!p) {
                        r = -EINVAL;
                        goto finish;
                }
                qm = strchr(p, '?');
                path = qm ? strndup(p, (size_t)(qm - p)) : strdup(p);
                if (!path || base64_decode(EMU_TEST_KEY, &key, &key_size) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                req = (SharedKeyRequest){
                        .method = method,
                        .account = EMU_TEST_ACCOUNT,
                        .encoded_path = path,
                        .raw_query = qm ? qm + 1 : "",
                        .get_header = headerset_get,
                        .foreach_header = headerset_foreach,
                        .userdata = &hs,
                };
                r = sharedkey_authorization(&req, SHARED_KEY, key, key_size, &authz);
                if (r < 0)
                        goto finish;
                (void)snprintf(line, sizeof(line), "Authorization: %s", authz);
                (void)headerset_add(&hs, line);
        }

        c = curl_easy_init();
        if (!c) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < hs.n; i++)
                list = curl_slist_append(list, hs.lines[i]);
        /* Nothing curl would add on its own may change what was signed. */
        list = curl_slist_append(list, "Expect:");
        list = curl_slist_append(list, "Accept:");
        if (body && !headerset_get(&hs, "Content-Type"))
                list = curl_slist_append(list, "Content-Type:");
        (void)curl_easy_setopt(c, CURLOPT_URL, url);
        (void)curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
        (void)curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
        (void)curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
        (void)curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, buffer_write);
        (void)curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdr);
        (void)curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buffer_write);
        (void)curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
        /* Keep the path exactly as given (no dot-segment squashing). */
        (void)curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
        if (streq(method, "HEAD"))
                (void)curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        else if (body) {
                (void)curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
                (void)curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_read);
                (void)curl_easy_setopt(c, CURLOPT_READDATA, &up);
                (void)curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_size);
                (void)curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        } else if (!streq(method, "GET"))
                (void)curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);

        cc = curl_easy_perform(c);
        (void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        ret->status = status;
        ret->curl_code = (int)cc;
        ret->headers = hdr.data ? hdr.data : strdup("");
        ret->body = out.data ? out.data : strdup("");
        ret->body_size = out.size;
        hdr.data = out.data = NULL;
        r = 0;
finish:
        curl_slist_free_all(list);
        headerset_clear(&hs);
        free(hdr.data);
        free(out.data);
        return r;
}

void emu_http_result_clear(EmuHttpResult *r) {
        free(r->headers);
        free(r->body);
        memset(r, 0, sizeof(*r));
}

const char *emu_http_header(const EmuHttpResult *r, const char *name) {
        static __thread char value[8192];
        size_t len = strlen(name);
        const char *p = r->headers;

        /* With redirects or 100-continue there may be several blocks: the last one counts. */
        const char *last_block = p;
        for (const char *q = p; q && (q = strstr(q, "HTTP/")); q++)
                if (q == p || q[-1] == '\n')
                        last_block = q;
        for (p = last_block; p && *p;) {
                const char *eol = strstr(p, "\r\n");
                size_t n = eol ? (size_t)(eol - p) : strlen(p);
                if (n > len && strncasecmp(p, name, len) == 0 && p[len] == ':') {
                        const char *v = p + len + 1;
                        while (*v == ' ')
                                v++;
                        n -= (size_t)(v - p);
                        n = MIN(n, sizeof(value) - 1);
                        memcpy(value, v, n);
                        value[n] = '\0';
                        return value;
                }
                p = eol ? eol + 2 : NULL;
        }
        return NULL;
}
