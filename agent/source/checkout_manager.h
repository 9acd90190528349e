// CheckoutManager: the agent's copies of experiment source code (DESIGN.md §3,
// `source: {repo: URL}`). For each repository it keeps one bare mirror under
// <root>/mirrors/<first 16 hex digits of SHA-256(URL)>.git — cloned with
// `git clone --mirror` the first time and only fetched afterwards (never
// re-cloned; not even fetched when every commit an attempt needs is already
// there) — and for each variant of an attempt one clean worktree at exactly
// the variant's commit under <root>/checkouts/<attempt id>/<variant>
// (`git worktree add --detach`). A checkout is made read-only (write bits
// cleared recursively) before its variant's measured runs and removed when
// the attempt ends; checkouts a previous agent process left behind are swept
// at start-up.
//
// Git runs as child processes (common/git/git_command.h), each bounded by
// `git_timeout`. Errors name the repository, the commit and what to do; the
// agent adds its host.
//
// Used by the agent's worker thread (agent/service/agent.cc). Not
// thread-safe; externally synchronized (one agent per root: the host lock).
#ifndef BENCHFLEET_AGENT_SOURCE_CHECKOUT_MANAGER_H_
#define BENCHFLEET_AGENT_SOURCE_CHECKOUT_MANAGER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/variant_source.h"

namespace benchfleet {

struct CheckoutOptions {
  std::string root;  // absolute; mirrors/ and checkouts/ live here
  absl::Duration git_timeout = absl::Minutes(10);
};

// What Prepare did to one repository's mirror.
struct MirrorAction {
  std::string repo;
  std::string mirror;  // its directory
  enum Kind { kCloned, kFetched, kUpToDate } kind = kUpToDate;
  absl::Duration took;
};

struct AttemptCheckout {
  std::map<std::string, std::string> dirs;  // variant -> checkout directory
  std::vector<MirrorAction> mirrors;
};

class CheckoutManager {
 public:
  explicit CheckoutManager(CheckoutOptions options);

  // The mirror directory of `repo` (whether or not it exists yet).
  std::string MirrorDir(const std::string& repo) const;
  // Where the checkouts of `attempt_id` go.
  std::string AttemptDir(int64_t attempt_id) const;

  // Mirrors each source's repository (clone or fetch as needed) and checks
  // every variant out at its commit, writable (setup may build in it).
  // Replaces checkouts of the same attempt left from before. On failure
  // nothing of the attempt is left; FailedPrecondition / Unavailable /
  // DeadlineExceeded with the repository, commit and git's message.
  absl::StatusOr<AttemptCheckout> Prepare(
      int64_t attempt_id, const std::vector<VariantSourceRecord>& sources);

  // Clears every write bit under `dir` (not following symlinks), so the
  // measured runs cannot change the code they measure.
  absl::Status MakeReadOnly(const std::string& dir);

  // Removes the attempt's checkouts (restoring write permission first) and
  // forgets them in their mirrors (`git worktree prune`). OK when there are
  // none.
  absl::Status Remove(int64_t attempt_id);

  // Removes every checkout (of any attempt) and half-made mirror under the
  // root, e.g. those of an agent process that was killed. Returns how many
  // attempt directories it removed.
  absl::StatusOr<int> SweepLeftovers();

 private:
  absl::StatusOr<MirrorAction> EnsureMirror(
      const std::string& repo, const std::vector<std::string>& commits);
  absl::Status RemoveTree(const std::string& dir);
  void PruneMirrors();

  CheckoutOptions options_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SOURCE_CHECKOUT_MANAGER_H_
