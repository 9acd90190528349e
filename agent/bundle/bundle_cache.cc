#include "agent/bundle/bundle_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;

constexpr char kSuffix[] = ".bfb";

}  // namespace

absl::StatusOr<std::unique_ptr<BundleCache>> BundleCache::Open(
    const BundleCacheOptions& options, BundleFetcher* fetcher) {
  std::error_code ec;
  fs::create_directories(fs::path(options.dir) / "tmp", ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create the bundle cache ", options.dir, "/tmp: ", ec.message(),
        "; give the agent a writable --workdir"));
  }
  for (const auto& e :
       fs::directory_iterator(fs::path(options.dir) / "tmp", ec))
    fs::remove_all(e.path(), ec);
  auto cache = std::unique_ptr<BundleCache>(new BundleCache(options, fetcher));
  // Bundles from earlier runs, oldest use first.
  std::vector<std::pair<fs::file_time_type, std::string>> found;
  for (const auto& e : fs::directory_iterator(options.dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file(ec) || !absl::EndsWith(name, kSuffix)) continue;
    const std::string digest = name.substr(0, name.size() - 4);
    if (!IsValidBundleDigest(digest)) continue;
    found.emplace_back(e.last_write_time(ec), digest);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> victims;
  {
    absl::MutexLock lock(&cache->mu_);
    for (const auto& [time, digest] : found) {
      Entry& entry = cache->entries_[digest];
      entry.size =
          static_cast<int64_t>(fs::file_size(cache->PathOf(digest), ec));
      entry.last_use = ++cache->tick_;
      cache->total_ += entry.size;
    }
    victims = cache->PickVictimsLocked();
  }
  cache->RemoveFiles(victims, "over the size cap");
  return cache;
}

std::string BundleCache::PathOf(const std::string& digest) const {
  return absl::StrCat(options_.dir, "/", digest, kSuffix);
}

bool BundleCache::Contains(const std::string& digest) const {
  absl::MutexLock lock(&mu_);
  return entries_.contains(digest);
}

int64_t BundleCache::total_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_;
}

BundleCache::Counters BundleCache::counters() const {
  absl::MutexLock lock(&mu_);
  return counters_;
}

BundleCache::Pin::~Pin() { cache_->Unpin(digest_); }

void BundleCache::Unpin(const std::string& digest) {
  std::vector<std::string> victims;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(digest);
    if (it != entries_.end() && it->second.pins > 0) --it->second.pins;
    // A bundle that had to stay while pinned may go now.
    victims = PickVictimsLocked();
  }
  RemoveFiles(victims, "least recently used, over the size cap");
}

std::vector<std::string> BundleCache::PickVictimsLocked() {
  std::vector<std::string> victims;
  while (total_ > options_.max_total_bytes) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.pins > 0) continue;
      if (oldest == entries_.end() ||
          it->second.last_use < oldest->second.last_use)
        oldest = it;
    }
    if (oldest == entries_.end()) break;  // everything left is in use
    total_ -= oldest->second.size;
    ++counters_.evictions;
    busy_.insert(oldest->first);
    victims.push_back(oldest->first);
    entries_.erase(oldest);
  }
  return victims;
}

void BundleCache::RemoveFiles(const std::vector<std::string>& digests,
                              const char* why) {
  if (digests.empty()) return;
  for (const std::string& d : digests) {
    spdlog::info("bundle cache: removing {} ({})", d, why);
    ::unlink(PathOf(d).c_str());
  }
  absl::MutexLock lock(&mu_);
  for (const std::string& d : digests) busy_.erase(d);
  busy_done_.SignalAll();
}

absl::Status BundleCache::FetchInto(const std::string& digest, int64_t* size) {
  const int64_t cap =
      std::min(options_.max_bundle_bytes, options_.max_total_bytes);
  std::string temp = absl::StrCat(options_.dir, "/tmp/", digest, ".XXXXXX");
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create a file in ",
                                            options_.dir,
                                            "/tmp: ", std::strerror(errno)));
  }
  ::close(fd);
  ::unlink(temp.c_str());  // the fetcher creates it
  struct Cleanup {
    std::string path;
    ~Cleanup() { ::unlink(path.c_str()); }
  } cleanup{temp};
  RETURN_IF_ERROR(fetcher_->Fetch(digest, temp, cap));
  struct stat st;
  if (::stat(temp.c_str(), &st) != 0) {
    return absl::InternalError(
        absl::StrCat("fetched bundle ", digest, " is missing from ", temp));
  }
  if (st.st_size > cap) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", digest, " is ", HumanBytes(st.st_size),
                     ", over this agent's cap of ", HumanBytes(cap),
                     "; raise the agent's bundle cache size"));
  }
  ASSIGN_OR_RETURN(std::string got, Sha256OfFile(temp));
  if (got != digest) {
    return absl::DataLossError(absl::StrCat(
        "bundle fetched as ", digest, " hashes to ", got,
        "; it was damaged on the way or the controller's copy is bad. "
        "Nothing was kept; upload it again (`benchfleet bundle push`)"));
  }
  if (::rename(temp.c_str(), PathOf(digest).c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot move ", temp, " to ",
                                            PathOf(digest), ": ",
                                            std::strerror(errno)));
  }
  *size = st.st_size;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BundleCache::Pin>> BundleCache::Acquire(
    const std::string& digest) {
  RETURN_IF_ERROR(CheckBundleDigest(digest));
  bool hit = false;
  {
    absl::MutexLock lock(&mu_);
    // Another thread fetching or deleting it: wait for it to finish.
    while (busy_.contains(digest)) busy_done_.Wait(&mu_);
    if (auto it = entries_.find(digest); it != entries_.end()) {
      ++it->second.pins;
      it->second.last_use = ++tick_;
      ++counters_.hits;
      hit = true;
    } else {
      busy_.insert(digest);
    }
  }
  if (hit) {
    // The file time keeps the order of use across restarts; pinned, the
    // file cannot go away meanwhile.
    ::utimensat(AT_FDCWD, PathOf(digest).c_str(), nullptr, 0);
    return std::unique_ptr<Pin>(new Pin(this, digest, PathOf(digest)));
  }
  int64_t size = 0;
  const absl::Status fetched = FetchInto(digest, &size);
  std::vector<std::string> victims;
  {
    absl::MutexLock lock(&mu_);
    busy_.erase(digest);
    busy_done_.SignalAll();
    if (!fetched.ok()) return fetched;
    Entry& entry = entries_[digest];
    entry.size = size;
    entry.pins = 1;
    entry.last_use = ++tick_;
    total_ += size;
    ++counters_.fetches;
    victims = PickVictimsLocked();
  }
  RemoveFiles(victims, "least recently used, over the size cap");
  spdlog::info("bundle cache: fetched {} ({})", digest, HumanBytes(size));
  return std::unique_ptr<Pin>(new Pin(this, digest, PathOf(digest)));
}

void BundleCache::Drop(const std::string& digest) {
  std::vector<std::string> victims;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(digest);
    if (it == entries_.end() || it->second.pins > 0) return;
    total_ -= it->second.size;
    entries_.erase(it);
    busy_.insert(digest);
    victims.push_back(digest);
  }
  RemoveFiles(victims, "damaged on disk");
}

absl::StatusOr<BundleInfo> BundleCache::ExtractTo(const std::string& digest,
                                                  const std::string& dest_dir) {
  UnpackOptions uo;
  uo.expected_digest = digest;
  uo.max_bytes = options_.max_bundle_bytes;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<BundleInfo> info;
    bool damaged = false;
    {
      ASSIGN_OR_RETURN(std::unique_ptr<Pin> pin, Acquire(digest));
      info = UnpackBundle(pin->path(), dest_dir, uo);
      // Whatever the unpacker said, a file that no longer hashes to its
      // name was damaged here, not sent so.
      if (!info.ok()) {
        absl::StatusOr<std::string> now = Sha256OfFile(pin->path());
        damaged = !now.ok() || *now != digest;
      }
    }
    if (info.ok() || !damaged || attempt > 0) return info;
    spdlog::warn(
        "bundle cache: {} no longer matches its digest on disk; "
        "fetching it again",
        digest);
    Drop(digest);
  }
}

}  // namespace benchfleet
