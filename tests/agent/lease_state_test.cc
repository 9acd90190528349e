// LeaseState: the agent's lease bookkeeping and the cut-off rule, driven by a
// FakeClock's time. No threads, no stream, no waiting.
#include "agent/service/lease_state.h"

#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using Decision = LeaseState::LeaseDecision;
using StepDecision = LeaseState::StepDecision;

v1::Lease MakeLease(int64_t attempt, const std::string& token) {
  v1::Lease l;
  l.set_attempt_id(attempt);
  l.set_lease_token(token);
  l.set_workdir("/tmp");
  return l;
}

v1::StepOrder MakeStep(int64_t attempt, const std::string& token, int64_t seq) {
  v1::StepOrder o;
  o.set_attempt_id(attempt);
  o.set_lease_token(token);
  o.set_step_seq(seq);
  return o;
}

v1::StepResult ResultFor(const v1::StepOrder& o) {
  v1::StepResult r;
  r.set_attempt_id(o.attempt_id());
  r.set_lease_token(o.lease_token());
  r.set_step_seq(o.step_seq());
  return r;
}

// A lease accepted with its environment recorded, as the agent holds it once
// the controller has its acceptance.
void Hold(LeaseState& s, int64_t attempt, const std::string& token) {
  ASSERT_EQ(s.OnLease(MakeLease(attempt, token)).kind,
            Decision::kRecordEnvironment);
  ASSERT_TRUE(s.HasWork());
  LeaseState::Work w = s.TakeWork();
  ASSERT_TRUE(w.lease.has_value());
  ASSERT_TRUE(s.EnvironmentRecorded(*w.lease, v1::AttemptEnvironment()));
}

TEST(LeaseStateTest, CutOffOnlyWhileDisconnectedLongerThanTheLeaseTimeout) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  s.Connected();
  clock.Advance(absl::Hours(1));
  EXPECT_FALSE(s.CutOffTooLong(clock.Now())) << "connected: never cut off";

  s.Disconnected(clock.Now());
  clock.Advance(absl::Seconds(15));
  EXPECT_FALSE(s.CutOffTooLong(clock.Now())) << "exactly the timeout: not yet";
  clock.Advance(absl::Microseconds(1));
  EXPECT_TRUE(s.CutOffTooLong(clock.Now()));

  // Reconnecting (welcomed) clears it.
  s.Connected();
  EXPECT_FALSE(s.CutOffTooLong(clock.Now()));
}

TEST(LeaseStateTest, FailedReconnectsDoNotRestartTheCutOff) {
  FakeClock clock;
  LeaseState s(absl::Seconds(10), clock.Now());
  Hold(s, 7, "t");
  s.Connected();
  s.Disconnected(clock.Now());
  for (int i = 0; i < 6; ++i) {
    clock.Advance(absl::Seconds(2));
    s.Disconnected(clock.Now());  // a stream that never got a welcome
  }
  EXPECT_TRUE(s.CutOffTooLong(clock.Now()));
}

TEST(LeaseStateTest, NoLeaseIsNeverCutOffAndTheWelcomeSetsTheTimeout) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  clock.Advance(absl::Hours(1));
  EXPECT_FALSE(s.CutOffTooLong(clock.Now())) << "no lease, nothing to drop";
  Hold(s, 3, "t");
  s.SetLeaseTimeout(absl::Hours(2));
  EXPECT_FALSE(s.CutOffTooLong(clock.Now()));
  s.SetLeaseTimeout(absl::Minutes(30));
  EXPECT_TRUE(s.CutOffTooLong(clock.Now()));
}

TEST(LeaseStateTest, DroppingTheLeaseStopsItsRunningStepAndForgetsIt) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  ASSERT_EQ(s.OnStep(MakeStep(7, "t", 1), nullptr), StepDecision::kQueued);
  ASSERT_EQ(s.OnStep(MakeStep(7, "t", 2), nullptr), StepDecision::kQueued);
  LeaseState::Work w = s.TakeWork();
  EXPECT_EQ(w.step.step_seq(), 1);
  EXPECT_TRUE(s.busy());

  clock.Advance(absl::Seconds(3));
  const LeaseState::Dropped d = s.DropLease(clock.Now());
  EXPECT_EQ(d.attempt_id, 7);
  EXPECT_TRUE(d.stop_running);
  EXPECT_FALSE(d.stop_recording);
  EXPECT_EQ(s.attempt_id(), 0);
  EXPECT_EQ(s.pending_count(), 0u);
  EXPECT_EQ(s.last_attempt_end(), clock.Now());
  // The step's result arrives after the drop: stale, not sent.
  EXPECT_FALSE(s.StepFinished(w.step, ResultFor(w.step)));
  EXPECT_FALSE(s.busy());
  EXPECT_TRUE(s.Unacked().empty());
}

TEST(LeaseStateTest, OneLeaseAtATime) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  const Decision d = s.OnLease(MakeLease(8, "u"));
  EXPECT_EQ(d.kind, Decision::kReject);
  EXPECT_EQ(d.reason,
            "this agent already holds the lease of attempt 7; one lease at a "
            "time");
  EXPECT_EQ(s.attempt_id(), 7);
}

TEST(LeaseStateTest, ARepeatedLeaseIsAnsweredWithTheRecordedEnvironment) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  ASSERT_EQ(s.OnLease(MakeLease(7, "t")).kind, Decision::kRecordEnvironment);
  // Repeated before the worker took it, and while it records: no answer yet.
  EXPECT_EQ(s.OnLease(MakeLease(7, "t")).kind, Decision::kAwaitEnvironment);
  LeaseState::Work w = s.TakeWork();
  ASSERT_TRUE(w.lease.has_value());
  EXPECT_FALSE(s.HasWork());
  EXPECT_EQ(s.OnLease(MakeLease(7, "t")).kind, Decision::kAwaitEnvironment);
  v1::AttemptEnvironment env;
  env.set_governor("performance");
  ASSERT_TRUE(s.EnvironmentRecorded(*w.lease, env));
  const Decision d = s.OnLease(MakeLease(7, "t"));
  EXPECT_EQ(d.kind, Decision::kAcceptWithEnv);
  EXPECT_EQ(d.environment.governor(), "performance");
}

TEST(LeaseStateTest, AnEnvironmentRecordedForADroppedLeaseIsNotSent) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  ASSERT_EQ(s.OnLease(MakeLease(7, "t")).kind, Decision::kRecordEnvironment);
  LeaseState::Work w = s.TakeWork();
  const LeaseState::Dropped d = s.DropLease(clock.Now());
  EXPECT_TRUE(d.stop_recording);
  EXPECT_FALSE(s.EnvironmentRecorded(*w.lease, v1::AttemptEnvironment()));
}

TEST(LeaseStateTest, StepsOutsideTheLeaseAreIgnoredAndDuplicatesQueuedOnce) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  EXPECT_EQ(s.OnStep(MakeStep(8, "t", 1), nullptr), StepDecision::kNotLeased);
  EXPECT_EQ(s.OnStep(MakeStep(7, "old", 1), nullptr), StepDecision::kNotLeased);
  EXPECT_EQ(s.OnStep(MakeStep(7, "t", 1), nullptr), StepDecision::kQueued);
  EXPECT_EQ(s.OnStep(MakeStep(7, "t", 1), nullptr), StepDecision::kKnown);
  EXPECT_EQ(s.pending_count(), 1u);
  LeaseState::Work w = s.TakeWork();
  EXPECT_EQ(s.OnStep(MakeStep(7, "t", 1), nullptr), StepDecision::kKnown)
      << "running";
}

TEST(LeaseStateTest, ResultsAreKeptUntilAcknowledgedAndResentOnRequest) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  ASSERT_EQ(s.OnStep(MakeStep(7, "t", 1), nullptr), StepDecision::kQueued);
  LeaseState::Work w = s.TakeWork();
  v1::StepResult result = ResultFor(w.step);
  result.set_wall_ns(1234);
  ASSERT_TRUE(s.StepFinished(w.step, result));
  ASSERT_EQ(s.Unacked().size(), 1u);
  EXPECT_EQ(s.Unacked()[0].wall_ns(), 1234);

  // The controller orders the step again: it lost the result.
  v1::StepResult resend;
  EXPECT_EQ(s.OnStep(MakeStep(7, "t", 1), &resend), StepDecision::kResend);
  EXPECT_EQ(resend.wall_ns(), 1234);

  s.OnAck(7, 1);
  EXPECT_TRUE(s.Unacked().empty());
  EXPECT_EQ(s.OnStep(MakeStep(7, "t", 1), &resend), StepDecision::kKnown)
      << "done and acknowledged: not run again";
}

TEST(LeaseStateTest, RevokeDropsPendingOrdersAndSilencesTheRunningOne) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  for (int seq = 1; seq <= 3; ++seq)
    ASSERT_EQ(s.OnStep(MakeStep(7, "t", seq), nullptr), StepDecision::kQueued);
  LeaseState::Work w = s.TakeWork();  // step 1 runs
  v1::Revoke wrong_token;
  wrong_token.set_attempt_id(7);
  wrong_token.set_lease_token("old");
  wrong_token.add_step_seq(1);
  EXPECT_FALSE(s.OnRevoke(wrong_token));

  v1::Revoke revoke;
  revoke.set_attempt_id(7);
  revoke.set_lease_token("t");
  revoke.add_step_seq(1);
  revoke.add_step_seq(3);
  EXPECT_TRUE(s.OnRevoke(revoke)) << "the running step must be stopped";
  EXPECT_EQ(s.pending_count(), 1u);
  EXPECT_FALSE(s.StepFinished(w.step, ResultFor(w.step)))
      << "no result for a revoked step";
  w = s.TakeWork();
  EXPECT_EQ(w.step.step_seq(), 2);
  EXPECT_TRUE(s.StepFinished(w.step, ResultFor(w.step)));
}

TEST(LeaseStateTest, HostNotReadyEndsTheAttemptsQueuedOrders) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  for (int seq = 1; seq <= 3; ++seq)
    ASSERT_EQ(s.OnStep(MakeStep(7, "t", seq), nullptr), StepDecision::kQueued);
  LeaseState::Work w = s.TakeWork();
  v1::StepResult r = ResultFor(w.step);
  r.set_host_not_ready(true);
  EXPECT_TRUE(s.StepFinished(w.step, r));
  EXPECT_FALSE(s.HasWork());
}

TEST(LeaseStateTest, OnlyTheFirstStepOfALeaseStartsTheAttempt) {
  FakeClock clock;
  LeaseState s(absl::Seconds(15), clock.Now());
  Hold(s, 7, "t");
  EXPECT_TRUE(s.StartAttemptIfFirst());
  EXPECT_FALSE(s.StartAttemptIfFirst());
  s.DropLease(clock.Now());
  Hold(s, 8, "u");
  EXPECT_TRUE(s.StartAttemptIfFirst());
}

}  // namespace
}  // namespace benchfleet
