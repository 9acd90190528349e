// AgentServiceImpl: the gRPC callback adapter for the agent stream
// (agent.proto). Each Connect call gets a reactor that turns incoming messages
// into Dispatcher calls and queues outgoing messages (one write in flight at a
// time, as the callback API requires). Thread-safe; reactions never block.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_

#include "benchfleet/v1/agent.grpc.pb.h"
#include "controller/scheduler/dispatcher.h"

namespace benchfleet {

class AgentServiceImpl final : public v1::AgentService::CallbackService {
 public:
  explicit AgentServiceImpl(Dispatcher* dispatcher) : dispatcher_(dispatcher) {}
  grpc::ServerBidiReactor<v1::AgentMessage, v1::ControllerMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  Dispatcher* dispatcher_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_AGENT_SERVICE_H_
