#include "controller/store/store_checks.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "controller/store/json_columns.h"

namespace benchfleet {

absl::Status CheckNewExperiment(const ExperimentRecord& record) {
  if (record.max_attempts < 1) {
    return absl::InvalidArgumentError(
        "experiment \"" + record.name +
        "\": max_attempts must be at least 1, got " +
        std::to_string(record.max_attempts));
  }
  return absl::OkStatus();
}

absl::Status CheckClaimArguments(const std::string& agent_id,
                                 const std::string& lease_token) {
  if (agent_id.empty() || lease_token.empty()) {
    return absl::InvalidArgumentError(
        "claiming an experiment needs a non-empty agent id and lease token");
  }
  return absl::OkStatus();
}

bool LabelsSatisfy(const std::map<std::string, std::string>& required,
                   const std::map<std::string, std::string>& offered) {
  return std::all_of(required.begin(), required.end(), [&](const auto& label) {
    auto it = offered.find(label.first);
    return it != offered.end() && it->second == label.second;
  });
}

absl::StatusOr<bool> MayClaim(
    const QueuedExperiment& queued,
    const std::map<std::string, std::string>& agent_labels,
    const std::set<int64_t>& skip_experiment_ids, std::string_view store) {
  if (skip_experiment_ids.contains(queued.id)) return false;
  ASSIGN_OR_RETURN(
      auto required,
      LabelsFromJson(
          queued.required_labels_json,
          "required labels of experiment " + std::to_string(queued.id), store));
  return LabelsSatisfy(required, agent_labels);
}

absl::Status CheckResultAccepted(const AttemptRecord& attempt,
                                 const std::string& lease_token,
                                 const StepResultRecord& result) {
  const std::string which = "step " + std::to_string(result.step_seq) +
                            " of attempt " + std::to_string(result.attempt_id);
  if (attempt.lease_token != lease_token) {
    return absl::FailedPreconditionError(
        "stale lease token for attempt " + std::to_string(attempt.id) +
        " (the attempt was re-leased or ended); result for " + which +
        " rejected");
  }
  if (attempt.state != AttemptState::kRunning) {
    return absl::FailedPreconditionError(
        "attempt " + std::to_string(attempt.id) + " already ended (" +
        AttemptStateName(attempt.state) + "); result for " + which +
        " rejected");
  }
  return absl::OkStatus();
}

std::string CompletedAttemptName(const AttemptRecord& attempt) {
  return "attempt " + std::to_string(attempt.id) + " of experiment " +
         std::to_string(attempt.experiment_id);
}

absl::Status CheckCompletionLease(const AttemptRecord& attempt,
                                  const std::string& lease_token) {
  const std::string which = CompletedAttemptName(attempt);
  if (attempt.lease_token != lease_token) {
    return absl::FailedPreconditionError("stale lease token for " + which +
                                         "; its completion was rejected");
  }
  if (attempt.state != AttemptState::kRunning) {
    return absl::FailedPreconditionError(which + " already ended (" +
                                         AttemptStateName(attempt.state) +
                                         "); its completion was rejected");
  }
  return absl::OkStatus();
}

absl::Status CheckCompletionExperiment(const ExperimentRecord& experiment,
                                       const AttemptRecord& attempt) {
  if (experiment.state != ExperimentState::kRunning) {
    return absl::FailedPreconditionError(
        "experiment " + std::to_string(experiment.id) + " is " +
        ExperimentStateName(experiment.state) +
        ", not running; completion of " + CompletedAttemptName(attempt) +
        " rejected");
  }
  return absl::OkStatus();
}

absl::Status CheckCancellable(const ExperimentRecord& experiment) {
  if (experiment.state != ExperimentState::kQueued &&
      experiment.state != ExperimentState::kRunning) {
    return absl::FailedPreconditionError(
        "experiment " + std::to_string(experiment.id) + " already ended (" +
        ExperimentStateName(experiment.state) +
        "); there is nothing to cancel");
  }
  return absl::OkStatus();
}

AttemptCounts CountAttempts(int64_t total, int64_t host_not_ready) {
  AttemptCounts counts;
  counts.host_not_ready = static_cast<int>(host_not_ready);
  counts.counted = static_cast<int>(total - host_not_ready);
  return counts;
}

bool EndAttemptEndsAttempt(const AttemptRecord& attempt) {
  return attempt.state == AttemptState::kRunning;
}

bool EndAttemptMovesExperiment(const ExperimentRecord& experiment) {
  return experiment.state == ExperimentState::kRunning;
}

absl::Status CheckEndState(int64_t attempt_id, AttemptState state) {
  if (state != AttemptState::kLost && state != AttemptState::kHostNotReady &&
      state != AttemptState::kFailed && state != AttemptState::kCancelled) {
    return absl::InvalidArgumentError(
        std::string("EndAttempt ends an attempt as lost, host-not-ready, "
                    "failed or cancelled, not ") +
        AttemptStateName(state) + " (attempt " + std::to_string(attempt_id) +
        "); use CompleteExperiment for a finished attempt");
  }
  return absl::OkStatus();
}

ExperimentTransition NextExperimentState(const ExperimentRecord& experiment,
                                         const AttemptRecord& attempt,
                                         AttemptState ended,
                                         const std::string& reason,
                                         const AttemptCounts& counts) {
  const std::string why = reason.empty() ? "" : " (" + reason + ")";
  const std::string which = "attempt " + std::to_string(attempt.id);
  switch (ended) {
    case AttemptState::kLost: {
      std::string text =
          which + " lost" + why + "; " + std::to_string(counts.counted) +
          " of " + std::to_string(experiment.max_attempts) + " attempts used";
      if (counts.host_not_ready > 0) {
        text += " (not counting " + std::to_string(counts.host_not_ready) +
                " host-not-ready)";
      }
      if (counts.counted < experiment.max_attempts) {
        return {ExperimentState::kQueued, text + ", re-queued"};
      }
      return {ExperimentState::kFailed, text + ", giving up"};
    }
    case AttemptState::kHostNotReady: {
      const std::string text =
          which + ": host not ready on " + attempt.agent_id + why;
      if (counts.host_not_ready < kMaxHostNotReadyAttempts) {
        return {ExperimentState::kQueued,
                text + "; re-queued (" + std::to_string(counts.host_not_ready) +
                    " of " + std::to_string(kMaxHostNotReadyAttempts) +
                    " host-not-ready attempts)"};
      }
      return {ExperimentState::kFailed,
              text + "; no host became ready after " +
                  std::to_string(counts.host_not_ready) +
                  " host-not-ready attempts, giving up: check what holds the "
                  "hosts back (their gates: cooldown, temperatures, load, "
                  "competing processes; `benchfleet show " +
                  std::to_string(experiment.id) +
                  "` lists each attempt's reason) or raise gates.max_wait in "
                  "the spec, then submit it again"};
    }
    case AttemptState::kCancelled:
      return {ExperimentState::kCancelled, reason};
    case AttemptState::kFailed:
    case AttemptState::kRunning:
    case AttemptState::kDone:
      break;
  }
  // kFailed; kRunning and kDone never get here (CheckEndState).
  return {ExperimentState::kFailed, reason};
}

absl::Status CheckVerdictBelongs(const VerdictRecord& verdict,
                                 int64_t experiment_id, int64_t attempt_id,
                                 const std::string& which) {
  if ((verdict.experiment_id != 0 && verdict.experiment_id != experiment_id) ||
      (verdict.attempt_id != 0 && verdict.attempt_id != attempt_id)) {
    return absl::InvalidArgumentError(
        "verdict for variant \"" + verdict.variant + "\" names experiment " +
        std::to_string(verdict.experiment_id) + " / attempt " +
        std::to_string(verdict.attempt_id) + ", but it completes " + which +
        "; nothing was stored");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ImportedLabelsJson(
    const std::vector<HistoryEntry>& entries) {
  std::vector<std::string> out;
  out.reserve(entries.size());
  for (const HistoryEntry& entry : entries) {
    ASSIGN_OR_RETURN(std::string json,
                     LabelsToJson(entry.experiment.required_labels,
                                  "required labels of imported experiment \"" +
                                      entry.experiment.name + "\""));
    out.push_back(std::move(json));
  }
  return out;
}

}  // namespace benchfleet
