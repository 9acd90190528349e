// The one place absl::Status and grpc::Status are converted into each other.
// Used by the controller's service adapters, the agent's stream client and the
// CLI. Stateless.
#ifndef BENCHFLEET_COMMON_GRPC_STATUS_H_
#define BENCHFLEET_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace benchfleet {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_GRPC_STATUS_H_
