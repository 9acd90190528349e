// The store conformance suite (store_test_fixture.h), run against SqliteStore
// and PgStore: sample batches and retention, history (ListHistory,
// ImportHistory).
#include <string>
#include <vector>

#include "tests/controller/store_test_fixture.h"

namespace benchfleet {
namespace store_testing {
namespace {

INSTANTIATE_STORE_SUITE(StoreTest);

// ---- Samples ----

TEST_P(StoreTest, RecordSamplesBatchRoundTripsEveryFieldInTakenAtOrder) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  // Larger than SQLite's rows-per-statement, interleaving two attempts, out
  // of time order.
  constexpr int kPerAttempt = 1250;
  std::vector<SampleRecord> batch;
  for (int i = 0; i < kPerAttempt; ++i) {
    batch.push_back(MakeSample(7, i));
    batch.push_back(MakeSample(8, i));
  }
  std::mt19937 rng(42);
  std::shuffle(batch.begin(), batch.end(), rng);
  ASSERT_OK(store->RecordSamples(batch));
  for (int64_t attempt : {7, 8}) {
    ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(attempt));
    ASSERT_EQ(samples.size(), static_cast<size_t>(kPerAttempt));
    for (int i = 0; i < kPerAttempt; ++i) {
      SCOPED_TRACE("attempt " + std::to_string(attempt) + " sample " +
                   std::to_string(i));
      ExpectSampleEq(samples[i], MakeSample(attempt, i));
      if (HasFailure()) return;
    }
  }
  ASSERT_OK_AND_ASSIGN(auto none, store->ListSamples(9));
  EXPECT_TRUE(none.empty());
  // Batches add up; an empty batch stores nothing.
  ASSERT_OK(store->RecordSamples({MakeSample(7, kPerAttempt)}));
  ASSERT_OK(store->RecordSamples({}));
  ASSERT_OK_AND_ASSIGN(auto more, store->ListSamples(7));
  EXPECT_EQ(more.size(), static_cast<size_t>(kPerAttempt + 1));
}

TEST_P(StoreTest, RecordSamplesKeepsHostileTextUnchanged) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> hostile = HostileStrings();
  std::vector<SampleRecord> batch;
  for (size_t i = 0; i < hostile.size(); ++i) {
    SampleRecord s = MakeSample(1, static_cast<int>(i));
    s.agent_id = s.detail_json = hostile[i];
    batch.push_back(s);
  }
  ASSERT_OK(store->RecordSamples(batch));
  ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(1));
  ASSERT_EQ(samples.size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    SCOPED_TRACE("hostile string #" + std::to_string(i));
    ExpectSampleEq(samples[i], batch[i]);
  }
}

TEST_P(StoreTest, DeleteSamplesBeforeRemovesOnlyOlderSamplesAndCountsThem) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  std::vector<SampleRecord> batch;
  for (int i = 0; i < 30; ++i) batch.push_back(MakeSample(1, i));
  for (int i = 0; i < 30; ++i) batch.push_back(MakeSample(2, i));
  ASSERT_OK(store->RecordSamples(batch));
  // Samples 0..9 of both attempts are older than sample 10; 10 itself stays.
  const absl::Time cutoff = MakeSample(1, 10).taken_at;
  ASSERT_OK_AND_ASSIGN(int64_t deleted, store->DeleteSamplesBefore(cutoff));
  EXPECT_EQ(deleted, 20);
  for (int64_t attempt : {1, 2}) {
    ASSERT_OK_AND_ASSIGN(auto left, store->ListSamples(attempt));
    ASSERT_EQ(left.size(), 20u);
    EXPECT_EQ(left.front().taken_at, cutoff);
    ExpectSampleEq(left.back(), MakeSample(attempt, 29));
  }
  ASSERT_OK_AND_ASSIGN(int64_t again, store->DeleteSamplesBefore(cutoff));
  EXPECT_EQ(again, 0);
  ASSERT_OK_AND_ASSIGN(int64_t all,
                       store->DeleteSamplesBefore(kT0 + absl::Hours(24)));
  EXPECT_EQ(all, 40);
}

// ---- History (ListHistory, ImportHistory) ----

// Creates an experiment named `name` (with `idea`, created at `created`),
// claims it with `token` and completes it with one verdict for "fast".
// Returns its id, or 0 after a test failure.
int64_t CompleteOne(Store& store, const std::string& name,
                    const std::string& campaign, const std::string& idea,
                    absl::Time created, const std::string& token,
                    const std::string& verdict = "KEEP") {
  ExperimentRecord in = MakeExperiment(name, campaign);
  in.idea = idea;
  in.created_at = created;
  auto e = store.CreateExperiment(in);
  EXPECT_TRUE(e.ok()) << e.status();
  if (!e.ok()) return 0;
  auto claim = store.ClaimNextExperiment("agent-1", {}, token, 7, {}, created);
  EXPECT_TRUE(claim.ok() && claim->has_value());
  if (!claim.ok() || !claim->has_value()) return 0;
  EXPECT_TRUE(
      store.SetAttemptEnvironment((*claim)->attempt.id, R"({"hostname": "h1"})")
          .ok());
  VerdictRecord v;
  v.variant = "fast";
  v.verdict = verdict;
  v.reason = "because " + token;
  v.change = -0.25;
  v.detail_json = "{}";
  EXPECT_TRUE(store
                  .CompleteExperiment((*claim)->attempt.id, token,
                                      R"({"report": ")" + token + "\"}",
                                      "text of " + token, {v},
                                      created + absl::Minutes(5))
                  .ok());
  return e->id;
}

std::vector<std::string> TokensOf(const std::vector<HistoryEntry>& entries) {
  std::vector<std::string> out;
  for (const HistoryEntry& e : entries) out.push_back(e.attempt.lease_token);
  return out;
}

TEST_P(StoreTest, CreateExperimentStoresIdeaAndDiscardedBefore) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in = MakeExperiment("e");
  in.idea = "mpt-hash-caching";
  in.discarded_before = "DISCARDed before: experiment 003";
  ASSERT_OK_AND_ASSIGN(auto created, store->CreateExperiment(in));
  EXPECT_EQ(created.idea, "mpt-hash-caching");
  EXPECT_EQ(created.discarded_before, "DISCARDed before: experiment 003");
  EXPECT_EQ(created.origin, "");
  ASSERT_OK_AND_ASSIGN(auto listed, store->ListExperiments(0));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].idea, "mpt-hash-caching");
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("a", {}, "t", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->experiment.discarded_before,
            "DISCARDed before: experiment 003");
}

TEST_P(StoreTest, ListHistoryReturnsCompletedExperimentsOldestFirst) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  // Created out of order, so that the order is by created_at, not id.
  ASSERT_NE(
      CompleteOne(*store, "bench", "c1", "idea-a", kT0 + absl::Hours(2), "t2"),
      0);
  ASSERT_NE(CompleteOne(*store, "bench", "c1", "idea-b", kT0, "t0"), 0);
  ASSERT_NE(
      CompleteOne(*store, "other", "c2", "idea-a", kT0 + absl::Hours(1), "t1"),
      0);
  ASSERT_NE(CompleteOne(*store, "bench", "c2", "", kT0 + absl::Hours(3), "t3",
                        "DISCARD"),
            0);
  // Not completed: queued, failed and cancelled experiments are not history.
  ASSERT_OK(store->CreateExperiment(MakeExperiment("bench", "c1")).status());
  ASSERT_OK_AND_ASSIGN(auto cancelled,
                       store->CreateExperiment(MakeExperiment("bench", "c1")));
  ASSERT_OK(store->CancelExperiment(cancelled.id, "no", kT0));

  ASSERT_OK_AND_ASSIGN(auto all, store->ListHistory({}));
  EXPECT_EQ(TokensOf(all), (std::vector<std::string>{"t0", "t1", "t2", "t3"}));
  const HistoryEntry& first = all[0];
  EXPECT_EQ(first.experiment.name, "bench");
  EXPECT_EQ(first.experiment.idea, "idea-b");
  EXPECT_EQ(first.experiment.state, ExperimentState::kDone);
  EXPECT_EQ(first.experiment.report_text, "text of t0");
  EXPECT_EQ(first.attempt.experiment_id, first.experiment.id);
  EXPECT_EQ(first.attempt.state, AttemptState::kDone);
  EXPECT_EQ(first.attempt.environment_json, R"({"hostname": "h1"})");
  EXPECT_EQ(first.attempt.seed, 7u);
  ASSERT_EQ(first.verdicts.size(), 1u);
  EXPECT_EQ(first.verdicts[0].reason, "because t0");
  EXPECT_EQ(first.verdicts[0].attempt_id, first.attempt.id);
  EXPECT_EQ(all[3].verdicts[0].verdict, "DISCARD");

  HistoryQuery by_name;
  by_name.name = "bench";
  ASSERT_OK_AND_ASSIGN(auto named, store->ListHistory(by_name));
  EXPECT_EQ(TokensOf(named), (std::vector<std::string>{"t0", "t2", "t3"}));
  HistoryQuery by_campaign;
  by_campaign.campaign = "c2";
  ASSERT_OK_AND_ASSIGN(auto campaign, store->ListHistory(by_campaign));
  EXPECT_EQ(TokensOf(campaign), (std::vector<std::string>{"t1", "t3"}));
  HistoryQuery by_idea;
  by_idea.idea = "idea-a";
  ASSERT_OK_AND_ASSIGN(auto idea, store->ListHistory(by_idea));
  EXPECT_EQ(TokensOf(idea), (std::vector<std::string>{"t1", "t2"}));
  HistoryQuery every_field;
  every_field.name = "bench";
  every_field.campaign = "c1";
  every_field.idea = "idea-a";
  ASSERT_OK_AND_ASSIGN(auto one, store->ListHistory(every_field));
  EXPECT_EQ(TokensOf(one), (std::vector<std::string>{"t2"}));
  HistoryQuery since;
  since.since = kT0 + absl::Hours(2);  // at or after
  ASSERT_OK_AND_ASSIGN(auto recent, store->ListHistory(since));
  EXPECT_EQ(TokensOf(recent), (std::vector<std::string>{"t2", "t3"}));
  HistoryQuery newest_two;
  newest_two.limit = 2;
  ASSERT_OK_AND_ASSIGN(auto limited, store->ListHistory(newest_two));
  EXPECT_EQ(TokensOf(limited), (std::vector<std::string>{"t2", "t3"}));
  HistoryQuery none;
  none.name = "missing";
  ASSERT_OK_AND_ASSIGN(auto empty, store->ListHistory(none));
  EXPECT_TRUE(empty.empty());
}

TEST_P(StoreTest, ListHistoryMatchesHostileNamesAndIdeasExactly) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  const std::vector<std::string> hostile = HostileStrings();
  for (size_t i = 0; i < hostile.size(); ++i) {
    ASSERT_NE(CompleteOne(*store, hostile[i], hostile[i], hostile[i],
                          kT0 + absl::Seconds(i), "tok" + std::to_string(i)),
              0)
        << "hostile string #" << i;
  }
  for (size_t i = 0; i < hostile.size(); ++i) {
    SCOPED_TRACE("hostile string #" + std::to_string(i));
    HistoryQuery q;
    q.name = hostile[i];
    ASSERT_OK_AND_ASSIGN(auto by_name, store->ListHistory(q));
    ASSERT_EQ(by_name.size(), 1u);
    EXPECT_EQ(by_name[0].experiment.name, hostile[i]);
    HistoryQuery by_idea_q;
    by_idea_q.idea = hostile[i];
    by_idea_q.campaign = hostile[i];
    ASSERT_OK_AND_ASSIGN(auto by_idea, store->ListHistory(by_idea_q));
    ASSERT_EQ(by_idea.size(), 1u);
    EXPECT_EQ(by_idea[0].experiment.idea, hostile[i]);
  }
}

TEST_P(StoreTest, ImportHistoryStoresEveryFieldOnceAndSkipsKnownOrigins) {
  auto source = OpenOrDie();
  ASSERT_NE(source, nullptr);
  ASSERT_NE(CompleteOne(*source, "bench", "c", "idea-x", kT0, "t0"), 0);
  ASSERT_NE(CompleteOne(*source, "bench", "c", "", kT0 + absl::Hours(1), "t1"),
            0);
  ASSERT_OK_AND_ASSIGN(auto exported, source->ListHistory({}));
  ASSERT_EQ(exported.size(), 2u);
  exported[0].experiment.origin = "origin-0";
  exported[0].experiment.discarded_before = "flag text";
  exported[1].experiment.origin = "origin-1";

  const std::string where = NewLocation("imported");
  ASSERT_FALSE(where.empty());
  ASSERT_OK_AND_ASSIGN(auto target, OpenAt(where));
  // The target already has experiment 1 of campaign "c": an entry whose
  // number is taken gets the campaign's next free number.
  ASSERT_OK_AND_ASSIGN(auto local,
                       target->CreateExperiment(MakeExperiment("local", "c")));
  ASSERT_EQ(local.number, 1);
  ASSERT_OK_AND_ASSIGN(ImportCounts counts, target->ImportHistory(exported));
  EXPECT_EQ(counts.imported, 2);
  EXPECT_EQ(counts.already_present, 0);

  ASSERT_OK_AND_ASSIGN(auto imported, target->ListHistory({}));
  ASSERT_EQ(imported.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    const ExperimentRecord& a = exported[i].experiment;
    const ExperimentRecord& b = imported[i].experiment;
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.campaign, a.campaign);
    EXPECT_EQ(b.idea, a.idea);
    EXPECT_EQ(b.origin, a.origin);
    EXPECT_EQ(b.discarded_before, a.discarded_before);
    EXPECT_EQ(b.state, ExperimentState::kDone);
    EXPECT_EQ(b.spec_yaml, a.spec_yaml);
    EXPECT_EQ(b.spec_path, a.spec_path);
    EXPECT_EQ(b.workdir, a.workdir);
    EXPECT_EQ(b.submitted_by, a.submitted_by);
    EXPECT_EQ(b.attempts, a.attempts);
    EXPECT_EQ(b.created_at, a.created_at);
    EXPECT_EQ(b.updated_at, a.updated_at);
    EXPECT_EQ(b.report_json, a.report_json);
    EXPECT_EQ(b.report_text, a.report_text);
    EXPECT_EQ(imported[i].attempt.agent_id, exported[i].attempt.agent_id);
    EXPECT_EQ(imported[i].attempt.seed, exported[i].attempt.seed);
    EXPECT_EQ(imported[i].attempt.environment_json,
              exported[i].attempt.environment_json);
    EXPECT_EQ(imported[i].attempt.started_at, exported[i].attempt.started_at);
    EXPECT_EQ(imported[i].attempt.ended_at, exported[i].attempt.ended_at);
    ASSERT_EQ(imported[i].verdicts.size(), 1u);
    EXPECT_EQ(imported[i].verdicts[0].verdict, exported[i].verdicts[0].verdict);
    EXPECT_EQ(imported[i].verdicts[0].reason, exported[i].verdicts[0].reason);
    EXPECT_DOUBLE_EQ(imported[i].verdicts[0].change,
                     exported[i].verdicts[0].change);
  }
  // Entry 0's number 1 was taken: it got the next one, 2, which entry 1 then
  // found taken in turn.
  EXPECT_EQ(imported[0].experiment.number, 2);
  EXPECT_EQ(imported[1].experiment.number, 3);

  // The same file again imports nothing.
  ASSERT_OK_AND_ASSIGN(ImportCounts again, target->ImportHistory(exported));
  EXPECT_EQ(again.imported, 0);
  EXPECT_EQ(again.already_present, 2);
  ASSERT_OK_AND_ASSIGN(auto still, target->ListHistory({}));
  EXPECT_EQ(still.size(), 2u);
}

TEST_P(StoreTest, ImportHistoryIsAllOrNothing) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_NE(CompleteOne(*store, "bench", "", "", kT0, "t0"), 0);
  ASSERT_OK_AND_ASSIGN(auto entries, store->ListHistory({}));
  ASSERT_EQ(entries.size(), 1u);
  HistoryEntry good = entries[0];
  good.experiment.origin = "good";
  HistoryEntry no_origin = entries[0];
  no_origin.experiment.origin = "";
  auto refused = store->ImportHistory({good, no_origin});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("history entry 2"));
  HistoryEntry long_origin = entries[0];
  long_origin.experiment.origin = std::string(1000, 'o');
  EXPECT_EQ(store->ImportHistory({good, long_origin}).status().code(),
            absl::StatusCode::kInvalidArgument);
  HistoryEntry queued = entries[0];
  queued.experiment.origin = "queued";
  queued.experiment.state = ExperimentState::kQueued;
  EXPECT_EQ(store->ImportHistory({good, queued}).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A failure inside the transaction (the second entry's attempt collides
  // with an existing lease token) stores nothing of the first either.
  ASSERT_OK(store->CreateExperiment(MakeExperiment("blocker")).status());
  ASSERT_OK_AND_ASSIGN(auto claim, store->ClaimNextExperiment(
                                       "a", {}, "imported:second", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  HistoryEntry second = entries[0];
  second.experiment.origin = "second";
  EXPECT_FALSE(store->ImportHistory({good, second}).ok());
  ASSERT_OK_AND_ASSIGN(auto after, store->ListHistory({}));
  EXPECT_EQ(after.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto experiments, store->ListExperiments(0));
  EXPECT_EQ(experiments.size(), 2u);
}

// API tokens: stored by hash, found by hash, revoked once, listed in order;
// the same on both backends.
TEST_P(StoreTest, TokensAreFoundByHashAndRevokedOnce) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  TokenRecord t;
  t.user = "alice";
  t.role = Role::kSubmitter;
  t.sha256_hex = std::string(64, 'a');
  t.created_by = "root";
  t.created_at = kT0;
  ASSERT_OK_AND_ASSIGN(TokenRecord first, store->CreateToken(t));
  EXPECT_GT(first.id, 0);
  TokenRecord u = t;
  u.user = "bob";
  u.role = Role::kAdmin;
  u.sha256_hex = std::string(64, 'b');
  ASSERT_OK_AND_ASSIGN(TokenRecord second, store->CreateToken(u));
  EXPECT_GT(second.id, first.id);
  EXPECT_TRUE(absl::IsAlreadyExists(store->CreateToken(t).status()));

  ASSERT_OK_AND_ASSIGN(std::optional<TokenRecord> found,
                       store->FindToken(std::string(64, 'b')));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->user, "bob");
  EXPECT_EQ(found->role, Role::kAdmin);
  EXPECT_EQ(found->created_by, "root");
  EXPECT_EQ(found->created_at, kT0);
  EXPECT_FALSE(found->revoked_at.has_value());
  ASSERT_OK_AND_ASSIGN(std::optional<TokenRecord> none,
                       store->FindToken(std::string(64, 'c')));
  EXPECT_FALSE(none.has_value());

  const absl::Time later = kT0 + absl::Hours(1);
  ASSERT_OK_AND_ASSIGN(TokenRecord revoked,
                       store->RevokeToken(first.id, later));
  ASSERT_TRUE(revoked.revoked_at.has_value());
  EXPECT_EQ(*revoked.revoked_at, later);
  // A second revocation keeps the first time.
  ASSERT_OK_AND_ASSIGN(TokenRecord again,
                       store->RevokeToken(first.id, later + absl::Hours(1)));
  EXPECT_EQ(*again.revoked_at, later);
  EXPECT_TRUE(absl::IsNotFound(store->RevokeToken(999, later).status()));

  ASSERT_OK_AND_ASSIGN(std::vector<TokenRecord> all, store->ListTokens());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].user, "alice");
  EXPECT_TRUE(all[0].revoked_at.has_value());
  EXPECT_EQ(all[1].user, "bob");
  EXPECT_FALSE(all[1].revoked_at.has_value());
}

}  // namespace
}  // namespace store_testing
}  // namespace benchfleet
