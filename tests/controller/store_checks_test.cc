// The Store contract's rules kept in one place for both backends
// (controller/store/store_checks.h), without a database: what an experiment
// becomes when its live attempt ends, which end states EndAttempt takes,
// which queued experiment a claim may take, and the lease-token and state
// checks of RecordStepResult, CompleteExperiment and CancelExperiment.
// The same rules are checked through each backend in store_test.cc.
#include "controller/store/store_checks.h"

#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "controller/store/migrations.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

ExperimentRecord Running(int max_attempts) {
  ExperimentRecord e;
  e.id = 42;
  e.name = "sort";
  e.state = ExperimentState::kRunning;
  e.max_attempts = max_attempts;
  return e;
}

AttemptRecord Attempt(int64_t id, const std::string& agent_id) {
  AttemptRecord a;
  a.id = id;
  a.experiment_id = 42;
  a.agent_id = agent_id;
  return a;
}

AttemptCounts Counts(int host_not_ready, int counted) {
  AttemptCounts c;
  c.host_not_ready = host_not_ready;
  c.counted = counted;
  return c;
}

TEST(NextExperimentStateTest, HostNotReadyRequeuesNamingAgentReasonAndCount) {
  const ExperimentTransition next = NextExperimentState(
      Running(3), Attempt(12, "gpu-box-1"), AttemptState::kHostNotReady,
      "CPU at 81 °C after 15m, at or above the 70 °C gate", Counts(3, 0));
  EXPECT_EQ(next.state, ExperimentState::kQueued);
  EXPECT_EQ(next.reason,
            "attempt 12: host not ready on gpu-box-1 (CPU at 81 °C after 15m, "
            "at or above the 70 °C gate); re-queued (3 of 20 host-not-ready "
            "attempts)");
}

TEST(NextExperimentStateTest, HostNotReadyIgnoresMaxAttempts) {
  // max_attempts 1 is used up by a lost attempt; host-not-ready still retries.
  const ExperimentTransition next =
      NextExperimentState(Running(1), Attempt(5, "a"),
                          AttemptState::kHostNotReady, "busy", Counts(1, 1));
  EXPECT_EQ(next.state, ExperimentState::kQueued);
}

TEST(NextExperimentStateTest, HostNotReadyFailsAtTheCapSayingWhatToDo) {
  const ExperimentTransition below = NextExperimentState(
      Running(3), Attempt(30, "a"), AttemptState::kHostNotReady, "busy",
      Counts(kMaxHostNotReadyAttempts - 1, 0));
  EXPECT_EQ(below.state, ExperimentState::kQueued);
  EXPECT_THAT(below.reason, HasSubstr("(19 of 20 host-not-ready attempts)"));

  const ExperimentTransition at = NextExperimentState(
      Running(3), Attempt(31, "host-b"), AttemptState::kHostNotReady,
      "load 9.5 above 2", Counts(kMaxHostNotReadyAttempts, 0));
  EXPECT_EQ(at.state, ExperimentState::kFailed);
  EXPECT_THAT(at.reason, HasSubstr("attempt 31: host not ready on host-b "
                                   "(load 9.5 above 2)"));
  EXPECT_THAT(at.reason,
              HasSubstr("no host became ready after 20 host-not-ready "
                        "attempts"));
  EXPECT_THAT(at.reason, HasSubstr("gates.max_wait"));
  EXPECT_THAT(at.reason, HasSubstr("benchfleet show 42"));
}

TEST(NextExperimentStateTest, LostCountsOnlyAttemptsThatWereNotHostNotReady) {
  // Two attempts in all, one of them host-not-ready: one of two used.
  const ExperimentTransition requeued =
      NextExperimentState(Running(2), Attempt(8, "a"), AttemptState::kLost,
                          "agent silent", Counts(1, 1));
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.reason,
            "attempt 8 lost (agent silent); 1 of 2 attempts used (not "
            "counting 1 host-not-ready), re-queued");

  const ExperimentTransition failed =
      NextExperimentState(Running(2), Attempt(9, "a"), AttemptState::kLost,
                          "agent silent again", Counts(5, 2));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.reason,
            "attempt 9 lost (agent silent again); 2 of 2 attempts used (not "
            "counting 5 host-not-ready), giving up");
}

TEST(NextExperimentStateTest, LostWithoutHostNotReadyKeepsTheShortReason) {
  const ExperimentTransition next =
      NextExperimentState(Running(3), Attempt(4, "a"), AttemptState::kLost,
                          "heartbeat timeout", Counts(0, 1));
  EXPECT_EQ(next.state, ExperimentState::kQueued);
  EXPECT_EQ(next.reason,
            "attempt 4 lost (heartbeat timeout); 1 of 3 attempts used, "
            "re-queued");
}

TEST(NextExperimentStateTest, FailedAndCancelledEndTheExperimentWithTheReason) {
  const ExperimentTransition failed =
      NextExperimentState(Running(3), Attempt(4, "a"), AttemptState::kFailed,
                          "setup exited 1", Counts(2, 1));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.reason, "setup exited 1");
  const ExperimentTransition cancelled =
      NextExperimentState(Running(3), Attempt(4, "a"), AttemptState::kCancelled,
                          "operator", Counts(0, 1));
  EXPECT_EQ(cancelled.state, ExperimentState::kCancelled);
  EXPECT_EQ(cancelled.reason, "operator");
}

TEST(CheckEndStateTest, AcceptsHostNotReadyAndRejectsRunningAndDone) {
  for (AttemptState s : {AttemptState::kLost, AttemptState::kHostNotReady,
                         AttemptState::kFailed, AttemptState::kCancelled}) {
    EXPECT_TRUE(CheckEndState(7, s).ok()) << AttemptStateName(s);
  }
  for (AttemptState s : {AttemptState::kRunning, AttemptState::kDone}) {
    const absl::Status st = CheckEndState(7, s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(st.message(), HasSubstr("attempt 7"));
  }
}

// ---- Claims ----

TEST(LabelsSatisfyTest, EveryRequiredLabelMustBeOfferedWithTheSameValue) {
  const std::map<std::string, std::string> offered = {{"gpu", "h100"},
                                                      {"os", "linux"}};
  EXPECT_TRUE(LabelsSatisfy({}, offered));
  EXPECT_TRUE(LabelsSatisfy({}, {}));
  EXPECT_TRUE(LabelsSatisfy({{"gpu", "h100"}}, offered));
  EXPECT_TRUE(LabelsSatisfy({{"gpu", "h100"}, {"os", "linux"}}, offered));
  EXPECT_FALSE(LabelsSatisfy({{"gpu", "a100"}}, offered));
  EXPECT_FALSE(LabelsSatisfy({{"arch", "arm64"}}, offered));
  EXPECT_FALSE(LabelsSatisfy({{"gpu", "h100"}, {"arch", "x86"}}, offered));
  EXPECT_FALSE(LabelsSatisfy({{"gpu", ""}}, {}));
}

TEST(MayClaimTest, TakesAnExperimentWhoseLabelsTheAgentOffers) {
  const std::map<std::string, std::string> agent = {{"gpu", "h100"}};
  auto yes = MayClaim({7, R"({"gpu":"h100"})"}, agent, {}, "store database x");
  ASSERT_TRUE(yes.ok()) << yes.status();
  EXPECT_TRUE(*yes);
  auto any = MayClaim({8, "{}"}, agent, {}, "store database x");
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_TRUE(*any);
  auto no = MayClaim({9, R"({"gpu":"a100"})"}, agent, {}, "store database x");
  ASSERT_TRUE(no.ok()) << no.status();
  EXPECT_FALSE(*no);
}

TEST(MayClaimTest, SkipsTheExperimentsTheCallerSkips) {
  const std::set<int64_t> skip = {7, 11};
  auto skipped = MayClaim({7, "{}"}, {}, skip, "store database x");
  ASSERT_TRUE(skipped.ok()) << skipped.status();
  EXPECT_FALSE(*skipped);
  auto other = MayClaim({8, "{}"}, {}, skip, "store database x");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(*other);
  // A skipped experiment is not even read: its broken labels do not matter.
  auto broken = MayClaim({11, "not json"}, {}, skip, "store database x");
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_FALSE(*broken);
}

TEST(MayClaimTest, UnreadableLabelsAreDataLossNamingExperimentAndStore) {
  auto st = MayClaim({12, "[1, 2]"}, {}, {}, "PostgreSQL store db:5432");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(st.status().message(),
              HasSubstr("required labels of experiment 12"));
  EXPECT_THAT(st.status().message(), HasSubstr("PostgreSQL store db:5432"));
}

// ---- Lease tokens and states ----

AttemptRecord Leased(AttemptState state) {
  AttemptRecord a = Attempt(7, "a");
  a.experiment_id = 3;
  a.lease_token = "tok-1";
  a.state = state;
  return a;
}

StepResultRecord Step(int64_t attempt_id, int64_t step_seq) {
  StepResultRecord r;
  r.attempt_id = attempt_id;
  r.step_seq = step_seq;
  return r;
}

TEST(CheckResultAcceptedTest, AcceptsTheLiveAttemptsToken) {
  EXPECT_TRUE(
      CheckResultAccepted(Leased(AttemptState::kRunning), "tok-1", Step(7, 4))
          .ok());
}

TEST(CheckResultAcceptedTest, RejectsAStaleTokenBeforeLookingAtTheState) {
  for (AttemptState s : {AttemptState::kRunning, AttemptState::kLost}) {
    const absl::Status st = CheckResultAccepted(Leased(s), "tok-0", Step(7, 4));
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(st.message(),
              "stale lease token for attempt 7 (the attempt was re-leased or "
              "ended); result for step 4 of attempt 7 rejected");
  }
}

TEST(CheckResultAcceptedTest, RejectsAResultForAnEndedAttempt) {
  const absl::Status st =
      CheckResultAccepted(Leased(AttemptState::kLost), "tok-1", Step(7, 2));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "attempt 7 already ended (lost); result for step 2 of attempt 7 "
            "rejected");
}

TEST(CheckCompletionTest, AcceptsTheLiveAttemptOfARunningExperiment) {
  const AttemptRecord attempt = Leased(AttemptState::kRunning);
  EXPECT_TRUE(CheckCompletionLease(attempt, "tok-1").ok());
  ExperimentRecord experiment = Running(3);
  experiment.id = 3;
  EXPECT_TRUE(CheckCompletionExperiment(experiment, attempt).ok());
  EXPECT_EQ(CompletedAttemptName(attempt), "attempt 7 of experiment 3");
}

TEST(CheckCompletionTest, RejectsStaleTokenEndedAttemptAndEndedExperiment) {
  absl::Status st =
      CheckCompletionLease(Leased(AttemptState::kRunning), "tok-0");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "stale lease token for attempt 7 of experiment 3; its completion "
            "was rejected");

  st = CheckCompletionLease(Leased(AttemptState::kDone), "tok-1");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "attempt 7 of experiment 3 already ended (done); its completion "
            "was rejected");

  ExperimentRecord cancelled = Running(3);
  cancelled.id = 3;
  cancelled.state = ExperimentState::kCancelled;
  st = CheckCompletionExperiment(cancelled, Leased(AttemptState::kRunning));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "experiment 3 is cancelled, not running; completion of attempt 7 "
            "of experiment 3 rejected");
}

TEST(CheckCancellableTest, OnlyQueuedAndRunningExperimentsCanBeCancelled) {
  ExperimentRecord e = Running(3);
  for (ExperimentState s :
       {ExperimentState::kQueued, ExperimentState::kRunning}) {
    e.state = s;
    EXPECT_TRUE(CheckCancellable(e).ok()) << ExperimentStateName(s);
  }
  for (ExperimentState s : {ExperimentState::kDone, ExperimentState::kFailed,
                            ExperimentState::kCancelled}) {
    e.state = s;
    const absl::Status st = CheckCancellable(e);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition)
        << ExperimentStateName(s);
    EXPECT_EQ(st.message(), std::string("experiment 42 already ended (") +
                                ExperimentStateName(s) +
                                "); there is nothing to cancel");
  }
}

// ---- EndAttempt ----

TEST(EndAttemptRulesTest, OnlyTheLiveAttemptOfARunningExperimentMovesIt) {
  EXPECT_TRUE(EndAttemptEndsAttempt(Leased(AttemptState::kRunning)));
  for (AttemptState s :
       {AttemptState::kDone, AttemptState::kLost, AttemptState::kHostNotReady,
        AttemptState::kFailed, AttemptState::kCancelled}) {
    EXPECT_FALSE(EndAttemptEndsAttempt(Leased(s))) << AttemptStateName(s);
  }
  ExperimentRecord e = Running(3);
  EXPECT_TRUE(EndAttemptMovesExperiment(e));
  for (ExperimentState s :
       {ExperimentState::kQueued, ExperimentState::kDone,
        ExperimentState::kFailed, ExperimentState::kCancelled}) {
    e.state = s;
    EXPECT_FALSE(EndAttemptMovesExperiment(e)) << ExperimentStateName(s);
  }
}

TEST(CountAttemptsTest, HostNotReadyAttemptsDoNotCount) {
  const AttemptCounts counts = CountAttempts(5, 2);
  EXPECT_EQ(counts.host_not_ready, 2);
  EXPECT_EQ(counts.counted, 3);
  const AttemptCounts none = CountAttempts(1, 0);
  EXPECT_EQ(none.host_not_ready, 0);
  EXPECT_EQ(none.counted, 1);
}

TEST(NextMigrationTest, StepsTowardTheTargetAndStopsThere) {
  const int latest = LatestSchemaVersion();
  ASSERT_GE(latest, 2);
  absl::StatusOr<const Migration*> first = NextMigration(0, latest, "db");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_NE(*first, nullptr);
  EXPECT_EQ((*first)->version, 1);
  absl::StatusOr<const Migration*> second = NextMigration(1, latest, "db");
  ASSERT_TRUE(second.ok() && *second != nullptr);
  EXPECT_EQ((*second)->version, 2);
  absl::StatusOr<const Migration*> at_target = NextMigration(1, 1, "db");
  ASSERT_TRUE(at_target.ok());
  EXPECT_EQ(*at_target, nullptr);
  absl::StatusOr<const Migration*> done = NextMigration(latest, latest, "db");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(*done, nullptr);
}

TEST(NextMigrationTest, ADatabaseFromANewerBuildIsRefusedByName) {
  const int latest = LatestSchemaVersion();
  absl::StatusOr<const Migration*> newer =
      NextMigration(latest + 1, latest, "store database /srv/bf.db");
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(newer.status().message(),
            "store database /srv/bf.db has schema version " +
                std::to_string(latest + 1) +
                " but this benchfleet build knows versions up to " +
                std::to_string(latest) +
                "; it was written by a newer benchfleet: upgrade this "
                "controller, or point it at another database");
}

}  // namespace
}  // namespace benchfleet
