#include "common/clock.h"

namespace benchfleet {

absl::Time RealClock::Now() { return absl::Now(); }
void RealClock::SleepFor(absl::Duration d) { absl::SleepFor(d); }
RealClock* RealClock::Get() {
  static RealClock* clock = new RealClock();
  return clock;
}

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  const absl::Time until = now_ + d;
  auto reached = [this, until]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return now_ >= until;
  };
  ++sleepers_;
  ++sleep_calls_;
  auto deadline = deadlines_.insert(until);
  mu_.Await(absl::Condition(&reached));
  deadlines_.erase(deadline);
  --sleepers_;
}

int FakeClock::sleepers() {
  absl::MutexLock lock(&mu_);
  return sleepers_;
}

void FakeClock::AwaitSleepCalls(int64_t n) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return sleep_calls_ >= n;
  };
  mu_.Await(absl::Condition(&enough));
}

void FakeClock::AwaitSleepers(int n) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return sleepers_ >= n;
  };
  mu_.Await(absl::Condition(&enough));
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return deadlines_.empty() || *deadlines_.begin() > now_;
  };
  mu_.Await(absl::Condition(&settled));
}

}  // namespace benchfleet
