// Argument checks of the Store contract (store.h) that SqliteStore and PgStore
// make before they touch their database, and the state rules they apply, in
// one place so that both refuse the same calls with the same messages and
// make the same decisions; the backends only read and write. Pure functions;
// thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_
#define BENCHFLEET_CONTROLLER_STORE_STORE_CHECKS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/experiment.h"
#include "common/model/history.h"
#include "common/model/step_result.h"
#include "common/model/verdict_record.h"

namespace benchfleet {

// CreateExperiment: InvalidArgument when max_attempts < 1.
absl::Status CheckNewExperiment(const ExperimentRecord& record);

// ClaimNextExperiment: InvalidArgument when the agent id or token is empty.
absl::Status CheckClaimArguments(const std::string& agent_id,
                                 const std::string& lease_token);

// True when every label in `required` is in `offered` with the same value.
bool LabelsSatisfy(const std::map<std::string, std::string>& required,
                   const std::map<std::string, std::string>& offered);

// A queued experiment as ClaimNextExperiment reads it, in claim order (oldest
// id first): its id and its required labels as JSON text (json_columns.h).
struct QueuedExperiment {
  int64_t id = 0;
  std::string required_labels_json;
};

// ClaimNextExperiment's rule for one queued experiment: the agent may take it
// when it is not in `skip_experiment_ids` and `agent_labels` satisfy its
// required labels. The backend offers the queued experiments in order and
// claims the first one this accepts. DataLoss naming `store` ("store database
// PATH", "PostgreSQL store URL") when the labels column is not a JSON object
// of strings.
absl::StatusOr<bool> MayClaim(
    const QueuedExperiment& queued,
    const std::map<std::string, std::string>& agent_labels,
    const std::set<int64_t>& skip_experiment_ids, std::string_view store);

// RecordStepResult: FailedPrecondition when `lease_token` is not the token of
// `attempt` (re-leased or ended: a stale result) or the attempt already
// ended; `result` names the step in the message.
absl::Status CheckResultAccepted(const AttemptRecord& attempt,
                                 const std::string& lease_token,
                                 const StepResultRecord& result);

// How CompleteExperiment names the attempt it completes: "attempt 7 of
// experiment 3".
std::string CompletedAttemptName(const AttemptRecord& attempt);

// CompleteExperiment, before it reads the experiment: FailedPrecondition when
// `lease_token` is stale or the attempt already ended.
absl::Status CheckCompletionLease(const AttemptRecord& attempt,
                                  const std::string& lease_token);

// CompleteExperiment, after: FailedPrecondition unless the attempt's
// experiment is still running.
absl::Status CheckCompletionExperiment(const ExperimentRecord& experiment,
                                       const AttemptRecord& attempt);

// CancelExperiment: FailedPrecondition unless the experiment is queued or
// running.
absl::Status CheckCancellable(const ExperimentRecord& experiment);

// EndAttempt: InvalidArgument unless `state` is kLost, kHostNotReady, kFailed
// or kCancelled.
absl::Status CheckEndState(int64_t attempt_id, AttemptState state);

// An experiment's attempts by how they count, read after the attempt being
// ended was marked ended (so it is counted).
struct AttemptCounts {
  int host_not_ready = 0;  // attempts in state kHostNotReady
  int counted = 0;  // every other attempt: these count toward max_attempts
};

// The counts from an experiment's number of attempts and how many of them
// are host-not-ready.
AttemptCounts CountAttempts(int64_t total, int64_t host_not_ready);

// EndAttempt changes nothing when the attempt already ended (a late or
// repeated call) or its experiment is no longer running (only the live
// attempt decides the experiment's fate); these say whether it goes on.
bool EndAttemptEndsAttempt(const AttemptRecord& attempt);
bool EndAttemptMovesExperiment(const ExperimentRecord& experiment);

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
