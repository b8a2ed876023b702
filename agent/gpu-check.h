/* SPDX-License-Identifier: MIT */
#pragma once

/* The GPU check: every interval one worker thread reads every GPU through NVML (gpu-nvml.h) and
 * the event loop turns the reading into a list of checks, each naming the GPU (index, UUID, PCI
 * bus id), the signal and its value:
 *
 *   gpu_nvml                     the library: missing, failing to initialise, or not answering
 *                                within the timeout (unhealthy when GPUs are expected)
 *   gpu_devices                  GPUs found against ExpectedGPUs= (fewer: unhealthy, more:
 *                                warning)
 *   gpu_lost                     a GPU answers NVML_ERROR_GPU_IS_LOST (fell off the bus):
 *                                unhealthy
 *   gpu_ecc_uncorrected_volatile uncorrectable ECC errors since the driver loaded: > 0 unhealthy
 *   gpu_retired_pages_pending    pages waiting for retirement (needs a reboot): unhealthy
 *   gpu_row_remap_failure        a row remap failed: unhealthy
 *   gpu_row_remap_pending        a row remap waits for a GPU reset: warning
 *   gpu_xid                      a critical Xid event (see GPU_CRITICAL_XIDS): unhealthy, and it
 *                                stays so until the agent restarts (after the reset or reboot
 *                                the Xid asks for)
 *   gpu_temperature_celsius      at or above the GPU's slowdown threshold: warning; at or above
 *                                its shutdown threshold: unhealthy
 *   gpu_throttle_reasons         hardware slowdown, thermal or power-brake throttling: warning
 *   gpu_memory_used_bytes        bytes in use (information)
 *   gpu_xid_other_events         non-critical Xids seen (information)
 *   gpu_driver                   the driver version (information)
 *
 * A reading that NVML does not support on a GPU (NVML_ERROR_NOT_SUPPORTED, e.g. ECC on a
 * consumer board) gives no check. NVML calls can block for seconds on a sick GPU, so they never
 * run on the event loop: one worker thread per monitor makes them, at most one read at a time;
 * a read still running after the timeout makes gpu_nvml unhealthy and no second read starts until
 * it returns. The same thread asks the Instance Metadata Service for the VM size when
 * ExpectedGPUs=auto, after the reading is out (bounded by 5 s or the timeout, whichever is less).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "gpu-nvml.h"
#include "macro.h"

typedef struct sd_event sd_event;
typedef struct json_object json_object;
typedef struct Health Health;
typedef struct GpuMonitor GpuMonitor;

/* ExpectedGPUs= (conf.h parses it): a count (0..GPU_MAX), or one of these. */
#define GPU_EXPECTED_AUTO (-1)    /* from the VM size (IMDS compute.vmSize) */
#define GPU_EXPECTED_NONE 0       /* none expected: a missing NVML is fine */
#define GPU_EXPECTED_UNKNOWN (-2) /* auto, and the size is not known (yet) */

/* Critical Xids (docs.nvidia.com/deploy/xid-errors/ and the dynamic page retirement guide):
 * 48 double-bit ECC error, 63 ECC page retirement or row remap recorded (reset needed), 64 page
 * retirement or row remap failure, 74 NVLink error, 79 GPU has fallen off the bus, 92 high
 * single-bit ECC error rate, 94 contained ECC error, 95 uncontained ECC error, 119 and 120 GSP
 * (GPU System Processor) timeout/error. Other Xids delivered by NVML (13, 31, 43, 45: usually an
 * application's fault) are shown but do not make the VM unhealthy. */
#define GPU_CRITICAL_XIDS 48, 63, 64, 74, 79, 92, 94, 95, 119, 120
#define GPU_XID_HISTORY_MAX 8U /* distinct critical Xids kept per GPU */

typedef enum GpuVerdict {
        GPU_VERDICT_OK,
        GPU_VERDICT_WARNING,
        GPU_VERDICT_UNHEALTHY,
        GPU_VERDICT_UNKNOWN, /* could not be measured */
        _GPU_VERDICT_MAX,
        _GPU_VERDICT_INVALID = -EINVAL,
} GpuVerdict;

const char *gpu_verdict_to_string(GpuVerdict v);

#define GPU_CHECK_NAME_MAX 48U
#define GPU_CHECK_SUBJECT_MAX 256U
#define GPU_CHECK_MESSAGE_MAX 256U
#define GPU_CHECKS_MAX (8U + GPU_MAX * 10U)

typedef struct GpuCheck {
        char name[GPU_CHECK_NAME_MAX]; /* "gpu_xid" */
        int gpu_index;                 /* -1: not about one GPU */
        char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
        char pci_bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
        char subject[GPU_CHECK_SUBJECT_MAX]; /* "GPU 0 (GPU-..., 00000000:00:1E.0)", or "" */
        char signal[GPU_CHECK_NAME_MAX];     /* more specific: "xid_79", "hw_slowdown"; or "" */
        bool has_value;
        double value;
        char unit[16]; /* "count", "celsius", "bytes", "" */
        bool has_threshold;
        double threshold_warning, threshold_unhealthy; /* in unit */
        GpuVerdict verdict;
        char message[GPU_CHECK_MESSAGE_MAX];
} GpuCheck;

/* Critical Xids seen per GPU index since the agent started (sticky); row GPU_MAX holds those of
 * devices that could not be matched to an index. */
typedef struct GpuXidHistory {
        unsigned long long xids[GPU_MAX + 1][GPU_XID_HISTORY_MAX];
        unsigned n[GPU_MAX + 1];
        unsigned long long last_other; /* the last non-critical Xid, 0 if none */
        unsigned n_other;
} GpuXidHistory;

/* ---- pure parts (no I/O) ------------------------------------------------------------------- */

/* The number of NVIDIA GPUs of an Azure VM size ("Standard_NC24ads_A100_v4", any case), from a
 * table of the NC, ND and NV sizes; 0 for sizes of other families (which have none);
 * GPU_EXPECTED_UNKNOWN for an N-family size missing from the table. */
int gpu_expected_for_vm_size(const char *vm_size);

bool gpu_xid_is_critical(unsigned long long xid);
/* A short description of a well-known Xid, or NULL. */
const char *gpu_xid_describe(unsigned long long xid);
/* Adds the events of a snapshot to the history. */
void gpu_xid_history_add(GpuXidHistory *h, const GpuXidEvent *events, unsigned n);

typedef struct GpuEvalInput {
        const GpuSnapshot *snapshot; /* NULL: no read finished yet */
        bool timed_out;              /* a read has run longer than timeout_ms */
        uint64_t timeout_ms;
        int expected;                /* a count, GPU_EXPECTED_NONE, or GPU_EXPECTED_UNKNOWN */
        const char *expected_source; /* "ExpectedGPUs=4", "VM size Standard_ND96isr_H100_v5" */
        const GpuXidHistory *xids;   /* may be NULL */
} GpuEvalInput;

/* Turns a reading into checks: writes at most GPU_CHECKS_MAX into checks[] and returns how many.
 * *ret_overall (may be NULL): the worst verdict (unknown only if nothing else). */
unsigned gpu_evaluate(const GpuEvalInput *in, GpuCheck *checks, GpuVerdict *ret_overall);

/* ---- the monitor --------------------------------------------------------------------------- */

typedef struct GpuMonitorConfig {
        const char *library;           /* NULL: NVML_DEFAULT_LIBRARY (copied) */
        const char *metadata_endpoint; /* IMDS scheme://host[:port] for ExpectedGPUs=auto */
        int expected;                  /* count, GPU_EXPECTED_NONE or GPU_EXPECTED_AUTO */
        uint64_t interval_usec;
        uint64_t timeout_usec;
} GpuMonitorConfig;

/* Called on the loop after every finished (or timed-out) read, with the new overall verdict. */
typedef void (*GpuChangeCallback)(GpuMonitor *m, GpuVerdict overall, bool changed, void *userdata);

/* Starts the worker thread and the first read at once. After every evaluation the checks go to
 * health (may be NULL) as source "gpu", which logs each change of a verdict. event and health are
 * borrowed. */
int gpu_monitor_new(
        sd_event *event,
        Health *health,
        const GpuMonitorConfig *config,
        GpuChangeCallback cb,
        void *userdata,
        GpuMonitor **ret);
/* Stops the worker: joined when idle; a worker stuck in NVML is left to finish on its own (it
 * frees what it shares with the monitor). NULL-safe. */
GpuMonitor *gpu_monitor_free(GpuMonitor *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(GpuMonitor *, gpu_monitor_free);

/* On reload: expected, interval and timeout (library and endpoint need a restart). */
void gpu_monitor_set_config(
        GpuMonitor *m, int expected, uint64_t interval_usec, uint64_t timeout_usec);
/* Asks for a read now (unless one is running); the result arrives on the loop. */
int gpu_monitor_check_now(GpuMonitor *m);

GpuVerdict gpu_monitor_overall(const GpuMonitor *m);
/* The GPUs NVML found in the last finished read, -1 before one or when NVML failed. */
int gpu_monitor_count(const GpuMonitor *m);
/* The checks of the last evaluation (borrowed, valid until the next one). */
unsigned gpu_monitor_checks(const GpuMonitor *m, const GpuCheck **ret);
/* A short summary for STATUS=: "GPU ok (4 of 4)", "GPU UNHEALTHY: gpu_lost GPU 2". */
const char *gpu_monitor_summary(const GpuMonitor *m);
/* Adds state, expected, expected_source, count, driver_version, library, last_check_usec,
 * reads, read_running and checks[] to o. */
int gpu_monitor_status_json(const GpuMonitor *m, json_object *o);
