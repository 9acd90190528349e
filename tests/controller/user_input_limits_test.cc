// The per-caller bounds of the user API (controller/service/
// user_input_limits.h), with an injected time: the burst, the refill, one
// caller's flood leaving others alone, the cap on open watches and the
// messages that say what to do.
#include "controller/service/user_input_limits.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

UserInputLimits Small() {
  UserInputLimits l;
  l.requests_per_second = 10;
  l.burst = 5;
  l.max_watch_streams = 2;
  return l;
}

TEST(UserCallLimiterTest, RefusesPastTheBurstAndRefillsWithTime) {
  UserCallLimiter limiter(Small());
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(limiter.AdmitCall("user 'alice'", t0).ok()) << i;
  const absl::Status refused = limiter.AdmitCall("user 'alice'", t0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("user 'alice'"));
  EXPECT_THAT(refused.message(), HasSubstr("calls per second"));
  EXPECT_THAT(refused.message(), HasSubstr("slow down"));
  // 10 per second: one more after 100 ms, not two.
  const absl::Time t1 = t0 + absl::Milliseconds(100);
  EXPECT_TRUE(limiter.AdmitCall("user 'alice'", t1).ok());
  EXPECT_FALSE(limiter.AdmitCall("user 'alice'", t1).ok());
}

TEST(UserCallLimiterTest, OneCallersFloodLeavesOthersAlone) {
  UserCallLimiter limiter(Small());
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 100; ++i) (void)limiter.AdmitCall("user 'alice'", t0);
  EXPECT_FALSE(limiter.AdmitCall("user 'alice'", t0).ok());
  EXPECT_TRUE(limiter.AdmitCall("user 'bob'", t0).ok());
  EXPECT_TRUE(limiter.AdmitCall("address ipv4:10.0.0.5", t0).ok());
}

TEST(UserCallLimiterTest, CapsOpenWatchesPerCallerUntilOneEnds) {
  UserCallLimiter limiter(Small());
  absl::Time t = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(limiter.AdmitWatch("user 'alice'", t).ok());
  EXPECT_TRUE(limiter.AdmitWatch("user 'alice'", t).ok());
  const absl::Status third = limiter.AdmitWatch("user 'alice'", t);
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.message(), HasSubstr("2 open watch streams"));
  EXPECT_THAT(third.message(), HasSubstr("end some"));
  EXPECT_TRUE(limiter.AdmitWatch("user 'bob'", t).ok());
  limiter.EndWatch("user 'alice'");
  t += absl::Seconds(1);
  EXPECT_TRUE(limiter.AdmitWatch("user 'alice'", t).ok());
}

TEST(UserCallLimiterTest, ForgetsIdleCallersPastItsBoundButKeepsWatchCounts) {
  UserInputLimits l = Small();
  l.max_callers = 3;
  UserCallLimiter limiter(l);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  ASSERT_TRUE(limiter.AdmitWatch("watcher", t0).ok());
  ASSERT_TRUE(limiter.AdmitWatch("watcher", t0).ok());
  for (int i = 0; i < 50; ++i)
    EXPECT_TRUE(limiter.AdmitCall("address " + std::to_string(i), t0).ok());
  // The watcher's two streams are still counted.
  EXPECT_FALSE(limiter.AdmitWatch("watcher", t0 + absl::Seconds(1)).ok());
}

}  // namespace
}  // namespace benchfleet
