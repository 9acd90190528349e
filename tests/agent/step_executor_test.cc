// StepExecutor and the agent's proto <-> model conversion: one step's gates,
// run and result against a scripted probe, a scripted runner and a clock whose
// sleeps return at once (no real waiting, no real processes).
#include "agent/service/step_executor.h"

#include <stdlib.h>

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "agent/service/agent_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Sleeps return at once, having moved time on by what was asked.
class SteppingClock : public Clock {
 public:
  absl::Time Now() override { return now_; }
  void SleepFor(absl::Duration d) override { now_ += d; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

class ScriptedProbe : public Probe {
 public:
  explicit ScriptedProbe(double gpu_temp_c) : gpu_temp_c_(gpu_temp_c) {}
  HostSample Sample(SampleTime now) override {
    ++calls;
    HostSample s;
    s.taken_at = now;
    GpuSample g;
    g.index = 0;
    g.temp_c = gpu_temp_c_;
    s.gpus.push_back(g);
    return s;
  }
  int calls = 0;

 private:
  double gpu_temp_c_;
};

class RecordingRunner : public ProcessRunner {
 public:
  absl::StatusOr<RunResult> Run(const RunRequest& req) override {
    requests.push_back(req);
    RunResult r;
    r.exit_code = exit_code;
    r.wall_ns = 5'000'000;
    r.user_ns = 4'000'000;
    r.stdout_head = "throughput: 12.5 ops/s\n";
    r.stdout_sha256 = "abc123";
    return r;
  }
  std::vector<RunRequest> requests;
  int exit_code = 0;
};

v1::StepOrder Order(v1::StepKind kind) {
  v1::StepOrder o;
  o.set_attempt_id(7);
  o.set_lease_token("tok");
  o.set_step_seq(3);
  o.set_kind(kind);
  o.add_argv("bench");
  o.add_argv("--fast");
  o.set_cwd("/tmp");
  o.set_timeout_us(6600);
  (*o.mutable_env())["PATH"] = "/order/bin";
  auto* m = o.add_metrics();
  m->set_name("ops");
  m->set_regex(R"(throughput: ([0-9.]+) ops/s)");
  return o;
}

class StepExecutorTest : public ::testing::Test {
 protected:
  StepExecutorTest() {
    char dir[] = "/tmp/step_executor_test_XXXXXX";
    workdir_ = mkdtemp(dir) != nullptr ? dir : "/tmp";
  }
  StepExecutor Make(ScriptedProbe* probe) {
    StepExecutorOptions o;
    o.agent_id = "host-a";
    o.workdir = workdir_;
    o.base_env = {"PATH=/usr/bin", "HOME=/home/a"};
    o.gates.max_gpu_temp_c = 80;
    o.gates.max_competing_cpu = 0;
    o.gates.max_wait = absl::Seconds(10);
    return StepExecutor(o, &runner_, probe, &clock_, &sampler_);
  }

  std::string workdir_;
  SteppingClock clock_;
  ScriptedProbe sampler_probe_{40};
  StepSampler sampler_{&sampler_probe_, &clock_, absl::ZeroDuration()};
  RecordingRunner runner_;
};

TEST_F(StepExecutorTest, RunsTheOrderAndReportsItsResult) {
  ScriptedProbe probe(40);
  StepExecutor x = Make(&probe);
  StepContext context;
  context.attempt_start = true;
  const StepOutcome out =
      x.Execute(Order(v1::STEP_KIND_MEASURE), context, nullptr, {});
  ASSERT_EQ(runner_.requests.size(), 1u);
  const RunRequest& req = runner_.requests[0];
  EXPECT_THAT(req.argv, ElementsAre("bench", "--fast"));
  EXPECT_EQ(req.timeout, absl::Microseconds(6600));
  // The order's variables over the agent's, plus the agent's id.
  EXPECT_THAT(req.env, ElementsAre("BENCHFLEET_AGENT_ID=host-a", "HOME=/home/a",
                                   "PATH=/order/bin"));
  EXPECT_EQ(req.stdout_path, workdir_ + "/attempts/7/3.stdout");
  EXPECT_EQ(req.stderr_path, workdir_ + "/attempts/7/3.stderr");

  const v1::StepResult& r = out.result;
  EXPECT_EQ(r.attempt_id(), 7);
  EXPECT_EQ(r.lease_token(), "tok");
  EXPECT_EQ(r.step_seq(), 3);
  EXPECT_EQ(r.exit_code(), 0);
  EXPECT_EQ(r.wall_ns(), 5'000'000);
  EXPECT_EQ(r.user_ns(), 4'000'000);
  EXPECT_EQ(r.output_digest(), "abc123");
  EXPECT_DOUBLE_EQ(r.metrics().at("ops"), 12.5);
  EXPECT_FALSE(r.host_not_ready());
  EXPECT_EQ(r.gate_wait_us(), 0);
  EXPECT_FALSE(out.samples.has_value()) << "sampling is disabled";
}

TEST_F(StepExecutorTest, AHotHostIsReportedNotReadyWithoutRunning) {
  ScriptedProbe probe(95);  // above the host's 80 °C gate
  StepExecutor x = Make(&probe);
  std::vector<std::string> statuses;
  const StepOutcome out =
      x.Execute(Order(v1::STEP_KIND_MEASURE), StepContext(), nullptr,
                [&](const std::string& s) { statuses.push_back(s); });
  EXPECT_TRUE(runner_.requests.empty());
  EXPECT_TRUE(out.result.host_not_ready());
  EXPECT_EQ(out.result.exit_code(), -1);
  EXPECT_THAT(out.result.error(), HasSubstr("did not become ready within 10s"));
  EXPECT_GE(out.result.gate_wait_us(), 10'000'000);
  ASSERT_FALSE(statuses.empty());
  EXPECT_THAT(statuses.front(), HasSubstr("waiting for the host: GPU"));
  EXPECT_EQ(statuses.back(), "") << "the status is cleared after the wait";
}

TEST_F(StepExecutorTest, ACancelledGateWaitIsNotReportedAsHostNotReady) {
  ScriptedProbe probe(95);
  StepExecutor x = Make(&probe);
  const std::atomic<bool> cancel{true};
  const StepOutcome out =
      x.Execute(Order(v1::STEP_KIND_MEASURE), StepContext(), &cancel, {});
  EXPECT_TRUE(runner_.requests.empty());
  EXPECT_FALSE(out.result.host_not_ready());
  EXPECT_EQ(out.result.exit_code(), -1);
}

TEST_F(StepExecutorTest, ASetupStepAfterTheFirstPassesNoGate) {
  ScriptedProbe probe(95);  // would block a gate
  StepExecutor x = Make(&probe);
  const StepOutcome out =
      x.Execute(Order(v1::STEP_KIND_SETUP), StepContext(), nullptr, {});
  EXPECT_EQ(probe.calls, 0);
  EXPECT_EQ(runner_.requests.size(), 1u);
  EXPECT_FALSE(out.result.host_not_ready());
}

TEST(MergeGatesTest, TheStricterLimitWinsAndLoadIsAnAttemptGate) {
  HostGateLimits host;
  host.max_gpu_temp_c = 80;
  host.max_cpu_temp_c = 0;  // not set: the spec's applies
  host.max_load = 0.5;
  host.max_competing_cpu = 0.25;
  host.max_wait = absl::Minutes(15);
  host.cooldown = absl::Seconds(5);
  v1::GateSpec spec;
  spec.set_max_gpu_temp_c(70);
  spec.set_max_cpu_temp_c(90);
  spec.set_max_load(1.0);
  spec.set_cooldown_us(10'000'000);
  spec.set_max_wait_us(2'500'000);
  const GateOptions at_start = MergeGates(host, spec, true);
  EXPECT_EQ(at_start.max_gpu_temp_c, 70);
  EXPECT_EQ(at_start.max_cpu_temp_c, 90);
  EXPECT_EQ(at_start.max_load, 0.5);
  EXPECT_EQ(at_start.max_competing_cpu, 0.25);
  EXPECT_EQ(at_start.cooldown, absl::Seconds(10));
  EXPECT_EQ(at_start.max_wait, absl::Microseconds(2'500'000));
  EXPECT_EQ(MergeGates(host, spec, false).max_load, 0);
  EXPECT_EQ(MergeGates(host, v1::GateSpec(), false).max_wait,
            absl::Minutes(15));
}

TEST(AgentConvertTest, EnvironmentAndSamplesKeepEveryField) {
  HostEnvironment env;
  env.governor = "performance";
  env.turbo = "off";
  env.gpus.push_back({"H200", "GPU-1", 141});
  env.toolchain["gcc"] = "12.2";
  env.commit = "deadbeef";
  env.dirty = true;
  const v1::AttemptEnvironment e = EnvironmentToProto(env);
  EXPECT_EQ(e.governor(), "performance");
  EXPECT_EQ(e.turbo(), "off");
  ASSERT_EQ(e.gpus_size(), 1);
  EXPECT_EQ(e.gpus(0).name(), "H200");
  EXPECT_EQ(e.gpus(0).uuid(), "GPU-1");
  EXPECT_EQ(e.gpus(0).memory_total_bytes(), 141);
  EXPECT_EQ(e.toolchain().at("gcc"), "12.2");
  EXPECT_EQ(e.commit(), "deadbeef");
  EXPECT_TRUE(e.dirty());

  HostSample s;
  s.taken_at = ToSampleTime(absl::FromUnixMicros(1'700'000'000'123'456));
  s.load1 = 0.75;
  s.other_cpu_cores = 0.5;
  const v1::SampleBatch b = SamplesToProto(Order(v1::STEP_KIND_MEASURE), {s});
  EXPECT_EQ(b.attempt_id(), 7);
  EXPECT_EQ(b.step_seq(), 3);
  ASSERT_EQ(b.samples_size(), 1);
  EXPECT_EQ(b.samples(0).taken_at_unix_us(), 1'700'000'000'123'456);
  EXPECT_EQ(b.samples(0).load1(), 0.75);
  EXPECT_EQ(b.samples(0).competing_cpu(), 0.5);
  EXPECT_TRUE(b.samples(0).detail_json().empty()) << "no GPUs, no processes";
}

}  // namespace
}  // namespace benchfleet
