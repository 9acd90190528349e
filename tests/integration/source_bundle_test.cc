// source: {bundle: .} end to end through the real CLI and the local fleet:
// `benchfleet submit` packs the spec's directory and uploads it (the second
// submit of the same tree sends nothing), the controller records the
// bundle's digest with the experiment, the agent fetches it by digest into
// its cache and runs each variant in its own read-only unpacked copy (never
// in the submitter's directory), `show` and the report name the bundle, and
// the copies are removed afterwards. Refusals: a bundle spec with no bundle,
// a bundle the controller does not hold, a ref with a bundle.
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/runner/process_runner.h"
#include "common/bundle/bundle.h"
#include "controller/store/store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/local_fleet.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Prints its mode, its directory and the permission bits of the directory
// and of itself (555 once the copy is read-only).
constexpr char kProgram[] =
    "#!/bin/sh\necho \"${MODE:-base}\"\npwd\nstat -c %a . bench.sh\n";

constexpr char kSpec[] = R"(apiVersion: benchfleet/v1
kind: Experiment
name: from-bundle
source: {bundle: .}
setup: "touch built-by-setup"
benchmark:
  argv: [./bench.sh, "{input}"]
  inputs: [{name: one, path: inputs/one}]
  warmup: 1
  runs: 10
correctness: {compare: none}   # the variants' outputs differ on purpose
variants:
  - {name: base}
  - {name: fast, env: {MODE: fast}}
verdict: {max_cv: 1000%, kill_factor: 10}
gates: {cooldown: 0s, max_load: 64, max_wait: 1m}
)";

class SourceBundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* build = std::getenv("BENCHFLEET_BUILD_DIR");
    ASSERT_NE(build, nullptr) << "run through ctest (BENCHFLEET_BUILD_DIR)";
    cli_ = std::string(build) + "/cli/benchfleet";
    fs::create_directories(dir_ / "tree/inputs");
    testing::WriteFile(dir_ / "tree/inputs/one", "1\n");
    testing::WriteFile(dir_ / "tree/bench.sh", kProgram);
    fs::permissions(dir_ / "tree/bench.sh", fs::perms::owner_exec,
                    fs::perm_options::add);
    testing::WriteFile(dir_ / "tree/spec.yaml", kSpec);
    fleet_ = testing::LocalFleet::Start(dir_ / "fleet");
    ASSERT_NE(fleet_, nullptr);
  }

  testing::CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {cli_, "--controller", fleet_->address()});
    return testing::RunCommand(args, dir_.path(), absl::Minutes(3));
  }

  // Each variant's measured output (the same for all its runs).
  std::map<std::string, std::string> Outputs(int64_t experiment_id,
                                             int64_t* attempt_id) {
    std::map<std::string, std::string> out;
    auto store = OpenStore(fleet_->store_url());
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return out;
    auto attempts = (*store)->ListAttempts(experiment_id);
    EXPECT_TRUE(attempts.ok() && !attempts->empty());
    if (!attempts.ok() || attempts->empty()) return out;
    *attempt_id = attempts->back().id;
    auto steps = (*store)->ListStepResults(*attempt_id);
    EXPECT_TRUE(steps.ok());
    if (!steps.ok()) return out;
    for (const StepResultRecord& s : *steps) {
      if (s.kind != "measure") continue;
      auto [it, inserted] = out.emplace(s.variant, s.output_digest);
      EXPECT_EQ(it->second, s.output_digest) << s.variant << " varied";
    }
    return out;
  }

  grpc::Status RawSubmit(const std::string& yaml, const std::string& digest) {
    v1::SubmitRequest req;
    req.set_spec_yaml(yaml);
    req.set_spec_path(dir_ / "tree/spec.yaml");
    req.set_workdir(dir_ / "tree");
    req.set_bundle_digest(digest);
    v1::SubmitResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    return fleet_->stub().Submit(&ctx, req, &resp);
  }

  int64_t CountExperiments() {
    auto store = OpenStore(fleet_->store_url());
    if (!store.ok()) return -1;
    auto list = (*store)->ListExperiments(0);
    return list.ok() ? static_cast<int64_t>(list->size()) : -1;
  }

  testing::TempDir dir_;
  std::string cli_;
  std::unique_ptr<testing::LocalFleet> fleet_;
};

TEST_F(SourceBundleTest, EachVariantRunsInAReadOnlyCopyOfTheUploadedTree) {
  testing::CommandResult first =
      Cli({"--json", "submit", dir_ / "tree/spec.yaml"});
  ASSERT_EQ(first.exit_code, 0) << first.all();
  EXPECT_THAT(first.err, HasSubstr("bundle "));
  EXPECT_THAT(first.err, ::testing::Not(HasSubstr("already on the "
                                                  "controller")));
  const size_t at = first.out.find("\"experiment_id\":\"");
  ASSERT_NE(at, std::string::npos) << first.out;
  const int64_t id = std::stoll(first.out.substr(at + 17));
  v1::Experiment e = testing::WatchToEnd(fleet_->stub(), id, nullptr,
                                         std::chrono::seconds(120));
  ASSERT_EQ(e.state(), "done") << e.state_reason() << "\n" << e.report_text();

  // The digest the controller recorded is that of the tree as packed here.
  absl::StatusOr<BundleInfo> packed =
      PackDirectory(dir_ / "tree", dir_ / "check.bfb", PackOptions{});
  ASSERT_TRUE(packed.ok()) << packed.status();
  v1::Experiment shown = testing::GetExperiment(fleet_->stub(), id);
  EXPECT_EQ(shown.bundle_digest(), packed->digest);
  EXPECT_THAT(e.report_text(),
              HasSubstr(absl::StrCat("Source: bundle ", packed->digest)));

  // Each variant ran in its own unpacked copy under the agent's work
  // directory (never in the submitter's tree), sealed read-only.
  int64_t attempt = 0;
  std::map<std::string, std::string> outputs = Outputs(id, &attempt);
  const std::string copies =
      absl::StrCat(dir_ / "fleet/agent/source/checkouts/", attempt);
  EXPECT_EQ(outputs["base"],
            Sha256Hex(absl::StrCat("base\n", copies, "/base\n555\n555\n")));
  EXPECT_EQ(outputs["fast"],
            Sha256Hex(absl::StrCat("fast\n", copies, "/fast\n555\n555\n")));
  EXPECT_FALSE(fs::exists(dir_ / "tree/built-by-setup"))
      << "setup ran in the submitter's directory";
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (fs::exists(copies) && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(20));
  EXPECT_FALSE(fs::exists(copies)) << "the copies were left behind";

  // The same tree again: nothing is uploaded.
  testing::CommandResult second = Cli({"submit", dir_ / "tree/spec.yaml"});
  ASSERT_EQ(second.exit_code, 0) << second.all();
  EXPECT_THAT(second.err, HasSubstr("already on the controller, sent 0 B"));
}

TEST_F(SourceBundleTest, BundlesThatCannotBeUsedAreRefusedAndQueueNothing) {
  // A bundle spec submitted without its bundle.
  grpc::Status none = RawSubmit(kSpec, "");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(none.error_message(), HasSubstr("no bundle came with it"));
  // A digest the controller does not hold.
  grpc::Status unknown = RawSubmit(kSpec, std::string(64, 'a'));
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(unknown.error_message(), HasSubstr("holds no bundle"));
  // A ref with a bundle: refused by the CLI before anything is sent, and by
  // the controller.
  std::string with_ref = kSpec;
  with_ref.replace(with_ref.find("{name: base}"), 12,
                   "{name: base, ref: main}");
  testing::WriteFile(dir_ / "tree/ref.yaml", with_ref);
  testing::CommandResult cli = Cli({"submit", dir_ / "tree/ref.yaml"});
  EXPECT_NE(cli.exit_code, 0) << cli.all();
  EXPECT_THAT(cli.err, HasSubstr("with source.bundle every variant runs"));
  grpc::Status ref = RawSubmit(with_ref, "");
  EXPECT_EQ(ref.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CountExperiments(), 0);
}

}  // namespace
}  // namespace benchfleet
