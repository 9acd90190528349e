// HostLock: the OS-level guarantee that one benchfleet agent runs per host. It
// holds an exclusive flock(2) on a lock file (and writes its pid there) for its
// lifetime; a second agent's Acquire fails with a message naming the file and
// the holder's pid. The kernel drops the lock if the process dies.
// Thread-compatible.
#ifndef BENCHFLEET_AGENT_LEASE_HOST_LOCK_H_
#define BENCHFLEET_AGENT_LEASE_HOST_LOCK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace benchfleet {

class HostLock {
 public:
  // Fails with FailedPrecondition when another process holds the lock, or with
  // the errno text when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<HostLock>> Acquire(
      const std::string& path);
  ~HostLock();
  HostLock(const HostLock&) = delete;
  HostLock& operator=(const HostLock&) = delete;

  const std::string& path() const { return path_; }
  // The default lock path: /run/lock/benchfleet-agent.lock when writable, else
  // $TMPDIR (or /tmp)/benchfleet-agent.lock.
  static std::string DefaultPath();

 private:
  HostLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_LEASE_HOST_LOCK_H_
