// The duration fields of the controller's orders, as the agent reads them:
// microseconds (timeout_us, cooldown_us, max_wait_us), falling back to the
// whole-millisecond fields that controllers before them sent. A deadline that
// bounds a measured run must keep its microseconds: a 6.6 ms bound truncated to
// 6 ms killed identical programs (DESIGN.md §4). Used by the agent's step
// execution and gates; pure functions, thread-safe.
#ifndef BENCHFLEET_AGENT_SERVICE_ORDER_FIELDS_H_
#define BENCHFLEET_AGENT_SERVICE_ORDER_FIELDS_H_

#include <optional>

#include "absl/time/time.h"
#include "benchfleet/v1/types.pb.h"

namespace benchfleet {

// The step's deadline; absl::InfiniteDuration() when the order sets none.
absl::Duration StepTimeout(const v1::StepOrder& order);

// The spec's cooldown (zero when unset) and max_wait (nullopt when unset: the
// agent's own applies).
absl::Duration GateCooldown(const v1::GateSpec& gates);
std::optional<absl::Duration> GateMaxWait(const v1::GateSpec& gates);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_ORDER_FIELDS_H_
