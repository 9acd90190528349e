#include "cli/bundle_commands.h"

#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/output.h"
#include "nlohmann/json.hpp"

namespace benchfleet {

void AddBundleCommands(CLI::App& app, BundleCommands& cmds) {
  auto* bundle = app.add_subcommand(
      "bundle", "source bundles: a directory delivered to agents by digest");
  bundle->require_subcommand(1);
  cmds.push = bundle->add_subcommand(
      "push",
      "pack DIR and upload it unless the controller holds it already; prints "
      "its digest");
  cmds.push->add_option("dir", cmds.dir,
                        "directory to pack (default: the current one): "
                        "git-tracked and untracked-not-ignored files in a git "
                        "work tree, else every file");
  cmds.push->add_option("--file", cmds.files,
                        "pack only this path under DIR (repeatable; a "
                        "directory stands for everything under it)");
  cmds.push->add_option("--bundle-max-size", cmds.max_size_mib,
                        "refuse a bundle larger than this many MiB (default "
                        "256)");
}

PackOptions BundlePackOptions(const BundleCommands& cmds) {
  PackOptions o;
  o.files = cmds.files;
  o.max_bytes = cmds.max_size_mib << 20;
  o.cap_hint = "--bundle-max-size MiB";
  return o;
}

std::optional<int> RunBundleCommands(const BundleCommands& cmds,
                                     v1::FleetService::Stub* stub,
                                     const std::string& controller, bool json) {
  if (cmds.push == nullptr || !cmds.push->parsed()) return std::nullopt;
  if (cmds.max_size_mib <= 0) {
    std::fprintf(stderr,
                 "benchfleet bundle push: --bundle-max-size must be a "
                 "positive number of MiB\n");
    return kExitUsage;
  }
  absl::StatusOr<BundlePush> push =
      PushBundle(stub, cmds.dir, BundlePackOptions(cmds));
  if (!push.ok()) {
    if (absl::IsFailedPrecondition(push.status()) ||
        absl::IsInvalidArgument(push.status()) ||
        absl::IsNotFound(push.status())) {
      // The packer's own refusals (cap, paths) say what to do already.
      std::fprintf(stderr, "benchfleet bundle push: %s\n",
                   std::string(push.status().message()).c_str());
      return kExitUserError;
    }
    return ReportRpcError(push.status(), controller);
  }
  if (json) {
    nlohmann::json j = {{"digest", push->info.digest},
                        {"size_bytes", push->info.size_bytes},
                        {"files", push->info.files},
                        {"already_held", push->already_held},
                        {"bytes_sent", push->bytes_sent}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::fprintf(stderr, "%s\n", DescribePush(*push, cmds.dir).c_str());
    std::cout << push->info.digest << "\n";
  }
  return kExitOk;
}

}  // namespace benchfleet
