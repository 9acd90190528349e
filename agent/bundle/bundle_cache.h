// BundleCache: the agent's source bundles (issue 11), fetched from the
// controller by digest into <agent data dir>/bundles and kept there for the
// next experiment that needs the same tree. Every fetched bundle's SHA-256 is
// checked before it enters the cache. The cache holds at most
// `max_total_bytes`; when a new bundle pushes it over, the least recently used
// bundles go first, but never one that is pinned (in use by an extraction or
// a caller holding a Pin). Concurrent requests for the same digest fetch it
// once. The order of last use survives restarts (file times).
//
// The worktree manager (agent/service, per-variant checkouts) calls ExtractTo;
// tests drive it with a fake BundleFetcher. Thread-safe.
#ifndef BENCHFLEET_AGENT_BUNDLE_BUNDLE_CACHE_H_
#define BENCHFLEET_AGENT_BUNDLE_BUNDLE_CACHE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/bundle/bundle.h"

namespace benchfleet {

// Where bundles come from: the controller (GrpcBundleFetcher) or, in tests,
// a fake. Implementations are thread-safe.
class BundleFetcher {
 public:
  virtual ~BundleFetcher() = default;
  // Writes the bundle `digest` into the new file `path`; refuses (without
  // reading it all) one larger than `max_bytes`. NotFound when the source
  // does not hold it. The caller checks the digest.
  virtual absl::Status Fetch(const std::string& digest, const std::string& path,
                             int64_t max_bytes) = 0;
};

struct BundleCacheOptions {
  std::string dir;  // created when missing
  // The cache's size cap: least recently used, unpinned bundles are evicted
  // beyond it.
  int64_t max_total_bytes = int64_t{2} << 30;
  // A single bundle larger than this is refused (the controller's cap).
  int64_t max_bundle_bytes = kDefaultMaxBundleBytes;
};

class BundleCache {
 public:
  // Opens (or creates) the cache in options.dir: bundles already there are
  // kept, unfinished fetches removed, and the cap applied. `fetcher` must
  // outlive the cache. Errors name the directory.
  static absl::StatusOr<std::unique_ptr<BundleCache>> Open(
      const BundleCacheOptions& options, BundleFetcher* fetcher);

  // A bundle held in the cache; it is not evicted while its Pin lives. The
  // cache must outlive its pins.
  class Pin {
   public:
    ~Pin();
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    const std::string& digest() const { return digest_; }
    const std::string& path() const { return path_; }  // the bundle file

   private:
    friend class BundleCache;
    Pin(BundleCache* cache, std::string digest, std::string path)
        : cache_(cache), digest_(std::move(digest)), path_(std::move(path)) {}
    BundleCache* cache_;
    std::string digest_;
    std::string path_;
  };

  // The bundle `digest`, fetched first when the cache does not hold it.
  // InvalidArgument for a malformed digest; DataLoss when what was fetched
  // does not hash to `digest`; FailedPrecondition when it is larger than a
  // bundle or the whole cache may be; the fetcher's error otherwise.
  absl::StatusOr<std::unique_ptr<Pin>> Acquire(const std::string& digest);

  // Unpacks the bundle `digest` into `dest_dir` (which must not exist; see
  // UnpackBundle), fetching it first when needed. A cached copy that no
  // longer matches its digest (damaged on disk) is dropped and fetched again
  // once.
  absl::StatusOr<BundleInfo> ExtractTo(const std::string& digest,
                                       const std::string& dest_dir);

  bool Contains(const std::string& digest) const;
  int64_t total_bytes() const;
  struct Counters {
    int64_t fetches = 0;    // bundles fetched from the source
    int64_t hits = 0;       // Acquire answered from the cache
    int64_t evictions = 0;  // bundles removed to respect the cap
  };
  Counters counters() const;

 private:
  struct Entry {
    int64_t size = 0;
    int pins = 0;
    uint64_t last_use = 0;
  };

  BundleCache(BundleCacheOptions options, BundleFetcher* fetcher)
      : options_(std::move(options)), fetcher_(fetcher) {}
  std::string PathOf(const std::string& digest) const;
  void Unpin(const std::string& digest);
  // Takes the least recently used unpinned bundles out of `entries_` until
  // the total fits, marks them busy and returns them; the caller deletes
  // their files outside the lock, then calls Evicted.
  std::vector<std::string> PickVictimsLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFiles(const std::vector<std::string>& digests, const char* why);
  absl::Status FetchInto(const std::string& digest, int64_t* size);
  // Drops an unpinned bundle whose file is damaged.
  void Drop(const std::string& digest);

  const BundleCacheOptions options_;
  BundleFetcher* const fetcher_;
  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Digests being fetched or deleted: Acquire waits for them.
  std::set<std::string> busy_ ABSL_GUARDED_BY(mu_);
  absl::CondVar busy_done_;
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tick_ ABSL_GUARDED_BY(mu_) = 0;
  Counters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_BUNDLE_BUNDLE_CACHE_H_
