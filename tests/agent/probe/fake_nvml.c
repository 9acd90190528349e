/* A fake NVML for the probe tests: a shared library exporting the C entry
 * points NvmlProbe loads, with NVML's documented signatures, whose GPUs come
 * from a config file named by $FAKE_NVML_CONFIG, read at every nvmlInit_v2 (so
 * one test process can load it with different configs). No config (variable
 * unset) = NVML with zero GPUs.
 *
 * Config: one directive per line, fields separated by ';', '#' starts a comment
 * line. init_error=9                 nvmlInit_v2 returns 9 (Driver Not Loaded)
 *   count_error=999              nvmlDeviceGetCount_v2 fails
 *   gpu;name=NVIDIA H100 80GB HBM3;uuid=GPU-1;temp=45;util=30;mem_util=10;
 *       mem_total=85899345920;mem_used=1073741824;power_mw=120500;sm_clock=1980;
 *       mem_clock=2619;throttle=0x44
 *   gpu;error=15                 every call on this GPU fails with 15 (GPU is
 * lost) gpu;handle_error=15          nvmlDeviceGetHandleByIndex_v2 fails for it
 *   gpu;power_error=3            one call fails (also temp_, util_, memory_,
 * clock_, throttle_, name_, uuid_error)
 *
 * Built twice by the tests: as is, and with FAKE_NVML_WITHOUT_INIT (no
 * nvmlInit_v2) to stand for a library that is not a usable NVML. Not
 * thread-safe (neither are the tests). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct FakeDevice* nvmlDevice_t;
typedef struct {
  unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
  unsigned int gpu, memory;
} nvmlUtilization_t;

enum { kMaxGpus = 16 };

struct FakeDevice {
  char name[96], uuid[96];
  unsigned temp, util, mem_util, power_mw, sm_clock, mem_clock;
  unsigned long long mem_total, mem_used, throttle;
  int error, handle_error, temp_error, util_error, memory_error, power_error,
      clock_error, throttle_error, name_error, uuid_error;
};

static struct FakeDevice devices[kMaxGpus];
static unsigned device_count;
static int init_error, count_error;
static int initialized, init_calls, shutdown_calls;

/* Test hooks (not NVML): how many nvmlInit_v2 calls succeeded and how many
 * nvmlShutdown. */
int fake_nvml_init_calls(void) { return init_calls; }
int fake_nvml_shutdown_calls(void) { return shutdown_calls; }

static void ParseGpu(char* fields, struct FakeDevice* d) {
  memset(d, 0, sizeof(*d));
  snprintf(d->name, sizeof(d->name), "Fake GPU");
  for (char* field = strtok(fields, ";\n"); field != NULL;
       field = strtok(NULL, ";\n")) {
    char* eq = strchr(field, '=');
    if (eq == NULL) continue;
    *eq = '\0';
    const char* key = field;
    const char* value = eq + 1;
    unsigned long long n = strtoull(value, NULL, 0);
    if (strcmp(key, "name") == 0)
      snprintf(d->name, sizeof(d->name), "%s", value);
    else if (strcmp(key, "uuid") == 0)
      snprintf(d->uuid, sizeof(d->uuid), "%s", value);
    else if (strcmp(key, "temp") == 0)
      d->temp = (unsigned)n;
    else if (strcmp(key, "util") == 0)
      d->util = (unsigned)n;
    else if (strcmp(key, "mem_util") == 0)
      d->mem_util = (unsigned)n;
    else if (strcmp(key, "mem_total") == 0)
      d->mem_total = n;
    else if (strcmp(key, "mem_used") == 0)
      d->mem_used = n;
    else if (strcmp(key, "power_mw") == 0)
      d->power_mw = (unsigned)n;
    else if (strcmp(key, "sm_clock") == 0)
      d->sm_clock = (unsigned)n;
    else if (strcmp(key, "mem_clock") == 0)
      d->mem_clock = (unsigned)n;
    else if (strcmp(key, "throttle") == 0)
      d->throttle = n;
    else if (strcmp(key, "error") == 0)
      d->error = (int)n;
    else if (strcmp(key, "handle_error") == 0)
      d->handle_error = (int)n;
    else if (strcmp(key, "temp_error") == 0)
      d->temp_error = (int)n;
    else if (strcmp(key, "util_error") == 0)
      d->util_error = (int)n;
    else if (strcmp(key, "memory_error") == 0)
      d->memory_error = (int)n;
    else if (strcmp(key, "power_error") == 0)
      d->power_error = (int)n;
    else if (strcmp(key, "clock_error") == 0)
      d->clock_error = (int)n;
    else if (strcmp(key, "throttle_error") == 0)
      d->throttle_error = (int)n;
    else if (strcmp(key, "name_error") == 0)
      d->name_error = (int)n;
    else if (strcmp(key, "uuid_error") == 0)
      d->uuid_error = (int)n;
  }
}

static void LoadConfig(void) {
  device_count = 0;
  init_error = 0;
  count_error = 0;
  const char* path = getenv("FAKE_NVML_CONFIG");
  if (path == NULL) return;
  FILE* f = fopen(path, "r");
  if (f == NULL) return;
  char line[1024];
  while (fgets(line, sizeof(line), f) != NULL) {
    if (line[0] == '#') continue;
    if (strncmp(line, "init_error=", 11) == 0) init_error = atoi(line + 11);
    if (strncmp(line, "count_error=", 12) == 0) count_error = atoi(line + 12);
    if (strncmp(line, "gpu", 3) == 0 && device_count < kMaxGpus) {
      ParseGpu(line + 3, &devices[device_count++]);
    }
  }
  fclose(f);
}

/* The error of a call on `d`: the GPU-wide error, else the call's own. */
static int Fail(nvmlDevice_t d, int own) {
  if (d == NULL) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  return d->error != 0 ? d->error : own;
}

const char* nvmlErrorString(nvmlReturn_t result) {
  switch (result) {
    case 0:
      return "Success";
    case 1:
      return "Uninitialized";
    case 2:
      return "Invalid Argument";
    case 3:
      return "Not Supported";
    case 9:
      return "Driver Not Loaded";
    case 15:
      return "GPU is lost";
    default:
      return "Unknown Error";
  }
}

#ifdef FAKE_NVML_WITHOUT_INIT
/* Still reachable so the config parser is compiled (and warned about) in both
 * builds. */
void fake_nvml_load_config(void) { LoadConfig(); }
#else
nvmlReturn_t nvmlInit_v2(void) {
  LoadConfig();
  if (init_error != 0) return init_error;
  initialized = 1;
  ++init_calls;
  return 0;
}
#endif

nvmlReturn_t nvmlShutdown(void) {
  if (!initialized) return 1;
  initialized = 0;
  ++shutdown_calls;
  return 0;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int* count) {
  if (!initialized) return 1;
  if (count_error != 0) return count_error;
  *count = device_count;
  return 0;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index,
                                           nvmlDevice_t* device) {
  if (!initialized) return 1;
  if (index >= device_count) return 2;
  if (devices[index].handle_error != 0) return devices[index].handle_error;
  *device = &devices[index];
  return 0;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char* name,
                               unsigned int length) {
  int rc = Fail(d, d != NULL ? d->name_error : 0);
  if (rc != 0) return rc;
  if (strlen(d->name) + 1 > length) return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
  strcpy(name, d->name);
  return 0;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char* uuid,
                               unsigned int length) {
  int rc = Fail(d, d != NULL ? d->uuid_error : 0);
  if (rc != 0) return rc;
  if (strlen(d->uuid) + 1 > length) return 7;
  strcpy(uuid, d->uuid);
  return 0;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor,
                                      unsigned int* temp) {
  int rc = Fail(d, d != NULL ? d->temp_error : 0);
  if (rc != 0) return rc;
  if (sensor != 0) return 2; /* only NVML_TEMPERATURE_GPU */
  *temp = d->temp;
  return 0;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d,
                                           nvmlUtilization_t* u) {
  int rc = Fail(d, d != NULL ? d->util_error : 0);
  if (rc != 0) return rc;
  u->gpu = d->util;
  u->memory = d->mem_util;
  return 0;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t* m) {
  int rc = Fail(d, d != NULL ? d->memory_error : 0);
  if (rc != 0) return rc;
  m->total = d->mem_total;
  m->used = d->mem_used;
  m->free = d->mem_total - d->mem_used;
  return 0;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int* power_mw) {
  int rc = Fail(d, d != NULL ? d->power_error : 0);
  if (rc != 0) return rc;
  *power_mw = d->power_mw;
  return 0;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type,
                                    unsigned int* mhz) {
  int rc = Fail(d, d != NULL ? d->clock_error : 0);
  if (rc != 0) return rc;
  if (type == 1)
    *mhz = d->sm_clock; /* NVML_CLOCK_SM */
  else if (type == 2)
    *mhz = d->mem_clock; /* NVML_CLOCK_MEM */
  else
    return 2;
  return 0;
}

/* The pre-535 name only, as older drivers export it. */
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(
    nvmlDevice_t d, unsigned long long* reasons) {
  int rc = Fail(d, d != NULL ? d->throttle_error : 0);
  if (rc != 0) return rc;
  *reasons = d->throttle;
  return 0;
}
