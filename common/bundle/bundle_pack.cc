// Packing: which files of a directory go in its bundle, and writing it.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

extern char** environ;

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

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// Runs argv, returning its standard output; the error carries its standard
// error and exit status.
absl::StatusOr<std::string> RunCapture(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", Errno(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc =
      posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Fd out_fd(out_pipe[0]), err_fd(err_pipe[0]);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", argv[0], ": ", Errno(rc)));
  }
  // git writes little to stderr, so reading stdout to its end first cannot
  // fill the stderr pipe.
  std::string out, err;
  char buf[65536];
  for (ssize_t n; (n = ::read(out_fd.fd, buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  for (ssize_t n; (n = ::read(err_fd.fd, buf, sizeof(buf))) > 0;)
    err.append(buf, static_cast<size_t>(n));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(absl::StrJoin(argv, " "),
                     " failed: ", absl::StripAsciiWhitespace(err)));
  }
  return out;
}

// The directory holding `dir`'s git repository marker, if any up the tree.
bool InGitWorkTree(const fs::path& dir) {
  std::error_code ec;
  for (fs::path p = fs::absolute(dir, ec); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / ".git", ec)) return true;
    if (p == p.parent_path()) break;
  }
  return false;
}

// Regular files and symlinks under `root`/`sub`, relative to `root`.
absl::Status Walk(const fs::path& root, const std::string& sub,
                  std::vector<std::string>* out) {
  std::error_code ec;
  const fs::path start = sub.empty() ? root : root / sub;
  fs::recursive_directory_iterator it(start, ec), end;
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("cannot list ", start.string(), ": ", ec.message()));
  }
  for (; it != end; it.increment(ec)) {
    if (ec) {
      return absl::InternalError(absl::StrCat(
          "cannot list ", it->path().string(), ": ", ec.message()));
    }
    const fs::file_status st = it->symlink_status(ec);
    if (fs::is_regular_file(st) || fs::is_symlink(st)) {
      out->push_back(it->path().lexically_relative(root).generic_string());
    }
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes of `path` (a regular file) into the writer.
template <typename Sink>
absl::Status CopyFileInto(const std::string& path, int64_t size, Sink& sink,
                          std::string& buf) {
  Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (in.fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", Errno(errno)));
  }
  int64_t left = size;
  while (left > 0) {
    const ssize_t n = ::read(in.fd, buf.data(),
                             static_cast<size_t>(std::min<int64_t>(
                                 left, static_cast<int64_t>(buf.size()))));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("cannot read ", path, ": ", Errno(errno)));
    }
    if (n == 0) break;
    RETURN_IF_ERROR(
        sink(absl::string_view(buf.data(), static_cast<size_t>(n))));
    left -= n;
  }
  if (left != 0) {
    return absl::AbortedError(absl::StrCat(
        path, " changed while it was packed (it got shorter); pack again"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListBundleFiles(
    const std::string& dir, const PackOptions& options) {
  std::error_code ec;
  const fs::path root = fs::path(dir);
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("cannot bundle ", dir,
                     ": it is not a directory; name the directory that holds "
                     "the files (default: the current one)"));
  }
  std::vector<std::string> files;
  if (!options.files.empty()) {
    for (const std::string& f : options.files) {
      std::string rel = fs::path(f).lexically_normal().generic_string();
      while (absl::EndsWith(rel, "/")) rel.pop_back();
      if (absl::Status s = CheckEntryPath(rel); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "files: entry '", f, "' cannot go in a bundle of ", dir, ": ",
            s.message(), "; list paths inside the spec's directory"));
      }
      const fs::file_status st = fs::symlink_status(root / rel, ec);
      if (fs::is_directory(st)) {
        RETURN_IF_ERROR(Walk(root, rel, &files));
      } else if (fs::is_regular_file(st) || fs::is_symlink(st)) {
        files.push_back(rel);
      } else {
        return absl::NotFoundError(absl::StrCat(
            "files: entry '", f, "' is not a file, symlink or directory under ",
            dir, "; fix the list"));
      }
    }
  } else if (InGitWorkTree(root)) {
    ASSIGN_OR_RETURN(std::string out,
                     RunCapture({"git", "-C", dir, "ls-files", "-co",
                                 "--exclude-standard", "-z"}));
    for (absl::string_view p : absl::StrSplit(out, '\0', absl::SkipEmpty())) {
      // Tracked files deleted from the work tree are not in it any more.
      const fs::file_status st = fs::symlink_status(root / std::string(p), ec);
      if (!fs::exists(st)) continue;
      if (fs::is_directory(st)) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir, "/", p,
                         " is a git submodule, which bundles do not follow; "
                         "list the files to send with `files:`"));
      }
      files.emplace_back(p);
    }
  } else {
    RETURN_IF_ERROR(Walk(root, "", &files));
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  std::set<std::string> symlinks;
  for (const std::string& f : files) {
    if (absl::Status s = CheckEntryPath(f); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot bundle ", dir, ": ", s.message()));
    }
    if (fs::is_symlink(fs::symlink_status(root / f, ec))) symlinks.insert(f);
  }
  if (absl::Status s = CheckNoPathUnderEntry(files); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot bundle ", dir, ": ", s.message()));
  }
  for (const std::string& link : symlinks) {
    const std::string target = fs::read_symlink(root / link, ec).string();
    if (absl::Status s = CheckSymlinkTarget(link, target, symlinks); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot bundle ", dir, ": ", s.message()));
    }
  }
  return files;
}

absl::StatusOr<BundleInfo> PackDirectory(const std::string& dir,
                                         const std::string& out_path,
                                         const PackOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> files,
                   ListBundleFiles(dir, options));
  struct Entry {
    std::string path;
    char kind;
    int64_t size;
    std::string target;
  };
  std::vector<Entry> entries;
  entries.reserve(files.size());
  // The exact size of the bundle, known before a byte is written, so that
  // the cap is checked up front.
  int64_t total = sizeof(kMagic) + 4 + 9;
  int64_t content = 0;
  for (const std::string& f : files) {
    const std::string full = absl::StrCat(dir, "/", f);
    struct stat st;
    if (::lstat(full.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat("cannot read ", full, ": ", Errno(errno)));
    }
    Entry e{f, 'F', 0, ""};
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      e.kind = 'L';
      e.target = fs::read_symlink(full, ec).string();
      e.size = static_cast<int64_t>(e.target.size());
    } else if (S_ISREG(st.st_mode)) {
      e.kind = (st.st_mode & S_IXUSR) != 0 ? 'X' : 'F';
      e.size = st.st_size;
      content += st.st_size;
    } else {
      continue;  // fifos, sockets, devices are not source
    }
    total += 1 + 4 + static_cast<int64_t>(f.size()) + 8 + e.size;
    entries.push_back(std::move(e));
  }
  if (total > options.max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("the bundle of ", dir, " would be ", HumanBytes(total),
                     " (", entries.size(), " files), over the cap of ",
                     HumanBytes(options.max_bytes), "; raise the cap with ",
                     options.cap_hint,
                     ", or send fewer files (a `files:` list in the "
                     "spec's source, or .gitignore build outputs)"));
  }
  Fd out(
      ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (out.fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot write ", out_path, ": ", Errno(errno)));
  }
  Sha256 hash;
  std::string pending;
  int64_t written = 0;
  auto emit = [&](absl::string_view data) -> absl::Status {
    hash.Update(data);
    written += static_cast<int64_t>(data.size());
    if (written > options.max_bytes) {
      return absl::AbortedError(absl::StrCat(
          "files under ", dir, " grew while they were packed, past the cap of ",
          HumanBytes(options.max_bytes), "; pack again"));
    }
    pending.append(data.data(), data.size());
    if (pending.size() >= kIoBytes) {
      RETURN_IF_ERROR(WriteAll(out.fd, pending, out_path));
      pending.clear();
    }
    return absl::OkStatus();
  };
  std::string head(kMagic, sizeof(kMagic));
  PutU32(head, kVersion);
  RETURN_IF_ERROR(emit(head));
  std::string buf(kIoBytes, '\0');
  BundleInfo info;
  for (const Entry& e : entries) {
    std::string h(1, e.kind);
    PutU32(h, static_cast<uint32_t>(e.path.size()));
    h += e.path;
    PutU64(h, static_cast<uint64_t>(e.size));
    RETURN_IF_ERROR(emit(h));
    if (e.kind == 'L') {
      RETURN_IF_ERROR(emit(e.target));
    } else {
      RETURN_IF_ERROR(
          CopyFileInto(absl::StrCat(dir, "/", e.path), e.size, emit, buf));
    }
  }
  std::string tail(1, 'E');
  PutU64(tail, entries.size());
  RETURN_IF_ERROR(emit(tail));
  RETURN_IF_ERROR(WriteAll(out.fd, pending, out_path));
  info.digest = hash.HexDigest();
  info.size_bytes = written;
  info.files = static_cast<int64_t>(entries.size());
  info.content_bytes = content;
  return info;
}

}  // namespace benchfleet
