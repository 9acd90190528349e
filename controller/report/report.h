// ExperimentReport: the structured outcome of one experiment attempt (per
// candidate verdict, per-input statistics) and its two renderings: the text
// block users read and JSON for
// `--json` and the store. Built by the attempt driver; rendered by the
// controller when an experiment ends. Plain data and pure functions;
// thread-compatible.
#ifndef BENCHFLEET_CONTROLLER_REPORT_REPORT_H_
#define BENCHFLEET_CONTROLLER_REPORT_REPORT_H_

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace benchfleet {

// How a metric's values are shown.
enum class MetricUnit { kNanoseconds, kBytes, kPlain };

// One input of a candidate's table. Counts are runs of the primary metric:
// "measured" is every run recorded, "kept" what the statistics used after
// outlier removal (which runs only on noisy inputs, so kept == measured
// elsewhere).
struct InputRow {
  std::string input;
  int64_t n_baseline = 0;   // kept (the JSON also has it as n_baseline_kept)
  int64_t n_candidate = 0;  // kept (the JSON also has it as n_candidate_kept)
  int64_t n_baseline_measured = 0;
  int64_t n_candidate_measured = 0;
  double baseline_median = 0;
  double candidate_median = 0;
  double baseline_cv = 0;
  double candidate_cv = 0;
  double change = 0;  // candidate/baseline - 1
  double ci_low = 0;  // 95 % bootstrap CI of the change
  double ci_high = 0;
  double p_value = 1;            // Mann-Whitney U
  double welch_p_value = 1;      // Welch's t
  int64_t outliers_removed = 0;  // both sides: the measured minus kept counts
  std::string verdict;           // per-input classification
};

struct CandidateReport {
  std::string variant;
  std::string verdict;  // KEEP | MAYBE | DISCARD | KILL | REJECT | INCONCLUSIVE
  std::string reason;
  double baseline_median =
      0;  // across inputs: weighted geometric mean of the medians
  double candidate_median = 0;
  // The aggregate change (weighted geometric mean of per-input ratios, minus
  // 1) and its p-value, whatever the verdict, when every compared input was
  // measurable (`change_measured`); otherwise 0 and 1, and shown as n/a.
  double change = 0;
  double p_value = 1;
  bool change_measured = false;
  // The aggregate change's 95% bootstrap CI (verdict::Decision::
  // aggregate_change_ci); shown when both bounds are finite.
  double change_ci_low = std::numeric_limits<double>::quiet_NaN();
  double change_ci_high = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::string> combines;
  std::string
      conflict;  // set when a compound variant does worse than its best part
  std::vector<InputRow> inputs;
  // KILL only: the planned runs its abort skipped and about how long they
  // would have taken (at least its own observed run time each).
  int64_t kill_skipped_runs = 0;
  int64_t kill_saved_ns = 0;
};

// One wait at the host's gates before a step, and what blocked it.
struct GateWait {
  std::string step;  // "measure fast on tiny (round 3)"
  int64_t wait_ns = 0;
  std::string blocked_by;  // the agent's blockers ("CPU at 81.0 °C, …")
};

// The baseline's own statistics on one input (kept in the stored report so a
// later attempt can compare its baseline with this one's).
struct BaselineInputRow {
  std::string input;
  int64_t n = 0;
  double median = 0;
  double mad = 0;  // raw median absolute deviation
  double cv = 0;
};

// One input of the history check of the baseline.
struct BaselineDriftRow {
  std::string input;
  double previous_median = 0;  // the reference attempt's
  double median = 0;           // this attempt's (the sample verdicts use)
  double change = 0;           // median / previous_median - 1
  double noise = 0;            // threshold, fraction of previous_median
  bool moved = false;
  int64_t n_remeasured = 0;  // 0: not re-measured
  double remeasured_median = 0;
  double remeasured_change = 0;  // vs previous_median
  bool remeasured_moved = false;
};

// "Environment changed" (DESIGN.md §4): did the baseline median move more
// than its noise since the last attempt on the same host fingerprint and
// commit?
struct EnvironmentCheck {
  // "" (not checked: the attempt failed), "not-compared", "no-history",
  // "unchanged", "changed", "transient" (moved, then back within noise).
  std::string status;
  int64_t reference_experiment_id = 0;
  int64_t reference_experiment_number = 0;
  std::vector<BaselineDriftRow> inputs;
  std::vector<std::string> lines;  // one-line explanations for the report
};

struct ExperimentReport {
  int64_t number = 0;
  std::string name;
  std::string campaign;
  std::string metric = "wall_time";
  MetricUnit unit = MetricUnit::kNanoseconds;
  bool higher_is_better = false;
  uint64_t seed = 0;
  std::string baseline;
  std::string host;
  bool failed = false;  // the attempt could not produce verdicts (e.g. the
                        // baseline failed)
  std::string failure;
  // The host's gates could not be met within max_wait (failed is set too): no
  // verdict, the experiment goes back to the queue.
  bool host_not_ready = false;
  int64_t steps_run = 0;
  int64_t gate_wait_ns =
      0;  // time spent waiting for the host's gates (cooling, quiet)
  // Every wait that gate_wait_ns counts, in step order.
  std::vector<GateWait> gate_waits;
  int64_t reruns = 0;  // measured runs repeated because the host was disturbed
  std::map<std::string, int64_t>
      host_flags;  // flag -> how many runs carried it
  // Outliers are runs beyond this many robust sigmas of the median (for the
  // table's legend); 0 when not known.
  double outlier_sigmas = 0;
  std::vector<CandidateReport> candidates;
  std::vector<std::string> warnings;
  std::vector<BaselineInputRow> baseline_inputs;
  EnvironmentCheck environment;
  // With source.repo: the repository and, per variant in spec order, its ref
  // and the commit it was measured at (resolved at submit).
  std::string source_repo;
  struct SourceCommit {
    std::string variant, ref, commit;
  };
  std::vector<SourceCommit> source_commits;
  // With source.bundle: the SHA-256 of the tree every variant ran from.
  std::string source_bundle;
};

// "12.34 ms", "1.20 s", "35.2 MiB", or a plain number.
std::string FormatValue(double value, MetricUnit unit);
// "+5.0%", "-12.3%".
std::string FormatPercent(double fraction);
// The report block per candidate (Experiment/Result/Change/Verdict/Reason +
// input table with `cand n` and `base n` as kept/measured runs, and a legend
// line when outliers were removed).
std::string RenderReportText(const ExperimentReport& report);
std::string ReportToJson(const ExperimentReport& report);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_REPORT_REPORT_H_
