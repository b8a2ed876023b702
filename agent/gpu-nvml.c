/* SPDX-License-Identifier: MIT */
#include "gpu-nvml.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const nvml_return_table[] = {
        [NVML_SUCCESS] = "SUCCESS",
        [NVML_ERROR_UNINITIALIZED] = "UNINITIALIZED",
        [NVML_ERROR_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [NVML_ERROR_NOT_SUPPORTED] = "NOT_SUPPORTED",
        [NVML_ERROR_NO_PERMISSION] = "NO_PERMISSION",
        [NVML_ERROR_ALREADY_INITIALIZED] = "ALREADY_INITIALIZED",
        [NVML_ERROR_NOT_FOUND] = "NOT_FOUND",
        [NVML_ERROR_INSUFFICIENT_SIZE] = "INSUFFICIENT_SIZE",
        [NVML_ERROR_INSUFFICIENT_POWER] = "INSUFFICIENT_POWER",
        [NVML_ERROR_DRIVER_NOT_LOADED] = "DRIVER_NOT_LOADED",
        [NVML_ERROR_TIMEOUT] = "TIMEOUT",
        [NVML_ERROR_IRQ_ISSUE] = "IRQ_ISSUE",
        [NVML_ERROR_LIBRARY_NOT_FOUND] = "LIBRARY_NOT_FOUND",
        [NVML_ERROR_FUNCTION_NOT_FOUND] = "FUNCTION_NOT_FOUND",
        [NVML_ERROR_CORRUPTED_INFOROM] = "CORRUPTED_INFOROM",
        [NVML_ERROR_GPU_IS_LOST] = "GPU_IS_LOST",
        [NVML_ERROR_RESET_REQUIRED] = "RESET_REQUIRED",
        [NVML_ERROR_OPERATING_SYSTEM] = "OPERATING_SYSTEM",
        [NVML_ERROR_LIB_RM_VERSION_MISMATCH] = "LIB_RM_VERSION_MISMATCH",
        [NVML_ERROR_IN_USE] = "IN_USE",
        [NVML_ERROR_MEMORY] = "MEMORY",
        [NVML_ERROR_NO_DATA] = "NO_DATA",
        [NVML_ERROR_VGPU_ECC_NOT_SUPPORTED] = "VGPU_ECC_NOT_SUPPORTED",
        [NVML_ERROR_INSUFFICIENT_RESOURCES] = "INSUFFICIENT_RESOURCES",
        [NVML_ERROR_FREQ_NOT_SUPPORTED] = "FREQ_NOT_SUPPORTED",
        [NVML_ERROR_ARGUMENT_VERSION_MISMATCH] = "ARGUMENT_VERSION_MISMATCH",
        [NVML_ERROR_DEPRECATED] = "DEPRECATED",
        [NVML_ERROR_NOT_READY] = "NOT_READY",
        [NVML_ERROR_GPU_NOT_FOUND] = "GPU_NOT_FOUND",
};

const char *nvml_return_to_string(int r) {
        if (r == NVML_ERROR_UNKNOWN)
                return "UNKNOWN";
        if (r < 0 || (size_t)r >= ELEMENTSOF(nvml_return_table))
                return NULL;
        return nvml_return_table[r];
}

/* ---- the session ---------------------------------------------------------------------------- */

struct NvmlSession {
        void *dl;
#define NVML_FIELD(name, ret, params) ret(*name) params;
        NVML_FUNCTIONS(NVML_FIELD)
        NVML_OPTIONAL_FUNCTIONS(NVML_FIELD) /* NULL when the library lacks them */
#undef NVML_FIELD
        bool initialised;
        nvmlEventSet_t events;
        bool registered[GPU_MAX];      /* Xid events registered for this index */
        nvmlDevice_t handles[GPU_MAX]; /* as registered, to match events to GPUs */
        int register_ret;              /* the last failure to register, NVML_SUCCESS if none */
};

int nvml_session_open(const char *path, NvmlSession **ret, char **reterr_detail) {
        NvmlSession *s;
        const char *e;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->dl = dlopen(path ? path : NVML_DEFAULT_LIBRARY, RTLD_NOW | RTLD_LOCAL);
        if (!s->dl) {
                e = dlerror();
                if (reterr_detail)
                        *reterr_detail = e ? strdup(e) : NULL;
                free(s);
                return -ENOENT;
        }
#define NVML_RESOLVE(name, rtype, params)                                                          \
        if (!(s->name = (rtype(*) params)dlsym(s->dl, #name))) {                                   \
                if (reterr_detail && asprintf(reterr_detail, "function %s not found", #name) < 0)  \
                        *reterr_detail = NULL;                                                     \
                (void)dlclose(s->dl);                                                              \
                free(s);                                                                           \
                return -ENOSYS;                                                                    \
        }
        NVML_FUNCTIONS(NVML_RESOLVE)
#undef NVML_RESOLVE
#define NVML_RESOLVE_OPTIONAL(name, rtype, params) s->name = (rtype(*) params)dlsym(s->dl, #name);
        NVML_OPTIONAL_FUNCTIONS(NVML_RESOLVE_OPTIONAL)
#undef NVML_RESOLVE_OPTIONAL
        *ret = s;
        return 0;
}

NvmlSession *nvml_session_free(NvmlSession *s) {
        if (!s)
                return NULL;
        if (s->events)
                (void)s->nvmlEventSetFree(s->events);
        if (s->initialised)
                (void)s->nvmlShutdown();
        (void)dlclose(s->dl);
        free(s);
        return NULL;
}

/* Copies an NVML string out of a buffer that the library may have left unterminated. */
static void copy_string(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);

        memcpy(dst, src, n);
        dst[n] = '\0';
}

static void nvml_read_gpu(NvmlSession *s, unsigned index, GpuReading *g) {
        char buf[NVML_DEVICE_UUID_V2_BUFFER_SIZE + 1];
        nvmlDevice_t dev = NULL;
        nvmlEnableState_t pending = NVML_FEATURE_DISABLED;
        nvmlPciInfo_t pci;
        nvmlMemory_t mem;
        nvmlMemory_v2_t mem2;
        unsigned long long ull = 0;
        unsigned corr = 0, unc = 0, is_pending = 0, failure = 0;

        *g = (GpuReading){.index = index};
        g->handle_ret = s->nvmlDeviceGetHandleByIndex_v2(index, &dev);
        if (g->handle_ret != NVML_SUCCESS)
                return;

        memset(buf, 0, sizeof(buf));
        g->uuid_ret = s->nvmlDeviceGetUUID(dev, buf, NVML_DEVICE_UUID_V2_BUFFER_SIZE);
        if (g->uuid_ret == NVML_SUCCESS)
                copy_string(g->uuid, sizeof(g->uuid), buf);
        memset(buf, 0, sizeof(buf));
        if (s->nvmlDeviceGetName(dev, buf, NVML_DEVICE_NAME_V2_BUFFER_SIZE) == NVML_SUCCESS)
                copy_string(g->name, sizeof(g->name), buf);
        memset(&pci, 0, sizeof(pci));
        g->pci_ret = s->nvmlDeviceGetPciInfo_v3(dev, &pci);
        if (g->pci_ret == NVML_SUCCESS)
                copy_string(g->pci_bus_id, sizeof(g->pci_bus_id), pci.busId);

        g->ecc_ret = s->nvmlDeviceGetTotalEccErrors(
                dev, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC, &ull);
        g->ecc_uncorrected_volatile = ull;
        g->retired_ret = s->nvmlDeviceGetRetiredPagesPendingStatus
                                 ? s->nvmlDeviceGetRetiredPagesPendingStatus(dev, &pending)
                                 : NVML_ERROR_FUNCTION_NOT_FOUND;
        g->retired_pending = pending == NVML_FEATURE_ENABLED;
        g->remap_ret =
                s->nvmlDeviceGetRemappedRows
                        ? s->nvmlDeviceGetRemappedRows(dev, &corr, &unc, &is_pending, &failure)
                        : NVML_ERROR_FUNCTION_NOT_FOUND;
        g->remap_correctable = corr;
        g->remap_uncorrectable = unc;
        g->remap_pending = is_pending != 0;
        g->remap_failure = failure != 0;
        g->temp_ret = s->nvmlDeviceGetTemperature(dev, NVML_TEMPERATURE_GPU, &g->temp_c);
        g->slowdown_ret = s->nvmlDeviceGetTemperatureThreshold(
                dev, NVML_TEMPERATURE_THRESHOLD_SLOWDOWN, &g->slowdown_c);
        g->shutdown_ret = s->nvmlDeviceGetTemperatureThreshold(
                dev, NVML_TEMPERATURE_THRESHOLD_SHUTDOWN, &g->shutdown_c);
        ull = 0;
        g->throttle_ret = s->nvmlDeviceGetCurrentClocksThrottleReasons
                                  ? s->nvmlDeviceGetCurrentClocksThrottleReasons(dev, &ull)
                          : s->nvmlDeviceGetCurrentClocksEventReasons
                                  ? s->nvmlDeviceGetCurrentClocksEventReasons(dev, &ull)
                                  : NVML_ERROR_FUNCTION_NOT_FOUND;
        g->throttle_reasons = ull;
        /* v2 where the library has it: v1's "used" counts the driver's reservation, so an idle
         * GPU would read as hundreds of MiB in use where nvidia-smi says 0. Any failure of v2
         * (an older library answers ARGUMENT_VERSION_MISMATCH) falls back to v1. */
        memset(&mem2, 0, sizeof(mem2));
        mem2.version = nvmlMemory_v2;
        if (s->nvmlDeviceGetMemoryInfo_v2 &&
            s->nvmlDeviceGetMemoryInfo_v2(dev, &mem2) == NVML_SUCCESS) {
                g->memory_ret = NVML_SUCCESS;
                g->memory_v2 = true;
                g->memory_total = mem2.total;
                g->memory_used = mem2.used;
                g->memory_reserved = mem2.reserved;
        } else {
                memset(&mem, 0, sizeof(mem));
                g->memory_ret = s->nvmlDeviceGetMemoryInfo(dev, &mem);
                g->memory_total = mem.total;
                g->memory_used = mem.used;
        }

        /* Xid events: registered once per index while the session lives. */
        if (index < GPU_MAX && !s->registered[index] && s->events) {
                int r = s->nvmlDeviceRegisterEvents(dev, nvmlEventTypeXidCriticalError, s->events);
                if (r == NVML_SUCCESS) {
                        s->registered[index] = true;
                        s->handles[index] = dev;
                } else if (r != NVML_ERROR_GPU_IS_LOST) /* a lost GPU is reported as such */
                        s->register_ret = r;
        }
}

static void nvml_drain_events(NvmlSession *s, GpuSnapshot *snap) {
        while (snap->n_xids < GPU_XID_EVENTS_MAX) {
                nvmlEventData_t data;
                int r;

                memset(&data, 0, sizeof(data));
                r = s->nvmlEventSetWait_v2(s->events, &data, 0);
                if (r != NVML_SUCCESS) {
                        if (r != NVML_ERROR_TIMEOUT) /* TIMEOUT: nothing pending */
                                snap->events_ret = r;
                        return;
                }
                if (!(data.eventType & (unsigned long long)nvmlEventTypeXidCriticalError))
                        continue;
                snap->xids[snap->n_xids] = (GpuXidEvent){.gpu_index = -1, .xid = data.eventData};
                for (unsigned i = 0; i < GPU_MAX; i++)
                        if (s->registered[i] && s->handles[i] == data.device)
                                snap->xids[snap->n_xids].gpu_index = (int)i;
                snap->n_xids++;
        }
}

void nvml_session_read(NvmlSession *s, GpuSnapshot *snap) {
        char version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE + 1];
        unsigned count = 0;

        memset(snap, 0, sizeof(*snap));
        if (!s->initialised) {
                snap->init_ret = s->nvmlInit_v2();
                if (snap->init_ret != NVML_SUCCESS)
                        return;
                s->initialised = true;
                s->register_ret = s->nvmlEventSetCreate(&s->events);
                if (s->register_ret != NVML_SUCCESS)
                        s->events = NULL;
        }
        memset(version, 0, sizeof(version));
        snap->driver_ret =
                s->nvmlSystemGetDriverVersion(version, NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE);
        if (snap->driver_ret == NVML_SUCCESS)
                copy_string(snap->driver_version, sizeof(snap->driver_version), version);
        snap->count_ret = s->nvmlDeviceGetCount_v2(&count);
        if (snap->count_ret != NVML_SUCCESS)
                return;
        snap->count = count;
        snap->n_gpus = MIN(count, GPU_MAX);
        if (s->events)
                s->register_ret = NVML_SUCCESS; /* this read's registrations say again */
        for (unsigned i = 0; i < snap->n_gpus; i++)
                nvml_read_gpu(s, i, &snap->gpus[i]);
        snap->events_ret = s->register_ret;
        if (s->events)
                nvml_drain_events(s, snap);
}
