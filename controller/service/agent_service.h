// AgentServiceImpl: the gRPC callback adapter for the agent stream
// (agent.proto). Each Connect call gets a reactor that turns incoming messages
// into Dispatcher calls and queues outgoing messages (one write in flight at a
// time, as the callback API requires). With a signing key, every Lease and
// StepOrder is sealed into a SignedOrder at that single point where messages go
// onto the stream (common/order_signing.h), bound to the stream's hello nonce.
// Thread-safe; reactions never block.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_

#include <memory>
#include <utility>

#include "benchfleet/v1/agent.grpc.pb.h"
#include "common/executor.h"
#include "common/signing.h"
#include "controller/auth/auth_policy.h"
#include "controller/bundle/bundle_store.h"
#include "controller/scheduler/dispatcher.h"
#include "controller/service/agent_input_limits.h"

namespace benchfleet {

// Where FetchBundle reads bundles from, and the executor its disk reads run
// on; both null: FetchBundle answers UNAVAILABLE.
struct BundleServing {
  BundleStore* store = nullptr;
  Executor* executor = nullptr;
};

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  // `signing_key` null: orders go out unsigned (agents with a
  // controller_public_key refuse them). `trusted`: labels the controller pins
  // per agent id.
  explicit AgentServiceImpl(
      Dispatcher* dispatcher,
      std::shared_ptr<const SigningKey> signing_key = nullptr,
      TrustedLabels trusted = {}, AgentInputLimits limits = {},
      BundleServing bundles = {})
      : dispatcher_(dispatcher),
        signing_key_(std::move(signing_key)),
        trusted_(std::move(trusted)),
        limits_(limits),
        bundles_(bundles) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;
  // A held bundle, in pieces (controller/service/bundle_service.h). On TLS
  // only agents (client certificate) get here: controller/auth.
  grpc::ServerWriteReactor<v1::BundlePiece>* FetchBundle(
      grpc::CallbackServerContext* context,
      const v1::FetchBundleRequest* request) override;

 private:
  Dispatcher* dispatcher_;
  std::shared_ptr<const SigningKey> signing_key_;
  const TrustedLabels trusted_;
  const AgentInputLimits limits_;
  const BundleServing bundles_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
