// API tokens: who may call the controller's user API (fleet.proto) and with
// which role (DESIGN.md §7). The token itself is shown once, at creation;
// only its SHA-256 is stored. Roles are ordered: each one may do what the
// ones below it may.
//   viewer    read experiments, agents and history
//   submitter + submit experiments, cancel its own
//   admin     + drain/uncordon agents, cancel any experiment, import history,
//               create/list/revoke tokens
//
// Part of the domain model (common/model/, library benchfleet::model). Plain
// data and pure functions; thread-safe.
#ifndef BENCHFLEET_COMMON_MODEL_TOKEN_H_
#define BENCHFLEET_COMMON_MODEL_TOKEN_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace benchfleet {

enum class Role { kViewer = 0, kSubmitter = 1, kAdmin = 2 };

// "viewer", "submitter", "admin".
const char* RoleName(Role role);
// The inverse of RoleName; InvalidArgument naming the text and the roles.
absl::StatusOr<Role> RoleFromName(std::string_view name);

struct TokenRecord {
  int64_t id = 0;
  std::string user;  // who the token speaks for (`submitted_by`)
  Role role = Role::kViewer;
  std::string sha256_hex;  // of the token text; the text is never stored
  std::string created_by;  // the admin who made it ("" from the controller's
                           // own command line)
  absl::Time created_at = absl::UnixEpoch();
  std::optional<absl::Time> revoked_at;  // set once; never cleared
};

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_MODEL_TOKEN_H_
