// The shared harness of the dispatcher tests (dispatcher_test.cc,
// dispatcher_recovery_test.cc): FakeAgentLink records what the dispatcher
// sends, SimAgent is one simulated agent, and DispatcherTest holds a real
// SQLite store, a FakeClock and a Dispatcher without its loop thread, driven by
// Tick on the fake clock (Pump). Every wait is "pump, then look": after one
// Tick, every event posted before it, what was due at that time and the work
// assignment that follows have all happened. Test-only; FakeAgentLink is
// thread-safe, the fixture is used from the test thread.
#ifndef BENCHFLEET_TESTS_CONTROLLER_DISPATCHER_FIXTURE_H_
#define BENCHFLEET_TESTS_CONTROLLER_DISPATCHER_FIXTURE_H_

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
#include "controller/scheduler/dispatcher.h"
#include "controller/store/sqlite_store.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sqlite3.h"
#include "tests/controller/flaky_store.h"

namespace benchfleet {

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
                 const GateSpec& /*gates*/, const std::string& /*workdir*/,
                 const std::vector<VariantSourceRecord>& /*sources*/) override {
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
inline StepOutcome OutcomeFor(const PlannedStep& step) {
  StepOutcome o;
  o.seq = step.seq;
  const int64_t ms = step.variant == "fast" ? 70 : 100;
  o.wall_ns = ms * kMs + ms * kMs * ((step.seq * 7919) % 11 - 5) / 500;
  o.user_ns = o.wall_ns;
  o.output_digest = "same-output";
  return o;
}

// The stored spec parsed as the controller does (controller.cc).
inline absl::StatusOr<ExperimentSpec> ParseStoredSpec(
    const ExperimentRecord& e) {
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

}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_CONTROLLER_DISPATCHER_FIXTURE_H_
