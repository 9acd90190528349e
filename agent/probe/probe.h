// The roles the agent's sampler and gates depend on: `Probe` reads the whole
// host into a HostSample, `GpuProbe` reads the GPUs. SysfsProbe (/proc and
// /sys, delegating GPUs to a GpuProbe) and NvmlProbe (NVML through dlopen) are
// the real implementations; tests of the agent use in-memory fakes that return
// scripted samples.
//
// Thread-safety: implementations say; the ones here are not thread-safe (one
// sampler thread owns a probe) unless a method says otherwise.
#ifndef BENCHFLEET_AGENT_PROBE_PROBE_H_
#define BENCHFLEET_AGENT_PROBE_PROBE_H_

#include <vector>

#include "agent/probe/host_sample.h"

namespace benchfleet {

class GpuProbe {
 public:
  virtual ~GpuProbe() = default;
  // One reading per GPU, in device-index order; empty when there are no GPUs
  // (or no way to read them). Never fails: a GPU whose reads fail has those
  // fields unavailable and the errors recorded in GpuSample::errors.
  virtual std::vector<GpuSample> SampleGpus() = 0;
};

class Probe {
 public:
  virtual ~Probe() = default;
  // Reads the host now; `now` becomes HostSample::taken_at. Values that need a
  // previous reading (utilisation, competing CPU) are relative to the previous
  // call, so the first call leaves them unavailable. Never fails: whatever
  // cannot be read is unavailable.
  virtual HostSample Sample(SampleTime now) = 0;
  // Sample, and also asks for a per-process reading (HostSample::
  // processes_scanned, top_processes) ending now whenever something other
  // than the excluded processes used CPU lately; the agent takes a run's
  // closing sample this way, so that the run is judged on a window that ends
  // at its end. Probes without per-process readings: the same as Sample.
  virtual HostSample SampleWithProcesses(SampleTime now) { return Sample(now); }
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_PROBE_H_
