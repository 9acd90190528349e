// Unpacking: reading a bundle back into a fresh directory, refusing
// anything that could write outside it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/bundle/bundle.h"
#include "common/bundle/bundle_format.h"
#include "common/status_macros.h"

namespace benchfleet {
namespace {

using bundle_internal::CheckEntryPath;
using bundle_internal::CheckNoPathUnderEntry;
using bundle_internal::CheckSymlinkTarget;
using bundle_internal::Errno;
using bundle_internal::Fd;
using bundle_internal::kIoBytes;
using bundle_internal::kMagic;
using bundle_internal::kMaxEntries;
using bundle_internal::kMaxPathBytes;
using bundle_internal::kVersion;
using bundle_internal::WriteAll;
namespace fs = std::filesystem;

// Reads a bundle front to back, hashing every byte it hands out.
class BundleReader {
 public:
  BundleReader(int fd, std::string path, int64_t size)
      : fd_(fd), path_(std::move(path)), left_(size), buf_(kIoBytes, '\0') {}

  // Exactly n bytes, else InvalidArgument (truncated).
  absl::Status Read(void* dst, size_t n) {
    char* out = static_cast<char*>(dst);
    while (n > 0) {
      if (pos_ == end_) RETURN_IF_ERROR(Fill());
      const size_t take = std::min(n, end_ - pos_);
      std::memcpy(out, buf_.data() + pos_, take);
      hash_.Update(buf_.data() + pos_, take);
      pos_ += take;
      out += take;
      n -= take;
    }
    return absl::OkStatus();
  }
  // Hands n bytes to `sink` in pieces.
  template <typename Sink>
  absl::Status Stream(uint64_t n, Sink&& sink) {
    while (n > 0) {
      if (pos_ == end_) RETURN_IF_ERROR(Fill());
      const size_t take =
          static_cast<size_t>(std::min<uint64_t>(n, end_ - pos_));
      hash_.Update(buf_.data() + pos_, take);
      RETURN_IF_ERROR(sink(absl::string_view(buf_.data() + pos_, take)));
      pos_ += take;
      n -= take;
    }
    return absl::OkStatus();
  }
  template <typename T>
  absl::Status ReadInt(T* v) {
    unsigned char b[sizeof(T)];
    RETURN_IF_ERROR(Read(b, sizeof(T)));
    *v = 0;
    for (size_t i = 0; i < sizeof(T); ++i)
      *v |= static_cast<T>(b[i]) << (8 * i);
    return absl::OkStatus();
  }
  bool AtEnd() const { return pos_ == end_ && left_ == 0; }
  int64_t remaining() const {
    return left_ + static_cast<int64_t>(end_ - pos_);
  }
  std::string HexDigest() { return hash_.HexDigest(); }

 private:
  absl::Status Fill() {
    if (left_ == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bundle ", path_, " is truncated"));
    }
    const ssize_t n =
        ::read(fd_, buf_.data(),
               static_cast<size_t>(std::min<int64_t>(left_, buf_.size())));
    if (n < 0 && errno == EINTR) return absl::OkStatus();
    if (n <= 0) {
      return absl::InternalError(
          absl::StrCat("cannot read bundle ", path_, ": ", Errno(errno)));
    }
    pos_ = 0;
    end_ = static_cast<size_t>(n);
    left_ -= n;
    return absl::OkStatus();
  }

  int fd_;
  std::string path_;
  int64_t left_;
  std::string buf_;
  size_t pos_ = 0, end_ = 0;
  Sha256 hash_;
};

// Creates the directories leading to `rel` under `root` (none of them may
// exist as anything but a directory).
absl::Status MakeParents(const std::string& root, absl::string_view rel) {
  for (size_t slash = rel.find('/'); slash != absl::string_view::npos;
       slash = rel.find('/', slash + 1)) {
    const std::string dir = absl::StrCat(root, "/", rel.substr(0, slash));
    if (::mkdir(dir.c_str(), 0755) == 0) continue;
    struct stat st;
    if (errno == EEXIST && ::lstat(dir.c_str(), &st) == 0 &&
        S_ISDIR(st.st_mode))
      continue;
    return absl::InvalidArgumentError(
        absl::StrCat("'", rel, "' lies under '", rel.substr(0, slash),
                     "', which is not a directory in the bundle"));
  }
  return absl::OkStatus();
}

absl::StatusOr<BundleInfo> UnpackInto(const std::string& bundle_path,
                                      const std::string& root,
                                      const UnpackOptions& options) {
  Fd in(::open(bundle_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open bundle ", bundle_path, ": ", Errno(errno)));
  }
  struct stat st;
  if (::fstat(in.fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle ", bundle_path, " is not a regular file"));
  }
  if (st.st_size > options.max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", bundle_path, " is ", HumanBytes(st.st_size),
                     ", over the cap of ", HumanBytes(options.max_bytes)));
  }
  BundleReader r(in.fd, bundle_path, st.st_size);
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("bundle ", bundle_path, " refused: ", what));
  };
  char magic[8];
  uint32_t version = 0;
  if (!r.Read(magic, sizeof(magic)).ok() ||
      std::memcmp(magic, kMagic, sizeof(magic)) != 0) {
    return bad("it is not a benchfleet bundle (no BFBUNDLE header)");
  }
  RETURN_IF_ERROR(r.ReadInt(&version));
  if (version != kVersion) {
    return bad(absl::StrCat("format version ", version,
                            " (this benchfleet "
                            "reads version 1); upgrade benchfleet"));
  }
  BundleInfo info;
  std::vector<std::string> paths;
  std::set<std::string> symlink_set;
  std::vector<std::pair<std::string, std::string>> symlinks;
  std::string previous;
  for (;;) {
    unsigned char kind = 0;
    if (absl::Status s = r.Read(&kind, 1); !s.ok()) return bad(s.ToString());
    if (kind == 'E') break;
    if (kind != 'F' && kind != 'X' && kind != 'L') {
      return bad(absl::StrFormat(
          "entry %d has kind 0x%02x; bundles hold only files and symlinks "
          "(no devices, fifos or sockets)",
          info.files + 1, kind));
    }
    if (info.files >= kMaxEntries) {
      return bad(absl::StrCat("more than ", kMaxEntries, " entries"));
    }
    uint32_t path_len = 0;
    RETURN_IF_ERROR(r.ReadInt(&path_len));
    if (path_len == 0 || path_len > kMaxPathBytes) {
      return bad(absl::StrCat("entry ", info.files + 1, " has a path of ",
                              path_len, " bytes (allowed 1 to ", kMaxPathBytes,
                              ")"));
    }
    std::string path(path_len, '\0');
    if (absl::Status s = r.Read(path.data(), path_len); !s.ok())
      return bad(std::string(s.message()));
    if (absl::Status s = CheckEntryPath(path); !s.ok())
      return bad(std::string(s.message()));
    if (!previous.empty() && path <= previous) {
      return bad(absl::StrCat("'", path, "' comes after '", previous,
                              "': paths must be sorted and unique"));
    }
    previous = path;
    uint64_t size = 0;
    if (absl::Status s = r.ReadInt(&size); !s.ok())
      return bad(std::string(s.message()));
    if (size > static_cast<uint64_t>(r.remaining())) {
      return bad(absl::StrCat("'", path, "' claims ", size,
                              " bytes, more than the bundle has left"));
    }
    ++info.files;
    paths.push_back(path);
    if (kind == 'L') {
      if (size == 0 || size > kMaxPathBytes) {
        return bad(absl::StrCat("symlink '", path, "' has a target of ", size,
                                " bytes"));
      }
      std::string target(size, '\0');
      RETURN_IF_ERROR(r.Read(target.data(), size));
      symlink_set.insert(path);
      symlinks.emplace_back(path, std::move(target));
      continue;
    }
    if (absl::Status s = MakeParents(root, path); !s.ok())
      return bad(std::string(s.message()));
    const std::string file = absl::StrCat(root, "/", path);
    Fd out(::open(file.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  kind == 'X' ? 0755 : 0644));
    if (out.fd < 0) {
      return absl::InternalError(
          absl::StrCat("cannot create ", file, ": ", Errno(errno)));
    }
    RETURN_IF_ERROR(r.Stream(size, [&](absl::string_view piece) {
      return WriteAll(out.fd, piece, file);
    }));
    info.content_bytes += static_cast<int64_t>(size);
  }
  uint64_t count = 0;
  if (absl::Status s = r.ReadInt(&count); !s.ok())
    return bad(std::string(s.message()));
  if (count != static_cast<uint64_t>(info.files)) {
    return bad(absl::StrCat("its trailer counts ", count, " entries, it has ",
                            info.files));
  }
  if (!r.AtEnd()) return bad("it has bytes after its trailer");
  info.digest = r.HexDigest();
  info.size_bytes = st.st_size;
  if (!options.expected_digest.empty() &&
      info.digest != options.expected_digest) {
    return absl::DataLossError(absl::StrCat(
        "bundle ", bundle_path, " has SHA-256 ", info.digest, ", expected ",
        options.expected_digest, "; it was damaged or tampered with"));
  }
  if (absl::Status s = CheckNoPathUnderEntry(paths); !s.ok())
    return bad(std::string(s.message()));
  for (const auto& [link, target] : symlinks) {
    if (absl::Status s = CheckSymlinkTarget(link, target, symlink_set); !s.ok())
      return bad(std::string(s.message()));
  }
  // Symlinks last: nothing above was ever written through one.
  for (const auto& [link, target] : symlinks) {
    RETURN_IF_ERROR(MakeParents(root, link));
    const std::string at = absl::StrCat(root, "/", link);
    if (::symlink(target.c_str(), at.c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("cannot create symlink ", at, ": ", Errno(errno)));
    }
  }
  return info;
}

}  // namespace

absl::StatusOr<BundleInfo> UnpackBundle(const std::string& bundle_path,
                                        const std::string& dest_dir,
                                        const UnpackOptions& options) {
  std::error_code ec;
  fs::path dest = fs::path(dest_dir).lexically_normal();
  if (dest.has_filename() == false) dest = dest.parent_path();
  if (fs::exists(fs::symlink_status(dest, ec))) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot unpack into ", dest.string(),
        ": it exists already; bundles unpack only into a fresh directory"));
  }
  std::string tmpl = dest.string() + ".partial-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat(
        "cannot create a directory beside ", dest.string(), ": ", Errno(errno),
        "; check that its parent exists and is writable"));
  }
  absl::StatusOr<BundleInfo> info = UnpackInto(bundle_path, tmpl, options);
  if (info.ok() && ::chmod(tmpl.c_str(), 0755) != 0) {
    info = absl::InternalError(
        absl::StrCat("cannot chmod ", tmpl, ": ", Errno(errno)));
  }
  if (info.ok() && ::rename(tmpl.c_str(), dest.c_str()) != 0) {
    info = absl::InternalError(absl::StrCat("cannot rename ", tmpl, " to ",
                                            dest.string(), ": ", Errno(errno)));
  }
  if (!info.ok()) fs::remove_all(tmpl, ec);
  return info;
}

}  // namespace benchfleet
