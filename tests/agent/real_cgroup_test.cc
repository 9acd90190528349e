// cgroup v2 for real (agent/runner/job_tree.h, JobCgroup): under the host's
// own cgroup2 mount (BF_CGROUP2_ROOT, default /sys/fs/cgroup/unified as on a
// hybrid host, else /sys/fs/cgroup), in a parent cgroup the test creates and
// removes: a job whose daemons leave its process group, its session and its
// cookie (env -i setsid -f) is killed as a whole at the end of its run and
// its cgroup removed; JobCgroup::KillAndRemove empties a cgroup of several
// escaped processes. Needs root and a writable cgroup2; skipped saying which
// is missing otherwise. job_tree_test covers the same logic on a fake tree.
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "agent/runner/job_tree.h"
#include "agent/runner/process_runner.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Alive(pid_t pid) {
  const std::string stat = Read(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z';
}

std::vector<pid_t> PidsIn(const std::string& text) {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    int pid = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &pid))
      pids.push_back(pid);
  }
  return pids;
}

class RealCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create cgroups";
    const char* env = std::getenv("BF_CGROUP2_ROOT");
    if (env != nullptr && env[0] != '\0') {
      root_ = env;
    } else {
      root_ =
          std::filesystem::exists("/sys/fs/cgroup/unified/cgroup.controllers")
              ? "/sys/fs/cgroup/unified"
              : "/sys/fs/cgroup";
    }
    if (!std::filesystem::exists(root_ + "/cgroup.controllers"))
      GTEST_SKIP() << "no cgroup2 mounted at " << root_
                   << " (set BF_CGROUP2_ROOT to where it is)";
    name_ = absl::StrCat("benchfleet-test-", getpid());
    parent_ = root_ + "/" + name_;
    if (mkdir(parent_.c_str(), 0755) != 0) {
      GTEST_SKIP() << "cgroup2 at " << root_
                   << " is not writable here: " << strerror(errno);
    }
    char tmpl[] = "/tmp/real_cgroup_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    // Whatever a failed test left: kill it all, then remove the cgroups.
    if (!parent_.empty() && std::filesystem::exists(parent_)) {
      std::error_code ec;
      for (const auto& entry :
           std::filesystem::directory_iterator(parent_, ec)) {
        if (entry.is_directory())
          (void)JobCgroup::KillAndRemove(entry.path(), absl::Seconds(5));
      }
      rmdir(parent_.c_str());
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Job cgroups left under the test's parent.
  std::vector<std::string> Children() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(parent_, ec))
      if (entry.is_directory()) out.push_back(entry.path());
    return out;
  }

  std::string root_, name_, parent_, dir_;
};

TEST_F(RealCgroupTest, JobWhoseDaemonDropsItsGroupAndCookieIsKilledWhole) {
  PosixProcessRunnerOptions options;
  options.cgroup.root = root_;
  options.cgroup.parent = name_;
  PosixProcessRunner runner(options);
  ASSERT_EQ(runner.cgroup_parent(), parent_);

  // The daemon leaves the process group and the session and drops the
  // environment (with it the job cookie); the leader returns at once.
  const std::string pid_file = dir_ + "/daemon.pid";
  const std::string cgroup_file = dir_ + "/cgroup";
  RunRequest req;
  req.argv = ShellArgv(
      absl::StrCat("cat /proc/self/cgroup > ", cgroup_file,
                   "; env -i /usr/bin/setsid -f /bin/sh -c 'echo $$ > ",
                   pid_file, "; exec sleep 3081'; while [ ! -s ", pid_file,
                   " ]; do sleep 0.01; done"));
  req.env = {"PATH=/usr/bin:/bin"};
  req.cwd = dir_;
  req.timeout = absl::Seconds(30);
  absl::StatusOr<RunResult> result = runner.Run(req);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);

  // The job ran in its own cgroup under ours, on the real hierarchy.
  EXPECT_NE(Read(cgroup_file).find("0::/" + name_ + "/benchfleet-job-"),
            std::string::npos)
      << Read(cgroup_file);
  int daemon = 0;
  ASSERT_TRUE(
      absl::SimpleAtoi(absl::StripAsciiWhitespace(Read(pid_file)), &daemon));
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while (Alive(daemon) && absl::Now() < until)
    absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(Alive(daemon)) << "the daemon outlived its run";
  EXPECT_TRUE(Children().empty()) << "the job's cgroup was left behind";
}

TEST_F(RealCgroupTest, KillAndRemoveEmptiesACgroupOfEscapedProcesses) {
  CgroupOptions options;
  options.root = root_;
  options.parent = name_;
  absl::StatusOr<std::unique_ptr<JobCgroup>> cgroup =
      JobCgroup::Create(parent_, "escapees", options);
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  const std::string path = (*cgroup)->path();
  const int procs_fd = (*cgroup)->procs_fd();
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Joins the cgroup before exec, as the runner's children do.
    const std::string self = std::to_string(getpid());
    if (write(procs_fd, self.data(), self.size()) < 0) _exit(126);
    execl("/bin/sh", "sh", "-c",
          "setsid -f sleep 3082; setsid -f sleep 3083; exec sleep 3084",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Settled once the three sleeps are all that is left: setsid -f forks a
  // short-lived intermediate, and the shell is there until its exec, so a
  // read in between may list four processes or a non-sleep among three.
  auto settled = [](const std::vector<pid_t>& pids) {
    if (pids.size() != 3) return false;
    for (pid_t pid : pids) {
      if (absl::StripAsciiWhitespace(
              Read(absl::StrCat("/proc/", pid, "/comm"))) != "sleep")
        return false;
    }
    return true;
  };
  std::vector<pid_t> pids;
  const absl::Time until = absl::Now() + absl::Seconds(10);
  while (!settled(pids) && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
    pids = PidsIn(Read(path + "/cgroup.procs"));
  }
  ASSERT_TRUE(settled(pids)) << Read(path + "/cgroup.procs");
  cgroup->reset();  // closes procs_fd; the cgroup stays

  EXPECT_TRUE(JobCgroup::KillAndRemove(path, absl::Seconds(10)).ok());
  // Reaped here unless the kill already let something else reap it; its
  // death is checked with the others (a zombie counts as dead).
  int status = 0;
  waitpid(child, &status, WNOHANG);
  for (pid_t pid : pids) {
    const absl::Time gone_by = absl::Now() + absl::Seconds(5);
    while (Alive(pid) && absl::Now() < gone_by)
      absl::SleepFor(absl::Milliseconds(10));
    EXPECT_FALSE(Alive(pid)) << pid;
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace benchfleet
