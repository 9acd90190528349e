// ControllerLink: the agent's way to the controller, as an interface, so that
// the agent's logic (agent/service/agent.cc) can be driven in tests by a fake
// (tests/agent/fake_controller_link.h) instead of a gRPC server. A link opens
// ControllerStreams: one bidirectional stream of AgentMessage out and
// ControllerMessage in per connection (proto/benchfleet/v1/agent.proto).
// GrpcControllerLink is the production link (a channel with the configured
// transport security, AgentService.Connect).
//
// Thread-safety: a ControllerLink is thread-safe. On a ControllerStream, one
// thread reads while others write (writes serialized by the caller), and
// Cancel may be called from any thread.
#ifndef BENCHFLEET_AGENT_SERVICE_CONTROLLER_LINK_H_
#define BENCHFLEET_AGENT_SERVICE_CONTROLLER_LINK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "benchfleet/v1/agent.pb.h"
#include "common/credentials.h"

namespace benchfleet {

class ControllerStream {
 public:
  virtual ~ControllerStream() = default;
  // Sends one message; false once the stream is broken. Callers serialize
  // writes.
  virtual bool Write(const v1::AgentMessage& message) = 0;
  // Blocks for the next message; false once the stream has ended.
  virtual bool Read(v1::ControllerMessage* message) = 0;
  // Ends the stream; a blocked Read returns false. Any thread, any time.
  virtual void Cancel() = 0;
  // Once Read returned false and no write is in flight: why the stream ended
  // ("" when it closed without an error message).
  virtual std::string Finish() = 0;
};

class ControllerLink {
 public:
  virtual ~ControllerLink() = default;
  // Opens a stream. Fails only for what retrying cannot fix (a transport
  // security configuration error); an unreachable controller gives a stream
  // whose first Read returns false.
  virtual absl::StatusOr<std::unique_ptr<ControllerStream>> Connect() = 0;
};

class GrpcControllerLink : public ControllerLink {
 public:
  // `address` is host:port; `transport` says how to secure the channel.
  GrpcControllerLink(std::string address, TransportOptions transport);
  absl::StatusOr<std::unique_ptr<ControllerStream>> Connect() override;

 private:
  std::string address_;
  TransportOptions transport_;
  // Built at the first Connect and reused (the certificate files are watched
  // by gRPC, so a renewed certificate is picked up without a restart, and the
  // --insecure warning is logged once per start).
  absl::Mutex mu_;
  std::shared_ptr<grpc::ChannelCredentials> creds_ ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_CONTROLLER_LINK_H_
