// Gates and step sampling against a scripted probe and a FakeClock: no real
// waiting.
#include "agent/service/host_gates.h"

#include <atomic>
#include <thread>

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
                             "load average 1.75, above the 0.30 gate",
                             "other processes use 0.90 cores, above the "
                             "0.25-core gate (busiest: pid 4242 "
                             "stress, 0.88 cores)"));
  GateOptions off;  // zeros: nothing is checked
  EXPECT_TRUE(GateBlockers(s, off).empty());
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
  const int after_end = probe.calls();
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_EQ(probe.calls(), after_end)
      << "the sampler must be idle between runs";
  for (size_t i = 1; i < samples.size(); ++i) {
    EXPECT_LE(samples[i - 1].taken_at, samples[i].taken_at);
  }
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
