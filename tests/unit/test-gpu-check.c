/* SPDX-License-Identifier: MIT */
/* The GPU check's pure parts: the VM size table, ExpectedGPUs= parsing, the Xid list and history,
 * and the verdicts gpu_evaluate() gives for NVML readings (healthy, fewer or more GPUs, lost,
 * uncorrectable ECC, pending retirement, row remap failure/pending, temperature, throttling, a
 * critical Xid, no NVML with and without GPUs expected, a read that timed out, unsupported
 * readings). Then the loader and reader (gpu-nvml.c) against the fake libnvidia-ml.so.1
 * (argv[1]) through dlopen, the way the agent uses it: ABI, return codes and units round trip. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "conf.h"
#include "gpu-check.h"
#include "gpu-nvml.h"

static const char *fake_library;

/* ---- helpers -------------------------------------------------------------------------------- */

static GpuSnapshot *healthy_snapshot(unsigned n) {
        GpuSnapshot *s = calloc(1, sizeof(*s));

        ck_assert_ptr_nonnull(s);
        (void)snprintf(s->driver_version, sizeof(s->driver_version), "550.54.15");
        s->count = s->n_gpus = n;
        for (unsigned i = 0; i < n; i++) {
                GpuReading *g = &s->gpus[i];
                g->index = i;
                (void)snprintf(g->uuid, sizeof(g->uuid), "GPU-%u", i);
                (void)snprintf(g->pci_bus_id, sizeof(g->pci_bus_id), "00000000:%02X:00.0", i + 1);
                (void)snprintf(g->name, sizeof(g->name), "NVIDIA A100");
                g->temp_c = 40;
                g->slowdown_c = 90;
                g->shutdown_c = 95;
                g->memory_total = 80ULL << 30;
                g->memory_used = 1ULL << 30;
                g->throttle_reasons = (uint64_t)nvmlClocksThrottleReasonGpuIdle;
        }
        return s;
}

typedef struct Eval {
        GpuCheck checks[GPU_CHECKS_MAX];
        unsigned n;
        GpuVerdict overall;
} Eval;

static Eval *
evaluate(const GpuSnapshot *s, int expected, const GpuXidHistory *xids, bool timed_out) {
        Eval *e = calloc(1, sizeof(*e));
        GpuEvalInput in = {
                .snapshot = s,
                .expected = expected,
                .expected_source = "test",
                .xids = xids,
                .timed_out = timed_out,
                .timeout_ms = 2000,
        };

        ck_assert_ptr_nonnull(e);
        e->n = gpu_evaluate(&in, e->checks, &e->overall);
        ck_assert_uint_le(e->n, GPU_CHECKS_MAX);
        return e;
}

/* The check named name about GPU index (-1: global), or NULL. */
static const GpuCheck *find(const Eval *e, const char *name, int index) {
        for (unsigned i = 0; i < e->n; i++)
                if (streq(e->checks[i].name, name) && e->checks[i].gpu_index == index)
                        return &e->checks[i];
        return NULL;
}

static void assert_check(const Eval *e, const char *name, int index, GpuVerdict v) {
        const GpuCheck *c = find(e, name, index);

        ck_assert_msg(c, "no check %s for GPU %d", name, index);
        ck_assert_msg(
                c->verdict == v, "%s GPU %d: %s, expected %s (%s)", name, index,
                gpu_verdict_to_string(c->verdict), gpu_verdict_to_string(v), c->message);
}

/* ---- tables and parsers --------------------------------------------------------------------- */

START_TEST(test_vm_sizes) {
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NC24ads_A100_v4"), 1);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NC96ads_A100_v4"), 4);
        ck_assert_int_eq(gpu_expected_for_vm_size("standard_nd96isr_h100_v5"), 8);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_ND96asr_v4"), 8);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NC4as_T4_v3"), 1);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NC64as_T4_v3"), 4);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NV36ads_A10_v5"), 1);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NV72ads_A10_v5"), 2);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NC6s_v3"), 1);
        /* Other families have no GPU; an unknown N size is unknown. */
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_D4s_v5"), 0);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_E64s_v5"), 0);
        ck_assert_int_eq(gpu_expected_for_vm_size("Standard_NX99_v9"), GPU_EXPECTED_UNKNOWN);
        ck_assert_int_eq(gpu_expected_for_vm_size(""), GPU_EXPECTED_UNKNOWN);
        ck_assert_int_eq(gpu_expected_for_vm_size(NULL), GPU_EXPECTED_UNKNOWN);
}
END_TEST

START_TEST(test_parse_expected) {
        const char *reason = NULL;
        int v = 99;

        ck_assert_int_eq(conf_parse_expected_gpus("auto", &v, NULL, &reason), 0);
        ck_assert_int_eq(v, GPU_EXPECTED_AUTO);
        ck_assert_int_eq(conf_parse_expected_gpus("none", &v, NULL, &reason), 0);
        ck_assert_int_eq(v, GPU_EXPECTED_NONE);
        ck_assert_int_eq(conf_parse_expected_gpus("8", &v, NULL, &reason), 0);
        ck_assert_int_eq(v, 8);
        ck_assert_int_eq(conf_parse_expected_gpus("0", &v, NULL, &reason), 0);
        ck_assert_int_eq(v, 0);
        v = 5;
        ck_assert_int_eq(conf_parse_expected_gpus("-1", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_expected_gpus("4x", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_expected_gpus("", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_expected_gpus("65", &v, NULL, &reason), -ERANGE);
        ck_assert_int_eq(
                conf_parse_expected_gpus("99999999999999999999", &v, NULL, &reason), -ERANGE);
        ck_assert_int_eq(v, 5); /* untouched on failure */
        ck_assert_ptr_nonnull(reason);
}
END_TEST

START_TEST(test_parse_endpoint) {
        const char *reason = NULL;
        char *v = NULL;

        ck_assert_int_eq(conf_parse_endpoint("http://169.254.169.254", &v, NULL, &reason), 0);
        ck_assert_str_eq(v, "http://169.254.169.254");
        ck_assert_int_eq(conf_parse_endpoint("http://127.0.0.1:8080/", &v, NULL, &reason), 0);
        ck_assert_str_eq(v, "http://127.0.0.1:8080");
        ck_assert_int_eq(conf_parse_endpoint("", &v, NULL, &reason), 0);
        ck_assert_ptr_null(v);
        ck_assert_int_eq(conf_parse_endpoint("ftp://x", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_endpoint("http://h/metadata", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_endpoint("http://user@h", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_endpoint("http://", &v, NULL, &reason), -EINVAL);
        ck_assert_int_eq(conf_parse_endpoint("http://h?x", &v, NULL, &reason), -EINVAL);
        ck_assert_ptr_null(v);
}
END_TEST

START_TEST(test_xids) {
        GpuXidHistory h = {};
        const GpuXidEvent ev[] = {
                {.gpu_index = 1, .xid = 79},  {.gpu_index = 1, .xid = 79},
                {.gpu_index = 1, .xid = 48},  {.gpu_index = 0, .xid = 13},
                {.gpu_index = -1, .xid = 95}, {.gpu_index = 500, .xid = 94},
        };

        ck_assert(gpu_xid_is_critical(79));
        ck_assert(gpu_xid_is_critical(48));
        ck_assert(gpu_xid_is_critical(95));
        ck_assert(!gpu_xid_is_critical(13));
        ck_assert(!gpu_xid_is_critical(43));
        ck_assert_str_eq(gpu_xid_describe(79), "GPU has fallen off the bus");
        ck_assert_ptr_null(gpu_xid_describe(4242));

        gpu_xid_history_add(&h, ev, ELEMENTSOF(ev));
        ck_assert_uint_eq(h.n[1], 2); /* 79 once, then 48 */
        ck_assert_uint_eq(h.xids[1][0], 79);
        ck_assert_uint_eq(h.xids[1][1], 48);
        ck_assert_uint_eq(h.n[0], 0);
        ck_assert_uint_eq(h.n_other, 1);
        ck_assert_uint_eq(h.last_other, 13);
        ck_assert_uint_eq(h.n[GPU_MAX], 2); /* unmatched devices */
}
END_TEST

/* ---- verdicts ------------------------------------------------------------------------------- */

START_TEST(test_healthy) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(4);
        _cleanup_free_ Eval *e = NULL;
        const GpuCheck *c;

        s->gpus[1].memory_v2 = true;
        s->gpus[1].memory_reserved = 480ULL << 20;
        e = evaluate(s, 4, NULL, false);

        ck_assert_int_eq(e->overall, GPU_VERDICT_OK);
        assert_check(e, "gpu_nvml", -1, GPU_VERDICT_OK);
        assert_check(e, "gpu_devices", -1, GPU_VERDICT_OK);
        c = find(e, "gpu_driver", -1);
        ck_assert_ptr_nonnull(c);
        ck_assert_ptr_nonnull(strstr(c->message, "550.54.15"));
        for (int i = 0; i < 4; i++) {
                assert_check(e, "gpu_lost", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_ecc_uncorrected_volatile", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_retired_pages_pending", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_row_remap_failure", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_row_remap_pending", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_xid", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_temperature_celsius", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_throttle_reasons", i, GPU_VERDICT_OK);
                assert_check(e, "gpu_memory_used_bytes", i, GPU_VERDICT_OK);
        }
        c = find(e, "gpu_lost", 2);
        ck_assert_str_eq(c->uuid, "GPU-2");
        ck_assert_str_eq(c->pci_bus_id, "00000000:03:00.0");
        ck_assert_str_eq(c->subject, "GPU 2 (GPU-2, 00000000:03:00.0)");
        c = find(e, "gpu_memory_used_bytes", 0);
        ck_assert(c->has_value);
        ck_assert(c->value == (double)(1ULL << 30));
        ck_assert_str_eq(c->unit, "bytes");
        ck_assert_str_eq(c->message, "1024 MiB of 81920 MiB in use");
        c = find(e, "gpu_memory_used_bytes", 1);
        ck_assert(c->value == (double)(1ULL << 30));
        ck_assert_str_eq(
                c->message, "1024 MiB of 81920 MiB in use (480 MiB reserved by the driver)");
        c = find(e, "gpu_temperature_celsius", 0);
        ck_assert(c->value == 40 && c->threshold_warning == 90 && c->threshold_unhealthy == 95);
        ck_assert_str_eq(c->unit, "celsius");
}
END_TEST

START_TEST(test_count) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(3);
        _cleanup_free_ Eval *fewer = evaluate(s, 4, NULL, false);
        _cleanup_free_ Eval *more = evaluate(s, 2, NULL, false);
        _cleanup_free_ Eval *none = evaluate(s, GPU_EXPECTED_NONE, NULL, false);
        _cleanup_free_ Eval *unknown = evaluate(s, GPU_EXPECTED_UNKNOWN, NULL, false);
        const GpuCheck *c;

        ck_assert_int_eq(fewer->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(fewer, "gpu_devices", -1, GPU_VERDICT_UNHEALTHY);
        c = find(fewer, "gpu_devices", -1);
        ck_assert(c->has_value && c->value == 3 && c->threshold_unhealthy == 4);
        ck_assert_ptr_nonnull(strstr(c->message, "3 GPUs found, 4 expected"));
        ck_assert_int_eq(more->overall, GPU_VERDICT_WARNING);
        assert_check(more, "gpu_devices", -1, GPU_VERDICT_WARNING);
        ck_assert_int_eq(none->overall, GPU_VERDICT_OK);
        assert_check(unknown, "gpu_devices", -1, GPU_VERDICT_UNKNOWN);
        ck_assert_int_eq(unknown->overall, GPU_VERDICT_OK); /* unknown alone does not count */
}
END_TEST

START_TEST(test_lost) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(4);
        _cleanup_free_ Eval *e = NULL, *e2 = NULL;
        const GpuCheck *c;

        /* The handle came, the calls on it say lost. */
        s->gpus[2].uuid_ret = NVML_ERROR_GPU_IS_LOST;
        s->gpus[2].temp_ret = NVML_ERROR_GPU_IS_LOST;
        e = evaluate(s, 4, NULL, false);
        ck_assert_int_eq(e->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_lost", 2, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_lost", 1, GPU_VERDICT_OK);
        c = find(e, "gpu_lost", 2);
        ck_assert_str_eq(c->signal, "gpu_is_lost");
        ck_assert_str_eq(c->pci_bus_id, "00000000:03:00.0");
        ck_assert_ptr_null(find(e, "gpu_temperature_celsius", 2)); /* nothing more read from it */

        /* No handle at all. */
        s->gpus[2] = (GpuReading){.index = 2, .handle_ret = NVML_ERROR_GPU_IS_LOST};
        e2 = evaluate(s, 4, NULL, false);
        assert_check(e2, "gpu_lost", 2, GPU_VERDICT_UNHEALTHY);
        ck_assert_str_eq(
                find(e2, "gpu_lost", 2)->subject, "GPU 2 (UUID unknown, PCI bus id unknown)");
}
END_TEST

START_TEST(test_memory_errors) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(4);
        _cleanup_free_ Eval *e = NULL;
        const GpuCheck *c;

        s->gpus[0].ecc_uncorrected_volatile = 2;
        s->gpus[1].retired_pending = true;
        s->gpus[2].remap_failure = true;
        s->gpus[3].remap_pending = true;
        e = evaluate(s, 4, NULL, false);
        ck_assert_int_eq(e->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_ecc_uncorrected_volatile", 0, GPU_VERDICT_UNHEALTHY);
        c = find(e, "gpu_ecc_uncorrected_volatile", 0);
        ck_assert(c->value == 2);
        ck_assert_str_eq(c->unit, "count");
        assert_check(e, "gpu_retired_pages_pending", 1, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_row_remap_failure", 2, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_row_remap_pending", 3, GPU_VERDICT_WARNING);
        assert_check(e, "gpu_row_remap_failure", 3, GPU_VERDICT_OK);
}
END_TEST

START_TEST(test_not_supported) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(1);
        _cleanup_free_ Eval *e = NULL;

        /* A board without ECC (NOT_SUPPORTED) or a library without row remapping
         * (FUNCTION_NOT_FOUND) gives no check for them; other errors give an unknown one. */
        s->gpus[0].ecc_ret = NVML_ERROR_NOT_SUPPORTED;
        s->gpus[0].remap_ret = NVML_ERROR_FUNCTION_NOT_FOUND; /* a driver older than R450 */
        s->gpus[0].retired_ret = NVML_ERROR_NO_PERMISSION;
        e = evaluate(s, 1, NULL, false);
        ck_assert_int_eq(e->overall, GPU_VERDICT_OK);
        ck_assert_ptr_null(find(e, "gpu_ecc_uncorrected_volatile", 0));
        ck_assert_ptr_null(find(e, "gpu_row_remap_failure", 0));
        assert_check(e, "gpu_retired_pages_pending", 0, GPU_VERDICT_UNKNOWN);
        ck_assert_ptr_nonnull(
                strstr(find(e, "gpu_retired_pages_pending", 0)->message, "NO_PERMISSION"));
}
END_TEST

START_TEST(test_temperature_and_throttle) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(3);
        _cleanup_free_ Eval *e = NULL;

        s->gpus[0].temp_c = 90; /* at slowdown */
        s->gpus[1].temp_c = 96; /* past shutdown */
        s->gpus[2].throttle_reasons =
                (uint64_t)(nvmlClocksThrottleReasonSwPowerCap | nvmlClocksThrottleReasonHwPowerBrakeSlowdown);
        e = evaluate(s, 3, NULL, false);
        assert_check(e, "gpu_temperature_celsius", 0, GPU_VERDICT_WARNING);
        assert_check(e, "gpu_temperature_celsius", 1, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_throttle_reasons", 2, GPU_VERDICT_WARNING);
        ck_assert_str_eq(find(e, "gpu_throttle_reasons", 2)->signal, "hw_power_brake_slowdown");
        ck_assert_ptr_nonnull(strstr(find(e, "gpu_throttle_reasons", 2)->message, "sw_power_cap"));
        /* Power capping alone is normal under load. */
        assert_check(e, "gpu_throttle_reasons", 0, GPU_VERDICT_OK);
        s->gpus[0].throttle_reasons = (uint64_t)nvmlClocksThrottleReasonSwPowerCap;
        free(e);
        e = evaluate(s, 3, NULL, false);
        assert_check(e, "gpu_throttle_reasons", 0, GPU_VERDICT_OK);
}
END_TEST

START_TEST(test_xid_verdict) {
        _cleanup_free_ GpuSnapshot *s = healthy_snapshot(2);
        _cleanup_free_ Eval *e = NULL;
        GpuXidHistory h = {};
        const GpuXidEvent ev[] = {
                {.gpu_index = 1, .xid = 48},
                {.gpu_index = 1, .xid = 79},
                {.gpu_index = 0, .xid = 31}};
        const GpuCheck *c;

        gpu_xid_history_add(&h, ev, ELEMENTSOF(ev));
        e = evaluate(s, 2, &h, false);
        ck_assert_int_eq(e->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_xid", 1, GPU_VERDICT_UNHEALTHY);
        assert_check(e, "gpu_xid", 0, GPU_VERDICT_OK);
        c = find(e, "gpu_xid", 1);
        ck_assert_str_eq(c->signal, "xid_79");
        ck_assert(c->value == 79);
        ck_assert_ptr_nonnull(strstr(c->message, "fallen off the bus"));
        ck_assert_ptr_nonnull(strstr(c->message, "also 48"));
        assert_check(e, "gpu_xid_other_events", -1, GPU_VERDICT_OK);
        ck_assert_str_eq(find(e, "gpu_xid_other_events", -1)->signal, "xid_31");

        /* Events not watched: unknown, not ok. */
        s->events_ret = NVML_ERROR_NOT_SUPPORTED;
        free(e);
        e = evaluate(s, 2, NULL, false);
        assert_check(e, "gpu_xid", 0, GPU_VERDICT_UNKNOWN);
}
END_TEST

START_TEST(test_no_nvml) {
        _cleanup_free_ GpuSnapshot *s = calloc(1, sizeof(GpuSnapshot));
        _cleanup_free_ Eval *none = NULL, *four = NULL, *unknown = NULL, *init = NULL;

        s->load_error = -ENOENT;
        (void)snprintf(
                s->load_detail, sizeof(s->load_detail),
                "libnvidia-ml.so.1: cannot open shared object file");
        none = evaluate(s, GPU_EXPECTED_NONE, NULL, false);
        ck_assert_int_eq(none->overall, GPU_VERDICT_OK);
        assert_check(none, "gpu_nvml", -1, GPU_VERDICT_OK);
        ck_assert_str_eq(find(none, "gpu_nvml", -1)->signal, "not_installed");
        ck_assert_ptr_null(find(none, "gpu_devices", -1));

        four = evaluate(s, 4, NULL, false);
        ck_assert_int_eq(four->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(four, "gpu_nvml", -1, GPU_VERDICT_UNHEALTHY);
        assert_check(four, "gpu_devices", -1, GPU_VERDICT_UNHEALTHY);

        unknown = evaluate(s, GPU_EXPECTED_UNKNOWN, NULL, false);
        ck_assert_int_eq(unknown->overall, GPU_VERDICT_UNKNOWN);

        s->load_error = 0;
        s->init_ret = NVML_ERROR_DRIVER_NOT_LOADED;
        init = evaluate(s, 2, NULL, false);
        assert_check(init, "gpu_nvml", -1, GPU_VERDICT_UNHEALTHY);
        ck_assert_ptr_nonnull(strstr(find(init, "gpu_nvml", -1)->message, "DRIVER_NOT_LOADED"));
}
END_TEST

START_TEST(test_timed_out_and_unread) {
        _cleanup_free_ Eval *t = evaluate(NULL, 4, NULL, true);
        _cleanup_free_ Eval *u = evaluate(NULL, 4, NULL, false);

        ck_assert_int_eq(t->overall, GPU_VERDICT_UNHEALTHY);
        assert_check(t, "gpu_nvml", -1, GPU_VERDICT_UNHEALTHY);
        ck_assert_str_eq(find(t, "gpu_nvml", -1)->signal, "timeout");
        ck_assert_int_eq(u->overall, GPU_VERDICT_UNKNOWN);
}
END_TEST

START_TEST(test_return_names) {
        ck_assert_str_eq(nvml_return_to_string(NVML_SUCCESS), "SUCCESS");
        ck_assert_str_eq(nvml_return_to_string(15), "GPU_IS_LOST");
        ck_assert_str_eq(nvml_return_to_string(3), "NOT_SUPPORTED");
        ck_assert_str_eq(nvml_return_to_string(999), "UNKNOWN");
        ck_assert_ptr_null(nvml_return_to_string(500));
        ck_assert_ptr_null(nvml_return_to_string(-1));
}
END_TEST

/* ---- the reader against the fake library ---------------------------------------------------- */

static char scenario_path[] = "/tmp/test-gpu-check-XXXXXX";

static void write_scenario(const char *text) {
        int fd = mkstemp(scenario_path);
        FILE *f;

        ck_assert_int_ge(fd, 0);
        f = fdopen(fd, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_int_eq(setenv("FAKE_NVML_SCENARIO", scenario_path, 1), 0);
}

START_TEST(test_session_fake) {
        _cleanup_(nvml_session_freep) NvmlSession *s = NULL;
        _cleanup_free_ GpuSnapshot *snap = calloc(1, sizeof(GpuSnapshot));
        _cleanup_free_ char *detail = NULL;

        write_scenario("[nvml]\ncount=3\ndriver=535.161.08\n"
                       "[gpu1]\nuuid=GPU-abc\npci=00000001:C1:00.0\nlost=yes\n"
                       "[gpu2]\necc_uncorrected=7\nremap_pending=yes\nxid=79,13\n"
                       "temperature=91\nthrottle=0x40\nmemory_used=2147483648\n"
                       "memory_reserved=503316480\n"
                       "[gpu0]\nmemory_reserved=503316480\nmemory_v2=ARGUMENT_VERSION_MISMATCH\n");
        ck_assert_int_eq(nvml_session_open(fake_library, &s, &detail), 0);
        nvml_session_read(s, snap);
        ck_assert_int_eq(snap->init_ret, NVML_SUCCESS);
        ck_assert_str_eq(snap->driver_version, "535.161.08");
        ck_assert_uint_eq(snap->count, 3);
        ck_assert_uint_eq(snap->n_gpus, 3);
        ck_assert_int_eq(snap->gpus[0].ecc_ret, NVML_SUCCESS);
        ck_assert_str_eq(snap->gpus[0].pci_bus_id, "00000000:01:00.0");
        ck_assert_str_eq(snap->gpus[0].name, "NVIDIA A100 80GB PCIe");
        ck_assert_int_eq(snap->gpus[1].uuid_ret, NVML_ERROR_GPU_IS_LOST);
        ck_assert_int_eq(snap->gpus[1].temp_ret, NVML_ERROR_GPU_IS_LOST);
        ck_assert_uint_eq(snap->gpus[2].ecc_uncorrected_volatile, 7);
        ck_assert(snap->gpus[2].remap_pending);
        ck_assert(!snap->gpus[2].remap_failure);
        ck_assert_uint_eq(snap->gpus[2].temp_c, 91);
        ck_assert_uint_eq(snap->gpus[2].slowdown_c, 90);
        ck_assert_uint_eq(snap->gpus[2].shutdown_c, 95);
        ck_assert_uint_eq(snap->gpus[2].throttle_reasons, 0x40);
        /* what processes allocated, the driver's 480 MiB apart (as nvidia-smi shows it) */
        ck_assert(snap->gpus[2].memory_v2);
        ck_assert_uint_eq(snap->gpus[2].memory_used, 2147483648ULL);
        ck_assert_uint_eq(snap->gpus[2].memory_reserved, 503316480ULL);
        ck_assert_uint_eq(snap->gpus[2].memory_total, 85899345920ULL);
        /* a library without the v2 reading: v1, the reservation counted in */
        ck_assert_int_eq(snap->gpus[0].memory_ret, NVML_SUCCESS);
        ck_assert(!snap->gpus[0].memory_v2);
        ck_assert_uint_eq(snap->gpus[0].memory_used, 1048576ULL + 503316480ULL);
        ck_assert_uint_eq(snap->gpus[0].memory_reserved, 0);
        /* GPU 1 is lost: its events cannot be registered; GPU 2's two Xids arrive once. */
        ck_assert_uint_eq(snap->n_xids, 2);
        ck_assert_int_eq(snap->xids[0].gpu_index, 2);
        ck_assert_uint_eq(snap->xids[0].xid, 79);
        ck_assert_uint_eq(snap->xids[1].xid, 13);
        nvml_session_read(s, snap);
        ck_assert_uint_eq(snap->n_xids, 0);
        ck_assert_int_eq(snap->events_ret, NVML_SUCCESS); /* a lost GPU is not an event failure */
        (void)unlink(scenario_path);
}
END_TEST

START_TEST(test_session_missing) {
        _cleanup_free_ char *detail = NULL;
        NvmlSession *s = NULL;

        ck_assert_int_eq(nvml_session_open("/nonexistent/libnvidia-ml.so.1", &s, &detail), -ENOENT);
        ck_assert_ptr_null(s);
        ck_assert_ptr_nonnull(detail);
        ck_assert_ptr_nonnull(strstr(detail, "/nonexistent/libnvidia-ml.so.1"));
}
END_TEST

START_TEST(test_session_driver_not_loaded) {
        _cleanup_(nvml_session_freep) NvmlSession *s = NULL;
        _cleanup_free_ GpuSnapshot *snap = calloc(1, sizeof(GpuSnapshot));

        ck_assert_int_eq(unsetenv("FAKE_NVML_SCENARIO"), 0);
        ck_assert_int_eq(nvml_session_open(fake_library, &s, NULL), 0);
        nvml_session_read(s, snap);
        ck_assert_int_eq(snap->init_ret, NVML_ERROR_DRIVER_NOT_LOADED);
        ck_assert_uint_eq(snap->n_gpus, 0);
}
END_TEST

static Suite *gpu_suite(void) {
        Suite *s = suite_create("gpu-check");
        TCase *tc;

        tc = tcase_create("tables");
        tcase_add_test(tc, test_vm_sizes);
        tcase_add_test(tc, test_parse_expected);
        tcase_add_test(tc, test_parse_endpoint);
        tcase_add_test(tc, test_xids);
        tcase_add_test(tc, test_return_names);
        suite_add_tcase(s, tc);

        tc = tcase_create("verdicts");
        tcase_add_test(tc, test_healthy);
        tcase_add_test(tc, test_count);
        tcase_add_test(tc, test_lost);
        tcase_add_test(tc, test_memory_errors);
        tcase_add_test(tc, test_not_supported);
        tcase_add_test(tc, test_temperature_and_throttle);
        tcase_add_test(tc, test_xid_verdict);
        tcase_add_test(tc, test_no_nvml);
        tcase_add_test(tc, test_timed_out_and_unread);
        suite_add_tcase(s, tc);

        tc = tcase_create("fake-library");
        tcase_add_test(tc, test_session_fake);
        tcase_add_test(tc, test_session_missing);
        tcase_add_test(tc, test_session_driver_not_loaded);
        suite_add_tcase(s, tc);
        return s;
}

int main(int argc, char *argv[]) {
        SRunner *sr;
        int failed;

        if (argc < 2) {
                fprintf(stderr, "usage: %s FAKE-LIBNVIDIA-ML\n", argv[0]);
                return 2;
        }
        fake_library = argv[1];
        sr = srunner_create(gpu_suite());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
