// Calls on the Fleet API that the in-process fleet tests share: submit a spec,
// read an experiment, follow one to its end. Each call has a deadline, and a
// failed call fails the calling test (with gRPC's message) instead of hanging.
#ifndef BENCHFLEET_TESTS_TESTING_FLEET_CLIENT_H_
#define BENCHFLEET_TESTS_TESTING_FLEET_CLIENT_H_

#include <grpcpp/client_context.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "benchfleet/v1/fleet.grpc.pb.h"
#include "gtest/gtest.h"

namespace benchfleet::testing {

// Submits `yaml` (shown as `spec_path` in messages) with `workdir` as its
// default work directory; returns the response (experiment_id 0 on failure).
inline v1::SubmitResponse SubmitSpec(v1::FleetService::Stub& stub,
                                     const std::string& yaml,
                                     const std::string& spec_path,
                                     const std::string& workdir) {
  v1::SubmitRequest req;
  req.set_spec_yaml(yaml);
  req.set_spec_path(spec_path);
  req.set_workdir(workdir);
  v1::SubmitResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status st = stub.Submit(&ctx, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp;
}

inline v1::Experiment GetExperiment(v1::FleetService::Stub& stub, int64_t id) {
  v1::GetExperimentRequest req;
  req.set_id(id);
  v1::Experiment e;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status st = stub.GetExperiment(&ctx, req, &e);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return e;
}

// Follows experiment `id` with WatchExperiment until it ends (at most
// `limit`); returns the last snapshot and, in `snapshots`, how many arrived.
inline v1::Experiment WatchToEnd(
    v1::FleetService::Stub& stub, int64_t id, int* snapshots = nullptr,
    std::chrono::seconds limit = std::chrono::minutes(4)) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + limit);
  v1::WatchExperimentRequest req;
  req.set_id(id);
  auto reader = stub.WatchExperiment(&ctx, req);
  v1::Experiment e, last;
  int n = 0;
  while (reader->Read(&e)) {
    last = e;
    ++n;
  }
  const grpc::Status st = reader->Finish();
  EXPECT_TRUE(st.ok()) << st.error_message();
  if (snapshots != nullptr) *snapshots = n;
  return last;
}

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_FLEET_CLIENT_H_
