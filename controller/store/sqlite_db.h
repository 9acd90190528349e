// The SQLite store's database layer (internal to the sqlite_store library;
// only sqlite_*.cc include it): a connection with what it is doing (Conn), a
// prepared statement (Stmt) whose result columns are read by name, one
// transaction (Transact: BEGIN IMMEDIATE for writers, so that the busy
// timeout covers lock waits), the column lists and row readers (the two must
// agree), loads by id, and the migrations. Conn and Stmt belong to one call,
// under SqliteStore's mutex; the rest are pure functions and constants.
#ifndef BENCHFLEET_CONTROLLER_STORE_SQLITE_DB_H_
#define BENCHFLEET_CONTROLLER_STORE_SQLITE_DB_H_

#include <sqlite3.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/store.h"

namespace benchfleet {
namespace sqlite_internal {

inline constexpr std::string_view kMemoryPath = ":memory:";

inline int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

inline absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// What to tell an operator for the SQLite failures they can act on.
std::string_view HintFor(int rc);

absl::StatusCode CodeFor(int rc);

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
  // The rowid the last INSERT on this connection assigned.
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

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

enum class TxnKind { kRead, kWrite };

// Runs `body` in one transaction; commits when it returns OK, rolls back
// otherwise. Writers take the write lock up front (BEGIN IMMEDIATE) so that a
// read-then-write transaction cannot be overtaken by another connection's write
// between its read and its write.
absl::Status Transact(sqlite3* db, const std::string& path, TxnKind kind,
                      std::string what,
                      const std::function<absl::Status(Conn&)>& body);

// ---- JSON label maps ----
// ---- Row readers; the column lists and the readers must agree. ----
// The stores read and write the latest schema only: Open migrates every older
// database first (migrations.h).
inline constexpr std::string_view kExperimentColumns =
    "id, number, name, campaign, state, state_reason, spec_yaml, spec_path, "
    "workdir, required_labels_json, attempts, max_attempts, submitted_by, "
    "created_at, updated_at, report_json, report_text, idea, origin, "
    "discarded_before, bundle_digest";

absl::StatusOr<ExperimentRecord> ReadExperiment(const Stmt& row,
                                                const std::string& path);

inline constexpr std::string_view kAttemptColumns =
    "id, experiment_id, agent_id, lease_token, state, seed, reason, "
    "environment_json, "
    "started_at, ended_at";

absl::StatusOr<AttemptRecord> ReadAttempt(const Stmt& row,
                                          const std::string& path);

inline constexpr std::string_view kStepResultColumns =
    "attempt_id, step_seq, kind, variant, input, wall_ns, user_ns, sys_ns, "
    "max_rss_bytes, exit_code, term_signal, timed_out, output_digest, "
    "metrics_json, error, finished_at, host_json, host_flags, gate_wait_ns";

absl::StatusOr<StepResultRecord> ReadStepResult(const Stmt& row,
                                                const std::string& path);

inline constexpr std::string_view kVerdictColumns =
    "experiment_id, attempt_id, variant, verdict, reason, relative_change, "
    "detail_json";

VerdictRecord ReadVerdict(const Stmt& row);

inline constexpr std::string_view kSampleColumns =
    "attempt_id, step_seq, agent_id, taken_at, cpu_util, load1, "
    "mem_available_bytes, min_freq_mhz, max_cpu_temp_c, max_gpu_temp_c, "
    "gpu_util, throttle_events, competing_cpu, detail_json";

inline constexpr int kSampleColumnCount = 14;

SampleRecord ReadSample(const Stmt& row);

inline constexpr std::string_view kAgentColumns =
    "id, hostname, labels_json, facts_json, state, cordoned, last_seen";

absl::StatusOr<AgentRecord> ReadAgent(const Stmt& row, const std::string& path);

std::string Select(std::string_view columns, std::string_view rest);

absl::StatusOr<ExperimentRecord> LoadExperiment(Conn& conn, int64_t id);

absl::StatusOr<AttemptRecord> LoadAttempt(Conn& conn, int64_t id);

absl::StatusOr<std::vector<AttemptRecord>> LoadAttempts(Conn& conn, Stmt& stmt);

// Migrates to LatestSchemaVersion().
absl::Status Migrate(sqlite3* db, const std::string& path);

}  // namespace sqlite_internal
}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_SQLITE_DB_H_
