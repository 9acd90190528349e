// Argument checks of the Store contract (store.h) that SqliteStore and PgStore
// make before they touch their database, in one place so that both refuse the
// same calls with the same messages. Pure functions; thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_
#define BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/store/store.h"

namespace benchfleet {

// CreateExperiment: InvalidArgument when max_attempts < 1.
absl::Status CheckNewExperiment(const ExperimentRecord& record);

// ClaimNextExperiment: InvalidArgument when the agent id or token is empty.
absl::Status CheckClaimArguments(const std::string& agent_id,
                                 const std::string& lease_token);

// EndAttempt: InvalidArgument unless `state` is kLost, kFailed or kCancelled.
absl::Status CheckEndState(int64_t attempt_id, AttemptState state);

// CompleteExperiment: InvalidArgument when `verdict` names another experiment
// or attempt than the one it completes (0 = not named). `which` describes
// that attempt ("attempt 7 of experiment 3").
absl::Status CheckVerdictBelongs(const VerdictRecord& verdict,
                                 int64_t experiment_id, int64_t attempt_id,
                                 const std::string& which);

// ImportHistory: the required labels of every entry's experiment as JSON
// text (json_columns.h), in entry order; InvalidArgument naming the
// experiment when one is not valid UTF-8.
absl::StatusOr<std::vector<std::string>> ImportedLabelsJson(
    const std::vector<HistoryEntry>& entries);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_
