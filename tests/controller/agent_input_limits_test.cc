// controller/service/agent_input_limits: each bound on what an agent may send,
// and the message-rate bucket.
#include "controller/service/agent_input_limits.h"

#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(AgentInputLimitsTest, ANormalMessageOfEachKindPasses) {
  AgentInputLimits limits;
  v1::AgentMessage hello;
  hello.mutable_hello()->set_agent_id("bench-1");
  (*hello.mutable_hello()->mutable_labels())["pool"] = "gpu";
  EXPECT_TRUE(CheckAgentMessage(hello, limits).ok());
  v1::AgentMessage result;
  result.mutable_step_result()->set_error("exit 3");
  (*result.mutable_step_result()->mutable_metrics())["ops"] = 1.5;
  result.mutable_step_result()->add_host_flags("throttled");
  EXPECT_TRUE(CheckAgentMessage(result, limits).ok());
  v1::AgentMessage samples;
  samples.mutable_samples()->add_samples()->set_detail_json("{}");
  EXPECT_TRUE(CheckAgentMessage(samples, limits).ok());
  EXPECT_TRUE(CheckAgentMessage(v1::AgentMessage(), limits).ok());
}

TEST(AgentInputLimitsTest, EachBoundNamesItsField) {
  AgentInputLimits limits;
  limits.max_labels = 2;
  limits.max_label_bytes = 8;
  limits.max_text_bytes = 16;
  limits.max_metrics = 2;
  limits.max_host_flags = 1;
  limits.max_samples_per_batch = 3;
  struct Case {
    v1::AgentMessage message;
    const char* field;
  };
  std::vector<Case> cases(8);
  for (int i = 0; i < 3; ++i) {
    (*cases[0].message.mutable_hello()->mutable_labels())[std::to_string(i)] =
        "v";
  }
  cases[0].field = "hello.labels";
  (*cases[1].message.mutable_hello()->mutable_labels())["pool"] =
      "a-very-long-value";
  cases[1].field = "hello.labels entry";
  cases[2].message.mutable_heartbeat()->set_status(std::string(17, 'x'));
  cases[2].field = "heartbeat.status";
  cases[3].message.mutable_step_result()->set_stderr_tail(std::string(17, 'x'));
  cases[3].field = "step_result.stderr_tail";
  for (const char* m : {"a", "b", "c"})
    (*cases[4].message.mutable_step_result()->mutable_metrics())[m] = 1;
  cases[4].field = "step_result.metrics";
  cases[5].message.mutable_step_result()->add_host_flags("a");
  cases[5].message.mutable_step_result()->add_host_flags("b");
  cases[5].field = "step_result.host_flags";
  for (int i = 0; i < 4; ++i) cases[6].message.mutable_samples()->add_samples();
  cases[6].field = "samples.samples";
  cases[7].message.mutable_lease_reply()->set_reason(std::string(17, 'x'));
  cases[7].field = "lease_reply.reason";
  for (const Case& c : cases) {
    absl::Status s = CheckAgentMessage(c.message, limits);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << c.field << ": " << s;
    EXPECT_NE(s.message().find(c.field), std::string::npos)
        << c.field << ": " << s;
  }
}

TEST(AgentInputLimitsTest, TheRateAllowsABurstThenItsSustainedRate) {
  MessageRate rate(/*per_second=*/100, /*burst=*/10);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(rate.Take(t0)) << i;
  EXPECT_FALSE(rate.Take(t0));
  // 50 ms later: 5 more.
  const absl::Time t1 = t0 + absl::Milliseconds(50);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(rate.Take(t1)) << i;
  EXPECT_FALSE(rate.Take(t1));
  // Never more than the burst, however long the pause.
  const absl::Time t2 = t1 + absl::Hours(1);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(rate.Take(t2)) << i;
  EXPECT_FALSE(rate.Take(t2));
}

}  // namespace
}  // namespace benchfleet
