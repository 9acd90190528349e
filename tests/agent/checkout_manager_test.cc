// CheckoutManager: mirrors (clone once, then fetch), one worktree per variant
// at exactly its commit, read-only sealing, removal and the start-up sweep,
// against real git repositories in a temp directory.
#include "agent/source/checkout_manager.h"

#include <sys/stat.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

VariantSourceRecord Source(const std::string& variant, const std::string& repo,
                           const std::string& commit) {
  VariantSourceRecord s;
  s.variant = variant;
  s.repo = repo;
  s.commit = commit;
  return s;
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

class CheckoutManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = repo_.Commit("prog.sh", "#!/bin/sh\necho base\n", true);
    repo_.Branch("fast");
    fast_ = repo_.Commit("prog.sh", "#!/bin/sh\necho fast\n", true);
    repo_.Checkout("main");
    CheckoutOptions options;
    options.root = dir_ / "agent/source";
    options.git_timeout = absl::Seconds(60);
    manager_ = std::make_unique<CheckoutManager>(options);
  }

  std::string HeadOf(const std::string& dir) {
    GitRequest r;
    r.args = {"rev-parse", "HEAD"};
    r.cwd = dir;
    absl::StatusOr<GitResult> got = RunGit(r);
    EXPECT_TRUE(got.ok() && got->ok());
    return got.ok() ? std::string(absl::StripAsciiWhitespace(got->out)) : "";
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "repo"};
  std::string base_, fast_;
  std::unique_ptr<CheckoutManager> manager_;
};

TEST_F(CheckoutManagerTest, ChecksEachVariantOutAtExactlyItsCommit) {
  absl::StatusOr<AttemptCheckout> got = manager_->Prepare(
      7,
      {Source("base", repo_.dir(), base_), Source("fast", repo_.dir(), fast_)});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->dirs.size(), 2u);
  EXPECT_EQ(got->dirs["base"], manager_->AttemptDir(7) + "/base");
  EXPECT_EQ(testing::ReadFile(got->dirs["base"] + "/prog.sh"),
            "#!/bin/sh\necho base\n");
  EXPECT_EQ(testing::ReadFile(got->dirs["fast"] + "/prog.sh"),
            "#!/bin/sh\necho fast\n");
  EXPECT_EQ(HeadOf(got->dirs["base"]), base_);
  EXPECT_EQ(HeadOf(got->dirs["fast"]), fast_);
  ASSERT_EQ(got->mirrors.size(), 1u);
  EXPECT_EQ(got->mirrors[0].kind, MirrorAction::kCloned);
  EXPECT_EQ(got->mirrors[0].mirror, manager_->MirrorDir(repo_.dir()));
  EXPECT_TRUE(fs::exists(manager_->MirrorDir(repo_.dir()) + "/HEAD"));
}

TEST_F(CheckoutManagerTest, ClonesOnceThenFetchesOnlyWhatIsMissing) {
  absl::StatusOr<AttemptCheckout> first =
      manager_->Prepare(1, {Source("base", repo_.dir(), base_)});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->mirrors[0].kind, MirrorAction::kCloned);
  ASSERT_TRUE(manager_->Remove(1).ok());
  const std::string mirror = manager_->MirrorDir(repo_.dir());
  const ino_t inode = Inode(mirror);
  ASSERT_NE(inode, 0u);

  // Every commit already mirrored: no fetch at all.
  absl::StatusOr<AttemptCheckout> again =
      manager_->Prepare(2, {Source("base", repo_.dir(), base_)});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->mirrors[0].kind, MirrorAction::kUpToDate);
  ASSERT_TRUE(manager_->Remove(2).ok());

  // A new commit: fetched into the same mirror, never cloned anew.
  const std::string newer = repo_.Commit("prog.sh", "echo newer\n", true);
  absl::StatusOr<AttemptCheckout> fetched =
      manager_->Prepare(3, {Source("base", repo_.dir(), newer)});
  ASSERT_TRUE(fetched.ok()) << fetched.status();
  EXPECT_EQ(fetched->mirrors[0].kind, MirrorAction::kFetched);
  EXPECT_EQ(Inode(mirror), inode) << "the mirror was replaced, not fetched";
  EXPECT_EQ(testing::ReadFile(fetched->dirs["base"] + "/prog.sh"),
            "echo newer\n");
  std::cout << "mirror of a small repository: cloned in "
            << absl::FormatDuration(first->mirrors[0].took)
            << ", up to date in "
            << absl::FormatDuration(again->mirrors[0].took) << ", fetched in "
            << absl::FormatDuration(fetched->mirrors[0].took) << "\n";
}

TEST_F(CheckoutManagerTest, MakesACheckoutReadOnlyAndStillRemovesIt) {
  absl::StatusOr<AttemptCheckout> got =
      manager_->Prepare(4, {Source("base", repo_.dir(), base_)});
  ASSERT_TRUE(got.ok()) << got.status();
  const std::string dir = got->dirs["base"];
  ASSERT_TRUE(manager_->MakeReadOnly(dir).ok());
  for (const std::string& p : {dir, dir + "/prog.sh"}) {
    struct stat st {};
    ASSERT_EQ(stat(p.c_str(), &st), 0) << p;
    EXPECT_EQ(st.st_mode & 0222, 0u) << p << " is still writable";
  }
  ASSERT_TRUE(manager_->Remove(4).ok());
  EXPECT_FALSE(fs::exists(manager_->AttemptDir(4)));
  // The mirror forgot the worktree too.
  GitRequest list;
  list.args = {"worktree", "list", "--porcelain"};
  list.cwd = manager_->MirrorDir(repo_.dir());
  absl::StatusOr<GitResult> listed = RunGit(list);
  ASSERT_TRUE(listed.ok() && listed->ok());
  EXPECT_THAT(listed->out, ::testing::Not(HasSubstr("checkouts/4")));
}

TEST_F(CheckoutManagerTest, RefusesACommitTheRepositoryDoesNotHave) {
  const std::string bogus(40, 'a');
  absl::StatusOr<AttemptCheckout> got = manager_->Prepare(
      5,
      {Source("base", repo_.dir(), base_), Source("fast", repo_.dir(), bogus)});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(got.status().message(), HasSubstr(bogus));
  EXPECT_THAT(got.status().message(), HasSubstr(repo_.dir()));
  EXPECT_FALSE(fs::exists(manager_->AttemptDir(5)));
}

TEST_F(CheckoutManagerTest, SaysWhichRepositoryCannotBeMirrored) {
  const std::string missing = dir_ / "no-such-repo";
  absl::StatusOr<AttemptCheckout> got =
      manager_->Prepare(6, {Source("base", missing, base_)});
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(),
              HasSubstr(absl::StrCat("cannot mirror ", missing)));
  EXPECT_FALSE(fs::exists(manager_->MirrorDir(missing)));
  EXPECT_FALSE(fs::exists(manager_->MirrorDir(missing) + ".partial"));
}

TEST_F(CheckoutManagerTest, SweepRemovesCheckoutsAnEarlierProcessLeft) {
  absl::StatusOr<AttemptCheckout> got =
      manager_->Prepare(8, {Source("base", repo_.dir(), base_)});
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(manager_->MakeReadOnly(got->dirs["base"]).ok());
  // A new manager over the same root, as after an agent restart.
  CheckoutOptions options;
  options.root = dir_ / "agent/source";
  CheckoutManager restarted(options);
  absl::StatusOr<int> swept = restarted.SweepLeftovers();
  ASSERT_TRUE(swept.ok()) << swept.status();
  EXPECT_EQ(*swept, 1);
  EXPECT_FALSE(fs::exists(manager_->AttemptDir(8)));
  EXPECT_TRUE(fs::exists(manager_->MirrorDir(repo_.dir()))) << "mirrors stay";
}

}  // namespace
}  // namespace benchfleet
