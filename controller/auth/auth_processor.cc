#include "controller/auth/auth_processor.h"

#include <grpc/grpc_security_constants.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

constexpr size_t kMaxCacheEntries = 4096;

std::string FirstValue(const grpc::AuthContext* context, const char* name) {
  if (context == nullptr) return "";
  for (const grpc::string_ref& v : context->FindPropertyValues(name))
    return std::string(v.data(), v.size());
  return "";
}

grpc::Status Unauthenticated(const std::string& message) {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, message);
}

}  // namespace

AuthProcessor::AuthProcessor(TokenLookup lookup, Clock* clock,
                             absl::Duration cache_ttl)
    : lookup_(std::move(lookup)), clock_(clock), cache_ttl_(cache_ttl) {}

void AuthProcessor::Forget() {
  absl::MutexLock lock(&mu_);
  cache_.clear();
}

absl::StatusOr<std::optional<TokenRecord>> AuthProcessor::Lookup(
    const std::string& hash) {
  const absl::Time now = clock_->Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(hash);
    if (it != cache_.end() && now - it->second.fetched < cache_ttl_)
      return it->second.record;
  }
  absl::StatusOr<std::optional<TokenRecord>> found = lookup_(hash);
  if (!found.ok()) return found.status();
  // Unknown tokens are not cached: a flood of made-up tokens must not push
  // the real ones out.
  if (found->has_value()) {
    absl::MutexLock lock(&mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_[hash] = Cached{*found, now};
  }
  return found;
}

grpc::Status AuthProcessor::Process(const InputMetadata& auth_metadata,
                                    grpc::AuthContext* context,
                                    OutputMetadata* consumed_auth_metadata,
                                    OutputMetadata* /*response_metadata*/) {
  std::string path;
  std::string authorization;
  for (const auto& [key, value] : auth_metadata) {
    if (key == ":path") path.assign(value.data(), value.size());
    if (key == "authorization")
      authorization.assign(value.data(), value.size());
  }
  const MethodRule* rule = FindMethodRule(path);
  if (rule == nullptr) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("method '", path, "' is not served by benchfleet"));
  }
  if (rule->agent) {
    std::string id = FirstValue(context, GRPC_X509_CN_PROPERTY_NAME);
    if (id.empty()) id = FirstValue(context, GRPC_X509_SAN_PROPERTY_NAME);
    if (id.empty()) {
      return Unauthenticated(
          "agent streams need a client certificate signed by the controller's "
          "client CA: make one with `benchfleet certs agent NAME` and start "
          "the agent with --tls-cert, --tls-key and --ca (docs/operations.md)");
    }
    context->AddProperty(kAgentIdProperty, id);
    return grpc::Status::OK;
  }
  if (!authorization.empty()) {
    consumed_auth_metadata->insert({"authorization", authorization});
  }
  if (authorization.empty()) {
    return Unauthenticated(
        "no token: this controller requires one. Pass --token-file FILE (or "
        "set BENCHFLEET_TOKEN_FILE); an admin creates tokens with `benchfleet "
        "token create --user NAME --role viewer|submitter|admin`");
  }
  if (!absl::StartsWith(authorization, "Bearer ")) {
    return Unauthenticated(
        "the authorization header is not 'Bearer <token>'; use the benchfleet "
        "CLI's --token-file");
  }
  const std::string hash =
      TokenSha256Hex(std::string_view(authorization).substr(7));
  absl::StatusOr<std::optional<TokenRecord>> found = Lookup(hash);
  if (!found.ok()) {
    spdlog::error("auth: cannot look tokens up: {}", found.status().ToString());
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the controller cannot read its token store right "
                        "now; try again shortly");
  }
  if (!found->has_value()) {
    return Unauthenticated(
        "token not recognised: it was mistyped or belongs to another "
        "controller. Check --token-file, or ask an admin for a new token "
        "(`benchfleet token create`)");
  }
  const TokenRecord& token = **found;
  if (token.revoked_at.has_value()) {
    return Unauthenticated(absl::StrCat(
        "token ", token.id, " of '", token.user, "' was revoked on ",
        absl::FormatTime("%Y-%m-%d %H:%M UTC", *token.revoked_at,
                         absl::UTCTimeZone()),
        "; ask an admin for a new one (`benchfleet token create`)"));
  }
  Caller caller{token.user, token.role, true};
  if (absl::Status s = CheckMethodAllowed(caller, path); !s.ok()) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        std::string(s.message()));
  }
  context->AddProperty(kUserProperty, token.user);
  context->AddProperty(kRoleProperty, RoleName(token.role));
  return grpc::Status::OK;
}

Caller CallerOf(const grpc::AuthContext* context,
                const std::string& claimed_user) {
  const std::string user = FirstValue(context, kUserProperty);
  if (user.empty()) return Caller{claimed_user, Role::kAdmin, false};
  absl::StatusOr<Role> role = RoleFromName(FirstValue(context, kRoleProperty));
  return Caller{user, role.ok() ? *role : Role::kViewer, true};
}

std::string CertifiedAgentId(const grpc::AuthContext* context) {
  return FirstValue(context, kAgentIdProperty);
}

}  // namespace benchfleet
