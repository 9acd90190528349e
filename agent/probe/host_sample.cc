#include "agent/probe/host_sample.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <string_view>

namespace benchfleet {
namespace {

std::optional<double> MaxOf(std::optional<double> acc,
                            std::optional<double> value) {
  if (!value) return acc;
  if (!acc || *value > *acc) return value;
  return acc;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<std::string> GpuThrottleReasonNames(uint64_t mask) {
  static constexpr struct {
    uint64_t bit;
    const char* name;
  } kNames[] = {
      {gpu_throttle::kGpuIdle, "gpu_idle"},
      {gpu_throttle::kApplicationsClocksSetting, "applications_clocks_setting"},
      {gpu_throttle::kSwPowerCap, "sw_power_cap"},
      {gpu_throttle::kHwSlowdown, "hw_slowdown"},
      {gpu_throttle::kSyncBoost, "sync_boost"},
      {gpu_throttle::kSwThermalSlowdown, "sw_thermal_slowdown"},
      {gpu_throttle::kHwThermalSlowdown, "hw_thermal_slowdown"},
      {gpu_throttle::kHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
      {gpu_throttle::kDisplayClockSetting, "display_clock_setting"},
  };
  std::vector<std::string> names;
  for (const auto& entry : kNames) {
    if (mask & entry.bit) names.emplace_back(entry.name);
    mask &= ~entry.bit;
  }
  for (int bit = 0; bit < 64; ++bit) {
    const uint64_t value = uint64_t{1} << bit;
    if (!(mask & value)) continue;
    char hex[24];
    std::snprintf(hex, sizeof(hex), "0x%llx",
                  static_cast<unsigned long long>(value));
    names.emplace_back(hex);
  }
  return names;
}

std::optional<double> MinCoreFreqMhz(const HostSample& sample) {
  std::optional<double> min;
  for (const CpuCoreSample& core : sample.cores) {
    if (core.cur_freq_mhz && (!min || *core.cur_freq_mhz < *min))
      min = core.cur_freq_mhz;
  }
  return min;
}

std::optional<double> MaxCpuTempC(const HostSample& sample) {
  std::optional<double> max;
  for (const TemperatureReading& t : sample.temperatures) {
    if (t.cpu) max = MaxOf(max, t.temp_c);
  }
  return max;
}

std::optional<double> MaxGpuTempC(const HostSample& sample) {
  std::optional<double> max;
  for (const GpuSample& gpu : sample.gpus) max = MaxOf(max, gpu.temp_c);
  return max;
}

std::optional<double> MaxGpuUtilPercent(const HostSample& sample) {
  std::optional<double> max;
  for (const GpuSample& gpu : sample.gpus) max = MaxOf(max, gpu.util_percent);
  return max;
}

std::optional<double> MaxProcessCpuCores(const HostSample& sample) {
  if (!sample.processes_scanned) return std::nullopt;
  return sample.top_processes.empty() ? 0.0
                                      : sample.top_processes.front().cpu_cores;
}

bool IsCpuTemperatureSensor(const std::string& name, const std::string& label) {
  const std::string n = Lower(name);
  for (std::string_view chip :
       {"coretemp", "k10temp", "k8temp", "zenpower", "x86_pkg_temp"}) {
    if (n == chip) return true;
  }
  // ARM SoCs: "cpu-thermal", "cpu0-thermal", "cpu_thermal", "soc-thermal",
  // "soc_dts0"; Super-I/O chips label their CPU socket sensor "CPUTIN" / "CPU
  // Temp".
  return n.find("cpu") != std::string::npos ||
         n.find("soc") != std::string::npos ||
         Lower(label).find("cpu") != std::string::npos;
}

}  // namespace benchfleet
