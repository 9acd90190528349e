// History across campaigns end to end: an in-process controller and agent
// (gRPC over loopback, real child processes, real SQLite stores) and the real
// benchfleet CLI. Covers the "DISCARDed before" flag (submit warning and final
// report), `benchfleet history` (table, --csv, --json, filters) and the exact
// export-history -> import-history -> export-history round trip into a second
// controller, including a malformed file that imports nothing.
#include <grpcpp/create_channel.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fleet_client.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::RunCommand;
using ::benchfleet::testing::TempDir;
using ::testing::HasSubstr;

// The candidate sleeps three times as long as the baseline: a regression far
// above any noise, so it is DISCARDed on any machine.
std::string Spec(const std::string& idea) {
  return absl::StrCat(R"(apiVersion: benchfleet/v1
kind: Experiment
name: sleepy
campaign: naps
)",
                      idea.empty() ? "" : "idea: " + idea + "\n",
                      R"(benchmark:
  command: "sleep 0.01"
  inputs: [{name: short, path: inputs/short}]
  warmup: 0
  runs: 10
variants:
  - {name: baseline}
  - {name: slower, command: "sleep 0.03"}
verdict: {max_cv: 1000%, kill_factor: 10}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)");
}

class HistoryFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* build_dir = std::getenv("BENCHFLEET_BUILD_DIR");
    ASSERT_NE(build_dir, nullptr) << "run through ctest (BENCHFLEET_BUILD_DIR)";
    cli_ = std::string(build_dir) + "/cli/benchfleet";
    ASSERT_TRUE(std::filesystem::exists(cli_)) << cli_;
    std::filesystem::create_directories(workdir_ / "inputs");
    testing::WriteFile(workdir_ / "inputs/short", "");

    controller_ = StartController("fleet.db");
    ASSERT_NE(controller_, nullptr);
    AgentOptions aopts;
    aopts.controller = controller_->address();
    aopts.id = "history-test-agent";
    aopts.workdir = dir_ / "agent";
    aopts.lock_file = dir_ / "agent.lock";
    aopts.max_competing_cpu = 0;  // other builds may share this machine
    auto agent = Agent::Create(aopts, &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    agent_thread_ = std::thread([this] { EXPECT_TRUE(agent_->Run().ok()); });
    stub_ = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        controller_->address(), grpc::InsecureChannelCredentials(),
        MakeChannelArguments()));
  }

  void TearDown() override {
    if (agent_) agent_->Shutdown();
    if (agent_thread_.joinable()) agent_thread_.join();
    agent_.reset();
    controller_.reset();
  }

  std::unique_ptr<Controller> StartController(const std::string& db) {
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / db);
    auto controller = Controller::Create(copts);
    EXPECT_TRUE(controller.ok()) << controller.status();
    return controller.ok() ? std::move(*controller) : nullptr;
  }

  // `benchfleet --controller ADDRESS args...`.
  testing::CommandResult Cli(const std::string& address,
                             const std::vector<std::string>& args) {
    std::vector<std::string> argv = {cli_, "--controller", address};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, dir_.path());
  }

  // Follows experiment `id` to its end through the API.
  v1::Experiment WatchToEnd(int64_t id) {
    return testing::WatchToEnd(*stub_, id);
  }

  // Submits `yaml` through the real CLI (which prints the controller's
  // warnings) and follows the experiment to its end; returns the CLI's output
  // and the finished experiment.
  std::pair<testing::CommandResult, v1::Experiment> SubmitWithCli(
      const std::string& yaml, const std::string& file_name) {
    const std::string file = workdir_ / file_name;
    testing::WriteFile(file, yaml);
    testing::CommandResult r =
        Cli(controller_->address(), {"--json", "submit", file});
    EXPECT_EQ(r.exit_code, 0) << r.all();
    const nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out;
    if (!j.is_object()) return {r, {}};
    const int64_t id = std::stoll(j.value("experiment_id", std::string("0")));
    return {r, WatchToEnd(id)};
  }

  std::string cli_;
  TempDir dir_;
  TempDir workdir_;
  PosixProcessRunner runner_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Agent> agent_;
  std::thread agent_thread_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

TEST_F(HistoryFleetTest, ResubmittingADiscardedIdeaOrVariantIsFlagged) {
  auto [first_out, first] = SubmitWithCli(Spec("longer-naps"), "first.yaml");
  ASSERT_EQ(first.state(), "done") << first.state_reason();
  ASSERT_THAT(first.report_text(), HasSubstr("Verdict: DISCARD"));
  EXPECT_THAT(first_out.err, ::testing::Not(HasSubstr("DISCARDed before")));
  EXPECT_THAT(first.report_text(),
              ::testing::Not(HasSubstr("DISCARDed before")));

  // The same idea again: the CLI prints the controller's warning, naming the
  // earlier experiment, and the final report carries the flag.
  auto [second_out, second] = SubmitWithCli(Spec("longer-naps"), "again.yaml");
  EXPECT_THAT(second_out.err,
              HasSubstr("warning: idea \"longer-naps\" was DISCARDed before: "
                        "experiment 001 sleepy (campaign naps) on "));
  EXPECT_THAT(second_out.err, HasSubstr(": slower +"));
  ASSERT_EQ(second.state(), "done") << second.state_reason();
  EXPECT_THAT(second.report_text(),
              HasSubstr("idea \"longer-naps\" was DISCARDed before: "
                        "experiment 001 sleepy"));

  // Without an idea, the experiment name and candidate variant decide.
  auto [third_out, third] = SubmitWithCli(Spec(""), "no-idea.yaml");
  EXPECT_THAT(third_out.err,
              HasSubstr("warning: variant \"slower\" of sleepy was DISCARDed "
                        "before: experiment 002 sleepy"));
  // Another idea that was never DISCARDed is not flagged.
  const std::string file = workdir_ / "fresh.yaml";
  testing::WriteFile(file, Spec("fresh-idea"));
  testing::CommandResult fresh = Cli(controller_->address(), {"submit", file});
  EXPECT_EQ(fresh.exit_code, 0) << fresh.all();
  EXPECT_THAT(fresh.err, ::testing::Not(HasSubstr("DISCARDed before")));
}

TEST_F(HistoryFleetTest, HistoryCommandsAndAnExactExportImportRoundTrip) {
  auto [out, done] = SubmitWithCli(Spec("longer-naps"), "exp.yaml");
  ASSERT_EQ(done.state(), "done") << done.state_reason();
  const std::string address = controller_->address();

  // The series: one baseline and one candidate row.
  testing::CommandResult table =
      Cli(address, {"history", "--benchmark", "sleepy"});
  ASSERT_EQ(table.exit_code, 0) << table.all();
  const std::vector<std::string> lines =
      absl::StrSplit(table.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << table.out;
  EXPECT_THAT(lines[0], HasSubstr("date"));
  EXPECT_THAT(lines[0], HasSubstr("fingerprint"));
  EXPECT_THAT(lines[1], HasSubstr("001 sleepy"));
  EXPECT_THAT(lines[1], HasSubstr("baseline"));
  EXPECT_THAT(lines[2], HasSubstr("slower"));
  EXPECT_THAT(lines[2], HasSubstr("DISCARD"));
  EXPECT_THAT(lines[2], HasSubstr(" ms"));

  testing::CommandResult csv =
      Cli(address, {"history", "--benchmark", "sleepy", "--csv"});
  ASSERT_EQ(csv.exit_code, 0) << csv.all();
  const std::vector<std::string> csv_lines =
      absl::StrSplit(csv.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(csv_lines.size(), 3u) << csv.out;
  EXPECT_THAT(csv_lines[0], ::testing::StartsWith("time,experiment_number,"));
  EXPECT_THAT(csv_lines[2], HasSubstr(",sleepy,naps,slower,false,short,"));

  testing::CommandResult json =
      Cli(address, {"--json", "history", "--benchmark", "sleepy", "--input",
                    "short", "--since", "1d"});
  ASSERT_EQ(json.exit_code, 0) << json.all();
  const nlohmann::json j = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json.out;
  ASSERT_EQ(j["rows"].size(), 2u);
  EXPECT_EQ(j["rows"][1]["verdict"], "DISCARD");
  EXPECT_GT(j["rows"][1]["change"].get<double>(), 0.3);
  EXPECT_EQ(j["rows"][0]["n"], 10);

  testing::CommandResult other_input = Cli(
      address, {"--json", "history", "--benchmark", "sleepy", "--input", "x"});
  ASSERT_EQ(other_input.exit_code, 0) << other_input.all();
  EXPECT_EQ(nlohmann::json::parse(other_input.out)["rows"].size(), 0u);
  testing::CommandResult other_host =
      Cli(address,
          {"--json", "history", "--benchmark", "sleepy", "--host", "nope"});
  EXPECT_EQ(nlohmann::json::parse(other_host.out)["rows"].size(), 0u);
  EXPECT_EQ(Cli(address, {"history"}).exit_code, 2);  // --benchmark required
  testing::CommandResult bad_since =
      Cli(address, {"history", "--benchmark", "sleepy", "--since", "soon"});
  EXPECT_EQ(bad_since.exit_code, 2);
  EXPECT_THAT(bad_since.err, HasSubstr("--since \"soon\" is not a time"));

  // Export, import into a second (empty) controller, export again.
  const std::string a = dir_ / "a.yaml";
  testing::CommandResult exported = Cli(address, {"export-history", a});
  ASSERT_EQ(exported.exit_code, 0) << exported.all();
  EXPECT_THAT(exported.out, HasSubstr("exported 1 experiment(s) to " + a));
  const std::string file_a = testing::ReadFile(a);
  EXPECT_THAT(file_a, HasSubstr("idea: \"longer-naps\""));

  std::unique_ptr<Controller> second = StartController("second.db");
  ASSERT_NE(second, nullptr);
  const std::string address2 = second->address();

  // A malformed file is refused with file:line:column and imports nothing.
  const std::string bad = dir_ / "bad.yaml";
  testing::WriteFile(
      bad, absl::StrReplaceAll(file_a, {{"    seed: ", "    seed: minus "}}));
  testing::CommandResult refused = Cli(address2, {"import-history", bad});
  EXPECT_EQ(refused.exit_code, 1) << refused.all();
  EXPECT_THAT(refused.err, HasSubstr(bad + ":"));
  EXPECT_THAT(refused.err,
              HasSubstr(": experiments[0].attempt.seed: expected an unsigned "
                        "integer"));
  const std::string empty = dir_ / "empty.yaml";
  ASSERT_EQ(Cli(address2, {"export-history", empty}).exit_code, 0);
  EXPECT_THAT(testing::ReadFile(empty), HasSubstr("experiments: []"));

  testing::CommandResult imported = Cli(address2, {"import-history", a});
  ASSERT_EQ(imported.exit_code, 0) << imported.all();
  EXPECT_THAT(imported.out, HasSubstr("imported 1 experiment(s) from " + a +
                                      "; 0 already present"));
  testing::CommandResult again = Cli(address2, {"import-history", a});
  ASSERT_EQ(again.exit_code, 0) << again.all();
  EXPECT_THAT(again.out, HasSubstr("imported 0 experiment(s) from " + a +
                                   "; 1 already present"));

  // The file travelling back to the store it came from adds nothing either.
  testing::CommandResult home = Cli(address, {"import-history", a});
  ASSERT_EQ(home.exit_code, 0) << home.all();
  EXPECT_THAT(home.out, HasSubstr("imported 0 experiment(s) from " + a +
                                  "; 1 already present"));

  const std::string b = dir_ / "b.yaml";
  ASSERT_EQ(Cli(address2, {"export-history", b}).exit_code, 0);
  EXPECT_EQ(testing::ReadFile(b), file_a);
  // The imported history answers history questions like the original.
  testing::CommandResult table2 =
      Cli(address2, {"history", "--benchmark", "sleepy"});
  EXPECT_EQ(table2.out, table.out);
  second.reset();
}

}  // namespace
}  // namespace benchfleet
