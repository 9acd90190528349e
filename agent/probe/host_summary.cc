#include "agent/probe/host_summary.h"

#include <algorithm>
#include <cstdio>
#include <string>

namespace benchfleet {
namespace {

void Max(std::optional<double>* acc, std::optional<double> value) {
  if (value && (!*acc || *value > **acc)) *acc = value;
}

void Min(std::optional<double>* acc, std::optional<double> value) {
  if (value && (!*acc || *value < **acc)) *acc = value;
}

template <typename... Args>
std::string Format(const char* format, Args... args) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), format, args...);
  return buf;
}

// The mean current frequency of the cores the run used in this sample and the
// mean of their hardware maxima (nullopt when none of them has a frequency).
struct RunFrequency {
  double cur_mhz = 0;
  std::optional<double> hw_max_mhz;
};

std::optional<RunFrequency> RunFrequencyOf(const HostSample& sample,
                                           const HostSummaryOptions& options) {
  double cur = 0, hw = 0;
  int n = 0, n_hw = 0;
  for (const CpuCoreSample& core : sample.cores) {
    if (!core.cur_freq_mhz) continue;
    const bool counted =
        options.cpus.empty()
            ? core.util && *core.util >= options.busy_core_util
            : std::find(options.cpus.begin(), options.cpus.end(), core.cpu) !=
                  options.cpus.end();
    if (!counted) continue;
    cur += *core.cur_freq_mhz;
    ++n;
    if (core.hw_max_freq_mhz) {
      hw += *core.hw_max_freq_mhz;
      ++n_hw;
    }
  }
  if (n == 0) return std::nullopt;
  RunFrequency f;
  f.cur_mhz = cur / n;
  if (n_hw == n) f.hw_max_mhz = hw / n_hw;
  return f;
}

}  // namespace

HostStateSummary SummarizeHostSamples(std::span<const HostSample> samples,
                                      const HostSummaryOptions& options) {
  HostStateSummary out;
  out.samples = static_cast<int>(samples.size());
  double util_sum = 0;
  int util_n = 0;
  std::optional<int64_t> last_count;
  int64_t throttle_delta = 0;
  int count_samples = 0;
  std::optional<double> first_run_freq;
  std::optional<double> worst_ratio;
  uint64_t gpu_reasons = 0;
  for (const HostSample& s : samples) {
    Max(&out.max_cpu_temp_c, MaxCpuTempC(s));
    Max(&out.max_gpu_temp_c, MaxGpuTempC(s));
    Max(&out.max_gpu_util_percent, MaxGpuUtilPercent(s));
    Min(&out.min_freq_mhz, MinCoreFreqMhz(s));
    if (s.cpu_util) {
      util_sum += *s.cpu_util;
      ++util_n;
    }
    if (s.throttle_count) {
      if (last_count && *s.throttle_count > *last_count) {
        throttle_delta += *s.throttle_count - *last_count;
      }
      last_count = s.throttle_count;
      ++count_samples;
    }
    if (s.processes_scanned) {
      Max(&out.max_competing_cpu_cores, s.competing_cpu_cores);
      const double top =
          s.top_processes.empty() ? 0.0 : s.top_processes.front().cpu_cores;
      if (!out.max_process_cpu_cores || top > *out.max_process_cpu_cores) {
        out.max_process_cpu_cores = top;
        if (!s.top_processes.empty()) {
          out.top_competitor = s.top_processes.front();
          out.top_competitor_window = s.process_window;
        }
      }
    }
    for (const GpuSample& gpu : s.gpus)
      gpu_reasons |= gpu.throttle_reasons.value_or(0);

    if (auto f = RunFrequencyOf(s, options)) {
      Min(&out.min_run_freq_mhz, f->cur_mhz);
      if (!first_run_freq) first_run_freq = f->cur_mhz;
      const std::optional<double> baseline =
          options.freq_baseline == FrequencyBaseline::kFirstSample
              ? first_run_freq
              : f->hw_max_mhz;
      if (baseline && *baseline > 0) {
        const double ratio = f->cur_mhz / *baseline;
        if (!worst_ratio || ratio < *worst_ratio) {
          worst_ratio = ratio;
          out.baseline_freq_mhz = baseline;
        }
      }
    }
  }
  if (util_n > 0) out.mean_cpu_util = util_sum / util_n;
  if (count_samples >= 2) out.throttle_count_delta = throttle_delta;
  out.gpu_throttle_reasons = GpuThrottleReasonNames(gpu_reasons);

  if (out.throttle_count_delta && *out.throttle_count_delta > 0) {
    out.flags.push_back(kFlagThrottled);
    out.reasons.push_back(
        Format("CPU thermal-throttle counters rose by %lld during the run",
               static_cast<long long>(*out.throttle_count_delta)));
  }
  if (worst_ratio && *worst_ratio < 1.0 - options.freq_drop_fraction) {
    out.flags.push_back(kFlagFrequencyDropped);
    out.reasons.push_back(Format(
        "CPU frequency of the run's cores fell to %.0f MHz, %.0f%% below the "
        "%s of %.0f MHz "
        "(limit %.0f%%)",
        *out.min_run_freq_mhz, (1.0 - *worst_ratio) * 100.0,
        options.freq_baseline == FrequencyBaseline::kFirstSample
            ? "first sample"
            : "hardware maximum",
        out.baseline_freq_mhz.value_or(0), options.freq_drop_fraction * 100.0));
  }
  if (out.max_process_cpu_cores &&
      *out.max_process_cpu_cores > options.contended_process_cpu_cores &&
      out.top_competitor) {
    out.flags.push_back(kFlagContended);
    std::string over;
    if (out.top_competitor_window > std::chrono::nanoseconds(0)) {
      over = Format(
          " over %.2f s",
          std::chrono::duration<double>(out.top_competitor_window).count());
    }
    out.reasons.push_back(
        Format("competing process pid %d (%s) used %.2f cores%s (limit %.2f)",
               out.top_competitor->pid, out.top_competitor->comm.c_str(),
               out.top_competitor->cpu_cores, over.c_str(),
               options.contended_process_cpu_cores));
  }
  if (gpu_reasons & gpu_throttle::kSlowdownMask) {
    std::string names;
    for (const std::string& name :
         GpuThrottleReasonNames(gpu_reasons & gpu_throttle::kSlowdownMask)) {
      names += names.empty() ? name : ", " + name;
    }
    out.flags.push_back(kFlagGpuThrottled);
    out.reasons.push_back("GPU clocks were slowed during the run: " + names);
  }
  return out;
}

}  // namespace benchfleet
