// A team controller on PostgreSQL survives a database restart in the middle of
// an experiment: an in-process controller (PgStore on a throwaway cluster) and
// agent over gRPC, real child processes, and `pg_ctl restart -m immediate`
// while measured runs are being stored. The experiment must complete in its
// first attempt, with every run stored exactly once.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fleet_client.h"
#include "tests/testing/pg_cluster.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::PgCluster;
using ::benchfleet::testing::TempDir;

constexpr int kRuns = 20;
constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: pg-restart
benchmark:
  argv: [sleep, "0.04"]
  inputs:
    - {name: first, path: inputs/first.txt}
    - {name: second, path: inputs/second.txt}
  warmup: 1
  runs: 20
  max_runs: 20
  timeout: 10s
correctness:
  compare: none
variants:
  - {name: baseline}
  - {name: faster, argv: [sleep, "0.02"]}
verdict: {max_cv: 50%, kill_factor: 3.0}
gates: {cooldown: 0s, max_load: 1000, max_wait: 1m}
)";

int64_t CountRows(PgCluster& cluster, const std::string& sql) {
  absl::StatusOr<std::string> out = cluster.Psql("benchfleet", sql);
  int64_t n = -1;
  if (!out.ok()) return -1;
  std::string text = *out;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return absl::SimpleAtoi(text, &n) ? n : -1;
}

TEST(PgRestartTest, ExperimentCompletesWithEveryRunStoredOnce) {
  absl::StatusOr<std::unique_ptr<PgCluster>> cluster = PgCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  TempDir dir;
  TempDir workdir;
  std::filesystem::create_directories(workdir / "inputs");
  for (const std::string name : {"first", "second"}) {
    std::ofstream(workdir / ("inputs/" + name + ".txt")) << name;
  }

  ControllerOptions copts;
  copts.listen = "127.0.0.1:0";
  copts.store_url = (*cluster)->url();
  absl::StatusOr<std::unique_ptr<Controller>> controller =
      Controller::Create(copts);
  ASSERT_TRUE(controller.ok()) << controller.status();

  PosixProcessRunner runner;
  AgentOptions aopts;
  aopts.controller = (*controller)->address();
  aopts.id = "pg-restart-agent";
  aopts.workdir = dir / "agent";
  aopts.lock_file = dir / "agent.lock";
  aopts.max_competing_cpu = 0;  // the database's recovery must not hold runs
  absl::StatusOr<std::unique_ptr<Agent>> agent = Agent::Create(aopts, &runner);
  ASSERT_TRUE(agent.ok()) << agent.status();
  std::thread agent_thread([&] { EXPECT_TRUE((*agent)->Run().ok()); });

  auto channel = grpc::CreateCustomChannel((*controller)->address(),
                                           grpc::InsecureChannelCredentials(),
                                           MakeChannelArguments());
  auto stub = v1::FleetService::NewStub(channel);
  const v1::SubmitResponse submitted =
      testing::SubmitSpec(*stub, kSpec, "pg-restart.yaml", workdir.path());
  ASSERT_NE(submitted.experiment_id(), 0);

  // Restart the server once a few measured runs are stored and most are
  // still to come.
  const absl::Time deadline = absl::Now() + absl::Minutes(2);
  int64_t stored_before = -1;
  while (absl::Now() < deadline) {
    stored_before = CountRows(
        **cluster, "SELECT count(*) FROM step_results WHERE kind = 'measure'");
    if (stored_before >= 8) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(stored_before, 8) << "the experiment never started measuring";
  ASSERT_LT(stored_before, 4 * kRuns)
      << "the experiment ended before the restart; make its runs longer";
  ASSERT_TRUE((*cluster)->Restart(/*immediate=*/true).ok());

  // Follow it to the end.
  v1::Experiment e;
  while (absl::Now() < deadline) {
    e = testing::GetExperiment(*stub, submitted.experiment_id());
    if (e.state() == "done" || e.state() == "failed" ||
        e.state() == "cancelled") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  (*agent)->Shutdown();
  agent_thread.join();

  ASSERT_EQ(e.state(), "done") << e.state_reason();
  EXPECT_EQ(e.attempts(), 1) << "the restart must not cost the attempt";
  nlohmann::json report = nlohmann::json::parse(e.report_json());
  ASSERT_EQ(report["candidates"].size(), 1u);
  EXPECT_EQ(report["candidates"][0]["verdict"], "KEEP") << e.report_text();

  // Every measured run is in the store once: the runs the report counted are
  // exactly the rows, with no step missing and none twice.
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore((*cluster)->url());
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::vector<AttemptRecord>> attempts =
      (*store)->ListAttempts(submitted.experiment_id());
  ASSERT_TRUE(attempts.ok()) << attempts.status();
  ASSERT_EQ(attempts->size(), 1u);
  absl::StatusOr<std::vector<StepResultRecord>> steps =
      (*store)->ListStepResults(attempts->front().id);
  ASSERT_TRUE(steps.ok()) << steps.status();
  std::set<int64_t> seqs;
  std::map<std::pair<std::string, std::string>, int> measured;
  for (const StepResultRecord& s : *steps) {
    EXPECT_TRUE(seqs.insert(s.step_seq).second) << "step " << s.step_seq;
    if (s.kind == "measure") ++measured[{s.variant, s.input}];
  }
  // Steps are numbered 1, 2, 3, ... as the controller ordered them, and the
  // store holds exactly the results the attempt counted: none missing, none
  // twice.
  ASSERT_FALSE(seqs.empty());
  EXPECT_EQ(*seqs.begin(), 1);
  EXPECT_EQ(*seqs.rbegin(), static_cast<int64_t>(seqs.size()));
  EXPECT_EQ(static_cast<int64_t>(seqs.size()),
            report["steps_run"].get<int64_t>());
  // Measured rows = the runs the statistics used (+ outliers they set aside)
  // + the runs repeated because the host was disturbed (the database's crash
  // recovery is a competing process).
  int64_t counted = report["reruns"].get<int64_t>();
  for (const auto& in : report["candidates"][0]["inputs"]) {
    counted += in["n_baseline"].get<int64_t>() +
               in["n_candidate"].get<int64_t>() +
               in["outliers_removed"].get<int64_t>();
  }
  int64_t measured_rows = 0;
  for (const char* variant : {"baseline", "faster"}) {
    for (const char* input : {"first", "second"}) {
      EXPECT_GE((measured[{variant, input}]), kRuns) << variant << "/" << input;
      measured_rows += measured[{variant, input}];
    }
  }
  EXPECT_EQ(measured_rows, counted) << e.report_text();
  EXPECT_EQ(CountRows(**cluster,
                      absl::StrCat("SELECT count(*) FROM step_results WHERE "
                                   "attempt_id = ",
                                   attempts->front().id)),
            static_cast<int64_t>(steps->size()));
}

}  // namespace
}  // namespace benchfleet
