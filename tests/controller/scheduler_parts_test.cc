// Tests for the dispatcher's parts that stand on their own: StoreWrites (the
// retry of store writes nothing waits on), ProgressPacer (coalescing progress
// publications) and the environment record JSON. Time is stepped by hand; no
// thread, no store.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller/scheduler/environment_record.h"
#include "controller/scheduler/progress_pacer.h"
#include "controller/scheduler/store_writes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// A write that fails with `failure` its first `failures` calls, then succeeds.
struct ScriptedWrite {
  int failures = 0;
  absl::Status failure = absl::UnavailableError("down");
  int calls = 0;
  absl::Status operator()() {
    ++calls;
    return calls <= failures ? failure : absl::OkStatus();
  }
};

TEST(StoreWritesTest, RecoverableFailureIsRetriedEachIntervalUntilItSucceeds) {
  StoreWrites writes(absl::Seconds(1));
  ScriptedWrite w{.failures = 2};
  EXPECT_TRUE(absl::IsUnavailable(writes.Run(
      "k", "write k", [&] { return w(); }, kT0)));
  EXPECT_TRUE(writes.kept("k"));
  writes.RetryDue(kT0 + absl::Milliseconds(999));
  EXPECT_EQ(w.calls, 1) << "retried before the interval";
  writes.RetryDue(kT0 + absl::Seconds(1));
  EXPECT_EQ(w.calls, 2);
  EXPECT_TRUE(writes.kept("k"));
  writes.RetryDue(kT0 + absl::Seconds(2));
  EXPECT_EQ(w.calls, 3);
  EXPECT_TRUE(writes.empty());
  EXPECT_EQ(writes.retried(), 2);
  EXPECT_EQ(writes.failed(), 0);
  writes.RetryDue(kT0 + absl::Seconds(10));
  EXPECT_EQ(w.calls, 3) << "a write that succeeded ran again";
}

TEST(StoreWritesTest, FailureTheStoreDoesNotRecoverFromIsCountedNotKept) {
  StoreWrites writes(absl::Seconds(1));
  ScriptedWrite w{.failures = 1, .failure = absl::InternalError("corrupt")};
  EXPECT_FALSE(writes
                   .Run(
                       "k", "write k", [&] { return w(); }, kT0)
                   .ok());
  EXPECT_TRUE(writes.empty());
  EXPECT_EQ(writes.failed(), 1);
  writes.RetryDue(kT0 + absl::Seconds(5));
  EXPECT_EQ(w.calls, 1);
  EXPECT_EQ(writes.retried(), 0);
}

TEST(StoreWritesTest, NewerWriteUnderTheSameKeySupersedesAKeptOne) {
  StoreWrites writes(absl::Seconds(1));
  ScriptedWrite old_write{.failures = 100};
  ScriptedWrite new_write;
  (void)writes.Run(
      "agent:a/state", "old", [&] { return old_write(); }, kT0);
  EXPECT_TRUE(writes.kept("agent:a/state"));
  EXPECT_TRUE(writes
                  .Run(
                      "agent:a/state", "new", [&] { return new_write(); },
                      kT0 + absl::Milliseconds(10))
                  .ok());
  EXPECT_TRUE(writes.empty());
  writes.RetryDue(kT0 + absl::Seconds(3));
  EXPECT_EQ(old_write.calls, 1) << "the superseded write ran again";
  EXPECT_EQ(new_write.calls, 1);
}

TEST(StoreWritesTest, DropForgetsAKeptWrite) {
  StoreWrites writes(absl::Seconds(1));
  ScriptedWrite w{.failures = 100};
  (void)writes.Run(
      "k", "write k", [&] { return w(); }, kT0);
  writes.Drop("k");
  writes.RetryDue(kT0 + absl::Seconds(1));
  EXPECT_EQ(w.calls, 1);
  EXPECT_TRUE(writes.empty());
}

TEST(StoreWritesTest, OnlyOutagesAreWorthRetrying) {
  EXPECT_TRUE(StoreMayRecover(absl::UnavailableError("")));
  EXPECT_TRUE(StoreMayRecover(absl::DeadlineExceededError("")));
  EXPECT_TRUE(StoreMayRecover(absl::AbortedError("")));
  EXPECT_TRUE(StoreMayRecover(absl::ResourceExhaustedError("")));
  EXPECT_FALSE(StoreMayRecover(absl::InvalidArgumentError("")));
  EXPECT_FALSE(StoreMayRecover(absl::NotFoundError("")));
  EXPECT_FALSE(StoreMayRecover(absl::FailedPreconditionError("")));
  EXPECT_FALSE(StoreMayRecover(absl::InternalError("")));
}

TEST(ProgressPacerTest, PublishesAtMostOncePerIntervalAndFlushesTheRest) {
  ProgressPacer pacer(absl::Milliseconds(250));
  EXPECT_TRUE(pacer.MayPublish(7, kT0)) << "nothing published yet";
  pacer.Published(7, kT0);
  EXPECT_FALSE(pacer.MayPublish(7, kT0 + absl::Milliseconds(100)));
  EXPECT_TRUE(pacer.pending(7));
  EXPECT_THAT(pacer.Due(kT0 + absl::Milliseconds(249)), IsEmpty());
  EXPECT_THAT(pacer.Due(kT0 + absl::Milliseconds(250)), ElementsAre(7));
  pacer.Published(7, kT0 + absl::Milliseconds(250));
  EXPECT_FALSE(pacer.pending(7));
  EXPECT_THAT(pacer.Due(kT0 + absl::Seconds(5)), IsEmpty());
  EXPECT_TRUE(pacer.MayPublish(7, kT0 + absl::Milliseconds(500)));
}

TEST(ProgressPacerTest, ExperimentsArePacedApartAndForgottenWhenTheyEnd) {
  ProgressPacer pacer(absl::Milliseconds(250));
  pacer.Published(1, kT0);
  EXPECT_TRUE(pacer.MayPublish(2, kT0)) << "another experiment is not paced";
  EXPECT_FALSE(pacer.MayPublish(1, kT0));
  pacer.Forget(1);
  EXPECT_FALSE(pacer.pending(1));
  EXPECT_TRUE(pacer.MayPublish(1, kT0));
}

EnvironmentOrigin Origin() {
  EnvironmentOrigin o;
  o.agent_id = "agent-a";
  o.labels = {{"pool", "x86"}};
  o.facts.hostname = "host-a";
  o.facts.cpu_model = "Test CPU \"quoted\"";
  o.facts.cpu_cores = 8;
  o.facts.memory_bytes = 1 << 30;
  o.facts.os = "Debian 12";
  o.facts.kernel = "6.1.0";
  return o;
}

TEST(EnvironmentRecordTest, HostFactsOnlyUntilTheAgentReports) {
  const nlohmann::json j =
      nlohmann::json::parse(EnvironmentRecordJson(Origin(), 42, std::nullopt));
  EXPECT_EQ(j["seed"], "42");
  EXPECT_EQ(j["agent_id"], "agent-a");
  EXPECT_EQ(j["hostname"], "host-a");
  EXPECT_EQ(j["cpu_model"], "Test CPU \"quoted\"");
  EXPECT_EQ(j["cpu_cores"], 8);
  EXPECT_EQ(j["memory_bytes"], 1 << 30);
  EXPECT_EQ(j["os"], "Debian 12");
  EXPECT_EQ(j["kernel"], "6.1.0");
  EXPECT_EQ(j["labels"]["pool"], "x86");
  EXPECT_TRUE(j["gpus"].is_array());
  EXPECT_EQ(j["commit"], "");
  EXPECT_EQ(j["agent_reported"], false);
  EXPECT_EQ(j["fingerprint"].get<std::string>().size(), 16u);
}

TEST(EnvironmentRecordTest, ReportMergesWithTheHostFactsFromTheHello) {
  HostEnvironment reported;
  reported.hostname = "what-the-agent-said";  // the hello's facts win
  reported.governor = "performance";
  reported.turbo = "off";
  reported.commit = "abc123";
  reported.dirty = true;
  reported.toolchain = {{"gcc", "gcc 12.2"}};
  reported.gpus = {{"NVIDIA H100", "GPU-1", 80}};
  const nlohmann::json before =
      nlohmann::json::parse(EnvironmentRecordJson(Origin(), 1, std::nullopt));
  const nlohmann::json j =
      nlohmann::json::parse(EnvironmentRecordJson(Origin(), 1, reported));
  EXPECT_EQ(j["hostname"], "host-a");
  EXPECT_EQ(j["governor"], "performance");
  EXPECT_EQ(j["turbo"], "off");
  EXPECT_EQ(j["commit"], "abc123");
  EXPECT_EQ(j["dirty"], true);
  EXPECT_EQ(j["toolchain"]["gcc"], "gcc 12.2");
  ASSERT_EQ(j["gpus"].size(), 1u);
  EXPECT_EQ(j["gpus"][0]["uuid"], "GPU-1");
  EXPECT_EQ(j["gpus"][0]["memory_total_bytes"], 80);
  EXPECT_EQ(j["agent_reported"], true);
  EXPECT_NE(j["fingerprint"], before["fingerprint"])
      << "a complete fingerprint must differ from the facts-only one";
  HostEnvironment expected = reported;
  expected.hostname = "host-a";
  expected.cpu_model = "Test CPU \"quoted\"";
  expected.cpu_cores = 8;
  expected.memory_bytes = 1 << 30;
  expected.os = "Debian 12";
  expected.kernel = "6.1.0";
  EXPECT_EQ(j["fingerprint"], HostFingerprint(expected));
}

TEST(EnvironmentRecordTest, HostSummaryUsesTheWireNamesAndSurvivesBadBytes) {
  EXPECT_EQ(HostSummaryJson(std::nullopt), "{}");
  StepHostSummary h;
  h.samples = 3;
  h.max_cpu_temp_c = 71.5;
  h.throttle_delta = 2;
  h.top_competitor = std::string("bad\xff name (pid 9)");
  const nlohmann::json j = nlohmann::json::parse(HostSummaryJson(h));
  EXPECT_EQ(j["samples"], 3);
  EXPECT_EQ(j["max_cpu_temp_c"], 71.5);
  EXPECT_EQ(j["throttle_delta"], 2);
  EXPECT_TRUE(j.contains("min_freq_mhz"));
  EXPECT_TRUE(j.contains("mean_cpu_util"));
  EXPECT_TRUE(j.contains("max_competing_cpu"));
  EXPECT_TRUE(j.contains("max_gpu_temp_c"));
  EXPECT_THAT(j["top_competitor"].get<std::string>(),
              ::testing::HasSubstr("name (pid 9)"));
}

}  // namespace
}  // namespace benchfleet
