// OpenStore (store.h): picks the Store implementation for a URL. It lives in
// its own library, benchfleet::store, above both implementations, so that the
// SQLite and PostgreSQL stores depend only on the interface and neither on the
// other; libpqxx stays private to benchfleet::pg_store.
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/store/pg_store.h"
#include "controller/store/sqlite_store.h"
#include "controller/store/store.h"

namespace benchfleet {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url) {
  constexpr std::string_view kSqliteMemory = "sqlite::memory:";
  constexpr std::string_view kSqlitePrefix = "sqlite://";
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return OpenPgStore(url);
  }
  SqliteOptions options;
  if (url == kSqliteMemory) {
    options.path = ":memory:";
  } else if (url.starts_with(kSqlitePrefix)) {
    // "sqlite:///abs/path.db" leaves "/abs/path.db"; "sqlite://rel.db" leaves
    // "rel.db".
    options.path = url.substr(kSqlitePrefix.size());
    if (options.path.empty()) {
      return absl::InvalidArgumentError(
          "store URL \"" + url +
          "\" names no database file; use "
          "sqlite:///absolute/path.db or sqlite://relative.db");
    }
  } else {
    return absl::InvalidArgumentError(
        "unsupported store URL \"" + RedactUrl(url) +
        "\"; expected sqlite:///absolute/path.db, sqlite://relative.db, "
        "sqlite::memory: or postgresql://user@host:port/dbname");
  }
  auto store = SqliteStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace benchfleet
