// SqliteStore (sqlite_store.h): history (ListHistory, ImportHistory),
// verdicts, samples and agents.
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
#include "controller/store/sqlite_store.h"
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

// ---- History ----

absl::StatusOr<std::vector<HistoryEntry>> SqliteStore::ListHistory(
    const HistoryQuery& q) {
  std::vector<HistoryEntry> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing history",
      [&](Conn& conn) -> absl::Status {
        out.clear();
        // Newest first so that LIMIT keeps the newest; reversed below.
        std::string where = "FROM experiments WHERE state = ?";
        if (!q.name.empty()) where += " AND name = ?";
        if (!q.campaign.empty()) where += " AND campaign = ?";
        if (!q.idea.empty()) where += " AND idea = ?";
        where += " AND created_at >= ? ORDER BY created_at DESC, id DESC";
        if (q.limit > 0) where += " LIMIT ?";
        ASSIGN_OR_RETURN(Stmt stmt,
                         conn.Prepare(Select(kExperimentColumns, where)));
        stmt.BindText(ExperimentStateName(ExperimentState::kDone));
        if (!q.name.empty()) stmt.BindText(q.name);
        if (!q.campaign.empty()) stmt.BindText(q.campaign);
        if (!q.idea.empty()) stmt.BindText(q.idea);
        stmt.BindInt(q.since == absl::InfinitePast()
                         ? std::numeric_limits<int64_t>::min()
                         : ToMicros(q.since));
        if (q.limit > 0) stmt.BindInt(q.limit);
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) break;
          HistoryEntry entry;
          ASSIGN_OR_RETURN(entry.experiment, ReadExperiment(stmt, path_));
          out.push_back(std::move(entry));
        }
        std::reverse(out.begin(), out.end());
        ASSIGN_OR_RETURN(
            Stmt attempt,
            conn.Prepare(Select(kAttemptColumns,
                                "FROM attempts WHERE experiment_id = ? AND "
                                "state = ? ORDER BY id DESC LIMIT 1")));
        ASSIGN_OR_RETURN(
            Stmt verdicts,
            conn.Prepare(
                Select(kVerdictColumns,
                       "FROM verdicts WHERE experiment_id = ? ORDER BY id")));
        for (HistoryEntry& entry : out) {
          const int64_t id = entry.experiment.id;
          RETURN_IF_ERROR(attempt.Reset());
          attempt.BindInt(id).BindText(AttemptStateName(AttemptState::kDone));
          ASSIGN_OR_RETURN(bool found, attempt.Step());
          if (!found) {
            return absl::DataLossError(
                "store database " + path_ + ": experiment " +
                std::to_string(id) +
                " is done but has no completed attempt; the database was "
                "modified outside benchfleet or is damaged");
          }
          ASSIGN_OR_RETURN(entry.attempt, ReadAttempt(attempt, path_));
          RETURN_IF_ERROR(verdicts.Reset());
          verdicts.BindInt(id);
          for (;;) {
            ASSIGN_OR_RETURN(bool row, verdicts.Step());
            if (!row) break;
            entry.verdicts.push_back(ReadVerdict(verdicts));
          }
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ImportCounts> SqliteStore::ImportHistory(
    const std::vector<HistoryEntry>& entries) {
  RETURN_IF_ERROR(CheckImportEntries(entries));
  ASSIGN_OR_RETURN(const std::vector<std::string> labels_json,
                   ImportedLabelsJson(entries));
  ImportCounts counts;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, "importing history",
      [&](Conn& conn) -> absl::Status {
        counts = ImportCounts();
        for (size_t i = 0; i < entries.size(); ++i) {
          const ExperimentRecord& e = entries[i].experiment;
          const AttemptRecord& a = entries[i].attempt;
          ASSIGN_OR_RETURN(
              Stmt present,
              conn.Prepare("SELECT 1 FROM experiments WHERE origin = ?"));
          present.BindText(e.origin);
          ASSIGN_OR_RETURN(bool found, present.Step());
          if (found) {
            ++counts.already_present;
            continue;
          }
          int64_t number = e.number;
          ASSIGN_OR_RETURN(Stmt taken,
                           conn.Prepare("SELECT 1 FROM experiments WHERE "
                                        "campaign = ? AND number = ?"));
          taken.BindText(e.campaign).BindInt(number);
          ASSIGN_OR_RETURN(bool is_taken, taken.Step());
          if (is_taken || number < 1) {
            ASSIGN_OR_RETURN(
                Stmt next, conn.Prepare("SELECT COALESCE(MAX(number), 0) + 1 "
                                        "FROM experiments WHERE campaign = ?"));
            next.BindText(e.campaign);
            ASSIGN_OR_RETURN(bool has_row, next.Step());
            number = has_row ? next.Int(0) : 1;
          }
          ASSIGN_OR_RETURN(
              Stmt insert,
              conn.Prepare(
                  "INSERT INTO experiments (number, name, campaign, state, "
                  "state_reason, spec_yaml, spec_path, workdir, "
                  "required_labels_json, attempts, max_attempts, "
                  "submitted_by, created_at, updated_at, report_json, "
                  "report_text, idea, origin, discarded_before) VALUES (?, ?, "
                  "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                  "RETURNING id"));
          insert.BindInt(number)
              .BindText(e.name)
              .BindText(e.campaign)
              .BindText(ExperimentStateName(ExperimentState::kDone))
              .BindText(e.state_reason)
              .BindText(e.spec_yaml)
              .BindText(e.spec_path)
              .BindText(e.workdir)
              .BindText(labels_json[i])
              .BindInt(e.attempts)
              .BindInt(e.max_attempts)
              .BindText(e.submitted_by)
              .BindTime(e.created_at)
              .BindTime(e.updated_at)
              .BindText(e.report_json)
              .BindText(e.report_text)
              .BindText(e.idea)
              .BindText(e.origin)
              .BindText(e.discarded_before);
          ASSIGN_OR_RETURN(bool returned, insert.Step());
          if (!returned)
            return absl::InternalError(
                "INSERT ... RETURNING id returned no row");
          const int64_t experiment_id = insert.Int(0);
          RETURN_IF_ERROR(insert.Run());
          ASSIGN_OR_RETURN(
              Stmt attempt,
              conn.Prepare("INSERT INTO attempts (experiment_id, agent_id, "
                           "lease_token, state, seed, reason, "
                           "environment_json, started_at, ended_at) VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"));
          attempt.BindInt(experiment_id)
              .BindText(a.agent_id)
              .BindText(ImportedLeaseToken(e.origin))
              .BindText(AttemptStateName(AttemptState::kDone))
              .BindInt(static_cast<int64_t>(a.seed))
              .BindText(a.reason)
              .BindText(a.environment_json)
              .BindTime(a.started_at)
              .BindTime(a.ended_at);
          ASSIGN_OR_RETURN(returned, attempt.Step());
          if (!returned)
            return absl::InternalError(
                "INSERT ... RETURNING id returned no row");
          const int64_t attempt_id = attempt.Int(0);
          RETURN_IF_ERROR(attempt.Run());
          for (const VerdictRecord& v : entries[i].verdicts) {
            ASSIGN_OR_RETURN(
                Stmt verdict,
                conn.Prepare("INSERT INTO verdicts (experiment_id, "
                             "attempt_id, variant, verdict, reason, "
                             "relative_change, detail_json) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)"));
            verdict.BindInt(experiment_id)
                .BindInt(attempt_id)
                .BindText(v.variant)
                .BindText(v.verdict)
                .BindText(v.reason)
                .BindDouble(v.change)
                .BindText(v.detail_json);
            RETURN_IF_ERROR(verdict.Run());
          }
          ++counts.imported;
        }
        return absl::OkStatus();
      }));
  return counts;
}

absl::StatusOr<std::vector<VerdictRecord>> SqliteStore::ListVerdicts(
    int64_t experiment_id) {
  std::vector<VerdictRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(
      Transact(db_, path_, TxnKind::kRead, "listing verdicts",
               [&](Conn& conn) -> absl::Status {
                 ASSIGN_OR_RETURN(
                     Stmt stmt,
                     conn.Prepare(Select(
                         kVerdictColumns,
                         "FROM verdicts WHERE experiment_id = ? ORDER BY id")));
                 stmt.BindInt(experiment_id);
                 for (;;) {
                   ASSIGN_OR_RETURN(bool row, stmt.Step());
                   if (!row) return absl::OkStatus();
                   out.push_back(ReadVerdict(stmt));
                 }
               }));
  return out;
}

// ---- Samples ----

absl::Status SqliteStore::RecordSamples(
    const std::vector<SampleRecord>& samples) {
  if (samples.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  // As many rows per statement as the bound-parameter limit allows, capped so
  // that one statement's text stays small.
  constexpr size_t kMaxRowsPerStatement = 500;
  const int max_params = sqlite3_limit(db_, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
  const size_t rows_per_statement = std::clamp<size_t>(
      static_cast<size_t>(std::max(max_params, 0)) / kSampleColumnCount, 1,
      kMaxRowsPerStatement);
  return Transact(
      db_, path_, TxnKind::kWrite,
      "recording " + std::to_string(samples.size()) + " samples",
      [&](Conn& conn) -> absl::Status {
        std::string full_sql;  // the statement for a whole chunk, built once
        for (size_t begin = 0; begin < samples.size();
             begin += rows_per_statement) {
          const size_t rows =
              std::min(rows_per_statement, samples.size() - begin);
          std::string sql;
          if (rows == rows_per_statement && !full_sql.empty()) {
            sql = full_sql;
          } else {
            sql = "INSERT INTO samples (";
            sql.append(kSampleColumns).append(") VALUES ");
            for (size_t i = 0; i < rows; ++i) {
              sql.append(i == 0 ? "" : ", ")
                  .append("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            }
            if (rows == rows_per_statement) full_sql = sql;
          }
          ASSIGN_OR_RETURN(Stmt insert, conn.Prepare(sql));
          for (size_t i = begin; i < begin + rows; ++i) {
            const SampleRecord& s = samples[i];
            insert.BindInt(s.attempt_id)
                .BindInt(s.step_seq)
                .BindText(s.agent_id)
                .BindTime(s.taken_at)
                .BindDouble(s.cpu_util)
                .BindDouble(s.load1)
                .BindDouble(s.mem_available_bytes)
                .BindDouble(s.min_freq_mhz)
                .BindDouble(s.max_cpu_temp_c)
                .BindDouble(s.max_gpu_temp_c)
                .BindDouble(s.gpu_util)
                .BindInt(s.throttle_events)
                .BindDouble(s.competing_cpu)
                .BindText(s.detail_json);
          }
          RETURN_IF_ERROR(insert.Run());
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<SampleRecord>> SqliteStore::ListSamples(
    int64_t attempt_id) {
  std::vector<SampleRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing samples",
      [&](Conn& conn) -> absl::Status {
        // rowid breaks ties in insertion order.
        ASSIGN_OR_RETURN(Stmt stmt,
                         conn.Prepare(Select(kSampleColumns,
                                             "FROM samples WHERE attempt_id = "
                                             "? ORDER BY taken_at, rowid")));
        stmt.BindInt(attempt_id);
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          out.push_back(ReadSample(stmt));
        }
      }));
  return out;
}

absl::StatusOr<int64_t> SqliteStore::DeleteSamplesBefore(absl::Time cutoff) {
  int64_t deleted = 0;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, "deleting old samples",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt, conn.Prepare("DELETE FROM samples WHERE taken_at < ?"));
        stmt.BindTime(cutoff);
        RETURN_IF_ERROR(stmt.Run());
        deleted = conn.Changes();
        return absl::OkStatus();
      }));
  return deleted;
}

// ---- Agents ----

absl::Status SqliteStore::UpsertAgent(const AgentRecord& agent) {
  if (agent.id.empty()) return absl::InvalidArgumentError("agent id is empty");
  ASSIGN_OR_RETURN(std::string labels_json,
                   LabelsToJson(agent.labels, "labels of agent " + agent.id));
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "registering agent " + agent.id,
      [&](Conn& conn) -> absl::Status {
        // `cordoned` is an operator's decision: a re-registering agent cannot
        // clear it.
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(
                "INSERT INTO agents (id, hostname, labels_json, facts_json, "
                "state, "
                "cordoned, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, "
                "labels_json = excluded.labels_json, facts_json = "
                "excluded.facts_json, "
                "state = excluded.state, last_seen = excluded.last_seen, "
                "cordoned = CASE WHEN excluded.cordoned <> 0 THEN 1 "
                "ELSE agents.cordoned END"));
        stmt.BindText(agent.id)
            .BindText(agent.hostname)
            .BindText(labels_json)
            .BindText(agent.facts_json)
            .BindText(AgentStateName(agent.state))
            .BindInt(agent.cordoned ? 1 : 0)
            .BindTime(agent.last_seen);
        return stmt.Run();
      });
}

absl::Status SqliteStore::SetAgentState(const std::string& agent_id,
                                        AgentState state, absl::Time now) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "setting the state of agent " + agent_id,
      [&](Conn& conn) -> absl::Status {
        const bool seen = state != AgentState::kOffline;
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(
                seen ? "UPDATE agents SET state = ?, last_seen = ? WHERE id = ?"
                     : "UPDATE agents SET state = ? WHERE id = ?"));
        stmt.BindText(AgentStateName(state));
        if (seen) stmt.BindTime(now);
        stmt.BindText(agent_id);
        RETURN_IF_ERROR(stmt.Run());
        if (conn.Changes() == 0)
          return absl::NotFoundError("agent " + agent_id + " not found");
        return absl::OkStatus();
      });
}

absl::Status SqliteStore::SetAgentCordoned(const std::string& agent_id,
                                           bool cordoned) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite, "cordoning agent " + agent_id,
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare("UPDATE agents SET cordoned = ? WHERE id = ?"));
        stmt.BindInt(cordoned ? 1 : 0).BindText(agent_id);
        RETURN_IF_ERROR(stmt.Run());
        if (conn.Changes() == 0) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<AgentRecord> SqliteStore::GetAgent(const std::string& agent_id) {
  AgentRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "reading agent " + agent_id,
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(kAgentColumns, "FROM agents WHERE id = ?")));
        stmt.BindText(agent_id);
        ASSIGN_OR_RETURN(bool found, stmt.Step());
        if (!found)
          return absl::NotFoundError("agent " + agent_id + " not found");
        ASSIGN_OR_RETURN(out, ReadAgent(stmt, path_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<AgentRecord>> SqliteStore::ListAgents() {
  std::vector<AgentRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing agents",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(kAgentColumns, "FROM agents ORDER BY id")));
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          ASSIGN_OR_RETURN(AgentRecord agent, ReadAgent(stmt, path_));
          out.push_back(std::move(agent));
        }
      }));
  return out;
}

}  // namespace benchfleet
