// The controller's proto <-> model conversions (controller/service/convert.cc):
// every field lands where it belongs, durations are never shortened, and old
// agents' whole-millisecond fields are still read.
#include "controller/service/convert.h"

#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(ConvertTest, StepOrderCarriesEveryFieldAndRoundsTheDeadlineUp) {
  PlannedStep step;
  step.seq = 12;
  step.kind = StepKind::kWarmup;
  step.variant = "fast";
  step.input = "big";
  step.argv = {"./bench", "--fast", "big.txt"};
  step.cwd = "/w";
  step.env = {{"A", "1"}};
  step.timeout = absl::Nanoseconds(6'600'400);  // 6.6004 ms
  step.compare_file = "out.txt";
  step.cpus = {2, 3};
  step.metrics = {{"rate", "rate=([0-9.]+)"}};
  const v1::StepOrder o = ToProto(7, "tok", step);
  EXPECT_EQ(o.attempt_id(), 7);
  EXPECT_EQ(o.lease_token(), "tok");
  EXPECT_EQ(o.step_seq(), 12);
  EXPECT_EQ(o.kind(), v1::STEP_KIND_WARMUP);
  EXPECT_EQ(o.variant(), "fast");
  EXPECT_EQ(o.input(), "big");
  EXPECT_THAT(o.argv(), ::testing::ElementsAre("./bench", "--fast", "big.txt"));
  EXPECT_EQ(o.cwd(), "/w");
  EXPECT_EQ(o.env().at("A"), "1");
  EXPECT_EQ(o.timeout_us(), 6601);  // never shortened
  EXPECT_EQ(o.timeout_ms(), 7);
  EXPECT_EQ(o.compare_file(), "out.txt");
  EXPECT_THAT(o.cpus(), ::testing::ElementsAre(2, 3));
  ASSERT_EQ(o.metrics_size(), 1);
  EXPECT_EQ(o.metrics(0).name(), "rate");
  EXPECT_EQ(o.metrics(0).regex(), "rate=([0-9.]+)");

  PlannedStep unbounded;
  unbounded.kind = StepKind::kMeasure;
  const v1::StepOrder u = ToProto(1, "t", unbounded);
  EXPECT_EQ(u.kind(), v1::STEP_KIND_MEASURE);
  EXPECT_EQ(u.timeout_us(), 0) << "no deadline travels as none";
  EXPECT_EQ(u.timeout_ms(), 0);
}

TEST(ConvertTest, StepResultReadsMicrosecondsAndFallsBackToMilliseconds) {
  v1::StepResult r;
  r.set_step_seq(4);
  r.set_wall_ns(1'234'567);
  r.set_user_ns(1'000'000);
  r.set_sys_ns(200'000);
  r.set_max_rss_bytes(4096);
  r.set_exit_code(3);
  r.set_term_signal(9);
  r.set_timed_out(true);
  r.set_output_digest("abc");
  (*r.mutable_metrics())["rate"] = 2.5;
  r.set_error("boom");
  r.set_stderr_tail("tail");
  r.add_host_flags("hot");
  r.set_gate_wait_us(1500);
  r.set_gate_wait_ms(2);
  r.set_gate_blocked_by("load 0.5");
  r.set_host_not_ready(true);
  r.mutable_host()->set_samples(3);
  r.mutable_host()->set_max_cpu_temp_c(71.5);
  r.mutable_host()->set_top_competitor("cc1plus (pid 4)");
  StepOutcome o = FromProto(r);
  EXPECT_EQ(o.seq, 4);
  EXPECT_EQ(o.wall_ns, 1'234'567);
  EXPECT_EQ(o.user_ns, 1'000'000);
  EXPECT_EQ(o.sys_ns, 200'000);
  EXPECT_EQ(o.max_rss_bytes, 4096);
  EXPECT_EQ(o.exit_code, 3);
  EXPECT_EQ(o.term_signal, 9);
  EXPECT_TRUE(o.timed_out);
  EXPECT_EQ(o.output_digest, "abc");
  EXPECT_DOUBLE_EQ(o.metrics.at("rate"), 2.5);
  EXPECT_EQ(o.error, "boom");
  EXPECT_EQ(o.stderr_tail, "tail");
  EXPECT_THAT(o.host_flags, ::testing::ElementsAre("hot"));
  EXPECT_EQ(o.gate_wait_ns, 1'500'000) << "microseconds win over ms";
  EXPECT_EQ(o.gate_blocked_by, "load 0.5");
  EXPECT_TRUE(o.host_not_ready);
  ASSERT_TRUE(o.host.has_value());
  EXPECT_EQ(o.host->samples, 3);
  EXPECT_DOUBLE_EQ(o.host->max_cpu_temp_c, 71.5);
  EXPECT_EQ(o.host->top_competitor, "cc1plus (pid 4)");

  v1::StepResult old;  // an agent from before gate_wait_us
  old.set_gate_wait_ms(2);
  EXPECT_EQ(FromProto(old).gate_wait_ns, 2'000'000);
  EXPECT_FALSE(FromProto(old).host.has_value());
}

// An agent's gate wait out of int64 nanoseconds' range saturates instead of
// overflowing (undefined behaviour; found by fuzz/agent_message_fuzzer.cc).
TEST(ConvertTest, StepResultGateWaitOutOfRangeSaturates) {
  v1::StepResult us;
  us.set_gate_wait_us(std::numeric_limits<int64_t>::max() / 1'000 + 1);
  EXPECT_EQ(FromProto(us).gate_wait_ns, std::numeric_limits<int64_t>::max());
  v1::StepResult ms;
  ms.set_gate_wait_ms(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(FromProto(ms).gate_wait_ns, std::numeric_limits<int64_t>::max());
  v1::StepResult negative;
  negative.set_gate_wait_ms(std::numeric_limits<int64_t>::min());
  EXPECT_EQ(FromProto(negative).gate_wait_ns,
            std::numeric_limits<int64_t>::min());
}

TEST(ConvertTest, HelloKeepsIdentityLabelsFactsAndTheCurrentLease) {
  v1::Hello h;
  h.set_agent_id("a1");
  (*h.mutable_labels())["pool"] = "office";
  h.mutable_facts()->set_hostname("box");
  h.mutable_facts()->set_cpu_model("EPYC");
  h.mutable_facts()->set_cpu_cores(16);
  h.mutable_facts()->set_memory_bytes(int64_t{64} << 30);
  h.mutable_facts()->set_os("Debian 12");
  h.mutable_facts()->set_kernel("6.1");
  h.set_version("0.4");
  h.set_current_attempt_id(9);
  h.set_current_lease_token("tok");
  const AgentHello hello = FromProto(h);
  EXPECT_EQ(hello.agent_id, "a1");
  EXPECT_EQ(hello.labels.at("pool"), "office");
  EXPECT_EQ(hello.facts.hostname, "box");
  EXPECT_EQ(hello.facts.cpu_model, "EPYC");
  EXPECT_EQ(hello.facts.cpu_cores, 16);
  EXPECT_EQ(hello.facts.memory_bytes, int64_t{64} << 30);
  EXPECT_EQ(hello.facts.os, "Debian 12");
  EXPECT_EQ(hello.facts.kernel, "6.1");
  EXPECT_EQ(hello.version, "0.4");
  EXPECT_EQ(hello.current_attempt_id, 9);
  EXPECT_EQ(hello.current_lease_token, "tok");
}

TEST(ConvertTest, ExperimentViewShowsStateProgressAndTimes) {
  ExperimentView v;
  v.record.id = 5;
  v.record.number = 2;
  v.record.name = "mpt";
  v.record.state = ExperimentState::kRunning;
  v.record.state_reason = "attempt 1 lost, re-queued";
  v.record.created_at = absl::FromUnixMillis(1'700'000'000'123);
  v.record.attempts = 2;
  v.progress.steps_done = 3;
  v.progress.steps_total = 40;
  v.progress.current = "measure fast on big";
  v.agent_id = "a1";
  v.hostname = "box";
  v.attempt_id = 8;
  const v1::Experiment e = ToProto(v);
  EXPECT_EQ(e.id(), 5);
  EXPECT_EQ(e.number(), 2);
  EXPECT_EQ(e.state(), "running");
  EXPECT_EQ(e.state_reason(), "attempt 1 lost, re-queued");
  EXPECT_EQ(e.created_at_unix_ms(), 1'700'000'000'123);
  EXPECT_EQ(e.attempts(), 2);
  EXPECT_EQ(e.progress().runs_done(), 3);
  EXPECT_EQ(e.progress().runs_total(), 40);
  EXPECT_EQ(e.progress().current_step(), "measure fast on big");
  EXPECT_EQ(e.progress().agent_id(), "a1");
  EXPECT_EQ(e.progress().hostname(), "box");
  EXPECT_EQ(e.progress().attempt_id(), 8);
}

TEST(ConvertTest, AnAgentThatIsNotConnectedReadsOffline) {
  AgentRecord a;
  a.id = "a1";
  a.state = AgentState::kBusy;
  a.cordoned = true;
  EXPECT_EQ(ToProto(a, true, 4).state(), "busy");
  EXPECT_EQ(ToProto(a, true, 4).current_experiment_id(), 4);
  EXPECT_EQ(ToProto(a, false, 0).state(), "offline");
  EXPECT_TRUE(ToProto(a, false, 0).cordoned());
}

TEST(ConvertTest, GatesTravelInMicrosecondsAndMilliseconds) {
  GateSpec g;
  g.cooldown = absl::Milliseconds(2500);
  g.max_wait = absl::Minutes(5);
  g.max_load = 0.3;
  const v1::GateSpec p = ToProto(g);
  EXPECT_EQ(p.cooldown_us(), 2'500'000);
  EXPECT_EQ(p.cooldown_ms(), 2500);
  EXPECT_EQ(p.max_wait_us(), 300'000'000);
  EXPECT_DOUBLE_EQ(p.max_load(), 0.3);
}

TEST(ConvertTest, AttemptsStillRunningHaveNoEndTime) {
  AttemptRecord a;
  a.id = 3;
  a.state = AttemptState::kRunning;
  a.started_at = absl::FromUnixMillis(1000);
  a.ended_at = absl::FromUnixMillis(5000);
  EXPECT_EQ(ToProto(a).ended_at_unix_ms(), 0);
  a.state = AttemptState::kLost;
  EXPECT_EQ(ToProto(a).ended_at_unix_ms(), 5000);
  EXPECT_EQ(ToProto(a).state(), "lost");
}

TEST(ConvertTest, HistoryRowsKeepEveryColumn) {
  HistoryRow r;
  r.time = absl::FromUnixMillis(42);
  r.experiment_id = 1;
  r.experiment_number = 2;
  r.experiment_name = "mpt";
  r.input = "big";
  r.variant = "fast";
  r.median = 1.5;
  r.n = 10;
  r.verdict = "KEEP";
  r.commit = "c0ffee";
  r.hostname = "box";
  const v1::HistoryRow p = ToProto(r);
  EXPECT_EQ(p.time_unix_ms(), 42);
  EXPECT_EQ(p.experiment_number(), 2);
  EXPECT_EQ(p.experiment(), "mpt");
  EXPECT_EQ(p.input(), "big");
  EXPECT_EQ(p.variant(), "fast");
  EXPECT_DOUBLE_EQ(p.median(), 1.5);
  EXPECT_EQ(p.n(), 10);
  EXPECT_EQ(p.verdict(), "KEEP");
  EXPECT_EQ(p.commit(), "c0ffee");
  EXPECT_EQ(p.hostname(), "box");
}

}  // namespace
}  // namespace benchfleet
