// Who may call what on the controller (DESIGN.md §7), as pure functions: the
// method table (agent streams need an agent certificate; each user-API method
// needs a role), the caller as the services see it, token text and its hash,
// and the admission of an agent's hello (its id must be its certificate's;
// trusted labels are pinned by the controller, like Swarming's trusted
// dimensions). The gRPC side is auth_processor.h. Stateless; thread-safe.
#ifndef BENCHFLEET_CONTROLLER_AUTH_AUTH_POLICY_H_
#define BENCHFLEET_CONTROLLER_AUTH_AUTH_POLICY_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/token.h"

namespace benchfleet {

// The caller of a user-API method. On a controller without TLS (plaintext on
// loopback, local mode) nobody is authenticated and every caller may do
// everything, as the local user could anyway; `user` is then what the client
// said.
struct Caller {
  std::string user;
  Role role = Role::kAdmin;
  bool authenticated = false;
};

// What a gRPC method ("/benchfleet.v1.FleetService/Submit") needs.
struct MethodRule {
  std::string_view path;
  bool agent = false;  // an agent certificate, not a token
  Role role = Role::kViewer;
};
// nullptr for a method benchfleet does not serve.
const MethodRule* FindMethodRule(std::string_view path);
// PermissionDenied, saying which role the method needs and what to do, when
// `caller` may not call `path`.
absl::Status CheckMethodAllowed(const Caller& caller, std::string_view path);
// Cancelling: a submitter may cancel its own experiments only.
absl::Status CheckMayCancel(const Caller& caller, const std::string& owner,
                            int64_t experiment_id);

// A new token: "bft_" and 43 base64url characters (256 random bits).
std::string NewTokenText();
// Lowercase hex SHA-256 of the token text, what the store keeps.
std::string TokenSha256Hex(std::string_view text);
// User names for tokens: 1-64 of [A-Za-z0-9._@-].
absl::Status CheckUserName(const std::string& user);

// Labels the controller pins per agent id. Every key that appears for any
// agent is trusted: an agent's own value for it is replaced by its pin or,
// without one, dropped, so that no agent can put itself into a pool.
struct TrustedLabels {
  std::map<std::string, std::map<std::string, std::string>> per_agent;
  std::set<std::string> Keys() const;
};

struct Admission {
  std::map<std::string, std::string> labels;  // after pinning
  std::vector<std::string> changes;  // "pool=gpu replaced by pool=cpu", ...
};
// `certificate_id` is the id in the agent's client certificate ("" without
// TLS, where the hello's id is taken as said). PermissionDenied when the hello
// claims another id than its certificate's.
absl::StatusOr<Admission> AdmitAgent(
    const std::string& hello_id,
    const std::map<std::string, std::string>& hello_labels,
    const std::string& certificate_id, const TrustedLabels& trusted);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_AUTH_AUTH_POLICY_H_
