// The store conformance suite (store_test_fixture.h): files and reopening,
// schema migrations (from every earlier version, concurrent openers, a newer
// build's database), the migration list itself, and OpenStore's URLs.
#include <charconv>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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

// ---- Databases left by earlier versions ----

// Plain SQL on one database, behind any store's back (StoreTest's RawExec and
// RawQuery bound to a location).
struct RawSql {
  std::function<void(const std::string&)> exec;
  std::function<std::vector<std::vector<std::string>>(const std::string&)>
      query;
};

// The database at `location`, empty before, brought to schema `version` the
// way a controller of that version left it: the migrations' own statements
// (MigrationStatements) up to `version`, and their bookkeeping rows. No store
// is opened: the stores read and write the latest schema only.
void BuildSchemaAt(const RawSql& raw, int version, bool postgres) {
  const SqlDialect dialect =
      postgres ? SqlDialect::kPostgres : SqlDialect::kSqlite;
  std::string sql(SchemaMigrationsTableSql());
  sql += ";\n";
  for (const Migration& migration : AllMigrations()) {
    if (migration.version > version) break;
    for (const std::string& statement :
         MigrationStatements(migration, dialect)) {
      sql += statement + ";\n";
    }
    sql += "INSERT INTO schema_migrations (version, applied_at) VALUES (" +
           std::to_string(migration.version) + ", 0);\n";
  }
  raw.exec(sql);
}

// SQL literals, the same in both dialects.
std::string Lit(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}
std::string Lit(int64_t value) { return std::to_string(value); }
std::string Lit(absl::Time t) { return std::to_string(absl::ToUnixMicros(t)); }
// Only for values with a short exact binary form (0.5, -0.25): both
// databases then parse the text to the same double.
std::string Lit(double value) {
  char buf[64];
  const auto end = std::to_chars(buf, buf + sizeof buf, value).ptr;
  return std::string(buf, end);
}

// One row of every table a controller at an earlier schema wrote, and what
// the current store must read back for it.
struct OldRows {
  ExperimentRecord running;  // campaign "c", claimed by agent "a", lease "tok"
  AttemptRecord running_attempt;
  StepResultRecord running_step;  // as read back
  ExperimentRecord finished;      // campaign "d", done, with a verdict
  AttemptRecord finished_attempt;
  StepResultRecord finished_step;  // as read back
  VerdictRecord verdict;
  AgentRecord agent;
  std::optional<SampleRecord> sample;  // from migration 2 on
};

// What a step read back from a row that `version` stored: the host fields
// from migration 7 on only.
StepResultRecord AsStoredAt(int version, StepResultRecord step) {
  if (version >= 7) return step;
  step.host_json = "{}";
  step.host_flags.clear();
  step.gate_wait_ns = 0;
  return step;
}

// `labels_json`: e.required_labels as the stores have always written them.
std::string InsertExperimentSql(const ExperimentRecord& e,
                                std::string_view labels_json, int version) {
  std::string sql =
      "INSERT INTO experiments (number, name, campaign, state, state_reason, "
      "spec_yaml, spec_path, workdir, required_labels_json, attempts, "
      "max_attempts, submitted_by, created_at, updated_at, report_json, "
      "report_text";
  if (version >= 6) sql += ", idea, origin, discarded_before";
  sql += ") VALUES (" + Lit(e.number) + ", " + Lit(e.name) + ", " +
         Lit(e.campaign) + ", " + Lit(ExperimentStateName(e.state)) + ", " +
         Lit(e.state_reason) + ", " + Lit(e.spec_yaml) + ", " +
         Lit(e.spec_path) + ", " + Lit(e.workdir) + ", " + Lit(labels_json) +
         ", " + Lit(int64_t{e.attempts}) + ", " + Lit(int64_t{e.max_attempts}) +
         ", " + Lit(e.submitted_by) + ", " + Lit(e.created_at) + ", " +
         Lit(e.updated_at) + ", " + Lit(e.report_json) + ", " +
         Lit(e.report_text);
  if (version >= 6) {
    sql += ", " + Lit(e.idea) + ", " +
           (e.origin.empty() ? std::string("NULL") : Lit(e.origin)) + ", " +
           Lit(e.discarded_before);
  }
  return sql + ");\n";
}

std::string InsertAttemptSql(const AttemptRecord& a) {
  return "INSERT INTO attempts (experiment_id, agent_id, lease_token, state, "
         "seed, reason, environment_json, started_at, ended_at) VALUES (" +
         Lit(a.experiment_id) + ", " + Lit(a.agent_id) + ", " +
         Lit(a.lease_token) + ", " + Lit(AttemptStateName(a.state)) + ", " +
         Lit(static_cast<int64_t>(a.seed)) + ", " + Lit(a.reason) + ", " +
         Lit(a.environment_json) + ", " + Lit(a.started_at) + ", " +
         (a.ended_at == absl::UnixEpoch() ? std::string("NULL")
                                          : Lit(a.ended_at)) +
         ");\n";
}

std::string InsertStepSql(const StepResultRecord& r, int version) {
  std::string sql =
      "INSERT INTO step_results (attempt_id, step_seq, kind, variant, input, "
      "wall_ns, user_ns, sys_ns, max_rss_bytes, exit_code, term_signal, "
      "timed_out, output_digest, metrics_json, error, finished_at";
  if (version >= 7) sql += ", host_json, host_flags, gate_wait_ns";
  sql += ") VALUES (" + Lit(r.attempt_id) + ", " + Lit(r.step_seq) + ", " +
         Lit(r.kind) + ", " + Lit(r.variant) + ", " + Lit(r.input) + ", " +
         Lit(r.wall_ns) + ", " + Lit(r.user_ns) + ", " + Lit(r.sys_ns) + ", " +
         Lit(r.max_rss_bytes) + ", " + Lit(int64_t{r.exit_code}) + ", " +
         Lit(int64_t{r.term_signal}) + ", " + Lit(int64_t{r.timed_out}) + ", " +
         Lit(r.output_digest) + ", " + Lit(r.metrics_json) + ", " +
         Lit(r.error) + ", " + Lit(r.finished_at);
  if (version >= 7) {
    std::string flags = "[";
    for (const std::string& flag : r.host_flags) {
      flags += (flags.size() > 1 ? ",\"" : "\"") + flag + "\"";
    }
    sql += ", " + Lit(r.host_json) + ", " + Lit(flags + "]") + ", " +
           Lit(r.gate_wait_ns);
  }
  return sql + ");\n";
}

// Writes OldRows into a database at schema `version` (BuildSchemaAt) with
// plain SQL of that version.
OldRows InsertOldRows(const RawSql& raw, int version) {
  OldRows rows;
  auto id_of = [&](const std::string& sql) -> int64_t {
    const auto result = raw.query(sql);
    EXPECT_EQ(result.size(), 1u) << sql;
    return result.size() == 1 ? std::stoll(result[0][0]) : 0;
  };

  // As MakeExperiment("old", "c") submitted and claimed at kT0.
  rows.running = MakeExperiment("old", "c");
  rows.running.number = 1;
  rows.running.state = ExperimentState::kRunning;
  rows.running.attempts = 1;
  rows.running.updated_at = kT0;
  rows.finished = MakeExperiment("finished", "d", {{"gpu", "a100"}});
  rows.finished.number = 7;
  rows.finished.state = ExperimentState::kDone;
  rows.finished.state_reason = "requeued once: agent lost";
  rows.finished.attempts = 2;
  rows.finished.max_attempts = 5;
  rows.finished.submitted_by = "bob";
  rows.finished.updated_at = kT0 + absl::Minutes(2);
  rows.finished.report_json = R"({"verdicts":["KEEP"]})";
  rows.finished.report_text = "KEEP: it's faster\n";
  if (version >= 6) {
    rows.finished.idea = "an-old-idea";
    rows.finished.origin = "history.yaml#3";
    rows.finished.discarded_before = "DISCARDed before: #2";
  }
  raw.exec(InsertExperimentSql(rows.running, "{}", version) +
           InsertExperimentSql(rows.finished, R"({"gpu":"a100"})", version));
  rows.running.id =
      id_of("SELECT id FROM experiments WHERE name = " + Lit("old"));
  rows.finished.id =
      id_of("SELECT id FROM experiments WHERE name = " + Lit("finished"));

  rows.running_attempt.experiment_id = rows.running.id;
  rows.running_attempt.agent_id = "a";
  rows.running_attempt.lease_token = "tok";
  rows.running_attempt.seed = 1;
  rows.running_attempt.started_at = kT0;
  rows.finished_attempt.experiment_id = rows.finished.id;
  rows.finished_attempt.agent_id = "a";
  rows.finished_attempt.lease_token = "tok-finished";
  rows.finished_attempt.state = AttemptState::kDone;
  rows.finished_attempt.seed = ~uint64_t{1};  // stored as a negative BIGINT
  rows.finished_attempt.environment_json = R"({"hostname":"a.lab"})";
  rows.finished_attempt.started_at = kT0 + absl::Minutes(1);
  rows.finished_attempt.ended_at = kT0 + absl::Minutes(2);
  raw.exec(InsertAttemptSql(rows.running_attempt) +
           InsertAttemptSql(rows.finished_attempt));
  rows.running_attempt.id =
      id_of("SELECT id FROM attempts WHERE lease_token = " + Lit("tok"));
  rows.finished_attempt.id = id_of(
      "SELECT id FROM attempts WHERE lease_token = " + Lit("tok-finished"));

  const StepResultRecord running_step = MakeStep(rows.running_attempt.id, 0);
  StepResultRecord finished_step = MakeStep(rows.finished_attempt.id, 0);
  finished_step.kind = "setup";
  finished_step.exit_code = 3;
  finished_step.term_signal = 9;
  finished_step.timed_out = true;
  finished_step.error = "killed after its timeout";
  rows.running_step = AsStoredAt(version, running_step);
  rows.finished_step = AsStoredAt(version, finished_step);

  rows.verdict.experiment_id = rows.finished.id;
  rows.verdict.attempt_id = rows.finished_attempt.id;
  rows.verdict.variant = "candidate";
  rows.verdict.verdict = "KEEP";
  rows.verdict.reason = "faster";
  rows.verdict.change = -0.25;
  rows.verdict.detail_json = R"({"p":0.001})";

  rows.agent = MakeAgent("a");  // labels {gpu: h100}
  rows.agent.state = AgentState::kBusy;
  rows.agent.cordoned = true;

  std::string sql = InsertStepSql(running_step, version) +
                    InsertStepSql(finished_step, version);
  sql +=
      "INSERT INTO verdicts (experiment_id, attempt_id, variant, verdict, "
      "reason, relative_change, detail_json) VALUES (" +
      Lit(rows.verdict.experiment_id) + ", " + Lit(rows.verdict.attempt_id) +
      ", " + Lit(rows.verdict.variant) + ", " + Lit(rows.verdict.verdict) +
      ", " + Lit(rows.verdict.reason) + ", " + Lit(rows.verdict.change) + ", " +
      Lit(rows.verdict.detail_json) + ");\n";
  sql +=
      "INSERT INTO agents (id, hostname, labels_json, facts_json, state, "
      "cordoned, last_seen) VALUES (" +
      Lit(rows.agent.id) + ", " + Lit(rows.agent.hostname) + ", " +
      Lit(R"({"gpu":"h100"})") + ", " + Lit(rows.agent.facts_json) + ", " +
      Lit(AgentStateName(rows.agent.state)) + ", 1, " +
      Lit(rows.agent.last_seen) + ");\n";
  if (version >= 2) {
    SampleRecord sample;
    sample.attempt_id = rows.finished_attempt.id;
    sample.step_seq = 0;
    sample.agent_id = "a";
    sample.taken_at = kT0 + absl::Seconds(90);
    sample.cpu_util = 0.5;
    sample.load1 = 1.25;
    sample.mem_available_bytes = 1024;
    sample.min_freq_mhz = 2400.5;
    sample.max_cpu_temp_c = 71.5;
    sample.max_gpu_temp_c = 0;
    sample.gpu_util = 0.75;
    sample.throttle_events = 7;
    sample.competing_cpu = 0.125;
    sample.detail_json = R"({"cores":[1,2.5]})";
    sql +=
        "INSERT INTO samples (attempt_id, step_seq, agent_id, taken_at, "
        "cpu_util, load1, mem_available_bytes, min_freq_mhz, max_cpu_temp_c, "
        "max_gpu_temp_c, gpu_util, throttle_events, competing_cpu, "
        "detail_json) VALUES (" +
        Lit(sample.attempt_id) + ", " + Lit(sample.step_seq) + ", " +
        Lit(sample.agent_id) + ", " + Lit(sample.taken_at) + ", " +
        Lit(sample.cpu_util) + ", " + Lit(sample.load1) + ", " +
        Lit(sample.mem_available_bytes) + ", " + Lit(sample.min_freq_mhz) +
        ", " + Lit(sample.max_cpu_temp_c) + ", " + Lit(sample.max_gpu_temp_c) +
        ", " + Lit(sample.gpu_util) + ", " + Lit(sample.throttle_events) +
        ", " + Lit(sample.competing_cpu) + ", " + Lit(sample.detail_json) +
        ");\n";
    rows.sample = sample;
  }
  raw.exec(sql);
  return rows;
}

void ExpectExperimentEq(const ExperimentRecord& a, const ExperimentRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.number, b.number);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.campaign, b.campaign);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.state_reason, b.state_reason);
  EXPECT_EQ(a.spec_yaml, b.spec_yaml);
  EXPECT_EQ(a.spec_path, b.spec_path);
  EXPECT_EQ(a.workdir, b.workdir);
  EXPECT_EQ(a.required_labels, b.required_labels);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.max_attempts, b.max_attempts);
  EXPECT_EQ(a.submitted_by, b.submitted_by);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.report_json, b.report_json);
  EXPECT_EQ(a.report_text, b.report_text);
  EXPECT_EQ(a.idea, b.idea);
  EXPECT_EQ(a.origin, b.origin);
  EXPECT_EQ(a.discarded_before, b.discarded_before);
}

void ExpectAttemptEq(const AttemptRecord& a, const AttemptRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.experiment_id, b.experiment_id);
  EXPECT_EQ(a.agent_id, b.agent_id);
  EXPECT_EQ(a.lease_token, b.lease_token);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.environment_json, b.environment_json);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.ended_at, b.ended_at);
}

void ExpectVerdictEq(const VerdictRecord& a, const VerdictRecord& b) {
  EXPECT_EQ(a.experiment_id, b.experiment_id);
  EXPECT_EQ(a.attempt_id, b.attempt_id);
  EXPECT_EQ(a.variant, b.variant);
  EXPECT_EQ(a.verdict, b.verdict);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.change, b.change);
  EXPECT_EQ(a.detail_json, b.detail_json);
}

// Every row an earlier version left reads back through the current store.
void ExpectOldRowsRead(Store& store, const OldRows& rows) {
  for (const auto* e : {&rows.running, &rows.finished}) {
    SCOPED_TRACE("experiment " + e->name);
    ASSERT_OK_AND_ASSIGN(auto got, store.GetExperiment(e->id));
    ExpectExperimentEq(got, *e);
  }
  for (const auto* a : {&rows.running_attempt, &rows.finished_attempt}) {
    SCOPED_TRACE("attempt " + a->lease_token);
    ASSERT_OK_AND_ASSIGN(auto got, store.ListAttempts(a->experiment_id));
    ASSERT_EQ(got.size(), 1u);
    ExpectAttemptEq(got[0], *a);
  }
  ASSERT_OK_AND_ASSIGN(auto steps,
                       store.ListStepResults(rows.finished_attempt.id));
  ASSERT_EQ(steps.size(), 1u);
  ExpectStepEq(steps[0], rows.finished_step);
  ASSERT_OK_AND_ASSIGN(auto verdicts, store.ListVerdicts(rows.finished.id));
  ASSERT_EQ(verdicts.size(), 1u);
  ExpectVerdictEq(verdicts[0], rows.verdict);
  ASSERT_OK_AND_ASSIGN(auto agent, store.GetAgent(rows.agent.id));
  EXPECT_EQ(agent.hostname, rows.agent.hostname);
  EXPECT_EQ(agent.labels, rows.agent.labels);
  EXPECT_EQ(agent.facts_json, rows.agent.facts_json);
  EXPECT_EQ(agent.state, rows.agent.state);
  EXPECT_EQ(agent.cordoned, rows.agent.cordoned);
  EXPECT_EQ(agent.last_seen, rows.agent.last_seen);
  ASSERT_OK_AND_ASSIGN(auto samples,
                       store.ListSamples(rows.finished_attempt.id));
  ASSERT_EQ(samples.size(), rows.sample ? 1u : 0u);
  if (rows.sample) ExpectSampleEq(samples[0], *rows.sample);
  // History reads experiments from before migration 6 too.
  HistoryQuery q;
  q.name = rows.finished.name;
  ASSERT_OK_AND_ASSIGN(auto history, store.ListHistory(q));
  ASSERT_EQ(history.size(), 1u);
  ExpectExperimentEq(history[0].experiment, rows.finished);
  ExpectAttemptEq(history[0].attempt, rows.finished_attempt);
  ASSERT_EQ(history[0].verdicts.size(), 1u);
  ExpectVerdictEq(history[0].verdicts[0], rows.verdict);
}

// A database left at any earlier version (or empty) is brought up to date by
// Open, keeping what it holds.
TEST_P(StoreTest, OpenMigratesFromEmptyAndFromEveryEarlierVersion) {
  for (int from = 0; from < LatestSchemaVersion(); ++from) {
    SCOPED_TRACE("from schema version " + std::to_string(from));
    const std::string where = NewLocation("from" + std::to_string(from));
    ASSERT_FALSE(where.empty());
    int64_t attempt_id = 0;
    std::optional<OldRows> old;
    if (from > 0) {
      const RawSql raw{
          [&](const std::string& sql) { RawExec(where, sql); },
          [&](const std::string& sql) { return RawQuery(where, sql); }};
      BuildSchemaAt(raw, from, IsPostgres());
      const auto version =
          RawQuery(where, "SELECT MAX(version) FROM schema_migrations");
      ASSERT_EQ(version.size(), 1u);
      ASSERT_EQ(version[0][0], std::to_string(from));
      old = InsertOldRows(raw, from);
      if (HasFailure()) return;
      attempt_id = old->running_attempt.id;
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
    if (old) ExpectOldRowsRead(*store, *old);
    if (from > 0) {
      // The old row reads with migration 7's defaults; a new row keeps its
      // host summary, flags and gate wait.
      ASSERT_OK(
          store->RecordStepResult(MakeStep(attempt_id, 1), "tok").status());
      ASSERT_OK_AND_ASSIGN(auto steps, store->ListStepResults(attempt_id));
      ASSERT_EQ(steps.size(), 2u);
      ExpectStepEq(steps[0], AsStoredAt(from, MakeStep(attempt_id, 0)));
      ExpectStepEq(steps[1], MakeStep(attempt_id, 1));
      ASSERT_OK_AND_ASSIGN(auto next,
                           store->CreateExperiment(MakeExperiment("new", "c")));
      EXPECT_EQ(next.number, 2);
    }
    // What the later migrations added works: experiments from before
    // migration 6 read with no idea, new ones keep theirs, history answers.
    if (from > 0) {
      ASSERT_OK_AND_ASSIGN(auto old_experiment,
                           store->GetExperiment(old->running.id));
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
          "WHERE attempt_id = " +
              std::to_string(attempt_id) + " ORDER BY step_seq");
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
