/* SPDX-License-Identifier: MIT */
#include "gpu-check.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <systemd/sd-event.h>

#include "conf.h"
#include "event-util.h"
#include "health.h"
#include "log.h"
#include "time-util.h"

_Static_assert(GPU_EXPECTED_AUTO == CONF_EXPECTED_GPUS_AUTO, "ExpectedGPUs=auto");
_Static_assert(GPU_MAX == CONF_GPUS_MAX, "ExpectedGPUs= range");

static const char *const gpu_verdict_table[_GPU_VERDICT_MAX] = {
        [GPU_VERDICT_OK] = "ok",
        [GPU_VERDICT_WARNING] = "warning",
        [GPU_VERDICT_UNHEALTHY] = "unhealthy",
        [GPU_VERDICT_UNKNOWN] = "unknown",
};

const char *gpu_verdict_to_string(GpuVerdict v) {
        if (v < 0 || v >= _GPU_VERDICT_MAX)
                return NULL;
        return gpu_verdict_table[v];
}

/* ---- VM sizes ------------------------------------------------------------------------------- */

/* NVIDIA GPUs per Azure VM size. Checked against the GPU counts listed in microsoft/aspire's
 * src/Aspire.Hosting.Azure.Kubernetes/AksNodeVmSizes.cs (commit 5bd693a; NC A100 v4, NC A10 v4,
 * NC H100 v5, ND A100 v4, ND H100 v5, NV A10 v5) and Hugging Face's Azure hardware page (NC T4
 * v3); the older and rarer sizes (NC K80, NCv2, NCv3, ND P40, NDv2, NV M60, NVv3, NCC H100 v5,
 * ND H200 v5) are from the Azure size pages (learn.microsoft.com, virtual-machines/sizes/gpu-
 * accelerated) as remembered, not re-read. A fractional A10 (NVads_A10_v5, NCads_A10_v4 below a
 * whole GPU) shows up as one GPU in the VM. Sizes with AMD GPUs (NVv4, ND MI300X) have no NVIDIA
 * GPU and are not listed: they count as unknown. */
static const struct {
        const char *size; /* without "Standard_" */
        int gpus;
} gpu_vm_sizes[] = {
        {"NC6", 1},
        {"NC12", 2},
        {"NC24", 4},
        {"NC24r", 4},
        {"NC6s_v2", 1},
        {"NC12s_v2", 2},
        {"NC24s_v2", 4},
        {"NC24rs_v2", 4},
        {"NC6s_v3", 1},
        {"NC12s_v3", 2},
        {"NC24s_v3", 4},
        {"NC24rs_v3", 4},
        {"NC4as_T4_v3", 1},
        {"NC8as_T4_v3", 1},
        {"NC16as_T4_v3", 1},
        {"NC64as_T4_v3", 4},
        {"NC24ads_A100_v4", 1},
        {"NC48ads_A100_v4", 2},
        {"NC96ads_A100_v4", 4},
        {"NC40ads_H100_v5", 1},
        {"NC80adis_H100_v5", 2},
        {"NCC40ads_H100_v5", 1},
        {"NC8ads_A10_v4", 1},
        {"NC16ads_A10_v4", 1},
        {"NC32ads_A10_v4", 2},
        {"ND6s", 1},
        {"ND12s", 2},
        {"ND24s", 4},
        {"ND24rs", 4},
        {"ND40rs_v2", 8},
        {"ND96asr_v4", 8},
        {"ND96amsr_A100_v4", 8},
        {"ND96isr_H100_v5", 8},
        {"ND96isr_H200_v5", 8},
        {"NV6", 1},
        {"NV12", 2},
        {"NV24", 4},
        {"NV12s_v3", 1},
        {"NV24s_v3", 2},
        {"NV48s_v3", 4},
        {"NV6ads_A10_v5", 1},
        {"NV12ads_A10_v5", 1},
        {"NV18ads_A10_v5", 1},
        {"NV36ads_A10_v5", 1},
        {"NV36adms_A10_v5", 1},
        {"NV72ads_A10_v5", 2},
};

int gpu_expected_for_vm_size(const char *vm_size) {
        const char *s = vm_size;

        if (isempty(s))
                return GPU_EXPECTED_UNKNOWN;
        if (strncasecmp(s, "Standard_", 9) == 0)
                s += 9;
        else if (strncasecmp(s, "Basic_", 6) == 0)
                s += 6;
        for (size_t i = 0; i < ELEMENTSOF(gpu_vm_sizes); i++)
                if (strcasecmp(s, gpu_vm_sizes[i].size) == 0)
                        return gpu_vm_sizes[i].gpus;
        /* The GPU families all start with N (NC, ND, NG, NP, NV); the others have no GPU. */
        return s[0] == 'N' || s[0] == 'n' ? GPU_EXPECTED_UNKNOWN : 0;
}

/* ---- Xids ----------------------------------------------------------------------------------- */

static const unsigned long long gpu_critical_xids[] = {GPU_CRITICAL_XIDS};

bool gpu_xid_is_critical(unsigned long long xid) {
        for (size_t i = 0; i < ELEMENTSOF(gpu_critical_xids); i++)
                if (gpu_critical_xids[i] == xid)
                        return true;
        return false;
}

const char *gpu_xid_describe(unsigned long long xid) {
        switch (xid) {
        case 13:
                return "graphics engine exception";
        case 31:
                return "GPU memory page fault";
        case 43:
                return "GPU stopped processing";
        case 45:
                return "preemptive cleanup";
        case 48:
                return "double-bit ECC error";
        case 63:
                return "ECC page retirement or row remapping recorded, reset needed";
        case 64:
                return "ECC page retirement or row remapping failure";
        case 74:
                return "NVLink error";
        case 79:
                return "GPU has fallen off the bus";
        case 92:
                return "high single-bit ECC error rate";
        case 94:
                return "contained ECC error";
        case 95:
                return "uncontained ECC error";
        case 119:
                return "GSP RPC timeout";
        case 120:
                return "GSP error";
        default:
                return NULL;
        }
}

void gpu_xid_history_add(GpuXidHistory *h, const GpuXidEvent *events, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                unsigned row = events[i].gpu_index >= 0 && (unsigned)events[i].gpu_index < GPU_MAX
                                       ? (unsigned)events[i].gpu_index
                                       : GPU_MAX; /* unmatched */
                bool seen = false;

                if (!gpu_xid_is_critical(events[i].xid)) {
                        h->last_other = events[i].xid;
                        h->n_other++;
                        continue;
                }
                for (unsigned j = 0; j < h->n[row]; j++)
                        if (h->xids[row][j] == events[i].xid)
                                seen = true;
                if (!seen && h->n[row] < GPU_XID_HISTORY_MAX)
                        h->xids[row][h->n[row]++] = events[i].xid;
        }
}

/* ---- evaluation ----------------------------------------------------------------------------- */

typedef struct GpuCheckList {
        GpuCheck *checks;
        unsigned n;
} GpuCheckList;

static GpuCheck *
gpu_check_add(GpuCheckList *l, const char *name, const GpuReading *g, GpuVerdict verdict) {
        GpuCheck *c;

        if (l->n >= GPU_CHECKS_MAX)
                return NULL;
        c = &l->checks[l->n++];
        *c = (GpuCheck){.gpu_index = -1, .verdict = verdict};
        (void)snprintf(c->name, sizeof(c->name), "%s", name);
        if (g) {
                c->gpu_index = (int)g->index;
                (void)snprintf(c->uuid, sizeof(c->uuid), "%s", g->uuid);
                (void)snprintf(c->pci_bus_id, sizeof(c->pci_bus_id), "%s", g->pci_bus_id);
                (void)snprintf(
                        c->subject, sizeof(c->subject), "GPU %u (%s, %s)", g->index,
                        g->uuid[0] ? g->uuid : "UUID unknown",
                        g->pci_bus_id[0] ? g->pci_bus_id : "PCI bus id unknown");
        }
        return c;
}

_printf_(2, 3) static void gpu_check_message(GpuCheck *c, const char *format, ...) {
        va_list ap;

        if (!c)
                return;
        va_start(ap, format);
        (void)vsnprintf(c->message, sizeof(c->message), format, ap);
        va_end(ap);
}

static void gpu_check_value(GpuCheck *c, double value, const char *unit) {
        if (!c)
                return;
        c->has_value = true;
        c->value = value;
        (void)snprintf(c->unit, sizeof(c->unit), "%s", unit);
}

static void gpu_check_threshold(GpuCheck *c, double warning, double unhealthy) {
        if (!c)
                return;
        c->has_threshold = true;
        c->threshold_warning = warning;
        c->threshold_unhealthy = unhealthy;
}

static const char *ret_str(int r) {
        const char *s = nvml_return_to_string(r);
        return s ? s : "unknown NVML error";
}

/* The GPU cannot tell (NOT_SUPPORTED), or this driver's NVML lacks the function. */
static bool gpu_unsupported(int r) {
        return r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_FUNCTION_NOT_FOUND;
}

static bool gpu_is_lost(const GpuReading *g) {
        const int rets[] = {
                g->handle_ret,   g->uuid_ret,     g->pci_ret,    g->ecc_ret,
                g->retired_ret,  g->remap_ret,    g->temp_ret,   g->slowdown_ret,
                g->shutdown_ret, g->throttle_ret, g->memory_ret,
        };

        for (size_t i = 0; i < ELEMENTSOF(rets); i++)
                if (rets[i] == NVML_ERROR_GPU_IS_LOST)
                        return true;
        return false;
}

static void gpu_evaluate_xids(GpuCheckList *l, const GpuReading *g, const GpuEvalInput *in) {
        unsigned row = g ? g->index : GPU_MAX;
        const GpuXidHistory *h = in->xids;
        const char *d;
        GpuCheck *c;

        if (h && h->n[row] > 0) {
                unsigned long long last = h->xids[row][h->n[row] - 1];
                char others[96] = "";
                size_t len = 0;

                for (unsigned j = 0; j + 1 < h->n[row] && len < sizeof(others); j++)
                        len += (size_t)snprintf(
                                others + len, sizeof(others) - len, "%s%llu", j ? ", " : "; also ",
                                h->xids[row][j]);
                c = gpu_check_add(l, "gpu_xid", g, GPU_VERDICT_UNHEALTHY);
                if (c)
                        (void)snprintf(c->signal, sizeof(c->signal), "xid_%llu", last);
                gpu_check_value(c, (double)last, "");
                d = gpu_xid_describe(last);
                gpu_check_message(
                        c, "critical Xid %llu (%s)%s; the GPU needs a reset or the VM a reboot",
                        last, d ? d : "see NVIDIA's Xid catalog", others);
                return;
        }
        if (!g)
                return;
        if (in->snapshot->events_ret != NVML_SUCCESS) {
                c = gpu_check_add(l, "gpu_xid", g, GPU_VERDICT_UNKNOWN);
                gpu_check_message(
                        c, "Xid events are not watched: %s", ret_str(in->snapshot->events_ret));
                return;
        }
        c = gpu_check_add(l, "gpu_xid", g, GPU_VERDICT_OK);
        gpu_check_message(c, "no critical Xid event since the agent started");
}

static const struct {
        unsigned long long bit;
        const char *name;
        bool bad;
} gpu_throttle_reasons[] = {
        {nvmlClocksThrottleReasonHwSlowdown, "hw_slowdown", true},
        {nvmlClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown", true},
        {nvmlClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown", true},
        {nvmlClocksThrottleReasonSwThermalSlowdown, "sw_thermal_slowdown", true},
        {nvmlClocksThrottleReasonSwPowerCap, "sw_power_cap", false},
        {nvmlClocksThrottleReasonGpuIdle, "gpu_idle", false},
        {nvmlClocksThrottleReasonApplicationsClocksSetting, "applications_clocks_setting", false},
        {nvmlClocksThrottleReasonSyncBoost, "sync_boost", false},
        {nvmlClocksThrottleReasonDisplayClockSetting, "display_clock_setting", false},
};

static void gpu_evaluate_throttle(GpuCheckList *l, const GpuReading *g) {
        char names[200] = "";
        const char *first_bad = NULL;
        size_t len = 0;
        GpuCheck *c;

        for (size_t i = 0; i < ELEMENTSOF(gpu_throttle_reasons); i++) {
                if (!(g->throttle_reasons & gpu_throttle_reasons[i].bit))
                        continue;
                if (gpu_throttle_reasons[i].bad && !first_bad)
                        first_bad = gpu_throttle_reasons[i].name;
                if (len < sizeof(names))
                        len += (size_t)snprintf(
                                names + len, sizeof(names) - len, "%s%s", len ? ", " : "",
                                gpu_throttle_reasons[i].name);
        }
        c = gpu_check_add(
                l, "gpu_throttle_reasons", g, first_bad ? GPU_VERDICT_WARNING : GPU_VERDICT_OK);
        if (c && first_bad)
                (void)snprintf(c->signal, sizeof(c->signal), "%s", first_bad);
        gpu_check_value(c, (double)g->throttle_reasons, "");
        gpu_check_message(
                c, "clock throttle reasons: %s (0x%" PRIx64 ")%s", names[0] ? names : "none",
                g->throttle_reasons,
                first_bad ? "; hardware slowdown, thermal or power brake throttling" : "");
}

static void gpu_evaluate_one(GpuCheckList *l, const GpuReading *g, const GpuEvalInput *in) {
        GpuCheck *c;

        if (g->handle_ret != NVML_SUCCESS || gpu_is_lost(g)) {
                bool lost = gpu_is_lost(g);
                c = gpu_check_add(
                        l, "gpu_lost", g, lost ? GPU_VERDICT_UNHEALTHY : GPU_VERDICT_WARNING);
                if (c)
                        (void)snprintf(
                                c->signal, sizeof(c->signal), "%s",
                                lost ? "gpu_is_lost" : "handle_error");
                gpu_check_value(c, 1, "");
                if (lost)
                        gpu_check_message(
                                c,
                                "NVML: the GPU has fallen off the bus or is otherwise inaccessible (GPU_IS_LOST)");
                else
                        gpu_check_message(
                                c, "NVML cannot open the GPU: %s", ret_str(g->handle_ret));
                gpu_evaluate_xids(l, g, in);
                return;
        }
        c = gpu_check_add(l, "gpu_lost", g, GPU_VERDICT_OK);
        gpu_check_value(c, 0, "");
        gpu_check_message(c, "%s answers", g->name[0] ? g->name : "the GPU");

        if (g->ecc_ret == NVML_SUCCESS) {
                c = gpu_check_add(
                        l, "gpu_ecc_uncorrected_volatile", g,
                        g->ecc_uncorrected_volatile > 0 ? GPU_VERDICT_UNHEALTHY : GPU_VERDICT_OK);
                gpu_check_value(c, (double)g->ecc_uncorrected_volatile, "count");
                gpu_check_threshold(c, 1, 1);
                gpu_check_message(
                        c, "%" PRIu64 " uncorrectable ECC error%s since the driver loaded",
                        g->ecc_uncorrected_volatile, g->ecc_uncorrected_volatile == 1 ? "" : "s");
        } else if (!gpu_unsupported(g->ecc_ret)) {
                c = gpu_check_add(l, "gpu_ecc_uncorrected_volatile", g, GPU_VERDICT_UNKNOWN);
                gpu_check_message(c, "cannot read the ECC error count: %s", ret_str(g->ecc_ret));
        }

        if (g->retired_ret == NVML_SUCCESS) {
                c = gpu_check_add(
                        l, "gpu_retired_pages_pending", g,
                        g->retired_pending ? GPU_VERDICT_UNHEALTHY : GPU_VERDICT_OK);
                gpu_check_value(c, g->retired_pending, "");
                gpu_check_threshold(c, 1, 1);
                gpu_check_message(
                        c, g->retired_pending ? "pages are pending retirement; reboot the VM"
                                              : "no pages pending retirement");
        } else if (!gpu_unsupported(g->retired_ret)) {
                c = gpu_check_add(l, "gpu_retired_pages_pending", g, GPU_VERDICT_UNKNOWN);
                gpu_check_message(
                        c, "cannot read the page retirement status: %s", ret_str(g->retired_ret));
        }

        if (g->remap_ret == NVML_SUCCESS) {
                c = gpu_check_add(
                        l, "gpu_row_remap_failure", g,
                        g->remap_failure ? GPU_VERDICT_UNHEALTHY : GPU_VERDICT_OK);
                gpu_check_value(c, g->remap_failure, "");
                gpu_check_threshold(c, 1, 1);
                gpu_check_message(
                        c, "%s (%u rows remapped for uncorrectable, %u for correctable errors)",
                        g->remap_failure ? "a row remap FAILED" : "no row remap failure",
                        g->remap_uncorrectable, g->remap_correctable);
                c = gpu_check_add(
                        l, "gpu_row_remap_pending", g,
                        g->remap_pending ? GPU_VERDICT_WARNING : GPU_VERDICT_OK);
                gpu_check_value(c, g->remap_pending, "");
                gpu_check_threshold(c, 1, 2);
                gpu_check_message(
                        c, g->remap_pending ? "a row remap is pending; reset the GPU"
                                            : "no row remap pending");
        } else if (!gpu_unsupported(g->remap_ret)) {
                c = gpu_check_add(l, "gpu_row_remap_failure", g, GPU_VERDICT_UNKNOWN);
                gpu_check_message(c, "cannot read the row remapper: %s", ret_str(g->remap_ret));
        }

        gpu_evaluate_xids(l, g, in);

        if (g->temp_ret == NVML_SUCCESS) {
                bool has_slow = g->slowdown_ret == NVML_SUCCESS && g->slowdown_c > 0;
                bool has_shut = g->shutdown_ret == NVML_SUCCESS && g->shutdown_c > 0;
                GpuVerdict v = has_shut && g->temp_c >= g->shutdown_c   ? GPU_VERDICT_UNHEALTHY
                               : has_slow && g->temp_c >= g->slowdown_c ? GPU_VERDICT_WARNING
                                                                        : GPU_VERDICT_OK;
                c = gpu_check_add(l, "gpu_temperature_celsius", g, v);
                gpu_check_value(c, g->temp_c, "celsius");
                if (has_slow && has_shut)
                        gpu_check_threshold(c, g->slowdown_c, g->shutdown_c);
                if (has_slow && has_shut)
                        gpu_check_message(
                                c, "%u C (slowdown at %u C, shutdown at %u C)", g->temp_c,
                                g->slowdown_c, g->shutdown_c);
                else
                        gpu_check_message(c, "%u C (thresholds unknown)", g->temp_c);
        } else if (!gpu_unsupported(g->temp_ret)) {
                c = gpu_check_add(l, "gpu_temperature_celsius", g, GPU_VERDICT_UNKNOWN);
                gpu_check_message(c, "cannot read the temperature: %s", ret_str(g->temp_ret));
        }

        if (g->throttle_ret == NVML_SUCCESS)
                gpu_evaluate_throttle(l, g);

        if (g->memory_ret == NVML_SUCCESS) {
                c = gpu_check_add(l, "gpu_memory_used_bytes", g, GPU_VERDICT_OK);
                gpu_check_value(c, (double)g->memory_used, "bytes");
                if (g->memory_v2)
                        gpu_check_message(
                                c,
                                "%" PRIu64 " MiB of %" PRIu64 " MiB in use (%" PRIu64
                                " MiB reserved by the driver)",
                                g->memory_used >> 20, g->memory_total >> 20,
                                g->memory_reserved >> 20);
                else
                        gpu_check_message(
                                c, "%" PRIu64 " MiB of %" PRIu64 " MiB in use",
                                g->memory_used >> 20, g->memory_total >> 20);
        }
}

static void gpu_evaluate_library(GpuCheckList *l, const GpuEvalInput *in) {
        const GpuSnapshot *s = in->snapshot;
        bool expected = in->expected > 0;
        GpuCheck *c;

        if (s->load_error != 0) {
                GpuVerdict v =
                        expected ? GPU_VERDICT_UNHEALTHY
                        : in->expected == GPU_EXPECTED_NONE
                                ? (s->load_error == -ENOENT ? GPU_VERDICT_OK : GPU_VERDICT_WARNING)
                                : GPU_VERDICT_UNKNOWN;
                c = gpu_check_add(l, "gpu_nvml", NULL, v);
                if (c)
                        (void)snprintf(
                                c->signal, sizeof(c->signal), "%s",
                                s->load_error == -ENOENT ? "not_installed" : "unusable");
                gpu_check_message(
                        c, "%s (%s)%s%s",
                        s->load_error == -ENOENT ? "no NVML library"
                                                 : "the NVML library is unusable",
                        s->load_detail[0] ? s->load_detail : "no detail",
                        expected ? "; GPUs expected: " : "", expected ? in->expected_source : "");
                return;
        }
        if (s->init_ret != NVML_SUCCESS) {
                c = gpu_check_add(
                        l, "gpu_nvml", NULL,
                        expected                            ? GPU_VERDICT_UNHEALTHY
                        : in->expected == GPU_EXPECTED_NONE ? GPU_VERDICT_OK
                                                            : GPU_VERDICT_WARNING);
                if (c)
                        (void)snprintf(c->signal, sizeof(c->signal), "init_failed");
                gpu_check_message(c, "nvmlInit failed: %s", ret_str(s->init_ret));
                return;
        }
        c = gpu_check_add(l, "gpu_nvml", NULL, GPU_VERDICT_OK);
        gpu_check_message(c, "NVML answers");
        c = gpu_check_add(l, "gpu_driver", NULL, GPU_VERDICT_OK);
        if (s->driver_ret == NVML_SUCCESS)
                gpu_check_message(c, "driver %s", s->driver_version);
        else
                gpu_check_message(c, "driver version unknown: %s", ret_str(s->driver_ret));
}

static void gpu_evaluate_count(GpuCheckList *l, const GpuEvalInput *in) {
        const GpuSnapshot *s = in->snapshot;
        GpuVerdict v;
        GpuCheck *c;

        if (s->count_ret != NVML_SUCCESS) {
                c = gpu_check_add(
                        l, "gpu_devices", NULL,
                        in->expected > 0 ? GPU_VERDICT_UNHEALTHY : GPU_VERDICT_UNKNOWN);
                gpu_check_message(c, "cannot count the GPUs: %s", ret_str(s->count_ret));
                return;
        }
        v = in->expected == GPU_EXPECTED_UNKNOWN ? GPU_VERDICT_UNKNOWN
            : in->expected == GPU_EXPECTED_NONE  ? GPU_VERDICT_OK
            : s->count < (unsigned)in->expected  ? GPU_VERDICT_UNHEALTHY
            : s->count > (unsigned)in->expected  ? GPU_VERDICT_WARNING
                                                 : GPU_VERDICT_OK;
        c = gpu_check_add(l, "gpu_devices", NULL, v);
        gpu_check_value(c, s->count, "count");
        if (in->expected > 0)
                gpu_check_threshold(c, in->expected, in->expected);
        if (in->expected == GPU_EXPECTED_UNKNOWN)
                gpu_check_message(
                        c, "%u GPU%s found; how many to expect is unknown (%s)", s->count,
                        s->count == 1 ? "" : "s", in->expected_source);
        else if (in->expected == GPU_EXPECTED_NONE)
                gpu_check_message(
                        c, "%u GPU%s found; none expected (%s)", s->count, s->count == 1 ? "" : "s",
                        in->expected_source);
        else
                gpu_check_message(
                        c, "%u GPU%s found, %d expected (%s)", s->count, s->count == 1 ? "" : "s",
                        in->expected, in->expected_source);
}

unsigned gpu_evaluate(const GpuEvalInput *in, GpuCheck *checks, GpuVerdict *ret_overall) {
        GpuCheckList l = {.checks = checks};
        GpuVerdict worst = _GPU_VERDICT_INVALID;
        GpuCheck *c;

        if (in->timed_out) {
                c = gpu_check_add(
                        &l, "gpu_nvml", NULL,
                        in->expected == GPU_EXPECTED_NONE ? GPU_VERDICT_WARNING
                                                          : GPU_VERDICT_UNHEALTHY);
                if (c)
                        (void)snprintf(c->signal, sizeof(c->signal), "timeout");
                gpu_check_message(
                        c, "NVML has not answered within %" PRIu64 " ms: a GPU or the driver hangs",
                        in->timeout_ms);
        } else if (!in->snapshot) {
                c = gpu_check_add(&l, "gpu_nvml", NULL, GPU_VERDICT_UNKNOWN);
                gpu_check_message(c, "not checked yet");
        } else {
                gpu_evaluate_library(&l, in);
                if (in->snapshot->load_error == 0 && in->snapshot->init_ret == NVML_SUCCESS) {
                        gpu_evaluate_count(&l, in);
                        for (unsigned i = 0; i < in->snapshot->n_gpus; i++)
                                gpu_evaluate_one(&l, &in->snapshot->gpus[i], in);
                } else if (in->expected > 0) {
                        c = gpu_check_add(&l, "gpu_devices", NULL, GPU_VERDICT_UNHEALTHY);
                        gpu_check_value(c, 0, "count");
                        gpu_check_threshold(c, in->expected, in->expected);
                        gpu_check_message(
                                c, "no GPU usable through NVML, %d expected (%s)", in->expected,
                                in->expected_source);
                }
        }
        /* Critical Xids of devices we could not match to an index, and the other Xids. */
        if (in->snapshot || in->timed_out)
                gpu_evaluate_xids(&l, NULL, in);
        if (in->xids && in->xids->n_other > 0) {
                c = gpu_check_add(&l, "gpu_xid_other_events", NULL, GPU_VERDICT_OK);
                if (c)
                        (void)snprintf(
                                c->signal, sizeof(c->signal), "xid_%llu", in->xids->last_other);
                gpu_check_value(c, (double)in->xids->n_other, "count");
                gpu_check_message(
                        c,
                        "%u non-critical Xid event%s, the last Xid %llu%s%s%s (usually an application's fault)",
                        in->xids->n_other, in->xids->n_other == 1 ? "" : "s", in->xids->last_other,
                        gpu_xid_describe(in->xids->last_other) ? " (" : "",
                        gpu_xid_describe(in->xids->last_other)
                                ? gpu_xid_describe(in->xids->last_other)
                                : "",
                        gpu_xid_describe(in->xids->last_other) ? ")" : "");
        }

        for (unsigned i = 0; i < l.n; i++)
                if (checks[i].verdict != GPU_VERDICT_UNKNOWN &&
                    (worst < 0 || checks[i].verdict > worst))
                        worst = checks[i].verdict;
        if (ret_overall)
                *ret_overall = worst < 0 ? GPU_VERDICT_UNKNOWN : worst;
        return l.n;
}

/* ---- the worker thread ---------------------------------------------------------------------- */

#define GPU_VM_SIZE_MAX 128U
#define GPU_IMDS_TIMEOUT_MS UINT64_C(5000) /* one request to the metadata service at most */
#define GPU_STOP_WAIT_MS 2000              /* how long a stop waits for a read in progress */

/* What the loop and the worker share. Lock order: just this one mutex. The worker holds a
 * reference while it runs, the monitor one while it lives; the last one frees. */
typedef struct GpuWorker {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned refs;                 /* protected by lock */
        bool quit, request;            /* protected by lock */
        bool busy;                     /* protected by lock; a request is being served */
        bool reading;                  /* protected by lock; inside NVML (the bounded part) */
        bool want_vm_size;             /* protected by lock */
        uint64_t timeout_ms;           /* protected by lock */
        GpuSnapshot *result;           /* protected by lock; a finished read not yet taken */
        char vm_size[GPU_VM_SIZE_MAX]; /* protected by lock; "" until known */
        char vm_size_error[128];       /* protected by lock */
        int efd;                       /* the worker writes 1 after each read; closed at the end */
        char *library;                 /* immutable */
        char *endpoint;                /* immutable */
} GpuWorker;

static void gpu_worker_unref(GpuWorker *w) {
        bool last;

        (void)pthread_mutex_lock(&w->lock);
        last = --w->refs == 0;
        (void)pthread_mutex_unlock(&w->lock);
        if (!last)
                return;
        (void)pthread_mutex_destroy(&w->lock);
        (void)pthread_cond_destroy(&w->cond);
        (void)safe_close(w->efd);
        free(w->result);
        free(w->library);
        free(w->endpoint);
        free(w);
}

typedef struct GpuBody {
        char buf[GPU_VM_SIZE_MAX];
        size_t len;
        bool overflow;
} GpuBody;

static size_t gpu_imds_write(char *data, size_t size, size_t nmemb, void *userdata) {
        GpuBody *b = userdata;
        size_t n = size * nmemb;

        if (n >= sizeof(b->buf) - b->len) {
                b->overflow = true;
                return 0;
        }
        memcpy(b->buf + b->len, data, n);
        b->len += n;
        b->buf[b->len] = '\0';
        return n;
}

/* Blocking (worker thread): GET {endpoint}/metadata/instance/compute/vmSize as text. */
static int gpu_imds_vm_size(
        const char *endpoint,
        uint64_t timeout_ms,
        char *ret,
        size_t size,
        char *err,
        size_t err_size) {
        _cleanup_free_ char *url = NULL;
        struct curl_slist *headers = NULL;
        GpuBody body = {};
        CURLcode cc;
        CURL *curl;
        long status = 0;
        int r = -EIO;

        if (asprintf(
                    &url, "%s/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text",
                    endpoint) < 0)
                return -ENOMEM;
        curl = curl_easy_init();
        if (!curl)
                return -ENOMEM;
        headers = curl_slist_append(NULL, "Metadata: true");
        (void)curl_easy_setopt(curl, CURLOPT_URL, url);
        (void)curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        (void)curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        (void)curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)MIN(timeout_ms, (uint64_t)60000));
        (void)curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void)curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, gpu_imds_write);
        (void)curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        cc = curl_easy_perform(curl);
        (void)curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK)
                (void)snprintf(
                        err, err_size, "%s",
                        body.overflow ? "answer too long" : curl_easy_strerror(cc));
        else if (status != 200)
                (void)snprintf(err, err_size, "HTTP status %ld", status);
        else if (body.len == 0 || strcspn(body.buf, " \t\r\n/") != body.len)
                (void)snprintf(err, err_size, "malformed VM size");
        else {
                (void)snprintf(ret, size, "%s", body.buf);
                r = 0;
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        return r;
}

static void *gpu_worker_run(void *userdata) {
        GpuWorker *w = userdata;
        NvmlSession *session = NULL;

        (void)pthread_mutex_lock(&w->lock);
        for (;;) {
                char vm_size[GPU_VM_SIZE_MAX] = "", vm_err[128] = "";
                _cleanup_free_ char *detail = NULL;
                GpuSnapshot *snap;
                bool want_vm_size;
                uint64_t timeout_ms;
                uint64_t one = 1;
                int r = 0;

                while (!w->quit && !w->request)
                        (void)pthread_cond_wait(&w->cond, &w->lock);
                if (w->quit)
                        break;
                w->request = false;
                w->busy = w->reading = true;
                want_vm_size = w->want_vm_size;
                timeout_ms = w->timeout_ms;
                (void)pthread_mutex_unlock(&w->lock);

                snap = malloc(sizeof(*snap));
                if (snap) {
                        if (!session)
                                r = nvml_session_open(w->library, &session, &detail);
                        if (session)
                                nvml_session_read(session, snap);
                        else {
                                memset(snap, 0, sizeof(*snap));
                                snap->load_error = r;
                                (void)snprintf(
                                        snap->load_detail, sizeof(snap->load_detail), "%s",
                                        detail ? detail : strerror(-r));
                        }
                }
                (void)pthread_mutex_lock(&w->lock);
                if (snap) {
                        free(w->result);
                        w->result = snap;
                }
                w->reading = false;
                (void)!write(w->efd, &one, sizeof(one));
                (void)pthread_mutex_unlock(&w->lock);

                /* After the reading is out: a slow metadata service never looks like NVML
                 * hanging. It has its own, shorter bound. */
                if (want_vm_size && w->endpoint)
                        (void)gpu_imds_vm_size(
                                w->endpoint, MIN(timeout_ms, GPU_IMDS_TIMEOUT_MS), vm_size,
                                sizeof(vm_size), vm_err, sizeof(vm_err));

                (void)pthread_mutex_lock(&w->lock);
                if (vm_size[0])
                        (void)snprintf(w->vm_size, sizeof(w->vm_size), "%s", vm_size);
                if (vm_err[0])
                        (void)snprintf(w->vm_size_error, sizeof(w->vm_size_error), "%s", vm_err);
                w->busy = false;
                (void)!write(w->efd, &one, sizeof(one));
                (void)pthread_cond_broadcast(&w->cond); /* gpu_monitor_free() may wait for it */
        }
        (void)pthread_mutex_unlock(&w->lock);
        nvml_session_free(session);
        gpu_worker_unref(w);
        return NULL;
}

/* ---- the monitor ---------------------------------------------------------------------------- */

struct GpuMonitor {
        sd_event *event;
        Health *health; /* borrowed, may be NULL */
        GpuWorker *worker;
        pthread_t thread;
        sd_event_source *wake, *interval_source, *deadline;
        int expected; /* configured: count, NONE or AUTO */
        uint64_t interval_usec, timeout_usec;
        char *library; /* as configured, NULL: default */

        GpuSnapshot *snapshot; /* the last finished read, NULL before */
        bool timed_out;
        uint64_t reads;
        uint64_t last_check_usec;
        char vm_size[GPU_VM_SIZE_MAX];
        char vm_size_error[128];
        GpuXidHistory xids;
        /* Last UUID and PCI bus id read per index: a lost GPU no longer tells them. */
        char known_uuid[GPU_MAX][NVML_DEVICE_UUID_V2_BUFFER_SIZE];
        char known_pci[GPU_MAX][NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];

        GpuCheck *checks; /* GPU_CHECKS_MAX */
        unsigned n_checks;
        GpuVerdict overall;
        char summary[512];

        GpuChangeCallback cb;
        void *userdata;
};

static uint64_t realtime_usec(void) {
        return (uint64_t)now_realtime_ns() / 1000;
}

static int gpu_monitor_expected(const GpuMonitor *m, char *source, size_t size) {
        int n;

        if (m->expected != GPU_EXPECTED_AUTO) {
                (void)snprintf(source, size, "ExpectedGPUs=%d", m->expected);
                return m->expected;
        }
        if (!m->vm_size[0] && !m->worker->endpoint) {
                (void)snprintf(
                        source, size,
                        "ExpectedGPUs=auto, but no MetadataEndpoint= to ask for the VM size");
                return GPU_EXPECTED_UNKNOWN;
        }
        if (!m->vm_size[0]) {
                (void)snprintf(
                        source, size, "ExpectedGPUs=auto, VM size not known yet%s%s",
                        m->vm_size_error[0] ? ": " : "", m->vm_size_error);
                return GPU_EXPECTED_UNKNOWN;
        }
        n = gpu_expected_for_vm_size(m->vm_size);
        (void)snprintf(
                source, size, "VM size %s%s", m->vm_size,
                n == GPU_EXPECTED_UNKNOWN ? " not in the table" : "");
        return n;
}

static void gpu_monitor_summarize(GpuMonitor *m) {
        const GpuCheck *worst = NULL;
        unsigned n_gpus = m->snapshot ? m->snapshot->count : 0;

        for (unsigned i = 0; i < m->n_checks; i++)
                if (m->checks[i].verdict == m->overall) {
                        worst = &m->checks[i];
                        break;
                }
        if (m->overall == GPU_VERDICT_OK || !worst)
                (void)snprintf(
                        m->summary, sizeof(m->summary), "GPU %s (%u found)",
                        gpu_verdict_to_string(m->overall), n_gpus);
        else
                (void)snprintf(
                        m->summary, sizeof(m->summary), "GPU %s: %s%s%s: %.160s",
                        m->overall == GPU_VERDICT_UNHEALTHY ? "UNHEALTHY"
                        : m->overall == GPU_VERDICT_WARNING ? "WARNING"
                                                            : "unknown",
                        worst->name, worst->subject[0] ? " " : "",
                        worst->gpu_index >= 0 ? worst->subject : "", worst->message);
}

/* Hands the checks to the health state as source "gpu" (which logs each change of a verdict).
 * More checks than it takes (HEALTH_CHECKS_MAX; 64 GPUs give more): the bad ones go first. */
static void gpu_monitor_push_health(GpuMonitor *m) {
        static const HealthVerdict map[_GPU_VERDICT_MAX] = {
                [GPU_VERDICT_OK] = HEALTH_OK,
                [GPU_VERDICT_WARNING] = HEALTH_WARNING,
                [GPU_VERDICT_UNHEALTHY] = HEALTH_UNHEALTHY,
                [GPU_VERDICT_UNKNOWN] = HEALTH_UNKNOWN,
        };
        _cleanup_free_ HealthCheck *out = NULL;
        size_t n = 0;
        int r;

        if (!m->health)
                return;
        out = calloc(HEALTH_CHECKS_MAX, sizeof(HealthCheck));
        if (!out) {
                log_warning_errno(-ENOMEM, "Failed to report the GPU checks, ignoring: %m");
                return;
        }
        for (int pass = 0; pass < 2; pass++)
                for (unsigned i = 0; i < m->n_checks && n < HEALTH_CHECKS_MAX; i++) {
                        const GpuCheck *c = &m->checks[i];
                        HealthCheck *h = &out[n];

                        if ((pass == 0) == (c->verdict == GPU_VERDICT_OK))
                                continue;
                        (void)health_check_init(h, c->name, c->subject, map[c->verdict]);
                        (void)snprintf(h->signal, sizeof(h->signal), "%s", c->signal);
                        h->has_value = c->has_value;
                        h->value = c->value;
                        (void)snprintf(h->unit, sizeof(h->unit), "%s", c->unit);
                        h->has_threshold = c->has_threshold;
                        h->threshold_warning = c->threshold_warning;
                        h->threshold_unhealthy = c->threshold_unhealthy;
                        health_check_set_message(h, "%s", c->message);
                        n++;
                }
        r = health_set_checks(m->health, "gpu", out, n);
        if (r < 0)
                log_warning_errno(r, "Failed to report the GPU checks, ignoring: %m");
}

static void gpu_monitor_evaluate(GpuMonitor *m) {
        char source[256];
        GpuVerdict prev = m->overall;
        GpuEvalInput in = {
                .snapshot = m->snapshot,
                .timed_out = m->timed_out,
                .timeout_ms = m->timeout_usec / 1000,
                .xids = &m->xids,
        };

        in.expected = gpu_monitor_expected(m, source, sizeof(source));
        in.expected_source = source;
        m->n_checks = gpu_evaluate(&in, m->checks, &m->overall);
        m->last_check_usec = realtime_usec();
        gpu_monitor_summarize(m);
        gpu_monitor_push_health(m);
        if (m->overall != prev)
                log_debug("GPU check: %s", m->summary);
        if (m->cb)
                m->cb(m, m->overall, prev != m->overall, m->userdata);
}

static int gpu_monitor_on_wake(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        GpuMonitor *m = userdata;
        GpuSnapshot *snap;
        bool vm_size_changed;
        uint64_t v;

        (void)!read(fd, &v, sizeof(v));
        (void)pthread_mutex_lock(&m->worker->lock);
        snap = TAKE_PTR(m->worker->result);
        vm_size_changed = !streq(m->vm_size, m->worker->vm_size);
        (void)snprintf(m->vm_size, sizeof(m->vm_size), "%s", m->worker->vm_size);
        (void)snprintf(m->vm_size_error, sizeof(m->vm_size_error), "%s", m->worker->vm_size_error);
        if (m->vm_size[0])
                m->worker->want_vm_size = false;
        (void)pthread_mutex_unlock(&m->worker->lock);
        if (!snap) {
                if (vm_size_changed && m->snapshot) /* the expected count is known now */
                        gpu_monitor_evaluate(m);
                return 0;
        }
        for (unsigned i = 0; i < snap->n_gpus; i++) {
                GpuReading *g = &snap->gpus[i];
                if (g->uuid[0])
                        memcpy(m->known_uuid[i], g->uuid, sizeof(g->uuid));
                else
                        memcpy(g->uuid, m->known_uuid[i], sizeof(g->uuid));
                if (g->pci_bus_id[0])
                        memcpy(m->known_pci[i], g->pci_bus_id, sizeof(g->pci_bus_id));
                else
                        memcpy(g->pci_bus_id, m->known_pci[i], sizeof(g->pci_bus_id));
        }
        free(m->snapshot);
        m->snapshot = snap;
        m->reads++;
        m->timed_out = false;
        m->deadline = sd_event_source_disable_unref(m->deadline);
        gpu_xid_history_add(&m->xids, snap->xids, snap->n_xids);
        gpu_monitor_evaluate(m);
        return 0;
}

static int gpu_monitor_on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        GpuMonitor *m = userdata;
        bool busy;

        m->deadline = sd_event_source_disable_unref(m->deadline);
        (void)pthread_mutex_lock(&m->worker->lock);
        busy = m->worker->reading || m->worker->request;
        (void)pthread_mutex_unlock(&m->worker->lock);
        if (!busy)
                return 0; /* the result is on its way */
        m->timed_out = true;
        gpu_monitor_evaluate(m);
        return 0;
}

int gpu_monitor_check_now(GpuMonitor *m) {
        bool busy;

        (void)pthread_mutex_lock(&m->worker->lock);
        busy = m->worker->busy || m->worker->request;
        if (!busy) {
                m->worker->request = true;
                m->worker->timeout_ms = m->timeout_usec / 1000;
                (void)pthread_cond_signal(&m->worker->cond);
        }
        (void)pthread_mutex_unlock(&m->worker->lock);
        if (busy) {
                /* One read at a time; a stuck one keeps the verdict at timed out. */
                if (m->timed_out)
                        gpu_monitor_evaluate(m);
                return 0;
        }
        m->deadline = sd_event_source_disable_unref(m->deadline);
        return sd_event_add_time_relative(
                m->event, &m->deadline, CLOCK_MONOTONIC, m->timeout_usec, 0,
                gpu_monitor_on_deadline, m);
}

static int gpu_monitor_arm(GpuMonitor *m);

static int gpu_monitor_on_interval(sd_event_source *s, uint64_t usec, void *userdata) {
        GpuMonitor *m = userdata;

        (void)gpu_monitor_check_now(m);
        (void)gpu_monitor_arm(m);
        return 0;
}

static int gpu_monitor_arm(GpuMonitor *m) {
        return event_arm_relative(
                m->event, &m->interval_source, m->interval_usec, gpu_monitor_on_interval, m,
                "GPU check");
}

void gpu_monitor_set_config(
        GpuMonitor *m, int expected, uint64_t interval_usec, uint64_t timeout_usec) {
        bool changed = m->interval_usec != interval_usec;

        m->expected = expected;
        m->interval_usec = interval_usec;
        m->timeout_usec = timeout_usec;
        (void)pthread_mutex_lock(&m->worker->lock);
        m->worker->want_vm_size = expected == GPU_EXPECTED_AUTO && !m->vm_size[0];
        (void)pthread_mutex_unlock(&m->worker->lock);
        if (changed)
                (void)gpu_monitor_arm(m);
}

static int gpu_worker_new(const GpuMonitorConfig *c, GpuWorker **ret) {
        pthread_condattr_t attr;
        GpuWorker *w;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0) {
                int r = NEG_ERRNO();
                free(w);
                return r;
        }
        w->refs = 1;
        w->library = c->library ? strdup(c->library) : NULL;
        w->endpoint = c->metadata_endpoint ? strdup(c->metadata_endpoint) : NULL;
        w->want_vm_size = c->expected == GPU_EXPECTED_AUTO;
        w->timeout_ms = c->timeout_usec / 1000;
        (void)pthread_mutex_init(&w->lock, NULL);
        (void)pthread_condattr_init(&attr);
        (void)pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        (void)pthread_cond_init(&w->cond, &attr);
        (void)pthread_condattr_destroy(&attr);
        if ((c->library && !w->library) || (c->metadata_endpoint && !w->endpoint)) {
                gpu_worker_unref(w);
                return -ENOMEM;
        }
        *ret = w;
        return 0;
}

int gpu_monitor_new(
        sd_event *event,
        Health *health,
        const GpuMonitorConfig *config,
        GpuChangeCallback cb,
        void *userdata,
        GpuMonitor **ret) {
        _cleanup_(gpu_monitor_freep) GpuMonitor *m = NULL;
        sigset_t all, saved;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = event;
        m->health = health;
        m->expected = config->expected;
        m->interval_usec = config->interval_usec;
        m->timeout_usec = config->timeout_usec;
        m->overall = GPU_VERDICT_UNKNOWN;
        m->cb = cb;
        m->userdata = userdata;
        m->checks = calloc(GPU_CHECKS_MAX, sizeof(GpuCheck));
        m->library = config->library ? strdup(config->library) : NULL;
        if (!m->checks || (config->library && !m->library))
                return -ENOMEM;
        (void)snprintf(m->summary, sizeof(m->summary), "GPU not checked yet");
        /* libcurl's global state before the thread that uses it (curl_easy_init would do it
         * lazily, and not thread-safely). */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -ENOMEM;
        r = gpu_worker_new(config, &m->worker);
        if (r < 0)
                return r;
        r = sd_event_add_io(event, &m->wake, m->worker->efd, EPOLLIN, gpu_monitor_on_wake, m);
        if (r < 0)
                return r;

        /* The worker takes no signal: the loop handles them (signalfd). */
        (void)sigfillset(&all);
        (void)pthread_sigmask(SIG_BLOCK, &all, &saved);
        m->worker->refs++;
        r = -pthread_create(&m->thread, NULL, gpu_worker_run, m->worker);
        (void)pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r < 0) {
                m->worker->refs--;
                return r;
        }

        r = gpu_monitor_arm(m);
        if (r < 0)
                return r;
        (void)gpu_monitor_check_now(m);
        *ret = TAKE_PTR(m);
        return 0;
}

GpuMonitor *gpu_monitor_free(GpuMonitor *m) {
        struct timespec until;
        bool busy, started;

        if (!m)
                return NULL;
        if (m->worker) {
                (void)pthread_mutex_lock(&m->worker->lock);
                m->worker->quit = true;
                started = m->worker->refs > 1;
                (void)pthread_cond_broadcast(&m->worker->cond);
                /* A read that ends soon is waited for (bounded), so that a stop does not
                 * leave a thread inside libnvml or libcurl without need. */
                (void)clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += GPU_STOP_WAIT_MS / 1000;
                while (started && m->worker->busy &&
                       pthread_cond_timedwait(&m->worker->cond, &m->worker->lock, &until) == 0)
                        ;
                busy = m->worker->busy;
                (void)pthread_mutex_unlock(&m->worker->lock);
                if (started && !busy)
                        (void)pthread_join(m->thread, NULL);
                else if (started) {
                        log_notice("A GPU read is still waiting on NVML; leaving it to finish");
                        (void)pthread_detach(m->thread);
                }
                m->wake = sd_event_source_disable_unref(m->wake);
                gpu_worker_unref(m->worker);
                if (!started || !busy) /* a detached worker may still be in libcurl */
                        curl_global_cleanup();
        }
        sd_event_source_disable_unref(m->wake);
        sd_event_source_disable_unref(m->interval_source);
        sd_event_source_disable_unref(m->deadline);
        free(m->snapshot);
        free(m->checks);
        free(m->library);
        free(m);
        return NULL;
}

int gpu_monitor_count(const GpuMonitor *m) {
        if (!m->snapshot || m->snapshot->load_error != 0 || m->snapshot->init_ret != NVML_SUCCESS ||
            m->snapshot->count_ret != NVML_SUCCESS)
                return -1;
        return (int)m->snapshot->count;
}

GpuVerdict gpu_monitor_overall(const GpuMonitor *m) {
        return m->overall;
}

unsigned gpu_monitor_checks(const GpuMonitor *m, const GpuCheck **ret) {
        *ret = m->checks;
        return m->n_checks;
}

const char *gpu_monitor_summary(const GpuMonitor *m) {
        return m->summary;
}

static int json_put(json_object *o, const char *key, json_object *v, bool may_be_null) {
        if (!v && !may_be_null)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static json_object *gpu_check_json(const GpuCheck *c) {
        json_object *o = json_object_new_object();
        int r = 0;

        if (!o)
                return NULL;
        r |= json_put(o, "name", json_object_new_string(c->name), false);
        r |= json_put(o, "gpu", c->gpu_index >= 0 ? json_object_new_int(c->gpu_index) : NULL, true);
        r |= json_put(o, "uuid", c->uuid[0] ? json_object_new_string(c->uuid) : NULL, true);
        r |= json_put(
                o, "pci_bus_id", c->pci_bus_id[0] ? json_object_new_string(c->pci_bus_id) : NULL,
                true);
        r |= json_put(o, "subject", json_object_new_string(c->subject), false);
        r |= json_put(o, "signal", json_object_new_string(c->signal), false);
        r |= json_put(o, "value", c->has_value ? json_object_new_double(c->value) : NULL, true);
        r |= json_put(o, "unit", json_object_new_string(c->unit), false);
        r |= json_put(
                o, "threshold_warning",
                c->has_threshold ? json_object_new_double(c->threshold_warning) : NULL, true);
        r |= json_put(
                o, "threshold_unhealthy",
                c->has_threshold ? json_object_new_double(c->threshold_unhealthy) : NULL, true);
        r |= json_put(
                o, "verdict", json_object_new_string(gpu_verdict_to_string(c->verdict)), false);
        r |= json_put(o, "message", json_object_new_string(c->message), false);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

int gpu_monitor_status_json(const GpuMonitor *m, json_object *o) {
        json_object *checks = json_object_new_array();
        char source[256];
        int expected, r = 0;
        bool running;

        (void)pthread_mutex_lock(&m->worker->lock);
        running = m->worker->busy || m->worker->request;
        (void)pthread_mutex_unlock(&m->worker->lock);
        expected = gpu_monitor_expected(m, source, sizeof(source));

        r |= json_put(o, "state", json_object_new_string(gpu_verdict_to_string(m->overall)), false);
        r |= json_put(o, "summary", json_object_new_string(m->summary), false);
        r |= json_put(o, "expected", expected >= 0 ? json_object_new_int(expected) : NULL, true);
        r |= json_put(o, "expected_source", json_object_new_string(source), false);
        r |= json_put(
                o, "vm_size", m->vm_size[0] ? json_object_new_string(m->vm_size) : NULL, true);
        r |= json_put(
                o, "count",
                m->snapshot && m->snapshot->load_error == 0 &&
                                m->snapshot->init_ret == NVML_SUCCESS &&
                                m->snapshot->count_ret == NVML_SUCCESS
                        ? json_object_new_int64(m->snapshot->count)
                        : NULL,
                true);
        r |= json_put(
                o, "driver_version",
                m->snapshot && m->snapshot->driver_version[0]
                        ? json_object_new_string(m->snapshot->driver_version)
                        : NULL,
                true);
        r |= json_put(
                o, "library",
                json_object_new_string(m->library ? m->library : NVML_DEFAULT_LIBRARY), false);
        r |= json_put(o, "last_check_usec", json_object_new_uint64(m->last_check_usec), false);
        r |= json_put(o, "reads", json_object_new_uint64(m->reads), false);
        r |= json_put(o, "read_running", json_object_new_boolean(running), false);
        r |= json_put(o, "timed_out", json_object_new_boolean(m->timed_out), false);
        r |= json_put(o, "interval_ms", json_object_new_uint64(m->interval_usec / 1000), false);
        r |= json_put(o, "timeout_ms", json_object_new_uint64(m->timeout_usec / 1000), false);
        r |= json_put(o, "checks", checks, false);
        for (unsigned i = 0; checks && i < m->n_checks; i++) {
                json_object *c = gpu_check_json(&m->checks[i]);
                if (!c || json_object_array_add(checks, c) < 0) {
                        json_object_put(c);
                        r = -ENOMEM;
                        break;
                }
        }
        return r < 0 ? -ENOMEM : 0;
}
