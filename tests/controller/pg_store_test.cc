// PgStore only (store_test_fixture.h's throwaway cluster): URLs and
// passwords, reconnecting across server restarts, in-doubt commits, NUL
// text, claims skipping rows another controller locked, the Grafana role and
// views, migrating without CREATEROLE.
#include <string>
#include <vector>

#include "tests/controller/store_test_fixture.h"

namespace benchfleet {
namespace store_testing {
namespace {

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
}  // namespace store_testing
}  // namespace benchfleet
