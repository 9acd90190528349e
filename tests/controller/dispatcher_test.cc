// Tests for Dispatcher: agent sessions, leasing queued experiments from a real
// SQLite store, driving attempts with step results, the window of orders,
// hosts that are not ready, results the store could not take, duplicates and
// stale tokens. Lost agents, reconnects, cancel, watchers, restarts, store
// write retries and history are in dispatcher_recovery_test.cc; the harness
// (a FakeClock stepped by the test, Tick instead of sleeps) is in
// dispatcher_fixture.h.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/controller/dispatcher_fixture.h"

namespace benchfleet {
namespace {

using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------------------

TEST_F(DispatcherTest, ConnectedAgentIsWelcomedAndRegistered) {
  SimAgent a{"agent-a", {{"pool", "cpu"}}};
  Connect(a);
  std::optional<Msg> welcome = a.link->WaitForType(Msg::kWelcome);
  ASSERT_TRUE(welcome);
  EXPECT_EQ(welcome->heartbeat_interval, absl::Seconds(2));
  EXPECT_EQ(welcome->lease_timeout, absl::Seconds(15));
  EXPECT_TRUE(dispatcher_->IsConnected("agent-a"));
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-a"), 0);
  absl::StatusOr<AgentRecord> rec = store_->GetAgent("agent-a");
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_EQ(rec->hostname, "host-agent-a");
  EXPECT_EQ(rec->labels, a.labels);
  EXPECT_EQ(rec->state, AgentState::kIdle);
  EXPECT_FALSE(dispatcher_->IsConnected("agent-unknown"));
}

TEST_F(DispatcherTest, QueuedExperimentIsLeasedToTheIdleAgentWhoseLabelsMatch) {
  SimAgent cpu{"agent-a-cpu", {{"pool", "cpu"}}};
  SimAgent gpu{"agent-b-gpu", {{"pool", "gpu"}, {"gpu", "h100"}}};
  ConnectAndWelcome(cpu);
  ConnectAndWelcome(gpu);
  const int64_t id = Submit({{"pool", "gpu"}});
  std::optional<Msg> lease = WaitLease(gpu);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->experiment_id, id);
  EXPECT_EQ(lease->experiment_name, "tiny");
  EXPECT_FALSE(lease->token.empty());
  // A second gpu-only experiment waits: the gpu agent is busy and the cpu one
  // does not match.
  const int64_t second = Submit({{"pool", "gpu"}});
  Sync();
  EXPECT_EQ(cpu.link->Count(Msg::kLease), 0);
  EXPECT_EQ(gpu.link->Count(Msg::kLease), 1);
  EXPECT_EQ(Experiment(id).state, ExperimentState::kRunning);
  EXPECT_EQ(Experiment(second).state, ExperimentState::kQueued);
  const AttemptRecord attempt = Attempt(lease->attempt_id);
  EXPECT_EQ(attempt.agent_id, "agent-b-gpu");
  EXPECT_EQ(attempt.lease_token, lease->token);
  EXPECT_EQ(attempt.state, AttemptState::kRunning);
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-b-gpu"), id);
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-a-cpu"), 0);
  // No step is sent before the agent accepts the lease.
  EXPECT_EQ(gpu.link->Count(Msg::kStep), 0);
}

TEST_F(DispatcherTest, RefusedLeaseLosesTheAttemptAndRequeuesTheExperiment) {
  // Shorter than the lease timeout: stepping the clock past it must not also
  // make the agents silent.
  dispatcher_.reset();
  options_.not_ready_retry_after = absl::Seconds(5);
  StartDispatcher();
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::optional<Msg> first = WaitLease(a);
  ASSERT_TRUE(first);
  dispatcher_->OnLeaseReply(a.link, first->attempt_id, first->token, false,
                            "cannot run here: no directory /srv/app");
  Pump();
  // The experiment goes back to the queue, other hosts first: agent-a is
  // not offered it again at once...
  EXPECT_EQ(a.link->Count(Msg::kLease), 1);
  EXPECT_EQ(Experiment(id).state, ExperimentState::kQueued);
  // ...another agent takes it, as a new attempt...
  SimAgent b{"agent-b", {}};
  ConnectAndWelcome(b);
  std::optional<Msg> second = WaitLease(b);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->experiment_id, id);
  EXPECT_NE(second->token, first->token);
  const AttemptRecord lost = Attempt(first->attempt_id);
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_THAT(lost.reason, HasSubstr("refused the lease: cannot run here"));
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 1);
  EXPECT_EQ(Experiment(id).attempts, 2);
  EXPECT_EQ(a.link->Count(Msg::kStep), 0);
  // ...and once the wait is over, agent-a may have it again (here: b
  // refuses too and only a is left).
  dispatcher_->OnLeaseReply(b.link, second->attempt_id, second->token, false,
                            "cannot run here either");
  Pump();
  clock_.Advance(options_.not_ready_retry_after + absl::Seconds(1));
  auto third = a.link->WaitFor([&](const Msg& m) {
    return m.type == Msg::kLease && m.attempt_id != first->attempt_id;
  });
  ASSERT_TRUE(third);
  EXPECT_EQ(third->second.experiment_id, id);
}

TEST_F(DispatcherTest,
       ASignatureRefusalStopsLeasingToThatStreamUntilReconnect) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::optional<Msg> first = WaitLease(a);
  ASSERT_TRUE(first);
  dispatcher_->OnLeaseReply(
      a.link, first->attempt_id, first->token, false,
      "order refused, nothing was run: the signature does not verify",
      std::nullopt, /*signature_refused=*/true);
  Pump();
  Pump();
  // Leasing again would be refused again at once: nothing more is offered.
  EXPECT_EQ(a.link->Count(Msg::kLease), 1);
  const AttemptRecord lost = Attempt(first->attempt_id);
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_THAT(lost.reason, HasSubstr("signature"));
  EXPECT_EQ(Experiment(id).attempts, 1);
  // The agent comes back (restarted with the controller's public key): work
  // is offered again.
  a.link = std::make_shared<FakeAgentLink>();
  ConnectAndWelcome(a);
  std::optional<Msg> second = WaitLease(a);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->experiment_id, id);
  EXPECT_NE(second->attempt_id, first->attempt_id);
}

TEST_F(DispatcherTest, AgentRefusingEveryLeaseIsIdleOnceTheExperimentGivesUp) {
  // Shorter than the lease timeout: stepping the clock past it must not also
  // make the agents silent.
  dispatcher_.reset();
  options_.not_ready_retry_after = absl::Seconds(5);
  StartDispatcher();
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::set<int64_t> refused;
  for (size_t from = 0; refused.size() < 3;) {
    auto lease = a.link->WaitFor(
        [](const Msg& m) { return m.type == Msg::kLease; }, from);
    ASSERT_TRUE(lease) << "after " << refused.size() << " refusals";
    from = lease->first + 1;
    refused.insert(lease->second.attempt_id);
    dispatcher_->OnLeaseReply(a.link, lease->second.attempt_id,
                              lease->second.token, false, "busy");
    Pump();
    // A host that declined is offered the experiment again only later.
    clock_.Advance(options_.not_ready_retry_after + absl::Seconds(1));
  }
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kFailed; }));
  EXPECT_EQ(Experiment(id).attempts, 3);
  EXPECT_THAT(Experiment(id).state_reason, HasSubstr("giving up"));
  Sync();
  EXPECT_EQ(a.link->Count(Msg::kLease), 3);
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 3);
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-a"), 0);
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kIdle);
}

TEST_F(DispatcherTest, StepResultsDriveTheAttemptToCompletionWithVerdicts) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  const RunResult run = RunUntilReleased(a, lease.attempt_id, lease.token);
  EXPECT_TRUE(run.released);
  EXPECT_EQ(run.release_reason, "attempt complete");
  EXPECT_EQ(run.steps_answered, kTinySteps);

  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  const ExperimentRecord done = Experiment(id);
  EXPECT_EQ(done.attempts, 1);
  EXPECT_THAT(done.report_text, HasSubstr("fast"));
  EXPECT_FALSE(done.report_json.empty());
  EXPECT_EQ(Attempt(lease.attempt_id).state, AttemptState::kDone);
  absl::StatusOr<std::vector<VerdictRecord>> verdicts =
      store_->ListVerdicts(id);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->size(), 1u);
  EXPECT_EQ((*verdicts)[0].variant, "fast");
  EXPECT_EQ((*verdicts)[0].verdict, "KEEP");
  EXPECT_NEAR((*verdicts)[0].change, -0.30, 0.02);

  // Every result was stored (committed before its ack) with what the step was.
  absl::StatusOr<std::vector<StepResultRecord>> results =
      store_->ListStepResults(lease.attempt_id);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), static_cast<size_t>(kTinySteps));
  for (const StepResultRecord& r : *results) {
    EXPECT_EQ(r.kind, "measure");
    EXPECT_EQ(r.input, "one");
    EXPECT_TRUE(r.variant == "base" || r.variant == "fast") << r.variant;
  }
  EXPECT_EQ(a.link->Count(Msg::kAck), kTinySteps);
  for (const Msg& m : a.link->Messages()) {
    if (m.type == Msg::kAck) {
      EXPECT_TRUE(m.accepted && m.reason.empty()) << m.seq << m.reason;
    }
  }
  const DispatcherCounters counters = dispatcher_->counters();
  EXPECT_EQ(counters.results_stored, kTinySteps);
  EXPECT_EQ(counters.duplicate_results, 0);
  EXPECT_EQ(counters.stale_results, 0);
  // The agent is idle again.
  ASSERT_TRUE(Eventually(
      [&] { return dispatcher_->CurrentExperimentOf("agent-a") == 0; }));
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kIdle);
}

// ---------------------------------------------------------------------------------------
// The window of orders ahead of the agent.

class DispatcherWindowTest : public DispatcherTest {
 protected:
  void SetUp() override {
    DispatcherTest::SetUp();
    dispatcher_.reset();
    options_.steps_ahead = 4;
    StartDispatcher();
  }
};

TEST_F(DispatcherWindowTest, AgentHoldsFourOrdersAndGetsOneMorePerResult) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  // Four orders arrive without any result.
  std::vector<Msg> steps;
  size_t from = 0;
  for (int k = 0; k < 4; ++k) {
    auto m = WaitStep(a, lease.attempt_id, from);
    ASSERT_TRUE(m.has_value()) << "order " << k + 1 << " of the window";
    steps.push_back(m->second);
    from = m->first + 1;
  }
  EXPECT_EQ(steps[0].step.seq + 3, steps[3].step.seq);
  // One result: exactly one more order (the 5th), sent after its ack.
  SendResult(a, steps[0], lease.token);
  auto fifth = WaitStep(a, lease.attempt_id, from);
  ASSERT_TRUE(fifth.has_value());
  EXPECT_EQ(fifth->second.step.seq, steps[3].step.seq + 1);
  ASSERT_TRUE(a.link->WaitFor([&](const Msg& m) {
    return m.type == Msg::kAck && m.seq == steps[0].step.seq;
  }));
  EXPECT_EQ(a.link->Count(Msg::kStep), 5);
  // The rest completes as before: every step once, one result each.
  const RunResult run = RunUntilReleased(a, lease.attempt_id, lease.token, 0);
  EXPECT_TRUE(run.released);
  EXPECT_EQ(run.release_reason, "attempt complete");
  // It answered every order, the first once more (a duplicate, acked and not
  // applied).
  EXPECT_EQ(run.steps_answered, kTinySteps);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  absl::StatusOr<std::vector<StepResultRecord>> results =
      store_->ListStepResults(lease.attempt_id);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->size(), static_cast<size_t>(kTinySteps));
  EXPECT_EQ(a.link->Count(Msg::kStep), kTinySteps);
  EXPECT_EQ(dispatcher_->counters().duplicate_results, 1);
}

TEST_F(DispatcherWindowTest,
       KilledVariantsOrdersAreRevokedAndTheRestCompletes) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  ExperimentRecord r;
  r.name = "hang";
  r.spec_yaml = std::string(kTinySpec).replace(
      std::string(kTinySpec).find("name: tiny"), 10, "name: hang");
  r.spec_path = "hang.yaml";
  r.workdir = kWorkdir;
  r.submitted_by = "test";
  r.created_at = clock_.Now();
  absl::StatusOr<ExperimentRecord> created = store_->CreateExperiment(r);
  ASSERT_TRUE(created.ok()) << created.status();
  dispatcher_->OnSubmitted(created->id);
  const Msg lease = LeaseAndAccept(a);
  // "fast" hangs: every run reaches the spec's timeout.
  std::set<int64_t> answered, revoked;
  int fast_answered = 0;
  bool released = false;
  for (size_t i = 0; !released;) {
    auto m = a.link->WaitFor(
        [&](const Msg& m) {
          return m.attempt_id == lease.attempt_id &&
                 (m.type == Msg::kStep || m.type == Msg::kRelease ||
                  m.type == Msg::kRevoke);
        },
        i);
    ASSERT_TRUE(m.has_value()) << "stalled";
    i = m->first + 1;
    const Msg& msg = m->second;
    if (msg.type == Msg::kRelease) {
      released = true;
    } else if (msg.type == Msg::kRevoke) {
      revoked.insert(msg.seqs.begin(), msg.seqs.end());
    } else if (!revoked.contains(msg.step.seq) &&
               answered.insert(msg.step.seq).second) {
      StepOutcome o = OutcomeFor(msg.step);
      if (msg.step.variant == "fast") {
        ++fast_answered;
        o.timed_out = true;
        o.wall_ns = absl::ToInt64Nanoseconds(msg.step.timeout);
      }
      dispatcher_->OnStepResult(a.link, lease.attempt_id, lease.token, o);
    }
  }
  // Two runs decide the KILL; a third may have been answered before the
  // revocation reached this agent (it is stored and ignored).
  EXPECT_GE(fast_answered, 2);
  EXPECT_LE(fast_answered, 4);
  EXPECT_FALSE(revoked.empty());
  // Revoked: the killed variant's orders, and the baseline's beyond the three
  // runs kept to show it (nothing is left to compare it with).
  int base_measured = 0;
  for (const Msg& m : a.link->Messages()) {
    if (m.type != Msg::kStep) continue;
    if (m.step.variant == "base" && !revoked.contains(m.step.seq))
      ++base_measured;
  }
  EXPECT_EQ(base_measured, 3);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(created->id).state == ExperimentState::kDone; }));
  absl::StatusOr<std::vector<VerdictRecord>> verdicts =
      store_->ListVerdicts(created->id);
  ASSERT_TRUE(verdicts.ok());
  ASSERT_EQ(verdicts->size(), 1u);
  EXPECT_EQ((*verdicts)[0].verdict, "KILL");
}

// ---------------------------------------------------------------------------------------
// A host that is not ready gives no verdict.

TEST_F(DispatcherTest, HostNotReadyRequeuesToAnotherAgentWithoutAVerdict) {
  SimAgent hot{"agent-1-hot", {}};  // sorts first: offered work first
  SimAgent cool{"agent-2-cool", {}};
  ConnectAndWelcome(hot);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(hot);
  // The cool agent connects once the hot one holds the experiment.
  ConnectAndWelcome(cool);
  auto step = WaitStep(hot, lease.attempt_id);
  ASSERT_TRUE(step.has_value());
  StepOutcome blocked;
  blocked.seq = step->second.step.seq;
  blocked.exit_code = -1;
  blocked.host_not_ready = true;
  blocked.error =
      "the host did not become ready within 15m: CPU at 81.0 °C, at or "
      "above the 70 °C gate";
  blocked.gate_wait_ns = absl::ToInt64Nanoseconds(absl::Minutes(15));
  dispatcher_->OnStepResult(hot.link, lease.attempt_id, lease.token, blocked);
  auto release = hot.link->WaitForType(Msg::kRelease);
  ASSERT_TRUE(release.has_value());
  EXPECT_EQ(release->reason, "host not ready");
  ASSERT_TRUE(Eventually([&] {
    return Attempt(lease.attempt_id).state == AttemptState::kHostNotReady;
  }));
  EXPECT_THAT(
      Attempt(lease.attempt_id).reason,
      AllOf(HasSubstr("host not ready before measure"), HasSubstr("81.0 °C")));
  // The other agent gets it, and measures it to a verdict.
  const Msg second = LeaseAndAccept(cool);
  EXPECT_NE(second.attempt_id, lease.attempt_id);
  const RunResult run = RunUntilReleased(cool, second.attempt_id, second.token);
  EXPECT_EQ(run.release_reason, "attempt complete");
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  absl::StatusOr<std::vector<VerdictRecord>> verdicts =
      store_->ListVerdicts(id);
  ASSERT_TRUE(verdicts.ok());
  ASSERT_EQ(verdicts->size(), 1u);
  EXPECT_EQ((*verdicts)[0].verdict, "KEEP");
  EXPECT_EQ(hot.link->Count(Msg::kLease), 1) << "the hot host was passed over";
}

TEST_F(DispatcherTest, HostNotReadyOnTheOnlyAgentIsRetriedThereLater) {
  // Shorter than the lease timeout, so that stepping the clock past it does
  // not also make the agent silent.
  dispatcher_.reset();
  options_.not_ready_retry_after = absl::Seconds(5);
  StartDispatcher();
  SimAgent only{"agent-only", {}};
  ConnectAndWelcome(only);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(only);
  auto step = WaitStep(only, lease.attempt_id);
  ASSERT_TRUE(step.has_value());
  StepOutcome blocked;
  blocked.seq = step->second.step.seq;
  blocked.host_not_ready = true;
  blocked.error = "the host did not become ready within 1m: load 3.2";
  dispatcher_->OnStepResult(only.link, lease.attempt_id, lease.token, blocked);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kQueued; }));
  EXPECT_EQ(Experiment(id).attempts, 1);
  // Not at once: it waits for another host first.
  const size_t from = only.link->size();
  EXPECT_FALSE(only.link
                   ->WaitFor([](const Msg& m) { return m.type == Msg::kLease; },
                             from, absl::Milliseconds(200))
                   .has_value());
  clock_.Advance(options_.not_ready_retry_after + absl::Seconds(1));
  auto again = only.link->WaitFor(
      [](const Msg& m) { return m.type == Msg::kLease; }, from);
  ASSERT_TRUE(again.has_value()) << "retried on the same host later";
  Accept(only, again->second);
  const RunResult run =
      RunUntilReleased(only, again->second.attempt_id, again->second.token);
  EXPECT_EQ(run.release_reason, "attempt complete");
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
}

TEST_F(DispatcherTest, ResultIsStoredWithItsHostSummaryFlagsAndGateWait) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  Submit();
  const Msg lease = LeaseAndAccept(a);
  auto first = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(first);
  StepOutcome disturbed = OutcomeFor(first->second.step);
  disturbed.host_flags = {"throttled", "contended"};
  disturbed.gate_wait_ns = 250 * kMs;
  StepHostSummary& host = disturbed.host.emplace();
  host.samples = 12;
  host.max_cpu_temp_c = 91.5;
  host.max_gpu_temp_c = 0;
  host.min_freq_mhz = 1200;
  host.mean_cpu_util = 0.75;
  host.throttle_delta = 7;
  host.max_competing_cpu = 1.5;
  host.top_competitor = "stress (pid 4242)";
  dispatcher_->OnStepResult(a.link, lease.attempt_id, lease.token, disturbed);
  // A result without a summary (an agent that sent none) is stored as "{}".
  auto second = WaitStep(a, lease.attempt_id, first->first + 1);
  ASSERT_TRUE(second);
  SendResult(a, second->second, lease.token);
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::vector<StepResultRecord>> results =
        store_->ListStepResults(lease.attempt_id);
    return results.ok() && results->size() == 2;
  }));

  absl::StatusOr<std::vector<StepResultRecord>> results =
      store_->ListStepResults(lease.attempt_id);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  const StepResultRecord& stored = (*results)[0];
  EXPECT_EQ(stored.step_seq, first->second.step.seq);
  EXPECT_THAT(stored.host_flags, ElementsAre("throttled", "contended"));
  EXPECT_EQ(stored.gate_wait_ns, 250 * kMs);
  const nlohmann::json json = nlohmann::json::parse(stored.host_json);
  EXPECT_EQ(json, nlohmann::json({{"samples", 12},
                                  {"max_cpu_temp_c", 91.5},
                                  {"max_gpu_temp_c", 0.0},
                                  {"min_freq_mhz", 1200.0},
                                  {"mean_cpu_util", 0.75},
                                  {"throttle_delta", 7},
                                  {"max_competing_cpu", 1.5},
                                  {"top_competitor", "stress (pid 4242)"}}))
      << stored.host_json;
  const StepResultRecord& plain = (*results)[1];
  EXPECT_EQ(plain.host_json, "{}");
  EXPECT_THAT(plain.host_flags, IsEmpty());
  EXPECT_EQ(plain.gate_wait_ns, 0);
}

// The store cannot take a result (another connection holds the database; a
// PostgreSQL server restarting looks the same: Unavailable): the result is not
// acknowledged, is stored once the database is back, and the attempt goes on
// to complete with every result stored once.
TEST_F(DispatcherTest, ResultTheStoreCouldNotTakeIsStoredWhenItIsBack) {
  char tmpl[] = "/tmp/bf-dispatcher-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  temp_dir_ = tmpl;
  const std::string path = temp_dir_ + "/controller.db";
  dispatcher_.reset();
  SqliteOptions sqlite;
  sqlite.path = path;
  sqlite.busy_timeout = absl::Milliseconds(20);
  absl::StatusOr<std::unique_ptr<SqliteStore>> opened =
      SqliteStore::Open(sqlite);
  ASSERT_TRUE(opened.ok()) << opened.status();
  store_ = std::move(*opened);
  StartDispatcher();

  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  auto first = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(first);

  // Another connection takes the database for itself.
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr),
            SQLITE_OK);
  const size_t before = a.link->size();
  SendResult(a, first->second, lease.token);
  // Not acknowledged and not applied: no ack and no next step while the
  // database is taken, however many rounds run (the fake clock holds the retry
  // back).
  for (int round = 0; round < 5; ++round) Pump();
  EXPECT_EQ(a.link->Count(Msg::kAck), 0);
  const std::vector<Msg> while_taken = a.link->Messages();
  for (size_t k = before; k < while_taken.size(); ++k) {
    EXPECT_NE(while_taken[k].type, Msg::kStep) << "a step ran ahead";
  }

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(blocker);
  clock_.Advance(absl::Seconds(1));  // the retry interval
  auto ack =
      a.link->WaitFor([](const Msg& m) { return m.type == Msg::kAck; }, before);
  ASSERT_TRUE(ack.has_value()) << "the result was never stored";
  EXPECT_TRUE(ack->second.accepted) << ack->second.reason;
  EXPECT_EQ(ack->second.seq, first->second.step.seq);

  const RunResult run =
      RunUntilReleased(a, lease.attempt_id, lease.token, first->first + 1);
  EXPECT_TRUE(run.released);
  EXPECT_EQ(run.release_reason, "attempt complete");
  EXPECT_EQ(run.steps_answered, kTinySteps - 1);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  EXPECT_EQ(Experiment(id).attempts, 1);
  absl::StatusOr<std::vector<StepResultRecord>> results =
      store_->ListStepResults(lease.attempt_id);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->size(), static_cast<size_t>(kTinySteps));
  EXPECT_EQ(dispatcher_->counters().results_stored, kTinySteps);
}

TEST_F(DispatcherTest, DuplicateResultIsAckedButNotAppliedTwice) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  auto first = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(first);
  SendResult(a, first->second, lease.token);
  auto second = WaitStep(a, lease.attempt_id, first->first + 1);
  ASSERT_TRUE(second);
  // The agent did not see the ack (say) and sends the first result again.
  const size_t before = a.link->size();
  SendResult(a, first->second, lease.token);
  auto dup_ack =
      a.link->WaitFor([](const Msg& m) { return m.type == Msg::kAck; }, before);
  ASSERT_TRUE(dup_ack);
  EXPECT_EQ(dup_ack->second.seq, first->second.step.seq);
  EXPECT_TRUE(dup_ack->second.accepted);
  EXPECT_EQ(dup_ack->second.reason, "duplicate");
  Sync();
  EXPECT_EQ(a.link->Count(Msg::kStep), 2)
      << "a duplicate must not advance the attempt";
  EXPECT_EQ(dispatcher_->counters().duplicate_results, 1);
  EXPECT_EQ(dispatcher_->counters().results_stored, 1);

  const RunResult run =
      RunUntilReleased(a, lease.attempt_id, lease.token, second->first);
  EXPECT_EQ(run.release_reason, "attempt complete");
  EXPECT_EQ(run.steps_answered, kTinySteps - 1);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  EXPECT_EQ(store_->ListStepResults(lease.attempt_id)->size(),
            static_cast<size_t>(kTinySteps));
  EXPECT_EQ(dispatcher_->counters().results_stored, kTinySteps);
}

TEST_F(DispatcherTest, ResultWithAStaleTokenIsRejectedAndCounted) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  Submit();
  const Msg lease = LeaseAndAccept(a);
  auto step = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(step);
  const size_t before = a.link->size();
  SendResult(a, step->second, "0123456789abcdef-not-the-token");
  auto ack =
      a.link->WaitFor([](const Msg& m) { return m.type == Msg::kAck; }, before);
  ASSERT_TRUE(ack);
  EXPECT_FALSE(ack->second.accepted);
  EXPECT_THAT(ack->second.reason, HasSubstr("stale lease token"));
  Sync();
  EXPECT_EQ(dispatcher_->counters().stale_results, 1);
  EXPECT_EQ(dispatcher_->counters().results_stored, 0);
  EXPECT_EQ(a.link->Count(Msg::kStep), 1)
      << "a stale result must not advance the attempt";
  EXPECT_THAT(*store_->ListStepResults(lease.attempt_id), IsEmpty());
  // The same result with the right token is taken.
  SendResult(a, step->second, lease.token);
  EXPECT_TRUE(WaitStep(a, lease.attempt_id, step->first + 1));
}

}  // namespace
}  // namespace benchfleet
