#include "common/git/git_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace benchfleet {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (absl::StartsWith(*e, "GIT_TERMINAL_PROMPT=") ||
        absl::StartsWith(*e, "GIT_ASKPASS=") ||
        absl::StartsWith(*e, "SSH_ASKPASS=") ||
        // A caller's GIT_DIR or GIT_WORK_TREE would redirect every command.
        absl::StartsWith(*e, "GIT_DIR=") ||
        absl::StartsWith(*e, "GIT_WORK_TREE=") ||
        absl::StartsWith(*e, "GIT_INDEX_FILE="))
      continue;
    env.emplace_back(*e);
  }
  env.emplace_back("GIT_TERMINAL_PROMPT=0");
  env.emplace_back("GIT_ASKPASS=/bin/false");
  env.emplace_back("SSH_ASKPASS=/bin/false");
  return env;
}

}  // namespace

std::string GitResult::Describe(const GitRequest& request) const {
  std::string what = absl::StrCat("git ", absl::StrJoin(request.args, " "));
  if (timed_out) {
    return absl::StrCat(what, ": still running after ",
                        absl::FormatDuration(request.timeout), "; killed");
  }
  std::string tail(absl::StripAsciiWhitespace(err));
  if (tail.size() > 600) tail = "..." + tail.substr(tail.size() - 600);
  return absl::StrCat(what, ": exit ", exit_code,
                      tail.empty() ? "" : absl::StrCat(": ", tail));
}

absl::StatusOr<GitResult> RunGit(const GitRequest& request) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "cannot run git: pipe");
  }
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    return absl::ErrnoToStatus(errno, "cannot run git: pipe");
  }
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);

  std::vector<std::string> argv_s = {"git"};
  argv_s.insert(argv_s.end(), request.args.begin(), request.args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = ChildEnvironment();
  std::vector<char*> envp;
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.get(), 2);
  if (!request.cwd.empty())
    posix_spawn_file_actions_addchdir_np(&fa, request.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so that a timeout kills git's helpers too
  // (git-remote-https, ssh, pack-objects).
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = 0;
  const int rc =
      posix_spawnp(&pid, "git", &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  out_w.Reset();
  err_w.Reset();
  if (rc != 0) {
    return absl::ErrnoToStatus(
        rc, absl::StrCat(
                "cannot run git (is it installed and on PATH?)",
                request.cwd.empty() ? "" : absl::StrCat(" in ", request.cwd)));
  }

  GitResult result;
  const absl::Time deadline = absl::Now() + request.timeout;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    pollfd fds[2];
    int n = 0;
    if (out_open) fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_open) fds[n++] = {err_r.get(), POLLIN, 0};
    const int ready = poll(fds, n,
                           static_cast<int>(std::min<int64_t>(
                               absl::ToInt64Milliseconds(left) + 1, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (fds[i].revents == 0) continue;
      const bool is_out = fds[i].fd == out_r.get();
      const ssize_t got = read(fds[i].fd, buf, sizeof(buf));
      if (got <= 0) {
        (is_out ? out_open : err_open) = false;
        continue;
      }
      std::string& into = is_out ? result.out : result.err;
      if (into.size() < request.max_output_bytes) {
        into.append(buf,
                    std::min<size_t>(static_cast<size_t>(got),
                                     request.max_output_bytes - into.size()));
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!result.timed_out && WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  }
  return result;
}

bool IsFullCommitId(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace benchfleet
