// A host that is not ready gives no verdict (DESIGN.md §4), end to end: two
// real agents on one in-process controller over gRPC, each with its own fake
// /proc+/sys tree (the probe's test seam). The candidate's setup heats the
// first agent's CPU sensor past the spec's gate, so the gate before the
// candidate's first measured run cannot be met within max_wait: that attempt
// ends "host-not-ready" (never REJECT, never a failure) and the experiment
// completes on the second agent with the verdict the programs deserve.
#include <grpcpp/create_channel.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "common/spec_loader.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/controller.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;
using ::testing::HasSubstr;

constexpr char kHotSensor[] = "sys/class/thermal/thermal_zone1/temp";

// The spec, with HOT_FILE for the sensor to heat and SEED for the order.
constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: not-ready
setup: "true"
benchmark:
  argv: [/bin/sleep, "0.030"]
  inputs: [{name: one, path: one.txt}]
  warmup: 0
  runs: 10
  max_runs: 10
  seed: SEED
correctness: {compare: none}
variants:
  - {name: base}
  - name: fast
    argv: [/bin/sleep, "0.020"]
    setup: 'if [ "$BENCHFLEET_AGENT_ID" = a-hot ]; then echo 95000 > HOT_FILE; fi'
gates: {cooldown: 0s, max_cpu_temp_c: 70, max_wait: 2s}
)";

// A seed whose first measured run is the candidate's: the gate that blocks is
// the one before a candidate run, the case that used to be called REJECT.
std::optional<uint64_t> SeedWithCandidateFirst(const std::string& yaml,
                                               const std::string& workdir) {
  for (uint64_t seed = 1; seed < 100; ++seed) {
    const std::string text =
        absl::StrReplaceAll(yaml, {{"SEED", std::to_string(seed)}});
    SpecLoadOptions opts;
    opts.base_dir = workdir;
    absl::StatusOr<ExperimentSpec> spec = ParseSpec(text, "spec.yaml", opts);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (!spec.ok()) return std::nullopt;
    AttemptDriver driver(*spec, seed, 1);
    while (std::optional<PlannedStep> step = driver.Next()) {
      if (step->kind == StepKind::kMeasure) {
        if (step->variant == "fast") return seed;
        break;
      }
      StepOutcome ok;
      ok.seq = step->seq;
      driver.OnResult(ok);
    }
  }
  return std::nullopt;
}

struct TestAgent {
  TempDir dir;
  std::string tree;
  std::unique_ptr<Agent> agent;
  std::thread thread;
};

class HostNotReadyTest : public ::testing::Test {
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

  void StartAgent(TestAgent& a, const std::string& id) {
    a.tree = a.dir / "tree";
    std::filesystem::copy(std::string(BF_PROBE_TREES) + "/intel", a.tree,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::copy_symlinks);
    // A quiet host otherwise: the fixture's load average would trip the
    // spec's default load gate.
    std::ofstream(a.tree + "/proc/loadavg") << "0.05 0.05 0.05 1/811 12345\n";
    AgentOptions o;
    o.controller = controller_->address();
    o.id = id;
    o.workdir = a.dir / "work";
    o.lock_file = a.dir / "agent.lock";
    o.probe_root = a.tree;
    // The fake /proc is a still picture: its processes' CPU time is not a
    // rate. This test is about the temperature gate only.
    o.max_competing_cpu = 0;
    o.nvml_library = "";  // no GPUs: only the fake tree speaks for the host
    o.toolchain = {};
    auto agent = Agent::Create(o, &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    a.agent = std::move(*agent);
    Agent* raw = a.agent.get();
    a.thread = std::thread([raw] { EXPECT_TRUE(raw->Run().ok()); });
  }

  void TearDown() override {
    for (TestAgent* a : {&hot_, &cool_}) {
      if (a->agent) a->agent->Shutdown();
      if (a->thread.joinable()) a->thread.join();
      a->agent.reset();
    }
    controller_.reset();
  }

  TempDir dir_;
  TempDir workdir_;
  PosixProcessRunner runner_;
  std::unique_ptr<Controller> controller_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
  TestAgent hot_, cool_;
};

TEST_F(HostNotReadyTest, GateNotMetBeforeACandidateRunGoesToAnotherHost) {
  std::ofstream(workdir_ / "one.txt") << "input\n";
  // "a-hot" sorts first: with both idle, it is offered the experiment first.
  StartAgent(hot_, "a-hot");
  StartAgent(cool_, "b-cool");
  const std::string hot_file = hot_.tree + "/" + kHotSensor;
  const std::string yaml = absl::StrReplaceAll(kSpec, {{"HOT_FILE", hot_file}});
  const std::optional<uint64_t> seed =
      SeedWithCandidateFirst(yaml, workdir_.path());
  ASSERT_TRUE(seed.has_value());
  // Both agents registered before the submission.
  for (int i = 0; i < 500; ++i) {
    v1::ListAgentsRequest req;
    v1::ListAgentsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    ASSERT_TRUE(stub_->ListAgents(&ctx, req, &resp).ok());
    int connected = 0;
    for (const v1::Agent& a : resp.agents()) connected += a.connected();
    if (connected == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  const v1::SubmitResponse submitted = testing::SubmitSpec(
      *stub_, absl::StrReplaceAll(yaml, {{"SEED", std::to_string(*seed)}}),
      "not-ready.yaml", workdir_.path());
  ASSERT_GT(submitted.experiment_id(), 0) << submitted.DebugString();
  testing::WatchToEnd(*stub_, submitted.experiment_id());
  const v1::Experiment done =
      testing::GetExperiment(*stub_, submitted.experiment_id());

  ASSERT_EQ(done.state(), "done") << done.DebugString();
  EXPECT_THAT(done.report_text(), HasSubstr("Verdict: KEEP"))
      << done.report_text();
  EXPECT_THAT(done.report_text(), ::testing::Not(HasSubstr("REJECT")));
  ASSERT_EQ(done.attempt_list_size(), 2) << done.DebugString();
  const v1::Attempt& first = done.attempt_list(0);
  const v1::Attempt& second = done.attempt_list(1);
  EXPECT_EQ(first.agent_id(), "a-hot");
  EXPECT_EQ(first.state(), "host-not-ready");
  EXPECT_THAT(first.reason(), HasSubstr("host not ready before measure fast"));
  EXPECT_THAT(first.reason(), HasSubstr("95.0 °C"));
  EXPECT_EQ(second.agent_id(), "b-cool");
  EXPECT_EQ(second.state(), "done");
  // The experiment's own retry budget is untouched by the host.
  EXPECT_EQ(done.attempts(), 2);
}

}  // namespace
}  // namespace benchfleet
