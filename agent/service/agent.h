// Agent: the per-host instrument. It holds the host lock, dials the controller
// (reconnecting with backoff), registers the host, heartbeats, accepts one
// lease at a time and runs the steps of that lease one process at a time
// through a ProcessRunner, sending each result until the controller
// acknowledges it (results are resent after a reconnect; the controller
// de-duplicates by (attempt, step)). It never decides verdicts.
//
// The controller keeps a window of step orders at the agent, so the next run
// starts as soon as the current one ends; it revokes orders of a variant it
// aborted (the agent drops them, or stops the one running, and sends no
// result). When the host's gates cannot be met within max_wait before a step,
// the agent reports the step "host not ready" (no result of the user's
// command) and drops the lease's other orders.
//
// When it accepts a lease it first records the attempt's environment (governor,
// turbo, GPUs, toolchain versions, the work directory's commit; see
// agent/service/environment.h) on the same worker thread that runs steps, and
// sends it with the acceptance, so that those commands never overlap a step.
//
// Orders that can make it run or place something (leases, step orders) are
// opened once, as they are read, before anything acts on them
// (common/order_signing.h): with a controller public key, only orders signed
// by that key for this stream are acted upon; any other is refused (no
// process is spawned), logged with the controller's address and the reason,
// and answered (a declined lease, or a "host not ready" step result) whose
// reason names the signature.
//
// An agent cut off from its controller for longer than the lease timeout kills
// its running step and drops the lease (checked on every heartbeat and
// reconnect tick against the injected Clock).
//
// Parts: this class owns the threads (the session's reader and heartbeat, the
// worker) and the reconnect loop; the lease bookkeeping and the cut-off rule
// are LeaseState (pure, agent/service/lease_state.h); the stream goes through
// a ControllerLink (agent/service/controller_link.h, replaceable in tests);
// one step's gates, sampling, run and result are StepExecutor
// (agent/service/step_executor.h); proto <-> model conversion is in
// agent/service/agent_convert.h.
//
// Thread-safe: Run() blocks; Shutdown() may be called from any thread.
#ifndef BENCHFLEET_AGENT_SERVICE_AGENT_H_
#define BENCHFLEET_AGENT_SERVICE_AGENT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/runner/process_runner.h"
#include "agent/service/environment.h"
#include "common/clock.h"
#include "common/credentials.h"

namespace benchfleet {

class BundleFetcher;   // agent/bundle/bundle_cache.h
class ControllerLink;  // agent/service/controller_link.h

struct AgentOptions {
  std::string controller = "127.0.0.1:7070";
  std::string id;  // default: the hostname
  std::map<std::string, std::string> labels;
  std::string workdir;    // capture files live here; default: <data dir>/agent
  std::string lock_file;  // default: HostLock::DefaultPath()
  TransportOptions transport;
  // Signed orders (DESIGN.md §7): the controller's public key, a PEM Ed25519
  // file (its signing.pub). Set: every lease and step order must arrive signed
  // with it, or it is refused and nothing runs. Empty: orders are run
  // unverified, which Create allows only when `controller` is a loopback
  // address (local mode, the quickstart) or `insecure` is set.
  std::string controller_public_key_file;
  // Accept a non-loopback controller without controller_public_key_file.
  bool insecure = false;
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  absl::Duration heartbeat_interval =
      absl::Seconds(2);  // until the controller says otherwise
  absl::Duration lease_timeout = absl::Seconds(15);  // likewise

  // Host probing (DESIGN.md §5). Samples are taken this often while a run
  // executes; zero disables sampling (and flagging).
  absl::Duration sample_interval = absl::Milliseconds(100);
  std::string probe_root;  // "" = the real /proc and /sys
  std::string nvml_library = "libnvidia-ml.so.1";  // absent library = no GPUs
  // The host's own gates. A spec's gates apply too; the stricter value wins.
  absl::Duration cooldown = absl::ZeroDuration();
  double max_gpu_temp_c = 0;  // 0 = only the spec's
  double max_cpu_temp_c = 0;
  double max_load = 0;
  double max_competing_cpu =
      0.25;  // cores other processes may use while a run waits to start
  absl::Duration max_wait = absl::Minutes(15);
  // A run during which a single other process used more than this many cores
  // is flagged "contended" (and re-run by the controller).
  double contended_cpu_cores = 0.10;
  Clock* clock = nullptr;  // default: the real clock
  // How to reach the controller; default: gRPC to `controller` with
  // `transport`. Tests pass a fake (tests/agent/fake_controller_link.h). Must
  // outlive the agent.
  ControllerLink* link = nullptr;
  // Source bundles (source.bundle): where they come from — default: the
  // controller, over a channel like the stream's (none with a `link` fake,
  // when bundle leases are declined) — and how many bytes of them the cache
  // under <workdir>/bundles keeps (least recently used go first).
  BundleFetcher* bundle_fetcher = nullptr;
  int64_t bundle_cache_bytes = int64_t{2} << 30;

  // Toolchain versions recorded with every attempt (DESIGN.md §5): name ->
  // command line, run in the experiment's work directory when the agent
  // accepts a lease, before its first step; each bounded by
  // `toolchain_timeout`. An empty command line records nothing for that name.
  std::map<std::string, std::string> toolchain = DefaultToolchainCommands();
  absl::Duration toolchain_timeout = absl::Seconds(5);

  // Who jobs run as (DESIGN.md §7; the runner does the switch, see
  // PosixProcessRunnerOptions::job_user). Create refuses to start an agent
  // that runs as root, has no job_user and dials a controller on another
  // host, unless allow_root_jobs (DecideRootJobs in agent/runner/job_user.h);
  // with a job_user, it refuses when that user can read one of
  // `secret_files` (keys, certificates, tokens) or the work directory.
  std::string job_user;
  bool allow_root_jobs = false;
  std::vector<std::string> secret_files;
  // At start-up, before any work, kill what jobs of a previous instance of
  // this agent left (SweepLeftoverJobs in agent/runner/job_tree.h).
  bool sweep_leftover_jobs = true;
};

class Agent {
 public:
  // Takes the host lock and prepares the work directory. `runner` must outlive
  // the agent. Fails, naming the file and what to do, when the controller
  // public key cannot be loaded; FailedPrecondition when there is none, the
  // controller is not on loopback and `insecure` is not set.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(
      const AgentOptions& options, ProcessRunner* runner);
  ~Agent();

  // Connects and serves until Shutdown(). Returns OK after Shutdown.
  absl::Status Run();
  void Shutdown();
  const std::string& id() const;

  class Impl;

 private:
  explicit Agent(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_AGENT_H_
