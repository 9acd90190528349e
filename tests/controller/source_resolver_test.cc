// ResolveSources: variant refs of a spec's source.repo turned into commits at
// submit, against real git repositories in a temp directory.
#include "controller/fleet/source_resolver.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/git/git_command.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

ExperimentSpec SpecWithRefs(const std::string& repo,
                            const std::vector<std::string>& refs) {
  ExperimentSpec spec;
  spec.source_path = "exp.yaml";
  spec.source_repo = repo;
  for (size_t i = 0; i < refs.size(); ++i) {
    VariantSpec v;
    v.name = absl::StrCat("v", i);
    v.ref = refs[i];
    if (!v.ref.empty())
      v.ref_location = absl::StrCat("exp.yaml:", 10 + i, ":5");
    spec.variants.push_back(v);
  }
  return spec;
}

class SourceResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    main_ = repo_.Commit("prog.sh", "echo one\n", true);
    repo_.Git({"tag", "-a", "v1", "-m", "release 1"});
    repo_.Branch("bench/001-fast");
    fast_ = repo_.Commit("prog.sh", "echo two\n", true);
    repo_.Checkout("main");
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "repo"};
  std::string main_, fast_;
};

TEST_F(SourceResolverTest, ResolvesBranchesAnnotatedTagsAndCommits) {
  absl::StatusOr<std::vector<VariantSourceRecord>> got = ResolveSources(
      SpecWithRefs(repo_.dir(), {"main", "bench/001-fast", "v1",
                                 fast_.substr(0, 10), fast_, ""}));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 6u);
  EXPECT_EQ((*got)[0].commit, main_);
  EXPECT_EQ((*got)[1].commit, fast_);
  EXPECT_EQ((*got)[2].commit, main_) << "an annotated tag is peeled";
  EXPECT_EQ((*got)[3].commit, fast_) << "an abbreviated id is expanded";
  EXPECT_EQ((*got)[4].commit, fast_);
  EXPECT_EQ((*got)[5].ref, "main") << "no ref: the baseline's";
  EXPECT_EQ((*got)[5].commit, main_);
  for (const VariantSourceRecord& r : *got) EXPECT_EQ(r.repo, repo_.dir());
}

TEST_F(SourceResolverTest, AcceptsFileUrls) {
  absl::StatusOr<std::vector<VariantSourceRecord>> got = ResolveSources(
      SpecWithRefs(absl::StrCat("file://", repo_.dir()), {"main", "v1"}));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ((*got)[1].commit, main_);
}

TEST_F(SourceResolverTest, RefusesAnUnknownRefNamingVariantRefAndPlace) {
  absl::StatusOr<std::vector<VariantSourceRecord>> got =
      ResolveSources(SpecWithRefs(repo_.dir(), {"main", "bench/002-gone"}));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message(),
            absl::StrCat("exp.yaml:11:5: variant v1: ref 'bench/002-gone' is "
                         "not a branch, tag or commit of ",
                         repo_.dir(), "; `git ls-remote ", repo_.dir(),
                         "` lists its branches and tags. Nothing was queued"));
}

TEST_F(SourceResolverTest, RefusesAHexRefThatIsNoCommit) {
  absl::StatusOr<std::vector<VariantSourceRecord>> got =
      ResolveSources(SpecWithRefs(repo_.dir(), {"main", "deadbeef"}));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(got.status().message(), HasSubstr("ref 'deadbeef' is not a"));
}

TEST_F(SourceResolverTest, SaysWhenTheRepositoryCannotBeListed) {
  absl::StatusOr<std::vector<VariantSourceRecord>> got =
      ResolveSources(SpecWithRefs(dir_ / "nowhere", {"main"}));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(got.status().message(),
              HasSubstr(absl::StrCat("exp.yaml: source.repo: cannot list the "
                                     "refs of ",
                                     dir_ / "nowhere")));
}

TEST(GitCommandTest, KillsAGitThatHangsAtItsTimeout) {
  // A "remote" whose transport never answers: git is killed at the timeout
  // (with its helper, in its process group) instead of blocking a submit.
  GitRequest request;
  request.args = {"-c", "protocol.ext.allow=always", "ls-remote",
                  "ext::sleep 30"};
  request.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  absl::StatusOr<GitResult> r = RunGit(request);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_THAT(r->Describe(request), HasSubstr("still running after 300ms"));
}

TEST(SourceResolverNoSourceTest, ResolvesNothingWithoutSource) {
  ExperimentSpec spec;
  absl::StatusOr<std::vector<VariantSourceRecord>> got = ResolveSources(spec);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

}  // namespace
}  // namespace benchfleet
