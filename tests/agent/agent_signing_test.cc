// Signed orders at the agent (DESIGN.md §7): an agent with the controller's
// public key runs a correctly signed step order, and refuses, without calling
// its ProcessRunner for it, a step order whose payload was altered, one signed
// by another key, an unsigned one, one replayed from an earlier stream and one
// for another lease; a tampered lease is declined before anything is recorded.
// Agent against a FakeControllerLink and a recording ProcessRunner: no gRPC, no
// real processes.
#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/service/agent.h"
#include "common/clock.h"
#include "common/order_signing.h"
#include "common/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/fake_controller_link.h"

namespace benchfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Records the program of every process the agent asks for and exits 0.
class RecordingRunner : public ProcessRunner {
 public:
  absl::StatusOr<RunResult> Run(const RunRequest& req) override {
    absl::MutexLock lock(&mu_);
    programs_.push_back(req.argv.empty() ? "" : req.argv[0]);
    RunResult r;
    r.exit_code = 0;
    return r;
  }
  std::vector<std::string> programs() {
    absl::MutexLock lock(&mu_);
    return programs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> programs_ ABSL_GUARDED_BY(mu_);
};

std::string MakeTempDir() {
  std::string dir = ::testing::TempDir() + "agent_signing_test_XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return "";
  return dir;
}

class AgentSigningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    ASSERT_TRUE(GenerateSigningKeyPair(dir_ + "/keys").ok());
    absl::StatusOr<SigningKey> key =
        SigningKey::LoadPem(dir_ + "/keys/signing.key");
    absl::StatusOr<SigningKey> other = SigningKey::Generate();
    ASSERT_TRUE(key.ok() && other.ok());
    key_.emplace(std::move(*key));
    other_.emplace(std::move(*other));
  }
  void TearDown() override {
    if (agent_ == nullptr) return;
    agent_->Shutdown();
    run_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
    agent_.reset();
  }

  AgentOptions Options() {
    AgentOptions o;
    o.id = "signing-agent";
    o.workdir = dir_ + "/work";
    o.lock_file = dir_ + "/agent.lock";
    o.probe_root = dir_ + "/no-proc";
    o.nvml_library = dir_ + "/no-libnvidia-ml.so";
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.heartbeat_interval = absl::Milliseconds(5);
    o.sample_interval = absl::ZeroDuration();
    o.max_competing_cpu = 0;
    o.toolchain = {};
    o.clock = &clock_;
    o.link = &link_;
    o.controller_public_key_file = dir_ + "/keys/signing.pub";
    return o;
  }
  void Start() {
    auto agent = Agent::Create(Options(), &runner_);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(*agent);
    run_ = std::thread([this] { run_status_ = agent_->Run(); });
  }

  // Opens the n-th session: waits for its hello (keeping its nonce) and
  // welcomes the agent.
  std::shared_ptr<FakeControllerStream> Session(size_t n) {
    auto s = link_.AwaitStream(n);
    if (s == nullptr) return nullptr;
    auto hello =
        s->WaitFor([](const v1::AgentMessage& m) { return m.has_hello(); });
    if (!hello) return nullptr;
    nonce_ = hello->hello().order_nonce();
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_interval_ms(5);
    welcome.mutable_welcome()->set_lease_timeout_ms(15000);
    s->Send(welcome);
    return s;
  }

  v1::ControllerMessage LeaseMessage(int64_t attempt) {
    v1::ControllerMessage m;
    m.mutable_lease()->set_attempt_id(attempt);
    m.mutable_lease()->set_lease_token("tok");
    m.mutable_lease()->set_workdir(dir_);
    return m;
  }
  v1::ControllerMessage StepMessage(int64_t seq, const std::string& program,
                                    const std::string& token = "tok") {
    v1::ControllerMessage m;
    v1::StepOrder* o = m.mutable_step();
    o->set_attempt_id(7);
    o->set_lease_token(token);
    o->set_step_seq(seq);
    o->set_kind(v1::STEP_KIND_SETUP);
    o->add_argv(program);
    o->set_cwd(dir_);
    return m;
  }
  v1::ControllerMessage Signed(const v1::ControllerMessage& m) {
    return SealOrder(*key_, nonce_, m);
  }

  // A signed lease of attempt 7, accepted.
  void Lease(FakeControllerStream& s) {
    s.Send(Signed(LeaseMessage(7)));
    auto reply = s.WaitFor(
        [](const v1::AgentMessage& a) { return a.has_lease_reply(); });
    ASSERT_TRUE(reply.has_value());
    ASSERT_TRUE(reply->lease_reply().accepted())
        << reply->lease_reply().reason();
  }
  std::optional<v1::StepResult> ResultOf(FakeControllerStream& s, int64_t seq) {
    auto m = s.WaitFor([seq](const v1::AgentMessage& a) {
      return a.has_step_result() && a.step_result().step_seq() == seq;
    });
    if (!m) return std::nullopt;
    return m->step_result();
  }
  // The programs the steps ran (the lease's environment commands aside).
  std::vector<std::string> StepPrograms() {
    std::vector<std::string> out;
    for (const std::string& p : runner_.programs()) {
      if (p == "good" || p == "evil") out.push_back(p);
    }
    return out;
  }
  // Sends `order` (refused), then a correctly signed step 99: once 99's result
  // is in, the refused order had its chance to run (the worker runs orders in
  // turn) and did not.
  void ExpectRefusedStep(FakeControllerStream& s,
                         const v1::ControllerMessage& order, int64_t seq) {
    s.Send(order);
    std::optional<v1::StepResult> refused = ResultOf(s, seq);
    ASSERT_TRUE(refused.has_value()) << "the refusal is answered";
    EXPECT_TRUE(refused->host_not_ready());
    EXPECT_THAT(refused->error(), HasSubstr("signature"));
    s.Send(Signed(StepMessage(99, "good")));
    ASSERT_TRUE(ResultOf(s, 99).has_value());
    EXPECT_THAT(StepPrograms(), ElementsAre("good"));
  }

  std::string dir_;
  std::optional<SigningKey> key_;
  std::optional<SigningKey> other_;
  std::string nonce_;
  FakeClock clock_;
  FakeControllerLink link_;
  RecordingRunner runner_;
  std::unique_ptr<Agent> agent_;
  std::thread run_;
  absl::Status run_status_;
};

TEST_F(AgentSigningTest, RunsACorrectlySignedStep) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(nonce_.size(), kOrderNonceBytes);
  Lease(*s);
  s->Send(Signed(StepMessage(1, "good")));
  std::optional<v1::StepResult> r = ResultOf(*s, 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->error(), "");
  EXPECT_FALSE(r->host_not_ready());
  EXPECT_THAT(StepPrograms(), ElementsAre("good"));
}

TEST_F(AgentSigningTest, RefusesAStepWhosePayloadWasAltered) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  Lease(*s);
  v1::ControllerMessage tampered = Signed(StepMessage(1, "good"));
  std::string* payload = tampered.mutable_signed_order()->mutable_payload();
  const size_t at = payload->find("good");
  ASSERT_NE(at, std::string::npos);
  payload->replace(at, 4, "evil");  // one program swapped for another
  ExpectRefusedStep(*s, tampered, 1);
}

TEST_F(AgentSigningTest, RefusesAStepWithAFlippedSignatureByte) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  Lease(*s);
  v1::ControllerMessage tampered = Signed(StepMessage(1, "evil"));
  (*tampered.mutable_signed_order()->mutable_signature())[0] ^= 0x01;
  ExpectRefusedStep(*s, tampered, 1);
}

TEST_F(AgentSigningTest, RefusesAStepSignedByAnotherKey) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  Lease(*s);
  ExpectRefusedStep(*s, SealOrder(*other_, nonce_, StepMessage(1, "evil")), 1);
}

TEST_F(AgentSigningTest, RefusesAnUnsignedStep) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  Lease(*s);
  ExpectRefusedStep(*s, StepMessage(1, "evil"), 1);
}

TEST_F(AgentSigningTest, RefusesAStepReplayedFromAnEarlierStream) {
  Start();
  auto s1 = Session(1);
  ASSERT_NE(s1, nullptr);
  Lease(*s1);
  const v1::ControllerMessage recorded = Signed(StepMessage(1, "evil"));
  const std::string first_nonce = nonce_;
  s1->End();
  auto s2 = Session(2);
  ASSERT_NE(s2, nullptr);
  ASSERT_NE(nonce_, first_nonce);  // every stream has a fresh nonce
  ExpectRefusedStep(*s2, recorded, 1);
}

TEST_F(AgentSigningTest, IgnoresACorrectlySignedStepForAnotherLease) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  Lease(*s);
  s->Send(Signed(StepMessage(1, "evil", "another-lease-token")));
  s->Send(Signed(StepMessage(2, "good")));
  ASSERT_TRUE(ResultOf(*s, 2).has_value());
  EXPECT_THAT(StepPrograms(), ElementsAre("good"));
  for (const v1::AgentMessage& m : s->written())
    EXPECT_NE(m.step_result().step_seq(), 1);
}

TEST_F(AgentSigningTest, DeclinesATamperedLeaseBeforeRecordingAnything) {
  Start();
  auto s = Session(1);
  ASSERT_NE(s, nullptr);
  v1::ControllerMessage tampered = Signed(LeaseMessage(7));
  (*tampered.mutable_signed_order()->mutable_payload())[5] ^= 0x01;
  s->Send(tampered);
  auto reply =
      s->WaitFor([](const v1::AgentMessage& a) { return a.has_lease_reply(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_FALSE(reply->lease_reply().accepted());
  EXPECT_THAT(reply->lease_reply().reason(), HasSubstr("signature"));
  // Unsigned: declined too.
  s->Send(LeaseMessage(8));
  reply =
      s->WaitFor([](const v1::AgentMessage& a) { return a.has_lease_reply(); });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->lease_reply().attempt_id(), 8);
  EXPECT_FALSE(reply->lease_reply().accepted());
  EXPECT_THAT(reply->lease_reply().reason(), HasSubstr("signature"));
  EXPECT_THAT(runner_.programs(), IsEmpty());
  // Neither took the lease: a signed one is accepted.
  Lease(*s);
}

TEST_F(AgentSigningTest, CreateNamesAnUnreadablePublicKeyFile) {
  AgentOptions o = Options();
  o.controller_public_key_file = dir_ + "/keys/absent.pub";
  auto agent = Agent::Create(o, &runner_);
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(agent.status().message(), HasSubstr(dir_ + "/keys/absent.pub"));
}

TEST_F(AgentSigningTest, ANonLoopbackControllerNeedsAKeyOrInsecure) {
  AgentOptions o = Options();
  o.link = nullptr;
  o.controller = "ctl.example:7070";
  o.controller_public_key_file.clear();
  o.allow_root_jobs = true;  // only the signing rule is tested here
  auto refused = Agent::Create(o, &runner_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("--controller-public-key"));
  EXPECT_THAT(refused.status().message(), HasSubstr("--insecure"));

  o.insecure = true;
  EXPECT_TRUE(Agent::Create(o, &runner_).ok());
  o.insecure = false;
  o.controller_public_key_file = dir_ + "/keys/signing.pub";
  EXPECT_TRUE(Agent::Create(o, &runner_).ok());
  o.controller_public_key_file.clear();
  o.controller = "127.0.0.1:7070";
  EXPECT_TRUE(Agent::Create(o, &runner_).ok());
}

}  // namespace
}  // namespace benchfleet
