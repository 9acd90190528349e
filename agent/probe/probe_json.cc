#include "agent/probe/probe_json.h"

#include <time.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

namespace benchfleet {
namespace {

template <typename T>
void Put(nlohmann::json& j, const char* key, const std::optional<T>& value) {
  if (value) j[key] = *value;
}

void Put(nlohmann::json& j, const char* key, const std::string& value) {
  if (!value.empty()) j[key] = value;
}

std::string Rfc3339(SampleTime t) {
  const int64_t ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch())
          .count();
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                utc.tm_min, utc.tm_sec,
                static_cast<int>((ns / 1'000'000) % 1000));
  return buf;
}

}  // namespace

nlohmann::json HostFactsToJson(const HostFacts& facts) {
  return {{"hostname", facts.hostname},
          {"cpu_model", facts.cpu_model},
          {"cpu_cores", facts.cpu_cores},
          {"memory_bytes", facts.memory_bytes},
          {"os", facts.os},
          {"kernel", facts.kernel}};
}

nlohmann::json GpuSampleToJson(const GpuSample& gpu) {
  nlohmann::json j = nlohmann::json::object();
  j["index"] = gpu.index;
  Put(j, "name", gpu.name);
  Put(j, "uuid", gpu.uuid);
  Put(j, "temp_c", gpu.temp_c);
  Put(j, "util_percent", gpu.util_percent);
  Put(j, "memory_util_percent", gpu.memory_util_percent);
  Put(j, "memory_used_bytes", gpu.memory_used_bytes);
  Put(j, "memory_total_bytes", gpu.memory_total_bytes);
  Put(j, "power_w", gpu.power_w);
  Put(j, "sm_clock_mhz", gpu.sm_clock_mhz);
  Put(j, "mem_clock_mhz", gpu.mem_clock_mhz);
  Put(j, "throttle_reasons", gpu.throttle_reasons);
  if (gpu.throttle_reasons)
    j["throttle_reason_names"] = gpu.throttle_reason_names;
  if (!gpu.errors.empty()) j["errors"] = gpu.errors;
  return j;
}

nlohmann::json HostSampleToJson(const HostSample& s) {
  nlohmann::json j = nlohmann::json::object();
  j["taken_at_unix_ns"] = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              s.taken_at.time_since_epoch())
                              .count();
  j["taken_at"] = Rfc3339(s.taken_at);
  Put(j, "cpu_util", s.cpu_util);
  Put(j, "cpu_steal", s.cpu_steal);
  Put(j, "load1", s.load1);
  Put(j, "load5", s.load5);
  Put(j, "load15", s.load15);
  Put(j, "procs_running", s.procs_running);
  Put(j, "mem_total_bytes", s.mem_total_bytes);
  Put(j, "mem_available_bytes", s.mem_available_bytes);
  Put(j, "cpufreq_driver", s.cpufreq_driver);
  Put(j, "turbo_enabled", s.turbo_enabled);
  Put(j, "throttle_count", s.throttle_count);
  Put(j, "min_freq_mhz", MinCoreFreqMhz(s));
  Put(j, "max_cpu_temp_c", MaxCpuTempC(s));
  Put(j, "max_gpu_temp_c", MaxGpuTempC(s));
  Put(j, "other_cpu_cores", s.other_cpu_cores);
  if (s.other_cpu_cores) j["other_cpu_window_ns"] = s.other_cpu_window.count();
  if (s.other_cpu_window_needed.count() > 0)
    j["other_cpu_window_needed_ns"] = s.other_cpu_window_needed.count();
  j["processes_scanned"] = s.processes_scanned;
  if (s.processes_scanned) j["process_window_ns"] = s.process_window.count();
  Put(j, "competing_cpu_cores", s.competing_cpu_cores);
  nlohmann::json cores = nlohmann::json::array();
  for (const CpuCoreSample& c : s.cores) {
    nlohmann::json core = {{"cpu", c.cpu}};
    Put(core, "util", c.util);
    Put(core, "cur_freq_mhz", c.cur_freq_mhz);
    Put(core, "min_freq_mhz", c.min_freq_mhz);
    Put(core, "max_freq_mhz", c.max_freq_mhz);
    Put(core, "hw_max_freq_mhz", c.hw_max_freq_mhz);
    Put(core, "governor", c.governor);
    Put(core, "core_throttle_count", c.core_throttle_count);
    Put(core, "package_throttle_count", c.package_throttle_count);
    cores.push_back(std::move(core));
  }
  j["cores"] = std::move(cores);
  nlohmann::json temps = nlohmann::json::array();
  for (const TemperatureReading& t : s.temperatures) {
    nlohmann::json temp = {
        {"source", t.source}, {"cpu", t.cpu}, {"temp_c", t.temp_c}};
    Put(temp, "name", t.name);
    Put(temp, "label", t.label);
    temps.push_back(std::move(temp));
  }
  j["temperatures"] = std::move(temps);
  nlohmann::json top = nlohmann::json::array();
  for (const ProcessCpu& p : s.top_processes) {
    top.push_back(
        {{"pid", p.pid}, {"comm", p.comm}, {"cpu_cores", p.cpu_cores}});
  }
  j["top_processes"] = std::move(top);
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuSample& g : s.gpus) gpus.push_back(GpuSampleToJson(g));
  j["gpus"] = std::move(gpus);
  return j;
}

nlohmann::json HostStateSummaryToJson(const HostStateSummary& summary) {
  nlohmann::json j = nlohmann::json::object();
  j["samples"] = summary.samples;
  Put(j, "max_cpu_temp_c", summary.max_cpu_temp_c);
  Put(j, "max_gpu_temp_c", summary.max_gpu_temp_c);
  Put(j, "min_freq_mhz", summary.min_freq_mhz);
  Put(j, "min_run_freq_mhz", summary.min_run_freq_mhz);
  Put(j, "baseline_freq_mhz", summary.baseline_freq_mhz);
  Put(j, "mean_cpu_util", summary.mean_cpu_util);
  Put(j, "max_gpu_util_percent", summary.max_gpu_util_percent);
  Put(j, "throttle_count_delta", summary.throttle_count_delta);
  Put(j, "max_process_cpu_cores", summary.max_process_cpu_cores);
  Put(j, "max_competing_cpu_cores", summary.max_competing_cpu_cores);
  if (summary.top_competitor) {
    j["top_competitor"] = {{"pid", summary.top_competitor->pid},
                           {"comm", summary.top_competitor->comm},
                           {"cpu_cores", summary.top_competitor->cpu_cores}};
  }
  j["gpu_throttle_reasons"] = summary.gpu_throttle_reasons;
  j["flags"] = summary.flags;
  j["reasons"] = summary.reasons;
  return j;
}

}  // namespace benchfleet
