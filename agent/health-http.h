/* SPDX-License-Identifier: MIT */
#pragma once

/* The read-only HTTP endpoint of the health state (libmicrohttpd).
 *
 *   GET|HEAD /health       200 {"ApplicationHealthState":"Healthy"}, or 503 with "Unhealthy"
 *                          (unhealthy or draining): for a load balancer probe, which reads the
 *                          status code, and the Application Health extension in Binary Health
 *                          States mode
 *   GET|HEAD /health/rich  always 200, the state in the same body: the Application Health
 *                          extension in Rich Health States mode reads the body of a 200 answer
 *                          only (another code makes the instance "Unknown")
 *   GET|HEAD /metrics      Prometheus text format 0.0.4
 *   GET|HEAD /status       JSON: every check with value, thresholds and verdicts
 *   other paths 404; other methods 405 (with Allow: GET, HEAD).
 *
 * Threads: libmicrohttpd runs its own polling thread (epoll); it reads only the snapshot that
 * the health state publishes (health_snapshot_acquire()), never the state itself, so the agent's
 * loop never waits on a client and a client never waits on the loop.
 *
 * Caps: HEALTH_HTTP_CONNECTIONS_MAX connections, HEALTH_HTTP_PER_IP_MAX from one address (so
 * one client holding connections open cannot lock the load balancer's probe out; more are closed
 * at accept), each closed after
 * HEALTH_HTTP_TIMEOUT_SEC without progress (slowloris), HEALTH_HTTP_CONNECTION_MEMORY bytes of
 * request memory per connection (a longer request line or header gets 431/413 and is closed). */

#include "macro.h"

#define HEALTH_HTTP_CONNECTIONS_MAX 512U
#define HEALTH_HTTP_PER_IP_MAX 128U
#define HEALTH_HTTP_TIMEOUT_SEC 10U
#define HEALTH_HTTP_CONNECTION_MEMORY (16U * 1024U)
#define HEALTH_HTTP_ADDRESS_MAX 64U

typedef struct Health Health;
typedef struct HealthHttp HealthHttp;

/* Listens on address ("HOST:PORT", IPv4 or [IPv6]; port 0: any) and serves health, which is
 * borrowed and must outlive the server. */
int health_http_new(Health *health, const char *address, HealthHttp **ret);
/* Stops the thread and closes every connection. NULL-safe. */
HealthHttp *health_http_free(HealthHttp *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HealthHttp *, health_http_free);

/* "HOST:PORT" actually bound (the port filled in when 0 was asked for). */
const char *health_http_address(const HealthHttp *s);
