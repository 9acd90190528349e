#include "agent/source/checkout_manager.h"

#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/runner/process_runner.h"
#include "common/git/git_command.h"
#include "common/status_macros.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;

constexpr fs::perms kWriteBits =
    fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write;

std::string ShortCommit(const std::string& commit) {
  return commit.substr(0, 12);
}

}  // namespace

CheckoutManager::CheckoutManager(CheckoutOptions options)
    : options_(std::move(options)) {}

std::string CheckoutManager::MirrorDir(const std::string& repo) const {
  return absl::StrCat(options_.root, "/mirrors/", Sha256Hex(repo).substr(0, 16),
                      ".git");
}

std::string CheckoutManager::AttemptDir(int64_t attempt_id) const {
  return absl::StrCat(options_.root, "/checkouts/", attempt_id);
}

absl::StatusOr<MirrorAction> CheckoutManager::EnsureMirror(
    const std::string& repo, const std::vector<std::string>& commits) {
  MirrorAction action;
  action.repo = repo;
  action.mirror = MirrorDir(repo);
  const absl::Time started = absl::Now();
  std::error_code ec;
  auto run = [&](GitRequest request,
                 const std::string& what) -> absl::StatusOr<GitResult> {
    request.timeout = options_.git_timeout;
    ASSIGN_OR_RETURN(GitResult result, RunGit(request));
    if (result.timed_out) {
      return absl::DeadlineExceededError(
          absl::StrCat(what, " of ", repo, ": ", result.Describe(request),
                       "; check that the repository is reachable from this "
                       "host, or raise the agent's git timeout"));
    }
    return result;
  };
  auto has_all = [&]() -> absl::StatusOr<bool> {
    for (const std::string& c : commits) {
      GitRequest check;
      check.args = {"cat-file", "-e", absl::StrCat(c, "^{commit}")};
      check.cwd = action.mirror;
      ASSIGN_OR_RETURN(GitResult r, run(check, "checking the mirror"));
      if (!r.ok()) return false;
    }
    return true;
  };
  if (!fs::exists(action.mirror, ec)) {
    fs::create_directories(fs::path(action.mirror).parent_path(), ec);
    // Cloned beside and renamed into place: a clone cut short (timeout, agent
    // killed) never looks like a mirror.
    const std::string partial = absl::StrCat(action.mirror, ".partial");
    fs::remove_all(partial, ec);
    GitRequest clone;
    clone.args = {"clone", "--mirror", "--quiet", "--", repo, partial};
    ASSIGN_OR_RETURN(GitResult r, run(clone, "cloning a mirror"));
    if (!r.ok()) {
      fs::remove_all(partial, ec);
      return absl::UnavailableError(absl::StrCat(
          "cannot mirror ", repo, " (", r.Describe(clone),
          "); check that the repository is reachable from this host with "
          "the agent's credentials"));
    }
    fs::rename(partial, action.mirror, ec);
    if (ec) {
      return absl::InternalError(absl::StrCat("cannot move the new mirror of ",
                                              repo, " to ", action.mirror, ": ",
                                              ec.message()));
    }
    action.kind = MirrorAction::kCloned;
  } else {
    ASSIGN_OR_RETURN(bool present, has_all());
    if (!present) {
      GitRequest fetch;
      fetch.args = {"fetch", "--prune", "--quiet", "origin"};
      fetch.cwd = action.mirror;
      ASSIGN_OR_RETURN(GitResult r, run(fetch, "fetching"));
      if (!r.ok()) {
        return absl::UnavailableError(absl::StrCat(
            "cannot fetch ", repo, " into its mirror ", action.mirror, " (",
            r.Describe(fetch),
            "); check that the repository is reachable from this host"));
      }
      action.kind = MirrorAction::kFetched;
    }
  }
  ASSIGN_OR_RETURN(bool present, has_all());
  if (!present) {
    // A commit no branch or tag reaches any more: ask for it by id (servers
    // that allow it; local repositories do).
    for (const std::string& c : commits) {
      GitRequest fetch;
      fetch.args = {"fetch", "--quiet", "origin", c};
      fetch.cwd = action.mirror;
      ASSIGN_OR_RETURN(GitResult r, run(fetch, "fetching a commit"));
      (void)r;
    }
    ASSIGN_OR_RETURN(present, has_all());
  }
  if (!present) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the commits ", absl::StrJoin(commits, ", "), " are not all in ", repo,
        " (fetched into ", action.mirror,
        "); was a branch force-pushed since the experiment was submitted? "
        "Submit it again to resolve its refs anew"));
  }
  action.took = absl::Now() - started;
  return action;
}

absl::StatusOr<AttemptCheckout> CheckoutManager::Prepare(
    int64_t attempt_id, const std::vector<VariantSourceRecord>& sources) {
  RETURN_IF_ERROR(Remove(attempt_id));
  std::map<std::string, std::vector<std::string>> commits_by_repo;
  for (const VariantSourceRecord& s : sources) {
    if (!IsFullCommitId(s.commit)) {
      return absl::InvalidArgumentError(
          absl::StrCat("variant ", s.variant, ": '", s.commit,
                       "' is not a full commit id of ", s.repo));
    }
    if (s.variant.empty() || s.variant.find('/') != std::string::npos ||
        s.variant == "." || s.variant == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "variant name '", s.variant, "' cannot name a checkout directory"));
    }
    commits_by_repo[s.repo].push_back(s.commit);
  }
  AttemptCheckout out;
  for (const auto& [repo, commits] : commits_by_repo) {
    ASSIGN_OR_RETURN(MirrorAction action, EnsureMirror(repo, commits));
    out.mirrors.push_back(std::move(action));
  }
  const std::string attempt_dir = AttemptDir(attempt_id);
  std::error_code ec;
  fs::create_directories(attempt_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", attempt_dir, ": ", ec.message(),
                     "; give the agent a writable --workdir"));
  }
  for (const VariantSourceRecord& s : sources) {
    const std::string dir = absl::StrCat(attempt_dir, "/", s.variant);
    GitRequest add;
    add.args = {"worktree", "add", "--detach", "--force",
                "--quiet",  dir,   s.commit};
    add.cwd = MirrorDir(s.repo);
    add.timeout = options_.git_timeout;
    absl::StatusOr<GitResult> r = RunGit(add);
    if (!r.ok() || !r->ok()) {
      const std::string why =
          r.ok() ? r->Describe(add) : std::string(r.status().message());
      (void)Remove(attempt_id);
      return absl::FailedPreconditionError(
          absl::StrCat("cannot check out commit ", ShortCommit(s.commit),
                       " of ", s.repo, " for variant ", s.variant, " (", why,
                       "); check free disk space under ", options_.root));
    }
    out.dirs[s.variant] = dir;
  }
  return out;
}

absl::Status CheckoutManager::MakeReadOnly(const std::string& dir) {
  std::error_code ec;
  auto clear = [&](const fs::path& p) {
    if (fs::is_symlink(fs::symlink_status(p, ec))) return;
    fs::permissions(p, kWriteBits, fs::perm_options::remove, ec);
  };
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    clear(it->path());
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot make ", dir, " read-only: ", ec.message()));
  }
  clear(dir);
  return absl::OkStatus();
}

absl::Status CheckoutManager::RemoveTree(const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return absl::OkStatus();
  // Directories need their write bit back before their entries can go.
  auto restore = [&](const fs::path& p) {
    std::error_code ignored;
    if (fs::is_directory(fs::symlink_status(p, ignored)))
      fs::permissions(p, fs::perms::owner_all, fs::perm_options::add, ignored);
  };
  restore(dir);
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    restore(it->path());
  }
  ec.clear();
  fs::remove_all(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot remove the checkout ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

void CheckoutManager::PruneMirrors() {
  std::error_code ec;
  for (fs::directory_iterator it(absl::StrCat(options_.root, "/mirrors"), ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (it->path().extension() != ".git") continue;
    GitRequest prune;
    prune.args = {"worktree", "prune"};
    prune.cwd = it->path().string();
    prune.timeout = options_.git_timeout;
    (void)RunGit(prune);  // best effort: a stale entry only costs a line
  }
}

absl::Status CheckoutManager::Remove(int64_t attempt_id) {
  const std::string dir = AttemptDir(attempt_id);
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::OkStatus();
  RETURN_IF_ERROR(RemoveTree(dir));
  PruneMirrors();
  return absl::OkStatus();
}

absl::StatusOr<int> CheckoutManager::SweepLeftovers() {
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(absl::StrCat(options_.root, "/checkouts"), ec),
       end;
       !ec && it != end; it.increment(ec)) {
    RETURN_IF_ERROR(RemoveTree(it->path().string()));
    ++removed;
  }
  ec.clear();
  for (fs::directory_iterator it(absl::StrCat(options_.root, "/mirrors"), ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".partial") {
      RETURN_IF_ERROR(RemoveTree(it->path().string()));
    }
  }
  PruneMirrors();
  return removed;
}

}  // namespace benchfleet
