// The benchfleet command line: parses arguments and runs one command against a
// controller (or, for `run`, against an in-process controller and agent). Exit
// codes (DESIGN.md §9): 0 success, 1 user error (bad spec, unknown id,
// experiment failed), 2 usage error, 3 cannot reach the controller or store.
#ifndef BENCHFLEET_CLI_COMMANDS_H_
#define BENCHFLEET_CLI_COMMANDS_H_

namespace benchfleet {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUserError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

int RunCli(int argc, char** argv);

}  // namespace benchfleet

#endif  // BENCHFLEET_CLI_COMMANDS_H_
