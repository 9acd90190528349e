// The history commands of the benchfleet CLI (README "History"):
//   history --benchmark NAME [--input I] [--host H] [--since D] [--csv]
//   export-history FILE [--benchmark NAME] [--since D]
//   import-history FILE
// commands.cc registers them on its CLI11 app and runs the one that was
// parsed against the controller. Not thread-safe; used from main only.
#ifndef BENCHFLEET_CLI_HISTORY_COMMANDS_H_
#define BENCHFLEET_CLI_HISTORY_COMMANDS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchfleet/v1/fleet.grpc.pb.h"

namespace benchfleet {

// The parsed flags of the history commands; filled by CLI11.
struct HistoryCommands {
  CLI::App* history = nullptr;
  CLI::App* export_history = nullptr;
  CLI::App* import_history = nullptr;
  std::string benchmark;
  std::string input;
  std::string host;
  std::string since;
  std::string file;
  bool csv = false;
};

// Adds the three subcommands to `app`; `cmds` must outlive the parse.
void AddHistoryCommands(CLI::App& app, HistoryCommands& cmds);

// Runs the history command that was parsed, against `stub`, and returns its
// exit code (commands.h); std::nullopt when none of them was parsed.
// `controller` names the address in "cannot reach" messages; `json` is the
// global --json.
std::optional<int> RunHistoryCommands(const HistoryCommands& cmds,
                                      v1::FleetService::Stub* stub,
                                      const std::string& controller, bool json);

// "30d", "12h", "90m", "2w" (before `now`), a date "2026-03-01" (UTC
// midnight) or an RFC 3339 time. InvalidArgument saying what is accepted.
absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now);

// The rows as the history table, CSV (with a header line) or JSON text.
std::string HistoryTable(const v1::GetHistoryResponse& history);
std::string HistoryCsv(const v1::GetHistoryResponse& history);
std::string HistoryJson(const v1::GetHistoryResponse& history);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_HISTORY_COMMANDS_H_
