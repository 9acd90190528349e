// ProgressPacer: decides when the Dispatcher may publish an experiment's
// progress to its watchers. Progress within an attempt is published at most
// once per interval per experiment, so that watchers and their terminals do not
// compete with short benchmark runs for the host's CPUs after every step; what
// is held back is pending and flushed by a later Flush. State changes bypass
// the pacing (the caller publishes them at once and calls Published).
// Time comes from the caller (the dispatcher's Clock), so tests step it.
// Not thread-safe; externally synchronized (the dispatcher's loop).
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_PROGRESS_PACER_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_PROGRESS_PACER_H_

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "absl/time/time.h"

namespace benchfleet {

class ProgressPacer {
 public:
  explicit ProgressPacer(absl::Duration interval) : interval_(interval) {}

  // True when progress of `experiment_id` may be published at `now` (nothing
  // was published for it within the interval); otherwise marks it pending and
  // returns false.
  bool MayPublish(int64_t experiment_id, absl::Time now);
  // Records a publication of `experiment_id` at `now` (progress or state
  // change); it is no longer pending.
  void Published(int64_t experiment_id, absl::Time now);
  // Forgets `experiment_id` (it ended): its next publication is not paced.
  void Forget(int64_t experiment_id);
  // The pending experiments whose interval has passed at `now`, in id order;
  // the caller publishes them (and so calls Published).
  std::vector<int64_t> Due(absl::Time now) const;
  bool pending(int64_t experiment_id) const {
    return pending_.contains(experiment_id);
  }

 private:
  absl::Duration interval_;
  std::map<int64_t, absl::Time> last_publish_;
  std::set<int64_t> pending_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_PROGRESS_PACER_H_
