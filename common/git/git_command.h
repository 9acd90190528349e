// RunGit: runs one `git` command as a child process — no shell, a wall-clock
// timeout (the child and its process group are killed when it passes), stdout
// and stderr captured up to a cap — and hands back what it printed. Used by
// the controller's ref resolution at submit (controller/fleet/source_resolver)
// and the agent's mirrors and checkouts (agent/source/checkout_manager). Git
// is only ever used through this (no libgit2).
//
// Git never prompts (GIT_TERMINAL_PROMPT=0, no askpass): a repository that
// needs credentials the environment does not have fails instead of hanging.
// Thread-safe (no shared state).
#ifndef BENCHFLEET_COMMON_GIT_GIT_COMMAND_H_
#define BENCHFLEET_COMMON_GIT_GIT_COMMAND_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace benchfleet {

struct GitRequest {
  std::vector<std::string> args;  // after "git", e.g. {"ls-remote", url}
  std::string cwd;                // empty: the caller's
  absl::Duration timeout = absl::Seconds(60);
  size_t max_output_bytes = 16 << 20;  // per stream; the rest is dropped
};

struct GitResult {
  int exit_code = -1;  // -1 when killed by a signal (or the timeout)
  bool timed_out = false;
  std::string out;
  std::string err;
  bool ok() const { return exit_code == 0 && !timed_out; }
  // "git ls-remote X: exit 128: fatal: ..." for messages (stderr's last
  // lines, trimmed).
  std::string Describe(const GitRequest& request) const;
};

// Runs git. An error status only when git could not be started at all (not
// installed, bad cwd); a git that ran and failed is a GitResult with its exit
// code and stderr.
absl::StatusOr<GitResult> RunGit(const GitRequest& request);

// A full commit id: 40 lowercase hex digits (SHA-1 object format).
bool IsFullCommitId(const std::string& s);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_GIT_GIT_COMMAND_H_
