#include "controller/store/history_import.h"

#include <string>

namespace benchfleet {

absl::Status CheckImportEntries(const std::vector<HistoryEntry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const ExperimentRecord& e = entries[i].experiment;
    const std::string which = "history entry " + std::to_string(i + 1) +
                              " (experiment \"" + e.name.substr(0, 80) + "\")";
    if (e.origin.empty()) {
      return absl::InvalidArgumentError(
          which +
          " has no origin key; every imported experiment needs one "
          "(docs/history-file.md); nothing was imported");
    }
    if (e.origin.size() > kMaxOriginBytes) {
      return absl::InvalidArgumentError(
          which + " has an origin key of " + std::to_string(e.origin.size()) +
          " bytes; at most " + std::to_string(kMaxOriginBytes) +
          " are allowed; nothing was imported");
    }
    if (e.state != ExperimentState::kDone) {
      return absl::InvalidArgumentError(
          which + " is " + ExperimentStateName(e.state) +
          "; only completed (done) experiments can be imported; nothing was "
          "imported");
    }
    if (e.max_attempts < 1) {
      return absl::InvalidArgumentError(
          which + ": max_attempts must be at least 1, got " +
          std::to_string(e.max_attempts) + "; nothing was imported");
    }
  }
  return absl::OkStatus();
}

std::string ImportedLeaseToken(const std::string& origin) {
  return "imported:" + origin;
}

}  // namespace benchfleet
