// Numbered schema migrations for the SQL stores (SqliteStore and PgStore; both
// use the same version numbers). Migration N is a list of statements that a
// store applies in one transaction and records in
// `schema_migrations(version, applied_at)`; a store refuses a database whose
// recorded version is higher than LatestSchemaVersion().
//
// The SQL is portable between SQLite and PostgreSQL except for auto-assigned id
// columns and index methods, written as placeholders ({{ID}}, {{BRIN}}) and
// rendered per dialect by MigrationStatements(), and for what only PostgreSQL
// has (the read-only role and views for Grafana, migration 3), kept in
// `postgres_only`. A migration whose statements are all PostgreSQL-only is
// recorded on SQLite without changing anything there, so that version numbers
// mean the same schema history on both.
//
// Pure constant data and functions of it: thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_MIGRATIONS_H_
#define BENCHFLEET_CONTROLLER_STORE_MIGRATIONS_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace benchfleet {

enum class SqlDialect { kSqlite, kPostgres };

struct Migration {
  int version = 0;               // 1, 2, ... with no gaps
  std::string_view description;  // for logs and error messages
  std::span<const std::string_view>
      statements;  // dialect-neutral; see MigrationStatements
  // Run on PostgreSQL only, after `statements`.
  std::span<const std::string_view> postgres_only = {};
  // Run on SQLite only, after `statements` (what PostgreSQL does differently
  // in `postgres_only`).
  std::span<const std::string_view> sqlite_only = {};
};

// All migrations, in version order: versions 1..LatestSchemaVersion().
std::span<const Migration> AllMigrations();

// The highest version this build knows.
int LatestSchemaVersion();

// The migration that takes a database at schema version `current` one step
// toward `target` (1..LatestSchemaVersion()), or nullptr once it is there.
// FailedPrecondition when the database is newer than this build (`what` names
// it: "store database PATH", "PostgreSQL store NAME"); Internal when the
// migrations are not numbered without gaps. The one rule both backends'
// migration passes follow.
absl::StatusOr<const Migration*> NextMigration(int64_t current, int target,
                                               const std::string& what);

// DDL for the bookkeeping table (idempotent: CREATE TABLE IF NOT EXISTS).
// Portable.
std::string_view SchemaMigrationsTableSql();

// The statements of `migration` ready to execute on `dialect` (placeholders
// replaced; followed by `postgres_only` for kPostgres, by `sqlite_only` for
// kSqlite). May be empty for kSqlite.
std::vector<std::string> MigrationStatements(const Migration& migration,
                                             SqlDialect dialect);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_MIGRATIONS_H_
