// The controller's BundleStore (controller/bundle/bundle_store.h): an upload
// is visible only once its size and digest checked out, two uploads of one
// digest both commit the same bytes, refused uploads keep nothing, and what
// a crashed upload left in tmp/ is cleared at the next Open once old.
#include "controller/bundle/bundle_store.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;
using ::benchfleet::testing::ReadFile;
using ::benchfleet::testing::TempDir;
using ::benchfleet::testing::WriteFile;

std::string DigestOf(const std::string& bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.HexDigest();
}

class BundleStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<BundleStore> Open(int64_t cap = 1 << 20) {
    BundleStoreOptions o;
    o.dir = tmp_ / "bundles";
    o.max_bundle_bytes = cap;
    absl::StatusOr<std::unique_ptr<BundleStore>> s = BundleStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  TempDir tmp_;
};

TEST_F(BundleStoreTest, AnUploadIsVisibleOnlyAfterItsDigestCheckedOut) {
  auto store = Open();
  const std::string bytes(5000, 'q');
  const std::string d = DigestOf(bytes);
  auto up = store->StartUpload(d, 5000);
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE((*up)->Append(bytes.substr(0, 2000)).ok());
  EXPECT_FALSE(store->Find(d)->has_value());
  ASSERT_TRUE((*up)->Append(bytes.substr(2000)).ok());
  EXPECT_FALSE(store->Find(d)->has_value());
  ASSERT_TRUE((*up)->Commit().ok());
  EXPECT_EQ(store->Find(d)->value_or(-1), 5000);
  EXPECT_EQ(ReadFile(store->PathOf(d)), bytes);
}

TEST_F(BundleStoreTest, TwoUploadsOfOneDigestBothCommitTheSameBytes) {
  auto store = Open();
  const std::string bytes(3000, 'z');
  const std::string d = DigestOf(bytes);
  auto a = store->StartUpload(d, 3000);
  auto b = store->StartUpload(d, 3000);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->Append(bytes).ok());
  ASSERT_TRUE((*b)->Append(bytes).ok());
  EXPECT_TRUE((*b)->Commit().ok());
  EXPECT_TRUE((*a)->Commit().ok());
  EXPECT_EQ(ReadFile(store->PathOf(d)), bytes);
  a->reset();
  b->reset();
  EXPECT_TRUE(fs::is_empty(tmp_ / "bundles/tmp"));
}

TEST_F(BundleStoreTest, RefusedUploadsKeepNothing) {
  auto store = Open(4000);
  const std::string bytes(3000, 'z');
  const std::string d = DigestOf(bytes);
  {
    auto wrong = store->StartUpload(d, 3000);
    ASSERT_TRUE(wrong.ok());
    ASSERT_TRUE((*wrong)->Append(std::string(3000, 'y')).ok());
    absl::Status s = (*wrong)->Commit();
    EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  }
  {
    auto too_much = store->StartUpload(d, 3000);
    ASSERT_TRUE(too_much.ok());
    EXPECT_TRUE(
        absl::IsInvalidArgument((*too_much)->Append(std::string(3001, 'z'))));
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(store->StartUpload(d, 4001).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->StartUpload(d, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->StartUpload("../x", 10).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(store->Find("../x").status()));
  EXPECT_FALSE(store->Find(d)->has_value());
  EXPECT_TRUE(fs::is_empty(tmp_ / "bundles/tmp"));
}

TEST_F(BundleStoreTest, OpenClearsOldLeftoversButNotFreshOnes) {
  Open();
  WriteFile(tmp_ / "bundles/tmp/old.part", "x");
  WriteFile(tmp_ / "bundles/tmp/fresh.part", "y");
  fs::last_write_time(tmp_ / "bundles/tmp/old.part",
                      fs::file_time_type::clock::now() - std::chrono::hours(2));
  Open();
  EXPECT_FALSE(fs::exists(tmp_ / "bundles/tmp/old.part"));
  EXPECT_TRUE(fs::exists(tmp_ / "bundles/tmp/fresh.part"));
}

}  // namespace
}  // namespace benchfleet
