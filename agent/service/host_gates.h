// Host gates and step sampling: the methodology's pre-benchmark checks,
// enforced by the agent on every host, every time.
//
// - GateBlockers: why a host sample is not ready for a benchmark (hot GPU or
// CPU, load,
//   competing processes), as user-facing sentences; empty = ready.
// - WaitForGates: samples the host until no gate blocks (and a cooldown has
// passed), or
//   gives up after max_wait with the last blockers as the reason; time comes
//   from a Clock, so tests run with FakeClock.
// - StepSampler: a thread that samples the host at a fixed rate while a step
// runs.
//
// Thread-safety: GateBlockers is pure; WaitForGates uses the probe from the
// calling thread; StepSampler is thread-safe (Begin/End from the agent's worker
// thread, sampling on its own thread; the probe is only used by one thread at a
// time).
#ifndef BENCHFLEET_AGENT_SERVICE_HOST_GATES_H_
#define BENCHFLEET_AGENT_SERVICE_HOST_GATES_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/probe/host_sample.h"
#include "agent/probe/probe.h"
#include "common/clock.h"

namespace benchfleet {

struct GateOptions {
  absl::Duration cooldown =
      absl::ZeroDuration();   // since the agent's previous attempt
  double max_gpu_temp_c = 0;  // 0 = not checked
  double max_cpu_temp_c = 0;  // 0 = not checked
  double max_load = 0;        // 1-minute load average; 0 = not checked
  double max_competing_cpu =
      0;  // cores used by other processes; 0 = not checked
  absl::Duration max_wait = absl::Minutes(15);
  absl::Duration poll_interval = absl::Milliseconds(500);
};

// Why `sample` fails the gates ("GPU 0 at 63.0 °C, above the 50 °C gate");
// empty = ready.
std::vector<std::string> GateBlockers(const HostSample& sample,
                                      const GateOptions& gates);

struct GateOutcome {
  bool passed = false;
  bool cancelled = false;
  absl::Duration waited = absl::ZeroDuration();
  std::string reason;  // when not passed: what still blocked at max_wait
};

// Waits until `cooldown_until` has passed and one sample shows no blocker.
// Samples every poll_interval; gives up after max_wait (or when `cancel`
// becomes true). `on_blocked` (may be empty) hears the blockers each time the
// host is not ready.
GateOutcome WaitForGates(
    Probe& probe, Clock& clock, const GateOptions& gates,
    absl::Time cooldown_until, const std::atomic<bool>* cancel,
    const std::function<void(const std::string&)>& on_blocked = {});

SampleTime ToSampleTime(absl::Time t);

class StepSampler {
 public:
  // `probe` and `clock` must outlive the sampler. interval <= 0 disables
  // sampling.
  StepSampler(Probe* probe, Clock* clock, absl::Duration interval);
  ~StepSampler();
  StepSampler(const StepSampler&) = delete;
  StepSampler& operator=(const StepSampler&) = delete;

  // Starts sampling (the first sample is taken at once, on the sampler thread).
  void Begin();
  // Takes a last sample, stops, and returns the samples since Begin, in time
  // order.
  std::vector<HostSample> End();

 private:
  void Loop();

  Probe* probe_;
  Clock* clock_;
  absl::Duration interval_;
  absl::Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool busy_ ABSL_GUARDED_BY(mu_) =
      false;  // the thread is inside probe_->Sample
  std::vector<HostSample> samples_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_HOST_GATES_H_
