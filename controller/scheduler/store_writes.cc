#include "controller/scheduler/store_writes.h"

#include <utility>
#include <vector>

#include "spdlog/spdlog.h"

namespace benchfleet {

bool StoreMayRecover(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
         absl::IsAborted(s) || absl::IsResourceExhausted(s);
}

absl::Status StoreWrites::Run(const std::string& key, const std::string& what,
                              Write write, absl::Time now) {
  kept_.erase(key);
  absl::Status st = write();
  if (!st.ok()) OnFailure(key, what, write, st, now);
  return st;
}

bool StoreWrites::OnFailure(const std::string& key, const std::string& what,
                            const Write& write, const absl::Status& st,
                            absl::Time now) {
  if (!StoreMayRecover(st)) {
    spdlog::error("could not {}: {}", what, st.ToString());
    ++failed_;
    return false;
  }
  spdlog::warn("could not {} ({}); trying again in {}", what, st.ToString(),
               absl::FormatDuration(retry_interval_));
  if (kept_.empty()) next_retry_ = now + retry_interval_;
  kept_[key] = Kept{what, write};
  return true;
}

void StoreWrites::RetryDue(absl::Time now) {
  if (kept_.empty() || now < next_retry_) return;
  next_retry_ = now + retry_interval_;
  std::map<std::string, Kept> batch = std::exchange(kept_, {});
  for (auto& [key, k] : batch) {
    ++retried_;
    if (absl::Status st = k.write(); !st.ok())
      OnFailure(key, k.what, k.write, st, now);
  }
}

}  // namespace benchfleet
