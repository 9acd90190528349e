// FleetServiceImpl: the gRPC callback adapter for the user API (fleet.proto).
// Unary calls hand their store work to an Executor and finish from there;
// WatchExperiment streams dispatcher snapshots. Thread-safe; reactions never
// block.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_

#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/clock.h"
#include "common/executor.h"
#include "common/spec.h"
#include "controller/scheduler/dispatcher.h"
#include "controller/store/store.h"

namespace benchfleet {

class FleetServiceImpl final : public v1::FleetService::CallbackService {
 public:
  FleetServiceImpl(Store* store, Dispatcher* dispatcher, Executor* executor,
                   Clock* clock)
      : store_(store),
        dispatcher_(dispatcher),
        executor_(executor),
        clock_(clock) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitRequest* req,
                                   v1::SubmitResponse* resp) override;
  grpc::ServerUnaryReactor* GetExperiment(grpc::CallbackServerContext* ctx,
                                          const v1::GetExperimentRequest* req,
                                          v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ListExperiments(
      grpc::CallbackServerContext* ctx, const v1::ListExperimentsRequest* req,
      v1::ListExperimentsResponse* resp) override;
  grpc::ServerWriteReactor<v1::Experiment>* WatchExperiment(
      grpc::CallbackServerContext* ctx,
      const v1::WatchExperimentRequest* req) override;
  grpc::ServerUnaryReactor* CancelExperiment(
      grpc::CallbackServerContext* ctx, const v1::CancelExperimentRequest* req,
      v1::Experiment* resp) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* ctx,
                                       const v1::ListAgentsRequest* req,
                                       v1::ListAgentsResponse* resp) override;
  grpc::ServerUnaryReactor* SetAgentCordoned(
      grpc::CallbackServerContext* ctx, const v1::SetAgentCordonedRequest* req,
      v1::Agent* resp) override;
  grpc::ServerUnaryReactor* GetHistory(grpc::CallbackServerContext* ctx,
                                       const v1::GetHistoryRequest* req,
                                       v1::GetHistoryResponse* resp) override;
  grpc::ServerUnaryReactor* ExportHistory(
      grpc::CallbackServerContext* ctx, const v1::ExportHistoryRequest* req,
      v1::ExportHistoryResponse* resp) override;
  grpc::ServerUnaryReactor* ImportHistory(
      grpc::CallbackServerContext* ctx, const v1::ImportHistoryRequest* req,
      v1::ImportHistoryResponse* resp) override;

 private:
  // How many of the newest matching experiments Submit looks through for an
  // earlier DISCARD of the same idea or variant.
  static constexpr int kDiscardLookback = 500;
  // The "DISCARDed before" warnings for `spec` (DESIGN.md §4); none when the
  // history cannot be read (logged).
  std::vector<std::string> DiscardedBeforeFor(const ExperimentSpec& spec);

  Store* store_;
  Dispatcher* dispatcher_;
  Executor* executor_;
  Clock* clock_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_
