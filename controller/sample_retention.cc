#include "controller/sample_retention.h"

#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/spec_loader.h"

namespace benchfleet {

SampleRetention::SampleRetention(DeleteSamplesBefore delete_before,
                                 Clock* clock, SampleRetentionOptions options)
    : delete_before_(std::move(delete_before)),
      clock_(clock),
      options_(options) {}

absl::StatusOr<std::optional<int64_t>> SampleRetention::RunIfDue() {
  if (options_.keep <= absl::ZeroDuration()) return std::nullopt;
  const absl::Time now = clock_->Now();
  if (now < next_pass_) return std::nullopt;
  const absl::Time cutoff = now - options_.keep;
  absl::StatusOr<int64_t> deleted = delete_before_(cutoff);
  if (!deleted.ok()) return deleted.status();
  next_pass_ = now + options_.every;
  last_cutoff_ = cutoff;
  return *deleted;
}

absl::StatusOr<absl::Duration> ParseSampleRetention(std::string_view text) {
  const std::string s(text);
  if (s == "0") return absl::ZeroDuration();
  if (!s.empty() && s.back() == 'd') {
    double days = 0;
    if (absl::SimpleAtod(s.substr(0, s.size() - 1), &days) && days >= 0 &&
        days < 1e6) {
      return absl::Hours(24 * days);
    }
  } else {
    absl::StatusOr<absl::Duration> d = ParseDuration(s);
    if (d.ok()) return d;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "sample retention '", s,
      "' is not a period such as 30d, 12h or 90m (0 keeps samples forever)"));
}

}  // namespace benchfleet
