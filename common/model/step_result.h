// StepResultRecord: one process an agent ran for an attempt (setup, warmup,
// measure, correctness) with what it measured and what the host did meanwhile.
//
// Part of the domain model (common/model/, library benchfleet::model): used by
// the store, the attempt driver, stats/report and the service adapters. Plain
// data; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_STEP_RESULT_H_
#define BENCHFLEET_COMMON_MODEL_STEP_RESULT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace benchfleet {

struct StepResultRecord {
  int64_t attempt_id = 0;
  // Unique per attempt; (attempt_id, step_seq) is the idempotency key.
  int64_t step_seq = 0;
  std::string kind;  // "setup" | "warmup" | "measure" | "correctness"
  std::string variant;
  std::string input;  // empty for per-variant steps
  int64_t wall_ns = 0, user_ns = 0, sys_ns = 0, max_rss_bytes = 0;
  int exit_code = 0;
  int term_signal = 0;
  bool timed_out = false;
  // sha256 of what `compare` names (stdout or a file).
  std::string output_digest;
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

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_STEP_RESULT_H_
