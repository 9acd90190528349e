// LeaseCheckouts: a lease's sources checked out on acceptance, step orders
// placed inside their variant's checkout (never outside it), the checkout
// sealed before the variant's first run and removed when the attempt ends.
#include "agent/service/lease_checkouts.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/git_repo.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

class LeaseCheckoutsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    commit_ = repo_.Commit("sub/prog.sh", "echo hi\n", true);
    CheckoutOptions options;
    options.root = dir_ / "agent/source";
    checkouts_ = std::make_unique<LeaseCheckouts>(options, "host-a");
    lease_.set_attempt_id(11);
    lease_.set_experiment_id(3);
    lease_.set_experiment_name("exp");
    v1::VariantSource* s = lease_.add_sources();
    s->set_variant("base");
    s->set_repo(repo_.dir());
    s->set_commit(commit_);
  }

  v1::StepOrder Order(v1::StepKind kind, const std::string& cwd,
                      const std::string& variant = "base") {
    v1::StepOrder o;
    o.set_attempt_id(11);
    o.set_step_seq(1);
    o.set_kind(kind);
    o.set_variant(variant);
    o.set_cwd(cwd);
    return o;
  }

  testing::TempDir dir_;
  testing::GitRepo repo_{dir_ / "repo"};
  std::string commit_;
  std::unique_ptr<LeaseCheckouts> checkouts_;
  v1::Lease lease_;
};

TEST_F(LeaseCheckoutsTest, PlacesStepsInTheVariantsCheckoutAndSealsItForRuns) {
  absl::StatusOr<std::string> dir = checkouts_->Prepare(lease_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(*dir, dir_ / "agent/source/checkouts/11/base");

  v1::StepOrder setup = Order(v1::STEP_KIND_SETUP, "");
  ASSERT_TRUE(checkouts_->Place(&setup).ok());
  EXPECT_EQ(setup.cwd(), *dir);
  struct stat st {};
  ASSERT_EQ(stat(dir->c_str(), &st), 0);
  EXPECT_NE(st.st_mode & 0200, 0u) << "setup may still build in it";

  v1::StepOrder run = Order(v1::STEP_KIND_MEASURE, "sub");
  ASSERT_TRUE(checkouts_->Place(&run).ok());
  EXPECT_EQ(run.cwd(), *dir + "/sub");
  ASSERT_EQ(stat((*dir + "/sub/prog.sh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0222, 0u) << "measured runs see a read-only tree";

  checkouts_->Remove(11);
  EXPECT_FALSE(std::filesystem::exists(*dir));
}

TEST_F(LeaseCheckoutsTest, RefusesCwdsOutsideTheCheckoutAndUnknownVariants) {
  ASSERT_TRUE(checkouts_->Prepare(lease_).ok());
  for (const char* cwd : {"/etc", "..", "sub/../../x"}) {
    v1::StepOrder o = Order(v1::STEP_KIND_SETUP, cwd);
    absl::Status st = checkouts_->Place(&o);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << cwd;
    EXPECT_THAT(st.message(), HasSubstr("agent host-a: step 1 asks for cwd"));
  }
  v1::StepOrder other = Order(v1::STEP_KIND_SETUP, "", "fast");
  EXPECT_THAT(checkouts_->Place(&other).message(),
              HasSubstr("of variant 'fast', which the lease has no commit"));
  checkouts_->Remove(11);
}

TEST_F(LeaseCheckoutsTest, LeavesLeasesWithoutSourcesAlone) {
  v1::Lease plain;
  plain.set_attempt_id(12);
  absl::StatusOr<std::string> dir = checkouts_->Prepare(plain);
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(*dir, "");
  v1::StepOrder o = Order(v1::STEP_KIND_MEASURE, "/abs/work");
  o.set_attempt_id(12);
  ASSERT_TRUE(checkouts_->Place(&o).ok());
  EXPECT_EQ(o.cwd(), "/abs/work");
}

TEST_F(LeaseCheckoutsTest, ACheckoutFailureNamesHostRepositoryAndCommit) {
  lease_.mutable_sources(0)->set_commit(std::string(40, 'c'));
  absl::StatusOr<std::string> dir = checkouts_->Prepare(lease_);
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(),
              HasSubstr("agent host-a cannot check out experiment 3 (exp)"));
  EXPECT_THAT(dir.status().message(), HasSubstr(std::string(40, 'c')));
  EXPECT_THAT(dir.status().message(), HasSubstr(repo_.dir()));
}

}  // namespace
}  // namespace benchfleet
