// The wire contract for durations between the controller and the agent: what
// the controller's conversion (controller/service/convert.h) writes into a
// step order or a gate spec, the agent reads back (agent/service/
// order_fields.h) to the microsecond. A 6.6 ms deadline once travelled as 6 ms
// and killed identical programs.
#include <cstdint>

#include "absl/time/time.h"
#include "agent/service/order_fields.h"
#include "benchfleet/v1/types.pb.h"
#include "common/spec.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/service/convert.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(WireDurationsTest, StepDeadlineKeepsItsMicroseconds) {
  PlannedStep step;
  step.seq = 1;
  step.timeout = absl::Microseconds(6600);
  const v1::StepOrder order = ToProto(7, "token", step);
  EXPECT_EQ(order.timeout_us(), 6600);
  EXPECT_EQ(StepTimeout(order), absl::Microseconds(6600));
  EXPECT_NE(StepTimeout(order), absl::Milliseconds(6));
}

TEST(WireDurationsTest, SubMicrosecondDeadlineIsRoundedUpNeverDown) {
  PlannedStep step;
  step.timeout = absl::Nanoseconds(6'600'001);
  const v1::StepOrder order = ToProto(7, "token", step);
  EXPECT_EQ(StepTimeout(order), absl::Microseconds(6601));
  EXPECT_GE(StepTimeout(order), step.timeout);
  // The deprecated whole-millisecond field, for older agents, rounds up too.
  EXPECT_EQ(order.timeout_ms(), 7);
}

TEST(WireDurationsTest, NoDeadlineMeansNone) {
  PlannedStep step;  // InfiniteDuration
  const v1::StepOrder order = ToProto(7, "token", step);
  EXPECT_EQ(order.timeout_us(), 0);
  EXPECT_EQ(StepTimeout(order), absl::InfiniteDuration());
}

TEST(WireDurationsTest, OrdersFromOlderControllersAreReadInMilliseconds) {
  v1::StepOrder order;
  order.set_timeout_ms(30);
  EXPECT_EQ(StepTimeout(order), absl::Milliseconds(30));
  v1::GateSpec gates;
  gates.set_cooldown_ms(1500);
  gates.set_max_wait_ms(2000);
  EXPECT_EQ(GateCooldown(gates), absl::Milliseconds(1500));
  EXPECT_EQ(GateMaxWait(gates), absl::Milliseconds(2000));
  EXPECT_FALSE(GateMaxWait(v1::GateSpec()).has_value());
}

TEST(WireDurationsTest, GateWaitsKeepTheirMicroseconds) {
  GateSpec spec;
  spec.cooldown = absl::Microseconds(1500250);
  spec.max_wait = absl::Microseconds(2500);
  const v1::GateSpec wire = ToProto(spec);
  EXPECT_EQ(GateCooldown(wire), spec.cooldown);
  EXPECT_EQ(GateMaxWait(wire), spec.max_wait);
}

TEST(WireDurationsTest, GateWaitOfAResultIsReadInMicroseconds) {
  v1::StepResult result;
  result.set_gate_wait_us(1234);
  result.set_gate_wait_ms(1);
  EXPECT_EQ(FromProto(result).gate_wait_ns, 1'234'000);
  v1::StepResult old;
  old.set_gate_wait_ms(5);
  EXPECT_EQ(FromProto(old).gate_wait_ns, 5'000'000);
}

// The report's list of gate waits names what held each run back; it printed
// "(the agent did not say)" for every wait while the conversion dropped it.
TEST(WireDurationsTest, GateWaitKeepsWhatBlockedIt) {
  v1::StepResult result;
  result.set_gate_wait_us(500'000);
  result.set_gate_blocked_by(
      "other processes use 0.60 cores, above the 0.25-core gate");
  EXPECT_EQ(FromProto(result).gate_blocked_by,
            "other processes use 0.60 cores, above the 0.25-core gate");
}

}  // namespace
}  // namespace benchfleet
