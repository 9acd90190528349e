// The store conformance suite (store_test_fixture.h), run against SqliteStore
// and PgStore: step results (idempotent, stale leases), completion, ending
// attempts (re-queue or give up, host-not-ready) and cancellation.
#include <string>
#include <vector>

#include "tests/controller/store_test_fixture.h"

namespace benchfleet {
namespace store_testing {
namespace {

INSTANTIATE_STORE_SUITE(StoreTest);
INSTANTIATE_STORE_SUITE(ClaimedStoreTest);

// ---- Step results ----

TEST_P(ClaimedStoreTest, RecordStepResultStoresEveryFieldAndListsInStepOrder) {
  StepResultRecord failing = MakeStep(attempt_.id, 2);
  failing.exit_code = 3;
  failing.term_signal = 9;
  failing.timed_out = true;
  failing.error = "killed after 30s";
  // An undisturbed run: no flags, no summary, no wait.
  failing.host_json = "{}";
  failing.host_flags.clear();
  failing.gate_wait_ns = 0;
  for (const StepResultRecord& step :
       {failing, MakeStep(attempt_.id, 0), MakeStep(attempt_.id, 1)}) {
    ASSERT_OK_AND_ASSIGN(RecordOutcome outcome,
                         store_->RecordStepResult(step, "lease-1"));
    EXPECT_EQ(outcome, RecordOutcome::kInserted);
  }
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  ASSERT_EQ(steps.size(), 3u);
  ExpectStepEq(steps[0], MakeStep(attempt_.id, 0));
  ExpectStepEq(steps[1], MakeStep(attempt_.id, 1));
  ExpectStepEq(steps[2], failing);
}

TEST_P(ClaimedStoreTest,
       RecordStepResultDuplicateChangesNothingAndKeepsOriginalRow) {
  const StepResultRecord original = MakeStep(attempt_.id, 5);
  ASSERT_OK_AND_ASSIGN(RecordOutcome first,
                       store_->RecordStepResult(original, "lease-1"));
  EXPECT_EQ(first, RecordOutcome::kInserted);
  StepResultRecord resend = original;
  resend.wall_ns = 1;
  resend.output_digest = "different";
  resend.error = "different";
  ASSERT_OK_AND_ASSIGN(RecordOutcome second,
                       store_->RecordStepResult(resend, "lease-1"));
  EXPECT_EQ(second, RecordOutcome::kDuplicate);
  ASSERT_OK_AND_ASSIGN(RecordOutcome third,
                       store_->RecordStepResult(original, "lease-1"));
  EXPECT_EQ(third, RecordOutcome::kDuplicate);
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  ASSERT_EQ(steps.size(), 1u);
  ExpectStepEq(steps[0], original);
}

TEST_P(ClaimedStoreTest,
       RecordStepResultRejectsStaleLeaseTokenNamingTheAttempt) {
  auto outcome =
      store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-0-stale");
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(),
              HasSubstr("attempt " + std::to_string(attempt_.id)));
  EXPECT_THAT(outcome.status().message(), HasSubstr("stale"));
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  EXPECT_TRUE(steps.empty());
}

TEST_P(ClaimedStoreTest,
       RecordStepResultRejectsResultsForEndedAttemptNamingTheAttempt) {
  ASSERT_OK(
      store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-1").status());
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost,
                               "heartbeat timeout", kT0 + absl::Minutes(1)));
  for (int64_t seq : {0, 1}) {  // a resend and a new step alike
    auto outcome =
        store_->RecordStepResult(MakeStep(attempt_.id, seq), "lease-1");
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(outcome.status().message(),
                HasSubstr("attempt " + std::to_string(attempt_.id)));
  }
  // The experiment was re-queued and leased again: the new lease works, the old
  // one does not.
  ASSERT_OK_AND_ASSIGN(auto claim, store_->ClaimNextExperiment(
                                       "agent-2", {}, "lease-2", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(store_->RecordStepResult(MakeStep(claim->attempt.id, 0), "lease-1")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(store_->RecordStepResult(MakeStep(claim->attempt.id, 0), "lease-2")
                .status());
  ASSERT_OK_AND_ASSIGN(auto old_steps, store_->ListStepResults(attempt_.id));
  EXPECT_EQ(old_steps.size(), 1u);
}

TEST_P(ClaimedStoreTest,
       HostFlagsThatAreNotAJsonArrayAreDataLossNamingTheStep) {
  ASSERT_OK(
      store_->RecordStepResult(MakeStep(attempt_.id, 4), "lease-1").status());
  RawExec(location(), "UPDATE step_results SET host_flags = '{\"a\": 1}'");
  auto steps = store_->ListStepResults(attempt_.id);
  EXPECT_EQ(steps.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(steps.status().message(),
              HasSubstr("host flags of step 4 of attempt " +
                        std::to_string(attempt_.id)));
}

TEST_P(ClaimedStoreTest, RecordStepResultForUnknownAttemptIsNotFound) {
  auto outcome =
      store_->RecordStepResult(MakeStep(attempt_.id + 100, 0), "lease-1");
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ClaimedStoreTest,
       SetAttemptEnvironmentIsStoredAndUnknownAttemptIsNotFound) {
  ASSERT_OK(store_->SetAttemptEnvironment(attempt_.id, R"({"kernel": "6.1"})"));
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.environment_json, R"({"kernel": "6.1"})");
  EXPECT_EQ(store_->SetAttemptEnvironment(attempt_.id + 100, "{}").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetAttempt(attempt_.id + 100).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- Completion ----

VerdictRecord MakeVerdict(const std::string& variant,
                          const std::string& verdict) {
  VerdictRecord v;
  v.variant = variant;
  v.verdict = verdict;
  v.reason = "faster on 9 of 10 inputs";
  v.change = -0.125;
  v.detail_json = R"({"inputs": []})";
  return v;
}

TEST_P(ClaimedStoreTest, CompleteExperimentStoresReportVerdictsAndEndsBoth) {
  const absl::Time done_at = kT0 + absl::Minutes(10);
  ASSERT_OK(store_->CompleteExperiment(
      attempt_.id, "lease-1", R"({"ok": true})", "all good",
      {MakeVerdict("fast", "KEEP"), MakeVerdict("slow", "MAYBE")}, done_at));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(experiment.report_json, R"({"ok": true})");
  EXPECT_EQ(experiment.report_text, "all good");
  EXPECT_EQ(experiment.updated_at, done_at);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kDone);
  EXPECT_EQ(attempt.ended_at, done_at);
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].variant, "fast");
  EXPECT_EQ(verdicts[0].verdict, "KEEP");
  EXPECT_EQ(verdicts[0].experiment_id, experiment_.id);
  EXPECT_EQ(verdicts[0].attempt_id, attempt_.id);
  EXPECT_EQ(verdicts[0].reason, "faster on 9 of 10 inputs");
  EXPECT_DOUBLE_EQ(verdicts[0].change, -0.125);
  EXPECT_EQ(verdicts[0].detail_json, R"({"inputs": []})");
  EXPECT_EQ(verdicts[1].variant, "slow");
  ASSERT_OK_AND_ASSIGN(auto running, store_->ListRunningAttempts());
  EXPECT_TRUE(running.empty());
}

TEST_P(ClaimedStoreTest,
       CompleteExperimentChangesNothingWhenAVerdictIsRejected) {
  VerdictRecord foreign = MakeVerdict("slow", "MAYBE");
  foreign.experiment_id = experiment_.id + 1;
  auto status =
      store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "text",
                                 {MakeVerdict("fast", "KEEP"), foreign}, kT0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  // The attempt/experiment updates and the first verdict were rolled back.
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kRunning);
  EXPECT_EQ(experiment.report_text, "");
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kRunning);
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  EXPECT_TRUE(verdicts.empty());
  // And the completion can then be done properly.
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "text",
                                       {MakeVerdict("fast", "KEEP")}, kT0));
}

TEST_P(ClaimedStoreTest, CompleteExperimentRejectsStaleTokenAndEndedAttempt) {
  auto stale =
      store_->CompleteExperiment(attempt_.id, "wrong", "{}", "", {}, kT0);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(),
              HasSubstr("attempt " + std::to_string(attempt_.id)));
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "first",
                                       {}, kT0));
  auto again = store_->CompleteExperiment(
      attempt_.id, "lease-1", "{}", "second", {MakeVerdict("v", "KEEP")}, kT0);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.report_text, "first");
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  EXPECT_TRUE(verdicts.empty());
}

// ---- Ending attempts ----

TEST_P(ClaimedStoreTest, EndAttemptLostRequeuesUntilMaxAttemptsThenFails) {
  // max_attempts is 2 (fixture).
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost, "agent silent",
                               kT0));
  ASSERT_OK_AND_ASSIGN(auto requeued, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.attempts, 1);
  EXPECT_THAT(requeued.state_reason, HasSubstr("agent silent"));
  ASSERT_OK_AND_ASSIGN(auto lost, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_EQ(lost.reason, "agent silent");
  EXPECT_EQ(lost.ended_at, kT0);

  ASSERT_OK_AND_ASSIGN(auto claim, store_->ClaimNextExperiment(
                                       "agent-2", {}, "lease-2", 5, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->experiment.id, experiment_.id);
  EXPECT_EQ(claim->experiment.attempts, 2);
  ASSERT_OK(store_->EndAttempt(claim->attempt.id, AttemptState::kLost,
                               "agent silent again", kT0 + absl::Minutes(5)));
  ASSERT_OK_AND_ASSIGN(auto failed, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.attempts, 2);
  EXPECT_THAT(failed.state_reason, HasSubstr("agent silent again"));
  EXPECT_EQ(failed.updated_at, kT0 + absl::Minutes(5));

  ASSERT_OK_AND_ASSIGN(auto attempts, store_->ListAttempts(experiment_.id));
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].state, AttemptState::kLost);
  EXPECT_EQ(attempts[1].state, AttemptState::kLost);
  ASSERT_OK_AND_ASSIGN(auto none, store_->ClaimNextExperiment(
                                      "agent-3", {}, "lease-3", 6, {}, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_P(ClaimedStoreTest, EndAttemptHostNotReadyRequeuesWithoutUsingAttempts) {
  // max_attempts is 2 (fixture): host-not-ready, lost, host-not-ready, lost.
  const absl::Time t1 = kT0 + absl::Minutes(15);
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kHostNotReady,
                               "CPU at 81 C, at or above the 70 C gate", t1));
  ASSERT_OK_AND_ASSIGN(auto requeued, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.updated_at, t1);
  EXPECT_EQ(requeued.state_reason,
            "attempt " + std::to_string(attempt_.id) +
                ": host not ready on agent-1 (CPU at 81 C, at or above the 70 "
                "C gate); re-queued (1 of 20 host-not-ready attempts)");
  ASSERT_OK_AND_ASSIGN(auto not_ready, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(not_ready.state, AttemptState::kHostNotReady);
  EXPECT_EQ(not_ready.reason, "CPU at 81 C, at or above the 70 C gate");
  EXPECT_EQ(not_ready.ended_at, t1);

  // The first lost attempt is 1 of 2: re-queued, not failed.
  ASSERT_OK_AND_ASSIGN(auto second, store_->ClaimNextExperiment(
                                        "agent-2", {}, "lease-2", 2, {}, t1));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->experiment.attempts, 2);
  ASSERT_OK(store_->EndAttempt(second->attempt.id, AttemptState::kLost,
                               "agent silent", t1));
  ASSERT_OK_AND_ASSIGN(auto after_lost, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(after_lost.state, ExperimentState::kQueued);
  EXPECT_THAT(after_lost.state_reason,
              HasSubstr("1 of 2 attempts used (not counting 1 "
                        "host-not-ready), re-queued"));

  ASSERT_OK_AND_ASSIGN(auto third, store_->ClaimNextExperiment(
                                       "agent-1", {}, "lease-3", 3, {}, t1));
  ASSERT_TRUE(third.has_value());
  ASSERT_OK(store_->EndAttempt(third->attempt.id, AttemptState::kHostNotReady,
                               "load 9.5", t1));
  ASSERT_OK_AND_ASSIGN(auto again, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(again.state, ExperimentState::kQueued);
  EXPECT_THAT(again.state_reason,
              HasSubstr("(2 of 20 host-not-ready attempts)"));

  // The second lost attempt uses up max_attempts.
  ASSERT_OK_AND_ASSIGN(auto fourth, store_->ClaimNextExperiment(
                                        "agent-2", {}, "lease-4", 4, {}, t1));
  ASSERT_TRUE(fourth.has_value());
  ASSERT_OK(store_->EndAttempt(fourth->attempt.id, AttemptState::kLost,
                               "agent silent again", t1));
  ASSERT_OK_AND_ASSIGN(auto failed, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.attempts, 4);
  EXPECT_THAT(failed.state_reason,
              HasSubstr("2 of 2 attempts used (not counting 2 "
                        "host-not-ready), giving up"));

  ASSERT_OK_AND_ASSIGN(auto attempts, store_->ListAttempts(experiment_.id));
  ASSERT_EQ(attempts.size(), 4u);
  EXPECT_EQ(attempts[0].state, AttemptState::kHostNotReady);
  EXPECT_EQ(attempts[1].state, AttemptState::kLost);
  EXPECT_EQ(attempts[2].state, AttemptState::kHostNotReady);
  EXPECT_EQ(attempts[2].reason, "load 9.5");
  EXPECT_EQ(attempts[3].state, AttemptState::kLost);
  ASSERT_OK_AND_ASSIGN(auto running, store_->ListRunningAttempts());
  EXPECT_TRUE(running.empty());
}

TEST_P(StoreTest, HostNotReadyDoesNotUseUpASingleAttempt) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in = MakeExperiment("one-try");
  in.max_attempts = 1;
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(in));
  ASSERT_OK_AND_ASSIGN(auto first, store->ClaimNextExperiment(
                                       "agent-1", {}, "tok-1", 1, {}, kT0));
  ASSERT_TRUE(first.has_value());
  ASSERT_OK(store->EndAttempt(first->attempt.id, AttemptState::kHostNotReady,
                              "busy", kT0));
  ASSERT_OK_AND_ASSIGN(auto queued, store->GetExperiment(e.id));
  EXPECT_EQ(queued.state, ExperimentState::kQueued);

  ASSERT_OK_AND_ASSIGN(auto second, store->ClaimNextExperiment(
                                        "agent-2", {}, "tok-2", 2, {}, kT0));
  ASSERT_TRUE(second.has_value());
  ASSERT_OK(store->EndAttempt(second->attempt.id, AttemptState::kLost,
                              "agent silent", kT0));
  ASSERT_OK_AND_ASSIGN(auto failed, store->GetExperiment(e.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_THAT(failed.state_reason, HasSubstr("1 of 1 attempts used"));
}

TEST_P(StoreTest, HostNotReadyFailsTheExperimentAtItsCapSayingWhatToDo) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("hot")));
  for (int i = 1; i <= kMaxHostNotReadyAttempts; ++i) {
    const std::string agent = "host-" + std::to_string(i % 3);
    ASSERT_OK_AND_ASSIGN(auto claim, store->ClaimNextExperiment(
                                         agent, {}, "tok-" + std::to_string(i),
                                         i, {}, kT0 + absl::Minutes(i)));
    ASSERT_TRUE(claim.has_value()) << "claim " << i;
    ASSERT_EQ(claim->experiment.id, e.id);
    ASSERT_OK(store->EndAttempt(claim->attempt.id, AttemptState::kHostNotReady,
                                "GPU 0 at 63 C", kT0 + absl::Minutes(i)));
    ASSERT_OK_AND_ASSIGN(auto after, store->GetExperiment(e.id));
    if (i < kMaxHostNotReadyAttempts) {
      ASSERT_EQ(after.state, ExperimentState::kQueued) << "attempt " << i;
      continue;
    }
    EXPECT_EQ(after.state, ExperimentState::kFailed);
    EXPECT_EQ(after.attempts, kMaxHostNotReadyAttempts);
    EXPECT_THAT(after.state_reason,
                HasSubstr("attempt " + std::to_string(claim->attempt.id) +
                          ": host not ready on " + agent + " (GPU 0 at 63 C)"));
    EXPECT_THAT(after.state_reason,
                HasSubstr("no host became ready after 20 host-not-ready "
                          "attempts"));
    EXPECT_THAT(after.state_reason, HasSubstr("gates.max_wait"));
  }
  ASSERT_OK_AND_ASSIGN(
      auto none, store->ClaimNextExperiment("host-0", {}, "tok-x", 0, {}, kT0));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(auto attempts, store->ListAttempts(e.id));
  ASSERT_EQ(attempts.size(), static_cast<size_t>(kMaxHostNotReadyAttempts));
  for (const AttemptRecord& a : attempts) {
    EXPECT_EQ(a.state, AttemptState::kHostNotReady) << "attempt " << a.id;
  }
}

TEST_P(ClaimedStoreTest, EndAttemptFailedFailsExperimentWithoutRetry) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kFailed,
                               "setup exited 1", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kFailed);
  EXPECT_EQ(experiment.state_reason, "setup exited 1");
  ASSERT_OK_AND_ASSIGN(auto none, store_->ClaimNextExperiment(
                                      "agent-2", {}, "lease-2", 1, {}, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_P(ClaimedStoreTest, EndAttemptCancelledCancelsExperiment) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kCancelled,
                               "agent drained", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kCancelled);
  EXPECT_EQ(experiment.state_reason, "agent drained");
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kCancelled);
}

TEST_P(ClaimedStoreTest, EndAttemptOnEndedAttemptIsANoOp) {
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "done", {},
                                       kT0));
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost, "late reaper",
                               kT0 + absl::Hours(1)));
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kDone);
  EXPECT_EQ(attempt.reason, "");
  EXPECT_EQ(attempt.ended_at, kT0);
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(experiment.updated_at, kT0);
}

TEST_P(ClaimedStoreTest, EndAttemptRejectsRunningAndDoneAsTargetStates) {
  EXPECT_EQ(
      store_->EndAttempt(attempt_.id, AttemptState::kDone, "x", kT0).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->EndAttempt(attempt_.id, AttemptState::kRunning, "x", kT0).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->EndAttempt(attempt_.id + 100, AttemptState::kLost, "x", kT0)
                .code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kRunning);
}

// ---- Cancellation ----

TEST_P(StoreTest, CancelQueuedExperimentMakesItUnclaimable) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("e")));
  ASSERT_OK(store->CancelExperiment(e.id, "submitted by mistake",
                                    kT0 + absl::Seconds(3)));
  ASSERT_OK_AND_ASSIGN(auto got, store->GetExperiment(e.id));
  EXPECT_EQ(got.state, ExperimentState::kCancelled);
  EXPECT_EQ(got.state_reason, "submitted by mistake");
  EXPECT_EQ(got.updated_at, kT0 + absl::Seconds(3));
  ASSERT_OK_AND_ASSIGN(
      auto claim, store->ClaimNextExperiment("agent", {}, "tok", 1, {}, kT0));
  EXPECT_FALSE(claim.has_value());
}

TEST_P(ClaimedStoreTest, CancelRunningExperimentCancelsItsAttempt) {
  ASSERT_OK(store_->CancelExperiment(experiment_.id, "operator",
                                     kT0 + absl::Seconds(9)));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kCancelled);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kCancelled);
  EXPECT_EQ(attempt.reason, "operator");
  EXPECT_EQ(attempt.ended_at, kT0 + absl::Seconds(9));
  // The agent's late results and completion are refused.
  EXPECT_EQ(store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-1")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "", {}, kT0)
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST_P(ClaimedStoreTest,
       CancelEndedExperimentIsFailedPreconditionAndUnknownIsNotFound) {
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "done", {},
                                       kT0));
  auto ended = store_->CancelExperiment(experiment_.id, "too late", kT0);
  EXPECT_EQ(ended.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ended.message(), HasSubstr(std::to_string(experiment_.id)));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(store_->CancelExperiment(experiment_.id + 100, "x", kT0).code(),
            absl::StatusCode::kNotFound);
}

// ---- Resolved commits of variants (source.repo) ----

TEST_P(ClaimedStoreTest, SourcesAreStoredInVariantOrderAndReplacedAsAWhole) {
  ASSERT_OK_AND_ASSIGN(auto none,
                       store_->ListExperimentSources(experiment_.id));
  EXPECT_TRUE(none.empty());
  const std::string repo = "https://git.example/app.git?x='1'";
  std::vector<VariantSourceRecord> sources = {
      {"zeta", repo, "main", std::string(40, 'a')},
      {"alpha", repo, "bench/001-x", std::string(40, 'b')}};
  ASSERT_OK(store_->RecordExperimentSources(experiment_.id, sources));
  ASSERT_OK_AND_ASSIGN(auto got, store_->ListExperimentSources(experiment_.id));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].variant, "zeta");
  EXPECT_EQ(got[0].repo, repo);
  EXPECT_EQ(got[0].ref, "main");
  EXPECT_EQ(got[0].commit, std::string(40, 'a'));
  EXPECT_EQ(got[1].variant, "alpha");
  EXPECT_EQ(got[1].ref, "bench/001-x");
  sources.pop_back();
  ASSERT_OK(store_->RecordExperimentSources(experiment_.id, sources));
  ASSERT_OK_AND_ASSIGN(got, store_->ListExperimentSources(experiment_.id));
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(
      store_->RecordExperimentSources(experiment_.id + 100, sources).code(),
      absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace store_testing
}  // namespace benchfleet
