// The domain model's state names (common/model/experiment.h, agent.h): every
// enumerator round-trips through its name, the names are the stored and
// printed ones, and unknown text is refused with a message naming it.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/model/agent.h"
#include "common/model/experiment.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(StateNamesTest, EveryExperimentStateRoundTrips) {
  const std::vector<std::pair<ExperimentState, std::string>> all = {
      {ExperimentState::kQueued, "queued"},
      {ExperimentState::kRunning, "running"},
      {ExperimentState::kDone, "done"},
      {ExperimentState::kFailed, "failed"},
      {ExperimentState::kCancelled, "cancelled"}};
  for (const auto& [state, name] : all) {
    EXPECT_EQ(ExperimentStateName(state), name);
    ExperimentState parsed = ExperimentState::kQueued;
    if (state == ExperimentState::kQueued) parsed = ExperimentState::kDone;
    ASSERT_TRUE(ParseExperimentState(name, &parsed)) << name;
    EXPECT_EQ(parsed, state) << name;
    absl::StatusOr<ExperimentState> from = ExperimentStateFromName(name);
    ASSERT_TRUE(from.ok()) << from.status();
    EXPECT_EQ(*from, state) << name;
  }
}

TEST(StateNamesTest, EveryAttemptStateRoundTrips) {
  const std::vector<std::pair<AttemptState, std::string>> all = {
      {AttemptState::kRunning, "running"},
      {AttemptState::kDone, "done"},
      {AttemptState::kLost, "lost"},
      {AttemptState::kFailed, "failed"},
      {AttemptState::kCancelled, "cancelled"},
      {AttemptState::kHostNotReady, "host-not-ready"}};
  for (const auto& [state, name] : all) {
    EXPECT_EQ(AttemptStateName(state), name);
    AttemptState parsed = AttemptState::kRunning;
    if (state == AttemptState::kRunning) parsed = AttemptState::kDone;
    ASSERT_TRUE(ParseAttemptState(name, &parsed)) << name;
    EXPECT_EQ(parsed, state) << name;
    absl::StatusOr<AttemptState> from = AttemptStateFromName(name);
    ASSERT_TRUE(from.ok()) << from.status();
    EXPECT_EQ(*from, state) << name;
  }
}

TEST(StateNamesTest, EveryAgentStateRoundTrips) {
  const std::vector<std::pair<AgentState, std::string>> all = {
      {AgentState::kIdle, "idle"},
      {AgentState::kBusy, "busy"},
      {AgentState::kDraining, "draining"},
      {AgentState::kQuarantined, "quarantined"},
      {AgentState::kOffline, "offline"}};
  for (const auto& [state, name] : all) {
    EXPECT_EQ(AgentStateName(state), name);
    AgentState parsed = AgentState::kIdle;
    if (state == AgentState::kIdle) parsed = AgentState::kBusy;
    ASSERT_TRUE(ParseAgentState(name, &parsed)) << name;
    EXPECT_EQ(parsed, state) << name;
    absl::StatusOr<AgentState> from = AgentStateFromName(name);
    ASSERT_TRUE(from.ok()) << from.status();
    EXPECT_EQ(*from, state) << name;
  }
}

TEST(StateNamesTest, ValueOutsideTheEnumIsNamedUnknown) {
  EXPECT_STREQ(ExperimentStateName(static_cast<ExperimentState>(99)),
               "unknown");
  EXPECT_STREQ(AttemptStateName(static_cast<AttemptState>(-1)), "unknown");
  EXPECT_STREQ(AgentStateName(static_cast<AgentState>(5)), "unknown");
}

TEST(StateNamesTest, ParseRefusesUnknownTextAndLeavesTheOutputAlone) {
  ExperimentState e = ExperimentState::kRunning;
  EXPECT_FALSE(ParseExperimentState("Queued", &e));  // case matters
  EXPECT_FALSE(ParseExperimentState("", &e));
  EXPECT_FALSE(ParseExperimentState("unknown", &e));
  EXPECT_EQ(e, ExperimentState::kRunning);
  AttemptState a = AttemptState::kLost;
  EXPECT_FALSE(ParseAttemptState("queued", &a));  // an experiment state
  EXPECT_FALSE(ParseAttemptState("host_not_ready", &a));
  EXPECT_EQ(a, AttemptState::kLost);
  AgentState g = AgentState::kBusy;
  EXPECT_FALSE(ParseAgentState("running", &g));
  EXPECT_EQ(g, AgentState::kBusy);
}

TEST(StateNamesTest, FromNameRefusesUnknownTextWithAClearMessage) {
  absl::StatusOr<ExperimentState> e = ExperimentStateFromName("finished");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.status().message(),
            "unknown experiment state \"finished\"; expected one of queued, "
            "running, done, failed, cancelled");

  absl::StatusOr<AttemptState> a = AttemptStateFromName("Done");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a.status().message(),
            "unknown attempt state \"Done\"; expected one of running, done, "
            "lost, failed, cancelled, host-not-ready");

  absl::StatusOr<AgentState> g = AgentStateFromName("");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(g.status().message(),
            "unknown agent state \"\"; expected one of idle, busy, draining, "
            "quarantined, offline");
}

}  // namespace
}  // namespace benchfleet
