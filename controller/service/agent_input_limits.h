// Bounds on what an agent may send on its stream (DESIGN.md §7: bounded input
// everywhere a peer can send). gRPC already caps every message at
// kMaxMessageBytes; these bound what fits inside one (label counts, text
// fields, metrics, samples per batch) and how fast messages may come. A
// message over a bound ends only its own stream, with a log line naming the
// peer. Pure; MessageRate is not thread-safe (one per stream, used from its
// reactor).
#ifndef BENCHFLEET_CONTROLLER_SERVICE_AGENT_INPUT_LIMITS_H_
#define BENCHFLEET_CONTROLLER_SERVICE_AGENT_INPUT_LIMITS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "benchfleet/v1/agent.pb.h"

namespace benchfleet {

struct AgentInputLimits {
  // Sustained messages per second and the burst above it. A no-op benchmark
  // produces a result (and a sample batch) per millisecond or so; heartbeats
  // come every 2 s.
  double messages_per_second = 5000;
  double burst = 20000;
  int max_labels = 64;
  size_t max_label_bytes = 256;  // each key and each value
  size_t max_id_bytes = 253;
  // Any one free-text field (errors, stderr tails, status, JSON detail).
  size_t max_text_bytes = 64 * 1024;
  int max_metrics = 1000;
  int max_host_flags = 64;
  int max_samples_per_batch = 100'000;
};

// InvalidArgument naming the message, the field and the bound, or OK.
absl::Status CheckAgentMessage(const v1::AgentMessage& message,
                               const AgentInputLimits& limits);

// A token bucket: Take() is false once the stream sends faster than its
// budget.
class MessageRate {
 public:
  MessageRate(double per_second, double burst)
      : per_second_(per_second), burst_(burst), tokens_(burst) {}
  bool Take(absl::Time now);

 private:
  double per_second_;
  double burst_;
  double tokens_;
  absl::Time last_ = absl::InfinitePast();
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_AGENT_INPUT_LIMITS_H_
