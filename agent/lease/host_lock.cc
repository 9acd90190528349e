#include "agent/lease/host_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace benchfleet {

std::string HostLock::DefaultPath() {
  if (access("/run/lock", W_OK) == 0) return "/run/lock/benchfleet-agent.lock";
  const char* tmp = std::getenv("TMPDIR");
  return absl::StrCat(tmp != nullptr && tmp[0] == '/' ? tmp : "/tmp",
                      "/benchfleet-agent.lock");
}

absl::StatusOr<std::unique_ptr<HostLock>> HostLock::Acquire(
    const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot open the host lock file ", path, ": ", std::strerror(errno),
        "; choose another with --lock-file"));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    if (err == EWOULDBLOCK) {
      std::string holder =
          n > 0 ? std::string(absl::StripAsciiWhitespace(std::string(buf, n)))
                : "unknown";
      return absl::FailedPreconditionError(absl::StrCat(
          "another benchfleet agent already runs on this host: ", path,
          " is locked by pid ", holder,
          "; stop that agent first (two agents on one host would corrupt each "
          "other's "
          "measurements)"));
    }
    return absl::InternalError(
        absl::StrCat("cannot lock ", path, ": ", std::strerror(err)));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // The lock itself is held; the pid is only informative.
  }
  return std::unique_ptr<HostLock>(new HostLock(path, fd));
}

HostLock::~HostLock() {
  // Closing the descriptor releases the flock. The file stays: removing it
  // would race with a new agent that already opened it.
  close(fd_);
}

}  // namespace benchfleet
