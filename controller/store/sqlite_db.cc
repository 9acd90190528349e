#include "controller/store/sqlite_db.h"

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
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace sqlite_internal {

std::string_view HintFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return "another connection held the database longer than the busy "
             "timeout; retry, or "
             "look for a stuck process using the same database file";
    case SQLITE_FULL:
      return "the disk is full; free space and retry";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_CANTOPEN:
      return "check that the file and its directory exist and are writable by "
             "the controller";
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return "the file is not a benchfleet store or is damaged; restore it "
             "from a backup or "
             "choose another path";
    case SQLITE_IOERR:
      return "the disk reported an I/O error; check the filesystem";
    default:
      return "";
  }
}

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    case SQLITE_TOOBIG:
      return absl::StatusCode::kInvalidArgument;
    case SQLITE_CONSTRAINT:
      return rc == SQLITE_CONSTRAINT_UNIQUE ||
                     rc == SQLITE_CONSTRAINT_PRIMARYKEY
                 ? absl::StatusCode::kAlreadyExists
                 : absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

absl::StatusOr<Stmt> Conn::Prepare(std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(
      db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return Error(rc);
  }
  return Stmt(this, stmt);
}

absl::Status Conn::Exec(std::string_view sql) {
  ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
  return stmt.Run();
}

absl::Status Transact(sqlite3* db, const std::string& path, TxnKind kind,
                      std::string what,
                      const std::function<absl::Status(Conn&)>& body) {
  Conn conn(db, path, std::move(what));
  RETURN_IF_ERROR(
      conn.Exec(kind == TxnKind::kWrite ? "BEGIN IMMEDIATE" : "BEGIN"));
  absl::Status status = body(conn);
  if (status.ok()) {
    status = conn.Exec("COMMIT");
    if (status.ok()) return status;
  }
  // SQLite may already have rolled back (e.g. after SQLITE_FULL); only roll
  // back if still open.
  if (sqlite3_get_autocommit(db) == 0) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  return status;
}

absl::StatusOr<ExperimentRecord> ReadExperiment(const Stmt& row,
                                                const std::string& path) {
  ExperimentRecord r;
  r.id = row.Int("id");
  r.number = row.Int("number");
  r.name = row.Text("name");
  r.campaign = row.Text("campaign");
  const std::string state = row.Text("state");
  if (!ParseExperimentState(state, &r.state)) {
    return absl::DataLossError("store database " + path + ": experiment " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  r.state_reason = row.Text("state_reason");
  r.spec_yaml = row.Text("spec_yaml");
  r.spec_path = row.Text("spec_path");
  r.workdir = row.Text("workdir");
  ASSIGN_OR_RETURN(
      r.required_labels,
      LabelsFromJson(row.Text("required_labels_json"),
                     "required labels of experiment " + std::to_string(r.id),
                     "store database " + path));
  r.attempts = static_cast<int>(row.Int("attempts"));
  r.max_attempts = static_cast<int>(row.Int("max_attempts"));
  r.submitted_by = row.Text("submitted_by");
  r.created_at = row.Time("created_at");
  r.updated_at = row.Time("updated_at");
  r.report_json = row.Text("report_json");
  r.report_text = row.Text("report_text");
  r.idea = row.Text("idea");
  r.origin = row.Text("origin");  // NULL reads as ""
  r.discarded_before = row.Text("discarded_before");
  r.bundle_digest = row.Text("bundle_digest");
  return r;
}

absl::StatusOr<AttemptRecord> ReadAttempt(const Stmt& row,
                                          const std::string& path) {
  AttemptRecord r;
  r.id = row.Int("id");
  r.experiment_id = row.Int("experiment_id");
  r.agent_id = row.Text("agent_id");
  r.lease_token = row.Text("lease_token");
  const std::string state = row.Text("state");
  if (!ParseAttemptState(state, &r.state)) {
    return absl::DataLossError("store database " + path + ": attempt " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  // The seed is stored as the int64 with the same bits (C++20 defines both
  // conversions).
  r.seed = static_cast<uint64_t>(row.Int("seed"));
  r.reason = row.Text("reason");
  r.environment_json = row.Text("environment_json");
  r.started_at = row.Time("started_at");
  r.ended_at =
      row.IsNull("ended_at") ? absl::UnixEpoch() : row.Time("ended_at");
  return r;
}

absl::StatusOr<StepResultRecord> ReadStepResult(const Stmt& row,
                                                const std::string& path) {
  StepResultRecord r;
  r.attempt_id = row.Int("attempt_id");
  r.step_seq = row.Int("step_seq");
  r.kind = row.Text("kind");
  r.variant = row.Text("variant");
  r.input = row.Text("input");
  r.wall_ns = row.Int("wall_ns");
  r.user_ns = row.Int("user_ns");
  r.sys_ns = row.Int("sys_ns");
  r.max_rss_bytes = row.Int("max_rss_bytes");
  r.exit_code = static_cast<int>(row.Int("exit_code"));
  r.term_signal = static_cast<int>(row.Int("term_signal"));
  r.timed_out = row.Int("timed_out") != 0;
  r.output_digest = row.Text("output_digest");
  r.metrics_json = row.Text("metrics_json");
  r.error = row.Text("error");
  r.finished_at = row.Time("finished_at");
  r.host_json = row.Text("host_json");
  ASSIGN_OR_RETURN(
      r.host_flags,
      HostFlagsFromJson(row.Text("host_flags"),
                        "host flags of step " + std::to_string(r.step_seq) +
                            " of attempt " + std::to_string(r.attempt_id),
                        "store database " + path));
  r.gate_wait_ns = row.Int("gate_wait_ns");
  return r;
}

VerdictRecord ReadVerdict(const Stmt& row) {
  VerdictRecord r;
  r.experiment_id = row.Int("experiment_id");
  r.attempt_id = row.Int("attempt_id");
  r.variant = row.Text("variant");
  r.verdict = row.Text("verdict");
  r.reason = row.Text("reason");
  r.change = row.Double("relative_change");
  r.detail_json = row.Text("detail_json");
  return r;
}

SampleRecord ReadSample(const Stmt& row) {
  SampleRecord r;
  r.attempt_id = row.Int("attempt_id");
  r.step_seq = row.Int("step_seq");
  r.agent_id = row.Text("agent_id");
  r.taken_at = row.Time("taken_at");
  r.cpu_util = row.Double("cpu_util");
  r.load1 = row.Double("load1");
  r.mem_available_bytes = row.Double("mem_available_bytes");
  r.min_freq_mhz = row.Double("min_freq_mhz");
  r.max_cpu_temp_c = row.Double("max_cpu_temp_c");
  r.max_gpu_temp_c = row.Double("max_gpu_temp_c");
  r.gpu_util = row.Double("gpu_util");
  r.throttle_events = row.Int("throttle_events");
  r.competing_cpu = row.Double("competing_cpu");
  r.detail_json = row.Text("detail_json");
  return r;
}

absl::StatusOr<AgentRecord> ReadAgent(const Stmt& row,
                                      const std::string& path) {
  AgentRecord r;
  r.id = row.Text("id");
  r.hostname = row.Text("hostname");
  ASSIGN_OR_RETURN(r.labels, LabelsFromJson(row.Text("labels_json"),
                                            "labels of agent " + r.id,
                                            "store database " + path));
  r.facts_json = row.Text("facts_json");
  const std::string state = row.Text("state");
  if (!ParseAgentState(state, &r.state)) {
    return absl::DataLossError("store database " + path + ": agent " + r.id +
                               " has unknown state \"" + state + "\"");
  }
  r.cordoned = row.Int("cordoned") != 0;
  r.last_seen = row.Time("last_seen");
  return r;
}

std::string Select(std::string_view columns, std::string_view rest) {
  std::string sql = "SELECT ";
  sql.append(columns).append(" ").append(rest);
  return sql;
}

absl::StatusOr<ExperimentRecord> LoadExperiment(Conn& conn, int64_t id) {
  ASSIGN_OR_RETURN(Stmt stmt,
                   conn.Prepare(Select(kExperimentColumns,
                                       "FROM experiments WHERE id = ?")));
  stmt.BindInt(id);
  ASSIGN_OR_RETURN(bool found, stmt.Step());
  if (!found)
    return absl::NotFoundError("experiment " + std::to_string(id) +
                               " not found");
  return ReadExperiment(stmt, conn.path());
}

absl::StatusOr<AttemptRecord> LoadAttempt(Conn& conn, int64_t id) {
  ASSIGN_OR_RETURN(
      Stmt stmt,
      conn.Prepare(Select(kAttemptColumns, "FROM attempts WHERE id = ?")));
  stmt.BindInt(id);
  ASSIGN_OR_RETURN(bool found, stmt.Step());
  if (!found)
    return absl::NotFoundError("attempt " + std::to_string(id) + " not found");
  return ReadAttempt(stmt, conn.path());
}

absl::StatusOr<std::vector<AttemptRecord>> LoadAttempts(Conn& conn,
                                                        Stmt& stmt) {
  std::vector<AttemptRecord> out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return out;
    ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(stmt, conn.path()));
    out.push_back(std::move(attempt));
  }
}

absl::Status Migrate(sqlite3* db, const std::string& path) {
  const int target = LatestSchemaVersion();
  // One migration per transaction, re-reading the version each time: another
  // process may be migrating the same file concurrently, and BEGIN IMMEDIATE
  // makes us take turns.
  for (bool done = false; !done;) {
    RETURN_IF_ERROR(Transact(
        db, path, TxnKind::kWrite, "migrating the schema",
        [&](Conn& conn) -> absl::Status {
          RETURN_IF_ERROR(conn.Exec(SchemaMigrationsTableSql()));
          ASSIGN_OR_RETURN(
              Stmt query,
              conn.Prepare(
                  "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"));
          ASSIGN_OR_RETURN(bool has_row, query.Step());
          const int64_t current = has_row ? query.Int(0) : 0;
          ASSIGN_OR_RETURN(
              const Migration* next,
              NextMigration(current, target, "store database " + path));
          if (next == nullptr) {
            done = true;
            return absl::OkStatus();
          }
          const Migration& migration = *next;
          for (const std::string& sql :
               MigrationStatements(migration, SqlDialect::kSqlite)) {
            RETURN_IF_ERROR(conn.Exec(sql));
          }
          ASSIGN_OR_RETURN(Stmt record,
                           conn.Prepare("INSERT INTO schema_migrations "
                                        "(version, applied_at) VALUES (?, ?)"));
          // Bookkeeping only, so the wall clock rather than an injected Clock.
          record.BindInt(migration.version).BindTime(absl::Now());
          return record.Run();
        }));
  }
  return absl::OkStatus();
}

}  // namespace sqlite_internal
}  // namespace benchfleet
