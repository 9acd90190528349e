// FleetApi: the user API's logic against a real SQLite store and a fake
// scheduler (what the gRPC adapter used to do inline).
#include "controller/fleet/fleet_api.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controller/history/history_file.h"
#include "controller/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: tiny
idea: fewer-copies
benchmark:
  argv: [./bench, "{input}"]
  inputs:
    - {name: one, path: one.txt}
  runs: 10
  max_runs: 10
variants:
  - {name: base}
  - {name: fast, argv: [./bench, --fast, "{input}"]}
)";

// Records what FleetApi asks of the scheduler; views come from the store.
class FakeScheduler final : public ExperimentScheduler {
 public:
  explicit FakeScheduler(Store* store) : store_(store) {}
  void OnSubmitted(int64_t id) override { submitted.push_back(id); }
  absl::StatusOr<ExperimentView> View(int64_t id) override {
    absl::StatusOr<ExperimentRecord> rec = store_->GetExperiment(id);
    if (!rec.ok()) return rec.status();
    ExperimentView v;
    v.record = std::move(*rec);
    v.agent_id = live_agent;
    return v;
  }
  absl::Status Cancel(int64_t id, const std::string& reason) override {
    cancelled.emplace_back(id, reason);
    return store_->CancelExperiment(id, reason, absl::Now());
  }
  bool IsConnected(const std::string& agent_id) override {
    return connected.count(agent_id) > 0;
  }
  int64_t CurrentExperimentOf(const std::string& agent_id) override {
    auto it = connected.find(agent_id);
    return it == connected.end() ? 0 : it->second;
  }
  int64_t Subscribe(int64_t,
                    std::function<void(const ExperimentView&)>) override {
    return 1;
  }
  void Unsubscribe(int64_t) override {}

  std::vector<int64_t> submitted;
  std::vector<std::pair<int64_t, std::string>> cancelled;
  std::map<std::string, int64_t> connected;  // agent -> experiment
  std::string live_agent;

 private:
  Store* store_;
};

class FleetApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SqliteOptions options;
    options.path = dir_ / "fleet.db";
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    scheduler_ = std::make_unique<FakeScheduler>(store_.get());
    api_ = std::make_unique<FleetApi>(store_.get(), scheduler_.get());
  }

  Submission Valid() const {
    Submission s;
    s.spec_yaml = kSpec;
    s.spec_path = "/w/tiny.yaml";
    s.workdir = "/w";
    s.submitted_by = "ana";
    return s;
  }

  // Completes experiment `id` through the store with `verdict` for "fast".
  void Complete(int64_t id, const std::string& verdict) {
    auto claim = store_->ClaimNextExperiment(
        "agent-a", {}, absl::StrCat("tok-", id), 7, {}, absl::Now());
    ASSERT_TRUE(claim.ok() && claim->has_value()) << claim.status();
    ASSERT_EQ((*claim)->experiment.id, id);
    VerdictRecord v;
    v.variant = "fast";
    v.verdict = verdict;
    v.reason = "slower by 4%";
    v.change = 0.04;
    ASSERT_TRUE(store_
                    ->CompleteExperiment((*claim)->attempt.id,
                                         absl::StrCat("tok-", id), "{}",
                                         "report\n", {v}, absl::Now())
                    .ok());
  }

  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<FakeScheduler> scheduler_;
  std::unique_ptr<FleetApi> api_;
};

TEST_F(FleetApiTest, SubmitStoresTheRecordAndTellsTheScheduler) {
  absl::StatusOr<Submitted> done = api_->Submit(Valid());
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_GT(done->experiment_id, 0);
  EXPECT_EQ(done->number, 1);
  EXPECT_THAT(scheduler_->submitted, ElementsAre(done->experiment_id));
  absl::StatusOr<ExperimentRecord> rec =
      store_->GetExperiment(done->experiment_id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->name, "tiny");
  EXPECT_EQ(rec->idea, "fewer-copies");
  EXPECT_EQ(rec->spec_yaml, kSpec);
  EXPECT_EQ(rec->spec_path, "/w/tiny.yaml");
  EXPECT_EQ(rec->workdir, "/w");
  EXPECT_EQ(rec->submitted_by, "ana");
  EXPECT_EQ(rec->state, ExperimentState::kQueued);
  EXPECT_EQ(rec->discarded_before, "");
}

TEST_F(FleetApiTest, SubmitRefusesARelativeWorkdirBeforeParsing) {
  Submission s = Valid();
  s.workdir = "w";
  s.spec_yaml = "not: [a spec";
  absl::StatusOr<Submitted> done = api_->Submit(s);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(done.status().message(),
              HasSubstr("submit needs the absolute work directory"));
  EXPECT_TRUE(scheduler_->submitted.empty());
}

TEST_F(FleetApiTest, SubmitRefusesAnOversizedSpecBeforeParsing) {
  Submission s = Valid();
  s.spec_yaml += "\n#" + std::string(FleetApi::kMaxSpecBytes, 'x');
  absl::StatusOr<Submitted> done = api_->Submit(s);
  ASSERT_FALSE(done.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(done.status())) << done.status();
  EXPECT_NE(done.status().message().find("accepts specs up to"),
            std::string::npos)
      << done.status();
  EXPECT_TRUE(scheduler_->submitted.empty());
}

TEST_F(FleetApiTest, SubmitRefusesABadSpecWithTheLoadersLocation) {
  Submission s = Valid();
  s.spec_path = "";
  s.spec_yaml = std::string(kSpec) + "verdict: {max_cv: lots}\n";
  absl::StatusOr<Submitted> done = api_->Submit(s);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kInvalidArgument);
  // No path given: the message names the submitted spec and the line.
  EXPECT_THAT(done.status().message(), HasSubstr("<submitted spec>:14:"));
  EXPECT_THAT(done.status().message(), HasSubstr("max_cv"));
  auto list = store_->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty()) << "a refused spec must store nothing";
}

// A spec over `repo` whose variants are at `base_ref` and `fast_ref`.
std::string SourceSpec(const std::string& repo, const std::string& base_ref,
                       const std::string& fast_ref) {
  return absl::StrCat(R"(apiVersion: benchfleet/v1
kind: Experiment
name: tiny
source: {repo: )",
                      repo, R"(}
benchmark:
  argv: [./bench, "{input}"]
  inputs:
    - {name: one, path: one.txt}
  runs: 10
  max_runs: 10
variants:
  - {name: base, ref: )",
                      base_ref, "}\n  - {name: fast, ref: ", fast_ref, "}\n");
}

TEST_F(FleetApiTest, SubmitResolvesEachVariantsRefAndStoresTheCommits) {
  testing::GitRepo repo(dir_ / "repo");
  const std::string base = repo.Commit("bench", "#!/bin/sh\necho base\n");
  repo.Branch("fast");
  const std::string fast = repo.Commit("bench", "#!/bin/sh\necho fast\n");
  Submission s = Valid();
  s.spec_yaml = SourceSpec(repo.dir(), "main", "fast");
  absl::StatusOr<Submitted> done = api_->Submit(s);
  ASSERT_TRUE(done.ok()) << done.status();
  absl::StatusOr<ExperimentDetail> detail =
      api_->GetExperiment(done->experiment_id);
  ASSERT_TRUE(detail.ok()) << detail.status();
  ASSERT_EQ(detail->sources.size(), 2u);
  EXPECT_EQ(detail->sources[0].variant, "base");
  EXPECT_EQ(detail->sources[0].ref, "main");
  EXPECT_EQ(detail->sources[0].commit, base);
  EXPECT_EQ(detail->sources[0].repo, repo.dir());
  EXPECT_EQ(detail->sources[1].variant, "fast");
  EXPECT_EQ(detail->sources[1].commit, fast);
  EXPECT_THAT(scheduler_->submitted, ElementsAre(done->experiment_id));
}

TEST_F(FleetApiTest,
       SubmitRefusesAnUnknownRefNamingTheVariantAndQueuesNothing) {
  testing::GitRepo repo(dir_ / "repo");
  repo.Commit("bench", "x");
  Submission s = Valid();
  s.spec_yaml = SourceSpec(repo.dir(), "main", "no-such-branch");
  absl::StatusOr<Submitted> done = api_->Submit(s);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(done.status().message(),
              HasSubstr("/w/tiny.yaml:13:23: variant fast: ref "
                        "'no-such-branch' is not a branch, tag or commit of"));
  auto list = store_->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty()) << "a refused spec must store nothing";
  EXPECT_TRUE(scheduler_->submitted.empty());
}

TEST_F(FleetApiTest, SubmitRefusesARepositoryGitCannotRead) {
  Submission s = Valid();
  s.spec_yaml = SourceSpec(dir_ / "missing", "main", "main");
  absl::StatusOr<Submitted> done = api_->Submit(s);
  EXPECT_EQ(done.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(done.status().message(),
              HasSubstr("source.repo: cannot list the refs of"));
  auto list = store_->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_F(FleetApiTest, SubmitWarnsWhenTheIdeaWasDiscardedBefore) {
  absl::StatusOr<Submitted> first = api_->Submit(Valid());
  ASSERT_TRUE(first.ok());
  for (const std::string& w : first->warnings) {
    EXPECT_THAT(w, ::testing::Not(HasSubstr("DISCARDed before")));
  }
  Complete(first->experiment_id, "DISCARD");

  absl::StatusOr<Submitted> again = api_->Submit(Valid());
  ASSERT_TRUE(again.ok()) << again.status();
  // The spec's own warnings, then the one about the earlier DISCARD.
  ASSERT_EQ(again->warnings.size(), first->warnings.size() + 1);
  EXPECT_THAT(again->warnings.back(),
              HasSubstr("idea \"fewer-copies\" was DISCARDed before"));
  auto rec = store_->GetExperiment(again->experiment_id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->discarded_before, again->warnings.back());
}

TEST_F(FleetApiTest, UnknownExperimentsAreNotFoundWithAHint) {
  absl::StatusOr<ExperimentDetail> got = api_->GetExperiment(42);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(),
            "no experiment with id 42; `benchfleet list` shows the ids");
  absl::StatusOr<ExperimentView> cancelled = api_->Cancel(42, "", Caller{});
  EXPECT_EQ(cancelled.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cancelled.status().message(),
            "no experiment with id 42; `benchfleet list` shows the ids");
}

TEST_F(FleetApiTest, GetExperimentListsItsAttempts) {
  absl::StatusOr<Submitted> done = api_->Submit(Valid());
  ASSERT_TRUE(done.ok());
  Complete(done->experiment_id, "KEEP");
  absl::StatusOr<ExperimentDetail> got =
      api_->GetExperiment(done->experiment_id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->view.record.state, ExperimentState::kDone);
  EXPECT_EQ(got->view.record.report_text, "report\n");
  ASSERT_EQ(got->attempts.size(), 1u);
  EXPECT_EQ(got->attempts[0].agent_id, "agent-a");
}

TEST_F(FleetApiTest, ListExperimentsLeavesReportsOut) {
  absl::StatusOr<Submitted> done = api_->Submit(Valid());
  ASSERT_TRUE(done.ok());
  Complete(done->experiment_id, "KEEP");
  scheduler_->live_agent = "agent-a";
  absl::StatusOr<std::vector<ExperimentView>> list = api_->ListExperiments(0);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].agent_id, "agent-a") << "the scheduler's view is used";
  EXPECT_EQ((*list)[0].record.report_text, "");
  EXPECT_EQ((*list)[0].record.report_json, "");
}

TEST_F(FleetApiTest, CancelGivesTheDefaultReasonAndReturnsTheNewView) {
  absl::StatusOr<Submitted> done = api_->Submit(Valid());
  ASSERT_TRUE(done.ok());
  absl::StatusOr<ExperimentView> view =
      api_->Cancel(done->experiment_id, "", Caller{});
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->record.state, ExperimentState::kCancelled);
  ASSERT_EQ(scheduler_->cancelled.size(), 1u);
  EXPECT_EQ(scheduler_->cancelled[0].second, "cancelled by the user");
  absl::StatusOr<Submitted> other = api_->Submit(Valid());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(api_->Cancel(other->experiment_id, "wrong input", Caller{}).ok());
  EXPECT_EQ(scheduler_->cancelled.back().second, "wrong input");
}

TEST_F(FleetApiTest, AgentsShowTheSchedulersLiveStateAndCordoning) {
  AgentRecord a;
  a.id = "agent-a";
  a.hostname = "box";
  ASSERT_TRUE(store_->UpsertAgent(a).ok());
  scheduler_->connected["agent-a"] = 7;

  absl::StatusOr<std::vector<AgentView>> agents = api_->ListAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_TRUE((*agents)[0].connected);
  EXPECT_EQ((*agents)[0].current_experiment, 7);

  absl::StatusOr<AgentView> cordoned = api_->SetAgentCordoned("agent-a", true);
  ASSERT_TRUE(cordoned.ok()) << cordoned.status();
  EXPECT_TRUE(cordoned->record.cordoned);
  EXPECT_THAT(scheduler_->submitted, ElementsAre(0))
      << "a change of cordon wakes the scheduler";

  absl::StatusOr<AgentView> missing = api_->SetAgentCordoned("nobody", false);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(),
            "no agent with id 'nobody'; `benchfleet agents` lists them");
}

TEST_F(FleetApiTest, HistoryNeedsAName) {
  absl::StatusOr<std::vector<HistoryRow>> rows = api_->History({});
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rows.status().message(), HasSubstr("--benchmark NAME"));
}

TEST_F(FleetApiTest, AHistoryFileThatComesBackCountsAsAlreadyPresent) {
  absl::StatusOr<Submitted> done = api_->Submit(Valid());
  ASSERT_TRUE(done.ok());
  Complete(done->experiment_id, "KEEP");
  absl::StatusOr<HistoryExport> out =
      api_->ExportHistory("tiny", absl::InfinitePast());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->experiments, 1);

  absl::StatusOr<ImportCounts> back =
      api_->ImportHistory(out->file_text, "tiny.history");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->imported, 0);
  EXPECT_EQ(back->already_present, 1) << "it ran here";
  auto list = store_->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u) << "nothing was duplicated";
}

TEST_F(FleetApiTest, ABadHistoryFileImportsNothingAndSaysWhere) {
  absl::StatusOr<ImportCounts> got =
      api_->ImportHistory("this is not: [a history file", "");
  EXPECT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("<history file>"));
  auto list = store_->ListExperiments(10);
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

}  // namespace
}  // namespace benchfleet
