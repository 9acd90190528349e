// Checks and conventions that SqliteStore and PgStore share for
// Store::ImportHistory (store.h). Pure functions; thread-safe.
#ifndef BENCHFLEET_CONTROLLER_STORE_HISTORY_IMPORT_H_
#define BENCHFLEET_CONTROLLER_STORE_HISTORY_IMPORT_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/model/history.h"

namespace benchfleet {

// Origin keys are short identifiers (docs/history-file.md); the bound keeps
// them indexable on PostgreSQL, whose btree entries hold at most ~2.7 KB.
inline constexpr size_t kMaxOriginBytes = 200;

// InvalidArgument naming the entry (index, experiment name) when an entry has
// no origin, an origin longer than kMaxOriginBytes, or an experiment that is
// not kDone; OK otherwise. Nothing is stored when this fails.
absl::Status CheckImportEntries(const std::vector<HistoryEntry>& entries);

// The lease token given to the attempt of an imported experiment: attempts
// need a unique token, and an imported attempt never runs, so it is derived
// from the origin (unique per store).
std::string ImportedLeaseToken(const std::string& origin);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_HISTORY_IMPORT_H_
