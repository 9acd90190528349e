// GrpcBundleFetcher: the production BundleFetcher, AgentService.FetchBundle on
// the controller over a channel with the agent's transport security (its
// client certificate on TLS; plaintext on loopback in local mode). Writes
// the pieces straight to the file, refusing a bundle that announces or sends
// more than the cap. Thread-safe (one channel, one call per Fetch).
#ifndef BENCHFLEET_AGENT_BUNDLE_GRPC_BUNDLE_FETCHER_H_
#define BENCHFLEET_AGENT_BUNDLE_GRPC_BUNDLE_FETCHER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/bundle/bundle_cache.h"
#include "common/credentials.h"

namespace grpc {
class Channel;
}

namespace benchfleet {

class GrpcBundleFetcher final : public BundleFetcher {
 public:
  // A channel to `address` with `transport` (common/credentials.h rules;
  // errors name the flag to fix). Each fetch may take at most `timeout`.
  static absl::StatusOr<std::unique_ptr<GrpcBundleFetcher>> Create(
      const std::string& address, const TransportOptions& transport,
      absl::Duration timeout = absl::Minutes(10));
  GrpcBundleFetcher(std::shared_ptr<grpc::Channel> channel, std::string address,
                    absl::Duration timeout);

  absl::Status Fetch(const std::string& digest, const std::string& path,
                     int64_t max_bytes) override;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  const std::string address_;
  const absl::Duration timeout_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_BUNDLE_GRPC_BUNDLE_FETCHER_H_
