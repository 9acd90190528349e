#include "agent/service/order_fields.h"

namespace benchfleet {

absl::Duration StepTimeout(const v1::StepOrder& order) {
  if (order.timeout_us() > 0) return absl::Microseconds(order.timeout_us());
  if (order.timeout_ms() > 0) return absl::Milliseconds(order.timeout_ms());
  return absl::InfiniteDuration();
}

absl::Duration GateCooldown(const v1::GateSpec& gates) {
  if (gates.cooldown_us() > 0) return absl::Microseconds(gates.cooldown_us());
  return absl::Milliseconds(gates.cooldown_ms());
}

std::optional<absl::Duration> GateMaxWait(const v1::GateSpec& gates) {
  if (gates.max_wait_us() > 0) return absl::Microseconds(gates.max_wait_us());
  if (gates.max_wait_ms() > 0) return absl::Milliseconds(gates.max_wait_ms());
  return std::nullopt;
}

}  // namespace benchfleet
