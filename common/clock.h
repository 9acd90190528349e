// Clock: the single source of time for logic that waits, expires or schedules
// (leases, heartbeats, cooldowns). Production code uses RealClock; tests inject
// FakeClock and advance it explicitly. Both are thread-safe.
#ifndef BENCHFLEET_COMMON_CLOCK_H_
#define BENCHFLEET_COMMON_CLOCK_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace benchfleet {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, for timestamps that are stored and shown.
  virtual absl::Time Now() = 0;
  // Blocks the caller for `d` of this clock's time (FakeClock: until Advance
  // passes it).
  virtual void SleepFor(absl::Duration d) = 0;
};

class RealClock : public Clock {
 public:
  absl::Time Now() override;
  void SleepFor(absl::Duration d) override;
  // A process-wide instance for composition roots (stateless, so sharing is
  // safe).
  static RealClock* Get();
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));
  absl::Time Now() override;
  // Returns once another thread has advanced the clock by at least `d`.
  void SleepFor(absl::Duration d) override;
  // Moves the clock and returns once every sleeper whose time has come has
  // left SleepFor, so that what a test sees afterwards does not depend on
  // thread scheduling.
  void Advance(absl::Duration d);
  // Threads inside SleepFor now (after Advance: exactly those still due).
  int sleepers();
  // Blocks until at least `n` threads are inside SleepFor (so a test can
  // advance the clock knowing the sleeper has already read its start time).
  void AwaitSleepers(int n);
  // Blocks until SleepFor has been called at least `n` times in total (a test
  // driving the clock advances once per sleep this way).
  void AwaitSleepCalls(int64_t n);

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int sleepers_ ABSL_GUARDED_BY(mu_) = 0;
  std::multiset<absl::Time> deadlines_ ABSL_GUARDED_BY(mu_);  // of sleepers
  int64_t sleep_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_CLOCK_H_
