// `benchfleet cancel ID` on a running experiment, through the real CLI and
// the local fleet: the run's whole process group (a child it started in the
// background included) is gone within 2 s, the experiment is cancelled with
// the reason, and the host is free: the next queued experiment starts on it
// at once.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"
#include "tests/testing/local_fleet.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;

// Each run starts a background sleeper, records both pids, and waits.
constexpr char kSlowSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: slow
benchmark:
  command: "sleep 3091 & echo $! > DIR/child.pid; echo $$ > DIR/run.pid; wait"
  inputs: [{name: one, path: inputs/one}]
  warmup: 0
  runs: 10
  timeout: 10m
correctness: {compare: none}
variants:
  - {name: base}
  - {name: same}
verdict: {max_cv: 1000%}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

constexpr char kQuickSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: quick
benchmark:
  command: "true"
  inputs: [{name: one, path: inputs/one}]
  warmup: 0
  runs: 10
correctness: {compare: none}
variants:
  - {name: base}
  - {name: same}
verdict: {max_cv: 1000%}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

bool Alive(pid_t pid) {
  const std::string stat =
      testing::ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z';
}

pid_t PidIn(const std::string& path) {
  int pid = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(testing::ReadFile(path)),
                          &pid)
             ? pid
             : 0;
}

class CancelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* build = std::getenv("BENCHFLEET_BUILD_DIR");
    ASSERT_NE(build, nullptr) << "run through ctest (BENCHFLEET_BUILD_DIR)";
    cli_ = std::string(build) + "/cli/benchfleet";
    fs::create_directories(dir_ / "work/inputs");
    testing::WriteFile(dir_ / "work/inputs/one", "1\n");
    fleet_ = testing::LocalFleet::Start(dir_ / "fleet");
    ASSERT_NE(fleet_, nullptr);
  }

  void TearDown() override {
    for (const char* f : {"run.pid", "child.pid"}) {
      const pid_t pid = PidIn(dir_ / ("work/" + std::string(f)));
      if (pid > 0 && Alive(pid)) kill(pid, SIGKILL);
    }
  }

  testing::TempDir dir_;
  std::string cli_;
  std::unique_ptr<testing::LocalFleet> fleet_;
};

TEST_F(CancelTest, CancelEndsTheRunningProcessGroupWithinTwoSecondsAndFrees) {
  std::string slow = kSlowSpec;
  for (size_t at; (at = slow.find("DIR")) != std::string::npos;)
    slow.replace(at, 3, dir_ / "work");
  const int64_t slow_id =
      fleet_->Submit(slow, dir_ / "work/slow.yaml", dir_ / "work");
  ASSERT_NE(slow_id, 0);
  const int64_t quick_id =
      fleet_->Submit(kQuickSpec, dir_ / "work/quick.yaml", dir_ / "work");
  ASSERT_NE(quick_id, 0);

  // The first run is under way: both its processes exist.
  pid_t run = 0, child = 0;
  const absl::Time started_by = absl::Now() + absl::Seconds(60);
  while ((run == 0 || child == 0) && absl::Now() < started_by) {
    run = PidIn(dir_ / "work/run.pid");
    child = PidIn(dir_ / "work/child.pid");
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GT(run, 0);
  ASSERT_GT(child, 0);
  ASSERT_TRUE(Alive(run));

  const absl::Time asked = absl::Now();
  testing::CommandResult cancel =
      testing::RunCommand({cli_, "--controller", fleet_->address(), "cancel",
                           absl::StrCat(slow_id)},
                          dir_.path(), absl::Seconds(30));
  ASSERT_EQ(cancel.exit_code, 0) << cancel.all();
  while ((Alive(run) || Alive(child)) &&
         absl::Now() < asked + absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  const absl::Duration gone = absl::Now() - asked;
  EXPECT_FALSE(Alive(run));
  EXPECT_FALSE(Alive(child)) << "the run's background child outlived it";
  EXPECT_LE(gone, absl::Seconds(2)) << "its process group took " << gone;

  v1::Experiment cancelled = testing::GetExperiment(fleet_->stub(), slow_id);
  EXPECT_EQ(cancelled.state(), "cancelled") << cancelled.state_reason();

  // The host is free: the queued experiment runs to its end on it.
  v1::Experiment next = fleet_->Watch(quick_id, std::chrono::seconds(120));
  EXPECT_EQ(next.state(), "done") << next.state_reason();
  std::cout << "cancel_test: process group gone " << absl::FormatDuration(gone)
            << " after the cancel was asked\n";
}

}  // namespace
}  // namespace benchfleet
