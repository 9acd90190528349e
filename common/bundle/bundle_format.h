// The bundle format's shared parts (common/bundle/bundle.h describes the
// format): its constants and the path and symlink rules that packing and
// unpacking both apply, so that nothing the packer writes is refused by the
// unpacker and nothing the unpacker accepts escapes. Internal to
// common/bundle/. Stateless; thread-safe.
#ifndef BENCHFLEET_COMMON_BUNDLE_BUNDLE_FORMAT_H_
#define BENCHFLEET_COMMON_BUNDLE_BUNDLE_FORMAT_H_

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace benchfleet::bundle_internal {

inline constexpr char kMagic[8] = {'B', 'F', 'B', 'U', 'N', 'D', 'L', 'E'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr int64_t kMaxEntries = int64_t{1} << 20;
inline constexpr size_t kIoBytes = size_t{1} << 20;

std::string Errno(int err);

// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// A relative path as bundles hold it: components separated by single '/',
// none empty, "." or "..", no NUL, not absolute, at most kMaxPathBytes.
absl::Status CheckEntryPath(absl::string_view path);

// A symlink at `link` pointing to `target` must stay inside the tree: a
// relative target, resolved lexically from the link's directory, that never
// climbs above the root and never goes through another symlink of the bundle
// (whose own target would make the lexical answer wrong). Its final component
// may be a symlink: that one is checked on its own.
absl::Status CheckSymlinkTarget(const std::string& link,
                                absl::string_view target,
                                const std::set<std::string>& symlinks);

// Every path's proper prefixes must be directories: none may be a file or a
// symlink of the bundle.
absl::Status CheckNoPathUnderEntry(const std::vector<std::string>& sorted);

// Writes all of `data` to `fd`; errors name `path`.
absl::Status WriteAll(int fd, absl::string_view data, const std::string& path);

}  // namespace benchfleet::bundle_internal

#endif  // BENCHFLEET_COMMON_BUNDLE_BUNDLE_FORMAT_H_
