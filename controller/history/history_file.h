// The portable history file (docs/history-file.md): completed experiments
// written as YAML by `benchfleet export-history` and read back by
// `benchfleet import-history`, so that history moves between stores (a laptop's
// SQLite, a team's PostgreSQL) and survives them.
//
// The writer is deterministic and exact: every text is a double-quoted YAML
// scalar (or base64 `!!binary` when it is not UTF-8), times are RFC 3339 in
// UTC with microseconds, doubles are written in their shortest form that reads
// back to the same value. So writing, reading into an empty store and writing
// again gives the same bytes.
//
// The reader takes untrusted text: at most kMaxHistoryFileBytes, no anchors
// or aliases (so no alias bombs), one document, known keys only. Errors name
// the file, line and column and say what was expected.
//
// The YAML is parsed by the located-YAML reader (common/yaml/located_yaml.h);
// this file holds only the schema. Pure functions; thread-safe. OpenSSL stays
// inside the .cc file.
#ifndef BENCHFLEET_CONTROLLER_HISTORY_HISTORY_FILE_H_
#define BENCHFLEET_CONTROLLER_HISTORY_HISTORY_FILE_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/history.h"

namespace benchfleet {

// The format version this build writes and the highest it reads.
inline constexpr int kHistoryFileVersion = 1;
// Below the 16 MiB gRPC message bound (common/credentials.h), which the file
// crosses between the CLI and the controller.
inline constexpr size_t kMaxHistoryFileBytes = size_t{15} << 20;

// The entry's origin key: experiment.origin when it was imported, otherwise
// one derived from its completing attempt ("bf1:" + 40 hex digits of a
// SHA-256), stable across exports and distinct between stores.
std::string OriginOf(const HistoryEntry& entry);

// The history file holding `entries` in their order, each with OriginOf as
// its origin.
std::string WriteHistoryFile(const std::vector<HistoryEntry>& entries);

// Reads a history file. Entries come back with ids 0, state kDone, their
// attempt kDone, and experiment.origin set. InvalidArgument
// "<display_path>:<line>:<column>: <field>: <what was expected>" on any
// problem; nothing is returned partially.
absl::StatusOr<std::vector<HistoryEntry>> ParseHistoryFile(
    std::string_view text, const std::string& display_path);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_HISTORY_HISTORY_FILE_H_
