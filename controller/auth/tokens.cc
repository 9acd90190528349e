#include "controller/auth/tokens.h"

#include "common/status_macros.h"
#include "controller/auth/auth_policy.h"

namespace benchfleet {

absl::StatusOr<IssuedToken> IssueToken(Store* store, const std::string& user,
                                       const std::string& role_name,
                                       const std::string& created_by,
                                       absl::Time now) {
  RETURN_IF_ERROR(CheckUserName(user));
  ASSIGN_OR_RETURN(Role role, RoleFromName(role_name));
  IssuedToken out;
  out.text = NewTokenText();
  TokenRecord record;
  record.user = user;
  record.role = role;
  record.sha256_hex = TokenSha256Hex(out.text);
  record.created_by = created_by;
  record.created_at = now;
  ASSIGN_OR_RETURN(out.record, store->CreateToken(record));
  return out;
}

}  // namespace benchfleet
