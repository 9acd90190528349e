#include "agent/probe/nvml_probe.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <utility>

namespace benchfleet {
namespace {

// NVML's ABI, declared from its documentation (nvml.h is not needed to build).
using nvmlReturn_t = int;  // an enum in nvml.h: int-sized
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t NVML_SUCCESS = 0;
constexpr nvmlReturn_t NVML_ERROR_NOT_SUPPORTED = 3;
constexpr int NVML_TEMPERATURE_GPU = 0;  // nvmlTemperatureSensors_t
constexpr int NVML_CLOCK_SM = 1;         // nvmlClockType_t
constexpr int NVML_CLOCK_MEM = 2;
constexpr unsigned kNameBufferSize = 96;  // NVML_DEVICE_NAME_V2_BUFFER_SIZE
// NVML_DEVICE_UUID_V2_BUFFER_SIZE (the older NVML_DEVICE_UUID_BUFFER_SIZE is
// 80).
constexpr unsigned kUuidBufferSize = 96;

struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};

}  // namespace

struct NvmlProbe::Api {
  nvmlReturn_t (*Init)() = nullptr;
  nvmlReturn_t (*Shutdown)() = nullptr;
  const char* (*ErrorString)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*GetCount)(unsigned int*) = nullptr;
  nvmlReturn_t (*GetHandleByIndex)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*GetName)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*GetUuid)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*GetTemperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*GetUtilizationRates)(nvmlDevice_t,
                                      nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*GetMemoryInfo)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*GetPowerUsage)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*GetClockInfo)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*GetThrottleReasons)(nvmlDevice_t,
                                     unsigned long long*) = nullptr;
  const char* throttle_reasons_name = "";

  std::string Error(nvmlReturn_t code) const {
    const char* text = ErrorString != nullptr ? ErrorString(code) : nullptr;
    return text != nullptr ? text : "NVML error " + std::to_string(code);
  }
};

struct NvmlProbe::Device {
  nvmlDevice_t handle = nullptr;
  GpuSample fixed;  // index, name, uuid and the errors of reading them
};

namespace {

template <typename F>
bool Bind(void* handle, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(handle, name));
  return *fn != nullptr;
}

}  // namespace

std::string NvmlLibraryFromEnvironment() {
  const char* value = std::getenv("BENCHFLEET_NVML_LIBRARY");
  return value != nullptr && value[0] != '\0' ? value : kDefaultNvmlLibrary;
}

const char* NvmlStateName(NvmlState state) {
  switch (state) {
    case NvmlState::kReady:
      return "ready";
    case NvmlState::kNotInstalled:
      return "not_installed";
    case NvmlState::kIncompatible:
      return "incompatible";
    case NvmlState::kInitFailed:
      return "init_failed";
  }
  return "unknown";
}

NvmlProbe::NvmlProbe() : api_(std::make_unique<Api>()) {}

std::unique_ptr<NvmlProbe> NvmlProbe::Open(const NvmlOptions& options) {
  std::unique_ptr<NvmlProbe> probe(new NvmlProbe());
  probe->library_ = options.library;
  probe->handle_ = dlopen(options.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (probe->handle_ == nullptr) {
    const char* why = dlerror();
    probe->state_ = NvmlState::kNotInstalled;
    probe->error_ =
        why != nullptr ? why : "dlopen(" + options.library + ") failed";
    return probe;
  }
  Api& api = *probe->api_;
  void* h = probe->handle_;
  const char* missing = nullptr;
  if (!Bind(h, "nvmlInit_v2", &api.Init)) missing = "nvmlInit_v2";
  if (!Bind(h, "nvmlShutdown", &api.Shutdown)) missing = "nvmlShutdown";
  if (!Bind(h, "nvmlErrorString", &api.ErrorString))
    missing = "nvmlErrorString";
  if (!Bind(h, "nvmlDeviceGetCount_v2", &api.GetCount))
    missing = "nvmlDeviceGetCount_v2";
  if (!Bind(h, "nvmlDeviceGetHandleByIndex_v2", &api.GetHandleByIndex)) {
    missing = "nvmlDeviceGetHandleByIndex_v2";
  }
  if (missing != nullptr) {
    probe->state_ = NvmlState::kIncompatible;
    probe->error_ = options.library + " has no " + missing;
    api = Api{};
    dlclose(probe->handle_);
    probe->handle_ = nullptr;
    return probe;
  }
  // Optional getters: an old driver without one leaves that field unavailable.
  Bind(h, "nvmlDeviceGetName", &api.GetName);
  Bind(h, "nvmlDeviceGetUUID", &api.GetUuid);
  Bind(h, "nvmlDeviceGetTemperature", &api.GetTemperature);
  Bind(h, "nvmlDeviceGetUtilizationRates", &api.GetUtilizationRates);
  Bind(h, "nvmlDeviceGetMemoryInfo", &api.GetMemoryInfo);
  Bind(h, "nvmlDeviceGetPowerUsage", &api.GetPowerUsage);
  Bind(h, "nvmlDeviceGetClockInfo", &api.GetClockInfo);
  // Renamed "event reasons" in driver 535; the old name stays as a deprecated
  // alias.
  if (Bind(h, "nvmlDeviceGetCurrentClocksEventReasons",
           &api.GetThrottleReasons)) {
    api.throttle_reasons_name = "nvmlDeviceGetCurrentClocksEventReasons";
  } else if (Bind(h, "nvmlDeviceGetCurrentClocksThrottleReasons",
                  &api.GetThrottleReasons)) {
    api.throttle_reasons_name = "nvmlDeviceGetCurrentClocksThrottleReasons";
  }

  nvmlReturn_t rc = api.Init();
  if (rc != NVML_SUCCESS) {
    probe->state_ = NvmlState::kInitFailed;
    probe->error_ = "nvmlInit_v2: " + api.Error(rc);
    api = Api{};
    dlclose(probe->handle_);
    probe->handle_ = nullptr;
    return probe;
  }
  unsigned int count = 0;
  rc = api.GetCount(&count);
  if (rc != NVML_SUCCESS) {
    probe->state_ = NvmlState::kInitFailed;
    probe->error_ = "nvmlDeviceGetCount_v2: " + api.Error(rc);
    api.Shutdown();
    api = Api{};
    dlclose(probe->handle_);
    probe->handle_ = nullptr;
    return probe;
  }
  probe->state_ = NvmlState::kReady;
  for (unsigned int i = 0; i < count; ++i) {
    Device device;
    device.fixed.index = static_cast<int>(i);
    rc = api.GetHandleByIndex(i, &device.handle);
    if (rc != NVML_SUCCESS) {
      device.handle = nullptr;
      device.fixed.errors.push_back("nvmlDeviceGetHandleByIndex_v2: " +
                                    api.Error(rc));
    } else {
      char buf[kUuidBufferSize > kNameBufferSize ? kUuidBufferSize
                                                 : kNameBufferSize];
      if (api.GetName != nullptr) {
        buf[0] = '\0';
        rc = api.GetName(device.handle, buf, kNameBufferSize);
        if (rc == NVML_SUCCESS) {
          buf[kNameBufferSize - 1] = '\0';
          device.fixed.name = buf;
        } else if (rc != NVML_ERROR_NOT_SUPPORTED) {
          device.fixed.errors.push_back("nvmlDeviceGetName: " + api.Error(rc));
        }
      }
      if (api.GetUuid != nullptr) {
        buf[0] = '\0';
        rc = api.GetUuid(device.handle, buf, kUuidBufferSize);
        if (rc == NVML_SUCCESS) {
          buf[kUuidBufferSize - 1] = '\0';
          device.fixed.uuid = buf;
        } else if (rc != NVML_ERROR_NOT_SUPPORTED) {
          device.fixed.errors.push_back("nvmlDeviceGetUUID: " + api.Error(rc));
        }
      }
    }
    probe->devices_.push_back(std::move(device));
  }
  return probe;
}

NvmlProbe::~NvmlProbe() {
  if (handle_ == nullptr) return;
  if (state_ == NvmlState::kReady && api_->Shutdown != nullptr)
    api_->Shutdown();
  dlclose(handle_);
}

int NvmlProbe::gpu_count() const { return static_cast<int>(devices_.size()); }

std::vector<GpuSample> NvmlProbe::SampleGpus() {
  std::vector<GpuSample> out;
  out.reserve(devices_.size());
  const Api& api = *api_;
  for (const Device& device : devices_) {
    GpuSample& g = out.emplace_back(device.fixed);
    if (device.handle == nullptr) continue;
    // Records a failed call; true when the value is good.
    auto ok = [&](const char* function, nvmlReturn_t rc) {
      if (rc == NVML_SUCCESS) return true;
      if (rc != NVML_ERROR_NOT_SUPPORTED)
        g.errors.push_back(std::string(function) + ": " + api.Error(rc));
      return false;
    };
    unsigned int value = 0;
    if (api.GetTemperature != nullptr &&
        ok("nvmlDeviceGetTemperature",
           api.GetTemperature(device.handle, NVML_TEMPERATURE_GPU, &value))) {
      g.temp_c = value;
    }
    nvmlUtilization_t util{};
    if (api.GetUtilizationRates != nullptr &&
        ok("nvmlDeviceGetUtilizationRates",
           api.GetUtilizationRates(device.handle, &util))) {
      g.util_percent = util.gpu;
      g.memory_util_percent = util.memory;
    }
    nvmlMemory_t memory{};
    if (api.GetMemoryInfo != nullptr &&
        ok("nvmlDeviceGetMemoryInfo",
           api.GetMemoryInfo(device.handle, &memory))) {
      g.memory_used_bytes = static_cast<int64_t>(memory.used);
      g.memory_total_bytes = static_cast<int64_t>(memory.total);
    }
    if (api.GetPowerUsage != nullptr &&
        ok("nvmlDeviceGetPowerUsage",
           api.GetPowerUsage(device.handle, &value))) {
      g.power_w = value / 1000.0;  // milliwatts
    }
    if (api.GetClockInfo != nullptr) {
      if (ok("nvmlDeviceGetClockInfo(SM)",
             api.GetClockInfo(device.handle, NVML_CLOCK_SM, &value))) {
        g.sm_clock_mhz = static_cast<int>(value);
      }
      if (ok("nvmlDeviceGetClockInfo(MEM)",
             api.GetClockInfo(device.handle, NVML_CLOCK_MEM, &value))) {
        g.mem_clock_mhz = static_cast<int>(value);
      }
    }
    unsigned long long reasons = 0;
    if (api.GetThrottleReasons != nullptr &&
        ok(api.throttle_reasons_name,
           api.GetThrottleReasons(device.handle, &reasons))) {
      g.throttle_reasons = reasons;
      g.throttle_reason_names = GpuThrottleReasonNames(reasons);
    }
  }
  return out;
}

}  // namespace benchfleet
