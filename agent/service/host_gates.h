// Host gates and step sampling: the methodology's pre-benchmark checks,
// enforced by the agent on every host, every time.
//
// - GateBlockers: why a host sample is not ready for a benchmark (hot GPU or
//   CPU, load, competing processes, a competing-CPU reading that does not yet
//   cover its window), as user-facing sentences; empty = ready. The gates
//   measure others, not us: competing CPU is what the probe could not explain
//   by the agent, its jobs and benchfleet's own programs, and the load average
//   (which cannot tell our runs from others') is replaced by that reading
//   while the agent's own recent jobs may still be in it.
// - WaitForGates: samples the host until no gate blocks (and a cooldown has
//   passed), or gives up after max_wait with the last blockers as the reason;
//   time comes from a Clock, so tests run with FakeClock.
// - StepSampler: a thread that samples the host at a fixed rate while a step
//   runs.
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
  // Since the agent's previous attempt.
  absl::Duration cooldown = absl::ZeroDuration();
  double max_gpu_temp_c = 0;  // 0 = not checked
  double max_cpu_temp_c = 0;  // 0 = not checked
  // 1-minute load average; 0 = not checked. See own_work_ended_at.
  double max_load = 0;
  // Cores used by other processes (HostSample::other_cpu_cores, over the
  // probe's window); 0 = not checked.
  double max_competing_cpu = 0;
  // When the agent's own last job (a step, or any command it ran) ended;
  // InfinitePast = it has run none; InfiniteFuture = one is running. The load
  // average counts every runnable task, ours included, and forgets slowly (an
  // exponential average with a 1-minute time constant: a core's worth of our
  // runs still reads 0.37 a minute later, 0.007 after five). So when load1 is
  // above max_load and our jobs ended less than `load_memory` before the
  // sample, the load gate decides on the competing reading instead (other
  // processes' cores over the window <= max_load); otherwise the load is all
  // others' and blocks as it is.
  absl::Time own_work_ended_at = absl::InfinitePast();
  absl::Duration load_memory = absl::Minutes(5);
  absl::Duration max_wait = absl::Minutes(15);
  absl::Duration poll_interval = absl::Milliseconds(500);
};

// Why `sample` fails the gates ("GPU 0 at 63.0 °C, at or above the 50 °C
// gate"), judged as of sample.taken_at; empty = ready. A competing-CPU reading
// that does not yet cover the probe's window (other_cpu_window_needed > 0)
// decides a gate only when it is clear of the limit by more than rounding
// could move it (other_cpu_rounding_cores); otherwise it blocks as
// "measuring" until it is complete.
std::vector<std::string> GateBlockers(const HostSample& sample,
                                      const GateOptions& gates);

struct GateOutcome {
  bool passed = false;
  bool cancelled = false;
  // From the call to the decision (clock time, not rounded).
  absl::Duration waited = absl::ZeroDuration();
  // Polls that found the host not ready, and what blocked the last of them
  // ("; "-joined blockers); empty when the host was ready at once.
  int blocked_polls = 0;
  std::string waited_for;
  std::string reason;  // when not passed: what still blocked at max_wait
};

// Waits until `cooldown_until` has passed and one sample shows no blocker.
// Samples every poll_interval (sooner when the cooldown or the competing-CPU
// window ends sooner); gives up after max_wait (or when `cancel` becomes
// true). `on_blocked` (may be empty) hears the blockers of every poll that
// finds the host not ready.
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

  // Starts sampling: takes the opening sample here, on the caller's thread,
  // before the run starts, then one every interval on the sampler thread. A
  // run shorter than the interval therefore never shares the CPUs with the
  // probe (on a 2-CPU host, an opening sample taken on the sampler thread at
  // the spawn added ~40 % to a 0.5 ms no-op; docs/perf/agent-timing.md).
  void Begin();
  // Takes a last sample (with Probe::SampleWithProcesses, so that the run is
  // judged per process on a window that ends at its end), stops, and returns
  // the samples since Begin, in time order.
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
