#include "controller/scheduler/progress_pacer.h"

namespace benchfleet {

bool ProgressPacer::MayPublish(int64_t experiment_id, absl::Time now) {
  auto last = last_publish_.find(experiment_id);
  if (last != last_publish_.end() && now - last->second < interval_) {
    pending_.insert(experiment_id);
    return false;
  }
  return true;
}

void ProgressPacer::Published(int64_t experiment_id, absl::Time now) {
  pending_.erase(experiment_id);
  last_publish_[experiment_id] = now;
}

void ProgressPacer::Forget(int64_t experiment_id) {
  pending_.erase(experiment_id);
  last_publish_.erase(experiment_id);
}

std::vector<int64_t> ProgressPacer::Due(absl::Time now) const {
  std::vector<int64_t> due;
  for (int64_t id : pending_) {
    auto last = last_publish_.find(id);
    if (last == last_publish_.end() || now - last->second >= interval_)
      due.push_back(id);
  }
  return due;
}

}  // namespace benchfleet
