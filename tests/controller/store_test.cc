// The store conformance suite: every behaviour of the Store contract (store.h),
// run against SqliteStore and against PgStore on a throwaway PostgreSQL
// cluster (tests/testing/pg_cluster.h), as the value-parameterized StoreTest
// and ClaimedStoreTest (instances .../Sqlite and .../Postgres). Besides the
// contract it checks what DESIGN.md §6-7 asks of a store: concurrent claims
// from two controllers, idempotent step results, stale leases, migrations
// from every earlier schema version, hostile text, sample batches and
// retention. SqliteStoreTest and PgStoreTest hold what only makes sense for
// one backend (files and WAL; reconnecting across a server restart, the
// Grafana role and views, passwords). Databases live in per-test temporary
// directories or per-test PostgreSQL databases.
#include "controller/store/store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/migrations.h"
#include "controller/store/pg_store.h"
#include "controller/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/testing/pg_cluster.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::benchfleet::testing::PgCluster;
using ::benchfleet::testing::PgClusterOptions;
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
  r.host_json =
      R"({"samples":4,"max_cpu_temp_c":71.5,"min_freq_mhz":2400.0,)"
      R"("mean_cpu_util":0.25,"throttle_delta":2,"max_competing_cpu":0.5})";
  r.host_flags = {"throttled", "contended"};
  r.gate_wait_ns = 1'500'000'000 + step_seq;
  return r;
}

// MakeStep as a store reads back a row written before migration 7 (or by a
// store opened at an older schema): no host summary, flags or gate wait.
StepResultRecord MakeOldStep(int64_t attempt_id, int64_t step_seq) {
  StepResultRecord r = MakeStep(attempt_id, step_seq);
  r.host_json = "{}";
  r.host_flags.clear();
  r.gate_wait_ns = 0;
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
  EXPECT_EQ(a.host_json, b.host_json);
  EXPECT_EQ(a.host_flags, b.host_flags);
  EXPECT_EQ(a.gate_wait_ns, b.gate_wait_ns);
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

// ---- The throwaway PostgreSQL server ----

// One cluster for the whole test program: started at its first use, stopped
// and removed when the program exits. Each PostgreSQL test gets a database of
// its own in it. Password authentication is on for kPasswordUser only.
constexpr char kPasswordUser[] = "bf_password_user";
constexpr char kPassword[] = "pw-s3cret-'\"\\;--";

struct SharedPg {
  SharedPg() {
    PgClusterOptions options;
    options.hba_lines = {std::string("local all ") + kPasswordUser +
                         " scram-sha-256"};
    auto started = PgCluster::Start(options);
    if (started.ok()) {
      cluster = std::move(started).value();
    } else {
      status = started.status();
    }
  }
  std::unique_ptr<PgCluster> cluster;
  absl::Status status;
  int databases = 0;
};

SharedPg& Pg() {
  static SharedPg shared;
  return shared;
}

// A fresh database in the shared cluster; fails the test when the cluster
// could not start (no PostgreSQL installed is a failure, not a skip).
absl::StatusOr<std::pair<std::string, std::string>> FreshPgDatabase() {
  SharedPg& pg = Pg();
  if (!pg.cluster) {
    return absl::FailedPreconditionError(
        "the PostgreSQL half of the store suite needs a throwaway server: " +
        pg.status.ToString());
  }
  const std::string name = "t" + std::to_string(++pg.databases);
  ASSIGN_OR_RETURN(std::string url, pg.cluster->CreateDatabase(name));
  return std::make_pair(name, url);
}

// `sql` run by psql as the superuser; rows with columns split on '|'.
std::vector<std::vector<std::string>> PgQuery(const std::string& dbname,
                                              const std::string& sql) {
  auto out = Pg().cluster->Psql(dbname, sql);
  EXPECT_TRUE(out.ok()) << out.status();
  std::vector<std::vector<std::string>> rows;
  if (!out.ok()) return rows;
  std::stringstream lines(*out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> row;
    std::stringstream cells(line);
    for (std::string cell; std::getline(cells, cell, '|');) {
      row.push_back(cell);
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

// ---- The conformance fixture ----

enum class Backend { kSqlite, kPostgres };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

// Each test gets an empty database of the backend under test (a file in a
// temporary directory, or a database in the shared PostgreSQL cluster) and
// opens as many stores over it as it likes: each store is what one controller
// process would hold.
class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = fs::path(::testing::TempDir()) /
           ("benchfleet_store_test_" + std::to_string(getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (GetParam() == Backend::kSqlite) {
      location_ = DbPath();
    } else {
      auto db = FreshPgDatabase();
      ASSERT_TRUE(db.ok()) << db.status();
      pg_databases_.push_back(db->first);
      location_ = db->second;
    }
  }
  ~StoreTest() override {
    // Derived fixtures' stores are closed by now; drop what this test made.
    for (const std::string& name : pg_databases_) {
      if (!Pg().cluster) break;
      Pg().cluster
          ->Psql("postgres",
                 "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
          .IgnoreError();
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  bool IsPostgres() const { return GetParam() == Backend::kPostgres; }
  std::string DbPath() const { return (dir_ / "store.db").string(); }
  // The database of this test: a file path or a PostgreSQL URL.
  const std::string& location() const { return location_; }
  // PostgreSQL: the name of this test's database.
  const std::string& pg_database() const { return pg_databases_.front(); }

  // Another empty database of the same backend; returns its location.
  std::string NewLocation(const std::string& tag) {
    if (!IsPostgres()) return (dir_ / (tag + ".db")).string();
    auto db = FreshPgDatabase();
    EXPECT_TRUE(db.ok()) << db.status();
    if (!db.ok()) return "";
    pg_databases_.push_back(db->first);
    return db->second;
  }

  // A new store over `location`, migrated up to `schema_version` (0: all).
  absl::StatusOr<std::unique_ptr<Store>> OpenAt(const std::string& location,
                                                int schema_version = 0) {
    if (!IsPostgres()) {
      SqliteOptions options;
      options.path = location;
      options.busy_timeout = absl::Seconds(30);
      options.schema_version = schema_version;
      ASSIGN_OR_RETURN(auto store, SqliteStore::Open(options));
      return std::unique_ptr<Store>(std::move(store));
    }
    PgOptions options;
    options.url = location;
    options.schema_version = schema_version;
    ASSIGN_OR_RETURN(auto store, PgStore::Open(options));
    return std::unique_ptr<Store>(std::move(store));
  }

  // A new store over this test's database; fails the test (and returns
  // nullptr) when it cannot be opened.
  std::unique_ptr<Store> OpenOrDie() {
    auto store = OpenAt(location_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  static absl::StatusOr<int> SchemaVersionOf(Store& store) {
    if (auto* sqlite = dynamic_cast<SqliteStore*>(&store)) {
      return sqlite->SchemaVersion();
    }
    if (auto* pg = dynamic_cast<PgStore*>(&store)) return pg->SchemaVersion();
    return absl::InternalError("unknown store type");
  }

  // Raw SQL on the database at `location`, behind the store's back.
  std::vector<std::vector<std::string>> RawQuery(const std::string& location,
                                                 const std::string& sql) {
    if (!IsPostgres()) return RawDb(location).Query(sql);
    return PgQuery(PgDatabaseOf(location), sql);
  }
  void RawExec(const std::string& location, const std::string& sql) {
    if (!IsPostgres()) return RawDb(location).Exec(sql);
    ASSERT_TRUE(Pg().cluster->Psql(PgDatabaseOf(location), sql).ok());
  }

  fs::path dir_;

 private:
  // "postgresql:///t12?host=..." -> "t12".
  static std::string PgDatabaseOf(const std::string& url) {
    const size_t start = url.find(":///") + 4;
    return url.substr(start, url.find('?') - start);
  }

  std::string location_;
  std::vector<std::string> pg_databases_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqlite,
                                           Backend::kPostgres),
                         BackendName);

// For the tests that only make sense for SQLite (files, WAL, ...).
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

// ---- Step results ----

class ClaimedStoreTest : public StoreTest {
 protected:
  void SetUp() override {
    StoreTest::SetUp();
    if (HasFatalFailure()) return;
    store_ = OpenOrDie();
    ASSERT_NE(store_, nullptr);
    ExperimentRecord in = MakeExperiment("claimed");
    in.max_attempts = 2;
    ASSERT_OK_AND_ASSIGN(experiment_, store_->CreateExperiment(in));
    ASSERT_OK_AND_ASSIGN(
        auto claim,
        store_->ClaimNextExperiment("agent-1", {}, "lease-1", 99, {}, kT0));
    ASSERT_TRUE(claim.has_value());
    attempt_ = claim->attempt;
  }

  std::unique_ptr<Store> store_;
  ExperimentRecord experiment_;
  AttemptRecord attempt_;
};

INSTANTIATE_TEST_SUITE_P(Backends, ClaimedStoreTest,
                         ::testing::Values(Backend::kSqlite,
                                           Backend::kPostgres),
                         BackendName);

TEST_P(ClaimedStoreTest, RecordStepResultStoresEveryFieldAndListsInStepOrder) {
  StepResultRecord failing = MakeStep(attempt_.id, 2);
  failing.exit_code = 3;
  failing.term_signal = 9;
  failing.timed_out = true;
  failing.error = "killed after 30s";
  // An undisturbed run: no flags, no summary, no wait.
  failing.host_json = "{}";
  failing.host_flags.clear();
  failing.gate_wait_ns = 0;
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

TEST_P(ClaimedStoreTest,
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

TEST_P(ClaimedStoreTest,
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

TEST_P(ClaimedStoreTest,
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
                                       "agent-2", {}, "lease-2", 1, {}, kT0));
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

TEST_P(ClaimedStoreTest,
       HostFlagsThatAreNotAJsonArrayAreDataLossNamingTheStep) {
  ASSERT_OK(
      store_->RecordStepResult(MakeStep(attempt_.id, 4), "lease-1").status());
  RawExec(location(), "UPDATE step_results SET host_flags = '{\"a\": 1}'");
  auto steps = store_->ListStepResults(attempt_.id);
  EXPECT_EQ(steps.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(steps.status().message(),
              HasSubstr("host flags of step 4 of attempt " +
                        std::to_string(attempt_.id)));
}

TEST_P(ClaimedStoreTest, RecordStepResultForUnknownAttemptIsNotFound) {
  auto outcome =
      store_->RecordStepResult(MakeStep(attempt_.id + 100, 0), "lease-1");
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound);
}

TEST_P(ClaimedStoreTest,
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

TEST_P(ClaimedStoreTest, CompleteExperimentStoresReportVerdictsAndEndsBoth) {
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

TEST_P(ClaimedStoreTest,
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

TEST_P(ClaimedStoreTest, CompleteExperimentRejectsStaleTokenAndEndedAttempt) {
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

TEST_P(ClaimedStoreTest, EndAttemptLostRequeuesUntilMaxAttemptsThenFails) {
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
                                       "agent-2", {}, "lease-2", 5, {}, kT0));
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
  ASSERT_OK_AND_ASSIGN(auto none, store_->ClaimNextExperiment(
                                      "agent-3", {}, "lease-3", 6, {}, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_P(ClaimedStoreTest, EndAttemptHostNotReadyRequeuesWithoutUsingAttempts) {
  // max_attempts is 2 (fixture): host-not-ready, lost, host-not-ready, lost.
  const absl::Time t1 = kT0 + absl::Minutes(15);
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kHostNotReady,
                               "CPU at 81 C, at or above the 70 C gate", t1));
  ASSERT_OK_AND_ASSIGN(auto requeued, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(requeued.state, ExperimentState::kQueued);
  EXPECT_EQ(requeued.updated_at, t1);
  EXPECT_EQ(requeued.state_reason,
            "attempt " + std::to_string(attempt_.id) +
                ": host not ready on agent-1 (CPU at 81 C, at or above the 70 "
                "C gate); re-queued (1 of 20 host-not-ready attempts)");
  ASSERT_OK_AND_ASSIGN(auto not_ready, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(not_ready.state, AttemptState::kHostNotReady);
  EXPECT_EQ(not_ready.reason, "CPU at 81 C, at or above the 70 C gate");
  EXPECT_EQ(not_ready.ended_at, t1);

  // The first lost attempt is 1 of 2: re-queued, not failed.
  ASSERT_OK_AND_ASSIGN(auto second, store_->ClaimNextExperiment(
                                        "agent-2", {}, "lease-2", 2, {}, t1));
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->experiment.attempts, 2);
  ASSERT_OK(store_->EndAttempt(second->attempt.id, AttemptState::kLost,
                               "agent silent", t1));
  ASSERT_OK_AND_ASSIGN(auto after_lost, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(after_lost.state, ExperimentState::kQueued);
  EXPECT_THAT(after_lost.state_reason,
              HasSubstr("1 of 2 attempts used (not counting 1 "
                        "host-not-ready), re-queued"));

  ASSERT_OK_AND_ASSIGN(auto third, store_->ClaimNextExperiment(
                                       "agent-1", {}, "lease-3", 3, {}, t1));
  ASSERT_TRUE(third.has_value());
  ASSERT_OK(store_->EndAttempt(third->attempt.id, AttemptState::kHostNotReady,
                               "load 9.5", t1));
  ASSERT_OK_AND_ASSIGN(auto again, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(again.state, ExperimentState::kQueued);
  EXPECT_THAT(again.state_reason,
              HasSubstr("(2 of 20 host-not-ready attempts)"));

  // The second lost attempt uses up max_attempts.
  ASSERT_OK_AND_ASSIGN(auto fourth, store_->ClaimNextExperiment(
                                        "agent-2", {}, "lease-4", 4, {}, t1));
  ASSERT_TRUE(fourth.has_value());
  ASSERT_OK(store_->EndAttempt(fourth->attempt.id, AttemptState::kLost,
                               "agent silent again", t1));
  ASSERT_OK_AND_ASSIGN(auto failed, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_EQ(failed.attempts, 4);
  EXPECT_THAT(failed.state_reason,
              HasSubstr("2 of 2 attempts used (not counting 2 "
                        "host-not-ready), giving up"));

  ASSERT_OK_AND_ASSIGN(auto attempts, store_->ListAttempts(experiment_.id));
  ASSERT_EQ(attempts.size(), 4u);
  EXPECT_EQ(attempts[0].state, AttemptState::kHostNotReady);
  EXPECT_EQ(attempts[1].state, AttemptState::kLost);
  EXPECT_EQ(attempts[2].state, AttemptState::kHostNotReady);
  EXPECT_EQ(attempts[2].reason, "load 9.5");
  EXPECT_EQ(attempts[3].state, AttemptState::kLost);
  ASSERT_OK_AND_ASSIGN(auto running, store_->ListRunningAttempts());
  EXPECT_TRUE(running.empty());
}

TEST_P(StoreTest, HostNotReadyDoesNotUseUpASingleAttempt) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ExperimentRecord in = MakeExperiment("one-try");
  in.max_attempts = 1;
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(in));
  ASSERT_OK_AND_ASSIGN(auto first, store->ClaimNextExperiment(
                                       "agent-1", {}, "tok-1", 1, {}, kT0));
  ASSERT_TRUE(first.has_value());
  ASSERT_OK(store->EndAttempt(first->attempt.id, AttemptState::kHostNotReady,
                              "busy", kT0));
  ASSERT_OK_AND_ASSIGN(auto queued, store->GetExperiment(e.id));
  EXPECT_EQ(queued.state, ExperimentState::kQueued);

  ASSERT_OK_AND_ASSIGN(auto second, store->ClaimNextExperiment(
                                        "agent-2", {}, "tok-2", 2, {}, kT0));
  ASSERT_TRUE(second.has_value());
  ASSERT_OK(store->EndAttempt(second->attempt.id, AttemptState::kLost,
                              "agent silent", kT0));
  ASSERT_OK_AND_ASSIGN(auto failed, store->GetExperiment(e.id));
  EXPECT_EQ(failed.state, ExperimentState::kFailed);
  EXPECT_THAT(failed.state_reason, HasSubstr("1 of 1 attempts used"));
}

TEST_P(StoreTest, HostNotReadyFailsTheExperimentAtItsCapSayingWhatToDo) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("hot")));
  for (int i = 1; i <= kMaxHostNotReadyAttempts; ++i) {
    const std::string agent = "host-" + std::to_string(i % 3);
    ASSERT_OK_AND_ASSIGN(auto claim, store->ClaimNextExperiment(
                                         agent, {}, "tok-" + std::to_string(i),
                                         i, {}, kT0 + absl::Minutes(i)));
    ASSERT_TRUE(claim.has_value()) << "claim " << i;
    ASSERT_EQ(claim->experiment.id, e.id);
    ASSERT_OK(store->EndAttempt(claim->attempt.id, AttemptState::kHostNotReady,
                                "GPU 0 at 63 C", kT0 + absl::Minutes(i)));
    ASSERT_OK_AND_ASSIGN(auto after, store->GetExperiment(e.id));
    if (i < kMaxHostNotReadyAttempts) {
      ASSERT_EQ(after.state, ExperimentState::kQueued) << "attempt " << i;
      continue;
    }
    EXPECT_EQ(after.state, ExperimentState::kFailed);
    EXPECT_EQ(after.attempts, kMaxHostNotReadyAttempts);
    EXPECT_THAT(after.state_reason,
                HasSubstr("attempt " + std::to_string(claim->attempt.id) +
                          ": host not ready on " + agent + " (GPU 0 at 63 C)"));
    EXPECT_THAT(after.state_reason,
                HasSubstr("no host became ready after 20 host-not-ready "
                          "attempts"));
    EXPECT_THAT(after.state_reason, HasSubstr("gates.max_wait"));
  }
  ASSERT_OK_AND_ASSIGN(
      auto none, store->ClaimNextExperiment("host-0", {}, "tok-x", 0, {}, kT0));
  EXPECT_FALSE(none.has_value());
  ASSERT_OK_AND_ASSIGN(auto attempts, store->ListAttempts(e.id));
  ASSERT_EQ(attempts.size(), static_cast<size_t>(kMaxHostNotReadyAttempts));
  for (const AttemptRecord& a : attempts) {
    EXPECT_EQ(a.state, AttemptState::kHostNotReady) << "attempt " << a.id;
  }
}

TEST_P(ClaimedStoreTest, EndAttemptFailedFailsExperimentWithoutRetry) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kFailed,
                               "setup exited 1", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kFailed);
  EXPECT_EQ(experiment.state_reason, "setup exited 1");
  ASSERT_OK_AND_ASSIGN(auto none, store_->ClaimNextExperiment(
                                      "agent-2", {}, "lease-2", 1, {}, kT0));
  EXPECT_FALSE(none.has_value());
}

TEST_P(ClaimedStoreTest, EndAttemptCancelledCancelsExperiment) {
  ASSERT_OK(store_->EndAttempt(attempt_.id, AttemptState::kCancelled,
                               "agent drained", kT0));
  ASSERT_OK_AND_ASSIGN(auto experiment, store_->GetExperiment(experiment_.id));
  EXPECT_EQ(experiment.state, ExperimentState::kCancelled);
  EXPECT_EQ(experiment.state_reason, "agent drained");
  ASSERT_OK_AND_ASSIGN(auto attempt, store_->GetAttempt(attempt_.id));
  EXPECT_EQ(attempt.state, AttemptState::kCancelled);
}

TEST_P(ClaimedStoreTest, EndAttemptOnEndedAttemptIsANoOp) {
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

TEST_P(ClaimedStoreTest, EndAttemptRejectsRunningAndDoneAsTargetStates) {
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

TEST_P(StoreTest, CancelQueuedExperimentMakesItUnclaimable) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto e, store->CreateExperiment(MakeExperiment("e")));
  ASSERT_OK(store->CancelExperiment(e.id, "submitted by mistake",
                                    kT0 + absl::Seconds(3)));
  ASSERT_OK_AND_ASSIGN(auto got, store->GetExperiment(e.id));
  EXPECT_EQ(got.state, ExperimentState::kCancelled);
  EXPECT_EQ(got.state_reason, "submitted by mistake");
  EXPECT_EQ(got.updated_at, kT0 + absl::Seconds(3));
  ASSERT_OK_AND_ASSIGN(
      auto claim, store->ClaimNextExperiment("agent", {}, "tok", 1, {}, kT0));
  EXPECT_FALSE(claim.has_value());
}

TEST_P(ClaimedStoreTest, CancelRunningExperimentCancelsItsAttempt) {
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

TEST_P(ClaimedStoreTest,
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

// ---- Files, reopening and migrations ----

TEST_P(StoreTest, ReopenAfterCloseKeepsAllData) {
  int64_t attempt_id = 0;
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->CreateExperiment(MakeExperiment("one", "c")).status());
    ASSERT_OK(store->CreateExperiment(MakeExperiment("two", "c")).status());
    ASSERT_OK_AND_ASSIGN(
        auto claim, store->ClaimNextExperiment("a1", {}, "tok", 3, {}, kT0));
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

TEST_P(StoreTest, MigrationsAreAppliedOnceAndNotReappliedOnReopen) {
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(int version, SchemaVersionOf(*store));
    EXPECT_EQ(version, LatestSchemaVersion());
  }
  const std::string query =
      "SELECT version, applied_at FROM schema_migrations ORDER BY version";
  const auto before = RawQuery(location(), query);
  ASSERT_EQ(before.size(), static_cast<size_t>(LatestSchemaVersion()));
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(before[i][0], std::to_string(i + 1));
  {
    auto store = OpenOrDie();
    ASSERT_NE(store, nullptr);
    ASSERT_OK_AND_ASSIGN(int version, SchemaVersionOf(*store));
    EXPECT_EQ(version, LatestSchemaVersion());
  }
  EXPECT_EQ(RawQuery(location(), query), before);
}

TEST_P(StoreTest, OpenRefusesADatabaseFromANewerBuild) {
  { ASSERT_NE(OpenOrDie(), nullptr); }
  const int future = LatestSchemaVersion() + 1;
  RawExec(location(),
          "INSERT INTO schema_migrations (version, applied_at) VALUES (" +
              std::to_string(future) + ", 0)");
  auto store = OpenAt(location());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(),
              HasSubstr(IsPostgres() ? pg_database() : DbPath()));
  EXPECT_THAT(store.status().message(),
              HasSubstr("version " + std::to_string(future)));
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
}

// A database left at any earlier version (or empty) is brought up to date by
// Open, keeping what it holds.
TEST_P(StoreTest, OpenMigratesFromEmptyAndFromEveryEarlierVersion) {
  for (int from = 0; from < LatestSchemaVersion(); ++from) {
    SCOPED_TRACE("from schema version " + std::to_string(from));
    const std::string where = NewLocation("from" + std::to_string(from));
    ASSERT_FALSE(where.empty());
    int64_t attempt_id = 0;
    if (from > 0) {
      ASSERT_OK_AND_ASSIGN(auto old, OpenAt(where, from));
      ASSERT_OK_AND_ASSIGN(int version, SchemaVersionOf(*old));
      ASSERT_EQ(version, from);
      ASSERT_OK(old->CreateExperiment(MakeExperiment("old", "c")).status());
      ASSERT_OK_AND_ASSIGN(
          auto claim, old->ClaimNextExperiment("a", {}, "tok", 1, {}, kT0));
      ASSERT_TRUE(claim.has_value());
      attempt_id = claim->attempt.id;
      // Written by a store at the old schema: the host fields it cannot
      // store are dropped, not an error.
      ASSERT_OK(old->RecordStepResult(MakeStep(attempt_id, 0), "tok").status());
      ASSERT_OK_AND_ASSIGN(auto old_steps, old->ListStepResults(attempt_id));
      ASSERT_EQ(old_steps.size(), 1u);
      ExpectStepEq(old_steps[0], MakeOldStep(attempt_id, 0));
    }
    ASSERT_OK_AND_ASSIGN(auto store, OpenAt(where));
    ASSERT_OK_AND_ASSIGN(int version, SchemaVersionOf(*store));
    EXPECT_EQ(version, LatestSchemaVersion());
    const auto versions = RawQuery(
        where, "SELECT version FROM schema_migrations ORDER BY version");
    ASSERT_EQ(versions.size(), static_cast<size_t>(LatestSchemaVersion()));
    for (size_t i = 0; i < versions.size(); ++i) {
      EXPECT_EQ(versions[i][0], std::to_string(i + 1));
    }
    if (from > 0) {
      // The old row reads with migration 7's defaults; a new row keeps its
      // host summary, flags and gate wait.
      ASSERT_OK(
          store->RecordStepResult(MakeStep(attempt_id, 1), "tok").status());
      ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(attempt_id));
      ASSERT_EQ(steps.size(), 2u);
      ExpectStepEq(steps[0], MakeOldStep(attempt_id, 0));
      ExpectStepEq(steps[1], MakeStep(attempt_id, 1));
      ASSERT_OK_AND_ASSIGN(auto next,
                           store->CreateExperiment(MakeExperiment("new", "c")));
      EXPECT_EQ(next.number, 2);
    }
    // What the later migrations added works: experiments from before
    // migration 6 read with no idea, new ones keep theirs, history answers.
    if (from > 0) {
      ASSERT_OK_AND_ASSIGN(auto old_experiment, store->GetExperiment(1));
      EXPECT_EQ(old_experiment.name, "old");
      EXPECT_EQ(old_experiment.idea, "");
      EXPECT_EQ(old_experiment.origin, "");
      EXPECT_EQ(old_experiment.discarded_before, "");
    }
    {
      ExperimentRecord with_idea = MakeExperiment("idea", "c");
      with_idea.idea = "an-idea";
      ASSERT_OK_AND_ASSIGN(auto created, store->CreateExperiment(with_idea));
      EXPECT_EQ(created.idea, "an-idea");
      HistoryQuery q;
      q.idea = "an-idea";
      ASSERT_OK_AND_ASSIGN(auto history, store->ListHistory(q));
      EXPECT_TRUE(history.empty());  // queued, not completed
    }
    SampleRecord sample;
    sample.attempt_id = attempt_id;
    sample.taken_at = kT0;
    ASSERT_OK(store->RecordSamples({sample}));
    ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(attempt_id));
    EXPECT_EQ(samples.size(), 1u);
    if (IsPostgres()) {
      const auto runs = RawQuery(
          where,
          "SELECT step_seq, host_flags, gate_wait_s, host_json FROM v_runs "
          "ORDER BY step_seq");
      if (from > 0) {
        ASSERT_EQ(runs.size(), 2u);
        EXPECT_EQ(runs[0], (std::vector<std::string>{"0", "", "0", "{}"}));
        EXPECT_EQ(runs[1], (std::vector<std::string>{
                               "1", "throttled,contended", "1.500000001",
                               MakeStep(attempt_id, 1).host_json}));
      } else {
        EXPECT_TRUE(runs.empty());
      }
    }
  }
}

// Two controllers starting at once over an empty database: one migrates, the
// other waits and finds the schema current.
TEST_P(StoreTest, StoresOpeningAnEmptyDatabaseAtOnceApplyEachMigrationOnce) {
  const std::string where = NewLocation("race");
  ASSERT_FALSE(where.empty());
  std::vector<std::thread> openers;
  std::vector<absl::Status> results(4);
  std::atomic<bool> go{false};
  for (size_t i = 0; i < results.size(); ++i) {
    openers.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      results[i] = OpenAt(where).status();
    });
  }
  go.store(true);
  for (auto& t : openers) t.join();
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  const auto versions =
      RawQuery(where, "SELECT version FROM schema_migrations ORDER BY version");
  ASSERT_EQ(versions.size(), static_cast<size_t>(LatestSchemaVersion()));
  for (size_t i = 0; i < versions.size(); ++i) {
    EXPECT_EQ(versions[i][0], std::to_string(i + 1));
  }
}

// ---- Samples ----

SampleRecord MakeSample(int64_t attempt_id, int i) {
  SampleRecord s;
  s.attempt_id = attempt_id;
  s.step_seq = i / 10;
  s.agent_id = "agent-" + std::to_string(attempt_id);
  s.taken_at = kT0 + absl::Milliseconds(100) * i + absl::Microseconds(i % 7);
  s.cpu_util = (i % 101) / 100.0;
  s.load1 = 1.0 / 3 + i;
  s.mem_available_bytes = 64.0 * (int64_t{1} << 30) - i;
  s.min_freq_mhz = i % 3 == 0 ? 0 : 800.5 + i;
  s.max_cpu_temp_c = 41.125 + (i % 20) * 0.1;
  s.max_gpu_temp_c = i % 2 == 0 ? 0 : 1e-300 * i;
  s.gpu_util = i % 5 == 0 ? 1 : 0.1;
  s.throttle_events = (int64_t{1} << 40) + i;
  s.competing_cpu = -0.0 + 1e-9 * i;
  s.detail_json = R"({"cores":[)" + std::to_string(i) + R"(,2.5],"gpu":"\t'"})";
  return s;
}

void ExpectSampleEq(const SampleRecord& a, const SampleRecord& b) {
  EXPECT_EQ(a.attempt_id, b.attempt_id);
  EXPECT_EQ(a.step_seq, b.step_seq);
  EXPECT_EQ(a.agent_id, b.agent_id);
  EXPECT_EQ(a.taken_at, b.taken_at);
  // Doubles must come back bit for bit, not merely close.
  EXPECT_EQ(a.cpu_util, b.cpu_util);
  EXPECT_EQ(a.load1, b.load1);
  EXPECT_EQ(a.mem_available_bytes, b.mem_available_bytes);
  EXPECT_EQ(a.min_freq_mhz, b.min_freq_mhz);
  EXPECT_EQ(a.max_cpu_temp_c, b.max_cpu_temp_c);
  EXPECT_EQ(a.max_gpu_temp_c, b.max_gpu_temp_c);
  EXPECT_EQ(a.gpu_util, b.gpu_util);
  EXPECT_EQ(a.throttle_events, b.throttle_events);
  EXPECT_EQ(a.competing_cpu, b.competing_cpu);
  EXPECT_EQ(a.detail_json, b.detail_json);
}

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

TEST(MigrationsTest, VersionsAreContiguousAndIdsRenderPerDialect) {
  const auto migrations = AllMigrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(
        MigrationStatements(migrations[i], SqlDialect::kPostgres).empty());
  }
  EXPECT_EQ(LatestSchemaVersion(), static_cast<int>(migrations.size()));
  std::string sqlite_sql, pg_sql;
  for (const Migration& m : migrations) {
    for (const std::string& s : MigrationStatements(m, SqlDialect::kSqlite))
      sqlite_sql += s;
    for (const std::string& s : MigrationStatements(m, SqlDialect::kPostgres))
      pg_sql += s;
  }
  EXPECT_THAT(sqlite_sql, HasSubstr("id INTEGER PRIMARY KEY"));
  EXPECT_THAT(
      pg_sql,
      HasSubstr("id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"));
  EXPECT_THAT(sqlite_sql, ::testing::Not(HasSubstr("{{")));
  EXPECT_THAT(pg_sql, ::testing::Not(HasSubstr("{{")));
  // The Grafana role and views are PostgreSQL's only.
  EXPECT_THAT(pg_sql, HasSubstr("CREATE VIEW v_runs"));
  EXPECT_THAT(pg_sql, HasSubstr("benchfleet_grafana"));
  EXPECT_THAT(sqlite_sql, ::testing::Not(HasSubstr("VIEW")));
  EXPECT_THAT(sqlite_sql, ::testing::Not(HasSubstr("ROLE")));
  EXPECT_THAT(pg_sql, HasSubstr("USING brin (taken_at)"));
  EXPECT_THAT(sqlite_sql, HasSubstr("ON samples (taken_at)"));
  // History indexes: plain on SQLite, over a hash of the text on PostgreSQL.
  EXPECT_THAT(sqlite_sql, HasSubstr("ON experiments (idea, created_at, id)"));
  EXPECT_THAT(pg_sql, HasSubstr("(hashtextextended(idea, 0), created_at, id)"));
  EXPECT_THAT(sqlite_sql, ::testing::Not(HasSubstr("hashtextextended")));
  // Migration 7: host columns on both, v_runs re-created on PostgreSQL only.
  for (const std::string* sql : {&sqlite_sql, &pg_sql}) {
    EXPECT_THAT(*sql, HasSubstr("ADD COLUMN host_json TEXT NOT NULL DEFAULT"));
    EXPECT_THAT(*sql, HasSubstr("ADD COLUMN host_flags TEXT NOT NULL"));
    EXPECT_THAT(*sql, HasSubstr("ADD COLUMN gate_wait_ns BIGINT NOT NULL"));
  }
  EXPECT_THAT(pg_sql, HasSubstr("CREATE OR REPLACE VIEW v_runs"));
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
  EXPECT_NE(dynamic_cast<SqliteStore*>(file->get()), nullptr);
  EXPECT_TRUE(fs::exists(path));
}

TEST(OpenStoreTest, UnsupportedOrEmptyUrlsAreInvalidArgumentNamingTheUrl) {
  auto mysql = OpenStore("mysql://db.lab/bench");
  EXPECT_EQ(mysql.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mysql.status().message(), HasSubstr("mysql://db.lab/bench"));
  auto secret = OpenStore("mysql://bench:s3cret@db.lab/bench");
  EXPECT_THAT(secret.status().message(), ::testing::Not(HasSubstr("s3cret")));
  EXPECT_EQ(OpenStore("sqlite://").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenStore("").status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- PostgreSQL only ----

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = FreshPgDatabase();
    ASSERT_TRUE(db.ok()) << db.status();
    cluster_ = Pg().cluster.get();
    dbname_ = db->first;
    url_ = db->second;
  }
  void TearDown() override {
    if (cluster_ != nullptr) {
      cluster_
          ->Psql("postgres",
                 "DROP DATABASE IF EXISTS " + dbname_ + " WITH (FORCE)")
          .IgnoreError();
    }
    std::error_code ec;
    fs::remove_all(temp_dir_, ec);
  }

  std::unique_ptr<PgStore> OpenOrDie(const std::string& url) {
    PgOptions options;
    options.url = url;
    auto store = PgStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Makes the password user (once per cluster) and a database it owns;
  // returns the database's URL for that user, without a password.
  std::string PasswordUserDatabase() {
    static bool created = false;
    if (!created) {
      std::string quoted;
      for (char c : std::string(kPassword)) {
        quoted += c;
        if (c == '\'') quoted += '\'';
      }
      EXPECT_TRUE(cluster_
                      ->Psql("postgres", std::string("CREATE ROLE ") +
                                             kPasswordUser +
                                             " LOGIN PASSWORD '" + quoted + "'")
                      .ok());
      created = true;
    }
    EXPECT_TRUE(cluster_
                    ->Psql("postgres", "ALTER DATABASE " + dbname_ +
                                           " OWNER TO " + kPasswordUser)
                    .ok());
    return cluster_->UrlFor(dbname_, kPasswordUser);
  }

  std::string WriteTempFile(const std::string& name, const std::string& text) {
    if (temp_dir_.empty()) {
      temp_dir_ = fs::path(::testing::TempDir()) /
                  ("benchfleet_pg_store_test_" + std::to_string(getpid()));
      fs::create_directories(temp_dir_);
    }
    const std::string path = (temp_dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  PgCluster* cluster_ = nullptr;
  std::string dbname_;
  std::string url_;
  fs::path temp_dir_;
};

TEST_F(PgStoreTest, OpenStoreOpensPostgresqlAndPostgresUrlsAsPgStore) {
  ASSERT_OK_AND_ASSIGN(auto store, OpenStore(url_));
  EXPECT_NE(dynamic_cast<PgStore*>(store.get()), nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
  ASSERT_EQ(url_.rfind("postgresql://", 0), 0u);
  ASSERT_OK_AND_ASSIGN(auto short_scheme,
                       OpenStore("postgres://" + url_.substr(13)));
  ASSERT_OK_AND_ASSIGN(auto all, short_scheme->ListExperiments(0));
  EXPECT_EQ(all.size(), 1u);
}

TEST_F(PgStoreTest,
       PasswordFromFileOrEnvironmentAuthenticatesAndIsNeverEchoed) {
  const std::string url = PasswordUserDatabase();
  const std::string file =
      WriteTempFile("password", std::string(kPassword) + "\n");
  {
    PgOptions options;
    options.url = url;
    options.password_file = file;
    ASSERT_OK_AND_ASSIGN(auto store, PgStore::Open(options));
    ASSERT_OK(store->CreateExperiment(MakeExperiment("by-file")).status());
  }
  {  // The same through OpenStore's password_file URL parameter.
    ASSERT_OK_AND_ASSIGN(auto store, OpenStore(url + "&password_file=" + file));
    ASSERT_OK_AND_ASSIGN(auto all, store->ListExperiments(0));
    EXPECT_EQ(all.size(), 1u);
  }
  {  // PGPASSWORD, which libpq reads itself.
    setenv("PGPASSWORD", kPassword, 1);
    auto store = OpenStore(url);
    unsetenv("PGPASSWORD");
    ASSERT_TRUE(store.ok()) << store.status();
  }
  // A wrong password fails at once (no reconnect loop) and is not echoed.
  const std::string wrong = "WRONG-pw-4711";
  const std::string wrong_file = WriteTempFile("wrong", wrong);
  PgOptions options;
  options.url = url;
  options.password_file = wrong_file;
  const absl::Time start = absl::Now();
  auto refused = PgStore::Open(options);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied)
      << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr(dbname_));
  EXPECT_THAT(refused.status().message(), HasSubstr("password"));
  EXPECT_THAT(refused.status().message(), ::testing::Not(HasSubstr(wrong)));
  // Nor when it is in the URL.
  const std::string in_url = "postgresql://" + std::string(kPasswordUser) +
                             ":" + wrong + "@" + url.substr(13);
  auto refused_url = OpenStore(in_url.substr(0, in_url.find("&user=")));
  ASSERT_FALSE(refused_url.ok());
  EXPECT_THAT(refused_url.status().message(), ::testing::Not(HasSubstr(wrong)));
  // And a missing password file names the file.
  options.password_file = WriteTempFile("unused", "") + ".missing";
  auto missing = PgStore::Open(options);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr(".missing"));
}

TEST_F(PgStoreTest, UnreachableServerIsUnavailableAfterTheReconnectBudget) {
  PgOptions options;
  options.url =
      "postgresql://bench:topsecret@/benchfleet?host=/nonexistent-bf-socket";
  options.reconnect_timeout = absl::Seconds(1);
  const absl::Time start = absl::Now();
  auto store = PgStore::Open(options);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable)
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("/nonexistent-bf-socket"));
  EXPECT_THAT(store.status().message(), HasSubstr("running and reachable"));
  EXPECT_THAT(store.status().message(), ::testing::Not(HasSubstr("topsecret")));
  EXPECT_GE(took, absl::Milliseconds(500));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(PgStoreTest, MalformedUrlIsInvalidArgumentWithoutThePassword) {
  PgOptions options;
  options.url = "postgresql://bench:topsecret@/benchfleet?no_such_option=1";
  auto store = PgStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), ::testing::Not(HasSubstr("topsecret")));
  options.url = "";
  EXPECT_EQ(PgStore::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PgStoreTest, TextWithANulCharacterIsInvalidArgumentAndNothingIsStored) {
  auto store = OpenOrDie(url_);
  ASSERT_NE(store, nullptr);
  auto created =
      store->CreateExperiment(MakeExperiment(std::string("nul\0name", 8)));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("NUL"));
  SampleRecord sample = MakeSample(1, 0);
  sample.detail_json = std::string("{\0}", 3);
  EXPECT_EQ(store->RecordSamples({MakeSample(1, 1), sample}).code(),
            absl::StatusCode::kInvalidArgument);
  // In a host flag too (JSON would carry it as \u0000, which v_runs cannot
  // turn back into text).
  StepResultRecord step = MakeStep(1, 0);
  step.host_flags = {"throttled", std::string("con\0tended", 10)};
  auto recorded = store->RecordStepResult(step, "tok");
  EXPECT_EQ(recorded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(recorded.status().message(), HasSubstr("NUL"));
  ASSERT_OK_AND_ASSIGN(auto experiments, store->ListExperiments(0));
  EXPECT_TRUE(experiments.empty());
  ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(1));
  EXPECT_TRUE(samples.empty());
}

// While another controller holds an experiment's row lock (mid-claim), a
// claim takes the next experiment instead of waiting for it.
TEST_F(PgStoreTest, ClaimSkipsAnExperimentAnotherControllerHasLocked) {
  auto store = OpenOrDie(url_);
  ASSERT_NE(store, nullptr);
  ASSERT_OK_AND_ASSIGN(auto first,
                       store->CreateExperiment(MakeExperiment("first")));
  ASSERT_OK_AND_ASSIGN(auto second,
                       store->CreateExperiment(MakeExperiment("second")));
  std::thread holder([&] {
    auto held = cluster_->Psql(dbname_,
                               "BEGIN; SELECT id FROM experiments WHERE id = " +
                                   std::to_string(first.id) +
                                   " FOR UPDATE; SELECT pg_sleep(4); COMMIT;");
    EXPECT_TRUE(held.ok()) << held.status();
  });
  // Wait (with a deadline) until the holder sleeps with the lock taken.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool holding = false;
  while (!holding && absl::Now() < deadline) {
    const auto rows = PgQuery(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
        "'%pg_sleep(4)%' AND state = 'active' AND pid <> pg_backend_pid()");
    holding = !rows.empty() && rows[0][0] == "1";
    if (!holding) absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Time start = absl::Now();
  auto claim = store->ClaimNextExperiment("a", {}, "tok-1", 1, {}, kT0);
  const absl::Duration took = absl::Now() - start;
  holder.join();
  ASSERT_TRUE(holding);
  ASSERT_TRUE(claim.ok()) << claim.status();
  // Waiting for the lock would have taken the rest of the holder's 4 s and
  // then claimed `first`.
  EXPECT_LT(took, absl::Seconds(3));
  ASSERT_TRUE(claim->has_value());
  EXPECT_EQ((*claim)->experiment.id, second.id);
  ASSERT_OK_AND_ASSIGN(
      auto later, store->ClaimNextExperiment("a", {}, "tok-2", 2, {}, kT0));
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->experiment.id, first.id);
}

// The server restarts (crash-style) between two calls: the next call
// reconnects and succeeds, and everything acknowledged before is there.
TEST_F(PgStoreTest, SurvivesAnImmediateRestartBetweenTwoCalls) {
  auto store = OpenOrDie(url_);
  auto other = OpenOrDie(url_);  // a second controller, idle across the restart
  ASSERT_NE(store, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("a", {}, "tok", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  const int64_t attempt = claim->attempt.id;
  for (int seq = 0; seq < 5; ++seq) {
    ASSERT_OK(store->RecordStepResult(MakeStep(attempt, seq), "tok").status());
  }
  ASSERT_OK(store->RecordSamples({MakeSample(attempt, 0)}));
  ASSERT_OK_AND_ASSIGN(auto before, other->ListStepResults(attempt));
  ASSERT_EQ(before.size(), 5u);

  ASSERT_OK(cluster_->Restart(/*immediate=*/true));

  ASSERT_OK_AND_ASSIGN(RecordOutcome fresh,
                       store->RecordStepResult(MakeStep(attempt, 5), "tok"));
  EXPECT_EQ(fresh, RecordOutcome::kInserted);
  ASSERT_OK_AND_ASSIGN(RecordOutcome resent,
                       other->RecordStepResult(MakeStep(attempt, 2), "tok"));
  EXPECT_EQ(resent, RecordOutcome::kDuplicate);
  ASSERT_OK(other->RecordSamples({MakeSample(attempt, 1)}));
  ASSERT_OK(store->CompleteExperiment(attempt, "tok", "{}", "done", {}, kT0));
  ASSERT_OK_AND_ASSIGN(auto steps, other->ListStepResults(attempt));
  ASSERT_EQ(steps.size(), 6u);
  for (int seq = 0; seq < 6; ++seq)
    ExpectStepEq(steps[seq], MakeStep(attempt, seq));
  ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(attempt));
  EXPECT_EQ(samples.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto done, other->GetExperiment(claim->experiment.id));
  EXPECT_EQ(done.state, ExperimentState::kDone);
}

// Writers keep going while the server restarts under them: every call
// eventually succeeds, and the store holds exactly what was acknowledged —
// each step once, each sample batch once.
TEST_F(PgStoreTest, WritersLoseNothingAcknowledgedAcrossAnImmediateRestart) {
  auto store = OpenOrDie(url_);
  ASSERT_NE(store, nullptr);
  constexpr int kWriters = 3;
  std::vector<int64_t> attempts;
  for (int w = 0; w < kWriters; ++w) {
    ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
    const std::string token = "tok-" + std::to_string(w);
    ASSERT_OK_AND_ASSIGN(
        auto claim, store->ClaimNextExperiment("a", {}, token, w, {}, kT0));
    ASSERT_TRUE(claim.has_value());
    attempts.push_back(claim->attempt.id);
  }
  std::vector<std::atomic<int>> acked(kWriters + 1);  // last: sample batches
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int seq = 0; !stop.load(); ++seq) {
        auto outcome = store->RecordStepResult(MakeStep(attempts[w], seq),
                                               "tok-" + std::to_string(w));
        if (!outcome.ok()) {
          ADD_FAILURE() << outcome.status();
          return;
        }
        EXPECT_EQ(*outcome, RecordOutcome::kInserted);
        acked[w].store(seq + 1);
      }
    });
  }
  writers.emplace_back([&] {
    for (int batch = 0; !stop.load(); ++batch) {
      std::vector<SampleRecord> samples;
      for (int i = 0; i < 100; ++i)
        samples.push_back(MakeSample(0, batch * 100 + i));
      const absl::Status status = store->RecordSamples(samples);
      if (!status.ok()) {
        ADD_FAILURE() << status;
        return;
      }
      acked[kWriters].store(batch + 1);
    }
  });
  // Waits (with a deadline) until every writer has `n` more acknowledgements.
  auto wait_for_progress = [&](int n) {
    std::vector<int> target;
    for (auto& a : acked) target.push_back(a.load() + n);
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (size_t i = 0; i < acked.size(); ++i) {
      while (acked[i].load() < target[i] && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      EXPECT_GE(acked[i].load(), target[i]) << "writer " << i;
    }
  };
  wait_for_progress(20);
  const absl::Status restarted = cluster_->Restart(/*immediate=*/true);
  if (restarted.ok()) wait_for_progress(20);
  stop.store(true);
  for (auto& t : writers) t.join();
  ASSERT_OK(restarted);

  for (int w = 0; w < kWriters; ++w) {
    ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(attempts[w]));
    ASSERT_EQ(steps.size(), static_cast<size_t>(acked[w].load()))
        << "writer " << w;
    for (size_t seq = 0; seq < steps.size(); ++seq) {
      EXPECT_EQ(steps[seq].step_seq, static_cast<int64_t>(seq));
    }
  }
  ASSERT_OK_AND_ASSIGN(auto samples, store->ListSamples(0));
  EXPECT_EQ(samples.size(), static_cast<size_t>(acked[kWriters].load()) * 100);
}

// Waits (with a deadline) until one backend of `cluster` is in `wait_event`;
// returns its pid, or 0.
std::string WaitForBackendIn(PgCluster& cluster,
                             const std::string& wait_event) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    auto pid = cluster.Psql(
        "postgres", "SELECT pid FROM pg_stat_activity WHERE wait_event = '" +
                        wait_event + "' AND state = 'active'");
    if (pid.ok() && !pid->empty()) return pid->substr(0, pid->find('\n'));
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

// The connection breaks during COMMIT, and the transaction did not commit
// (its deferred trigger was still running): the store finds out from the
// server and runs the transaction again, so the result is stored once.
TEST_F(PgStoreTest, InDoubtCommitThatAbortedIsRunAgain) {
  auto store = OpenOrDie(url_);
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("a", {}, "tok", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  // Every step result now makes COMMIT wait a second.
  ASSERT_OK(cluster_
                ->Psql(dbname_,
                       "CREATE FUNCTION slow_commit() RETURNS trigger "
                       "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); "
                       "RETURN NULL; END $$; "
                       "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON "
                       "step_results DEFERRABLE INITIALLY DEFERRED FOR EACH "
                       "ROW EXECUTE FUNCTION slow_commit()")
                .status());
  absl::StatusOr<RecordOutcome> outcome;
  std::thread writer([&] {
    outcome = store->RecordStepResult(MakeStep(claim->attempt.id, 0), "tok");
  });
  const std::string pid = WaitForBackendIn(*cluster_, "PgSleep");
  if (!pid.empty()) {
    EXPECT_TRUE(
        cluster_->Psql("postgres", "SELECT pg_terminate_backend(" + pid + ")")
            .ok());
  }
  writer.join();  // the trigger sleeps a second at most; nothing waits longer
  ASSERT_FALSE(pid.empty()) << "no COMMIT ran the slow trigger";
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, RecordOutcome::kInserted);
  ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(claim->attempt.id));
  ASSERT_EQ(steps.size(), 1u);
  ExpectStepEq(steps[0], MakeStep(claim->attempt.id, 0));
}

// The connection breaks during COMMIT after the transaction committed (here:
// while the server waits for a synchronous standby that never comes). The
// store asks the server, learns that it committed, and reports success
// without running it again: a re-run would have seen its own row and said
// kDuplicate.
TEST(PgStoreInDoubtTest, InDoubtCommitThatCommittedIsNotRunAgain) {
  ASSERT_OK_AND_ASSIGN(auto cluster, PgCluster::Start());
  PgOptions options;
  options.url = cluster->url();
  ASSERT_OK_AND_ASSIGN(auto store, PgStore::Open(options));
  ASSERT_OK(store->CreateExperiment(MakeExperiment("e")).status());
  ASSERT_OK_AND_ASSIGN(auto claim,
                       store->ClaimNextExperiment("a", {}, "tok", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());

  ASSERT_OK(
      cluster
          ->Psql("postgres",
                 "ALTER SYSTEM SET synchronous_standby_names = 'bf_never'")
          .status());
  ASSERT_OK(cluster->Psql("postgres", "SELECT pg_reload_conf()").status());
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline &&
         cluster->Psql("postgres", "SHOW synchronous_standby_names")
                 .value_or("") != "bf_never\n") {
    absl::SleepFor(absl::Milliseconds(20));
  }

  absl::StatusOr<RecordOutcome> outcome;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    outcome = store->RecordStepResult(MakeStep(claim->attempt.id, 0), "tok");
    done.store(true);
  });
  const std::string pid = WaitForBackendIn(*cluster, "SyncRep");
  if (!pid.empty()) {
    EXPECT_TRUE(
        cluster->Psql("postgres", "SELECT pg_terminate_backend(" + pid + ")")
            .ok());
  }
  // Whatever happened, stop waiting for the standby before joining: a store
  // that hangs fails this test instead of hanging it.
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!done.load() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const bool finished = done.load();
  EXPECT_TRUE(
      cluster->Psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names")
          .ok());
  EXPECT_TRUE(cluster->Psql("postgres", "SELECT pg_reload_conf()").ok());
  writer.join();
  ASSERT_FALSE(pid.empty()) << "no COMMIT waited for the standby";
  ASSERT_TRUE(finished) << "the call hung after its COMMIT was cut off";
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, RecordOutcome::kInserted);
  ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(claim->attempt.id));
  ASSERT_EQ(steps.size(), 1u);
}

TEST_F(PgStoreTest, GrafanaReadsDocumentedViewsThroughAReadOnlyRole) {
  auto store = OpenOrDie(url_);
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->CreateExperiment(MakeExperiment("sort", "q3")).status());
  ASSERT_OK_AND_ASSIGN(
      auto claim, store->ClaimNextExperiment("host-a", {}, "tok", 1, {}, kT0));
  ASSERT_TRUE(claim.has_value());
  const int64_t attempt = claim->attempt.id;
  for (int seq = 0; seq < 3; ++seq) {  // wall 1.000000, 1.000001, 1.000002 ms
    // Step 1 ran undisturbed, with no summary and no gate wait.
    const StepResultRecord step =
        seq == 1 ? MakeOldStep(attempt, seq) : MakeStep(attempt, seq);
    ASSERT_OK(store->RecordStepResult(step, "tok").status());
  }
  StepResultRecord setup = MakeStep(attempt, 3);
  setup.kind = "setup";
  ASSERT_OK(store->RecordStepResult(setup, "tok").status());
  VerdictRecord verdict;
  verdict.variant = "candidate";
  verdict.verdict = "KEEP";
  verdict.reason = "faster";
  verdict.change = -0.25;
  ASSERT_OK(store->CompleteExperiment(attempt, "tok", "{}", "done", {verdict},
                                      kT0 + absl::Minutes(1)));

  const auto runs = PgQuery(
      dbname_,
      "SELECT experiment, campaign, agent_id, step_seq, variant, wall_s, "
      "timed_out, extract(epoch FROM finished_at) FROM v_runs ORDER BY "
      "step_seq");
  ASSERT_EQ(runs.size(), 3u);  // measured runs only
  EXPECT_EQ(runs[0],
            (std::vector<std::string>{"sort", "q3", "host-a", "0", "candidate",
                                      "0.001", "f", "1700000000.000000"}));
  const auto results = PgQuery(
      dbname_,
      "SELECT experiment, variant, input, runs, median_wall_s FROM v_results "
      "ORDER BY input");
  ASSERT_EQ(results.size(), 3u);  // one input per step in MakeStep
  EXPECT_EQ(results[1],
            (std::vector<std::string>{"sort", "candidate", "input-1", "1",
                                      "0.001000001"}));
  const auto verdicts =
      PgQuery(dbname_,
              "SELECT experiment, variant, verdict, relative_change, reason, "
              "extract(epoch FROM decided_at) FROM v_verdicts");
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0],
            (std::vector<std::string>{"sort", "candidate", "KEEP", "-0.25",
                                      "faster", "1700000060.000000"}));

  // The role exists, cannot log in until given a password, reads the views
  // and nothing else.
  const auto role =
      PgQuery("postgres",
              "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = "
              "'benchfleet_grafana'");
  ASSERT_EQ(role.size(), 1u);
  EXPECT_EQ(role[0], (std::vector<std::string>{"f", "f"}));
  for (const char* view : {"v_results", "v_verdicts", "v_runs"}) {
    const auto count = PgQuery(
        dbname_, std::string("SET ROLE benchfleet_grafana; SELECT count(*) >= "
                             "0 FROM ") +
                     view);
    ASSERT_EQ(count.size(), 1u) << view;
    EXPECT_EQ(count[0][0], "t") << view;
  }
  // The host columns migration 7 appended to v_runs, read through the role
  // (CREATE OR REPLACE VIEW kept its grant).
  const auto host = PgQuery(
      dbname_,
      "SET ROLE benchfleet_grafana; SELECT step_seq, host_flags, gate_wait_s, "
      "COALESCE(host_json::json->>'max_cpu_temp_c', 'none') FROM v_runs "
      "ORDER BY step_seq");
  ASSERT_EQ(host.size(), 3u);
  EXPECT_EQ(host[0], (std::vector<std::string>{"0", "throttled,contended",
                                               "1.5", "71.5"}));
  EXPECT_EQ(host[1], (std::vector<std::string>{"1", "", "0", "none"}));
  EXPECT_EQ(host[2], (std::vector<std::string>{"2", "throttled,contended",
                                               "1.500000002", "71.5"}));
  for (const char* table : {"experiments", "attempts", "step_results",
                            "verdicts", "agents", "samples"}) {
    EXPECT_FALSE(cluster_
                     ->Psql(dbname_, std::string("SET ROLE benchfleet_grafana; "
                                                 "SELECT 1 FROM ") +
                                         table)
                     .ok())
        << table;
    EXPECT_FALSE(cluster_
                     ->Psql(dbname_, std::string("SET ROLE benchfleet_grafana; "
                                                 "DELETE FROM ") +
                                         table)
                     .ok())
        << table;
  }
}

// A controller whose database user may not create roles still migrates; the
// server's warning about the skipped role reaches the log, and a role made by
// an administrator (or another database's migration) gets its grants.
TEST(PgStoreRoleTest, MigratesWithoutCreateRoleAndLogsWhatWasSkipped) {
  ASSERT_OK_AND_ASSIGN(auto cluster, PgCluster::Start());
  ASSERT_OK(cluster->Psql("postgres", "CREATE ROLE bf_limited LOGIN").status());
  for (const char* db : {"limited1", "limited2"}) {
    ASSERT_OK(cluster->CreateDatabase(db).status());
    ASSERT_OK(cluster
                  ->Psql("postgres", std::string("ALTER DATABASE ") + db +
                                         " OWNER TO bf_limited")
                  .status());
  }

  auto log = std::make_shared<std::ostringstream>();
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(*log)));
  PgOptions options;
  options.url = cluster->UrlFor("limited1", "bf_limited");
  auto store = PgStore::Open(options);
  spdlog::set_default_logger(previous);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_OK_AND_ASSIGN(int version, (*store)->SchemaVersion());
  EXPECT_EQ(version, LatestSchemaVersion());
  EXPECT_THAT(log->str(), HasSubstr("benchfleet_grafana"));
  EXPECT_THAT(log->str(), HasSubstr("CREATEROLE"));
  auto role = cluster->Psql("postgres",
                            "SELECT count(*) FROM pg_roles WHERE rolname = "
                            "'benchfleet_grafana'");
  ASSERT_OK(role.status());
  EXPECT_EQ(*role, "0\n");

  // The administrator creates the role; the next database's migration grants.
  ASSERT_OK(cluster->Psql("postgres", "CREATE ROLE benchfleet_grafana NOLOGIN")
                .status());
  options.url = cluster->UrlFor("limited2", "bf_limited");
  ASSERT_OK(PgStore::Open(options).status());
  auto granted = cluster->Psql(
      "limited2",
      "SELECT has_table_privilege('benchfleet_grafana', 'v_runs', 'SELECT')");
  ASSERT_OK(granted.status());
  EXPECT_EQ(*granted, "t\n");
}

}  // namespace
}  // namespace benchfleet
