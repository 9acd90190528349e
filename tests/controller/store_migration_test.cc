// The store conformance suite (store_test_fixture.h): files and reopening,
// schema migrations (from every earlier version, concurrent openers, a newer
// build's database), the migration list itself, and OpenStore's URLs.
#include <string>
#include <vector>

#include "tests/controller/store_test_fixture.h"

namespace benchfleet {
namespace store_testing {
namespace {

INSTANTIATE_STORE_SUITE(StoreTest);

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

// The step a store at schema `from` stored for MakeStep(attempt_id, 0): host
// fields only from migration 7 on.
StepResultRecord OldStepAt(int from, int64_t attempt_id) {
  return from >= 7 ? MakeStep(attempt_id, 0) : MakeOldStep(attempt_id, 0);
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
      // store (before migration 7) are dropped, not an error.
      ASSERT_OK(old->RecordStepResult(MakeStep(attempt_id, 0), "tok").status());
      ASSERT_OK_AND_ASSIGN(auto old_steps, old->ListStepResults(attempt_id));
      ASSERT_EQ(old_steps.size(), 1u);
      ExpectStepEq(old_steps[0], OldStepAt(from, attempt_id));
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
      ExpectStepEq(steps[0], OldStepAt(from, attempt_id));
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
        if (from >= 7) {
          EXPECT_EQ(runs[0][1], "throttled,contended");
          EXPECT_EQ(runs[0][3], MakeStep(attempt_id, 0).host_json);
        } else {
          EXPECT_EQ(runs[0], (std::vector<std::string>{"0", "", "0", "{}"}));
        }
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

}  // namespace
}  // namespace store_testing
}  // namespace benchfleet
