// PgStore (pg_store.h): API tokens.
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/pg_conn.h"
#include "controller/store/pg_rows.h"
#include "controller/store/pg_store.h"

namespace benchfleet {

using pg_internal::I64;
using pg_internal::Query;
using pg_internal::Str;
using pg_internal::Time;
using pg_internal::ToMicros;
using pg_internal::Txn;

namespace {

#define BF_TOKEN_COLUMNS \
  "id, user_name, role, token_sha256, created_by, created_at, revoked_at"

constexpr Query kInsertToken{
    "bf_insert_token",
    "INSERT INTO api_tokens (user_name, role, token_sha256, created_by, "
    "created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL) RETURNING id"};
constexpr Query kFindToken{"bf_find_token",
                           "SELECT " BF_TOKEN_COLUMNS
                           " FROM api_tokens WHERE token_sha256 = $1"};
constexpr Query kGetToken{"bf_get_token", "SELECT " BF_TOKEN_COLUMNS
                                          " FROM api_tokens WHERE id = $1"};
constexpr Query kListTokens{"bf_list_tokens", "SELECT " BF_TOKEN_COLUMNS
                                              " FROM api_tokens ORDER BY id"};
constexpr Query kRevokeToken{"bf_revoke_token",
                             "UPDATE api_tokens SET revoked_at = $1 WHERE "
                             "id = $2 AND revoked_at IS NULL"};

absl::StatusOr<TokenRecord> ReadToken(const pqxx::row& row) {
  TokenRecord t;
  t.id = I64(row["id"]);
  t.user = Str(row["user_name"]);
  ASSIGN_OR_RETURN(t.role, RoleFromName(Str(row["role"])));
  t.sha256_hex = Str(row["token_sha256"]);
  t.created_by = Str(row["created_by"]);
  t.created_at = Time(row["created_at"]);
  if (!row["revoked_at"].is_null()) t.revoked_at = Time(row["revoked_at"]);
  return t;
}

}  // namespace

absl::StatusOr<TokenRecord> PgStore::CreateToken(const TokenRecord& token) {
  TokenRecord out = token;
  RETURN_IF_ERROR(Transact(
      "storing a token for " + token.user, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        if (!txn.Exec(kFindToken, token.sha256_hex).empty())
          return absl::AlreadyExistsError("a token with that hash is stored");
        out.id = I64(txn.Exec(kInsertToken, token.user, RoleName(token.role),
                              token.sha256_hex, token.created_by,
                              ToMicros(token.created_at))[0][0]);
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::optional<TokenRecord>> PgStore::FindToken(
    const std::string& sha256_hex) {
  std::optional<TokenRecord> out;
  RETURN_IF_ERROR(Transact(
      "looking a token up", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.reset();
        const pqxx::result r = txn.Exec(kFindToken, sha256_hex);
        if (r.empty()) return absl::OkStatus();
        ASSIGN_OR_RETURN(out, ReadToken(r[0]));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<TokenRecord>> PgStore::ListTokens() {
  std::vector<TokenRecord> out;
  RETURN_IF_ERROR(
      Transact("listing tokens", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListTokens)) {
          ASSIGN_OR_RETURN(TokenRecord t, ReadToken(row));
          out.push_back(std::move(t));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<TokenRecord> PgStore::RevokeToken(int64_t id, absl::Time when) {
  TokenRecord out;
  RETURN_IF_ERROR(Transact(
      absl::StrCat("revoking token ", id), TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        txn.Exec(kRevokeToken, ToMicros(when), id);
        const pqxx::result r = txn.Exec(kGetToken, id);
        if (r.empty()) {
          return absl::NotFoundError(absl::StrCat(
              "token ", id, " not found; `benchfleet token list` shows them"));
        }
        ASSIGN_OR_RETURN(out, ReadToken(r[0]));
        return absl::OkStatus();
      }));
  return out;
}

}  // namespace benchfleet
