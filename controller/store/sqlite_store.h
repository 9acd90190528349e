// SqliteStore: the embedded Store (store.h) backed by one SQLite database file
// — the controller's default when no PostgreSQL URL is configured, and what
// tests use.
//
// One connection in WAL mode with foreign keys on and synchronous=FULL (a
// change is on disk before a method returns). Every method is one transaction;
// writes start with BEGIN IMMEDIATE so that several SqliteStore objects, in one
// process or several, can share a file: SQLite serializes their writers
// (waiting up to `busy_timeout`), so ClaimNextExperiment never hands the same
// experiment out twice. Open() creates the parent directory and the file when
// missing and applies pending schema migrations (migrations.h).
//
// Thread-safe: the connection is guarded by a mutex, so calls from many threads
// run one at a time.
#ifndef BENCHFLEET_CONTROLLER_STORE_SQLITE_STORE_H_
#define BENCHFLEET_CONTROLLER_STORE_SQLITE_STORE_H_

#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "controller/store/store.h"

struct sqlite3;

namespace benchfleet {

struct SqliteOptions {
  // Database file; ":memory:" for a private in-memory database (tests).
  std::string path;
  // How long a write waits for another connection's write transaction before
  // failing with Unavailable.
  absl::Duration busy_timeout = absl::Seconds(10);
};

// Notes on this implementation of the Store contract:
// - CreateExperiment takes created_at from the record when it is set (callers
//   pass their Clock's now) and reads the wall clock only when it is
//   absl::UnixEpoch().
// - ClaimNextExperiment considers queued experiments oldest id first.
// - CompleteExperiment fills in a verdict's experiment_id/attempt_id left 0,
//   and rejects (InvalidArgument, nothing stored) one that names another
//   experiment or attempt.
// - SetAgentState records `now` as last_seen, except for kOffline (an agent
//   marked offline was not seen then).
// - Label maps must be valid UTF-8 (they are stored as JSON); other text is
//   stored verbatim.
// - RecordSamples writes a batch with multi-row INSERTs in one transaction,
//   as many rows per statement as SQLite's bound-parameter limit allows.
class SqliteStore : public Store {
 public:
  // Opens (creating if needed) the database at options.path and migrates it to
  // LatestSchemaVersion(). Fails with a message naming the path and what to do:
  // the directory cannot be created, the file is not a database (DataLoss), or
  // its schema is newer than this build knows (FailedPrecondition).
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const SqliteOptions& options);

  ~SqliteStore() override;
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

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

  // Resolved commits of variants (sqlite_store_sources.cc).
  absl::Status RecordExperimentSources(
      int64_t experiment_id,
      const std::vector<VariantSourceRecord>& sources) override;
  absl::StatusOr<std::vector<VariantSourceRecord>> ListExperimentSources(
      int64_t experiment_id) override;

 private:
  // Takes ownership of `db`, which is open on `path`.
  SqliteStore(sqlite3* db, std::string path);

  const std::string path_;
  // Held for a whole transaction, SQLite I/O included: the connection is the
  // resource it guards, and a transaction cannot interleave with another on one
  // connection.
  absl::Mutex mu_;
  sqlite3* const db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_SQLITE_STORE_H_
