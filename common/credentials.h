// Transport credentials for every gRPC endpoint in benchfleet, from one
// factory (DESIGN.md §7):
//  - plaintext, the default, only on loopback; on an address other hosts can
//    reach it needs `insecure` and logs a warning at every start;
//  - TLS when a certificate is configured. The controller serves agents and
//    users on one port: it asks every client for a certificate and verifies
//    one that is presented against the client CA (agents must present one;
//    the auth processor refuses agent streams without it, users authenticate
//    with bearer tokens instead). Clients verify the controller's certificate
//    against their CA and its name against the address they dial. Certificate
//    files are watched and re-read when they change (no restart).
// Stateless apart from gRPC's certificate watchers; thread-safe.
#ifndef BENCHFLEET_COMMON_CREDENTIALS_H_
#define BENCHFLEET_COMMON_CREDENTIALS_H_

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace grpc {
class ServerBuilder;
}

namespace benchfleet {

struct TransportOptions {
  // Server: its certificate chain and key (TLS when set). Client: its own
  // certificate and key for mutual TLS (agents; empty for the CLI).
  std::string cert_file;
  std::string key_file;
  // Server: the CA that signs agents' client certificates (--client-ca).
  // Client: the CA that signed the controller's certificate (--ca); TLS when
  // set.
  std::string ca_file;
  // Plaintext on an address other hosts can reach (--insecure).
  bool insecure = false;
  // Client: the name the controller's certificate must carry, when it differs
  // from the host in the address dialled.
  std::string server_name;
  // Client: bearer token sent with every call (only over TLS).
  std::string token;
  // How often certificate files are looked at for changes.
  int refresh_interval_s = 60;

  bool tls() const { return !cert_file.empty() || !ca_file.empty(); }
};

// True when `address` ("host:port", "[v6]:port", "unix:...") only reaches this
// machine.
bool IsLoopbackAddress(const std::string& address);

// Credentials for a server listening on `address`. InvalidArgument when
// plaintext is asked for on an address other hosts can reach without
// `insecure`, or the TLS files are incomplete, unreadable, do not match or
// have expired (the message names the file and the flag). `processor`, when
// given and TLS is on, authenticates every call (controller/auth/).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& address, const TransportOptions& options,
    std::shared_ptr<grpc::AuthMetadataProcessor> processor = nullptr);
// Credentials for a client dialling `address`; same rules.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const std::string& address,
                       const TransportOptions& options);

// Channel arguments shared by every benchfleet client: keepalive (matching the
// server's permissions), bounded message sizes, reconnect backoff, and the TLS
// name override of `options`.
grpc::ChannelArguments MakeChannelArguments(
    const TransportOptions& options = {});
// Server-side counterparts: applied by the controller to its ServerBuilder.
void ConfigureServerBuilder(grpc::ServerBuilder& builder);

// Reads a token file (one line; surrounding white space dropped). Errors name
// the file; a file other users can read is refused (chmod 600).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

inline constexpr int kMaxMessageBytes = 16 * 1024 * 1024;

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_CREDENTIALS_H_
