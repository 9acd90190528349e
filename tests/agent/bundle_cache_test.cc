// The agent's bundle cache (agent/bundle/bundle_cache.h) against a fake
// fetcher: a bundle is fetched once and then served from disk (also after a
// restart), bytes that do not hash to the digest never enter it, the least
// recently used bundles go when the size cap is passed but never one that is
// pinned, concurrent requests for one digest fetch it once, and ExtractTo
// gives back the packed tree.
#include "agent/bundle/bundle_cache.h"

#include <filesystem>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
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

class FakeFetcher : public BundleFetcher {
 public:
  // Serves `bytes` under their own digest; returns it.
  std::string Add(const std::string& bytes) {
    const std::string d = DigestOf(bytes);
    absl::MutexLock lock(&mu_);
    blobs_[d] = bytes;
    return d;
  }
  // Serves `bytes` under `digest`, whatever they hash to.
  void AddAs(const std::string& digest, const std::string& bytes) {
    absl::MutexLock lock(&mu_);
    blobs_[digest] = bytes;
  }
  // The next Fetch signals `entered` and waits for `release`.
  void BlockNext(absl::Notification* entered, absl::Notification* release) {
    absl::MutexLock lock(&mu_);
    entered_ = entered;
    release_ = release;
  }
  absl::Status Fetch(const std::string& digest, const std::string& path,
                     int64_t max_bytes) override {
    absl::Notification* entered = nullptr;
    absl::Notification* release = nullptr;
    std::string bytes;
    {
      absl::MutexLock lock(&mu_);
      ++fetches_;
      std::swap(entered, entered_);
      std::swap(release, release_);
      auto it = blobs_.find(digest);
      if (it == blobs_.end()) return absl::NotFoundError("no such bundle");
      bytes = it->second;
    }
    if (entered != nullptr) entered->Notify();
    if (release != nullptr) release->WaitForNotification();
    if (static_cast<int64_t>(bytes.size()) > max_bytes)
      return absl::FailedPreconditionError("over the cap");
    WriteFile(path, bytes);
    return absl::OkStatus();
  }
  int fetches() const {
    absl::MutexLock lock(&mu_);
    return fetches_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> blobs_;
  int fetches_ = 0;
  absl::Notification* entered_ = nullptr;
  absl::Notification* release_ = nullptr;
};

class BundleCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<BundleCache> Open(int64_t cap) {
    BundleCacheOptions o;
    o.dir = tmp_ / "cache";
    o.max_total_bytes = cap;
    absl::StatusOr<std::unique_ptr<BundleCache>> c =
        BundleCache::Open(o, &fetcher_);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  TempDir tmp_;
  FakeFetcher fetcher_;
};

TEST_F(BundleCacheTest, FetchesOnceThenServesFromDiskAlsoAfterARestart) {
  const std::string d = fetcher_.Add(std::string(1000, 'a'));
  {
    auto cache = Open(1 << 20);
    ASSERT_TRUE(cache->Acquire(d).ok());
    absl::StatusOr<std::unique_ptr<BundleCache::Pin>> pin = cache->Acquire(d);
    ASSERT_TRUE(pin.ok());
    EXPECT_EQ(ReadFile((*pin)->path()), std::string(1000, 'a'));
    EXPECT_EQ(cache->counters().fetches, 1);
    EXPECT_EQ(cache->counters().hits, 1);
    EXPECT_EQ(cache->total_bytes(), 1000);
  }
  auto reopened = Open(1 << 20);
  EXPECT_TRUE(reopened->Contains(d));
  EXPECT_EQ(reopened->total_bytes(), 1000);
  ASSERT_TRUE(reopened->Acquire(d).ok());
  EXPECT_EQ(fetcher_.fetches(), 1);
}

TEST_F(BundleCacheTest, BytesThatDoNotHashToTheDigestNeverEnter) {
  const std::string d = DigestOf("the real bundle");
  fetcher_.AddAs(d, "a tampered bundle");
  auto cache = Open(1 << 20);
  absl::StatusOr<std::unique_ptr<BundleCache::Pin>> pin = cache->Acquire(d);
  ASSERT_TRUE(absl::IsDataLoss(pin.status())) << pin.status();
  EXPECT_NE(pin.status().message().find(d), std::string::npos);
  EXPECT_FALSE(cache->Contains(d));
  EXPECT_EQ(cache->total_bytes(), 0);
  EXPECT_FALSE(fs::exists(tmp_ / ("cache/" + d + ".bfb")));
  EXPECT_TRUE(fs::is_empty(tmp_ / "cache/tmp"));
  // Not a digest at all: refused before any fetch.
  EXPECT_TRUE(absl::IsInvalidArgument(cache->Acquire("../x").status()));
  EXPECT_EQ(fetcher_.fetches(), 1);
  // Unknown to the source.
  EXPECT_TRUE(absl::IsNotFound(cache->Acquire(std::string(64, '0')).status()));
}

TEST_F(BundleCacheTest, EvictsLeastRecentlyUsedBeyondTheCap) {
  const std::string a = fetcher_.Add(std::string(1000, 'a'));
  const std::string b = fetcher_.Add(std::string(1000, 'b'));
  const std::string c = fetcher_.Add(std::string(1000, 'c'));
  auto cache = Open(2500);
  ASSERT_TRUE(cache->Acquire(a).ok());
  ASSERT_TRUE(cache->Acquire(b).ok());
  ASSERT_TRUE(cache->Acquire(a).ok());  // a is now more recent than b
  ASSERT_TRUE(cache->Acquire(c).ok());
  EXPECT_TRUE(cache->Contains(a));
  EXPECT_FALSE(cache->Contains(b));
  EXPECT_TRUE(cache->Contains(c));
  EXPECT_FALSE(fs::exists(tmp_ / ("cache/" + b + ".bfb")));
  EXPECT_EQ(cache->total_bytes(), 2000);
  EXPECT_EQ(cache->counters().evictions, 1);
}

TEST_F(BundleCacheTest, NeverEvictsABundleInUse) {
  const std::string a = fetcher_.Add(std::string(1000, 'a'));
  const std::string b = fetcher_.Add(std::string(1000, 'b'));
  auto cache = Open(1500);
  absl::StatusOr<std::unique_ptr<BundleCache::Pin>> pin_a = cache->Acquire(a);
  ASSERT_TRUE(pin_a.ok());
  {
    absl::StatusOr<std::unique_ptr<BundleCache::Pin>> pin_b = cache->Acquire(b);
    ASSERT_TRUE(pin_b.ok());
    // Both in use: over the cap for now, nothing removed.
    EXPECT_TRUE(cache->Contains(a));
    EXPECT_TRUE(cache->Contains(b));
    EXPECT_EQ(ReadFile((*pin_a)->path()), std::string(1000, 'a'));
  }
  // b is free and a (older) still pinned: b goes, a stays.
  EXPECT_TRUE(cache->Contains(a));
  EXPECT_FALSE(cache->Contains(b));
  pin_a->reset();
  EXPECT_TRUE(cache->Contains(a));  // under the cap now
  EXPECT_EQ(cache->total_bytes(), 1000);
}

TEST_F(BundleCacheTest, ABundleLargerThanTheCacheIsRefused) {
  const std::string big = fetcher_.Add(std::string(5000, 'x'));
  auto cache = Open(4000);
  absl::StatusOr<std::unique_ptr<BundleCache::Pin>> pin = cache->Acquire(big);
  EXPECT_TRUE(absl::IsFailedPrecondition(pin.status())) << pin.status();
  EXPECT_FALSE(cache->Contains(big));
}

TEST_F(BundleCacheTest, ConcurrentRequestsForOneDigestFetchItOnce) {
  const std::string d = fetcher_.Add(std::string(1000, 'a'));
  auto cache = Open(1 << 20);
  absl::Notification entered, release;
  fetcher_.BlockNext(&entered, &release);
  std::thread first([&] { EXPECT_TRUE(cache->Acquire(d).ok()); });
  entered.WaitForNotification();
  std::thread second([&] { EXPECT_TRUE(cache->Acquire(d).ok()); });
  release.Notify();
  first.join();
  second.join();
  EXPECT_EQ(fetcher_.fetches(), 1);
  EXPECT_EQ(cache->counters().hits, 1);
}

TEST_F(BundleCacheTest, ExtractToGivesBackThePackedTree) {
  const std::string src = tmp_ / "src";
  fs::create_directories(src + "/lib");
  WriteFile(src + "/lib/a.txt", "alpha");
  WriteFile(src + "/b.txt", std::string(70000, 'b'));
  absl::StatusOr<BundleInfo> packed = PackDirectory(src, tmp_ / "b.bfb", {});
  ASSERT_TRUE(packed.ok()) << packed.status();
  fetcher_.AddAs(packed->digest, ReadFile(tmp_ / "b.bfb"));
  auto cache = Open(1 << 20);
  absl::StatusOr<BundleInfo> out =
      cache->ExtractTo(packed->digest, tmp_ / "work");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(ReadFile(tmp_ / "work/lib/a.txt"), "alpha");
  EXPECT_EQ(ReadFile(tmp_ / "work/b.txt"), std::string(70000, 'b'));
  // A cached copy damaged on disk is fetched again, once.
  WriteFile(tmp_ / ("cache/" + packed->digest + ".bfb"), "garbage");
  out = cache->ExtractTo(packed->digest, tmp_ / "work2");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(ReadFile(tmp_ / "work2/lib/a.txt"), "alpha");
  EXPECT_EQ(fetcher_.fetches(), 2);
}

}  // namespace
}  // namespace benchfleet
