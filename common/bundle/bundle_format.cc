#include "common/bundle/bundle_format.h"

#include <fcntl.h>
#include <openssl/evp.h>
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
#include "common/status_macros.h"

namespace benchfleet {
namespace bundle_internal {
namespace {

absl::string_view ParentOf(absl::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == absl::string_view::npos ? absl::string_view()
                                          : path.substr(0, slash);
}

}  // namespace

std::string Errno(int err) { return std::strerror(err); }

// A relative path as bundles hold it: components separated by single '/',
// none empty, "." or "..", no NUL, not absolute, at most kMaxPathBytes.
absl::Status CheckEntryPath(absl::string_view path) {
  if (path.empty() || path.size() > kMaxPathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "path of ", path.size(), " bytes (allowed: 1 to ", kMaxPathBytes, ")"));
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is an absolute path"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("a path contains a NUL byte");
  }
  for (absl::string_view c : absl::StrSplit(path, '/')) {
    if (c.empty() || c == "." || c == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("'", path,
                       "' has an empty, '.' or '..' component; bundles hold "
                       "plain relative paths"));
    }
  }
  return absl::OkStatus();
}

// A symlink at `link` pointing to `target` must stay inside the tree: a
// relative target, resolved lexically from the link's directory, that never
// climbs above the root and never goes through another symlink of the bundle
// (whose own target would make the lexical answer wrong). Its final component
// may be a symlink: that one is checked on its own.
absl::Status CheckSymlinkTarget(const std::string& link,
                                absl::string_view target,
                                const std::set<std::string>& symlinks) {
  if (target.empty() || target.size() > kMaxPathBytes ||
      target.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("symlink '", link, "' has an empty or over-long target"));
  }
  if (target.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "symlink '", link, "' points to the absolute path '", target,
        "', outside the bundle; make it relative, replace it by a copy, or "
        "leave it out"));
  }
  std::vector<std::string> at;
  for (absl::string_view c : absl::StrSplit(ParentOf(link), '/')) {
    if (!c.empty()) at.emplace_back(c);
  }
  const std::vector<absl::string_view> parts = absl::StrSplit(target, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    const absl::string_view c = parts[i];
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (at.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "symlink '", link, "' points to '", target,
            "', which leaves the bundle's directory; replace it by a copy or "
            "leave it out"));
      }
      at.pop_back();
      continue;
    }
    at.emplace_back(c);
    if (i + 1 < parts.size() && symlinks.contains(absl::StrJoin(at, "/"))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "symlink '", link, "' points to '", target,
          "', through the symlink '", absl::StrJoin(at, "/"),
          "'; bundles allow a symlink to another one only as its last step"));
    }
  }
  return absl::OkStatus();
}

// Every path's proper prefixes must be directories: none may be a file or a
// symlink of the bundle.
absl::Status CheckNoPathUnderEntry(const std::vector<std::string>& sorted) {
  const std::set<absl::string_view> all(sorted.begin(), sorted.end());
  for (const std::string& p : sorted) {
    for (size_t slash = p.find('/'); slash != std::string::npos;
         slash = p.find('/', slash + 1)) {
      if (all.contains(absl::string_view(p).substr(0, slash))) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", p, "' lies under '", p.substr(0, slash),
                         "', which is a file or a symlink in the same bundle"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("cannot write ", path, ": ", Errno(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace bundle_internal

using bundle_internal::Errno;
using bundle_internal::Fd;
using bundle_internal::kIoBytes;

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::Update(const void* data, size_t size) {
  EVP_DigestUpdate(ctx_->md, data, size);
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, digest, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in.fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open ", path, ": ", Errno(errno)));
  }
  Sha256 hash;
  std::string buf(kIoBytes, '\0');
  for (;;) {
    const ssize_t n = ::read(in.fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("cannot read ", path, ": ", Errno(errno)));
    }
    if (n == 0) break;
    hash.Update(buf.data(), static_cast<size_t>(n));
  }
  return hash.HexDigest();
}

bool IsValidBundleDigest(absl::string_view digest) {
  return digest.size() == 64 &&
         std::all_of(digest.begin(), digest.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

absl::Status CheckBundleDigest(absl::string_view digest) {
  if (IsValidBundleDigest(digest)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "'", digest.substr(0, 80),
      "' is not a bundle digest: expected the SHA-256 of the bundle as 64 "
      "lowercase hex characters (`benchfleet bundle push` prints it)"));
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  if (bytes < (int64_t{1} << 20))
    return absl::StrFormat("%.1f KiB", static_cast<double>(bytes) / 1024.0);
  if (bytes < (int64_t{1} << 30))
    return absl::StrFormat("%.1f MiB",
                           static_cast<double>(bytes) / (1024.0 * 1024.0));
  return absl::StrFormat(
      "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace benchfleet
