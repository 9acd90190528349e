// Unit tests of the AgentRegistry (controller/scheduler/agent_registry.h): the
// sessions of connected agents, their records and states in a real SQLite
// store, silence and the work they may be offered. Store writes run at once
// here; the keys they were made under are recorded.
#include "controller/scheduler/agent_registry.h"

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/controller/dispatcher_fixture.h"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class AgentRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Store>> store = OpenStore("sqlite::memory:");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    registry_ = std::make_unique<AgentRegistry>(
        store_.get(), &clock_,
        [this](const std::string& key, const std::string& /*what*/,
               StoreWrites::Write write) {
          written_.push_back(key);
          const absl::Status st = write();
          EXPECT_TRUE(st.ok()) << key << ": " << st;
        },
        [this](const std::string& key) { dropped_.push_back(key); });
  }

  // Connects and registers `agent` idle.
  AgentSession& Join(SimAgent& agent) {
    AgentSession& s = registry_->Connect(agent.link, agent.Hello());
    registry_->Register(agent.id, AgentState::kIdle, 0);
    return s;
  }

  AgentRecord Stored(const std::string& id) {
    absl::StatusOr<AgentRecord> rec = store_->GetAgent(id);
    EXPECT_TRUE(rec.ok()) << rec.status();
    return rec.ok() ? *rec : AgentRecord{};
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AgentRegistry> registry_;
  std::vector<std::string> written_;
  std::vector<std::string> dropped_;
};

TEST_F(AgentRegistryTest, RegisterRecordsTheHelloAndDropsAKeptStateWrite) {
  SimAgent a{"a", {{"gpu", "a100"}}};
  registry_->Connect(a.link, a.Hello());
  EXPECT_TRUE(written_.empty());  // nothing before Register
  registry_->Register("a", AgentState::kIdle, 0);
  EXPECT_THAT(dropped_, ElementsAre("agent:a/state"));
  EXPECT_THAT(written_, ElementsAre("agent:a"));
  const AgentRecord rec = Stored("a");
  EXPECT_EQ(rec.hostname, "host-a");
  EXPECT_EQ(rec.labels.at("gpu"), "a100");
  EXPECT_THAT(rec.facts_json, HasSubstr("\"cpu_cores\":8"));
  EXPECT_EQ(rec.state, AgentState::kIdle);
  EXPECT_EQ(rec.last_seen, clock_.Now());
  EXPECT_TRUE(registry_->IsConnected("a"));
  EXPECT_EQ(registry_->CurrentExperimentOf("a"), 0);
  EXPECT_FALSE(registry_->IsConnected("b"));
}

TEST_F(AgentRegistryTest, ANewStreamClosesTheOldOneAndStartsAfresh) {
  SimAgent a{"a"};
  AgentSession& old = Join(a);
  old.attempt_id = 5;
  old.refuses_orders = "bad signature";
  const std::shared_ptr<FakeAgentLink> first = a.link;
  a.link = std::make_shared<FakeAgentLink>();
  AgentSession& fresh = registry_->Connect(a.link, a.Hello());
  std::optional<Msg> close = first->WaitForType(Msg::kClose);
  ASSERT_TRUE(close.has_value());
  EXPECT_THAT(close->reason, HasSubstr("a newer connection"));
  EXPECT_EQ(fresh.attempt_id, 0);
  EXPECT_TRUE(fresh.refuses_orders.empty());
  EXPECT_EQ(registry_->Find(first), nullptr);
  EXPECT_EQ(registry_->Find(a.link), &fresh);
  EXPECT_EQ(registry_->Find("a"), &fresh);
  // The same stream again is not closed.
  registry_->Connect(a.link, a.Hello());
  EXPECT_EQ(a.link->Count(Msg::kClose), 0);
}

TEST_F(AgentRegistryTest, BusyAndIdleReachTheStoreAndTheReaders) {
  SimAgent a{"a"};
  AgentSession& s = Join(a);
  registry_->Busy(s, 7, 3);
  EXPECT_EQ(s.attempt_id, 7);
  EXPECT_EQ(registry_->CurrentExperimentOf("a"), 3);
  EXPECT_EQ(Stored("a").state, AgentState::kBusy);
  registry_->Idle(s);
  EXPECT_EQ(s.attempt_id, 0);
  EXPECT_EQ(registry_->CurrentExperimentOf("a"), 0);
  EXPECT_EQ(Stored("a").state, AgentState::kIdle);
  EXPECT_THAT(written_,
              ElementsAre("agent:a", "agent:a/state", "agent:a/state"));
}

TEST_F(AgentRegistryTest, DisconnectMarksOfflineAndHandsBackTheSession) {
  SimAgent a{"a"};
  registry_->Busy(Join(a), 7, 3);
  EXPECT_FALSE(registry_->Disconnect(std::make_shared<FakeAgentLink>()));
  std::optional<AgentSession> gone = registry_->Disconnect(a.link);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->attempt_id, 7);
  EXPECT_FALSE(registry_->IsConnected("a"));
  EXPECT_EQ(registry_->Find("a"), nullptr);
  EXPECT_EQ(Stored("a").state, AgentState::kOffline);
}

TEST_F(AgentRegistryTest, DropSilentTakesOnlyAgentsQuietBeyondTheTimeout) {
  SimAgent a{"a"};
  SimAgent b{"b"};
  Join(a);
  clock_.Advance(absl::Seconds(10));
  Join(b);
  clock_.Advance(absl::Seconds(5));  // a quiet for 15 s: not beyond
  EXPECT_TRUE(registry_->DropSilent(clock_.Now(), absl::Seconds(15)).empty());
  clock_.Advance(absl::Seconds(1));
  std::vector<AgentSession> dropped =
      registry_->DropSilent(clock_.Now(), absl::Seconds(15));
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0].hello.agent_id, "a");
  std::optional<Msg> close = a.link->WaitForType(Msg::kClose);
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->reason, "no heartbeat within the lease timeout");
  EXPECT_FALSE(registry_->IsConnected("a"));
  EXPECT_TRUE(registry_->IsConnected("b"));
  EXPECT_EQ(b.link->Count(Msg::kClose), 0);
}

TEST_F(AgentRegistryTest, WorkIsOfferedOnlyToIdleUncordonedWillingAgents) {
  SimAgent idle{"a-idle"}, busy{"b-busy"}, refusing{"c-refusing"},
      cordoned{"d-cordoned"};
  Join(idle);
  registry_->Busy(Join(busy), 1, 1);
  Join(refusing).refuses_orders = "bad signature";
  Join(cordoned);
  ASSERT_TRUE(store_->SetAgentCordoned("d-cordoned", true).ok());
  std::vector<std::string> offered;
  registry_->ForEachAvailable(
      [&](AgentSession& s) { offered.push_back(s.hello.agent_id); });
  EXPECT_THAT(offered, ElementsAre("a-idle"));
}

}  // namespace
}  // namespace benchfleet
