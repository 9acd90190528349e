// The PostgreSQL store's connections (internal to the pg_store library; only
// pg_store*.cc and pg_rows.cc include it): the pooled libpqxx connections
// (Pool, PgConn, RawConnection), one transaction on one of them (Txn) that
// runs named statements (Query), and the conversions every statement shares.
// PgStore::Transact (pg_conn.cc) drives them: reconnect, retry, in-doubt
// commits. Pool is thread-safe; a PgConn and a Txn belong to one call at a
// time.
#ifndef BENCHFLEET_CONTROLLER_STORE_PG_CONN_H_
#define BENCHFLEET_CONTROLLER_STORE_PG_CONN_H_

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace pg_internal {

// How long a call waits for a pooled connection that other calls are using.
inline constexpr absl::Duration kPoolWait = absl::Minutes(1);

inline int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
inline absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// libpq's message on one line.
inline std::string OneLine(std::string_view message) {
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

// Thrown by Txn::Exec for a text value that PostgreSQL cannot store.
struct InvalidText {
  std::string message;
};

inline void CheckText(std::string_view value) {
  if (value.find('\0') != std::string_view::npos) {
    throw InvalidText{
        "a text value contains a NUL character, which PostgreSQL cannot "
        "store; remove it"};
  }
}
inline void CheckArg(const std::string& value) { CheckText(value); }
inline void CheckArg(const char* value) { CheckText(value); }
template <typename T>
inline void CheckArg(const T&) {}

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
}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_PG_CONN_H_
