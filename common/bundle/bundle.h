// Source bundles (issue 11): a directory packed into one file, named by the
// SHA-256 of its bytes, so that the CLI uploads a tree once and agents fetch
// it by digest. Used by the CLI (`benchfleet bundle push`, `submit --bundle`),
// the controller's BundleStore and the agent's BundleCache. Stateless apart
// from the files it is told to read and write; thread-safe.
//
// The format is our own and small, so that nothing but these two functions
// needs to understand it (all integers little-endian):
//   "BFBUNDLE" u32 version=1
//   entries, paths in strictly increasing byte order (no duplicates):
//     u8 kind   'F' file, 'X' executable file, 'L' symlink
//     u32 n     path length, 1..4096; then n bytes of relative path
//     u64 size  file: content length; symlink: target length (1..4096)
//     size bytes
//   u8 'E' u64 entry_count
// Nothing else: no owners, times or permission bits beyond "executable",
// so the same tree always gives the same bytes and the same digest.
// Directories are implied by the paths; empty directories are not kept.
#ifndef BENCHFLEET_COMMON_BUNDLE_BUNDLE_H_
#define BENCHFLEET_COMMON_BUNDLE_BUNDLE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace benchfleet {

// The default cap on a bundle's size (issue 11): 256 MiB.
inline constexpr int64_t kDefaultMaxBundleBytes = int64_t{256} << 20;
// Pieces of a bundle on the wire (UploadBundle, FetchBundle): at most 1 MiB.
inline constexpr int64_t kBundleChunkBytes = int64_t{1} << 20;

// What was packed or unpacked.
struct BundleInfo {
  std::string digest;         // SHA-256 of the bundle file, 64 lowercase hex
  int64_t size_bytes = 0;     // the bundle file's size
  int64_t files = 0;          // entries (files and symlinks)
  int64_t content_bytes = 0;  // sum of the files' sizes
};

struct PackOptions {
  // Paths relative to the directory (a directory stands for every file under
  // it). Empty: the git-tracked and untracked-not-ignored files when the
  // directory is in a git work tree, else every regular file and symlink.
  std::vector<std::string> files;
  // A bundle larger than this is refused, naming its size and this cap.
  int64_t max_bytes = kDefaultMaxBundleBytes;
  // How to raise the cap, for the error message ("--bundle-max-size").
  std::string cap_hint = "--bundle-max-size";
};

// The relative paths PackDirectory would pack from `dir`, sorted. Errors name
// the directory and the path (a symlink out of the tree, a path with "..",
// a file that is missing from an explicit list, git failing).
absl::StatusOr<std::vector<std::string>> ListBundleFiles(
    const std::string& dir, const PackOptions& options);

// Packs `dir` into `out_path` (created or truncated). FailedPrecondition when
// the bundle would exceed options.max_bytes (the message gives both sizes and
// how to raise the cap or list fewer files); InvalidArgument for paths that
// cannot go in a bundle; Internal/NotFound for I/O, naming the file.
absl::StatusOr<BundleInfo> PackDirectory(const std::string& dir,
                                         const std::string& out_path,
                                         const PackOptions& options);

struct UnpackOptions {
  // When set, the bundle's SHA-256 must equal it (else DataLoss, and nothing
  // is left at the destination).
  std::string expected_digest;
  // A bundle file larger than this is refused before anything is written.
  int64_t max_bytes = kDefaultMaxBundleBytes;
};

// Unpacks `bundle_path` into `dest_dir`, which must not exist yet (its parent
// must). The entries are written into a temporary sibling that is renamed to
// `dest_dir` only once every check passed; on any error nothing is left.
// Refuses (InvalidArgument, naming the entry): absolute paths, "." or ".."
// components, duplicates or unsorted paths, a path under a file or a symlink,
// symlinks with absolute targets or targets that leave the tree or go through
// another symlink, unknown entry kinds (devices, fifos), truncated or trailing
// data; DataLoss on a digest mismatch.
absl::StatusOr<BundleInfo> UnpackBundle(const std::string& bundle_path,
                                        const std::string& dest_dir,
                                        const UnpackOptions& options);

// True for 64 lowercase hex characters.
bool IsValidBundleDigest(absl::string_view digest);
// InvalidArgument saying what a digest looks like, when it is not one.
absl::Status CheckBundleDigest(absl::string_view digest);

// Incremental SHA-256 (OpenSSL). Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Lowercase hex; the hasher may not be used afterwards.
  std::string HexDigest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// SHA-256 of a whole file (lowercase hex); NotFound/Internal naming it.
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

// "12.3 MiB": sizes in messages.
std::string HumanBytes(int64_t bytes);

}  // namespace benchfleet

#endif  // BENCHFLEET_COMMON_BUNDLE_BUNDLE_H_
