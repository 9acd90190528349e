// Tests for Dispatcher when things go wrong or change: agents lost and
// reconnecting, cancel, watchers, a restarted controller, store writes the
// store could not take, a spec the spec source rejects, and the history check
// across attempts. The harness (a FakeClock stepped by the test, Tick instead
// of sleeps) is in dispatcher_fixture.h.
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
  // re-queued and leased again (to the host that declined, after the wait
  // for another host).
  clock_.Advance(absl::Seconds(1));
  Pump();
  clock_.Advance(options_.not_ready_retry_after + absl::Seconds(1));
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
