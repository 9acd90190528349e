// End to end with the three real binaries: benchfleet-controller and
// benchfleet-agent as separate processes talking gRPC over TCP on loopback,
// driven by the benchfleet CLI.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::CommandResult;
using ::benchfleet::testing::Daemon;
using ::benchfleet::testing::RunCommand;
using ::benchfleet::testing::TempDir;

constexpr const char* kTwoVariantSpec = R"(apiVersion: benchfleet/v1
kind: Experiment
name: e2e-fast-path
setup: mkdir -p .bin && cc -O2 -o .bin/demo programs/demo.c
benchmark:
  argv: [.bin/demo, --mode, baseline, "{input}"]
  inputs:
    - {name: tiny, path: inputs/tiny.txt}
    - {name: small, path: inputs/small.txt}
    - {name: typical, path: inputs/typical.txt}
    - {name: large, path: inputs/large.txt}
    - {name: huge, path: inputs/huge.txt}
  warmup: 1
  runs: 10
variants:
  - {name: baseline}
  - {name: fast, argv: [.bin/demo, --mode, fast, "{input}"]}
verdict: {max_cv: 30%}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

constexpr const char* kSleepSpec = R"(apiVersion: benchfleet/v1
kind: Experiment
name: e2e-sleeper
benchmark:
  command: sleep 3031
  inputs: [{name: one, path: inputs/tiny.txt}]
  warmup: 0
  runs: 10
  timeout: 2m
variants:
  - {name: baseline}
  - {name: other}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

// Whether a `sleep 3031` (the sleeper spec's run) is alive on this host.
bool SleeperRuns() {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
    if (argv.size() >= 2 &&
        std::filesystem::path(argv[0]).filename() == "sleep" &&
        argv[1] == "3031") {
      return true;
    }
  }
  return false;
}

class BinariesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::CopyExamples(work_.path());
    testing::WriteFile(work_ / "fast.yaml", kTwoVariantSpec);
    testing::WriteFile(work_ / "sleep.yaml", kSleepSpec);
    address_ = absl::StrCat("127.0.0.1:", testing::FreePort());
  }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BENCHFLEET_CLI, "--controller", address_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, logs_.path());
  }

  void StartFleet() {
    controller_ = std::make_unique<Daemon>(
        std::vector<std::string>{BENCHFLEET_CONTROLLER, "--listen", address_,
                                 "--store",
                                 "sqlite://" + (state_ / "controller.db")},
        logs_ / "controller.log");
    agent_ = std::make_unique<Daemon>(
        std::vector<std::string>{
            BENCHFLEET_AGENT, "--controller", address_, "--id", "e2e-agent",
            "--labels", "pool=e2e", "--workdir", state_ / "agent",
            "--lock-file", state_ / "agent.lock", "--max-competing-cpu", "0"},
        logs_ / "agent.log");
    // Wait until the agent is registered and connected.
    const absl::Time until = absl::Now() + absl::Seconds(20);
    while (absl::Now() < until) {
      CommandResult r = Cli({"--json", "agents"});
      if (r.exit_code == 0) {
        nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
        if (j.contains("agents") && !j["agents"].empty() &&
            j["agents"][0]["connected"] == true) {
          return;
        }
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "the agent never connected; controller log:\n"
           << testing::ReadFile(logs_ / "controller.log") << "\nagent log:\n"
           << testing::ReadFile(logs_ / "agent.log");
  }

  nlohmann::json Show(int id) {
    CommandResult r = Cli({"--json", "show", std::to_string(id)});
    EXPECT_EQ(r.exit_code, 0) << r.all();
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  TempDir work_, state_, logs_;
  std::string address_;
  std::unique_ptr<Daemon> controller_, agent_;
};

TEST_F(BinariesTest, ValidateReportsLocatedErrorsWithExitCodes) {
  CommandResult ok = RunCommand(
      {BENCHFLEET_CLI, "validate", work_ / "fast.yaml"}, logs_.path());
  EXPECT_EQ(ok.exit_code, 0) << ok.all();
  EXPECT_NE(ok.all().find("valid"), std::string::npos);

  testing::WriteFile(
      work_ / "bad.yaml",
      "apiVersion: benchfleet/v1\nkind: Experiment\nname: bad\nbenchmark:\n"
      "  command: x\n  runs: ten\n");
  CommandResult bad = RunCommand(
      {BENCHFLEET_CLI, "validate", work_ / "bad.yaml"}, logs_.path());
  EXPECT_EQ(bad.exit_code, 1) << bad.all();
  EXPECT_NE(bad.all().find("bad.yaml:6:"), std::string::npos) << bad.all();

  CommandResult usage = RunCommand({BENCHFLEET_CLI, "validate"}, logs_.path());
  EXPECT_EQ(usage.exit_code, 2) << usage.all();
  CommandResult unknown =
      RunCommand({BENCHFLEET_CLI, "frobnicate"}, logs_.path());
  EXPECT_EQ(unknown.exit_code, 2) << unknown.all();
}

TEST_F(BinariesTest, UnreachableControllerExitsWithThree) {
  CommandResult r = Cli({"list"});  // nothing listens on address_
  EXPECT_EQ(r.exit_code, 3) << r.all();
  EXPECT_NE(r.all().find("cannot reach the controller"), std::string::npos)
      << r.all();
}

TEST_F(BinariesTest, SubmitWatchShowListCancelOverTcp) {
  StartFleet();
  CommandResult agents = Cli({"agents"});
  EXPECT_EQ(agents.exit_code, 0);
  EXPECT_NE(agents.all().find("e2e-agent"), std::string::npos) << agents.all();
  EXPECT_NE(agents.all().find("pool=e2e"), std::string::npos) << agents.all();

  CommandResult run = Cli({"submit", work_ / "fast.yaml", "--watch"});
  ASSERT_EQ(run.exit_code, 0)
      << run.all() << testing::ReadFile(logs_ / "agent.log");
  EXPECT_NE(run.all().find("Experiment 001: e2e-fast-path"), std::string::npos)
      << run.all();
  EXPECT_NE(run.all().find("Verdict: KEEP"), std::string::npos) << run.all();
  EXPECT_NE(run.all().find("steps"), std::string::npos) << "no live progress:\n"
                                                        << run.all();

  nlohmann::json shown = Show(1);
  EXPECT_EQ(shown["state"], "done");
  EXPECT_EQ(shown["report"]["candidates"][0]["verdict"], "KEEP");
  EXPECT_EQ(shown["report"]["candidates"][0]["inputs"].size(), 5u);

  CommandResult list = Cli({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.all().find("e2e-fast-path"), std::string::npos) << list.all();
  EXPECT_NE(list.all().find("done"), std::string::npos) << list.all();

  // A long experiment is cancelled while it runs; the agent is freed for the
  // next one.
  CommandResult submitted = Cli({"--json", "submit", work_ / "sleep.yaml"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.all();
  // Proto3's JSON mapping writes int64 as a string.
  const int sleeper = std::stoi(
      nlohmann::json::parse(submitted.out)["experiment_id"].get<std::string>());
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until && Show(sleeper)["state"] != "running") {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(Show(sleeper)["state"], "running");
  CommandResult cancel = Cli({"cancel", std::to_string(sleeper)});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.all();
  EXPECT_EQ(Show(sleeper)["state"], "cancelled");
  // The agent's `sleep 3031` was killed (not left to its 2 min timeout), and
  // the agent takes the next experiment.
  const absl::Time killed_by = absl::Now() + absl::Seconds(20);
  while (absl::Now() < killed_by && SleeperRuns()) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_FALSE(SleeperRuns()) << "the cancelled run's process is still there";
  CommandResult again = Cli({"submit", work_ / "fast.yaml", "--watch"});
  EXPECT_EQ(again.exit_code, 0) << again.all();

  CommandResult missing = Cli({"show", "999"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.all().find("no experiment with id 999"), std::string::npos)
      << missing.all();

  // A second agent on the same host is refused by the host lock.
  CommandResult second = RunCommand(
      {BENCHFLEET_AGENT, "--controller", address_, "--id", "second",
       "--lock-file", state_ / "agent.lock", "--workdir", state_ / "agent2"},
      logs_.path(), absl::Seconds(10));
  EXPECT_EQ(second.exit_code, 1) << second.all();
  EXPECT_NE(second.all().find("agent.lock is locked by pid " +
                              std::to_string(agent_->pid())),
            std::string::npos)
      << second.all();

  EXPECT_EQ(agent_->Stop(), 0);
  EXPECT_EQ(controller_->Stop(), 0);
}

}  // namespace
}  // namespace benchfleet
