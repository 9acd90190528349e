// Host-state summary of a run: condenses the HostSamples taken while a step ran
// into the figures stored with the run (max CPU/GPU temperature, min frequency,
// mean utilisation, throttle-counter increase, competing CPU) and the flags
// that make the controller re-run it (DESIGN.md §5): the host throttled, lost
// frequency or ran a competing process. Used by the agent when a step ends;
// pure logic over plain structs.
//
// Thread-safety: pure functions; thread-safe.
#ifndef BENCHFLEET_AGENT_PROBE_HOST_SUMMARY_H_
#define BENCHFLEET_AGENT_PROBE_HOST_SUMMARY_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/probe/host_sample.h"

namespace benchfleet {

// Flag names (HostStateSummary::flags).
// Thermal-throttle counters rose.
inline constexpr char kFlagThrottled[] = "throttled";
// The run's cores lost frequency (see HostSummaryOptions).
inline constexpr char kFlagFrequencyDropped[] = "frequency_dropped";
// A competing process used more than the allowed CPU.
inline constexpr char kFlagContended[] = "contended";
// A GPU was slowed by heat or a power brake (gpu_throttle::kSlowdownMask).
inline constexpr char kFlagGpuThrottled[] = "gpu_throttled";

// What the frequency of the run's cores is compared with.
enum class FrequencyBaseline {
  // The first sample of the run that has a frequency for those cores.
  kFirstSample,
  // Their cpuinfo_max_freq (with turbo, the single-core maximum: strict).
  kHardwareMax,
};

struct HostSummaryOptions {
  // frequency_dropped: some sample's run frequency is below (1 - fraction) x
  // baseline.
  double freq_drop_fraction = 0.10;
  FrequencyBaseline freq_baseline = FrequencyBaseline::kFirstSample;
  // The CPUs the run used (its pinning). Empty: in each sample, the cores at
  // least `busy_core_util` busy (idle cores clock down by design, so they are
  // not evidence).
  std::vector<int> cpus;
  double busy_core_util = 0.5;
  // contended: a single non-excluded process used more than this many cores
  // in a per-process reading taken during the run (HostSample::
  // processes_scanned, over its process_window).
  //
  // Those readings cover at least the probe's min_window (1 s) and end at
  // their sample, and the agent takes each run's closing sample with
  // Probe::SampleWithProcesses, so a run that anything competed with has one
  // that ends at its end. A run shorter than min_window is therefore judged
  // on the min_window that ends with it: the whole run plus the time just
  // before it. Its own span would be judged by rounding, not by the
  // competitor: CPU times advance in 10 ms ticks, so one tick in a 50 ms run
  // reads as 0.2 cores, twice this limit, and short runs were re-run for
  // nothing. The longer window dilutes a burst that hit only the run (one core
  // for 50 ms reads as 0.05 cores over 1 s); a competitor that stays busy
  // shows in full, and the gate before the next run judges the same window.
  double contended_process_cpu_cores = 0.10;
};

struct HostStateSummary {
  int samples = 0;
  std::optional<double> max_cpu_temp_c;
  std::optional<double> max_gpu_temp_c;
  // Lowest current frequency of any core in any sample (idle cores included).
  std::optional<double> min_freq_mhz;
  // Lowest frequency of the run's cores (the mean over the cores counted in a
  // sample, see HostSummaryOptions::cpus) and the baseline it was compared
  // with.
  std::optional<double> min_run_freq_mhz;
  std::optional<double> baseline_freq_mhz;
  // Mean of the samples' whole-host utilisation, 0..1.
  std::optional<double> mean_cpu_util;
  std::optional<double> max_gpu_util_percent;
  // Sum of the increases of HostSample::throttle_count between consecutive
  // samples.
  std::optional<int64_t> throttle_count_delta;
  // The most CPU any single competing process used, and which one; the most CPU
  // all competing processes used together (scanned samples only).
  std::optional<double> max_process_cpu_cores;
  std::optional<ProcessCpu> top_competitor;
  // The window of the reading that gave top_competitor (0 = not known).
  std::chrono::nanoseconds top_competitor_window{0};
  std::optional<double> max_competing_cpu_cores;
  // Union over samples of the GPU throttle reasons seen.
  std::vector<std::string> gpu_throttle_reasons;
  // kFlag* names, in that order, and one human-readable reason per flag
  // ("throttle counters rose by 12", "pid 4242 (stress) used 0.93 cores").
  std::vector<std::string> flags;
  std::vector<std::string> reasons;

  bool flagged() const { return !flags.empty(); }
};

// Summarises the samples of one run, in time order. An empty span gives samples
// == 0 and nothing else.
HostStateSummary SummarizeHostSamples(std::span<const HostSample> samples,
                                      const HostSummaryOptions& options = {});

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_PROBE_HOST_SUMMARY_H_
