// The agent's timing instrument: runs one benchmark process to completion and
// measures it.
//
// No orphans (agent/runner/job_tree.h): every run's environment carries a
// unique BENCHFLEET_JOB cookie, the runner makes its process a child
// subreaper, and when the run ends everything the job started is killed and
// reaped, including processes that left its process group or session; where
// cgroup v2 is writable each run gets its own cgroup, killed as a whole.
// Optionally the job runs as another user (PosixProcessRunnerOptions::
// job_user). Those two need a child that does work before exec, so they use a
// vfork-style clone; without them the spawn is posix_spawn as before.
//
// `ProcessRunner` is the role the agent's step executor depends on;
// `PosixProcessRunner` is the real implementation (posix_spawn into a fresh
// process group, CLOCK_MONOTONIC around spawn -> exit, rusage from wait4,
// stdout/stderr drained into bounded capture files while a SHA-256 digest
// covers the full streams, the whole process group SIGKILLed at the deadline
// and after the leader exits). Tests use a fake ProcessRunner or the real one
// against real child processes.
//
// Thread-safety: PosixProcessRunner is thread-safe; Run may be called from
// several threads at once (each call owns its pipes, files and digests; all
// descriptors are close-on-exec so a concurrent spawn never inherits another
// run's pipe). The free functions are thread-safe.
#ifndef BENCHFLEET_AGENT_RUNNER_PROCESS_RUNNER_H_
#define BENCHFLEET_AGENT_RUNNER_PROCESS_RUNNER_H_

#include <spawn.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/runner/job_tree.h"
#include "agent/runner/job_user.h"

namespace benchfleet {

// What to run and how. A plain value; the runner only reads it.
struct RunRequest {
  // argv[0] is looked up in the PATH of `env` when it contains no '/'
  // ("/bin:/usr/bin" when `env` has no PATH); the child still sees argv[0] as
  // given. A program path containing '/' is used as is (relative to `cwd` when
  // relative). Must not be empty.
  std::vector<std::string> argv;
  // Working directory of the child; must be an existing directory. "" = the
  // agent's own cwd.
  std::string cwd;
  // The child's complete environment, "KEY=VALUE" each, plus the job's
  // BENCHFLEET_JOB cookie (which replaces one given here). Nothing is
  // inherited from the agent.
  std::vector<std::string> env;
  // Measured from just before the spawn. At the deadline the whole process
  // group is SIGKILLed.
  absl::Duration timeout = absl::InfiniteDuration();
  // Capture files for the streams, created/truncated (mode 0644). "" = not
  // kept; the stream is still drained and hashed.
  std::string stdout_path, stderr_path;
  // Bytes kept per stream (in the file and for `stdout_head`); the digest and
  // byte counts still cover everything the child wrote.
  int64_t max_capture_bytes = 1 << 20;
  // Optional CPU affinity of the child (CPU numbers). Applied without a race:
  // the calling thread takes this affinity for the duration of the spawn, so
  // the child inherits it from its first instruction, and then gets its own
  // affinity back. Must be a subset of the CPUs the agent may use.
  std::vector<int> cpus;
  // Optional: once it reads true, the whole process group is SIGKILLed (the
  // flag is looked at every 50 ms while the child runs) and the result has
  // `cancelled` set. The agent uses it when its lease is dropped. Must outlive
  // Run().
  const std::atomic<bool>* cancel = nullptr;
  // Names the job in its BENCHFLEET_JOB cookie ("<agent id>/<attempt>/<seq>");
  // "" = "run". The runner appends what makes the cookie unique.
  std::string job;
  // When set, the running job is recorded in this file (JobRecord) before the
  // spawn and the file is removed when everything of the job is gone, so a
  // restarted agent can find what a SIGKILLed one left (SweepLeftoverJobs).
  std::string record_path;
};

// What was measured. `exit_code`/`term_signal`/`timed_out` say how the process
// ended.
struct RunResult {
  int64_t wall_ns =
      0;  // CLOCK_MONOTONIC, just before spawn -> the leader's exit observed
  int64_t user_ns = 0,
          sys_ns = 0;  // from wait4 rusage (the leader and its reaped children)
  int64_t max_rss_bytes = 0;  // ru_maxrss * 1024
  int exit_code = -1;         // -1 when killed by a signal
  int term_signal = 0;     // the signal that killed the leader, 0 if it exited
  bool timed_out = false;  // the deadline passed and the group was SIGKILLed
  bool cancelled =
      false;  // RunRequest::cancel was set and the group was SIGKILLed
  std::string stdout_sha256,
      stderr_sha256;  // lowercase hex of the FULL streams
  int64_t stdout_bytes = 0, stderr_bytes = 0;  // full sizes
  // True when the stream was longer than max_capture_bytes (or the capture file
  // failed), i.e. the capture file holds less than the stream.
  bool stdout_truncated = false, stderr_truncated = false;
  // The first min(64 KiB, max_capture_bytes, stdout_bytes) bytes of stdout, for
  // metric regexes and messages.
  std::string stdout_head;
  // Non-empty when writing a capture file failed (e.g. disk full); the run
  // itself is still measured and the digests still cover the full streams.
  std::string capture_error;
  // Processes of the job still alive after its process group was killed
  // (they had left the group: a daemon, setsid), killed at the end of the
  // run: "<pid> <command line>" each.
  std::vector<std::string> leftovers;
};

// Role interface: runs one process to completion.
class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;

  // Runs `request` to completion (or to its deadline or cancellation). Returns
  // an error status, whose message names the program and cwd, only when the
  // process could not be started: program not found (NotFound) or not
  // executable (PermissionDenied), cwd missing or not a directory
  // (NotFound/InvalidArgument), a bad request (InvalidArgument), or a system
  // resource failure (Internal/ResourceExhausted). A program that runs and
  // fails, crashes, times out or is cancelled is an OK RunResult.
  virtual absl::StatusOr<RunResult> Run(const RunRequest& request) = 0;
};

struct PosixProcessRunnerOptions {
  // After the leader exits (or is killed at the deadline) its process group is
  // SIGKILLed and the pipes are drained to EOF. A process that left the group
  // (setsid) but kept the pipes open cannot be found that way; the drain gives
  // up on it after this long.
  absl::Duration drain_grace = absl::Seconds(1);
  // Run jobs as this user (setgroups, setresgid, setresuid in the child
  // before exec); empty name = as the agent's own user. Needs root.
  JobUser job_user;
  // A cgroup v2 per run under this configuration, when cgroup v2 is mounted
  // and the parent is writable (JobCgroup::Parent); otherwise the cookie and
  // the subreaper alone.
  bool use_cgroups = true;
  CgroupOptions cgroup;
  // How long the end-of-run sweep may wait for killed processes to go.
  absl::Duration kill_timeout = absl::Seconds(5);
};

// The real runner. See the file comment for the mechanism. Thread-safe.
class PosixProcessRunner : public ProcessRunner {
 public:
  explicit PosixProcessRunner(PosixProcessRunnerOptions options = {});
  ~PosixProcessRunner() override;
  PosixProcessRunner(const PosixProcessRunner&) = delete;
  PosixProcessRunner& operator=(const PosixProcessRunner&) = delete;

  absl::StatusOr<RunResult> Run(const RunRequest& request) override;

  // Where job cgroups are created ("" = no cgroups on this host).
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  // False when this process could not become a child subreaper (then every
  // run also scans /proc for its cookie).
  bool subreaper() const { return subreaper_; }
  // FailedPrecondition when job limits (memory/pids) are configured but no
  // cgroup v2 is writable here, saying what to do; OK otherwise.
  absl::Status CheckLimitsApply() const;

 private:
  // Spawns with a vfork-style clone: for a user switch or a cgroup.
  // Returns 0 or an errno; `stage` says which step of the child failed.
  int CloneSpawn(char* stack_top, const char* program, char* const* argv,
                 char* const* envp, const std::string& cwd, int out_w,
                 int err_w, int cgroup_fd, pid_t* pid, int* stage);

  const PosixProcessRunnerOptions options_;
  std::string cgroup_parent_;
  bool subreaper_ = false;
  pid_t self_pid_ = 0;
  uint64_t self_start_ticks_ = 0;
  // Process group, signal mask and dispositions of every child; set in the
  // constructor, read-only afterwards (posix_spawn takes it const).
  posix_spawnattr_t spawn_attr_;
  // /dev/null opened read-only, the children's stdin; -1 if it could not be
  // opened (each spawn then opens it itself).
  int devnull_fd_ = -1;
  // SHA-256 implementation fetched once (OpenSSL 3 EVP_MD_fetch), so a run does
  // not pay the implicit provider lookup. Immutable after construction; shared
  // read-only by all threads.
  // An EVP_MD*, opaque here to keep OpenSSL out of the header.
  const void* sha256_md_ = nullptr;
  bool sha256_md_owned_ = false;
};

// Lowercase hex SHA-256 of a file's contents (for `compare: file:<path>`).
// NotFound if the file does not exist, another error if it cannot be read.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

// Applies each (name, regex) to `text`; the regex's first capture group is the
// value. Regexes are RE2 (linear time on untrusted output), searched anywhere
// in `text`, with ^ and $ matching at line boundaries. Returns name -> value
// for the regexes that matched and whose group parses fully as a double. An
// invalid regex is skipped (the spec loader is where regexes get validated).
std::map<std::string, double> ExtractMetrics(
    std::string_view text,
    const std::vector<std::pair<std::string, std::string>>& name_regex);

// argv that runs `command` with the POSIX shell: {"/bin/sh", "-c", command}.
std::vector<std::string> ShellArgv(const std::string& command);

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_RUNNER_PROCESS_RUNNER_H_
