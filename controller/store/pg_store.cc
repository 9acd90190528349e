// PgStore (pg_store.h): experiments, claims, attempts, step results and
// their ends. The rules (store_checks.h) decide; this file reads rows, calls
// them, and writes. Connections and transactions are in pg_conn.cc, row
// readers in pg_rows.cc, history, verdicts, samples and agents in
// pg_store_history.cc.
#include "controller/store/pg_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/history_import.h"
#include "controller/store/json_columns.h"
#include "controller/store/migrations.h"
#include "controller/store/pg_conn.h"
#include "controller/store/pg_rows.h"
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {

using pg_internal::F64;
using pg_internal::FromMicros;
using pg_internal::I64;
using pg_internal::InvalidText;
using pg_internal::kCampaignLock;
using pg_internal::kCampaignLockClass;
using pg_internal::kInsertVerdict;
using pg_internal::kNextNumber;
using pg_internal::LoadAttempt;
using pg_internal::LoadExperiment;
using pg_internal::OneLine;
using pg_internal::Query;
using pg_internal::ReadAgent;
using pg_internal::ReadAttempt;
using pg_internal::ReadAttempts;
using pg_internal::ReadExperiment;
using pg_internal::ReadSample;
using pg_internal::ReadStepResult;
using pg_internal::ReadVerdict;
using pg_internal::Str;
using pg_internal::Time;
using pg_internal::ToMicros;
using pg_internal::Txn;

namespace {

constexpr Query kInsertExperiment{
    "bf_insert_experiment",
    "INSERT INTO experiments (number, name, campaign, state, state_reason, "
    "spec_yaml, spec_path, workdir, required_labels_json, attempts, "
    "max_attempts, submitted_by, created_at, updated_at, report_json, "
    "report_text, idea, discarded_before, bundle_digest) VALUES ($1, $2, $3, "
    "$4, $5, $6, $7, $8, $9, 0, $10, $11, $12, $12, $13, $14, $15, $16, $17) "
    "RETURNING id"};
constexpr Query kListExperiments{"bf_list_experiments",
                                 "SELECT " BF_EXPERIMENT_COLUMNS
                                 " FROM experiments ORDER BY id DESC"};
constexpr Query kListExperimentsLimit{
    "bf_list_experiments_limit", "SELECT " BF_EXPERIMENT_COLUMNS
                                 " FROM experiments ORDER BY id DESC LIMIT $1"};

constexpr Query kQueuedExperiments{
    "bf_queued_experiments",
    "SELECT id, required_labels_json FROM experiments WHERE state = $1 "
    "ORDER BY id"};
// Another controller's claim holds the row lock until it commits: skip the
// row rather than wait for it, and re-check the state under the lock.
constexpr Query kLockQueuedExperiment{
    "bf_lock_queued_experiment",
    "SELECT id FROM experiments WHERE id = $1 AND state = $2 "
    "FOR UPDATE SKIP LOCKED"};
constexpr Query kMarkClaimed{
    "bf_mark_claimed",
    "UPDATE experiments SET state = $1, attempts = attempts + 1, "
    "updated_at = $2 WHERE id = $3 AND state = $4"};
constexpr Query kInsertAttempt{
    "bf_insert_attempt",
    "INSERT INTO attempts (experiment_id, agent_id, lease_token, state, seed, "
    "reason, environment_json, started_at, ended_at) "
    "VALUES ($1, $2, $3, $4, $5, '', '', $6, NULL) RETURNING id"};

constexpr Query kListAttempts{"bf_list_attempts",
                              "SELECT " BF_ATTEMPT_COLUMNS
                              " FROM attempts WHERE experiment_id = $1 "
                              "ORDER BY id"};
constexpr Query kListAttemptsInState{
    "bf_list_attempts_in_state",
    "SELECT " BF_ATTEMPT_COLUMNS " FROM attempts WHERE state = $1 ORDER BY id"};
constexpr Query kSetEnvironment{
    "bf_set_environment",
    "UPDATE attempts SET environment_json = $1 WHERE id = $2"};

constexpr Query kInsertStepResult{
    "bf_insert_step_result",
    "INSERT INTO step_results (" BF_STEP_RESULT_COLUMNS
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "$15, $16, $17, $18, $19) ON CONFLICT (attempt_id, step_seq) DO NOTHING"};
constexpr Query kListStepResults{"bf_list_step_results",
                                 "SELECT " BF_STEP_RESULT_COLUMNS
                                 " FROM step_results WHERE attempt_id = $1 "
                                 "ORDER BY step_seq"};
constexpr Query kEndAttemptDone{
    "bf_end_attempt_done",
    "UPDATE attempts SET state = $1, ended_at = $2 WHERE id = $3"};
constexpr Query kCompleteExperiment{
    "bf_complete_experiment",
    "UPDATE experiments SET state = $1, report_json = $2, report_text = $3, "
    "updated_at = $4 WHERE id = $5"};
constexpr Query kEndAttempt{
    "bf_end_attempt",
    "UPDATE attempts SET state = $1, reason = $2, ended_at = $3 WHERE id = $4"};
// An experiment's attempts: how many are in state $1 (host-not-ready), and
// how many in all (EndAttempt's AttemptCounts).
constexpr Query kCountAttempts{
    "bf_count_attempts",
    "SELECT COUNT(*) FILTER (WHERE state = $1), COUNT(*) FROM attempts "
    "WHERE experiment_id = $2"};
constexpr Query kSetExperimentState{
    "bf_set_experiment_state",
    "UPDATE experiments SET state = $1, state_reason = $2, updated_at = $3 "
    "WHERE id = $4"};
constexpr Query kCancelAttempts{
    "bf_cancel_attempts",
    "UPDATE attempts SET state = $1, reason = $2, ended_at = $3 "
    "WHERE experiment_id = $4 AND state = $5"};
}  // namespace

// ---- Experiments ----

absl::StatusOr<ExperimentRecord> PgStore::CreateExperiment(
    const ExperimentRecord& record) {
  RETURN_IF_ERROR(CheckNewExperiment(record));
  ASSIGN_OR_RETURN(
      std::string labels_json,
      LabelsToJson(record.required_labels,
                   "required labels of experiment \"" + record.name + "\""));
  const int64_t created_at = ToMicros(
      record.created_at == absl::UnixEpoch() ? absl::Now() : record.created_at);
  ExperimentRecord out;
  RETURN_IF_ERROR(Transact(
      "creating an experiment", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        // Numbers are MAX + 1 per campaign: serialize creators of one
        // campaign so that two controllers cannot pick the same number.
        txn.Exec(kCampaignLock, kCampaignLockClass, record.campaign);
        const int64_t number =
            I64(txn.Exec(kNextNumber, record.campaign)[0][0]);
        const int64_t id = I64(txn.Exec(
            kInsertExperiment, number, record.name, record.campaign,
            ExperimentStateName(ExperimentState::kQueued), record.state_reason,
            record.spec_yaml, record.spec_path, record.workdir, labels_json,
            record.max_attempts, record.submitted_by, created_at,
            record.report_json, record.report_text, record.idea,
            record.discarded_before, record.bundle_digest)[0][0]);
        ASSIGN_OR_RETURN(out, LoadExperiment(txn, id, display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ExperimentRecord> PgStore::GetExperiment(int64_t id) {
  ExperimentRecord out;
  RETURN_IF_ERROR(Transact(
      "reading an experiment", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(out, LoadExperiment(txn, id, display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<ExperimentRecord>> PgStore::ListExperiments(
    int limit) {
  std::vector<ExperimentRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing experiments", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        const pqxx::result r = limit > 0
                                   ? txn.Exec(kListExperimentsLimit, limit)
                                   : txn.Exec(kListExperiments);
        out.reserve(r.size());
        for (const pqxx::row& row : r) {
          ASSIGN_OR_RETURN(ExperimentRecord e,
                           ReadExperiment(row, display_name_));
          out.push_back(std::move(e));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::optional<Store::Claim>> PgStore::ClaimNextExperiment(
    const std::string& agent_id,
    const std::map<std::string, std::string>& agent_labels,
    const std::string& lease_token, uint64_t seed,
    const std::set<int64_t>& skip_experiment_ids, absl::Time now) {
  RETURN_IF_ERROR(CheckClaimArguments(agent_id, lease_token));
  const char* queued = ExperimentStateName(ExperimentState::kQueued);
  std::optional<Claim> out;
  RETURN_IF_ERROR(Transact(
      "claiming the next experiment for agent " + agent_id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        out.reset();
        std::optional<int64_t> chosen;
        for (const pqxx::row& row : txn.Exec(kQueuedExperiments, queued)) {
          const QueuedExperiment candidate{I64(row["id"]),
                                           Str(row["required_labels_json"])};
          ASSIGN_OR_RETURN(
              const bool may_claim,
              MayClaim(candidate, agent_labels, skip_experiment_ids,
                       "PostgreSQL store " + display_name_));
          if (!may_claim) continue;
          // Another controller may hold it; take the next one then.
          if (txn.Exec(kLockQueuedExperiment, candidate.id, queued).empty()) {
            continue;
          }
          chosen = candidate.id;
          break;
        }
        if (!chosen) return absl::OkStatus();

        const int64_t now_us = ToMicros(now);
        const pqxx::result update = txn.Exec(
            kMarkClaimed, ExperimentStateName(ExperimentState::kRunning),
            now_us, *chosen, queued);
        if (update.affected_rows() != 1) {
          return absl::InternalError(
              "experiment " + std::to_string(*chosen) +
              " changed state while it was being claimed");
        }
        const int64_t attempt_id =
            I64(txn.Exec(kInsertAttempt, *chosen, agent_id, lease_token,
                         AttemptStateName(AttemptState::kRunning),
                         static_cast<int64_t>(seed), now_us)[0][0]);
        Claim claim;
        ASSIGN_OR_RETURN(claim.experiment,
                         LoadExperiment(txn, *chosen, display_name_));
        ASSIGN_OR_RETURN(claim.attempt,
                         LoadAttempt(txn, attempt_id, display_name_));
        out = std::move(claim);
        return absl::OkStatus();
      }));
  return out;
}

// ---- Attempts and step results ----

absl::StatusOr<AttemptRecord> PgStore::GetAttempt(int64_t attempt_id) {
  AttemptRecord out;
  RETURN_IF_ERROR(Transact(
      "reading an attempt", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(out, LoadAttempt(txn, attempt_id, display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<AttemptRecord>> PgStore::ListAttempts(
    int64_t experiment_id) {
  std::vector<AttemptRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing attempts", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(out,
                         ReadAttempts(txn.Exec(kListAttempts, experiment_id),
                                      display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<AttemptRecord>> PgStore::ListRunningAttempts() {
  std::vector<AttemptRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing running attempts", TxnKind::kRead,
      [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(
            out,
            ReadAttempts(txn.Exec(kListAttemptsInState,
                                  AttemptStateName(AttemptState::kRunning)),
                         display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::Status PgStore::SetAttemptEnvironment(int64_t attempt_id,
                                            const std::string& env_json) {
  return Transact(
      "recording an attempt's environment", TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        if (txn.Exec(kSetEnvironment, env_json, attempt_id).affected_rows() ==
            0) {
          return absl::NotFoundError("attempt " + std::to_string(attempt_id) +
                                     " not found");
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<RecordOutcome> PgStore::RecordStepResult(
    const StepResultRecord& result, const std::string& lease_token) {
  const std::string which_result =
      "result for step " + std::to_string(result.step_seq) + " of attempt " +
      std::to_string(result.attempt_id);
  // JSON would carry a NUL as \u0000, which v_runs could not turn back into
  // text: refuse it like a NUL in any other text value.
  for (const std::string& flag : result.host_flags) {
    if (flag.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          which_result +
          ": a host flag contains a NUL character, which PostgreSQL cannot "
          "store; remove it");
    }
  }
  ASSIGN_OR_RETURN(const std::string flags_json,
                   HostFlagsToJson(result.host_flags, which_result));
  RecordOutcome outcome = RecordOutcome::kInserted;
  RETURN_IF_ERROR(Transact(
      "recording a step result", TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt,
                         LoadAttempt(txn, result.attempt_id, display_name_));
        RETURN_IF_ERROR(CheckResultAccepted(attempt, lease_token, result));
        const pqxx::result r = txn.Exec(
            kInsertStepResult, result.attempt_id, result.step_seq, result.kind,
            result.variant, result.input, result.wall_ns, result.user_ns,
            result.sys_ns, result.max_rss_bytes, result.exit_code,
            result.term_signal, result.timed_out ? 1 : 0, result.output_digest,
            result.metrics_json, result.error, ToMicros(result.finished_at),
            result.host_json, flags_json, result.gate_wait_ns);
        outcome = r.affected_rows() == 0 ? RecordOutcome::kDuplicate
                                         : RecordOutcome::kInserted;
        return absl::OkStatus();
      }));
  return outcome;
}

absl::StatusOr<std::vector<StepResultRecord>> PgStore::ListStepResults(
    int64_t attempt_id) {
  std::vector<StepResultRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing step results", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListStepResults, attempt_id)) {
          ASSIGN_OR_RETURN(StepResultRecord result,
                           ReadStepResult(row, display_name_));
          out.push_back(std::move(result));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::Status PgStore::CompleteExperiment(
    int64_t attempt_id, const std::string& lease_token,
    const std::string& report_json, const std::string& report_text,
    const std::vector<VerdictRecord>& verdicts, absl::Time now) {
  return Transact(
      "completing an experiment", TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt,
                         LoadAttempt(txn, attempt_id, display_name_));
        RETURN_IF_ERROR(CheckCompletionLease(attempt, lease_token));
        ASSIGN_OR_RETURN(
            ExperimentRecord experiment,
            LoadExperiment(txn, attempt.experiment_id, display_name_));
        RETURN_IF_ERROR(CheckCompletionExperiment(experiment, attempt));
        const std::string which = CompletedAttemptName(attempt);
        const int64_t now_us = ToMicros(now);
        txn.Exec(kEndAttemptDone, AttemptStateName(AttemptState::kDone), now_us,
                 attempt_id);
        txn.Exec(kCompleteExperiment,
                 ExperimentStateName(ExperimentState::kDone), report_json,
                 report_text, now_us, experiment.id);
        for (const VerdictRecord& verdict : verdicts) {
          RETURN_IF_ERROR(
              CheckVerdictBelongs(verdict, experiment.id, attempt_id, which));
          txn.Exec(kInsertVerdict, experiment.id, attempt_id, verdict.variant,
                   verdict.verdict, verdict.reason, verdict.change,
                   verdict.detail_json);
        }
        return absl::OkStatus();
      });
}

absl::Status PgStore::EndAttempt(int64_t attempt_id, AttemptState state,
                                 const std::string& reason, absl::Time now) {
  RETURN_IF_ERROR(CheckEndState(attempt_id, state));
  return Transact(
      "ending an attempt", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt,
                         LoadAttempt(txn, attempt_id, display_name_));
        if (!EndAttemptEndsAttempt(attempt)) return absl::OkStatus();
        const int64_t now_us = ToMicros(now);
        txn.Exec(kEndAttempt, AttemptStateName(state), reason, now_us,
                 attempt_id);
        ASSIGN_OR_RETURN(
            ExperimentRecord experiment,
            LoadExperiment(txn, attempt.experiment_id, display_name_));
        if (!EndAttemptMovesExperiment(experiment)) return absl::OkStatus();
        const pqxx::result count = txn.Exec(
            kCountAttempts, AttemptStateName(AttemptState::kHostNotReady),
            experiment.id);
        const AttemptCounts counts =
            CountAttempts(I64(count[0][1]), I64(count[0][0]));
        const ExperimentTransition next =
            NextExperimentState(experiment, attempt, state, reason, counts);
        txn.Exec(kSetExperimentState, ExperimentStateName(next.state),
                 next.reason, now_us, experiment.id);
        return absl::OkStatus();
      });
}

absl::Status PgStore::CancelExperiment(int64_t id, const std::string& reason,
                                       absl::Time now) {
  return Transact(
      "cancelling an experiment", TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(txn, id, display_name_));
        RETURN_IF_ERROR(CheckCancellable(experiment));
        const int64_t now_us = ToMicros(now);
        txn.Exec(kCancelAttempts, AttemptStateName(AttemptState::kCancelled),
                 reason, now_us, id, AttemptStateName(AttemptState::kRunning));
        txn.Exec(kSetExperimentState,
                 ExperimentStateName(ExperimentState::kCancelled), reason,
                 now_us, id);
        return absl::OkStatus();
      });
}

}  // namespace benchfleet
