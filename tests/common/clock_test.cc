#include "common/clock.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(FakeClockTest, AdvanceMovesNow) {
  FakeClock clock(absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
}

TEST(FakeClockTest, SleepForReturnsOnlyAfterAdvance) {
  FakeClock clock(absl::FromUnixSeconds(0));
  std::atomic<bool> woke{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Seconds(10));
    woke = true;
  });
  clock.AwaitSleepers(1);
  // Advance returns once the sleepers that are due have left SleepFor, so
  // these counts are exact whatever the scheduler does.
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(clock.sleepers(), 1) << "woke after 9 s of its 10 s";
  EXPECT_FALSE(woke.load());
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(clock.sleepers(), 0) << "still asleep after its 10 s";
  sleeper.join();
  EXPECT_TRUE(woke.load());
}

TEST(FakeClockTest, AdvanceWakesExactlyTheSleepersThatAreDue) {
  FakeClock clock(absl::FromUnixSeconds(0));
  std::thread short_sleep([&] { clock.SleepFor(absl::Seconds(1)); });
  std::thread long_sleep([&] { clock.SleepFor(absl::Seconds(5)); });
  clock.AwaitSleepers(2);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(clock.sleepers(), 1);
  clock.Advance(absl::Seconds(3));
  EXPECT_EQ(clock.sleepers(), 1);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(clock.sleepers(), 0);
  short_sleep.join();
  long_sleep.join();
}

TEST(FakeClockTest, ZeroSleepReturnsAtOnce) {
  FakeClock clock(absl::FromUnixSeconds(0));
  clock.SleepFor(absl::ZeroDuration());
  clock.SleepFor(absl::Seconds(-1));
  EXPECT_EQ(clock.sleepers(), 0);
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(0));
}

}  // namespace
}  // namespace benchfleet
