// AgentServiceImpl: the gRPC callback adapter for the agent stream
// (agent.proto). Each Connect call gets a reactor that turns incoming messages
// into Dispatcher calls and queues outgoing messages (one write in flight at a
// time, as the callback API requires). Thread-safe; reactions never block.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_

#include "benchfleet/v1/agent.grpc.pb.h"
#include "controller/auth/auth_policy.h"
#include "controller/scheduler/dispatcher.h"

namespace benchfleet {

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  // `trusted`: labels the controller pins per agent id.
  explicit AgentServiceImpl(Dispatcher* dispatcher, TrustedLabels trusted = {})
      : dispatcher_(dispatcher), trusted_(std::move(trusted)) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Dispatcher* dispatcher_;
  const TrustedLabels trusted_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
