// Baseline drift: did this attempt's baseline median move more than its own
// noise since the last attempt of the same experiment on the same host
// fingerprint and commit (DESIGN.md §4, "environment changed")? The attempt
// driver asks after its measured runs; the dispatcher finds the previous
// attempt in the store's history and hands it over as a BaselineReference.
//
// Pure functions over plain structs: no I/O, no clock, deterministic.
// Thread-safe.
//
// What "noise" means here. Each side's spread is estimated robustly as
// sigma = 1.4826 * MAD (the raw median absolute deviation scaled to a normal
// standard deviation; from an older report without a MAD, sigma = CV * median).
// The standard error of a median is taken as 1.2533 * sigma / sqrt(n) (its
// asymptotic value for normal data). The baseline moved when
//
//   |median_now - median_before| > noise,
//   noise = max(z * sqrt(se_now^2 + se_before^2), floor * median_before)
//
// with z = 1.96: the change lies outside the 95 % interval of the difference
// of the two medians. The floor (default 1 % of the previous median, half the
// smallest verdict threshold) keeps a very quiet baseline (MAD 0) from being
// flagged for moves no verdict could notice. An input is not compared when
// either side has fewer than `min_runs` runs (a MAD of 1 or 2 values says
// nothing about spread), a non-positive median, or is missing on one side.
#ifndef BENCHFLEET_CONTROLLER_HISTORY_BASELINE_DRIFT_H_
#define BENCHFLEET_CONTROLLER_HISTORY_BASELINE_DRIFT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace benchfleet::history {

// The baseline's statistics on one input, as an earlier report stored them.
struct BaselineStats {
  std::string input;
  int64_t n = 0;
  double median = 0;
  // Raw MAD (not scaled); nullopt when the report predates it, and then
  // `cv` stands in for the spread.
  std::optional<double> mad;
  double cv = 0;
};

struct DriftPolicy {
  double z = 1.96;               // two-sided 95 %
  double floor_fraction = 0.01;  // smallest move that counts, of the median
  int64_t min_runs = 3;          // on each side
};

// The verdict on one input.
struct InputDrift {
  std::string input;
  bool compared = false;  // false: see `why_not`
  std::string why_not;
  bool moved = false;  // |change| > noise
  double previous_median = 0;
  double median = 0;
  double change = 0;  // median / previous_median - 1
  double noise = 0;   // the threshold, as a fraction of previous_median
};

// Compares `samples` (this attempt's baseline values on one input) with
// `previous`. Never fails: an input that cannot be compared says why.
InputDrift CompareBaseline(absl::Span<const double> samples,
                           const BaselineStats& previous,
                           const DriftPolicy& policy = {});

// Compares every input of `samples` (input -> values) that `previous` knows
// too; inputs on one side only come back with compared = false. Ordered by
// input name.
std::vector<InputDrift> CompareBaselines(
    const std::map<std::string, std::vector<double>>& samples,
    const std::vector<BaselineStats>& previous, const DriftPolicy& policy = {});

// Reads the baseline's per-input statistics from a stored report
// (ReportToJson): its "baseline_inputs" section, or, for reports written
// before it existed, the baseline columns of the candidates' input rows.
// Also returns the report's primary metric in `*metric` when not null.
// InvalidArgument when the text is not a report or holds no baseline row.
absl::StatusOr<std::vector<BaselineStats>> BaselineStatsFromReportJson(
    const std::string& report_json, std::string* metric = nullptr);

// What the attempt driver compares its baseline with: the previous comparable
// attempt, or why there is none.
struct BaselineReference {
  bool available = false;
  // One line for the report when !available, e.g. "this attempt's
  // environment has no host fingerprint; the baseline was not compared with
  // history".
  std::string why_not;
  bool no_history = false;  // available = false only because none was found
  int64_t experiment_id = 0;
  int64_t experiment_number = 0;
  absl::Time completed_at = absl::InfinitePast();
  std::string metric;
  std::vector<BaselineStats> inputs;
};

// A completed attempt of the same experiment, as the history lists it.
struct PastAttempt {
  int64_t experiment_id = 0;
  int64_t experiment_number = 0;
  bool completed = false;  // experiment and attempt both done
  absl::Time completed_at = absl::InfinitePast();
  std::string environment_json;
  std::string report_json;
};

// Picks the newest completed attempt in `history` (oldest first, as
// Store::ListHistory returns it) whose environment has the same non-empty
// "fingerprint" and "commit" as `current_environment_json` ("commit" is a
// string, or an object of commits per variant that must match as a whole),
// skipping `current_experiment_id` and reports without baseline rows.
BaselineReference FindBaselineReference(
    const std::string& current_environment_json, int64_t current_experiment_id,
    const std::vector<PastAttempt>& history);

}  // namespace benchfleet::history

#endif  // BENCHFLEET_CONTROLLER_HISTORY_BASELINE_DRIFT_H_
