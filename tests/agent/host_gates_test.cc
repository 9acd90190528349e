// Gates and step sampling against a scripted probe and a FakeClock: no real
// waiting.
#include "agent/service/host_gates.h"

#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

// A host whose readings are a function of the fake time.
class ScriptedProbe : public Probe {
 public:
  explicit ScriptedProbe(std::function<HostSample(absl::Time)> script)
      : script_(std::move(script)) {}
  HostSample Sample(SampleTime now) override {
    ++calls_;
    return script_(absl::FromChrono(now));
  }
  int calls() const { return calls_; }

 private:
  std::function<HostSample(absl::Time)> script_;
  std::atomic<int> calls_{0};
};

HostSample WithGpuTemp(double temp_c) {
  HostSample s;
  GpuSample g;
  g.index = 0;
  g.temp_c = temp_c;
  s.gpus.push_back(g);
  s.load1 = 0.05;
  s.other_cpu_cores = 0.0;
  return s;
}

// Advances the clock by `step` once per SleepFor call of the code under test,
// until Stop.
class ClockDriver {
 public:
  ClockDriver(FakeClock* clock, absl::Duration step) : clock_(clock) {
    thread_ = std::thread([this, step] {
      for (int64_t calls = 1; !done_; ++calls) {
        clock_->AwaitSleepCalls(calls);
        if (done_) return;
        clock_->Advance(step);
      }
    });
  }
  // Call once the code under test returned; wakes the driver if it waits for a
  // sleeper.
  void Stop() {
    done_ = true;
    // The driver may be waiting for one more SleepFor call: make one, then wake
    // it.
    std::atomic<bool> woke{false};
    std::thread waker([this, &woke] {
      clock_->SleepFor(absl::Nanoseconds(1));
      woke = true;
    });
    thread_.join();
    while (!woke) {
      clock_->Advance(absl::Nanoseconds(1));
      std::this_thread::yield();
    }
    waker.join();
  }

 private:
  FakeClock* clock_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

TEST(HostGatesTest, HotGpuHoldsTheStepUntilItCools) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  const absl::Time cool_at = clock.Now() + absl::Seconds(30);
  ScriptedProbe probe([cool_at](absl::Time now) {
    return WithGpuTemp(now < cool_at ? 71.5 : 44.0);
  });
  GateOptions gates;
  gates.max_gpu_temp_c = 50;
  gates.poll_interval = absl::Seconds(1);
  std::vector<std::string> seen;
  ClockDriver driver(&clock, gates.poll_interval);
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr,
                   [&](const std::string& b) { seen.push_back(b); });
  driver.Stop();
  EXPECT_TRUE(out.passed) << out.reason;
  EXPECT_EQ(out.waited, absl::Seconds(30));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), "GPU 0 at 71.5 °C, at or above the 50 °C gate");
}

TEST(HostGatesTest, GivesUpAfterMaxWaitNamingWhatStillBlocks) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(80); });
  GateOptions gates;
  gates.max_gpu_temp_c = 50;
  gates.max_wait = absl::Minutes(1);
  gates.poll_interval = absl::Seconds(5);
  ClockDriver driver(&clock, gates.poll_interval);
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr);
  driver.Stop();
  EXPECT_FALSE(out.passed);
  EXPECT_EQ(out.waited, absl::Minutes(1));
  EXPECT_EQ(out.reason,
            "the host did not become ready within 1m: GPU 0 at 80.0 °C, at or "
            "above the 50 °C "
            "gate");
}

TEST(HostGatesTest, CooldownSinceThePreviousExperimentIsWaitedOut) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(30); });
  GateOptions gates;
  gates.poll_interval = absl::Seconds(1);
  ClockDriver driver(&clock, gates.poll_interval);
  GateOutcome out = WaitForGates(probe, clock, gates,
                                 clock.Now() + absl::Seconds(12), nullptr);
  driver.Stop();
  EXPECT_TRUE(out.passed);
  EXPECT_EQ(out.waited, absl::Seconds(12));
}

TEST(HostGatesTest, ReadyHostPassesAtOnceWithoutSleeping) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(30); });
  GateOptions gates;
  gates.max_gpu_temp_c = 50;
  gates.max_cpu_temp_c = 70;
  gates.max_load = 0.3;
  gates.max_competing_cpu = 0.1;
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr);
  EXPECT_TRUE(out.passed);
  EXPECT_EQ(out.waited, absl::ZeroDuration());
  EXPECT_EQ(probe.calls(), 1);
}

TEST(HostGatesTest, CancelStopsTheWait) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(90); });
  GateOptions gates;
  gates.max_gpu_temp_c = 50;
  std::atomic<bool> cancel{true};
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), &cancel);
  EXPECT_FALSE(out.passed);
  EXPECT_TRUE(out.cancelled);
}

TEST(HostGatesTest, BlockersNameLoadCpuTemperatureAndTheBusiestCompetitor) {
  HostSample s;
  s.load1 = 1.75;
  TemperatureReading t;
  t.cpu = true;
  t.temp_c = 82;
  t.name = "k10temp";
  s.temperatures.push_back(t);
  s.other_cpu_cores = 0.9;
  s.top_processes.push_back({4242, "stress", 0.88});
  GateOptions gates;
  gates.max_cpu_temp_c = 70;
  gates.max_load = 0.3;
  gates.max_competing_cpu = 0.25;
  EXPECT_THAT(
      GateBlockers(s, gates),
      ::testing::ElementsAre("CPU at 82.0 °C, at or above the 70 °C gate",
                             "load average 1.75, above the 0.30 gate (none "
                             "of it is this agent's: it has run no job yet)",
                             "other processes use 0.90 cores, above the "
                             "0.25-core gate (busiest: pid 4242 "
                             "stress, 0.88 cores)"));
  GateOptions off;  // zeros: nothing is checked
  EXPECT_TRUE(GateBlockers(s, off).empty());
}

// A clock whose sleeps return at once, having moved time on by exactly what
// was asked: for checking what the gates wait, to the nanosecond.
class SteppingClock : public Clock {
 public:
  explicit SteppingClock(absl::Time start) : now_(start) {}
  absl::Time Now() override { return now_; }
  void SleepFor(absl::Duration d) override {
    sleeps_.push_back(d);
    now_ += d;
  }
  const std::vector<absl::Duration>& sleeps() const { return sleeps_; }

 private:
  absl::Time now_;
  std::vector<absl::Duration> sleeps_;
};

// A quiet host as a probe with a 1 s window sees it `since_start` after the
// probe started: no competing CPU, and as much of the window as has passed.
HostSample QuietHost(absl::Time at, absl::Duration since_start) {
  HostSample s;
  s.taken_at = ToSampleTime(at);
  s.load1 = 0.05;
  const absl::Duration window = std::min(since_start, absl::Seconds(1));
  if (window > absl::ZeroDuration()) {
    s.other_cpu_cores = 0.02;
    s.other_cpu_window = absl::ToChronoNanoseconds(window);
  }
  s.other_cpu_window_needed =
      absl::ToChronoNanoseconds(absl::Seconds(1) - window);
  return s;
}

TEST(HostGatesTest, AShortCompetingReadingHoldsTheGateUntilItsWindowIsFull) {
  SteppingClock clock(absl::FromUnixSeconds(1000));
  const absl::Time probe_start = clock.Now() - absl::Milliseconds(200);
  ScriptedProbe probe(
      [&](absl::Time now) { return QuietHost(now, now - probe_start); });
  GateOptions gates;
  gates.max_competing_cpu = 0.25;
  std::vector<std::string> seen;
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr,
                   [&](const std::string& b) { seen.push_back(b); });
  EXPECT_TRUE(out.passed) << out.reason;
  // 0.8 s more were needed: one poll interval, then only the rest.
  EXPECT_EQ(out.waited, absl::Milliseconds(800));
  EXPECT_THAT(clock.sleeps(), ::testing::ElementsAre(absl::Milliseconds(500),
                                                     absl::Milliseconds(300)));
  EXPECT_EQ(out.blocked_polls, 2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0],
            "measuring other processes' CPU for the competing-CPU gate: "
            "0.20 s of the 1.00 s window so far");
  EXPECT_EQ(out.waited_for, seen[1]);
  EXPECT_THAT(seen[1], HasSubstr("0.70 s of the 1.00 s window"));

  // Without a gate that needs it, an incomplete reading holds nothing.
  GateOptions no_competing_gate;
  no_competing_gate.max_gpu_temp_c = 50;
  EXPECT_TRUE(GateBlockers(QuietHost(clock.Now(), absl::ZeroDuration()),
                           no_competing_gate)
                  .empty());
}

TEST(HostGatesTest, AYoungReadingDecidesOnlyWhereRoundingCannotChangeIt) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  GateOptions gates;
  gates.max_competing_cpu = 0.25;
  // 0.2 s measured, over which rounding could move the reading by 0.2 cores.
  auto young = [&](double cores) {
    HostSample s = QuietHost(now, absl::Milliseconds(200));
    s.other_cpu_cores = cores;
    s.other_cpu_rounding_cores = 0.2;
    return s;
  };
  // Clearly below: ready without waiting for the rest of the window.
  EXPECT_TRUE(GateBlockers(young(0.02), gates).empty());
  // Clearly above: blocked by the competitor, not by the measurement.
  EXPECT_THAT(GateBlockers(young(0.9), gates),
              ::testing::ElementsAre("other processes use 0.90 cores over the "
                                     "last 0.20 s, above the 0.25-core gate"));
  // Within rounding of the limit: the window must fill.
  EXPECT_THAT(GateBlockers(young(0.1), gates),
              ::testing::ElementsAre(
                  "measuring other processes' CPU for the competing-CPU gate: "
                  "0.20 s of the 1.00 s window so far (0.10 ± 0.20 cores)"));
}

TEST(HostGatesTest, WaitsAreMeasuredToTheMicrosecond) {
  SteppingClock clock(absl::FromUnixSeconds(1000));
  ScriptedProbe probe(
      [](absl::Time now) { return QuietHost(now, absl::Hours(1)); });
  GateOptions gates;
  gates.max_competing_cpu = 0.25;
  const absl::Duration cooldown = absl::Microseconds(1'234'567);
  GateOutcome out =
      WaitForGates(probe, clock, gates, clock.Now() + cooldown, nullptr);
  EXPECT_TRUE(out.passed);
  EXPECT_EQ(out.waited, cooldown);
  EXPECT_EQ(out.blocked_polls, 3);
  EXPECT_THAT(out.waited_for, HasSubstr("cooling down for 234.567ms more"));
}

HostSample LoadedByUsOrOthers(absl::Time at, double load1,
                              double other_cpu_cores) {
  HostSample s = QuietHost(at, absl::Hours(1));
  s.load1 = load1;
  s.other_cpu_cores = other_cpu_cores;
  return s;
}

TEST(HostGatesTest, LoadFromOurOwnRecentJobsIsJudgedOnOtherProcessesCpu) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  GateOptions gates;
  gates.max_load = 0.3;
  gates.own_work_ended_at = now - absl::Seconds(40);
  // The load is ours: others use 0.05 cores.
  EXPECT_TRUE(GateBlockers(LoadedByUsOrOthers(now, 1.2, 0.05), gates).empty());
  // Others use more than the load gate allows.
  HostSample busy = LoadedByUsOrOthers(now, 1.2, 0.6);
  busy.top_processes.push_back({4242, "stress", 0.55});
  EXPECT_THAT(GateBlockers(busy, gates),
              ::testing::ElementsAre(
                  "other processes use 0.60 cores over the last 1.00 s, above "
                  "the load gate's 0.30 (busiest: pid 4242 stress, 0.55 "
                  "cores); the load average (1.20) is not used because this "
                  "agent's own jobs ran within the last 5m and it still "
                  "counts them"));
  // A reading that is not yet complete holds the gate.
  HostSample young = QuietHost(now, absl::Milliseconds(400));
  young.load1 = 1.2;
  EXPECT_THAT(GateBlockers(young, gates),
              ::testing::ElementsAre(HasSubstr(
                  "measuring other processes' CPU for the load gate")));
}

TEST(HostGatesTest, LoadIsAllOthersWhenTheAgentRanNothingRecently) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  GateOptions gates;
  gates.max_load = 0.3;
  gates.own_work_ended_at = now - absl::Minutes(10);
  EXPECT_THAT(GateBlockers(LoadedByUsOrOthers(now, 1.2, 0.05), gates),
              ::testing::ElementsAre(
                  "load average 1.20, above the 0.30 gate (none of it is this "
                  "agent's: its last job ended 10m ago)"));
}

// The load average after a minute of our runs at one core: an exponential
// average with a 1-minute time constant, decaying from 1.0.
double LoadAfterOurRuns(absl::Duration since_end) {
  return std::exp(-absl::ToDoubleSeconds(since_end) / 60.0);
}

TEST(HostGatesTest, TheNextExperimentDoesNotWaitForOurOwnLoadToDecay) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  const absl::Time our_runs_ended = clock.Now();
  ScriptedProbe probe([&](absl::Time now) {
    return LoadedByUsOrOthers(now, LoadAfterOurRuns(now - our_runs_ended),
                              0.01);
  });
  GateOptions gates;
  gates.max_load = 0.3;
  gates.poll_interval = absl::Seconds(1);
  gates.own_work_ended_at = our_runs_ended;
  GateOutcome out =
      WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr);
  EXPECT_TRUE(out.passed) << out.reason;
  EXPECT_EQ(out.waited, absl::ZeroDuration());

  // The same load with no job of ours behind it is others': it is waited out
  // (1.0 decays below 0.3 after 60 s x ln(1/0.3) = 72.2 s).
  gates.own_work_ended_at = absl::InfinitePast();
  std::vector<std::string> seen;
  ClockDriver driver(&clock, gates.poll_interval);
  out = WaitForGates(probe, clock, gates, absl::InfinitePast(), nullptr,
                     [&](const std::string& b) { seen.push_back(b); });
  driver.Stop();
  EXPECT_TRUE(out.passed) << out.reason;
  EXPECT_EQ(out.waited, absl::Seconds(73));
  EXPECT_EQ(out.blocked_polls, 73);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(),
            "load average 1.00, above the 0.30 gate (none of it is this "
            "agent's: it has run no job yet)");
}

TEST(StepSamplerTest, SamplesWhileARunExecutesAndClosesWithAFinalSample) {
  RealClock* clock = RealClock::Get();
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(40); });
  StepSampler sampler(&probe, clock, absl::Milliseconds(5));
  sampler.Begin();
  // Wait (with a deadline) until the sampler thread has taken a few samples.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (probe.calls() < 3 && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(1));
  std::vector<HostSample> samples = sampler.End();
  EXPECT_GE(samples.size(), 4u);  // >= 3 periodic + the closing one
  for (size_t i = 1; i < samples.size(); ++i) {
    EXPECT_LE(samples[i - 1].taken_at, samples[i].taken_at);
  }
}

TEST(StepSamplerTest, TakesNoSampleBetweenRuns) {
  // The probe notes every call made while the test is between two runs. The
  // second run waits (on a condition, with a deadline) for periodic samples
  // of its own; a sampler that kept sampling after End would have been caught
  // in the gap, or would return samples stamped before the second Begin.
  FakeClock clock(absl::FromUnixSeconds(1000));
  std::atomic<bool> in_run{false};
  std::atomic<int> between_runs{0};
  ScriptedProbe probe([&](absl::Time now) {
    if (!in_run.load()) between_runs.fetch_add(1);
    HostSample s = WithGpuTemp(40);
    s.taken_at = ToSampleTime(now);
    return s;
  });
  StepSampler sampler(&probe, &clock, absl::Milliseconds(2));
  auto run_once = [&](int periodic) {
    in_run.store(true);
    sampler.Begin();
    const int target = probe.calls() + periodic;
    const absl::Time until = absl::Now() + absl::Seconds(10);
    while (probe.calls() < target && absl::Now() < until)
      std::this_thread::yield();
    std::vector<HostSample> samples = sampler.End();
    in_run.store(false);
    return samples;
  };
  const std::vector<HostSample> first = run_once(2);
  EXPECT_GE(first.size(), 4u);
  clock.Advance(absl::Hours(1));
  const absl::Time second_began = clock.Now();
  const std::vector<HostSample> second = run_once(2);
  EXPECT_GE(second.size(), 4u);
  EXPECT_EQ(between_runs.load(), 0) << "the sampler must be idle between runs";
  for (const HostSample& s : second) {
    EXPECT_GE(absl::FromChrono(s.taken_at), second_began);
  }
}

TEST(StepSamplerTest, TakesTheOpeningSampleBeforeTheRunAndNoneDuringAShortOne) {
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(40); });
  StepSampler sampler(&probe, RealClock::Get(), absl::Hours(1));
  sampler.Begin();
  // The opening sample is taken on this thread, before the spawn it precedes.
  EXPECT_EQ(probe.calls(), 1);
  // A run shorter than the interval: only the opening and the closing sample,
  // so the probe never competed with the run for the CPUs.
  std::vector<HostSample> samples = sampler.End();
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(probe.calls(), 2);
  EXPECT_LE(samples[0].taken_at, samples[1].taken_at);
}

TEST(StepSamplerTest, ZeroIntervalDisablesSampling) {
  ScriptedProbe probe([](absl::Time) { return WithGpuTemp(40); });
  StepSampler sampler(&probe, RealClock::Get(), absl::ZeroDuration());
  sampler.Begin();
  EXPECT_TRUE(sampler.End().empty());
  EXPECT_EQ(probe.calls(), 0);
}

}  // namespace
}  // namespace benchfleet
