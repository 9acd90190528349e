// The fleet-administration commands of the benchfleet CLI
// (docs/operations.md):
//   certs init DIR [--san NAME]... [--days N]   CA + controller certificate
//   certs agent NAME [--dir DIR] [--days N]     an agent's client certificate
//   token create --user NAME --role ROLE        (admin) prints the token once
//   token list | token revoke ID                (admin)
//   whoami                                      who the controller says you are
// commands.cc registers them on its CLI11 app and runs the one that was
// parsed. Not thread-safe; used from main only.
#ifndef BENCHFLEET_CLI_ADMIN_COMMANDS_H_
#define BENCHFLEET_CLI_ADMIN_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "benchfleet/v1/fleet.grpc.pb.h"

namespace benchfleet {

// The parsed flags; filled by CLI11.
struct AdminCommands {
  CLI::App* certs_init = nullptr;
  CLI::App* certs_agent = nullptr;
  CLI::App* token_create = nullptr;
  CLI::App* token_list = nullptr;
  CLI::App* token_revoke = nullptr;
  CLI::App* whoami = nullptr;
  std::string dir;
  std::vector<std::string> sans;
  int days = 825;
  std::string name;
  std::string user;
  std::string role;
  int64_t id = 0;
};

// Adds the subcommands to `app`; `cmds` must outlive the parse.
void AddAdminCommands(CLI::App& app, AdminCommands& cmds);

// The certs commands need no controller: run them when parsed, else nullopt.
std::optional<int> RunCertsCommands(const AdminCommands& cmds);

// The token and whoami commands, against `stub`; nullopt when none was
// parsed.
std::optional<int> RunTokenCommands(const AdminCommands& cmds,
                                    v1::FleetService::Stub* stub,
                                    const std::string& controller, bool json);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_ADMIN_COMMANDS_H_
