/* SPDX-License-Identifier: MIT */
#pragma once

/* NVML (the NVIDIA Management Library, libnvidia-ml.so.1) loaded at run time with dlopen(): the
 * agent runs on CPU-only VMs too, where the library does not exist, so it is never linked.
 *
 * The first half of this header is the subset of NVML's C ABI the agent calls, written from
 * NVIDIA's nvml.h (NVML_API_VERSION 12; the copy read was github.com/XuehaiPan/nvml-dev nvml.h,
 * "Copyright 1993-2023 NVIDIA Corporation", commit bc73f41) and the NVML API reference
 * (docs.nvidia.com/deploy/nvml-api/). Read in that nvml.h: nvmlReturn_t (0-28, 999), the enums
 * below, nvmlPciInfo_t (v3 layout), nvmlMemory_t (bytes), nvmlEventData_t (eventData is the Xid,
 * 999 when unknown), nvmlEventTypeXidCriticalError, the clock throttle reason bits, and which
 * versioned symbols the unversioned names map to (nvmlInit_v2, nvmlDeviceGetCount_v2,
 * nvmlDeviceGetHandleByIndex_v2, nvmlDeviceGetPciInfo_v3, nvmlEventSetWait_v2). The buffer sizes
 * are nvml.h's constants as quoted by other copies of it. The prototypes follow the API reference
 * (the event functions as its "Event Handling Methods" page lists them; nvmlEventSetWait returns
 * NVML_ERROR_TIMEOUT when nothing arrived) and nvml.h; nvmlDeviceGetRemappedRows's four
 * unsigned int outputs also as NVIDIA's Python binding (pynvml) calls it. Names keep nvml.h's
 * spelling rather than ours. Checked against a real libnvidia-ml.so.1 on 2026-11-24 (one NVIDIA
 * H100 80GB HBM3, driver 580.159.04) with tests/tools/real-gpu-check.sh, which compares the
 * agent's readings with nvidia-smi's and with NVIDIA's Python binding: UUID, PCI bus id, name,
 * driver version, temperature and its thresholds, ECC, row remapping and memory agreed once
 * memory was read with nvmlDeviceGetMemoryInfo_v2 (v1 counts the driver's reservation as used).
 * The fake library of the tests (tests/tools/fake-nvml/fake-nvml.c) implements exactly these
 * declarations.
 *
 * The second half is our loader and one blocking read of everything the GPU check needs. NVML
 * calls may block for seconds on a sick GPU: call nvml_session_read() only from a worker thread
 * (gpu-check.c does), never from the event loop. */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* ---- the NVML ABI (from nvml.h) ------------------------------------------------------------ */

typedef enum nvmlReturn_enum {
        NVML_SUCCESS = 0,
        NVML_ERROR_UNINITIALIZED = 1,
        NVML_ERROR_INVALID_ARGUMENT = 2,
        NVML_ERROR_NOT_SUPPORTED = 3,
        NVML_ERROR_NO_PERMISSION = 4,
        NVML_ERROR_ALREADY_INITIALIZED = 5,
        NVML_ERROR_NOT_FOUND = 6,
        NVML_ERROR_INSUFFICIENT_SIZE = 7,
        NVML_ERROR_INSUFFICIENT_POWER = 8,
        NVML_ERROR_DRIVER_NOT_LOADED = 9,
        NVML_ERROR_TIMEOUT = 10,
        NVML_ERROR_IRQ_ISSUE = 11,
        NVML_ERROR_LIBRARY_NOT_FOUND = 12,
        NVML_ERROR_FUNCTION_NOT_FOUND = 13,
        NVML_ERROR_CORRUPTED_INFOROM = 14,
        NVML_ERROR_GPU_IS_LOST = 15,
        NVML_ERROR_RESET_REQUIRED = 16,
        NVML_ERROR_OPERATING_SYSTEM = 17,
        NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
        NVML_ERROR_IN_USE = 19,
        NVML_ERROR_MEMORY = 20,
        NVML_ERROR_NO_DATA = 21,
        NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22,
        NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
        NVML_ERROR_FREQ_NOT_SUPPORTED = 24,
        NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
        NVML_ERROR_DEPRECATED = 26,
        NVML_ERROR_NOT_READY = 27,
        NVML_ERROR_GPU_NOT_FOUND = 28,
        NVML_ERROR_UNKNOWN = 999,
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlEventSet_st *nvmlEventSet_t;

typedef enum nvmlEnableState_enum {
        NVML_FEATURE_DISABLED = 0,
        NVML_FEATURE_ENABLED = 1,
} nvmlEnableState_t;

typedef enum nvmlMemoryErrorType_enum {
        NVML_MEMORY_ERROR_TYPE_CORRECTED = 0,
        NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1,
} nvmlMemoryErrorType_t;

typedef enum nvmlEccCounterType_enum {
        NVML_VOLATILE_ECC = 0, /* reset when the driver loads */
        NVML_AGGREGATE_ECC = 1,
} nvmlEccCounterType_t;

typedef enum nvmlTemperatureSensors_enum {
        NVML_TEMPERATURE_GPU = 0,
} nvmlTemperatureSensors_t;

typedef enum nvmlTemperatureThresholds_enum {
        NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0,
        NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1,
        NVML_TEMPERATURE_THRESHOLD_MEM_MAX = 2,
        NVML_TEMPERATURE_THRESHOLD_GPU_MAX = 3,
} nvmlTemperatureThresholds_t;

#define NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE 32
#define NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE 16
#define NVML_DEVICE_UUID_V2_BUFFER_SIZE 96
#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96
#define NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE 80

/* nvmlDeviceGetPciInfo_v3 fills this (the v3 layout, with pciSubSystemId and the long busId). */
typedef struct nvmlPciInfo_st {
        char busIdLegacy[NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE];
        unsigned int domain;
        unsigned int bus;
        unsigned int device;
        unsigned int pciDeviceId;
        unsigned int pciSubSystemId;
        char busId[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
} nvmlPciInfo_t;

/* nvmlDeviceGetMemoryInfo (v1): bytes. "used" counts the memory the driver reserves for itself
 * (480 MiB on an H100 80GB with driver 580: a GPU nobody uses reads 480 MiB used). */
typedef struct nvmlMemory_st {
        unsigned long long total;
        unsigned long long free;
        unsigned long long used;
} nvmlMemory_t;

/* nvmlDeviceGetMemoryInfo_v2: bytes, with the driver's reservation apart; "used" is what
 * processes allocated, the figure nvidia-smi prints. The caller sets version to nvmlMemory_v2
 * (the struct's size and 2 in the top byte, nvml.h's NVML_STRUCT_VERSION); a library that does
 * not know it answers NVML_ERROR_ARGUMENT_VERSION_MISMATCH. */
typedef struct nvmlMemory_v2_st {
        unsigned int version;
        unsigned long long total;
        unsigned long long reserved;
        unsigned long long free;
        unsigned long long used;
} nvmlMemory_v2_t;
#define nvmlMemory_v2 ((unsigned int)(sizeof(nvmlMemory_v2_t) | (2U << 24)))

typedef struct nvmlEventData_st {
        nvmlDevice_t device;
        unsigned long long eventType;
        unsigned long long eventData; /* the Xid for nvmlEventTypeXidCriticalError (999: unknown) */
        unsigned int gpuInstanceId;
        unsigned int computeInstanceId;
} nvmlEventData_t;

#define nvmlEventTypeXidCriticalError 0x0000000000000008LL

/* Clock throttle ("event") reasons, bits of nvmlDeviceGetCurrentClocksThrottleReasons. */
#define nvmlClocksThrottleReasonGpuIdle 0x0000000000000001LL
#define nvmlClocksThrottleReasonApplicationsClocksSetting 0x0000000000000002LL
#define nvmlClocksThrottleReasonSwPowerCap 0x0000000000000004LL
#define nvmlClocksThrottleReasonHwSlowdown 0x0000000000000008LL
#define nvmlClocksThrottleReasonSyncBoost 0x0000000000000010LL
#define nvmlClocksThrottleReasonSwThermalSlowdown 0x0000000000000020LL
#define nvmlClocksThrottleReasonHwThermalSlowdown 0x0000000000000040LL
#define nvmlClocksThrottleReasonHwPowerBrakeSlowdown 0x0000000000000080LL
#define nvmlClocksThrottleReasonDisplayClockSetting 0x0000000000000100LL

/* The functions, as the library exports them (X(name, return type, parameters)). The loader
 * resolves each with dlsym(); a library lacking one of the required ones is refused. */
#define NVML_FUNCTIONS(X)                                                                          \
        X(nvmlInit_v2, nvmlReturn_t, (void))                                                       \
        X(nvmlShutdown, nvmlReturn_t, (void))                                                      \
        X(nvmlSystemGetDriverVersion, nvmlReturn_t, (char *version, unsigned int length))          \
        X(nvmlDeviceGetCount_v2, nvmlReturn_t, (unsigned int *deviceCount))                        \
        X(nvmlDeviceGetHandleByIndex_v2, nvmlReturn_t, (unsigned int index, nvmlDevice_t *device)) \
        X(nvmlDeviceGetUUID, nvmlReturn_t, (nvmlDevice_t device, char *uuid, unsigned int length)) \
        X(nvmlDeviceGetName, nvmlReturn_t, (nvmlDevice_t device, char *name, unsigned int length)) \
        X(nvmlDeviceGetPciInfo_v3, nvmlReturn_t, (nvmlDevice_t device, nvmlPciInfo_t * pci))       \
        X(nvmlDeviceGetTotalEccErrors, nvmlReturn_t,                                               \
          (nvmlDevice_t device, nvmlMemoryErrorType_t errorType, nvmlEccCounterType_t counterType, \
           unsigned long long *eccCounts))                                                         \
        X(nvmlDeviceGetTemperature, nvmlReturn_t,                                                  \
          (nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp))          \
        X(nvmlDeviceGetTemperatureThreshold, nvmlReturn_t,                                         \
          (nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType, unsigned int *temp))    \
        X(nvmlDeviceGetMemoryInfo, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_t * memory))     \
        X(nvmlEventSetCreate, nvmlReturn_t, (nvmlEventSet_t * set))                                \
        X(nvmlDeviceRegisterEvents, nvmlReturn_t,                                                  \
          (nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set))                \
        X(nvmlEventSetWait_v2, nvmlReturn_t,                                                       \
          (nvmlEventSet_t set, nvmlEventData_t * data, unsigned int timeoutms))                    \
        X(nvmlEventSetFree, nvmlReturn_t, (nvmlEventSet_t set))

/* Functions newer than some drivers still in use (row remapping came with R450, the memory
 * reading with the reservation apart later) or on their way out (the throttle reasons were
 * renamed clock event reasons in R535): a library without them is used all the same, and their
 * readings count as NVML_ERROR_FUNCTION_NOT_FOUND, like a reading the GPU does not support (the
 * memory reading falls back to nvmlDeviceGetMemoryInfo). */
#define NVML_OPTIONAL_FUNCTIONS(X)                                                                 \
        X(nvmlDeviceGetRetiredPagesPendingStatus, nvmlReturn_t,                                    \
          (nvmlDevice_t device, nvmlEnableState_t * isPending))                                    \
        X(nvmlDeviceGetRemappedRows, nvmlReturn_t,                                                 \
          (nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,                     \
           unsigned int *isPending, unsigned int *failureOccurred))                                \
        X(nvmlDeviceGetCurrentClocksThrottleReasons, nvmlReturn_t,                                 \
          (nvmlDevice_t device, unsigned long long *clocksThrottleReasons))                        \
        X(nvmlDeviceGetCurrentClocksEventReasons, nvmlReturn_t,                                    \
          (nvmlDevice_t device, unsigned long long *clocksEventReasons))                           \
        X(nvmlDeviceGetMemoryInfo_v2, nvmlReturn_t, (nvmlDevice_t device, nvmlMemory_v2_t * memory))

/* Our name of an NVML return code ("GPU_IS_LOST"), or NULL for a code nvml.h does not list. */
const char *nvml_return_to_string(int r);

/* ---- what the agent reads ------------------------------------------------------------------ */

#define NVML_DEFAULT_LIBRARY "libnvidia-ml.so.1"
#define GPU_MAX 64U             /* GPUs read at most */
#define GPU_XID_EVENTS_MAX 256U /* Xid events taken per read at most */

/* One GPU as read. Each *_ret is the nvmlReturn_t of the call behind the values next to it;
 * the values mean something only when it is NVML_SUCCESS. */
typedef struct GpuReading {
        unsigned index;
        int handle_ret;
        char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
        char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
        char pci_bus_id[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
        int uuid_ret, pci_ret;
        int ecc_ret;
        uint64_t ecc_uncorrected_volatile;
        int retired_ret;
        bool retired_pending;
        int remap_ret;
        unsigned remap_correctable, remap_uncorrectable;
        bool remap_pending, remap_failure;
        int temp_ret, slowdown_ret, shutdown_ret;
        unsigned temp_c, slowdown_c, shutdown_c; /* degrees Celsius */
        int throttle_ret;
        uint64_t throttle_reasons; /* nvmlClocksThrottleReason* bits */
        int memory_ret;
        bool memory_v2;                     /* read with nvmlDeviceGetMemoryInfo_v2 */
        uint64_t memory_total, memory_used; /* bytes; used: allocated by processes (v2) */
        uint64_t memory_reserved;           /* bytes the driver keeps (v2 only, else 0) */
} GpuReading;

/* A critical Xid event as delivered by nvmlEventSetWait_v2. */
typedef struct GpuXidEvent {
        int gpu_index; /* -1: a device we could not match */
        unsigned long long xid;
} GpuXidEvent;

/* One full read. */
typedef struct GpuSnapshot {
        int load_error; /* 0, or -errno: library missing (-ENOENT) or lacking a function (-ENOSYS)
                         */
        char load_detail[256]; /* dlerror() text when load_error != 0 */
        int init_ret;          /* nvmlInit_v2 */
        int driver_ret;
        char driver_version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
        int count_ret;
        unsigned count; /* as nvmlDeviceGetCount_v2 said */
        GpuReading gpus[GPU_MAX];
        unsigned n_gpus; /* min(count, GPU_MAX) */
        int events_ret;  /* NVML_SUCCESS if Xid events are watched on every GPU */
        GpuXidEvent xids[GPU_XID_EVENTS_MAX];
        unsigned n_xids;
} GpuSnapshot;

typedef struct NvmlSession NvmlSession;

/* Loads the library (path NULL: NVML_DEFAULT_LIBRARY through the dynamic linker's usual search)
 * with RTLD_NOW|RTLD_LOCAL and resolves every function. -ENOENT when it cannot be loaded (no
 * NVIDIA driver installed), -ENOSYS when a function is missing, -ENOMEM; *reterr_detail (may be
 * NULL) gets dlerror()'s text, malloc'ed. Initialises nothing yet. */
int nvml_session_open(const char *path, NvmlSession **ret, char **reterr_detail);
/* nvmlShutdown() if initialised, dlclose(). NULL-safe. Blocking: worker thread only. */
NvmlSession *nvml_session_free(NvmlSession *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(NvmlSession *, nvml_session_free);

/* Blocking: initialises NVML if needed (again after a failure), registers Xid events on every
 * GPU once, reads every GPU and drains the pending Xid events into *ret (which is overwritten).
 * Never fails as a whole: every failure is in the snapshot's *_ret fields. */
void nvml_session_read(NvmlSession *s, GpuSnapshot *ret);
