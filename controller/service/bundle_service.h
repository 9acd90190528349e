// The bundle RPCs' reactors (issue 11): UploadBundle (FleetService, client
// streaming) writes chunks into a BundleStore upload and commits it once the
// client is done; FetchBundle (AgentService, server streaming) sends a held
// bundle in pieces of at most 1 MiB. Disk reads and writes run on the
// Executor, never in a reaction; each reactor has at most one read or write
// in flight and one executor task queued. Used by FleetServiceImpl and
// AgentServiceImpl. Thread-safe.
#ifndef BENCHFLEET_CONTROLLER_SERVICE_BUNDLE_SERVICE_H_
#define BENCHFLEET_CONTROLLER_SERVICE_BUNDLE_SERVICE_H_

#include <grpcpp/support/server_callback.h>

#include "benchfleet/v1/agent.pb.h"
#include "benchfleet/v1/fleet.pb.h"
#include "common/executor.h"
#include "controller/bundle/bundle_store.h"

namespace benchfleet {

// `store` null: the call fails UNAVAILABLE saying the controller keeps no
// bundles. The reactor deletes itself when done; `store`, `executor` and
// `response` must outlive the call.
grpc::ServerReadReactor<v1::UploadBundleChunk>* NewUploadBundleReactor(
    BundleStore* store, Executor* executor, v1::UploadBundleResponse* response);

// An upload refused before its first read (the caller is over its call
// budget): finishes with `refusal` at once.
grpc::ServerReadReactor<v1::UploadBundleChunk>* NewRefusedUploadReactor(
    const grpc::Status& refusal);

grpc::ServerWriteReactor<v1::BundlePiece>* NewFetchBundleReactor(
    BundleStore* store, Executor* executor, const std::string& digest);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SERVICE_BUNDLE_SERVICE_H_
