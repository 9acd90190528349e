// SqliteStore (sqlite_store.h): opening, experiments, claims, attempts,
// step results and their ends. The rules (store_checks.h) decide; this file
// reads rows, calls them, and writes. The database layer is sqlite_db.cc;
// history, verdicts, samples and agents are sqlite_store_history.cc.
#include "controller/store/sqlite_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/history_import.h"
#include "controller/store/json_columns.h"
#include "controller/store/migrations.h"
#include "controller/store/sqlite_db.h"
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"

namespace benchfleet {

using sqlite_internal::CodeFor;
using sqlite_internal::Conn;
using sqlite_internal::FromMicros;
using sqlite_internal::HintFor;
using sqlite_internal::kAgentColumns;
using sqlite_internal::kAttemptColumns;
using sqlite_internal::kExperimentColumns;
using sqlite_internal::kMemoryPath;
using sqlite_internal::kSampleColumnCount;
using sqlite_internal::kSampleColumns;
using sqlite_internal::kStepResultColumns;
using sqlite_internal::kVerdictColumns;
using sqlite_internal::LoadAttempt;
using sqlite_internal::LoadAttempts;
using sqlite_internal::LoadExperiment;
using sqlite_internal::Migrate;
using sqlite_internal::ReadAgent;
using sqlite_internal::ReadAttempt;
using sqlite_internal::ReadExperiment;
using sqlite_internal::ReadSample;
using sqlite_internal::ReadStepResult;
using sqlite_internal::ReadVerdict;
using sqlite_internal::Select;
using sqlite_internal::Stmt;
using sqlite_internal::ToMicros;
using sqlite_internal::Transact;
using sqlite_internal::TxnKind;

SqliteStore::SqliteStore(sqlite3* db, std::string path)
    : path_(std::move(path)), db_(db) {}

SqliteStore::~SqliteStore() { sqlite3_close_v2(db_); }

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const SqliteOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "store database path is empty; give a file path "
        "(sqlite:///var/lib/benchfleet/store.db)");
  }
  if (path != kMemoryPath) {
    const std::filesystem::path parent =
        std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::is_directory(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        return absl::FailedPreconditionError(
            "cannot create directory " + parent.string() +
            " for store database " + path + ": " + ec.message() +
            "; create it (writable by the controller) or choose another path");
      }
    }
  }

  sqlite3* db = nullptr;
  // NOMUTEX: our own mutex serializes use of the connection.
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status =
        db != nullptr
            ? Conn(db, path, "opening").Error(rc)
            : absl::ResourceExhaustedError("store database " + path +
                                           ": out of memory while opening");
    sqlite3_close_v2(db);
    return status;
  }
  // From here on the store owns `db` and closes it on every error path.
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, path));
  sqlite3_extended_result_codes(db, 1);
  const int64_t busy_ms = absl::ToInt64Milliseconds(options.busy_timeout);
  sqlite3_busy_timeout(db, static_cast<int>(std::clamp<int64_t>(
                               busy_ms, 0, std::numeric_limits<int>::max())));

  Conn conn(db, path, "opening");
  RETURN_IF_ERROR(conn.Exec("PRAGMA foreign_keys = ON"));
  {
    ASSIGN_OR_RETURN(Stmt mode, conn.Prepare("PRAGMA journal_mode = WAL"));
    ASSIGN_OR_RETURN(bool has_row, mode.Step());
    const std::string got = has_row ? mode.Text(0) : "";
    if (got != "wal" && !(path == kMemoryPath && got == "memory")) {
      return absl::FailedPreconditionError(
          "store database " + path +
          ": cannot switch to WAL journal mode (got \"" + got +
          "\"); put the database on a local filesystem");
    }
  }
  // FULL: a committed change survives power loss, so an acknowledged state
  // change is durable (DESIGN.md §6); WAL's default NORMAL could lose the last
  // commits.
  RETURN_IF_ERROR(conn.Exec("PRAGMA synchronous = FULL"));
  RETURN_IF_ERROR(Migrate(db, path));
  return store;
}

absl::StatusOr<int> SqliteStore::SchemaVersion() {
  int version = 0;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(
      Transact(db_, path_, TxnKind::kRead, "reading the schema version",
               [&](Conn& conn) -> absl::Status {
                 ASSIGN_OR_RETURN(
                     Stmt stmt, conn.Prepare("SELECT COALESCE(MAX(version), 0) "
                                             "FROM schema_migrations"));
                 ASSIGN_OR_RETURN(bool row, stmt.Step());
                 version = row ? static_cast<int>(stmt.Int(0)) : 0;
                 return absl::OkStatus();
               }));
  return version;
}

// ---- Experiments ----

absl::StatusOr<ExperimentRecord> SqliteStore::CreateExperiment(
    const ExperimentRecord& record) {
  RETURN_IF_ERROR(CheckNewExperiment(record));
  ASSIGN_OR_RETURN(
      std::string labels_json,
      LabelsToJson(record.required_labels,
                   "required labels of experiment \"" + record.name + "\""));
  const absl::Time created_at =
      record.created_at == absl::UnixEpoch() ? absl::Now() : record.created_at;
  ExperimentRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, "creating an experiment",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(Stmt next,
                         conn.Prepare("SELECT COALESCE(MAX(number), 0) + 1 "
                                      "FROM experiments WHERE campaign = ?"));
        next.BindText(record.campaign);
        ASSIGN_OR_RETURN(bool has_row, next.Step());
        const int64_t number = has_row ? next.Int(0) : 1;
        ASSIGN_OR_RETURN(Stmt insert,
                         conn.Prepare("INSERT INTO experiments (number, name, "
                                      "campaign, state, state_reason, "
                                      "spec_yaml, spec_path, workdir, "
                                      "required_labels_json, attempts, "
                                      "max_attempts, submitted_by, created_at, "
                                      "updated_at, report_json, "
                                      "report_text, idea, discarded_before, "
                                      "bundle_digest) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, "
                                      "?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING "
                                      "id"));
        insert.BindInt(number)
            .BindText(record.name)
            .BindText(record.campaign)
            .BindText(ExperimentStateName(ExperimentState::kQueued))
            .BindText(record.state_reason)
            .BindText(record.spec_yaml)
            .BindText(record.spec_path)
            .BindText(record.workdir)
            .BindText(labels_json)
            .BindInt(record.max_attempts)
            .BindText(record.submitted_by)
            .BindTime(created_at)
            .BindTime(created_at)
            .BindText(record.report_json)
            .BindText(record.report_text)
            .BindText(record.idea)
            .BindText(record.discarded_before)
            .BindText(record.bundle_digest);
        ASSIGN_OR_RETURN(bool returned, insert.Step());
        if (!returned)
          return absl::InternalError("INSERT ... RETURNING id returned no row");
        const int64_t id = insert.Int(0);
        RETURN_IF_ERROR(insert.Run());
        ASSIGN_OR_RETURN(out, LoadExperiment(conn, id));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ExperimentRecord> SqliteStore::GetExperiment(int64_t id) {
  ExperimentRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(db_, path_, TxnKind::kRead, "reading an experiment",
                           [&](Conn& conn) -> absl::Status {
                             ASSIGN_OR_RETURN(out, LoadExperiment(conn, id));
                             return absl::OkStatus();
                           }));
  return out;
}

absl::StatusOr<std::vector<ExperimentRecord>> SqliteStore::ListExperiments(
    int limit) {
  std::vector<ExperimentRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(db_, path_, TxnKind::kRead, "listing experiments",
                           [&](Conn& conn) -> absl::Status {
                             std::string sql =
                                 Select(kExperimentColumns,
                                        "FROM experiments ORDER BY id DESC");
                             if (limit > 0) sql += " LIMIT ?";
                             ASSIGN_OR_RETURN(Stmt stmt, conn.Prepare(sql));
                             if (limit > 0) stmt.BindInt(limit);
                             for (;;) {
                               ASSIGN_OR_RETURN(bool row, stmt.Step());
                               if (!row) return absl::OkStatus();
                               ASSIGN_OR_RETURN(ExperimentRecord experiment,
                                                ReadExperiment(stmt, path_));
                               out.push_back(std::move(experiment));
                             }
                           }));
  return out;
}

absl::StatusOr<std::optional<Store::Claim>> SqliteStore::ClaimNextExperiment(
    const std::string& agent_id,
    const std::map<std::string, std::string>& agent_labels,
    const std::string& lease_token, uint64_t seed,
    const std::set<int64_t>& skip_experiment_ids, absl::Time now) {
  RETURN_IF_ERROR(CheckClaimArguments(agent_id, lease_token));
  std::optional<Claim> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite,
      "claiming the next experiment for agent " + agent_id,
      [&](Conn& conn) -> absl::Status {
        out.reset();
        std::optional<int64_t> chosen;
        {
          ASSIGN_OR_RETURN(
              Stmt queued,
              conn.Prepare("SELECT id, required_labels_json FROM experiments "
                           "WHERE state = ? ORDER BY id"));
          queued.BindText(ExperimentStateName(ExperimentState::kQueued));
          for (;;) {
            ASSIGN_OR_RETURN(bool row, queued.Step());
            if (!row) break;
            const QueuedExperiment candidate{
                queued.Int("id"), queued.Text("required_labels_json")};
            ASSIGN_OR_RETURN(
                const bool may_claim,
                MayClaim(candidate, agent_labels, skip_experiment_ids,
                         "store database " + path_));
            if (may_claim) {
              chosen = candidate.id;
              break;
            }
          }
        }
        if (!chosen) return absl::OkStatus();

        ASSIGN_OR_RETURN(
            Stmt update,
            conn.Prepare(
                "UPDATE experiments SET state = ?, attempts = attempts + 1, "
                "updated_at = ? WHERE id = ? AND state = ?"));
        update.BindText(ExperimentStateName(ExperimentState::kRunning))
            .BindTime(now)
            .BindInt(*chosen)
            .BindText(ExperimentStateName(ExperimentState::kQueued));
        RETURN_IF_ERROR(update.Run());
        if (conn.Changes() != 1) {
          return absl::InternalError(
              "experiment " + std::to_string(*chosen) +
              " changed state while it was being claimed");
        }
        ASSIGN_OR_RETURN(
            Stmt insert,
            conn.Prepare(
                "INSERT INTO attempts (experiment_id, agent_id, lease_token, "
                "state, "
                "seed, reason, environment_json, started_at, ended_at) "
                "VALUES (?, ?, ?, ?, ?, '', '', ?, NULL) RETURNING id"));
        insert.BindInt(*chosen)
            .BindText(agent_id)
            .BindText(lease_token)
            .BindText(AttemptStateName(AttemptState::kRunning))
            .BindInt(static_cast<int64_t>(seed))
            .BindTime(now);
        ASSIGN_OR_RETURN(bool returned, insert.Step());
        if (!returned)
          return absl::InternalError("INSERT ... RETURNING id returned no row");
        const int64_t attempt_id = insert.Int(0);
        RETURN_IF_ERROR(insert.Run());

        Claim claim;
        ASSIGN_OR_RETURN(claim.experiment, LoadExperiment(conn, *chosen));
        ASSIGN_OR_RETURN(claim.attempt, LoadAttempt(conn, attempt_id));
        out = std::move(claim);
        return absl::OkStatus();
      }));
  return out;
}

// ---- Attempts and step results ----

absl::StatusOr<AttemptRecord> SqliteStore::GetAttempt(int64_t attempt_id) {
  AttemptRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(db_, path_, TxnKind::kRead, "reading an attempt",
                           [&](Conn& conn) -> absl::Status {
                             ASSIGN_OR_RETURN(out,
                                              LoadAttempt(conn, attempt_id));
                             return absl::OkStatus();
                           }));
  return out;
}

absl::StatusOr<std::vector<AttemptRecord>> SqliteStore::ListAttempts(
    int64_t experiment_id) {
  std::vector<AttemptRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(
      Transact(db_, path_, TxnKind::kRead, "listing attempts",
               [&](Conn& conn) -> absl::Status {
                 ASSIGN_OR_RETURN(
                     Stmt stmt,
                     conn.Prepare(Select(
                         kAttemptColumns,
                         "FROM attempts WHERE experiment_id = ? ORDER BY id")));
                 stmt.BindInt(experiment_id);
                 ASSIGN_OR_RETURN(out, LoadAttempts(conn, stmt));
                 return absl::OkStatus();
               }));
  return out;
}

absl::StatusOr<std::vector<AttemptRecord>> SqliteStore::ListRunningAttempts() {
  std::vector<AttemptRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing running attempts",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(kAttemptColumns,
                                "FROM attempts WHERE state = ? ORDER BY id")));
        stmt.BindText(AttemptStateName(AttemptState::kRunning));
        ASSIGN_OR_RETURN(out, LoadAttempts(conn, stmt));
        return absl::OkStatus();
      }));
  return out;
}

absl::Status SqliteStore::SetAttemptEnvironment(int64_t attempt_id,
                                                const std::string& env_json) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "recording an attempt's environment",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(
                "UPDATE attempts SET environment_json = ? WHERE id = ?"));
        stmt.BindText(env_json).BindInt(attempt_id);
        RETURN_IF_ERROR(stmt.Run());
        if (conn.Changes() == 0) {
          return absl::NotFoundError("attempt " + std::to_string(attempt_id) +
                                     " not found");
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<RecordOutcome> SqliteStore::RecordStepResult(
    const StepResultRecord& result, const std::string& lease_token) {
  ASSIGN_OR_RETURN(
      const std::string flags_json,
      HostFlagsToJson(result.host_flags,
                      "result for step " + std::to_string(result.step_seq) +
                          " of attempt " + std::to_string(result.attempt_id)));
  RecordOutcome outcome = RecordOutcome::kInserted;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, "recording a step result",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt,
                         LoadAttempt(conn, result.attempt_id));
        RETURN_IF_ERROR(CheckResultAccepted(attempt, lease_token, result));
        std::string sql = "INSERT INTO step_results (";
        sql.append(kStepResultColumns);
        sql.append(
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?) "
            "ON CONFLICT (attempt_id, step_seq) DO NOTHING");
        ASSIGN_OR_RETURN(Stmt insert, conn.Prepare(sql));
        insert.BindInt(result.attempt_id)
            .BindInt(result.step_seq)
            .BindText(result.kind)
            .BindText(result.variant)
            .BindText(result.input)
            .BindInt(result.wall_ns)
            .BindInt(result.user_ns)
            .BindInt(result.sys_ns)
            .BindInt(result.max_rss_bytes)
            .BindInt(result.exit_code)
            .BindInt(result.term_signal)
            .BindInt(result.timed_out ? 1 : 0)
            .BindText(result.output_digest)
            .BindText(result.metrics_json)
            .BindText(result.error)
            .BindTime(result.finished_at)
            .BindText(result.host_json)
            .BindText(flags_json)
            .BindInt(result.gate_wait_ns);
        RETURN_IF_ERROR(insert.Run());
        outcome = conn.Changes() == 0 ? RecordOutcome::kDuplicate
                                      : RecordOutcome::kInserted;
        return absl::OkStatus();
      }));
  return outcome;
}

absl::StatusOr<std::vector<StepResultRecord>> SqliteStore::ListStepResults(
    int64_t attempt_id) {
  std::vector<StepResultRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing step results",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(
                kStepResultColumns,
                "FROM step_results WHERE attempt_id = ? ORDER BY step_seq")));
        stmt.BindInt(attempt_id);
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          ASSIGN_OR_RETURN(StepResultRecord result,
                           ReadStepResult(stmt, path_));
          out.push_back(std::move(result));
        }
      }));
  return out;
}

absl::Status SqliteStore::CompleteExperiment(
    int64_t attempt_id, const std::string& lease_token,
    const std::string& report_json, const std::string& report_text,
    const std::vector<VerdictRecord>& verdicts, absl::Time now) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "completing an experiment",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt, LoadAttempt(conn, attempt_id));
        RETURN_IF_ERROR(CheckCompletionLease(attempt, lease_token));
        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(conn, attempt.experiment_id));
        RETURN_IF_ERROR(CheckCompletionExperiment(experiment, attempt));
        const std::string which = CompletedAttemptName(attempt);

        ASSIGN_OR_RETURN(
            Stmt end_attempt,
            conn.Prepare(
                "UPDATE attempts SET state = ?, ended_at = ? WHERE id = ?"));
        end_attempt.BindText(AttemptStateName(AttemptState::kDone))
            .BindTime(now)
            .BindInt(attempt_id);
        RETURN_IF_ERROR(end_attempt.Run());

        ASSIGN_OR_RETURN(
            Stmt end_experiment,
            conn.Prepare("UPDATE experiments SET state = ?, report_json = ?, "
                         "report_text = ?, updated_at = ? WHERE id = ?"));
        end_experiment.BindText(ExperimentStateName(ExperimentState::kDone))
            .BindText(report_json)
            .BindText(report_text)
            .BindTime(now)
            .BindInt(experiment.id);
        RETURN_IF_ERROR(end_experiment.Run());

        for (const VerdictRecord& verdict : verdicts) {
          RETURN_IF_ERROR(
              CheckVerdictBelongs(verdict, experiment.id, attempt_id, which));
          ASSIGN_OR_RETURN(Stmt insert,
                           conn.Prepare("INSERT INTO verdicts (experiment_id, "
                                        "attempt_id, variant, verdict, "
                                        "reason, relative_change, detail_json) "
                                        "VALUES (?, ?, ?, ?, ?, ?, ?)"));
          insert.BindInt(experiment.id)
              .BindInt(attempt_id)
              .BindText(verdict.variant)
              .BindText(verdict.verdict)
              .BindText(verdict.reason)
              .BindDouble(verdict.change)
              .BindText(verdict.detail_json);
          RETURN_IF_ERROR(insert.Run());
        }
        return absl::OkStatus();
      });
}

absl::Status SqliteStore::EndAttempt(int64_t attempt_id, AttemptState state,
                                     const std::string& reason,
                                     absl::Time now) {
  RETURN_IF_ERROR(CheckEndState(attempt_id, state));
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "ending an attempt",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(AttemptRecord attempt, LoadAttempt(conn, attempt_id));
        if (!EndAttemptEndsAttempt(attempt)) return absl::OkStatus();

        ASSIGN_OR_RETURN(Stmt end_attempt,
                         conn.Prepare("UPDATE attempts SET state = ?, reason = "
                                      "?, ended_at = ? WHERE id = ?"));
        end_attempt.BindText(AttemptStateName(state))
            .BindText(reason)
            .BindTime(now)
            .BindInt(attempt_id);
        RETURN_IF_ERROR(end_attempt.Run());

        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(conn, attempt.experiment_id));
        if (!EndAttemptMovesExperiment(experiment)) return absl::OkStatus();
        ASSIGN_OR_RETURN(
            Stmt count,
            conn.Prepare("SELECT COUNT(*) FILTER (WHERE state = ?), COUNT(*) "
                         "FROM attempts WHERE experiment_id = ?"));
        count.BindText(AttemptStateName(AttemptState::kHostNotReady))
            .BindInt(experiment.id);
        ASSIGN_OR_RETURN(bool counted, count.Step());
        if (!counted) return absl::InternalError("COUNT(*) returned no row");
        const AttemptCounts counts = CountAttempts(count.Int(1), count.Int(0));
        const ExperimentTransition next =
            NextExperimentState(experiment, attempt, state, reason, counts);
        ASSIGN_OR_RETURN(
            Stmt update,
            conn.Prepare("UPDATE experiments SET state = ?, state_reason = ?, "
                         "updated_at = ? WHERE id = ?"));
        update.BindText(ExperimentStateName(next.state))
            .BindText(next.reason)
            .BindTime(now)
            .BindInt(experiment.id);
        return update.Run();
      });
}

absl::Status SqliteStore::CancelExperiment(int64_t id,
                                           const std::string& reason,
                                           absl::Time now) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "cancelling an experiment",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(ExperimentRecord experiment, LoadExperiment(conn, id));
        RETURN_IF_ERROR(CheckCancellable(experiment));
        ASSIGN_OR_RETURN(
            Stmt attempts,
            conn.Prepare(
                "UPDATE attempts SET state = ?, reason = ?, ended_at = ? "
                "WHERE experiment_id = ? AND state = ?"));
        attempts.BindText(AttemptStateName(AttemptState::kCancelled))
            .BindText(reason)
            .BindTime(now)
            .BindInt(id)
            .BindText(AttemptStateName(AttemptState::kRunning));
        RETURN_IF_ERROR(attempts.Run());
        ASSIGN_OR_RETURN(
            Stmt update,
            conn.Prepare("UPDATE experiments SET state = ?, state_reason = ?, "
                         "updated_at = ? WHERE id = ?"));
        update.BindText(ExperimentStateName(ExperimentState::kCancelled))
            .BindText(reason)
            .BindTime(now)
            .BindInt(id);
        return update.Run();
      });
}

}  // namespace benchfleet
