// FleetServiceImpl: the gRPC callback adapter for the user API (fleet.proto).
// It converts requests to FleetApi calls (controller/fleet/, where the logic
// lives) and their results back to protos. Unary calls run on an Executor and
// finish from there; WatchExperiment streams the scheduler's snapshots.
// Every call first spends its caller's budget (user_input_limits.h): over it,
// the call ends RESOURCE_EXHAUSTED saying what to do.
// Thread-safe; reactions never block.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_

#include "benchfleet/v1/fleet.grpc.pb.h"
#include "common/executor.h"
#include "controller/bundle/bundle_store.h"
#include "controller/fleet/fleet_api.h"
#include "controller/service/user_input_limits.h"

namespace benchfleet {

class FleetServiceImpl final : public v1::FleetService::CallbackService {
 public:
  // `api`, `scheduler`, `executor` and `bundles` must outlive the service;
  // `bundles` null: the bundle calls answer UNAVAILABLE.
  FleetServiceImpl(FleetApi* api, ExperimentScheduler* scheduler,
                   Executor* executor, BundleStore* bundles = nullptr,
                   UserInputLimits limits = {})
      : api_(api),
        scheduler_(scheduler),
        executor_(executor),
        bundles_(bundles),
        limiter_(limits) {}

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
  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        v1::Token* resp) override;
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx,
                                   const v1::WhoAmIRequest* req,
                                   v1::WhoAmIResponse* resp) override;
  grpc::ServerUnaryReactor* HasBundle(grpc::CallbackServerContext* ctx,
                                      const v1::HasBundleRequest* req,
                                      v1::HasBundleResponse* resp) override;
  grpc::ServerReadReactor<v1::UploadBundleChunk>* UploadBundle(
      grpc::CallbackServerContext* ctx,
      v1::UploadBundleResponse* resp) override;

 private:
  // A reactor already finished with RESOURCE_EXHAUSTED when the caller is
  // over its budget; nullptr when the call may go on.
  grpc::ServerUnaryReactor* RefuseOverBudget(grpc::CallbackServerContext* ctx);

  FleetApi* api_;
  ExperimentScheduler* scheduler_;
  Executor* executor_;
  BundleStore* bundles_;
  UserCallLimiter limiter_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_FLEET_SERVICE_H_
