// HostSample: one reading of a host's state (CPU utilisation, load, memory,
// per-core frequency and governor, turbo, temperatures, thermal-throttle
// counters, competing processes, GPUs), as produced by a `Probe`
// (agent/probe/probe.h) and summarised per run by SummarizeHostSamples
// (agent/probe/host_summary.h). The agent's sampler thread streams these to the
// controller (which stores the scalar parts as a SampleRecord and the rest as
// detail JSON, agent/probe/probe_json.h); gates read them before attempts and
// steps.
//
// Plain values with no dependencies beyond the standard library, so the
// standalone `benchfleet-probe` tool can carry them. "Not available" is
// std::nullopt / an empty string or vector, never a zero that could be mistaken
// for a reading.
//
// Thread-safety: plain structs; the free functions are pure and thread-safe.
#ifndef BENCHFLEET_AGENT_PROBE_HOST_SAMPLE_H_
#define BENCHFLEET_AGENT_PROBE_HOST_SAMPLE_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace benchfleet {

// Wall-clock time of a sample, supplied by the caller (from an injected Clock;
// convert with absl::ToChronoTime / absl::FromChrono). The probes never read a
// clock themselves.
using SampleTime = std::chrono::system_clock::time_point;

// One logical CPU (the N of /sys/devices/system/cpu/cpuN and of "cpuN" in
// /proc/stat). The frequency and throttle counters are the latest readings: a
// SysfsProbe refreshes per-CPU files round-robin within a budget per sample
// (SysfsProbeOptions::sysfs_reads_per_sample), as it does temperatures.
struct CpuCoreSample {
  int cpu = -1;
  // Busy fraction 0..1 since the previous sample (user+nice+system+irq+softirq
  // over all time, steal excluded); nullopt in a probe's first sample or when
  // /proc/stat lacks it.
  std::optional<double> util;
  // scaling_cur_freq: the kernel's view of the current frequency.
  std::optional<double> cur_freq_mhz;
  // scaling_min_freq / scaling_max_freq: the current policy limits. Thermal
  // capping through cpufreq cooling devices lowers max_freq_mhz.
  std::optional<double> min_freq_mhz;
  std::optional<double> max_freq_mhz;
  // cpuinfo_max_freq: the hardware maximum (single-core turbo on x86).
  std::optional<double> hw_max_freq_mhz;
  // "performance", "powersave", "schedutil"...; "" = unknown.
  std::string governor;
  // thermal_throttle/{core,package}_throttle_count (Intel). Siblings share a
  // core and all CPUs of a package share a package, so each counter is read on
  // one CPU only: the core counter on the first CPU of each core, the package
  // counter on the first CPU of each package; the other CPUs have nullopt.
  std::optional<int64_t> core_throttle_count;
  std::optional<int64_t> package_throttle_count;
};

// One temperature sensor: a thermal zone or a hwmon temp*_input.
struct TemperatureReading {
  // "thermal_zone0", "hwmon1/temp2".
  std::string source;
  // Zone type or hwmon chip name: "x86_pkg_temp", "coretemp", "k10temp".
  std::string name;
  // hwmon temp*_label ("Package id 0", "Tctl"); "" when none.
  std::string label;
  // Counted as a CPU temperature (see IsCpuTemperatureSensor).
  bool cpu = false;
  double temp_c = 0;
};

// A process (thread group) by CPU use over a sample's process_window.
struct ProcessCpu {
  int pid = 0;
  std::string comm;      // /proc/[pid]/stat's comm, at most 15 characters
  double cpu_cores = 0;  // 1.0 = one core busy for the whole window
};

// Bits of NVML's clocks-throttle (clocks-event) reason mask, as documented for
// nvmlDeviceGetCurrentClocksThrottleReasons.
namespace gpu_throttle {
inline constexpr uint64_t kGpuIdle = 0x1;
inline constexpr uint64_t kApplicationsClocksSetting = 0x2;
inline constexpr uint64_t kSwPowerCap = 0x4;
inline constexpr uint64_t kHwSlowdown = 0x8;
inline constexpr uint64_t kSyncBoost = 0x10;
inline constexpr uint64_t kSwThermalSlowdown = 0x20;
inline constexpr uint64_t kHwThermalSlowdown = 0x40;
inline constexpr uint64_t kHwPowerBrakeSlowdown = 0x80;
inline constexpr uint64_t kDisplayClockSetting = 0x100;
// The reasons that mean the GPU was slowed by heat or a power emergency (a
// benchmark run under them is not comparable). SW power cap is the normal state
// of a loaded GPU and is not among them.
inline constexpr uint64_t kSlowdownMask = kHwSlowdown | kSwThermalSlowdown |
                                          kHwThermalSlowdown |
                                          kHwPowerBrakeSlowdown;
}  // namespace gpu_throttle

// Names for the set bits of an NVML throttle-reason mask ("gpu_idle",
// "sw_power_cap", "hw_slowdown", ...); unknown bits come out as "0x200" etc.
// Empty for 0.
std::vector<std::string> GpuThrottleReasonNames(uint64_t mask);

// One GPU, read through NVML.
struct GpuSample {
  int index = -1;    // NVML device index
  std::string name;  // "NVIDIA H100 80GB HBM3"; "" when unavailable
  std::string uuid;  // "GPU-..."; "" when unavailable
  std::optional<double> temp_c;
  std::optional<double> util_percent;         // GPU busy, 0..100
  std::optional<double> memory_util_percent;  // memory controller busy, 0..100
  std::optional<int64_t> memory_used_bytes;
  std::optional<int64_t> memory_total_bytes;
  std::optional<double> power_w;
  std::optional<int> sm_clock_mhz;
  std::optional<int> mem_clock_mhz;
  std::optional<uint64_t> throttle_reasons;  // gpu_throttle bits
  std::vector<std::string> throttle_reason_names;
  // "nvmlDeviceGetTemperature: GPU is lost" for each NVML call that failed
  // (other than "not supported", which only leaves the field unavailable).
  std::vector<std::string> errors;
};

struct HostSample {
  SampleTime taken_at;
  // Whole-host busy fraction 0..1 and hypervisor steal fraction since the
  // previous sample.
  std::optional<double> cpu_util;
  std::optional<double> cpu_steal;
  std::vector<CpuCoreSample> cores;  // ascending cpu number
  std::optional<double> load1, load5, load15;
  std::optional<int> procs_running;  // runnable tasks, from /proc/loadavg
  std::optional<int64_t> mem_total_bytes;
  std::optional<int64_t> mem_available_bytes;
  // "intel_pstate", "acpi-cpufreq", "cpufreq-dt"; "" when there is no cpufreq.
  std::string cpufreq_driver;
  std::optional<bool> turbo_enabled;  // intel_pstate/no_turbo or cpufreq boost
  std::vector<TemperatureReading> temperatures;
  // Sum of the deduplicated core and package throttle counters (see
  // CpuCoreSample); nullopt when the host has none (AMD, ARM, VMs). Only its
  // increase means anything.
  std::optional<int64_t> throttle_count;
  // CPU used by everything except the excluded processes (their threads and
  // reaped children included), in cores, over the last `other_cpu_window`
  // (ending at this sample); includes interrupts and kernel threads. Cheap:
  // read on every sample. A SysfsProbe averages over at least its min_window
  // (SysfsProbeOptions) as soon as it has that much history: CPU counters
  // advance in clock ticks (10 ms), so a window of a few ms is mostly rounding.
  std::optional<double> other_cpu_cores;
  std::chrono::nanoseconds other_cpu_window{0};
  // How much more history `other_cpu_cores` needs before it covers the probe's
  // min_window: > 0 during the first min_window after the probe's first
  // sample (which has no reading yet) and after its exclusions change (the
  // past was measured against others); 0 once the reading is complete, and
  // when the probe has no such reading at all (no /proc/stat).
  std::chrono::nanoseconds other_cpu_window_needed{0};
  // How far rounding alone could move `other_cpu_cores` (CPU times count in
  // clock ticks): a few ticks over its window, 0.04 cores over a second. A
  // reading whose window is not yet complete is still conclusive when it is
  // clear of a limit by this much (the gates rely on that).
  std::optional<double> other_cpu_rounding_cores;
  // True when this sample carries a per-process reading: then
  // `competing_cpu_cores` and `top_processes` hold the CPU use of every
  // non-excluded process over `process_window`, which ends at this sample
  // (SysfsProbe: at a /proc walk done for this sample, or, for
  // Probe::SampleWithProcesses, possibly at one up to a twentieth of a window
  // earlier).
  bool processes_scanned = false;
  std::chrono::nanoseconds process_window{0};
  std::optional<double> competing_cpu_cores;  // sum over non-excluded processes
  std::vector<ProcessCpu> top_processes;      // non-excluded, busiest first
  std::vector<GpuSample> gpus;
};

// Scalar views of a sample (what SampleRecord columns and gates use). nullopt
// when the sample has no such reading.
std::optional<double> MinCoreFreqMhz(const HostSample& sample);
std::optional<double> MaxCpuTempC(const HostSample& sample);
std::optional<double> MaxGpuTempC(const HostSample& sample);
std::optional<double> MaxGpuUtilPercent(const HostSample& sample);
// The busiest non-excluded process's CPU, in cores; nullopt unless
// processes_scanned.
std::optional<double> MaxProcessCpuCores(const HostSample& sample);

// Whether a sensor with this hwmon chip name / thermal-zone type (and optional
// hwmon label) measures a CPU: coretemp, k10temp, zenpower, x86_pkg_temp, names
// containing "cpu" or "soc" (ARM "cpu-thermal", "soc-thermal"), labels
// containing "cpu" (Super-I/O "CPUTIN"). ACPI, NVMe, board and GPU sensors are
// not.
bool IsCpuTemperatureSensor(const std::string& name, const std::string& label);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_HOST_SAMPLE_H_
