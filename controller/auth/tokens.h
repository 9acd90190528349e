// Issuing, listing and revoking API tokens over the Store: shared by the user
// API (FleetApi: `benchfleet token ...` as an admin) and by the controller's
// own command line (`benchfleet-controller token create`, which makes the
// first admin token on the controller's host). Thread-safe if the Store is.
#ifndef BENCHFLEET_CONTROLLER_AUTH_TOKENS_H_
#define BENCHFLEET_CONTROLLER_AUTH_TOKENS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/token.h"
#include "controller/store/store.h"

namespace benchfleet {

struct IssuedToken {
  TokenRecord record;
  std::string text;  // shown once; only its SHA-256 is stored
};

// InvalidArgument for a bad user name or role name (saying which).
absl::StatusOr<IssuedToken> IssueToken(Store* store, const std::string& user,
                                       const std::string& role_name,
                                       const std::string& created_by,
                                       absl::Time now);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_AUTH_TOKENS_H_
