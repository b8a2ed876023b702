/* SPDX-License-Identifier: MIT */
/* A fake libnvidia-ml.so.1 for the agent's GPU tests: exactly the NVML functions the agent calls
 * (NVML_FUNCTIONS in agent/gpu-nvml.h, which declares them with NVML's C ABI, and three of its
 * NVML_OPTIONAL_FUNCTIONS; the definitions below are checked against those declarations by the
 * compiler), with NVML's return codes and
 * units, driven by a scenario file named by $FAKE_NVML_SCENARIO (INI, read with inih):
 *
 *   [nvml]
 *   init=SUCCESS          return code of nvmlInit_v2 (a name without NVML_ERROR_, or a number)
 *   driver=550.54.15      nvmlSystemGetDriverVersion
 *   count=4               what nvmlDeviceGetCount_v2 reports (GPUs 0..count-1)
 *   hang_ms=0             every nvmlDeviceGetCount_v2 blocks this long first (a stuck driver)
 *   events=SUCCESS        return code of nvmlDeviceRegisterEvents
 *
 *   [gpu0]                one section per GPU that differs from a healthy default
 *   uuid=GPU-...          nvmlDeviceGetUUID (default GPU-fa4e0000-0000-4000-8000-00000000000N)
 *   pci=00000000:00:1E.0  nvmlPciInfo_t.busId (default 00000000:0N:00.0)
 *   name=...              nvmlDeviceGetName (default "NVIDIA A100 80GB PCIe")
 *   lost=yes              every call about this GPU returns NVML_ERROR_GPU_IS_LOST
 *   ecc=SUCCESS           return code of the ECC query (NOT_SUPPORTED: a board without ECC)
 *   ecc_uncorrected=0     volatile uncorrected ECC errors (count)
 *   retired_pending=no    nvmlDeviceGetRetiredPagesPendingStatus
 *   remap_pending=no, remap_failure=no, remap_correctable=0, remap_uncorrectable=0
 *   temperature=40, slowdown=90, shutdown=95  degrees Celsius
 *   throttle=0x1          nvmlClocksThrottleReason bits
 *   memory_total=85899345920, memory_used=1048576  bytes (used: allocated by processes)
 *   memory_reserved=0     bytes the driver keeps: nvmlDeviceGetMemoryInfo_v2 reports them apart,
 *                         nvmlDeviceGetMemoryInfo (v1) counts them in "used", as the real
 *                         library does (an idle H100 with driver 580: v1 480 MiB, v2 0 used)
 *   memory_v2=SUCCESS     return code of nvmlDeviceGetMemoryInfo_v2 (ARGUMENT_VERSION_MISMATCH:
 *                         an older library); it also answers that when the caller's version
 *                         word is not nvmlMemory_v2
 *   xid=79                Xid events (comma-separated), each delivered once by
 *                         nvmlEventSetWait_v2 to an event set this GPU is registered with
 *
 * The file is read again by every nvmlDeviceGetCount_v2 call, so a test can change the scenario
 * while the agent runs. Without $FAKE_NVML_SCENARIO (or when it cannot be read) nvmlInit_v2
 * returns NVML_ERROR_DRIVER_NOT_LOADED. Not thread-safe (the agent calls NVML from one thread);
 * not installed. The return codes and units follow NVIDIA's nvml.h and API reference, see
 * agent/gpu-nvml.h; the memory readings follow what the real library answered on an H100
 * (tests/tools/real-gpu-check.sh). */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <ini.h>

#include "gpu-nvml.h"

/* The compiler checks each definition below against NVML's declaration. */
#define FAKE_DECLARE(name, ret, params) __attribute__((visibility("default"))) ret name params;
NVML_FUNCTIONS(FAKE_DECLARE)
#undef FAKE_DECLARE
/* Of the optional ones, all but nvmlDeviceGetCurrentClocksEventReasons (the agent calls that
 * only when nvmlDeviceGetCurrentClocksThrottleReasons is missing). */
__attribute__((visibility("default"))) nvmlReturn_t
nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory);
__attribute__((visibility("default"))) nvmlReturn_t
nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending);
__attribute__((visibility("default"))) nvmlReturn_t nvmlDeviceGetRemappedRows(
        nvmlDevice_t device,
        unsigned int *corrRows,
        unsigned int *uncRows,
        unsigned int *isPending,
        unsigned int *failureOccurred);
__attribute__((visibility("default"))) nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(
        nvmlDevice_t device, unsigned long long *clocksThrottleReasons);

#define FAKE_GPUS 16U
#define FAKE_XIDS 16U

struct nvmlDevice_st {
        unsigned index;
};

struct nvmlEventSet_st {
        bool registered[FAKE_GPUS];
        unsigned delivered[FAKE_GPUS]; /* xids of each GPU delivered so far */
};

typedef struct FakeGpu {
        char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
        char pci[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];
        char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE];
        bool lost;
        int ecc_ret;
        unsigned long long ecc_uncorrected;
        bool retired_pending, remap_pending, remap_failure;
        unsigned remap_correctable, remap_uncorrectable;
        unsigned temperature, slowdown, shutdown;
        unsigned long long throttle;
        unsigned long long memory_total, memory_used, memory_reserved;
        int memory_v2_ret;
        unsigned long long xids[FAKE_XIDS];
        unsigned n_xids;
} FakeGpu;

typedef struct FakeScenario {
        int init_ret;
        int events_ret;
        char driver[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE];
        unsigned count;
        unsigned hang_ms;
        FakeGpu gpus[FAKE_GPUS];
} FakeScenario;

static FakeScenario scenario;
static unsigned init_refs;
static struct nvmlDevice_st devices[FAKE_GPUS];

static int parse_return(const char *v) {
        static const struct {
                const char *name;
                int code;
        } codes[] = {
                {"SUCCESS", NVML_SUCCESS},
                {"UNINITIALIZED", NVML_ERROR_UNINITIALIZED},
                {"NOT_SUPPORTED", NVML_ERROR_NOT_SUPPORTED},
                {"NO_PERMISSION", NVML_ERROR_NO_PERMISSION},
                {"DRIVER_NOT_LOADED", NVML_ERROR_DRIVER_NOT_LOADED},
                {"TIMEOUT", NVML_ERROR_TIMEOUT},
                {"GPU_IS_LOST", NVML_ERROR_GPU_IS_LOST},
                {"LIB_RM_VERSION_MISMATCH", NVML_ERROR_LIB_RM_VERSION_MISMATCH},
                {"FUNCTION_NOT_FOUND", NVML_ERROR_FUNCTION_NOT_FOUND},
                {"ARGUMENT_VERSION_MISMATCH", NVML_ERROR_ARGUMENT_VERSION_MISMATCH},
                {"UNKNOWN", NVML_ERROR_UNKNOWN},
        };

        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                if (strcasecmp(v, codes[i].name) == 0)
                        return codes[i].code;
        return (int)strtol(v, NULL, 0);
}

static bool parse_bool(const char *v) {
        return strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0;
}

static void scenario_defaults(FakeScenario *s) {
        *s = (FakeScenario){.count = 0, .init_ret = NVML_SUCCESS, .events_ret = NVML_SUCCESS};
        (void)snprintf(s->driver, sizeof(s->driver), "550.54.15");
        for (unsigned i = 0; i < FAKE_GPUS; i++) {
                FakeGpu *g = &s->gpus[i];
                (void)snprintf(g->uuid, sizeof(g->uuid), "GPU-fa4e0000-0000-4000-8000-%012u", i);
                (void)snprintf(g->pci, sizeof(g->pci), "00000000:%02X:00.0", i + 1);
                (void)snprintf(g->name, sizeof(g->name), "NVIDIA A100 80GB PCIe");
                g->temperature = 40;
                g->slowdown = 90;
                g->shutdown = 95;
                g->throttle = (unsigned long long)nvmlClocksThrottleReasonGpuIdle;
                g->memory_total = 85899345920ULL;
                g->memory_used = 1048576ULL;
        }
}

static int scenario_handler(void *user, const char *section, const char *key, const char *value) {
        FakeScenario *s = user;
        unsigned idx;
        FakeGpu *g;

        if (strcmp(section, "nvml") == 0) {
                if (strcmp(key, "init") == 0)
                        s->init_ret = parse_return(value);
                else if (strcmp(key, "events") == 0)
                        s->events_ret = parse_return(value);
                else if (strcmp(key, "driver") == 0)
                        (void)snprintf(s->driver, sizeof(s->driver), "%s", value);
                else if (strcmp(key, "count") == 0)
                        s->count = (unsigned)strtoul(value, NULL, 10);
                else if (strcmp(key, "hang_ms") == 0)
                        s->hang_ms = (unsigned)strtoul(value, NULL, 10);
                else
                        return 0;
                return 1;
        }
        if (sscanf(section, "gpu%u", &idx) != 1 || idx >= FAKE_GPUS)
                return 0;
        g = &s->gpus[idx];
        if (strcmp(key, "uuid") == 0)
                (void)snprintf(g->uuid, sizeof(g->uuid), "%s", value);
        else if (strcmp(key, "pci") == 0)
                (void)snprintf(g->pci, sizeof(g->pci), "%s", value);
        else if (strcmp(key, "name") == 0)
                (void)snprintf(g->name, sizeof(g->name), "%s", value);
        else if (strcmp(key, "lost") == 0)
                g->lost = parse_bool(value);
        else if (strcmp(key, "ecc") == 0)
                g->ecc_ret = parse_return(value);
        else if (strcmp(key, "ecc_uncorrected") == 0)
                g->ecc_uncorrected = strtoull(value, NULL, 10);
        else if (strcmp(key, "retired_pending") == 0)
                g->retired_pending = parse_bool(value);
        else if (strcmp(key, "remap_pending") == 0)
                g->remap_pending = parse_bool(value);
        else if (strcmp(key, "remap_failure") == 0)
                g->remap_failure = parse_bool(value);
        else if (strcmp(key, "remap_correctable") == 0)
                g->remap_correctable = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(key, "remap_uncorrectable") == 0)
                g->remap_uncorrectable = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(key, "temperature") == 0)
                g->temperature = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(key, "slowdown") == 0)
                g->slowdown = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(key, "shutdown") == 0)
                g->shutdown = (unsigned)strtoul(value, NULL, 10);
        else if (strcmp(key, "throttle") == 0)
                g->throttle = strtoull(value, NULL, 0);
        else if (strcmp(key, "memory_total") == 0)
                g->memory_total = strtoull(value, NULL, 10);
        else if (strcmp(key, "memory_used") == 0)
                g->memory_used = strtoull(value, NULL, 10);
        else if (strcmp(key, "memory_reserved") == 0)
                g->memory_reserved = strtoull(value, NULL, 10);
        else if (strcmp(key, "memory_v2") == 0)
                g->memory_v2_ret = parse_return(value);
        else if (strcmp(key, "xid") == 0) {
                char copy[256], *p = copy, *tok;
                (void)snprintf(copy, sizeof(copy), "%s", value);
                g->n_xids = 0;
                while ((tok = strsep(&p, ", ")) && g->n_xids < FAKE_XIDS)
                        if (*tok)
                                g->xids[g->n_xids++] = strtoull(tok, NULL, 10);
        } else
                return 0;
        return 1;
}

/* 0, or -1 when the scenario cannot be read (the driver then counts as not loaded). */
static int scenario_load(void) {
        const char *path = getenv("FAKE_NVML_SCENARIO");
        FakeScenario s;

        scenario_defaults(&s);
        if (!path || ini_parse(path, scenario_handler, &s) != 0)
                return -1;
        if (s.count > FAKE_GPUS)
                s.count = FAKE_GPUS;
        scenario = s;
        return 0;
}

/* The device a handle stands for, or NULL for a handle we never gave out. */
static FakeGpu *gpu_of(nvmlDevice_t device) {
        if (!device || device < devices || device >= devices + FAKE_GPUS)
                return NULL;
        return &scenario.gpus[device->index];
}

/* The checks every device call makes first, in the library's order. */
#define DEVICE_PROLOGUE(device, g)                                                                 \
        do {                                                                                       \
                if (init_refs == 0)                                                                \
                        return NVML_ERROR_UNINITIALIZED;                                           \
                (g) = gpu_of(device);                                                              \
                if (!(g))                                                                          \
                        return NVML_ERROR_INVALID_ARGUMENT;                                        \
                if ((g)->lost)                                                                     \
                        return NVML_ERROR_GPU_IS_LOST;                                             \
        } while (0)

nvmlReturn_t nvmlInit_v2(void) {
        if (scenario_load() < 0)
                return NVML_ERROR_DRIVER_NOT_LOADED;
        if (scenario.init_ret != NVML_SUCCESS)
                return (nvmlReturn_t)scenario.init_ret;
        for (unsigned i = 0; i < FAKE_GPUS; i++)
                devices[i].index = i;
        init_refs++;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        init_refs--;
        return NVML_SUCCESS;
}

static nvmlReturn_t copy_out(char *buf, unsigned int length, const char *s) {
        size_t n = strlen(s);

        if (!buf)
                return NVML_ERROR_INVALID_ARGUMENT;
        if (length < n + 1)
                return NVML_ERROR_INSUFFICIENT_SIZE;
        memcpy(buf, s, n + 1);
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        return copy_out(version, length, scenario.driver);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        if (!deviceCount)
                return NVML_ERROR_INVALID_ARGUMENT;
        (void)scenario_load(); /* a test may have changed it; keep the old one if unreadable */
        if (scenario.hang_ms > 0) {
                struct timespec ts = {
                        .tv_sec = scenario.hang_ms / 1000,
                        .tv_nsec = (long)(scenario.hang_ms % 1000) * 1000000L,
                };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
        }
        *deviceCount = scenario.count;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        if (!device || index >= scenario.count)
                return NVML_ERROR_INVALID_ARGUMENT;
        /* The real library hands out handles of lost GPUs and fails later calls; it may also
         * fail here with GPU_IS_LOST. The agent copes with both. */
        *device = &devices[index];
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        return copy_out(uuid, length, g->uuid);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        return copy_out(name, length, g->name);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) {
        unsigned domain = 0, bus = 0, dev = 0;
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!pci)
                return NVML_ERROR_INVALID_ARGUMENT;
        memset(pci, 0, sizeof(*pci));
        (void)sscanf(g->pci, "%x:%x:%x", &domain, &bus, &dev);
        pci->domain = domain;
        pci->bus = bus;
        pci->device = dev;
        pci->pciDeviceId = 0x20b510deU; /* A100 80GB PCIe: device 0x20b5, vendor 0x10de */
        (void)snprintf(pci->busId, sizeof(pci->busId), "%s", g->pci);
        (void)snprintf(
                pci->busIdLegacy, sizeof(pci->busIdLegacy), "%04X:%02X:%02X.0", domain & 0xffff,
                bus, dev);
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(
        nvmlDevice_t device,
        nvmlMemoryErrorType_t errorType,
        nvmlEccCounterType_t counterType,
        unsigned long long *eccCounts) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!eccCounts || (unsigned)errorType > NVML_MEMORY_ERROR_TYPE_UNCORRECTED ||
            (unsigned)counterType > NVML_AGGREGATE_ECC)
                return NVML_ERROR_INVALID_ARGUMENT;
        if (g->ecc_ret != NVML_SUCCESS)
                return (nvmlReturn_t)g->ecc_ret;
        *eccCounts = errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED ? g->ecc_uncorrected : 0;
        return NVML_SUCCESS;
}

nvmlReturn_t
nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!isPending)
                return NVML_ERROR_INVALID_ARGUMENT;
        *isPending = g->retired_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetRemappedRows(
        nvmlDevice_t device,
        unsigned int *corrRows,
        unsigned int *uncRows,
        unsigned int *isPending,
        unsigned int *failureOccurred) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!corrRows || !uncRows || !isPending || !failureOccurred)
                return NVML_ERROR_INVALID_ARGUMENT;
        *corrRows = g->remap_correctable;
        *uncRows = g->remap_uncorrectable;
        *isPending = g->remap_pending;
        *failureOccurred = g->remap_failure;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(
        nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!temp || sensorType != NVML_TEMPERATURE_GPU)
                return NVML_ERROR_INVALID_ARGUMENT;
        *temp = g->temperature;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperatureThreshold(
        nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType, unsigned int *temp) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!temp)
                return NVML_ERROR_INVALID_ARGUMENT;
        switch (thresholdType) {
        case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
                *temp = g->shutdown;
                return NVML_SUCCESS;
        case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
                *temp = g->slowdown;
                return NVML_SUCCESS;
        default:
                return NVML_ERROR_NOT_SUPPORTED;
        }
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(
        nvmlDevice_t device, unsigned long long *clocksThrottleReasons) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!clocksThrottleReasons)
                return NVML_ERROR_INVALID_ARGUMENT;
        *clocksThrottleReasons = g->throttle;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!memory)
                return NVML_ERROR_INVALID_ARGUMENT;
        memory->total = g->memory_total;
        memory->used = g->memory_used + g->memory_reserved;
        memory->free = g->memory_total - memory->used;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!memory)
                return NVML_ERROR_INVALID_ARGUMENT;
        if (g->memory_v2_ret != NVML_SUCCESS)
                return (nvmlReturn_t)g->memory_v2_ret;
        if (memory->version != nvmlMemory_v2)
                return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
        memory->total = g->memory_total;
        memory->reserved = g->memory_reserved;
        memory->used = g->memory_used;
        memory->free = g->memory_total - g->memory_used - g->memory_reserved;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        if (!set)
                return NVML_ERROR_INVALID_ARGUMENT;
        *set = calloc(1, sizeof(**set));
        return *set ? NVML_SUCCESS : NVML_ERROR_MEMORY;
}

nvmlReturn_t
nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set) {
        FakeGpu *g;

        DEVICE_PROLOGUE(device, g);
        if (!set || eventTypes == 0)
                return NVML_ERROR_INVALID_ARGUMENT;
        if (eventTypes & ~(unsigned long long)nvmlEventTypeXidCriticalError)
                return NVML_ERROR_NOT_SUPPORTED; /* the fake only knows Xid events */
        if (scenario.events_ret != NVML_SUCCESS)
                return (nvmlReturn_t)scenario.events_ret;
        set->registered[device->index] = true;
        return NVML_SUCCESS;
}

nvmlReturn_t
nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        if (!set || !data)
                return NVML_ERROR_INVALID_ARGUMENT;
        for (unsigned i = 0; i < FAKE_GPUS; i++) {
                FakeGpu *g = &scenario.gpus[i];
                if (!set->registered[i] || set->delivered[i] >= g->n_xids)
                        continue;
                *data = (nvmlEventData_t){
                        .device = &devices[i],
                        .eventType = (unsigned long long)nvmlEventTypeXidCriticalError,
                        .eventData = g->xids[set->delivered[i]++],
                        .gpuInstanceId = 0xFFFFFFFFU,
                        .computeInstanceId = 0xFFFFFFFFU,
                };
                return NVML_SUCCESS;
        }
        /* Nothing pending: the real library sleeps up to timeoutms; the agent only polls (0). */
        return NVML_ERROR_TIMEOUT;
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
        if (init_refs == 0)
                return NVML_ERROR_UNINITIALIZED;
        free(set);
        return NVML_SUCCESS;
}
