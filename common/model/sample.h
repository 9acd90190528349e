// SampleRecord: one probe reading of a host while an attempt runs (DESIGN.md
// §2 "Sample"). The scalar fields are what dashboards and flags use; per-core
// and per-GPU detail is JSON.
//
// Part of the domain model (common/model/, library benchfleet::model): written
// by the agent service adapter through the store, read by reports and sample
// retention. Plain data; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_SAMPLE_H_
#define BENCHFLEET_COMMON_MODEL_SAMPLE_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace benchfleet {

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
  // CPU share used by processes other than the agent and its job.
  double competing_cpu = 0;
  std::string detail_json;  // per-core / per-GPU readings
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_SAMPLE_H_
