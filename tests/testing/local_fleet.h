// LocalFleet: the real local mode for integration tests — an in-process
// Controller with a SQLite store and an in-process Agent with the real
// PosixProcessRunner, talking gRPC over loopback, plus a Fleet API stub to
// drive them. Other tests and builds may share the machine, so the agent's
// competing-process gate is off (max_competing_cpu = 0; the gate itself is
// tested in agent/host_gates_test); everything else is the product's default
// unless the caller's `tweak` changes it. Not thread-safe; one test owns it.
#ifndef BENCHFLEET_TESTS_TESTING_LOCAL_FLEET_H_
#define BENCHFLEET_TESTS_TESTING_LOCAL_FLEET_H_

#include <grpcpp/create_channel.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "controller/store/store.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"

namespace benchfleet::testing {

class LocalFleet {
 public:
  // Starts a controller (store `<dir>/fleet.db`, a free loopback port) and an
  // agent (work directory and lock file under `dir`), the agent serving on its
  // own thread. `tweak`, when set, may change the agent's options before it is
  // created. Returns nullptr, with a test failure saying why, when either
  // cannot start.
  static std::unique_ptr<LocalFleet> Start(
      const std::string& dir,
      const std::function<void(AgentOptions&)>& tweak = {}) {
    auto fleet = std::unique_ptr<LocalFleet>(new LocalFleet(dir));
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = fleet->store_url();
    absl::StatusOr<std::unique_ptr<Controller>> controller =
        Controller::Create(copts);
    if (!controller.ok()) {
      ADD_FAILURE() << "controller: " << controller.status();
      return nullptr;
    }
    fleet->controller_ = std::move(*controller);

    AgentOptions aopts;
    aopts.controller = fleet->controller_->address();
    aopts.id = "local-fleet-agent";
    aopts.workdir = dir + "/agent";
    aopts.lock_file = dir + "/agent.lock";
    aopts.max_competing_cpu = 0;
    if (tweak) tweak(aopts);
    absl::StatusOr<std::unique_ptr<Agent>> agent =
        Agent::Create(aopts, &fleet->runner_);
    if (!agent.ok()) {
      ADD_FAILURE() << "agent: " << agent.status();
      return nullptr;
    }
    fleet->agent_ = std::move(*agent);
    Agent* a = fleet->agent_.get();
    fleet->agent_thread_ = std::thread([a] { EXPECT_TRUE(a->Run().ok()); });
    fleet->stub_ = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        fleet->controller_->address(), grpc::InsecureChannelCredentials(),
        MakeChannelArguments()));
    return fleet;
  }

  ~LocalFleet() {
    if (agent_) agent_->Shutdown();
    if (agent_thread_.joinable()) agent_thread_.join();
    agent_.reset();
    controller_.reset();
  }

  LocalFleet(const LocalFleet&) = delete;
  LocalFleet& operator=(const LocalFleet&) = delete;

  v1::FleetService::Stub& stub() { return *stub_; }
  // The controller's loopback address (host:port), for the real CLI.
  std::string address() const { return controller_->address(); }
  // "sqlite://<dir>/fleet.db": open it with OpenStore to read what was stored.
  std::string store_url() const { return "sqlite://" + dir_ + "/fleet.db"; }

  // Submits `yaml` (shown as `spec_path`, default work directory `workdir`);
  // returns the experiment id, 0 (with a test failure) when it was refused.
  int64_t Submit(const std::string& yaml, const std::string& spec_path,
                 const std::string& workdir) {
    const v1::SubmitResponse resp =
        SubmitSpec(*stub_, yaml, spec_path, workdir);
    EXPECT_NE(resp.experiment_id(), 0) << spec_path << " was not queued";
    return resp.experiment_id();
  }

  // Follows experiment `id` to its end (at most `limit`); the last snapshot.
  v1::Experiment Watch(int64_t id, std::chrono::seconds limit) {
    return WatchToEnd(*stub_, id, nullptr, limit);
  }

 private:
  explicit LocalFleet(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  PosixProcessRunner runner_;
  std::unique_ptr<Controller> controller_;
  std::unique_ptr<Agent> agent_;
  std::thread agent_thread_;
  std::unique_ptr<v1::FleetService::Stub> stub_;
};

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_LOCAL_FLEET_H_
