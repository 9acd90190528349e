// History rows: completed experiments (Store::ListHistory) flattened into the
// series `benchfleet history` prints — one row per attempt, input and variant
// (the baseline and each candidate) with its median, n, CV, change against the
// baseline, the candidate's verdict, and where it ran (commit, host
// fingerprint, hostname from the attempt's environment). Per-input statistics
// come from the experiment's report JSON (controller/report/report.h,
// ReportToJson).
//
// Used by the fleet service (GetHistory) and the history file writer. Plain
// data and pure functions; thread-safe.
#ifndef BENCHFLEET_CONTROLLER_HISTORY_HISTORY_H_
#define BENCHFLEET_CONTROLLER_HISTORY_HISTORY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/history.h"

namespace benchfleet {

struct HistoryRow {
  absl::Time time;  // when the attempt started
  int64_t experiment_id = 0;
  int64_t experiment_number = 0;
  std::string experiment_name;
  std::string campaign;
  std::string input;
  std::string variant;
  bool baseline = false;  // the baseline's row for this input
  double median = 0;      // of the primary metric, in `unit`
  int64_t n = 0;          // measured runs
  double cv = 0;          // coefficient of variation (0.05 = 5 %)
  double change = 0;    // candidate/baseline - 1 on this input; 0 for baseline
  std::string verdict;  // the candidate's verdict; empty for the baseline
  std::string input_verdict;  // the per-input classification, if any
  std::string metric;         // "wall_time", ...
  std::string unit;           // "ns" | "bytes" | "" (plain)
  std::string commit;         // the attempt's environment; "" when unknown
  std::string fingerprint;
  std::string hostname;
};

// Which rows to keep; empty fields match everything.
struct HistoryRowFilter {
  std::string input;
  // Matches a row's hostname or fingerprint exactly, or the start of its
  // fingerprint (at least 6 characters, as the table shows them shortened).
  std::string host;
};

// What an attempt's environment JSON says about where it ran. Missing keys,
// or text that is not a JSON object, give empty strings. `commit` may be a
// string or an object of variant -> commit; for the latter, `variant`'s.
struct HostIdentity {
  std::string commit;
  std::string fingerprint;
  std::string hostname;
};
HostIdentity HostIdentityOf(const std::string& environment_json,
                            const std::string& variant = "");

// The rows of `entries` (in their order; within an entry by input in report
// order, then baseline before candidates) that match `filter`. DataLoss naming
// the experiment when its report JSON is not a report.
absl::StatusOr<std::vector<HistoryRow>> BuildHistoryRows(
    const std::vector<HistoryEntry>& entries,
    const HistoryRowFilter& filter = {});

// The "DISCARDed before" flag (DESIGN.md §4): for a spec being submitted,
// one warning per earlier DISCARD it repeats, naming that experiment (number,
// name, campaign, date, change, reason). With an `idea`, the newest
// experiment of `history` with that idea where any candidate was DISCARDed;
// without one, per name in `candidates`, the newest experiment of `history`
// (already filtered to the spec's name) whose verdict for that candidate was
// DISCARD. `history` is oldest first, as Store::ListHistory returns it.
std::vector<std::string> DiscardedBefore(
    const std::vector<HistoryEntry>& history, const std::string& idea,
    const std::vector<std::string>& candidates);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_HISTORY_HISTORY_H_
