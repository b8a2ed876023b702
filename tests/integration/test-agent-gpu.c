/* SPDX-License-Identifier: MIT */
/* The GPU check of the real poolagentd, which loads the fake libnvidia-ml.so.1
 * (tests/tools/fake-nvml) through its normal dlopen() path (NVMLLibrary= names it), driven with
 * the real poolctl: a healthy machine with 4 GPUs; one GPU lost while the agent runs (the check
 * names its index, UUID and PCI bus id, remembered from before); a critical Xid 79 (stays
 * unhealthy after the event); uncorrectable ECC errors; fewer GPUs than expected; NVML missing
 * entirely (NVMLLibrary= in an empty directory), fine with no GPU expected and unhealthy after a
 * reload that expects some; an NVML call that hangs (the check turns unhealthy within its bound
 * while poolctl keeps answering, and the agent still stops); ExpectedGPUs=auto with the VM size
 * from azfiles-emu's metadata service, and a metadata service that never answers (no false
 * NVML timeout). argv[1] is poolagentd, argv[2] poolctl, argv[3] the fake
 * library.
 *
 * No sleeps: every wait is on the real condition (poolctl status, notifications), with a
 * deadline; time limits are generous upper bounds, never exact timings. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "agent-harness.h"
#include "emu-harness.h"
#include "macro.h"

#define WAIT_MS 20000
#define POOLCTL_PROMPT_MS 5000 /* every poolctl status answers within this, hung NVML or not */

static const char *poolagentd_path;
static const char *poolctl_path;
static char *fake_nvml_path;

static char *tmp;
static char conf_path[512];
static char socket_path[512];
static char log_path[512];
static char scenario_path[512];
static AgentNotify notify = {.fd = -EBADF}; /* tmp/notify, the agent's NOTIFY_SOCKET */
static pid_t agent_pid;

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t left_ms(int64_t deadline) {
        return agent_harness_left_ms(deadline);
}

static int64_t deadline_in_ms(int64_t ms) {
        return agent_harness_deadline(ms);
}

/* Written to a new file that is renamed over the old one: the fake never reads half a file. */
static void write_file(const char *path, const char *text) {
        char part[600];
        FILE *f;

        (void)snprintf(part, sizeof(part), "%s.part", path);
        f = fopen(part, "we");
        ck_assert_msg(f != NULL, "fopen %s: %m", part);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(rename(part, path), 0);
}

/* health: more [Health] lines; agent: more [Agent] lines (NULL: no metadata service); library:
 * NVMLLibrary= (NULL: the fake). */
static void write_conf(const char *health, const char *agent, const char *library) {
        char text[4096];

        (void)snprintf(
                text, sizeof(text),
                "[Agent]\nControlSocket=%s\nStateDirectory=%s/state\n%s\n"
                "[Workspace]\nMountPoint=%s/ws\nCacheDirectory=%s/cache\n"
                "[Users]\nUIDRange=4000000000-4000000001\n"
                "[Health]\nListenAddress=127.0.0.1:0\nGPUCheckInterval=1s\nGPUTimeout=2s\n"
                "RootPath=\nTmpPath=\nScratchPath=\nUnhealthyAfter=1\nHealthyAfter=1\n"
                "NVMLLibrary=%s\n%s\n",
                socket_path, tmp, agent ? agent : "MetadataEndpoint=", tmp, tmp,
                library ? library : fake_nvml_path, health);
        write_file(conf_path, text);
}

/* Reads notifications until a line is want (exact_line) or the latest STATUS= contains want;
 * bounded. */
static void wait_notify(const char *want, bool exact_line) {
        if (exact_line)
                agent_notify_wait(&notify, want);
        else
                agent_notify_wait_status(&notify, want);
}

static void agent_start(void) {
        char scenario[600];

        (void)snprintf(scenario, sizeof(scenario), "FAKE_NVML_SCENARIO=%s", scenario_path);
        agent_pid = poolagentd_spawn(&(const AgentSpawn){
                .poolagentd = poolagentd_path,
                .config = conf_path,
                .config_dir = "",
                .log = log_path,
                .notify_socket = notify.path,
                .env = (const char *const[]){scenario, NULL},
        });
        wait_notify("READY=1", true);
}

static void agent_stop(void) {
        poolagentd_stop(&agent_pid, log_path, NULL);
}

/* Runs poolctl with args; returns its exit status and stdout; *ret_ms: how long it took. */
static int poolctl(const char *const *args, char **ret_out, int64_t *ret_ms) {
        return poolctl_run(
                &(const AgentPoolctl){
                        .poolctl = poolctl_path, .socket = socket_path, .wait_ms = WAIT_MS},
                args, ret_out, NULL, ret_ms);
}

/* poolctl --json status: the object key ("gpu", "jobs"); asserts that it answered promptly. */
static json_object *status_section(const char *key) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *section;
        int64_t ms;

        ck_assert_int_eq(poolctl((const char *const[]){"--json", "status", NULL}, &out, &ms), 0);
        ck_assert_msg(ms < POOLCTL_PROMPT_MS, "poolctl status took %lld ms", (long long)ms);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        section = json_object_object_get(json_object_object_get(o, "result"), key);
        ck_assert_msg(section != NULL, "no %s object in %s", key, out);
        json_object_get(section);
        json_object_put(o);
        return section;
}

static json_object *gpu_status(void) {
        return status_section("gpu");
}

/* The GPUs the job queue may give jobs ([Jobs] GPUs=auto). */
static int64_t job_gpus(void) {
        json_object *jobs = status_section("jobs");
        int64_t n = json_object_get_int64(json_object_object_get(jobs, "gpus"));

        json_object_put(jobs);
        return n;
}

static const char *jstr(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        return v ? json_object_get_string(v) : NULL;
}

static int64_t jint(json_object *o, const char *key) {
        json_object *v = json_object_object_get(o, key);
        ck_assert_msg(v != NULL, "no %s in %s", key, json_object_to_json_string(o));
        return json_object_get_int64(v);
}

/* The check named name about GPU index (-1: global), borrowed from gpu, or NULL. */
static json_object *find_check(json_object *gpu, const char *name, int index) {
        json_object *checks = json_object_object_get(gpu, "checks");

        for (size_t i = 0; checks && i < json_object_array_length(checks); i++) {
                json_object *c = json_object_array_get_idx(checks, i);
                json_object *g = json_object_object_get(c, "gpu");
                if (streq(jstr(c, "name"), name) &&
                    (index < 0 ? g == NULL : g && json_object_get_int(g) == index))
                        return c;
        }
        return NULL;
}

static json_object *
expect_check(json_object *gpu, const char *name, int index, const char *verdict) {
        json_object *c = find_check(gpu, name, index);

        ck_assert_msg(
                c, "no check %s for GPU %d in %s", name, index, json_object_to_json_string(gpu));
        ck_assert_msg(
                streq(jstr(c, "verdict"), verdict), "%s GPU %d is %s (%s), expected %s", name,
                index, jstr(c, "verdict"), jstr(c, "message"), verdict);
        return c;
}

/* Polls until the GPU state is want after at least min_reads finished reads; returns the gpu
 * object. */
static json_object *wait_gpu_state(const char *want, int64_t min_reads) {
        int64_t deadline = deadline_in_ms(WAIT_MS);

        for (;;) {
                json_object *gpu = gpu_status();

                if (streq(jstr(gpu, "state"), want) && jint(gpu, "reads") >= min_reads)
                        return gpu;
                ck_assert_msg(
                        left_ms(deadline) > 0, "GPU state still %s (%s, %lld reads), not %s",
                        jstr(gpu, "state"), jstr(gpu, "summary"), (long long)jint(gpu, "reads"),
                        want);
                json_object_put(gpu);
        }
}

static int64_t reads_now(void) {
        json_object *gpu = gpu_status();
        int64_t n = jint(gpu, "reads");

        json_object_put(gpu);
        return n;
}

/* poolctl --json health: its exit status and "result". */
static json_object *poolctl_health(int *ret_exit) {
        _cleanup_free_ char *out = NULL;
        json_object *o, *result;

        *ret_exit = poolctl((const char *const[]){"--json", "health", NULL}, &out, NULL);
        o = json_tokener_parse(out);
        ck_assert_msg(o != NULL, "not JSON: %s", out);
        result = json_object_object_get(o, "result");
        ck_assert_msg(result != NULL, "no result in %s", out);
        json_object_get(result);
        json_object_put(o);
        return result;
}

/* The health check of source "gpu" named name whose subject contains subject_part. */
static json_object *
find_health_check(json_object *health, const char *name, const char *subject_part) {
        json_object *checks = json_object_object_get(health, "checks");

        for (size_t i = 0; checks && i < json_object_array_length(checks); i++) {
                json_object *c = json_object_array_get_idx(checks, i);
                if (streq(jstr(c, "source"), "gpu") && streq(jstr(c, "name"), name) &&
                    strstr(jstr(c, "subject"), subject_part))
                        return c;
        }
        return NULL;
}

typedef struct Body {
        char *data;
        size_t len;
} Body;

static size_t body_write(char *p, size_t size, size_t n, void *userdata) {
        Body *b = userdata;
        char *d = realloc(b->data, b->len + size * n + 1);

        if (!d)
                return 0;
        memcpy(d + b->len, p, size * n);
        b->len += size * n;
        d[b->len] = '\0';
        b->data = d;
        return size * n;
}

/* GET http://ADDRESS/path from the agent's health endpoint (its address from poolctl status). */
static long http_get(const char *path, char **ret_body) {
        _cleanup_free_ char *out = NULL, *url = NULL;
        json_object *o, *http;
        Body body = {};
        long status = 0;
        CURL *curl;

        ck_assert_int_eq(poolctl((const char *const[]){"--json", "status", NULL}, &out, NULL), 0);
        o = json_tokener_parse(out);
        ck_assert_ptr_nonnull(o);
        http = json_object_object_get(
                json_object_object_get(json_object_object_get(o, "result"), "health"), "http");
        ck_assert_msg(http != NULL, "no health.http in %s", out);
        ck_assert_int_gt(asprintf(&url, "http://%s%s", json_object_get_string(http), path), 0);
        json_object_put(o);
        curl = curl_easy_init();
        ck_assert_ptr_nonnull(curl);
        (void)curl_easy_setopt(curl, CURLOPT_URL, url);
        (void)curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        (void)curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)POOLCTL_PROMPT_MS);
        (void)curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, body_write);
        (void)curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        ck_assert_int_eq(curl_easy_perform(curl), CURLE_OK);
        (void)curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(curl);
        *ret_body = body.data ? body.data : strdup("");
        return status;
}

/* promtool (Debian's prometheus) accepts the metrics; skipped without it (CI installs it). */
static void expect_promtool_accepts(const char *metrics) {
        char path[600], cmd[1400];
        int status;

        if (access("/usr/bin/promtool", X_OK) < 0) {
                fprintf(stderr, "promtool is missing: skipping the /metrics lint\n");
                return;
        }
        (void)snprintf(path, sizeof(path), "%s/metrics.txt", tmp);
        write_file(path, metrics);
        (void)snprintf(
                cmd, sizeof(cmd), "/usr/bin/promtool check metrics < '%s' > '%s.lint' 2>&1", path,
                path);
        status = system(cmd);
        if (status != 0) {
                (void)snprintf(cmd, sizeof(cmd), "cat '%s.lint' >&2", path);
                (void)system(cmd);
        }
        ck_assert_msg(status == 0, "promtool check metrics failed (status 0x%x)", status);
}

static void expect_gpu_identity(json_object *c, int index) {
        char uuid[64], pci[32];

        (void)snprintf(uuid, sizeof(uuid), "GPU-fa4e0000-0000-4000-8000-%012d", index);
        (void)snprintf(pci, sizeof(pci), "00000000:%02X:00.0", index + 1);
        ck_assert_str_eq(jstr(c, "uuid"), uuid);
        ck_assert_str_eq(jstr(c, "pci_bus_id"), pci);
        ck_assert_ptr_nonnull(strstr(jstr(c, "subject"), uuid));
}

/* ---- fixture -------------------------------------------------------------------------------- */

static void setup(void) {
        char notify_path[600];

        tmp = agent_harness_mkdtemp("/tmp/test-agent-gpu-XXXXXX", 0);
        (void)snprintf(conf_path, sizeof(conf_path), "%s/poolagent.conf", tmp);
        (void)snprintf(socket_path, sizeof(socket_path), "%s/run/control.sock", tmp);
        (void)snprintf(log_path, sizeof(log_path), "%s/agent.log", tmp);
        (void)snprintf(scenario_path, sizeof(scenario_path), "%s/scenario.ini", tmp);
        (void)snprintf(notify_path, sizeof(notify_path), "%s/notify", tmp);
        agent_notify_open(&notify, notify_path, WAIT_MS);
}

static void teardown(void) {
        agent_stop();
        agent_notify_close(&notify);
        agent_harness_rm_rf(&tmp);
}

/* ---- tests ---------------------------------------------------------------------------------- */

START_TEST(test_healthy) {
        json_object *gpu;

        write_file(scenario_path, "[nvml]\ncount=4\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        gpu = wait_gpu_state("ok", 1);
        ck_assert_int_eq(jint(gpu, "count"), 4);
        ck_assert_int_eq(jint(gpu, "expected"), 4);
        ck_assert_int_eq(job_gpus(), 4); /* [Jobs] GPUs=auto: ExpectedGPUs= */
        ck_assert_str_eq(jstr(gpu, "driver_version"), "550.54.15");
        ck_assert_str_eq(jstr(gpu, "library"), fake_nvml_path);
        expect_check(gpu, "gpu_nvml", -1, "ok");
        expect_check(gpu, "gpu_devices", -1, "ok");
        for (int i = 0; i < 4; i++) {
                expect_gpu_identity(expect_check(gpu, "gpu_lost", i, "ok"), i);
                expect_check(gpu, "gpu_ecc_uncorrected_volatile", i, "ok");
                expect_check(gpu, "gpu_xid", i, "ok");
                expect_check(gpu, "gpu_temperature_celsius", i, "ok");
                expect_check(gpu, "gpu_memory_used_bytes", i, "ok");
        }
        json_object_put(gpu);

        /* The same checks in the one health state: poolctl health, /health, /metrics. */
        {
                _cleanup_free_ char *body = NULL;
                json_object *health;
                int exit_status;

                wait_notify("health: healthy", false);
                health = poolctl_health(&exit_status);
                ck_assert_int_eq(exit_status, 0);
                ck_assert_ptr_nonnull(find_health_check(health, "gpu_devices", ""));
                ck_assert_str_eq(
                        jstr(find_health_check(
                                     health, "gpu_lost",
                                     "GPU 3 (GPU-fa4e0000-0000-4000-8000-000000000003, 00000000:04:00.0)"),
                             "verdict"),
                        "ok");
                json_object_put(health);
                ck_assert_int_eq(http_get("/health", &body), 200);
                free(body);
                ck_assert_int_eq(http_get("/metrics", &body), 200);
                ck_assert_ptr_nonnull(strstr(body, "poolagent_gpu_devices{subject=\"\"} 4\n"));
                ck_assert_ptr_nonnull(strstr(
                        body,
                        "poolagent_gpu_temperature_celsius{subject=\"GPU 0 (GPU-fa4e0000-0000-4000-8000-000000000000, 00000000:01:00.0)\"} 40\n"));
                ck_assert_ptr_nonnull(strstr(
                        body,
                        "poolagent_health_check_status{source=\"gpu\",check=\"gpu_xid\",subject=\"GPU 1 (GPU-fa4e0000-0000-4000-8000-000000000001, 00000000:02:00.0)\"} 0\n"));
                expect_promtool_accepts(body);
        }
}
END_TEST

START_TEST(test_gpu_lost_while_running) {
        json_object *gpu, *c;

        write_file(scenario_path, "[nvml]\ncount=4\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        json_object_put(wait_gpu_state("ok", 1));

        write_file(scenario_path, "[nvml]\ncount=4\n[gpu2]\nlost=yes\n");
        gpu = wait_gpu_state("unhealthy", 2);
        c = expect_check(gpu, "gpu_lost", 2, "unhealthy");
        ck_assert_str_eq(jstr(c, "signal"), "gpu_is_lost");
        expect_gpu_identity(c, 2); /* NVML no longer tells them: remembered */
        expect_check(gpu, "gpu_lost", 1, "ok");
        expect_check(gpu, "gpu_lost", 3, "ok");
        json_object_put(gpu);
        wait_notify(
                "health: UNHEALTHY: gpu_lost GPU 2 (GPU-fa4e0000-0000-4000-8000-000000000002, 00000000:03:00.0)",
                false);
        {
                _cleanup_free_ char *body = NULL;
                json_object *health = NULL;
                int exit_status;

                health = poolctl_health(&exit_status);
                ck_assert_int_eq(exit_status, 1); /* a Slurm HealthCheckProgram fails the node */
                ck_assert_str_eq(
                        jstr(find_health_check(
                                     health, "gpu_lost",
                                     "GPU 2 (GPU-fa4e0000-0000-4000-8000-000000000002"),
                             "verdict"),
                        "unhealthy");
                json_object_put(health);
                ck_assert_int_eq(http_get("/health", &body), 503);
                free(body);
                ck_assert_int_eq(http_get("/metrics", &body), 200);
                ck_assert_ptr_nonnull(strstr(
                        body,
                        "poolagent_health_check_status{source=\"gpu\",check=\"gpu_lost\",subject=\"GPU 2 (GPU-fa4e0000-0000-4000-8000-000000000002, 00000000:03:00.0)\"} 2\n"));
                free(body);
                body = NULL;
                ck_assert_int_eq(http_get("/status", &body), 200);
                ck_assert_ptr_nonnull(strstr(body, "GPU_IS_LOST"));
        }
}
END_TEST

START_TEST(test_xid_79) {
        json_object *gpu, *c;
        int64_t reads;

        write_file(scenario_path, "[nvml]\ncount=4\n[gpu1]\nxid=79\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        gpu = wait_gpu_state("unhealthy", 1);
        c = expect_check(gpu, "gpu_xid", 1, "unhealthy");
        ck_assert_str_eq(jstr(c, "signal"), "xid_79");
        ck_assert_ptr_nonnull(strstr(jstr(c, "message"), "fallen off the bus"));
        expect_gpu_identity(c, 1);
        expect_check(gpu, "gpu_xid", 0, "ok");
        json_object_put(gpu);

        /* The event is not repeated; the verdict stays until the agent restarts. */
        write_file(scenario_path, "[nvml]\ncount=4\n");
        reads = reads_now();
        gpu = wait_gpu_state("unhealthy", reads + 2);
        expect_check(gpu, "gpu_xid", 1, "unhealthy");
        json_object_put(gpu);
}
END_TEST

START_TEST(test_uncorrectable_ecc) {
        json_object *gpu, *c;

        write_file(scenario_path, "[nvml]\ncount=4\n[gpu0]\necc_uncorrected=3\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        gpu = wait_gpu_state("unhealthy", 1);
        c = expect_check(gpu, "gpu_ecc_uncorrected_volatile", 0, "unhealthy");
        ck_assert_int_eq(jint(c, "value"), 3);
        ck_assert_str_eq(jstr(c, "unit"), "count");
        expect_gpu_identity(c, 0);
        expect_check(gpu, "gpu_ecc_uncorrected_volatile", 1, "ok");
        json_object_put(gpu);
}
END_TEST

START_TEST(test_fewer_than_expected) {
        json_object *gpu, *c;

        write_file(scenario_path, "[nvml]\ncount=3\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        gpu = wait_gpu_state("unhealthy", 1);
        c = expect_check(gpu, "gpu_devices", -1, "unhealthy");
        ck_assert_int_eq(jint(c, "value"), 3);
        ck_assert_int_eq(jint(c, "threshold_unhealthy"), 4);
        ck_assert_ptr_nonnull(strstr(jstr(c, "message"), "3 GPUs found, 4 expected"));
        json_object_put(gpu);
}
END_TEST

START_TEST(test_nvml_missing) {
        _cleanup_free_ char *out = NULL;
        char lib[600];
        json_object *gpu, *c;

        /* The library path points into an empty directory: no NVML on this VM. */
        (void)snprintf(lib, sizeof(lib), "%s/empty", tmp);
        ck_assert_int_eq(mkdir(lib, 0755), 0);
        (void)snprintf(lib, sizeof(lib), "%s/empty/libnvidia-ml.so.1", tmp);
        write_file(scenario_path, "[nvml]\ncount=4\n");
        write_conf("ExpectedGPUs=none", NULL, lib);
        agent_start();
        gpu = wait_gpu_state("ok", 1);
        c = expect_check(gpu, "gpu_nvml", -1, "ok");
        ck_assert_str_eq(jstr(c, "signal"), "not_installed");
        ck_assert_ptr_null(find_check(gpu, "gpu_devices", -1));
        json_object_put(gpu);

        /* GPUs expected after a reload: the same missing library is now a fault. */
        write_conf("ExpectedGPUs=2", NULL, lib);
        ck_assert_int_eq(poolctl((const char *const[]){"reload", NULL}, &out, NULL), 0);
        gpu = wait_gpu_state("unhealthy", 1);
        expect_check(gpu, "gpu_nvml", -1, "unhealthy");
        c = expect_check(gpu, "gpu_devices", -1, "unhealthy");
        ck_assert_int_eq(jint(c, "value"), 0);
        json_object_put(gpu);
}
END_TEST

START_TEST(test_nvml_hangs) {
        json_object *gpu, *c;

        /* Every nvmlDeviceGetCount_v2 blocks for 8 s; GPUTimeout=2s. */
        write_file(scenario_path, "[nvml]\ncount=4\nhang_ms=8000\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        gpu = wait_gpu_state("unhealthy", 0); /* every poolctl status answered promptly */
        c = expect_check(gpu, "gpu_nvml", -1, "unhealthy");
        ck_assert_str_eq(jstr(c, "signal"), "timeout");
        ck_assert(json_object_get_boolean(json_object_object_get(gpu, "read_running")));
        ck_assert(json_object_get_boolean(json_object_object_get(gpu, "timed_out")));
        json_object_put(gpu);
        /* The agent stops while its worker is still inside NVML (teardown checks exit 0). */
}
END_TEST

/* A stop during a read that ends within GPU_STOP_WAIT_MS (2 s) waits for it and joins the worker
 * instead of leaving a thread inside NVML (under LeakSanitizer such a thread's buffers were
 * reported as leaks, failing the agent's exit status). */
START_TEST(test_stop_waits_for_short_read) {
        _cleanup_free_ char *log = NULL;
        int64_t deadline = agent_harness_deadline(WAIT_MS);
        bool running = false;
        FILE *f;

        write_file(scenario_path, "[nvml]\ncount=4\nhang_ms=1200\n");
        write_conf("ExpectedGPUs=4", NULL, NULL);
        agent_start();
        while (!running) {
                json_object *gpu = gpu_status();

                running = json_object_get_boolean(json_object_object_get(gpu, "read_running"));
                json_object_put(gpu);
                ck_assert_msg(running || agent_harness_left_ms(deadline) > 0, "no read running");
        }
        agent_stop(); /* checks exit 0 */
        f = fopen(log_path, "re");
        ck_assert_ptr_nonnull(f);
        log = calloc(1, 65536);
        ck_assert_ptr_nonnull(log);
        (void)fread(log, 1, 65535, f);
        (void)fclose(f);
        ck_assert_msg(
                !strstr(log, "still waiting on NVML"), "the stop left the read behind:\n%s", log);
}
END_TEST

START_TEST(test_expected_from_vm_size) {
        _cleanup_(emu_instance_freep) EmuInstance *emu = NULL;
        const char *body = "{\"vmSize\":\"Standard_NC96ads_A100_v4\"}";
        const char *headers[] = {"Content-Type: application/json", NULL};
        EmuHttpResult res = {};
        char agent[600];
        json_object *gpu, *c;

        ck_assert_int_eq(emu_instance_start(NULL, NULL, &emu), 0);
        ck_assert_int_eq(
                emu_http(
                        emu, "PUT", "imds:/__emu/instance", headers, body, strlen(body),
                        EMU_AUTH_MODE_NONE, &res),
                0);
        ck_assert_msg(res.status == 200, "PUT /__emu/instance: %ld %s", res.status, res.body);
        emu_http_result_clear(&res);

        /* NC96ads_A100_v4 has 4 GPUs; the fake shows 3. */
        write_file(scenario_path, "[nvml]\ncount=3\n");
        (void)snprintf(agent, sizeof(agent), "MetadataEndpoint=%s", emu->imds_url);
        write_conf("ExpectedGPUs=auto", agent, NULL);
        agent_start();
        gpu = wait_gpu_state("unhealthy", 1);
        ck_assert_int_eq(jint(gpu, "expected"), 4);
        ck_assert_str_eq(jstr(gpu, "vm_size"), "Standard_NC96ads_A100_v4");
        c = expect_check(gpu, "gpu_devices", -1, "unhealthy");
        ck_assert_ptr_nonnull(strstr(jstr(c, "message"), "Standard_NC96ads_A100_v4"));
        json_object_put(gpu);
        /* [Jobs] GPUs=auto with ExpectedGPUs=auto: the GPUs NVML found, not the VM size's. */
        ck_assert_int_eq(job_gpus(), 3);
        agent_stop();
}
END_TEST

START_TEST(test_silent_metadata_service) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        int64_t deadline = deadline_in_ms(WAIT_MS);
        char agent[600];
        int fd;

        /* A metadata service that takes the connection and never answers: the VM size stays
         * unknown, and the wait for it (after each reading) never counts as NVML hanging. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        ck_assert_int_eq(listen(fd, 64), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        (void)snprintf(
                agent, sizeof(agent), "MetadataEndpoint=http://127.0.0.1:%u", ntohs(sa.sin_port));
        write_file(scenario_path, "[nvml]\ncount=4\n");
        write_conf("ExpectedGPUs=auto", agent, NULL);
        agent_start();
        for (;;) {
                json_object *gpu = gpu_status(), *c = find_check(gpu, "gpu_nvml", -1);
                bool done = jint(gpu, "reads") >= 4;

                ck_assert(!json_object_get_boolean(json_object_object_get(gpu, "timed_out")));
                ck_assert_msg(!c || !streq(jstr(c, "signal"), "timeout"), "%s", jstr(c, "message"));
                if (done) {
                        ck_assert_ptr_nonnull(
                                strstr(jstr(gpu, "expected_source"), "VM size not known yet"));
                        ck_assert_str_eq(jstr(gpu, "state"), "ok"); /* count unknown: not a fault */
                }
                json_object_put(gpu);
                if (done)
                        break;
                ck_assert_msg(left_ms(deadline) > 0, "fewer than 4 reads within %d ms", WAIT_MS);
        }
        agent_stop();
        (void)close(fd);
}
END_TEST

int main(int argc, char *argv[]) {
        Suite *s;
        TCase *tc;
        SRunner *sr;
        int failed;

        if (argc < 4) {
                fprintf(stderr, "usage: %s POOLAGENTD POOLCTL FAKE-LIBNVIDIA-ML\n", argv[0]);
                return EXIT_FAILURE;
        }
        poolagentd_path = argv[1];
        poolctl_path = argv[2];
        /* meson may pass it relative to the build directory; NVMLLibrary= is absolute. */
        fake_nvml_path = realpath(argv[3], NULL);
        if (!fake_nvml_path) {
                fprintf(stderr, "%s: %m\n", argv[3]);
                return EXIT_FAILURE;
        }

        s = suite_create("agent-gpu");
        tc = tcase_create("gpu");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_healthy);
        tcase_add_test(tc, test_gpu_lost_while_running);
        tcase_add_test(tc, test_xid_79);
        tcase_add_test(tc, test_uncorrectable_ecc);
        tcase_add_test(tc, test_fewer_than_expected);
        tcase_add_test(tc, test_nvml_missing);
        tcase_add_test(tc, test_nvml_hangs);
        tcase_add_test(tc, test_stop_waits_for_short_read);
        tcase_add_test(tc, test_expected_from_vm_size);
        tcase_add_test(tc, test_silent_metadata_service);
        suite_add_tcase(s, tc);
        sr = srunner_create(s);
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        free(fake_nvml_path);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
