#include "common/credentials.h"

#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

std::string HostOf(const std::string& address) {
  if (absl::StartsWith(address, "[")) {
    auto end = address.find(']');
    return end == std::string::npos ? address : address.substr(1, end - 1);
  }
  auto colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

absl::Status CheckPlaintextAllowed(const std::string& address,
                                   const TransportOptions& options) {
  if (!options.cert_file.empty() || !options.key_file.empty() ||
      !options.ca_file.empty()) {
    return absl::UnimplementedError(
        "TLS certificates were configured, but this build of benchfleet only "
        "supports "
        "plaintext on loopback; remove the tls settings or use a loopback "
        "address");
  }
  if (!IsLoopbackAddress(address)) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing plaintext gRPC on '", address,
                     "': other hosts could reach it; use a loopback address "
                     "(127.0.0.1:PORT) until TLS "
                     "is configured"));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  if (absl::StartsWith(address, "unix:")) return true;
  const std::string host = HostOf(address);
  return host == "localhost" || absl::StartsWith(host, "127.") ||
         host == "::1" || absl::StartsWith(address, "ipv4:127.") ||
         absl::StartsWith(address, "ipv6:[::1]");
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const std::string& address, const TransportOptions& options) {
  if (absl::Status s = CheckPlaintextAllowed(address, options); !s.ok())
    return s;
  return grpc::InsecureServerCredentials();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const std::string& address,
                       const TransportOptions& options) {
  if (absl::Status s = CheckPlaintextAllowed(address, options); !s.ok())
    return s;
  return grpc::InsecureChannelCredentials();
}

grpc::ChannelArguments MakeChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Keepalive pings every 20 s even without calls; the server permits this
  // (below).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  return args;
}

void ConfigureServerBuilder(grpc::ServerBuilder& builder) {
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
}

}  // namespace benchfleet
