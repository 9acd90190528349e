// Signed orders end to end (DESIGN.md §7): the real controller with a signing
// key and a real agent with its public key, over gRPC on loopback with real
// child processes, complete an experiment; an agent given another controller's
// public key refuses the orders and runs nothing (the spec's setup would leave
// a file behind).
#include <grpcpp/create_channel.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_replace.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "common/signing.h"
#include "controller/controller.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;
using ::testing::HasSubstr;

// MARKER is replaced by a path: the setup leaves it behind when it runs.
constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: signed
setup: "touch MARKER"
benchmark:
  command: "true"
  inputs: [{name: one, path: inputs/small.txt}]
  warmup: 0
  runs: 10
  max_runs: 10
correctness: {compare: none}
variants:
  - {name: base}
  - {name: same}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

class SignedOrdersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(GenerateSigningKeyPair(keys_ / "controller").ok());
    ASSERT_TRUE(GenerateSigningKeyPair(keys_ / "other").ok());
    testing::CopyExamples(workdir_.path());
  }
  void TearDown() override {
    if (agent_) agent_->Shutdown();
    if (agent_thread_.joinable()) agent_thread_.join();
    agent_.reset();
    controller_.reset();
  }

  // A controller signing with keys/controller, and an agent trusting
  // keys/`agent_trusts`.
  void Start(const std::string& agent_trusts) {
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.signing_key_file = keys_ / "controller/signing.key";
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);

    AgentOptions aopts;
    aopts.controller = controller_->address();
    aopts.id = "signed-agent";
    aopts.workdir = dir_ / "agent";
    aopts.lock_file = dir_ / "agent.lock";
    aopts.max_competing_cpu = 0;
    aopts.controller_public_key_file = keys_ / (agent_trusts + "/signing.pub");
    auto agent = Agent::Create(aopts, &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    agent_thread_ = std::thread([this] { EXPECT_TRUE(agent_->Run().ok()); });
    stub_ = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        controller_->address(), grpc::InsecureChannelCredentials(),
        MakeChannelArguments()));
  }

  int64_t Submit() {
    const std::string yaml = absl::StrReplaceAll(kSpec, {{"MARKER", marker()}});
    const v1::SubmitResponse resp =
        testing::SubmitSpec(*stub_, yaml, "signed.yaml", workdir_.path());
    EXPECT_NE(resp.experiment_id(), 0) << "the spec was refused";
    return resp.experiment_id();
  }
  std::string marker() const { return workdir_ / "setup-ran"; }

  TempDir dir_;
  TempDir keys_;
  TempDir workdir_;
  PosixProcessRunner runner_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Agent> agent_;
  std::thread agent_thread_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

TEST_F(SignedOrdersTest, SignedOrdersCompleteAnExperiment) {
  Start("controller");
  const int64_t id = Submit();
  ASSERT_NE(id, 0);
  const v1::Experiment e =
      testing::WatchToEnd(*stub_, id, nullptr, std::chrono::seconds(120));
  EXPECT_EQ(e.state(), "done") << e.state_reason();
  EXPECT_TRUE(std::filesystem::exists(marker()));
}

TEST_F(SignedOrdersTest, AnAgentTrustingAnotherKeyRunsNothing) {
  Start("other");
  const int64_t id = Submit();
  ASSERT_NE(id, 0);
  // The agent declines the lease, naming the signature; the controller ends
  // that attempt with the reason and offers that agent no more work until it
  // reconnects (dispatcher_test covers the latter deterministically).
  std::optional<v1::Attempt> refused;
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!refused && std::chrono::steady_clock::now() < until) {
    const v1::Experiment e = testing::GetExperiment(*stub_, id);
    for (const v1::Attempt& a : e.attempt_list()) {
      if (a.ended_at_unix_ms() != 0) refused = a;
    }
    if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(refused.has_value()) << "no attempt ended within 60s";
  EXPECT_EQ(refused->state(), "lost");
  EXPECT_THAT(refused->reason(), HasSubstr("signature"));
  EXPECT_THAT(refused->reason(), HasSubstr("nothing was run"));
  EXPECT_FALSE(std::filesystem::exists(marker()))
      << "the setup of a refused order ran";
}

}  // namespace
}  // namespace benchfleet
