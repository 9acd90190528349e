// The store conformance suite's fixture, shared by its test programs
// (store_test.cc: experiments, claims, agents, hostile text;
// store_attempts_test.cc: step results, completion, ending, cancellation;
// store_history_test.cc: samples and history; store_migration_test.cc:
// files, reopening, migrations; pg_store_test.cc: PostgreSQL only). StoreTest
// and ClaimedStoreTest are value-parameterized over the backend (instances
// .../Sqlite and .../Postgres: each program instantiates the suites it uses
// with INSTANTIATE_STORE_SUITE); each program starts one throwaway PostgreSQL
// cluster (tests/testing/pg_cluster.h) at its first use. Test-only; a fixture
// belongs to one test thread.
#ifndef BENCHFLEET_TESTS_CONTROLLER_STORE_TEST_FIXTURE_H_
#define BENCHFLEET_TESTS_CONTROLLER_STORE_TEST_FIXTURE_H_

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
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/testing/pg_cluster.h"

namespace benchfleet {
namespace store_testing {

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

inline const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

inline ExperimentRecord MakeExperiment(
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

inline StepResultRecord MakeStep(int64_t attempt_id, int64_t step_seq) {
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

// MakeStep as a store reads back a row written before migration 7: no host
// summary, flags or gate wait.
inline StepResultRecord MakeOldStep(int64_t attempt_id, int64_t step_seq) {
  StepResultRecord r = MakeStep(attempt_id, step_seq);
  r.host_json = "{}";
  r.host_flags.clear();
  r.gate_wait_ns = 0;
  return r;
}

inline void ExpectStepEq(const StepResultRecord& a, const StepResultRecord& b) {
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
inline constexpr char kPasswordUser[] = "bf_password_user";
inline constexpr char kPassword[] = "pw-s3cret-'\"\\;--";

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

inline SharedPg& Pg() {
  static SharedPg shared;
  return shared;
}

// A fresh database in the shared cluster; fails the test when the cluster
// could not start (no PostgreSQL installed is a failure, not a skip).
inline absl::StatusOr<std::pair<std::string, std::string>> FreshPgDatabase() {
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
inline std::vector<std::vector<std::string>> PgQuery(const std::string& dbname,
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

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
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

  // A new store over `location` (migrated to the latest schema).
  absl::StatusOr<std::unique_ptr<Store>> OpenAt(const std::string& location) {
    if (!IsPostgres()) {
      SqliteOptions options;
      options.path = location;
      options.busy_timeout = absl::Seconds(30);
      ASSIGN_OR_RETURN(auto store, SqliteStore::Open(options));
      return std::unique_ptr<Store>(std::move(store));
    }
    PgOptions options;
    options.url = location;
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

// Runs `suite`'s tests against SQLite and PostgreSQL.
#define INSTANTIATE_STORE_SUITE(suite) \
  INSTANTIATE_TEST_SUITE_P(            \
      Backends, suite,                 \
      ::testing::Values(Backend::kSqlite, Backend::kPostgres), BackendName)

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

// A store with one experiment (max_attempts 2) claimed by agent-1 with
// lease-1.
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

inline AgentRecord MakeAgent(const std::string& id) {
  AgentRecord a;
  a.id = id;
  a.hostname = id + ".lab";
  a.labels = {{"gpu", "h100"}};
  a.facts_json = R"({"cores": 64})";
  a.state = AgentState::kIdle;
  a.last_seen = kT0;
  return a;
}

// ---- Hostile input and value ranges ----

inline std::vector<std::string> HostileStrings() {
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

inline SampleRecord MakeSample(int64_t attempt_id, int i) {
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

inline void ExpectSampleEq(const SampleRecord& a, const SampleRecord& b) {
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

}  // namespace store_testing
}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_CONTROLLER_STORE_TEST_FIXTURE_H_
