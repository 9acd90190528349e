// What an attempt records about its host, end to end: an in-process controller
// and agent over loopback gRPC, real child processes, the real probe over the
// real /proc, a real SQLite store.
//  - the environment record (host facts, toolchain versions, the work
//    directory's commit, fingerprint) reaches the attempt, GetExperiment and
//    `benchfleet show ID --env`;
//  - a competing process that appears while a measured run executes gets the
//    run flagged "contended" and re-run, and the experiment still ends with
//    its verdict.
#include <grpcpp/create_channel.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "common/fingerprint.h"
#include "controller/controller.h"
#include "controller/store/sqlite_store.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fleet_client.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

// Waits for `done` to hold, checking every 20 ms, for at most `timeout`.
template <typename Fn>
bool WaitUntil(Fn done, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

std::string Sh(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

// A CPU hog that is not a descendant of this process (which is also the
// agent, whose descendants are the job and never competition): started by a
// shell that exits at once, so the hog is re-parented. Killed on destruction.
// The agent's runner makes this process a child subreaper (no orphans), which
// would re-parent the hog to us, make it the agent's own work and have the
// end-of-run sweep kill it: the subreaper bit is off while the shell exits.
class Hog {
 public:
  explicit Hog(const std::string& dir) {
    int subreaper = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    Start(dir);
    prctl(PR_SET_CHILD_SUBREAPER, subreaper, 0, 0, 0);
  }
  ~Hog() { Kill(); }
  void Kill() {
    if (pid_ > 0) kill(pid_, SIGKILL);
    pid_ = 0;
  }
  pid_t pid() const { return pid_; }
  // Its parent (from /proc/PID/stat), to check that it is not ours.
  pid_t Parent() const {
    std::ifstream in(absl::StrCat("/proc/", pid_, "/stat"));
    std::string line;
    std::getline(in, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid = -1;
    rest >> state >> ppid;
    return ppid;
  }

 private:
  void Start(const std::string& dir) {
    const std::string pid_file = dir + "/hog.pid";
    const pid_t sh = testing::Spawn(
        {"/bin/sh", "-c",
         absl::StrCat("(while :; do :; done) </dev/null >/dev/null 2>&1 & "
                      "echo $! > '",
                      pid_file, "'")},
        dir + "/hog.log");
    if (sh <= 0 || testing::WaitFor(sh, absl::Seconds(30)) != 0) return;
    std::ifstream(pid_file) >> pid_;
  }

  pid_t pid_ = 0;
};

class AttemptHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);
    channel_ = grpc::CreateCustomChannel(controller_->address(),
                                         grpc::InsecureChannelCredentials(),
                                         MakeChannelArguments());
    stub_ = v1::FleetService::NewStub(channel_);
  }

  AgentOptions DefaultAgentOptions() {
    AgentOptions aopts;
    aopts.controller = controller_->address();
    aopts.id = "host-test-agent";
    aopts.workdir = dir_ / "agent";
    aopts.lock_file = dir_ / "agent.lock";
    // Other tests and builds share this machine: the gate that waits for a
    // quiet host before each run would only add waiting here.
    aopts.max_competing_cpu = 0;
    return aopts;
  }

  void StartAgent(const AgentOptions& aopts) {
    auto agent = Agent::Create(aopts, &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    agent_thread_ = std::thread([this] { EXPECT_TRUE(agent_->Run().ok()); });
  }

  void TearDown() override {
    if (agent_) agent_->Shutdown();
    if (agent_thread_.joinable()) agent_thread_.join();
    agent_.reset();
    controller_.reset();
  }

  int64_t Submit(const std::string& yaml) {
    return testing::SubmitSpec(*stub_, yaml, "host-test.yaml", workdir_.path())
        .experiment_id();
  }
  v1::Experiment Watch(int64_t id) { return testing::WatchToEnd(*stub_, id); }
  v1::Experiment Get(int64_t id) { return testing::GetExperiment(*stub_, id); }

  TempDir dir_;
  TempDir workdir_;
  PosixProcessRunner runner_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Agent> agent_;
  std::thread agent_thread_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

constexpr char kQuickSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: env-record
benchmark:
  command: "date +%s%N >> steps.log; sleep 0.01"
  inputs: [{name: short, path: inputs/short}]
  warmup: 0
  runs: 10
variants:
  - {name: baseline}
  - {name: same}
# Runs of ~15 ms on a loaded machine: a candidate run two scheduler hiccups
# long must not be killed (that aborts its remaining runs), so kill_factor is
# out of reach.
verdict: {max_cv: 1000%, kill_factor: 1000}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

TEST_F(AttemptHostTest, AttemptRecordsItsEnvironmentWithFingerprintAndCommit) {
  if (Sh("git --version >/dev/null 2>&1 && echo yes") != "yes")
    GTEST_SKIP() << "git is not installed";
  // The work directory is a git work tree with a commit and a local change.
  std::filesystem::create_directories(workdir_ / "inputs");
  testing::WriteFile(workdir_ / "inputs/short", "");
  testing::WriteFile(workdir_ / "notes.txt", "one\n");
  const std::string git =
      absl::StrCat("cd '", workdir_.path(),
                   "' && git -c user.name=t -c user.email=t@example.com ");
  Sh(absl::StrCat("cd '", workdir_.path(), "' && git init -q ."));
  Sh(git + "add -A && " + git + "commit -q -m one");
  const std::string head =
      Sh(absl::StrCat("cd '", workdir_.path(), "' && git rev-parse HEAD"));
  ASSERT_EQ(head.size(), 40u);
  testing::WriteFile(workdir_ / "notes.txt", "two\n");

  AgentOptions aopts = DefaultAgentOptions();
  aopts.labels = {{"rack", "r7"}};
  aopts.toolchain = {
      {"echo-tool", "echo echo-tool 7.1"},
      {"missing", "benchfleet-no-such-tool-3f9a --version"},
      {"here", "pwd"},
      // Prints when it ended: every step must start after that.
      {"stamp", "sh -c 'sleep 0.3; date +%s%N'"},
  };
  StartAgent(aopts);
  const int64_t id = Submit(kQuickSpec);
  v1::Experiment done = Watch(id);
  ASSERT_EQ(done.state(), "done") << done.state_reason();

  v1::Experiment e = Get(id);
  ASSERT_EQ(e.attempt_list_size(), 1);
  const v1::Attempt& a = e.attempt_list(0);
  EXPECT_EQ(a.agent_id(), "host-test-agent");
  EXPECT_EQ(a.state(), "done");
  EXPECT_GT(a.started_at_unix_ms(), 0);
  EXPECT_GE(a.ended_at_unix_ms(), a.started_at_unix_ms());
  const nlohmann::json env = nlohmann::json::parse(a.environment_json());

  // The contract other tools rely on.
  for (const char* key :
       {"seed", "agent_id", "hostname", "cpu_model", "cpu_cores",
        "memory_bytes", "os", "kernel", "labels", "gpus", "governor", "turbo",
        "toolchain", "commit", "dirty", "fingerprint"}) {
    EXPECT_TRUE(env.contains(key)) << key << " missing from " << env.dump();
  }
  EXPECT_EQ(env["agent_id"], "host-test-agent");
  EXPECT_EQ(env["labels"]["rack"], "r7");
  EXPECT_EQ(env["commit"], head);
  EXPECT_EQ(env["dirty"], true);
  EXPECT_TRUE(env["gpus"].is_array());
  EXPECT_GT(env["cpu_cores"].get<int>(), 0);
  EXPECT_GT(env["memory_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(env["toolchain"]["echo-tool"], "echo-tool 7.1");
  EXPECT_EQ(env["toolchain"]["missing"], "not found");
  // Toolchain commands run in the experiment's work directory.
  EXPECT_EQ(env["toolchain"]["here"],
            std::filesystem::canonical(workdir_.path()).string());
  EXPECT_EQ(env["toolchain"].size(), 4u);
  // The toolchain commands ran while the agent accepted the lease, before the
  // first step (never overlapping a step).
  const int64_t stamp_ns =
      std::stoll(env["toolchain"]["stamp"].get<std::string>());
  std::ifstream steps(workdir_ / "steps.log");
  int64_t step_ns = 0;
  int steps_seen = 0;
  while (steps >> step_ns) {
    ++steps_seen;
    EXPECT_GT(step_ns, stamp_ns)
        << "a step started before the toolchain command ended";
  }
  EXPECT_GE(steps_seen, 20)  // more when a disturbed run was repeated
      << done.report_text();
  char hostname[256] = {};
  gethostname(hostname, sizeof(hostname) - 1);
  EXPECT_EQ(env["hostname"], hostname);

  // The fingerprint covers what was recorded (including the agent's report).
  HostEnvironment h;
  h.cpu_model = env["cpu_model"];
  h.cpu_cores = env["cpu_cores"];
  h.memory_bytes = env["memory_bytes"];
  h.os = env["os"];
  h.kernel = env["kernel"];
  h.governor = env["governor"];
  h.turbo = env["turbo"];
  for (const auto& g : env["gpus"])
    h.gpus.push_back({g["name"], g["uuid"], g["memory_total_bytes"]});
  h.toolchain = env["toolchain"].get<std::map<std::string, std::string>>();
  const std::string fp = env["fingerprint"];
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp, HostFingerprint(h));
  h.toolchain.clear();
  EXPECT_NE(fp, HostFingerprint(h)) << "the toolchain must be part of it";

  // `benchfleet show ID --env`, readable and as JSON.
  const char* build_dir = std::getenv("BENCHFLEET_BUILD_DIR");
  if (build_dir == nullptr) GTEST_SKIP() << "BENCHFLEET_BUILD_DIR is not set";
  const std::string cli = std::string(build_dir) + "/cli/benchfleet";
  ASSERT_TRUE(Exists(cli)) << cli;
  const std::string text = Sh(absl::StrCat(
      cli, " --controller ", controller_->address(), " show ", id, " --env"));
  EXPECT_NE(
      text.find(absl::StrCat("Attempt ", a.id(), " · agent host-test-agent")),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("Fingerprint: " + fp), std::string::npos) << text;
  EXPECT_NE(text.find("commit " + head + " (uncommitted changes)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("\n  Toolchain:   echo-tool  echo-tool 7.1\n"),
            std::string::npos)
      << text;
  // Tools after the first line up under it, without a label.
  EXPECT_NE(text.find("\n               missing    not found\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("rack=r7"), std::string::npos) << text;
  const std::string json_text =
      Sh(absl::StrCat(cli, " --controller ", controller_->address(),
                      " --json show ", id, " --env"));
  const nlohmann::json j = nlohmann::json::parse(json_text, nullptr, false);
  ASSERT_TRUE(j.is_object()) << json_text;
  EXPECT_EQ(j["experiment_id"], id);
  ASSERT_EQ(j["attempts"].size(), 1u);
  EXPECT_EQ(j["attempts"][0]["environment"]["fingerprint"], fp);
  EXPECT_EQ(j["attempts"][0]["environment"]["commit"], head);
}

// The benchmark: sleeps for the variant's time. The second measured run of
// the baseline announces itself (marked-started), waits until the test has
// started the competing process, runs for a few seconds with it, then
// announces its end (marked-ended).
constexpr char kBenchScript[] = R"(#!/bin/sh
variant=$1
if [ "$variant" = baseline ]; then
  n=$(cat baseline.count 2>/dev/null || echo 0)
  n=$((n + 1))
  echo $n > baseline.count
  if [ "$n" = 2 ]; then
    : > marked-started
    i=0
    while [ ! -e hog-running ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
    sleep 4
    : > marked-ended
  fi
  sleep 0.2
else
  sleep 0.1
fi
)";

constexpr char kContendedSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: contended-rerun
benchmark:
  command: "sh bench.sh baseline"
  inputs: [{name: one, path: inputs/one}]
  warmup: 0
  runs: 10
variants:
  - {name: baseline}
  - {name: faster, command: "sh bench.sh faster"}
verdict: {max_cv: 1000%}
gates: {cooldown: 0s, max_load: 64, max_wait: 2m}
)";

TEST_F(AttemptHostTest, CompetingProcessMidRunIsFlaggedContendedAndReRun) {
  std::filesystem::create_directories(workdir_ / "inputs");
  testing::WriteFile(workdir_ / "inputs/one", "");
  testing::WriteFile(workdir_ / "bench.sh", kBenchScript);

  AgentOptions aopts = DefaultAgentOptions();
  aopts.toolchain.clear();
  aopts.sample_interval = absl::Milliseconds(50);
  // The flag's threshold for one competing process. The hog wants a whole
  // core; on a 2-core machine shared with compilers it still gets several
  // times this much.
  aopts.contended_cpu_cores = 0.05;
  StartAgent(aopts);
  const int64_t id = Submit(kContendedSpec);

  // The marked run started: bring in the competition for as long as it runs.
  ASSERT_TRUE(WaitUntil([&] { return Exists(workdir_ / "marked-started"); },
                        absl::Minutes(2)))
      << "the marked run never started";
  Hog hog(dir_.path());
  ASSERT_GT(hog.pid(), 0) << "could not start the competing process";
  ASSERT_NE(hog.Parent(), getpid());
  testing::WriteFile(workdir_ / "hog-running", "");
  ASSERT_TRUE(WaitUntil([&] { return Exists(workdir_ / "marked-ended"); },
                        absl::Minutes(2)));
  const pid_t hog_pid = hog.pid();
  hog.Kill();

  v1::Experiment e = Watch(id);
  ASSERT_EQ(e.state(), "done") << e.state_reason();
  const nlohmann::json report = nlohmann::json::parse(e.report_json());
  // The run was flagged and repeated, and the report says so.
  EXPECT_GE(report["reruns"].get<int>(), 1) << e.report_text();
  ASSERT_TRUE(report["host_flags"].contains("contended")) << report.dump();
  EXPECT_GE(report["host_flags"]["contended"].get<int>(), 1);
  EXPECT_NE(e.report_text().find("Re-runs: "), std::string::npos)
      << e.report_text();
  // The verdict still stands: the candidate sleeps half as long.
  ASSERT_EQ(report["candidates"].size(), 1u);
  EXPECT_EQ(report["candidates"][0]["variant"], "faster");
  EXPECT_EQ(report["candidates"][0]["verdict"], "KEEP") << e.report_text();

  // The agent's probe saw the hog itself (not only the machine's other load):
  // a sample taken during the marked run names its pid among the busiest
  // competing processes, above the flag's threshold.
  SqliteOptions sopts;
  sopts.path = dir_ / "fleet.db";
  auto store = SqliteStore::Open(sopts);
  ASSERT_TRUE(store.ok()) << store.status();
  v1::Experiment full = Get(id);
  ASSERT_EQ(full.attempt_list_size(), 1);
  auto samples = (*store)->ListSamples(full.attempt_list(0).id());
  ASSERT_TRUE(samples.ok()) << samples.status();
  double hog_cores = 0;
  for (const SampleRecord& s : *samples) {
    if (s.detail_json.empty()) continue;
    const nlohmann::json d =
        nlohmann::json::parse(s.detail_json, nullptr, false);
    if (!d.is_object() || !d.contains("top_processes")) continue;
    for (const auto& p : d["top_processes"]) {
      if (p.value("pid", 0) == hog_pid)
        hog_cores = std::max(hog_cores, p.value("cpu_cores", 0.0));
    }
  }
  EXPECT_GT(hog_cores, aopts.contended_cpu_cores)
      << "the probe never attributed CPU to the competing process (pid "
      << hog_pid << ")";
}

}  // namespace
}  // namespace benchfleet
