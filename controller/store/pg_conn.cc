// PgStore's connections and transactions: the conninfo string built from
// the URL and password file (never echoing a password), libpq errors mapped
// to absl::Status, PgStore::Transact (reconnect, retry serialization
// failures and lost connections, resolve in-doubt commits through commit
// marks), opening and migrating the schema, and OpenPgStore's URL parsing.
#include "controller/store/pg_conn.h"

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
#include "controller/store/pg_rows.h"
#include "controller/store/pg_store.h"
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {

using pg_internal::F64;
using pg_internal::FromMicros;
using pg_internal::I64;
using pg_internal::InvalidText;
using pg_internal::kPoolWait;
using pg_internal::OneLine;
using pg_internal::Query;
using pg_internal::Time;
using pg_internal::ToMicros;
using pg_internal::Txn;

namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// Advisory lock key of migrations; the one-key (bigint) and two-key (int,
// int) forms are separate lock spaces in PostgreSQL (kCampaignLockClass).
constexpr int64_t kMigrationLockKey = 0x62656e6368666c74;  // "benchflt"

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
  // transaction (migrations among them, which run before commit_marks exists)
  // may simply run again.
  const bool mark = kind == TxnKind::kWrite;
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
      if (!mark) return std::nullopt;
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
  RETURN_IF_ERROR(store->Migrate());
  // Rows of connections that have not written for a week are of no use: their
  // transactions ended long ago. A live connection re-registers.
  const int64_t cutoff = ToMicros(absl::Now() - absl::Hours(24 * 7));
  RETURN_IF_ERROR(store->Transact("pruning commit marks", TxnKind::kRerunnable,
                                  [&](Txn& txn) -> absl::Status {
                                    txn.Exec(kPruneMarks, cutoff);
                                    return absl::OkStatus();
                                  }));
  return store;
}

absl::Status PgStore::Migrate() {
  const int target = LatestSchemaVersion();
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
          ASSIGN_OR_RETURN(const Migration* next,
                           NextMigration(current, target,
                                         "PostgreSQL store " + display_name_));
          done = next == nullptr;
          if (done) return absl::OkStatus();
          const Migration& migration = *next;
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
