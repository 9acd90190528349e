// Unit tests of the AttemptRunner (controller/scheduler/attempt_runner.h):
// leasing, the window of step orders, results committed before they are
// acknowledged, stale results, lost leases and a whole attempt to its verdict,
// against a real SQLite store, a FakeClock and an AgentRegistry whose store
// writes run at once.
#include "controller/scheduler/attempt_runner.h"

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/scheduler/agent_registry.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/controller/dispatcher_fixture.h"

namespace benchfleet {
namespace {

using ::testing::Contains;

class AttemptRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore("sqlite::memory:");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    auto write = [](const std::string& key, const std::string& /*what*/,
                    StoreWrites::Write write) {
      const absl::Status st = write();
      EXPECT_TRUE(st.ok()) << key << ": " << st;
    };
    registry_ = std::make_unique<AgentRegistry>(store_.get(), &clock_, write,
                                                [](const std::string&) {});
    AttemptRunner::Options options;
    options.steps_ahead = 2;
    runner_ = std::make_unique<AttemptRunner>(
        store_.get(), &clock_, registry_.get(), options, ParseStoredSpec,
        AttemptRunner::Hooks{[this](int64_t id) { published_.push_back(id); },
                             [this](int64_t id) { progressed_.push_back(id); },
                             [this] { ++work_queued_; }, write});
    registry_->Connect(agent_.link, agent_.Hello());
    registry_->Register(agent_.id, AgentState::kIdle, 0);
  }

  int64_t Submit() {
    ExperimentRecord r;
    r.name = "tiny";
    r.spec_yaml = kTinySpec;
    r.spec_path = "tiny.yaml";
    r.workdir = kWorkdir;
    r.submitted_by = "test";
    r.created_at = clock_.Now();
    absl::StatusOr<ExperimentRecord> created = store_->CreateExperiment(r);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->id : 0;
  }

  AgentSession& Session() { return *registry_->Find(agent_.id); }

  // Starts work for the agent and accepts the lease; returns the lease.
  Msg LeaseAndAccept() {
    runner_->Start(Session());
    std::optional<Msg> lease = agent_.link->WaitForType(Msg::kLease);
    EXPECT_TRUE(lease.has_value());
    if (!lease) return Msg{};
    runner_->OnLeaseReply(Session(), lease->attempt_id, lease->token, true, "",
                          std::nullopt, false);
    return *lease;
  }

  std::vector<Msg> Steps() {
    std::vector<Msg> steps;
    for (const Msg& m : agent_.link->Messages())
      if (m.type == Msg::kStep) steps.push_back(m);
    return steps;
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AgentRegistry> registry_;
  std::unique_ptr<AttemptRunner> runner_;
  SimAgent agent_{"a"};
  std::vector<int64_t> published_;
  std::vector<int64_t> progressed_;
  int work_queued_ = 0;
};

TEST_F(AttemptRunnerTest, NothingQueuedLeasesNothing) {
  runner_->Start(Session());
  EXPECT_EQ(agent_.link->Count(Msg::kLease), 0);
  EXPECT_EQ(Session().attempt_id, 0);
}

TEST_F(AttemptRunnerTest, LeaseMarksTheAgentBusyAndAcceptanceFillsTheWindow) {
  const int64_t experiment = Submit();
  runner_->Start(Session());
  std::optional<Msg> lease = agent_.link->WaitForType(Msg::kLease);
  ASSERT_TRUE(lease.has_value());
  EXPECT_EQ(lease->experiment_id, experiment);
  EXPECT_EQ(Session().attempt_id, lease->attempt_id);
  EXPECT_EQ(registry_->CurrentExperimentOf("a"), experiment);
  EXPECT_EQ(store_->GetAgent("a")->state, AgentState::kBusy);
  EXPECT_THAT(published_, Contains(experiment));
  EXPECT_TRUE(Steps().empty());  // not before the agent accepts
  std::optional<AttemptRunner::Live> live = runner_->LiveOf(experiment);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(live->attempt_id, lease->attempt_id);
  EXPECT_EQ(live->agent_id, "a");

  runner_->OnLeaseReply(Session(), lease->attempt_id, lease->token, true, "",
                        std::nullopt, false);
  EXPECT_EQ(Steps().size(), 2u);  // steps_ahead
  // A repeated acceptance starts nothing more.
  runner_->OnLeaseReply(Session(), lease->attempt_id, lease->token, true, "",
                        std::nullopt, false);
  EXPECT_EQ(Steps().size(), 2u);
}

TEST_F(AttemptRunnerTest, AResultIsStoredThenAcknowledgedAndTheNextOrderSent) {
  Submit();
  const Msg lease = LeaseAndAccept();
  const Msg first = Steps().at(0);
  runner_->OnStepResult(agent_.link, lease.attempt_id, lease.token,
                        OutcomeFor(first.step));
  absl::StatusOr<std::vector<StepResultRecord>> stored =
      store_->ListStepResults(lease.attempt_id);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].variant, first.step.variant);
  std::optional<Msg> ack = agent_.link->WaitForType(Msg::kAck);
  ASSERT_TRUE(ack.has_value());
  EXPECT_TRUE(ack->accepted);
  EXPECT_EQ(ack->seq, first.step.seq);
  EXPECT_EQ(Steps().size(), 3u);
  EXPECT_EQ(runner_->counters().results_stored, 1);
}

TEST_F(AttemptRunnerTest, AResultUnderAnotherTokenIsRefusedAndCountedStale) {
  Submit();
  const Msg lease = LeaseAndAccept();
  runner_->OnStepResult(agent_.link, lease.attempt_id, "not-the-lease",
                        OutcomeFor(Steps().at(0).step));
  std::optional<Msg> ack = agent_.link->WaitForType(Msg::kAck);
  ASSERT_TRUE(ack.has_value());
  EXPECT_FALSE(ack->accepted);
  EXPECT_EQ(runner_->counters().stale_results, 1);
  EXPECT_TRUE(store_->ListStepResults(lease.attempt_id)->empty());
  EXPECT_EQ(Steps().size(), 2u);
}

TEST_F(AttemptRunnerTest, AnAttemptWhoseAgentStaysAwayIsLostAndRequeued) {
  const int64_t experiment = Submit();
  const Msg lease = LeaseAndAccept();
  runner_->AgentGone(lease.attempt_id, clock_.Now());
  clock_.Advance(absl::Seconds(14));
  runner_->LoseExpired(clock_.Now(), absl::Seconds(15));
  EXPECT_TRUE(runner_->LiveOf(experiment).has_value());
  clock_.Advance(absl::Seconds(1));
  runner_->LoseExpired(clock_.Now(), absl::Seconds(15));
  EXPECT_FALSE(runner_->LiveOf(experiment).has_value());
  EXPECT_EQ(store_->GetAttempt(lease.attempt_id)->state, AttemptState::kLost);
  EXPECT_EQ(store_->GetExperiment(experiment)->state, ExperimentState::kQueued);
  EXPECT_EQ(runner_->counters().attempts_lost, 1);
  EXPECT_EQ(work_queued_, 1);
  // The agent was still connected: released and idle again.
  std::optional<Msg> release = agent_.link->WaitForType(Msg::kRelease);
  ASSERT_TRUE(release.has_value());
  EXPECT_THAT(release->reason, ::testing::HasSubstr("silent for more than"));
  EXPECT_EQ(Session().attempt_id, 0);
}

TEST_F(AttemptRunnerTest, AnsweringEveryOrderCompletesTheExperiment) {
  const int64_t experiment = Submit();
  const Msg lease = LeaseAndAccept();
  std::set<int64_t> answered;
  for (int round = 0; round < 100 && agent_.link->Count(Msg::kRelease) == 0;
       ++round) {
    for (const Msg& step : Steps()) {
      if (answered.insert(step.step.seq).second) {
        runner_->OnStepResult(agent_.link, lease.attempt_id, lease.token,
                              OutcomeFor(step.step));
      }
    }
  }
  EXPECT_EQ(static_cast<int>(answered.size()), kTinySteps);
  std::optional<Msg> release = agent_.link->WaitForType(Msg::kRelease);
  ASSERT_TRUE(release.has_value());
  EXPECT_EQ(release->reason, "attempt complete");
  EXPECT_EQ(store_->GetExperiment(experiment)->state, ExperimentState::kDone);
  EXPECT_FALSE(runner_->LiveOf(experiment).has_value());
  EXPECT_EQ(registry_->CurrentExperimentOf("a"), 0);
  EXPECT_EQ(store_->GetAgent("a")->state, AgentState::kIdle);
}

}  // namespace
}  // namespace benchfleet
