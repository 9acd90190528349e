// Bounded input on the agent stream, against the real controller over real
// gRPC: an oversized message, a message over a field bound and a flood each
// end only their own stream; another agent's stream stays connected.
#include <grpcpp/create_channel.h>

#include <thread>

#include "benchfleet/v1/agent.grpc.pb.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/credentials.h"
#include "controller/controller.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::benchfleet::testing::TempDir;

class AgentStreamLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ControllerOptions copts;
    copts.listen = "127.0.0.1:0";
    copts.store_url = "sqlite://" + (dir_ / "fleet.db");
    auto controller = Controller::Create(copts);
    ASSERT_TRUE(controller.ok()) << controller.status();
    controller_ = std::move(*controller);
    // Our own channel arguments allow sending more than the controller
    // accepts.
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(
        controller_->address(), grpc::InsecureChannelCredentials(), args);
    fleet_ = v1::FleetService::NewStub(grpc::CreateCustomChannel(
        controller_->address(), grpc::InsecureChannelCredentials(),
        MakeChannelArguments()));
  }

  struct Stream {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<v1::AgentService::Stub> stub;
    std::unique_ptr<
        grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>>
        rw;
  };

  // Opens a stream and says hello as `id`; the welcome is read.
  Stream Open(const std::string& id) {
    Stream s;
    s.ctx = std::make_unique<grpc::ClientContext>();
    s.ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(60));
    s.stub = v1::AgentService::NewStub(channel_);
    s.rw = s.stub->Connect(s.ctx.get());
    v1::AgentMessage hello;
    hello.mutable_hello()->set_agent_id(id);
    EXPECT_TRUE(s.rw->Write(hello));
    v1::ControllerMessage welcome;
    EXPECT_TRUE(s.rw->Read(&welcome));
    EXPECT_TRUE(welcome.has_welcome());
    return s;
  }

  // Reads until the controller ends the stream; its status.
  grpc::Status Ended(Stream& s) {
    v1::ControllerMessage m;
    while (s.rw->Read(&m)) {
    }
    return s.rw->Finish();
  }

  bool Connected(const std::string& id) {
    grpc::ClientContext ctx;
    v1::ListAgentsResponse resp;
    EXPECT_TRUE(fleet_->ListAgents(&ctx, v1::ListAgentsRequest(), &resp).ok());
    for (const v1::Agent& a : resp.agents()) {
      if (a.id() == id) return a.connected();
    }
    return false;
  }

  TempDir dir_;
  std::unique_ptr<Controller> controller_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::FleetService::Stub> fleet_;
};

TEST_F(AgentStreamLimitsTest, AnOversizedMessageEndsOnlyItsOwnStream) {
  Stream good = Open("good");
  Stream big = Open("big");
  v1::AgentMessage m;
  m.mutable_heartbeat()->set_status(std::string(kMaxMessageBytes + 1, 'x'));
  big.rw->Write(m);
  grpc::Status st = Ended(big);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << st.error_message();
  EXPECT_TRUE(Connected("good"));
  // The controller notes the disconnect when the stream is done.
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (Connected("big") && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(Connected("big"));
  v1::AgentMessage beat;
  beat.mutable_heartbeat()->set_seq(1);
  EXPECT_TRUE(good.rw->Write(beat));
  EXPECT_TRUE(Connected("good"));
  good.ctx->TryCancel();
}

TEST_F(AgentStreamLimitsTest, AFieldOverItsBoundEndsTheStreamSayingWhich) {
  Stream good = Open("good");
  Stream chatty = Open("chatty");
  v1::AgentMessage m;
  m.mutable_step_result()->set_stderr_tail(std::string(65 * 1024, 'x'));
  chatty.rw->Write(m);
  grpc::Status st = Ended(chatty);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("step_result.stderr_tail"),
            std::string::npos)
      << st.error_message();
  EXPECT_TRUE(Connected("good"));
  good.ctx->TryCancel();
}

TEST_F(AgentStreamLimitsTest, AFloodEndsOnlyTheFloodingStream) {
  Stream good = Open("good");
  Stream flood = Open("flood");
  v1::AgentMessage beat;
  beat.mutable_heartbeat()->set_seq(1);
  // Far beyond the burst of 20000 at once; Write fails once the controller
  // has ended the stream.
  for (int i = 0; i < 200'000; ++i) {
    if (!flood.rw->Write(beat)) break;
  }
  grpc::Status st = Ended(flood);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << st.error_message();
  EXPECT_NE(st.error_message().find("messages per second"), std::string::npos)
      << st.error_message();
  EXPECT_TRUE(Connected("good"));
  good.ctx->TryCancel();
}

}  // namespace
}  // namespace benchfleet
