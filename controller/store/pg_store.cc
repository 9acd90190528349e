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
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// How long a call waits for a pooled connection that other calls are using.
constexpr absl::Duration kPoolWait = absl::Minutes(1);
// Advisory lock keys. The one-key (bigint) and two-key (int, int) forms are
// separate lock spaces in PostgreSQL.
constexpr int64_t kMigrationLockKey = 0x62656e6368666c74;  // "benchflt"
constexpr int32_t kCampaignLockClass = 0x62660001;
// The schema version that has commit_marks (migrations.cc, migration 5).
constexpr int kCommitMarksVersion = 5;
// The schema version that added experiments.idea, origin and discarded_before.
constexpr int kHistoryColumnsVersion = 6;
// The schema version that added step_results.host_json, host_flags and
// gate_wait_ns.
constexpr int kHostColumnsVersion = 7;

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// ---- Connection strings, without ever echoing a password ----

// A value for a key='value' conninfo string.
std::string QuoteConninfoValue(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

struct ConnTarget {
  std::string conninfo;  // complete key='value' string for libpq; secret
  std::string display;   // "postgresql://user@host:port/dbname"
};

absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        "cannot read the PostgreSQL password file " + path + ": " +
        std::strerror(errno) +
        "; check the path and that the controller may read it");
  }
  std::string password;
  std::getline(in, password);
  while (!password.empty() &&
         (password.back() == '\r' || password.back() == '\n')) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::InvalidArgumentError("the PostgreSQL password file " + path +
                                      " is empty; its first line must be the "
                                      "password");
  }
  return password;
}

absl::StatusOr<ConnTarget> BuildTarget(const PgOptions& options) {
  if (options.url.empty()) {
    return absl::InvalidArgumentError(
        "the PostgreSQL store URL is empty; give one such as "
        "postgresql://user@host:5432/benchfleet");
  }
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? error : "out of memory";
    PQfreemem(error);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    const std::string redacted = RedactUrl(options.url);
    // libpq quotes fragments of the string; keep them out of the message when
    // the string holds a password.
    if (redacted != options.url) message = "malformed";
    return absl::InvalidArgumentError(
        "PostgreSQL store URL \"" + redacted +
        "\" is not a valid connection string (" + message +
        "); use postgresql://user@host:port/dbname or "
        "\"host=... dbname=... user=...\"");
  }
  std::vector<std::pair<std::string, std::string>> params;
  for (const PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) params.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(parsed);

  auto find = [&](std::string_view key) -> std::string* {
    for (auto& [k, v] : params) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  auto set = [&](std::string_view key, std::string value) {
    if (std::string* existing = find(key)) {
      *existing = std::move(value);
    } else {
      params.emplace_back(std::string(key), std::move(value));
    }
  };
  if (!options.password_file.empty()) {
    ASSIGN_OR_RETURN(std::string password,
                     ReadPasswordFile(options.password_file));
    set("password", std::move(password));
  }
  if (find("connect_timeout") == nullptr) {
    const int64_t seconds =
        std::max<int64_t>(2, absl::ToInt64Seconds(options.connect_timeout));
    set("connect_timeout", std::to_string(seconds));
  }
  // Text is UTF-8 on our side whatever the database's encoding.
  if (find("client_encoding") == nullptr) set("client_encoding", "UTF8");
  if (find("application_name") == nullptr &&
      find("fallback_application_name") == nullptr) {
    set("fallback_application_name", "benchfleet");
  }

  ConnTarget target;
  for (const auto& [key, value] : params) {
    if (!target.conninfo.empty()) target.conninfo.push_back(' ');
    target.conninfo.append(key).append("=").append(QuoteConninfoValue(value));
  }
  const std::string* user = find("user");
  const std::string* host = find("host");
  const std::string* port = find("port");
  const std::string* dbname = find("dbname");
  target.display = "postgresql://";
  if (user != nullptr) target.display.append(*user).append("@");
  if (host != nullptr) target.display.append(*host);
  if (port != nullptr) target.display.append(":").append(*port);
  target.display.append("/");
  if (dbname != nullptr) target.display.append(*dbname);
  return target;
}

// libpq's message on one line.
std::string OneLine(std::string_view message) {
  std::string out;
  for (char c : message) {
    if (c == '\n') {
      if (!out.empty() && out.back() != ' ') out.append(" ");
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// A connection failure that waiting will not cure (wrong password, no such
// database or role): report it at once instead of retrying.
std::optional<absl::Status> PermanentConnectFailure(
    const std::string& display, const std::string& message) {
  const std::string text =
      "cannot connect to PostgreSQL store " + display + ": " + OneLine(message);
  if (Contains(message, "authentication failed") ||
      Contains(message, "no password supplied") ||
      Contains(message, "pg_hba.conf")) {
    return absl::PermissionDeniedError(
        text +
        "; check the user and password (password_file, PGPASSWORD or "
        "~/.pgpass) and the server's pg_hba.conf");
  }
  if (Contains(message, "does not exist")) {
    return absl::FailedPreconditionError(
        text + "; create the database and role, or fix the store URL");
  }
  if (Contains(message, "permission denied")) {
    return absl::PermissionDeniedError(
        text + "; grant the controller's user CONNECT on the database");
  }
  return std::nullopt;
}

// SQLSTATEs that mean the session is gone (server shutting down or crashed,
// connection failure): the transaction did not commit.
bool IsConnectionLoss(const std::string& sqlstate) {
  return sqlstate.starts_with("08") || sqlstate == "57P01" ||
         sqlstate == "57P02" || sqlstate == "57P03";
}

absl::Status MapSqlError(const pqxx::sql_error& e, const std::string& display,
                         std::string_view what) {
  const std::string& state = e.sqlstate();
  std::string text = "PostgreSQL store " + display + ": " + std::string(what) +
                     ": " + OneLine(e.what());
  if (!state.empty()) text += " (SQLSTATE " + state + ")";
  if (state == "23505") return absl::AlreadyExistsError(text);
  if (state.starts_with("23")) return absl::FailedPreconditionError(text);
  if (state == "42501") {
    return absl::PermissionDeniedError(
        text +
        "; grant the controller's database user the privileges it needs on "
        "the benchfleet tables (or let it own them)");
  }
  if (state.starts_with("53")) {
    return absl::ResourceExhaustedError(
        text + "; the database server is out of disk, memory or connections");
  }
  if (state.starts_with("22")) return absl::InvalidArgumentError(text);
  if (state == "42P01" || state == "42703") {
    return absl::FailedPreconditionError(
        text +
        "; the database schema is not the one this build expects: restart "
        "the controller so that it migrates the schema");
  }
  if (state == "57014") return absl::DeadlineExceededError(text);
  return absl::InternalError(text);
}

// Thrown by Txn::Exec for a text value that PostgreSQL cannot store.
struct InvalidText {
  std::string message;
};

void CheckText(std::string_view value) {
  if (value.find('\0') != std::string_view::npos) {
    throw InvalidText{
        "a text value contains a NUL character, which PostgreSQL cannot "
        "store; remove it"};
  }
}
void CheckArg(const std::string& value) { CheckText(value); }
void CheckArg(const char* value) { CheckText(value); }
template <typename T>
void CheckArg(const T&) {}

// ---- Notices: the server's NOTICE/WARNING messages go to the log ----

class NoticeLogger : public pqxx::errorhandler {
 public:
  NoticeLogger(pqxx::connection_base& conn, const std::string& display)
      : pqxx::errorhandler(conn), display_(display) {}
  bool operator()(const char message[]) noexcept override {
    try {
      const std::string text = OneLine(message);
      // libpqxx's own note on a COMMIT cut off by a broken connection: the
      // store resolves that itself (PgStore::Transact) and logs the outcome.
      if (text.find("Connection lost while committing") != std::string::npos) {
        spdlog::debug("PostgreSQL store {}: {}", display_, text);
      } else if (text.starts_with("WARNING")) {
        spdlog::warn("PostgreSQL store {}: {}", display_, text);
      } else {
        spdlog::debug("PostgreSQL store {}: {}", display_, text);
      }
    } catch (...) {
      // Logging must not throw through libpq.
    }
    return false;  // handled; do not pass on to pqxx's default (stderr)
  }

 private:
  const std::string& display_;
};

// A named statement and its SQL; prepared on a connection at its first use.
struct Query {
  const char* name;
  const char* sql;
};

}  // namespace

namespace pg_internal {

// pqxx::connection, plus access to libpq's handle for the one thing libpqxx 6
// cannot do: stream binary COPY data (RecordSamples). It is built the way
// libpqxx builds its own connection types (pqxx::basic_connection_base), from
// a connection policy that notes the handle it opens.
class RawConnection : public pqxx::connection_base {
 public:
  explicit RawConnection(const std::string& conninfo)
      : pqxx::connection_base(policy_),
        conninfo_(conninfo),
        policy_(conninfo_) {
    init();
  }
  ~RawConnection() noexcept { close(); }

  // libpq's handle while the connection is open (libpqxx may reopen it, at
  // the start of a transaction, after it broke); nullptr otherwise.
  PGconn* handle() const { return policy_.handle(); }

 private:
  class Policy : public pqxx::connect_direct {
   public:
    explicit Policy(const std::string& conninfo)
        : pqxx::connect_direct(conninfo) {}
    handle do_startconnect(handle orig) override {
      return handle_ = pqxx::connect_direct::do_startconnect(orig);
    }
    handle do_completeconnect(handle orig) override {
      return handle_ = pqxx::connect_direct::do_completeconnect(orig);
    }
    handle do_disconnect(handle orig) noexcept override {
      handle_ = nullptr;
      return pqxx::connect_direct::do_disconnect(orig);
    }
    PGconn* handle() const { return handle_; }

   private:
    PGconn* handle_ = nullptr;
  };

  // Must be initialized before policy_, which keeps a reference to it.
  const std::string conninfo_;
  Policy policy_;
};

// One pooled connection: libpq's, plus which statements it has prepared.
struct PgConn {
  PgConn(const std::string& conninfo, const std::string& display)
      : conn(conninfo), notices(conn, display), slot(RandomSlot()) {}
  RawConnection conn;
  NoticeLogger notices;
  std::set<std::string_view> prepared;
  // This connection's row in commit_marks and the last token it used; tokens
  // only grow, so a token names one transaction of this connection.
  int64_t slot;
  bool slot_registered = false;
  int64_t last_token = 0;

  // A positive 63-bit number no other connection (of any controller) is
  // expected to draw; registration checks that the row is new.
  static int64_t RandomSlot() {
    std::random_device random;
    const uint64_t high = random(), low = random();
    return static_cast<int64_t>(((high << 32) | low) >> 1) | 1;
  }
};

class Pool {
 public:
  Pool(std::string conninfo, std::string display, int max_connections)
      : conninfo_(std::move(conninfo)),
        display_(std::move(display)),
        max_(std::max(1, max_connections)) {}

  // An idle connection, or a new one when fewer than max are open; nullptr
  // when none became free within kPoolWait. Throws what connecting throws
  // (pqxx::broken_connection).
  std::unique_ptr<PgConn> Acquire() {
    {
      absl::MutexLock lock(&mu_);
      auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !idle_.empty() || open_ < max_;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&available), kPoolWait)) {
        return nullptr;
      }
      if (!idle_.empty()) {
        std::unique_ptr<PgConn> conn = std::move(idle_.back());
        idle_.pop_back();
        return conn;
      }
      ++open_;  // reserve the slot; connect without holding the lock
    }
    try {
      return std::make_unique<PgConn>(conninfo_, display_);
    } catch (...) {
      absl::MutexLock lock(&mu_);
      --open_;
      throw;
    }
  }

  // Returns a connection for reuse (or drops it when it is no longer open).
  void Release(std::unique_ptr<PgConn> conn) {
    if (conn == nullptr) return;
    if (!conn->conn.is_open()) return Discard(std::move(conn));
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(conn));
  }

  // Closes a connection that broke or is in an unknown state.
  void Discard(std::unique_ptr<PgConn> conn) {
    if (conn == nullptr) return;
    conn.reset();  // closes it, outside the lock
    absl::MutexLock lock(&mu_);
    --open_;
  }

  int max() const { return max_; }

 private:
  const std::string conninfo_;  // holds the password: never log it
  const std::string display_;
  const int max_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConn>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + in use + being opened
};

// One transaction on one pooled connection; what method bodies see.
class Txn {
 public:
  Txn(pqxx::transaction_base& work, PgConn& conn) : work_(work), conn_(conn) {}

  // Runs the named statement with `args` as its parameters ($1, $2, ...).
  // Throws InvalidText for a string holding a NUL, and what libpqxx throws.
  template <typename... Args>
  pqxx::result Exec(const Query& query, const Args&... args) {
    (CheckArg(args), ...);
    if (conn_.prepared.insert(query.name).second) {
      conn_.conn.prepare(query.name, query.sql);
    }
    return work_.exec_prepared(query.name, args...);
  }
  // Runs SQL text written in this file (schema changes, COPY, SET), which
  // takes no parameters and never contains data.
  void ExecOwnSql(const std::string& sql) { work_.exec(sql); }
  // The connection, for the COPY data that only libpq can send.
  RawConnection& conn() { return conn_.conn; }

 private:
  pqxx::transaction_base& work_;
  PgConn& conn_;
};

}  // namespace pg_internal

namespace {

using pg_internal::Txn;

// ---- Row readers; the column lists and the readers must agree. ----

int64_t I64(const pqxx::field& f) { return f.as<int64_t>(); }
double F64(const pqxx::field& f) { return f.as<double>(); }
std::string Str(const pqxx::field& f) { return f.as<std::string>(); }
absl::Time Time(const pqxx::field& f) { return FromMicros(f.as<int64_t>()); }

#define BF_EXPERIMENT_COLUMNS                                               \
  "id, number, name, campaign, state, state_reason, spec_yaml, spec_path, " \
  "workdir, required_labels_json, attempts, max_attempts, submitted_by, "   \
  "created_at, updated_at, report_json, report_text"
#define BF_ATTEMPT_COLUMNS                                          \
  "id, experiment_id, agent_id, lease_token, state, seed, reason, " \
  "environment_json, started_at, ended_at"
#define BF_STEP_RESULT_COLUMNS                                             \
  "attempt_id, step_seq, kind, variant, input, wall_ns, user_ns, sys_ns, " \
  "max_rss_bytes, exit_code, term_signal, timed_out, output_digest, "      \
  "metrics_json, error, finished_at"
#define BF_VERDICT_COLUMNS                                                 \
  "experiment_id, attempt_id, variant, verdict, reason, relative_change, " \
  "detail_json"
#define BF_AGENT_COLUMNS \
  "id, hostname, labels_json, facts_json, state, cordoned, last_seen"
#define BF_SAMPLE_COLUMNS                                               \
  "attempt_id, step_seq, agent_id, taken_at, cpu_util, load1, "         \
  "mem_available_bytes, min_freq_mhz, max_cpu_temp_c, max_gpu_temp_c, " \
  "gpu_util, throttle_events, competing_cpu, detail_json"

absl::StatusOr<ExperimentRecord> ReadExperiment(const pqxx::row& row,
                                                const std::string& display) {
  ExperimentRecord r;
  r.id = I64(row[0]);
  r.number = I64(row[1]);
  r.name = Str(row[2]);
  r.campaign = Str(row[3]);
  const std::string state = Str(row[4]);
  if (!ParseExperimentState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": experiment " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  r.state_reason = Str(row[5]);
  r.spec_yaml = Str(row[6]);
  r.spec_path = Str(row[7]);
  r.workdir = Str(row[8]);
  ASSIGN_OR_RETURN(
      r.required_labels,
      LabelsFromJson(Str(row[9]),
                     "required labels of experiment " + std::to_string(r.id),
                     "PostgreSQL store " + display));
  r.attempts = static_cast<int>(I64(row[10]));
  r.max_attempts = static_cast<int>(I64(row[11]));
  r.submitted_by = Str(row[12]);
  r.created_at = Time(row[13]);
  r.updated_at = Time(row[14]);
  r.report_json = Str(row[15]);
  r.report_text = Str(row[16]);
  if (row.size() > 17) {  // the history columns (migration 6)
    r.idea = Str(row[17]);
    r.origin = row[18].is_null() ? std::string() : Str(row[18]);
    r.discarded_before = Str(row[19]);
  }
  return r;
}

absl::StatusOr<AttemptRecord> ReadAttempt(const pqxx::row& row,
                                          const std::string& display) {
  AttemptRecord r;
  r.id = I64(row[0]);
  r.experiment_id = I64(row[1]);
  r.agent_id = Str(row[2]);
  r.lease_token = Str(row[3]);
  const std::string state = Str(row[4]);
  if (!ParseAttemptState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": attempt " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  // The seed is stored as the int64 with the same bits.
  r.seed = static_cast<uint64_t>(I64(row[5]));
  r.reason = Str(row[6]);
  r.environment_json = Str(row[7]);
  r.started_at = Time(row[8]);
  r.ended_at = row[9].is_null() ? absl::UnixEpoch() : Time(row[9]);
  return r;
}

// `host`: the row has the host columns of migration 7 after the others.
absl::StatusOr<StepResultRecord> ReadStepResult(const pqxx::row& row, bool host,
                                                const std::string& display) {
  StepResultRecord r;
  r.attempt_id = I64(row[0]);
  r.step_seq = I64(row[1]);
  r.kind = Str(row[2]);
  r.variant = Str(row[3]);
  r.input = Str(row[4]);
  r.wall_ns = I64(row[5]);
  r.user_ns = I64(row[6]);
  r.sys_ns = I64(row[7]);
  r.max_rss_bytes = I64(row[8]);
  r.exit_code = static_cast<int>(I64(row[9]));
  r.term_signal = static_cast<int>(I64(row[10]));
  r.timed_out = I64(row[11]) != 0;
  r.output_digest = Str(row[12]);
  r.metrics_json = Str(row[13]);
  r.error = Str(row[14]);
  r.finished_at = Time(row[15]);
  if (!host) {
    r.host_json = "{}";
    return r;
  }
  r.host_json = Str(row[16]);
  ASSIGN_OR_RETURN(
      r.host_flags,
      HostFlagsFromJson(Str(row[17]),
                        "host flags of step " + std::to_string(r.step_seq) +
                            " of attempt " + std::to_string(r.attempt_id),
                        "PostgreSQL store " + display));
  r.gate_wait_ns = I64(row[18]);
  return r;
}

VerdictRecord ReadVerdict(const pqxx::row& row) {
  VerdictRecord r;
  r.experiment_id = I64(row[0]);
  r.attempt_id = I64(row[1]);
  r.variant = Str(row[2]);
  r.verdict = Str(row[3]);
  r.reason = Str(row[4]);
  r.change = F64(row[5]);
  r.detail_json = Str(row[6]);
  return r;
}

absl::StatusOr<AgentRecord> ReadAgent(const pqxx::row& row,
                                      const std::string& display) {
  AgentRecord r;
  r.id = Str(row[0]);
  r.hostname = Str(row[1]);
  ASSIGN_OR_RETURN(r.labels,
                   LabelsFromJson(Str(row[2]), "labels of agent " + r.id,
                                  "PostgreSQL store " + display));
  r.facts_json = Str(row[3]);
  const std::string state = Str(row[4]);
  if (!ParseAgentState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": agent " +
                               r.id + " has unknown state \"" + state + "\"");
  }
  r.cordoned = I64(row[5]) != 0;
  r.last_seen = Time(row[6]);
  return r;
}

SampleRecord ReadSample(const pqxx::row& row) {
  SampleRecord r;
  r.attempt_id = I64(row[0]);
  r.step_seq = I64(row[1]);
  r.agent_id = Str(row[2]);
  r.taken_at = Time(row[3]);
  r.cpu_util = F64(row[4]);
  r.load1 = F64(row[5]);
  r.mem_available_bytes = F64(row[6]);
  r.min_freq_mhz = F64(row[7]);
  r.max_cpu_temp_c = F64(row[8]);
  r.max_gpu_temp_c = F64(row[9]);
  r.gpu_util = F64(row[10]);
  r.throttle_events = I64(row[11]);
  r.competing_cpu = F64(row[12]);
  r.detail_json = Str(row[13]);
  return r;
}

// ---- Statements ----

// Commit marks (migration 5): a connection's row, registered once, then set
// by each of its writing transactions to a token of its own.
constexpr Query kRegisterSlot{
    "bf_register_slot",
    "INSERT INTO commit_marks (slot, token, marked_at) VALUES ($1, 0, $2) "
    "ON CONFLICT (slot) DO NOTHING"};
constexpr Query kSetMark{
    "bf_set_mark",
    "UPDATE commit_marks SET token = $2, marked_at = $3 WHERE slot = $1"};
// FOR SHARE waits for a transaction that still holds the row (still
// committing) to end, so what it reads is final.
constexpr Query kReadMark{
    "bf_read_mark", "SELECT token FROM commit_marks WHERE slot = $1 FOR SHARE"};
constexpr Query kPruneMarks{"bf_prune_marks",
                            "DELETE FROM commit_marks WHERE marked_at < $1"};
constexpr Query kMigrationLock{"bf_migration_lock",
                               "SELECT pg_advisory_xact_lock($1)"};
constexpr Query kSchemaVersion{
    "bf_schema_version",
    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"};
constexpr Query kRecordMigration{
    "bf_record_migration",
    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"};

constexpr Query kCampaignLock{"bf_campaign_lock",
                              "SELECT pg_advisory_xact_lock($1, hashtext($2))"};
constexpr Query kNextNumber{
    "bf_next_number",
    "SELECT COALESCE(MAX(number), 0) + 1 FROM experiments "
    "WHERE hashtextextended(campaign, 0) = hashtextextended($1, 0) "
    "AND campaign = $1"};
constexpr Query kInsertExperiment{
    "bf_insert_experiment",
    "INSERT INTO experiments (number, name, campaign, state, state_reason, "
    "spec_yaml, spec_path, workdir, required_labels_json, attempts, "
    "max_attempts, submitted_by, created_at, updated_at, report_json, "
    "report_text) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, "
    "$12, $12, $13, $14) RETURNING id"};
constexpr Query kGetExperiment{"bf_get_experiment",
                               "SELECT " BF_EXPERIMENT_COLUMNS
                               " FROM experiments WHERE id = $1"};
constexpr Query kListExperiments{"bf_list_experiments",
                                 "SELECT " BF_EXPERIMENT_COLUMNS
                                 " FROM experiments ORDER BY id DESC"};
constexpr Query kListExperimentsLimit{
    "bf_list_experiments_limit", "SELECT " BF_EXPERIMENT_COLUMNS
                                 " FROM experiments ORDER BY id DESC LIMIT $1"};

// With the history columns of migration 6; the statements above serve a
// store opened at an older schema version (tests).
#define BF_EXPERIMENT_HISTORY_COLUMNS \
  BF_EXPERIMENT_COLUMNS ", idea, origin, discarded_before"
constexpr Query kGetExperimentH{"bf_get_experiment_h",
                                "SELECT " BF_EXPERIMENT_HISTORY_COLUMNS
                                " FROM experiments WHERE id = $1"};
constexpr Query kListExperimentsH{"bf_list_experiments_h",
                                  "SELECT " BF_EXPERIMENT_HISTORY_COLUMNS
                                  " FROM experiments ORDER BY id DESC"};
constexpr Query kListExperimentsLimitH{
    "bf_list_experiments_limit_h",
    "SELECT " BF_EXPERIMENT_HISTORY_COLUMNS
    " FROM experiments ORDER BY id DESC LIMIT $1"};
constexpr Query kSetExperimentHistory{
    "bf_set_experiment_history",
    "UPDATE experiments SET idea = $1, discarded_before = $2 WHERE id = $3"};
// The completing attempts and the verdicts of many experiments at once
// (ListHistory): $1 is a bigint[] literal of experiment ids.
constexpr Query kDoneAttempts{
    "bf_done_attempts",
    "SELECT DISTINCT ON (experiment_id) " BF_ATTEMPT_COLUMNS
    " FROM attempts WHERE experiment_id = ANY($1::bigint[]) AND state = $2 "
    "ORDER BY experiment_id, id DESC"};
constexpr Query kVerdictsOf{"bf_verdicts_of",
                            "SELECT " BF_VERDICT_COLUMNS
                            " FROM verdicts WHERE experiment_id = "
                            "ANY($1::bigint[]) ORDER BY experiment_id, id"};
constexpr Query kOriginPresent{"bf_origin_present",
                               "SELECT 1 FROM experiments WHERE origin = $1"};
constexpr Query kNumberTaken{
    "bf_number_taken",
    "SELECT 1 FROM experiments "
    "WHERE hashtextextended(campaign, 0) = hashtextextended($1, 0) "
    "AND campaign = $1 AND number = $2"};
constexpr Query kImportExperiment{
    "bf_import_experiment",
    "INSERT INTO experiments (number, name, campaign, state, state_reason, "
    "spec_yaml, spec_path, workdir, required_labels_json, attempts, "
    "max_attempts, submitted_by, created_at, updated_at, report_json, "
    "report_text, idea, origin, discarded_before) VALUES ($1, $2, $3, $4, $5, "
    "$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) "
    "RETURNING id"};
constexpr Query kImportAttempt{
    "bf_import_attempt",
    "INSERT INTO attempts (experiment_id, agent_id, lease_token, state, seed, "
    "reason, environment_json, started_at, ended_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"};

// ListHistory's statement for the filters that are set. Each takes the same
// parameters: $1 state, $2 name, $3 campaign, $4 idea, $5 since, $6 limit;
// name and idea are matched through their hash indexes (migration 6). Newest
// first, so that LIMIT keeps the newest.
const Query& HistoryQueryFor(bool name, bool campaign, bool idea) {
  struct Variants {
    std::string names[8];
    std::string sql[8];
    Query queries[8];
    Variants() {
      for (int mask = 0; mask < 8; ++mask) {
        std::string sql =
            "SELECT " BF_EXPERIMENT_HISTORY_COLUMNS
            " FROM experiments WHERE state = $1 AND created_at >= $5";
        if (mask & 1) {
          sql +=
              " AND hashtextextended(name, 0) = hashtextextended($2, 0)"
              " AND name = $2";
        } else {
          sql += " AND $2::text IS NOT NULL";  // keeps $2 typed
        }
        if (mask & 2) {
          sql += " AND campaign = $3";
        } else {
          sql += " AND $3::text IS NOT NULL";
        }
        if (mask & 4) {
          sql +=
              " AND hashtextextended(idea, 0) = hashtextextended($4, 0)"
              " AND idea = $4";
        } else {
          sql += " AND $4::text IS NOT NULL";
        }
        sql += " ORDER BY created_at DESC, id DESC LIMIT $6";
        this->sql[mask] = std::move(sql);
        names[mask] = "bf_history_" + std::to_string(mask);
        queries[mask] = Query{names[mask].c_str(), this->sql[mask].c_str()};
      }
    }
  };
  static const Variants* const variants = new Variants();
  return variants
      ->queries[(name ? 1 : 0) | (campaign ? 2 : 0) | (idea ? 4 : 0)];
}

absl::Status HistoryNeedsMigration(const std::string& display) {
  return absl::FailedPreconditionError(
      "PostgreSQL store " + display +
      " is at a schema version without history (before migration 6); open it "
      "with a store at the latest schema version to migrate it");
}

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

constexpr Query kGetAttempt{"bf_get_attempt", "SELECT " BF_ATTEMPT_COLUMNS
                                              " FROM attempts WHERE id = $1"};
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
    "$15, $16) ON CONFLICT (attempt_id, step_seq) DO NOTHING"};
constexpr Query kListStepResults{"bf_list_step_results",
                                 "SELECT " BF_STEP_RESULT_COLUMNS
                                 " FROM step_results WHERE attempt_id = $1 "
                                 "ORDER BY step_seq"};
// With the host columns of migration 7; the two statements above serve a
// store opened at an older schema version (tests).
#define BF_STEP_RESULT_HOST_COLUMNS \
  BF_STEP_RESULT_COLUMNS ", host_json, host_flags, gate_wait_ns"
constexpr Query kInsertStepResultH{
    "bf_insert_step_result_h",
    "INSERT INTO step_results (" BF_STEP_RESULT_HOST_COLUMNS
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
    "$15, $16, $17, $18, $19) ON CONFLICT (attempt_id, step_seq) DO NOTHING"};
constexpr Query kListStepResultsH{"bf_list_step_results_h",
                                  "SELECT " BF_STEP_RESULT_HOST_COLUMNS
                                  " FROM step_results WHERE attempt_id = $1 "
                                  "ORDER BY step_seq"};

constexpr Query kEndAttemptDone{
    "bf_end_attempt_done",
    "UPDATE attempts SET state = $1, ended_at = $2 WHERE id = $3"};
constexpr Query kCompleteExperiment{
    "bf_complete_experiment",
    "UPDATE experiments SET state = $1, report_json = $2, report_text = $3, "
    "updated_at = $4 WHERE id = $5"};
constexpr Query kInsertVerdict{
    "bf_insert_verdict",
    "INSERT INTO verdicts (experiment_id, attempt_id, variant, verdict, "
    "reason, relative_change, detail_json) VALUES ($1, $2, $3, $4, $5, $6, "
    "$7)"};
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
constexpr Query kListVerdicts{"bf_list_verdicts",
                              "SELECT " BF_VERDICT_COLUMNS
                              " FROM verdicts WHERE experiment_id = $1 "
                              "ORDER BY id"};

constexpr Query kListSamples{"bf_list_samples",
                             "SELECT " BF_SAMPLE_COLUMNS
                             " FROM samples WHERE attempt_id = $1 "
                             "ORDER BY taken_at, step_seq"};
constexpr Query kDeleteSamples{"bf_delete_samples",
                               "DELETE FROM samples WHERE taken_at < $1"};

// Agents are keyed by a hash of their id (migration 4); each statement also
// compares the id itself. `cordoned` is an operator's decision: a
// re-registering agent cannot clear it. When another agent's id has the same
// hash, the WHERE clause makes the upsert change nothing (0 rows).
#define BF_AGENT_ID_IS(param) \
  "hashtextextended(id, 0) = hashtextextended(" param ", 0) AND id = " param
constexpr Query kUpsertAgent{
    "bf_upsert_agent",
    "INSERT INTO agents (" BF_AGENT_COLUMNS
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT ((hashtextextended(id, 0))) DO UPDATE SET "
    "hostname = excluded.hostname, labels_json = excluded.labels_json, "
    "facts_json = excluded.facts_json, state = excluded.state, "
    "last_seen = excluded.last_seen, "
    "cordoned = CASE WHEN excluded.cordoned <> 0 THEN 1 "
    "ELSE agents.cordoned END WHERE agents.id = excluded.id"};
constexpr Query kSetAgentStateSeen{
    "bf_set_agent_state_seen",
    "UPDATE agents SET state = $1, last_seen = $2 WHERE " BF_AGENT_ID_IS("$3")};
constexpr Query kSetAgentState{
    "bf_set_agent_state",
    "UPDATE agents SET state = $1 WHERE " BF_AGENT_ID_IS("$2")};
constexpr Query kSetAgentCordoned{
    "bf_set_agent_cordoned",
    "UPDATE agents SET cordoned = $1 WHERE " BF_AGENT_ID_IS("$2")};
constexpr Query kGetAgent{"bf_get_agent",
                          "SELECT " BF_AGENT_COLUMNS
                          " FROM agents WHERE " BF_AGENT_ID_IS("$1")};
constexpr Query kListAgents{
    "bf_list_agents", "SELECT " BF_AGENT_COLUMNS " FROM agents ORDER BY id"};

// ---- COPY in binary format ----
// RecordSamples streams rows in COPY's binary format: the server then copies
// numbers instead of parsing their text (a quarter of its work per row on the
// ingest path; docs/perf/pg-ingest.md), and doubles, NaN and infinities
// included, arrive bit for bit. The column types of `samples` must match the
// encoders below (BIGINT, DOUBLE PRECISION, TEXT).

void PutBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}
void PutInt64Field(std::string& out, int64_t value) {
  PutBigEndian(out, 8, 4);  // field length
  PutBigEndian(out, static_cast<uint64_t>(value), 8);
}
void PutDoubleField(std::string& out, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  PutBigEndian(out, 8, 4);
  PutBigEndian(out, bits, 8);
}
void PutTextField(std::string& out, std::string_view text) {
  PutBigEndian(out, text.size(), 4);
  out.append(text);
}

constexpr int kSampleFields = 14;

void PutSampleRow(std::string& out, const SampleRecord& s) {
  PutBigEndian(out, kSampleFields, 2);
  PutInt64Field(out, s.attempt_id);
  PutInt64Field(out, s.step_seq);
  PutTextField(out, s.agent_id);
  PutInt64Field(out, ToMicros(s.taken_at));
  for (double value :
       {s.cpu_util, s.load1, s.mem_available_bytes, s.min_freq_mhz,
        s.max_cpu_temp_c, s.max_gpu_temp_c, s.gpu_util}) {
    PutDoubleField(out, value);
  }
  PutInt64Field(out, s.throttle_events);
  PutDoubleField(out, s.competing_cpu);
  PutTextField(out, s.detail_json);
}

// libpq's last error, as the exception Transact knows how to handle.
[[noreturn]] void ThrowCopyError(PGconn* pg, std::string_view step) {
  const std::string message =
      std::string(step) + ": " + (pg != nullptr ? PQerrorMessage(pg) : "");
  if (pg == nullptr || PQstatus(pg) == CONNECTION_BAD) {
    throw pqxx::broken_connection(message);
  }
  throw pqxx::failure(message);
}

// Streams `samples` in COPY's binary format (header, rows, trailer) into the
// COPY that `pg` has just started, then ends it and reads its outcome. Rows
// are formatted a chunk at a time and each chunk is sent at once, so the
// server reads one chunk while the next is being formatted. Throws
// pqxx::sql_error with the server's SQLSTATE when the server refuses the data,
// pqxx::broken_connection when the connection breaks.
void StreamSamples(PGconn* pg, const std::vector<SampleRecord>& samples) {
  if (pg == nullptr) ThrowCopyError(pg, "COPY samples");
  constexpr size_t kChunkBytes = size_t{32} << 10;
  std::string chunk;
  chunk.reserve(kChunkBytes + 4096);
  auto send = [&] {
    if (PQputCopyData(pg, chunk.data(), static_cast<int>(chunk.size())) != 1) {
      ThrowCopyError(pg, "sending COPY data");
    }
    chunk.clear();
  };
  // Signature, flags, header extension length.
  chunk.append("PGCOPY\n\xff\r\n\0", 11);
  PutBigEndian(chunk, 0, 4);
  PutBigEndian(chunk, 0, 4);
  for (const SampleRecord& s : samples) {
    PutSampleRow(chunk, s);
    if (chunk.size() >= kChunkBytes) send();
  }
  PutBigEndian(chunk, 0xffff, 2);  // trailer: a field count of -1
  send();
  if (PQputCopyEnd(pg, nullptr) != 1) ThrowCopyError(pg, "ending COPY");
  std::optional<pqxx::sql_error> refused;
  bool connection_lost = false;
  std::string lost_message;
  for (PGresult* result = PQgetResult(pg); result != nullptr;
       result = PQgetResult(pg)) {
    if (PQresultStatus(result) != PGRES_COMMAND_OK && !refused) {
      const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
      refused.emplace(PQresultErrorMessage(result), "COPY samples", state);
      if (PQstatus(pg) == CONNECTION_BAD) {
        connection_lost = true;
        lost_message = PQresultErrorMessage(result);
      }
    }
    PQclear(result);
  }
  if (connection_lost) throw pqxx::broken_connection(lost_message);
  if (refused) throw *refused;
}

absl::StatusOr<ExperimentRecord> LoadExperiment(Txn& txn, int64_t id,
                                                const std::string& display,
                                                bool history) {
  const pqxx::result r =
      txn.Exec(history ? kGetExperimentH : kGetExperiment, id);
  if (r.empty()) {
    return absl::NotFoundError("experiment " + std::to_string(id) +
                               " not found");
  }
  return ReadExperiment(r[0], display);
}

absl::StatusOr<AttemptRecord> LoadAttempt(Txn& txn, int64_t id,
                                          const std::string& display) {
  const pqxx::result r = txn.Exec(kGetAttempt, id);
  if (r.empty()) {
    return absl::NotFoundError("attempt " + std::to_string(id) + " not found");
  }
  return ReadAttempt(r[0], display);
}

absl::StatusOr<std::vector<AttemptRecord>> ReadAttempts(
    const pqxx::result& r, const std::string& display) {
  std::vector<AttemptRecord> out;
  out.reserve(r.size());
  for (const pqxx::row& row : r) {
    ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(row, display));
    out.push_back(std::move(attempt));
  }
  return out;
}

}  // namespace

// ---- Transactions: reconnect, retry, resolve in-doubt commits ----

PgStore::PgStore(std::string display_name,
                 std::unique_ptr<pg_internal::Pool> pool,
                 absl::Duration reconnect_timeout)
    : display_name_(std::move(display_name)),
      pool_(std::move(pool)),
      reconnect_timeout_(reconnect_timeout) {}

PgStore::~PgStore() = default;

namespace {

// Thrown when a connection's commit_marks row is gone (pruned after a week
// of idleness): the connection registers it again and the call runs again.
struct SlotMissing {};

// Runs `body` once in a transaction on `conn`. Throws what libpqxx throws; the
// transaction object is gone (rolled back unless committed) when this returns
// or throws. With `mark`, the transaction first sets the connection's commit
// mark to a new token, stored in `*token`. `*committing` becomes true once
// COMMIT is sent.
absl::Status RunOnce(pg_internal::PgConn& conn, bool write, bool mark,
                     const std::function<absl::Status(Txn&)>& body,
                     int64_t* token, bool* committing) {
  auto run = [&](pqxx::transaction_base& work) -> absl::Status {
    Txn txn(work, conn);
    if (mark) {
      *token = ++conn.last_token;
      if (txn.Exec(kSetMark, conn.slot, *token, ToMicros(absl::Now()))
              .affected_rows() != 1) {
        throw SlotMissing{};
      }
    }
    absl::Status status = body(txn);
    if (!status.ok()) return status;  // rolled back by the destructor
    *committing = true;
    work.commit();
    return absl::OkStatus();
  };
  if (write) {
    pqxx::work work(conn.conn);
    return run(work);
  }
  pqxx::read_transaction work(conn.conn);
  return run(work);
}

// Registers `conn`'s commit-mark row (its own small transaction, safe to
// repeat). Throws what libpqxx throws.
void RegisterSlot(pg_internal::PgConn& conn) {
  for (;;) {
    pqxx::work work(conn.conn);
    Txn txn(work, conn);
    const bool fresh = txn.Exec(kRegisterSlot, conn.slot, ToMicros(absl::Now()))
                           .affected_rows() == 1;
    work.commit();
    if (fresh) break;
    conn.slot = pg_internal::PgConn::RandomSlot();  // another one's; draw again
  }
  conn.slot_registered = true;
  conn.last_token = 0;
}

}  // namespace

absl::Status PgStore::Transact(std::string_view what, TxnKind kind,
                               const std::function<absl::Status(Txn&)>& body) {
  const bool write = kind != TxnKind::kRead;
  // Only plain writes need a mark: a read changes nothing, and a kRerunnable
  // transaction may simply run again.
  const bool mark = kind == TxnKind::kWrite && commit_marks_;
  const absl::Time deadline = absl::Now() + reconnect_timeout_;
  absl::Duration backoff = kFirstBackoff;
  struct InDoubt {
    int64_t slot;
    int64_t token;
  };
  std::optional<InDoubt> in_doubt;  // a COMMIT whose outcome is unknown
  std::string last_error;
  auto prefix = [&] {
    return "PostgreSQL store " + display_name_ + ": " + std::string(what);
  };
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      if (absl::Now() + backoff > deadline) {
        if (in_doubt) {
          return absl::UnavailableError(
              prefix() +
              ": the connection broke while committing, and within " +
              absl::FormatDuration(reconnect_timeout_) +
              " the server could not tell whether the change was stored (" +
              last_error + "); check the server, then look before retrying");
        }
        return absl::UnavailableError(
            prefix() + ": the database server could not be reached within " +
            absl::FormatDuration(reconnect_timeout_) + " (" + last_error +
            "); check that it is running and reachable, then retry");
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, kMaxBackoff);
    }

    std::unique_ptr<pg_internal::PgConn> conn;
    try {
      conn = pool_->Acquire();
    } catch (const pqxx::broken_connection& e) {
      if (auto permanent = PermanentConnectFailure(display_name_, e.what())) {
        return *permanent;
      }
      last_error = OneLine(e.what());
      continue;
    } catch (const std::exception& e) {
      return absl::InternalError(
          prefix() + ": cannot open a connection: " + OneLine(e.what()));
    }
    if (conn == nullptr) {
      return absl::UnavailableError(
          prefix() + ": all " + std::to_string(pool_->max()) +
          " database connections stayed busy for " +
          absl::FormatDuration(kPoolWait) +
          "; the server may be stalled, or raise the pool size");
    }

    if (in_doubt) {
      // Did the transaction whose COMMIT was cut off commit? Its commit mark
      // says: the mark row holds its token exactly when it did. (A server's
      // transaction ids cannot answer this: after a crash, the id of a
      // transaction whose commit never reached the disk is handed out again.)
      int64_t token = -1;
      try {
        pqxx::work work(conn->conn);
        Txn txn(work, *conn);
        // Wait for a still-running transaction to end, but not beyond the
        // deadline. The value is a number we computed, not input.
        const int64_t wait_ms = std::max<int64_t>(
            1, absl::ToInt64Milliseconds(deadline - absl::Now()));
        txn.ExecOwnSql("SET LOCAL lock_timeout = " + std::to_string(wait_ms));
        const pqxx::result r = txn.Exec(kReadMark, in_doubt->slot);
        if (!r.empty()) token = I64(r[0][0]);
        // Roll back: the row lock has done its job, and a COMMIT could wait
        // on synchronous replication for a lock that needs no durability.
        work.abort();
      } catch (const pqxx::sql_error& e) {
        last_error = OneLine(e.what());
        if (e.sqlstate() == "55P03") {  // lock_not_available: still running
          pool_->Release(std::move(conn));
          continue;
        }
        pool_->Discard(std::move(conn));
        continue;
      } catch (const std::exception& e) {
        last_error = OneLine(e.what());
        pool_->Discard(std::move(conn));
        continue;
      }
      pool_->Release(std::move(conn));
      if (token == in_doubt->token) {
        spdlog::info("{}: commit confirmed after the connection broke",
                     prefix());
        return absl::OkStatus();
      }
      spdlog::warn(
          "{}: the commit cut off by a broken connection did not happen; "
          "running the transaction again",
          prefix());
      in_doubt.reset();
      backoff = kFirstBackoff;
      continue;
    }

    int64_t token = 0;
    bool committing = false;
    // The connection broke after COMMIT was sent: for a plain write, find out
    // what happened (above) before anything else; reads and re-runnable
    // writes simply run again.
    auto lost_during_commit = [&](int64_t slot) -> std::optional<absl::Status> {
      if (kind != TxnKind::kWrite) return std::nullopt;
      if (!mark) {
        return absl::UnavailableError(
            prefix() +
            ": the connection broke while committing, and this database's "
            "schema (older than version " +
            std::to_string(kCommitMarksVersion) +
            ") cannot tell whether the change was stored; check before "
            "retrying");
      }
      in_doubt = InDoubt{slot, token};
      return std::nullopt;
    };
    if (mark && !conn->slot_registered) {
      // Registering is safe to repeat, so any failure just means: again.
      try {
        RegisterSlot(*conn);
      } catch (const pqxx::sql_error& e) {
        if (!IsConnectionLoss(e.sqlstate()) && conn->conn.is_open()) {
          pool_->Release(std::move(conn));
          return MapSqlError(e, display_name_, what);
        }
        last_error = OneLine(e.what());
        pool_->Discard(std::move(conn));
        continue;
      } catch (const std::exception& e) {
        last_error = OneLine(e.what());
        pool_->Discard(std::move(conn));
        continue;
      }
    }
    try {
      absl::Status status =
          RunOnce(*conn, write, mark, body, &token, &committing);
      pool_->Release(std::move(conn));
      return status;
    } catch (const InvalidText& e) {
      pool_->Release(std::move(conn));
      return absl::InvalidArgumentError(prefix() + ": " + e.message);
    } catch (const SlotMissing&) {
      conn->slot_registered = false;
      pool_->Release(std::move(conn));
      last_error = "the connection's commit mark was pruned";
      continue;
    } catch (const pqxx::in_doubt_error&) {
      last_error = "the connection broke during COMMIT";
      const int64_t slot = conn->slot;
      pool_->Discard(std::move(conn));
      if (auto status = lost_during_commit(slot)) return *status;
    } catch (const pqxx::broken_connection& e) {
      last_error = OneLine(e.what());
      const int64_t slot = conn->slot;
      pool_->Discard(std::move(conn));
      if (committing) {
        if (auto status = lost_during_commit(slot)) return *status;
      }
    } catch (const pqxx::transaction_rollback& e) {
      // Serialization failure or deadlock: the server rolled back; run again.
      last_error = OneLine(e.what());
      pool_->Release(std::move(conn));
    } catch (const pqxx::sql_error& e) {
      if (!IsConnectionLoss(e.sqlstate()) && conn->conn.is_open()) {
        pool_->Release(std::move(conn));
        return MapSqlError(e, display_name_, what);
      }
      last_error = OneLine(e.what());
      const int64_t slot = conn->slot;
      pool_->Discard(std::move(conn));
      if (committing) {
        if (auto status = lost_during_commit(slot)) return *status;
      }
    } catch (const std::exception& e) {
      // A conversion or usage error: our bug or a damaged row. The connection
      // may be mid-protocol, so do not reuse it.
      pool_->Discard(std::move(conn));
      return absl::InternalError(prefix() + ": " + OneLine(e.what()));
    }
    spdlog::warn("{}: lost the database connection ({}); reconnecting",
                 prefix(), last_error);
  }
}

// ---- Opening and migrations ----

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(
    const PgOptions& options) {
  ASSIGN_OR_RETURN(ConnTarget target, BuildTarget(options));
  auto pool = std::make_unique<pg_internal::Pool>(
      std::move(target.conninfo), target.display, options.max_connections);
  std::unique_ptr<PgStore> store(new PgStore(
      std::move(target.display), std::move(pool), options.reconnect_timeout));
  RETURN_IF_ERROR(store->Migrate(options.schema_version));
  ASSIGN_OR_RETURN(const int version, store->SchemaVersion());
  store->commit_marks_ = version >= kCommitMarksVersion;
  store->history_columns_ = version >= kHistoryColumnsVersion;
  store->host_columns_ = version >= kHostColumnsVersion;
  if (store->commit_marks_) {
    // Rows of connections that have not written for a week are of no use:
    // their transactions ended long ago. A live connection re-registers.
    const int64_t cutoff = ToMicros(absl::Now() - absl::Hours(24 * 7));
    RETURN_IF_ERROR(store->Transact("pruning commit marks",
                                    TxnKind::kRerunnable,
                                    [&](Txn& txn) -> absl::Status {
                                      txn.Exec(kPruneMarks, cutoff);
                                      return absl::OkStatus();
                                    }));
  }
  return store;
}

absl::Status PgStore::Migrate(int target) {
  const int latest = LatestSchemaVersion();
  if (target <= 0 || target > latest) target = latest;
  for (bool done = false; !done;) {
    int applied = 0;
    RETURN_IF_ERROR(Transact(
        "migrating the schema", TxnKind::kRerunnable,
        [&](Txn& txn) -> absl::Status {
          applied = 0;
          // Serializes controllers that start at once: the second waits here
          // until the first commits, then sees its version.
          txn.Exec(kMigrationLock, kMigrationLockKey);
          txn.ExecOwnSql(std::string(SchemaMigrationsTableSql()));
          const int64_t current = I64(txn.Exec(kSchemaVersion)[0][0]);
          if (current > latest) {
            return absl::FailedPreconditionError(
                "PostgreSQL store " + display_name_ + " has schema version " +
                std::to_string(current) +
                " but this benchfleet build knows versions up to " +
                std::to_string(latest) +
                "; it was written by a newer benchfleet: upgrade this "
                "controller, or point it at another database");
          }
          done = current >= target;
          if (done) return absl::OkStatus();
          const Migration& migration = AllMigrations()[current];
          if (migration.version != current + 1) {
            return absl::InternalError(
                "schema migrations are not numbered 1.." +
                std::to_string(latest) + " without gaps");
          }
          for (const std::string& sql :
               MigrationStatements(migration, SqlDialect::kPostgres)) {
            txn.ExecOwnSql(sql);
          }
          // Bookkeeping only, so the wall clock rather than an injected Clock.
          txn.Exec(kRecordMigration, migration.version, ToMicros(absl::Now()));
          applied = migration.version;
          return absl::OkStatus();
        }));
    if (applied != 0) {
      spdlog::info("PostgreSQL store {}: applied schema migration {} ({})",
                   display_name_, applied,
                   AllMigrations()[applied - 1].description);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PgStore::SchemaVersion() {
  int version = 0;
  RETURN_IF_ERROR(Transact("reading the schema version", TxnKind::kRead,
                           [&](Txn& txn) -> absl::Status {
                             version = static_cast<int>(
                                 I64(txn.Exec(kSchemaVersion)[0][0]));
                             return absl::OkStatus();
                           }));
  return version;
}

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
            record.report_json, record.report_text)[0][0]);
        if (history_columns_) {
          txn.Exec(kSetExperimentHistory, record.idea, record.discarded_before,
                   id);
        }
        ASSIGN_OR_RETURN(
            out, LoadExperiment(txn, id, display_name_, history_columns_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ExperimentRecord> PgStore::GetExperiment(int64_t id) {
  ExperimentRecord out;
  RETURN_IF_ERROR(Transact(
      "reading an experiment", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        ASSIGN_OR_RETURN(
            out, LoadExperiment(txn, id, display_name_, history_columns_));
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
        const pqxx::result r =
            limit > 0 ? txn.Exec(history_columns_ ? kListExperimentsLimitH
                                                  : kListExperimentsLimit,
                                 limit)
                      : txn.Exec(history_columns_ ? kListExperimentsH
                                                  : kListExperiments);
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
          const QueuedExperiment candidate{I64(row[0]), Str(row[1])};
          ASSIGN_OR_RETURN(const bool may_claim,
                           MayClaim(candidate, agent_labels,
                                    skip_experiment_ids,
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
        ASSIGN_OR_RETURN(
            claim.experiment,
            LoadExperiment(txn, *chosen, display_name_, history_columns_));
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
        const pqxx::result r =
            host_columns_
                ? txn.Exec(kInsertStepResultH, result.attempt_id,
                           result.step_seq, result.kind, result.variant,
                           result.input, result.wall_ns, result.user_ns,
                           result.sys_ns, result.max_rss_bytes,
                           result.exit_code, result.term_signal,
                           result.timed_out ? 1 : 0, result.output_digest,
                           result.metrics_json, result.error,
                           ToMicros(result.finished_at), result.host_json,
                           flags_json, result.gate_wait_ns)
                : txn.Exec(kInsertStepResult, result.attempt_id,
                           result.step_seq, result.kind, result.variant,
                           result.input, result.wall_ns, result.user_ns,
                           result.sys_ns, result.max_rss_bytes,
                           result.exit_code, result.term_signal,
                           result.timed_out ? 1 : 0, result.output_digest,
                           result.metrics_json, result.error,
                           ToMicros(result.finished_at));
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
        for (const pqxx::row& row :
             txn.Exec(host_columns_ ? kListStepResultsH : kListStepResults,
                      attempt_id)) {
          ASSIGN_OR_RETURN(StepResultRecord result,
                           ReadStepResult(row, host_columns_, display_name_));
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
        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(txn, attempt.experiment_id,
                                        display_name_, history_columns_));
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
        ASSIGN_OR_RETURN(ExperimentRecord experiment,
                         LoadExperiment(txn, attempt.experiment_id,
                                        display_name_, history_columns_));
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
        ASSIGN_OR_RETURN(
            ExperimentRecord experiment,
            LoadExperiment(txn, id, display_name_, history_columns_));
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

// ---- History ----

absl::StatusOr<std::vector<HistoryEntry>> PgStore::ListHistory(
    const HistoryQuery& q) {
  if (!history_columns_) return HistoryNeedsMigration(display_name_);
  const Query& query =
      HistoryQueryFor(!q.name.empty(), !q.campaign.empty(), !q.idea.empty());
  const int64_t since = q.since == absl::InfinitePast()
                            ? std::numeric_limits<int64_t>::min()
                            : ToMicros(q.since);
  const int64_t limit =
      q.limit > 0 ? q.limit : std::numeric_limits<int64_t>::max();
  const char* done = ExperimentStateName(ExperimentState::kDone);
  std::vector<HistoryEntry> out;
  RETURN_IF_ERROR(Transact(
      "listing history", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        // Absent filters are bound as '' and not used by the statement, so
        // every variant takes the same parameters.
        const pqxx::result r =
            txn.Exec(query, done, q.name, q.campaign, q.idea, since, limit);
        out.reserve(r.size());
        for (const pqxx::row& row : r) {
          HistoryEntry entry;
          ASSIGN_OR_RETURN(entry.experiment,
                           ReadExperiment(row, display_name_));
          out.push_back(std::move(entry));
        }
        std::reverse(out.begin(), out.end());
        if (out.empty()) return absl::OkStatus();
        // Two more statements for all entries, not two per entry.
        std::map<int64_t, HistoryEntry*> by_id;
        std::string ids = "{";
        for (HistoryEntry& entry : out) {
          if (ids.size() > 1) ids += ',';
          ids += std::to_string(entry.experiment.id);
          by_id[entry.experiment.id] = &entry;
        }
        ids += '}';
        std::set<int64_t> with_attempt;
        for (const pqxx::row& row : txn.Exec(
                 kDoneAttempts, ids, AttemptStateName(AttemptState::kDone))) {
          ASSIGN_OR_RETURN(AttemptRecord attempt,
                           ReadAttempt(row, display_name_));
          with_attempt.insert(attempt.experiment_id);
          by_id[attempt.experiment_id]->attempt = std::move(attempt);
        }
        for (const auto& [id, entry] : by_id) {
          if (!with_attempt.contains(id)) {
            return absl::DataLossError(
                "PostgreSQL store " + display_name_ + ": experiment " +
                std::to_string(id) +
                " is done but has no completed attempt; the database was "
                "modified outside benchfleet or is damaged");
          }
        }
        for (const pqxx::row& row : txn.Exec(kVerdictsOf, ids)) {
          VerdictRecord verdict = ReadVerdict(row);
          by_id[verdict.experiment_id]->verdicts.push_back(std::move(verdict));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ImportCounts> PgStore::ImportHistory(
    const std::vector<HistoryEntry>& entries) {
  if (!history_columns_) return HistoryNeedsMigration(display_name_);
  RETURN_IF_ERROR(CheckImportEntries(entries));
  ASSIGN_OR_RETURN(const std::vector<std::string> labels_json,
                   ImportedLabelsJson(entries));
  ImportCounts counts;
  RETURN_IF_ERROR(Transact(
      "importing history", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        counts = ImportCounts();
        for (size_t i = 0; i < entries.size(); ++i) {
          const ExperimentRecord& e = entries[i].experiment;
          const AttemptRecord& a = entries[i].attempt;
          if (!txn.Exec(kOriginPresent, e.origin).empty()) {
            ++counts.already_present;
            continue;
          }
          // Numbers are unique per campaign: serialize with CreateExperiment.
          txn.Exec(kCampaignLock, kCampaignLockClass, e.campaign);
          int64_t number = e.number;
          if (number < 1 ||
              !txn.Exec(kNumberTaken, e.campaign, number).empty()) {
            number = I64(txn.Exec(kNextNumber, e.campaign)[0][0]);
          }
          const int64_t experiment_id = I64(txn.Exec(
              kImportExperiment, number, e.name, e.campaign,
              ExperimentStateName(ExperimentState::kDone), e.state_reason,
              e.spec_yaml, e.spec_path, e.workdir, labels_json[i], e.attempts,
              e.max_attempts, e.submitted_by, ToMicros(e.created_at),
              ToMicros(e.updated_at), e.report_json, e.report_text, e.idea,
              e.origin, e.discarded_before)[0][0]);
          const int64_t attempt_id = I64(txn.Exec(
              kImportAttempt, experiment_id, a.agent_id,
              ImportedLeaseToken(e.origin),
              AttemptStateName(AttemptState::kDone),
              static_cast<int64_t>(a.seed), a.reason, a.environment_json,
              ToMicros(a.started_at), ToMicros(a.ended_at))[0][0]);
          for (const VerdictRecord& v : entries[i].verdicts) {
            txn.Exec(kInsertVerdict, experiment_id, attempt_id, v.variant,
                     v.verdict, v.reason, v.change, v.detail_json);
          }
          ++counts.imported;
        }
        return absl::OkStatus();
      }));
  return counts;
}

absl::StatusOr<std::vector<VerdictRecord>> PgStore::ListVerdicts(
    int64_t experiment_id) {
  std::vector<VerdictRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing verdicts", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListVerdicts, experiment_id)) {
          out.push_back(ReadVerdict(row));
        }
        return absl::OkStatus();
      }));
  return out;
}

// ---- Samples ----

absl::Status PgStore::RecordSamples(const std::vector<SampleRecord>& samples) {
  if (samples.empty()) return absl::OkStatus();
  for (const SampleRecord& s : samples) {
    if (s.agent_id.find('\0') != std::string::npos ||
        s.detail_json.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          "PostgreSQL store " + display_name_ + ": a sample of agent \"" +
          s.agent_id.substr(0, s.agent_id.find('\0')) +
          "\" contains a NUL character, which PostgreSQL cannot store; "
          "nothing was stored");
    }
  }
  for (const SampleRecord& s : samples) {
    if (s.agent_id.size() > (size_t{1} << 30) ||
        s.detail_json.size() > (size_t{1} << 30)) {
      return absl::InvalidArgumentError(
          "PostgreSQL store " + display_name_ + ": a sample of agent \"" +
          s.agent_id.substr(0, 64) +
          "\" has a text field over 1 GiB; nothing was stored");
    }
  }
  return Transact("recording " + std::to_string(samples.size()) + " samples",
                  TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
                    // One COPY for the whole batch: the rows stream to the
                    // server without waiting for replies.
                    txn.ExecOwnSql("COPY samples (" BF_SAMPLE_COLUMNS
                                   ") FROM STDIN (FORMAT binary)");
                    StreamSamples(txn.conn().handle(), samples);
                    return absl::OkStatus();
                  });
}

absl::StatusOr<std::vector<SampleRecord>> PgStore::ListSamples(
    int64_t attempt_id) {
  std::vector<SampleRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing samples", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        const pqxx::result r = txn.Exec(kListSamples, attempt_id);
        out.reserve(r.size());
        for (const pqxx::row& row : r) out.push_back(ReadSample(row));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<int64_t> PgStore::DeleteSamplesBefore(absl::Time cutoff) {
  int64_t deleted = 0;
  RETURN_IF_ERROR(Transact(
      "deleting old samples", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        deleted = static_cast<int64_t>(
            txn.Exec(kDeleteSamples, ToMicros(cutoff)).affected_rows());
        return absl::OkStatus();
      }));
  return deleted;
}

// ---- Agents ----

absl::Status PgStore::UpsertAgent(const AgentRecord& agent) {
  if (agent.id.empty()) return absl::InvalidArgumentError("agent id is empty");
  ASSIGN_OR_RETURN(std::string labels_json,
                   LabelsToJson(agent.labels, "labels of agent " + agent.id));
  return Transact(
      "registering agent " + agent.id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        const pqxx::result r =
            txn.Exec(kUpsertAgent, agent.id, agent.hostname, labels_json,
                     agent.facts_json, AgentStateName(agent.state),
                     agent.cordoned ? 1 : 0, ToMicros(agent.last_seen));
        if (r.affected_rows() != 1) {
          return absl::AlreadyExistsError(
              "agent id \"" + agent.id +
              "\" has the same key hash as another agent's id; choose "
              "another agent id");
        }
        return absl::OkStatus();
      });
}

absl::Status PgStore::SetAgentState(const std::string& agent_id,
                                    AgentState state, absl::Time now) {
  return Transact(
      "setting the state of agent " + agent_id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        // An agent marked offline was not seen then: keep its last_seen.
        const pqxx::result r =
            state != AgentState::kOffline
                ? txn.Exec(kSetAgentStateSeen, AgentStateName(state),
                           ToMicros(now), agent_id)
                : txn.Exec(kSetAgentState, AgentStateName(state), agent_id);
        if (r.affected_rows() == 0) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        return absl::OkStatus();
      });
}

absl::Status PgStore::SetAgentCordoned(const std::string& agent_id,
                                       bool cordoned) {
  return Transact(
      "cordoning agent " + agent_id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        if (txn.Exec(kSetAgentCordoned, cordoned ? 1 : 0, agent_id)
                .affected_rows() == 0) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<AgentRecord> PgStore::GetAgent(const std::string& agent_id) {
  AgentRecord out;
  RETURN_IF_ERROR(Transact(
      "reading agent " + agent_id, TxnKind::kRead,
      [&](Txn& txn) -> absl::Status {
        const pqxx::result r = txn.Exec(kGetAgent, agent_id);
        if (r.empty()) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        ASSIGN_OR_RETURN(out, ReadAgent(r[0], display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<AgentRecord>> PgStore::ListAgents() {
  std::vector<AgentRecord> out;
  RETURN_IF_ERROR(
      Transact("listing agents", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListAgents)) {
          ASSIGN_OR_RETURN(AgentRecord agent, ReadAgent(row, display_name_));
          out.push_back(std::move(agent));
        }
        return absl::OkStatus();
      }));
  return out;
}

// ---- OpenStore's factory ----

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
        HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 +
                                      HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenPgStore(const std::string& url) {
  PgOptions options;
  // Take benchfleet's own password_file parameter out of the query string;
  // libpq refuses parameters it does not know.
  const size_t query = url.find('?');
  if (query == std::string::npos) {
    options.url = url;
  } else {
    options.url = url.substr(0, query);
    std::string rest;
    std::string_view params = std::string_view(url).substr(query + 1);
    while (!params.empty()) {
      const size_t amp = params.find('&');
      const std::string_view param = params.substr(0, amp);
      params = amp == std::string_view::npos ? std::string_view()
                                             : params.substr(amp + 1);
      constexpr std::string_view kPasswordFile = "password_file=";
      if (param.starts_with(kPasswordFile)) {
        options.password_file =
            PercentDecode(param.substr(kPasswordFile.size()));
      } else if (!param.empty()) {
        rest.append(rest.empty() ? "" : "&").append(param);
      }
    }
    if (!rest.empty()) options.url += "?" + rest;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<PgStore> store, PgStore::Open(options));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace benchfleet
