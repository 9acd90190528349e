// Test helpers that start the real benchfleet binaries: long-running daemons
// (controller, agent) and one-shot commands with captured output. Not
// thread-safe.
#ifndef BENCHFLEET_TESTS_TESTING_SUBPROCESS_H_
#define BENCHFLEET_TESTS_TESTING_SUBPROCESS_H_

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace benchfleet::testing {

// A free TCP port on 127.0.0.1 (bound and released; another process could take
// it first, which on a test machine does not happen in practice).
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Starts argv with stdout appended to `out_path` and stderr to `err_path` (both
// to `out_path` when `err_path` is empty); returns the pid (or -1).
inline pid_t Spawn(const std::vector<std::string>& argv,
                   const std::string& out_path,
                   const std::string& err_path = "") {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (err_path.empty()) {
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0)
    pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for `pid` up to `timeout`; returns its exit status (128+signal if
// killed), or -1 on timeout (the process is left running).
inline int WaitFor(pid_t pid, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (absl::Now() > until) return -1;
    absl::SleepFor(
        absl::Milliseconds(10));  // polling a child; there is no fd to wait on
  }
}

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
  std::string all() const { return out + err; }
};

inline CommandResult RunCommand(const std::vector<std::string>& argv,
                                const std::string& log_dir,
                                absl::Duration timeout = absl::Minutes(3)) {
  static int counter = 0;
  const std::string log = log_dir + "/cmd-" + std::to_string(++counter);
  CommandResult r;
  const pid_t pid = Spawn(argv, log + ".out", log + ".err");
  if (pid < 0) return r;
  r.exit_code = WaitFor(pid, timeout);
  if (r.exit_code == -1) {
    kill(pid, SIGKILL);
    WaitFor(pid, absl::Seconds(5));
  }
  r.out = ReadFile(log + ".out");
  r.err = ReadFile(log + ".err");
  return r;
}

// A daemon that is stopped (SIGTERM, then SIGKILL) when it goes out of scope.
class Daemon {
 public:
  Daemon(const std::vector<std::string>& argv, std::string log_path)
      : log_path_(std::move(log_path)), pid_(Spawn(argv, log_path_)) {}
  ~Daemon() { Stop(); }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // Returns the exit status (see WaitFor).
  int Stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    exit_code_ = WaitFor(pid_, absl::Seconds(10));
    if (exit_code_ == -1) {
      kill(pid_, SIGKILL);
      exit_code_ = WaitFor(pid_, absl::Seconds(10));
    }
    pid_ = -1;
    return exit_code_;
  }

 private:
  std::string log_path_;
  pid_t pid_;
  int exit_code_ = -1;
};

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_SUBPROCESS_H_
