// VerdictRecord: the stored verdict on one candidate variant of an experiment
// ("KEEP", "MAYBE", "DISCARD", ...) with its reason and aggregate change.
//
// Part of the domain model (common/model/, library benchfleet::model): written
// by the attempt driver through the store, read by history, reports and the
// service adapters. Plain data; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_VERDICT_RECORD_H_
#define BENCHFLEET_COMMON_MODEL_VERDICT_RECORD_H_

#include <cstdint>
#include <string>

namespace benchfleet {

struct VerdictRecord {
  int64_t experiment_id = 0;
  int64_t attempt_id = 0;
  std::string variant;
  std::string verdict;  // "KEEP", "MAYBE", ...
  std::string reason;
  double change = 0;        // aggregate change (ratio - 1)
  std::string detail_json;  // per-input detail
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_VERDICT_RECORD_H_
