// AttemptRunner: the Dispatcher's attempts, from lease to end. It leases a
// queued experiment to an idle agent (the store's claim, the spec from the
// SpecSource, an AttemptDriver with the effective seed), keeps the window of
// step orders at the agent, revokes the orders of an aborted variant, commits
// each result to the Store before acknowledging it and feeds it to the driver,
// and finishes the attempt (report, verdicts) or loses it (re-queued by the
// store). Results and ends the store could not take are kept and tried again
// (RetryDue); attempts whose agent went away are lost once the lease timeout
// has passed (LoseExpired). It finds the agents' streams in the AgentRegistry.
//
// Time comes from the injected Clock. Not thread-safe; externally
// synchronized (the Dispatcher's Tick) — except counters(), which any thread
// may call.
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_ATTEMPT_RUNNER_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_ATTEMPT_RUNNER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/model/host_facts.h"
#include "common/spec.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/scheduler/agent_registry.h"
#include "controller/store/store.h"

namespace benchfleet {

// The seam through which the dispatcher gets an experiment's spec: the stored
// record's spec parsed and validated (the controller passes ParseSpec of the
// stored YAML, common/spec_loader.h). An error fails the attempt with its
// message. Called from Tick.
using SpecSource =
    std::function<absl::StatusOr<ExperimentSpec>(const ExperimentRecord&)>;

struct AttemptRunnerCounters {
  int64_t stale_results = 0;
  int64_t duplicate_results = 0;
  int64_t results_stored = 0;
  int64_t attempts_lost = 0;
};

class AttemptRunner {
 public:
  struct Options {
    // Step orders an agent holds at once (DispatcherOptions::steps_ahead).
    int steps_ahead = 4;
    // How long an agent is passed over for an experiment its host was not
    // ready for (DispatcherOptions::not_ready_retry_after).
    absl::Duration not_ready_retry_after = absl::Seconds(60);
  };
  // What the runner asks of its owner.
  struct Hooks {
    // Publish the experiment's view now (state changes) / paced (progress).
    std::function<void(int64_t experiment_id)> publish;
    std::function<void(int64_t experiment_id)> publish_progress;
    // Queued work may be waiting for an agent (an attempt ended).
    std::function<void()> work_queued;
    StoreWriteFn store_write;
  };
  // A step result the store could not take, to be handled again.
  struct UnstoredResult {
    std::shared_ptr<AgentLink> link;
    int64_t attempt_id = 0;
    std::string token;
    StepOutcome outcome;
  };
  // Where an active attempt stands, for the views.
  struct Live {
    int64_t attempt_id = 0;
    int64_t experiment_id = 0;
    std::string agent_id;
    AttemptProgress progress;
  };

  // How often results and attempt ends that the store could not take are
  // tried again.
  static constexpr absl::Duration kStoreRetryInterval = absl::Seconds(1);

  // `store`, `clock` and `agents` must outlive the runner.
  AttemptRunner(Store* store, Clock* clock, AgentRegistry* agents,
                Options options, SpecSource specs, Hooks hooks);

  // Claims the next experiment `session`'s agent may run and leases it; does
  // nothing when none is queued for it.
  void Start(AgentSession& session);
  // The agent's reply to a lease (AgentLink::SendLease); see
  // Dispatcher::OnLeaseReply.
  void OnLeaseReply(AgentSession& session, int64_t attempt_id,
                    const std::string& token, bool accepted,
                    const std::string& reason,
                    const std::optional<HostEnvironment>& environment,
                    bool signature_refused);
  // A step result from the agent on `link`: stored, acknowledged, and given to
  // the attempt's driver when the lease is current.
  void OnStepResult(const std::shared_ptr<AgentLink>& link, int64_t attempt_id,
                    const std::string& token, StepOutcome outcome);
  // The lease `token` of `attempt_id` is current.
  bool Holds(int64_t attempt_id, const std::string& token) const;

  // A reconnecting agent that says it holds `attempt_id` with `token`: when
  // that is still its lease, the attempt is its again; returns the
  // attempt's experiment (0: not re-attached). Every other attempt held for
  // the agent is lost: it no longer runs them.
  int64_t Reattach(const std::string& agent_id, int64_t attempt_id,
                   const std::string& token);
  // After the Welcome on a re-attached stream: resends the orders (and
  // revocations) that may have been lost with the old stream, or takes the
  // held token as the lease's acceptance.
  void Resume(int64_t attempt_id, AgentLink& link);
  // The agent of `attempt_id` went away at `when`; the attempt is lost once
  // the lease timeout has passed since (LoseExpired) unless it reconnects.
  void AgentGone(int64_t attempt_id, absl::Time when);
  // Loses the attempts whose agent has been gone for `lease_timeout` or more.
  void LoseExpired(absl::Time now, absl::Duration lease_timeout);
  // The experiment was cancelled in the store: its agent is released.
  void Cancelled(int64_t experiment_id, const std::string& reason);
  // When the retry interval has passed: hands the kept results to `repost`
  // and tries the kept attempt ends again.
  void RetryDue(absl::Time now,
                const std::function<void(UnstoredResult&)>& repost);
  // Whether an agent passed over for an experiment may take it again now.
  bool NotReadyExpired(absl::Time now) const;

  // The active attempt of `experiment_id`, if any.
  std::optional<Live> LiveOf(int64_t experiment_id) const;
  // The active attempt `attempt_id`, if it is one.
  std::optional<Live> LiveOfAttempt(int64_t attempt_id) const;

  AttemptRunnerCounters counters();

 private:
  struct Active {
    AttemptRecord attempt;
    ExperimentRecord experiment;
    std::unique_ptr<AttemptDriver> driver;
    // Steps sent whose results have not been stored, by seq. Revoked ones stay
    // until their result arrives (the agent may have finished one before the
    // revocation reached it) so that it is stored with its kind and variant.
    struct Sent {
      PlannedStep step;
      bool revoked = false;
    };
    std::map<int64_t, Sent> sent;
    bool lease_accepted = false;
    bool history_checked = false;  // the driver has its baseline reference
    std::string agent_id;
    absl::Time agent_lost_at =
        absl::InfiniteFuture();  // when its agent disconnected
  };

  // Records the attempt's environment: the host facts of `session`, and what
  // the agent reported once it did.
  void RecordEnvironment(const AgentSession& session, int64_t attempt_id,
                         uint64_t seed,
                         const std::optional<HostEnvironment>& reported);
  // The experiments `agent_id` is passed over for now (its host was not ready
  // for them a moment ago); drops the entries whose time has passed.
  std::set<int64_t> NotReadyHere(const std::string& agent_id);
  // Sends steps until the agent holds options_.steps_ahead of them (or the
  // plan must wait for results); ends the attempt when the driver is finished.
  // May erase `active`.
  void FillWindow(Active& active);
  // The previous comparable baseline for the driver's "environment changed"
  // check: the newest completed attempt of the same experiment name on the
  // same host fingerprint and commit (read from the attempt's environment,
  // merged when the agent accepted the lease), or why there is none.
  history::BaselineReference BaselineReferenceFor(const Active& active);
  void FinishAttempt(int64_t attempt_id);
  void LoseAttempt(int64_t attempt_id, const std::string& reason);

  Store* store_;
  Clock* clock_;
  AgentRegistry* agents_;
  Options options_;
  SpecSource specs_;
  Hooks hooks_;

  std::map<int64_t, Active> active_;
  // experiment -> agent -> until when that agent is passed over for it (its
  // host was not ready).
  std::map<int64_t, std::map<std::string, absl::Time>> not_ready_;
  // Step results the store could not take (it was unreachable even after its
  // own reconnect attempts): not acknowledged, tried again on a later tick.
  std::vector<UnstoredResult> unstored_results_;
  // Attempts whose end the store could not take; FinishAttempt runs again on
  // a later tick.
  std::vector<int64_t> unfinished_attempts_;
  absl::Time next_store_retry_ = absl::InfinitePast();

  absl::Mutex mu_;
  AttemptRunnerCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_ATTEMPT_RUNNER_H_
