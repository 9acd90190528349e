#include "common/metric_regex.h"

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "re2/re2.h"

namespace benchfleet {
namespace {

RE2::Options MetricRegexOptions() {
  RE2::Options options;
  options.set_log_errors(false);
  return options;
}

}  // namespace

std::unique_ptr<RE2> CompileMetricRegex(absl::string_view pattern) {
  return std::make_unique<RE2>(absl::StrCat("(?m)", pattern),
                               MetricRegexOptions());
}

absl::StatusOr<int> MetricRegexCaptureGroups(absl::string_view pattern) {
  const std::unique_ptr<RE2> re = CompileMetricRegex(pattern);
  if (re->ok()) return re->NumberOfCapturingGroups();
  // Some of RE2's messages quote the whole pattern, which would then show the
  // "(?m)" prefix the user never wrote: take the text from the pattern as
  // written. The prefix is a complete flag group, so it compiles exactly when
  // the pattern alone does.
  const RE2 as_written(re2::StringPiece(pattern.data(), pattern.size()),
                       MetricRegexOptions());
  return absl::InvalidArgumentError(as_written.ok() ? re->error()
                                                    : as_written.error());
}

}  // namespace benchfleet
