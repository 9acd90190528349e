#include "controller/bundle/bundle_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace benchfleet {
namespace {

namespace fs = std::filesystem;

std::string Errno() { return std::strerror(errno); }

}  // namespace

absl::StatusOr<std::unique_ptr<BundleStore>> BundleStore::Open(
    const BundleStoreOptions& options) {
  std::error_code ec;
  fs::create_directories(fs::path(options.dir) / "tmp", ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create the bundle directory ", options.dir,
        "/tmp: ", ec.message(), "; give the controller a writable --data-dir"));
  }
  // Uploads a previous process did not finish. Only old ones: another
  // controller on the same data directory (local mode beside a daemon) may
  // be receiving one right now.
  const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const auto& e :
       fs::directory_iterator(fs::path(options.dir) / "tmp", ec)) {
    if (e.last_write_time(ec) < cutoff) fs::remove(e.path(), ec);
  }
  return std::unique_ptr<BundleStore>(new BundleStore(options));
}

std::string BundleStore::PathOf(absl::string_view digest) const {
  return absl::StrCat(options_.dir, "/", digest, ".bfb");
}

absl::StatusOr<std::optional<int64_t>> BundleStore::Find(
    absl::string_view digest) const {
  if (absl::Status s = CheckBundleDigest(digest); !s.ok()) return s;
  struct stat st;
  if (::stat(PathOf(digest).c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    return absl::InternalError(
        absl::StrCat("cannot read ", PathOf(digest), ": ", Errno()));
  }
  return static_cast<int64_t>(st.st_size);
}

absl::StatusOr<std::unique_ptr<BundleStore::Upload>> BundleStore::StartUpload(
    absl::string_view digest, int64_t size_bytes) const {
  if (absl::Status s = CheckBundleDigest(digest); !s.ok()) return s;
  if (size_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload of bundle ", digest, " declares ", size_bytes,
                     " bytes; the first message must carry the bundle's size"));
  }
  if (size_bytes > options_.max_bundle_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "bundle ", digest.substr(0, 12), " is ", HumanBytes(size_bytes),
        ", over this controller's cap of ",
        HumanBytes(options_.max_bundle_bytes),
        " per bundle; send fewer files, or ask its operator to raise "
        "max_bundle_size"));
  }
  std::string temp = absl::StrCat(options_.dir, "/tmp/", digest, ".XXXXXX");
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create an upload file in ",
                                            options_.dir, "/tmp: ", Errno()));
  }
  return std::unique_ptr<Upload>(
      new Upload(this, std::string(digest), size_bytes, std::move(temp), fd));
}

BundleStore::Upload::Upload(const BundleStore* store, std::string digest,
                            int64_t size, std::string temp_path, int fd)
    : store_(store),
      digest_(std::move(digest)),
      size_(size),
      temp_path_(std::move(temp_path)),
      fd_(fd) {}

BundleStore::Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status BundleStore::Upload::Append(absl::string_view data) {
  if (received_ + static_cast<int64_t>(data.size()) > size_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "upload of bundle ", digest_.substr(0, 12), " sent more than the ",
        size_, " bytes it declared; nothing was kept"));
  }
  hash_.Update(data);
  while (!data.empty()) {
    const ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("cannot write ", temp_path_, ": ", Errno(),
                       "; is the controller's data directory full?"));
    }
    data.remove_prefix(static_cast<size_t>(n));
    received_ += n;
  }
  return absl::OkStatus();
}

absl::Status BundleStore::Upload::Commit() {
  if (received_ != size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("upload of bundle ", digest_.substr(0, 12),
                     " ended after ", received_, " of the ", size_,
                     " bytes it declared; nothing was kept, upload "
                     "again"));
  }
  const std::string got = hash_.HexDigest();
  if (got != digest_) {
    return absl::DataLossError(absl::StrCat(
        "upload declared bundle ", digest_, " but its bytes hash to ", got,
        "; nothing was kept. Pack and upload again (`benchfleet bundle "
        "push`)"));
  }
  if (::fdatasync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    return absl::InternalError(
        absl::StrCat("cannot write ", temp_path_, ": ", Errno()));
  }
  fd_ = -1;
  ::chmod(temp_path_.c_str(), 0644);
  if (::rename(temp_path_.c_str(), store_->PathOf(digest_).c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot move ", temp_path_, " into place: ", Errno()));
  }
  committed_ = true;
  return absl::OkStatus();
}

}  // namespace benchfleet
