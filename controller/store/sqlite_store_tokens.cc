// SqliteStore (sqlite_store.h): API tokens.
#include <sqlite3.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "controller/store/sqlite_db.h"
#include "controller/store/sqlite_store.h"

namespace benchfleet {

using sqlite_internal::Conn;
using sqlite_internal::Select;
using sqlite_internal::Stmt;
using sqlite_internal::Transact;
using sqlite_internal::TxnKind;

namespace {

constexpr std::string_view kTokenColumns =
    "id, user_name, role, token_sha256, created_by, created_at, revoked_at";

absl::StatusOr<TokenRecord> ReadToken(const Stmt& row) {
  TokenRecord t;
  t.id = row.Int("id");
  t.user = row.Text("user_name");
  ASSIGN_OR_RETURN(t.role, RoleFromName(row.Text("role")));
  t.sha256_hex = row.Text("token_sha256");
  t.created_by = row.Text("created_by");
  t.created_at = sqlite_internal::FromMicros(row.Int("created_at"));
  if (!row.IsNull("revoked_at"))
    t.revoked_at = sqlite_internal::FromMicros(row.Int("revoked_at"));
  return t;
}

absl::StatusOr<std::optional<TokenRecord>> SelectTokenWhere(
    Conn& conn, std::string_view where, const std::string& key,
    std::optional<int64_t> id) {
  ASSIGN_OR_RETURN(
      Stmt stmt,
      conn.Prepare(Select(kTokenColumns, absl::StrCat("FROM api_tokens ",
                                                      std::string(where)))));
  if (id.has_value()) {
    stmt.BindInt(*id);
  } else {
    stmt.BindText(key);
  }
  ASSIGN_OR_RETURN(bool found, stmt.Step());
  if (!found) return std::optional<TokenRecord>();
  ASSIGN_OR_RETURN(TokenRecord t, ReadToken(stmt));
  return std::optional<TokenRecord>(std::move(t));
}

}  // namespace

absl::StatusOr<TokenRecord> SqliteStore::CreateToken(const TokenRecord& token) {
  TokenRecord out = token;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, "storing a token for " + token.user,
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(std::optional<TokenRecord> existing,
                         SelectTokenWhere(conn, "WHERE token_sha256 = ?",
                                          token.sha256_hex, std::nullopt));
        if (existing.has_value())
          return absl::AlreadyExistsError("a token with that hash is stored");
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare("INSERT INTO api_tokens (user_name, role, "
                         "token_sha256, created_by, created_at, revoked_at) "
                         "VALUES (?, ?, ?, ?, ?, NULL)"));
        stmt.BindText(token.user)
            .BindText(RoleName(token.role))
            .BindText(token.sha256_hex)
            .BindText(token.created_by)
            .BindTime(token.created_at);
        RETURN_IF_ERROR(stmt.Run());
        out.id = conn.LastInsertRowid();
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::optional<TokenRecord>> SqliteStore::FindToken(
    const std::string& sha256_hex) {
  std::optional<TokenRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "looking a token up",
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(out, SelectTokenWhere(conn, "WHERE token_sha256 = ?",
                                               sha256_hex, std::nullopt));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<TokenRecord>> SqliteStore::ListTokens() {
  std::vector<TokenRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead, "listing tokens",
      [&](Conn& conn) -> absl::Status {
        out.clear();
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare(Select(kTokenColumns, "FROM api_tokens ORDER BY id")));
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          ASSIGN_OR_RETURN(TokenRecord t, ReadToken(stmt));
          out.push_back(std::move(t));
        }
      }));
  return out;
}

absl::StatusOr<TokenRecord> SqliteStore::RevokeToken(int64_t id,
                                                     absl::Time when) {
  TokenRecord out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kWrite, absl::StrCat("revoking token ", id),
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(Stmt stmt,
                         conn.Prepare("UPDATE api_tokens SET revoked_at = ? "
                                      "WHERE id = ? AND revoked_at IS NULL"));
        stmt.BindTime(when).BindInt(id);
        RETURN_IF_ERROR(stmt.Run());
        ASSIGN_OR_RETURN(std::optional<TokenRecord> t,
                         SelectTokenWhere(conn, "WHERE id = ?", "", id));
        if (!t.has_value()) {
          return absl::NotFoundError(absl::StrCat(
              "token ", id, " not found; `benchfleet token list` shows them"));
        }
        out = std::move(*t);
        return absl::OkStatus();
      }));
  return out;
}

}  // namespace benchfleet
