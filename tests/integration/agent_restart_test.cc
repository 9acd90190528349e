// No orphans across an agent restart, with the real binaries: a
// benchfleet-agent is SIGKILLed while its job (and a daemon the job started
// with setsid) runs; the processes survive it (the kernel re-parents them);
// the restarted agent kills them before it accepts work and logs their pids
// and commands.
#include <signal.h>
#include <sys/types.h>

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

// The job starts a daemon that leaves its session, then sleeps; both with
// arguments no other test uses.
constexpr const char* kSpec = R"(apiVersion: benchfleet/v1
kind: Experiment
name: restart-orphans
benchmark:
  command: setsid -f sleep 3051; exec sleep 3052
  inputs: [{name: one, path: inputs/tiny.txt}]
  warmup: 0
  runs: 10
  timeout: 2m
variants:
  - {name: baseline}
  - {name: other}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

// Live processes whose command line is exactly `sleep <arg>`.
std::vector<pid_t> Sleepers(const std::string& arg) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = 0;
    try {
      pid = std::stoi(entry.path().filename().string());
    } catch (...) {
      continue;
    }
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos || paren + 2 >= line.size() ||
        line[paren + 2] == 'Z') {
      continue;
    }
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
    if (argv.size() == 2 &&
        std::filesystem::path(argv[0]).filename() == "sleep" &&
        argv[1] == arg) {
      out.push_back(pid);
    }
  }
  return out;
}

bool Alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() &&
         line[paren + 2] != 'Z';
}

class AgentRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::CopyExamples(work_.path());
    testing::WriteFile(work_ / "restart.yaml", kSpec);
    address_ = absl::StrCat("127.0.0.1:", testing::FreePort());
  }

  CommandResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BENCHFLEET_CLI, "--controller", address_};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, logs_.path());
  }

  std::vector<std::string> AgentArgv() {
    return {BENCHFLEET_AGENT,
            "--controller",
            address_,
            "--id",
            "restart-agent",
            "--workdir",
            state_ / "agent",
            "--lock-file",
            state_ / "agent.lock",
            "--max-competing-cpu",
            "0",
            "--sample-hz",
            "0"};
  }

  TempDir work_, state_, logs_;
  std::string address_;
};

TEST_F(AgentRestartTest, NothingTheKilledAgentsJobStartedSurvivesTheRestart) {
  Daemon controller({BENCHFLEET_CONTROLLER, "--listen", address_, "--store",
                     "sqlite://" + (state_ / "controller.db")},
                    logs_ / "controller.log");
  // Not a Daemon: the test kills and reaps it itself.
  const pid_t agent = testing::Spawn(AgentArgv(), logs_ / "agent1.log");
  ASSERT_GT(agent, 0);
  // Submit (retrying until the controller listens), then wait for the job
  // and its daemon.
  const absl::Time until = absl::Now() + absl::Seconds(60);
  CommandResult submitted;
  while (absl::Now() < until) {
    submitted = Cli({"--json", "submit", work_ / "restart.yaml"});
    if (submitted.exit_code != 3) break;  // 3: not listening yet
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(submitted.exit_code, 0) << submitted.all();
  std::vector<pid_t> daemon, job;
  while (absl::Now() < until && (daemon.empty() || job.empty())) {
    daemon = Sleepers("3051");
    job = Sleepers("3052");
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(daemon.size(), 1u) << testing::ReadFile(logs_ / "agent1.log");
  ASSERT_EQ(job.size(), 1u);

  // The agent dies without a chance to clean up.
  ASSERT_EQ(kill(agent, SIGKILL), 0);
  EXPECT_EQ(testing::WaitFor(agent, absl::Seconds(30)), 128 + SIGKILL);
  // Both outlive it: what the restart must clean up (the test can fail).
  EXPECT_TRUE(Alive(daemon[0]));
  EXPECT_TRUE(Alive(job[0]));

  Daemon restarted(AgentArgv(), logs_ / "agent2.log");
  const absl::Time gone_by = absl::Now() + absl::Seconds(60);
  while (absl::Now() < gone_by && (Alive(daemon[0]) || Alive(job[0]))) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(Alive(daemon[0])) << "the daemon survived the restart";
  EXPECT_FALSE(Alive(job[0])) << "the job survived the restart";
  // The restarted agent logs what it killed, pids and commands.
  std::string log;
  const absl::Time logged_by = absl::Now() + absl::Seconds(30);
  while (absl::Now() < logged_by &&
         log.find("left by jobs of a previous run") == std::string::npos) {
    log = testing::ReadFile(logs_ / "agent2.log");
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_NE(log.find("left by jobs of a previous run"), std::string::npos)
      << log;
  EXPECT_NE(log.find(absl::StrCat(daemon[0], " sleep 3051")), std::string::npos)
      << log;
  EXPECT_NE(log.find(absl::StrCat(job[0], " sleep 3052")), std::string::npos)
      << log;
  Cli({"cancel", "1"});
  restarted.Stop();
  controller.Stop();
}

}  // namespace
}  // namespace benchfleet
