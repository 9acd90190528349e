// SampleRetention: the controller's retention of host samples (DESIGN.md §5,
// `--sample-retention`). Samples are the bulk of the store (10 per second per
// busy agent); runs keep their host summaries, so old samples can go. A pass
// deletes every sample taken more than `keep` before the clock's now; the
// controller runs one at start-up and then one every `every` (hourly).
//
// Not thread-safe; one thread (the controller's retention thread) owns it.
#ifndef BENCHFLEET_CONTROLLER_SAMPLE_RETENTION_H_
#define BENCHFLEET_CONTROLLER_SAMPLE_RETENTION_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/store/store.h"

namespace benchfleet {

inline constexpr absl::Duration kDefaultSampleRetention = absl::Hours(24 * 30);

struct SampleRetentionOptions {
  // Samples older than this are deleted; zero keeps them forever.
  absl::Duration keep = kDefaultSampleRetention;
  absl::Duration every = absl::Hours(1);
};

class SampleRetention {
 public:
  // `store` and `clock` must outlive this.
  SampleRetention(Store* store, Clock* clock, SampleRetentionOptions options);

  // Runs a pass if one is due: on the first call, then once `every` has passed
  // on the clock since the last pass that was due. Returns how many samples it
  // deleted, std::nullopt when no pass was due (or `keep` is zero), or the
  // store's error (the pass is then retried on the next call).
  absl::StatusOr<std::optional<int64_t>> RunIfDue();

  // The cutoff of the last pass (samples before it were deleted).
  absl::Time last_cutoff() const { return last_cutoff_; }

 private:
  Store* store_;
  Clock* clock_;
  SampleRetentionOptions options_;
  absl::Time next_pass_ = absl::InfinitePast();
  absl::Time last_cutoff_ = absl::InfinitePast();
};

// Parses a retention period: a duration as common's ParseDuration takes it
// ("12h", "90m"), a whole or fractional number of days ("30d", "1.5d"), or
// "0" (keep forever). InvalidArgument with what is expected otherwise.
absl::StatusOr<absl::Duration> ParseSampleRetention(std::string_view text);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SAMPLE_RETENTION_H_
