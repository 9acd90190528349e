#include "agent/service/controller_link.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>

#include <utility>

#include "benchfleet/v1/agent.grpc.pb.h"

namespace benchfleet {
namespace {

class GrpcControllerStream : public ControllerStream {
 public:
  explicit GrpcControllerStream(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::AgentService::NewStub(channel)),
        stream_(stub_->Connect(&context_)) {}
  ~GrpcControllerStream() override = default;

  bool Write(const v1::AgentMessage& message) override {
    return stream_->Write(message);
  }
  bool Read(v1::ControllerMessage* message) override {
    return stream_->Read(message);
  }
  void Cancel() override { context_.TryCancel(); }
  std::string Finish() override { return stream_->Finish().error_message(); }

 private:
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>>
      stream_;
};

}  // namespace

GrpcControllerLink::GrpcControllerLink(std::string address,
                                       TransportOptions transport)
    : address_(std::move(address)), transport_(std::move(transport)) {}

absl::StatusOr<std::unique_ptr<ControllerStream>>
GrpcControllerLink::Connect() {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  {
    absl::MutexLock lock(&mu_);
    if (creds_ == nullptr) {
      auto made = MakeChannelCredentials(address_, transport_);
      if (!made.ok()) return made.status();
      creds_ = *made;
    }
    creds = creds_;
  }
  auto channel = grpc::CreateCustomChannel(address_, creds,
                                           MakeChannelArguments(transport_));
  return std::unique_ptr<ControllerStream>(
      std::make_unique<GrpcControllerStream>(std::move(channel)));
}

}  // namespace benchfleet
