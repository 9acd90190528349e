// Tests of SummarizeHostSamples (the per-run host-state summary and its flags)
// on hand-built sample series, and of the JSON forms of samples and summaries.
#include <string>
#include <vector>

#include "agent/probe/host_sample.h"
#include "agent/probe/host_summary.h"
#include "agent/probe/probe_json.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::DoubleEq;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

// A sample of a 2-CPU host: cpu0 runs the benchmark at `run_mhz`, cpu1 idles at
// `idle_mhz`; one CPU temperature, a throttle counter and a scanned process
// window.
HostSample Sample(double run_mhz, double idle_mhz = 800, int64_t throttle = 10,
                  double cpu_temp = 60, double competitor_cores = 0.01) {
  HostSample s;
  s.cpu_util = 0.5;
  CpuCoreSample busy;
  busy.cpu = 0;
  busy.util = 1.0;
  busy.cur_freq_mhz = run_mhz;
  busy.hw_max_freq_mhz = 4600;
  CpuCoreSample idle;
  idle.cpu = 1;
  idle.util = 0.0;
  idle.cur_freq_mhz = idle_mhz;
  idle.hw_max_freq_mhz = 4600;
  s.cores = {busy, idle};
  s.temperatures.push_back({.source = "hwmon1/temp1",
                            .name = "coretemp",
                            .cpu = true,
                            .temp_c = cpu_temp});
  s.temperatures.push_back(
      {.source = "hwmon2/temp1", .name = "nvme", .cpu = false, .temp_c = 90});
  s.throttle_count = throttle;
  s.processes_scanned = true;
  s.competing_cpu_cores = competitor_cores;
  s.top_processes = {
      {.pid = 4242, .comm = "stress", .cpu_cores = competitor_cores}};
  return s;
}

TEST(ProbeSummaryTest, EmptyRunHasNothing) {
  const HostStateSummary summary = SummarizeHostSamples({});
  EXPECT_EQ(summary.samples, 0);
  EXPECT_EQ(summary.max_cpu_temp_c, std::nullopt);
  EXPECT_FALSE(summary.flagged());
}

TEST(ProbeSummaryTest, QuietRunGivesFiguresAndNoFlags) {
  std::vector<HostSample> run = {Sample(4000, 800, 10, 61),
                                 Sample(3950, 1200, 10, 66),
                                 Sample(3990, 800, 10, 63)};
  run[1].cpu_util = 0.7;
  const HostStateSummary summary = SummarizeHostSamples(run);
  EXPECT_EQ(summary.samples, 3);
  EXPECT_THAT(summary.max_cpu_temp_c,
              Optional(DoubleEq(66)));  // nvme's 90 is not a CPU
  EXPECT_EQ(summary.max_gpu_temp_c, std::nullopt);
  EXPECT_THAT(summary.min_freq_mhz, Optional(DoubleEq(800)));  // the idle core
  EXPECT_THAT(summary.min_run_freq_mhz, Optional(DoubleEq(3950)));
  EXPECT_THAT(summary.baseline_freq_mhz, Optional(DoubleEq(4000)));
  EXPECT_THAT(summary.mean_cpu_util, Optional(DoubleNear(0.5666666, 1e-6)));
  EXPECT_EQ(summary.throttle_count_delta, 0);
  EXPECT_THAT(summary.max_process_cpu_cores, Optional(DoubleEq(0.01)));
  EXPECT_THAT(summary.flags, IsEmpty());
  EXPECT_THAT(summary.reasons, IsEmpty());
}

TEST(ProbeSummaryTest, RisingThrottleCounterFlagsThrottled) {
  const HostStateSummary summary = SummarizeHostSamples(std::vector<HostSample>{
      Sample(4000, 800, 10), Sample(4000, 800, 12), Sample(4000, 800, 15)});
  EXPECT_EQ(summary.throttle_count_delta, 5);
  EXPECT_THAT(summary.flags, ElementsAre(kFlagThrottled));
  EXPECT_THAT(summary.reasons[0], HasSubstr("rose by 5"));
}

TEST(ProbeSummaryTest, ThrottleCounterThatGoesDownIsNotAnIncrease) {
  // A CPU going offline removes its counter from the sum.
  const HostStateSummary summary = SummarizeHostSamples(std::vector<HostSample>{
      Sample(4000, 800, 10), Sample(4000, 800, 4), Sample(4000, 800, 4)});
  EXPECT_EQ(summary.throttle_count_delta, 0);
  EXPECT_FALSE(summary.flagged());
}

TEST(ProbeSummaryTest, BusyCoreLosingFrequencyFlagsButAnIdleCoreDoesNot) {
  // The idle core dropping from 4000 to 800 MHz is the governor at work, not a
  // problem.
  EXPECT_FALSE(SummarizeHostSamples(std::vector<HostSample>{Sample(4000, 4000),
                                                            Sample(4000, 800)})
                   .flagged());
  const HostStateSummary summary = SummarizeHostSamples(
      std::vector<HostSample>{Sample(4000), Sample(3700), Sample(3500)});
  EXPECT_THAT(summary.flags, ElementsAre(kFlagFrequencyDropped));
  EXPECT_THAT(summary.min_run_freq_mhz, Optional(DoubleEq(3500)));
  EXPECT_THAT(summary.reasons[0], HasSubstr("3500 MHz"));
  // 12.5 % is within a 20 % allowance.
  EXPECT_FALSE(
      SummarizeHostSamples(std::vector<HostSample>{Sample(4000), Sample(3500)},
                           {.freq_drop_fraction = 0.2})
          .flagged());
}

TEST(ProbeSummaryTest, PinnedCpusAreJudgedWhateverTheirUtilisation) {
  std::vector<HostSample> run = {Sample(4000, 3000), Sample(4000, 2000)};
  EXPECT_FALSE(SummarizeHostSamples(run).flagged());
  const HostStateSummary pinned = SummarizeHostSamples(run, {.cpus = {1}});
  EXPECT_THAT(pinned.flags, ElementsAre(kFlagFrequencyDropped));
  EXPECT_THAT(pinned.baseline_freq_mhz, Optional(DoubleEq(3000)));
}

TEST(ProbeSummaryTest, HardwareMaxBaselineComparesWithCpuinfoMaxFreq) {
  std::vector<HostSample> run = {Sample(4000), Sample(4000)};
  const HostStateSummary strict = SummarizeHostSamples(
      run, {.freq_baseline = FrequencyBaseline::kHardwareMax});
  EXPECT_THAT(strict.flags,
              ElementsAre(kFlagFrequencyDropped));  // 13 % under 4600
  EXPECT_THAT(strict.baseline_freq_mhz, Optional(DoubleEq(4600)));
  EXPECT_FALSE(SummarizeHostSamples(
                   run, {.freq_drop_fraction = 0.15,
                         .freq_baseline = FrequencyBaseline::kHardwareMax})
                   .flagged());
}

TEST(ProbeSummaryTest, CompetingProcessAboveTheShareFlagsContended) {
  std::vector<HostSample> run = {Sample(4000), Sample(4000, 800, 10, 60, 0.6),
                                 Sample(4000)};
  run.push_back(Sample(4000));
  // Unscanned samples say nothing about processes.
  run.back().processes_scanned = false;
  run.back().top_processes.clear();
  const HostStateSummary summary = SummarizeHostSamples(run);
  EXPECT_THAT(summary.flags, ElementsAre(kFlagContended));
  EXPECT_THAT(summary.max_process_cpu_cores, Optional(DoubleEq(0.6)));
  ASSERT_TRUE(summary.top_competitor.has_value());
  EXPECT_EQ(summary.top_competitor->pid, 4242);
  EXPECT_THAT(summary.reasons[0],
              HasSubstr("pid 4242 (stress) used 0.60 cores"));
  // At the limit is not above it.
  EXPECT_FALSE(SummarizeHostSamples(
                   std::vector<HostSample>{Sample(4000, 800, 10, 60, 0.1)},
                   {.contended_process_cpu_cores = 0.1})
                   .flagged());
}

TEST(ProbeSummaryTest, GpuSlowdownFlagsButPowerCapDoesNot) {
  HostSample s = Sample(4000);
  GpuSample gpu;
  gpu.index = 0;
  gpu.temp_c = 71;
  gpu.throttle_reasons = gpu_throttle::kSwPowerCap;
  s.gpus = {gpu};
  std::vector<HostSample> run = {s};
  HostStateSummary summary = SummarizeHostSamples(run);
  EXPECT_FALSE(summary.flagged());
  EXPECT_THAT(summary.max_gpu_temp_c, Optional(DoubleEq(71)));
  EXPECT_THAT(summary.gpu_throttle_reasons, ElementsAre("sw_power_cap"));

  s.gpus[0].throttle_reasons =
      gpu_throttle::kSwPowerCap | gpu_throttle::kHwThermalSlowdown;
  run.push_back(s);
  summary = SummarizeHostSamples(run);
  EXPECT_THAT(summary.flags, ElementsAre(kFlagGpuThrottled));
  EXPECT_THAT(summary.reasons[0], HasSubstr("hw_thermal_slowdown"));
}

TEST(ProbeSummaryTest, SeveralFlagsComeInAFixedOrder) {
  const HostStateSummary summary = SummarizeHostSamples(std::vector<HostSample>{
      Sample(4000, 800, 1), Sample(3000, 800, 2, 60, 0.9)});
  EXPECT_THAT(summary.flags, ElementsAre(kFlagThrottled, kFlagFrequencyDropped,
                                         kFlagContended));
  EXPECT_EQ(summary.reasons.size(), 3u);
}

TEST(ProbeJsonTest, SampleJsonLeavesOutWhatIsNotAvailable) {
  HostSample s = Sample(4000);
  s.taken_at = SampleTime(std::chrono::milliseconds(1'700'000'000'123));
  s.cores[1].cur_freq_mhz.reset();
  const nlohmann::json j = HostSampleToJson(s);
  EXPECT_EQ(j["taken_at"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(j["taken_at_unix_ns"], int64_t{1'700'000'000'123} * 1'000'000);
  EXPECT_EQ(j["cores"][0]["cur_freq_mhz"], 4000.0);
  EXPECT_FALSE(j["cores"][1].contains("cur_freq_mhz"));
  EXPECT_FALSE(j.contains("load1"));
  EXPECT_EQ(j["max_cpu_temp_c"], 60.0);
  EXPECT_EQ(j["top_processes"][0]["comm"], "stress");

  const nlohmann::json summary =
      HostStateSummaryToJson(SummarizeHostSamples(std::vector<HostSample>{s}));
  EXPECT_EQ(summary["samples"], 1);
  EXPECT_TRUE(summary["flags"].is_array());
}

}  // namespace
}  // namespace benchfleet
