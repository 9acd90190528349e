// AuthProcessor: the one place the controller authenticates and authorizes a
// call (DESIGN.md §7). gRPC runs it for every call on a TLS port, before any
// handler:
//  - an agent stream needs a verified client certificate; the agent's id (the
//    certificate's common name, else its first SAN) becomes the
//    `benchfleet.agent_id` property of the call's AuthContext;
//  - every user-API call needs `authorization: Bearer <token>`; the token is
//    looked up by its SHA-256 (cached for `cache_ttl`, so a revocation made by
//    another process takes effect within it), its role checked against the
//    method (auth_policy.h), and `benchfleet.user` / `benchfleet.role` set.
// The authorization header is consumed: handlers never see it and nothing logs
// it. Failures are UNAUTHENTICATED (no or unknown or revoked token, no
// certificate) or PERMISSION_DENIED (role too low), each saying what to do.
// Services read the caller back with CallerOf(). Thread-safe.
#ifndef BENCHFLEET_CONTROLLER_AUTH_AUTH_PROCESSOR_H_
#define BENCHFLEET_CONTROLLER_AUTH_AUTH_PROCESSOR_H_

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/model/token.h"
#include "controller/auth/auth_policy.h"

namespace benchfleet {

inline constexpr char kUserProperty[] = "benchfleet.user";
inline constexpr char kRoleProperty[] = "benchfleet.role";
inline constexpr char kAgentIdProperty[] = "benchfleet.agent_id";

class AuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // Looks a token up by its SHA-256 hex; nullopt when unknown.
  using TokenLookup = std::function<absl::StatusOr<std::optional<TokenRecord>>(
      const std::string& sha256_hex)>;
  AuthProcessor(TokenLookup lookup, Clock* clock,
                absl::Duration cache_ttl = absl::Seconds(5));

  bool IsBlocking() const override { return true; }
  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

  // Drops the cache (after a revocation made through this controller).
  void Forget();

 private:
  absl::StatusOr<std::optional<TokenRecord>> Lookup(const std::string& hash);

  TokenLookup lookup_;
  Clock* clock_;
  const absl::Duration cache_ttl_;
  absl::Mutex mu_;
  struct Cached {
    std::optional<TokenRecord> record;
    absl::Time fetched;
  };
  absl::flat_hash_map<std::string, Cached> cache_ ABSL_GUARDED_BY(mu_);
};

// The caller of a user-API call: from the AuthContext properties the
// processor set; on a controller without TLS, an unauthenticated admin named
// `claimed_user`.
Caller CallerOf(const grpc::AuthContext* context,
                const std::string& claimed_user);
// The agent id of an agent stream's certificate; "" without TLS.
std::string CertifiedAgentId(const grpc::AuthContext* context);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_AUTH_AUTH_PROCESSOR_H_
