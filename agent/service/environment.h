// The agent's side of an attempt's environment record (DESIGN.md §5): what it
// reports when it accepts a lease, besides the host facts it sent at hello —
// CPU governor and turbo state and the GPUs (from a probe sample), the versions
// of the configured toolchain commands, and the git commit of the experiment's
// work directory.
//
// The commands run through the agent's ProcessRunner (never through a shell
// unless the command line needs one), each bounded by a timeout, one after the
// other, on the agent's worker thread while it accepts the lease — so never
// while a benchmark step runs.
//
// Thread-safety: free functions; thread-safe if the runner is.
#ifndef BENCHFLEET_AGENT_SERVICE_ENVIRONMENT_H_
#define BENCHFLEET_AGENT_SERVICE_ENVIRONMENT_H_

#include <atomic>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/probe/host_sample.h"
#include "agent/runner/process_runner.h"
#include "common/fingerprint.h"

namespace benchfleet {

// What a toolchain entry records when its program does not exist.
inline constexpr char kToolNotFound[] = "not found";

// The toolchain commands an agent records unless configured otherwise:
// cc, c++, rustc, go and python3 with their version flags.
std::map<std::string, std::string> DefaultToolchainCommands();

// Parses a `--toolchain NAME=COMMAND` flag. InvalidArgument (naming the flag)
// when NAME is empty or there is no '='. An empty COMMAND is allowed: it
// removes NAME from the recorded toolchain.
absl::StatusOr<std::pair<std::string, std::string>> ParseToolchainFlag(
    const std::string& flag);

// The argv for a configured command line: split on whitespace when it is
// plain words, {"/bin/sh", "-c", command} when it uses quoting, expansion,
// redirection, pipes or other shell syntax.
std::vector<std::string> CommandLineArgv(const std::string& command);

struct EnvironmentOptions {
  // name -> command line; each is recorded as the first non-empty line of its
  // output (stdout, else stderr).
  std::map<std::string, std::string> toolchain;
  absl::Duration command_timeout = absl::Seconds(5);
  // Where the commands run (a toolchain may depend on the directory, e.g. a
  // rust-toolchain file) and whose commit is recorded; "" or a directory
  // that does not exist: the commands run in `fallback_cwd` and no commit is
  // recorded.
  std::string workdir;
  std::string fallback_cwd;
  // The commands' complete environment ("KEY=VALUE"), PATH included.
  std::vector<std::string> env;
  // A scratch file for the commands' stderr (rewritten per command).
  std::string scratch_path;
  // Once true, the remaining commands are skipped (agent shutdown).
  const std::atomic<bool>* cancel = nullptr;
};

// Runs `command` and returns the first non-empty line of its stdout (else of
// its stderr), trimmed: "rustc 1.75.0 (82e1608df 2023-12-21)". A program that
// is not installed gives kToolNotFound (also a shell's exit status 127); one
// that fails, crashes or outlives the timeout gives a short description of
// that ("error: exited with status 2: …", "error: timed out after 5s").
std::string ToolVersion(ProcessRunner& runner, const std::string& command,
                        const EnvironmentOptions& options);

// The git HEAD of `options.workdir` and whether its work tree has uncommitted
// changes (`git status --porcelain` prints anything). commit "" when the
// directory is not in a git work tree or git is not installed.
struct SourceState {
  std::string commit;
  bool dirty = false;
};
SourceState ReadSourceState(ProcessRunner& runner,
                            const EnvironmentOptions& options);

// Fills governor, turbo and gpus of `env` from a probe sample: the distinct
// governors of the cores ("performance", or "powersave,performance"), turbo
// "on"/"off"/"" and each GPU's name, UUID and memory total.
void FillFromSample(const HostSample& sample, HostEnvironment* env);

// Everything the agent reports with an accepted lease: FillFromSample, then
// every toolchain command, then the work directory's commit.
HostEnvironment CollectAttemptEnvironment(ProcessRunner& runner,
                                          const HostSample& sample,
                                          const EnvironmentOptions& options);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_ENVIRONMENT_H_
