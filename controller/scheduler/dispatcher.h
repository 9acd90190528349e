// Dispatcher: the controller's brain. It keeps the connected agents, hands
// queued experiments to idle agents whose labels match (one lease per agent),
// drives each attempt step by step through an AttemptDriver, commits every
// result to the Store before acknowledging it, expires silent agents and lost
// leases, and publishes progress to watchers.
//
// It speaks to agents through AgentLink (implemented by the gRPC service
// adapter) and gets each experiment's spec already parsed from a SpecSource, so
// it holds only plain structs. It composes its parts: the agent registry
// (agent_registry.h: the agents, their streams, hellos, states and cordons),
// the attempt runner (attempt_runner.h: leasing, the window of step orders,
// results, finishing and losing attempts), the environment record
// (environment_record.h), progress pacing (progress_pacer.h) and the retried
// store writes (store_writes.h); it keeps the events, Tick, the views and the
// watchers.
//
// Time: every decision reads the injected Clock. All work happens in Tick(now):
// it runs the events the On* methods queued, then what is due at `now` (store
// retries, paced progress, silent agents, lost leases), then hands out queued
// work. By default a loop thread calls Tick when an event arrives or
// options.tick has passed; with options.run_loop_thread = false nothing runs
// until the owner calls Tick (tests step a FakeClock and call it directly).
//
// Thread-safe: every public method may be called from any thread; Tick runs one
// caller at a time, and it is the only place that does store I/O for attempts,
// so gRPC reactors never block on it.
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_DISPATCHER_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/fingerprint.h"
#include "common/model/host_facts.h"
#include "common/spec.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/scheduler/agent_registry.h"
#include "controller/scheduler/attempt_runner.h"
#include "controller/scheduler/progress_pacer.h"
#include "controller/scheduler/store_writes.h"
#include "controller/store/store.h"

namespace benchfleet {

// What watchers and the Fleet API see of an experiment.
struct ExperimentView {
  ExperimentRecord record;
  AttemptProgress progress;
  int64_t attempt_id = 0;
  std::string agent_id;
  std::string hostname;
};

struct DispatcherOptions {
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // An agent silent for this long loses its lease; its attempt is re-queued
  // from scratch.
  absl::Duration lease_timeout = absl::Seconds(15);
  absl::Duration tick = absl::Milliseconds(100);
  // Step orders an agent holds at once, the running one included: the next
  // order is at the agent before the current run ends, so no round trip or
  // bookkeeping sits between two runs. A KILL or REJECT revokes the orders of
  // the aborted variant. >= 1; 1 is the old one-at-a-time behaviour.
  int steps_ahead = 4;
  // After an attempt ends "host not ready", its experiment is offered to
  // other agents first; the same agent may take it again after this long.
  absl::Duration not_ready_retry_after = absl::Seconds(60);
  // False: no loop thread; the owner calls Dispatcher::Tick (tests with a
  // FakeClock).
  bool run_loop_thread = true;
};

struct DispatcherCounters {
  int64_t stale_results = 0;
  int64_t duplicate_results = 0;
  int64_t results_stored = 0;
  int64_t attempts_lost = 0;
  int64_t samples_stored = 0;
  // Store writes nothing waits on (agent states, attempt ends, environments,
  // samples) tried again after the store could not take them, and those given
  // up on because the store refused them for good (StoreWrites).
  int64_t store_writes_retried = 0;
  int64_t store_writes_failed = 0;
};

class Dispatcher {
 public:
  // `store` and `clock` must outlive the dispatcher; `specs` gives each claimed
  // experiment's spec. Re-queues attempts left running by a previous
  // controller process (they are never resumed).
  static absl::StatusOr<std::unique_ptr<Dispatcher>> Create(
      Store* store, Clock* clock, DispatcherOptions options, SpecSource specs);
  ~Dispatcher();  // stops the loop thread

  // One round of work at `now` (the Clock's time): the queued events, then
  // what is due (store retries, paced progress, not-ready cooldowns, silent
  // agents, lost leases), then work for idle agents. Returns when all of it is
  // done, so a test can assert right after it. Safe from any thread (rounds
  // never overlap); the loop thread, when there is one, calls it too.
  void Tick(absl::Time now);

  // Called by the agent service adapter. `link` stays valid until
  // OnDisconnected.
  void OnConnected(std::shared_ptr<AgentLink> link, AgentHello hello);
  // `status` is what the agent is doing besides running steps (e.g. waiting for
  // its gates).
  void OnHeartbeat(const std::shared_ptr<AgentLink>& link, int64_t attempt_id,
                   const std::string& status = "");
  // An accepted reply carries what the agent recorded about the attempt's
  // environment (governor, turbo, GPUs, toolchain, commit; the host facts come
  // from its hello): merged into the attempt's environment record with the
  // host fingerprint (common/fingerprint.h) before the first step is sent.
  // A reply declined with `signature_refused` (the agent refuses this
  // controller's signed orders, agent.proto LeaseReply) also stops work being
  // offered to that agent until it connects again.
  void OnLeaseReply(const std::shared_ptr<AgentLink>& link, int64_t attempt_id,
                    const std::string& token, bool accepted,
                    const std::string& reason,
                    std::optional<HostEnvironment> environment = std::nullopt,
                    bool signature_refused = false);
  void OnStepResult(const std::shared_ptr<AgentLink>& link, int64_t attempt_id,
                    const std::string& token, StepOutcome outcome);
  void OnDisconnected(const std::shared_ptr<AgentLink>& link);
  // Host samples taken during one step; stored in one batch if the lease is
  // current.
  void OnSamples(const std::shared_ptr<AgentLink>& link, int64_t attempt_id,
                 const std::string& token, std::vector<SampleRecord> samples);

  // Called by the Fleet service after the store accepted a new experiment.
  void OnSubmitted(int64_t experiment_id);
  // Cancels in the store and releases the agent running it. Returns the store's
  // status.
  absl::Status Cancel(int64_t experiment_id, const std::string& reason);

  // The current view of an experiment (store record + live progress).
  absl::StatusOr<ExperimentView> View(int64_t experiment_id);
  bool IsConnected(const std::string& agent_id);
  int64_t CurrentExperimentOf(const std::string& agent_id);

  // Calls `fn` with a fresh view whenever the experiment changes, from the loop
  // thread
  // (`fn` must not block). Returns a handle for Unsubscribe.
  using Watcher = std::function<void(const ExperimentView&)>;
  int64_t Subscribe(int64_t experiment_id, Watcher fn);
  void Unsubscribe(int64_t handle);

  DispatcherCounters counters();

 private:
  // Progress within an attempt is published at most this often per experiment
  // (ProgressPacer).
  static constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

  Dispatcher(Store* store, Clock* clock, DispatcherOptions options,
             SpecSource specs);
  void Post(std::function<void()> fn);
  void Loop();
  // Runs the queued events (and those they queue) until none is left.
  void RunEvents();
  // The time-driven part of Tick.
  void RunDue(absl::Time now);
  // A store write nothing waits on, through store_writes_.
  void StoreWrite(const std::string& key, const std::string& what,
                  StoreWrites::Write write);
  void AssignWork();
  // Sends the experiment's current view to its watchers at once (state
  // changes).
  void Publish(int64_t experiment_id);
  // Progress within an attempt: published at most every kProgressInterval per
  // experiment (Tick flushes the rest), so that watchers and their terminals do
  // not compete with short benchmark runs for the host's CPUs after every step.
  void PublishProgress(int64_t experiment_id);

  Store* store_;
  Clock* clock_;
  DispatcherOptions options_;

  // Held for a whole Tick: the state below is touched only inside one. It is
  // held across store I/O on purpose: it only orders rounds (the loop thread
  // and a caller of Tick); no other method takes it, so no gRPC reactor or
  // reader ever waits on it.
  absl::Mutex tick_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  // Tick state (the loop thread, or whoever calls Tick).
  bool work_maybe_queued_ = true;
  ProgressPacer progress_pacer_;
  StoreWrites store_writes_;
  int64_t next_sample_batch_ = 1;  // keys of sample writes
  AgentRegistry agents_;
  AttemptRunner attempts_;

  absl::Mutex mu_;
  std::deque<std::function<void()>> events_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Published snapshots for readers on other threads.
  std::map<int64_t, ExperimentView> live_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::pair<int64_t, Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  int64_t next_watcher_ ABSL_GUARDED_BY(mu_) = 1;
  DispatcherCounters counters_ ABSL_GUARDED_BY(mu_);
  std::thread loop_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_DISPATCHER_H_
