// PgStore: the Store (store.h) backed by PostgreSQL — what a team's shared
// controller uses (`--store postgresql://...`), so that its history survives
// restarts and Grafana can read it (views v_results, v_verdicts, v_runs;
// migrations.cc documents their columns).
//
// libpqxx stays inside the pg_store library (pg_store*.cc, pg_conn.*,
// pg_rows.*): this header names no pqxx type, and every libpqxx/libpq
// exception is turned into an absl::Status there, with a message that says
// what failed and what to do. Passwords never appear in messages or logs: the
// store names its database as "postgresql://user@host:port/dbname".
//
// Connections: a small pool (PgOptions::max_connections), opened on demand.
// Each method runs as one transaction on one pooled connection; the pool's
// mutex is held only to hand connections out and take them back, never across
// I/O, so calls from several threads run in parallel.
//
// Reliability (DESIGN.md §6): a call that finds its connection broken (the
// server restarted, a network cut) drops that connection, reconnects with
// exponential backoff (50 ms doubling to 1 s, within
// PgOptions::reconnect_timeout) and re-runs its transaction — which is safe
// because a transaction that lost its connection before COMMIT did not commit.
// When the connection breaks during COMMIT itself, the outcome is in doubt.
// So every writing transaction first sets its connection's row in the table
// commit_marks to a token of its own; afterwards the store reads that row
// (waiting for the interrupted transaction to end, if it still runs): the
// token is there exactly when the transaction committed. If it did, the call
// succeeds; if not, the transaction runs again; if the answer cannot be had
// within the time budget, the call fails with Unavailable saying so. (The
// server's transaction ids cannot answer this: after a crash, the id of a
// transaction whose commit never reached the disk is handed out again.) So
// nothing that a call acknowledged is lost, and nothing is applied twice.
//
// Concurrency between controllers: ClaimNextExperiment locks the experiment it
// takes with SELECT ... FOR UPDATE SKIP LOCKED, so two controllers never lease
// one experiment twice; schema migrations on Open take a transaction-scoped
// advisory lock, so two controllers starting at once migrate one after the
// other.
//
// Needs PostgreSQL 11 or newer (hashtextextended); Debian 12 ships 15.
//
// Thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_PG_STORE_H_
#define BENCHFLEET_CONTROLLER_STORE_PG_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/store/store.h"

namespace benchfleet {

namespace pg_internal {
class Pool;  // the connections (pg_conn.h)
class Txn;   // one transaction on a pooled connection (pg_conn.h)
}  // namespace pg_internal

struct PgOptions {
  // A libpq connection URL ("postgresql://user@host:5432/benchfleet",
  // "postgresql:///benchfleet?host=/run/postgresql") or key=value conninfo
  // ("host=db dbname=benchfleet user=bench"). A password may be in it, but
  // prefer `password_file` or the PGPASSWORD environment variable (which
  // libpq reads), so that it is not on a command line.
  std::string url;
  // A file whose first line is the password; empty for none. Overrides a
  // password in `url`.
  std::string password_file;
  // Most connections open at once; calls beyond that wait for a free one.
  int max_connections = 4;
  // How long one connection attempt may take (libpq connect_timeout; whole
  // seconds, at least 2). Used unless `url` sets connect_timeout itself.
  absl::Duration connect_timeout = absl::Seconds(5);
  // How long one call keeps reconnecting and retrying after its connection
  // broke before it fails with Unavailable.
  absl::Duration reconnect_timeout = absl::Seconds(10);
};

// Notes on this implementation of the Store contract (the same behaviour as
// SqliteStore's notes, checked by one conformance suite):
// - CreateExperiment takes created_at from the record when it is set and reads
//   the wall clock only when it is absl::UnixEpoch(). Per-campaign numbers are
//   assigned under an advisory lock on the campaign, so controllers creating
//   experiments at once get distinct numbers.
// - ClaimNextExperiment considers queued experiments oldest id first and skips
//   one that another controller is claiming at that moment.
// - Text is stored verbatim, except that PostgreSQL cannot store a NUL
//   character in text, nor text that is not valid UTF-8 (the connection's
//   encoding): such a value is InvalidArgument naming the operation, and
//   nothing is stored. Label maps must be valid UTF-8 on both stores.
// - Agent ids, lease tokens and campaign names of any length work as keys:
//   PostgreSQL cannot index long text, so its unique keys index a 64-bit hash
//   of the text (migration 4) and every lookup compares the text as well. Two
//   values whose hashes collide are refused (AlreadyExists), never merged.
// - RecordSamples streams a batch with one binary COPY in one transaction
//   (docs/perf/pg-ingest.md).
class PgStore : public Store {
 public:
  // Connects (retrying a server that is starting up, within
  // options.reconnect_timeout) and migrates the database to
  // LatestSchemaVersion(). Fails with a message naming the database (without
  // its password) and what to do: InvalidArgument for a malformed URL or an
  // unreadable password file, Unavailable when the server cannot be reached,
  // PermissionDenied for failed authentication or missing privileges,
  // FailedPrecondition when the schema is newer than this build knows.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(
      const PgOptions& options);

  ~PgStore() override;
  PgStore(const PgStore&) = delete;
  PgStore& operator=(const PgStore&) = delete;

  // "postgresql://user@host:port/dbname" — how messages name this database.
  const std::string& display_name() const { return display_name_; }

  // The highest migration version recorded in the database.
  absl::StatusOr<int> SchemaVersion();

  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& record) override;
  absl::StatusOr<ExperimentRecord> GetExperiment(int64_t id) override;
  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      int limit) override;
  absl::StatusOr<std::optional<Claim>> ClaimNextExperiment(
      const std::string& agent_id,
      const std::map<std::string, std::string>& agent_labels,
      const std::string& lease_token, uint64_t seed,
      const std::set<int64_t>& skip_experiment_ids, absl::Time now) override;
  absl::StatusOr<AttemptRecord> GetAttempt(int64_t attempt_id) override;
  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(
      int64_t experiment_id) override;
  absl::StatusOr<std::vector<AttemptRecord>> ListRunningAttempts() override;
  absl::Status SetAttemptEnvironment(int64_t attempt_id,
                                     const std::string& env_json) override;
  absl::StatusOr<RecordOutcome> RecordStepResult(
      const StepResultRecord& result, const std::string& lease_token) override;
  absl::StatusOr<std::vector<StepResultRecord>> ListStepResults(
      int64_t attempt_id) override;
  absl::Status CompleteExperiment(int64_t attempt_id,
                                  const std::string& lease_token,
                                  const std::string& report_json,
                                  const std::string& report_text,
                                  const std::vector<VerdictRecord>& verdicts,
                                  absl::Time now) override;
  absl::Status EndAttempt(int64_t attempt_id, AttemptState state,
                          const std::string& reason, absl::Time now) override;
  absl::Status CancelExperiment(int64_t id, const std::string& reason,
                                absl::Time now) override;
  absl::StatusOr<std::vector<VerdictRecord>> ListVerdicts(
      int64_t experiment_id) override;
  absl::StatusOr<std::vector<HistoryEntry>> ListHistory(
      const HistoryQuery& q) override;
  absl::StatusOr<ImportCounts> ImportHistory(
      const std::vector<HistoryEntry>& entries) override;
  absl::Status RecordSamples(const std::vector<SampleRecord>& samples) override;
  absl::StatusOr<std::vector<SampleRecord>> ListSamples(
      int64_t attempt_id) override;
  absl::StatusOr<int64_t> DeleteSamplesBefore(absl::Time cutoff) override;
  absl::Status UpsertAgent(const AgentRecord& agent) override;
  absl::Status SetAgentState(const std::string& agent_id, AgentState state,
                             absl::Time now) override;
  absl::Status SetAgentCordoned(const std::string& agent_id,
                                bool cordoned) override;
  absl::StatusOr<AgentRecord> GetAgent(const std::string& agent_id) override;
  absl::StatusOr<std::vector<AgentRecord>> ListAgents() override;

  absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) override;
  absl::StatusOr<std::optional<TokenRecord>> FindToken(
      const std::string& sha256_hex) override;
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override;
  absl::StatusOr<TokenRecord> RevokeToken(int64_t id, absl::Time when) override;

  // Resolved commits of variants (pg_store_sources.cc).
  absl::Status RecordExperimentSources(
      int64_t experiment_id,
      const std::vector<VariantSourceRecord>& sources) override;
  absl::StatusOr<std::vector<VariantSourceRecord>> ListExperimentSources(
      int64_t experiment_id) override;

 private:
  // kRead: changes nothing. kWrite: a change that must not be applied twice
  // (commit-marked). kRerunnable: a change whose second run does nothing
  // more (migrations), re-run after an in-doubt COMMIT.
  enum class TxnKind { kRead, kWrite, kRerunnable };
  // Runs `body` as one transaction, reconnecting and re-running it as the
  // header comment describes. `body` may run more than once, so it must
  // (re)initialise whatever it fills in; it returns a non-OK status to roll
  // back and fail the call. `what` names the operation in messages
  // ("recording a step result").
  absl::Status Transact(
      std::string_view what, TxnKind kind,
      const std::function<absl::Status(pg_internal::Txn&)>& body);
  absl::Status Migrate();

  PgStore(std::string display_name, std::unique_ptr<pg_internal::Pool> pool,
          absl::Duration reconnect_timeout);

  const std::string display_name_;
  const std::unique_ptr<pg_internal::Pool> pool_;
  const absl::Duration reconnect_timeout_;
};

// The factory OpenStore (store.h) calls for "postgresql://" and "postgres://"
// URLs, so that store.cc needs no libpqxx. Besides libpq's own parameters the
// URL may carry `password_file=/path` as a query parameter (removed before the
// URL reaches libpq). Errors as PgStore::Open.
absl::StatusOr<std::unique_ptr<Store>> OpenPgStore(const std::string& url);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_PG_STORE_H_
