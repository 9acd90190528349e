// Store: the controller's durable state — the experiment queue, attempts and
// their leases, step results, verdicts and the agent registry. Every state
// change the controller acknowledges is committed here first (DESIGN.md §6).
//
// Implementations: SqliteStore (embedded default,
// controller/store/sqlite_store.h) and PgStore (controller/store/pg_store.h).
// All implementations are thread-safe; each method is one transaction. Times
// are absl::Time; JSON columns hold text produced and parsed by the caller.
// The records it stores are the domain model's (common/model/); this header
// keeps only the interface and the store-specific results (Claim,
// RecordOutcome, ImportCounts).
#ifndef BENCHFLEET_CONTROLLER_STORE_STORE_H_
#define BENCHFLEET_CONTROLLER_STORE_STORE_H_

#include <cstdint>
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
#include "common/model/agent.h"
#include "common/model/experiment.h"
#include "common/model/history.h"
#include "common/model/sample.h"
#include "common/model/step_result.h"
#include "common/model/token.h"
#include "common/model/variant_source.h"
#include "common/model/verdict_record.h"

namespace benchfleet {

// The outcome of RecordStepResult.
enum class RecordOutcome { kInserted, kDuplicate };

// The outcome of Store::ImportHistory.
struct ImportCounts {
  int imported = 0;
  int already_present = 0;  // entries whose origin was stored before
};

class Store {
 public:
  virtual ~Store() = default;

  // Queues a new experiment; fills in id, number, created_at/updated_at and
  // state=kQueued.
  virtual absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& record) = 0;
  // NotFound when no experiment has that id.
  virtual absl::StatusOr<ExperimentRecord> GetExperiment(int64_t id) = 0;
  // Newest first; `limit` <= 0 means no limit.
  virtual absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      int limit) = 0;

  // Atomically picks the oldest queued experiment whose required labels are all
  // present with equal values in `agent_labels` and whose id is not in
  // `skip_experiment_ids`, marks it running, increments its attempts and
  // creates a running attempt for `agent_id` with `lease_token` and `seed`.
  // Returns std::nullopt when nothing matches. Two controllers calling this
  // concurrently never claim the same experiment. (The dispatcher skips an
  // experiment whose host was just not ready, so that another host gets it
  // first; a later call without it in the set can claim it.)
  struct Claim {
    ExperimentRecord experiment;
    AttemptRecord attempt;
  };
  virtual absl::StatusOr<std::optional<Claim>> ClaimNextExperiment(
      const std::string& agent_id,
      const std::map<std::string, std::string>& agent_labels,
      const std::string& lease_token, uint64_t seed,
      const std::set<int64_t>& skip_experiment_ids, absl::Time now) = 0;

  virtual absl::StatusOr<AttemptRecord> GetAttempt(int64_t attempt_id) = 0;
  virtual absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(
      int64_t experiment_id) = 0;
  // Attempts in state kRunning (used at controller start-up and by the lease
  // reaper).
  virtual absl::StatusOr<std::vector<AttemptRecord>> ListRunningAttempts() = 0;
  virtual absl::Status SetAttemptEnvironment(int64_t attempt_id,
                                             const std::string& env_json) = 0;

  // Stores a step result. FailedPrecondition when the attempt is not running or
  // `lease_token` is not the attempt's token (stale lease); kDuplicate (and
  // nothing changed) when (attempt_id, step_seq) is already stored.
  virtual absl::StatusOr<RecordOutcome> RecordStepResult(
      const StepResultRecord& result, const std::string& lease_token) = 0;
  // In step_seq order.
  virtual absl::StatusOr<std::vector<StepResultRecord>> ListStepResults(
      int64_t attempt_id) = 0;

  // Ends an attempt and its experiment in one transaction: the attempt becomes
  // kDone, the experiment kDone with the report and verdicts.
  // FailedPrecondition on a stale token.
  virtual absl::Status CompleteExperiment(
      int64_t attempt_id, const std::string& lease_token,
      const std::string& report_json, const std::string& report_text,
      const std::vector<VerdictRecord>& verdicts, absl::Time now) = 0;
  // Ends an attempt as lost/host-not-ready/failed/cancelled with a reason; if
  // it was the experiment's live attempt (the experiment is running), the
  // experiment's next state is NextExperimentState's (store_checks.h):
  // - kLost: back to kQueued while the attempts that were not host-not-ready
  //   number fewer than max_attempts, else kFailed;
  // - kHostNotReady: back to kQueued until the experiment has
  //   kMaxHostNotReadyAttempts host-not-ready attempts, then kFailed; these
  //   attempts never count toward max_attempts;
  // - kFailed: kFailed; kCancelled: kCancelled.
  // InvalidArgument for another `state`; NotFound for an unknown attempt.
  // No-op (OK) if the attempt already ended.
  virtual absl::Status EndAttempt(int64_t attempt_id, AttemptState state,
                                  const std::string& reason,
                                  absl::Time now) = 0;
  // Cancels a queued or running experiment (a running attempt becomes
  // kCancelled). FailedPrecondition when it already ended; NotFound for an
  // unknown id.
  virtual absl::Status CancelExperiment(int64_t id, const std::string& reason,
                                        absl::Time now) = 0;

  virtual absl::StatusOr<std::vector<VerdictRecord>> ListVerdicts(
      int64_t experiment_id) = 0;

  // Completed experiments matching every set field, oldest first (created_at,
  // id). With q.limit > 0, the newest q.limit matches (still oldest first).
  virtual absl::StatusOr<std::vector<HistoryEntry>> ListHistory(
      const HistoryQuery& q) = 0;
  // Stores completed experiments read from a history file, each with its
  // attempt and verdicts, all in one transaction (all or nothing). Every
  // entry's experiment.origin must be set; an entry whose origin is already
  // stored is skipped and counted as already present. Ids are assigned here;
  // the experiment keeps its number unless its campaign already has that
  // number, then it gets the campaign's next one. InvalidArgument for an entry
  // without an origin.
  virtual absl::StatusOr<ImportCounts> ImportHistory(
      const std::vector<HistoryEntry>& entries) = 0;

  // Stores a batch of samples in one transaction with one statement per batch
  // (multi-row INSERT or COPY), never one round trip per sample.
  virtual absl::Status RecordSamples(
      const std::vector<SampleRecord>& samples) = 0;
  // In taken_at order.
  virtual absl::StatusOr<std::vector<SampleRecord>> ListSamples(
      int64_t attempt_id) = 0;
  // Retention: deletes samples taken before `cutoff`; returns how many.
  virtual absl::StatusOr<int64_t> DeleteSamplesBefore(absl::Time cutoff) = 0;

  // Inserts or updates an agent by id (labels, facts, hostname, state,
  // last_seen; keeps `cordoned` unless the record sets it).
  virtual absl::Status UpsertAgent(const AgentRecord& agent) = 0;
  virtual absl::Status SetAgentState(const std::string& agent_id,
                                     AgentState state, absl::Time now) = 0;
  virtual absl::Status SetAgentCordoned(const std::string& agent_id,
                                        bool cordoned) = 0;
  virtual absl::StatusOr<AgentRecord> GetAgent(const std::string& agent_id) = 0;
  virtual absl::StatusOr<std::vector<AgentRecord>> ListAgents() = 0;

  // API tokens (controller/auth/), kept by SHA-256 only. CreateToken fills in
  // id; AlreadyExists when the hash is stored already.
  virtual absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) = 0;
  // nullopt when no token has that hash (revoked ones are returned).
  virtual absl::StatusOr<std::optional<TokenRecord>> FindToken(
      const std::string& sha256_hex) = 0;
  // Oldest first.
  virtual absl::StatusOr<std::vector<TokenRecord>> ListTokens() = 0;
  // Sets revoked_at once (a second revocation keeps the first time); NotFound
  // for an unknown id.
  virtual absl::StatusOr<TokenRecord> RevokeToken(int64_t id,
                                                  absl::Time when) = 0;

  // The commits the variants of an experiment with source.repo are measured
  // at (resolved at submit), in the spec's variant order; replaces any stored
  // for it. NotFound for an unknown experiment.
  virtual absl::Status RecordExperimentSources(
      int64_t experiment_id,
      const std::vector<VariantSourceRecord>& sources) = 0;
  // In the order recorded; empty when none were (no source.repo).
  virtual absl::StatusOr<std::vector<VariantSourceRecord>>
  ListExperimentSources(int64_t experiment_id) = 0;
};

// Opens a store from a URL: "sqlite:///abs/path.db", "sqlite://relative.db",
// ":memory:"-style "sqlite::memory:" for tests, "postgresql://..." or
// "postgres://..." for a PgStore. Unsupported schemes are InvalidArgument
// naming the URL (password redacted).
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url);

// A store URL or libpq "key=value" connection string with every password
// replaced by "***" (the one in "user:password@" and any password=... value,
// quoted or not), for logs and messages. Store URLs are never logged any other
// way.
std::string RedactUrl(std::string_view url);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_STORE_H_
