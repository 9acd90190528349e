// Tests of the agent's process runner against real child processes (sh,
// coreutils and the process_runner_test_child helper). This long file (over
// 700 lines) is on purpose: one file for the runner's whole contract (spawn,
// capture, digests, deadlines, cancel, affinity); the no-orphans sweep has
// job_tree_test.cc.
#include "agent/runner/process_runner.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): declare it C
// by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;
// printf 'hello benchfleet\n' | sha256sum
constexpr char kHelloSha256[] =
    "a827582cbf0321c8502afa10952f09a8900ecc9caaa4642b227b834b4cef52f0";
// head -c 3145728 /dev/zero | sha256sum
constexpr char kZeros3MiBSha256[] =
    "bbd05cf6097ac9b1f89ea29d2542c1b7b67ee46848393895f5a9e43fa1f621e5";
// printf '' | sha256sum
constexpr char kEmptySha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

RunRequest Shell(const std::string& command) {
  RunRequest r;
  r.argv = ShellArgv(command);
  r.env = {"PATH=/usr/bin:/bin"};
  return r;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh directory under the test temp dir.
std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/runner_test_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

int CountOpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own fd
}

// Waits (up to `timeout`) until process `pid` has exited: it no longer exists,
// or it is a zombie waiting for whoever inherited it. Uses a pidfd, which
// becomes readable at exit.
bool WaitExited(pid_t pid, absl::Duration timeout) {
  const int fd = pidfd_open(pid, 0);
  if (fd < 0) return errno == ESRCH;
  pollfd p = {fd, POLLIN, 0};
  const int r =
      poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  close(fd);
  return r == 1;
}

pid_t FirstLineAsPid(const std::string& text) {
  int pid = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text.substr(0, text.find('\n')), &pid)) << text;
  return pid;
}

TEST(ProcessRunnerTest, ReportsExitCodes) {
  PosixProcessRunner runner;
  for (int code : {0, 1, 3, 255}) {
    auto r = runner.Run(Shell(absl::StrCat("exit ", code)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, code);
    EXPECT_EQ(r->term_signal, 0);
    EXPECT_FALSE(r->timed_out);
    EXPECT_GT(r->wall_ns, 0);
  }
}

TEST(ProcessRunnerTest, ReportsSignalDeath) {
  PosixProcessRunner runner;
  auto r = runner.Run(Shell("kill -TERM $$"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->term_signal, SIGTERM);
  EXPECT_FALSE(r->timed_out);
}

TEST(ProcessRunnerTest, ChildGetsDefaultSignalDispositions) {
  // A non-interactive sh cannot un-ignore a signal ignored on entry, so the
  // child dies of SIGINT only if the runner reset the disposition the agent
  // had.
  struct sigaction old;
  struct sigaction ign = {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGINT, &ign, &old), 0);
  PosixProcessRunner runner;
  auto r = runner.Run(Shell("kill -INT $$; exit 7"));
  sigaction(SIGINT, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->term_signal, SIGINT);
}

TEST(ProcessRunnerTest, TimeoutKillsProcessAndGrandchildren) {
  PosixProcessRunner runner;
  RunRequest req = Shell("sleep 100 & echo $!; sleep 100");
  req.timeout = absl::Milliseconds(300);
  const absl::Time before = absl::Now();
  auto r = runner.Run(req);
  const absl::Duration took = absl::Now() - before;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGKILL);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_GE(r->wall_ns, absl::ToInt64Nanoseconds(absl::Milliseconds(300)));
  // Killed, not left to run its 100 s: the bound is generous so that a loaded
  // machine (ctest -j) cannot break it, and still far below the sleep.
  EXPECT_LT(took, absl::Seconds(50));
  const pid_t grandchild = FirstLineAsPid(r->stdout_head);
  ASSERT_GT(grandchild, 1);
  EXPECT_TRUE(WaitExited(grandchild, absl::Seconds(5)))
      << "grandchild " << grandchild;
}

TEST(ProcessRunnerTest, DeadlineKeepsItsMicroseconds) {
  // A 6.6 ms deadline stops the process at 6.6 ms, never at 6 ms: a bound that
  // is truncated to whole milliseconds kills identical programs.
  PosixProcessRunner runner;
  RunRequest req = Shell("sleep 5");
  req.timeout = absl::Microseconds(6600);
  for (int i = 0; i < 5; ++i) {
    auto r = runner.Run(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->timed_out);
    EXPECT_GE(r->wall_ns, 6'600'000) << "stopped before its deadline";
    // Stopped by the deadline, not by the end of `sleep 5` (generous: other
    // tests may share the cores; timed_out above says who stopped it).
    EXPECT_LT(r->wall_ns, 2'500'000'000);
  }
}

TEST(ProcessRunnerTest, CancelFlagSetBeforehandKillsAtOnce) {
  PosixProcessRunner runner;
  const std::atomic<bool> cancel{true};
  RunRequest req = Shell("sleep 100");
  req.cancel = &cancel;
  const absl::Time before = absl::Now();
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  // Killed, not left to run its 100 s (generous for a loaded machine).
  EXPECT_LT(absl::Now() - before, absl::Seconds(50));
  EXPECT_TRUE(r->cancelled);
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGKILL);
}

TEST(ProcessRunnerTest, CancelWhileRunningKillsTheGroup) {
  // The child signals on a fifo that it (and a grandchild) are running; the
  // test thread then sets the flag. The run must end within the poll period.
  const std::string dir = MakeTempDir();
  const std::string fifo = dir + "/started";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  PosixProcessRunner runner;
  std::atomic<bool> cancel{false};
  RunRequest req = Shell("sleep 100 & echo $!; echo > started; sleep 100");
  req.cwd = dir;
  req.cancel = &cancel;
  absl::Time cancelled_at;
  std::thread canceller([&] {
    std::ifstream started(fifo);  // blocks until the child opens it to write
    std::string line;
    std::getline(started, line);
    cancelled_at = absl::Now();
    cancel.store(true);
  });
  auto r = runner.Run(req);
  const absl::Time returned_at = absl::Now();
  // If the child never got to the fifo, release the canceller (no reader left
  // otherwise, so this open fails harmlessly).
  if (const int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK); fd >= 0) {
    (void)!write(fd, "\n", 1);
    close(fd);
  }
  canceller.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->cancelled);
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGKILL);
  // Killed, not left to run its 100 s (generous for a loaded machine).
  EXPECT_LT(returned_at - cancelled_at, absl::Seconds(50));
  const pid_t grandchild = FirstLineAsPid(r->stdout_head);
  ASSERT_GT(grandchild, 1);
  EXPECT_TRUE(WaitExited(grandchild, absl::Seconds(5)));
}

TEST(ProcessRunnerTest, FinishesBeforeTimeoutWithoutFlag) {
  PosixProcessRunner runner;
  RunRequest req = Shell("exit 0");
  req.timeout = absl::Seconds(30);
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 0);
}

TEST(ProcessRunnerTest, KillsStrayChildrenAfterLeaderExits) {
  // A long drain grace, so that a loaded machine cannot make the bound below
  // fail: without the group kill the drain would wait all of it (and report
  // "stdout still open" in capture_error).
  PosixProcessRunnerOptions options;
  options.drain_grace = absl::Seconds(60);
  PosixProcessRunner runner(options);
  // The background sleep keeps stdout open: without the group kill, the drain
  // would wait out the grace.
  const absl::Time before = absl::Now();
  auto r = runner.Run(Shell("sleep 100 & echo $!"));
  const absl::Duration took = absl::Now() - before;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_FALSE(r->timed_out);
  EXPECT_TRUE(r->capture_error.empty()) << r->capture_error;
  EXPECT_LT(took, absl::Seconds(30));  // well under the 60 s drain grace
  const pid_t stray = FirstLineAsPid(r->stdout_head);
  ASSERT_GT(stray, 1);
  EXPECT_TRUE(WaitExited(stray, absl::Seconds(5))) << "stray " << stray;
}

TEST(ProcessRunnerTest, ProcessThatEscapedTheGroupIsKilledBeforeTheDrain) {
  // It used to keep stdout open until the drain grace ran out (and kept
  // running); now the end-of-run sweep (agent/runner/job_tree.h) kills it,
  // so the drain ends at once and the capture is whole.
  PosixProcessRunnerOptions options;
  options.drain_grace = absl::Seconds(60);
  PosixProcessRunner runner(options);
  // The escapee reports its pid on our stdout (which it keeps) once it has left
  // the group; the leader waits for that on a fifo so the group kill cannot
  // catch it before it escaped.
  RunRequest req = Shell(
      "mkfifo escaped; setsid sh -c 'echo $$; echo > escaped; exec sleep 100' "
      "& read x < escaped");
  req.cwd = MakeTempDir();
  const absl::Time before = absl::Now();
  auto r = runner.Run(req);
  const absl::Duration took = absl::Now() - before;
  ASSERT_TRUE(r.ok()) << r.status();
  const pid_t escaped = FirstLineAsPid(r->stdout_head);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_LT(took, absl::Seconds(30));  // well under the 60 s drain grace
  EXPECT_TRUE(r->capture_error.empty()) << r->capture_error;
  ASSERT_GT(escaped, 1);
  EXPECT_TRUE(WaitExited(escaped, absl::Seconds(30))) << "escapee " << escaped;
  ASSERT_EQ(r->leftovers.size(), 1u);
  EXPECT_THAT(r->leftovers[0], HasSubstr("sleep"));
}

TEST(ProcessRunnerTest, StdoutDigestCoversKnownText) {
  PosixProcessRunner runner;
  auto r = runner.Run(Shell("printf 'hello benchfleet\\n'"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_sha256, kHelloSha256);
  EXPECT_EQ(r->stdout_bytes, 17);
  EXPECT_EQ(r->stdout_head, "hello benchfleet\n");
  EXPECT_FALSE(r->stdout_truncated);
  EXPECT_EQ(r->stderr_sha256, kEmptySha256);
  EXPECT_EQ(r->stderr_bytes, 0);
  EXPECT_EQ(Sha256Hex("hello benchfleet\n"), kHelloSha256);
}

TEST(ProcessRunnerTest, TruncatesCaptureButDigestsFullStream) {
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  RunRequest req = Shell("head -c 3145728 /dev/zero");
  req.stdout_path = dir + "/out";
  req.max_capture_bytes = kMiB;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_bytes, 3 * kMiB);
  EXPECT_EQ(r->stdout_sha256, kZeros3MiBSha256);
  EXPECT_TRUE(r->stdout_truncated);
  EXPECT_FALSE(r->stderr_truncated);
  EXPECT_EQ(r->stdout_head, std::string(64 * 1024, '\0'));
  struct stat st;
  ASSERT_EQ(stat(req.stdout_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, kMiB);
}

TEST(ProcessRunnerTest, HeadIsBoundedByMaxCapture) {
  PosixProcessRunner runner;
  RunRequest req = Shell("printf 'hello benchfleet\\n'");
  req.max_capture_bytes = 5;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_head, "hello");
  EXPECT_TRUE(r->stdout_truncated);
  EXPECT_EQ(r->stdout_sha256, kHelloSha256);
}

TEST(ProcessRunnerTest, CaptureWriteFailureKeepsTheMeasurement) {
  PosixProcessRunner runner;
  RunRequest req = Shell("printf 'hello benchfleet\\n'");
  req.stdout_path = "/dev/full";  // every write fails with ENOSPC
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_sha256, kHelloSha256);
  EXPECT_EQ(r->stdout_bytes, 17);
  EXPECT_TRUE(r->stdout_truncated);
  EXPECT_THAT(r->capture_error, HasSubstr("/dev/full"));
}

TEST(ProcessRunnerTest, CapturesStderrSeparately) {
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  RunRequest req = Shell("echo out; echo err >&2; echo out2");
  req.stdout_path = dir + "/stdout";
  req.stderr_path = dir + "/stderr";
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReadFile(req.stdout_path), "out\nout2\n");
  EXPECT_EQ(ReadFile(req.stderr_path), "err\n");
  EXPECT_EQ(r->stdout_sha256, Sha256Hex("out\nout2\n"));
  EXPECT_EQ(r->stderr_sha256, Sha256Hex("err\n"));
  EXPECT_EQ(r->stderr_bytes, 4);
  EXPECT_EQ(r->stdout_head, "out\nout2\n");
}

TEST(ProcessRunnerTest, WorksWhenTheAgentClosedItsStandardStreams) {
  // A detached agent may run with 0..2 closed; then /dev/null and the pipes
  // would land there and the child's dup2s onto 0..2 could clobber each other.
  const int saved[3] = {dup(0), dup(1), dup(2)};
  for (int fd = 0; fd < 3; ++fd) close(fd);
  absl::StatusOr<RunResult> r;
  {
    PosixProcessRunner runner;
    r = runner.Run(Shell("cat; echo out; echo err >&2"));
  }
  for (int fd = 0; fd < 3; ++fd) {
    dup2(saved[fd], fd);
    close(saved[fd]);
  }
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_head, "out\n");
  EXPECT_EQ(r->stderr_sha256, Sha256Hex("err\n"));
}

TEST(ProcessRunnerTest, StdinIsDevNull) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"cat"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.timeout = absl::Seconds(10);
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_bytes, 0);
}

TEST(ProcessRunnerTest, PassesEnvironmentExactly) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"/usr/bin/env"};
  req.env = {"A=1", "B=two words", "EMPTY="};
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  // Plus the job's cookie (agent/runner/job_tree.h), last.
  EXPECT_THAT(
      r->stdout_head,
      ::testing::MatchesRegex("A=1\nB=two words\nEMPTY=\n"
                              "BENCHFLEET_JOB=run@[0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

TEST(ProcessRunnerTest, LooksUpProgramInPathOfRequestEnv) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"env"};
  req.env = {"PATH=/nonexistent:/usr/bin", "X=y"};
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->stdout_head,
              ::testing::StartsWith("PATH=/nonexistent:/usr/bin\nX=y\n"
                                    "BENCHFLEET_JOB="));

  req.env = {"X=y"};  // no PATH: the default /bin:/usr/bin
  r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->stdout_head, ::testing::StartsWith("X=y\nBENCHFLEET_JOB="));

  req.env = {"PATH=/nonexistent"};
  r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
}

TEST(ProcessRunnerTest, HonoursCwd) {
  const std::string dir = MakeTempDir();
  char real[PATH_MAX];
  ASSERT_NE(realpath(dir.c_str(), real), nullptr);
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"pwd", "-P"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.cwd = dir;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_head, absl::StrCat(real, "\n"));
}

TEST(ProcessRunnerTest, HonoursCwdChangesBetweenRuns) {
  // Consecutive runs on one thread get the same fd numbers; the spawn set-up
  // they share must still follow each run's own cwd.
  const std::string a = MakeTempDir(), b = MakeTempDir();
  char real_a[PATH_MAX], real_b[PATH_MAX], here[PATH_MAX];
  ASSERT_NE(realpath(a.c_str(), real_a), nullptr);
  ASSERT_NE(realpath(b.c_str(), real_b), nullptr);
  ASSERT_NE(getcwd(here, sizeof here), nullptr);
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"/bin/pwd", "-P"};
  for (const auto& [cwd, want] :
       std::vector<std::pair<std::string, std::string>>{
           {a, real_a}, {a, real_a}, {b, real_b}, {"", here}, {a, real_a}}) {
    req.cwd = cwd;
    auto r = runner.Run(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_head, want + "\n") << "cwd '" << cwd << "'";
  }
}

TEST(ProcessRunnerTest, RelativeProgramPathResolvesInCwd) {
  const std::string dir = MakeTempDir();
  {
    std::ofstream script(dir + "/hello.sh");
    script << "#!/bin/sh\necho relative\n";
  }
  ASSERT_EQ(chmod((dir + "/hello.sh").c_str(), 0755), 0);
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"./hello.sh"};
  req.cwd = dir;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_head, "relative\n");
}

TEST(ProcessRunnerTest, MissingProgramIsAnErrorNamingIt) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {"no-such-benchmark-xyz"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.cwd = "/tmp";
  auto r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("no-such-benchmark-xyz"));
  EXPECT_THAT(r.status().message(), HasSubstr("/tmp"));

  req.argv = {"/nonexistent/dir/bench"};
  r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/dir/bench"));
}

TEST(ProcessRunnerTest, NonExecutableProgramIsPermissionDenied) {
  const std::string dir = MakeTempDir();
  { std::ofstream(dir + "/data") << "not a program\n"; }
  ASSERT_EQ(chmod((dir + "/data").c_str(), 0644), 0);
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {dir + "/data"};
  auto r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr(dir + "/data"));
}

TEST(ProcessRunnerTest, BadCwdIsAnError) {
  PosixProcessRunner runner;
  RunRequest req = Shell("true");
  req.cwd = "/nonexistent/work/dir";
  auto r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/work/dir"));
  EXPECT_THAT(r.status().message(), HasSubstr("/bin/sh"));

  req.cwd = "/etc/passwd";
  r = runner.Run(req);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
}

TEST(ProcessRunnerTest, BadRequestsAreErrors) {
  PosixProcessRunner runner;
  EXPECT_EQ(runner.Run(RunRequest{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  RunRequest req = Shell("true");
  req.stdout_path = "/nonexistent/dir/out";
  EXPECT_FALSE(runner.Run(req).ok());
  req = Shell("true");
  req.cpus = {-1};
  EXPECT_EQ(runner.Run(req).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ProcessRunnerTest, MeasuresUserTimeOfCpuBoundChild) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {BF_TEST_CHILD, "spin", "200"};
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_GT(r->user_ns, absl::ToInt64Nanoseconds(absl::Milliseconds(100)));
  EXPECT_GE(r->wall_ns, r->user_ns / 2);
  EXPECT_GE(r->sys_ns, 0);
}

TEST(ProcessRunnerTest, MeasuresPeakRss) {
  PosixProcessRunner runner;
  RunRequest req;
  req.argv = {BF_TEST_CHILD, "alloc", "64"};
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_GE(r->max_rss_bytes, 60 * kMiB);
  EXPECT_LT(r->max_rss_bytes, 1024 * kMiB);
}

TEST(ProcessRunnerTest, AppliesCpuAffinityAndRestoresCaller) {
  cpu_set_t mine;
  ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
  int last = -1;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &mine)) last = c;
  }
  ASSERT_GE(last, 0);
  PosixProcessRunner runner;
  RunRequest req = Shell("grep Cpus_allowed_list /proc/self/status");
  req.cpus = {last};
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_head, absl::StrCat("Cpus_allowed_list:\t", last, "\n"));
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(0, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&mine, &after));
}

TEST(ProcessRunnerTest, ExtractsMetrics) {
  const std::string text =
      "warmup done\n"
      "throughput: 123.5 Mgas/s\n"
      "latency_ms=7e-1\n"
      "errors: many\n";
  const auto metrics = ExtractMetrics(
      text, {{"mgas_per_s", R"(throughput: ([0-9.]+) Mgas/s)"},
             {"latency_ms", R"(^latency_ms=(\S+)$)"},
             {"errors", R"(errors: (\w+))"},            // not a number
             {"missing", R"(absent: (\d+))"},           // no match
             {"no_group", R"(throughput)"},             // no capture group
             {"invalid", R"(throughput: ([0-9.]+)"}});  // bad regex
  EXPECT_EQ(metrics.size(), 2u);
  EXPECT_DOUBLE_EQ(metrics.at("mgas_per_s"), 123.5);
  EXPECT_DOUBLE_EQ(metrics.at("latency_ms"), 0.7);
}

TEST(ProcessRunnerTest, HashesFiles) {
  const std::string dir = MakeTempDir();
  { std::ofstream(dir + "/f") << "hello benchfleet\n"; }
  auto h = Sha256File(dir + "/f");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, kHelloSha256);
  { std::ofstream(dir + "/empty"); }
  EXPECT_EQ(*Sha256File(dir + "/empty"), kEmptySha256);
  EXPECT_EQ(Sha256File(dir + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ProcessRunnerTest, ShellArgvUsesBinSh) {
  EXPECT_EQ(ShellArgv("echo hi"),
            (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
}

TEST(ProcessRunnerTest, LeaksNoFdsOrZombies) {
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  const int before = CountOpenFds();
  for (int i = 0; i < 50; ++i) {
    RunRequest req;
    switch (i % 5) {
      case 0:
        req = Shell("echo hi; echo there >&2");
        req.stdout_path = dir + "/out";
        req.stderr_path = dir + "/err";
        break;
      case 1:
        req = Shell("exit 4");
        break;
      case 2:
        req = Shell("sleep 100");
        req.timeout = absl::Milliseconds(1);
        break;
      case 3:
        req.argv = {"no-such-program"};
        break;
      case 4:
        req = Shell("true");
        req.cwd = "/nonexistent";
        break;
    }
    (void)runner.Run(req);
  }
  EXPECT_EQ(CountOpenFds(), before);
  int status;
  EXPECT_EQ(waitpid(-1, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST(ProcessRunnerTest, RunsConcurrentlyFromSeveralThreads) {
  PosixProcessRunner runner;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&runner, &failures, t] {
      for (int i = 0; i < 20; ++i) {
        const std::string token = absl::StrCat("t", t, "-", i);
        RunRequest req =
            Shell(absl::StrCat("echo ", token, "; echo ", token, " >&2"));
        if (i % 5 == 0) req.argv = {BF_TEST_CHILD, "spin", "5"};
        auto r = runner.Run(req);
        const bool ok =
            r.ok() && r->exit_code == 0 &&
            (i % 5 == 0 || (r->stdout_head == token + "\n" &&
                            r->stderr_sha256 == Sha256Hex(token + "\n")));
        if (!ok) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ProcessRunnerTest, ConcurrentLongRunDoesNotHoldOtherRunsPipes) {
  // If a pipe end leaked into the long child spawned on another thread, the
  // short runs would not see EOF until it ended.
  // The long run lasts until the test cancels it, so every short run overlaps
  // it: a leaked pipe end would hold a short run until the long one ended,
  // i.e. past the cancellation below. No wall-clock bound is needed.
  PosixProcessRunner runner;
  std::atomic<bool> long_done{false};
  std::atomic<bool> cancel_long{false};
  RunRequest long_req = Shell("exec sleep 100");
  long_req.cancel = &cancel_long;
  std::thread long_run([&runner, &long_done, &long_req] {
    (void)runner.Run(long_req);
    long_done.store(true);
  });
  int runs = 0;
  int overlapped = 0;
  for (; runs < 20; ++runs) {
    auto r = runner.Run(Shell("echo quick"));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_head, "quick\n");
    if (!long_done.load()) ++overlapped;
  }
  cancel_long.store(true);
  long_run.join();
  EXPECT_EQ(overlapped, runs) << "a short run waited for the long one";
}

}  // namespace
}  // namespace benchfleet
