// The experiment and its attempts: ExperimentRecord (one queued benchmark
// comparison, from submission to its report), AttemptRecord (one agent's try
// at running it under a lease), their state enums and the state names the
// store, the CLI and the Fleet API use.
//
// Part of the domain model (common/model/, library benchfleet::model): used by
// the store, the scheduler, the attempt driver, history and the service
// adapters. Plain data and pure functions (Abseil and std only); thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_EXPERIMENT_H_
#define BENCHFLEET_COMMON_MODEL_EXPERIMENT_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

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

// "queued", "running", "done", "failed", "cancelled"; "unknown" for a value
// outside the enum.
const char* ExperimentStateName(ExperimentState s);
// "running", "done", "lost", "failed", "cancelled", "host-not-ready";
// "unknown" for a value outside the enum.
const char* AttemptStateName(AttemptState s);

// The inverse of the names above (exact, case-sensitive match). Return false
// and leave `*out` unchanged for any other text.
bool ParseExperimentState(std::string_view name, ExperimentState* out);
bool ParseAttemptState(std::string_view name, AttemptState* out);

// As the Parse functions, but an unknown name is InvalidArgument saying which
// text was refused and listing the names that are accepted.
absl::StatusOr<ExperimentState> ExperimentStateFromName(std::string_view name);
absl::StatusOr<AttemptState> AttemptStateFromName(std::string_view name);

struct ExperimentRecord {
  int64_t id = 0;  // assigned by Store::CreateExperiment
  // 1, 2, ... per campaign ("" campaign counts as one); assigned by the store.
  int64_t number = 0;
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
  // The source bundle (common/bundle) the experiment runs from, by SHA-256,
  // with source.bundle or `submit --bundle`; empty otherwise. Every variant
  // runs the same tree.
  std::string bundle_digest;
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

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_EXPERIMENT_H_
