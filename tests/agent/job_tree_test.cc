// Tests of "no orphans" (agent/runner/job_tree.h) with real processes and the
// real /proc: what a job leaves after its process group is killed, at the end
// of a run (normal exit, timeout, cancel), and after an agent died (the
// start-up sweep); and the cgroup v2 layer against a fake tree.
#include "agent/runner/job_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/runner/process_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Generous: a loaded CI host may take a while to run a kill; the tests wait
// on a condition and return as soon as it holds.
constexpr absl::Duration kDeadline = absl::Seconds(30);

RunRequest Shell(const std::string& command) {
  RunRequest r;
  r.argv = ShellArgv(command);
  r.env = {"PATH=/usr/bin:/bin"};
  return r;
}

std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/job_tree_test_XXXXXX";
  EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Live (not zombie) processes whose environment carries `cookie`.
std::vector<pid_t> LiveWithCookie(const std::string& cookie) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = readdir(d)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    const std::optional<std::string> c = ReadJobCookie("/proc", pid);
    if (!c.has_value() || *c != cookie) continue;
    const std::optional<ProcStat> st = ReadProcStat("/proc", pid);
    if (st.has_value() && st->state != 'Z') out.push_back(pid);
  }
  closedir(d);
  return out;
}

// Polls until no live process carries `cookie`, up to `timeout`.
bool NoneLeftWithCookie(const std::string& cookie, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (LiveWithCookie(cookie).empty()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

bool Gone(pid_t pid) {
  const std::optional<ProcStat> st = ReadProcStat("/proc", pid);
  return !st.has_value() || st->state == 'Z';
}

bool WaitGone(pid_t pid, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Gone(pid)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// Waits until `path` holds a pid (written by a job), returns it.
pid_t WaitForPidFile(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int pid = 0;
    const std::string text = ReadFile(path);
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) && pid > 0)
      return pid;
    if (absl::Now() > deadline) return -1;
    absl::SleepFor(absl::Milliseconds(5));
  }
}

std::string FirstLine(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

TEST(JobTreeTest, DaemonThatLeftTheSessionIsGoneWhenTheRunReturns) {
  PosixProcessRunner runner;
  // The issue's reproducer, as is: whether the daemon had left the group by
  // the time the group was killed or not, nothing of the job is left.
  auto plain = runner.Run(Shell("echo $BENCHFLEET_JOB; setsid -f sleep 30"));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(NoneLeftWithCookie(FirstLine(plain->stdout_head), kDeadline));
  // And one that surely left before the leader exits.
  RunRequest req = Shell(
      "echo $BENCHFLEET_JOB; setsid -f sh -c 'echo $$ > d.pid; exec sleep 30';"
      " while [ ! -s d.pid ]; do sleep 0.01; done");
  req.cwd = MakeTempDir();
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  const std::string cookie = FirstLine(r->stdout_head);
  ASSERT_FALSE(cookie.empty());
  EXPECT_TRUE(NoneLeftWithCookie(cookie, kDeadline))
      << "left: " << LiveWithCookie(cookie).size();
  ASSERT_EQ(r->leftovers.size(), 1u);
  EXPECT_THAT(r->leftovers[0], HasSubstr("sleep"));
  EXPECT_TRUE(r->capture_error.empty()) << r->capture_error;
}

TEST(JobTreeTest, EveryRunGetsItsOwnCookie) {
  PosixProcessRunner runner;
  RunRequest req = Shell("echo $BENCHFLEET_JOB");
  req.job = "agent-a/7/3";
  req.env.push_back("BENCHFLEET_JOB=outer");  // replaced, not duplicated
  auto a = runner.Run(req);
  auto b = runner.Run(req);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_THAT(a->stdout_head, ::testing::StartsWith("agent-a/7/3@"));
  EXPECT_NE(a->stdout_head, b->stdout_head);
  const std::optional<CookieOwner> owner =
      ParseCookieOwner(FirstLine(a->stdout_head));
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->pid, getpid());
  EXPECT_TRUE(CookieOwnerAlive("/proc", *owner));
}

TEST(JobTreeTest, DaemonWithAScrubbedEnvironmentIsGoneToo) {
  // No cookie to find: the subreaper alone brings it to the runner.
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  RunRequest req = Shell(
      "setsid -f env -i /bin/sh -c 'echo $$ > daemon.pid; exec sleep 30'; "
      "while [ ! -s daemon.pid ]; do sleep 0.01; done");
  req.cwd = dir;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  const pid_t daemon = WaitForPidFile(dir + "/daemon.pid", kDeadline);
  ASSERT_GT(daemon, 1);
  EXPECT_TRUE(WaitGone(daemon, kDeadline)) << "daemon " << daemon;
  EXPECT_FALSE(r->leftovers.empty());
}

TEST(JobTreeTest, DaemonOfADaemonIsGoneToo) {
  // `a` leaves the session and starts `b` in a session of its own; neither
  // carries the cookie. `b` becomes the runner's child only when `a` dies.
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  RunRequest req = Shell(
      R"(setsid -f env -i /bin/sh -c 'setsid /bin/sh -c "echo \$\$ > b.pid; )"
      R"(exec sleep 31" & echo $$ > a.pid; exec sleep 30'; )"
      R"(while [ ! -s a.pid ] || [ ! -s b.pid ]; do sleep 0.01; done)");
  req.cwd = dir;
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  const pid_t a = WaitForPidFile(dir + "/a.pid", kDeadline);
  const pid_t b = WaitForPidFile(dir + "/b.pid", kDeadline);
  ASSERT_GT(a, 1);
  ASSERT_GT(b, 1);
  EXPECT_TRUE(Gone(a)) << "a " << a;
  EXPECT_TRUE(Gone(b)) << "b " << b;
  EXPECT_EQ(r->leftovers.size(), 2u);
}

TEST(JobTreeTest, ChildrenTheAgentsOwnCodeStartsDuringARunAreLeftAlone) {
  // Another part of the agent's process starts a child while a job runs (a
  // test harness's database, for one): it stays in our process group and is
  // not the job's.
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  RunRequest req = Shell("while [ ! -e go ]; do sleep 0.01; done");
  req.cwd = dir;
  pid_t ours = -1;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(20));  // inside the run's window
    ours = fork();
    if (ours == 0) {
      pause();
      _exit(0);
    }
    WriteFile(dir + "/go", "");
  });
  auto r = runner.Run(req);
  starter.join();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_GT(ours, 0);
  EXPECT_FALSE(Gone(ours)) << "the sweep killed a child that was not the job's";
  EXPECT_TRUE(r->leftovers.empty());
  kill(ours, SIGKILL);
  int status;
  waitpid(ours, &status, 0);
}

TEST(JobTreeTest, TimeoutLeavesNothing) {
  PosixProcessRunner runner;
  RunRequest req =
      Shell("echo $BENCHFLEET_JOB; setsid -f sleep 30; exec sleep 30");
  req.timeout = absl::Milliseconds(300);
  auto r = runner.Run(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  const std::string cookie = FirstLine(r->stdout_head);
  ASSERT_FALSE(cookie.empty());
  EXPECT_TRUE(NoneLeftWithCookie(cookie, kDeadline));
}

TEST(JobTreeTest, CancelLeavesNothing) {
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  std::atomic<bool> cancel{false};
  RunRequest req = Shell(
      "echo $BENCHFLEET_JOB; setsid -f sleep 30; echo $$ > started; "
      "exec sleep 30");
  req.cwd = dir;
  req.cancel = &cancel;
  std::thread canceller([&] {
    WaitForPidFile(dir + "/started", kDeadline);
    cancel = true;
  });
  auto r = runner.Run(req);
  canceller.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->cancelled);
  const std::string cookie = FirstLine(r->stdout_head);
  ASSERT_FALSE(cookie.empty());
  EXPECT_TRUE(NoneLeftWithCookie(cookie, kDeadline));
}

TEST(JobTreeTest, ConcurrentRunsDoNotKillEachOther) {
  // A long run's daemon must survive another run's end-of-run sweep while
  // its own run is still going.
  const std::string dir = MakeTempDir();
  PosixProcessRunner runner;
  std::atomic<bool> cancel{false};
  RunRequest long_req = Shell(
      "setsid -f /bin/sh -c 'echo $$ > daemon.pid; exec sleep 30'; "
      "exec sleep 30");
  long_req.cwd = dir;
  long_req.cancel = &cancel;
  absl::StatusOr<RunResult> long_run;
  std::thread t([&] { long_run = runner.Run(long_req); });
  const pid_t daemon = WaitForPidFile(dir + "/daemon.pid", kDeadline);
  ASSERT_GT(daemon, 1);
  for (int i = 0; i < 5; ++i) {
    auto quick = runner.Run(Shell("setsid -f sleep 30"));
    ASSERT_TRUE(quick.ok());
  }
  EXPECT_FALSE(Gone(daemon)) << "another run's sweep killed the daemon";
  cancel = true;
  t.join();
  ASSERT_TRUE(long_run.ok()) << long_run.status();
  EXPECT_TRUE(long_run->cancelled);
  EXPECT_TRUE(WaitGone(daemon, kDeadline));
}

TEST(JobTreeTest, RecordFileLivesExactlyAsLongAsTheRun) {
  const std::string dir = MakeTempDir();
  const std::string record = dir + "/running-job";
  PosixProcessRunner runner;
  std::atomic<bool> cancel{false};
  RunRequest req = Shell("echo $$ > started; exec sleep 30");
  req.cwd = dir;
  req.cancel = &cancel;
  req.job = "agent-r/1/2";
  req.record_path = record;
  std::thread t([&] {
    const pid_t leader = WaitForPidFile(dir + "/started", kDeadline);
    // The leader's pid is added once the run has lasted 50 ms.
    const absl::Time deadline = absl::Now() + kDeadline;
    JobRecord rec;
    while (absl::Now() < deadline) {
      rec = ParseJobRecord(ReadFile(record));
      if (rec.leader_pid != 0) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_EQ(rec.agent_pid, getpid());
    EXPECT_THAT(rec.cookie, ::testing::StartsWith("agent-r/1/2@"));
    EXPECT_EQ(rec.leader_pid, leader);
    EXPECT_EQ(rec.leader_start_ticks,
              ReadProcStat("/proc", leader).value_or(ProcStat{}).start_ticks);
    cancel = true;
  });
  auto r = runner.Run(req);
  t.join();
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat st;
  EXPECT_NE(stat(record.c_str(), &st), 0) << "record left after the run";
}

// A job left by an agent that died: a detached daemon carrying a cookie whose
// owner is gone, and the record the dead agent wrote.
struct DeadAgentJob {
  std::string cookie;
  pid_t daemon = -1;
};

DeadAgentJob StartOrphanedJob(const std::string& dir, const std::string& job,
                              const std::string& record_path) {
  DeadAgentJob out;
  // An owner that existed and is gone: a child that exits at once.
  const pid_t owner = fork();
  if (owner == 0) _exit(0);
  const uint64_t owner_start =
      ReadProcStat("/proc", owner).value_or(ProcStat{}).start_ticks;
  int status;
  waitpid(owner, &status, 0);
  out.cookie = MakeJobCookie(job, owner, owner_start, 1);
  const std::string pid_file = dir + "/" + std::to_string(owner) + ".pid";
  const std::string command = absl::StrCat("BENCHFLEET_JOB='", out.cookie,
                                           "' setsid -f /bin/sh -c 'echo $$ > ",
                                           pid_file, "; exec sleep 30'");
  EXPECT_EQ(system(command.c_str()), 0);
  out.daemon = WaitForPidFile(pid_file, kDeadline);
  if (!record_path.empty()) {
    JobRecord rec;
    rec.agent_pid = owner;
    rec.agent_start_ticks = owner_start;
    rec.cookie = out.cookie;
    WriteFile(record_path, FormatJobRecord(rec));
  }
  return out;
}

TEST(JobTreeTest, StartupSweepKillsWhatADeadAgentLeftAndNamesIt) {
  const std::string dir = MakeTempDir();
  const std::string record = dir + "/running-job";
  const DeadAgentJob orphan = StartOrphanedJob(dir, "agent-s/12/4", record);
  ASSERT_GT(orphan.daemon, 1);
  // A second one of the same agent without a record: found by its prefix.
  const DeadAgentJob other = StartOrphanedJob(dir, "agent-s/11/9", "");
  ASSERT_GT(other.daemon, 1);
  // Another agent's job, and a job of a live agent with this id: spared.
  const DeadAgentJob foreign = StartOrphanedJob(dir, "agent-t/1/1", "");
  const std::string live_cookie =
      MakeJobCookie("agent-s/13/1", getpid(),
                    ReadProcStat("/proc", getpid())->start_ticks, 99);
  const std::string live_pid_file = dir + "/live.pid";
  ASSERT_EQ(system(absl::StrCat("BENCHFLEET_JOB='", live_cookie,
                                "' setsid -f /bin/sh -c 'echo $$ > ",
                                live_pid_file, "; exec sleep 30'")
                       .c_str()),
            0);
  const pid_t live = WaitForPidFile(live_pid_file, kDeadline);

  StartupSweep sweep;
  sweep.record_path = record;
  sweep.cookie_prefix = "agent-s/";
  const StartupSweepResult result = SweepLeftoverJobs(sweep);
  EXPECT_TRUE(result.had_record);
  EXPECT_THAT(result.survivors, IsEmpty());
  std::vector<pid_t> killed;
  for (const KilledProcess& k : result.killed) {
    killed.push_back(k.pid);
    EXPECT_THAT(k.command, HasSubstr("sleep"));
  }
  EXPECT_THAT(killed,
              ::testing::UnorderedElementsAre(orphan.daemon, other.daemon));
  EXPECT_TRUE(NoneLeftWithCookie(orphan.cookie, kDeadline));
  EXPECT_TRUE(NoneLeftWithCookie(other.cookie, kDeadline));
  struct stat st;
  EXPECT_NE(stat(record.c_str(), &st), 0) << "record not removed";
  EXPECT_FALSE(Gone(foreign.daemon));
  EXPECT_FALSE(Gone(live));
  kill(foreign.daemon, SIGKILL);
  kill(live, SIGKILL);
}

TEST(JobTreeTest, StartupSweepLeavesALiveAgentsRecordAlone) {
  const std::string dir = MakeTempDir();
  const std::string record = dir + "/running-job";
  JobRecord rec;
  rec.agent_pid = getppid();  // alive: the test runner's parent
  rec.agent_start_ticks =
      ReadProcStat("/proc", getppid()).value_or(ProcStat{}).start_ticks;
  rec.cookie = "x/1/1@1.1.1";
  WriteFile(record, FormatJobRecord(rec));
  StartupSweep sweep;
  sweep.record_path = record;
  sweep.cookie_prefix = "nobody-here/";
  const StartupSweepResult result = SweepLeftoverJobs(sweep);
  EXPECT_TRUE(result.had_record);
  EXPECT_THAT(result.killed, IsEmpty());
  struct stat st;
  EXPECT_EQ(stat(record.c_str(), &st), 0);
}

TEST(JobTreeTest, RecordRoundTripsAndSurvivesTruncation) {
  JobRecord rec;
  rec.agent_pid = 42;
  rec.agent_start_ticks = 777;
  rec.cookie = "a/1/2@42.777.3";
  rec.cgroup = "/sys/fs/cgroup/x/benchfleet-job-a-1-2-42-3";
  rec.leader_pid = 43;
  rec.leader_start_ticks = 780;
  const std::string text = FormatJobRecord(rec);
  const JobRecord back = ParseJobRecord(text);
  EXPECT_EQ(back.agent_pid, 42);
  EXPECT_EQ(back.agent_start_ticks, 777u);
  EXPECT_EQ(back.cookie, rec.cookie);
  EXPECT_EQ(back.cgroup, rec.cgroup);
  EXPECT_EQ(back.leader_pid, 43);
  EXPECT_EQ(back.leader_start_ticks, 780u);
  const JobRecord cut = ParseJobRecord(text.substr(0, text.find("cgroup")));
  EXPECT_EQ(cut.cookie, rec.cookie);
  EXPECT_EQ(cut.leader_pid, 0);
}

TEST(JobTreeTest, CookieOwnerParses) {
  const std::optional<CookieOwner> o =
      ParseCookieOwner(MakeJobCookie("a@b/1/2", 12, 34, 56));
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->pid, 12);
  EXPECT_EQ(o->start_ticks, 34u);
  EXPECT_EQ(o->serial, 56u);
  EXPECT_FALSE(ParseCookieOwner("no-owner").has_value());
  EXPECT_FALSE(ParseCookieOwner("a@1.2").has_value());
}

TEST(JobTreeTest, ParsesByteSizes) {
  int64_t v = -1;
  EXPECT_TRUE(ParseByteSize("", &v));
  EXPECT_EQ(v, -1);
  EXPECT_TRUE(ParseByteSize("1000", &v));
  EXPECT_EQ(v, 1000);
  EXPECT_TRUE(ParseByteSize("4G", &v));
  EXPECT_EQ(v, int64_t{4} << 30);
  EXPECT_TRUE(ParseByteSize("512M", &v));
  EXPECT_EQ(v, int64_t{512} << 20);
  EXPECT_FALSE(ParseByteSize("4X", &v));
  EXPECT_FALSE(ParseByteSize("-1", &v));
  EXPECT_FALSE(ParseByteSize("G", &v));
}

// ---- cgroup v2 against a fake tree (this host has cgroup v1 only) ----

struct FakeCgroupTree {
  std::string root;
  CgroupOptions options;
};

FakeCgroupTree MakeFakeCgroupTree() {
  FakeCgroupTree t;
  t.root = MakeTempDir();
  WriteFile(t.root + "/cgroup.controllers", "cpu memory pids\n");
  mkdir((t.root + "/agent.slice").c_str(), 0755);
  WriteFile(t.root + "/self_cgroup", "0::/agent.slice\n");
  t.options.root = t.root;
  t.options.self_cgroup_file = t.root + "/self_cgroup";
  return t;
}

TEST(JobCgroupTest, ParentIsTheAgentsOwnCgroupOrTheConfiguredOne) {
  FakeCgroupTree t = MakeFakeCgroupTree();
  EXPECT_EQ(JobCgroup::Parent(t.options), t.root + "/agent.slice");
  mkdir((t.root + "/jobs").c_str(), 0755);
  t.options.parent = "/jobs";
  EXPECT_EQ(JobCgroup::Parent(t.options), t.root + "/jobs");
  // Not cgroup v2 (no cgroup.controllers): no cgroups.
  unlink((t.root + "/cgroup.controllers").c_str());
  EXPECT_FALSE(JobCgroup::Parent(t.options).has_value());
  CgroupOptions v1;  // the real /sys/fs/cgroup of this host, if v1
  struct stat st;
  if (stat("/sys/fs/cgroup/cgroup.controllers", &st) != 0) {
    EXPECT_FALSE(JobCgroup::Parent(v1).has_value());
  }
}

TEST(JobCgroupTest, CreateWritesLimitsAndKillAndRemoveEmptiesIt) {
  FakeCgroupTree t = MakeFakeCgroupTree();
  t.options.memory_max_bytes = int64_t{1} << 30;
  t.options.pids_max = 100;
  const std::string parent = *JobCgroup::Parent(t.options);
  auto cg = JobCgroup::Create(parent, "benchfleet-job-a-1-2", t.options);
  ASSERT_TRUE(cg.ok()) << cg.status();
  const std::string path = (*cg)->path();
  EXPECT_EQ(path, parent + "/benchfleet-job-a-1-2");
  EXPECT_EQ(ReadFile(path + "/memory.max"), "1073741824");
  EXPECT_EQ(ReadFile(path + "/pids.max"), "100");
  EXPECT_THAT(ReadFile(parent + "/cgroup.subtree_control"), HasSubstr("+"));
  EXPECT_GE((*cg)->procs_fd(), 0);
  // A member that is a real process: no cgroup.kill in the fake tree, so the
  // freeze + SIGKILL-each path kills it.
  const pid_t member = fork();
  if (member == 0) {
    pause();
    _exit(0);
  }
  ASSERT_EQ(write((*cg)->procs_fd(), std::to_string(member).data(),
                  std::to_string(member).size()),
            static_cast<ssize_t>(std::to_string(member).size()));
  cg->reset();
  EXPECT_TRUE(JobCgroup::KillAndRemove(path, kDeadline).ok());
  int status = 0;
  EXPECT_EQ(waitpid(member, &status, WNOHANG), -1)
      << "KillAndRemove reaps its own children";
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "cgroup directory left";
}

TEST(JobCgroupTest, RunnerPutsTheChildInTheCgroupBeforeExec) {
  FakeCgroupTree t = MakeFakeCgroupTree();
  PosixProcessRunnerOptions options;
  options.cgroup = t.options;
  PosixProcessRunner runner(options);
  ASSERT_EQ(runner.cgroup_parent(), t.root + "/agent.slice");
  // The job reads the (fake) cgroup.procs of its own cgroup: its own pid is
  // already there when it starts.
  auto r = runner.Run(
      Shell("cat " + t.root +
            "/agent.slice/benchfleet-job-*/cgroup.procs; echo; echo $$"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stdout_head;
  const std::string out = r->stdout_head;
  const std::string first = FirstLine(out);
  const std::string second = FirstLine(out.substr(out.find('\n') + 1));
  EXPECT_EQ(first, second);
  // Removed at the end of the run.
  DIR* d = opendir((t.root + "/agent.slice").c_str());
  int jobs = 0;
  while (dirent* e = readdir(d)) {
    if (std::string(e->d_name).rfind("benchfleet-job-", 0) == 0) ++jobs;
  }
  closedir(d);
  EXPECT_EQ(jobs, 0);
}

TEST(JobCgroupTest, LimitsWithoutCgroupV2AreRefusedWithAMessage) {
  PosixProcessRunnerOptions options;
  options.cgroup.root = MakeTempDir();  // no cgroup.controllers
  options.cgroup.memory_max_bytes = 1 << 30;
  PosixProcessRunner runner(options);
  const absl::Status st = runner.CheckLimitsApply();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("cgroup_parent"));
}

}  // namespace
}  // namespace benchfleet
