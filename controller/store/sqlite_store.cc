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
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

constexpr std::string_view kMemoryPath = ":memory:";
// The schema version that added experiments.idea, origin and discarded_before.
constexpr int kHistoryColumnsVersion = 6;
// The schema version that added step_results.host_json, host_flags and
// gate_wait_ns.
constexpr int kHostColumnsVersion = 7;

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// What to tell an operator for the SQLite failures they can act on.
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

class Stmt;

// The connection plus what it is doing, for error messages that name the
// database file and the operation.
class Conn {
 public:
  Conn(sqlite3* db, const std::string& path, std::string what)
      : db_(db), path_(path), what_(std::move(what)) {}

  absl::StatusOr<Stmt> Prepare(std::string_view sql);
  // Runs a statement that takes no parameters and returns no rows needed by the
  // caller.
  absl::Status Exec(std::string_view sql);
  // Rows changed by the last INSERT/UPDATE/DELETE.
  int64_t Changes() const { return sqlite3_changes(db_); }

  absl::Status Error(int rc) const {
    const char* message = sqlite3_extended_errcode(db_) == rc
                              ? sqlite3_errmsg(db_)
                              : sqlite3_errstr(rc);
    std::string text = "store database " + path_ + ": " + what_ + ": " +
                       message + " (SQLite code " + std::to_string(rc) + ")";
    std::string_view hint = HintFor(rc);
    if (!hint.empty()) text.append("; ").append(hint);
    return absl::Status(CodeFor(rc), text);
  }
  const std::string& path() const { return path_; }
  sqlite3* db() const { return db_; }

 private:
  sqlite3* db_;
  const std::string& path_;
  std::string what_;
};

// A prepared statement whose parameters are bound in order.
class Stmt {
 public:
  Stmt(const Conn* conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept
      : conn_(other.conn_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        next_param_(other.next_param_),
        bind_rc_(other.bind_rc_) {}
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }

  Stmt& BindInt(int64_t value) {
    return Check(sqlite3_bind_int64(stmt_, ++next_param_, value));
  }
  Stmt& BindDouble(double value) {
    return Check(sqlite3_bind_double(stmt_, ++next_param_, value));
  }
  Stmt& BindText(std::string_view value) {
    // A null data pointer would bind SQL NULL, not "".
    const char* data = value.empty() ? "" : value.data();
    return Check(sqlite3_bind_text64(stmt_, ++next_param_, data, value.size(),
                                     SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  Stmt& BindTime(absl::Time value) { return BindInt(ToMicros(value)); }
  Stmt& BindNull() { return Check(sqlite3_bind_null(stmt_, ++next_param_)); }

  // True when a row is ready, false when the statement has finished.
  absl::StatusOr<bool> Step() {
    if (bind_rc_ != SQLITE_OK) return conn_->Error(bind_rc_);
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return conn_->Error(rc);
  }
  // Makes the statement ready to run again with new parameters.
  absl::Status Reset() {
    sqlite3_reset(stmt_);
    const int rc = sqlite3_clear_bindings(stmt_);
    next_param_ = 0;
    bind_rc_ = SQLITE_OK;
    return rc == SQLITE_OK ? absl::OkStatus() : conn_->Error(rc);
  }
  // Steps until the statement finishes, ignoring any rows.
  absl::Status Run() {
    for (;;) {
      ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return absl::OkStatus();
    }
  }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  int ColumnCount() const { return sqlite3_column_count(stmt_); }
  // The index of the result column `name`; -1 when the statement has none.
  int Column(std::string_view name) const {
    for (int i = 0; i < ColumnCount(); ++i) {
      if (name == sqlite3_column_name(stmt_, i)) return i;
    }
    return -1;
  }
  // The result column `name`, which the statement must select (a column
  // list and its reader that disagree are a bug: abort rather than read
  // another column).
  int Named(std::string_view name) const {
    const int i = Column(name);
    if (i < 0) {
      std::fprintf(stderr, "sqlite_store: no result column \"%.*s\"\n",
                   static_cast<int>(name.size()), name.data());
      std::abort();
    }
    return i;
  }
  int64_t Int(std::string_view name) const { return Int(Named(name)); }
  double Double(std::string_view name) const { return Double(Named(name)); }
  bool IsNull(std::string_view name) const { return IsNull(Named(name)); }
  absl::Time Time(std::string_view name) const { return Time(Named(name)); }
  std::string Text(std::string_view name) const { return Text(Named(name)); }
  double Double(int column) const {
    return sqlite3_column_double(stmt_, column);
  }
  bool IsNull(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  absl::Time Time(int column) const { return FromMicros(Int(column)); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    return text == nullptr
               ? std::string()
               : std::string(reinterpret_cast<const char*>(text), size);
  }

 private:
  Stmt& Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  const Conn* conn_;
  sqlite3_stmt* stmt_;
  int next_param_ = 0;
  int bind_rc_ = SQLITE_OK;
};

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

enum class TxnKind { kRead, kWrite };

// Runs `body` in one transaction; commits when it returns OK, rolls back
// otherwise. Writers take the write lock up front (BEGIN IMMEDIATE) so that a
// read-then-write transaction cannot be overtaken by another connection's write
// between its read and its write.
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

// ---- JSON label maps ----

// ---- Row readers; the column lists and the readers must agree. ----

constexpr std::string_view kExperimentColumns =
    "id, number, name, campaign, state, state_reason, spec_yaml, spec_path, "
    "workdir, "
    "required_labels_json, attempts, max_attempts, submitted_by, created_at, "
    "updated_at, "
    "report_json, report_text";

// With the columns of migration 6 (`history`) or without them (a store opened
// at an older schema version, in tests).
std::string ExperimentColumns(bool history) {
  std::string columns(kExperimentColumns);
  if (history) columns += ", idea, origin, discarded_before";
  return columns;
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
  if (row.Column("idea") >= 0) {  // the history columns (migration 6)
    r.idea = row.Text("idea");
    r.origin = row.Text("origin");  // NULL reads as ""
    r.discarded_before = row.Text("discarded_before");
  }
  return r;
}

constexpr std::string_view kAttemptColumns =
    "id, experiment_id, agent_id, lease_token, state, seed, reason, "
    "environment_json, "
    "started_at, ended_at";

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
  r.ended_at = row.IsNull("ended_at") ? absl::UnixEpoch() : row.Time("ended_at");
  return r;
}

constexpr std::string_view kStepResultColumns =
    "attempt_id, step_seq, kind, variant, input, wall_ns, user_ns, sys_ns, "
    "max_rss_bytes, "
    "exit_code, term_signal, timed_out, output_digest, metrics_json, error, "
    "finished_at";
// With the host columns of migration 7; kStepResultColumns alone serves a
// store opened at an older schema version (tests).
constexpr std::string_view kStepResultHostColumns =
    ", host_json, host_flags, gate_wait_ns";

absl::StatusOr<StepResultRecord> ReadStepResult(const Stmt& row, bool host,
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
  if (!host) {
    r.host_json = "{}";
    return r;
  }
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

constexpr std::string_view kVerdictColumns =
    "experiment_id, attempt_id, variant, verdict, reason, relative_change, "
    "detail_json";

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

constexpr std::string_view kSampleColumns =
    "attempt_id, step_seq, agent_id, taken_at, cpu_util, load1, "
    "mem_available_bytes, min_freq_mhz, max_cpu_temp_c, max_gpu_temp_c, "
    "gpu_util, throttle_events, competing_cpu, detail_json";
constexpr int kSampleColumnCount = 14;

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

constexpr std::string_view kAgentColumns =
    "id, hostname, labels_json, facts_json, state, cordoned, last_seen";

absl::StatusOr<AgentRecord> ReadAgent(const Stmt& row,
                                      const std::string& path) {
  AgentRecord r;
  r.id = row.Text("id");
  r.hostname = row.Text("hostname");
  ASSIGN_OR_RETURN(r.labels,
                   LabelsFromJson(row.Text("labels_json"), "labels of agent " + r.id,
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

absl::StatusOr<ExperimentRecord> LoadExperiment(Conn& conn, int64_t id,
                                                bool history) {
  ASSIGN_OR_RETURN(Stmt stmt,
                   conn.Prepare(Select(ExperimentColumns(history),
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

absl::Status HistoryNeedsMigration(const std::string& path) {
  return absl::FailedPreconditionError(
      "store database " + path +
      " is at a schema version without history (before migration 6); open it "
      "with a store at the latest schema version to migrate it");
}

// Migrates to `target` (LatestSchemaVersion() when 0).
absl::Status Migrate(sqlite3* db, const std::string& path, int target) {
  const int latest = LatestSchemaVersion();
  if (target <= 0 || target > latest) target = latest;
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
          if (current > latest) {
            return absl::FailedPreconditionError(
                "store database " + path + " has schema version " +
                std::to_string(current) +
                " but this benchfleet build knows versions up to " +
                std::to_string(latest) +
                "; it was written by a newer benchfleet: upgrade this "
                "controller, or point it at "
                "another database");
          }
          if (current >= target) {
            done = true;
            return absl::OkStatus();
          }
          const Migration& migration = AllMigrations()[current];
          if (migration.version != current + 1) {
            return absl::InternalError(
                "schema migrations are not numbered 1.." +
                std::to_string(latest) + " without gaps");
          }
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

}  // namespace

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
  RETURN_IF_ERROR(Migrate(db, path, options.schema_version));
  ASSIGN_OR_RETURN(const int version, store->SchemaVersion());
  store->history_columns_ = version >= kHistoryColumnsVersion;
  store->host_columns_ = version >= kHostColumnsVersion;
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
                                      "report_text) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, "
                                      "?, ?, ?, ?, ?, ?) RETURNING id"));
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
            .BindText(record.report_text);
        ASSIGN_OR_RETURN(bool returned, insert.Step());
        if (!returned)
          return absl::InternalError("INSERT ... RETURNING id returned no row");
        const int64_t id = insert.Int(0);
        RETURN_IF_ERROR(insert.Run());
        if (history_columns_) {
          ASSIGN_OR_RETURN(Stmt history,
                           conn.Prepare("UPDATE experiments SET idea = ?, "
                                        "discarded_before = ? WHERE id = ?"));
          history.BindText(record.idea)
              .BindText(record.discarded_before)
              .BindInt(id);
          RETURN_IF_ERROR(history.Run());
        }
        ASSIGN_OR_RETURN(out, LoadExperiment(conn, id, history_columns_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ExperimentRecord> SqliteStore::GetExperiment(int64_t id) {
  ExperimentRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "reading an experiment",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(out, LoadExperiment(conn, id, history_columns_));
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
                                 Select(ExperimentColumns(history_columns_),
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
            ASSIGN_OR_RETURN(const bool may_claim,
                             MayClaim(candidate, agent_labels,
                                      skip_experiment_ids,
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
        ASSIGN_OR_RETURN(claim.experiment,
                         LoadExperiment(conn, *chosen, history_columns_));
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
        if (host_columns_) sql.append(kStepResultHostColumns);
        sql.append(") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?");
        if (host_columns_) sql.append(", ?, ?, ?");
        sql.append(") ON CONFLICT (attempt_id, step_seq) DO NOTHING");
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
            .BindTime(result.finished_at);
        if (host_columns_) {
          insert.BindText(result.host_json)
              .BindText(flags_json)
              .BindInt(result.gate_wait_ns);
        }
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
        std::string columns(kStepResultColumns);
        if (host_columns_) columns.append(kStepResultHostColumns);
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(
                columns,
                "FROM step_results WHERE attempt_id = ? ORDER BY step_seq")));
        stmt.BindInt(attempt_id);
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          ASSIGN_OR_RETURN(StepResultRecord result,
                           ReadStepResult(stmt, host_columns_, path_));
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
        ASSIGN_OR_RETURN(
            ExperimentRecord experiment,
            LoadExperiment(conn, attempt.experiment_id, history_columns_));
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

        ASSIGN_OR_RETURN(
            ExperimentRecord experiment,
            LoadExperiment(conn, attempt.experiment_id, history_columns_));
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
        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(conn, id, history_columns_));
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

// ---- History ----

absl::StatusOr<std::vector<HistoryEntry>> SqliteStore::ListHistory(
    const HistoryQuery& q) {
  if (!history_columns_) return HistoryNeedsMigration(path_);
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
                         conn.Prepare(Select(ExperimentColumns(true), where)));
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
  if (!history_columns_) return HistoryNeedsMigration(path_);
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
