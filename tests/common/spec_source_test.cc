// The spec loader and source: a variant's ref needs a repository, the
// baseline needs a ref when there is one, and other variants default to it;
// source.bundle is a relative directory with an optional list of paths
// inside it, never with repo or a ref.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/spec_loader.h"
#include "gtest/gtest.h"
#include "tests/common/spec_test_util.h"

namespace benchfleet {
namespace {

using namespace ::benchfleet::spec_test;  // NOLINT(build/namespaces)

constexpr char kBenchmark[] =
    "benchmark:\n"
    "  command: ./bench\n"
    "  inputs: [{name: a, path: a.bin}]\n";

TEST(SpecSourceTest, RefusesARefWithoutSource) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader, kBenchmark,
                                 "variants:\n"
                                 "  - {name: baseline}\n"
                                 "  - {name: fast, ref: bench/fast}\n")),
            "spec.yaml:9:23: variants[1].ref: a ref needs a repository to "
            "resolve it in; add source: {repo: <path or URL of the git "
            "repository>} at the top level, or remove ref to run this variant "
            "in the work directory");
}

TEST(SpecSourceTest, RefusesABaselineWithoutARefWhenThereIsASource) {
  EXPECT_EQ(ErrorOf(absl::StrCat(kHeader, "source: {repo: /srv/git/app.git}\n",
                                 kBenchmark,
                                 "variants:\n"
                                 "  - {name: baseline}\n"
                                 "  - {name: fast, ref: bench/fast}\n")),
            "spec.yaml:9:5: variants[0]: the baseline needs a ref: with "
            "source.repo, add ref: <branch, tag or commit> to the first "
            "variant (the others default to the baseline's ref)");
}

TEST(SpecSourceTest, RefusesAnEmptyRef) {
  EXPECT_NE(ErrorOf(absl::StrCat(kHeader, "source: {repo: /srv/git/app.git}\n",
                                 kBenchmark,
                                 "variants:\n"
                                 "  - {name: baseline, ref: main}\n"
                                 "  - {name: fast, ref: ''}\n"))
                .find("spec.yaml:10:23: variants[1].ref:"),
            std::string::npos);
}

TEST(SpecSourceTest, KeepsRefsAndWhereTheyWereWritten) {
  absl::StatusOr<ExperimentSpec> spec = Parse(
      absl::StrCat(kHeader, "source: {repo: /srv/git/app.git}\n", kBenchmark,
                   "variants:\n"
                   "  - {name: baseline, ref: main}\n"
                   "  - {name: fast, ref: bench/fast}\n"
                   "  - {name: big-pages, env: {A: b}}\n"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->source_repo, "/srv/git/app.git");
  EXPECT_EQ(spec->variants[0].ref, "main");
  EXPECT_EQ(spec->variants[0].ref_location, "spec.yaml:9:27");
  EXPECT_EQ(spec->variants[1].ref, "bench/fast");
  EXPECT_EQ(spec->variants[2].ref, "");  // the baseline's, at submit
  EXPECT_EQ(spec->variants[2].ref_location, "");
}

constexpr char kVariants[] =
    "variants:\n"
    "  - {name: baseline}\n"
    "  - {name: fast, env: {MODE: fast}}\n";

TEST(SpecSourceTest, KeepsABundleAndItsFiles) {
  absl::StatusOr<ExperimentSpec> spec = Parse(
      absl::StrCat(kHeader, "source: {bundle: src, files: [a.bin, lib]}\n",
                   kBenchmark, kVariants));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->source_bundle, "src");
  EXPECT_EQ(spec->source_files, (std::vector<std::string>{"a.bin", "lib"}));
  EXPECT_TRUE(spec->HasSource());
  EXPECT_EQ(spec->BundleDir(), spec->workdir + "/src");
  EXPECT_EQ(spec->InputsDir(), spec->BundleDir());
}

TEST(SpecSourceTest, RefusesBundlesThatCannotMeanTheSameElsewhere) {
  EXPECT_NE(
      ErrorOf(absl::StrCat(kHeader,
                           "source: {repo: /srv/git/app.git, bundle: .}\n",
                           kBenchmark, kVariants))
          .find("source has both repo and bundle"),
      std::string::npos);
  EXPECT_NE(ErrorOf(absl::StrCat(kHeader, "source: {bundle: /home/me/app}\n",
                                 kBenchmark, kVariants))
                .find("must be relative to the spec file"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(absl::StrCat(kHeader, "source: {bundle: ., files: [../secret]}\n",
                           kBenchmark, kVariants))
          .find("is not a path inside the bundle directory"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(absl::StrCat(kHeader,
                           "source: {repo: /srv/git/app.git, files: [a]}\n",
                           kBenchmark,
                           "variants:\n"
                           "  - {name: baseline, ref: main}\n"
                           "  - {name: fast}\n"))
          .find("remove files"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(absl::StrCat(kHeader, "source: {}\n", kBenchmark, kVariants))
          .find("source needs repo:"),
      std::string::npos);
  EXPECT_NE(ErrorOf(absl::StrCat(kHeader, "source: {bundle: .}\n", kBenchmark,
                                 "variants:\n"
                                 "  - {name: baseline, ref: main}\n"
                                 "  - {name: fast}\n"))
                .find("with source.bundle every variant runs the uploaded "
                      "tree"),
            std::string::npos);
}

}  // namespace
}  // namespace benchfleet
