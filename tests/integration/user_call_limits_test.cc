// Per-caller bounds on the user API (controller/service/user_input_limits.h)
// against the real controller over real gRPC with TLS and tokens on
// loopback: one user's flood of calls is refused with RESOURCE_EXHAUSTED and
// a message saying what to do while another user is served; one user's
// watch streams are capped, another's are not, and ending one frees a slot.
#include <grpcpp/create_channel.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/certs.h"
#include "common/credentials.h"
#include "controller/auth/tokens.h"
#include "controller/controller.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fleet_client.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;
using ::testing::HasSubstr;

// Stays queued: no agent is connected.
constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: watched
benchmark:
  command: "true"
  inputs: [{name: one, path: inputs/tiny.txt}]
  runs: 10
variants:
  - {name: baseline}
  - {name: same}
)";

class UserCallLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca =
        MakeCertificateAuthority("limits CA", absl::Now() + absl::Hours(24));
    ASSERT_TRUE(ca.ok()) << ca.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "ca", *ca).ok());
    CertificateRequest req;
    req.common_name = "controller";
    req.sans = {"127.0.0.1", "localhost"};
    req.server_auth = true;
    auto cert = IssueCertificate(*ca, req);
    ASSERT_TRUE(cert.ok()) << cert.status();
    ASSERT_TRUE(WriteKeyAndCert(dir_.path(), "controller", *cert).ok());
    testing::CopyExamples(work_.path());

    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    copts.transport.cert_file = dir_ / "controller.crt";
    copts.transport.key_file = dir_ / "controller.key";
    copts.transport.ca_file = dir_ / "ca.crt";
    copts.user_limits.requests_per_second = 5;
    copts.user_limits.burst = 20;
    copts.user_limits.max_watch_streams = 2;
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);
    address_ = controller_->address();
    auto store = OpenStore(copts.store_url);
    ASSERT_TRUE(store.ok()) << store.status();
    for (const char* user : {"alice", "bob"}) {
      auto issued =
          IssueToken(store->get(), user, "submitter", "", absl::Now());
      ASSERT_TRUE(issued.ok()) << issued.status();
      stubs_[user] = UserStub(issued->text);
    }
  }

  std::unique_ptr<v1::FleetService::Stub> UserStub(const std::string& token) {
    TransportOptions t;
    t.ca_file = dir_ / "ca.crt";
    t.token = token;
    auto creds = MakeChannelCredentials(address_, t);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return v1::FleetService::NewStub(
        grpc::CreateCustomChannel(address_, *creds, MakeChannelArguments(t)));
  }

  grpc::Status ListAgents(const std::string& user) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::ListAgentsResponse resp;
    return stubs_[user]->ListAgents(&ctx, v1::ListAgentsRequest(), &resp);
  }

  // An open watch of experiment `id` as `user`, its first snapshot read (or
  // the stream ended: then `status` says how).
  struct Watch {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::Experiment>> reader;
    bool open = false;
    grpc::Status status;
  };
  Watch StartWatch(const std::string& user, int64_t id) {
    Watch w;
    w.ctx = std::make_unique<grpc::ClientContext>();
    w.ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
    v1::WatchExperimentRequest req;
    req.set_id(id);
    w.reader = stubs_[user]->WatchExperiment(w.ctx.get(), req);
    v1::Experiment first;
    w.open = w.reader->Read(&first);
    if (!w.open) w.status = w.reader->Finish();
    return w;
  }
  void EndWatch(Watch& w) {
    w.ctx->TryCancel();
    v1::Experiment e;
    while (w.reader->Read(&e)) {
    }
    w.reader->Finish();
  }

  TempDir dir_, work_;
  std::unique_ptr<Controller> controller_;
  std::string address_;
  std::map<std::string, std::unique_ptr<v1::FleetService::Stub>> stubs_;
};

TEST_F(UserCallLimitsTest, OneUsersFloodIsRefusedAndAnotherUserIsServed) {
  // 100 calls at once: far beyond the burst of 20 at 5 per second.
  std::vector<grpc::Status> results;
  for (int i = 0; i < 100; ++i) results.push_back(ListAgents("alice"));
  int ok = 0, refused = 0;
  grpc::Status example;
  for (const grpc::Status& st : results) {
    if (st.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << st.error_message();
      ++refused;
      example = st;
    }
  }
  EXPECT_GE(ok, 20);
  EXPECT_LT(ok, 100);
  EXPECT_GT(refused, 0);
  EXPECT_THAT(example.error_message(), HasSubstr("user 'alice'"));
  EXPECT_THAT(example.error_message(), HasSubstr("slow down"));
  // Bob is not alice.
  const grpc::Status bob = ListAgents("bob");
  EXPECT_TRUE(bob.ok()) << bob.error_message();
}

TEST_F(UserCallLimitsTest, WatchStreamsAreCappedPerUserAndFreedWhenOneEnds) {
  const v1::SubmitResponse submitted = testing::SubmitSpec(
      *stubs_["alice"], kSpec, "watched.yaml", work_.path());
  const int64_t id = submitted.experiment_id();
  ASSERT_NE(id, 0);
  Watch first = StartWatch("alice", id);
  Watch second = StartWatch("alice", id);
  ASSERT_TRUE(first.open) << first.status.error_message();
  ASSERT_TRUE(second.open) << second.status.error_message();
  Watch third = StartWatch("alice", id);
  EXPECT_FALSE(third.open);
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third.status.error_message(), HasSubstr("2 open watch streams"));
  EXPECT_THAT(third.status.error_message(), HasSubstr("end some"));
  Watch bobs = StartWatch("bob", id);
  EXPECT_TRUE(bobs.open) << bobs.status.error_message();

  // The controller counts a stream until it is done, which follows the
  // cancel shortly.
  EndWatch(first);
  Watch again;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (absl::Now() < until) {
    again = StartWatch("alice", id);
    if (again.open) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(again.open) << again.status.error_message();
  EndWatch(second);
  EndWatch(bobs);
  if (again.open) EndWatch(again);
}

}  // namespace
}  // namespace benchfleet
