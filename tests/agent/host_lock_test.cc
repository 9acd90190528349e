// HostLock: one agent per host. The lock is an flock(2), so a second lock from
// another descriptor (in this process or another) is refused while the first
// is held, and the kernel releases it with the descriptor.
#include "agent/lease/host_lock.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

std::string TempLockPath(const std::string& name) {
  std::string dir = ::testing::TempDir() + "host_lock_XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return "";
  return absl::StrCat(dir, "/", name);
}

TEST(HostLockTest, SecondLockOnTheSameFileIsRefusedNamingPathAndHolder) {
  const std::string path = TempLockPath("agent.lock");
  ASSERT_FALSE(path.empty());
  auto first = HostLock::Acquire(path);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->path(), path);

  auto second = HostLock::Acquire(path);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat(path, " is locked by pid ", getpid())));
  EXPECT_THAT(second.status().message(),
              HasSubstr("another benchfleet agent already runs on this host"));
}

TEST(HostLockTest, WritesTheHoldersPidIntoTheFile) {
  const std::string path = TempLockPath("agent.lock");
  auto lock = HostLock::Acquire(path);
  ASSERT_TRUE(lock.ok()) << lock.status();
  std::ifstream in(path);
  std::string pid;
  std::getline(in, pid);
  EXPECT_EQ(pid, absl::StrCat(getpid()));
}

TEST(HostLockTest, IsReleasedOnDestruction) {
  const std::string path = TempLockPath("agent.lock");
  {
    auto first = HostLock::Acquire(path);
    ASSERT_TRUE(first.ok()) << first.status();
    ASSERT_FALSE(HostLock::Acquire(path).ok());
  }
  auto again = HostLock::Acquire(path);
  EXPECT_TRUE(again.ok()) << again.status();
  // The file stays (removing it would race with a new agent opening it).
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(HostLockTest, AnUnopenableFileFailsWithPathAndAdvice) {
  const std::string path = TempLockPath("no/such/dir/agent.lock");
  auto lock = HostLock::Acquire(path);
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(lock.status().message(), HasSubstr(path));
  EXPECT_THAT(lock.status().message(), HasSubstr("--lock-file"));
}

// Runs HostLock::Acquire in a forked child and returns its exit status: 0 when
// it got the lock, 1 when it was refused because another process holds it, 2
// otherwise.
int AcquireInChild(const std::string& path) {
  const pid_t pid = fork();
  if (pid == 0) {
    auto lock = HostLock::Acquire(path);
    if (lock.ok()) _exit(0);
    _exit(lock.status().code() == absl::StatusCode::kFailedPrecondition ? 1
                                                                        : 2);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

TEST(HostLockTest, WorksAcrossProcesses) {
  const std::string path = TempLockPath("agent.lock");
  {
    auto lock = HostLock::Acquire(path);
    ASSERT_TRUE(lock.ok()) << lock.status();
    EXPECT_EQ(AcquireInChild(path), 1) << "another process took a held lock";
  }
  EXPECT_EQ(AcquireInChild(path), 0) << "the released lock was not free";
  // The child exited holding the lock: the kernel released it with the
  // process.
  EXPECT_TRUE(HostLock::Acquire(path).ok());
}

}  // namespace
}  // namespace benchfleet
