// Finding and killing every process a job started, including the ones that
// left its process group or session (DESIGN.md §7, "no orphans").
//
// Three layers, used by PosixProcessRunner at the end of every run and by the
// agent at start-up:
// - the job cookie: every job's environment carries
//   BENCHFLEET_JOB=<job>@<agent pid>.<agent start ticks>.<serial>, so its
//   processes can be found in /proc/*/environ even after the agent died
//   (the technique of Jenkins' ProcessTreeKiller);
// - the child subreaper: the agent is PR_SET_CHILD_SUBREAPER, so a job's
//   process whose parent dies is re-parented to the agent, not to init, and
//   every live descendant of a job stays below the agent;
// - a cgroup v2 per job where the host allows it (JobCgroup): killed as a
//   whole at the end of the step.
// And a small record file (JobRecord) written before the spawn, so that an
// agent restarted after a SIGKILL finds what its previous instance left
// (SweepLeftoverJobs).
//
// Everything reads /proc and /sys under a configurable root, so tests can use
// a fake tree; the kill functions act on real pids.
//
// Thread-safety: all free functions are thread-safe. JobCgroup is not
// thread-safe (one per run).
#ifndef BENCHFLEET_AGENT_RUNNER_JOB_TREE_H_
#define BENCHFLEET_AGENT_RUNNER_JOB_TREE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace benchfleet {

// The environment variable that marks every process of a job.
inline constexpr char kJobCookieVar[] = "BENCHFLEET_JOB";

// What /proc/<pid>/stat says about a process.
struct ProcStat {
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
  char state = '?';          // 'Z' for a zombie
  uint64_t start_ticks = 0;  // field 22: clock ticks after boot
  std::string comm;
};

// nullopt when the process does not exist (or its stat cannot be parsed).
std::optional<ProcStat> ReadProcStat(const std::string& proc_root, pid_t pid);

// The value of BENCHFLEET_JOB in the process's initial environment; nullopt
// when it has none or the environ cannot be read (a zombie, or not ours to
// read).
std::optional<std::string> ReadJobCookie(const std::string& proc_root,
                                         pid_t pid);

// The command line, arguments separated by spaces, at most ~200 bytes; the
// stat's comm in brackets when there is none.
std::string ReadCommandLine(const std::string& proc_root, pid_t pid);

// CLOCK_BOOTTIME in clock ticks (the unit of ProcStat::start_ticks).
uint64_t BootTicksNow();

// The pids of the processes whose parent is `pid` (any of its threads), from
// /proc/<pid>/task/*/children. Empty when none or unreadable.
std::vector<pid_t> ChildrenOf(const std::string& proc_root, pid_t pid);

// Cookie values. `job` names the job ("<agent id>/<attempt>/<seq>"); the
// owner (agent pid and start) and a serial make the value unique on the host
// even across agent restarts.
std::string MakeJobCookie(absl::string_view job, pid_t owner_pid,
                          uint64_t owner_start_ticks, uint64_t serial);
struct CookieOwner {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  uint64_t serial = 0;
};
std::optional<CookieOwner> ParseCookieOwner(absl::string_view cookie);
// True when the process that made the cookie is still running (same pid and
// start time).
bool CookieOwnerAlive(const std::string& proc_root, const CookieOwner& owner);

// Makes this process a child subreaper (prctl). Returns false on failure
// (kernels before 3.4).
bool BecomeChildSubreaper();

// One process killed by a sweep.
struct KilledProcess {
  pid_t pid = 0;
  std::string command;
};

// A cgroup v2 directory for one job. Created before the spawn; the child
// writes its own pid to procs_fd() before exec, so the job runs inside it
// from its first instruction.
struct CgroupOptions {
  // Where cgroup2 is mounted; tests point this at a fake tree.
  std::string root = "/sys/fs/cgroup";
  // Where to read the agent's own cgroup ("0::/path").
  std::string self_cgroup_file = "/proc/self/cgroup";
  // The parent of the job cgroups, relative to `root` ("" = the agent's own
  // cgroup). Limits need a parent with the memory/pids controllers
  // delegated and no processes of its own (cgroup v2's no-internal-processes
  // rule).
  std::string parent;
  int64_t memory_max_bytes = 0;  // memory.max; 0 = none
  int64_t pids_max = 0;          // pids.max; 0 = none
};

// Parses a size for a cgroup limit: a whole number with an optional K, M, G
// or T suffix (powers of 1024). "" leaves *out unchanged; false on anything
// else.
bool ParseByteSize(const std::string& text, int64_t* out);

class JobCgroup {
 public:
  // The directory under which job cgroups go, when cgroup v2 is mounted at
  // options.root (cgroup.controllers exists) and that directory is writable
  // by us; nullopt otherwise.
  static std::optional<std::string> Parent(const CgroupOptions& options);
  // Creates <parent>/<name> and applies the limits. Fails (with a message
  // naming the file) when the directory or a limit cannot be written.
  static absl::StatusOr<std::unique_ptr<JobCgroup>> Create(
      const std::string& parent, const std::string& name,
      const CgroupOptions& options);
  ~JobCgroup();  // closes procs_fd; KillAndRemove is the caller's job
  JobCgroup(const JobCgroup&) = delete;
  JobCgroup& operator=(const JobCgroup&) = delete;

  const std::string& path() const { return path_; }
  // cgroup.procs opened O_WRONLY|O_CLOEXEC.
  int procs_fd() const { return procs_fd_; }

  // Kills every process in the cgroup (cgroup.kill; where it is missing:
  // freeze, SIGKILL each pid of cgroup.procs, thaw), waits until it is empty
  // or `timeout` passed, and removes the directory. OK when it is gone (or
  // never existed); an error naming the cgroup otherwise.
  static absl::Status KillAndRemove(const std::string& path,
                                    absl::Duration timeout);

 private:
  JobCgroup(std::string path, int procs_fd)
      : path_(std::move(path)), procs_fd_(procs_fd) {}
  std::string path_;
  int procs_fd_ = -1;
};

// Kills what is left of one job after its leader was reaped, and reaps what
// of it is this process's child. Looks at:
// - this process's children (the subreaper collects a job's orphans there)
//   that carry `cookie`, or that `spare` does not claim, started at or after
//   `started_ticks` and are outside this process's own process group (a
//   child the agent's own code started stays in it; a job's processes never
//   are, unless one joins it on purpose and drops the cookie, which only a
//   cgroup catches): SIGKILLed with their own process group, reaped, and
//   looked at again (their orphans come to us next);
// - when something escaped that way, or `scan_all` is set: every process on
//   the host whose environment carries exactly `cookie`.
// Until nothing is left or `timeout` passed (processes stuck in the kernel).
struct LeftoverSweep {
  std::string proc_root = "/proc";
  std::string cookie;  // the job's BENCHFLEET_JOB value
  uint64_t started_ticks = 0;
  // The job's own process group (= the leader's pid), already SIGKILLed as
  // a whole: its members are reaped here but not reported as leftovers.
  pid_t leader_pgid = 0;
  bool scan_all = false;
  absl::Duration timeout = absl::Seconds(5);
  // Returns true for a child that belongs to another run still in flight
  // (its leader, or a process with that run's cookie). May be empty.
  std::function<bool(pid_t pid, const std::optional<std::string>& cookie)>
      spare;
};
struct LeftoverResult {
  // Signalled here: alive when found and outside the leader's group.
  std::vector<KilledProcess> killed;
  std::vector<pid_t> survivors;  // still alive at the timeout
};
LeftoverResult KillJobLeftovers(const LeftoverSweep& sweep);

// The running job, recorded in the agent's data directory before the spawn so
// that a restarted agent can find what a SIGKILLed one left.
struct JobRecord {
  pid_t agent_pid = 0;
  uint64_t agent_start_ticks = 0;
  std::string cookie;
  std::string cgroup;    // "" = none
  pid_t leader_pid = 0;  // 0 = not recorded (the run ended before it was due)
  uint64_t leader_start_ticks = 0;
};
std::string FormatJobRecord(const JobRecord& record);
// Accepts a record cut short by a crash (missing lines stay default).
JobRecord ParseJobRecord(absl::string_view text);
// Where the agent keeps the record of its running job.
std::string JobRecordPath(const std::string& agent_workdir);

// What an agent finds at start-up (SweepLeftoverJobs).
struct StartupSweep {
  std::string proc_root = "/proc";
  std::string record_path;    // "" = none
  std::string cookie_prefix;  // "<agent id>/": cookies of this agent's jobs
  absl::Duration timeout = absl::Seconds(10);
};
struct StartupSweepResult {
  std::vector<KilledProcess> killed;
  std::vector<pid_t> survivors;
  std::string cgroup_removed;  // the recorded cgroup, when it was killed
  std::string cgroup_error;    // when killing/removing it failed
  bool had_record = false;
};
// Kills every process that carries a cookie starting with `cookie_prefix`
// whose agent is no longer running, the leader and the cgroup of the record
// (unless its agent is still running), and removes the record. Jobs of a
// live agent (another instance with the same id, a test's) are left alone.
StartupSweepResult SweepLeftoverJobs(const StartupSweep& sweep);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_RUNNER_JOB_TREE_H_
