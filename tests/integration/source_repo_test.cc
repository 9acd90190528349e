// source: {repo: ...} end to end through the real local fleet: refs resolved
// at submit, each variant run in a clean read-only checkout of its commit made
// from the agent's mirror, the commits shown by `show` (GetExperiment and the
// report), the checkouts removed afterwards, and a second experiment on the
// same repository fetched into the same mirror rather than cloned again.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/runner/process_runner.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/local_fleet.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Prints its variant's name, then the permission bits of its directory and
// of itself: 555 once the checkout is read-only.
std::string Program(const std::string& name) {
  return absl::StrCat("#!/bin/sh\necho ", name, "\nstat -c %a . bench.sh\n");
}

std::string Spec(const std::string& repo) {
  return absl::StrCat(R"(apiVersion: benchfleet/v1
kind: Experiment
name: from-git
source: {repo: )",
                      repo, R"(}
setup: "touch built-by-setup"
benchmark:
  argv: [./bench.sh, "{input}"]
  inputs: [{name: one, path: inputs/one}]
  warmup: 1
  runs: 10
correctness: {compare: none}   # the variants' outputs differ on purpose
variants:
  - {name: base, ref: main}
  - {name: fast, ref: fast}
verdict: {max_cv: 1000%, kill_factor: 10}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)");
}

ino_t Inode(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

class SourceRepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_.Commit("inputs/one", "1\n");
    base_ = repo_.Commit("bench.sh", Program("base"), true);
    repo_.Branch("fast");
    fast_ = repo_.Commit("bench.sh", Program("fast"), true);
    repo_.Checkout("main");
    fleet_ = testing::LocalFleet::Start(dir_ / "fleet");
    ASSERT_NE(fleet_, nullptr);
  }

  v1::Experiment Show(int64_t id) {
    return testing::GetExperiment(fleet_->stub(), id);
  }

  // Runs the spec to its end; returns it with the wall time it took.
  v1::Experiment RunToEnd(absl::Duration* took) {
    const absl::Time start = absl::Now();
    const int64_t id =
        fleet_->Submit(Spec(repo_.dir()), dir_ / "spec.yaml", dir_.path());
    EXPECT_NE(id, 0);
    v1::Experiment e = fleet_->Watch(id, std::chrono::seconds(120));
    *took = absl::Now() - start;
    return e;
  }

  // Output digest of the measured runs per variant (one each: the program's
  // output does not vary), failing when a variant's runs disagree.
  std::map<std::string, std::string> MeasuredDigests(int64_t experiment_id) {
    std::map<std::string, std::string> out;
    auto store = OpenStore(fleet_->store_url());
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return out;
    auto attempts = (*store)->ListAttempts(experiment_id);
    EXPECT_TRUE(attempts.ok() && !attempts->empty());
    if (!attempts.ok() || attempts->empty()) return out;
    environment_json_ = attempts->back().environment_json;
    auto steps = (*store)->ListStepResults(attempts->back().id);
    EXPECT_TRUE(steps.ok());
    if (!steps.ok()) return out;
    for (const StepResultRecord& s : *steps) {
      if (s.kind != "measure") continue;
      auto [it, inserted] = out.emplace(s.variant, s.output_digest);
      EXPECT_EQ(it->second, s.output_digest) << s.variant << " varied";
    }
    last_attempt_id_ = attempts->back().id;
    return out;
  }

  // Waits (bounded) until the agent removed the attempt's checkouts.
  bool CheckoutsRemoved(int64_t attempt_id) {
    const std::string dir =
        absl::StrCat(dir_ / "fleet/agent/source/checkouts/", attempt_id);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (fs::exists(dir)) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  std::string MirrorDir() {
    return absl::StrCat(dir_ / "fleet/agent/source/mirrors/",
                        Sha256Hex(repo_.dir()).substr(0, 16), ".git");
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "repo"};
  std::string base_, fast_;
  std::unique_ptr<testing::LocalFleet> fleet_;
  std::string environment_json_;
  int64_t last_attempt_id_ = 0;
};

TEST_F(SourceRepoTest, EachVariantRunsInAReadOnlyCheckoutOfItsCommit) {
  absl::Duration first_took, second_took;
  v1::Experiment e = RunToEnd(&first_took);
  ASSERT_EQ(e.state(), "done") << e.state_reason() << "\n" << e.report_text();

  // Each variant ran its own commit's program, in a read-only checkout.
  std::map<std::string, std::string> digests = MeasuredDigests(e.id());
  EXPECT_EQ(digests["base"], Sha256Hex("base\n555\n555\n"));
  EXPECT_EQ(digests["fast"], Sha256Hex("fast\n555\n555\n"));
  EXPECT_THAT(environment_json_, HasSubstr(base_))
      << "the attempt's environment records the baseline's commit";

  // `show` names the commits: before the report (GetExperiment) and in it.
  v1::Experiment shown = Show(e.id());
  ASSERT_EQ(shown.sources_size(), 2);
  EXPECT_EQ(shown.sources(0).variant(), "base");
  EXPECT_EQ(shown.sources(0).commit(), base_);
  EXPECT_EQ(shown.sources(1).variant(), "fast");
  EXPECT_EQ(shown.sources(1).commit(), fast_);
  EXPECT_THAT(
      e.report_text(),
      HasSubstr(absl::StrCat("Source: ", repo_.dir(), "\n  - base: ", base_,
                             " (main)\n  - fast: ", fast_, " (fast)\n")));

  EXPECT_TRUE(CheckoutsRemoved(last_attempt_id_));
  const ino_t mirror = Inode(MirrorDir());
  ASSERT_NE(mirror, 0u) << "no mirror at " << MirrorDir();

  // The branch moves on: a second experiment runs the new commit, fetched
  // into the same mirror.
  repo_.Checkout("fast");
  const std::string newer = repo_.Commit("bench.sh", Program("newer"), true);
  v1::Experiment again = RunToEnd(&second_took);
  ASSERT_EQ(again.state(), "done") << again.state_reason();
  EXPECT_EQ(MeasuredDigests(again.id())["fast"],
            Sha256Hex("newer\n555\n555\n"));
  EXPECT_EQ(Show(again.id()).sources(1).commit(), newer);
  EXPECT_EQ(Inode(MirrorDir()), mirror) << "the mirror was cloned again";
  EXPECT_TRUE(CheckoutsRemoved(last_attempt_id_));
  std::cout << "source_repo_test: first experiment (mirror cloned) "
            << absl::FormatDuration(first_took) << ", second (mirror fetched) "
            << absl::FormatDuration(second_took) << "\n";
}

TEST_F(SourceRepoTest, AnUnknownRefIsRefusedAtSubmitAndNothingIsQueued) {
  std::string yaml = Spec(repo_.dir());
  yaml.replace(yaml.find("ref: fast"), 9, "ref: nope");
  v1::SubmitRequest req;
  req.set_spec_yaml(yaml);
  req.set_spec_path(dir_ / "spec.yaml");
  req.set_workdir(dir_.path());
  v1::SubmitResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status st = fleet_->stub().Submit(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(),
              HasSubstr("variant fast: ref 'nope' is not a branch, tag or "
                        "commit of"));
  v1::ListExperimentsRequest list_req;
  v1::ListExperimentsResponse list;
  grpc::ClientContext list_ctx;
  list_ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
  ASSERT_TRUE(fleet_->stub().ListExperiments(&list_ctx, list_req, &list).ok());
  EXPECT_EQ(list.experiments_size(), 0);
}

}  // namespace
}  // namespace benchfleet
