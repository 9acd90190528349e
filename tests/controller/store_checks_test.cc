// The Store contract's rules kept in one place for both backends
// (controller/store/store_checks.h), without a database: what an experiment
// becomes when its live attempt ends, and which end states EndAttempt takes.
// The same rules are checked through each backend in store_test.cc.
#include "controller/store/store_checks.h"

#include <string>

#include "absl/status/status.h"
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

}  // namespace
}  // namespace benchfleet
