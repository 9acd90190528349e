// BundleStore: the controller's source bundles (issue 11), one file per bundle
// under <data dir>/bundles, named by its SHA-256. Uploads go to a temporary
// file that is renamed into place only after its size and digest checked
// out, so a reader never sees a partial bundle and concurrent uploads of the
// same digest are harmless (each writes its own temporary file; the renames
// put identical bytes in place). Used by the bundle RPCs
// (controller/service/bundle_service.h). Thread-safe: it holds no state but
// the directory.
#ifndef BENCHFLEET_CONTROLLER_BUNDLE_BUNDLE_STORE_H_
#define BENCHFLEET_CONTROLLER_BUNDLE_BUNDLE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/bundle/bundle.h"

namespace benchfleet {

struct BundleStoreOptions {
  std::string dir;  // created when missing
  // Uploads declaring more are refused, naming this cap.
  int64_t max_bundle_bytes = kDefaultMaxBundleBytes;
};

class BundleStore {
 public:
  // Creates `dir` (and its tmp/ for uploads in progress, where what a
  // previous process left over an hour ago is removed). Errors name the
  // directory.
  static absl::StatusOr<std::unique_ptr<BundleStore>> Open(
      const BundleStoreOptions& options);

  // The size of the bundle when it is held, nullopt when not.
  // InvalidArgument for something that is not a digest.
  absl::StatusOr<std::optional<int64_t>> Find(absl::string_view digest) const;
  // Where the bundle `digest` lives (whether or not it is there).
  std::string PathOf(absl::string_view digest) const;
  int64_t max_bundle_bytes() const { return options_.max_bundle_bytes; }
  const std::string& dir() const { return options_.dir; }

  // One upload in progress. Not thread-safe; one caller feeds it.
  class Upload {
   public:
    ~Upload();  // removes the temporary file unless committed
    Upload(const Upload&) = delete;
    Upload& operator=(const Upload&) = delete;
    // InvalidArgument when the data goes past the declared size.
    absl::Status Append(absl::string_view data);
    // Checks the size and the SHA-256 and moves the bundle into place.
    // InvalidArgument when fewer bytes came than declared; DataLoss when
    // the digest differs (nothing is kept).
    absl::Status Commit();
    int64_t received() const { return received_; }

   private:
    friend class BundleStore;
    Upload(const BundleStore* store, std::string digest, int64_t size,
           std::string temp_path, int fd);
    const BundleStore* store_;
    const std::string digest_;
    const int64_t size_;
    std::string temp_path_;
    int fd_;
    int64_t received_ = 0;
    bool committed_ = false;
    Sha256 hash_;
  };

  // Starts an upload of `size_bytes` bytes that must hash to `digest`.
  // InvalidArgument for a bad digest or size; FailedPrecondition when
  // `size_bytes` is over the cap (saying how to raise it).
  absl::StatusOr<std::unique_ptr<Upload>> StartUpload(absl::string_view digest,
                                                      int64_t size_bytes) const;

 private:
  explicit BundleStore(BundleStoreOptions options)
      : options_(std::move(options)) {}
  BundleStoreOptions options_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_BUNDLE_BUNDLE_STORE_H_
