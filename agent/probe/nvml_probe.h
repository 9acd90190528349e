// NvmlProbe: reads NVIDIA GPUs through NVML, loaded at run time with dlopen
// (default "libnvidia-ml.so.1"), so nothing is needed at build time and a host
// without the driver simply has no GPUs. Per GPU: index, name, UUID,
// temperature, utilisation, memory used/total, power, SM and memory clocks and
// the clocks-throttle reasons. Used by the agent (through SysfsProbe, as its
// GpuProbe) and by the benchfleet-probe tool; tests load a fake NVML library
// built by the test suite.
//
// The C types and constants used here are declared in nvml_probe.cc from NVML's
// documented ABI (opaque device handle, nvmlMemory_t, nvmlUtilization_t, enum
// values); only the versioned entry points (nvmlInit_v2, nvmlDeviceGetCount_v2,
// ...) are used.
//
// Thread-safety: not thread-safe; externally synchronized (one sampler thread
// owns it).
#ifndef BENCHFLEET_AGENT_PROBE_NVML_PROBE_H_
#define BENCHFLEET_AGENT_PROBE_NVML_PROBE_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/probe/host_sample.h"
#include "agent/probe/probe.h"

namespace benchfleet {

inline constexpr char kDefaultNvmlLibrary[] = "libnvidia-ml.so.1";

struct NvmlOptions {
  // What dlopen is given: a soname searched the usual way, or a path. Mains
  // fill it from NvmlLibraryFromEnvironment() or a flag.
  std::string library = kDefaultNvmlLibrary;
};

// $BENCHFLEET_NVML_LIBRARY when set and not empty, else kDefaultNvmlLibrary.
// For mains only: library code takes the path through NvmlOptions.
std::string NvmlLibraryFromEnvironment();

enum class NvmlState {
  kReady,         // loaded and initialised (possibly with zero GPUs)
  kNotInstalled,  // the library could not be loaded: no NVIDIA driver, not an
                  // error
  kIncompatible,  // loaded, but an entry point the probe needs is missing
  kInitFailed,    // nvmlInit_v2 or nvmlDeviceGetCount_v2 failed (driver not
                  // loaded, ...)
};
const char* NvmlStateName(NvmlState state);

class NvmlProbe : public GpuProbe {
 public:
  // Loads and initialises NVML. Never fails: in every state but kReady the
  // probe has no GPUs and error() says why (dlerror() text or the NVML error
  // string), so a host without NVIDIA hardware is a host with no GPUs. Device
  // handles, names and UUIDs are read once, here.
  static std::unique_ptr<NvmlProbe> Open(const NvmlOptions& options);
  // Calls nvmlShutdown (when initialised) and unloads the library.
  ~NvmlProbe() override;
  NvmlProbe(const NvmlProbe&) = delete;
  NvmlProbe& operator=(const NvmlProbe&) = delete;

  NvmlState state() const { return state_; }
  const std::string& error() const { return error_; }
  const std::string& library() const { return library_; }
  int gpu_count() const;

  // One GpuSample per device index. A call that fails leaves its field
  // unavailable and appends "<nvml function>: <nvmlErrorString>" to
  // GpuSample::errors; "not supported" only leaves the field unavailable.
  std::vector<GpuSample> SampleGpus() override;

 private:
  struct Api;
  struct Device;
  NvmlProbe();

  NvmlState state_ = NvmlState::kNotInstalled;
  std::string error_;
  std::string library_;
  void* handle_ = nullptr;
  std::unique_ptr<Api> api_;
  std::vector<Device> devices_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_NVML_PROBE_H_
