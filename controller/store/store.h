// Store: the controller's durable state — the experiment queue, attempts and
// their leases, step results, verdicts and the agent registry. Every state
// change the controller acknowledges is committed here first (DESIGN.md §6).
//
// Implementations: SqliteStore (embedded default,
// controller/store/sqlite_store.h) and PgStore (controller/store/pg_store.h).
// All implementations are thread-safe; each method is one transaction. Times
// are absl::Time; JSON columns hold text produced and parsed by the caller.
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

namespace benchfleet {

enum class ExperimentState { kQueued, kRunning, kDone, kFailed, kCancelled };
// kHostNotReady: the agent's host gates (cooldown, temperatures, load,
// competing processes) were not met within the spec's gates.max_wait, so
// nothing was measured; never a verdict (DESIGN.md §4).
enum class AttemptState {
  kRunning,
  kDone,
  kLost,
  kFailed,
  kCancelled,
  kHostNotReady
};

// How many host-not-ready attempts an experiment may have before it fails.
// They are counted apart from max_attempts (the cap for lost attempts): a host
// that is busy or hot says nothing about the experiment, and a fleet of
// several hosts needs room to try each more than once, while an experiment
// whose gates no host can meet must still end, with a reason, rather than
// circle the queue forever.
inline constexpr int kMaxHostNotReadyAttempts = 20;

const char* ExperimentStateName(ExperimentState s);  // "queued", "running", ...
// "running", "done", "lost", "failed", "cancelled", "host-not-ready".
const char* AttemptStateName(AttemptState s);
bool ParseExperimentState(std::string_view name, ExperimentState* out);
bool ParseAttemptState(std::string_view name, AttemptState* out);

struct ExperimentRecord {
  int64_t id = 0;  // assigned by CreateExperiment
  int64_t number =
      0;  // 1, 2, ... per campaign ("" campaign counts as one); assigned
  std::string name;
  std::string campaign;
  ExperimentState state = ExperimentState::kQueued;
  std::string state_reason;  // why it failed / was cancelled / was re-queued
  std::string spec_yaml;     // verbatim spec text
  std::string spec_path;     // display path of the spec (for messages)
  std::string workdir;       // absolute work directory on the agent host
  std::map<std::string, std::string> required_labels;
  int attempts = 0;  // attempts started so far
  // Attempts that did not end host-not-ready are retried (after being lost)
  // up to this many in total; host-not-ready attempts have their own cap,
  // kMaxHostNotReadyAttempts.
  int max_attempts = 3;
  std::string submitted_by;
  absl::Time created_at = absl::UnixEpoch();
  absl::Time updated_at = absl::UnixEpoch();
  std::string report_json;  // final structured report (empty until done)
  std::string report_text;  // final rendered report
  std::string idea;         // the spec's `idea:` (empty when it names none)
  // Where an imported experiment came from: the origin key of its entry in a
  // history file (docs/history-file.md); unique per store. Empty for
  // experiments submitted to this store.
  std::string origin;
  // The "DISCARDed before" flag (DESIGN.md §4): a one-line warning naming the
  // earlier experiment whose DISCARD verdict this one repeats; empty = none.
  std::string discarded_before;
};

struct AttemptRecord {
  int64_t id = 0;
  int64_t experiment_id = 0;
  std::string agent_id;
  std::string lease_token;  // unique random token; step results must carry it
  AttemptState state = AttemptState::kRunning;
  uint64_t seed = 0;  // interleaving/bootstrap seed, recorded
  std::string reason;
  std::string environment_json;
  absl::Time started_at = absl::UnixEpoch();
  absl::Time ended_at = absl::UnixEpoch();
};

// One process the agent ran for an attempt (setup, warmup, measure,
// correctness).
struct StepResultRecord {
  int64_t attempt_id = 0;
  int64_t step_seq =
      0;  // unique per attempt; (attempt_id, step_seq) is the idempotency key
  std::string kind;  // "setup" | "warmup" | "measure" | "correctness"
  std::string variant;
  std::string input;  // empty for per-variant steps
  int64_t wall_ns = 0, user_ns = 0, sys_ns = 0, max_rss_bytes = 0;
  int exit_code = 0;
  int term_signal = 0;
  bool timed_out = false;
  std::string
      output_digest;  // sha256 of what `compare` names (stdout or a file)
  std::string metrics_json;  // custom metrics {"name": value}
  std::string error;         // spawn error or other failure text
  absl::Time finished_at = absl::UnixEpoch();
  // What the host did while the run ran: the agent's summary as a JSON object
  // with the field names of v1::HostSummary ({"samples":..,
  // "max_cpu_temp_c":.., "min_freq_mhz":.., "mean_cpu_util":..,
  // "throttle_delta":.., "max_competing_cpu":.., ...}); "{}" when the agent
  // sent none. Stored verbatim; rows written before migration 7 read "{}".
  std::string host_json;
  // The disturbances that flagged the run ("throttled", "frequency-drop",
  // "contended"), in the agent's order; empty for an undisturbed run.
  std::vector<std::string> host_flags;
  int64_t gate_wait_ns = 0;  // time the run waited for the host's gates
};

struct VerdictRecord {
  int64_t experiment_id = 0;
  int64_t attempt_id = 0;
  std::string variant;
  std::string verdict;  // "KEEP", "MAYBE", ...
  std::string reason;
  double change = 0;        // aggregate change (ratio - 1)
  std::string detail_json;  // per-input detail
};

enum class AgentState { kIdle, kBusy, kDraining, kQuarantined, kOffline };
const char* AgentStateName(AgentState s);
bool ParseAgentState(std::string_view name, AgentState* out);

struct AgentRecord {
  std::string id;
  std::string hostname;
  std::map<std::string, std::string> labels;
  std::string facts_json;  // host facts (CPU model, cores, memory, OS, kernel)
  AgentState state = AgentState::kOffline;
  bool cordoned = false;  // drained by an operator: receives no new work
  absl::Time last_seen = absl::UnixEpoch();
};

// One probe reading of a host while an attempt runs (DESIGN.md §2 "Sample").
// The scalar columns are what dashboards and flags use; per-core and per-GPU
// detail is JSON.
struct SampleRecord {
  int64_t attempt_id = 0;
  int64_t step_seq = 0;  // the step running when it was taken; 0 between steps
  std::string agent_id;
  absl::Time taken_at = absl::UnixEpoch();
  double cpu_util = 0;  // 0..1, whole host
  double load1 = 0;
  double mem_available_bytes = 0;
  double min_freq_mhz = 0;      // lowest current core frequency; 0 = unknown
  double max_cpu_temp_c = 0;    // 0 = unknown
  double max_gpu_temp_c = 0;    // 0 = no GPU
  double gpu_util = 0;          // 0..1, highest GPU
  int64_t throttle_events = 0;  // cumulative thermal-throttle counter
  double competing_cpu =
      0;  // CPU share used by processes other than the agent and its job
  std::string detail_json;  // per-core / per-GPU readings
};

// The outcome of RecordStepResult.
enum class RecordOutcome { kInserted, kDuplicate };

// A history question (Store::ListHistory); every set field must match.
struct HistoryQuery {
  std::string name;      // experiment (benchmark) name; empty = any
  std::string campaign;  // empty = any
  std::string idea;      // empty = any (the spec's `idea:`)
  absl::Time since = absl::InfinitePast();  // experiments created at or after
  int limit = 0;  // <= 0: no limit; else the newest `limit` matches
};

// One completed experiment with the attempt that completed it.
struct HistoryEntry {
  ExperimentRecord experiment;  // state kDone
  AttemptRecord attempt;        // the attempt that completed it
  std::vector<VerdictRecord> verdicts;
};

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
