// History entries: a completed experiment with the attempt that completed it
// and its verdicts (HistoryEntry), and the question that selects them
// (HistoryQuery, answered by Store::ListHistory).
//
// Part of the domain model (common/model/, library benchfleet::model): used by
// the store, controller/history (rows, DISCARDed-before, baseline drift), the
// history file and the Fleet service. Plain data; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_HISTORY_H_
#define BENCHFLEET_COMMON_MODEL_HISTORY_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/model/experiment.h"
#include "common/model/verdict_record.h"

namespace benchfleet {

// A history question; every set field must match.
struct HistoryQuery {
  std::string name;      // experiment (benchmark) name; empty = any
  std::string campaign;  // empty = any
  std::string idea;      // empty = any (the spec's `idea:`)
  absl::Time since = absl::InfinitePast();  // experiments created at or after
  int limit = 0;  // <= 0: no limit; else the newest `limit` matches
};

// One completed experiment with the attempt that completed it.
struct HistoryEntry {
  ExperimentRecord experiment;  // state kDone
  AttemptRecord attempt;        // the attempt that completed it
  std::vector<VerdictRecord> verdicts;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_HISTORY_H_
