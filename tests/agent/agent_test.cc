// Agent against a FakeControllerLink, a FakeClock and a scripted ProcessRunner:
// no gRPC, no real benchmark processes. Waits are on conditions with
// deadlines; the lease's cut-off is driven by advancing the FakeClock.
#include "agent/service/agent.h"

#include <stdlib.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/fake_controller_link.h"

namespace benchfleet {
namespace {

// Runs the step commands: "block" waits until cancelled; anything else exits
// with 0 at once (the environment's toolchain and git commands among them).
class ScriptedRunner : public ProcessRunner {
 public:
  absl::StatusOr<RunResult> Run(const RunRequest& req) override {
    RunResult r;
    if (!req.argv.empty() && req.argv[0] == "block") {
      {
        absl::MutexLock lock(&mu_);
        ++blocked_;
        last_env_ = req.env;
      }
      while (req.cancel == nullptr || !req.cancel->load()) {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&wake_), absl::Milliseconds(5));
      }
      absl::MutexLock lock(&mu_);
      ++cancelled_;
      r.cancelled = true;
      r.term_signal = 9;
      r.exit_code = -1;
      return r;
    }
    r.exit_code = 0;
    if (!req.argv.empty() && req.argv[0] == "work") {
      absl::MutexLock lock(&mu_);
      last_env_ = req.env;
      r.wall_ns = 1234;
      r.stdout_head = "score: 42\n";
    }
    return r;
  }
  bool AwaitBlocked(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return blocked_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20));
  }
  bool AwaitCancelled(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return cancelled_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20));
  }
  std::vector<std::string> last_env() {
    absl::MutexLock lock(&mu_);
    return last_env_;
  }

 private:
  absl::Mutex mu_;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
  int cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> last_env_ ABSL_GUARDED_BY(mu_);
};

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "agent_test_XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return "";
  return dir;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = TempDir();
    ASSERT_FALSE(dir.empty());
    workdir_ = dir;
    AgentOptions o;
    o.id = "agent-under-test";
    o.workdir = dir + "/work";
    o.lock_file = dir + "/agent.lock";
    o.probe_root = dir + "/no-proc";  // an empty host: no readings, no gates
    o.nvml_library = dir + "/no-libnvidia-ml.so";
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.heartbeat_interval = absl::Milliseconds(5);
    o.lease_timeout = absl::Seconds(15);
    o.sample_interval = absl::ZeroDuration();
    o.max_competing_cpu = 0;
    o.toolchain = {};
    o.clock = &clock_;
    o.link = &link_;
    auto agent = Agent::Create(o, &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    run_ = std::thread([this] { run_status_ = agent_->Run(); });
  }
  void TearDown() override {
    if (agent_ == nullptr) return;
    agent_->Shutdown();
    run_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
    agent_.reset();
  }

  // Opens the n-th session: waits for its hello and welcomes the agent.
  std::shared_ptr<FakeControllerStream> Session(size_t n) {
    auto s = link_.AwaitStream(n);
    if (s == nullptr) return nullptr;
    if (!s->WaitFor([](const v1::AgentMessage& m) { return m.has_hello(); }))
      return nullptr;
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_ms(5);
    welcome.mutable_welcome()->set_lease_timeout_ms(15000);
    s->Send(welcome);
    return s;
  }

  void Lease(FakeControllerStream& s, int64_t attempt) {
    v1::ControllerMessage m;
    m.mutable_lease()->set_attempt_id(attempt);
    m.mutable_lease()->set_lease_token("tok");
    m.mutable_lease()->set_workdir(workdir_);
    s.Send(m);
    auto reply = s.WaitFor(
        [](const v1::AgentMessage& a) { return a.has_lease_reply(); });
    ASSERT_TRUE(reply.has_value());
    ASSERT_TRUE(reply->lease_reply().accepted())
        << reply->lease_reply().reason();
  }

  void Step(FakeControllerStream& s, int64_t attempt, int64_t seq,
            const std::string& program) {
    v1::ControllerMessage m;
    v1::StepOrder* o = m.mutable_step();
    o->set_attempt_id(attempt);
    o->set_lease_token("tok");
    o->set_step_seq(seq);
    o->set_kind(v1::STEP_KIND_SETUP);
    o->add_argv(program);
    o->set_cwd(workdir_);
    s.Send(m);
  }

  std::string workdir_;
  FakeClock clock_;
  FakeControllerLink link_;
  ScriptedRunner runner_;
  std::unique_ptr<Agent> agent_;
  std::thread run_;
  absl::Status run_status_;
};

TEST_F(AgentTest, SendsAStepsResultAndResendsItAfterAReconnectUntilAcked) {
  auto s1 = Session(1);
  ASSERT_NE(s1, nullptr);
  Lease(*s1, 7);
  Step(*s1, 7, 1, "work");
  auto result = s1->WaitFor(
      [](const v1::AgentMessage& m) { return m.has_step_result(); });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->step_result().attempt_id(), 7);
  EXPECT_EQ(result->step_result().step_seq(), 1);
  EXPECT_EQ(result->step_result().wall_ns(), 1234);
  EXPECT_EQ(result->step_result().exit_code(), 0);
  EXPECT_THAT(runner_.last_env(),
              ::testing::Contains("BENCHFLEET_AGENT_ID=agent-under-test"));

  // The controller is lost before it acknowledged: the next session's hello
  // names the lease and the result follows it.
  s1->End();
  auto s2 = link_.AwaitStream(2);
  ASSERT_NE(s2, nullptr);
  auto hello =
      s2->WaitFor([](const v1::AgentMessage& m) { return m.has_hello(); });
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->hello().agent_id(), "agent-under-test");
  EXPECT_EQ(hello->hello().current_attempt_id(), 7);
  EXPECT_EQ(hello->hello().current_lease_token(), "tok");
  auto resent = s2->WaitFor(
      [](const v1::AgentMessage& m) { return m.has_step_result(); });
  ASSERT_TRUE(resent.has_value());
  EXPECT_EQ(resent->step_result().wall_ns(), 1234);

  // Acknowledged: a third session resends nothing.
  v1::ControllerMessage ack;
  ack.mutable_ack()->set_attempt_id(7);
  ack.mutable_ack()->set_step_seq(1);
  ack.mutable_ack()->set_accepted(true);
  s2->Send(ack);
  // A repeated lease is answered by the reader after the ack (messages are
  // handled in order): once its reply is there, the ack was handled.
  v1::ControllerMessage again;
  again.mutable_lease()->set_attempt_id(7);
  again.mutable_lease()->set_lease_token("tok");
  s2->Send(again);
  auto reply = s2->WaitFor(
      [](const v1::AgentMessage& m) { return m.has_lease_reply(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(reply->lease_reply().accepted());
  s2->End();
  auto s3 = link_.AwaitStream(3);
  ASSERT_NE(s3, nullptr);
  ASSERT_TRUE(
      s3->WaitFor([](const v1::AgentMessage& m) { return m.has_hello(); }));
  // Wait for a heartbeat on s3: everything the agent resends follows the hello
  // at once, before the first heartbeat.
  ASSERT_TRUE(
      s3->WaitFor([](const v1::AgentMessage& m) { return m.has_heartbeat(); }));
  for (const v1::AgentMessage& m : s3->written())
    EXPECT_FALSE(m.has_step_result()) << m.DebugString();
}

TEST_F(AgentTest, CutOffLongerThanTheLeaseKillsTheJobEvenOnAnOpenStream) {
  auto s1 = Session(1);
  ASSERT_NE(s1, nullptr);
  Lease(*s1, 7);
  Step(*s1, 7, 1, "block");
  ASSERT_TRUE(runner_.AwaitBlocked(1));

  // The controller is lost; the agent reconnects at once to a stream that
  // never welcomes it (a controller that hangs). The job keeps running until
  // the FakeClock passes the lease timeout.
  s1->End();
  auto s2 = link_.AwaitStream(2);
  ASSERT_NE(s2, nullptr);
  auto hello =
      s2->WaitFor([](const v1::AgentMessage& m) { return m.has_hello(); });
  ASSERT_TRUE(hello.has_value());
  EXPECT_EQ(hello->hello().current_attempt_id(), 7) << "dropped too early";

  clock_.Advance(absl::Seconds(16));
  EXPECT_TRUE(runner_.AwaitCancelled(1)) << "the job was not killed";
  // Heartbeats on the same stream now say no lease is held.
  ASSERT_TRUE(s2->WaitFor([](const v1::AgentMessage& m) {
    return m.has_heartbeat() && m.heartbeat().attempt_id() == 0;
  }));
  for (const v1::AgentMessage& m : s2->written())
    EXPECT_FALSE(m.has_step_result()) << "a killed job reports nothing";
}

TEST_F(AgentTest, DeclinesALeaseWhoseWorkDirectoryIsNotOnThisHost) {
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  v1::ControllerMessage m;
  m.mutable_lease()->set_attempt_id(9);
  m.mutable_lease()->set_lease_token("tok");
  m.mutable_lease()->set_workdir(workdir_ + "/not-on-this-host");
  s->Send(m);
  auto reply =
      s->WaitFor([](const v1::AgentMessage& a) { return a.has_lease_reply(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_FALSE(reply->lease_reply().accepted());
  EXPECT_THAT(reply->lease_reply().reason(),
              ::testing::AllOf(::testing::HasSubstr("cannot run here"),
                               ::testing::HasSubstr("/not-on-this-host"),
                               ::testing::HasSubstr("source: {bundle: .}")));
  // The next lease, whose directory exists, is taken.
  Lease(*s, 10);
}

}  // namespace
}  // namespace benchfleet
