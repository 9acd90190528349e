// A throwaway git repository for the tests of source.repo (ref resolution,
// the agent's mirrors and checkouts, the fleet end to end): commit files on
// branches, tag, read commit ids. Uses real git through RunGit
// (common/git/git_command.h), with a fixed author so no global git config is
// needed. Test-only; not thread-safe.
#ifndef BENCHFLEET_TESTS_TESTING_GIT_REPO_H_
#define BENCHFLEET_TESTS_TESTING_GIT_REPO_H_

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "common/git/git_command.h"
#include "gtest/gtest.h"

namespace benchfleet::testing {

class GitRepo {
 public:
  // Creates an empty repository (default branch "main") at `dir`.
  explicit GitRepo(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    Git({"init", "--quiet", "--initial-branch=main"});
  }
  const std::string& dir() const { return dir_; }

  // Runs git in the repository; fails the test when git fails. Returns its
  // stdout, trimmed.
  std::string Git(std::vector<std::string> args) {
    std::vector<std::string> full = {"-c", "user.name=benchfleet-test",
                                     "-c", "user.email=test@benchfleet.invalid",
                                     "-c", "commit.gpgsign=false"};
    full.insert(full.end(), args.begin(), args.end());
    GitRequest request;
    request.args = std::move(full);
    request.cwd = dir_;
    request.timeout = absl::Seconds(30);
    absl::StatusOr<GitResult> r = RunGit(request);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_TRUE(r->ok()) << r->Describe(request);
    return std::string(absl::StripAsciiWhitespace(r->out));
  }

  // Writes `path` (relative, `executable` sets 0755) and commits everything on
  // the current branch; returns the new commit id.
  std::string Commit(const std::string& path, const std::string& text,
                     bool executable = false) {
    const std::string full = dir_ + "/" + path;
    std::filesystem::create_directories(
        std::filesystem::path(full).parent_path());
    {
      std::ofstream out(full, std::ios::trunc);
      out << text;
    }
    if (executable) chmod(full.c_str(), 0755);
    Git({"add", "-A"});
    Git({"commit", "--quiet", "-m", "change " + path});
    return Head();
  }
  std::string Head() { return Git({"rev-parse", "HEAD"}); }
  // Creates `branch` at the current commit and switches to it.
  void Branch(const std::string& branch) {
    Git({"checkout", "--quiet", "-b", branch});
  }
  void Checkout(const std::string& branch) {
    Git({"checkout", "--quiet", branch});
  }

 private:
  std::string dir_;
};

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_GIT_REPO_H_
