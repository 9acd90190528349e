// Argument checks of the Store contract (store.h) that SqliteStore and PgStore
// make before they touch their database, and the state rules they apply, in
// one place so that both refuse the same calls with the same messages and
// make the same decisions; the backends only read and write. Pure functions;
// thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_
#define BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/experiment.h"
#include "common/model/history.h"
#include "common/model/verdict_record.h"

namespace benchfleet {

// CreateExperiment: InvalidArgument when max_attempts < 1.
absl::Status CheckNewExperiment(const ExperimentRecord& record);

// ClaimNextExperiment: InvalidArgument when the agent id or token is empty.
absl::Status CheckClaimArguments(const std::string& agent_id,
                                 const std::string& lease_token);

// EndAttempt: InvalidArgument unless `state` is kLost, kHostNotReady, kFailed
// or kCancelled.
absl::Status CheckEndState(int64_t attempt_id, AttemptState state);

// An experiment's attempts by how they count, read after the attempt being
// ended was marked ended (so it is counted).
struct AttemptCounts {
  int host_not_ready = 0;  // attempts in state kHostNotReady
  int counted = 0;  // every other attempt: these count toward max_attempts
};

// What an experiment becomes when EndAttempt ends its live attempt.
struct ExperimentTransition {
  ExperimentState state = ExperimentState::kFailed;
  std::string reason;  // the experiment's new state_reason
};

// EndAttempt's rule (store.h) for an experiment whose live attempt `attempt`
// ended as `ended` (a state CheckEndState accepts) with `reason`:
// - kLost: kQueued while counts.counted < max_attempts, else kFailed; the
//   reason names the attempt, says how many of max_attempts are used and
//   ends in ", re-queued" or ", giving up".
// - kHostNotReady: kQueued while counts.host_not_ready <
//   kMaxHostNotReadyAttempts ("attempt 12: host not ready on agent-a
//   (<reason>); re-queued (3 of 20 host-not-ready attempts)"), else kFailed
//   with a reason that says no host became ready and what to do.
// - kFailed: kFailed, kCancelled: kCancelled, each with `reason` as it is.
ExperimentTransition NextExperimentState(const ExperimentRecord& experiment,
                                         const AttemptRecord& attempt,
                                         AttemptState ended,
                                         const std::string& reason,
                                         const AttemptCounts& counts);

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
