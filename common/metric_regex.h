// Custom metric regexes (`benchmark.metrics.custom[].regex`): the one place
// that says how they are compiled, so the spec loader validates exactly what
// the agent's runner applies to a run's stdout. RE2, not std::regex: linear
// time on untrusted output, and no backreferences or lookaround. Used by
// common/spec_loader.cc and agent/runner/process_runner.cc. Pure functions;
// thread-safe.
#ifndef BENCHFLEET_COMMON_METRIC_REGEX_H_
#define BENCHFLEET_COMMON_METRIC_REGEX_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "re2/re2.h"

namespace benchfleet {

// Compiles `pattern` as the agent applies it: RE2 with ^ and $ matching at
// line boundaries ((?m)) and errors not logged. Never null; the caller checks
// ok() (and reads the value from the first capture group).
std::unique_ptr<RE2> CompileMetricRegex(absl::string_view pattern);

// Compiles `pattern` with CompileMetricRegex and returns its number of capture
// groups, or InvalidArgument whose message is RE2's error about the pattern as
// written (e.g. "invalid escape sequence: \1").
absl::StatusOr<int> MetricRegexCaptureGroups(absl::string_view pattern);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_METRIC_REGEX_H_
