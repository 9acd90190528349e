// StepExecutor: runs one step order on this host, start to finish — the
// host's gates (WaitForGates), the sampler around a run (StepSampler), the
// process (ProcessRunner) and the step's result (exit, times, digest, metrics,
// host summary, stderr tail) — and hands back the result and the run's host
// samples for the caller to send. It knows nothing of the lease or the stream:
// what the lease says about the step arrives in StepContext.
//
// Used by Agent's worker thread (agent/service/agent.cc). Not thread-safe: one
// step at a time, from one thread (the runner, probe, clock and sampler it is
// given must outlive it).
#ifndef BENCHFLEET_AGENT_SERVICE_STEP_EXECUTOR_H_
#define BENCHFLEET_AGENT_SERVICE_STEP_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "agent/probe/probe.h"
#include "agent/runner/process_runner.h"
#include "agent/service/host_gates.h"
#include "benchfleet/v1/agent.pb.h"
#include "common/clock.h"

namespace benchfleet {

// The host's own gate limits (AgentOptions); a spec's gates apply too and the
// stricter value wins. 0 means "not set".
struct HostGateLimits {
  absl::Duration cooldown = absl::ZeroDuration();
  double max_gpu_temp_c = 0;
  double max_cpu_temp_c = 0;
  double max_load = 0;
  double max_competing_cpu = 0.25;
  absl::Duration max_wait = absl::Minutes(15);
};

// The gates before a step: the stricter of the host's and the spec's limits;
// the load gate only at the attempt's start (the job itself keeps the load
// average up).
GateOptions MergeGates(const HostGateLimits& host, const v1::GateSpec& spec,
                       bool attempt_start);

struct StepExecutorOptions {
  std::string agent_id;
  std::string workdir;                // captures: <workdir>/attempts/<id>/
  std::vector<std::string> base_env;  // KEY=VALUE, the job's environment
  HostGateLimits gates;
  // A run during which a single other process used more than this many cores
  // is flagged "contended".
  double contended_cpu_cores = 0.10;
};

// What the lease says about the step.
struct StepContext {
  bool attempt_start = false;  // the lease's first step: attempt-level gates
  v1::GateSpec gates;          // the spec's gates
  // When the previous lease ended (InfinitePast: none): the cooldown counts
  // from there.
  absl::Time last_attempt_end = absl::InfinitePast();
};

struct StepOutcome {
  v1::StepResult result;
  // The host samples of a run (warmup or measure) with any samples taken.
  std::optional<v1::SampleBatch> samples;
};

class StepExecutor {
 public:
  StepExecutor(StepExecutorOptions options, ProcessRunner* runner, Probe* probe,
               Clock* clock, StepSampler* sampler);

  // Runs `order`. `cancel` (may be null) stops a gate wait or the process;
  // `set_status` (may be empty) is told what the step waits for ("" when it
  // no longer waits). A gate not met within max_wait gives a "host not ready"
  // result; a cancelled wait gives an error result that is never reported.
  StepOutcome Execute(
      const v1::StepOrder& order, const StepContext& context,
      const std::atomic<bool>* cancel,
      const std::function<void(const std::string&)>& set_status);

  // Where the captures of an attempt's steps live.
  std::string AttemptDir(int64_t attempt_id) const;

 private:
  StepExecutorOptions options_;
  ProcessRunner* runner_;
  Probe* probe_;
  Clock* clock_;
  StepSampler* sampler_;
  // When the last step's process ended: the load gate discounts the load
  // average while our own runs may still be in it (GateOptions).
  absl::Time last_job_end_ = absl::InfinitePast();
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_STEP_EXECUTOR_H_
