// The store conformance suite (store_test_fixture.h), run against SqliteStore
// and PgStore: enum names, experiments, claiming (labels, skips, concurrent
// claims from threads and from two controllers), agents, hostile text and
// value ranges. The other parts of the suite: store_attempts_test.cc,
// store_history_test.cc, store_migration_test.cc, pg_store_test.cc.
#include <string>
#include <vector>

#include "tests/controller/store_test_fixture.h"

namespace benchfleet {
namespace store_testing {
namespace {

INSTANTIATE_STORE_SUITE(StoreTest);

// ---- Enum names ----

TEST(StoreEnumTest, NamesParseBackToTheSameState) {
  for (ExperimentState s : {ExperimentState::kQueued, ExperimentState::kRunning,
                            ExperimentState::kDone, ExperimentState::kFailed,
                            ExperimentState::kCancelled}) {
    ExperimentState parsed;
    ASSERT_TRUE(ParseExperimentState(ExperimentStateName(s), &parsed))
        << ExperimentStateName(s);
    EXPECT_EQ(parsed, s);
  }
  for (AttemptState s :
       {AttemptState::kRunning, AttemptState::kDone, AttemptState::kLost,
        AttemptState::kFailed, AttemptState::kCancelled,
        AttemptState::kHostNotReady}) {
    AttemptState parsed;
    ASSERT_TRUE(ParseAttemptState(AttemptStateName(s), &parsed))
        << AttemptStateName(s);
    EXPECT_EQ(parsed, s);
  }
  for (AgentState s :
       {AgentState::kIdle, AgentState::kBusy, AgentState::kDraining,
        AgentState::kQuarantined, AgentState::kOffline}) {
    AgentState parsed;
    ASSERT_TRUE(ParseAgentState(AgentStateName(s), &parsed))
        << AgentStateName(s);
    EXPECT_EQ(parsed, s);
  }
  EXPECT_STREQ(ExperimentStateName(ExperimentState::kQueued), "queued");
  EXPECT_STREQ(AttemptStateName(AttemptState::kLost), "lost");
  EXPECT_STREQ(AttemptStateName(AttemptState::kHostNotReady), "host-not-ready");
  EXPECT_STREQ(AgentStateName(AgentState::kQuarantined), "quarantined");
}

TEST(StoreEnumTest, ParseRejectsUnknownAndWrongCaseNames) {
  ExperimentState e = ExperimentState::kDone;
  EXPECT_FALSE(ParseExperimentState("Queued", &e));
  EXPECT_FALSE(ParseExperimentState("", &e));
  EXPECT_EQ(e, ExperimentState::kDone);
  AttemptState a;
  EXPECT_FALSE(ParseAttemptState("queued", &a));
  AgentState g;
  EXPECT_FALSE(ParseAgentState("running", &g));
}

// ---- Experiments ----

TEST_P(StoreTest, CreateExperimentAssignsIdsAndPerCampaignNumbers) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}, {"", 1}, {"", 2}, {"b", 2}};
  int64_t last_id = 0;
  for (const auto& [campaign, number] : expected) {
    ASSERT_OK_AND_ASSIGN(
        ExperimentRecord created,
        store->CreateExperiment(MakeExperiment("e", campaign)));
    EXPECT_GT(created.id, last_id);
    last_id = created.id;
    EXPECT_EQ(created.campaign, campaign);
    EXPECT_EQ(created.number, number) << "campaign \"" << campaign << "\"";
  }
}

TEST_P(StoreTest, CreateExperimentStoresEveryFieldQueuedWithNoAttempts) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in =
      MakeExperiment("sort-bench", "q3", {{"gpu", "h100"}, {"os", "linux"}});
  in.state = ExperimentState::kDone;  // ignored: new experiments are queued
  in.attempts = 7;                    // ignored: no attempts yet
  in.max_attempts = 5;
  ASSERT_OK_AND_ASSIGN(ExperimentRecord created, store->CreateExperiment(in));
  ASSERT_OK_AND_ASSIGN(ExperimentRecord got, store->GetExperiment(created.id));
  for (const ExperimentRecord& r : {created, got}) {
    EXPECT_EQ(r.id, created.id);
    EXPECT_EQ(r.number, 1);
    EXPECT_EQ(r.name, "sort-bench");
    EXPECT_EQ(r.campaign, "q3");
    EXPECT_EQ(r.state, ExperimentState::kQueued);
    EXPECT_EQ(r.spec_yaml, in.spec_yaml);
    EXPECT_EQ(r.spec_path, in.spec_path);
    EXPECT_EQ(r.workdir, in.workdir);
    EXPECT_EQ(r.required_labels, in.required_labels);
    EXPECT_EQ(r.attempts, 0);
    EXPECT_EQ(r.max_attempts, 5);
    EXPECT_EQ(r.submitted_by, "alice");
    EXPECT_EQ(r.created_at, kT0);
    EXPECT_EQ(r.updated_at, kT0);
    EXPECT_EQ(r.report_json, "");
    EXPECT_EQ(r.report_text, "");
  }
}

TEST_P(StoreTest, CreateExperimentStampsWallClockWhenCreatedAtIsUnset) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in = MakeExperiment("e");
  in.created_at = absl::UnixEpoch();
  const absl::Time before = absl::Now();
  ASSERT_OK_AND_ASSIGN(ExperimentRecord created, store->CreateExperiment(in));
  EXPECT_GE(created.created_at,
            absl::FromUnixMicros(absl::ToUnixMicros(before)));
  EXPECT_LE(created.created_at, absl::Now());
  EXPECT_EQ(created.updated_at, created.created_at);
}

TEST_P(StoreTest, CreateExperimentRejectsMaxAttemptsBelowOne) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in = MakeExperiment("never-runs");
  in.max_attempts = 0;
  auto created = store->CreateExperiment(in);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("never-runs"));
  ASSERT_OK_AND_ASSIGN(auto all, store->ListExperiments(0));
  EXPECT_TRUE(all.empty());
}

TEST_P(StoreTest, CreateExperimentRejectsLabelsThatAreNotUtf8) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto created =
      store->CreateExperiment(MakeExperiment("bad", "", {{"gpu", "\xff\xfe"}}));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("UTF-8"));
}

TEST_P(StoreTest, GetExperimentOfUnknownIdIsNotFound) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto got = store->GetExperiment(42);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("42"));
}

TEST_P(StoreTest, ListExperimentsIsNewestFirstAndHonoursLimit) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK(store->CreateExperiment(MakeExperiment("e" + std::to_string(i)))
                  .status());
  }
  ASSERT_OK_AND_ASSIGN(auto all, store->ListExperiments(0));
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i].name, "e" + std::to_string(4 - i));
  ASSERT_OK_AND_ASSIGN(auto two, store->ListExperiments(2));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].name, "e4");
  EXPECT_EQ(two[1].name, "e3");
  ASSERT_OK_AND_ASSIGN(auto negative, store->ListExperiments(-1));
  EXPECT_EQ(negative.size(), 5u);
}

// ---- Claiming ----

TEST_P(StoreTest, ClaimPicksOldestQueuedExperimentWhoseLabelsAreASubset) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto needs_h100,
                       store->CreateExperiment(MakeExperiment(
                           "needs-h100", "", {{"gpu", "h100"}})));
  ASSERT_OK_AND_ASSIGN(auto any,
                       store->CreateExperiment(MakeExperiment("any")));
  ASSERT_OK_AND_ASSIGN(auto linux_only, store->CreateExperiment(MakeExperiment(
                                            "linux", "", {{"os", "linux"}})));
  const std::map<std::string, std::string> cpu_box = {{"os", "linux"},
                                                      {"gpu", "a100"}};

  ASSERT_OK_AND_ASSIGN(
      auto first, store->ClaimNextExperiment("agent-1", cpu_box, "tok-1", 7, {},
                                             kT0 + absl::Seconds(1)));
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->experiment.id, any.id);
  EXPECT_EQ(first->experiment.state, ExperimentState::kRunning);
  EXPECT_EQ(first->experiment.attempts, 1);
  EXPECT_EQ(first->experiment.updated_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(first->attempt.experiment_id, any.id);
  EXPECT_EQ(first->attempt.agent_id, "agent-1");
  EXPECT_EQ(first->attempt.lease_token, "tok-1");
  EXPECT_EQ(first->attempt.seed, 7u);
  EXPECT_EQ(first->attempt.state, AttemptState::kRunning);
  EXPECT_EQ(first->attempt.started_at, kT0 + absl::Seconds(1));
  EXPECT_EQ(first->attempt.ended_at, absl::UnixEpoch());

  ASSERT_OK_AND_ASSIGN(
      auto second,
      store->ClaimNextExperiment("agent-1", cpu_box, "tok-2", 8, {}, kT0));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->experiment.id, linux_only.id);

  // gpu=h100 is required and the agent offers gpu=a100: a label with another
  // value is no match.
  ASSERT_OK_AND_ASSIGN(auto none, store->ClaimNextExperiment(
                                      "agent-1", cpu_box, "tok-3", 9, {}, kT0));
  EXPECT_FALSE(none.has_value());

  ASSERT_OK_AND_ASSIGN(auto h100,
                       store->ClaimNextExperiment("agent-2", {{"gpu", "h100"}},
                                                  "tok-4", 10, {}, kT0));
  ASSERT_TRUE(h100.has_value());
  EXPECT_EQ(h100->experiment.id, needs_h100.id);

  ASSERT_OK_AND_ASSIGN(auto attempt, store->GetAttempt(first->attempt.id));
  EXPECT_EQ(attempt.lease_token, "tok-1");
  ASSERT_OK_AND_ASSIGN(auto running, store->ListRunningAttempts());
  EXPECT_EQ(running.size(), 3u);
}

TEST_P(StoreTest, ClaimOnEmptyQueueReturnsNullopt) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(
      auto claim, store->ClaimNextExperiment("agent", {}, "tok", 1, {}, kT0));
  EXPECT_FALSE(claim.has_value());
}

TEST_P(StoreTest, ClaimWithReusedLeaseTokenFailsAndLeavesExperimentQueued) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("one")).status());
  ASSERT_OK_AND_ASSIGN(auto two,
                       store->CreateExperiment(MakeExperiment("two")));
  ASSERT_OK_AND_ASSIGN(
      auto first, store->ClaimNextExperiment("agent", {}, "same", 1, {}, kT0));
  ASSERT_TRUE(first.has_value());
  auto again = store->ClaimNextExperiment("agent", {}, "same", 2, {}, kT0);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists)
      << again.status();
  // The experiment update was rolled back with the failed attempt insert.
  ASSERT_OK_AND_ASSIGN(auto still, store->GetExperiment(two.id));
  EXPECT_EQ(still.state, ExperimentState::kQueued);
  EXPECT_EQ(still.attempts, 0);
  ASSERT_OK_AND_ASSIGN(auto attempts, store->ListAttempts(two.id));
  EXPECT_TRUE(attempts.empty());
}

TEST_P(StoreTest, ClaimRejectsEmptyAgentIdOrLeaseToken) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(
      store->ClaimNextExperiment("", {}, "tok", 1, {}, kT0).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store->ClaimNextExperiment("agent", {}, "", 1, {}, kT0).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, ClaimPassesOverSkippedExperimentsWhichStayClaimable) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto first,
                       store->CreateExperiment(MakeExperiment("first")));
  ASSERT_OK_AND_ASSIGN(auto second,
                       store->CreateExperiment(MakeExperiment("second")));
  const std::set<int64_t> skip = {first.id, second.id + 1000};

  ASSERT_OK_AND_ASSIGN(auto claim, store->ClaimNextExperiment(
                                       "agent-1", {}, "tok-1", 1, skip, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->experiment.id, second.id);
  // Only the skipped one is left: nothing for this caller, and it is
  // untouched.
  ASSERT_OK_AND_ASSIGN(auto none, store->ClaimNextExperiment(
                                      "agent-1", {}, "tok-2", 2, skip, kT0));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(auto skipped, store->GetExperiment(first.id));
  EXPECT_EQ(skipped.state, ExperimentState::kQueued);
  EXPECT_EQ(skipped.attempts, 0);
  ASSERT_OK_AND_ASSIGN(auto attempts, store->ListAttempts(first.id));
  EXPECT_TRUE(attempts.empty());

  // A call that does not skip it claims it.
  ASSERT_OK_AND_ASSIGN(auto later, store->ClaimNextExperiment(
                                       "agent-2", {}, "tok-3", 3, {}, kT0));
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->experiment.id, first.id);
}

// Claims until the queue is empty from `threads` threads per store; returns
// claimed ids.
std::vector<int64_t> ClaimAllConcurrently(const std::vector<Store*>& stores,
                                          int threads) {
  std::vector<std::vector<int64_t>> claimed(stores.size() * threads);
  std::vector<std::thread> workers;
  std::atomic<bool> go{false};
  for (size_t s = 0; s < stores.size(); ++s) {
    for (int t = 0; t < threads; ++t) {
      const size_t slot = s * threads + t;
      workers.emplace_back([&, s, slot] {
        while (!go.load()) std::this_thread::yield();
        for (int n = 0;; ++n) {
          const std::string token =
              "tok-" + std::to_string(slot) + "-" + std::to_string(n);
          auto claim = stores[s]->ClaimNextExperiment(
              "agent-" + std::to_string(slot), {}, token, slot, {}, kT0);
          if (!claim.ok()) {
            ADD_FAILURE() << claim.status();
            return;
          }
          if (!claim->has_value()) return;
          claimed[slot].push_back((*claim)->experiment.id);
        }
      });
    }
  }
  go.store(true);
  for (auto& w : workers) w.join();
  std::vector<int64_t> all;
  for (const auto& ids : claimed) all.insert(all.end(), ids.begin(), ids.end());
  return all;
}

void ExpectEachClaimedOnce(Store& store, const std::vector<int64_t>& created,
                           const std::vector<int64_t>& claimed) {
  EXPECT_EQ(claimed.size(), created.size());
  const std::multiset<int64_t> claimed_set(claimed.begin(), claimed.end());
  for (int64_t id : created) {
    EXPECT_EQ(claimed_set.count(id), 1u) << "experiment " << id;
    auto experiment = store.GetExperiment(id);
    ASSERT_TRUE(experiment.ok()) << experiment.status();
    EXPECT_EQ(experiment->state, ExperimentState::kRunning);
    EXPECT_EQ(experiment->attempts, 1);
    auto attempts = store.ListAttempts(id);
    ASSERT_TRUE(attempts.ok()) << attempts.status();
    EXPECT_EQ(attempts->size(), 1u) << "experiment " << id;
  }
  auto running = store.ListRunningAttempts();
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->size(), created.size());
}

TEST_P(StoreTest, ConcurrentClaimsFromThreadsClaimEachExperimentExactlyOnce) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  std::vector<int64_t> created;
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(
                                     MakeExperiment("e" + std::to_string(i))));
    created.push_back(e.id);
  }
  const std::vector<int64_t> claimed = ClaimAllConcurrently({store.get()}, 4);
  ExpectEachClaimedOnce(*store, created, claimed);
}

// Two controller processes sharing one database: for SQLite two connections
// to one file, for PostgreSQL two PgStores with their own connection pools.
TEST_P(StoreTest, ConcurrentClaimsFromTwoStoresClaimEachOfFiftyExactlyOnce) {
  auto first = OpenOrDie();
  auto second = OpenOrDie();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::vector<int64_t> created;
  for (int i = 0; i < 50; ++i) {
    // Alternate stores so both write the queue too.
    Store& store = i % 2 == 0 ? *first : *second;
    ASSERT_OK_AND_ASSIGN(auto e, store.CreateExperiment(
                                     MakeExperiment("e" + std::to_string(i))));
    created.push_back(e.id);
  }
  const std::vector<int64_t> claimed =
      ClaimAllConcurrently({first.get(), second.get()}, 3);
  ExpectEachClaimedOnce(*first, created, claimed);
  ExpectEachClaimedOnce(*second, created, claimed);
}

// Controllers submitting into one campaign at once still number experiments
// 1, 2, 3, ... without gaps or repeats.
TEST_P(StoreTest, ConcurrentCreatesFromTwoStoresNumberACampaignWithoutRepeats) {
  auto first = OpenOrDie();
  auto second = OpenOrDie();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  constexpr int kPerThread = 10;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::vector<int64_t> numbers;
  for (Store* store : {first.get(), second.get(), first.get(), second.get()}) {
    workers.emplace_back([&, store] {
      for (int i = 0; i < kPerThread; ++i) {
        auto e = store->CreateExperiment(MakeExperiment("e", "shared"));
        if (!e.ok()) {
          ADD_FAILURE() << e.status();
          return;
        }
        std::lock_guard<std::mutex> lock(mu);
        numbers.push_back(e->number);
      }
    });
  }
  for (auto& w : workers) w.join();
  std::sort(numbers.begin(), numbers.end());
  ASSERT_EQ(numbers.size(), 4u * kPerThread);
  for (size_t i = 0; i < numbers.size(); ++i) {
    EXPECT_EQ(numbers[i], static_cast<int64_t>(i + 1));
  }
}

// ---- Agents ----

TEST_P(StoreTest, UpsertAgentInsertsThenUpdatesButKeepsCordoned) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->UpsertAgent(MakeAgent("a1")));
  ASSERT_OK(store->SetAgentCordoned("a1", true));

  AgentRecord update = MakeAgent("a1");
  update.hostname = "renamed.lab";
  update.labels = {{"gpu", "a100"}, {"os", "linux"}};
  update.facts_json = R"({"cores": 32})";
  update.state = AgentState::kBusy;
  update.last_seen = kT0 + absl::Minutes(1);
  update.cordoned = false;  // a reconnecting agent does not un-cordon itself
  ASSERT_OK(store->UpsertAgent(update));
  ASSERT_OK_AND_ASSIGN(auto got, store->GetAgent("a1"));
  EXPECT_EQ(got.hostname, "renamed.lab");
  EXPECT_EQ(got.labels, update.labels);
  EXPECT_EQ(got.facts_json, R"({"cores": 32})");
  EXPECT_EQ(got.state, AgentState::kBusy);
  EXPECT_EQ(got.last_seen, kT0 + absl::Minutes(1));
  EXPECT_TRUE(got.cordoned);

  ASSERT_OK(store->SetAgentCordoned("a1", false));
  ASSERT_OK_AND_ASSIGN(auto uncordoned, store->GetAgent("a1"));
  EXPECT_FALSE(uncordoned.cordoned);
  // A record that sets cordoned does cordon.
  update.cordoned = true;
  ASSERT_OK(store->UpsertAgent(update));
  ASSERT_OK_AND_ASSIGN(auto cordoned, store->GetAgent("a1"));
  EXPECT_TRUE(cordoned.cordoned);
}

TEST_P(StoreTest, SetAgentStateRecordsLastSeenExceptWhenMarkedOffline) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->UpsertAgent(MakeAgent("a1")));
  ASSERT_OK(
      store->SetAgentState("a1", AgentState::kBusy, kT0 + absl::Seconds(5)));
  ASSERT_OK_AND_ASSIGN(auto busy, store->GetAgent("a1"));
  EXPECT_EQ(busy.state, AgentState::kBusy);
  EXPECT_EQ(busy.last_seen, kT0 + absl::Seconds(5));
  ASSERT_OK(
      store->SetAgentState("a1", AgentState::kOffline, kT0 + absl::Minutes(5)));
  ASSERT_OK_AND_ASSIGN(auto offline, store->GetAgent("a1"));
  EXPECT_EQ(offline.state, AgentState::kOffline);
  EXPECT_EQ(offline.last_seen, kT0 + absl::Seconds(5));
}

TEST_P(StoreTest, AgentOperationsOnUnknownAgentAreNotFound) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetAgent("ghost").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->SetAgentState("ghost", AgentState::kIdle, kT0).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->SetAgentCordoned("ghost", true).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->UpsertAgent(MakeAgent("")).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, ListAgentsIsSortedById) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  for (const char* id : {"c", "a", "b"})
    ASSERT_OK(store->UpsertAgent(MakeAgent(id)));
  ASSERT_OK_AND_ASSIGN(auto agents, store->ListAgents());
  ASSERT_EQ(agents.size(), 3u);
  EXPECT_EQ(agents[0].id, "a");
  EXPECT_EQ(agents[1].id, "b");
  EXPECT_EQ(agents[2].id, "c");
  EXPECT_EQ(agents[0].hostname, "a.lab");
  EXPECT_EQ(agents[0].labels, MakeAgent("a").labels);
}

// ---- Hostile input and value ranges ----

TEST_P(StoreTest, HostileStringsRoundTripUnchangedThroughEveryTextField) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> hostile = HostileStrings();
  for (size_t i = 0; i < hostile.size(); ++i) {
    const std::string& h = hostile[i];
    SCOPED_TRACE("hostile string #" + std::to_string(i));
    const std::map<std::string, std::string> labels = {{h, h}, {"plain", h}};

    ExperimentRecord in;
    in.name = h;
    in.campaign = h;
    in.state_reason = h;
    in.spec_yaml = h;
    in.spec_path = h;
    in.workdir = h;
    in.required_labels = labels;
    in.submitted_by = h;
    in.created_at = kT0;
    ASSERT_OK_AND_ASSIGN(auto created, store->CreateExperiment(in));
    EXPECT_EQ(created.number, 1);

    ASSERT_OK_AND_ASSIGN(auto claim,
                         store->ClaimNextExperiment(h, labels, h, i, {}, kT0));
    ASSERT_TRUE(claim.has_value());
    ASSERT_EQ(claim->experiment.id, created.id);
    const int64_t attempt_id = claim->attempt.id;
    ASSERT_OK(store->SetAttemptEnvironment(attempt_id, h));

    StepResultRecord step = MakeStep(attempt_id, 0);
    step.kind = step.variant = step.input = step.output_digest =
        step.metrics_json = step.error = step.host_json = h;
    step.host_flags = {h, "", h};
    ASSERT_OK_AND_ASSIGN(RecordOutcome outcome,
                         store->RecordStepResult(step, h));
    EXPECT_EQ(outcome, RecordOutcome::kInserted);

    VerdictRecord verdict;
    verdict.variant = verdict.verdict = verdict.reason = verdict.detail_json =
        h;
    ASSERT_OK(store->CompleteExperiment(attempt_id, h, h, h, {verdict}, kT0));

    AgentRecord agent;
    agent.id = agent.hostname = agent.facts_json = h;
    agent.labels = labels;
    ASSERT_OK(store->UpsertAgent(agent));

    // A second experiment carries the hostile string as a cancellation reason.
    ASSERT_OK_AND_ASSIGN(
        auto cancelled, store->CreateExperiment(MakeExperiment("c", "cancel")));
    ASSERT_OK(store->CancelExperiment(cancelled.id, h, kT0));

    ASSERT_OK_AND_ASSIGN(auto e, store->GetExperiment(created.id));
    EXPECT_EQ(e.name, h);
    EXPECT_EQ(e.campaign, h);
    EXPECT_EQ(e.state_reason, h);
    EXPECT_EQ(e.spec_yaml, h);
    EXPECT_EQ(e.spec_path, h);
    EXPECT_EQ(e.workdir, h);
    EXPECT_EQ(e.required_labels, labels);
    EXPECT_EQ(e.submitted_by, h);
    EXPECT_EQ(e.report_json, h);
    EXPECT_EQ(e.report_text, h);
    ASSERT_OK_AND_ASSIGN(auto c, store->GetExperiment(cancelled.id));
    EXPECT_EQ(c.state_reason, h);

    ASSERT_OK_AND_ASSIGN(auto a, store->GetAttempt(attempt_id));
    EXPECT_EQ(a.agent_id, h);
    EXPECT_EQ(a.lease_token, h);
    EXPECT_EQ(a.environment_json, h);

    ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(attempt_id));
    ASSERT_EQ(steps.size(), 1u);
    ExpectStepEq(steps[0], step);

    ASSERT_OK_AND_ASSIGN(auto verdicts, store->ListVerdicts(created.id));
    ASSERT_EQ(verdicts.size(), 1u);
    EXPECT_EQ(verdicts[0].variant, h);
    EXPECT_EQ(verdicts[0].verdict, h);
    EXPECT_EQ(verdicts[0].reason, h);
    EXPECT_EQ(verdicts[0].detail_json, h);

    ASSERT_OK_AND_ASSIGN(auto g, store->GetAgent(h));
    EXPECT_EQ(g.id, h);
    EXPECT_EQ(g.hostname, h);
    EXPECT_EQ(g.facts_json, h);
    EXPECT_EQ(g.labels, labels);
  }
  // Nothing was dropped or deleted along the way.
  ASSERT_OK_AND_ASSIGN(auto experiments, store->ListExperiments(0));
  EXPECT_EQ(experiments.size(), 2 * hostile.size());
  ASSERT_OK_AND_ASSIGN(auto agents, store->ListAgents());
  EXPECT_EQ(agents.size(), hostile.size());
  // Reasons also reach attempts verbatim (EndAttempt).
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("end")));
  ASSERT_OK_AND_ASSIGN(auto claim, store->ClaimNextExperiment(
                                       "agent", {}, "end-tok", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  ASSERT_OK(store->EndAttempt(claim->attempt.id, AttemptState::kFailed,
                              hostile[2], kT0));
  ASSERT_OK_AND_ASSIGN(auto ended, store->GetAttempt(claim->attempt.id));
  EXPECT_EQ(ended.reason, hostile[2]);
  ASSERT_OK_AND_ASSIGN(auto failed, store->GetExperiment(e.id));
  EXPECT_EQ(failed.state_reason, hostile[2]);
}

TEST_P(StoreTest, SeedsRoundTripAcrossTheWholeUint64Range) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<uint64_t> seeds = {0, 1, (uint64_t{1} << 63) - 1,
                                       uint64_t{1} << 63,
                                       std::numeric_limits<uint64_t>::max()};
  for (size_t i = 0; i < seeds.size(); ++i) {
    ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
    ASSERT_OK_AND_ASSIGN(
        auto claim,
        store->ClaimNextExperiment("agent", {}, "tok-" + std::to_string(i),
                                   seeds[i], {}, kT0));
    ASSERT_TRUE(claim.has_value());
    EXPECT_EQ(claim->attempt.seed, seeds[i]);
    ASSERT_OK_AND_ASSIGN(auto attempt, store->GetAttempt(claim->attempt.id));
    EXPECT_EQ(attempt.seed, seeds[i]);
  }
  ASSERT_OK_AND_ASSIGN(auto running, store->ListRunningAttempts());
  ASSERT_EQ(running.size(), seeds.size());
  for (size_t i = 0; i < seeds.size(); ++i)
    EXPECT_EQ(running[i].seed, seeds[i]);
}

}  // namespace
}  // namespace store_testing
}  // namespace benchfleet
