/* SPDX-License-Identifier: MIT */
#include "health-http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "health.h"

struct HealthHttp {
        Health *health; /* borrowed */
        struct MHD_Daemon *daemon;
        char address[HEALTH_HTTP_ADDRESS_MAX];
};

typedef enum HealthHttpBody {
        BODY_HEALTH,
        BODY_HEALTH_RICH,
        BODY_METRICS,
        BODY_STATUS,
} HealthHttpBody;

static const struct {
        const char *path;
        HealthHttpBody body;
        const char *content_type;
} health_http_routes[] = {
        {"/health", BODY_HEALTH, "application/json"},
        {"/health/rich", BODY_HEALTH_RICH, "application/json"},
        {"/metrics", BODY_METRICS, "text/plain; version=0.0.4; charset=utf-8"},
        {"/status", BODY_STATUS, "application/json"},
};

static enum MHD_Result health_http_queue(
        struct MHD_Connection *connection,
        unsigned status,
        const char *content_type,
        const char *body,
        size_t len) {
        struct MHD_Response *response;
        enum MHD_Result ret;

        response = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (!response)
                return MHD_NO;
        (void)MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        (void)MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                (void)MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        ret = MHD_queue_response(connection, status, response);
        MHD_destroy_response(response);
        return ret;
}

static enum MHD_Result health_http_on_request(
        void *cls,
        struct MHD_Connection *connection,
        const char *url,
        const char *method,
        const char *version,
        const char *upload_data,
        size_t *upload_data_size,
        void **con_cls) {
        static const char not_found[] = "not found\n", not_allowed[] = "method not allowed\n";
        HealthHttp *s = cls;
        _cleanup_(health_snapshot_releasep) HealthSnapshot *snap = NULL;
        const char *body;
        size_t len;
        unsigned status = MHD_HTTP_OK;

        /* Answer once the whole request is in (a body is read and dropped): an answer queued
         * earlier makes libmicrohttpd close the connection instead of keeping it alive. */
        if (!*con_cls) {
                *con_cls = s;
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                return health_http_queue(
                        connection, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", not_allowed,
                        sizeof(not_allowed) - 1);
        for (size_t i = 0; i < ELEMENTSOF(health_http_routes); i++) {
                if (!streq(url, health_http_routes[i].path))
                        continue;
                snap = health_snapshot_acquire(s->health);
                if (!snap)
                        return MHD_NO;
                switch (health_http_routes[i].body) {
                case BODY_HEALTH:
                        status = health_snapshot_healthy(snap) ? MHD_HTTP_OK
                                                               : MHD_HTTP_SERVICE_UNAVAILABLE;
                        body = health_snapshot_health_json(snap, &len);
                        break;
                case BODY_HEALTH_RICH:
                        body = health_snapshot_health_json(snap, &len);
                        break;
                case BODY_METRICS:
                        body = health_snapshot_metrics(snap, &len);
                        break;
                default:
                        body = health_snapshot_status_json(snap, &len);
                }
                return health_http_queue(
                        connection, status, health_http_routes[i].content_type, body, len);
        }
        return health_http_queue(
                connection, MHD_HTTP_NOT_FOUND, "text/plain", not_found, sizeof(not_found) - 1);
}

static int parse_address(const char *address, struct sockaddr_storage *ret, bool *ret_ipv6) {
        char host[HEALTH_HTTP_ADDRESS_MAX];
        const char *colon = strrchr(address, ':');
        unsigned long port;
        char *end;

        if (!colon || (size_t)(colon - address) >= sizeof(host))
                return -EINVAL;
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (errno != 0 || end == colon + 1 || *end || port > 65535)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        if (address[0] == '[') {
                struct sockaddr_in6 *sa = (struct sockaddr_in6 *)ret;
                size_t n = (size_t)(colon - address);

                if (n < 3 || address[n - 1] != ']')
                        return -EINVAL;
                memcpy(host, address + 1, n - 2);
                host[n - 2] = '\0';
                sa->sin6_family = AF_INET6;
                sa->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, host, &sa->sin6_addr) != 1)
                        return -EINVAL;
                *ret_ipv6 = true;
        } else {
                struct sockaddr_in *sa = (struct sockaddr_in *)ret;

                memcpy(host, address, (size_t)(colon - address));
                host[colon - address] = '\0';
                sa->sin_family = AF_INET;
                sa->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                        return -EINVAL;
                *ret_ipv6 = false;
        }
        return 0;
}

int health_http_new(Health *health, const char *address, HealthHttp **ret) {
        _cleanup_(health_http_freep) HealthHttp *s = NULL;
        const union MHD_DaemonInfo *info;
        struct sockaddr_storage sa;
        bool ipv6 = false;
        const char *colon;
        int r;

        r = parse_address(address, &sa, &ipv6);
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->health = health;
        s->daemon = MHD_start_daemon(
                MHD_USE_AUTO_INTERNAL_THREAD | (ipv6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
                health_http_on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned)HEALTH_HTTP_CONNECTIONS_MAX,
                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HEALTH_HTTP_PER_IP_MAX,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HEALTH_HTTP_TIMEOUT_SEC,
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HEALTH_HTTP_CONNECTION_MEMORY,
                MHD_OPTION_LISTEN_BACKLOG_SIZE, 256U, MHD_OPTION_END);
        if (!s->daemon)
                return errno > 0 ? -errno : -EADDRNOTAVAIL;
        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
        colon = strrchr(address, ':');
        (void)snprintf(
                s->address, sizeof(s->address), "%.*s:%u", (int)(colon - address), address,
                info ? (unsigned)info->port : 0U);
        *ret = TAKE_PTR(s);
        return 0;
}

HealthHttp *health_http_free(HealthHttp *s) {
        if (!s)
                return NULL;
        if (s->daemon)
                MHD_stop_daemon(s->daemon);
        free(s);
        return NULL;
}

const char *health_http_address(const HealthHttp *s) {
        return s->address;
}
