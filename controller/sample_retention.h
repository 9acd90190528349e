// SampleRetention: the controller's retention of host samples (DESIGN.md §5,
// `--sample-retention`). Samples are the bulk of the store (10 per second per
// busy agent); runs keep their host summaries, so old samples can go. A pass
// deletes every sample taken more than `keep` before the clock's now; the
// controller runs one at start-up and then one every `every` (hourly).
//
// This is the retention rule only (when a pass is due, which cutoff it uses);
// the deletion itself is a DeleteSamplesBefore function the caller supplies —
// the controller binds it to Store::DeleteSamplesBefore — so this file does
// not depend on the store.
//
// Not thread-safe; one thread (the controller's retention thread) owns it.
#ifndef BENCHFLEET_CONTROLLER_SAMPLE_RETENTION_H_
#define BENCHFLEET_CONTROLLER_SAMPLE_RETENTION_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace benchfleet {

inline constexpr absl::Duration kDefaultSampleRetention = absl::Hours(24 * 30);

struct SampleRetentionOptions {
  // Samples older than this are deleted; zero keeps them forever.
  absl::Duration keep = kDefaultSampleRetention;
  absl::Duration every = absl::Hours(1);
};

// Deletes the samples taken before `cutoff`; returns how many, or the store's
// error. (Store::DeleteSamplesBefore has this contract.)
using DeleteSamplesBefore =
    std::function<absl::StatusOr<int64_t>(absl::Time cutoff)>;

class SampleRetention {
 public:
  // `clock` must outlive this; `delete_before` is called on the thread that
  // calls RunIfDue, once per due pass.
  SampleRetention(DeleteSamplesBefore delete_before, Clock* clock,
                  SampleRetentionOptions options);

  // Runs a pass if one is due: on the first call, then once `every` has passed
  // on the clock since the last pass that was due. Returns how many samples it
  // deleted, std::nullopt when no pass was due (or `keep` is zero; then
  // `delete_before` is not called), or `delete_before`'s error (the pass is
  // then retried on the next call).
  absl::StatusOr<std::optional<int64_t>> RunIfDue();

  // The cutoff of the last pass (samples before it were deleted).
  absl::Time last_cutoff() const { return last_cutoff_; }

 private:
  DeleteSamplesBefore delete_before_;
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
