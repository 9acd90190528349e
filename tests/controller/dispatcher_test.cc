// Tests for Dispatcher: agent sessions, leasing queued experiments from a real
// SQLite store, driving attempts with step results, duplicates and stale
// tokens, lost agents and leases (with an injected FakeClock), reconnects,
// cancel, watchers and controller restarts.
//
// Agents are FakeAgentLinks that record what the dispatcher sends; the test
// plays the agent by calling On* methods. The dispatcher runs without its loop
// thread: the test drives it with Tick(clock.Now()) on a FakeClock (Pump), and
// every wait below is "pump, then look" — after one Tick, every event posted
// before it, what was due at that time and the work assignment that follows
// have all happened, so "nothing happened" is a direct assertion, and time
// moves only when the test advances the clock.
#include "controller/scheduler/dispatcher.h"

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/spec.h"
#include "common/spec_loader.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/store/sqlite_store.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sqlite3.h"
#include "tests/controller/flaky_store.h"

namespace benchfleet {
namespace {

using ::testing::ContainsRegex;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// How long a test waits for something the dispatcher should do promptly.
constexpr absl::Duration kWait = absl::Seconds(10);
constexpr int64_t kMs = 1'000'000;
constexpr char kWorkdir[] = "/srv/bench/tiny";

// 2 variants x 1 input x 10 runs, no setup, no warmups, no extension: 20 steps.
constexpr char kTinySpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: tiny
benchmark:
  argv: [./bench, "{input}"]
  inputs:
    - {name: one, path: inputs/one.txt}
  warmup: 0
  runs: 10
  max_runs: 10
  allow_underpowered: false
  timeout: 10s
variants:
  - {name: base}
  - {name: fast, argv: [./bench, --fast, "{input}"]}
)";
constexpr int kTinySteps = 20;

// ---------------------------------------------------------------------------------------
// A recording AgentLink.

struct Msg {
  enum Type { kWelcome, kLease, kStep, kAck, kRelease, kClose, kRevoke };
  Type type = kWelcome;
  int64_t attempt_id = 0;
  std::string token;
  int64_t experiment_id = 0;
  std::string experiment_name;
  PlannedStep step;
  int64_t seq = 0;            // acks
  std::vector<int64_t> seqs;  // revocations
  bool accepted = false;
  std::string reason;
  absl::Duration heartbeat_interval;
  absl::Duration lease_timeout;
};

// Thread-safe: the dispatcher's loop writes, the test thread reads and waits.
class FakeAgentLink : public AgentLink {
 public:
  void SendWelcome(absl::Duration heartbeat_interval,
                   absl::Duration lease_timeout) override {
    Msg m;
    m.type = Msg::kWelcome;
    m.heartbeat_interval = heartbeat_interval;
    m.lease_timeout = lease_timeout;
    Push(std::move(m));
  }
  void SendLease(int64_t attempt_id, const std::string& lease_token,
                 int64_t experiment_id, const std::string& experiment_name,
                 const GateSpec& /*gates*/,
                 const std::string& /*workdir*/) override {
    Msg m;
    m.type = Msg::kLease;
    m.attempt_id = attempt_id;
    m.token = lease_token;
    m.experiment_id = experiment_id;
    m.experiment_name = experiment_name;
    Push(std::move(m));
  }
  void SendStep(int64_t attempt_id, const std::string& lease_token,
                const PlannedStep& step) override {
    Msg m;
    m.type = Msg::kStep;
    m.attempt_id = attempt_id;
    m.token = lease_token;
    m.step = step;
    Push(std::move(m));
  }
  void SendRevoke(int64_t attempt_id, const std::string& lease_token,
                  const std::vector<int64_t>& step_seqs,
                  const std::string& reason) override {
    Msg m;
    m.type = Msg::kRevoke;
    m.attempt_id = attempt_id;
    m.token = lease_token;
    m.seqs = step_seqs;
    m.reason = reason;
    Push(std::move(m));
  }
  void SendAck(int64_t attempt_id, int64_t step_seq, bool accepted,
               const std::string& reason) override {
    Msg m;
    m.type = Msg::kAck;
    m.attempt_id = attempt_id;
    m.seq = step_seq;
    m.accepted = accepted;
    m.reason = reason;
    Push(std::move(m));
  }
  void SendRelease(int64_t attempt_id, const std::string& lease_token,
                   const std::string& reason) override {
    Msg m;
    m.type = Msg::kRelease;
    m.attempt_id = attempt_id;
    m.token = lease_token;
    m.reason = reason;
    Push(std::move(m));
  }
  void Close(const std::string& reason) override {
    Msg m;
    m.type = Msg::kClose;
    m.reason = reason;
    Push(std::move(m));
  }

  // Waits up to kWait for a message at index >= `from` that satisfies `pred`;
  // returns its index and a copy, or nullopt on timeout.
  // With a pump (the fixture's Tick), runs it once and looks without waiting.
  std::optional<std::pair<size_t, Msg>> WaitFor(
      const std::function<bool(const Msg&)>& pred, size_t from = 0,
      absl::Duration wait = kWait) {
    if (pump_) {
      pump_();
      wait = absl::ZeroDuration();
    }
    absl::MutexLock lock(&mu_);
    std::optional<size_t> found;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (size_t i = from; i < msgs_.size(); ++i) {
        if (pred(msgs_[i])) {
          found = i;
          return true;
        }
      }
      return false;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), wait))
      return std::nullopt;
    return std::make_pair(*found, msgs_[*found]);
  }

  std::optional<Msg> WaitForType(Msg::Type type, size_t from = 0) {
    auto m = WaitFor([type](const Msg& m) { return m.type == type; }, from);
    if (!m) return std::nullopt;
    return m->second;
  }

  int Count(Msg::Type type) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const Msg& m : msgs_) n += m.type == type;
    return n;
  }

  std::vector<Msg> Messages() {
    absl::MutexLock lock(&mu_);
    return msgs_;
  }

  size_t size() {
    absl::MutexLock lock(&mu_);
    return msgs_.size();
  }

  // Called by WaitFor before it looks (set before the link is used).
  void set_pump(std::function<void()> pump) { pump_ = std::move(pump); }

 private:
  void Push(Msg m) {
    absl::MutexLock lock(&mu_);
    msgs_.push_back(std::move(m));
  }

  std::function<void()> pump_;
  absl::Mutex mu_;
  std::vector<Msg> msgs_ ABSL_GUARDED_BY(mu_);
};

// One simulated agent: its identity and its current stream.
struct SimAgent {
  std::string id;
  std::map<std::string, std::string> labels;
  std::shared_ptr<FakeAgentLink> link = std::make_shared<FakeAgentLink>();

  AgentHello Hello(int64_t current_attempt_id = 0,
                   const std::string& token = "") const {
    AgentHello h;
    h.agent_id = id;
    h.labels = labels;
    h.facts.hostname = "host-" + id;
    h.facts.cpu_model = "Test CPU \"quoted\"";
    h.facts.cpu_cores = 8;
    h.version = "test";
    h.current_attempt_id = current_attempt_id;
    h.current_lease_token = token;
    return h;
  }
};

// What the fake agent reports for a step: the baseline takes ~100 ms, "fast"
// ~70 ms, with a deterministic +-1 % wobble; every run prints the same output.
StepOutcome OutcomeFor(const PlannedStep& step) {
  StepOutcome o;
  o.seq = step.seq;
  const int64_t ms = step.variant == "fast" ? 70 : 100;
  o.wall_ns = ms * kMs + ms * kMs * ((step.seq * 7919) % 11 - 5) / 500;
  o.user_ns = o.wall_ns;
  o.output_digest = "same-output";
  return o;
}

// The stored spec parsed as the controller does (controller.cc).
absl::StatusOr<ExperimentSpec> ParseStoredSpec(const ExperimentRecord& e) {
  SpecLoadOptions opts;
  opts.base_dir = e.workdir;
  return ParseSpec(e.spec_yaml, e.spec_path, opts);
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.heartbeat_interval = absl::Seconds(2);
    options_.lease_timeout = absl::Seconds(15);
    options_.tick = absl::Milliseconds(5);
    options_.run_loop_thread = false;  // the test calls Tick
    // One order at a time: most cases here check the order of messages step
    // by step; the window has its own cases (StepWindow*).
    options_.steps_ahead = 1;
    OpenStoreAt("sqlite::memory:");
    StartDispatcher();
  }

  void TearDown() override {
    dispatcher_.reset();
    store_.reset();
    if (!temp_dir_.empty()) std::filesystem::remove_all(temp_dir_);
  }

  void OpenStoreAt(const std::string& url) {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(url);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  void StartDispatcher() {
    absl::StatusOr<std::unique_ptr<Dispatcher>> d =
        Dispatcher::Create(store_.get(), &clock_, options_, ParseStoredSpec);
    ASSERT_TRUE(d.ok()) << d.status();
    dispatcher_ = std::move(*d);
  }

  // Queues the tiny experiment (as the Fleet service would) and tells the
  // dispatcher.
  int64_t Submit(std::map<std::string, std::string> required_labels = {},
                 bool notify = true) {
    ExperimentRecord r;
    r.name = "tiny";
    r.spec_yaml = kTinySpec;
    r.spec_path = "tiny.yaml";
    r.workdir = kWorkdir;
    r.required_labels = std::move(required_labels);
    r.submitted_by = "test";
    r.created_at = clock_.Now();
    absl::StatusOr<ExperimentRecord> created = store_->CreateExperiment(r);
    EXPECT_TRUE(created.ok()) << created.status();
    if (!created.ok()) return 0;
    if (notify) dispatcher_->OnSubmitted(created->id);
    return created->id;
  }

  // One round of the dispatcher at the fake clock's time: every event posted
  // before the call, what is due now, and the work assignment after them.
  void Pump() { dispatcher_->Tick(clock_.Now()); }

  // Everything posted so far has been handled (one round).
  void Sync() { Pump(); }

  // Runs a round, then checks `pred` (state that lives in the store or in the
  // dispatcher).
  bool Eventually(const std::function<bool()>& pred) {
    Pump();
    return pred();
  }

  void Connect(SimAgent& agent, int64_t current_attempt_id = 0,
               const std::string& token = "") {
    agent.link->set_pump([this] { Pump(); });
    dispatcher_->OnConnected(agent.link,
                             agent.Hello(current_attempt_id, token));
  }

  // Connects `agent` and waits for its Welcome.
  void ConnectAndWelcome(SimAgent& agent) {
    const size_t from = agent.link->size();
    Connect(agent);
    ASSERT_TRUE(agent.link->WaitFor(
        [](const Msg& m) { return m.type == Msg::kWelcome; }, from))
        << agent.id << " got no Welcome";
  }

  // Waits for the next Lease sent to `agent` (after message index `from`).
  std::optional<Msg> WaitLease(SimAgent& agent, size_t from = 0) {
    return agent.link->WaitForType(Msg::kLease, from);
  }

  void Accept(SimAgent& agent, const Msg& lease) {
    dispatcher_->OnLeaseReply(agent.link, lease.attempt_id, lease.token, true,
                              "");
  }

  // Waits for a Step of `attempt_id` at or after message index `from`.
  std::optional<std::pair<size_t, Msg>> WaitStep(SimAgent& agent,
                                                 int64_t attempt_id,
                                                 size_t from = 0) {
    return agent.link->WaitFor(
        [attempt_id](const Msg& m) {
          return m.type == Msg::kStep && m.attempt_id == attempt_id;
        },
        from);
  }

  void SendResult(SimAgent& agent, const Msg& step, const std::string& token) {
    dispatcher_->OnStepResult(agent.link, step.attempt_id, token,
                              OutcomeFor(step.step));
  }

  struct RunResult {
    int steps_answered = 0;
    std::string release_reason;
    bool released = false;
  };

  // Plays the agent: answers every Step of the attempt (once per seq) until the
  // attempt is released. Starts reading at message index `from`.
  RunResult RunUntilReleased(SimAgent& agent, int64_t attempt_id,
                             const std::string& token, size_t from = 0) {
    RunResult r;
    std::set<int64_t> answered;
    for (size_t i = from;;) {
      auto m = agent.link->WaitFor(
          [attempt_id](const Msg& m) {
            return m.attempt_id == attempt_id &&
                   (m.type == Msg::kStep || m.type == Msg::kRelease);
          },
          i);
      if (!m) {
        ADD_FAILURE() << "attempt " << attempt_id << " stalled after "
                      << r.steps_answered << " steps";
        return r;
      }
      i = m->first + 1;
      if (m->second.type == Msg::kRelease) {
        r.released = true;
        r.release_reason = m->second.reason;
        return r;
      }
      if (answered.insert(m->second.step.seq).second) {
        SendResult(agent, m->second, token);
        ++r.steps_answered;
      }
    }
  }

  // Waits for the first lease sent to `agent` at or after message index `from`
  // and accepts it.
  Msg LeaseAndAccept(SimAgent& agent, size_t from = 0) {
    std::optional<Msg> lease = WaitLease(agent, from);
    EXPECT_TRUE(lease.has_value()) << agent.id << " got no lease";
    if (!lease) return Msg{};
    Accept(agent, *lease);
    return *lease;
  }

  AttemptRecord Attempt(int64_t attempt_id) {
    absl::StatusOr<AttemptRecord> a = store_->GetAttempt(attempt_id);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.ok() ? *a : AttemptRecord{};
  }

  ExperimentRecord Experiment(int64_t id) {
    absl::StatusOr<ExperimentRecord> e = store_->GetExperiment(id);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : ExperimentRecord{};
  }

  FakeClock clock_;
  DispatcherOptions options_;
  std::string temp_dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Dispatcher>
      dispatcher_;  // declared after store_: destroyed first
};

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
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::optional<Msg> first = WaitLease(a);
  ASSERT_TRUE(first);
  dispatcher_->OnLeaseReply(a.link, first->attempt_id, first->token, false,
                            "already holds another lease");
  // The experiment goes back to the queue and is leased again, as a new
  // attempt.
  auto second = a.link->WaitFor([&](const Msg& m) {
    return m.type == Msg::kLease && m.attempt_id != first->attempt_id;
  });
  ASSERT_TRUE(second);
  EXPECT_EQ(second->second.experiment_id, id);
  EXPECT_NE(second->second.token, first->token);
  const AttemptRecord lost = Attempt(first->attempt_id);
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_THAT(lost.reason,
              HasSubstr("refused the lease: already holds another lease"));
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 1);
  EXPECT_EQ(Experiment(id).attempts, 2);
  EXPECT_EQ(a.link->Count(Msg::kStep), 0);
}

TEST_F(DispatcherTest, AgentRefusingEveryLeaseIsIdleOnceTheExperimentGivesUp) {
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

TEST_F(DispatcherTest,
       AgentGoneLongerThanTheLeaseTimeoutLosesTheAttemptToAnotherAgent) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  ASSERT_TRUE(WaitStep(a, lease.attempt_id));
  dispatcher_->OnDisconnected(a.link);
  ASSERT_TRUE(Eventually([&] { return !dispatcher_->IsConnected("agent-a"); }));
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kOffline);

  clock_.Advance(options_.lease_timeout + absl::Seconds(1));
  ASSERT_TRUE(Eventually(
      [&] { return Attempt(lease.attempt_id).state == AttemptState::kLost; }));
  EXPECT_THAT(Attempt(lease.attempt_id).reason, HasSubstr("silent"));
  Sync();
  const ExperimentRecord requeued = Experiment(id);
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.attempts, 1);
  EXPECT_THAT(requeued.state_reason, HasSubstr("re-queued"));
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 1);

  // Another agent takes it over from scratch and finishes it.
  SimAgent b{"agent-b", {}};
  Connect(b);
  const Msg lease_b = LeaseAndAccept(b);
  EXPECT_EQ(lease_b.experiment_id, id);
  EXPECT_NE(lease_b.attempt_id, lease.attempt_id);
  EXPECT_NE(lease_b.token, lease.token);
  const RunResult run = RunUntilReleased(b, lease_b.attempt_id, lease_b.token);
  EXPECT_EQ(run.steps_answered, kTinySteps);
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  EXPECT_EQ(Experiment(id).attempts, 2);
}

TEST_F(DispatcherTest, SilentAgentIsClosedAndLosesItsAttempt) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  ASSERT_TRUE(WaitStep(a, lease.attempt_id));
  // No heartbeat, no disconnect: the stream may be hung (grpc#32032).
  clock_.Advance(options_.lease_timeout + absl::Seconds(1));
  std::optional<Msg> close = a.link->WaitForType(Msg::kClose);
  ASSERT_TRUE(close);
  EXPECT_THAT(close->reason, HasSubstr("no heartbeat"));
  ASSERT_TRUE(Eventually(
      [&] { return Attempt(lease.attempt_id).state == AttemptState::kLost; }));
  EXPECT_EQ(Experiment(id).state, ExperimentState::kQueued);
  EXPECT_FALSE(dispatcher_->IsConnected("agent-a"));
}

TEST_F(DispatcherTest,
       AgentReconnectingWithinTheLeaseTimeoutGetsItsInFlightStepAgain) {
  SimAgent a{"agent-a", {{"role", "worker"}}};
  ConnectAndWelcome(a);
  const int64_t id = Submit({{"role", "worker"}});
  const Msg lease = LeaseAndAccept(a);
  auto step = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(step);
  dispatcher_->OnDisconnected(a.link);
  ASSERT_TRUE(Eventually([&] { return !dispatcher_->IsConnected("agent-a"); }));

  clock_.Advance(options_.lease_timeout / 2);
  SimAgent a2{"agent-a", a.labels};  // same agent, new stream
  Connect(a2, lease.attempt_id, lease.token);
  auto resent = WaitStep(a2, lease.attempt_id);
  ASSERT_TRUE(resent) << "the in-flight step was not re-sent";
  EXPECT_EQ(resent->second.step.seq, step->second.step.seq);
  EXPECT_EQ(resent->second.step.variant, step->second.step.variant);
  EXPECT_EQ(resent->second.token, lease.token);
  EXPECT_EQ(a2.link->Count(Msg::kRelease), 0);
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-a"), id);

  // Past the lease timeout counted from the disconnect, but the agent is back:
  // not lost.
  clock_.Advance(options_.lease_timeout / 2 + absl::Seconds(1));
  Pump();  // the lease check at the new time
  EXPECT_EQ(Attempt(lease.attempt_id).state, AttemptState::kRunning);
  const RunResult run = RunUntilReleased(a2, lease.attempt_id, lease.token);
  EXPECT_EQ(run.release_reason, "attempt complete");
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  EXPECT_EQ(Experiment(id).attempts, 1);
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 0);
}

TEST_F(DispatcherTest,
       AgentReconnectingBeforeItsLeaseReplyArrivedStillGetsSteps) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::optional<Msg> lease = WaitLease(a);
  ASSERT_TRUE(lease);
  // The agent took the lease but its reply was lost with the stream.
  dispatcher_->OnDisconnected(a.link);
  ASSERT_TRUE(Eventually([&] { return !dispatcher_->IsConnected("agent-a"); }));
  SimAgent a2{"agent-a", {}};
  Connect(a2, lease->attempt_id, lease->token);
  ASSERT_TRUE(WaitStep(a2, lease->attempt_id)) << "the attempt never started";
  const RunResult run = RunUntilReleased(a2, lease->attempt_id, lease->token);
  EXPECT_EQ(run.release_reason, "attempt complete");
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
}

TEST_F(DispatcherTest, AgentReconnectingWithoutItsAttemptLosesItAtOnce) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  ASSERT_TRUE(WaitStep(a, lease.attempt_id));
  // The agent process restarted: a new stream, no attempt, and the old stream
  // not yet seen to end.
  SimAgent a2{"agent-a", {}};
  Connect(a2);
  std::optional<Msg> close = a.link->WaitForType(Msg::kClose);
  ASSERT_TRUE(close);
  EXPECT_THAT(close->reason, HasSubstr("newer connection"));
  ASSERT_TRUE(Eventually([&] {
    return Attempt(lease.attempt_id).state == AttemptState::kLost;
  })) << "the attempt the agent no longer runs was left running";
  // Re-queued and leased again (to the only agent there is).
  std::optional<Msg> again = WaitLease(a2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->experiment_id, id);
  EXPECT_NE(again->attempt_id, lease.attempt_id);
  Accept(a2, *again);
  EXPECT_EQ(
      RunUntilReleased(a2, again->attempt_id, again->token).release_reason,
      "attempt complete");
}

TEST_F(DispatcherTest, AgentReconnectingWithAnUnknownAttemptIsToldToReleaseIt) {
  SimAgent a{"agent-a", {}};
  Connect(a, /*current_attempt_id=*/4242, "some-old-token");
  std::optional<Msg> release = a.link->WaitForType(Msg::kRelease);
  ASSERT_TRUE(release);
  EXPECT_EQ(release->attempt_id, 4242);
  EXPECT_EQ(release->token, "some-old-token");
  // And it is idle: new work goes to it.
  const int64_t id = Submit();
  std::optional<Msg> lease = WaitLease(a);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->experiment_id, id);
}

TEST_F(DispatcherTest, CancelReleasesTheAgentAndFreesItForOtherWork) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  auto step = WaitStep(a, lease.attempt_id);
  ASSERT_TRUE(step);

  ASSERT_TRUE(dispatcher_->Cancel(id, "changed my mind").ok());
  std::optional<Msg> release = a.link->WaitForType(Msg::kRelease);
  ASSERT_TRUE(release);
  EXPECT_EQ(release->attempt_id, lease.attempt_id);
  EXPECT_THAT(release->reason, HasSubstr("changed my mind"));
  EXPECT_EQ(Experiment(id).state, ExperimentState::kCancelled);
  EXPECT_EQ(Attempt(lease.attempt_id).state, AttemptState::kCancelled);
  Sync();
  EXPECT_EQ(dispatcher_->CurrentExperimentOf("agent-a"), 0);
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kIdle);

  // The result of the step that was running is refused.
  const size_t before = a.link->size();
  SendResult(a, step->second, lease.token);
  auto ack =
      a.link->WaitFor([](const Msg& m) { return m.type == Msg::kAck; }, before);
  ASSERT_TRUE(ack);
  EXPECT_FALSE(ack->second.accepted);

  // The agent takes the next experiment.
  const int64_t next = Submit();
  std::optional<Msg> lease2 = WaitLease(a, before);
  ASSERT_TRUE(lease2);
  EXPECT_EQ(lease2->experiment_id, next);
  EXPECT_TRUE(absl::IsNotFound(dispatcher_->Cancel(987654, "no such")));
  EXPECT_TRUE(absl::IsFailedPrecondition(dispatcher_->Cancel(id, "again")));
}

TEST_F(DispatcherTest, WatchersGetViewsUntilTheyUnsubscribe) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit({}, /*notify=*/false);
  absl::Mutex mu;
  std::vector<ExperimentView> views;
  const int64_t handle =
      dispatcher_->Subscribe(id, [&](const ExperimentView& v) {
        absl::MutexLock lock(&mu);
        views.push_back(v);
      });
  dispatcher_->OnSubmitted(id);
  const Msg lease = LeaseAndAccept(a);
  RunUntilReleased(a, lease.attempt_id, lease.token);
  ASSERT_TRUE(Eventually([&] {
    absl::MutexLock lock(&mu);
    return !views.empty() &&
           views.back().record.state == ExperimentState::kDone;
  }));
  {
    absl::MutexLock lock(&mu);
    bool saw_running = false;
    int64_t last_done = -1;
    for (const ExperimentView& v : views) {
      EXPECT_EQ(v.record.id, id);
      if (v.record.state != ExperimentState::kRunning || v.attempt_id == 0)
        continue;
      saw_running = true;
      EXPECT_EQ(v.attempt_id, lease.attempt_id);
      EXPECT_EQ(v.agent_id, "agent-a");
      EXPECT_EQ(v.hostname, "host-agent-a");
      EXPECT_EQ(v.progress.steps_total, kTinySteps);
      EXPECT_GE(v.progress.steps_done, last_done);
      last_done = v.progress.steps_done;
    }
    EXPECT_TRUE(saw_running);
    EXPECT_LE(last_done, kTinySteps - 1);
    // Progress is coalesced (at most one view per 250 ms while steps fly by),
    // so watchers and their terminals do not compete with short runs after
    // every step; state changes are never coalesced, so the final view above
    // arrived regardless.
    EXPECT_LT(views.size(), static_cast<size_t>(kTinySteps));
  }
  // View() shows the same, from any thread.
  absl::StatusOr<ExperimentView> view = dispatcher_->View(id);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->record.state, ExperimentState::kDone);
  EXPECT_TRUE(absl::IsNotFound(dispatcher_->View(987654).status()));

  dispatcher_->Unsubscribe(handle);
  size_t seen;
  {
    absl::MutexLock lock(&mu);
    seen = views.size();
  }
  dispatcher_->OnSubmitted(id);
  Sync();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(views.size(), seen);
}

TEST_F(DispatcherTest, RestartedControllerMarksTheAttemptLeftRunningLost) {
  char tmpl[] = "/tmp/bf-dispatcher-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  temp_dir_ = tmpl;
  const std::string url = "sqlite://" + temp_dir_ + "/controller.db";
  dispatcher_.reset();
  OpenStoreAt(url);
  StartDispatcher();

  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  ASSERT_TRUE(WaitStep(a, lease.attempt_id));

  // The controller process dies and starts again over the same database.
  dispatcher_.reset();
  store_.reset();
  OpenStoreAt(url);
  StartDispatcher();
  const AttemptRecord lost = Attempt(lease.attempt_id);
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_THAT(lost.reason, HasSubstr("restarted"));
  EXPECT_EQ(Experiment(id).state, ExperimentState::kQueued);
  EXPECT_EQ(Experiment(id).attempts, 1);

  // The agent reconnects still holding the old lease: it is told to drop it and
  // gets the experiment again as a new attempt.
  SimAgent a2{"agent-a", {}};
  Connect(a2, lease.attempt_id, lease.token);
  auto release = a2.link->WaitFor([&](const Msg& m) {
    return m.type == Msg::kRelease && m.attempt_id == lease.attempt_id;
  });
  ASSERT_TRUE(release);
  std::optional<Msg> again = WaitLease(a2);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->experiment_id, id);
  EXPECT_NE(again->attempt_id, lease.attempt_id);
  Accept(a2, *again);
  EXPECT_EQ(
      RunUntilReleased(a2, again->attempt_id, again->token).release_reason,
      "attempt complete");
  ASSERT_TRUE(Eventually(
      [&] { return Experiment(id).state == ExperimentState::kDone; }));
  EXPECT_EQ(Experiment(id).attempts, 2);
}

// ---------------------------------------------------------------------------------------
// Store writes nothing waits on (an attempt's end, an agent's state) that the
// store could not take are tried again every second until it does.

class DispatcherStoreErrorTest : public DispatcherTest {
 protected:
  void SetUp() override {
    DispatcherTest::SetUp();
    dispatcher_.reset();
    auto flaky = std::make_unique<FlakyStore>(std::move(store_));
    flaky_ = flaky.get();
    store_ = std::move(flaky);
    StartDispatcher();
  }

  FlakyStore* flaky_ = nullptr;  // owned by store_
};

TEST_F(DispatcherStoreErrorTest, LostAttemptEndsInTheStoreOnceItTakesTheWrite) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  std::optional<Msg> first = WaitLease(a);
  ASSERT_TRUE(first);
  flaky_->FailEndAttempt(3);
  dispatcher_->OnLeaseReply(a.link, first->attempt_id, first->token, false,
                            "already holds another lease");
  Pump();
  // The agent is released at once; the store still has the attempt running.
  EXPECT_EQ(a.link->Count(Msg::kRelease), 1);
  EXPECT_EQ(dispatcher_->counters().attempts_lost, 1);
  EXPECT_EQ(flaky_->failed_calls(), 1);
  EXPECT_EQ(Attempt(first->attempt_id).state, AttemptState::kRunning);
  // Not tried again before the retry interval.
  Pump();
  EXPECT_EQ(flaky_->failed_calls(), 1);
  for (int failures = 2; failures <= 3; ++failures) {
    clock_.Advance(absl::Seconds(1));
    Pump();
    EXPECT_EQ(flaky_->failed_calls(), failures);
    EXPECT_EQ(Attempt(first->attempt_id).state, AttemptState::kRunning);
  }
  // The fourth try is taken: the attempt ends as lost and the experiment is
  // re-queued and leased again.
  clock_.Advance(absl::Seconds(1));
  auto second = a.link->WaitFor([&](const Msg& m) {
    return m.type == Msg::kLease && m.attempt_id != first->attempt_id;
  });
  ASSERT_TRUE(second) << "the experiment was not re-queued";
  EXPECT_EQ(second->second.experiment_id, id);
  const AttemptRecord lost = Attempt(first->attempt_id);
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_THAT(lost.reason,
              HasSubstr("refused the lease: already holds another lease"));
  EXPECT_EQ(dispatcher_->counters().store_writes_retried, 3);
  EXPECT_EQ(dispatcher_->counters().store_writes_failed, 0);
}

TEST_F(DispatcherStoreErrorTest, AgentStateTheStoreCouldNotTakeIsWrittenLater) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  const Msg lease = LeaseAndAccept(a);
  Pump();
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kBusy);
  flaky_->FailSetAgentState(2);
  const RunResult run = RunUntilReleased(a, lease.attempt_id, lease.token);
  EXPECT_EQ(run.release_reason, "attempt complete");
  EXPECT_EQ(Experiment(id).state, ExperimentState::kDone);
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kBusy)
      << "the idle state should not have reached the store yet";
  clock_.Advance(absl::Seconds(1));
  Pump();
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kBusy);
  clock_.Advance(absl::Seconds(1));
  Pump();
  EXPECT_EQ(store_->GetAgent("agent-a")->state, AgentState::kIdle);
  EXPECT_EQ(flaky_->failed_calls(), 2);
  EXPECT_EQ(dispatcher_->counters().store_writes_retried, 2);
  EXPECT_EQ(dispatcher_->counters().store_writes_failed, 0);
}

TEST_F(DispatcherTest, SpecTheSourceRejectsFailsTheAttempt) {
  dispatcher_.reset();
  absl::StatusOr<std::unique_ptr<Dispatcher>> d = Dispatcher::Create(
      store_.get(), &clock_, options_,
      [](const ExperimentRecord&) -> absl::StatusOr<ExperimentSpec> {
        return absl::InvalidArgumentError("tiny.yaml:3: name: bad");
      });
  ASSERT_TRUE(d.ok()) << d.status();
  dispatcher_ = std::move(*d);
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const int64_t id = Submit();
  Pump();
  EXPECT_EQ(a.link->Count(Msg::kLease), 0);
  const ExperimentRecord e = Experiment(id);
  EXPECT_EQ(e.state, ExperimentState::kFailed);
  const std::vector<AttemptRecord> attempts = *store_->ListAttempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].state, AttemptState::kFailed);
  EXPECT_THAT(attempts[0].reason,
              HasSubstr("the stored spec no longer validates: tiny.yaml:3"));
  EXPECT_TRUE(absl::IsInvalidArgument(
      Dispatcher::Create(store_.get(), &clock_, options_, nullptr).status()));
}

// ---------------------------------------------------------------------------------------
// History: "environment changed" across attempts on the same fingerprint and
// commit (DESIGN.md §4), with the previous baseline read from the store.

class DispatcherHistoryTest : public DispatcherTest {
 protected:
  // Runs one whole experiment "tiny" on `agent`, which reports `commit` when
  // it accepts the lease and answers every measured run of the baseline with
  // `base_ms` (±1 %) and of "fast" with 70 ms. Returns the finished record and
  // the number of steps the agent ran.
  std::pair<ExperimentRecord, int> RunExperiment(SimAgent& agent,
                                                 const std::string& commit,
                                                 int64_t base_ms) {
    const size_t from = agent.link->size();
    const int64_t id = Submit();
    std::optional<Msg> lease = WaitLease(agent, from);
    EXPECT_TRUE(lease) << "no lease for experiment " << id;
    if (!lease) return {};
    HostEnvironment env;
    env.commit = commit;
    env.governor = "performance";
    dispatcher_->OnLeaseReply(agent.link, lease->attempt_id, lease->token, true,
                              "", env);
    int steps = 0;
    int64_t base_runs = 0;
    std::set<int64_t> answered;
    for (size_t i = from;;) {
      auto m = agent.link->WaitFor(
          [&](const Msg& m) {
            return m.attempt_id == lease->attempt_id &&
                   (m.type == Msg::kStep || m.type == Msg::kRelease);
          },
          i);
      if (!m) {
        ADD_FAILURE() << "attempt stalled after " << steps << " steps";
        return {};
      }
      i = m->first + 1;
      if (m->second.type == Msg::kRelease) {
        EXPECT_EQ(m->second.reason, "attempt complete");
        break;
      }
      if (!answered.insert(m->second.step.seq).second) continue;
      StepOutcome o = OutcomeFor(m->second.step);
      if (m->second.step.variant == "base") {
        // The i-th baseline run of every attempt gets the same wobble, so
        // the interleaved order (a random seed per attempt) cannot move the
        // baseline's median between attempts.
        const int64_t k = (base_runs++ * 7919) % 11 - 5;
        o.wall_ns = base_ms * kMs + base_ms * kMs * k / 500;
      }
      dispatcher_->OnStepResult(agent.link, lease->attempt_id, lease->token, o);
      ++steps;
    }
    EXPECT_TRUE(Eventually(
        [&] { return Experiment(id).state == ExperimentState::kDone; }));
    return {Experiment(id), steps};
  }
};

TEST_F(DispatcherHistoryTest, MovedBaselineOnTheSameHostAndCommitIsReMeasured) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);

  // The first attempt on this fingerprint and commit has nothing to compare.
  const auto [first, first_steps] = RunExperiment(a, "abc123", 100);
  EXPECT_EQ(first_steps, kTinySteps);
  EXPECT_THAT(first.report_text,
              HasSubstr("Environment: no earlier completed attempt"));
  EXPECT_THAT(first.report_json, HasSubstr("\"status\": \"no-history\""));

  // Same host and commit, baseline within noise: nothing extra.
  const auto [second, second_steps] = RunExperiment(a, "abc123", 100);
  EXPECT_EQ(second_steps, kTinySteps);
  EXPECT_THAT(second.report_json, HasSubstr("\"status\": \"unchanged\""));
  EXPECT_THAT(second.report_text,
              HasSubstr(absl::StrFormat("baseline within noise of experiment "
                                        "%03d",
                                        second.number - 1)));

  // The baseline is now 30 % slower: 10 more baseline runs, then the flag,
  // naming the previous experiment on this fingerprint and commit.
  const auto [third, third_steps] = RunExperiment(a, "abc123", 130);
  EXPECT_EQ(third_steps, kTinySteps + 10);
  EXPECT_THAT(third.report_json, HasSubstr("\"status\": \"changed\""));
  EXPECT_THAT(third.report_text,
              HasSubstr("environment changed: baseline median on one moved "
                        "+30.0%"));
  EXPECT_THAT(
      third.report_text,
      HasSubstr(absl::StrFormat("since experiment %03d (", second.number)));
  EXPECT_THAT(third.report_text,
              ContainsRegex("re-measured: \\+(29\\.[5-9]|30\\.[0-4])%"));
  absl::StatusOr<std::vector<StepResultRecord>> results =
      store_->ListStepResults(store_->ListAttempts(third.id).value().back().id);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ(results->size(), static_cast<size_t>(kTinySteps + 10));
  // The verdict still holds: "fast" against the interleaved baseline.
  absl::StatusOr<std::vector<VerdictRecord>> verdicts =
      store_->ListVerdicts(third.id);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->size(), 1u);
  EXPECT_EQ((*verdicts)[0].verdict, "KEEP");

  // Another commit has no history of its own, even on the same host.
  const auto [other, other_steps] = RunExperiment(a, "def456", 160);
  EXPECT_EQ(other_steps, kTinySteps);
  EXPECT_THAT(other.report_json, HasSubstr("\"status\": \"no-history\""));
}

TEST_F(DispatcherHistoryTest, AttemptWithoutACommitIsNotCompared) {
  SimAgent a{"agent-a", {}};
  ConnectAndWelcome(a);
  const auto [first, first_steps] = RunExperiment(a, "", 100);
  const auto [second, second_steps] = RunExperiment(a, "", 150);
  EXPECT_EQ(second_steps, kTinySteps);
  EXPECT_THAT(second.report_json, HasSubstr("\"status\": \"not-compared\""));
  EXPECT_THAT(second.report_text,
              HasSubstr("Environment: not compared with history: this "
                        "attempt's environment records no commit"));
}

}  // namespace
}  // namespace benchfleet
