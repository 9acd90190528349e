// Source bundles from the command line (issue 11):
//   bundle push [DIR] [--file PATH]... [--bundle-max-size MiB]
// packs DIR (default ".") into a content-addressed bundle, asks the
// controller whether it holds it already and uploads it in 1 MiB chunks only
// when not, printing the digest and the bytes sent. `submit --bundle` calls
// PushBundle for the spec's directory before it submits. commands.cc
// registers the subcommand and runs it. Not thread-safe; used from main (and
// by tests and bench/bundle_bench through PushBundle).
#ifndef BENCHFLEET_CLI_BUNDLE_COMMANDS_H_
#define BENCHFLEET_CLI_BUNDLE_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "cli/bundle_push.h"
#include "common/bundle/bundle.h"

namespace benchfleet {

// The parsed flags; filled by CLI11.
struct BundleCommands {
  CLI::App* push = nullptr;
  std::string dir = ".";
  std::vector<std::string> files;
  int64_t max_size_mib = kDefaultMaxBundleBytes >> 20;
};

// Adds `bundle push` to `app`; `cmds` must outlive the parse. `max_size_mib`
// also serves `submit --bundle` (its --bundle-max-size).
void AddBundleCommands(CLI::App& app, BundleCommands& cmds);

// PackOptions for the parsed flags.
PackOptions BundlePackOptions(const BundleCommands& cmds);

// Runs `bundle push` when it was parsed; nullopt otherwise.
std::optional<int> RunBundleCommands(const BundleCommands& cmds,
                                     v1::FleetService::Stub* stub,
                                     const std::string& controller, bool json);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_BUNDLE_COMMANDS_H_
