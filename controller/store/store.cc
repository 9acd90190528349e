#include "controller/store/store.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "controller/store/sqlite_store.h"

namespace benchfleet {
namespace {

template <typename Enum, size_t N>
bool ParseByName(std::string_view name, const char* const (&names)[N],
                 Enum* out) {
  for (size_t i = 0; i < N; ++i) {
    if (name == names[i]) {
      *out = static_cast<Enum>(i);
      return true;
    }
  }
  return false;
}

// Indexed by the enumerator's value; the order must follow the enum
// declarations in store.h.
constexpr const char* kExperimentStateNames[] = {"queued", "running", "done",
                                                 "failed", "cancelled"};
constexpr const char* kAttemptStateNames[] = {"running", "done", "lost",
                                              "failed", "cancelled"};
constexpr const char* kAgentStateNames[] = {"idle", "busy", "draining",
                                            "quarantined", "offline"};

template <size_t N>
const char* NameAt(const char* const (&names)[N], int index) {
  return index >= 0 && static_cast<size_t>(index) < N ? names[index]
                                                      : "unknown";
}

// The URL for error messages, with any password replaced:
// "scheme://user:***@host/...".
std::string RedactUrl(const std::string& url) {
  const size_t authority = url.find("://");
  if (authority == std::string::npos) return url;
  const size_t start = authority + 3;
  const size_t end = std::min(url.find('/', start), url.size());
  const size_t at = url.rfind('@', end);
  if (at == std::string::npos || at < start) return url;
  const size_t colon = url.find(':', start);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

const char* ExperimentStateName(ExperimentState s) {
  return NameAt(kExperimentStateNames, static_cast<int>(s));
}
const char* AttemptStateName(AttemptState s) {
  return NameAt(kAttemptStateNames, static_cast<int>(s));
}
const char* AgentStateName(AgentState s) {
  return NameAt(kAgentStateNames, static_cast<int>(s));
}

bool ParseExperimentState(std::string_view name, ExperimentState* out) {
  return ParseByName(name, kExperimentStateNames, out);
}
bool ParseAttemptState(std::string_view name, AttemptState* out) {
  return ParseByName(name, kAttemptStateNames, out);
}
bool ParseAgentState(std::string_view name, AgentState* out) {
  return ParseByName(name, kAgentStateNames, out);
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url) {
  constexpr std::string_view kSqliteMemory = "sqlite::memory:";
  constexpr std::string_view kSqlitePrefix = "sqlite://";
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
  } else if (url.starts_with("postgresql://") ||
             url.starts_with("postgres://")) {
    return absl::UnimplementedError(
        "PostgreSQL store is not built yet (store URL \"" + RedactUrl(url) +
        "\"); use a sqlite:// URL for now");
  } else {
    return absl::InvalidArgumentError(
        "unsupported store URL \"" + RedactUrl(url) +
        "\"; expected sqlite:///absolute/path.db, sqlite://relative.db or "
        "sqlite::memory:");
  }
  auto store = SqliteStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace benchfleet
