// Tests for the Store contract as implemented by SqliteStore, plus OpenStore
// URL handling and the schema migrations. Databases live in per-test temporary
// directories.
#include "controller/store/store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/migrations.h"
#include "controller/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

#define ASSERT_OK(expr)                                   \
  do {                                                    \
    const ::absl::Status bf_test_status_ = (expr);        \
    ASSERT_TRUE(bf_test_status_.ok()) << bf_test_status_; \
  } while (0)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(BF_CONCAT_(bf_test_statusor_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  ASSERT_TRUE(tmp.ok()) << tmp.status();           \
  lhs = std::move(tmp).value()

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

ExperimentRecord MakeExperiment(
    const std::string& name, const std::string& campaign = "",
    std::map<std::string, std::string> labels = {}) {
  ExperimentRecord r;
  r.name = name;
  r.campaign = campaign;
  r.spec_yaml = "name: " + name + "\n";
  r.spec_path = "specs/" + name + ".yaml";
  r.workdir = "/var/lib/benchfleet/work/" + name;
  r.required_labels = std::move(labels);
  r.submitted_by = "alice";
  r.created_at = kT0;
  return r;
}

StepResultRecord MakeStep(int64_t attempt_id, int64_t step_seq) {
  StepResultRecord r;
  r.attempt_id = attempt_id;
  r.step_seq = step_seq;
  r.kind = "measure";
  r.variant = "candidate";
  r.input = "input-" + std::to_string(step_seq);
  r.wall_ns = 1'000'000 + step_seq;
  r.user_ns = 900'000;
  r.sys_ns = 50'000;
  r.max_rss_bytes = int64_t{1} << 33;
  r.exit_code = 0;
  r.term_signal = 0;
  r.timed_out = false;
  r.output_digest = "sha256:abc";
  r.metrics_json = R"({"ops": 12.5})";
  r.finished_at = kT0 + absl::Seconds(step_seq);
  return r;
}

void ExpectStepEq(const StepResultRecord& a, const StepResultRecord& b) {
  EXPECT_EQ(a.attempt_id, b.attempt_id);
  EXPECT_EQ(a.step_seq, b.step_seq);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.variant, b.variant);
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.wall_ns, b.wall_ns);
  EXPECT_EQ(a.user_ns, b.user_ns);
  EXPECT_EQ(a.sys_ns, b.sys_ns);
  EXPECT_EQ(a.max_rss_bytes, b.max_rss_bytes);
  EXPECT_EQ(a.exit_code, b.exit_code);
  EXPECT_EQ(a.term_signal, b.term_signal);
  EXPECT_EQ(a.timed_out, b.timed_out);
  EXPECT_EQ(a.output_digest, b.output_digest);
  EXPECT_EQ(a.metrics_json, b.metrics_json);
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.finished_at, b.finished_at);
}

// Direct access to a database file, to inspect or tamper with what the store
// wrote.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  }
  ~RawDb() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error),
              SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
  }
  // Every row as strings.
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(stmt); ++i) {
        const unsigned char* text = sqlite3_column_text(stmt, i);
        row.emplace_back(text ? reinterpret_cast<const char*>(text) : "NULL");
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(stmt);
    return rows;
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("benchfleet_store_test_" + std::to_string(getpid()) + "_" +
            info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string DbPath() const { return (dir_ / "store.db").string(); }

  static absl::StatusOr<std::unique_ptr<SqliteStore>> OpenAt(
      const std::string& path) {
    SqliteOptions options;
    options.path = path;
    options.busy_timeout = absl::Seconds(30);
    return SqliteStore::Open(options);
  }

  // A file-backed store at DbPath(); aborts the test on failure.
  std::unique_ptr<SqliteStore> OpenOrDie() {
    auto store = OpenAt(DbPath());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  fs::path dir_;
};

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
        AttemptState::kFailed, AttemptState::kCancelled}) {
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

TEST_F(SqliteStoreTest, CreateExperimentAssignsIdsAndPerCampaignNumbers) {
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

TEST_F(SqliteStoreTest, CreateExperimentStoresEveryFieldQueuedWithNoAttempts) {
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

TEST_F(SqliteStoreTest, CreateExperimentStampsWallClockWhenCreatedAtIsUnset) {
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

TEST_F(SqliteStoreTest, CreateExperimentRejectsMaxAttemptsBelowOne) {
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

TEST_F(SqliteStoreTest, CreateExperimentRejectsLabelsThatAreNotUtf8) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto created =
      store->CreateExperiment(MakeExperiment("bad", "", {{"gpu", "\xff\xfe"}}));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("UTF-8"));
}

TEST_F(SqliteStoreTest, GetExperimentOfUnknownIdIsNotFound) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  auto got = store->GetExperiment(42);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(), HasSubstr("42"));
}

TEST_F(SqliteStoreTest, ListExperimentsIsNewestFirstAndHonoursLimit) {
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

TEST_F(SqliteStoreTest, ClaimPicksOldestQueuedExperimentWhoseLabelsAreASubset) {
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
      auto first, store->ClaimNextExperiment("agent-1", cpu_box, "tok-1", 7,
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

  ASSERT_OK_AND_ASSIGN(auto second, store->ClaimNextExperiment(
                                        "agent-1", cpu_box, "tok-2", 8, kT0));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->experiment.id, linux_only.id);

  // gpu=h100 is required and the agent offers gpu=a100: a label with another
  // value is no match.
  ASSERT_OK_AND_ASSIGN(auto none, store->ClaimNextExperiment("agent-1", cpu_box,
                                                             "tok-3", 9, kT0));
  EXPECT_FALSE(none.has_value());

  ASSERT_OK_AND_ASSIGN(auto h100,
                       store->ClaimNextExperiment("agent-2", {{"gpu", "h100"}},
                                                  "tok-4", 10, kT0));
  ASSERT_TRUE(h100.has_value());
  EXPECT_EQ(h100->experiment.id, needs_h100.id);

  ASSERT_OK_AND_ASSIGN(auto attempt, store->GetAttempt(first->attempt.id));
  EXPECT_EQ(attempt.lease_token, "tok-1");
  ASSERT_OK_AND_ASSIGN(auto running, store->ListRunningAttempts());
  EXPECT_EQ(running.size(), 3u);
}

TEST_F(SqliteStoreTest, ClaimOnEmptyQueueReturnsNullopt) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("agent", {}, "tok", 1, kT0));
  EXPECT_FALSE(claim.has_value());
}

TEST_F(SqliteStoreTest,
       ClaimWithReusedLeaseTokenFailsAndLeavesExperimentQueued) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("one")).status());
  ASSERT_OK_AND_ASSIGN(auto two,
                       store->CreateExperiment(MakeExperiment("two")));
  ASSERT_OK_AND_ASSIGN(auto first,
                       store->ClaimNextExperiment("agent", {}, "same", 1, kT0));
  ASSERT_TRUE(first.has_value());
  auto again = store->ClaimNextExperiment("agent", {}, "same", 2, kT0);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists)
      << again.status();
  // The experiment update was rolled back with the failed attempt insert.
  ASSERT_OK_AND_ASSIGN(auto still, store->GetExperiment(two.id));
  EXPECT_EQ(still.state, ExperimentState::kQueued);
  EXPECT_EQ(still.attempts, 0);
  ASSERT_OK_AND_ASSIGN(auto attempts, store->ListAttempts(two.id));
  EXPECT_TRUE(attempts.empty());
}

TEST_F(SqliteStoreTest, ClaimRejectsEmptyAgentIdOrLeaseToken) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->ClaimNextExperiment("", {}, "tok", 1, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ClaimNextExperiment("agent", {}, "", 1, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Claims until the queue is empty from `threads` threads per store; returns
// claimed ids.
std::vector<int64_t> ClaimAllConcurrently(
    const std::vector<SqliteStore*>& stores, int threads) {
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
              "agent-" + std::to_string(slot), {}, token, slot, kT0);
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

void ExpectEachClaimedOnce(SqliteStore& store,
                           const std::vector<int64_t>& created,
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

TEST_F(SqliteStoreTest,
       ConcurrentClaimsFromThreadsClaimEachExperimentExactlyOnce) {
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

TEST_F(SqliteStoreTest,
       ConcurrentClaimsFromTwoConnectionsClaimEachExperimentExactlyOnce) {
  auto first = OpenOrDie();
  auto second = OpenOrDie();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::vector<int64_t> created;
  for (int i = 0; i < 20; ++i) {
    // Alternate connections so both write the queue too.
    SqliteStore& store = i % 2 == 0 ? *first : *second;
    ASSERT_OK_AND_ASSIGN(auto e, store.CreateExperiment(
                                     MakeExperiment("e" + std::to_string(i))));
    created.push_back(e.id);
  }
  const std::vector<int64_t> claimed =
      ClaimAllConcurrently({first.get(), second.get()}, 2);
  ExpectEachClaimedOnce(*first, created, claimed);
  ExpectEachClaimedOnce(*second, created, claimed);
}

// ---- Step results ----

class ClaimedStoreTest : public SqliteStoreTest {
 protected:
  void SetUp() override {
    SqliteStoreTest::SetUp();
    store_ = OpenOrDie();
    ASSERT_NE(store_, nullptr);
    ExperimentRecord in = MakeExperiment("claimed");
    in.max_attempts = 2;
    ASSERT_OK_AND_ASSIGN(experiment_, store_->CreateExperiment(in));
    ASSERT_OK_AND_ASSIGN(auto claim, store_->ClaimNextExperiment(
                                         "agent-1", {}, "lease-1", 99, kT0));
    ASSERT_TRUE(claim.has_value());
    attempt_ = claim->attempt;
  }

  std::unique_ptr<SqliteStore> store_;
  ExperimentRecord experiment_;
  AttemptRecord attempt_;
};

TEST_F(ClaimedStoreTest, RecordStepResultStoresEveryFieldAndListsInStepOrder) {
  StepResultRecord failing = MakeStep(attempt_.id, 2);
  failing.exit_code = 3;
  failing.term_signal = 9;
  failing.timed_out = true;
  failing.error = "killed after 30s";
  for (const StepResultRecord& step :
       {failing, MakeStep(attempt_.id, 0), MakeStep(attempt_.id, 1)}) {
    ASSERT_OK_AND_ASSIGN(RecordOutcome outcome,
                         store_->RecordStepResult(step, "lease-1"));
    EXPECT_EQ(outcome, RecordOutcome::kInserted);
  }
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  ASSERT_EQ(steps.size(), 3u);
  ExpectStepEq(steps[0], MakeStep(attempt_.id, 0));
  ExpectStepEq(steps[1], MakeStep(attempt_.id, 1));
  ExpectStepEq(steps[2], failing);
}

TEST_F(ClaimedStoreTest,
       RecordStepResultDuplicateChangesNothingAndKeepsOriginalRow) {
  const StepResultRecord original = MakeStep(attempt_.id, 5);
  ASSERT_OK_AND_ASSIGN(RecordOutcome first,
                       store_->RecordStepResult(original, "lease-1"));
  EXPECT_EQ(first, RecordOutcome::kInserted);
  StepResultRecord resend = original;
  resend.wall_ns = 1;
  resend.output_digest = "different";
  resend.error = "different";
  ASSERT_OK_AND_ASSIGN(RecordOutcome second,
                       store_->RecordStepResult(resend, "lease-1"));
  EXPECT_EQ(second, RecordOutcome::kDuplicate);
  ASSERT_OK_AND_ASSIGN(RecordOutcome third,
                       store_->RecordStepResult(original, "lease-1"));
  EXPECT_EQ(third, RecordOutcome::kDuplicate);
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  ASSERT_EQ(steps.size(), 1u);
  ExpectStepEq(steps[0], original);
}

TEST_F(ClaimedStoreTest,
       RecordStepResultRejectsStaleLeaseTokenNamingTheAttempt) {
  auto outcome =
      store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-0-stale");
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(outcome.status().message(),
              HasSubstr("attempt " + std::to_string(attempt_.id)));
  EXPECT_THAT(outcome.status().message(), HasSubstr("stale"));
  ASSERT_OK_AND_ASSIGN(auto steps, store_->ListStepResults(attempt_.id));
  EXPECT_TRUE(steps.empty());
}

TEST_F(ClaimedStoreTest,
       RecordStepResultRejectsResultsForEndedAttemptNamingTheAttempt) {
  ASSERT_OK(
      store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-1").status());
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost,
                               "heartbeat timeout", kT0 + absl::Minutes(1)));
  for (int64_t seq : {0, 1}) {  // a resend and a new step alike
    auto outcome =
        store_->RecordStepResult(MakeStep(attempt_.id, seq), "lease-1");
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(outcome.status().message(),
                HasSubstr("attempt " + std::to_string(attempt_.id)));
  }
  // The experiment was re-queued and leased again: the new lease works, the old
  // one does not.
  ASSERT_OK_AND_ASSIGN(auto claim, store_->ClaimNextExperiment(
                                       "agent-2", {}, "lease-2", 1, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(store_->RecordStepResult(MakeStep(claim->attempt.id, 0), "lease-1")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_OK(store_->RecordStepResult(MakeStep(claim->attempt.id, 0), "lease-2")
                .status());
  ASSERT_OK_AND_ASSIGN(auto old_steps, store_->ListStepResults(attempt_.id));
  EXPECT_EQ(old_steps.size(), 1u);
}

TEST_F(ClaimedStoreTest, RecordStepResultForUnknownAttemptIsNotFound) {
  auto outcome =
      store_->RecordStepResult(MakeStep(attempt_.id + 100, 0), "lease-1");
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClaimedStoreTest,
       SetAttemptEnvironmentIsStoredAndUnknownAttemptIsNotFound) {
  ASSERT_OK(store_->SetAttemptEnvironment(attempt_.id, R"({"kernel": "6.1"})"));
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.environment_json, R"({"kernel": "6.1"})");
  EXPECT_EQ(store_->SetAttemptEnvironment(attempt_.id + 100, "{}").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetAttempt(attempt_.id + 100).status().code(),
            absl::StatusCode::kNotFound);
}

// ---- Completion ----

VerdictRecord MakeVerdict(const std::string& variant,
                          const std::string& verdict) {
  VerdictRecord v;
  v.variant = variant;
  v.verdict = verdict;
  v.reason = "faster on 9 of 10 inputs";
  v.change = -0.125;
  v.detail_json = R"({"inputs": []})";
  return v;
}

TEST_F(ClaimedStoreTest, CompleteExperimentStoresReportVerdictsAndEndsBoth) {
  const absl::Time done_at = kT0 + absl::Minutes(10);
  ASSERT_OK(store_->CompleteExperiment(
      attempt_.id, "lease-1", R"({"ok": true})", "all good",
      {MakeVerdict("fast", "KEEP"), MakeVerdict("slow", "MAYBE")}, done_at));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(experiment.report_json, R"({"ok": true})");
  EXPECT_EQ(experiment.report_text, "all good");
  EXPECT_EQ(experiment.updated_at, done_at);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kDone);
  EXPECT_EQ(attempt.ended_at, done_at);
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].variant, "fast");
  EXPECT_EQ(verdicts[0].verdict, "KEEP");
  EXPECT_EQ(verdicts[0].experiment_id, experiment_.id);
  EXPECT_EQ(verdicts[0].attempt_id, attempt_.id);
  EXPECT_EQ(verdicts[0].reason, "faster on 9 of 10 inputs");
  EXPECT_DOUBLE_EQ(verdicts[0].change, -0.125);
  EXPECT_EQ(verdicts[0].detail_json, R"({"inputs": []})");
  EXPECT_EQ(verdicts[1].variant, "slow");
  ASSERT_OK_AND_ASSIGN(auto running, store_->ListRunningAttempts());
  EXPECT_TRUE(running.empty());
}

TEST_F(ClaimedStoreTest,
       CompleteExperimentChangesNothingWhenAVerdictIsRejected) {
  VerdictRecord foreign = MakeVerdict("slow", "MAYBE");
  foreign.experiment_id = experiment_.id + 1;
  auto status =
      store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "text",
                                 {MakeVerdict("fast", "KEEP"), foreign}, kT0);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  // The attempt/experiment updates and the first verdict were rolled back.
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kRunning);
  EXPECT_EQ(experiment.report_text, "");
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kRunning);
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  EXPECT_TRUE(verdicts.empty());
  // And the completion can then be done properly.
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "text",
                                       {MakeVerdict("fast", "KEEP")}, kT0));
}

TEST_F(ClaimedStoreTest, CompleteExperimentRejectsStaleTokenAndEndedAttempt) {
  auto stale =
      store_->CompleteExperiment(attempt_.id, "wrong", "{}", "", {}, kT0);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(),
              HasSubstr("attempt " + std::to_string(attempt_.id)));
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "first",
                                       {}, kT0));
  auto again = store_->CompleteExperiment(
      attempt_.id, "lease-1", "{}", "second", {MakeVerdict("v", "KEEP")}, kT0);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.report_text, "first");
  ASSERT_OK_AND_ASSIGN(auto verdicts, store_->ListVerdicts(experiment_.id));
  EXPECT_TRUE(verdicts.empty());
}

// ---- Ending attempts ----

TEST_F(ClaimedStoreTest, EndAttemptLostRequeuesUntilMaxAttemptsThenFails) {
  // max_attempts is 2 (fixture).
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost, "agent silent",
                               kT0));
  ASSERT_OK_AND_ASSIGN(auto requeued, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.attempts, 1);
  EXPECT_THAT(requeued.state_reason, HasSubstr("agent silent"));
  ASSERT_OK_AND_ASSIGN(auto lost, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(lost.state, AttemptState::kLost);
  EXPECT_EQ(lost.reason, "agent silent");
  EXPECT_EQ(lost.ended_at, kT0);

  ASSERT_OK_AND_ASSIGN(auto claim, store_->ClaimNextExperiment(
                                       "agent-2", {}, "lease-2", 5, kT0));
  ASSERT_TRUE(claim.has_value());
  EXPECT_EQ(claim->experiment.id, experiment_.id);
  EXPECT_EQ(claim->experiment.attempts, 2);
  ASSERT_OK(store_->EndAttempt(claim->attempt.id, AttemptState::kLost,
                               "agent silent again", kT0 + absl::Minutes(5)));
  ASSERT_OK_AND_ASSIGN(auto failed, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.attempts, 2);
  EXPECT_THAT(failed.state_reason, HasSubstr("agent silent again"));
  EXPECT_EQ(failed.updated_at, kT0 + absl::Minutes(5));

  ASSERT_OK_AND_ASSIGN(auto attempts, store_->ListAttempts(experiment_.id));
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].state, AttemptState::kLost);
  EXPECT_EQ(attempts[1].state, AttemptState::kLost);
  ASSERT_OK_AND_ASSIGN(
      auto none, store_->ClaimNextExperiment("agent-3", {}, "lease-3", 6, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_F(ClaimedStoreTest, EndAttemptFailedFailsExperimentWithoutRetry) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kFailed,
                               "setup exited 1", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kFailed);
  EXPECT_EQ(experiment.state_reason, "setup exited 1");
  ASSERT_OK_AND_ASSIGN(
      auto none, store_->ClaimNextExperiment("agent-2", {}, "lease-2", 1, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_F(ClaimedStoreTest, EndAttemptCancelledCancelsExperiment) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kCancelled,
                               "agent drained", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kCancelled);
  EXPECT_EQ(experiment.state_reason, "agent drained");
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kCancelled);
}

TEST_F(ClaimedStoreTest, EndAttemptOnEndedAttemptIsANoOp) {
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "done", {},
                                       kT0));
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kLost, "late reaper",
                               kT0 + absl::Hours(1)));
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kDone);
  EXPECT_EQ(attempt.reason, "");
  EXPECT_EQ(attempt.ended_at, kT0);
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(experiment.updated_at, kT0);
}

TEST_F(ClaimedStoreTest, EndAttemptRejectsRunningAndDoneAsTargetStates) {
  EXPECT_EQ(
      store_->EndAttempt(attempt_.id, AttemptState::kDone, "x", kT0).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store_->EndAttempt(attempt_.id, AttemptState::kRunning, "x", kT0).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->EndAttempt(attempt_.id + 100, AttemptState::kLost, "x", kT0)
                .code(),
            absl::StatusCode::kNotFound);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kRunning);
}

// ---- Cancellation ----

TEST_F(SqliteStoreTest, CancelQueuedExperimentMakesItUnclaimable) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("e")));
  ASSERT_OK(store->CancelExperiment(e.id, "submitted by mistake",
                                    kT0 + absl::Seconds(3)));
  ASSERT_OK_AND_ASSIGN(auto got, store->GetExperiment(e.id));
  EXPECT_EQ(got.state, ExperimentState::kCancelled);
  EXPECT_EQ(got.state_reason, "submitted by mistake");
  EXPECT_EQ(got.updated_at, kT0 + absl::Seconds(3));
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("agent", {}, "tok", 1, kT0));
  EXPECT_FALSE(claim.has_value());
}

TEST_F(ClaimedStoreTest, CancelRunningExperimentCancelsItsAttempt) {
  ASSERT_OK(store_->CancelExperiment(experiment_.id, "operator",
                                     kT0 + absl::Seconds(9)));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kCancelled);
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kCancelled);
  EXPECT_EQ(attempt.reason, "operator");
  EXPECT_EQ(attempt.ended_at, kT0 + absl::Seconds(9));
  // The agent's late results and completion are refused.
  EXPECT_EQ(store_->RecordStepResult(MakeStep(attempt_.id, 0), "lease-1")
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "", {}, kT0)
          .code(),
      absl::StatusCode::kFailedPrecondition);
}

TEST_F(ClaimedStoreTest,
       CancelEndedExperimentIsFailedPreconditionAndUnknownIsNotFound) {
  ASSERT_OK(store_->CompleteExperiment(attempt_.id, "lease-1", "{}", "done", {},
                                       kT0));
  auto ended = store_->CancelExperiment(experiment_.id, "too late", kT0);
  EXPECT_EQ(ended.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ended.message(), HasSubstr(std::to_string(experiment_.id)));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kDone);
  EXPECT_EQ(store_->CancelExperiment(experiment_.id + 100, "x", kT0).code(),
            absl::StatusCode::kNotFound);
}

// ---- Agents ----

AgentRecord MakeAgent(const std::string& id) {
  AgentRecord a;
  a.id = id;
  a.hostname = id + ".lab";
  a.labels = {{"gpu", "h100"}};
  a.facts_json = R"({"cores": 64})";
  a.state = AgentState::kIdle;
  a.last_seen = kT0;
  return a;
}

TEST_F(SqliteStoreTest, UpsertAgentInsertsThenUpdatesButKeepsCordoned) {
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

TEST_F(SqliteStoreTest, SetAgentStateRecordsLastSeenExceptWhenMarkedOffline) {
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

TEST_F(SqliteStoreTest, AgentOperationsOnUnknownAgentAreNotFound) {
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

TEST_F(SqliteStoreTest, ListAgentsIsSortedById) {
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

std::vector<std::string> HostileStrings() {
  std::vector<std::string> out = {
      "it's",
      "\"double\" and 'single' quotes",
      "'; DROP TABLE experiments; --",
      "x'); DELETE FROM attempts WHERE ('1'='1",
      "-- comment\n/* block */ ; ;",
      "%_ LIKE wildcards \\ backslash \\' escaped",
      "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
      "\xf0\x9f\x9a\x80",
      "tabs\tnewlines\r\ncontrol\x01\x1f",
      "{\"json\": [1, \"two\"]}",
      " leading and trailing spaces ",
      std::string(10 * 1024, '\''),
  };
  // A deterministic 10 KB mix of all of the above kinds of character.
  const std::vector<std::string> pieces = {"'",
                                           "\"",
                                           ";",
                                           "--",
                                           "/*",
                                           "*/",
                                           "\\",
                                           "%",
                                           "_",
                                           "\n",
                                           "\t",
                                           "\x01",
                                           " ",
                                           "DROP TABLE x;",
                                           "\xc3\xa9",
                                           "\xe6\x97\xa5",
                                           "\xf0\x9f\x9a\x80",
                                           "a",
                                           "Z",
                                           "0",
                                           "?",
                                           ":name",
                                           "$1",
                                           "@p"};
  std::mt19937 rng(20240601);
  std::string mix;
  while (mix.size() < 10 * 1024) mix += pieces[rng() % pieces.size()];
  out.push_back(mix);
  return out;
}

TEST_F(SqliteStoreTest, HostileStringsRoundTripUnchangedThroughEveryTextField) {
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
                         store->ClaimNextExperiment(h, labels, h, i, kT0));
    ASSERT_TRUE(claim.has_value());
    ASSERT_EQ(claim->experiment.id, created.id);
    const int64_t attempt_id = claim->attempt.id;
    ASSERT_OK(store->SetAttemptEnvironment(attempt_id, h));

    StepResultRecord step = MakeStep(attempt_id, 0);
    step.kind = step.variant = step.input = step.output_digest =
        step.metrics_json = step.error = h;
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
  ASSERT_OK_AND_ASSIGN(
      auto claim, store->ClaimNextExperiment("agent", {}, "end-tok", 1, kT0));
  ASSERT_TRUE(claim.has_value());
  ASSERT_OK(store->EndAttempt(claim->attempt.id, AttemptState::kFailed,
                              hostile[2], kT0));
  ASSERT_OK_AND_ASSIGN(auto ended, store->GetAttempt(claim->attempt.id));
  EXPECT_EQ(ended.reason, hostile[2]);
  ASSERT_OK_AND_ASSIGN(auto failed, store->GetExperiment(e.id));
  EXPECT_EQ(failed.state_reason, hostile[2]);
}

TEST_F(SqliteStoreTest, SeedsRoundTripAcrossTheWholeUint64Range) {
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
                                   seeds[i], kT0));
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

// ---- Files, reopening and migrations ----

TEST_F(SqliteStoreTest, ReopenAfterCloseKeepsAllData) {
  int64_t attempt_id = 0;
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->CreateExperiment(MakeExperiment("one", "c")).status());
    ASSERT_OK(store->CreateExperiment(MakeExperiment("two", "c")).status());
    ASSERT_OK_AND_ASSIGN(auto claim,
                         store->ClaimNextExperiment("a1", {}, "tok", 3, kT0));
    ASSERT_TRUE(claim.has_value());
    attempt_id = claim->attempt.id;
    ASSERT_OK(store->RecordStepResult(MakeStep(attempt_id, 0), "tok").status());
    ASSERT_OK(store->UpsertAgent(MakeAgent("a1")));
    ASSERT_OK(store->SetAgentCordoned("a1", true));
  }
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto experiments, store->ListExperiments(0));
  ASSERT_EQ(experiments.size(), 2u);
  EXPECT_EQ(experiments[1].name, "one");
  EXPECT_EQ(experiments[1].state, ExperimentState::kRunning);
  ASSERT_OK_AND_ASSIGN(auto running, store->ListRunningAttempts());
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].id, attempt_id);
  EXPECT_EQ(running[0].lease_token, "tok");
  ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(attempt_id));
  ASSERT_EQ(steps.size(), 1u);
  ExpectStepEq(steps[0], MakeStep(attempt_id, 0));
  ASSERT_OK_AND_ASSIGN(auto agent, store->GetAgent("a1"));
  EXPECT_TRUE(agent.cordoned);
  // Numbering continues where it left off.
  ASSERT_OK_AND_ASSIGN(auto third,
                       store->CreateExperiment(MakeExperiment("three", "c")));
  EXPECT_EQ(third.number, 3);
  EXPECT_GT(third.id, experiments[0].id);
}

TEST_F(SqliteStoreTest, OpenCreatesMissingDirectoriesAndUsesWalMode) {
  const std::string path = (dir_ / "a" / "b" / "store.db").string();
  auto store = OpenAt(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(fs::exists(path));
  RawDb raw(path);
  const auto mode = raw.Query("PRAGMA journal_mode");
  ASSERT_EQ(mode.size(), 1u);
  EXPECT_EQ(mode[0][0], "wal");
}

TEST_F(SqliteStoreTest, OpenNamesThePathWhenItsDirectoryCannotBeCreated) {
  const fs::path file = dir_ / "plain-file";
  std::ofstream(file) << "not a directory";
  const std::string path = (file / "sub" / "store.db").string();
  auto store = OpenAt(path);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(path));
  EXPECT_THAT(store.status().message(), HasSubstr("cannot create directory"));
}

TEST_F(SqliteStoreTest, OpenRefusesAFileThatIsNotADatabase) {
  std::ofstream(DbPath()) << std::string(4096, 'x');
  auto store = OpenAt(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss)
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr(DbPath()));
}

TEST_F(SqliteStoreTest, OpenRejectsAnEmptyPath) {
  auto store = OpenAt("");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, MigrationsAreAppliedOnceAndNotReappliedOnReopen) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
    EXPECT_EQ(version, LatestSchemaVersion());
  }
  const auto before = RawDb(DbPath()).Query(
      "SELECT version, applied_at FROM schema_migrations ORDER BY version");
  ASSERT_EQ(before.size(), static_cast<size_t>(LatestSchemaVersion()));
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(before[i][0], std::to_string(i + 1));
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(int version, store->SchemaVersion());
    EXPECT_EQ(version, LatestSchemaVersion());
  }
  const auto after = RawDb(DbPath()).Query(
      "SELECT version, applied_at FROM schema_migrations ORDER BY version");
  EXPECT_EQ(after, before);
}

TEST_F(SqliteStoreTest, OpenRefusesADatabaseFromANewerBuild) {
  { ASSERT_NE(OpenOrDie(), nullptr); }
  const int future = LatestSchemaVersion() + 1;
  RawDb(DbPath()).Exec(
      "INSERT INTO schema_migrations (version, applied_at) VALUES (" +
      std::to_string(future) + ", 0)");
  auto store = OpenAt(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr(DbPath()));
  EXPECT_THAT(store.status().message(),
              HasSubstr("version " + std::to_string(future)));
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
}

TEST(MigrationsTest, VersionsAreContiguousAndIdsRenderPerDialect) {
  const auto migrations = AllMigrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(migrations[i].statements.empty());
  }
  EXPECT_EQ(LatestSchemaVersion(), static_cast<int>(migrations.size()));
  std::string sqlite_sql, pg_sql;
  for (const std::string& s :
       MigrationStatements(migrations[0], SqlDialect::kSqlite))
    sqlite_sql += s;
  for (const std::string& s :
       MigrationStatements(migrations[0], SqlDialect::kPostgres))
    pg_sql += s;
  EXPECT_THAT(sqlite_sql, HasSubstr("id INTEGER PRIMARY KEY"));
  EXPECT_THAT(
      pg_sql,
      HasSubstr("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"));
  EXPECT_THAT(sqlite_sql, ::testing::Not(HasSubstr("{{")));
  EXPECT_THAT(pg_sql, ::testing::Not(HasSubstr("{{")));
}

// ---- OpenStore ----

TEST_F(SqliteStoreTest, OpenStoreOpensSqliteUrls) {
  auto memory = OpenStore("sqlite::memory:");
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_OK_AND_ASSIGN(auto e,
                       (*memory)->CreateExperiment(MakeExperiment("m")));
  EXPECT_EQ(e.number, 1);

  const std::string path = (dir_ / "url" / "store.db").string();
  ASSERT_EQ(path.front(), '/');
  auto file = OpenStore("sqlite://" + path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(fs::exists(path));
}

TEST(OpenStoreTest, PostgresUrlIsUnimplementedWithoutEchoingThePassword) {
  auto store = OpenStore("postgresql://bench:s3cret@db.lab:5432/benchfleet");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(store.status().message(),
              HasSubstr("PostgreSQL store is not built yet"));
  EXPECT_THAT(store.status().message(), ::testing::Not(HasSubstr("s3cret")));
}

TEST(OpenStoreTest, UnsupportedOrEmptyUrlsAreInvalidArgumentNamingTheUrl) {
  auto mysql = OpenStore("mysql://db.lab/bench");
  EXPECT_EQ(mysql.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mysql.status().message(), HasSubstr("mysql://db.lab/bench"));
  EXPECT_EQ(OpenStore("sqlite://").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenStore("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace benchfleet
