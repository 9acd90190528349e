#include "controller/service/user_input_limits.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

absl::Status TooFast(const UserInputLimits& limits, const std::string& caller) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "more than ", limits.requests_per_second, " calls per second (bursts of ",
      limits.burst, ") from ", caller,
      "; slow down: wait a second and retry, and poll less often (`benchfleet "
      "watch` follows an experiment with one call)"));
}

}  // namespace

UserCallLimiter::PerCaller& UserCallLimiter::FindLocked(
    const std::string& caller) {
  auto it = callers_.find(caller);
  if (it != callers_.end()) return it->second;
  if (callers_.size() >= limits_.max_callers) {
    // Forgetting an idle caller only refills its bucket; one with open
    // watches must keep its count.
    absl::erase_if(callers_,
                   [](const auto& entry) { return entry.second.watches == 0; });
  }
  return callers_.try_emplace(caller, limits_).first->second;
}

absl::Status UserCallLimiter::AdmitCall(const std::string& caller,
                                        absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (FindLocked(caller).rate.Take(now)) return absl::OkStatus();
  return TooFast(limits_, caller);
}

absl::Status UserCallLimiter::AdmitWatch(const std::string& caller,
                                         absl::Time now) {
  absl::MutexLock lock(&mu_);
  PerCaller& c = FindLocked(caller);
  if (c.watches >= limits_.max_watch_streams) {
    return absl::ResourceExhaustedError(absl::StrCat(
        caller, " already has ", c.watches,
        " open watch streams, the most the controller allows; end some "
        "(`benchfleet watch` sessions) before starting another"));
  }
  if (!c.rate.Take(now)) return TooFast(limits_, caller);
  ++c.watches;
  return absl::OkStatus();
}

void UserCallLimiter::EndWatch(const std::string& caller) {
  absl::MutexLock lock(&mu_);
  auto it = callers_.find(caller);
  if (it != callers_.end() && it->second.watches > 0) --it->second.watches;
}

}  // namespace benchfleet
