// Transport credentials for every gRPC endpoint in benchfleet, from one
// factory, so that TLS (DESIGN.md §7) can be switched on without touching the
// services. Today only plaintext on loopback is allowed: a non-loopback address
// is refused with a message saying so. Stateless.
#ifndef BENCHFLEET_COMMON_CREDENTIALS_H_
#define BENCHFLEET_COMMON_CREDENTIALS_H_

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace benchfleet {

struct TransportOptions {
  // Reserved for mutual TLS: certificate, key and CA paths. Empty = plaintext.
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
};

// True when `address` ("host:port", "[v6]:port", "unix:...") only reaches this
// machine.
bool IsLoopbackAddress(const std::string& address);

// Credentials for a server listening on `address`. InvalidArgument when
// plaintext is asked for on an address other hosts can reach, or TLS options
// are given (not built yet).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& address, const TransportOptions& options);
// Credentials for a client dialling `address`; same rules.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const std::string& address,
                       const TransportOptions& options);

// Channel arguments shared by every benchfleet client: keepalive (matching the
// server's permissions), bounded message sizes, reconnect backoff.
grpc::ChannelArguments MakeChannelArguments();
// Server-side counterparts: applied by the controller to its ServerBuilder.
void ConfigureServerBuilder(class grpc::ServerBuilder& builder);

inline constexpr int kMaxMessageBytes = 16 * 1024 * 1024;

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_CREDENTIALS_H_
